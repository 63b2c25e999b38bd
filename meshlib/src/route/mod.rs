//! Routing: which virtual host, which route, which cluster, and what the
//! route does to the request on its way.
//!
//! [`Route`] matches each request against a compiled [`RouteTable`] once,
//! applies the matched route's request actions (path and host rewrites,
//! header removals and additions), and writes the outcome, a
//! [`RouteDecision`], into the request's extensions, with the request's
//! [`RequestHash`] when the route's hash policies produce one; later layers read
//! the decision instead of matching again. Semantics follow Envoy's
//! `route_components.proto` and gRPC's gRFC A28; see [`RouteTable`].
//! [`check_route`] answers the same question offline.

mod action;
mod check;
mod hash;
mod index;
mod layer;
mod normalize;
mod split;
mod table;
mod timeout;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower_service::Service;

use crate::balance::RequestHash;
use crate::config::{MaxStreamDuration, MirrorPolicy, RetryPolicy, WeightedCluster};
use crate::error::{Error, ErrorKind, Quoted};
use crate::future::ResponseFuture;

pub(crate) use crate::matcher::fraction_drawn;
pub use check::{RouteCheck, check_route};
pub use layer::RouteLayer;
pub use table::RouteTable;
pub(crate) use table::strip_port;
pub use timeout::request_timeout;

/// The address a request came from, set in its extensions by a caller that
/// forwards requests (a server handing on its inbound requests): the input of
/// the `connection_properties: { source_ip: true }` hash policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceAddress(pub std::net::SocketAddr);

/// What a request's route decision says about the route itself: shared by
/// every request the route matches.
#[derive(Debug)]
pub(crate) struct RouteInfo {
    pub(crate) virtual_host: Arc<str>,
    pub(crate) name: Arc<str>,
    /// The route's `timeout`, zero taken as none.
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_stream_duration: Option<MaxStreamDuration>,
    /// The split, for weighted clusters; empty otherwise.
    pub(crate) split: Box<[WeightedCluster]>,
    pub(crate) mirrors: Box<[MirrorPolicy]>,
    pub(crate) hash: hash::HashPolicies,
    pub(crate) actions: action::RequestActions,
    /// The route's retry policy, else its virtual host's.
    pub(crate) retry: Option<Arc<crate::retry::Policy>>,
    /// The virtual host's `include_request_attempt_count`.
    pub(crate) include_attempt_count: bool,
}

impl RouteInfo {
    /// A route that does nothing but name its cluster.
    fn bare(virtual_host: &str, name: &str) -> Self {
        RouteInfo {
            virtual_host: Arc::from(virtual_host),
            name: Arc::from(name),
            timeout: None,
            max_stream_duration: None,
            split: Box::default(),
            mirrors: Box::default(),
            hash: hash::HashPolicies::default(),
            actions: action::RequestActions::default(),
            retry: None,
            include_attempt_count: false,
        }
    }
}

/// Where a request was routed, and with what policy: written by [`Route`]
/// into the request's extensions, read by the layers after it.
///
/// A test of a later layer can insert one by hand:
///
/// ```
/// use meshlib::route::RouteDecision;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(RouteDecision::new("reviews", "canary", "reviews-v2"));
/// assert_eq!(request.extensions().get::<RouteDecision>().unwrap().cluster(), "reviews-v2");
/// ```
#[derive(Debug, Clone)]
pub struct RouteDecision {
    route: Arc<RouteInfo>,
    cluster: Arc<str>,
    /// This request's timeout: the route's, or as `max_stream_duration` and
    /// the request's `grpc-timeout` set it.
    timeout: Option<Duration>,
    hash: Option<RequestHash>,
    retry: Option<Arc<crate::retry::Policy>>,
    /// The request's path as normalisation made it, when it changed it.
    normalized_path: Option<Arc<str>>,
}

impl RouteDecision {
    /// A decision for `cluster` by the route named `route` of `virtual_host`,
    /// with no timeout, no hash and no request actions.
    pub fn new(virtual_host: &str, route: &str, cluster: &str) -> Self {
        RouteDecision {
            route: Arc::new(RouteInfo::bare(virtual_host, route)),
            cluster: Arc::from(cluster),
            timeout: None,
            hash: None,
            retry: None,
            normalized_path: None,
        }
    }

    pub(crate) fn matched(
        route: Arc<RouteInfo>,
        cluster: Arc<str>,
        timeout: Option<Duration>,
        hash: Option<RequestHash>,
        normalized_path: Option<Arc<str>>,
    ) -> Self {
        RouteDecision {
            retry: route.retry.clone(),
            route,
            cluster,
            timeout,
            hash,
            normalized_path,
        }
    }

    /// The same decision under the retry policy `policy` (for a test of
    /// the [`Retry`](crate::retry::Retry) layer, or a layer of one's own);
    /// an error when one of its header rules does not compile.
    pub fn with_retry_policy(mut self, policy: &RetryPolicy) -> Result<Self, Error> {
        let regexes = crate::config::Regexes::default();
        let compiled =
            crate::retry::Policy::compile(policy, &regexes).map_err(|(field, message)| {
                Error::new(
                    ErrorKind::NoRoute,
                    format!("retry policy: {field}: {message}"),
                )
            })?;
        self.retry = Some(Arc::new(compiled));
        Ok(self)
    }

    /// The retry policy this request is under: its route's, else its
    /// virtual host's.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.retry.as_deref().map(crate::retry::Policy::config)
    }

    pub(crate) fn retry(&self) -> Option<&Arc<crate::retry::Policy>> {
        self.retry.as_ref()
    }

    /// Whether each attempt carries `x-envoy-attempt-count` (the virtual
    /// host's `include_request_attempt_count`).
    pub fn include_request_attempt_count(&self) -> bool {
        self.route.include_attempt_count
    }

    /// The same decision with this request's timeout set to `timeout`.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The virtual host that matched.
    pub fn virtual_host(&self) -> &str {
        &self.route.virtual_host
    }

    /// The route that matched: its name, or `route #N` for an unnamed one.
    pub fn route(&self) -> &str {
        &self.route.name
    }

    /// The cluster the request goes to (for weighted clusters, the one picked).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The cluster's name, shared.
    pub(crate) fn cluster_name(&self) -> &Arc<str> {
        &self.cluster
    }

    /// The clusters and weights the route splits between, when its destination
    /// is `weighted_clusters` ([`cluster`](Self::cluster) is the one picked for
    /// this request); empty for a single cluster or `cluster_header`.
    pub fn weighted_clusters(&self) -> &[WeightedCluster] {
        &self.route.split
    }

    /// How long this request may wait for its response headers: the route's
    /// `max_stream_duration` or, for a request with a `grpc-timeout` header on
    /// a route with `grpc_timeout_header_max`, that header's value capped; else
    /// the route's `timeout` (see [`request_timeout`]).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The request's hash from the route's hash policies, when they produced
    /// one; [`Route`] also puts it in the request's extensions.
    pub fn hash(&self) -> Option<RequestHash> {
        self.hash
    }

    /// The route's mirror policies: clusters a share of its requests is copied
    /// to, by the [`Mirror`](crate::mirror::Mirror) layer.
    pub fn request_mirror_policies(&self) -> &[MirrorPolicy] {
        &self.route.mirrors
    }

    /// Applies the route's request actions to `request`, in Envoy's order:
    /// `request_headers_to_remove`, `request_headers_to_add`,
    /// `host_rewrite_literal`, then `prefix_rewrite` or `regex_rewrite` (the
    /// query string is kept). [`Route`] does this for every request it routes.
    ///
    /// ```
    /// use meshlib::config::MeshConfig;
    /// use meshlib::route::RouteTable;
    ///
    /// let config = MeshConfig::from_yaml(r#"
    /// virtual_hosts:
    ///   - name: api
    ///     domains: ["api"]
    ///     routes:
    ///       - match: { prefix: /v1/ }
    ///         route: { cluster: backend, prefix_rewrite: /internal/v1/, host_rewrite_literal: backend.internal }
    ///         request_headers_to_add: [{ name: x-routed, value: "yes" }]
    /// clusters: [{ name: backend }]
    /// "#)?;
    /// let table = RouteTable::new(&config)?;
    /// let mut request = http::Request::get("http://api/v1/users?page=2").body(())?;
    /// let decision = table.decide(&request)?;
    /// decision.apply(&mut request)?;
    /// assert_eq!(request.uri(), "http://backend.internal/internal/v1/users?page=2");
    /// assert_eq!(request.headers()["x-routed"], "yes");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// A path rewrite that makes a path that is not valid (a `regex_rewrite`
    /// can, from some paths) fails with [`ErrorKind::InvalidPath`], naming
    /// the route: the request must not go on with its original path.
    ///
    /// When the path was normalised to be matched (`normalize_path`,
    /// `merge_slashes`), the normalised path is set first, so it is what the
    /// route's rewrites work on and what is sent.
    pub fn apply<B>(&self, request: &mut Request<B>) -> Result<(), Error> {
        if let Some(path) = &self.normalized_path {
            action::replace_path(request, path).map_err(|why| {
                Error::new(
                    ErrorKind::InvalidPath,
                    format!("the normalised path {}, which {why}", Quoted(path)),
                )
            })?;
        }
        self.route.actions.apply(request).map_err(|message| {
            Error::new(
                ErrorKind::InvalidPath,
                format!(
                    "route {:?} of virtual host {:?}: {message}",
                    self.route(),
                    self.virtual_host()
                ),
            )
        })
    }

    /// The error for a decision whose cluster is not configured.
    pub(crate) fn unknown_cluster(&self) -> Error {
        Error::new(
            ErrorKind::UnknownCluster,
            format!(
                "route {:?} of virtual host {:?} names cluster {}, which is not configured",
                self.route(),
                self.virtual_host(),
                // A `cluster_header` route takes the name from the request.
                crate::error::Quoted(self.cluster())
            ),
        )
    }

    /// The decision for a copy of this request sent to `cluster` by a mirror policy.
    pub(crate) fn shadow(&self, cluster: &str) -> RouteDecision {
        RouteDecision {
            route: self.route.clone(),
            cluster: Arc::from(cluster),
            timeout: self.timeout,
            hash: self.hash,
            retry: self.retry.clone(),
            normalized_path: self.normalized_path.clone(),
        }
    }
}

/// Routes each request with a [`RouteTable`], applies the route's request
/// actions (see [`RouteDecision::apply`]) and records the [`RouteDecision`]
/// (and the [`RequestHash`], if any) in its extensions before calling the
/// inner service. A request that matches no route fails with
/// [`ErrorKind::NoRoute`] without reaching the inner
/// service.
///
/// The actions are applied here rather than by a layer of their own: in
/// Envoy they are part of the route (the router applies them as it forwards),
/// they need what only the match knows (how long the matched prefix was), and
/// every layer below (mirror, retry, dispatch) must see the request as it
/// will be sent.
///
/// ```
/// use std::sync::Arc;
/// use meshlib::config::MeshConfig;
/// use meshlib::route::{RouteDecision, RouteLayer, RouteTable};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = MeshConfig::from_yaml(r#"
/// virtual_hosts: [{ name: api, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: backend } }] }]
/// clusters: [{ name: backend }]
/// "#)?;
/// let routed = ServiceBuilder::new()
///     .layer(RouteLayer::new(Arc::new(RouteTable::new(&config)?)))
///     .service_fn(|request: http::Request<()>| async move {
///         let cluster = request.extensions().get::<RouteDecision>().unwrap().cluster().to_owned();
///         Ok::<_, meshlib::Error>(cluster)
///     });
/// let cluster = routed.oneshot(http::Request::get("http://api/users").body(())?).await?;
/// assert_eq!(cluster, "backend");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Route<S> {
    inner: S,
    table: Arc<RouteTable>,
}

impl<S> Route<S> {
    /// Routes with `table` in front of `inner`.
    pub fn new(inner: S, table: Arc<RouteTable>) -> Self {
        Route { inner, table }
    }

    /// The table routed with.
    pub fn table(&self) -> &Arc<RouteTable> {
        &self.table
    }
}

impl<S, B> Service<Request<B>> for Route<S>
where
    S: Service<Request<B>>,
    S::Error: From<Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match self.table.decide(&request) {
            Ok(decision) => {
                if let Err(error) = decision.apply(&mut request) {
                    return ResponseFuture::failed(error);
                }
                if let Some(hash) = decision.hash() {
                    request.extensions_mut().insert(hash);
                }
                request.extensions_mut().insert(decision);
                ResponseFuture::called(self.inner.call(request))
            }
            Err(error) => ResponseFuture::failed(error),
        }
    }
}
