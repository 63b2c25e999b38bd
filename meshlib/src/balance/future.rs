use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::connectivity::Connectivity;
use super::load::InFlight;
use crate::error::{Error, ErrorKind};

pin_project! {
    /// The response of the endpoint a [`Balancer`](super::Balancer) sent a
    /// request to. Until it resolves (or is dropped) the request counts as in
    /// flight on that endpoint, which `least_request` and `peak_ewma` read;
    /// for `peak_ewma` the time until the response headers arrive is the
    /// endpoint's latency sample. A connect failure takes the endpoint out
    /// of the balancer's set until a probe reaches it.
    pub struct ResponseFuture<F> {
        #[pin]
        response: F,
        in_flight: Option<InFlight>,
        connectivity: Arc<Connectivity>,
        address: SocketAddr,
    }
}

impl<F> ResponseFuture<F> {
    /// The response of the endpoint at `address`, of that `connectivity`.
    pub(super) fn new(
        response: F,
        in_flight: InFlight,
        connectivity: Arc<Connectivity>,
        address: SocketAddr,
    ) -> Self {
        ResponseFuture {
            response,
            in_flight: Some(in_flight),
            connectivity,
            address,
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

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.response.poll(cx));
        if let Some(in_flight) = this.in_flight.take() {
            // Dropping the guard ends the request's count (and measures it).
            if let Err(error) = &result {
                in_flight.failed();
                if error.kind() == ErrorKind::Connect {
                    this.connectivity.connect_failed(*this.address);
                }
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
    use crate::balance::connectivity::Connectivity;
    use crate::balance::load::{Clock, EndpointLoad};
    use crate::balance::peak_ewma::Ewma;

    const ADDRESS: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

    fn endpoint() -> Arc<Connectivity> {
        Arc::new(Connectivity::detached())
    }

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
                Ok::<_, Error>("headers")
            },
            load.start(Some(&ewma)),
            endpoint(),
            ADDRESS,
        );
        let task = tokio::spawn(response);
        tokio::task::yield_now().await;
        assert_eq!(load.active(), 1);
        assert_eq!(task.await.unwrap().unwrap(), "headers");
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
        let connectivity = endpoint();
        let response = ResponseFuture::new(
            async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Err::<(), _>(Error::new(ErrorKind::Upstream, "reset"))
            },
            load.start(Some(&ewma)),
            connectivity.clone(),
            ADDRESS,
        );
        assert_eq!(response.await.unwrap_err().kind(), ErrorKind::Upstream);
        assert_eq!(load.active(), 0);
        assert_eq!(load.rtt().estimate(&ewma, ewma.clock().now()), 30e6);
        assert!(
            !connectivity.failing(),
            "an upstream error says nothing of connecting"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connect_failure_marks_the_endpoint_failing() {
        let load = Arc::new(EndpointLoad::default());
        let connectivity = endpoint();
        let response = ResponseFuture::new(
            std::future::ready(Err::<(), _>(Error::new(ErrorKind::Connect, "refused"))),
            load.start(None),
            connectivity.clone(),
            ADDRESS,
        );
        assert_eq!(response.await.unwrap_err().kind(), ErrorKind::Connect);
        assert!(connectivity.failing());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_stops_counting() {
        let load = Arc::new(EndpointLoad::default());
        let response = ResponseFuture::new(
            std::future::pending::<Result<(), Error>>(),
            load.start(None),
            endpoint(),
            ADDRESS,
        );
        assert_eq!(load.active(), 1);
        let timed_out = tokio::time::timeout(Duration::from_secs(1), response).await;
        assert!(timed_out.is_err());
        assert_eq!(load.active(), 0);
    }
}
