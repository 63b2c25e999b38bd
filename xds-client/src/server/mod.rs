//! An in-memory snapshot control plane (feature `server`): ADS in both
//! variants, one versioned snapshot per node, and a log of every ACK and NACK.
//!
//! It is for tests, examples and the interop suite, and for users' own tests;
//! production meshes already run a control plane (istiod, go-control-plane,
//! Traffic Director…) that meshlib joins over the same protocol.
//!
//! ```no_run
//! use meshlib_xds::server::{Snapshot, SnapshotServer};
//! use meshlib_xds::pb::envoy::config::cluster::v3::Cluster;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = SnapshotServer::new();
//! server.set_default(Snapshot::new("1").with(Cluster { name: "reviews".into(), ..Default::default() }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("control plane on {}", listener.local_addr()?);
//! server.serve(listener).await?;
//! # Ok(())
//! # }
//! ```

pub mod build;
mod delta;
mod sotw;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prost::{Message, Name};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;

use crate::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use crate::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use crate::pb::google::protobuf::Any;

/// The resources served to a node at one version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    version: String,
    /// type URL → name → resource.
    resources: BTreeMap<String, BTreeMap<String, Any>>,
}

impl Snapshot {
    /// An empty snapshot at `version`.
    pub fn new(version: impl Into<String>) -> Self {
        Snapshot {
            version: version.into(),
            resources: BTreeMap::new(),
        }
    }

    /// The snapshot's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Adds `resource`, named as its type names resources (`name`, or
    /// `cluster_name` for a ClusterLoadAssignment).
    pub fn with<T: Message + Name + crate::Resource>(self, resource: T) -> Self {
        let name = resource.resource_name().to_owned();
        self.with_any(
            name,
            Any {
                type_url: T::type_url(),
                value: resource.encode_to_vec(),
            },
        )
    }

    /// Adds a resource as it goes on the wire: served under `name`, whatever
    /// its bytes say (which lets a test serve a broken resource).
    pub fn with_any(mut self, name: impl Into<String>, resource: Any) -> Self {
        self.resources
            .entry(resource.type_url.clone())
            .or_default()
            .insert(name.into(), resource);
        self
    }

    /// Every resource as it goes on the wire: its type URL, the name it is
    /// served under and the `Any`, ordered by type URL, then name. What a
    /// test needs to hand the same resources to another control plane.
    ///
    /// ```
    /// use meshlib_xds::pb::envoy::config::cluster::v3::Cluster;
    /// use meshlib_xds::server::Snapshot;
    ///
    /// let snapshot = Snapshot::new("1").with(Cluster { name: "reviews".into(), ..Default::default() });
    /// let (type_url, name, any) = snapshot.resources().next().expect("one resource");
    /// assert_eq!(type_url, "type.googleapis.com/envoy.config.cluster.v3.Cluster");
    /// assert_eq!(name, "reviews");
    /// assert_eq!(any.type_url, type_url);
    /// ```
    pub fn resources(&self) -> impl Iterator<Item = (&str, &str, &Any)> {
        self.resources.iter().flat_map(|(type_url, by_name)| {
            by_name
                .iter()
                .map(move |(name, any)| (type_url.as_str(), name.as_str(), any))
        })
    }

    fn of_type(&self, type_url: &str) -> Option<&BTreeMap<String, Any>> {
        self.resources.get(type_url)
    }
}

/// One ACK or NACK a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The node that sent it.
    pub node: String,
    /// The type URL.
    pub type_url: String,
    /// SotW: the version it accepted (on a NACK, the last it accepted).
    pub version_info: String,
    /// The nonce of the response it answers.
    pub nonce: String,
    /// For a NACK, the `error_detail` message.
    pub error: Option<String>,
    /// Whether it came on a delta stream.
    pub delta: bool,
}

impl Ack {
    /// Whether this is a NACK.
    pub fn is_nack(&self) -> bool {
        self.error.is_some()
    }
}

#[derive(Default)]
struct Shared {
    by_node: HashMap<String, Arc<Snapshot>>,
    default: Option<Arc<Snapshot>>,
    acks: Vec<Ack>,
    /// (node, type URL) → what its latest stream subscribes to (`*` for wildcard).
    subscriptions: HashMap<(String, String), Vec<String>>,
}

/// The snapshot control plane; clones share state. See the module docs.
#[derive(Clone)]
pub struct SnapshotServer {
    shared: Arc<Mutex<Shared>>,
    /// Bumped on every snapshot change; streams wake on it.
    generation: Arc<watch::Sender<u64>>,
    nonces: Arc<AtomicU64>,
    /// Whether a stream's response headers wait for its first response.
    headers_with_first_response: Arc<AtomicBool>,
    /// ADS streams opened so far, and open now.
    streams: Arc<AtomicU64>,
    open: Arc<AtomicU64>,
}

impl std::fmt::Debug for SnapshotServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotServer").finish_non_exhaustive()
    }
}

impl Default for SnapshotServer {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotServer {
    /// A server with no snapshot: clients get empty responses until one is set.
    pub fn new() -> Self {
        SnapshotServer {
            shared: Arc::default(),
            generation: Arc::new(watch::channel(0).0),
            nonces: Arc::default(),
            headers_with_first_response: Arc::default(),
            streams: Arc::default(),
            open: Arc::default(),
        }
    }

    /// Sends each stream's response headers only with its first response,
    /// as gRPC Python's server does (and a grpc-go handler that sends
    /// nothing before the first request): until then the call has not opened
    /// on the client's side. A client that waits for the call to open before
    /// subscribing never subscribes. Off by default.
    pub fn headers_with_first_response(&self, on: bool) {
        self.headers_with_first_response
            .store(on, Ordering::Relaxed);
    }

    /// How many ADS streams clients have opened so far.
    pub fn streams_opened(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }

    /// How many ADS streams are open now: a stream closes when its client
    /// ends it or goes away.
    pub fn streams_open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// The call's response: at once, or with its first message.
    async fn respond<T: Send + 'static>(
        &self,
        responses: ResponseStream<T>,
    ) -> Result<tonic::Response<ResponseStream<T>>, tonic::Status> {
        self.streams.fetch_add(1, Ordering::Relaxed);
        // Counted open while tonic holds the response stream.
        let open = OpenStream::new(&self.open);
        let mut responses: ResponseStream<T> = Box::pin(responses.map(move |r| {
            let _open = &open;
            r
        }));
        if !self.headers_with_first_response.load(Ordering::Relaxed) {
            return Ok(tonic::Response::new(responses));
        }
        match responses.next().await {
            Some(first) => Ok(tonic::Response::new(Box::pin(
                tokio_stream::once(first).chain(responses),
            ))),
            None => Err(tonic::Status::cancelled(
                "the client left before any response",
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `snapshot` to the node with id `node_id`, pushing it to the
    /// node's open streams.
    pub fn set(&self, node_id: &str, snapshot: Snapshot) {
        self.lock()
            .by_node
            .insert(node_id.to_owned(), Arc::new(snapshot));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Serves `snapshot` to every node that has none of its own.
    pub fn set_default(&self, snapshot: Snapshot) {
        self.lock().default = Some(Arc::new(snapshot));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Every ACK and NACK received so far, oldest first.
    pub fn acks(&self) -> Vec<Ack> {
        self.lock().acks.clone()
    }

    /// Every ACK and NACK received since the last call, oldest first,
    /// leaving the log empty: what a long-running user (a soak test) reads
    /// so the log does not grow with every update for as long as it runs.
    pub fn take_acks(&self) -> Vec<Ack> {
        std::mem::take(&mut self.lock().acks)
    }

    /// The NACKs received so far.
    pub fn nacks(&self) -> Vec<Ack> {
        self.acks().into_iter().filter(Ack::is_nack).collect()
    }

    /// What `node`'s latest stream subscribes to for `type_url`: resource
    /// names, with `*` for a wildcard subscription.
    pub fn subscribed(&self, node: &str, type_url: &str) -> Vec<String> {
        self.lock()
            .subscriptions
            .get(&(node.to_owned(), type_url.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn set_subscribed(&self, node: &str, type_url: &str, names: &BTreeSet<String>, wildcard: bool) {
        let mut list: Vec<String> = names.iter().cloned().collect();
        if wildcard {
            list.push("*".to_owned());
        }
        self.lock()
            .subscriptions
            .insert((node.to_owned(), type_url.to_owned()), list);
    }

    fn snapshot_for(&self, node: &str) -> Arc<Snapshot> {
        let shared = self.lock();
        shared
            .by_node
            .get(node)
            .or(shared.default.as_ref())
            .cloned()
            .unwrap_or_default()
    }

    fn record(&self, ack: Ack) {
        if let Some(error) = &ack.error {
            tracing::info!(node = %ack.node, type_url = %ack.type_url, %error, "NACK");
        }
        self.lock().acks.push(ack);
    }

    fn next_nonce(&self) -> String {
        let n = self.nonces.fetch_add(1, Ordering::Relaxed) + 1;
        n.to_string()
    }

    /// The tonic service, to mount on a server of one's own.
    pub fn service(&self) -> AggregatedDiscoveryServiceServer<SnapshotServer> {
        AggregatedDiscoveryServiceServer::new(self.clone())
            .max_decoding_message_size(crate::DEFAULT_MAX_MESSAGE_SIZE)
            .max_encoding_message_size(crate::DEFAULT_MAX_MESSAGE_SIZE)
    }

    /// Serves ADS on `listener` until the future is dropped.
    pub async fn serve(self, listener: TcpListener) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .add_service(self.service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    }

    /// Serves ADS over TLS on `listener`, with the PEM certificate chain and
    /// private key given; with `client_ca`, clients must present a certificate
    /// it signed (mutual TLS).
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        certificate_pem: &[u8],
        private_key_pem: &[u8],
        client_ca: Option<&[u8]>,
    ) -> Result<(), tonic::transport::Error> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let mut tls =
            ServerTlsConfig::new().identity(Identity::from_pem(certificate_pem, private_key_pem));
        if let Some(ca) = client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(ca));
        }
        tonic::transport::Server::builder()
            .tls_config(tls)?
            .add_service(self.service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    }
}

/// A snapshot server running on a runtime and thread of its own, on
/// loopback: what a test uses to kill a control plane outright (every
/// stream cut at once, as a crashed process would) and start another on the
/// same port. Stops when dropped.
#[derive(Debug)]
pub struct StandaloneServer {
    address: std::net::SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

/// The PEM certificate chain and key a TLS server presents, and the CA its
/// clients must be signed by, if it requires client certificates.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The certificate chain, PEM.
    pub certificate_pem: Vec<u8>,
    /// The private key, PEM.
    pub private_key_pem: Vec<u8>,
    /// The CA client certificates must chain to (mutual TLS), PEM.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl SnapshotServer {
    /// Starts this server on `127.0.0.1:port` (0 for any free port) on its
    /// own runtime, over TLS if `tls` is given. The port may be one a killed
    /// predecessor held: the socket is bound with `SO_REUSEADDR`, and while
    /// the predecessor's listener is still closing (a killed runtime shuts
    /// down in the background) binding is retried for up to 5 s.
    pub fn start_standalone(
        &self,
        port: u16,
        tls: Option<ServerTls>,
    ) -> std::io::Result<StandaloneServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            bind_reusing(port)?
        };
        let address = listener.local_addr()?;
        let server = self.clone();
        runtime.spawn(async move {
            let served = match tls {
                Some(tls) => {
                    server
                        .serve_tls(
                            listener,
                            &tls.certificate_pem,
                            &tls.private_key_pem,
                            tls.client_ca_pem.as_deref(),
                        )
                        .await
                }
                None => server.serve(listener).await,
            };
            if let Err(error) = served {
                tracing::error!(%error, "snapshot server stopped");
            }
        });
        Ok(StandaloneServer {
            address,
            runtime: Some(runtime),
        })
    }
}

/// One open stream in [`SnapshotServer::streams_open`], until dropped.
struct OpenStream(Arc<AtomicU64>);

impl OpenStream {
    fn new(count: &Arc<AtomicU64>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        OpenStream(count.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Binds `127.0.0.1:port` with `SO_REUSEADDR`, retrying while the port is
/// still held (bounded: 5 s).
fn bind_reusing(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(([127, 0, 0, 1], port).into()) {
            Ok(()) => return socket.listen(1024),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && port != 0
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

impl StandaloneServer {
    /// Where it listens.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Stops it at once, cutting every stream.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for StandaloneServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a type's SotW responses carry all of a client's resources (LDS, CDS).
fn all_in_each_response(type_url: &str) -> bool {
    type_url == <crate::pb::envoy::config::listener::v3::Listener as Name>::type_url()
        || type_url == <crate::pb::envoy::config::cluster::v3::Cluster as Name>::type_url()
}

/// A per-resource version for delta: a hash of its bytes, so an unchanged
/// resource is not sent again when the snapshot's version moves.
fn resource_version(any: &Any) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    any.type_url.hash(&mut hasher);
    any.value.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

type ResponseStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for SnapshotServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        self.respond(sotw::stream(self.clone(), request.into_inner()))
            .await
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        self.respond(delta::stream(self.clone(), request.into_inner()))
            .await
    }
}
