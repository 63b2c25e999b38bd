//! The main job, on the embedded default configuration.
//!
//! Starts two loopback backends, `reviews` v1 and v2, routes a few hundred
//! requests to them through a `MeshClient` loaded from `config/reviews.yaml`
//! (a 90/10 split, and `x-canary: true` → v2), prints where they went, then
//! swaps in a 50/50 split while traffic runs and prints where traffic went
//! before and after the swap.
//!
//! With `--xds`, the same configuration comes from an xDS control plane
//! instead: the embedded snapshot server serves it as Envoy resources
//! (Listener → RouteConfiguration → Clusters → ClusterLoadAssignments) over
//! ADS on loopback, and the swap is a new snapshot pushed mid-run.
//!
//! Run it with `cargo run -p meshlib-examples --bin demo` (add `-- --xds`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshlib::MeshClient;
use meshlib::config::{Destination, MeshConfig};
use meshlib_xds::server::{Snapshot, SnapshotServer, build};
use meshlib_xds::{Bootstrap, XdsClient};
use tokio::net::TcpListener;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CONFIG: &str = include_str!("config/reviews.yaml");

/// Where requests went: backend name (or `failed`) → count.
type Tally = BTreeMap<String, usize>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let v1 = backend("reviews-v1").await?;
    let v2 = backend("reviews-v2").await?;
    println!("backends: reviews-v1 on {v1}, reviews-v2 on {v2}");

    let xds_mode = std::env::args().any(|a| a == "--xds");
    let control_plane = if xds_mode {
        Some(control_plane(v1, v2).await?)
    } else {
        None
    };
    let mesh = match &control_plane {
        Some((_, address)) => {
            println!("control plane: the snapshot server on {address}, ADS state-of-the-world");
            let xds = XdsClient::new(Bootstrap::new(&address.to_string(), "demo")?)?;
            MeshClient::from_xds(&xds, "xds:///reviews").await?
        }
        None => {
            let yaml = CONFIG
                .replace("127.0.0.1:9081", &v1.to_string())
                .replace("127.0.0.1:9082", &v2.to_string());
            MeshClient::new(MeshConfig::from_yaml(&yaml)?)?
        }
    };

    println!(
        "\nconfiguration {}: reviews-split 90/10, x-canary: true → v2",
        mesh.version()
    );
    let plain = send_many(&mesh, 500, false).await;
    let canary = send_many(&mesh, 100, true).await;
    print_table(&[
        ("500 requests", &plain),
        ("100 with x-canary: true", &canary),
    ]);

    println!("\nswapping in a 50/50 split while traffic runs…");
    let (before, after) = match &control_plane {
        Some((server, _)) => {
            swap_under_traffic(&mesh, 400, 1000, async || {
                let version = mesh.version();
                server.set_default(reviews_snapshot("2", v1, v2, 50));
                let applied = async {
                    while mesh.version() == version {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                };
                tokio::time::timeout(std::time::Duration::from_secs(10), applied)
                    .await
                    .map_err(|_| "the new snapshot was not applied within 10 s")?;
                Ok(mesh.version())
            })
            .await?
        }
        None => {
            swap_under_traffic(&mesh, 400, 1000, async || {
                let mut config = (*mesh.config()).clone();
                for route in config
                    .virtual_hosts
                    .iter_mut()
                    .flat_map(|v| v.routes.iter_mut())
                {
                    if let Destination::WeightedClusters(clusters) = &mut route.action.destination {
                        clusters.iter_mut().for_each(|c| c.weight = 50);
                    }
                }
                Ok(mesh.update(config)?)
            })
            .await?
        }
    };
    print_table(&[
        ("before the swap (90/10)", &before),
        ("after the swap (50/50)", &after),
    ]);

    let failed = [&plain, &canary, &before, &after]
        .iter()
        .map(|t| t.get("failed").copied().unwrap_or(0))
        .sum::<usize>();
    println!(
        "\nconfiguration {} in force; {failed} requests failed",
        mesh.version()
    );
    if failed > 0 {
        return Err(format!("{failed} requests failed").into());
    }
    Ok(())
}

/// A loopback backend answering every request with its name.
async fn backend(name: &'static str) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service =
                hyper::service::service_fn(move |_: Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                });
            tokio::spawn(async move {
                let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = server.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(address)
}

/// Sends one request for `reviews`; the name of the backend that answered.
async fn send(mesh: &MeshClient, canary: bool) -> Result<String, BoxError> {
    let request = Request::get("http://reviews/reviews/42")
        .header("x-canary", if canary { "true" } else { "false" })
        .body(Empty::<Bytes>::new())?;
    let response = mesh.clone().oneshot(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sends `n` requests, 16 at a time, and tallies where they went.
async fn send_many(mesh: &MeshClient, n: usize, canary: bool) -> Tally {
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::new()));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (mesh, next, tally) = (mesh.clone(), next.clone(), tally.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let went = send(&mesh, canary)
                        .await
                        .unwrap_or_else(|_| "failed".into());
                    *tally.lock().unwrap().entry(went).or_default() += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    tally.lock().unwrap().clone()
}

/// The demo's configuration as Envoy resources: the same routes as
/// `config/reviews.yaml`, with `v1_weight`/`100 - v1_weight` as the split.
fn reviews_snapshot(version: &str, v1: SocketAddr, v2: SocketAddr, v1_weight: u32) -> Snapshot {
    let routes = vec![
        build::with_exact_header(
            build::prefix_route("reviews-canary-header", "/", &[("reviews-v2", 1)]),
            "x-canary",
            "true",
        ),
        build::prefix_route(
            "reviews-split",
            "/",
            &[("reviews-v1", v1_weight), ("reviews-v2", 100 - v1_weight)],
        ),
    ];
    let domains = ["reviews", "reviews.default.svc.cluster.local"];
    Snapshot::new(version)
        .with(build::api_listener("reviews", "reviews-routes"))
        .with(build::route_configuration(
            "reviews-routes",
            vec![build::virtual_host("reviews", &domains, routes)],
        ))
        .with(build::eds_cluster("reviews-v1"))
        .with(build::eds_cluster("reviews-v2"))
        .with(build::cluster_load_assignment("reviews-v1", &[v1]))
        .with(build::cluster_load_assignment("reviews-v2", &[v2]))
}

/// Starts the snapshot server on a free loopback port, serving the 90/10 split.
async fn control_plane(
    v1: SocketAddr,
    v2: SocketAddr,
) -> Result<(SnapshotServer, SocketAddr), BoxError> {
    let server = SnapshotServer::new();
    server.set_default(reviews_snapshot("1", v1, v2, 90));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(server.clone().serve(listener));
    Ok((server, address))
}

/// Keeps 8 requests in flight; after `before` requests runs `swap`, then
/// stops after `after` more. Tallies each side of the swap by when the
/// request started.
async fn swap_under_traffic(
    mesh: &MeshClient,
    before: usize,
    after: usize,
    swap: impl AsyncFnOnce() -> Result<u64, BoxError>,
) -> Result<(Tally, Tally), BoxError> {
    let swapped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let tallies = Arc::new(Mutex::new((Tally::new(), Tally::new())));
    let total = before + after;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (mesh, swapped, started, tallies) = (
                mesh.clone(),
                swapped.clone(),
                started.clone(),
                tallies.clone(),
            );
            tokio::spawn(async move {
                while started.fetch_add(1, Ordering::SeqCst) < total {
                    let after_swap = swapped.load(Ordering::SeqCst);
                    let went = send(&mesh, false).await.unwrap_or_else(|_| "failed".into());
                    let mut tallies = tallies.lock().unwrap();
                    let tally = if after_swap {
                        &mut tallies.1
                    } else {
                        &mut tallies.0
                    };
                    *tally.entry(went).or_default() += 1;
                }
            })
        })
        .collect();

    while started.load(Ordering::SeqCst) < before {
        tokio::task::yield_now().await;
    }
    let version = swap().await?;
    swapped.store(true, Ordering::SeqCst);
    println!(
        "configuration {version} applied after {} requests",
        started.load(Ordering::SeqCst).min(total)
    );

    for worker in workers {
        let _ = worker.await;
    }
    Ok(tallies.lock().unwrap().clone())
}

fn print_table(rows: &[(&str, &Tally)]) {
    println!(
        "  {:<26} {:>11} {:>11} {:>7}",
        "", "reviews-v1", "reviews-v2", "failed"
    );
    for (label, tally) in rows {
        let get = |k: &str| tally.get(k).copied().unwrap_or(0);
        let total: usize = tally.values().sum();
        let pct = |n: usize| {
            if total == 0 {
                0.0
            } else {
                n as f64 * 100.0 / total as f64
            }
        };
        println!(
            "  {:<26} {:>5} {:>4.1}% {:>5} {:>4.1}% {:>7}",
            label,
            get("reviews-v1"),
            pct(get("reviews-v1")),
            get("reviews-v2"),
            pct(get("reviews-v2")),
            get("failed")
        );
    }
}
