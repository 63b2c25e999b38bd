//! Starting against control planes whose timing differs from ours: the call's
//! response headers withheld until the first response (gRPC Python's server,
//! and grpc-go handlers that wait for the first request), and a plane that
//! accepts the stream and never answers.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshlib_xds::pb::envoy::config::cluster::v3::Cluster;
use meshlib_xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use meshlib_xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use meshlib_xds::server::{Snapshot, SnapshotServer};
use meshlib_xds::{Bootstrap, DELTA_ADS, Presence, XdsClient, XdsClientBuilder, XdsServer};
use support::eventually;

fn builder(address: SocketAddr, delta: bool) -> XdsClientBuilder {
    let mut bootstrap = Bootstrap::new(&address.to_string(), "test-node").unwrap();
    if delta {
        bootstrap.servers[0] = XdsServer::insecure(&address.to_string())
            .unwrap()
            .with_feature(DELTA_ADS);
    }
    XdsClient::builder(bootstrap).backoff(Duration::from_millis(20), Duration::from_millis(100))
}

async fn a_first_watch_after_the_stream_opens_is_sent_on_it(delta: bool) {
    let server = SnapshotServer::new();
    server.headers_with_first_response(true);
    server.set_default(Snapshot::new("1").with(Cluster {
        name: "a".into(),
        ..Default::default()
    }));
    let plane = server.start_standalone(0, None).unwrap();
    let client = builder(plane.address(), delta).build().unwrap();

    // The stream is up, and has nothing to ask for yet.
    eventually("the client opens its stream", || {
        server.streams_opened() >= 1
    })
    .await;
    let dump = tokio::time::timeout(Duration::from_secs(5), client.dump())
        .await
        .expect("a config dump answers while the call waits for its headers")
        .unwrap();
    assert!(dump.is_empty());

    let watch = tokio::time::timeout(Duration::from_secs(5), client.watch::<Cluster>("a"))
        .await
        .expect("a watch is taken while the call waits for its headers")
        .unwrap();
    eventually("cluster a arrives", || {
        watch.current().presence == Presence::Exists
    })
    .await;
    assert_eq!(server.streams_opened(), 1, "one stream did it all");
}

#[tokio::test]
async fn sotw_a_first_watch_after_the_stream_opens_is_sent_on_it() {
    a_first_watch_after_the_stream_opens_is_sent_on_it(false).await;
}

#[tokio::test]
async fn delta_a_first_watch_after_the_stream_opens_is_sent_on_it() {
    a_first_watch_after_the_stream_opens_is_sent_on_it(true).await;
}

/// Accepts every ADS stream and never sends anything on it, headers included.
#[derive(Clone, Default)]
struct Silent {
    streams: Arc<AtomicU64>,
}

type Never<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Silent {
    type StreamAggregatedResourcesStream = Never<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Never<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let mut requests = request.into_inner();
        // Read and drop requests until the client goes away.
        while let Ok(Some(_)) = requests.message().await {}
        Err(tonic::Status::cancelled("client gone"))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let mut requests = request.into_inner();
        while let Ok(Some(_)) = requests.message().await {}
        Err(tonic::Status::cancelled("client gone"))
    }
}

async fn a_plane_that_never_answers_is_given_up_and_reconnected(delta: bool) {
    let silent = Silent::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(silent.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let client = builder(address, delta)
        .response_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let watch = client.watch::<Cluster>("a").await.unwrap();

    eventually(
        "the client gives the silent stream up and opens another",
        || silent.streams.load(Ordering::SeqCst) >= 2,
    )
    .await;
    let error = watch.current().error.unwrap_or_default();
    assert!(
        error.contains("no response from the control plane within 200ms"),
        "the watch hears why: {error}"
    );
    assert_eq!(watch.current().presence, Presence::Requested);
    serving.abort();
}

#[tokio::test]
async fn sotw_a_plane_that_never_answers_is_given_up_and_reconnected() {
    a_plane_that_never_answers_is_given_up_and_reconnected(false).await;
}

#[tokio::test]
async fn delta_a_plane_that_never_answers_is_given_up_and_reconnected() {
    a_plane_that_never_answers_is_given_up_and_reconnected(true).await;
}
