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

/// Runs until every handle (client and watches) is gone.
pub(crate) async fn run(
    server: XdsServer,
    mut config: TransportConfig,
    mut state: AdsState,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    loop {
        let channel = {
            let connecting = connect(&server, &config);
            tokio::pin!(connecting);
            loop {
                tokio::select! {
                    result = &mut connecting => break result,
                    command = commands.recv() => match command {
                        Some(command) => handle_burst(&mut state, command, &mut commands),
                        None => return,
                    },
                }
            }
        };
        let mut received = false;
        let error = match channel {
            Ok(channel) => {
                match stream(
                    &server,
                    &config,
                    channel,
                    &mut state,
                    &mut commands,
                    &mut received,
                )
                .await
                {
                    Some(error) => error,
                    None => return,
                }
            }
            Err(error) => format!("cannot connect to {}: {error}", server.uri),
        };
        tracing::warn!(server = %server.uri, %error, "xDS stream failed; cached resources stay in use");
        state.on_disconnected(&error);
        if received {
            config.backoff.reset();
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

/// One ADS stream, from the first request to its end. `None` when every
/// handle is gone; otherwise why the stream ended.
///
/// Nothing here awaits the network alone: while the call opens (some control
/// planes send the call's response headers only with their first response,
/// gRPC Python's and many grpc-go ones among them) and while it runs, the
/// same loop serves commands (a first watch after the connection is up goes
/// out on the stream that is opening), the does-not-exist timers, and the
/// bound on the first response.
async fn stream(
    server: &XdsServer,
    config: &TransportConfig,
    channel: Channel,
    state: &mut AdsState,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    received: &mut bool,
) -> Option<String> {
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(config.max_message_size)
        .max_encoding_message_size(config.max_message_size);
    let delta = server.delta();
    // The request stream is handed to the call before it opens, so requests
    // sent into it go out whatever the control plane's headers do.
    let (outbound, opening): (Outbound, BoxFuture<Result<Inbound, tonic::Status>>) = if delta {
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
    };
    let mut opening = Some(opening);
    let mut inbound: Option<Inbound> = None;
    // When the first request of this stream went out, until a response comes.
    let mut subscribed_at: Option<Instant> = None;
    let send = |requests: Vec<Request>, subscribed_at: &mut Option<Instant>| {
        if !requests.is_empty() && subscribed_at.is_none() {
            *subscribed_at = Some(Instant::now());
        }
        requests.into_iter().for_each(|r| outbound.send(r));
    };
    send(state.on_connected(Instant::now()), &mut subscribed_at);
    loop {
        let deadline = state.next_deadline();
        let unanswered = subscribed_at
            .filter(|_| !*received)
            .map(|at| at + config.response_timeout);
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => {
                    handle_burst(state, command, commands);
                    send(state.flush(Instant::now()), &mut subscribed_at);
                }
                None => return None,
            },
            opened = until_some(&mut opening) => match opened {
                Ok(stream) => {
                    tracing::info!(server = %server.uri, delta, "xDS stream open");
                    opening = None;
                    inbound = Some(stream);
                }
                Err(status) => {
                    let variant = if delta { "delta ADS" } else { "ADS" };
                    return Some(format!("cannot open the {variant} stream: {status}"));
                }
            },
            message = next_message(&mut inbound) => match message {
                Ok(Some(response)) => {
                    *received = true;
                    let (type_url, count) = match &response {
                        Response::Sotw(r) => (&r.type_url, r.resources.len()),
                        Response::Delta(r) => (&r.type_url, r.resources.len()),
                    };
                    tracing::debug!(target: "meshlib_xds::response", %type_url, resources = count, "xDS response received");
                    let requests = match response {
                        Response::Sotw(r) => state.on_sotw_response(r),
                        Response::Delta(r) => state.on_delta_response(r),
                    };
                    send(requests, &mut subscribed_at);
                }
                Ok(None) => return Some("the control plane closed the stream".to_owned()),
                Err(status) => return Some(format!("stream error: {status}")),
            },
            _ = sleep_until_some(deadline) => state.on_time(Instant::now()),
            _ = sleep_until_some(unanswered) => {
                return Some(format!(
                    "no response from the control plane within {:?} of subscribing",
                    config.response_timeout
                ));
            }
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
