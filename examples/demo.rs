//! The main job, on the embedded default configuration.
//!
//! Starts two loopback backends, `reviews` v1 and v2, routes a few hundred
//! requests to them through a `MeshClient` loaded from `config/reviews.yaml`
//! (a 90/10 split, and `x-canary: true` → v2), prints where they went, then
//! swaps in a 50/50 split while traffic runs and prints where traffic went
//! before and after the swap.
//!
//! Run it with `cargo run -p meshlib-examples --bin demo`.

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

    let yaml = CONFIG
        .replace("127.0.0.1:9081", &v1.to_string())
        .replace("127.0.0.1:9082", &v2.to_string());
    let mesh = MeshClient::new(MeshConfig::from_yaml(&yaml)?)?;

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
    let (before, after) = swap_under_traffic(&mesh, 400, 1000).await?;
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

/// Keeps 8 requests in flight; after `before` requests swaps the split to
/// 50/50, then stops after `after` more. Tallies each side of the swap by
/// when the request started.
async fn swap_under_traffic(
    mesh: &MeshClient,
    before: usize,
    after: usize,
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
    let version = mesh.update(config)?;
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
