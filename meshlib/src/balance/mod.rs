//! Load balancing over one cluster's endpoints.
//!
//! A [`Balancer`] holds the cluster's current endpoint set behind an
//! `ArcSwap`: endpoint changes (far more frequent than route changes) swap the
//! set without touching the rest of the stack, and connections to endpoints that
//! stay are kept. Picking is lock-free: one atomic load and one atomic add.
//!
//! The policy today is smooth weighted round robin (Envoy's `ROUND_ROBIN` with
//! `load_balancing_weight`): endpoints take turns in proportion to weight,
//! interleaved rather than in bursts. Endpoints whose health is `unhealthy` or
//! `draining` take no traffic (EDS semantics).

mod schedule;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::config::Endpoint;
use crate::connect::EndpointClient;
use crate::error::{Error, ErrorKind};

/// A request's hash for the hashing policies (`ring_hash`, `maglev`), computed
/// from the route's `hash_policy` and carried in the request's extensions.
/// A request without one is given a random hash, as Envoy and gRPC do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestHash(pub u64);

/// Spreads requests over a cluster's endpoints, each reached through its own
/// [`EndpointClient`].
pub struct Balancer<C> {
    cluster: Arc<str>,
    set: ArcSwap<EndpointSet<C>>,
    next: AtomicUsize,
}

struct EndpointSet<C> {
    endpoints: Vec<(Endpoint, Arc<C>)>,
    /// Indices into `endpoints`, one per turn, in round-robin order.
    schedule: Vec<u32>,
}

impl<C> std::fmt::Debug for Balancer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.set.load();
        f.debug_struct("Balancer")
            .field("cluster", &self.cluster)
            .field(
                "endpoints",
                &set.endpoints
                    .iter()
                    .map(|(e, _)| e.address)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<C: EndpointClient> Balancer<C> {
    /// A balancer for `cluster` over `endpoints`, making each one's client with `client`.
    pub fn new(cluster: &str, endpoints: &[Endpoint], client: impl FnMut(SocketAddr) -> C) -> Self {
        let set = EndpointSet::build(endpoints, &[], client);
        Balancer {
            cluster: Arc::from(cluster),
            set: ArcSwap::from_pointee(set),
            next: AtomicUsize::new(0),
        }
    }

    /// Replaces the endpoint set. Endpoints whose address stays keep their
    /// client (and so their pooled connections); `client` makes the new ones'.
    pub fn update(&self, endpoints: &[Endpoint], client: impl FnMut(SocketAddr) -> C) {
        let current = self.set.load();
        if current
            .endpoints
            .iter()
            .map(|(e, _)| e)
            .eq(endpoints.iter())
        {
            return;
        }
        let set = EndpointSet::build(endpoints, &current.endpoints, client);
        self.set.store(Arc::new(set));
    }

    /// The endpoints as configured now.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.set
            .load()
            .endpoints
            .iter()
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// Picks the next endpoint and sends `request` to it.
    pub fn send(&self, request: http::Request<crate::BoxBody>) -> Result<C::Future, Error> {
        let set = self.set.load();
        let turns = set.schedule.len();
        if turns == 0 {
            return Err(Error::new(
                ErrorKind::NoEndpoints,
                format!(
                    "cluster {:?} has no endpoint that may take traffic ({} configured)",
                    self.cluster,
                    set.endpoints.len()
                ),
            ));
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % turns;
        let index = set.schedule[turn] as usize;
        Ok(set.endpoints[index].1.send(request))
    }
}

impl<C> EndpointSet<C> {
    fn build(
        endpoints: &[Endpoint],
        previous: &[(Endpoint, Arc<C>)],
        mut client: impl FnMut(SocketAddr) -> C,
    ) -> Self {
        let endpoints: Vec<(Endpoint, Arc<C>)> = endpoints
            .iter()
            .map(|endpoint| {
                let kept = previous
                    .iter()
                    .find(|(old, _)| old.address == endpoint.address)
                    .map(|(_, c)| c.clone());
                let c = kept.unwrap_or_else(|| Arc::new(client(endpoint.address)));
                (endpoint.clone(), c)
            })
            .collect();
        let weights: Vec<u32> = endpoints
            .iter()
            .map(|(e, _)| {
                if e.health.takes_traffic() {
                    e.weight
                } else {
                    0
                }
            })
            .collect();
        EndpointSet {
            schedule: schedule::smooth_weighted(&weights),
            endpoints,
        }
    }
}
