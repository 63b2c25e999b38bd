//! Routing: which virtual host, which route, which cluster.
//!
//! [`Route`] matches each request against a compiled [`RouteTable`] once and
//! writes the outcome, a [`RouteDecision`], into the request's extensions; later
//! layers read the decision instead of matching again. Semantics follow Envoy's
//! `route_components.proto` and gRPC's gRFC A28; see [`RouteTable`].

mod layer;
mod split;
mod table;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower_service::Service;

use crate::error::Error;
use crate::future::ResponseFuture;

pub use layer::RouteLayer;
pub(crate) use table::RouteInfo;
pub use table::RouteTable;

/// The address a request came from, set in its extensions by a caller that
/// forwards requests (a server handing on its inbound requests): the input of
/// the `connection_properties: { source_ip: true }` hash policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceAddress(pub std::net::SocketAddr);

/// Where a request was routed: written by [`Route`] into the request's
/// extensions, read by the layers after it.
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
}

impl RouteDecision {
    /// A decision for `cluster` by the route named `route` of `virtual_host`, with no timeout.
    pub fn new(virtual_host: &str, route: &str, cluster: &str) -> Self {
        RouteDecision {
            route: Arc::new(RouteInfo {
                virtual_host: Arc::from(virtual_host),
                name: Arc::from(route),
                timeout: None,
            }),
            cluster: Arc::from(cluster),
        }
    }

    /// The same decision with the route's timeout set to `timeout`.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.route).timeout = timeout;
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

    /// The route's timeout for the response headers, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.route.timeout
    }
}

/// Routes each request with a [`RouteTable`] and records the [`RouteDecision`]
/// in its extensions before calling the inner service. A request that matches
/// no route fails with [`ErrorKind::NoRoute`](crate::ErrorKind::NoRoute)
/// without reaching the inner service.
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
                request.extensions_mut().insert(decision);
                ResponseFuture::called(self.inner.call(request))
            }
            Err(error) => ResponseFuture::failed(error),
        }
    }
}
