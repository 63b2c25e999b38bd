//! The outbound stack, in its canonical order, and the per-cluster stacks it
//! sends on.
//!
//! ```text
//! request ─► Route ─► Mirror ─► Timeout ─► ClusterLookup ─► Retry ─► ClusterSend ─► cluster's Balancer ─► endpoint's client
//!            match,    copies    route's    find the          resend   send on it:    pick an endpoint      pooled hyper-util,
//!            pick                timeout    cluster's stack   failed   each attempt                         h1 or h2c
//!            cluster                        (extensions)      attempts balanced afresh
//! ```
//!
//! The top half is built from one configuration snapshot and holds it
//! immutably; a new configuration builds a new top half, and requests in
//! flight finish on the one they started on. The bottom half is per cluster:
//! a [`ClusterStack`] owns the cluster's policy, its connector and its
//! endpoint set, which its discovery source updates in place. A new
//! configuration keeps every stack whose policy did not change, with its
//! connections and state. Between [`ClusterLookup`] and [`ClusterSend`] sits
//! the [`Retry`] layer: every attempt goes through the same cluster's
//! balancer, so each is balanced afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, Either};
use http::{Request, Response};
use tokio::runtime::Handle;
use tower_service::Service;

use crate::balance::Balancer;
use crate::body::BoxBody;
use crate::config::{Cluster, Discovery, MeshConfig};
use crate::connect::{Connect, EndpointClient};
use crate::discovery::{Sources, ToBalancer};
use crate::error::{Error, ErrorKind};
use crate::future::ResponseFuture;
use crate::mirror::Mirror;
use crate::retry::{Gate, InFlightRetry, Retry, RetryGate, RetryLimits, Rules};
use crate::route::{Route, RouteDecision, RouteTable};
use crate::timeout::Timeout;

/// The outbound stack for endpoint clients of type `C`, in the canonical
/// order: route (and apply the route's rewrites), mirror, bound by the
/// timeout, find the cluster's stack, retry as the route's policy says,
/// send on it. Mirroring sits above the timeout so each copy is bounded by
/// the route's timeout too; retrying below it, so the route's timeout
/// bounds every attempt and backoff wait together, and below the lookup,
/// so each attempt is balanced afresh on the same cluster.
pub type Outbound<C> = Route<Mirror<Timeout<ClusterLookup<Retry<ClusterSend<C>>, C>>>>;

/// Builds the [`Outbound`] stack over `clusters` routed by `routes`;
/// mirrored copies run on `executor`.
pub fn outbound<C: EndpointClient>(
    routes: Arc<RouteTable>,
    clusters: Arc<ClusterSet<C>>,
    executor: Handle,
) -> Outbound<C> {
    let lookup = ClusterLookup::new(Retry::new(ClusterSend::new()), clusters);
    Route::new(Mirror::new(Timeout::new(lookup), executor), routes)
}

/// One cluster's stack: its policy, and its balancer over its endpoint set
/// (with the cluster's connector, which makes each endpoint's client). This
/// is where the cluster's policy state lives, for as long as its policy
/// stays the same.
#[derive(Debug)]
pub struct ClusterStack<C> {
    config: Cluster,
    balancer: Balancer<C>,
    /// The task of its discovery source, if it has one: it ends with the stack.
    discovery: Option<DiscoveryTask>,
    /// An aggregate cluster's clusters, most preferred first: each request is
    /// sent on the first that can take it (see [`Discovery::Aggregate`]).
    /// Empty for any other cluster.
    children: Box<[Arc<ClusterStack<C>>]>,
    /// Its circuit breakers' count of retries in flight.
    retry_limits: Arc<RetryLimits>,
}

/// A discovery task, aborted when its stack goes (a DNS or Cloud Map source
/// whose answers do not change would otherwise never notice).
#[derive(Debug)]
struct DiscoveryTask(tokio::task::AbortHandle);

impl Drop for DiscoveryTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<C: Send + Sync + 'static> ClusterStack<C> {
    /// The stack for `config` with its fixed endpoints, connecting with
    /// `connect`'s connector for the cluster and probing on `executor`.
    pub fn new<K: Connect<Client = C>>(config: &Cluster, connect: &K, executor: Handle) -> Self {
        ClusterStack {
            balancer: Balancer::new(config, connect.cluster(config), executor),
            // The endpoints live in the balancer; one copy is enough.
            config: Cluster {
                endpoints: Vec::new(),
                ..config.clone()
            },
            discovery: None,
            children: Box::new([]),
            retry_limits: Arc::new(RetryLimits::new(config.circuit_breakers)),
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

    /// Retries its circuit breakers have refused so far (see
    /// [`CircuitBreakers`](crate::config::CircuitBreakers)).
    pub fn retries_refused(&self) -> u64 {
        self.retry_limits.refused()
    }

    /// The stack a request for this cluster is sent on now: this one, or for
    /// an aggregate cluster the first of its clusters with an endpoint that
    /// may take traffic, else the first still warming (the request waits for
    /// it). An aggregate with neither fails the request with
    /// [`ErrorKind::NoEndpoints`], naming its clusters.
    pub fn sends_to(self: &Arc<Self>) -> Result<&Arc<Self>, Error> {
        if self.children.is_empty() {
            return Ok(self);
        }
        let children = self.children.iter();
        if let Some(child) = children
            .clone()
            .find(|c| c.balancer.takes_traffic())
            .or_else(|| children.clone().find(|c| c.balancer.is_warming()))
        {
            return Ok(child);
        }
        let names: Vec<&str> = children.map(|c| c.config.name.as_str()).collect();
        Err(Error::new(
            ErrorKind::NoEndpoints,
            format!(
                "aggregate cluster {:?}: none of its clusters ({}) has an endpoint that may take traffic",
                self.config.name,
                names.join(", ")
            ),
        ))
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

impl<C: Send + Sync + 'static> ClusterSet<C> {
    /// The stacks for `config`'s clusters with fixed endpoints, each new.
    pub fn new<K: Connect<Client = C>>(config: &MeshConfig, connect: &K, executor: Handle) -> Self {
        Self::build(config, None, connect, &executor, &Sources::default())
    }

    /// The stacks for `config`'s clusters. A cluster whose policy is unchanged
    /// from its stack in `previous` keeps that stack, with its connections
    /// and state; a fixed one has its endpoints updated in place. Other
    /// clusters get a new stack, which follows its discovery source: EDS
    /// clusters start from, and follow, what `sources.feeds` publishes for
    /// them; DNS and Cloud Map clusters run a task on `executor`.
    pub(crate) fn build<K: Connect<Client = C>>(
        config: &MeshConfig,
        previous: Option<&ClusterSet<C>>,
        connect: &K,
        executor: &Handle,
        sources: &Sources,
    ) -> Self {
        // Plain clusters first: an aggregate's stack holds its clusters'.
        let mut clusters: HashMap<Arc<str>, Arc<ClusterStack<C>>> = config
            .clusters
            .iter()
            .filter(|cluster| cluster.discovery.aggregate().is_none())
            .map(|cluster| {
                let kept = previous
                    .and_then(|p| p.clusters.get(cluster.name.as_str()))
                    .filter(|stack| stack.config.same_policy(cluster));
                let stack = match kept {
                    Some(stack) => {
                        if cluster.discovery.is_fixed() {
                            stack.balancer.update(&cluster.endpoints);
                        }
                        stack.clone()
                    }
                    None => {
                        let mut stack = ClusterStack::new(cluster, connect, executor.clone());
                        match &cluster.discovery {
                            // Filtered out above.
                            Discovery::Fixed | Discovery::Aggregate { .. } => {}
                            Discovery::Eds { .. } => {
                                sources.feeds.follow(&cluster.name, stack.balancer.sink());
                            }
                            Discovery::Dns(dns) => {
                                stack.balancer.start_warming();
                                let task = executor.spawn(crate::discovery::dns::run(
                                    Arc::from(cluster.name.as_str()),
                                    dns.clone(),
                                    ToBalancer(stack.balancer.sink()),
                                ));
                                stack.discovery = Some(DiscoveryTask(task.abort_handle()));
                            }
                            #[cfg(feature = "cloudmap")]
                            Discovery::CloudMap(cloud_map) => {
                                use crate::discovery::cloud_map::{run, run_with_sdk_config};
                                stack.balancer.start_warming();
                                let name = Arc::from(cluster.name.as_str());
                                let publish = ToBalancer(stack.balancer.sink());
                                let task = match &sources.cloud_map {
                                    Some(sdk) => executor.spawn(run_with_sdk_config(
                                        name,
                                        (**cloud_map).clone(),
                                        sdk.clone(),
                                        publish,
                                    )),
                                    None => executor.spawn(run(name, (**cloud_map).clone(), publish)),
                                };
                                stack.discovery = Some(DiscoveryTask(task.abort_handle()));
                            }
                            #[cfg(not(feature = "cloudmap"))]
                            Discovery::CloudMap(_) => {
                                // Validation refuses such a cluster without
                                // the feature, so this is not reached.
                                tracing::error!(
                                    cluster = %cluster.name,
                                    "meshlib was built without the `cloudmap` feature: this Cloud Map cluster gets no endpoints"
                                );
                            }
                        }
                        Arc::new(stack)
                    }
                };
                (Arc::from(cluster.name.as_str()), stack)
            })
            .collect();
        for cluster in &config.clusters {
            let Some(names) = cluster.discovery.aggregate() else {
                continue;
            };
            // Always new: it holds nothing but its clusters' stacks, which
            // may be new themselves.
            let mut stack = ClusterStack::new(cluster, connect, executor.clone());
            stack.children = names
                .iter()
                .filter_map(|name| clusters.get(name.as_str()).cloned())
                .collect();
            clusters.insert(Arc::from(cluster.name.as_str()), Arc::new(stack));
        }
        ClusterSet { clusters }
    }
}

impl<C> ClusterSet<C> {
    /// The stack of the cluster named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ClusterStack<C>>> {
        self.clusters.get(name)
    }
}

/// Finds the stack of the cluster each request's [`RouteDecision`] names
/// and puts it (an `Arc<ClusterStack<C>>`) in the request's extensions for
/// [`ClusterSend`]; a request for a cluster the configuration does not have
/// fails with [`ErrorKind::UnknownCluster`].
pub struct ClusterLookup<S, C> {
    inner: S,
    clusters: Arc<ClusterSet<C>>,
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for ClusterLookup<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLookup")
            .field("inner", &self.inner)
            .field("clusters", &self.clusters)
            .finish()
    }
}

impl<S: Clone, C> Clone for ClusterLookup<S, C> {
    fn clone(&self) -> Self {
        ClusterLookup {
            inner: self.inner.clone(),
            clusters: self.clusters.clone(),
        }
    }
}

impl<S, C> ClusterLookup<S, C> {
    /// Looks clusters up in `clusters`, then calls `inner`.
    pub fn new(inner: S, clusters: Arc<ClusterSet<C>>) -> Self {
        ClusterLookup { inner, clusters }
    }
}

impl<S, C, B> Service<Request<B>> for ClusterLookup<S, C>
where
    S: Service<Request<B>, Error = Error>,
    C: Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(decision) = request.extensions().get::<RouteDecision>() else {
            return ResponseFuture::failed(Error::new(
                ErrorKind::NoRoute,
                "request reached the cluster lookup without a route decision (is the Route layer missing?)",
            ));
        };
        let Some(stack) = self.clusters.get(decision.cluster_name()) else {
            return ResponseFuture::failed(decision.unknown_cluster());
        };
        let stack = stack.clone();
        if decision.retry().is_some() {
            // What the retry layer asks before each retry.
            let gate: Arc<dyn Gate> = stack.clone();
            request.extensions_mut().insert(RetryGate(gate));
        }
        request.extensions_mut().insert(stack);
        ResponseFuture::called(self.inner.call(request))
    }
}

impl<C: Send + Sync + 'static> Gate for ClusterStack<C> {
    fn start_retry(&self, rules: Rules) -> Option<InFlightRetry> {
        self.retry_limits
            .start(rules, || self.balancer.requests_in_flight())
    }
}

/// The longest a request waits for a warming cluster's first endpoints:
/// Envoy's default `initial_fetch_timeout`.
const WARMING_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Sends each request on the cluster stack [`ClusterLookup`] put in its
/// extensions: the cluster's balancer picks an endpoint.
pub struct ClusterSend<C> {
    _client: std::marker::PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for ClusterSend<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSend")
    }
}

impl<C> Clone for ClusterSend<C> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<C> Default for ClusterSend<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> ClusterSend<C> {
    /// The send stage.
    pub fn new() -> Self {
        ClusterSend {
            _client: std::marker::PhantomData,
        }
    }
}

impl<C: EndpointClient> Service<Request<BoxBody>> for ClusterSend<C> {
    type Response = Response<C::Body>;
    type Error = Error;
    /// At once on the cluster's balancer, or, while a discovery source has
    /// not answered yet, after its first answer (boxed: that is rare).
    type Future = Either<
        ResponseFuture<crate::balance::ResponseFuture<C::Future>>,
        BoxFuture<'static, Result<Response<C::Body>, Error>>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Per-endpoint clients queue internally; the mesh never pushes back here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<BoxBody>) -> Self::Future {
        let Some(stack) = request.extensions_mut().remove::<Arc<ClusterStack<C>>>() else {
            return Either::Left(ResponseFuture::failed(Error::new(
                ErrorKind::UnknownCluster,
                "request reached the cluster send without a cluster stack (is ClusterLookup missing?)",
            )));
        };
        let stack = match stack.sends_to() {
            Ok(target) if Arc::ptr_eq(target, &stack) => stack,
            Ok(target) => target.clone(),
            Err(error) => return Either::Left(ResponseFuture::failed(error)),
        };
        if stack.balancer.is_warming() {
            // A source answers (endpoints or a failure) within its query
            // timeout; WARMING_LIMIT bounds the wait should it never do so,
            // route timeout or not. Then the request is balanced on what
            // there is, failing if there is nothing.
            return Either::Right(Box::pin(async move {
                let _ = tokio::time::timeout(WARMING_LIMIT, stack.balancer.warmed()).await;
                stack.balancer.send(request)?.await
            }));
        }
        Either::Left(match stack.balancer.send(request) {
            Ok(future) => ResponseFuture::called(future),
            Err(error) => ResponseFuture::failed(error),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tower::ServiceExt;

    use super::*;
    use crate::config::Endpoint;

    /// Answers with the address it was made for.
    struct Echo(SocketAddr);

    impl EndpointClient for Echo {
        type Body = SocketAddr;
        type Future = std::future::Ready<Result<Response<SocketAddr>, Error>>;

        fn send(&self, _: Request<BoxBody>) -> Self::Future {
            std::future::ready(Ok(Response::new(self.0)))
        }
    }

    #[derive(Clone, Copy)]
    struct EchoConnect;

    impl Connect for EchoConnect {
        type Client = Echo;
        type Cluster = fn(SocketAddr) -> Echo;

        fn cluster(&self, _: &Cluster) -> Self::Cluster {
            Echo
        }
    }

    fn endpoints(ports: &[u16]) -> Vec<Endpoint> {
        ports
            .iter()
            .map(|p| Endpoint::new(([127, 0, 0, 1], *p).into()))
            .collect()
    }

    fn eds(name: &str) -> Cluster {
        let mut cluster = Cluster::new(name, Vec::new());
        cluster.discovery = Discovery::Eds {
            service_name: name.to_owned(),
        };
        cluster
    }

    fn request(cluster: &str) -> Request<BoxBody> {
        let mut request = Request::new(crate::body::boxed(http_body_util::Empty::new()));
        request
            .extensions_mut()
            .insert(RouteDecision::new("vh", "route", cluster));
        request
    }

    #[tokio::test]
    async fn lookup_puts_the_clusters_stack_in_the_request_and_send_uses_it() {
        let config = MeshConfig::new(Vec::new(), vec![Cluster::new("a", endpoints(&[1]))]);
        let clusters = Arc::new(ClusterSet::new(&config, &EchoConnect, Handle::current()));
        let stack = ClusterLookup::new(ClusterSend::<Echo>::new(), clusters.clone());
        let response = stack.clone().oneshot(request("a")).await.unwrap();
        assert_eq!(response.into_body().port(), 1);

        let error = stack.oneshot(request("b")).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownCluster);

        // A stack put there by hand is what gets sent on.
        let mut by_hand = request("ignored");
        by_hand
            .extensions_mut()
            .insert(clusters.get("a").unwrap().clone());
        let response = ClusterSend::<Echo>::new().oneshot(by_hand).await.unwrap();
        assert_eq!(response.into_body().port(), 1);
        let error = ClusterSend::<Echo>::new()
            .oneshot(request("a"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownCluster);
    }

    #[tokio::test]
    async fn an_eds_stack_follows_its_feed_and_a_rebuilt_one_starts_from_it() {
        let sources = Sources::default();
        let feeds = &sources.feeds;
        feeds.publish("a", endpoints(&[1]).into());
        let config = MeshConfig::new(
            Vec::new(),
            vec![eds("a"), Cluster::new("fixed", endpoints(&[5]))],
        );
        let executor = Handle::current();
        let first = ClusterSet::build(&config, None, &EchoConnect, &executor, &sources);
        let ports = |set: &ClusterSet<Echo>, name: &str| -> Vec<u16> {
            let endpoints = set.get(name).unwrap().balancer().endpoints();
            endpoints.iter().map(|e| e.address.port()).collect()
        };
        assert_eq!(ports(&first, "a"), [1]);

        // An endpoint change reaches the stack in place.
        feeds.publish("a", endpoints(&[2, 3]).into());
        assert_eq!(ports(&first, "a"), [2, 3]);

        // A policy change builds a new stack, from the latest endpoints; a
        // fixed cluster's new endpoints are updated in its kept stack.
        let mut changed = config.clone();
        changed.clusters[0].connect_timeout = std::time::Duration::from_secs(1);
        changed.clusters[1].endpoints = endpoints(&[6]);
        let second = ClusterSet::build(&changed, Some(&first), &EchoConnect, &executor, &sources);
        assert!(!Arc::ptr_eq(
            first.get("a").unwrap(),
            second.get("a").unwrap()
        ));
        assert!(Arc::ptr_eq(
            first.get("fixed").unwrap(),
            second.get("fixed").unwrap()
        ));
        assert_eq!(ports(&second, "a"), [2, 3]);
        assert_eq!(ports(&second, "fixed"), [6]);
        feeds.publish("a", endpoints(&[4]).into());
        assert_eq!(ports(&second, "a"), [4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_to_a_cluster_that_never_warms_fails_after_the_warming_limit() {
        let config = MeshConfig::new(Vec::new(), vec![Cluster::new("a", Vec::new())]);
        let clusters = ClusterSet::new(&config, &EchoConnect, Handle::current());
        let stack = clusters.get("a").unwrap().clone();
        stack.balancer().start_warming();
        let mut warming = request("a");
        warming.extensions_mut().insert(stack.clone());
        let started = tokio::time::Instant::now();
        let error = ClusterSend::<Echo>::new()
            .oneshot(warming)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NoEndpoints);
        assert_eq!(started.elapsed(), WARMING_LIMIT);

        // Once it has warmed, a request is sent at once.
        stack.balancer().update(&endpoints(&[7]));
        let mut request = request("a");
        request.extensions_mut().insert(stack.clone());
        let response = ClusterSend::<Echo>::new().oneshot(request).await.unwrap();
        assert_eq!(response.into_body().port(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn an_aggregate_sends_to_its_first_cluster_that_takes_traffic() {
        use crate::config::HealthStatus;
        let mut aggregate = Cluster::new("both", Vec::new());
        aggregate.discovery = Discovery::Aggregate {
            clusters: vec!["primary".to_owned(), "fallback".to_owned()],
        };
        let config = MeshConfig::new(
            Vec::new(),
            vec![
                aggregate,
                Cluster::new("primary", endpoints(&[1])),
                Cluster::new("fallback", endpoints(&[2])),
            ],
        );
        let clusters = Arc::new(ClusterSet::new(&config, &EchoConnect, Handle::current()));
        let stack = ClusterLookup::new(ClusterSend::<Echo>::new(), clusters.clone());
        let port = |stack: ClusterLookup<ClusterSend<Echo>, Echo>| async move {
            let response = stack.oneshot(request("both")).await?;
            Ok::<u16, Error>(response.into_body().port())
        };
        assert_eq!(port(stack.clone()).await.unwrap(), 1);

        // The primary's endpoints go down: the fallback takes the traffic,
        // and gives it back once they are up again.
        let primary = clusters.get("primary").unwrap().balancer();
        let mut down = endpoints(&[1]);
        down[0].health = HealthStatus::Unhealthy;
        primary.update(&down);
        assert_eq!(port(stack.clone()).await.unwrap(), 2);
        primary.update(&endpoints(&[1]));
        assert_eq!(port(stack.clone()).await.unwrap(), 1);

        // Neither can take traffic: the error names them.
        primary.update(&down);
        let fallback = clusters.get("fallback").unwrap().balancer();
        fallback.update(&[]);
        let error = port(stack.clone()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NoEndpoints);
        assert!(
            error
                .to_string()
                .contains("aggregate cluster \"both\": none of its clusters (primary, fallback)"),
            "{error}"
        );

        // One still warming: the request waits for its endpoints.
        fallback.start_warming();
        let mut waiting = Box::pin(port(stack.clone()));
        let second = std::time::Duration::from_secs(1);
        assert!(tokio::time::timeout(second, &mut waiting).await.is_err());
        fallback
            .sink()
            .upgrade()
            .unwrap()
            .update(&endpoints(&[3]).into());
        assert_eq!(waiting.await.unwrap(), 3);
    }
}
