//! gRPC's xDS interop test server, on tonic: `TestService` answering with its
//! hostname, obeying the `rpc-behavior` metadata, plus `XdsUpdateHealthService`
//! and the standard health service for the test driver.
//!
//! ```text
//! xds-interop-server --port 8080 --maintenance_port 8081 --server_id s1 --hostname backend-1
//! ```
//!
//! With `--port 0` it picks a free port; either way it prints
//! `xds-interop-server: serving on ADDRESS` once it accepts connections.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use meshlib_interop::behavior::{self, Then};
use meshlib_interop::pb::test_service_server::{TestService, TestServiceServer};
use meshlib_interop::pb::xds_update_health_service_server::{
    XdsUpdateHealthService, XdsUpdateHealthServiceServer,
};
use meshlib_interop::pb::{Empty, Payload, SimpleRequest, SimpleResponse};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The flags of gRPC's `xds_interop_server`.
#[derive(Debug, Parser)]
#[command(version, about = "gRPC xDS interop test server (meshlib)")]
struct Args {
    /// Port of the test service (0: any free port).
    #[arg(long = "port", default_value_t = 8080)]
    port: u16,
    /// Port of the health and XdsUpdateHealth services; the test port if
    /// unset or equal to it.
    #[arg(long = "maintenance_port")]
    maintenance_port: Option<u16>,
    /// Included in every UnaryCall response.
    #[arg(long = "server_id", default_value = "meshlib_server")]
    server_id: String,
    /// The hostname to report, instead of the machine's (so several servers
    /// on one machine can be told apart).
    #[arg(long = "hostname", visible_alias = "host_name_override")]
    hostname: Option<String>,
    /// The address to listen on.
    #[arg(long = "address", default_value = "0.0.0.0")]
    address: IpAddr,
    /// xDS-secured serving is not supported; accepted only as `false`.
    #[arg(long = "secure_mode", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    secure_mode: bool,
}

/// `TestService`: answers with who it is, as `rpc-behavior` directs.
#[derive(Debug, Clone)]
struct Backend {
    hostname: String,
    server_id: String,
}

impl Backend {
    /// Carries out the request's `rpc-behavior`; `Ok` means answer normally.
    async fn behave(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let values: Vec<&str> = metadata
            .get_all(behavior::RPC_BEHAVIOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Ok(());
        }
        let attempts = metadata
            .get(behavior::PREVIOUS_ATTEMPTS)
            .and_then(|v| v.to_str().ok());
        let plan = behavior::plan(values, &self.hostname, attempts);
        if !plan.sleep.is_zero() {
            tokio::time::sleep(plan.sleep).await;
        }
        match plan.then {
            Then::Respond => Ok(()),
            // Returning the error before any response header makes the
            // failure Trailers-Only, which clients may retry.
            Then::Fail(code, message) => Err(Status::new(tonic::Code::from(code), message)),
            Then::KeepOpen => std::future::pending().await,
        }
    }

    fn with_hostname<T>(&self, message: T) -> Response<T> {
        let mut response = Response::new(message);
        if let Ok(value) = MetadataValue::try_from(self.hostname.as_str()) {
            response.metadata_mut().insert("hostname", value);
        }
        response
    }
}

#[tonic::async_trait]
impl TestService for Backend {
    async fn empty_call(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.behave(request.metadata()).await?;
        Ok(self.with_hostname(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        self.behave(request.metadata()).await?;
        let request = request.into_inner();
        if let Some(status) = request.response_status.filter(|s| s.code != 0) {
            return Err(Status::new(tonic::Code::from(status.code), status.message));
        }
        let size = usize::try_from(request.response_size).unwrap_or(0);
        Ok(self.with_hostname(SimpleResponse {
            payload: (size > 0).then(|| Payload {
                r#type: request.response_type,
                body: vec![0; size],
            }),
            server_id: self.server_id.clone(),
            hostname: self.hostname.clone(),
        }))
    }
}

/// `XdsUpdateHealthService`: flips what the health service reports.
#[derive(Clone)]
struct HealthSwitch {
    reporter: HealthReporter,
}

#[tonic::async_trait]
impl XdsUpdateHealthService for HealthSwitch {
    async fn set_serving(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        Ok(Response::new(Empty {}))
    }

    async fn set_not_serving(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        Ok(Response::new(Empty {}))
    }
}

/// The machine's hostname, as gRPC's servers report it by default.
fn machine_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

async fn bind(address: IpAddr, port: u16) -> Result<TcpListener, String> {
    let address = SocketAddr::new(address, port);
    TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// Resolves on SIGTERM or ctrl-c.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.secure_mode {
        return Err("--secure_mode=true is not supported by meshlib's interop server".to_owned());
    }
    let backend = Backend {
        hostname: args.hostname.unwrap_or_else(machine_hostname),
        server_id: args.server_id,
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let switch = XdsUpdateHealthServiceServer::new(HealthSwitch { reporter });

    let listener = bind(args.address, args.port).await?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let separate = args.maintenance_port.filter(|&p| p != args.port);
    let test = Server::builder().add_service(TestServiceServer::new(backend.clone()));
    let serving: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>> =
        match separate {
            None => Box::pin(async move {
                test.add_service(health)
                    .add_service(switch)
                    .serve_with_incoming(TcpListenerStream::new(listener))
                    .await
                    .map_err(|e| e.to_string())
            }),
            Some(port) => {
                let maintenance_listener = bind(args.address, port).await?;
                println!(
                    "xds-interop-server: maintenance on {}",
                    maintenance_listener
                        .local_addr()
                        .map_err(|e| e.to_string())?
                );
                let maintenance = Server::builder()
                    .add_service(health)
                    .add_service(switch)
                    .serve_with_incoming(TcpListenerStream::new(maintenance_listener));
                let test = test.serve_with_incoming(TcpListenerStream::new(listener));
                Box::pin(async move {
                    tokio::try_join!(test, maintenance)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            }
        };
    println!(
        "xds-interop-server: serving on {local} as {:?}",
        backend.hostname
    );
    tokio::select! {
        served = serving => served,
        () = stopped() => {
            tracing::info!("stopping");
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xds-interop-server: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
