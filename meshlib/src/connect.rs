//! How a request reaches one endpoint.
//!
//! Two steps, as a cluster's stack is built: [`Connect`] makes each cluster's
//! [`ClusterConnect`] (the home of what a cluster's connections share: TLS
//! settings, connection counts), and that makes the [`EndpointClient`] of
//! each of the cluster's endpoint addresses, the connections to one endpoint,
//! to which a balancer hands each request. The cluster's connector also
//! probes an endpoint that failed to connect, so what is probed is what
//! requests use. The default,
//! [`HttpConnect`], gives each endpoint its own pooled hyper-util client whose
//! dialer always connects to that endpoint's address: the request keeps its
//! logical authority (`Host` / `:authority` say `reviews`, not an IP), as it
//! would through Envoy, while the connection goes to the endpoint picked.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::body::BoxBody;
use crate::config::{Cluster, Protocol};
use crate::error::{Error, ErrorKind};

/// The connections to one endpoint: sends a request there.
pub trait EndpointClient: Send + Sync + 'static {
    /// The response body.
    type Body;
    /// The response future.
    type Future: Future<Output = Result<Response<Self::Body>, Error>> + Send + 'static;

    /// Sends `request` to this endpoint.
    fn send(&self, request: Request<BoxBody>) -> Self::Future;
}

/// Makes each cluster's [`ClusterConnect`]: the first step of connecting,
/// taken once per cluster stack.
pub trait Connect: Send + Sync + 'static {
    /// The per-endpoint client.
    type Client: EndpointClient;
    /// The per-cluster connector.
    type Cluster: ClusterConnect<Client = Self::Client>;

    /// The connector for `cluster`'s endpoints.
    fn cluster(&self, cluster: &Cluster) -> Self::Cluster;
}

/// The future of a [`ClusterConnect::probe`].
pub type ProbeFuture = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// One cluster's connector: makes the client of each endpoint address and
/// probes endpoints that failed to connect.
///
/// A closure from address to client is one, probing with a plain TCP
/// connect; a test or a balancer used alone needs nothing more:
///
/// ```
/// use meshlib::connect::ClusterConnect;
///
/// let connector = |address: std::net::SocketAddr| address.port();
/// assert_eq!(connector.endpoint("10.0.0.1:8080".parse()?), 8080);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub trait ClusterConnect: Send + Sync + 'static {
    /// The per-endpoint client: an [`EndpointClient`] for a stack that sends.
    type Client: Send + Sync + 'static;

    /// The client for the endpoint at `address`.
    fn endpoint(&self, address: SocketAddr) -> Self::Client;

    /// Opens one connection to `address` the way requests would, sending
    /// nothing, within `timeout`: how an endpoint that failed to connect is
    /// found reachable again. The default is a plain TCP connect; a
    /// connector that adds a handshake (TLS) should do it here too, since a
    /// reachable port that fails the handshake is not reachable.
    fn probe(&self, address: SocketAddr, timeout: Duration) -> ProbeFuture {
        Box::pin(tcp_connect(address, timeout).map(|stream| stream.map(drop)))
    }
}

impl<F, C> ClusterConnect for F
where
    F: Fn(SocketAddr) -> C + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    type Client = C;

    fn endpoint(&self, address: SocketAddr) -> C {
        self(address)
    }
}

/// The default [`Connect`]: plain TCP, HTTP/1.1 or HTTP/2 (h2c, prior
/// knowledge) as the cluster's `protocol` says, pooled per endpoint.
#[derive(Debug, Clone)]
pub struct HttpConnect {
    idle_timeout: Duration,
}

impl Default for HttpConnect {
    fn default() -> Self {
        HttpConnect {
            idle_timeout: Duration::from_secs(90),
        }
    }
}

impl HttpConnect {
    /// Pooled connections closed after 90 s idle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Closes pooled connections idle for longer than `timeout`.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

impl Connect for HttpConnect {
    type Client = HttpEndpoint;
    type Cluster = HttpCluster;

    fn cluster(&self, cluster: &Cluster) -> HttpCluster {
        HttpCluster {
            settings: Arc::new(ClusterSettings {
                name: Arc::from(cluster.name.as_str()),
                connect_timeout: cluster.connect_timeout,
                http2_only: cluster.protocol == Protocol::Http2,
                idle_timeout: self.idle_timeout,
            }),
        }
    }
}

/// One cluster's [`HttpConnect`] connector.
#[derive(Debug, Clone)]
pub struct HttpCluster {
    settings: Arc<ClusterSettings>,
}

/// What every endpoint of a cluster connects with: held once per cluster and
/// shared, so an endpoint costs its address and its pools.
#[derive(Debug)]
struct ClusterSettings {
    name: Arc<str>,
    connect_timeout: Duration,
    http2_only: bool,
    idle_timeout: Duration,
}

impl ClusterConnect for HttpCluster {
    type Client = HttpEndpoint;

    fn endpoint(&self, address: SocketAddr) -> HttpEndpoint {
        HttpEndpoint {
            address,
            cluster: self.settings.clone(),
            http1: OnceLock::new(),
            http2: OnceLock::new(),
        }
    }

    fn probe(&self, address: SocketAddr, timeout: Duration) -> ProbeFuture {
        // The dialer requests use, with the probe's own bound.
        let mut dialer = Dialer { address, timeout };
        Box::pin(
            dialer
                .call(Uri::from_static("/"))
                .map(|stream| stream.map(drop)),
        )
    }
}

/// One endpoint's pooled hyper-util clients; see [`HttpConnect`].
///
/// An `http2` cluster sends everything over HTTP/2. An `http1` cluster sends
/// HTTP/1.x requests over HTTP/1.1 and HTTP/2 requests (gRPC calls, which
/// cannot travel over HTTP/1.1) over HTTP/2 with prior knowledge, as Envoy's
/// `USE_DOWNSTREAM_PROTOCOL` does. Each pool is made on first use: a mesh of
/// 100,000 endpoints pays for the connections it uses, not for every address.
#[derive(Debug)]
pub struct HttpEndpoint {
    address: SocketAddr,
    cluster: Arc<ClusterSettings>,
    http1: OnceLock<Box<legacy::Client<Dialer, BoxBody>>>,
    http2: OnceLock<Box<legacy::Client<Dialer, BoxBody>>>,
}

impl HttpEndpoint {
    fn pool(&self, http2: bool) -> &legacy::Client<Dialer, BoxBody> {
        let cell = if http2 { &self.http2 } else { &self.http1 };
        cell.get_or_init(|| {
            let mut builder = legacy::Client::builder(TokioExecutor::new());
            builder
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(self.cluster.idle_timeout)
                .timer(TokioTimer::new())
                .http2_only(http2);
            Box::new(builder.build(Dialer {
                address: self.address,
                timeout: self.cluster.connect_timeout,
            }))
        })
    }
}

impl EndpointClient for HttpEndpoint {
    type Body = Incoming;
    type Future = HttpFuture;

    fn send(&self, mut request: Request<BoxBody>) -> HttpFuture {
        if let Err(message) = absolute_uri(&mut request) {
            return HttpFuture {
                state: HttpState::Failed(Some(Error::new(ErrorKind::NoRoute, message))),
            };
        }
        let http2 = self.cluster.http2_only || request.version() == http::Version::HTTP_2;
        HttpFuture {
            state: HttpState::Sending {
                response: self.pool(http2).request(request),
                cluster: self.cluster.name.clone(),
                address: self.address,
            },
        }
    }
}

/// hyper-util's client wants `http://authority/path`; a request may carry its
/// authority in the `Host` header instead.
fn absolute_uri(request: &mut Request<BoxBody>) -> Result<(), String> {
    let uri = request.uri();
    if uri.scheme().is_some() && uri.authority().is_some() {
        return Ok(());
    }
    let authority = match uri.authority() {
        Some(authority) => authority.clone(),
        None => request
            .headers()
            .get(http::header::HOST)
            .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok())
            .ok_or("request has no authority or valid Host header")?,
    };
    let mut parts = uri.clone().into_parts();
    parts.scheme = Some(parts.scheme.unwrap_or(http::uri::Scheme::HTTP));
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *request.uri_mut() = Uri::from_parts(parts).map_err(|e| format!("bad request URI: {e}"))?;
    Ok(())
}

/// The response of an [`HttpEndpoint`], its errors made into [`Error`]s that
/// name the cluster and address.
pub struct HttpFuture {
    state: HttpState,
}

enum HttpState {
    Sending {
        response: legacy::ResponseFuture,
        cluster: Arc<str>,
        address: SocketAddr,
    },
    Failed(Option<Error>),
}

impl std::fmt::Debug for HttpFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFuture").finish_non_exhaustive()
    }
}

impl Future for HttpFuture {
    type Output = Result<Response<Incoming>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            HttpState::Sending {
                response,
                cluster,
                address,
            } => Pin::new(response).poll(cx).map_err(|e| {
                let kind = if e.is_connect() {
                    ErrorKind::Connect
                } else {
                    ErrorKind::Upstream
                };
                Error::new(kind, format!("cluster {cluster:?} endpoint {address}")).with_source(e)
            }),
            HttpState::Failed(error) => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::new(ErrorKind::Upstream, "response polled after completion")
            }))),
        }
    }
}

/// Dials one fixed address, whatever the request's authority.
#[derive(Debug, Clone, Copy)]
struct Dialer {
    address: SocketAddr,
    timeout: Duration,
}

impl Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let Dialer { address, timeout } = *self;
        Box::pin(async move {
            let stream = tcp_connect(address, timeout).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// A TCP connection to `address`, or an error once `timeout` has passed.
async fn tcp_connect(address: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            )
        })?
}
