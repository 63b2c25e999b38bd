//! Loopback load: the bare hyper-util client against `MeshClient`, same
//! backend, same concurrency, interleaved rounds, in one run.
//!
//! `cargo bench -p meshlib-benches --bench loopback` runs the full
//! measurement (3 rounds of 3 s per client and protocol); without `--bench`
//! (as under `cargo test --benches`) it runs a short smoke pass. The server
//! and the client each get one runtime thread, so on a 2-core machine they
//! do not fight over a core with their own helpers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use meshlib::MeshClient;
use meshlib::config::MeshConfig;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One request at a time shows the latency meshlib adds; 32 in flight
/// saturate the client's thread and show the throughput it costs.
const CONCURRENCY: [usize; 2] = [1, 32];

#[derive(Clone)]
enum Target {
    Bare(Box<Client<HttpConnector, Empty<Bytes>>>),
    Mesh(MeshClient),
}

impl Target {
    async fn send(&self, uri: &str) -> Result<(), BoxError> {
        let request = Request::get(uri).body(Empty::<Bytes>::new())?;
        let response = match self {
            Target::Bare(client) => client.request(request).await?,
            Target::Mesh(mesh) => mesh.clone().oneshot(request).await?,
        };
        response.into_body().collect().await?;
        Ok(())
    }
}

struct Run {
    requests: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

async fn run(
    target: Target,
    uri: &'static str,
    concurrency: usize,
    duration: Duration,
) -> Result<Run, BoxError> {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    target.send(uri).await?;
                    latencies.push(sent.elapsed().as_micros() as u32);
                }
                Ok::<_, BoxError>(latencies)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await??);
    }
    latencies_us.sort_unstable();
    Ok(Run {
        requests: latencies_us.len(),
        elapsed: start.elapsed(),
        latencies_us,
    })
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A header route that does not match, then a catch-all to the one backend:
/// the same single connection pool as the bare client, so the difference is
/// meshlib's routing and balancing.
fn mesh_client(server: SocketAddr, protocol: &str) -> Result<MeshClient, BoxError> {
    let config = MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts:
  - name: hello
    domains: ["*"]
    routes:
      - name: canary
        match: {{ prefix: /, headers: [{{ name: x-canary, exact: "true" }}] }}
        route: {{ cluster: hello }}
      - name: all
        match: {{ prefix: / }}
        route: {{ cluster: hello }}
clusters:
  - {{ name: hello, protocol: {protocol}, endpoints: [{{ address: "{server}" }}] }}
"#
    ))?;
    Ok(MeshClient::new(config)?)
}

fn bare_client(http2: bool) -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // Configured as meshlib configures its per-endpoint clients: a pool timer
    // so idle connections are closed (90 s), as a production client would be.
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .timer(TokioTimer::new())
        .http2_only(http2);
    builder.build(connector)
}

fn main() -> Result<(), BoxError> {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, duration) = if full {
        (3, Duration::from_secs(2))
    } else {
        (1, Duration::from_millis(200))
    };

    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let server = server_runtime.block_on(meshlib_benches::hello_server())?;
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    println!("loopback, {rounds} interleaved rounds of {duration:?} per row");
    println!("| protocol | in flight | client | requests/s | p50 µs | p99 µs |");
    println!("|---|---:|---|---:|---:|---:|");
    for (protocol, http2) in [("http1", false), ("http2", true)] {
        for concurrency in CONCURRENCY {
            measure(
                &client_runtime,
                server,
                protocol,
                http2,
                concurrency,
                rounds,
                duration,
            )?;
        }
    }
    Ok(())
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    server: SocketAddr,
    protocol: &str,
    http2: bool,
    concurrency: usize,
    rounds: usize,
    duration: Duration,
) -> Result<(), BoxError> {
    let uri: &'static str = Box::leak(format!("http://hello:{}/", server.port()).into_boxed_str());
    let bare_uri: &'static str = Box::leak(format!("http://{server}/").into_boxed_str());
    let mut results: Vec<(&str, Vec<f64>, Vec<u32>)> = vec![
        ("bare hyper-util", vec![], vec![]),
        ("MeshClient", vec![], vec![]),
    ];
    runtime.block_on(async {
        let bare = Target::Bare(Box::new(bare_client(http2)));
        let mesh = Target::Mesh(mesh_client(server, protocol)?);
        // Warm both pools before measuring.
        let warm = Duration::from_millis(100);
        run(bare.clone(), bare_uri, concurrency, warm).await?;
        run(mesh.clone(), uri, concurrency, warm).await?;
        for _ in 0..rounds {
            for (i, (target, uri)) in [(&bare, bare_uri), (&mesh, uri)].into_iter().enumerate() {
                let r = run(target.clone(), uri, concurrency, duration).await?;
                results[i]
                    .1
                    .push(r.requests as f64 / r.elapsed.as_secs_f64());
                results[i].2.extend(r.latencies_us);
            }
        }
        Ok::<_, BoxError>(())
    })?;
    let mut summary = Vec::new();
    for (name, mut rps, mut latencies) in results {
        rps.sort_by(f64::total_cmp);
        latencies.sort_unstable();
        let median_rps = rps[rps.len() / 2];
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!("| {protocol} | {concurrency} | {name} | {median_rps:.0} | {p50} | {p99} |");
        summary.push((median_rps, p50));
    }
    println!(
        "| {protocol} | {concurrency} | **MeshClient ÷ bare** | **{:.3}×** | **{:+} µs** | |",
        summary[1].0 / summary[0].0,
        i64::from(summary[1].1) - i64::from(summary[0].1)
    );
    Ok(())
}
