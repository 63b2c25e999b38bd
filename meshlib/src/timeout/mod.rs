//! The route's timeout: how long a request may wait for its response headers.
//!
//! Reads the timeout from the request's [`RouteDecision`], so one layer serves
//! every route. The clock starts when the request enters the layer and stops when
//! the response headers arrive; a streaming body is not bounded by it (Envoy's
//! route `timeout` also bounds the body: that comes with per-try timeouts).
//! A request without a decision, or whose route has no timeout, is not bounded.

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
/// its route's timeout passes before the inner service answers.
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
    /// Bounds `inner` by each request's route timeout.
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
