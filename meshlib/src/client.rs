//! [`MeshClient`]: the outbound stack behind one hot-swappable configuration.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::runtime::Handle;
use tower_service::Service;

use crate::body::{self, BoxBody};
use crate::config::{ConfigError, FileSource, MeshConfig};
use crate::connect::{Connect, EndpointClient, HttpConnect};
use crate::discovery::Sources;
use crate::error::{BoxError, Error, ErrorKind};
use crate::future::ResponseFuture;
use crate::ratelimit::{Decision, LocalRateLimiter, RateLimitStats};
use crate::route::RouteTable;
use crate::stack::{self, ClusterSet, Outbound};

/// A `tower::Service` that sends each HTTP request where the mesh
/// configuration routes it: virtual host and route matching, weighted cluster
/// choice, the route's timeout, round-robin balancing over the cluster's
/// endpoints, and pooled HTTP/1.1 or HTTP/2 connections.
///
/// The configuration is hot-swappable: [`MeshClient::update`] (or a watched
/// file) applies a new one to new requests, while requests in flight finish
/// on the one they started with. A configuration that fails validation is
/// refused with its error and the current one keeps serving. Clones share
/// the configuration and the connections.
///
/// ```no_run
/// use http_body_util::{BodyExt, Empty};
/// use meshlib::MeshClient;
/// use tower::ServiceExt;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = MeshClient::builder()
///     .file("mesh.yaml")
///     .watch(std::time::Duration::from_secs(1))
///     .build()?;
/// let request = http::Request::get("http://reviews/reviews/1").body(Empty::<bytes::Bytes>::new())?;
/// let response = mesh.clone().oneshot(request).await?;
/// let body = response.into_body().collect().await?.to_bytes();
/// # Ok(())
/// # }
/// ```
pub struct MeshClient<C: Connect = HttpConnect> {
    shared: Arc<Shared<C>>,
}

impl<C: Connect> Clone for MeshClient<C> {
    fn clone(&self) -> Self {
        MeshClient {
            shared: self.shared.clone(),
        }
    }
}

impl<C: Connect> std::fmt::Debug for MeshClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.shared.current.load();
        f.debug_struct("MeshClient")
            .field("version", &snapshot.version)
            .field("clusters", &snapshot.clusters)
            .finish_non_exhaustive()
    }
}

struct Shared<C: Connect> {
    current: ArcSwap<Snapshot<C::Client>>,
    /// Runs every background task: probes, mirrored copies, discovery, the
    /// file watch.
    executor: Handle,
    /// What the clusters' discovery sources need: EDS's feeds, the AWS SDK
    /// configuration.
    sources: Sources,
    /// Dropped with the last clone: background tasks watch it to stop.
    alive: tokio::sync::watch::Sender<()>,
    connect: C,
    /// Serializes updates; requests never take it.
    updating: Mutex<()>,
    rejected: ArcSwapOption<ConfigError>,
}

/// One applied configuration and the stack built from it.
struct Snapshot<C> {
    version: u64,
    config: Arc<MeshConfig>,
    clusters: Arc<ClusterSet<C>>,
    service: Outbound<C>,
    /// The configuration's local rate limit, kept from the previous
    /// snapshot while its settings stay the same.
    limiter: Option<Arc<LocalRateLimiter>>,
}

impl MeshClient {
    /// A client for `config` with the default HTTP connections.
    pub fn new(config: MeshConfig) -> Result<Self, ConfigError> {
        Self::builder().config(config).build()
    }

    /// A builder, to choose the configuration source and connections.
    pub fn builder() -> Builder {
        Builder {
            source: Source::Config(MeshConfig::default()),
            watch: None,
            connect: HttpConnect::default(),
            executor: None,
            #[cfg(feature = "cloudmap")]
            cloud_map: None,
        }
    }
}

impl<C: Connect> MeshClient<C> {
    fn with_connect(
        config: MeshConfig,
        connect: C,
        executor: Handle,
        sources: Sources,
    ) -> Result<Self, ConfigError> {
        let snapshot = Snapshot::build(1, config, None, &connect, &executor, &sources)?;
        Ok(MeshClient {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(snapshot),
                executor,
                sources,
                alive: tokio::sync::watch::channel(()).0,
                connect,
                updating: Mutex::new(()),
                rejected: ArcSwapOption::empty(),
            }),
        })
    }

    /// Applies `config` to every request from now on, or refuses it whole with
    /// the reason, keeping the current one. Returns the new version number.
    ///
    /// Clusters whose policy did not change keep their connections; only their
    /// endpoint sets are updated.
    pub fn update(&self, config: MeshConfig) -> Result<u64, ConfigError> {
        let _one_at_a_time = self
            .shared
            .updating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.shared.current.load_full();
        let result = Snapshot::build(
            current.version + 1,
            config,
            Some(&current),
            &self.shared.connect,
            &self.shared.executor,
            &self.shared.sources,
        );
        match result {
            Ok(snapshot) => {
                let version = snapshot.version;
                self.shared.current.store(Arc::new(snapshot));
                self.shared.rejected.store(None);
                tracing::info!(version, "mesh configuration applied");
                Ok(version)
            }
            Err(error) => {
                tracing::warn!(%error, "mesh configuration refused; the previous one stays in force");
                self.shared.rejected.store(Some(Arc::new(error.clone())));
                Err(error)
            }
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<MeshConfig> {
        self.shared.current.load().config.clone()
    }

    /// The version of the configuration in force: 1 for the first, one more
    /// for each applied update.
    pub fn version(&self) -> u64 {
        self.shared.current.load().version
    }

    /// The endpoints of the cluster `name` in force now, as its discovery
    /// source last gave them; `None` for a cluster the configuration does not
    /// have.
    pub fn endpoints(&self, name: &str) -> Option<Vec<crate::config::Endpoint>> {
        let snapshot = self.shared.current.load();
        snapshot
            .clusters
            .get(name)
            .map(|s| s.balancer().endpoints())
    }

    /// Retries to the cluster `name` its circuit breakers have refused since
    /// its stack was built (see [`CircuitBreakers`](crate::config::CircuitBreakers));
    /// `None` for a cluster the configuration does not have.
    pub fn retries_refused(&self, name: &str) -> Option<u64> {
        let snapshot = self.shared.current.load();
        snapshot.clusters.get(name).map(|s| s.retries_refused())
    }

    /// What the configuration's local rate limit has decided since its
    /// bucket was made; `None` without one.
    pub fn rate_limit_stats(&self) -> Option<RateLimitStats> {
        self.shared
            .current
            .load()
            .limiter
            .as_ref()
            .map(|l| l.stats())
    }

    /// `endpoints` are now those of the EDS cluster `cluster`: its balancer
    /// is updated in place, and a stack built for it later starts from them.
    #[cfg(feature = "xds")]
    pub(crate) fn publish_endpoints(
        &self,
        cluster: &str,
        endpoints: Arc<[crate::config::Endpoint]>,
    ) {
        self.shared.sources.feeds.publish(cluster, endpoints);
    }

    /// Forgets the published endpoints of every cluster `keep` rejects.
    #[cfg(feature = "xds")]
    pub(crate) fn retain_published(&self, keep: impl FnMut(&str) -> bool) {
        self.shared.sources.feeds.retain(keep);
    }

    /// The executor the client runs its background work on.
    pub(crate) fn executor(&self) -> &Handle {
        &self.shared.executor
    }

    /// Why the most recent configuration was refused, if it was; cleared when
    /// one is applied.
    pub fn last_refused(&self) -> Option<Arc<ConfigError>> {
        self.shared.rejected.load_full()
    }

    /// Watches `source` every `interval`, applying each new valid version of
    /// the file and refusing (and logging) invalid ones. The first poll applies
    /// the file unless its text equals `applied`. Stops when every clone of this
    /// client is dropped.
    fn spawn_watch(
        &self,
        source: FileSource,
        interval: Duration,
        applied: Option<String>,
    ) -> Result<tokio::task::JoinHandle<()>, ConfigError> {
        if interval.is_zero() {
            return Err(ConfigError::source(
                Some(&source.path().display().to_string()),
                "watch: the interval must be more than zero".to_owned(),
            ));
        }
        let runtime = self.shared.executor.clone();
        let shared: Weak<Shared<C>> = Arc::downgrade(&self.shared);
        let mut watch = source.watcher(applied);
        Ok(runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let change = watch.changed().await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                match change {
                    None => {}
                    Some(Ok(config)) => {
                        // A refusal is logged and recorded by `update`.
                        let _ = MeshClient { shared }.update(config);
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "mesh configuration file refused; the previous configuration stays in force");
                        shared.rejected.store(Some(Arc::new(error)));
                    }
                }
            }
        }))
    }
}

impl<E: EndpointClient> Snapshot<E> {
    fn build(
        version: u64,
        config: MeshConfig,
        previous: Option<&Snapshot<E>>,
        connect: &impl Connect<Client = E>,
        executor: &Handle,
        sources: &Sources,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let limiter = match &config.local_rate_limit {
            None => None,
            Some(settings) => match previous.and_then(|p| p.limiter.as_ref()) {
                Some(kept) if kept.settings() == settings => Some(kept.clone()),
                _ => Some(Arc::new(LocalRateLimiter::new(settings.clone()).map_err(
                    |e| ConfigError::source(None, format!("local_rate_limit.{e}")),
                )?)),
            },
        };
        let routes = Arc::new(RouteTable::new(&config)?);
        let clusters = Arc::new(ClusterSet::build(
            &config,
            previous.map(|p| &*p.clusters),
            connect,
            executor,
            sources,
        ));
        Ok(Snapshot {
            version,
            service: stack::outbound(routes, clusters.clone(), executor.clone()),
            config: Arc::new(config),
            clusters,
            limiter,
        })
    }
}

impl<C, B> Service<Request<B>> for MeshClient<C>
where
    C: Connect,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<<C::Client as EndpointClient>::Body>;
    type Error = Error;
    type Future = <Outbound<C::Client> as Service<Request<BoxBody>>>::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The stack below is always ready (see `ClusterSend`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // One atomic load picks the configuration this request lives with.
        let snapshot = self.shared.current.load();
        if let Some(limiter) = &snapshot.limiter
            && let Decision::Refused { reset } = limiter.check()
        {
            let bucket = limiter.settings().token_bucket.max_tokens;
            return ResponseFuture::failed(Error::new(
                ErrorKind::RateLimited,
                format!("local rate limit: no token left of {bucket}; one is back in {reset:?}"),
            ));
        }
        let mut service = snapshot.service.clone();
        service.call(request.map(body::boxed))
    }
}

/// A handle a background task holds on a [`MeshClient`] without keeping it alive.
pub(crate) struct WeakMeshClient<C: Connect = HttpConnect> {
    shared: Weak<Shared<C>>,
    alive: tokio::sync::watch::Receiver<()>,
}

impl<C: Connect> MeshClient<C> {
    pub(crate) fn downgrade(&self) -> WeakMeshClient<C> {
        WeakMeshClient {
            shared: Arc::downgrade(&self.shared),
            alive: self.shared.alive.subscribe(),
        }
    }
}

impl<C: Connect> WeakMeshClient<C> {
    /// The client, if any clone of it is still alive.
    pub(crate) fn upgrade(&self) -> Option<MeshClient<C>> {
        self.shared.upgrade().map(|shared| MeshClient { shared })
    }

    /// Resolves when the last clone of the client has been dropped.
    pub(crate) async fn closed(&mut self) {
        // The value never changes: `changed` only returns when the sender,
        // owned by the client, is dropped.
        while self.alive.changed().await.is_ok() {}
    }
}

/// Builds a [`MeshClient`]: where its configuration comes from, how it
/// connects, and the Tokio runtime its background work (connectivity probes,
/// mirrored copies, discovery, the file watch) runs on.
///
/// ```
/// use meshlib::MeshClient;
/// use meshlib::config::MeshConfig;
///
/// let runtime = tokio::runtime::Runtime::new()?;
/// let config = MeshConfig::from_yaml("clusters: [{ name: a, endpoints: [{ address: '127.0.0.1:9000' }] }]")?;
/// let mesh = MeshClient::builder()
///     .config(config)
///     .executor(runtime.handle().clone())
///     .build()?;
/// assert_eq!(mesh.version(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Builder<C = HttpConnect> {
    source: Source,
    watch: Option<Duration>,
    connect: C,
    executor: Option<Handle>,
    #[cfg(feature = "cloudmap")]
    cloud_map: Option<aws_sdk_servicediscovery::Config>,
}

#[derive(Debug)]
enum Source {
    Config(MeshConfig),
    File(PathBuf),
}

impl<C: Connect> Builder<C> {
    /// Starts from `config`.
    pub fn config(mut self, config: MeshConfig) -> Self {
        self.source = Source::Config(config);
        self
    }

    /// Starts from the YAML or JSON file at `path` (`.json` is read as JSON).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Source::File(path.into());
        self
    }

    /// With [`Builder::file`]: re-reads the file every `interval` and applies
    /// each valid new version; needs a Tokio runtime at [`Builder::build`].
    pub fn watch(mut self, interval: Duration) -> Self {
        self.watch = Some(interval);
        self
    }

    /// Connects to endpoints with `connect` instead of plain HTTP.
    pub fn connect<D: Connect>(self, connect: D) -> Builder<D> {
        Builder {
            source: self.source,
            watch: self.watch,
            connect,
            executor: self.executor,
            #[cfg(feature = "cloudmap")]
            cloud_map: self.cloud_map,
        }
    }

    /// Runs the client's background work on `executor` instead of the
    /// runtime [`Builder::build`] is called in.
    pub fn executor(mut self, executor: Handle) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Cloud Map clusters call AWS with a client built from `sdk` (its
    /// credentials, region, HTTP client and timeouts) instead of
    /// `aws-config`'s default chain; a cluster's `region` and `endpoint_url`
    /// override it. A custom endpoint belongs in the clusters'
    /// `endpoint_url`, where meshlib keeps the SDK's `data-` host prefix off
    /// it (see [`discovery::cloud_map`](crate::discovery::cloud_map)).
    ///
    /// ```
    /// use aws_sdk_servicediscovery::config::{BehaviorVersion, Credentials, Region};
    /// use meshlib::MeshClient;
    ///
    /// # let runtime = tokio::runtime::Runtime::new()?;
    /// # let _guard = runtime.enter();
    /// let sdk = aws_sdk_servicediscovery::Config::builder()
    ///     .behavior_version(BehaviorVersion::latest())
    ///     .region(Region::new("eu-west-1"))
    ///     .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "example"))
    ///     .build();
    /// let mesh = MeshClient::builder().cloud_map(sdk).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "cloudmap")]
    pub fn cloud_map(mut self, sdk: aws_sdk_servicediscovery::Config) -> Self {
        self.cloud_map = Some(sdk);
        self
    }

    /// The client, or the error that makes its first configuration unusable.
    /// Outside a Tokio runtime, and without [`Builder::executor`], there is
    /// nothing to run the client's background work on: that is an error too.
    pub fn build(self) -> Result<MeshClient<C>, ConfigError> {
        let executor = match self.executor {
            Some(executor) => executor,
            None => Handle::try_current().map_err(|_| {
                ConfigError::source(
                    None,
                    "meshlib runs background work (connectivity probes, mirrored requests, \
                     discovery, the file watch) on a Tokio runtime: build the client inside one, \
                     or give one with Builder::executor"
                        .to_owned(),
                )
            })?,
        };
        let sources = Sources {
            #[cfg(feature = "cloudmap")]
            cloud_map: self.cloud_map,
            ..Sources::default()
        };
        match self.source {
            Source::Config(config) => {
                MeshClient::with_connect(config, self.connect, executor, sources)
            }
            Source::File(path) => {
                let source = FileSource::new(path);
                let text = source.read_text()?;
                let client = MeshClient::with_connect(
                    source.parse(&text)?,
                    self.connect,
                    executor,
                    sources,
                )?;
                if let Some(interval) = self.watch {
                    client.spawn_watch(source, interval, Some(text))?;
                }
                Ok(client)
            }
        }
    }
}
