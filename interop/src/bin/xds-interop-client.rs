//! gRPC's xDS interop test client, on meshlib: sends `TestService` RPCs at a
//! steady rate through a [`MeshClient`] configured by the control plane
//! named in `GRPC_XDS_BOOTSTRAP`, and serves on `--stats_port` what a test
//! driver asks of it: `LoadBalancerStatsService`,
//! `XdsUpdateClientConfigureService` and CSDS.
//!
//! ```text
//! GRPC_XDS_BOOTSTRAP=bootstrap.json xds-interop-client --server xds:///greeter \
//!     --stats_port 8081 --qps 100 --rpc UnaryCall,EmptyCall --metadata EmptyCall:k:v
//! ```
//!
//! With `--stats_port 0` it picks a free port; either way it prints
//! `xds-interop-client: stats on ADDRESS` once the driver can connect.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use meshlib::MeshChannel;
use meshlib::MeshClient;
use meshlib::xds::XdsError;
use meshlib_interop::csds::Csds;
use meshlib_interop::pb::load_balancer_stats_service_server::{
    LoadBalancerStatsService, LoadBalancerStatsServiceServer,
};
use meshlib_interop::pb::test_service_client::TestServiceClient;
use meshlib_interop::pb::xds_update_client_configure_service_server::{
    XdsUpdateClientConfigureService, XdsUpdateClientConfigureServiceServer,
};
use meshlib_interop::pb::{
    ClientConfigureRequest, ClientConfigureResponse, Empty, LoadBalancerAccumulatedStatsRequest,
    LoadBalancerAccumulatedStatsResponse, LoadBalancerStatsRequest, LoadBalancerStatsResponse,
    SimpleRequest,
};
use meshlib_interop::stats::{Method, Stats};
use meshlib_xds::{Bootstrap, XdsClient};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::{Request, Response, Status};

/// The flags of gRPC's `xds_interop_client`.
#[derive(Debug, Parser)]
#[command(version, about = "gRPC xDS interop test client (meshlib)")]
struct Args {
    /// The target: `xds:///name` or `xds://authority/name`.
    #[arg(long = "server", default_value = "localhost:8080")]
    server: String,
    /// Port of the stats, configure and CSDS services (0: any free port).
    #[arg(long = "stats_port", default_value_t = 8081)]
    stats_port: u16,
    /// RPCs per second per channel, for each method of `--rpc`.
    #[arg(long = "qps", default_value_t = 1)]
    qps: u32,
    /// How many channels send.
    #[arg(long = "num_channels", default_value_t = 1)]
    num_channels: u32,
    /// Methods to call: `UnaryCall`, `EmptyCall`, or both comma-separated.
    #[arg(long = "rpc", default_value = "UnaryCall")]
    rpc: String,
    /// Metadata per method: `EmptyCall:key:value,UnaryCall:key:value`.
    #[arg(long = "metadata", default_value = "")]
    metadata: String,
    /// Deadline of each RPC, in seconds.
    #[arg(long = "rpc_timeout_sec", default_value_t = 20)]
    rpc_timeout_sec: u64,
    /// Exit with an error if an RPC fails after one has succeeded.
    #[arg(long = "fail_on_failed_rpc", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    fail_on_failed_rpc: bool,
    /// Print each RPC's outcome.
    #[arg(long = "print_response", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    print_response: bool,
    /// xDS credentials are not supported; accepted only as `false`.
    #[arg(long = "secure_mode", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    secure_mode: bool,
    /// The address the stats server listens on (not a gRPC flag).
    #[arg(long = "address", default_value = "0.0.0.0")]
    address: IpAddr,
}

/// What the senders send; changed at run time by `Configure`.
#[derive(Debug, Clone, PartialEq)]
struct RpcConfig {
    methods: Vec<Method>,
    metadata: HashMap<Method, Vec<(String, String)>>,
    timeout: Duration,
}

/// Parses `--rpc`.
fn parse_methods(rpc: &str) -> Result<Vec<Method>, String> {
    rpc.split(',')
        .filter(|m| !m.trim().is_empty())
        .map(|m| Method::from_name(m).ok_or_else(|| format!("--rpc: unknown method {m:?}")))
        .collect()
}

/// Parses `--metadata`.
fn parse_metadata(metadata: &str) -> Result<HashMap<Method, Vec<(String, String)>>, String> {
    let mut parsed: HashMap<Method, Vec<(String, String)>> = HashMap::new();
    for entry in metadata.split(',').filter(|e| !e.trim().is_empty()) {
        let mut parts = entry.splitn(3, ':');
        let (Some(method), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("--metadata: {entry:?} is not METHOD:KEY:VALUE"));
        };
        let method = Method::from_name(method)
            .ok_or_else(|| format!("--metadata: unknown method {method:?}"))?;
        parsed
            .entry(method)
            .or_default()
            .push((key.trim().to_ascii_lowercase(), value.to_owned()));
    }
    Ok(parsed)
}

/// Why the client stopped early.
#[derive(Debug)]
struct FailedRpc(String);

/// One RPC through `channel`, recorded in `stats`.
async fn call(
    channel: MeshChannel,
    method: Method,
    config: &RpcConfig,
    stats: &Stats,
) -> Result<String, Status> {
    let started = stats.start(method);
    let mut client = TestServiceClient::new(channel);
    let metadata = config
        .metadata
        .get(&method)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let rpc = async {
        match method {
            Method::UnaryCall => {
                let reply = client
                    .unary_call(request(SimpleRequest::default(), metadata, config.timeout))
                    .await?;
                Ok(peer(reply.metadata()).unwrap_or_else(|| reply.get_ref().hostname.clone()))
            }
            Method::EmptyCall => {
                let reply = client
                    .empty_call(request(Empty {}, metadata, config.timeout))
                    .await?;
                Ok(peer(reply.metadata()).unwrap_or_default())
            }
        }
    };
    let outcome = match tokio::time::timeout(config.timeout, rpc).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Status::deadline_exceeded("deadline exceeded (client)")),
    };
    match &outcome {
        Ok(host) => stats.finish(started, 0, Some(host)),
        Err(status) => stats.finish(started, status.code() as i32, None),
    }
    outcome
}

fn request<T>(message: T, metadata: &[(String, String)], timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    for (key, value) in metadata {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            request.metadata_mut().append(key, value);
        }
    }
    request
}

/// The `hostname` response header gRPC's test servers send.
fn peer(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get("hostname")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Sends the configured RPCs on `channel` at `qps` per method until the
/// process ends.
async fn send(
    channel: MeshChannel,
    qps: u32,
    config: watch::Receiver<RpcConfig>,
    stats: Stats,
    reporter: Reporter,
) {
    if qps == 0 {
        return;
    }
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / qps);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        ticks.tick().await;
        let config = Arc::new(config.borrow().clone());
        for &method in &config.methods {
            let (channel, config, stats, reporter) = (
                channel.clone(),
                config.clone(),
                stats.clone(),
                reporter.clone(),
            );
            tokio::spawn(async move {
                let outcome = call(channel, method, &config, &stats).await;
                reporter.report(method, outcome);
            });
        }
    }
}

/// What happens after each RPC: `--print_response` and `--fail_on_failed_rpc`.
#[derive(Clone)]
struct Reporter {
    print: bool,
    fail_on_failed_rpc: bool,
    succeeded_once: Arc<AtomicBool>,
    failed: mpsc::UnboundedSender<FailedRpc>,
}

impl Reporter {
    fn report(&self, method: Method, outcome: Result<String, Status>) {
        match outcome {
            Ok(host) => {
                self.succeeded_once.store(true, Ordering::Relaxed);
                if self.print {
                    println!("{}: answered by {host}", method.name());
                }
            }
            Err(status) => {
                if self.print {
                    println!(
                        "{}: failed: {:?}: {}",
                        method.name(),
                        status.code(),
                        status.message()
                    );
                }
                if self.fail_on_failed_rpc && self.succeeded_once.load(Ordering::Relaxed) {
                    let _ = self.failed.send(FailedRpc(format!(
                        "{} failed after an RPC had succeeded: {:?}: {}",
                        method.name(),
                        status.code(),
                        status.message()
                    )));
                }
            }
        }
    }
}

/// The driver-facing services.
#[derive(Clone)]
struct Driver {
    stats: Stats,
    config: Arc<watch::Sender<RpcConfig>>,
    default_timeout: Duration,
}

#[tonic::async_trait]
impl LoadBalancerStatsService for Driver {
    async fn get_client_stats(
        &self,
        request: Request<LoadBalancerStatsRequest>,
    ) -> Result<Response<LoadBalancerStatsResponse>, Status> {
        let request = request.into_inner();
        let num_rpcs = u64::try_from(request.num_rpcs)
            .map_err(|_| Status::invalid_argument("num_rpcs must not be negative"))?;
        let timeout = Duration::from_secs(u64::try_from(request.timeout_sec).unwrap_or(0));
        Ok(Response::new(self.stats.window(num_rpcs, timeout).await))
    }

    async fn get_client_accumulated_stats(
        &self,
        _request: Request<LoadBalancerAccumulatedStatsRequest>,
    ) -> Result<Response<LoadBalancerAccumulatedStatsResponse>, Status> {
        Ok(Response::new(self.stats.accumulated()))
    }
}

#[tonic::async_trait]
impl XdsUpdateClientConfigureService for Driver {
    async fn configure(
        &self,
        request: Request<ClientConfigureRequest>,
    ) -> Result<Response<ClientConfigureResponse>, Status> {
        let request = request.into_inner();
        let methods = request
            .types
            .iter()
            .map(|&t| {
                Method::from_rpc_type(t)
                    .ok_or_else(|| Status::invalid_argument(format!("unknown rpc type {t}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut metadata: HashMap<Method, Vec<(String, String)>> = HashMap::new();
        for entry in &request.metadata {
            let method = Method::from_rpc_type(entry.r#type).ok_or_else(|| {
                Status::invalid_argument(format!("unknown rpc type {}", entry.r#type))
            })?;
            metadata
                .entry(method)
                .or_default()
                .push((entry.key.to_ascii_lowercase(), entry.value.clone()));
        }
        let timeout = match u64::try_from(request.timeout_sec) {
            Ok(secs) if secs > 0 => Duration::from_secs(secs),
            _ => self.default_timeout,
        };
        self.config.send_replace(RpcConfig {
            methods,
            metadata,
            timeout,
        });
        Ok(Response::new(ClientConfigureResponse {}))
    }
}

/// Resolves on SIGTERM or ctrl-c.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(args: Args) -> Result<(), String> {
    if args.secure_mode {
        return Err("--secure_mode=true is not supported by meshlib's interop client".to_owned());
    }
    // xds:///name, or xds://authority/name (gRFC A47): the channel's
    // authority is the name either way.
    let name = args
        .server
        .strip_prefix("xds://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, name)| name)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            format!(
                "--server {:?}: meshlib's interop client needs an xds:///name or xds://authority/name target",
                args.server
            )
        })?;
    let default_timeout = Duration::from_secs(args.rpc_timeout_sec.max(1));
    let config = RpcConfig {
        methods: parse_methods(&args.rpc)?,
        metadata: parse_metadata(&args.metadata)?,
        timeout: default_timeout,
    };
    let bootstrap = Bootstrap::from_env().map_err(|e| format!("GRPC_XDS_BOOTSTRAP: {e}"))?;
    let xds = XdsClient::new(bootstrap).map_err(|e| format!("xDS client: {e}"))?;

    // The driver's services come up first: it may ask for stats, or CSDS,
    // before any configuration has arrived.
    let stats = Stats::default();
    let (config_sender, config_receiver) = watch::channel(config);
    let driver = Driver {
        stats: stats.clone(),
        config: Arc::new(config_sender),
        default_timeout,
    };
    let address = SocketAddr::new(args.address, args.stats_port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("--stats_port: cannot listen on {address}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let services = tonic::transport::Server::builder()
        .add_service(LoadBalancerStatsServiceServer::new(driver.clone()))
        .add_service(XdsUpdateClientConfigureServiceServer::new(driver))
        .add_service(Csds::new(xds.clone(), args.server.clone()).service())
        .serve_with_incoming(TcpListenerStream::new(listener));
    let services = tokio::spawn(services);
    println!("xds-interop-client: stats on {local}");

    let (failed_sender, mut failed) = mpsc::unbounded_channel();
    let reporter = Reporter {
        print: args.print_response,
        fail_on_failed_rpc: args.fail_on_failed_rpc,
        succeeded_once: Arc::default(),
        failed: failed_sender,
    };
    // Channels share the xDS client, as gRPC's channels to one target share
    // theirs; each has its own connections.
    for _ in 0..args.num_channels.max(1) {
        let mesh = match MeshClient::from_xds(&xds, &args.server).await {
            Ok(mesh) => mesh,
            Err(XdsError::Unavailable { reason, client }) => {
                tracing::warn!(%reason, "no configuration yet; RPCs fail until one arrives");
                client
            }
            Err(error) => return Err(error.to_string()),
        };
        let channel = mesh
            .channel(name)
            .map_err(|e| format!("--server {:?}: {e}", args.server))?;
        tokio::spawn(send(
            channel,
            args.qps,
            config_receiver.clone(),
            stats.clone(),
            reporter.clone(),
        ));
    }

    tokio::select! {
        () = stopped() => Ok(()),
        Some(FailedRpc(why)) = failed.recv() => Err(why),
        served = services => match served {
            Ok(Ok(())) => Err("the stats server stopped".to_owned()),
            Ok(Err(e)) => Err(format!("the stats server failed: {e}")),
            Err(e) => Err(format!("the stats server panicked: {e}")),
        },
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xds-interop-client: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_and_metadata_flags_parse_as_grpc_writes_them() {
        assert_eq!(
            parse_methods("EmptyCall,UnaryCall").unwrap(),
            [Method::EmptyCall, Method::UnaryCall]
        );
        assert!(parse_methods("StreamingCall").is_err());
        let metadata =
            parse_metadata("EmptyCall:xds_md:empty_ytpme,UnaryCall:rpc-behavior:a:b").unwrap();
        assert_eq!(
            metadata[&Method::EmptyCall],
            [("xds_md".to_owned(), "empty_ytpme".to_owned())]
        );
        assert_eq!(
            metadata[&Method::UnaryCall],
            [("rpc-behavior".to_owned(), "a:b".to_owned())]
        );
        assert!(parse_metadata("EmptyCall:novalue").is_err());
    }
}
