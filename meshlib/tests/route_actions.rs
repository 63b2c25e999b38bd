//! Route actions seen from real loopback backends: rewrites and header
//! changes, the cluster named by a header, mirroring (with bodies, and with a
//! slow or dead mirror cluster), and `grpc-timeout` capped by the route.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use meshlib::config::MeshConfig;
use meshlib::{ErrorKind, MeshClient};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// What a backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    authority: String,
    path: String,
    headers: HeaderMap,
    /// The body, or why it could not be read whole.
    body: Result<Bytes, String>,
}

/// A loopback HTTP/1.1 + h2c backend recording every request it gets. It
/// waits `x-delay-ms` before answering when asked, and `stall` before
/// reading anything.
struct Recorder {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start(name: &'static str) -> Recorder {
        Self::stalling(name, Duration::ZERO).await
    }

    async fn stalling(name: &'static str, stall: Duration) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = support::serve(listener, move || {
            let record = record.clone();
            hyper::service::service_fn(move |request| answer(name, stall, record.clone(), request))
        });
        Recorder {
            address,
            seen,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits up to five seconds for the backend to have seen `n` requests.
    async fn wait_for(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = self.seen();
            if seen.len() >= n || Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn answer(
    name: &'static str,
    stall: Duration,
    record: Arc<Mutex<Vec<Seen>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    tokio::time::sleep(stall).await;
    let authority = request
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            let host = request.headers().get("host")?;
            Some(host.to_str().ok()?.to_owned())
        })
        .unwrap_or_default();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    let headers = request.headers().clone();
    let delay = headers
        .get("x-delay-ms")
        .and_then(|d| d.to_str().ok()?.parse().ok())
        .map(Duration::from_millis);
    let body = match request.into_body().collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(error) => Err(error.to_string()),
    };
    record.lock().unwrap().push(Seen {
        authority,
        path,
        headers,
        body,
    });
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Ok(Response::builder()
        .header("x-backend", name)
        .body(Full::new(Bytes::from(name)))
        .unwrap())
}

/// Sends `request` through `mesh`: the answering backend's name, or the error.
async fn send<B>(mesh: &MeshClient, request: Request<B>) -> Result<String, meshlib::Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<meshlib::BoxError>,
{
    let response = mesh.clone().oneshot(request).await?;
    assert!(response.status().is_success(), "{response:?}");
    let name = response.headers()["x-backend"].to_str().unwrap().to_owned();
    let _ = response.into_body().collect().await;
    Ok(name)
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Empty::new()).unwrap()
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn rewrites_and_header_changes_reach_the_backend_over_http1_and_http2() {
    let backend = Recorder::start("backend").await;
    let config = MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts:
  - name: api
    domains: ["api"]
    routes:
      - name: v1
        match: {{ prefix: /v1/ }}
        route: {{ cluster: h1, prefix_rewrite: /internal/, host_rewrite_literal: "backend.internal:8080" }}
        request_headers_to_remove: [x-secret]
        request_headers_to_add:
          - {{ name: x-routed-by, value: meshlib, append_action: overwrite_if_exists_or_add }}
          - {{ name: x-trace, value: mesh }}
      - name: v2
        match: {{ prefix: /v2/ }}
        route: {{ cluster: h2, prefix_rewrite: /internal/, host_rewrite_literal: "backend.internal:8080" }}
      - name: service
        match: {{ prefix: /service/ }}
        route:
          cluster: h1
          regex_rewrite: {{ pattern: {{ regex: '^/service/([^/]+)(/.*)$' }}, substitution: '\2/instance/\1' }}
clusters:
  - {{ name: h1, endpoints: [{{ address: "{address}" }}] }}
  - {{ name: h2, protocol: http2, endpoints: [{{ address: "{address}" }}] }}
"#,
        address = backend.address
    ))
    .unwrap();
    let mesh = MeshClient::new(config).unwrap();

    let headers = [
        ("x-secret", "s3cret"),
        ("x-routed-by", "client"),
        ("x-trace", "client"),
    ];
    send(&mesh, get("http://api/v1/users?page=2", &headers))
        .await
        .unwrap();
    send(&mesh, get("http://api/v2/users?page=3", &[]))
        .await
        .unwrap();
    send(&mesh, get("/service/foo/v1/api?x", &[("host", "api")]))
        .await
        .unwrap();

    let seen = backend.seen();
    assert_eq!(seen.len(), 3);
    let (h1, h2, regex) = (&seen[0], &seen[1], &seen[2]);
    assert_eq!(h1.path, "/internal/users?page=2");
    assert_eq!(h1.authority, "backend.internal:8080");
    assert!(h1.headers.get("x-secret").is_none());
    assert_eq!(values(&h1.headers, "x-routed-by"), ["meshlib"]);
    assert_eq!(values(&h1.headers, "x-trace"), ["client", "mesh"]);
    assert_eq!(h2.path, "/internal/users?page=3");
    assert_eq!(h2.authority, "backend.internal:8080");
    assert_eq!(regex.path, "/v1/api/instance/foo?x");
    assert_eq!(regex.authority, "api");
}

#[tokio::test]
async fn cluster_header_sends_each_request_to_the_cluster_it_names() {
    let (one, two) = (Recorder::start("one").await, Recorder::start("two").await);
    let config = MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts:
  - name: api
    domains: ["*"]
    routes: [{{ match: {{ prefix: / }}, route: {{ cluster_header: x-cluster }} }}]
clusters:
  - {{ name: one, endpoints: [{{ address: "{}" }}] }}
  - {{ name: two, endpoints: [{{ address: "{}" }}] }}
"#,
        one.address, two.address
    ))
    .unwrap();
    let mesh = MeshClient::new(config).unwrap();
    for name in ["one", "two", "one"] {
        let got = send(&mesh, get("http://api/", &[("x-cluster", name)])).await;
        assert_eq!(got.unwrap(), name);
    }
    assert_eq!((one.seen().len(), two.seen().len()), (2, 1));
    let missing = send(&mesh, get("http://api/", &[])).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::UnknownCluster);
    let unknown = send(&mesh, get("http://api/", &[("x-cluster", "three")]))
        .await
        .unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::UnknownCluster);
}

fn mirrored_config(primary: SocketAddr, shadow: SocketAddr) -> MeshConfig {
    MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts:
  - name: orders
    domains: ["orders", "orders:9080"]
    routes:
      - name: never-mirrored
        match: {{ prefix: /quiet }}
        route: {{ cluster: primary, request_mirror_policies: [{{ cluster: shadow, runtime_fraction: {{ numerator: 0 }} }}] }}
      - name: mirrored
        match: {{ prefix: /api/ }}
        route: {{ cluster: primary, prefix_rewrite: /, request_mirror_policies: [{{ cluster: shadow }}] }}
        request_headers_to_add: [{{ name: x-routed, value: "yes" }}]
clusters:
  - {{ name: primary, endpoints: [{{ address: "{primary}" }}] }}
  - {{ name: shadow, endpoints: [{{ address: "{shadow}" }}] }}
"#
    ))
    .unwrap()
}

/// A request body streamed in `frames` frames of `size` bytes.
fn streamed(frames: usize, size: usize) -> meshlib::BoxBody {
    let chunk = Bytes::from(vec![b'x'; size]);
    let frames = (0..frames).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
    meshlib::body::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

#[tokio::test]
async fn mirrored_copies_reach_the_shadow_cluster_with_their_body() {
    let (primary, shadow) = (
        Recorder::start("primary").await,
        Recorder::start("shadow").await,
    );
    let mesh = MeshClient::new(mirrored_config(primary.address, shadow.address)).unwrap();

    let request = Request::post("http://orders:9080/api/orders?id=7")
        .body(Full::new(Bytes::from("one order")))
        .unwrap();
    assert_eq!(send(&mesh, request).await.unwrap(), "primary");
    let request = Request::post("http://orders/api/batch")
        .body(streamed(8, 1000))
        .unwrap();
    assert_eq!(send(&mesh, request).await.unwrap(), "primary");

    let copies = shadow.wait_for(2).await;
    assert_eq!(copies.len(), 2, "{copies:?}");
    let by_path = |path: &str| copies.iter().find(|s| s.path == path).cloned().unwrap();
    let single = by_path("/orders?id=7");
    assert_eq!(single.authority, "orders-shadow:9080");
    assert_eq!(single.body.as_deref().unwrap(), b"one order");
    assert_eq!(values(&single.headers, "x-routed"), ["yes"]);
    let batch = by_path("/batch");
    assert_eq!(batch.authority, "orders-shadow");
    assert_eq!(batch.body.as_ref().unwrap().len(), 8000);
    // The originals were untouched by the copying.
    let originals = primary.seen();
    assert_eq!(originals[0].authority, "orders:9080");
    assert_eq!(originals[0].body.as_deref().unwrap(), b"one order");
    assert_eq!(originals[1].body.as_ref().unwrap().len(), 8000);

    // A zero fraction copies nothing.
    for _ in 0..5 {
        send(&mesh, get("http://orders/quiet", &[])).await.unwrap();
    }
    send(&mesh, get("http://orders/api/marker", &[]))
        .await
        .unwrap();
    let copies = shadow.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(copies.last().unwrap().path, "/marker");
    assert_eq!(shadow.seen().len(), 3, "only the marker was copied");
}

#[tokio::test]
async fn a_dead_mirror_cluster_leaves_the_primary_alone() {
    let primary = Recorder::start("primary").await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mesh = MeshClient::new(mirrored_config(primary.address, dead)).unwrap();
    for i in 0..20 {
        let request = Request::post(format!("http://orders/api/{i}"))
            .body(Full::new(Bytes::from("body")))
            .unwrap();
        let started = Instant::now();
        assert_eq!(send(&mesh, request).await.unwrap(), "primary");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    let seen = primary.seen();
    assert_eq!(seen.len(), 20);
    assert!(
        seen.iter()
            .all(|s| s.body.as_deref().ok() == Some(&b"body"[..]))
    );
}

#[tokio::test]
async fn a_stalled_mirror_cluster_neither_delays_nor_starves_the_primary() {
    let stall = Duration::from_secs(3);
    let primary = Recorder::start("primary").await;
    let shadow = Recorder::stalling("shadow", stall).await;
    let mesh = MeshClient::new(mirrored_config(primary.address, shadow.address)).unwrap();

    // Small requests: answered long before the mirror wakes up.
    for i in 0..5 {
        let started = Instant::now();
        let request = Request::post(format!("http://orders/api/{i}"))
            .body(Full::new(Bytes::from("small")))
            .unwrap();
        assert_eq!(send(&mesh, request).await.unwrap(), "primary");
        assert!(started.elapsed() < stall / 2, "{:?}", started.elapsed());
    }

    // A body far larger than the socket buffers: the stalled copy falls
    // behind and is cut off while the original streams on.
    let (frames, size) = (256, 64 * 1024);
    let started = Instant::now();
    let request = Request::post("http://orders/api/upload")
        .body(streamed(frames, size))
        .unwrap();
    assert_eq!(send(&mesh, request).await.unwrap(), "primary");
    assert!(started.elapsed() < stall / 2, "{:?}", started.elapsed());
    let upload = primary
        .seen()
        .into_iter()
        .find(|s| s.path == "/upload")
        .unwrap();
    assert_eq!(upload.body.unwrap().len(), frames * size);

    // Once awake, the mirror gets the small copies whole, and never a
    // truncated upload passed off as complete.
    let copies = shadow.wait_for(6).await;
    assert_eq!(copies.len(), 6, "{copies:?}");
    assert!(copies.iter().any(|copy| copy.path == "/upload"));
    for copy in &copies {
        match copy.path.as_str() {
            "/upload" => assert!(copy.body.is_err(), "the cut-off copy must fail"),
            _ => assert_eq!(copy.body.as_deref().unwrap(), b"small"),
        }
    }
}

#[tokio::test]
async fn grpc_timeout_is_honoured_and_capped_by_the_route() {
    let backend = Recorder::start("backend").await;
    let config = MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts:
  - name: greeter
    domains: ["greeter"]
    routes:
      - match: {{ prefix: / }}
        route: {{ cluster: greeter, timeout: 10s, max_stream_duration: {{ grpc_timeout_header_max: 1s }} }}
clusters:
  - {{ name: greeter, endpoints: [{{ address: "{}" }}] }}
"#,
        backend.address
    ))
    .unwrap();
    let mesh = MeshClient::new(config).unwrap();
    let call = |grpc_timeout: &'static str, delay_ms: &'static str| {
        let mesh = mesh.clone();
        async move {
            let request = get(
                "http://greeter/helloworld.Greeter/SayHello",
                &[("grpc-timeout", grpc_timeout), ("x-delay-ms", delay_ms)],
            );
            let started = Instant::now();
            (send(&mesh, request).await, started.elapsed())
        }
    };

    // The client asks for 10 s; the route caps it at 1 s.
    let (result, took) = call("10S", "5000").await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Timeout);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // A shorter deadline than the cap is kept.
    let (result, took) = call("100m", "5000").await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Timeout);
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(900),
        "{took:?}"
    );
    // In time: answered.
    let (result, _) = call("5S", "0").await;
    assert_eq!(result.unwrap(), "backend");
}
