//! The local rate limit on real sockets, on both sides: in front of a hyper
//! server and a tonic server, and around a `MeshClient`.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::service::TowerToHyperService;
use meshlib::MeshClient;
use meshlib::config::MeshConfig;
use meshlib::ratelimit::{LocalRateLimit, LocalRateLimitLayer, TokenBucket};
use support::Backend;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt, service_fn};

/// A mesh sending everything for `api` to `address`, behind `limit` if given.
fn mesh_to(address: std::net::SocketAddr, limit: Option<LocalRateLimit>) -> MeshClient {
    let mut config = MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts:
  - name: api
    domains: ["api"]
    routes: [{{ name: all, match: {{ prefix: "/" }}, route: {{ cluster: api }} }}]
clusters:
  - name: api
    endpoints: [{{ address: "{address}" }}]
"#
    ))
    .unwrap();
    config.local_rate_limit = limit;
    MeshClient::new(config).unwrap()
}

/// A hyper server (HTTP/1.1 and h2c) behind `layer`, answering "ok".
async fn limited_server(
    layer: LocalRateLimitLayer,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = support::serve(listener, move || {
        TowerToHyperService::new(layer.layer(service_fn(
            |_: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            },
        )))
    });
    (address, task)
}

/// Sends `GET http://api/` through `mesh`: the response, body read, or the error.
async fn get(mesh: &MeshClient) -> Result<Response<()>, meshlib::Error> {
    let request = Request::get("http://api/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = mesh.clone().oneshot(request).await?;
    let (parts, body) = response.into_parts();
    let _ = body.collect().await;
    Ok(Response::from_parts(parts, ()))
}

#[tokio::test]
async fn a_hyper_server_refuses_past_its_bucket_with_envoys_answer() {
    let limit = LocalRateLimit::enforced(TokenBucket::new(3, 1, Duration::from_secs(60)))
        .with_x_ratelimit_headers();
    let layer = LocalRateLimitLayer::new(limit).unwrap();
    let stats = layer.stats();
    let (address, _server) = limited_server(layer).await;
    let mesh = mesh_to(address, None);

    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(get(&mesh).await.unwrap());
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let remaining: Vec<&str> = answers[..3]
        .iter()
        .map(|r| r.headers()["x-ratelimit-remaining"].to_str().unwrap())
        .collect();
    assert_eq!(remaining, ["2", "1", "0"]);
    let refused = answers[3].headers();
    assert_eq!(refused["x-envoy-ratelimited"], "true");
    assert_eq!(refused["x-ratelimit-limit"], "3");
    assert_eq!(refused["x-ratelimit-remaining"], "0");
    // The next token is a minute away.
    assert_eq!(refused["x-ratelimit-reset"], "60");
    assert_eq!((stats.ok(), stats.enforced()), (3, 1));
}

#[tokio::test]
async fn a_tonic_server_fails_refused_calls_unavailable_or_resource_exhausted() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    for (as_resource_exhausted, code) in [
        (false, tonic::Code::Unavailable),
        (true, tonic::Code::ResourceExhausted),
    ] {
        let mut limit = LocalRateLimit::enforced(TokenBucket::new(2, 1, Duration::from_secs(60)));
        limit.rate_limited_as_resource_exhausted = as_resource_exhausted;
        let layer = LocalRateLimitLayer::new(limit).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(layer)
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let mut codes = Vec::new();
        for _ in 0..3 {
            let outcome = client.check(HealthCheckRequest::default()).await;
            codes.push(
                outcome
                    .map(|_| tonic::Code::Ok)
                    .unwrap_or_else(|s| s.code()),
            );
        }
        assert_eq!(codes, [tonic::Code::Ok, tonic::Code::Ok, code]);
        server.abort();
    }
}

/// Offers `per_second` requests a second for `over` through `mesh`; how
/// many were answered 200, and how many refused by the mesh's own limit.
async fn offered(mesh: MeshClient, per_second: u32, over: Duration) -> (usize, usize) {
    let (passed, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
    let end = tokio::time::Instant::now() + over;
    let mut sent = tokio::task::JoinSet::new();
    while ticks.tick().await < end {
        let (mesh, passed, refused) = (mesh.clone(), passed.clone(), refused.clone());
        sent.spawn(async move {
            match get(&mesh).await {
                Ok(response) if response.status() == http::StatusCode::OK => {
                    passed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(error) => {
                    assert_eq!(error.kind(), meshlib::ErrorKind::RateLimited, "{error}");
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    sent.join_all().await;
    (
        passed.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_holds_within_five_percent_over_ten_seconds_on_both_sides() {
    // 10 at once, then 100 a second: 1,010 in 10 s, offered 300 a second.
    let limit = || LocalRateLimit::enforced(TokenBucket::new(10, 10, Duration::from_millis(100)));
    let over = Duration::from_secs(10);
    let expected = 10.0 + 100.0 * over.as_secs_f64();

    // Server side: the server's bucket; client side: the client's own.
    let (address, _server) = limited_server(LocalRateLimitLayer::new(limit()).unwrap()).await;
    let backend = Backend::start("plain").await;
    let client_limited = mesh_to(backend.address, Some(limit()));
    let ((server_side, _), (client_side, refused)) = tokio::join!(
        offered(mesh_to(address, None), 300, over),
        offered(client_limited.clone(), 300, over),
    );
    for (side, passed) in [("server", server_side), ("client", client_side)] {
        let off = (passed as f64 - expected).abs() / expected;
        println!(
            "{side} side: {passed} passed, {expected} expected ({:.1} % off)",
            off * 100.0
        );
        assert!(
            off <= 0.05,
            "{side} side: {passed} passed, {expected} expected"
        );
    }
    assert_eq!(
        backend.requests(),
        client_side,
        "refused requests never left the client"
    );
    let stats = client_limited.rate_limit_stats().unwrap();
    assert_eq!(
        (stats.ok() as usize, stats.enforced() as usize),
        (client_side, refused)
    );
}

#[tokio::test]
async fn a_clients_limit_is_refused_by_name_and_survives_updates() {
    let backend = Backend::start("plain").await;
    let mut bad = LocalRateLimit::enforced(TokenBucket::new(1, 1, Duration::from_millis(10)));
    let mut config = MeshConfig::from_yaml("{}").unwrap();
    config.local_rate_limit = Some(bad.clone());
    let error = MeshClient::new(config).unwrap_err().to_string();
    assert!(
        error.contains("local_rate_limit") && error.contains("fill_interval"),
        "{error}"
    );

    bad.token_bucket = TokenBucket::new(1, 1, Duration::from_secs(60));
    let mesh = mesh_to(backend.address, Some(bad));
    assert!(get(&mesh).await.is_ok());
    // The same settings in a new configuration: the bucket, still empty, stays.
    let mut next = (*mesh.config()).clone();
    next.clusters[0].connect_timeout = Duration::from_secs(2);
    mesh.update(next).unwrap();
    let error = get(&mesh).await.unwrap_err();
    assert_eq!(error.kind(), meshlib::ErrorKind::RateLimited);
    assert_eq!(error.http_status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert!(error.to_string().contains("local rate limit"), "{error}");
}
