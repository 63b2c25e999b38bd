//! A tonic-generated client, unchanged, routed through meshlib.

mod support;

use std::net::SocketAddr;

use meshlib::MeshClient;
use meshlib::config::MeshConfig;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Status;
use tonic_health::pb::health_client::HealthClient;

/// A tonic gRPC server whose health service reports `status`, so a reply
/// tells which server answered.
async fn health_server(status: ServingStatus) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("", status).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (address, task)
}

#[tokio::test]
async fn a_tonic_client_is_routed_by_grpc_path_and_header() {
    let (serving, a) = health_server(ServingStatus::Serving).await;
    let (not_serving, b) = health_server(ServingStatus::NotServing).await;
    let config = MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts:
  - name: greeter
    domains: [greeter]
    routes:
      - name: canary
        match: {{ prefix: /grpc.health.v1.Health/, headers: [{{ name: x-canary, present: true }}] }}
        route: {{ cluster: canary }}
      - name: check
        match: {{ path: /grpc.health.v1.Health/Check }}
        route: {{ cluster: stable }}
clusters:
  # No `protocol`: gRPC calls still go over HTTP/2.
  - {{ name: stable, endpoints: [{{ address: "{serving}" }}] }}
  - {{ name: canary, protocol: http2, endpoints: [{{ address: "{not_serving}" }}] }}
"#
    ))
    .unwrap();
    let mesh = MeshClient::new(config).unwrap();
    let mut health = HealthClient::new(mesh.channel("greeter").unwrap());

    for _ in 0..3 {
        let reply = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(reply.into_inner().status(), Status::Serving);
    }
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request
        .metadata_mut()
        .insert("x-canary", "1".parse().unwrap());
    assert_eq!(
        health.check(request).await.unwrap().into_inner().status(),
        Status::NotServing
    );

    // No route for Watch without the header: gRPC's status, with meshlib's reason.
    let status = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status.message(),
        "no route: no route in virtual host \"greeter\" matches POST \"/grpc.health.v1.Health/Watch\""
    );
    a.abort();
    b.abort();
}

#[tokio::test]
async fn an_unknown_service_fails_with_unavailable() {
    let mesh = MeshClient::new(MeshConfig::default()).unwrap();
    let mut health = HealthClient::new(mesh.channel("nowhere:50051").unwrap());
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status
            .message()
            .contains("no virtual host for authority \"nowhere:50051\""),
        "{}",
        status.message()
    );
}
