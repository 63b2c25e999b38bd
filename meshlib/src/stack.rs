//! The outbound stack, in its canonical order, and the per-cluster stacks it
//! dispatches to.
//!
//! ```text
//! request ─► Route ─► Timeout ─► Dispatch ─► cluster's Balancer ─► endpoint's pooled client
//!            match,    route's    look up the   pick an endpoint     hyper-util, h1 or h2c
//!            pick      timeout    cluster
//!            cluster
//! ```
//!
//! Every piece is built from one configuration snapshot and holds it
//! immutably; a new configuration builds a new stack (reusing the per-cluster
//! stacks whose policy did not change), and requests in flight finish on the
//! stack they started on.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::balance::Balancer;
use crate::body::BoxBody;
use crate::config::{Cluster, MeshConfig};
use crate::connect::{Connect, EndpointClient};
use crate::error::{Error, ErrorKind};
use crate::future::ResponseFuture;
use crate::route::{Route, RouteDecision, RouteTable};
use crate::timeout::Timeout;

/// The outbound stack for clients of type `C`, in the canonical order:
/// route (and apply the route's rewrites), mirror, bound by the timeout,
/// dispatch. Mirroring sits above the timeout so each copy is bounded by the
/// route's timeout too.
pub type Outbound<C> = Route<crate::mirror::Mirror<Timeout<Dispatch<C>>>>;

/// Builds the [`Outbound`] stack over `clusters` routed by `routes`.
pub fn outbound<C: EndpointClient>(
    routes: Arc<RouteTable>,
    clusters: Arc<ClusterSet<C>>,
) -> Outbound<C> {
    Route::new(
        crate::mirror::Mirror::new(Timeout::new(Dispatch::new(clusters))),
        routes,
    )
}

/// One cluster's stack: its configuration and its balancer.
#[derive(Debug)]
pub struct ClusterStack<C> {
    config: Cluster,
    balancer: Balancer<C>,
}

impl<C: EndpointClient> ClusterStack<C> {
    /// The stack for `config`, with clients made by `connect`.
    pub fn new(config: &Cluster, connect: &impl Connect<Client = C>) -> Self {
        ClusterStack {
            balancer: Balancer::new(config, |address| connect.client(config, address)),
            // The endpoints live in the balancer; one copy is enough.
            config: Cluster {
                endpoints: Vec::new(),
                ..config.clone()
            },
        }
    }

    /// The cluster's policy: its configuration without the endpoints, which
    /// change without a new stack (see [`Balancer::endpoints`]).
    pub fn config(&self) -> &Cluster {
        &self.config
    }

    /// The cluster's balancer.
    pub fn balancer(&self) -> &Balancer<C> {
        &self.balancer
    }
}

/// The per-cluster stacks of one configuration, by cluster name.
pub struct ClusterSet<C> {
    clusters: HashMap<Arc<str>, Arc<ClusterStack<C>>>,
}

impl<C> std::fmt::Debug for ClusterSet<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.clusters.keys()).finish()
    }
}

impl<C: EndpointClient> ClusterSet<C> {
    /// The stacks for `config`'s clusters. A cluster whose policy is unchanged
    /// from its stack in `previous` keeps that stack, with its connections; only
    /// its endpoint set is updated. Other clusters get a new stack.
    pub fn build(
        config: &MeshConfig,
        previous: Option<&ClusterSet<C>>,
        connect: &impl Connect<Client = C>,
    ) -> Self {
        let clusters = config
            .clusters
            .iter()
            .map(|cluster| {
                let kept = previous
                    .and_then(|p| p.clusters.get(cluster.name.as_str()))
                    .filter(|stack| stack.config.same_policy(cluster));
                let stack = match kept {
                    Some(stack) => {
                        stack.balancer.update(&cluster.endpoints, |address| {
                            connect.client(cluster, address)
                        });
                        stack.clone()
                    }
                    None => Arc::new(ClusterStack::new(cluster, connect)),
                };
                (Arc::from(cluster.name.as_str()), stack)
            })
            .collect();
        ClusterSet { clusters }
    }

    /// The stack of the cluster named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ClusterStack<C>>> {
        self.clusters.get(name)
    }
}

/// Sends each request to the cluster its [`RouteDecision`] names.
#[derive(Debug)]
pub struct Dispatch<C> {
    clusters: Arc<ClusterSet<C>>,
}

impl<C> Clone for Dispatch<C> {
    fn clone(&self) -> Self {
        Dispatch {
            clusters: self.clusters.clone(),
        }
    }
}

impl<C> Dispatch<C> {
    /// Dispatches over `clusters`.
    pub fn new(clusters: Arc<ClusterSet<C>>) -> Self {
        Dispatch { clusters }
    }
}

impl<C: EndpointClient> Service<Request<BoxBody>> for Dispatch<C> {
    type Response = Response<C::Body>;
    type Error = Error;
    type Future = ResponseFuture<crate::balance::ResponseFuture<C::Future>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Per-endpoint clients queue internally; the mesh never pushes back here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<BoxBody>) -> Self::Future {
        let Some(decision) = request.extensions().get::<RouteDecision>() else {
            return ResponseFuture::failed(Error::new(
                ErrorKind::NoRoute,
                "request reached dispatch without a route decision (is the Route layer missing?)",
            ));
        };
        let Some(stack) = self.clusters.get(decision.cluster_name()) else {
            return ResponseFuture::failed(decision.unknown_cluster());
        };
        match stack.balancer.send(request) {
            Ok(future) => ResponseFuture::called(future),
            Err(error) => ResponseFuture::failed(error),
        }
    }
}
