//! Requests routed by path, header and weight to real loopback backends.

mod support;

use meshlib::MeshClient;
use meshlib::config::MeshConfig;
use support::{Backend, send, tally};

fn reviews_config(v1: &Backend, v2: &Backend, v1_weight: u32, v2_weight: u32) -> MeshConfig {
    MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts:
  - name: reviews
    domains: ["reviews", "reviews.default.svc:9080"]
    routes:
      - name: admin
        match: {{ prefix: /admin }}
        route: {{ cluster: reviews-v1 }}
      - name: canary
        match: {{ prefix: /, headers: [{{ name: x-canary, exact: "true" }}] }}
        route: {{ cluster: reviews-v2 }}
      - name: split
        match: {{ prefix: / }}
        route:
          weighted_clusters:
            clusters: [{{ name: reviews-v1, weight: {v1_weight} }}, {{ name: reviews-v2, weight: {v2_weight} }}]
clusters:
  - name: reviews-v1
    endpoints: [{{ address: "{}" }}]
  - name: reviews-v2
    protocol: http2
    endpoints: [{{ address: "{}" }}]
"#,
        v1.address, v2.address
    ))
    .unwrap()
}

#[tokio::test]
async fn routes_by_path_and_by_header() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mesh = MeshClient::new(reviews_config(&v1, &v2, 0, 100)).unwrap();

    assert_eq!(
        send(&mesh, "http://reviews/admin/users", &[])
            .await
            .unwrap(),
        "v1"
    );
    assert_eq!(
        send(&mesh, "http://reviews/admin", &[("x-canary", "true")])
            .await
            .unwrap(),
        "v1",
        "the first matching route wins"
    );
    assert_eq!(
        send(&mesh, "http://reviews/x", &[("x-canary", "true")])
            .await
            .unwrap(),
        "v2"
    );
    let counts = tally(&mesh, "http://reviews/x", &[("x-canary", "false")], 50).await;
    assert_eq!(
        counts.get("v2"),
        Some(&50),
        "zero-weight v1 gets nothing: {counts:?}"
    );
}

#[tokio::test]
async fn weighted_clusters_split_within_tolerance() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mesh = MeshClient::new(reviews_config(&v1, &v2, 80, 20)).unwrap();
    let n = 2000;
    let counts = tally(&mesh, "http://reviews/reviews/1", &[], n).await;
    let v1_share = counts["v1"] as f64 * 100.0 / n as f64;
    // 2,000 draws at p = 0.8: σ ≈ 0.9 points; ±5 points is over 5σ.
    assert!(
        (75.0..=85.0).contains(&v1_share),
        "v1 took {v1_share}%: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), n);
}

#[tokio::test]
async fn round_robin_spreads_a_cluster_over_its_endpoints_by_weight() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let config = MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts: [{{ name: svc, domains: ["*"], routes: [{{ match: {{ prefix: / }}, route: {{ cluster: svc }} }}] }}]
clusters:
  - name: svc
    endpoints:
      - {{ address: "{}", weight: 2 }}
      - {{ address: "{}" }}
      - {{ address: "{}", health: draining }}
"#,
        backends[0].address, backends[1].address, backends[2].address
    ))
    .unwrap();
    let mesh = MeshClient::new(config).unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(send(&mesh, "http://svc/", &[]).await.unwrap());
    }
    assert_eq!(
        seen,
        ["a", "b", "a", "a", "b", "a"],
        "smooth 2:1, draining c skipped"
    );
    assert_eq!(backends[2].requests(), 0);
}

#[tokio::test]
async fn the_logical_authority_reaches_the_backend_over_http1_and_http2() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mesh = MeshClient::new(reviews_config(&v1, &v2, 100, 0)).unwrap();
    for (headers, expected_backend) in [(&[][..], "v1"), (&[("x-canary", "true")][..], "v2")] {
        let request = http::Request::get("http://reviews.default.svc:9080/r")
            .header(
                "x-canary",
                if headers.is_empty() { "false" } else { "true" },
            )
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = tower::ServiceExt::oneshot(mesh.clone(), request)
            .await
            .unwrap();
        assert_eq!(response.headers()["x-backend"], expected_backend);
        assert_eq!(
            response.headers()["x-seen-authority"],
            "reviews.default.svc:9080"
        );
        let version = response.version();
        let expected_version = if expected_backend == "v2" {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(version, expected_version);
    }
}

#[tokio::test]
async fn a_host_header_routes_an_origin_form_request() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mesh = MeshClient::new(reviews_config(&v1, &v2, 100, 0)).unwrap();
    assert_eq!(
        send(&mesh, "/reviews/1", &[("host", "reviews")])
            .await
            .unwrap(),
        "v1"
    );
}

#[tokio::test]
async fn connections_are_pooled_per_endpoint() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mesh = MeshClient::new(reviews_config(&v1, &v2, 100, 0)).unwrap();
    for _ in 0..20 {
        send(&mesh, "http://reviews/", &[]).await.unwrap();
        send(&mesh, "http://reviews/", &[("x-canary", "true")])
            .await
            .unwrap();
    }
    assert_eq!(
        v1.connections(),
        1,
        "sequential HTTP/1.1 requests reuse one connection"
    );
    assert_eq!(
        v2.connections(),
        1,
        "HTTP/2 multiplexes over one connection"
    );
}
