use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::load::InFlight;

pin_project! {
    /// The response of the endpoint a [`Balancer`](super::Balancer) sent a
    /// request to. Until it resolves (or is dropped) the request counts as in
    /// flight on that endpoint, which `least_request` and `peak_ewma` read;
    /// for `peak_ewma` the time until the response headers arrive is the
    /// endpoint's latency sample.
    pub struct ResponseFuture<F> {
        #[pin]
        response: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(response: F, in_flight: InFlight) -> Self {
        ResponseFuture {
            response,
            in_flight: Some(in_flight),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("in_flight", &self.in_flight.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.response.poll(cx));
        if let Some(in_flight) = this.in_flight.take() {
            // Dropping the guard ends the request's count (and measures it).
            if result.is_err() {
                in_flight.failed();
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::balance::load::{Clock, EndpointLoad};
    use crate::balance::peak_ewma::Ewma;

    #[tokio::test(start_paused = true)]
    async fn the_request_counts_until_its_response_arrives_and_its_latency_is_recorded() {
        let ewma = Ewma::new(
            Duration::from_secs(10),
            Duration::from_millis(30),
            Clock::new(),
        );
        let load = Arc::new(EndpointLoad::default());
        let response = ResponseFuture::new(
            async {
                tokio::time::sleep(Duration::from_millis(120)).await;
                Ok::<_, ()>("headers")
            },
            load.start(Some(&ewma)),
        );
        let task = tokio::spawn(response);
        tokio::task::yield_now().await;
        assert_eq!(load.active(), 1);
        assert_eq!(task.await.unwrap(), Ok("headers"));
        assert_eq!(load.active(), 0);
        assert_eq!(load.rtt().estimate(&ewma, ewma.clock().now()), 120e6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_request_stops_counting_without_a_latency_sample() {
        let ewma = Ewma::new(
            Duration::from_secs(10),
            Duration::from_millis(30),
            Clock::new(),
        );
        let load = Arc::new(EndpointLoad::default());
        let response = ResponseFuture::new(
            async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Err::<(), _>("refused")
            },
            load.start(Some(&ewma)),
        );
        assert_eq!(response.await, Err("refused"));
        assert_eq!(load.active(), 0);
        assert_eq!(load.rtt().estimate(&ewma, ewma.clock().now()), 30e6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_stops_counting() {
        let load = Arc::new(EndpointLoad::default());
        let response =
            ResponseFuture::new(std::future::pending::<Result<(), ()>>(), load.start(None));
        assert_eq!(load.active(), 1);
        let timed_out = tokio::time::timeout(Duration::from_secs(1), response).await;
        assert!(timed_out.is_err());
        assert_eq!(load.active(), 0);
    }
}
