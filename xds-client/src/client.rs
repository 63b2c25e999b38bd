//! The client handle and typed watches.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::bootstrap::{Bootstrap, XdsServer};
use crate::resource::{Resource, ResourceType, canonical_name};
use crate::state::{AdsState, AllResources, DumpEntry, Presence, Snapshot, WatchError};
use crate::transport::{self, Backoff, Command, TransportConfig};

/// Default largest message accepted from the control plane: large meshes send
/// tens of MiB in one response, far above tonic's 4 MiB default.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// An xDS client: one ADS stream per control plane in use, shared by every
/// watch. Clones share the streams.
///
/// A resource goes to the bootstrap's top-level `xds_servers`, or, for an
/// `xdstp://authority/…` name, to that authority's (gRFC A47 federation);
/// authorities with the same servers share one stream. Within each list the
/// first server is preferred and the next ones are fallbacks (gRFC A71).
/// The stream to the top-level servers opens at once; an authority's when
/// its first resource is watched.
///
/// ```no_run
/// use meshlib_xds::{Bootstrap, XdsClient};
/// use meshlib_xds::pb::envoy::config::listener::v3::Listener;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = XdsClient::new(Bootstrap::from_env()?)?;
/// let mut listener = client.watch::<Listener>("greeter").await?;
/// let state = listener.changed().await?;
/// println!("{} version {}: {:?}", listener.name(), state.version, state.resource);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct XdsClient {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    bootstrap: Bootstrap,
    config: TransportConfig,
    runtime: tokio::runtime::Handle,
    /// One transport task per distinct list of servers, the top-level list
    /// first, each with the sender of its commands.
    tasks: Mutex<Vec<(Vec<XdsServer>, mpsc::UnboundedSender<Command>)>>,
}

impl Shared {
    /// The commands of the task serving the list `servers`, started if none does.
    fn task(&self, servers: &[XdsServer]) -> (usize, mpsc::UnboundedSender<Command>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = tasks.iter().position(|(s, _)| s.as_slice() == servers) {
            return (index, tasks[index].1.clone());
        }
        let first = &servers[0];
        let state = AdsState::new(
            self.bootstrap.node.to_envoy(),
            first.delta(),
            first.ignore_resource_deletion(),
        );
        let (commands, receiver) = mpsc::unbounded_channel();
        self.runtime.spawn(transport::run(
            servers.to_vec(),
            self.config.clone(),
            state,
            receiver,
        ));
        tasks.push((servers.to_vec(), commands.clone()));
        (tasks.len() - 1, commands)
    }

    /// The task for the resource `name`.
    fn task_for(&self, name: &str) -> Result<(usize, mpsc::UnboundedSender<Command>), WatchError> {
        match self.bootstrap.servers_for(name) {
            Some(servers) => Ok(self.task(servers)),
            None => Err(WatchError::UnknownAuthority(name.to_owned())),
        }
    }
}

/// Builds an [`XdsClient`] with settings other than the defaults.
#[derive(Debug)]
pub struct XdsClientBuilder {
    bootstrap: Bootstrap,
    config: TransportConfig,
}

impl XdsClientBuilder {
    /// The largest message accepted from or sent to the control plane
    /// (default [`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// How long one connection attempt may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long a stream that has sent its subscriptions may wait for the
    /// control plane's first response before the client gives it up and
    /// reconnects with backoff (default 30 s). A control plane that sends
    /// nothing at all, headers included, is then an error the watches hear
    /// of, not a silent hang; one that answers once is never timed out again
    /// (a quiet stream is normal in xDS), and HTTP/2 keepalive finds it if it
    /// dies.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.config.response_timeout = timeout;
        self
    }

    /// HTTP/2 keepalive on the control-plane connection: a ping every
    /// `interval`, and the connection declared dead when one goes unanswered
    /// for `timeout` (default 5 min and 20 s, as gRPC's xDS channels). This
    /// is what finds a control plane that stalls without closing the
    /// connection. Servers refuse pings more often than they allow (gRPC
    /// servers: every 5 min by default), so lower it only with a control plane
    /// that permits it.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.keepalive = (interval, timeout);
        self
    }

    /// The reconnect backoff's first and largest delay (default 1 s and
    /// 120 s, growing ×1.6 with ±20 % jitter, as gRPC).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff = Backoff::new(initial, max);
        self
    }

    /// Starts the client's task on the current Tokio runtime.
    pub fn build(self) -> Result<XdsClient, ClientError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ClientError::NoRuntime)?;
        if self.bootstrap.servers.is_empty() {
            return Err(ClientError::NoServer);
        }
        let shared = Shared {
            bootstrap: self.bootstrap,
            config: self.config,
            runtime,
            tasks: Mutex::new(Vec::new()),
        };
        // The top-level servers' stream opens at once.
        shared.task(&shared.bootstrap.servers);
        Ok(XdsClient {
            shared: Arc::new(shared),
        })
    }
}

/// The client could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// It was built outside a Tokio runtime.
    #[error("the xDS client needs a Tokio runtime: build it inside one")]
    NoRuntime,
    /// The bootstrap lists no control plane.
    #[error("the xDS bootstrap lists no server")]
    NoServer,
}

impl XdsClient {
    /// A client for `bootstrap` with the default settings; needs a Tokio runtime.
    pub fn new(bootstrap: Bootstrap) -> Result<Self, ClientError> {
        Self::builder(bootstrap).build()
    }

    /// A builder for a client of `bootstrap`.
    pub fn builder(bootstrap: Bootstrap) -> XdsClientBuilder {
        XdsClientBuilder {
            bootstrap,
            config: TransportConfig {
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                connect_timeout: Duration::from_secs(10),
                response_timeout: Duration::from_secs(30),
                keepalive: (Duration::from_secs(300), Duration::from_secs(20)),
                backoff: Backoff::default(),
            },
        }
    }

    /// The bootstrap this client was made with.
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.shared.bootstrap
    }

    /// Watches the resource `name` of type `T`, subscribing to it if no one
    /// else watches it; the subscription ends when the last watch is dropped.
    /// An `xdstp://` name is watched in its [`canonical_name`] form.
    pub async fn watch<T: Resource>(&self, name: &str) -> Result<Watch<T>, WatchError> {
        let name = &*canonical_name(name);
        let (_, commands) = self.shared.task_for(name)?;
        let (reply, answer) = oneshot::channel();
        let kind = ResourceType::of::<T>();
        commands
            .send(Command::Watch {
                kind,
                name: name.to_owned(),
                reply,
            })
            .map_err(|_| WatchError::Stopped)?;
        let receiver = answer.await.map_err(|_| WatchError::Stopped)??;
        Ok(Watch {
            receiver: Some(receiver),
            commands,
            type_url: T::TYPE_URL,
            name: name.to_owned(),
            _type: PhantomData,
        })
    }

    /// Watches each of `names`, subscribing them in one request (per control
    /// plane): the way to follow thousands of clusters or endpoint sets
    /// without a request each.
    pub async fn watch_many<T: Resource>(
        &self,
        names: &[String],
    ) -> Result<Vec<Watch<T>>, WatchError> {
        // Names by task, each with its place in `names`.
        let names: Vec<String> = names
            .iter()
            .map(|n| canonical_name(n).into_owned())
            .collect();
        let mut groups: BTreeMap<usize, (mpsc::UnboundedSender<Command>, Vec<usize>)> =
            BTreeMap::new();
        for (place, name) in names.iter().enumerate() {
            let (index, commands) = self.shared.task_for(name)?;
            groups
                .entry(index)
                .or_insert((commands, Vec::new()))
                .1
                .push(place);
        }
        let kind = ResourceType::of::<T>();
        let mut watches: Vec<Option<Watch<T>>> = names.iter().map(|_| None).collect();
        for (commands, places) in groups.into_values() {
            let (reply, answer) = oneshot::channel();
            commands
                .send(Command::WatchMany {
                    kind,
                    names: places.iter().map(|&p| names[p].clone()).collect(),
                    reply,
                })
                .map_err(|_| WatchError::Stopped)?;
            let receivers = answer.await.map_err(|_| WatchError::Stopped)??;
            for (receiver, place) in receivers.into_iter().zip(places) {
                watches[place] = Some(Watch {
                    receiver: Some(receiver),
                    commands: commands.clone(),
                    type_url: T::TYPE_URL,
                    name: names[place].clone(),
                    _type: PhantomData,
                });
            }
        }
        Ok(watches.into_iter().flatten().collect())
    }

    /// Watches every resource of type `T` (a wildcard subscription; Listener
    /// and Cluster only) on the top-level servers.
    pub async fn watch_all<T: Resource>(&self) -> Result<WatchAll<T>, WatchError> {
        let (_, commands) = self.shared.task(&self.shared.bootstrap.servers);
        let (reply, answer) = oneshot::channel();
        let kind = ResourceType::of::<T>();
        commands
            .send(Command::WatchAll { kind, reply })
            .map_err(|_| WatchError::Stopped)?;
        let receiver = answer.await.map_err(|_| WatchError::Stopped)??;
        Ok(WatchAll {
            receiver: Some(receiver),
            commands,
            type_url: T::TYPE_URL,
            _type: PhantomData,
        })
    }

    /// Every watched resource's state, from every control plane in use:
    /// what a CSDS dump reports. Answered from the cache, whatever the
    /// streams are doing.
    pub async fn dump(&self) -> Result<Vec<DumpEntry>, WatchError> {
        let tasks: Vec<_> = {
            let tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
            tasks.iter().map(|(_, commands)| commands.clone()).collect()
        };
        let mut entries = Vec::new();
        for commands in tasks {
            let (reply, answer) = oneshot::channel();
            commands
                .send(Command::Dump { reply })
                .map_err(|_| WatchError::Stopped)?;
            entries.extend(answer.await.map_err(|_| WatchError::Stopped)?);
        }
        Ok(entries)
    }
}

/// One resource's state as a watcher sees it.
#[derive(Debug)]
pub struct ResourceState<T> {
    /// The resource in use: the last good version received, if any.
    pub resource: Option<Arc<T>>,
    /// The version of `resource`.
    pub version: String,
    /// Whether it is known to exist.
    pub presence: Presence,
    /// The latest problem: why a newer version was refused (NACKed), or why
    /// the stream to the control plane is down. `resource` stays in use.
    pub error: Option<String>,
}

impl<T> Clone for ResourceState<T> {
    fn clone(&self) -> Self {
        ResourceState {
            resource: self.resource.clone(),
            version: self.version.clone(),
            presence: self.presence,
            error: self.error.clone(),
        }
    }
}

/// A watch on one resource; see [`XdsClient::watch`].
#[derive(Debug)]
pub struct Watch<T> {
    receiver: Option<watch::Receiver<Snapshot>>,
    commands: mpsc::UnboundedSender<Command>,
    type_url: &'static str,
    name: String,
    _type: PhantomData<fn() -> T>,
}

impl<T: Resource> Watch<T> {
    /// The watched resource's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state now.
    pub fn current(&self) -> ResourceState<T> {
        match &self.receiver {
            Some(receiver) => typed(&receiver.borrow()),
            None => stopped(),
        }
    }

    /// Waits for the next change and returns the state after it.
    pub async fn changed(&mut self) -> Result<ResourceState<T>, WatchError> {
        let receiver = self.receiver.as_mut().ok_or(WatchError::Stopped)?;
        receiver.changed().await.map_err(|_| WatchError::Stopped)?;
        Ok(typed(&receiver.borrow_and_update()))
    }
}

impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        // The receiver goes first, so the task sees it gone when it unsubscribes.
        self.receiver.take();
        let _ = self.commands.send(Command::Unwatch {
            type_url: self.type_url,
            name: std::mem::take(&mut self.name),
        });
    }
}

fn typed<T: Resource>(snapshot: &Snapshot) -> ResourceState<T> {
    ResourceState {
        resource: snapshot
            .resource
            .clone()
            .and_then(|r| r.downcast::<T>().ok()),
        version: snapshot.version.clone(),
        presence: snapshot.status,
        error: snapshot.error.clone(),
    }
}

fn stopped<T>() -> ResourceState<T> {
    ResourceState {
        resource: None,
        version: String::new(),
        presence: Presence::Requested,
        error: Some("the xDS client has stopped".to_owned()),
    }
}

/// A wildcard watch on every resource of one type; see [`XdsClient::watch_all`].
#[derive(Debug)]
pub struct WatchAll<T> {
    receiver: Option<watch::Receiver<AllResources>>,
    commands: mpsc::UnboundedSender<Command>,
    type_url: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T: Resource> WatchAll<T> {
    /// Every resource of the type now, by name.
    pub fn current(&self) -> Vec<(String, Arc<T>)> {
        match &self.receiver {
            Some(receiver) => all_typed(&receiver.borrow()),
            None => Vec::new(),
        }
    }

    /// Waits for the next change and returns every resource after it.
    pub async fn changed(&mut self) -> Result<Vec<(String, Arc<T>)>, WatchError> {
        let receiver = self.receiver.as_mut().ok_or(WatchError::Stopped)?;
        receiver.changed().await.map_err(|_| WatchError::Stopped)?;
        Ok(all_typed(&receiver.borrow_and_update()))
    }
}

impl<T> Drop for WatchAll<T> {
    fn drop(&mut self) {
        self.receiver.take();
        let _ = self.commands.send(Command::UnwatchAll {
            type_url: self.type_url,
        });
    }
}

fn all_typed<T: Resource>(all: &AllResources) -> Vec<(String, Arc<T>)> {
    all.iter()
        .filter_map(|(name, r)| r.clone().downcast::<T>().ok().map(|r| (name.clone(), r)))
        .collect()
}
