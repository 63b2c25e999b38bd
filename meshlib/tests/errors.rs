//! Each failure has a kind, a message naming what was involved, and the
//! status Envoy and gRPC use for it.

mod support;

use std::time::Duration;

use meshlib::config::MeshConfig;
use meshlib::{ErrorKind, MeshClient};
use support::{Backend, send};

fn mesh(cluster_yaml: &str) -> MeshClient {
    MeshClient::new(
        MeshConfig::from_yaml(&format!(
            r#"
virtual_hosts:
  - name: api
    domains: [api]
    routes:
      - name: slow
        match: {{ prefix: /slow }}
        route: {{ cluster: backend, timeout: 1s }}
      - name: users
        match: {{ prefix: /users }}
        route: {{ cluster: backend }}
clusters: [{cluster_yaml}]
"#
        ))
        .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn no_route_names_the_authority_or_the_path() {
    let mesh = mesh("{ name: backend }");
    let err = send(&mesh, "http://elsewhere/users", &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoRoute);
    assert_eq!(err.http_status(), http::StatusCode::NOT_FOUND);
    assert_eq!(
        err.to_string(),
        "no route: no virtual host for authority \"elsewhere\""
    );
    let err = send(&mesh, "http://api/orders", &[]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no route: no route in virtual host \"api\" matches GET \"/orders\""
    );
}

#[tokio::test]
async fn a_cluster_with_no_healthy_endpoint_fails_fast_with_503() {
    let backend = Backend::start("b").await;
    let mesh = mesh(&format!(
        "{{ name: backend, endpoints: [{{ address: '{}', health: unhealthy }}] }}",
        backend.address
    ));
    let err = send(&mesh, "http://api/users", &[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoEndpoints);
    assert_eq!(err.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err.grpc_code(), 14);
    assert_eq!(
        err.to_string(),
        "no healthy endpoint: cluster \"backend\" has no endpoint that may take traffic (1 configured)"
    );
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn a_refused_connection_names_the_cluster_and_address() {
    // A port that was free a moment ago, now closed.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mesh = mesh(&format!(
        "{{ name: backend, endpoints: [{{ address: '{address}' }}] }}"
    ));
    let err = send(&mesh, "http://api/users", &[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(err.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "connect failed: cluster \"backend\" endpoint {address}: "
        )),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_fails_a_slow_request_with_504() {
    let backend = Backend::start("b").await;
    let mesh = mesh(&format!(
        "{{ name: backend, endpoints: [{{ address: '{}' }}] }}",
        backend.address
    ));
    let err = send(&mesh, "http://api/slow", &[("x-delay-ms", "5000")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.http_status(), http::StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(err.grpc_code(), 4);
    assert_eq!(
        err.to_string(),
        "timeout: route \"slow\" of virtual host \"api\" timed out after 1s waiting for cluster \"backend\""
    );
    // A route without a timeout waits as long as the backend takes.
    let start = tokio::time::Instant::now();
    assert_eq!(
        send(&mesh, "http://api/users", &[("x-delay-ms", "5000")])
            .await
            .unwrap(),
        "b"
    );
    assert!(start.elapsed() >= Duration::from_secs(5));
}

#[tokio::test]
async fn a_connection_dropped_mid_request_is_an_upstream_error() {
    // A backend that accepts, reads the request, and hangs up without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 1024];
        let _ = stream.read(&mut buffer).await;
    });
    let mesh = mesh(&format!(
        "{{ name: backend, endpoints: [{{ address: '{address}' }}] }}"
    ));
    let err = send(&mesh, "http://api/users", &[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert_eq!(err.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        err.to_string().starts_with(&format!(
            "upstream error: cluster \"backend\" endpoint {address}: "
        )),
        "{err}"
    );
    server.await.unwrap();
}

#[test]
fn a_client_built_outside_a_runtime_says_what_it_needs() {
    let error = MeshClient::new(MeshConfig::default()).unwrap_err();
    assert!(error.to_string().contains("on a Tokio runtime"), "{error}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mesh = MeshClient::builder()
        .executor(runtime.handle().clone())
        .build()
        .unwrap();
    assert_eq!(mesh.version(), 1);
}

#[tokio::test]
async fn watching_a_file_every_zero_seconds_is_refused() {
    let dir = std::env::temp_dir().join(format!("meshlib-watch-zero-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mesh.yaml");
    std::fs::write(&path, "clusters: [{ name: a }]\n").unwrap();
    let error = MeshClient::builder()
        .file(&path)
        .watch(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("interval must be more than zero"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
