//! Endpoint churn under load, on real sockets: what the churn test
//! (`tests/churn.rs`) and the soak binary (`soak.rs`) are both made of.
//!
//! - [`Backend`]: a loopback HTTP/1.1 + h2c server that can be stopped (its
//!   listener and every connection closed at once, as a pod that goes away)
//!   and started again on the same address.
//! - [`Churn`]: the control plane's side. It owns the snapshot a
//!   [`SnapshotServer`] serves (a listener, a route splitting traffic by
//!   weight over a few EDS clusters, their endpoints) and changes it one
//!   step at a time: an endpoint added, removed, drained (`DRAINING`) or
//!   marked `UNHEALTHY`, or brought back; with route churn on, new route
//!   weights and clusters leaving and rejoining the route too. An endpoint
//!   leaves as it does in a mesh: its removal is pushed, then its backend
//!   stops at once, so requests the client had sent it, or sends it before
//!   the removal applies, fail; those are the only failures allowed.
//! - [`Traffic`]: workers sending requests through the [`MeshClient`] at a
//!   steady rate, each answered after a random delay so some are in flight
//!   when their endpoint goes.
//! - A follower that watches the client's endpoint sets, so each removal's
//!   time of application is known, and each failure can be matched to the
//!   removal that explains it (see [`Cause`]).
//!
//! [`run`] puts them together for one [`Scenario`] and returns a [`Report`].

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshlib::config::HealthStatus;
use meshlib::{ErrorKind, MeshClient};
use meshlib_xds::pb::envoy::config::cluster::v3::{CircuitBreakers, circuit_breakers};
use meshlib_xds::pb::envoy::config::core::v3::HealthStatus as XdsHealth;
use meshlib_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use meshlib_xds::pb::envoy::config::route::v3 as route;
use meshlib_xds::pb::google::protobuf::{Duration as XdsDuration, UInt32Value};
use meshlib_xds::server::build::{
    api_listener, cluster_load_assignment, eds_cluster, lb_endpoint, prefix_route,
    route_configuration, virtual_host,
};
use meshlib_xds::server::{Snapshot, SnapshotServer, StandaloneServer};
use meshlib_xds::{Bootstrap, DELTA_ADS, XdsClient, XdsServer};
use prost::Message;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The node id the client and the snapshot are for.
const NODE: &str = "churn";
/// The listener, virtual host and authority requests are sent to.
const SERVICE: &str = "churn";
/// The type URL of EDS resources, whose ACKs say an update arrived.
fn eds_type_url() -> String {
    <ClusterLoadAssignment as prost::Name>::type_url()
}

/// A loopback HTTP/1.1 + h2c server answering `x-backend: NAME`, after
/// `x-delay-ms` milliseconds if the request asks; it can stop and start again
/// on the same address.
pub struct Backend {
    /// Its name, answered in `x-backend`.
    pub name: String,
    /// Where it listens while running.
    pub address: SocketAddr,
    requests: Arc<AtomicU64>,
    /// The accept loop, which owns every connection's task: aborting it
    /// closes the listener and all of them.
    running: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = self.lock().take() {
            task.abort();
        }
    }
}

impl Backend {
    /// A running backend on a free loopback port.
    pub async fn start(name: String) -> std::io::Result<Backend> {
        let listener = listen("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
        let address = listener.local_addr()?;
        let backend = Backend {
            name,
            address,
            requests: Arc::default(),
            running: Mutex::new(None),
        };
        backend.serve(listener);
        Ok(backend)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests it has answered or begun to answer.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Closes its listener and every connection, in flight or idle; returns
    /// once they are closed.
    pub async fn stop(&self) {
        let task = self.lock().take();
        if let Some(task) = task {
            task.abort();
            // Resolves once the task, and so every socket it owns, is dropped.
            let _ = task.await;
        }
    }

    /// Listens again on its address (a stopped backend's connections are
    /// closed, so only `SO_REUSEADDR` is needed for their `TIME_WAIT`).
    pub fn restart(&self) -> std::io::Result<()> {
        let listener = listen(self.address)?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&self, listener: TcpListener) {
        let (name, requests) = (Arc::<str>::from(self.name.as_str()), self.requests.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    // Reaps finished connections, so the set stays small.
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                };
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let (name, requests) = (name.clone(), requests.clone());
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    requests.fetch_add(1, Ordering::Relaxed);
                    answer(name.clone(), request)
                });
                connections.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.lock() = Some(task);
    }
}

/// Listens on `address`. A stopped backend's port is in the ephemeral
/// range, so an outgoing connection of another test may hold it for a
/// moment: binding is retried for up to 5 s before the error is returned.
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(address) {
            Ok(()) => return socket.listen(1024),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && address.port() != 0
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn answer(
    name: Arc<str>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let delay = request
        .headers()
        .get("x-delay-ms")
        .and_then(|d| d.to_str().ok()?.parse::<u64>().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::new()));
    if let Ok(value) = http::HeaderValue::from_str(&name) {
        response.headers_mut().insert("x-backend", value);
    }
    Ok(response)
}

/// A small deterministic generator (SplitMix64): a run is replayed from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One of `items`, if any.
    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.below(items.len() as u64) as usize])
    }
}

/// Where one backend stands in its cluster's assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Not in the assignment; its backend is stopped.
    Out,
    /// In the assignment with this health; its backend runs.
    In(HealthStatus),
}

/// One endpoint removal: pushed at `pushed`, its backend stopped right
/// after, and seen gone from the client's endpoint set at `applied`.
#[derive(Debug, Clone)]
struct Removal {
    cluster: usize,
    address: SocketAddr,
    pushed: Instant,
    applied: Option<Instant>,
}

/// What the churn driver and the follower share.
#[derive(Debug, Default)]
struct Removals {
    list: Mutex<Vec<Removal>>,
}

impl Removals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Removal>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct ClusterState {
    name: String,
    backends: Vec<Arc<Backend>>,
    slots: Vec<Slot>,
    /// Its weight in the route; `None` while it is out of the route.
    weight: Option<u32>,
    /// Whether the snapshot has the cluster and its assignment. A cluster
    /// leaves the route first and the snapshot only once the client no
    /// longer routes to it: the snapshot server sends CDS before RDS, so a
    /// snapshot dropping both at once would leave the old route naming a
    /// cluster that does not exist, and its requests would fail, as they
    /// would in Envoy or gRPC (the xDS protocol's "make before break": a
    /// control plane removes only clusters nothing references).
    served: bool,
}

impl ClusterState {
    fn count(&self, want: impl Fn(Slot) -> bool) -> usize {
        self.slots.iter().filter(|s| want(**s)).count()
    }

    fn indices(&self, want: impl Fn(Slot) -> bool) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| want(self.slots[*i]))
            .collect()
    }

    fn assignment(&self) -> ClusterLoadAssignment {
        let mut assignment = cluster_load_assignment(&self.name, &[]);
        let group = &mut assignment.endpoints[0];
        for (backend, slot) in self.backends.iter().zip(&self.slots) {
            if let Slot::In(health) = slot {
                let mut endpoint = lb_endpoint(backend.address);
                endpoint.health_status = xds_health(*health) as i32;
                group.lb_endpoints.push(endpoint);
            }
        }
        assignment
    }

    /// The endpoint set the client should end up with: (address, health),
    /// in the assignment's order.
    fn expected(&self) -> Vec<(SocketAddr, HealthStatus)> {
        self.backends
            .iter()
            .zip(&self.slots)
            .filter_map(|(b, s)| match s {
                Slot::In(health) => Some((b.address, *health)),
                Slot::Out => None,
            })
            .collect()
    }
}

fn xds_health(health: HealthStatus) -> XdsHealth {
    match health {
        HealthStatus::Unhealthy => XdsHealth::Unhealthy,
        HealthStatus::Draining => XdsHealth::Draining,
        HealthStatus::Unknown => XdsHealth::Unknown,
        _ => XdsHealth::Healthy,
    }
}

/// What a run does: how many clusters and backends, how many updates at
/// what pace, under what load, with or without a retry policy.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// EDS clusters behind the route.
    pub clusters: usize,
    /// Backends per cluster (each cluster owns its own).
    pub backends_per_cluster: usize,
    /// Updates pushed, one per `update_interval`.
    pub updates: u64,
    /// The pace of updates.
    pub update_interval: Duration,
    /// Whether updates also change route weights (every update) and take a
    /// cluster out of the route and back (now and then), not only endpoints.
    pub route_churn: bool,
    /// Requests per second, over all workers.
    pub requests_per_second: u32,
    /// Workers sending them.
    pub workers: u32,
    /// The most a backend waits before answering, in ms (each request draws
    /// its delay in `0..=max_delay_ms`).
    pub max_delay_ms: u64,
    /// Whether the route retries `reset,connect-failure` (3 retries).
    pub retry: bool,
    /// The clusters' retry circuit breaker (`max_retries`, retries in
    /// flight at once); `None` leaves Envoy's default, 3.
    pub max_retries: Option<u32>,
    /// The seed of every random choice.
    pub seed: u64,
    /// Whether the client speaks delta (incremental) xDS rather than
    /// state of the world.
    pub delta: bool,
}

impl Scenario {
    /// The soak's: three clusters of 8 backends behind a route whose weights
    /// change with every update, one every 100 ms, for `minutes`; 200
    /// requests/s, retried on `reset,connect-failure`.
    pub fn soak(minutes: u64, seed: u64) -> Self {
        Scenario {
            clusters: 3,
            backends_per_cluster: 8,
            updates: minutes * 600,
            update_interval: Duration::from_millis(100),
            route_churn: true,
            requests_per_second: 200,
            workers: 4,
            max_delay_ms: 20,
            retry: true,
            max_retries: Some(64),
            seed,
            delta: false,
        }
    }

    /// Issue 10's churn: 20 backends in one cluster, 1,000 EDS updates at
    /// 100/s, 400 requests/s over 4 workers.
    pub fn endpoint_churn(retry: bool) -> Self {
        Scenario {
            clusters: 1,
            backends_per_cluster: 20,
            updates: 1000,
            update_interval: Duration::from_millis(10),
            route_churn: false,
            requests_per_second: 400,
            workers: 4,
            max_delay_ms: 20,
            retry,
            // One removal cuts every request in flight to its endpoint at
            // once: under Envoy's default of 3 retries in flight, the 4th
            // is refused and fails.
            max_retries: retry.then_some(64),
            seed: 10,
            delta: false,
        }
    }
}

/// Why a request failed, as the run attributes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// It was sent to an endpoint whose removal had been pushed and whose
    /// backend had stopped, before the removal reached the client: the
    /// connection was refused (`ErrorKind::Connect`).
    RefusedByRemovedEndpoint,
    /// It was in flight to an endpoint when the endpoint was removed and its
    /// backend stopped (`ErrorKind::Upstream`).
    CutByRemovedEndpoint,
    /// Nothing explains it: the bug the run looks for.
    Unexplained,
}

/// One failed request.
#[derive(Debug, Clone)]
pub struct Failure {
    /// When it was sent.
    pub start: Instant,
    /// When it failed.
    pub end: Instant,
    /// The error's kind.
    pub kind: ErrorKind,
    /// The error as displayed.
    pub message: String,
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered 2xx.
    pub succeeded: u64,
    /// Failed requests by cause.
    pub failed: BTreeMap<Cause, u64>,
    /// The unexplained failures (at most the first 20).
    pub unexplained: Vec<Failure>,
    /// The first error of each cause, as displayed.
    pub samples: BTreeMap<Cause, String>,
    /// Updates pushed.
    pub updates: u64,
    /// Endpoint removals among them.
    pub removals: u64,
    /// EDS responses the client ACKed (SotW: updates arriving while one is
    /// unanswered are folded into the next response, as xDS allows).
    pub eds_acks: u64,
    /// Retries the clusters' circuit breakers refused (the clusters in
    /// force at the end, since their stacks were built).
    pub retries_refused: u64,
    /// NACKs the client sent.
    pub nacks: u64,
    /// The first NACK's reason.
    pub first_nack: Option<String>,
    /// The version of the last update pushed.
    pub last_version: String,
    /// Whether the client ACKed `last_version` for EDS; `None` over delta,
    /// whose ACKs carry no version.
    pub last_version_acked: Option<bool>,
    /// Whether the client's xDS cache holds, byte for byte, the assignments
    /// last pushed.
    pub last_update_held: bool,
    /// From pushing the last update to the client's endpoint sets matching it.
    pub last_update_applied_in: Option<Duration>,
    /// The slowest removal, from its push to the client's endpoint set.
    pub removal_apply_max: Duration,
    /// The median of the same.
    pub removal_apply_median: Duration,
    /// After the churn: requests sent to check where traffic lands.
    pub final_requests: u64,
    /// Of those, how many reached a backend outside the final healthy set.
    pub final_misrouted: u64,
    /// Requests the backends outside the final healthy set answered during
    /// that check (drained and unhealthy ones still run).
    pub final_reached_unhealthy: u64,
    /// How long the churn ran.
    pub elapsed: Duration,
    /// When the last version was not ACKed: what the client held.
    pub diagnosis: Option<String>,
}

impl Report {
    /// Failed requests, all causes.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Failed requests of `cause`.
    pub fn failed_by(&self, cause: Cause) -> u64 {
        self.failed.get(&cause).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "requests: {} sent, {} succeeded, {} failed ({} refused by a removed endpoint, {} cut by a removed endpoint, {} unexplained); {} retries refused by circuit breakers",
            self.sent,
            self.succeeded,
            self.failed_total(),
            self.failed_by(Cause::RefusedByRemovedEndpoint),
            self.failed_by(Cause::CutByRemovedEndpoint),
            self.failed_by(Cause::Unexplained),
            self.retries_refused,
        )?;
        writeln!(
            f,
            "updates: {} pushed in {:.1?} ({} endpoint removals), {} EDS ACKs, {} NACKs, last version {} ACKed: {}, held: {}",
            self.updates,
            self.elapsed,
            self.removals,
            self.eds_acks,
            self.nacks,
            self.last_version,
            self.last_version_acked
                .map_or("n/a (delta)".to_owned(), |a| a.to_string()),
            self.last_update_held
        )?;
        writeln!(
            f,
            "apply: last update in {:?}; removals median {:?}, max {:?}",
            self.last_update_applied_in, self.removal_apply_median, self.removal_apply_max
        )?;
        write!(
            f,
            "after: {} requests, {} outside the final healthy set, {} answered by drained/unhealthy backends",
            self.final_requests, self.final_misrouted, self.final_reached_unhealthy
        )?;
        if let Some(diagnosis) = &self.diagnosis {
            write!(f, "\ndiagnosis: {diagnosis}")?;
        }
        for (cause, message) in &self.samples {
            write!(f, "\nfirst {cause:?}: {message}")?;
        }
        for failure in &self.unexplained {
            write!(f, "\nunexplained: {:?}: {}", failure.kind, failure.message)?;
        }
        Ok(())
    }
}

/// The control plane's side: the state of every cluster and the snapshot
/// made of it.
pub struct Churn {
    server: SnapshotServer,
    clusters: Vec<ClusterState>,
    version: u64,
    retry: bool,
    max_retries: Option<u32>,
    route_churn: bool,
    rng: Rng,
    removals: Arc<Removals>,
    /// Removals pushed so far.
    removed: u64,
}

impl std::fmt::Debug for Churn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Churn")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// No change may leave a cluster in the route with fewer healthy endpoints.
const MIN_HEALTHY: usize = 3;

impl Churn {
    /// The clusters' backends started, each cluster with half of its
    /// backends in its assignment, all healthy, at version 1.
    pub async fn start(server: SnapshotServer, scenario: &Scenario) -> std::io::Result<Churn> {
        let mut clusters = Vec::new();
        for c in 0..scenario.clusters {
            let name = format!("{SERVICE}-{c}");
            let mut backends = Vec::new();
            let mut slots = Vec::new();
            for b in 0..scenario.backends_per_cluster {
                let backend = Backend::start(format!("{name}-b{b:02}")).await?;
                let slot = if b % 2 == 0 || b < MIN_HEALTHY {
                    Slot::In(HealthStatus::Healthy)
                } else {
                    backend.stop().await;
                    Slot::Out
                };
                backends.push(Arc::new(backend));
                slots.push(slot);
            }
            clusters.push(ClusterState {
                name,
                backends,
                slots,
                weight: Some(1),
                served: true,
            });
        }
        let churn = Churn {
            server,
            clusters,
            version: 1,
            retry: scenario.retry,
            max_retries: scenario.max_retries,
            route_churn: scenario.route_churn,
            rng: Rng::new(scenario.seed),
            removals: Arc::default(),
            removed: 0,
        };
        churn.server.set(NODE, churn.snapshot());
        Ok(churn)
    }

    /// The names of every cluster, in the route or not.
    pub fn cluster_names(&self) -> Vec<String> {
        self.clusters.iter().map(|c| c.name.clone()).collect()
    }

    /// The current version.
    pub fn version(&self) -> String {
        self.version.to_string()
    }

    /// The snapshot of the current state.
    pub fn snapshot(&self) -> Snapshot {
        let weights: Vec<(&str, u32)> = self
            .clusters
            .iter()
            .filter_map(|c| Some((c.name.as_str(), c.weight?)))
            .collect();
        let mut all = prefix_route("all", "/", &weights);
        if self.retry
            && let Some(route::route::Action::Route(action)) = &mut all.action
        {
            action.retry_policy = Some(route::RetryPolicy {
                retry_on: "reset,connect-failure".to_owned(),
                num_retries: Some(UInt32Value { value: 3 }),
                retry_back_off: Some(route::retry_policy::RetryBackOff {
                    base_interval: Some(XdsDuration {
                        seconds: 0,
                        nanos: 5_000_000,
                    }),
                    max_interval: None,
                }),
                ..Default::default()
            });
        }
        let mut snapshot = Snapshot::new(self.version())
            .with(api_listener(SERVICE, "churn-routes"))
            .with(route_configuration(
                "churn-routes",
                vec![virtual_host(SERVICE, &[SERVICE], vec![all])],
            ));
        for cluster in self.clusters.iter().filter(|c| c.served) {
            let mut eds = eds_cluster(&cluster.name);
            if let Some(max) = self.max_retries {
                eds.circuit_breakers = Some(CircuitBreakers {
                    thresholds: vec![circuit_breakers::Thresholds {
                        max_retries: Some(UInt32Value { value: max }),
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            }
            snapshot = snapshot.with(eds).with(cluster.assignment());
        }
        snapshot
    }

    /// Whether the client may still be sending to `address` of `cluster`
    /// after its removal: a removed backend is not started again until its
    /// removal has reached the client, so each failure has one removal to
    /// answer for it.
    fn removal_pending(&self, cluster: usize, address: SocketAddr) -> bool {
        self.removals
            .lock()
            .iter()
            .any(|r| r.cluster == cluster && r.address == address && r.applied.is_none())
    }

    /// One random change, pushed; with route churn, new weights too.
    /// `mesh` says which clusters the client no longer routes to.
    pub async fn step(&mut self, mesh: &MeshClient) -> std::io::Result<()> {
        let routed: Vec<usize> = (0..self.clusters.len())
            .filter(|c| self.clusters[*c].weight.is_some())
            .collect();
        if self.route_churn {
            self.churn_routes(&routed, mesh);
        }
        let Some(c) = self.rng.pick(&routed) else {
            return self.push();
        };
        let healthy = |s: Slot| s == Slot::In(HealthStatus::Healthy);
        let is_in = |s: Slot| s != Slot::Out;
        let cluster = &self.clusters[c];
        let spare_healthy = cluster.count(healthy) > MIN_HEALTHY;
        // Out slots whose removal reached the client may come back.
        let returnable: Vec<usize> = cluster
            .indices(|s| s == Slot::Out)
            .into_iter()
            .filter(|i| !self.removal_pending(c, cluster.backends[*i].address))
            .collect();
        let impaired = cluster.indices(|s| is_in(s) && !healthy(s));
        let removable: Vec<usize> = if spare_healthy {
            cluster.indices(is_in)
        } else {
            impaired.clone()
        };
        match self.rng.below(5) {
            0 | 1 if !returnable.is_empty() => {
                let i = self.rng.pick(&returnable).unwrap_or_default();
                self.clusters[c].backends[i].restart()?;
                self.clusters[c].slots[i] = Slot::In(HealthStatus::Healthy);
                self.push()
            }
            0..=2 if !removable.is_empty() => {
                let i = self.rng.pick(&removable).unwrap_or_default();
                self.clusters[c].slots[i] = Slot::Out;
                let backend = self.clusters[c].backends[i].clone();
                self.removals.lock().push(Removal {
                    cluster: c,
                    address: backend.address,
                    pushed: Instant::now(),
                    applied: None,
                });
                self.removed += 1;
                self.push()?;
                // The pod goes away as its removal goes out.
                backend.stop().await;
                Ok(())
            }
            3 if spare_healthy => {
                let healthy = self.clusters[c].indices(healthy);
                let i = self.rng.pick(&healthy).unwrap_or_default();
                let health = if self.rng.below(2) == 0 {
                    HealthStatus::Draining
                } else {
                    HealthStatus::Unhealthy
                };
                self.clusters[c].slots[i] = Slot::In(health);
                self.push()
            }
            _ => {
                if let Some(i) = self.rng.pick(&impaired) {
                    self.clusters[c].slots[i] = Slot::In(HealthStatus::Healthy);
                }
                self.push()
            }
        }
    }

    /// New route weights; now and then a cluster leaves the route or comes
    /// back. One that left leaves the snapshot once `mesh` has dropped it.
    fn churn_routes(&mut self, routed: &[usize], mesh: &MeshClient) {
        for cluster in &mut self.clusters {
            if cluster.weight.is_none() && cluster.served && mesh.endpoints(&cluster.name).is_none()
            {
                cluster.served = false;
            }
        }
        if self.rng.below(20) == 0 {
            let c = self.rng.below(self.clusters.len() as u64) as usize;
            if self.clusters[c].weight.is_none() {
                self.clusters[c].weight = Some(1);
                self.clusters[c].served = true;
            } else if routed.len() > 1 {
                self.clusters[c].weight = None;
            }
        }
        for cluster in &mut self.clusters {
            if let Some(weight) = &mut cluster.weight {
                *weight = 1 + self.rng.below(100) as u32;
            }
        }
    }

    fn push(&mut self) -> std::io::Result<()> {
        self.version += 1;
        self.server.set(NODE, self.snapshot());
        Ok(())
    }

    /// Whether `mesh`'s endpoint sets are those of the current state.
    pub fn applied(&self, mesh: &MeshClient) -> bool {
        self.clusters.iter().all(|cluster| {
            let Some(expected) = cluster.weight.map(|_| cluster.expected()) else {
                return true;
            };
            let Some(endpoints) = mesh.endpoints(&cluster.name) else {
                return false;
            };
            let now: Vec<(SocketAddr, HealthStatus)> =
                endpoints.iter().map(|e| (e.address, e.health)).collect();
            now == expected
        })
    }

    /// The backends that may take traffic now, and the others still running.
    fn final_sets(&self) -> (BTreeSet<String>, Vec<Arc<Backend>>) {
        let mut healthy = BTreeSet::new();
        let mut others = Vec::new();
        for cluster in &self.clusters {
            for (backend, slot) in cluster.backends.iter().zip(&cluster.slots) {
                match slot {
                    Slot::In(HealthStatus::Healthy) if cluster.weight.is_some() => {
                        healthy.insert(backend.name.clone());
                    }
                    Slot::Out => {}
                    _ => others.push(backend.clone()),
                }
            }
        }
        (healthy, others)
    }
}

/// The follower: every millisecond, marks the removals the client's
/// endpoint sets no longer show (a cluster the configuration dropped shows
/// none).
fn follow(mesh: MeshClient, names: Vec<String>, removals: Arc<Removals>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        loop {
            tick.tick().await;
            let now = Instant::now();
            let mut list = removals.lock();
            for removal in list.iter_mut().filter(|r| r.applied.is_none()) {
                let gone = mesh
                    .endpoints(&names[removal.cluster])
                    .is_none_or(|e| e.iter().all(|e| e.address != removal.address));
                if gone {
                    removal.applied = Some(now);
                }
            }
        }
    })
}

/// Requests flowing through a client from several workers at a steady rate.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    succeeded: AtomicU64,
    /// Failures not yet attributed.
    failures: Mutex<Vec<Failure>>,
}

impl Traffic {
    /// `scenario.workers` workers sending `GET http://churn/` through `mesh`,
    /// `requests_per_second` in all, each request sent on its own task so a
    /// slow answer does not slow the rate.
    pub fn start(mesh: &MeshClient, scenario: &Scenario) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let period = Duration::from_secs_f64(
            f64::from(scenario.workers) / f64::from(scenario.requests_per_second.max(1)),
        );
        let workers = (0..scenario.workers)
            .map(|w| {
                let (mesh, stop, stats) = (mesh.clone(), stop.clone(), stats.clone());
                let mut rng = Rng::new(scenario.seed ^ ((u64::from(w) + 1) << 32));
                let max_delay = scenario.max_delay_ms;
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut requests = tokio::task::JoinSet::new();
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        while requests.try_join_next().is_some() {}
                        let delay = rng.below(max_delay + 1);
                        let (mesh, stats) = (mesh.clone(), stats.clone());
                        stats.sent.fetch_add(1, Ordering::Relaxed);
                        requests.spawn(async move {
                            let start = Instant::now();
                            match send(&mesh, delay).await {
                                Ok(_) => {
                                    stats.succeeded.fetch_add(1, Ordering::Relaxed);
                                }
                                Err((kind, message)) => {
                                    let failure = Failure {
                                        start,
                                        end: Instant::now(),
                                        kind,
                                        message,
                                    };
                                    stats
                                        .failures
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .push(failure);
                                }
                            }
                        });
                    }
                    while requests.join_next().await.is_some() {}
                })
            })
            .collect();
        Traffic {
            stop,
            workers,
            stats,
        }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.stats.sent.load(Ordering::Relaxed)
    }

    /// Stops sending and waits for the requests in flight.
    pub async fn stop(&mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.await;
        }
        (
            self.stats.sent.load(Ordering::Relaxed),
            self.stats.succeeded.load(Ordering::Relaxed),
        )
    }

    fn take_failures(&self) -> Vec<Failure> {
        std::mem::take(
            &mut *self
                .stats
                .failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// Sends one request; the backend that answered, or the error's kind and text.
pub async fn send(mesh: &MeshClient, delay_ms: u64) -> Result<String, (ErrorKind, String)> {
    let request = Request::get(format!("http://{SERVICE}/"))
        .header("x-delay-ms", delay_ms)
        .body(Empty::<Bytes>::new())
        .map_err(|e| (ErrorKind::NoRoute, e.to_string()))?;
    let response = mesh
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| (e.kind(), e.to_string()))?;
    let status = response.status();
    let backend = response
        .headers()
        .get("x-backend")
        .and_then(|b| b.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // The body ends the exchange; a connection cut now fails it too.
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| (ErrorKind::Upstream, format!("reading the body: {e}")))?;
    if !status.is_success() {
        return Err((ErrorKind::Upstream, format!("{backend} answered {status}")));
    }
    Ok(backend)
}

/// The endpoint address an error names (`… endpoint 127.0.0.1:8080…`).
fn named_endpoint(message: &str) -> Option<SocketAddr> {
    let (_, rest) = message.rsplit_once("endpoint ")?;
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    rest[..end].trim_end_matches(':').parse().ok()
}

/// A removal explains a failure that names its endpoint, of the kind a
/// removal causes, that ended after the removal was pushed and began before
/// the client had applied it (give or take the follower's tick).
fn attribute(failure: &Failure, removals: &[Removal]) -> Cause {
    const TICK: Duration = Duration::from_millis(2);
    let Some(address) = named_endpoint(&failure.message) else {
        return Cause::Unexplained;
    };
    let explained = removals.iter().any(|r| {
        r.address == address
            && failure.end >= r.pushed
            && r.applied
                .is_none_or(|applied| failure.start <= applied + TICK)
    });
    match failure.kind {
        ErrorKind::Connect if explained => Cause::RefusedByRemovedEndpoint,
        ErrorKind::Upstream if explained => Cause::CutByRemovedEndpoint,
        _ => Cause::Unexplained,
    }
}

/// An xDS client for the snapshot server at `address`, quick to reconnect.
pub fn xds_client(address: SocketAddr, delta: bool) -> Result<XdsClient, BoxError> {
    let mut bootstrap = Bootstrap::new(&address.to_string(), NODE)?;
    if delta {
        let server = XdsServer::insecure(&address.to_string())?.with_feature(DELTA_ADS);
        bootstrap.servers = vec![server];
    }
    Ok(XdsClient::builder(bootstrap)
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()?)
}

/// Everything a run is made of, started: the control plane, the backends,
/// the client and the follower.
pub struct Harness {
    /// The control plane's state.
    pub churn: Churn,
    /// The client under test.
    pub mesh: MeshClient,
    server: SnapshotServer,
    _plane: StandaloneServer,
    _xds: XdsClient,
    follower: JoinHandle<()>,
    report: Report,
    /// Each removal's time from push to the client's set, in µs (4 bytes
    /// each: a 30-minute soak keeps tens of thousands).
    apply_times: Vec<u32>,
    /// The version of the latest EDS ACK.
    last_eds_ack: String,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// How long anything observable is waited for.
const BOUND: Duration = Duration::from_secs(10);

/// Waits, at most [`BOUND`], until `done` holds, looking every millisecond;
/// how long it took.
async fn until(what: &str, mut done: impl FnMut() -> bool) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while !done() {
        if start.elapsed() > BOUND {
            return Err(format!("timed out after {BOUND:?} waiting until {what}").into());
        }
        tick.tick().await;
    }
    Ok(start.elapsed())
}

impl Harness {
    /// Starts the control plane on its own runtime and thread (as a control
    /// plane is another process), the backends, and a client from xDS.
    pub async fn start(scenario: &Scenario) -> Result<Harness, BoxError> {
        let server = SnapshotServer::new();
        let churn = Churn::start(server.clone(), scenario).await?;
        let plane = server.start_standalone(0, None)?;
        let xds = xds_client(plane.address(), scenario.delta)?;
        let mesh = MeshClient::from_xds(&xds, &format!("xds:///{SERVICE}")).await?;
        until("the first configuration applies", || churn.applied(&mesh)).await?;
        let follower = follow(mesh.clone(), churn.cluster_names(), churn.removals.clone());
        Ok(Harness {
            churn,
            mesh,
            server,
            _plane: plane,
            _xds: xds,
            follower,
            report: Report::default(),
            apply_times: Vec::new(),
            last_eds_ack: String::new(),
        })
    }

    /// Folds `acks` into the report, keeping the version EDS last ACKed.
    fn fold_acks(&mut self, acks: Vec<meshlib_xds::server::Ack>) {
        let eds = eds_type_url();
        for ack in acks {
            if let Some(error) = ack.error {
                self.report.nacks += 1;
                self.report.first_nack.get_or_insert(error);
            } else if ack.type_url == eds {
                self.report.eds_acks += 1;
                self.last_eds_ack = ack.version_info;
            }
        }
    }

    /// Attributes the failures that ended more than `settled` ago (by then
    /// the removal that explains one has been seen applied), and forgets
    /// removals applied longer ago than `keep`.
    fn settle(&mut self, traffic: &Traffic, settled: Duration, keep: Duration) {
        let now = Instant::now();
        let mut failures = traffic.take_failures();
        let (ready, later): (Vec<_>, Vec<_>) = failures
            .drain(..)
            .partition(|f| now.duration_since(f.end) >= settled);
        if !later.is_empty() {
            let mut pending = traffic
                .stats
                .failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            pending.extend(later);
        }
        let mut removals = self.churn.removals.lock();
        for failure in ready {
            let cause = attribute(&failure, &removals);
            *self.report.failed.entry(cause).or_default() += 1;
            self.report
                .samples
                .entry(cause)
                .or_insert_with(|| failure.message.clone());
            if cause == Cause::Unexplained && self.report.unexplained.len() < 20 {
                self.report.unexplained.push(failure);
            }
        }
        let apply_times = &mut self.apply_times;
        removals.retain(|r| match r.applied {
            Some(applied) if now.duration_since(applied) >= keep => {
                let micros = applied.duration_since(r.pushed).as_micros();
                apply_times.push(u32::try_from(micros).unwrap_or(u32::MAX));
                false
            }
            _ => true,
        });
    }

    fn record_apply_times(&mut self) {
        self.apply_times.sort_unstable();
        let micros = |m: Option<&u32>| Duration::from_micros(m.copied().unwrap_or(0).into());
        self.report.removal_apply_max = micros(self.apply_times.last());
        self.report.removal_apply_median = micros(self.apply_times.get(self.apply_times.len() / 2));
    }

    /// Runs `scenario`'s churn under its traffic and checks where traffic
    /// lands after; `every_second` is called once a second with the report
    /// so far.
    pub async fn run(
        &mut self,
        scenario: &Scenario,
        mut every_second: impl FnMut(&Report),
    ) -> Result<Report, BoxError> {
        let mut traffic = Traffic::start(&self.mesh, scenario);
        let start = Instant::now();
        let mut tick = tokio::time::interval(scenario.update_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let per_second = (Duration::from_secs(1).as_nanos()
            / scenario.update_interval.as_nanos().max(1))
        .max(1) as u64;
        for update in 1..=scenario.updates {
            tick.tick().await;
            self.churn.step(&self.mesh).await?;
            if update % per_second == 0 {
                let acks = self.server.take_acks();
                self.fold_acks(acks);
                self.settle(&traffic, Duration::from_secs(5), Duration::from_secs(10));
                self.report.sent = traffic.sent();
                self.report.updates = update;
                every_second(&self.report);
            }
        }
        let pushed = Instant::now();
        self.report.elapsed = pushed.duration_since(start);
        self.report.updates = scenario.updates;
        self.report.removals = self.churn.removed;
        self.report.last_version = self.churn.version();
        let (churn, mesh) = (&self.churn, &self.mesh);
        let applied = until("the last update applies", || churn.applied(mesh)).await;
        match applied {
            Ok(took) => self.report.last_update_applied_in = Some(took),
            Err(error) => return Err(format!("{error}; {}", self.diagnose().await).into()),
        }
        let (sent, succeeded) = traffic.stop().await;
        self.report.sent = sent;
        self.report.succeeded = succeeded;
        // Every removal has been seen applied now; attribute everything.
        until("every removal is seen applied", || {
            self.churn
                .removals
                .lock()
                .iter()
                .all(|r| r.applied.is_some())
        })
        .await?;
        self.settle(&traffic, Duration::ZERO, Duration::ZERO);
        let last = self.churn.version();
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        loop {
            let acks = self.server.take_acks();
            self.fold_acks(acks);
            let acked = scenario.delta || self.last_eds_ack == last;
            if acked && self.holds_last().await || start.elapsed() > BOUND {
                break;
            }
            tick.tick().await;
        }
        self.report.last_version_acked = (!scenario.delta).then(|| self.last_eds_ack == last);
        self.report.last_update_held = self.holds_last().await;
        if self.report.last_version_acked == Some(false) || !self.report.last_update_held {
            self.report.diagnosis = Some(format!(
                "EDS last ACKed version {:?}; {}",
                self.last_eds_ack,
                self.diagnose().await
            ));
        }
        self.check_final_set().await;
        self.record_apply_times();
        self.report.retries_refused = self
            .churn
            .cluster_names()
            .iter()
            .filter_map(|name| self.mesh.retries_refused(name))
            .sum();
        Ok(std::mem::take(&mut self.report))
    }

    /// Whether the client's xDS cache holds the assignments of the current
    /// state, as encoded.
    async fn holds_last(&self) -> bool {
        let Ok(dump) = self._xds.dump().await else {
            return false;
        };
        let eds = eds_type_url();
        self.churn.clusters.iter().filter(|c| c.served).all(|c| {
            let pushed = c.assignment().encode_to_vec();
            dump.iter().any(|e| {
                e.type_url == eds
                    && e.name == c.name
                    && e.raw.as_ref().is_some_and(|raw| raw.value == pushed)
            })
        })
    }

    /// What the client holds, against what was pushed: for a failure's message.
    async fn diagnose(&self) -> String {
        let eds = eds_type_url();
        let held: Vec<String> = match self._xds.dump().await {
            Ok(dump) => dump
                .iter()
                .filter(|e| e.type_url == eds)
                .map(|e| format!("{} v{} {:?} {:?}", e.name, e.version, e.presence, e.error))
                .collect(),
            Err(error) => vec![format!("no dump: {error}")],
        };
        let sets: Vec<String> = self
            .churn
            .clusters
            .iter()
            .map(|c| {
                let now: Vec<_> = self
                    .mesh
                    .endpoints(&c.name)
                    .unwrap_or_default()
                    .iter()
                    .map(|e| (e.address.port(), e.health))
                    .collect();
                let want: Vec<_> = c.expected().iter().map(|(a, h)| (a.port(), *h)).collect();
                format!("{}: client {now:?}, pushed {want:?}", c.name)
            })
            .collect();
        format!(
            "pushed version {}; the client's EDS cache: {held:?}; {sets:?}",
            self.churn.version()
        )
    }

    /// Sends 200 requests after the churn: each must reach a healthy backend
    /// of the final set, and none the drained or unhealthy ones.
    async fn check_final_set(&mut self) {
        let (healthy, others) = self.churn.final_sets();
        let before: u64 = others.iter().map(|b| b.requests()).sum();
        for _ in 0..200 {
            self.report.final_requests += 1;
            match send(&self.mesh, 0).await {
                Ok(backend) if healthy.contains(&backend) => {}
                _ => self.report.final_misrouted += 1,
            }
        }
        let after: u64 = others.iter().map(|b| b.requests()).sum();
        self.report.final_reached_unhealthy = after - before;
    }
}

/// Starts a [`Harness`] for `scenario` and runs it.
pub async fn run(
    scenario: &Scenario,
    every_second: impl FnMut(&Report),
) -> Result<Report, BoxError> {
    let mut harness = Harness::start(scenario).await?;
    harness.run(scenario, every_second).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "127.0.0.1:4100";

    fn failure(kind: ErrorKind, message: &str, start: Instant, end: Instant) -> Failure {
        Failure {
            start,
            end,
            kind,
            message: message.to_owned(),
        }
    }

    #[test]
    fn the_endpoint_an_error_names_is_read_from_its_message() {
        let cut = "upstream error: cluster \"churn-0\" endpoint 127.0.0.1:4100: client error (SendRequest)";
        assert_eq!(named_endpoint(cut), Some(A.parse().unwrap()));
        let retried = "connect failed: gave up after 4 attempts; the last failed: cluster \"c\" endpoint 127.0.0.1:4100";
        assert_eq!(named_endpoint(retried), Some(A.parse().unwrap()));
        assert_eq!(named_endpoint("no healthy endpoint: cluster \"c\""), None);
    }

    #[test]
    fn a_failure_is_explained_only_by_a_removal_of_its_endpoint_while_it_was_in_flight() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let removal = Removal {
            cluster: 0,
            address: A.parse().unwrap(),
            pushed: ms(100),
            applied: Some(ms(105)),
        };
        let removals = [removal];
        let cut = format!("upstream error: cluster \"churn-0\" endpoint {A}: closed");
        let refused = format!("connect failed: cluster \"churn-0\" endpoint {A}: refused");
        // In flight when it was pushed, or sent before it applied.
        assert_eq!(
            attribute(
                &failure(ErrorKind::Upstream, &cut, ms(90), ms(101)),
                &removals
            ),
            Cause::CutByRemovedEndpoint
        );
        assert_eq!(
            attribute(
                &failure(ErrorKind::Connect, &refused, ms(103), ms(104)),
                &removals
            ),
            Cause::RefusedByRemovedEndpoint
        );
        // Ended before the removal, or sent well after it applied.
        assert_eq!(
            attribute(
                &failure(ErrorKind::Upstream, &cut, ms(90), ms(99)),
                &removals
            ),
            Cause::Unexplained
        );
        assert_eq!(
            attribute(
                &failure(ErrorKind::Connect, &refused, ms(120), ms(121)),
                &removals
            ),
            Cause::Unexplained
        );
        // Another endpoint, or another kind of failure.
        let other = cut.replace("4100", "4101");
        assert_eq!(
            attribute(
                &failure(ErrorKind::Upstream, &other, ms(90), ms(101)),
                &removals
            ),
            Cause::Unexplained
        );
        assert_eq!(
            attribute(
                &failure(ErrorKind::Timeout, &cut, ms(90), ms(101)),
                &removals
            ),
            Cause::Unexplained
        );
    }
}
