//! Control-plane outages under load: requests flow at a steady rate through a
//! `MeshClient` configured over xDS, to real loopback backends, while its
//! control plane is killed and restarted, stalls with its connection open,
//! refuses the stream, or answers garbage. What each test measures: requests
//! sent and failed (always 0 failed), how long the client took to find the
//! outage and to reconnect, and how long a change pushed afterwards took to
//! apply. Run with `--nocapture` to see the figures.
//!
//! The behaviour follows gRPC's xDS clients: the cache outlives the stream
//! (gRFC A57), reconnects back off, a response for a subscribed type that
//! cannot be used is NACKed with the reason and the last good version stays
//! in force (A46), and a response for any other type is ignored.

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use meshlib::MeshClient;
use meshlib::xds::XdsError;
use meshlib_xds::pb::envoy::config::cluster::v3::Cluster;
use meshlib_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use meshlib_xds::pb::envoy::config::listener::v3::Listener;
use meshlib_xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use meshlib_xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use meshlib_xds::pb::google::protobuf::Any;
use meshlib_xds::server::build::eds_cluster;
use meshlib_xds::server::{Snapshot, SnapshotServer};
use meshlib_xds::{DumpEntry, Presence, XdsClient};
use prost::{Message, Name};
use support::xds::{PythonPlane, reviews_snapshot, xds_builder, xds_client};
use support::{Backend, Traffic, TrafficReport};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Waits, at most 10 s, until `done` holds; how long it took.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    let wait = async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    start.elapsed()
}

/// The client's cached `reviews` listener, as a configuration dump shows it.
async fn listener(xds: &XdsClient) -> DumpEntry {
    xds.dump()
        .await
        .expect("the xDS client is running")
        .into_iter()
        .find(|e| e.type_url == Listener::type_url() && e.name == "reviews")
        .expect("the listener is watched")
}

/// The figures of one test, on one line.
fn figures(test: &str, traffic: TrafficReport, times: &[(&str, Duration)]) {
    let times: Vec<String> = times
        .iter()
        .map(|(what, t)| format!("{what} {} ms", t.as_millis()))
        .collect();
    eprintln!(
        "figures: {test}: {} requests, {} failed; {}",
        traffic.sent,
        traffic.failed,
        times.join(", ")
    );
}

// --- 1. killed and restarted on the same port -------------------------------

async fn a_control_plane_killed_and_restarted_fails_no_request(delta: bool) {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let server = SnapshotServer::new();
    server.set("test-node", reviews_snapshot("1", &v1, &v2, 100, 0));
    let mut plane = server.start_standalone(0, None).unwrap();
    let address = plane.address();
    // Backoff 20 ms, at most 100 ms.
    let xds = xds_client(address, delta);
    let mesh = MeshClient::from_xds(&xds, "xds:///reviews").await.unwrap();
    let traffic = Traffic::start(&mesh, "http://reviews/");
    traffic.flows("traffic flows", 50).await;

    plane.kill();
    let killed = Instant::now();
    let noticed = until("the client sees the stream gone", async || {
        listener(&xds).await.error.is_some()
    })
    .await;
    traffic
        .flows("the cached configuration keeps serving", 200)
        .await;
    assert_eq!(v2.requests(), 0, "version 1 sends nothing to v2");
    let entry = listener(&xds).await;
    assert_eq!(entry.presence, Presence::Exists, "{entry:?}");
    assert!(entry.raw.is_some(), "the cache outlives the stream");

    // The plane comes back with the configuration it had (its process state,
    // nonces and ACK log included, is new).
    let restarted = SnapshotServer::new();
    restarted.set("test-node", reviews_snapshot("1", &v1, &v2, 100, 0));
    let version = mesh.version();
    let _plane = restarted.start_standalone(address.port(), None).unwrap();
    let up = Instant::now();
    let reconnect = until("the client reconnects", async || {
        restarted.streams_opened() >= 1
    })
    .await;
    until("the client subscribes everything again", async || {
        !restarted
            .subscribed("test-node", &ClusterLoadAssignment::type_url())
            .is_empty()
    })
    .await;
    let resubscribed = up.elapsed();
    assert_eq!(
        mesh.version(),
        version,
        "the same configuration, not rebuilt"
    );

    // A change pushed after the restart applies.
    let pushed = Instant::now();
    restarted.set("test-node", reviews_snapshot("2", &v1, &v2, 0, 100));
    until("the change applies", async || mesh.version() > version).await;
    let applied = pushed.elapsed();
    let after = v2.requests();
    until("traffic moves to v2", async || v2.requests() > after + 50).await;
    let down = killed.elapsed();
    let report = traffic.stop().await;
    figures(
        if delta {
            "delta restart"
        } else {
            "sotw restart"
        },
        report,
        &[
            ("outage noticed", noticed),
            ("reconnect after restart", reconnect),
            ("resubscribed after restart", resubscribed),
            ("new config after the push", applied),
            ("whole outage", down),
        ],
    );
    assert_eq!(report.failed, 0, "{report:?}");
    // The stream works again: the watchers no longer hear of the outage.
    let entry = listener(&xds).await;
    assert_eq!(entry.error, None, "{entry:?}");
    // The longest delay is 100 ms (±20 %): a reconnect well within a second
    // is the backoff working, not a lucky poll.
    assert!(reconnect < Duration::from_secs(1), "{reconnect:?}");
    assert!(restarted.nacks().is_empty(), "{:?}", restarted.nacks());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_a_control_plane_killed_and_restarted_fails_no_request() {
    a_control_plane_killed_and_restarted_fails_no_request(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_a_control_plane_killed_and_restarted_fails_no_request() {
    a_control_plane_killed_and_restarted_fails_no_request(true).await;
}

/// The same restart, with nothing new after it: a delta plane then sends
/// nothing at all (the client offered the versions it has), so no response
/// tells the state the outage is over; the stream opening does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_a_restarted_plane_with_nothing_new_ends_the_outage_for_watchers() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let server = SnapshotServer::new();
    server.set("test-node", reviews_snapshot("1", &v1, &v2, 100, 0));
    let mut plane = server.start_standalone(0, None).unwrap();
    let address = plane.address();
    let xds = xds_client(address, true);
    let mesh = MeshClient::from_xds(&xds, "xds:///reviews").await.unwrap();
    let traffic = Traffic::start(&mesh, "http://reviews/");
    traffic.flows("traffic flows", 50).await;
    plane.kill();
    until("the client sees the stream gone", async || {
        listener(&xds).await.error.is_some()
    })
    .await;
    let restarted = SnapshotServer::new();
    restarted.set("test-node", reviews_snapshot("1", &v1, &v2, 100, 0));
    let _plane = restarted.start_standalone(address.port(), None).unwrap();
    until("the client subscribes everything again", async || {
        !restarted
            .subscribed("test-node", &ClusterLoadAssignment::type_url())
            .is_empty()
    })
    .await;
    until("the watchers no longer hear of the outage", async || {
        listener(&xds).await.error.is_none()
    })
    .await;
    assert_eq!(traffic.stop().await.failed, 0);
}

// --- 2. stalled, connection open -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_control_plane_is_found_by_keepalive_and_rejoined_when_it_resumes() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    // gRPC servers refuse pings more often than every 5 min; this one is
    // told to allow them.
    let mut plane = PythonPlane::start(
        &reviews_snapshot("1", &v1, &v2, 100, 0),
        &["--min-ping-interval-ms", "50"],
    )
    .await;
    let xds = xds_builder(plane.address(), false)
        .keepalive(Duration::from_millis(200), Duration::from_millis(300))
        .build()
        .unwrap();
    let mesh = MeshClient::from_xds(&xds, "xds:///reviews").await.unwrap();
    let traffic = Traffic::start(&mesh, "http://reviews/");
    traffic.flows("traffic flows", 50).await;
    // A window, not a synchronisation: five ping intervals of a quiet stream,
    // every ping answered, pass without a reconnect. (Without the flag above
    // the plane answers the third ping with GOAWAY `too_many_pings`, and
    // the client reconnects within this window.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        plane.logged(" stream=2 "),
        0,
        "one stream so far: {}",
        plane.log()
    );

    plane.pause();
    let noticed = until("keepalive finds the stalled plane", async || {
        listener(&xds).await.error.is_some()
    })
    .await;
    let error = listener(&xds).await.error.unwrap();
    traffic
        .flows("the cached configuration keeps serving", 200)
        .await;

    plane.resume();
    let reconnect = until("the client is back on the plane", async || {
        listener(&xds).await.error.is_none()
    })
    .await;
    assert!(
        plane
            .log()
            .lines()
            .any(|l| l.contains("send stream=") && !l.contains(" stream=1 ")),
        "the client came back on a new stream: {}",
        plane.log()
    );
    let version = mesh.version();
    plane.serve(&reviews_snapshot("2", &v1, &v2, 0, 100));
    let applied = until("the change applies", async || mesh.version() > version).await;
    let after = v2.requests();
    until("traffic moves to v2", async || v2.requests() > after + 50).await;
    let report = traffic.stop().await;
    figures(
        "stall",
        report,
        &[
            ("stall noticed", noticed),
            ("reconnect after SIGCONT", reconnect),
            ("new config after the change", applied),
        ],
    );
    eprintln!("the watch heard: {error}");
    assert_eq!(report.failed, 0, "{report:?}");
    // 200 ms to the ping, 300 ms for its answer; a margin for a loaded host.
    assert!(noticed < Duration::from_secs(3), "{noticed:?}");
    assert!(!plane.log().contains("NACK"), "{}", plane.log());
}

// --- 3. refusing the stream ------------------------------------------------

type Responses<T> =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// Refuses every ADS stream, as a control plane that is up but will not
/// serve: UNAVAILABLE for state of the world, UNIMPLEMENTED for delta (as
/// one without delta does). Notes when each attempt came.
#[derive(Clone, Default)]
struct Refusing {
    attempts: Arc<Mutex<Vec<Instant>>>,
}

const REFUSAL: &str = "refused by the test's control plane";

impl Refusing {
    fn attempts(&self) -> Vec<Instant> {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn attempt(&self) {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Refusing {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        _: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        self.attempt();
        Err(tonic::Status::unavailable(REFUSAL))
    }

    async fn delta_aggregated_resources(
        &self,
        _: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        self.attempt();
        Err(tonic::Status::unimplemented(REFUSAL))
    }
}

/// A tonic server of one ADS service on `127.0.0.1:port` (0: any), on a
/// runtime of its own, so that dropping it cuts every connection at once, as
/// a crash would.
struct OwnPlane {
    address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl OwnPlane {
    fn start<S: AggregatedDiscoveryService>(port: u16, service: S) -> OwnPlane {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = {
            let _context = runtime.enter();
            bind_reusing(port)
        };
        let address = listener.local_addr().unwrap();
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(AggregatedDiscoveryServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        OwnPlane {
            address,
            runtime: Some(runtime),
        }
    }
}

impl Drop for OwnPlane {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Binds `127.0.0.1:port` with `SO_REUSEADDR`, retrying (for at most 5 s)
/// while a killed predecessor's listener is still closing.
fn bind_reusing(port: u16) -> tokio::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        match socket.bind(([127, 0, 0, 1], port).into()) {
            Ok(()) => return socket.listen(1024).unwrap(),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot bind 127.0.0.1:{port}: {e}"),
        }
    }
}

/// The gaps between attempts: each at least `floor` (no hot loop), and the
/// last at least `last` (the delay grew, and did not reset on a refusal).
fn assert_backs_off(attempts: &[Instant], floor: Duration, last: Duration) -> Vec<Duration> {
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g >= floor), "{gaps:?}");
    assert!(gaps.last().is_some_and(|g| *g >= last), "{gaps:?}");
    gaps
}

/// A snapshot plane serving `snapshot` on `port` (where a refusing one was),
/// once `mesh` has applied what it serves; and how long that took.
async fn good_plane_at(
    port: u16,
    snapshot: meshlib_xds::server::Snapshot,
    mesh: &MeshClient,
) -> (meshlib_xds::server::StandaloneServer, Duration) {
    let server = SnapshotServer::new();
    server.set("test-node", snapshot);
    let version = mesh.version();
    let plane = server.start_standalone(port, None).unwrap();
    let took = until("the good plane's configuration applies", async || {
        mesh.version() > version
    })
    .await;
    (plane, took)
}

async fn a_refusing_plane_leaves_the_cache_serving_and_is_retried_with_backoff(delta: bool) {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let server = SnapshotServer::new();
    server.set("test-node", reviews_snapshot("1", &v1, &v2, 100, 0));
    let mut good = server.start_standalone(0, None).unwrap();
    let port = good.address().port();
    let xds = xds_client(good.address(), delta);
    let mesh = MeshClient::from_xds(&xds, "xds:///reviews").await.unwrap();
    let traffic = Traffic::start(&mesh, "http://reviews/");
    traffic.flows("traffic flows", 50).await;

    good.kill();
    let refusing = Refusing::default();
    let plane = OwnPlane::start(port, refusing.clone());
    until(
        "the client has tried the refusing plane six times",
        async || refusing.attempts().len() >= 6,
    )
    .await;
    let entry = listener(&xds).await;
    let error = entry.error.clone().unwrap_or_default();
    assert!(error.contains(REFUSAL), "the watchers hear why: {entry:?}");
    assert_eq!(entry.presence, Presence::Exists, "{entry:?}");
    assert!(entry.raw.is_some(), "{entry:?}");
    traffic
        .flows("the cached configuration keeps serving", 200)
        .await;
    // Delays of 20 ms growing ×1.6 to 100 ms, ±20 %: a refused stream
    // received nothing, so the delay does not reset.
    let gaps = assert_backs_off(
        &refusing.attempts(),
        Duration::from_millis(15),
        Duration::from_millis(75),
    );

    // The good plane returns, with a change.
    drop(plane);
    let (_good, applied) =
        good_plane_at(port, reviews_snapshot("2", &v1, &v2, 0, 100), &mesh).await;
    let after = v2.requests();
    until("traffic moves to v2", async || v2.requests() > after + 50).await;
    let report = traffic.stop().await;
    figures(
        if delta {
            "delta refusal"
        } else {
            "sotw refusal"
        },
        report,
        &[("new config after the good plane returns", applied)],
    );
    eprintln!("attempt gaps: {gaps:?}; the watch heard: {error}");
    assert_eq!(report.failed, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_a_refusing_plane_leaves_the_cache_serving_and_is_retried_with_backoff() {
    a_refusing_plane_leaves_the_cache_serving_and_is_retried_with_backoff(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_a_refusing_plane_leaves_the_cache_serving_and_is_retried_with_backoff() {
    a_refusing_plane_leaves_the_cache_serving_and_is_retried_with_backoff(true).await;
}

async fn a_refusing_plane_with_no_cache_is_reported_then_recovered_from(delta: bool) {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let refusing = Refusing::default();
    let plane = OwnPlane::start(0, refusing.clone());
    let port = plane.address.port();
    let xds = xds_client(plane.address, delta);
    let mesh = match MeshClient::from_xds(&xds, "xds:///reviews").await {
        Err(XdsError::Unavailable { reason, client }) => {
            assert!(reason.contains(REFUSAL), "{reason}");
            client
        }
        other => panic!("expected Unavailable, got {other:?}"),
    };
    let error = support::send(&mesh, "http://reviews/", &[])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), meshlib::ErrorKind::NoRoute, "{error}");
    until("the client retries", async || {
        refusing.attempts().len() >= 6
    })
    .await;
    let gaps = assert_backs_off(
        &refusing.attempts(),
        Duration::from_millis(15),
        Duration::from_millis(75),
    );

    // Once a plane serves, the same client is configured.
    drop(plane);
    let (_good, configured) =
        good_plane_at(port, reviews_snapshot("1", &v1, &v2, 100, 0), &mesh).await;
    let traffic = Traffic::start(&mesh, "http://reviews/");
    traffic.flows("traffic flows", 100).await;
    let report = traffic.stop().await;
    figures(
        if delta {
            "delta refusal, cold"
        } else {
            "sotw refusal, cold"
        },
        report,
        &[("configured after the good plane starts", configured)],
    );
    eprintln!("attempt gaps: {gaps:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(v1.requests(), report.sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_a_refusing_plane_with_no_cache_is_reported_then_recovered_from() {
    a_refusing_plane_with_no_cache_is_reported_then_recovered_from(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_a_refusing_plane_with_no_cache_is_reported_then_recovered_from() {
    a_refusing_plane_with_no_cache_is_reported_then_recovered_from(true).await;
}

// --- 3. answering garbage ----------------------------------------------------

/// A control plane the test scripts, in either variant: it answers each
/// subscription from its snapshot, pushes a new snapshot to every type
/// subscribed, sends whatever response the test injects on the open stream,
/// and keeps every request it receives.
#[derive(Clone, Default)]
struct Scripted {
    state: Arc<Mutex<ScriptedState>>,
}

#[derive(Default)]
struct ScriptedState {
    snapshot: Snapshot,
    requests: Vec<DiscoveryRequest>,
    stream: Option<mpsc::UnboundedSender<Result<DiscoveryResponse, tonic::Status>>>,
    /// type URL → the names the open stream subscribes to.
    subscribed: std::collections::BTreeMap<String, Vec<String>>,
    delta_requests: Vec<DeltaDiscoveryRequest>,
    delta_stream: Option<mpsc::UnboundedSender<Result<DeltaDiscoveryResponse, tonic::Status>>>,
    /// type URL → the names the open delta stream subscribes to.
    delta_subscribed: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    nonces: u64,
}

impl ScriptedState {
    fn respond(&mut self, type_url: &str) {
        let names = self.subscribed.get(type_url).cloned().unwrap_or_default();
        let resources = self
            .snapshot
            .resources()
            .filter(|(url, name, _)| *url == type_url && names.iter().any(|n| n == name))
            .map(|(_, _, any)| any.clone())
            .collect();
        self.nonces += 1;
        let response = DiscoveryResponse {
            version_info: self.snapshot.version().to_owned(),
            resources,
            type_url: type_url.to_owned(),
            nonce: self.nonces.to_string(),
            ..Default::default()
        };
        self.send(response);
    }

    fn send(&self, response: DiscoveryResponse) {
        if let Some(stream) = &self.stream {
            let _ = stream.send(Ok(response));
        }
    }

    /// Delta: every resource subscribed, sent again whole.
    fn respond_delta(&mut self, type_url: &str) {
        let names = self
            .delta_subscribed
            .get(type_url)
            .cloned()
            .unwrap_or_default();
        let version = self.snapshot.version().to_owned();
        let resources = self
            .snapshot
            .resources()
            .filter(|(url, name, _)| *url == type_url && names.contains(*name))
            .map(|(_, name, any)| wrapped(name, &version, Some(any.clone())))
            .collect();
        self.nonces += 1;
        let response = DeltaDiscoveryResponse {
            system_version_info: version,
            resources,
            type_url: type_url.to_owned(),
            nonce: self.nonces.to_string(),
            ..Default::default()
        };
        self.send_delta(response);
    }

    fn send_delta(&self, response: DeltaDiscoveryResponse) {
        if let Some(stream) = &self.delta_stream {
            let _ = stream.send(Ok(response));
        }
    }
}

impl Scripted {
    fn lock(&self) -> std::sync::MutexGuard<'_, ScriptedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `snapshot`, pushing it to every type subscribed.
    fn set(&self, snapshot: Snapshot) {
        let mut state = self.lock();
        state.snapshot = snapshot;
        let types: Vec<String> = state.subscribed.keys().cloned().collect();
        for type_url in types {
            state.respond(&type_url);
        }
        let types: Vec<String> = state.delta_subscribed.keys().cloned().collect();
        for type_url in types {
            state.respond_delta(&type_url);
        }
    }

    /// Sends `response` as it is on the open delta stream.
    fn inject_delta(&self, response: DeltaDiscoveryResponse) {
        self.lock().send_delta(response);
    }

    fn delta_requests(&self) -> Vec<DeltaDiscoveryRequest> {
        self.lock().delta_requests.clone()
    }

    fn on_delta_request(&self, request: DeltaDiscoveryRequest) {
        let mut state = self.lock();
        state.delta_requests.push(request.clone());
        let names = state
            .delta_subscribed
            .entry(request.type_url.clone())
            .or_default();
        let before = names.clone();
        names.extend(request.resource_names_subscribe.iter().cloned());
        for name in &request.resource_names_unsubscribe {
            names.remove(name);
        }
        if *names != before {
            state.respond_delta(&request.type_url);
        }
    }

    /// Sends `response` as it is on the open stream.
    fn inject(&self, response: DiscoveryResponse) {
        self.lock().send(response);
    }

    fn requests(&self) -> Vec<DiscoveryRequest> {
        self.lock().requests.clone()
    }

    fn on_request(&self, request: DiscoveryRequest) {
        let mut state = self.lock();
        state.requests.push(request.clone());
        let names = &request.resource_names;
        if state.subscribed.get(&request.type_url) != Some(names) {
            state
                .subscribed
                .insert(request.type_url.clone(), names.clone());
            state.respond(&request.type_url);
        }
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Scripted {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut state = self.lock();
            state.stream = Some(tx);
            state.subscribed.clear();
        }
        let (plane, mut requests) = (self.clone(), request.into_inner());
        tokio::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                plane.on_request(request);
            }
        });
        Ok(tonic::Response::new(Box::pin(
            UnboundedReceiverStream::new(rx),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut state = self.lock();
            state.delta_stream = Some(tx);
            state.delta_subscribed.clear();
        }
        let (plane, mut requests) = (self.clone(), request.into_inner());
        tokio::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                plane.on_delta_request(request);
            }
        });
        Ok(tonic::Response::new(Box::pin(
            UnboundedReceiverStream::new(rx),
        )))
    }
}

fn response(type_url: &str, version: &str, nonce: &str, resources: Vec<Any>) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.to_owned(),
        resources,
        type_url: type_url.to_owned(),
        nonce: nonce.to_owned(),
        ..Default::default()
    }
}

/// The client's answer to the response with `nonce`, among the requests
/// after the first `from`.
async fn answer(plane: &Scripted, from: usize, nonce: &str) -> DiscoveryRequest {
    until(&format!("the client answers nonce {nonce}"), async || {
        plane.requests()[from..]
            .iter()
            .any(|r| r.response_nonce == nonce)
    })
    .await;
    plane.requests()[from..]
        .iter()
        .find(|r| r.response_nonce == nonce)
        .cloned()
        .unwrap()
}

fn nack_message(request: &DiscoveryRequest) -> String {
    request
        .error_detail
        .as_ref()
        .map(|s| s.message.clone())
        .unwrap_or_else(|| panic!("expected a NACK: {request:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_garbage_from_the_control_plane_is_nacked_or_ignored_and_the_last_good_config_serves()
{
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let plane = Scripted::default();
    plane.set(reviews_snapshot("1", &v1, &v2, 100, 0));
    let own = OwnPlane::start(0, plane.clone());
    let xds = xds_client(own.address, false);
    let mesh = MeshClient::from_xds(&xds, "xds:///reviews").await.unwrap();
    let traffic = Traffic::start(&mesh, "http://reviews/");
    traffic.flows("traffic flows", 50).await;
    let version = mesh.version();
    let snapshot = reviews_snapshot("1", &v1, &v2, 100, 0);
    let listener_any = snapshot
        .resources()
        .find(|(url, _, _)| *url == Listener::type_url())
        .map(|(_, _, any)| any.clone())
        .unwrap();
    let from = plane.requests().len();

    // Types the client never subscribed to, one a real xDS type (SDS), one
    // no type at all: ignored, nothing sent back.
    let secret = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    plane.inject(response(
        secret,
        "9",
        "unsubscribed",
        vec![Any {
            type_url: secret.to_owned(),
            value: Vec::new(),
        }],
    ));
    let unknown = "type.googleapis.com/meshlib.test.NoSuchType";
    plane.inject(response(
        unknown,
        "9",
        "unknown",
        vec![Any {
            type_url: unknown.to_owned(),
            value: b"nothing".to_vec(),
        }],
    ));
    // The listener again under the nonce of the stream's first response: a
    // client takes the nonce as given (it is the server's to check) and ACKs.
    plane.inject(response(
        &Listener::type_url(),
        "1",
        "1",
        vec![listener_any.clone()],
    ));
    // (The stream's first response's own ACK came before `from`.)
    let ack = answer(&plane, from, "1").await;
    assert!(ack.error_detail.is_none(), "{ack:?}");
    assert_eq!(ack.version_info, "1");
    assert_eq!(ack.type_url, Listener::type_url());
    // Answered in order: had the two ignored responses drawn a request, it
    // would be before this ACK.
    let since = plane.requests()[from..].to_vec();
    assert!(
        since
            .iter()
            .all(|r| r.response_nonce != "unsubscribed" && r.response_nonce != "unknown"),
        "{since:?}"
    );

    // A Cluster response whose one resource says it is a Listener: NACKed,
    // naming the mismatch; as it cannot be named, no cluster is taken as
    // deleted.
    plane.inject(response(
        &Cluster::type_url(),
        "1-wrong-type",
        "wrong-type",
        vec![Any {
            type_url: Listener::type_url(),
            value: eds_cluster("reviews-v1").encode_to_vec(),
        }],
    ));
    let nack = answer(&plane, from, "wrong-type").await;
    let message = nack_message(&nack);
    assert!(
        message.contains(&format!(
            "type URL {:?} in a response for {:?}",
            Listener::type_url(),
            Cluster::type_url()
        )),
        "{message}"
    );
    assert_eq!(nack.version_info, "1", "the last good version");
    assert_eq!(nack.type_url, Cluster::type_url());

    // An assignment whose bytes do not decode.
    plane.inject(response(
        &ClusterLoadAssignment::type_url(),
        "1-garbled",
        "garbled",
        vec![Any {
            type_url: ClusterLoadAssignment::type_url(),
            value: vec![0x0a, 0xff, 0xff, 0xff],
        }],
    ));
    let nack = answer(&plane, from, "garbled").await;
    let message = nack_message(&nack);
    assert!(
        message.contains("cannot decode envoy.config.endpoint.v3.ClusterLoadAssignment"),
        "{message}"
    );
    assert_eq!(nack.version_info, "1", "the last good version");

    // The last good configuration is in force, and serving.
    traffic.flows("traffic flows after the garbage", 200).await;
    assert_eq!(mesh.version(), version, "nothing was applied");
    assert!(
        mesh.endpoints("reviews-v1").is_some_and(|e| !e.is_empty()),
        "reviews-v1 keeps its endpoints"
    );
    assert!(
        mesh.endpoints("reviews-v2").is_some_and(|e| !e.is_empty()),
        "reviews-v2 keeps its endpoints"
    );

    // And a good response after it all applies.
    let pushed = Instant::now();
    plane.set(reviews_snapshot("2", &v1, &v2, 0, 100));
    until("version 2 applies", async || mesh.version() > version).await;
    let applied = pushed.elapsed();
    let after = v2.requests();
    until("traffic moves to v2", async || v2.requests() > after + 50).await;
    let report = traffic.stop().await;
    let acks: Vec<DiscoveryRequest> = plane
        .requests()
        .into_iter()
        .filter(|r| r.version_info == "2")
        .collect();
    assert!(
        acks.iter().all(|r| r.error_detail.is_none()),
        "version 2 is ACKed: {acks:?}"
    );
    assert!(xds.dump().await.is_ok(), "the xDS client still runs");
    figures(
        "sotw garbage",
        report,
        &[("new config after the good response", applied)],
    );
    assert_eq!(report.failed, 0, "{report:?}");
}

/// A delta resource: `resource` under `name`, at `version`.
fn wrapped(name: &str, version: &str, resource: Option<Any>) -> Resource {
    Resource {
        name: name.to_owned(),
        version: version.to_owned(),
        resource,
        ..Default::default()
    }
}

fn delta_response(type_url: &str, nonce: &str, resources: Vec<Resource>) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        system_version_info: "garbage".to_owned(),
        resources,
        type_url: type_url.to_owned(),
        nonce: nonce.to_owned(),
        ..Default::default()
    }
}

/// The client's answer to the delta response with `nonce`, among the
/// requests after the first `from`.
async fn delta_answer(plane: &Scripted, from: usize, nonce: &str) -> DeltaDiscoveryRequest {
    let find = |plane: &Scripted| {
        plane.delta_requests()[from..]
            .iter()
            .find(|r| r.response_nonce == nonce)
            .cloned()
    };
    until(&format!("the client answers nonce {nonce}"), async || {
        find(plane).is_some()
    })
    .await;
    find(plane).unwrap()
}

fn delta_nack_message(request: &DeltaDiscoveryRequest) -> String {
    request
        .error_detail
        .as_ref()
        .map(|s| s.message.clone())
        .unwrap_or_else(|| panic!("expected a NACK: {request:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_garbage_from_the_control_plane_is_nacked_by_name_or_ignored_and_the_last_good_config_serves()
 {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let plane = Scripted::default();
    let snapshot = reviews_snapshot("1", &v1, &v2, 100, 0);
    plane.set(snapshot.clone());
    let own = OwnPlane::start(0, plane.clone());
    let xds = xds_client(own.address, true);
    let mesh = MeshClient::from_xds(&xds, "xds:///reviews").await.unwrap();
    let traffic = Traffic::start(&mesh, "http://reviews/");
    traffic.flows("traffic flows", 50).await;
    let version = mesh.version();
    let listener_any = snapshot
        .resources()
        .find(|(url, _, _)| *url == Listener::type_url())
        .map(|(_, _, any)| any.clone())
        .unwrap();
    let from = plane.delta_requests().len();

    // Types never subscribed: ignored.
    let secret = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    let unknown = "type.googleapis.com/meshlib.test.NoSuchType";
    for (type_url, nonce) in [(secret, "unsubscribed"), (unknown, "unknown")] {
        plane.inject_delta(delta_response(
            type_url,
            nonce,
            vec![wrapped(
                "x",
                "9",
                Some(Any {
                    type_url: type_url.to_owned(),
                    value: b"nothing".to_vec(),
                }),
            )],
        ));
    }
    // The listener again, under the stream's first nonce: ACKed as given.
    plane.inject_delta(delta_response(
        &Listener::type_url(),
        "1",
        vec![wrapped("reviews", "1", Some(listener_any))],
    ));
    let ack = delta_answer(&plane, from, "1").await;
    assert!(ack.error_detail.is_none(), "{ack:?}");
    let since = plane.delta_requests()[from..].to_vec();
    assert!(
        since
            .iter()
            .all(|r| r.response_nonce != "unsubscribed" && r.response_nonce != "unknown"),
        "{since:?}"
    );

    // Refused, each by the name its wrapper gives: a cluster labelled a
    // Listener, an assignment that does not decode, an empty wrapper.
    plane.inject_delta(delta_response(
        &Cluster::type_url(),
        "wrong-type",
        vec![wrapped(
            "reviews-v1",
            "9",
            Some(Any {
                type_url: Listener::type_url(),
                value: eds_cluster("reviews-v1").encode_to_vec(),
            }),
        )],
    ));
    let message = delta_nack_message(&delta_answer(&plane, from, "wrong-type").await);
    assert!(
        message.contains(&format!(
            "resource \"reviews-v1\": type URL {:?} in a response for {:?}",
            Listener::type_url(),
            Cluster::type_url()
        )),
        "{message}"
    );
    plane.inject_delta(delta_response(
        &ClusterLoadAssignment::type_url(),
        "garbled",
        vec![wrapped(
            "reviews-v1",
            "9",
            Some(Any {
                type_url: ClusterLoadAssignment::type_url(),
                value: vec![0x0a, 0xff, 0xff, 0xff],
            }),
        )],
    ));
    let message = delta_nack_message(&delta_answer(&plane, from, "garbled").await);
    assert!(
        message.contains(
            "resource \"reviews-v1\": cannot decode envoy.config.endpoint.v3.ClusterLoadAssignment"
        ),
        "{message}"
    );
    plane.inject_delta(delta_response(
        &Cluster::type_url(),
        "empty",
        vec![wrapped("reviews-v2", "9", None)],
    ));
    let message = delta_nack_message(&delta_answer(&plane, from, "empty").await);
    assert!(
        message.contains("resource \"reviews-v2\": the Resource wrapper has no resource"),
        "{message}"
    );
    // The watchers of each heard why; each keeps its last good copy.
    let dump = xds.dump().await.unwrap();
    for (type_url, name) in [
        (Cluster::type_url(), "reviews-v1"),
        (ClusterLoadAssignment::type_url(), "reviews-v1"),
        (Cluster::type_url(), "reviews-v2"),
    ] {
        let entry = dump
            .iter()
            .find(|e| e.type_url == type_url && e.name == name)
            .unwrap();
        assert!(entry.error.is_some() && entry.raw.is_some(), "{entry:?}");
    }

    traffic.flows("traffic flows after the garbage", 200).await;
    assert_eq!(mesh.version(), version, "nothing was applied");
    assert!(
        mesh.endpoints("reviews-v1").is_some_and(|e| !e.is_empty()),
        "reviews-v1 keeps its endpoints"
    );

    let pushed = Instant::now();
    plane.set(reviews_snapshot("2", &v1, &v2, 0, 100));
    until("version 2 applies", async || mesh.version() > version).await;
    let applied = pushed.elapsed();
    let after = v2.requests();
    until("traffic moves to v2", async || v2.requests() > after + 50).await;
    let report = traffic.stop().await;
    let later = plane.delta_requests()[from..].to_vec();
    let nacks: Vec<_> = later
        .iter()
        .filter(|r| r.error_detail.is_some())
        .map(|r| r.response_nonce.as_str())
        .collect();
    assert_eq!(nacks, ["wrong-type", "garbled", "empty"], "{later:?}");
    assert!(xds.dump().await.is_ok(), "the xDS client still runs");
    figures(
        "delta garbage",
        report,
        &[("new config after the good response", applied)],
    );
    assert_eq!(report.failed, 0, "{report:?}");
}
