//! Load balancing over real loopback backends: each policy's spread, the
//! hashing policies' stickiness, priority failover through configuration
//! updates, locality weights, and the load-aware policies steering away from
//! stuck or slow endpoints.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use meshlib::MeshClient;
use meshlib::balance::RequestHash;
use meshlib::config::MeshConfig;
use support::Backend;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// A mesh with one cluster, `svc`, described by `cluster` (YAML map entries
/// after `name: svc`, one per line), routing everything to it.
fn config(cluster: &str) -> MeshConfig {
    let cluster: String = cluster
        .trim()
        .lines()
        .map(|line| format!("    {}\n", line.trim()))
        .collect();
    MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts: [{{ name: svc, domains: ["*"], routes: [{{ match: {{ prefix: / }}, route: {{ cluster: svc }} }}] }}]
clusters:
  - name: svc
{cluster}"#
    ))
    .unwrap()
}

/// Sends one request carrying `hash` as its [`RequestHash`], as the route
/// layer's `hash_policy` would set it; the backend that answered.
async fn send(mesh: &MeshClient, hash: Option<u64>) -> String {
    let mut request = Request::get("http://svc/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    if let Some(hash) = hash {
        request.extensions_mut().insert(RequestHash(hash));
    }
    let response = mesh.clone().oneshot(request).await.unwrap();
    let name = response.headers()["x-backend"].to_str().unwrap().to_owned();
    let _ = response.into_body().collect().await;
    name
}

/// Sends `n` requests one after another; each backend's share in percent.
async fn shares(
    mesh: &MeshClient,
    n: usize,
    hash: impl Fn(usize) -> Option<u64>,
) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        *counts.entry(send(mesh, hash(i)).await).or_insert(0usize) += 1;
    }
    counts
        .into_iter()
        .map(|(name, count)| (name, count as f64 * 100.0 / n as f64))
        .collect()
}

/// Asserts each named backend's share within ±6 points: for 2,000 draws the
/// standard deviation is at most 1.2 points, so 6 is five of them.
#[track_caller]
fn assert_shares(actual: &BTreeMap<String, f64>, expected: &[(&str, f64)]) {
    for (name, share) in expected {
        let got = actual.get(*name).copied().unwrap_or(0.0);
        assert!(
            (got - share).abs() <= 6.0,
            "{name}: {got:.1}% instead of {share:.1}% ({actual:?})"
        );
    }
}

fn hash_of(i: usize) -> Option<u64> {
    Some(xxhash_rust::xxh64::xxh64(&i.to_le_bytes(), 7))
}

async fn three() -> [Backend; 3] {
    [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ]
}

#[tokio::test]
async fn every_policy_spreads_by_endpoint_weight() {
    let backends = three().await;
    for policy in [
        "round_robin",
        "random",
        "least_request",
        "{ ring_hash: { minimum_ring_size: 65536 } }",
        "maglev",
    ] {
        let mesh = MeshClient::new(config(&format!(
            r#"
lb_policy: {policy}
endpoints:
  - {{ address: "{}", weight: 1 }}
  - {{ address: "{}", weight: 2 }}
  - {{ address: "{}", weight: 3 }}
"#,
            backends[0].address, backends[1].address, backends[2].address
        )))
        .unwrap();
        let s = shares(&mesh, 2000, hash_of).await;
        assert_shares(&s, &[("a", 100.0 / 6.0), ("b", 100.0 / 3.0), ("c", 50.0)]);
    }
}

#[tokio::test]
async fn ring_hash_and_maglev_send_each_hash_to_one_backend() {
    let backends = three().await;
    for policy in ["ring_hash", "maglev"] {
        let mesh = MeshClient::new(config(&format!(
            r#"
lb_policy: {policy}
endpoints: [{{ address: "{}" }}, {{ address: "{}" }}, {{ address: "{}" }}]
"#,
            backends[0].address, backends[1].address, backends[2].address
        )))
        .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..100 {
            let first = send(&mesh, hash_of(i)).await;
            for _ in 0..3 {
                assert_eq!(send(&mesh, hash_of(i)).await, first, "{policy}: hash {i}");
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 3, "{policy}: every backend has keys");
    }
}

fn priorities(
    p0: &Backend,
    p0_health: &str,
    p0b: &Backend,
    p0b_health: &str,
    p1: &Backend,
) -> MeshConfig {
    config(&format!(
        r#"
endpoints:
  - {{ address: "{}", health: {p0_health} }}
  - {{ address: "{}", health: {p0b_health} }}
  - {{ address: "{}", priority: 1 }}
"#,
        p0.address, p0b.address, p1.address
    ))
}

#[tokio::test]
async fn traffic_fails_over_to_the_next_priority_and_returns() {
    let [a, b, c] = three().await;
    let mesh = MeshClient::new(priorities(&a, "healthy", &b, "healthy", &c)).unwrap();
    let s = shares(&mesh, 200, |_| None).await;
    assert_eq!(s.get("c"), None, "P0 healthy keeps everything: {s:?}");

    mesh.update(priorities(&a, "unhealthy", &b, "draining", &c))
        .unwrap();
    let s = shares(&mesh, 200, |_| None).await;
    assert_eq!(s.get("c"), Some(&100.0), "P0 down: all to P1: {s:?}");

    // Half of P0 healthy at 140 %: P0 keeps 70 %.
    mesh.update(priorities(&a, "healthy", &b, "unhealthy", &c))
        .unwrap();
    let s = shares(&mesh, 2000, |_| None).await;
    assert_shares(&s, &[("a", 70.0), ("b", 0.0), ("c", 30.0)]);

    mesh.update(priorities(&a, "healthy", &b, "unknown", &c))
        .unwrap();
    let s = shares(&mesh, 200, |_| None).await;
    assert_eq!(
        s.get("c"),
        None,
        "P0 recovered takes everything back: {s:?}"
    );
}

/// Sends one request; the backend that answered, or the mesh's error.
async fn try_send(mesh: &MeshClient) -> Result<String, meshlib::Error> {
    support::send(mesh, "http://svc/", &[]).await
}

/// Sends requests until one is answered by `backend`, for at most 10 s; the
/// errors seen meanwhile.
async fn until_answered_by(mesh: &MeshClient, backend: &str) -> Vec<meshlib::ErrorKind> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut errors = Vec::new();
    loop {
        match try_send(mesh).await {
            Ok(name) if name == backend => return errors,
            Ok(_) => {}
            Err(e) => errors.push(e.kind()),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{backend} did not answer within 10 s (errors: {errors:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_priority_that_refuses_connections_fails_over_and_takes_traffic_back() {
    // Priority 0 is an address nothing listens on yet: it refuses.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p0 = reserved.local_addr().unwrap();
    drop(reserved);
    let c = Backend::start("c").await;
    let mesh = MeshClient::new(config(&format!(
        r#"
endpoints:
  - {{ address: "{p0}" }}
  - {{ address: "{}", priority: 1 }}
"#,
        c.address
    )))
    .unwrap();

    let first = try_send(&mesh).await;
    assert_eq!(
        first.unwrap_err().kind(),
        meshlib::ErrorKind::Connect,
        "the first request finds priority 0 refusing"
    );
    let errors = until_answered_by(&mesh, "c").await;
    assert!(
        errors.iter().all(|e| *e == meshlib::ErrorKind::Connect),
        "{errors:?}"
    );
    for _ in 0..50 {
        assert_eq!(try_send(&mesh).await.unwrap(), "c", "priority 1 takes all");
    }

    // Priority 0 comes up: the probe finds it and it takes everything back,
    // with no request failing on the way.
    let _a = Backend::start_at("a", p0).await;
    let errors = until_answered_by(&mesh, "a").await;
    assert_eq!(errors, [], "no request fails while priority 0 returns");
    for _ in 0..50 {
        assert_eq!(
            try_send(&mesh).await.unwrap(),
            "a",
            "priority 0 takes all back"
        );
    }
}

#[tokio::test]
async fn an_endpoint_that_refuses_connections_is_skipped_by_round_robin() {
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = reserved.local_addr().unwrap();
    drop(reserved);
    let [a, b, _c] = three().await;
    let mesh = MeshClient::new(config(&format!(
        r#"
endpoints:
  - {{ address: "{}" }}
  - {{ address: "{dead}" }}
  - {{ address: "{}" }}
"#,
        a.address, b.address
    )))
    .unwrap();
    // At most the requests sent before the failure is seen fail.
    let mut failures = 0;
    for _ in 0..20 {
        failures += usize::from(try_send(&mesh).await.is_err());
        tokio::task::yield_now().await;
    }
    assert!(failures <= 2, "{failures} failures");
    let s = shares(&mesh, 200, |_| None).await;
    assert_eq!(
        s,
        BTreeMap::from([("a".to_owned(), 50.0), ("b".to_owned(), 50.0)]),
        "the refusing endpoint gets nothing"
    );
}

#[tokio::test]
async fn locality_weights_split_a_priority_and_skip_unlisted_localities() {
    let [a, b, c] = three().await;
    let mesh = MeshClient::new(config(&format!(
        r#"
locality_weights:
  - {{ locality: {{ region: eu, zone: a }}, weight: 1 }}
  - {{ locality: {{ region: eu, zone: b }}, weight: 3 }}
endpoints:
  - {{ address: "{}", locality: {{ region: eu, zone: a }} }}
  - {{ address: "{}", locality: {{ region: eu, zone: b }} }}
  - {{ address: "{}", locality: {{ region: eu, zone: c }} }}
"#,
        a.address, b.address, c.address
    )))
    .unwrap();
    let s = shares(&mesh, 2000, |_| None).await;
    assert_shares(&s, &[("a", 25.0), ("b", 75.0)]);
    assert_eq!(c.requests(), 0, "zone c has no weight");
}

/// A loopback backend that answers `x-backend: name` after `delay`, or never.
struct Paced {
    address: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Paced {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Paced {
    async fn start(name: &'static str, delay: Option<Duration>) -> Paced {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = support::serve(listener, move || {
            let counter = counter.clone();
            hyper::service::service_fn(move |_: Request<Incoming>| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    match delay {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => std::future::pending::<()>().await,
                    }
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("x-backend", name)
                            .body(Full::new(Bytes::from(name)))
                            .unwrap(),
                    )
                }
            })
        });
        Paced {
            address,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn least_request_steers_away_from_an_endpoint_stuck_on_requests() {
    let stuck = Paced::start("stuck", None).await;
    let idle = [
        Paced::start("idle-1", Some(Duration::ZERO)).await,
        Paced::start("idle-2", Some(Duration::ZERO)).await,
    ];
    let mesh = MeshClient::new(config(&format!(
        r#"
lb_policy: least_request
endpoints: [{{ address: "{}" }}, {{ address: "{}" }}, {{ address: "{}" }}]
"#,
        stuck.address, idle[0].address, idle[1].address
    )))
    .unwrap();
    let n = 300;
    let mut pending = Vec::new();
    for _ in 0..n {
        let mesh = mesh.clone();
        let mut request = tokio::spawn(async move {
            let request = Request::get("http://svc/")
                .body(Empty::<Bytes>::new())
                .unwrap();
            mesh.oneshot(request).await
        });
        // An idle backend answers at once; a request on the stuck one stays in flight.
        if tokio::time::timeout(Duration::from_millis(25), &mut request)
            .await
            .is_err()
        {
            pending.push(request);
        }
    }
    let stuck_share = stuck.requests() as f64 * 100.0 / n as f64;
    // Once it holds a request, the stuck endpoint is picked only when both
    // candidates are it: 1/9 ≈ 11 %, against 33 % for round robin.
    assert!(
        stuck_share <= 20.0,
        "the stuck endpoint got {stuck_share:.1}%"
    );
    assert_eq!(
        idle[0].requests() + idle[1].requests() + stuck.requests(),
        n
    );
    for request in pending {
        request.abort();
    }
}

#[tokio::test]
async fn peak_ewma_prefers_the_faster_of_two_endpoints() {
    let slow = Paced::start("slow", Some(Duration::from_millis(50))).await;
    let fast = Paced::start("fast", Some(Duration::ZERO)).await;
    let mesh = MeshClient::new(config(&format!(
        r#"
lb_policy: peak_ewma
endpoints: [{{ address: "{}" }}, {{ address: "{}" }}]
"#,
        slow.address, fast.address
    )))
    .unwrap();
    let s = shares(&mesh, 200, |_| None).await;
    // Both start at the default 30 ms; once each is measured, fast always
    // wins: slow's 50 ms would take ~40 s (decay 10 s) to decay below fast's.
    assert!(
        slow.requests() <= 2,
        "slow got {} requests: {s:?}",
        slow.requests()
    );
    assert!(fast.requests() >= 198, "{s:?}");
}
