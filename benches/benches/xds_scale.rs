//! xDS at scale: a mesh of 10,000 clusters and 100,000 endpoints fetched,
//! decoded, converted and applied by `MeshClient::from_xds`, and the cost of
//! a one-endpoint change under state-of-the-world and delta ADS: from the
//! request to the control plane (its snapshot rebuild included), and from
//! the arrival of the response that carries it (meshlib-xds logs each
//! arrival at target `meshlib_xds::response`) to the cluster's balancer
//! having it. The change must build no new configuration.
//!
//! The control plane runs in a child process (this binary, re-run with
//! `--control-plane`), so the peak memory measured (`VmHWM`) is the client's
//! alone. `cargo bench -p meshlib-benches --bench xds_scale` runs the full
//! size; without `--bench` (as under `cargo test --benches`) a small one.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshlib::MeshClient;
use meshlib_xds::server::{Snapshot, SnapshotServer, build};
use meshlib_xds::{Bootstrap, DELTA_ADS, XdsClient, XdsServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ENDPOINTS_PER_CLUSTER: usize = 10;

/// Listener → one virtual host with a route per cluster → EDS clusters, each
/// with ten endpoints; `changed` moves one endpoint of cluster 0.
fn snapshot(version: u64, clusters: usize, changed: bool) -> Snapshot {
    let names: Vec<String> = (0..clusters).map(|i| format!("svc-{i}")).collect();
    let routes = names
        .iter()
        .map(|n| build::prefix_route(n, &format!("/{n}/"), &[(n.as_str(), 1)]))
        .collect();
    let mut snapshot = Snapshot::new(version.to_string())
        .with(build::api_listener("mesh", "mesh-routes"))
        .with(build::route_configuration(
            "mesh-routes",
            vec![build::virtual_host("mesh", &["mesh"], routes)],
        ));
    for (i, name) in names.iter().enumerate() {
        let addresses: Vec<SocketAddr> = (0..ENDPOINTS_PER_CLUSTER)
            .map(|j| {
                let port = if changed && i == 0 && j == 0 {
                    9999
                } else {
                    8000 + j as u16
                };
                SocketAddr::from(([10, (i >> 8) as u8, (i & 0xff) as u8, 1], port))
            })
            .collect();
        snapshot = snapshot
            .with(build::eds_cluster(name))
            .with(build::cluster_load_assignment(name, &addresses));
    }
    snapshot
}

/// The child: serves the snapshot, prints its port, and on each line of
/// input serves the next version with one endpoint moved (alternately).
fn control_plane(clusters: usize) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let server = SnapshotServer::new();
    server.set_default(snapshot(1, clusters, false));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    runtime.spawn(server.clone().serve(listener));
    let mut version = 1;
    for line in std::io::stdin().lock().lines() {
        line?;
        version += 1;
        server.set_default(snapshot(version, clusters, version % 2 == 0));
    }
    Ok(())
}

/// `VmHWM:` (peak) or `VmRSS:` (now) of this process, in MiB.
fn memory_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--control-plane") {
        return control_plane(args[i + 1].parse()?);
    }
    if let Some(i) = args.iter().position(|a| a == "--client") {
        return client(args[i + 1].parse()?, args[i + 2] == "delta");
    }
    let default = if args.iter().any(|a| a == "--bench") {
        10_000
    } else {
        200
    };
    let clusters = std::env::var("MESHLIB_BENCH_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    println!(
        "xDS scale: {clusters} clusters × {ENDPOINTS_PER_CLUSTER} endpoints = {} endpoints, {clusters} routes",
        clusters * ENDPOINTS_PER_CLUSTER
    );
    println!(
        "| ADS variant | initial fetch + decode + apply | one-endpoint change, request to applied | from the response's arrival | client peak RSS | client RSS, settled |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    // Each variant in a process of its own, so one's peak is not the other's.
    for variant in ["sotw", "delta"] {
        let status = Command::new(std::env::current_exe()?)
            .args(["--client", &clusters.to_string(), variant])
            .status()?;
        if !status.success() {
            return Err(format!("the {variant} client failed: {status}").into());
        }
    }
    Ok(())
}

/// One client process: one variant against a control plane of its own.
fn client(clusters: usize, delta: bool) -> Result<(), BoxError> {
    tracing::subscriber::set_global_default(Arrivals)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--control-plane", &clusters.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let result = measure(&mut child, clusters, delta);
    let _ = child.kill();
    let _ = child.wait();
    let (initial, (change, from_arrival), resident) = result?;
    println!(
        "| {} | {:.0} ms | {:.1} ms | {:.2} ms | {:.0} MiB | {resident:.0} MiB |",
        if delta { "delta" } else { "state of the world" },
        initial.as_secs_f64() * 1000.0,
        change.as_secs_f64() * 1000.0,
        from_arrival.as_secs_f64() * 1000.0,
        memory_mib("VmHWM:"),
    );
    Ok(())
}

fn measure(
    child: &mut std::process::Child,
    clusters: usize,
    delta: bool,
) -> Result<(Duration, (Duration, Duration), f64), BoxError> {
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut port = String::new();
    stdout.read_line(&mut port)?;
    let address = format!("127.0.0.1:{}", port.trim());
    let mut stdin = child.stdin.take().ok_or("no stdin")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut server = XdsServer::insecure(&address)?;
        if delta {
            server = server.with_feature(DELTA_ADS);
        }
        let mut bootstrap = Bootstrap::new(&address, "bench")?;
        bootstrap.servers = vec![server];
        let xds = XdsClient::new(bootstrap)?;

        let start = Instant::now();
        let mesh = MeshClient::from_xds(&xds, "mesh").await?;
        let initial = start.elapsed();
        assert_eq!(mesh.config().clusters.len(), clusters);

        // Let the initial burst settle, then move one endpoint.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let version = mesh.version();
        let moved = |mesh: &MeshClient| {
            mesh.endpoints("svc-0")
                .is_some_and(|e| e.iter().any(|e| e.address.port() == 9999))
        };
        let start = Instant::now();
        writeln!(stdin, "change")?;
        stdin.flush()?;
        tokio::time::timeout(Duration::from_secs(60), async {
            // A short sleep, not a yield: a task that only yields keeps the
            // runtime from polling its sockets, which slows the very
            // response being waited for.
            while !moved(&mesh) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
        .await?;
        let applied = Instant::now();
        let arrived = ARRIVALS
            .lock()
            .map_or(None, |last| *last)
            .ok_or("no ADS response was logged")?;
        assert_eq!(
            mesh.version(),
            version,
            "an endpoint change builds no configuration"
        );
        let change = (applied - start, applied.saturating_duration_since(arrived));
        Ok::<_, BoxError>((initial, change, memory_mib("VmRSS:")))
    })
}

/// When the latest ADS response arrived (meshlib-xds logs each one).
static ARRIVALS: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// A subscriber that only notes the time of each "xDS response received".
struct Arrivals;

impl tracing::Subscriber for Arrivals {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "meshlib_xds::response"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        if let Ok(mut last) = ARRIVALS.lock() {
            *last = Some(Instant::now());
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
