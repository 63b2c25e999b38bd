//! Load balancing over one cluster's endpoints: priority levels, locality
//! weights, and the cluster's policy within them.
//!
//! A request's endpoint is picked in three steps, as Envoy's load balancing
//! architecture docs describe and gRPC's xDS policies (A56 `priority`,
//! `weighted_target`, then the endpoint picker) implement:
//!
//! 1. **Priority.** Endpoints are grouped by `priority` (0 highest). Each level
//!    takes a share of the traffic from its healthy share of endpoints and the
//!    cluster's `overprovisioning_factor` (see Envoy's "priority levels"): a
//!    level keeps everything while at least 1/1.4 of it is healthy, and spills
//!    the rest to the next. There is no panic mode (gRPC has none): a cluster
//!    with no healthy endpoint fails the request with
//!    [`ErrorKind::NoEndpoints`].
//! 2. **Locality.** With `locality_weights`, a locality of the chosen level is
//!    picked in proportion to its weight scaled by its health (Envoy's
//!    effective locality weight); localities not listed take no traffic.
//! 3. **Endpoint.** The cluster's [`LbPolicy`](crate::config::LbPolicy) picks among the healthy
//!    endpoints of the group: `round_robin` (smooth weighted), `random`
//!    (weighted), `least_request` (power of `choice_count` choices on requests
//!    in flight), `ring_hash` and `maglev` (consistent hashing on the request's
//!    [`RequestHash`], one ring or table per level with endpoint weights
//!    multiplied by locality weights, as gRPC builds them), `peak_ewma`
//!    (power of two choices on latency, as linkerd2-proxy balances).
//!
//! Endpoints whose health is `unhealthy` or `draining` take no traffic (EDS
//! semantics), and neither does an endpoint whose last connection attempt
//! failed, until a probe on a background task connects to it again with
//! gRPC's connection backoff: it counts as unhealthy above, so a priority
//! whose endpoints all refuse connections fails over to the next and takes
//! its traffic back when they answer, as gRPC's `priority` policy does on
//! `TRANSIENT_FAILURE`. Everything above is computed when the endpoints change, never
//! per request: a [`Balancer`] holds the result behind an `ArcSwap`, and a
//! pick is one atomic load of it plus a few atomics and random draws, with no
//! lock. Each endpoint keeps its client (and so its connections) and its load
//! (requests in flight, latency estimate) across updates while its address
//! stays.
//!
//! ## Where this differs from Envoy or gRPC
//!
//! - An endpoint that refuses connections is treated as unhealthy, so a
//!   priority with some of its endpoints refusing spills part of its traffic
//!   by the overprovisioning factor, as Envoy does for hosts its health
//!   checks failed; gRPC keeps a priority whole while any of its endpoints
//!   connects. With none of them connecting the two agree.
//! - No panic mode, as in gRPC: Envoy would send to unhealthy endpoints once
//!   too few are healthy; here only endpoints that may take traffic get any.
//! - With `locality_weights`, endpoints of unlisted localities are left out
//!   entirely, from priority health too, as gRPC drops a locality of weight 0
//!   (Envoy counts them in the priority's health but sends them nothing).
//! - A locality is picked at random by effective weight, as gRPC's
//!   `weighted_target` does; Envoy walks an EDF schedule to the same shares.
//! - `ring_hash` and `maglev` multiply endpoint by locality weights, as gRPC
//!   does; Envoy normalizes endpoint weights within each locality first.
//! - `least_request` with unequal weights draws candidates by weight and
//!   compares requests in flight per unit of weight, keeping one lock-free
//!   pick, where Envoy switches to an EDF schedule over
//!   `weight / (active + 1)` (gRPC ignores weights); with equal weights all
//!   three are the same power of `choice_count` choices.
//! - A request counts as in flight until its response headers arrive (or it
//!   fails or is dropped), not until its body ends as in Envoy: the balancer
//!   does not see the body.

mod connectivity;
mod future;
mod group;
mod least_request;
mod load;
mod locality;
mod maglev;
mod peak_ewma;
mod policy;
mod priority;
mod ring_hash;
mod sampler;
mod schedule;
mod set;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use arc_swap::ArcSwap;
use tokio::runtime::Handle;

use crate::config::{Cluster, Endpoint};
use crate::connect::{ClusterConnect, EndpointClient, ProbeFuture};
use crate::discovery::EndpointSink;
use crate::error::{Error, ErrorKind};

use connectivity::Probes;
pub use future::ResponseFuture;
use load::Clock;
use policy::Policy;
use set::EndpointSet;

/// A request's hash for the hashing policies (`ring_hash`, `maglev`), computed
/// from the route's `hash_policy` and carried in the request's extensions.
/// A request without one is given a random hash, as Envoy and gRPC do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestHash(pub u64);

/// Spreads requests over a cluster's endpoints, each reached through its own
/// [`EndpointClient`], by the cluster's priorities, locality weights and
/// [`LbPolicy`](crate::config::LbPolicy) (see the [module docs](self)).
///
/// ```
/// use meshlib::balance::Balancer;
/// use meshlib::config::{Cluster, Endpoint, HealthStatus, LbPolicy};
///
/// let endpoints = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
///     .iter()
///     .map(|a| Ok(Endpoint::new(a.parse()?)))
///     .collect::<Result<Vec<_>, std::net::AddrParseError>>()?;
/// let mut cluster = Cluster::new("reviews", endpoints);
/// cluster.lb_policy = LbPolicy::ring_hash();
///
/// // The connector (here a closure) makes each endpoint's client; `pick`
/// // needs none. Probes of endpoints that fail to connect run on the runtime.
/// let runtime = tokio::runtime::Runtime::new()?;
/// let balancer = Balancer::new(&cluster, |_address| (), runtime.handle().clone());
/// let first = balancer.pick(Some(42))?;
/// assert_eq!(balancer.pick(Some(42))?, first, "same hash, same endpoint");
///
/// // Every endpoint down: the cluster fails fast.
/// let mut down = cluster.endpoints.clone();
/// down.iter_mut().for_each(|e| e.health = HealthStatus::Unhealthy);
/// balancer.update(&down);
/// assert_eq!(balancer.pick(Some(42)).unwrap_err().kind(), meshlib::ErrorKind::NoEndpoints);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Balancer<C> {
    shared: Arc<Shared<C>>,
}

/// What a balancer shares with the probes of its failing endpoints, which
/// rebuild its set when an endpoint's reachability changes.
struct Shared<C> {
    cluster: Arc<str>,
    policy: Policy,
    set: ArcSwap<EndpointSet<C>>,
    /// Serializes the writers of `set` (updates and probes' refreshes), and
    /// holds the last refresh request the set in force has seen; the request
    /// path never takes it.
    writer: Mutex<u64>,
    /// Refresh requests so far, numbered from 1.
    refreshes: AtomicU64,
    /// This, as the probes see it.
    this: Weak<dyn Probes>,
    /// Makes each endpoint's client, and probes them.
    connector: Box<dyn ClusterConnect<Client = C>>,
    /// Runs the probes.
    executor: Handle,
    /// Why the cluster's discovery source last failed to refresh, until it
    /// next gives endpoints.
    discovery_failure: arc_swap::ArcSwapOption<String>,
    /// Whether the cluster's discovery source has not answered yet: requests
    /// wait for its first answer instead of failing (Envoy's cluster warming).
    warming: AtomicBool,
    /// Told when warming ends. A `Notify`, not a watch channel: it lives in
    /// the balancer rather than in an allocation of its own per cluster.
    warmed: tokio::sync::Notify,
}

impl<C: Send + Sync + 'static> Probes for Shared<C> {
    fn probe(&self, address: SocketAddr, timeout: std::time::Duration) -> ProbeFuture {
        self.connector.probe(address, timeout)
    }

    fn spawn(&self, probe: futures_util::future::BoxFuture<'static, ()>) {
        self.executor.spawn(probe);
    }

    fn refresh(&self) {
        // Many endpoints failing at once each ask: one rebuild that starts
        // after a request reads the reachability that request reports, so
        // the requests it covers need no rebuild of their own.
        let ticket = self.refreshes.fetch_add(1, Ordering::AcqRel) + 1;
        let mut seen = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if *seen >= ticket {
            return;
        }
        *seen = self.refreshes.load(Ordering::Acquire);
        let rebuilt = self.set.load().rebuilt(&self.policy);
        self.set.store(Arc::new(rebuilt));
    }
}

impl<C> std::fmt::Debug for Balancer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.shared.set.load();
        f.debug_struct("Balancer")
            .field("cluster", &self.shared.cluster)
            .field("policy", &self.shared.policy.kind)
            .field(
                "endpoints",
                &set.endpoints.iter().map(|e| e.address).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<C: Send + Sync + 'static> Balancer<C> {
    /// A balancer over `cluster`'s endpoints by its policy, locality weights
    /// and overprovisioning factor, making each endpoint's client with
    /// `connector`. The policy is fixed for the balancer's life (a cluster
    /// whose policy changes gets a new balancer); only the endpoints change,
    /// by [`Balancer::update`], and their reachability: an endpoint that
    /// fails to connect takes no traffic until a probe through `connector`,
    /// a task on `executor`, connects to it again (see the [module docs](self)).
    pub fn new(
        cluster: &Cluster,
        connector: impl ClusterConnect<Client = C>,
        executor: Handle,
    ) -> Self {
        let policy = Policy::new(cluster, Clock::new());
        let shared = Arc::new_cyclic(|this: &Weak<Shared<C>>| {
            let this: Weak<dyn Probes> = this.clone();
            let endpoints = Arc::from(cluster.endpoints.as_slice());
            let set = EndpointSet::build(&policy, endpoints, None, &this, |address| {
                connector.endpoint(address)
            });
            Shared {
                cluster: Arc::from(cluster.name.as_str()),
                policy,
                set: ArcSwap::from_pointee(set),
                writer: Mutex::new(0),
                refreshes: AtomicU64::new(0),
                this,
                connector: Box::new(connector),
                executor,
                discovery_failure: arc_swap::ArcSwapOption::empty(),
                warming: AtomicBool::new(false),
                warmed: tokio::sync::Notify::new(),
            }
        });
        Balancer { shared }
    }

    /// Replaces the endpoint set. Endpoints whose address stays keep their
    /// client (and so their pooled connections), their load (requests in
    /// flight, latency estimate) and their reachability; the connector makes
    /// the new ones'. Requests being picked meanwhile see the old set or the
    /// new one, whole.
    pub fn update(&self, endpoints: &[Endpoint]) {
        self.shared.update(&Arc::from(endpoints));
    }

    /// Until its discovery source first answers (with endpoints, or a
    /// failure), requests wait for it: see [`Balancer::warmed`].
    pub(crate) fn start_warming(&self) {
        self.shared.warming.store(true, Ordering::Release);
    }

    /// Whether the balancer waits for its discovery source's first answer.
    pub(crate) fn is_warming(&self) -> bool {
        self.shared.warming.load(Ordering::Acquire)
    }

    /// Resolves once the discovery source has first answered.
    pub(crate) async fn warmed(&self) {
        let warmed = self.shared.warmed.notified();
        let mut warmed = std::pin::pin!(warmed);
        // Registered before the check, so an end of warming between the two
        // still wakes it.
        warmed.as_mut().enable();
        if self.is_warming() {
            warmed.await;
        }
    }

    /// This balancer as a follower of published endpoints, for as long as it lives.
    pub(crate) fn sink(&self) -> Weak<dyn EndpointSink> {
        let shared: Arc<dyn EndpointSink> = self.shared.clone();
        Arc::downgrade(&shared)
    }
}

impl<C: Send + Sync + 'static> Shared<C> {
    fn end_warming(&self) {
        if self.warming.swap(false, Ordering::AcqRel) {
            self.warmed.notify_waiters();
        }
    }
}

impl<C: Send + Sync + 'static> EndpointSink for Shared<C> {
    fn failed(&self, error: &Error) {
        self.discovery_failure
            .store(Some(Arc::new(error.to_string())));
        self.end_warming();
    }

    fn update(&self, endpoints: &Arc<[Endpoint]>) {
        self.replace(endpoints);
        // After the set is in place, so a request woken by it finds it.
        self.end_warming();
    }
}

impl<C: Send + Sync + 'static> Shared<C> {
    fn replace(&self, endpoints: &Arc<[Endpoint]>) {
        self.discovery_failure.store(None);
        let mut seen = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.set.load_full();
        if *current.endpoints == **endpoints {
            return;
        }
        // This build reads every endpoint's reachability too.
        *seen = self.refreshes.load(Ordering::Acquire);
        let set = EndpointSet::build(
            &self.policy,
            endpoints.clone(),
            Some(&current),
            &self.this,
            |address| self.connector.endpoint(address),
        );
        self.set.store(Arc::new(set));
    }
}

impl<C> Balancer<C> {
    /// The endpoints as configured now.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.shared.set.load().endpoints.to_vec()
    }

    /// Requests sent to its endpoints whose response headers have not
    /// arrived: the sum over the endpoints, read when a retry budget asks.
    pub(crate) fn requests_in_flight(&self) -> u32 {
        let set = self.shared.set.load();
        set.states.iter().map(|s| s.load.active()).sum()
    }

    /// Whether some endpoint may take traffic now: a request would be sent,
    /// not refused for want of an endpoint.
    pub fn takes_traffic(&self) -> bool {
        self.shared.set.load().takes_traffic()
    }

    /// The address of the endpoint a request with `hash` would be sent to now,
    /// without sending anything: the same pick [`Balancer::send`] makes (and,
    /// for `round_robin`, taking the same turn). `hash` is read by `ring_hash`
    /// and `maglev` only; without one they pick at random, as for a request
    /// without a [`RequestHash`].
    pub fn pick(&self, hash: Option<u64>) -> Result<SocketAddr, Error> {
        let set = self.shared.set.load();
        let index = self.choose(&set, hash)?;
        Ok(set.endpoints[index].address)
    }

    fn choose(&self, set: &EndpointSet<C>, hash: Option<u64>) -> Result<usize, Error> {
        set.pick(&self.shared.policy, hash).ok_or_else(|| {
            if set.endpoints.is_empty()
                && let Some(failure) = self.shared.discovery_failure.load_full()
            {
                return Error::new(
                    ErrorKind::Discovery,
                    format!(
                        "cluster {:?} has no endpoint: {failure}",
                        self.shared.cluster
                    ),
                );
            }
            let failing = set
                .states
                .iter()
                .filter(|e| e.connectivity.failing())
                .count();
            let failing = match failing {
                0 => String::new(),
                n => format!(", {n} failing to connect"),
            };
            Error::new(
                ErrorKind::NoEndpoints,
                format!(
                    "cluster {:?} has no endpoint that may take traffic ({} configured{failing})",
                    self.shared.cluster,
                    set.endpoints.len()
                ),
            )
        })
    }
}

impl<C: EndpointClient> Balancer<C> {
    /// Picks an endpoint (by the request's [`RequestHash`] for the hashing
    /// policies) and sends `request` to it. The request counts as in flight
    /// on that endpoint until the returned future resolves or is dropped; if
    /// it fails to connect, the endpoint takes no more traffic until a probe
    /// reaches it.
    pub fn send(
        &self,
        request: http::Request<crate::BoxBody>,
    ) -> Result<ResponseFuture<C::Future>, Error> {
        let hash = request.extensions().get::<RequestHash>().map(|h| h.0);
        let set = self.shared.set.load();
        let index = self.choose(&set, hash)?;
        let endpoint = &set.states[index];
        let in_flight = endpoint.load.start(self.shared.policy.ewma());
        Ok(ResponseFuture::new(
            endpoint.client.send(request),
            in_flight,
            endpoint.connectivity.clone(),
            set.endpoints[index].address,
        ))
    }
}

#[cfg(test)]
mod tests;
