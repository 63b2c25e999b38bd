//! The tower layer: checks each request against the limiter and answers a
//! refused one itself.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{Either, Ready, ready};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{Decision, LocalRateLimit, LocalRateLimiter, RateLimitStats, SettingsError};
use crate::retry::is_grpc_call;

const RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");
const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// gRPC's `UNAVAILABLE` and `RESOURCE_EXHAUSTED`.
const UNAVAILABLE: &str = "14";
const RESOURCE_EXHAUSTED: &str = "8";

/// Applies one [`LocalRateLimit`] to every request through the services it
/// makes; they all share one bucket. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct LocalRateLimitLayer {
    limiter: Arc<LocalRateLimiter>,
}

impl LocalRateLimitLayer {
    /// A layer for `settings`, with a full bucket; an error names the field
    /// at fault. Make it inside a Tokio runtime (its clock is Tokio's).
    pub fn new(settings: LocalRateLimit) -> Result<Self, SettingsError> {
        Ok(LocalRateLimitLayer {
            limiter: Arc::new(LocalRateLimiter::new(settings)?),
        })
    }

    /// The counters of its limiter.
    pub fn stats(&self) -> RateLimitStats {
        self.limiter.stats()
    }
}

impl<S> Layer<S> for LocalRateLimitLayer {
    type Service = LocalRateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LocalRateLimitService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// A service behind a local rate limit; see [`LocalRateLimitLayer`].
#[derive(Debug, Clone)]
pub struct LocalRateLimitService<S> {
    inner: S,
    limiter: Arc<LocalRateLimiter>,
}

impl<S, B, ResBody> Service<Request<B>> for LocalRateLimitService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<ResBody>, S::Error>>, HeadersAdded<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let settings = self.limiter.settings();
        match self.limiter.check() {
            Decision::Refused { reset } => {
                let grpc = is_grpc_call(request.headers());
                Either::Left(ready(Ok(refusal(settings, grpc, reset))))
            }
            Decision::Allowed {
                remaining: Some(remaining),
            } if settings.x_ratelimit_headers => Either::Right(HeadersAdded {
                inner: self.inner.call(request),
                headers: Some(quota_headers(settings, remaining, Duration::ZERO)),
            }),
            Decision::Allowed { .. } | Decision::ShadowRefused => Either::Right(HeadersAdded {
                inner: self.inner.call(request),
                headers: None,
            }),
        }
    }
}

/// The answer to a refused request.
fn refusal<ResBody: Default>(
    settings: &LocalRateLimit,
    grpc: bool,
    reset: Duration,
) -> Response<ResBody> {
    let mut response = Response::new(ResBody::default());
    let headers = response.headers_mut();
    headers.insert(RATELIMITED, HeaderValue::from_static("true"));
    if settings.x_ratelimit_headers {
        headers.extend(quota_headers(settings, 0, reset));
    }
    if grpc {
        // Trailers-Only: the status travels in the headers of an HTTP 200.
        let code = if settings.rate_limited_as_resource_exhausted {
            RESOURCE_EXHAUSTED
        } else {
            UNAVAILABLE
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static(code));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("local rate limited"),
        );
    } else {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        *response.status_mut() = settings.refusal_status();
    }
    response
}

/// The draft RFC's headers: the bucket's size, the tokens left, and the
/// whole seconds until a token is back.
fn quota_headers(settings: &LocalRateLimit, remaining: u32, reset: Duration) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(LIMIT, settings.token_bucket.max_tokens.into());
    headers.insert(REMAINING, remaining.into());
    let whole_seconds = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
    headers.insert(RESET, whole_seconds.into());
    headers
}

pin_project_lite::pin_project! {
    /// The service's response, with the limit's headers added.
    pub struct HeadersAdded<F> {
        #[pin]
        inner: F,
        headers: Option<HeaderMap>,
    }
}

impl<F, ResBody, E> std::future::Future for HeadersAdded<F>
where
    F: std::future::Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(headers) = this.headers.take() {
            response.headers_mut().extend(headers);
        }
        Poll::Ready(Ok(response))
    }
}
