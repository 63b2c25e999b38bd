use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::{Error, ErrorKind};
use crate::route::RouteDecision;

pin_project! {
    /// The inner response, or a timeout error once the route's timeout passes.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        limit: Option<(Duration, RouteDecision)>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, limit: Option<(Duration, RouteDecision)>) -> Self {
        ResponseFuture {
            inner,
            sleep: limit.as_ref().map(|(t, _)| tokio::time::sleep(*t)),
            limit,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<Error>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        let expired = this
            .sleep
            .as_pin_mut()
            .is_some_and(|sleep| sleep.poll(cx).is_ready());
        if !expired {
            return Poll::Pending;
        }
        let message = match this.limit {
            Some((limit, decision)) => format!(
                "route {:?} of virtual host {:?} timed out after {limit:?} waiting for cluster {:?}",
                decision.route(),
                decision.virtual_host(),
                decision.cluster()
            ),
            None => "timed out".to_owned(),
        };
        Poll::Ready(Err(Error::new(ErrorKind::Timeout, message).into()))
    }
}
