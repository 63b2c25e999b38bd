//! Loopback backends for the integration tests.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "xds")]
pub mod xds;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use meshlib::MeshClient;
use tokio::net::TcpListener;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves each connection `listener` accepts, HTTP/1.1 or h2c, with the
/// service `per_connection` makes for it, until the returned task is aborted.
pub fn serve<S, B>(
    listener: TcpListener,
    mut per_connection: impl FnMut() -> S + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = per_connection();
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// A loopback HTTP server (HTTP/1.1 and h2c) answering with its own name.
///
/// It answers `x-backend: NAME`, echoes the `Host`/`:authority` it saw in
/// `x-seen-authority`, and waits `x-delay-ms` milliseconds first if asked.
pub struct Backend {
    pub name: &'static str,
    pub address: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        Backend::serve(name, TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// A backend on `address`, which an earlier listener may just have
    /// released (so the address is reused).
    pub async fn start_at(name: &'static str, address: SocketAddr) -> Backend {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(address).unwrap();
        Backend::serve(name, socket.listen(64).unwrap())
    }

    fn serve(name: &'static str, listener: TcpListener) -> Backend {
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (req_count, conn_count) = (requests.clone(), connections.clone());
        let task = serve(listener, move || {
            conn_count.fetch_add(1, Ordering::SeqCst);
            let req_count = req_count.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                req_count.fetch_add(1, Ordering::SeqCst);
                answer(name, request)
            })
        });
        Backend {
            name,
            address,
            requests,
            connections,
            task,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn answer(
    name: &'static str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let seen = request
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            request
                .headers()
                .get("host")
                .map(|h| h.to_str().unwrap_or("").to_owned())
        })
        .unwrap_or_default();
    if let Some(delay) = request.headers().get("x-delay-ms") {
        let ms: u64 = delay.to_str().unwrap().parse().unwrap();
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let _ = request.into_body().collect().await;
    Ok(Response::builder()
        .header("x-backend", name)
        .header("x-seen-authority", seen)
        .body(Full::new(Bytes::from(name)))
        .unwrap())
}

/// Sends `GET uri` with `headers` through `mesh`; the backend's name, or the error.
pub async fn send(
    mesh: &MeshClient,
    uri: &str,
    headers: &[(&str, &str)],
) -> Result<String, meshlib::Error> {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = mesh
        .clone()
        .oneshot(builder.body(Empty::<Bytes>::new()).unwrap())
        .await?;
    assert!(response.status().is_success(), "{response:?}");
    let name = response.headers()["x-backend"].to_str().unwrap().to_owned();
    let _ = response.into_body().collect().await;
    Ok(name)
}

/// Sends `n` requests, `concurrency` at a time; how many went to each backend.
pub async fn tally(
    mesh: &MeshClient,
    uri: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    use futures_util::StreamExt;
    let results: Vec<String> = futures_util::stream::iter(0..n)
        .map(|_| async { send(mesh, uri, headers).await.unwrap() })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut counts = std::collections::BTreeMap::new();
    for name in results {
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// Waits, at most 10 s, until `done` holds.
pub async fn until(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// Requests flowing through a mesh at a steady rate, from four workers, each
/// sending one request every few milliseconds, until [`Traffic::stop`].
pub struct Traffic {
    stop: Arc<std::sync::atomic::AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    /// The first few failures, for the assertion message.
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// What [`Traffic`] did, once stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficReport {
    pub sent: usize,
    pub failed: usize,
}

impl Traffic {
    /// Starts sending `GET uri` through `mesh`.
    pub fn start(mesh: &MeshClient, uri: &'static str) -> Traffic {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let workers = (0..4)
            .map(|_| {
                let (mesh, stop, ok, failed, errors) = (
                    mesh.clone(),
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    errors.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        match send(&mesh, uri, &[]).await {
                            Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                            Err(error) => {
                                let mut errors = errors.lock().unwrap();
                                if errors.len() < 5 {
                                    errors.push(error.to_string());
                                }
                                failed.fetch_add(1, Ordering::SeqCst)
                            }
                        };
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            ok,
            failed,
            errors,
            workers,
        }
    }

    /// Requests answered so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Requests failed so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    /// Waits (at most 10 s) until `n` more requests have been answered.
    pub async fn flows(&self, what: &str, n: usize) {
        let from = self.ok();
        until(what, || self.ok() >= from + n).await;
    }

    /// Stops the workers and waits for them; asserts none panicked.
    pub async fn stop(mut self) -> TrafficReport {
        self.stop.store(true, Ordering::SeqCst);
        for worker in std::mem::take(&mut self.workers) {
            worker.await.expect("a traffic worker panicked");
        }
        let (ok, failed) = (self.ok(), self.failed());
        let errors = self.errors.lock().unwrap().clone();
        if failed > 0 {
            eprintln!("first failures: {errors:?}");
        }
        TrafficReport {
            sent: ok + failed,
            failed,
        }
    }
}
