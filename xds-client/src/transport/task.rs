use std::future::pending;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::Backoff;
use crate::bootstrap::{ChannelCredentials, XdsServer};
use crate::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use crate::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use crate::resource::ResourceType;
use crate::state::{AdsState, AllResources, DumpEntry, Request, Snapshot, WatchError};

/// What the client handle asks of the task.
pub(crate) enum Command {
    Watch {
        kind: ResourceType,
        name: String,
        reply: oneshot::Sender<Result<watch::Receiver<Snapshot>, WatchError>>,
    },
    WatchMany {
        kind: ResourceType,
        names: Vec<String>,
        reply: oneshot::Sender<Result<Vec<watch::Receiver<Snapshot>>, WatchError>>,
    },
    Unwatch {
        type_url: &'static str,
        name: String,
    },
    WatchAll {
        kind: ResourceType,
        reply: oneshot::Sender<Result<watch::Receiver<AllResources>, WatchError>>,
    },
    UnwatchAll {
        type_url: &'static str,
    },
    Dump {
        reply: oneshot::Sender<Vec<DumpEntry>>,
    },
}

/// Settings of the transport.
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    pub(crate) max_message_size: usize,
    pub(crate) connect_timeout: Duration,
    /// How long a stream that has subscribed may go without its first
    /// response before it is given up and reconnected.
    pub(crate) response_timeout: Duration,
    /// HTTP/2 keepalive: the ping interval, and how long a ping may go
    /// unanswered before the connection is declared dead.
    pub(crate) keepalive: (Duration, Duration),
    pub(crate) backoff: Backoff,
}

enum Outbound {
    Sotw(mpsc::UnboundedSender<DiscoveryRequest>),
    Delta(mpsc::UnboundedSender<DeltaDiscoveryRequest>),
}

impl Outbound {
    fn send(&self, request: Request) {
        // A closed channel means the stream is going down; the inbound side
        // reports why, and everything is re-sent on the next stream.
        match (self, request) {
            (Outbound::Sotw(tx), Request::Sotw(r)) => {
                let _ = tx.send(r);
            }
            (Outbound::Delta(tx), Request::Delta(r)) => {
                let _ = tx.send(r);
            }
            _ => tracing::error!("xDS request of the wrong protocol variant dropped"),
        }
    }
}

enum Inbound {
    Sotw(tonic::Streaming<DiscoveryResponse>),
    Delta(tonic::Streaming<DeltaDiscoveryResponse>),
}

enum Response {
    Sotw(DiscoveryResponse),
    Delta(DeltaDiscoveryResponse),
}

impl Inbound {
    async fn next(&mut self) -> Result<Option<Response>, tonic::Status> {
        Ok(match self {
            Inbound::Sotw(s) => s.message().await?.map(Response::Sotw),
            Inbound::Delta(s) => s.message().await?.map(Response::Delta),
        })
    }
}

/// How a stream ended.
enum Ended {
    /// Every handle is gone.
    Stopped,
    /// The stream failed, for this reason.
    Failed(String),
    /// A higher-priority control plane answered a probe while a fallback
    /// served (gRFC A71): it takes over, with the stream the probe opened.
    Recovered(usize, Box<Opened>),
}

/// A stream a probe opened, with the first response it carried.
struct Opened {
    outbound: Outbound,
    inbound: Inbound,
    first: Response,
}

/// Runs until every handle (client and watches) is gone.
///
/// `servers` are one authority's control planes in order of preference
/// (gRFC A71). The first is used while it works. When it cannot be reached
/// (a failed connection, or a stream that ends before its first response)
/// and some watched resource has no answer yet, the next is tried at once,
/// without telling watchers: they hear of a connectivity failure only once
/// the last server has failed too. While a fallback serves, the servers
/// above it are probed with backoff; the first to answer takes over, and
/// the fallback's stream is closed. With every resource cached, the client
/// stays with its first server and keeps the cache, as A71 prefers.
pub(crate) async fn run(
    servers: Vec<XdsServer>,
    mut config: TransportConfig,
    mut state: AdsState,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut active = 0;
    let mut recovered: Option<Box<Opened>> = None;
    loop {
        let server = &servers[active];
        state.use_server(server.delta(), server.ignore_resource_deletion());
        let higher = &servers[..active];
        let mut received = false;
        let start = match recovered.take() {
            Some(opened) => Ok(Start::Opened(opened)),
            None => {
                let connecting = connect(server, &config);
                tokio::pin!(connecting);
                loop {
                    tokio::select! {
                        result = &mut connecting => break result.map(Start::Channel),
                        command = commands.recv() => match command {
                            Some(command) => handle_burst(&mut state, command, &mut commands),
                            None => return,
                        },
                    }
                }
            }
        };
        let error = match start {
            Ok(start) => {
                let session = Session {
                    server,
                    higher,
                    config: &config,
                };
                match session
                    .stream(start, &mut state, &mut commands, &mut received)
                    .await
                {
                    Ended::Stopped => return,
                    Ended::Failed(error) => error,
                    Ended::Recovered(index, opened) => {
                        tracing::info!(server = %servers[index].uri, fallback = %server.uri, "xDS control plane answers again; leaving the fallback");
                        state.on_disconnected(None);
                        state.forget_versions();
                        config.backoff.reset();
                        active = index;
                        recovered = Some(opened);
                        continue;
                    }
                }
            }
            Err(error) => format!("cannot connect to {}: {error}", server.uri),
        };
        if !received && active + 1 < servers.len() && state.has_uncached_watch() {
            tracing::warn!(server = %server.uri, fallback = %servers[active + 1].uri, %error, "xDS control plane unreachable with resources still unanswered; trying the next one");
            state.on_disconnected(None);
            state.forget_versions();
            active += 1;
            continue;
        }
        tracing::warn!(server = %server.uri, %error, "xDS stream failed; cached resources stay in use");
        state.on_disconnected(Some(&error));
        if received {
            config.backoff.reset();
        }
        // The next attempt starts again from the most preferred server.
        if active != 0 {
            state.forget_versions();
            active = 0;
        }
        let retry = sleep(config.backoff.next_delay());
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = &mut retry => break,
                command = commands.recv() => match command {
                    Some(command) => handle_burst(&mut state, command, &mut commands),
                    None => return,
                },
            }
        }
    }
}

async fn connect(server: &XdsServer, config: &TransportConfig) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(server.uri.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(config.connect_timeout)
        .http2_keep_alive_interval(config.keepalive.0)
        .keep_alive_timeout(config.keepalive.1)
        .tcp_nodelay(true);
    if let ChannelCredentials::Tls {
        ca_certificate_file,
        certificate_file,
        private_key_file,
    } = &server.credentials
    {
        // Read at every connection attempt, so rotated files take effect on
        // the next reconnect.
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("cannot read TLS file {}: {e}", path.display()))
        };
        let mut tls = ClientTlsConfig::new();
        tls = match ca_certificate_file {
            Some(path) => tls.ca_certificate(Certificate::from_pem(read(path)?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (certificate_file, private_key_file) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS configuration: {e}"))?;
    }
    endpoint.connect().await.map_err(|e| {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    })
}

/// How a stream begins: on a new connection, or with a call a probe opened.
enum Start {
    Channel(Channel),
    Opened(Box<Opened>),
}

/// Opens the ADS call on `channel`. The request stream is handed to the call
/// before it opens, so requests sent into it go out whatever the control
/// plane's headers do.
fn open_call(
    server: &XdsServer,
    config: &TransportConfig,
    channel: Channel,
) -> (Outbound, BoxFuture<Result<Inbound, tonic::Status>>) {
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(config.max_message_size)
        .max_encoding_message_size(config.max_message_size);
    if server.delta() {
        let (tx, rx) = mpsc::unbounded_channel();
        let requests = UnboundedReceiverStream::new(rx);
        let opening = Box::pin(async move {
            let response = client.delta_aggregated_resources(requests).await?;
            Ok(Inbound::Delta(response.into_inner()))
        });
        (Outbound::Delta(tx), opening)
    } else {
        let (tx, rx) = mpsc::unbounded_channel();
        let requests = UnboundedReceiverStream::new(rx);
        let opening = Box::pin(async move {
            let response = client.stream_aggregated_resources(requests).await?;
            Ok(Inbound::Sotw(response.into_inner()))
        });
        (Outbound::Sotw(tx), opening)
    }
}

/// Connects to `server`, subscribes with `requests` and waits for its first
/// response, all within the connect and response timeouts.
async fn open_and_await_first(
    server: &XdsServer,
    config: &TransportConfig,
    requests: Vec<Request>,
) -> Result<Opened, String> {
    let channel = connect(server, config).await?;
    let (outbound, opening) = open_call(server, config, channel);
    requests.into_iter().for_each(|r| outbound.send(r));
    let answered = async {
        let mut inbound = opening
            .await
            .map_err(|s| format!("cannot open the stream: {s}"))?;
        match inbound.next().await {
            Ok(Some(first)) => Ok(Opened {
                outbound,
                inbound,
                first,
            }),
            Ok(None) => Err("the control plane closed the stream".to_owned()),
            Err(status) => Err(format!("stream error: {status}")),
        }
    };
    tokio::time::timeout(config.response_timeout, answered)
        .await
        .map_err(|_| format!("no response within {:?}", config.response_timeout))?
}

/// Probes `higher` (the servers preferred to the one in use, best first)
/// with backoff until one answers; its index and opened stream.
async fn probe(
    higher: Vec<(XdsServer, Vec<Request>)>,
    config: TransportConfig,
) -> (usize, Box<Opened>) {
    let mut backoff = config.backoff.clone();
    backoff.reset();
    loop {
        sleep(backoff.next_delay()).await;
        for (index, (server, requests)) in higher.iter().enumerate() {
            match open_and_await_first(server, &config, requests.clone()).await {
                Ok(opened) => return (index, Box::new(opened)),
                Err(error) => {
                    tracing::debug!(server = %server.uri, %error, "xDS control plane still unreachable");
                }
            }
        }
    }
}

/// One stream's surroundings: its server, the servers preferred to it (to
/// probe while it serves as a fallback), and the settings.
struct Session<'a> {
    server: &'a XdsServer,
    higher: &'a [XdsServer],
    config: &'a TransportConfig,
}

impl Session<'_> {
    /// One ADS stream, from the first request to its end.
    ///
    /// Nothing here awaits the network alone: while the call opens (some
    /// control planes send the call's response headers only with their first
    /// response, gRPC Python's and many grpc-go ones among them) and while it
    /// runs, the same loop serves commands (a first watch after the
    /// connection is up goes out on the stream that is opening), the
    /// does-not-exist timers, the bound on the first response, and the probe
    /// of preferred servers while this one is a fallback.
    async fn stream(
        &self,
        start: Start,
        state: &mut AdsState,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        received: &mut bool,
    ) -> Ended {
        let delta = self.server.delta();
        let (outbound, mut opening, mut inbound, first) = match start {
            Start::Channel(channel) => {
                let (outbound, opening) = open_call(self.server, self.config, channel);
                (outbound, Some(opening), None, None)
            }
            Start::Opened(opened) => {
                let Opened {
                    outbound,
                    inbound,
                    first,
                } = *opened;
                (outbound, None, Some(inbound), Some(first))
            }
        };
        let mut probing: Option<BoxFuture<(usize, Box<Opened>)>> =
            (!self.higher.is_empty()).then(|| {
                let higher = self
                    .higher
                    .iter()
                    .map(|s| (s.clone(), state.fresh_requests(s.delta(), false)))
                    .collect();
                Box::pin(probe(higher, self.config.clone())) as BoxFuture<_>
            });
        // When the first request of this stream went out, until a response comes.
        let mut subscribed_at: Option<Instant> = None;
        let send = |requests: Vec<Request>, subscribed_at: &mut Option<Instant>| {
            if !requests.is_empty() && subscribed_at.is_none() {
                *subscribed_at = Some(Instant::now());
            }
            requests.into_iter().for_each(|r| outbound.send(r));
        };
        send(state.on_connected(Instant::now()), &mut subscribed_at);
        if let Some(first) = first {
            *received = true;
            send(self.apply(state, first), &mut subscribed_at);
        }
        loop {
            let deadline = state.next_deadline();
            let unanswered = subscribed_at
                .filter(|_| !*received)
                .map(|at| at + self.config.response_timeout);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        handle_burst(state, command, commands);
                        send(state.flush(Instant::now()), &mut subscribed_at);
                    }
                    None => return Ended::Stopped,
                },
                opened = until_some(&mut opening) => match opened {
                    Ok(stream) => {
                        tracing::info!(server = %self.server.uri, delta, "xDS stream open");
                        opening = None;
                        inbound = Some(stream);
                        state.on_answer();
                    }
                    Err(status) => {
                        let variant = if delta { "delta ADS" } else { "ADS" };
                        return Ended::Failed(format!("cannot open the {variant} stream: {status}"));
                    }
                },
                message = next_message(&mut inbound) => match message {
                    Ok(Some(response)) => {
                        *received = true;
                        send(self.apply(state, response), &mut subscribed_at);
                    }
                    Ok(None) => return Ended::Failed("the control plane closed the stream".to_owned()),
                    Err(status) => return Ended::Failed(format!("stream error: {status}")),
                },
                (index, opened) = until_some(&mut probing) => return Ended::Recovered(index, opened),
                _ = sleep_until_some(deadline) => state.on_time(Instant::now()),
                _ = sleep_until_some(unanswered) => {
                    return Ended::Failed(format!(
                        "no response from the control plane within {:?} of subscribing",
                        self.config.response_timeout
                    ));
                }
            }
        }
    }

    /// Applies a response; the ACK or NACK to send.
    fn apply(&self, state: &mut AdsState, response: Response) -> Vec<Request> {
        let (type_url, count) = match &response {
            Response::Sotw(r) => (&r.type_url, r.resources.len()),
            Response::Delta(r) => (&r.type_url, r.resources.len()),
        };
        tracing::debug!(target: "meshlib_xds::response", server = %self.server.uri, %type_url, resources = count, "xDS response received");
        match response {
            Response::Sotw(r) => state.on_sotw_response(r),
            Response::Delta(r) => state.on_delta_response(r),
        }
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The opening call's result, once; pending forever after.
async fn until_some<T>(future: &mut Option<BoxFuture<T>>) -> T {
    match future {
        Some(future) => future.await,
        None => pending().await,
    }
}

/// The next message of an open stream; pending while it is still opening.
async fn next_message(inbound: &mut Option<Inbound>) -> Result<Option<Response>, tonic::Status> {
    match inbound {
        Some(inbound) => inbound.next().await,
        None => pending().await,
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => pending().await,
    }
}

/// Applies a command; subscription changes wait for [`AdsState::flush`].
fn handle(state: &mut AdsState, command: Command) {
    match command {
        Command::Watch { kind, name, reply } => match state.watch(kind, &name) {
            Ok(receiver) => {
                if reply.send(Ok(receiver)).is_err() {
                    // The caller gave up waiting: undo the watch.
                    state.unwatch(kind.type_url, &name);
                }
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        },
        Command::WatchMany { kind, names, reply } => {
            let receivers: Result<Vec<_>, _> =
                names.iter().map(|name| state.watch(kind, name)).collect();
            let failed = receivers.is_err();
            if reply.send(receivers).is_err() && !failed {
                names
                    .iter()
                    .for_each(|name| state.unwatch(kind.type_url, name));
            }
        }
        Command::Unwatch { type_url, name } => state.unwatch(type_url, &name),
        Command::WatchAll { kind, reply } => match state.watch_all(kind) {
            Ok(receiver) => {
                if reply.send(Ok(receiver)).is_err() {
                    state.unwatch_all(kind.type_url);
                }
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        },
        Command::UnwatchAll { type_url } => state.unwatch_all(type_url),
        Command::Dump { reply } => {
            let _ = reply.send(state.dump());
        }
    }
}

/// Applies `first` and every command already queued behind it, so a burst
/// of watches becomes one request per type.
fn handle_burst(
    state: &mut AdsState,
    first: Command,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) {
    handle(state, first);
    while let Ok(command) = commands.try_recv() {
        handle(state, command);
    }
}
