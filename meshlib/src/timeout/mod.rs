//! The route's timeout: how long a request may wait for its response headers.
//!
//! Reads the timeout from the request's [`RouteDecision`], so one layer serves
//! every route. The clock starts when the request enters the layer and stops when
//! the response headers arrive; a streaming body is not bounded by it (Envoy's
//! route `timeout` also bounds the body: that comes with per-try timeouts).
//! The same holds for a `max_stream_duration` or `grpc-timeout` deadline,
//! which in Envoy and gRPC bound the whole stream: here a server-streaming
//! RPC is unbounded once its headers have arrived.
//! A request without a decision, or whose route has no timeout, is not bounded.
//!
//! Which timeout a request gets is decided with its route, by
//! [`request_timeout`](crate::route::request_timeout): this layer only
//! enforces it.

mod future;
mod layer;

use std::task::{Context, Poll};

use http::Request;
use tower_service::Service;

use crate::error::Error;
use crate::route::RouteDecision;

pub use future::ResponseFuture;
pub use layer::TimeoutLayer;

/// Fails a request with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when
/// its timeout ([`RouteDecision::timeout`], see [`request_timeout`](crate::route::request_timeout)) passes
/// before the inner service answers.
///
/// ```
/// use std::time::Duration;
/// use meshlib::route::RouteDecision;
/// use meshlib::timeout::Timeout;
/// use meshlib::{Error, ErrorKind};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow = tower::service_fn(|_: http::Request<()>| async {
///     tokio::time::sleep(Duration::from_secs(10)).await;
///     Ok::<_, Error>("late")
/// });
/// let mut request = http::Request::new(());
/// let decision = RouteDecision::new("api", "slow", "backend").with_timeout(Some(Duration::from_secs(1)));
/// request.extensions_mut().insert(decision);
/// let err = Timeout::new(slow).oneshot(request).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
}

impl<S> Timeout<S> {
    /// Bounds `inner` by each request's timeout.
    pub fn new(inner: S) -> Self {
        Timeout { inner }
    }
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>>,
    S::Error: From<Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let decision = request.extensions().get::<RouteDecision>();
        let limit = decision.and_then(|d| d.timeout().map(|t| (t, d.clone())));
        ResponseFuture::new(self.inner.call(request), limit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::ServiceExt;

    use super::*;
    use crate::ErrorKind;
    use crate::config::MeshConfig;
    use crate::route::RouteTable;

    /// How long a request to a route whose action has `limits` (YAML) waits,
    /// with `grpc_timeout` as its header, before timing out; `None` if it
    /// does not time out within a day.
    async fn waited(limits: &str, grpc_timeout: Option<&str>) -> Option<Duration> {
        let config = MeshConfig::from_yaml(&format!(
            "clusters: [{{ name: c }}]\nvirtual_hosts: [{{ name: v, domains: ['*'], routes: [{{ match: {{ prefix: / }}, route: {{ cluster: c, {limits} }} }}] }}]"
        ))
        .unwrap();
        let table = RouteTable::new(&config).unwrap();
        let mut request = http::Request::get("http://svc/Service/Method");
        if let Some(value) = grpc_timeout {
            request = request.header("grpc-timeout", value);
        }
        let mut request = request.body(()).unwrap();
        let decision = table.decide(&request).unwrap();
        request.extensions_mut().insert(decision);
        let never =
            tower::service_fn(|_: http::Request<()>| std::future::pending::<Result<(), Error>>());
        let start = tokio::time::Instant::now();
        let day = Duration::from_secs(24 * 3600);
        match tokio::time::timeout(day, Timeout::new(never).oneshot(request)).await {
            Ok(Err(error)) => {
                assert_eq!(error.kind(), ErrorKind::Timeout);
                Some(start.elapsed())
            }
            Ok(Ok(())) => unreachable!("the service never answers"),
            Err(_) => None,
        }
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[tokio::test(start_paused = true)]
    async fn the_route_timeout_bounds_the_wait() {
        assert_eq!(waited("timeout: 2s", None).await, ms(2000));
        assert_eq!(waited("timeout: 0s", None).await, None);
        assert_eq!(
            waited("timeout: 2s", Some("1S")).await,
            ms(2000),
            "grpc-timeout ignored without grpc_timeout_header_max"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn max_stream_duration_overrides_the_route_timeout() {
        let limits = "timeout: 2s, max_stream_duration: { max_stream_duration: 500ms }";
        assert_eq!(waited(limits, None).await, ms(500));
        let limits = "timeout: 2s, max_stream_duration: { max_stream_duration: 5s }";
        assert_eq!(waited(limits, None).await, ms(5000));
        // Zero: no timeout at all, as Envoy reads an explicit zero.
        let limits = "timeout: 2s, max_stream_duration: { max_stream_duration: 0s }";
        assert_eq!(waited(limits, None).await, None);
        // Neither limit set: no timeout, the route's is not read (Envoy's
        // "new timeouts").
        assert_eq!(
            waited("timeout: 2s, max_stream_duration: {}", None).await,
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn grpc_timeout_sets_the_timeout_capped_by_grpc_timeout_header_max() {
        let capped = "timeout: 2s, max_stream_duration: { max_stream_duration: 10s, grpc_timeout_header_max: 3s }";
        assert_eq!(waited(capped, Some("100m")).await, ms(100));
        assert_eq!(waited(capped, Some("5S")).await, ms(3000));
        assert_eq!(waited(capped, Some("1H")).await, ms(3000));
        // Without the header, or with a malformed one, max_stream_duration applies.
        assert_eq!(waited(capped, None).await, ms(10_000));
        assert_eq!(waited(capped, Some("soon")).await, ms(10_000));
        // A zero cap leaves the header's value as it is.
        let uncapped = "timeout: 2s, max_stream_duration: { grpc_timeout_header_max: 0s }";
        assert_eq!(waited(uncapped, Some("1M")).await, ms(60_000));
        assert_eq!(waited(uncapped, None).await, None, "and none without it");
    }
}
