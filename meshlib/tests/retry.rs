//! Retries on loopback servers: which failures are retried, how often,
//! where the retry lands, which bodies are resent, and the timeouts.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use meshlib::config::MeshConfig;
use meshlib::retry::Attempts;
use meshlib::{ErrorKind, MeshClient};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// What a scripted server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    attempt_count: Option<String>,
    body: Bytes,
}

/// A server answering its `n`th request (from 0) with `script(n)`: a status
/// and a delay before it.
struct Scripted {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start(script: fn(usize) -> (u16, u64)) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = support::serve(listener, move || {
            let record = record.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let record = record.clone();
                async move {
                    let attempt_count = request
                        .headers()
                        .get("x-envoy-attempt-count")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let n = {
                        let mut seen = record.lock().unwrap();
                        seen.push(Seen {
                            attempt_count,
                            body,
                        });
                        seen.len() - 1
                    };
                    let (status, delay) = script(n);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(format!("answer {n}"))))
                            .unwrap(),
                    )
                }
            })
        });
        Scripted {
            address,
            seen,
            _task: task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn mesh(route: &str, endpoints: &[SocketAddr]) -> MeshClient {
    mesh_with_cluster(route, "", endpoints)
}

/// The same, the cluster's other fields (`, circuit_breakers: …`) given.
fn mesh_with_cluster(route: &str, cluster: &str, endpoints: &[SocketAddr]) -> MeshClient {
    let endpoints = endpoints
        .iter()
        .map(|a| format!("{{ address: '{a}' }}"))
        .collect::<Vec<_>>()
        .join(", ");
    MeshClient::new(
        MeshConfig::from_yaml(&format!(
            r#"
virtual_hosts:
  - name: api
    domains: [api]
    include_request_attempt_count: true
    routes:
      - name: r
        match: {{ prefix: / }}
        route: {{ cluster: backend, {route} }}
clusters: [{{ name: backend, endpoints: [{endpoints}]{cluster} }}]
"#
        ))
        .unwrap(),
    )
    .unwrap()
}

async fn post(mesh: &MeshClient, body: Bytes) -> Result<Response<Incoming>, meshlib::Error> {
    let request = Request::post("http://api/orders")
        .body(Full::new(body))
        .unwrap();
    mesh.clone().oneshot(request).await
}

async fn get(mesh: &MeshClient) -> Result<Response<Incoming>, meshlib::Error> {
    post(mesh, Bytes::new()).await
}

/// Retries are quick in tests: 1 ms base backoff.
const FAST: &str = "retry_back_off: { base_interval: 1ms, max_interval: 2ms }";

#[tokio::test]
async fn a_503_is_retried_and_the_retry_succeeds() {
    let server = Scripted::start(|n| (if n == 0 { 503 } else { 200 }, 0)).await;
    let mesh = mesh(
        &format!("retry_policy: {{ retry_on: 5xx, {FAST} }}"),
        &[server.address],
    );
    let response = post(&mesh, Bytes::from("order")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(2)));
    let seen = server.seen();
    let counts: Vec<_> = seen.iter().map(|s| s.attempt_count.as_deref()).collect();
    assert_eq!(counts, [Some("1"), Some("2")]);
    assert!(
        seen.iter().all(|s| s.body == "order"),
        "the body is resent whole"
    );
}

#[tokio::test]
async fn num_retries_bounds_the_attempts_and_the_last_response_is_returned() {
    let server = Scripted::start(|_| (503, 0)).await;
    let mesh = mesh(
        &format!("retry_policy: {{ retry_on: 5xx, num_retries: 3, {FAST} }}"),
        &[server.address],
    );
    let response = get(&mesh).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(4)));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body, "answer 3",
        "Envoy returns the last attempt's response"
    );
    assert_eq!(server.seen().len(), 4);

    // Without a policy, one attempt; the header still says so.
    let plain = self::mesh("timeout: 5s", &[server.address]);
    assert_eq!(get(&plain).await.unwrap().status(), 503);
    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[4].attempt_count.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_retry_lands_on_another_endpoint() {
    let broken = Scripted::start(|_| (503, 0)).await;
    let healthy = Scripted::start(|_| (200, 0)).await;
    let mesh = mesh(
        &format!("retry_policy: {{ retry_on: gateway-error, {FAST} }}"),
        &[broken.address, healthy.address],
    );
    // Round robin: whichever endpoint a request starts on, its retry takes
    // the other one.
    for _ in 0..6 {
        assert_eq!(get(&mesh).await.unwrap().status(), 200);
    }
    assert_eq!(healthy.seen().len(), 6);
    assert!(!broken.seen().is_empty());
}

#[tokio::test]
async fn a_connect_failure_is_retried_and_exhaustion_says_how_many_attempts() {
    // A port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_address = dead.local_addr().unwrap();
    drop(dead);
    let healthy = Scripted::start(|_| (200, 0)).await;
    let mesh = mesh(
        &format!("retry_policy: {{ retry_on: connect-failure, {FAST} }}"),
        &[dead_address, healthy.address],
    );
    for _ in 0..4 {
        assert_eq!(get(&mesh).await.unwrap().status(), 200);
    }

    let only_dead = self::mesh(
        &format!("retry_policy: {{ retry_on: connect-failure, num_retries: 2, {FAST} }}"),
        &[dead_address],
    );
    let error = get(&only_dead).await.unwrap_err();
    // The first connect failure retried; the balancer's connectivity gate
    // then takes the dead endpoint out, so a later attempt may find no
    // endpoint (not retried: Envoy answers that locally too).
    assert!(
        matches!(error.kind(), ErrorKind::Connect | ErrorKind::NoEndpoints),
        "{error}"
    );
    let attempts = error.attempts().unwrap();
    assert!((2..=3).contains(&attempts), "{error}");
    assert!(
        error.message().starts_with(&format!(
            "gave up after {attempts} attempts; the last failed: "
        )),
        "{error}"
    );
}

#[tokio::test]
async fn a_body_above_the_replay_bound_is_sent_once() {
    let server = Scripted::start(|n| (if n == 0 { 503 } else { 200 }, 0)).await;
    let mesh = mesh(
        &format!("retry_policy: {{ retry_on: 5xx, {FAST} }}"),
        &[server.address],
    );
    let large = Bytes::from(vec![b'x'; meshlib::retry::DEFAULT_MAX_REPLAY_BYTES + 1]);
    let response = post(&mesh, large.clone()).await.unwrap();
    assert_eq!(response.status(), 503, "not retried");
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen()[0].body, large, "but sent whole");

    // Streamed in chunks past the bound, without a size up front: the same.
    let chunks = (0..20)
        .map(|_| Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(vec![b'y'; 8 * 1024]))));
    let streamed = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
    let request = Request::post("http://api/orders").body(streamed).unwrap();
    let response = mesh.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the server's second answer: sent once"
    );
    assert_eq!(server.seen().len(), 2);
    assert_eq!(server.seen()[1].body.len(), 20 * 8 * 1024);
}

#[tokio::test]
async fn a_per_try_timeout_cuts_an_attempt_and_the_next_succeeds() {
    let server = Scripted::start(|n| (200, if n == 0 { 5_000 } else { 0 })).await;
    let mesh = mesh(
        &format!(
            "timeout: 10s, retry_policy: {{ retry_on: reset, per_try_timeout: 200ms, {FAST} }}"
        ),
        &[server.address],
    );
    let started = std::time::Instant::now();
    let response = get(&mesh).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(2)));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_route_timeout_bounds_every_attempt_and_wait_together() {
    // Each attempt waits 150 ms, under its 400 ms per-try timeout, and is
    // retried: ten retries would take 1.5 s, the route allows 500 ms.
    let server = Scripted::start(|_| (503, 150)).await;
    let mesh = mesh(
        &format!(
            "timeout: 500ms, retry_policy: {{ retry_on: 5xx, num_retries: 10, per_try_timeout: 400ms, {FAST} }}"
        ),
        &[server.address],
    );
    let started = std::time::Instant::now();
    let error = get(&mesh).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(
        error.to_string().contains("timed out after 500ms"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_millis(1_200));
    let attempts = server.seen().len();
    assert!((2..=4).contains(&attempts), "{attempts} attempts");
}

/// A server answering every first attempt 503 at once and holding every
/// retry until [`Holding::open`], then answering it 200 (and later ones at
/// once); it counts the retries it holds.
struct Holding {
    address: SocketAddr,
    held: Arc<std::sync::atomic::AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
    open: Arc<std::sync::atomic::AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Holding {
    async fn start() -> Holding {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, gate, opened) = (held.clone(), release.clone(), open.clone());
        let task = support::serve(listener, move || {
            let (count, gate, opened) = (count.clone(), gate.clone(), opened.clone());
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let (count, gate, open) = (count.clone(), gate.clone(), opened.clone());
                async move {
                    let first = request.headers()["x-envoy-attempt-count"] == "1";
                    let status = if first {
                        503
                    } else {
                        let released = gate.notified();
                        if !open.load(std::sync::atomic::Ordering::SeqCst) {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            released.await;
                        }
                        200
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                }
            })
        });
        Holding {
            address,
            held,
            release,
            open,
            _task: task,
        }
    }

    /// Answers the held retries, and every later one at once.
    fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
        self.release.notify_waiters();
    }
}

#[tokio::test]
async fn max_retries_bounds_the_retries_in_flight_and_refused_ones_return_the_first_answer() {
    let server = Holding::start().await;
    let mesh = mesh_with_cluster(
        &format!("retry_policy: {{ retry_on: 5xx, num_retries: 3, {FAST} }}"),
        ", circuit_breakers: { max_retries: 2 }",
        &[server.address],
    );

    // Twenty requests fail at once (a full outage, as the server sees it):
    // two retries may be in flight, the other eighteen are refused and
    // answer with their first 503.
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let mesh = mesh.clone();
            tokio::spawn(async move { get(&mesh).await.unwrap() })
        })
        .collect();
    let mut refused = Vec::new();
    let mut held = Vec::new();
    for request in requests {
        // The refused answer at once; the two retried wait on the server.
        match tokio::time::timeout(Duration::from_millis(500), request).await {
            Ok(response) => refused.push(response.unwrap()),
            Err(_) => held.push(()),
        }
    }
    assert_eq!(refused.len(), 18, "18 answered without a retry");
    assert!(
        refused
            .iter()
            .all(|r| r.status() == 503 && r.extensions().get::<Attempts>() == Some(&Attempts(1)))
    );
    assert_eq!(server.held.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(mesh.retries_refused("backend"), Some(18));

    assert_eq!(held.len(), 2);

    // Released, the held retries answer and free their slots: a new
    // request's retry is sent (and answered at once).
    server.open();
    let after = tokio::time::timeout(Duration::from_secs(5), get(&mesh))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(after.extensions().get::<Attempts>(), Some(&Attempts(2)));
    assert_eq!(mesh.retries_refused("backend"), Some(18));
}
