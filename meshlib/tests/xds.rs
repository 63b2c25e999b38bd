//! meshlib configured from an xDS control plane over loopback gRPC: the
//! snapshot server serves Envoy resources; real backends take the traffic.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshlib::MeshClient;
use meshlib::xds::XdsError;
use meshlib_xds::pb::envoy::config::cluster::v3::{Cluster, cluster};
use meshlib_xds::pb::envoy::config::core::v3::HealthStatus;
use meshlib_xds::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use meshlib_xds::pb::envoy::config::listener::v3::{ApiListener, Listener};
use meshlib_xds::pb::envoy::config::route::v3 as route;
use meshlib_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager,
};
use meshlib_xds::server::build::{
    ads, aggregate_cluster, any, api_listener, cluster_load_assignment, eds_cluster, lb_endpoint,
    logical_dns_cluster, prefix_route, route_configuration, virtual_host,
};
use meshlib_xds::server::{Snapshot, SnapshotServer};
use meshlib_xds::{Bootstrap, XdsClient, XdsServer};
use prost::Name;
use support::xds::{reviews_snapshot as snapshot, xds_client};
use support::{Backend, Traffic, send, tally};

/// Waits, at most 10 s, until `done` holds.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let wait = async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

async fn routes_by_weight_and_header_then_follows_updates(delta: bool) {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let server = SnapshotServer::new();
    server.set("test-node", snapshot("1", &v1, &v2, 80, 20));
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), delta);
    let mesh = MeshClient::from_xds(&xds, "xds:///reviews").await.unwrap();

    let counts = tally(&mesh, "http://reviews/r", &[], 1000).await;
    let v1_share = counts.get("v1").copied().unwrap_or(0) as f64 / 10.0;
    assert!(
        (75.0..=85.0).contains(&v1_share),
        "v1 took {v1_share}%: {counts:?}"
    );
    let canary = tally(&mesh, "http://reviews/r", &[("x-canary", "true")], 50).await;
    assert_eq!(canary.get("v2"), Some(&50));

    let version = mesh.version();
    server.set("test-node", snapshot("2", &v1, &v2, 0, 100));
    until("the new weights apply", async || mesh.version() > version).await;
    let counts = tally(&mesh, "http://reviews/r", &[], 100).await;
    assert_eq!(counts.get("v2"), Some(&100), "{counts:?}");
    assert!(server.nacks().is_empty(), "{:?}", server.nacks());
}

#[tokio::test]
async fn sotw_routes_by_weight_and_header_then_follows_updates() {
    routes_by_weight_and_header_then_follows_updates(false).await;
}

#[tokio::test]
async fn delta_routes_by_weight_and_header_then_follows_updates() {
    routes_by_weight_and_header_then_follows_updates(true).await;
}

async fn an_unsupported_cluster_is_nacked_and_traffic_keeps_the_old_config(delta: bool) {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let server = SnapshotServer::new();
    server.set("test-node", snapshot("1", &v1, &v2, 100, 0));
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), delta);
    let mesh = MeshClient::from_xds(&xds, "reviews").await.unwrap();
    let version = mesh.version();

    // Version 2 shifts traffic, but its v1 cluster asks for a policy meshlib
    // does not have.
    let mut provided = eds_cluster("reviews-v1");
    provided.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
    server.set("test-node", snapshot("2", &v1, &v2, 0, 100).with(provided));
    until("the cluster is NACKed", async || !server.nacks().is_empty()).await;
    let nack = &server.nacks()[0];
    assert_eq!(nack.type_url, Cluster::type_url());
    let error = nack.error.as_deref().unwrap();
    assert!(
        error.contains("resource \"reviews-v1\": lb_policy CLUSTER_PROVIDED: not supported"),
        "{error}"
    );

    // The routes of version 2 are valid and apply; reviews-v1 keeps its last
    // good cluster, so nothing fails.
    until("the valid routes apply", async || mesh.version() > version).await;
    let counts = tally(&mesh, "http://reviews/r", &[], 100).await;
    assert_eq!(counts.get("v2"), Some(&100), "{counts:?}");
    let dump = xds.dump().await.unwrap();
    let v1_cluster = dump
        .iter()
        .find(|e| e.name == "reviews-v1" && e.type_url == Cluster::type_url())
        .unwrap();
    assert!(
        v1_cluster
            .error
            .as_deref()
            .unwrap()
            .contains("CLUSTER_PROVIDED")
    );
    assert!(v1_cluster.raw.is_some(), "the last good version is kept");
}

#[tokio::test]
async fn sotw_an_unsupported_cluster_is_nacked_and_traffic_keeps_the_old_config() {
    an_unsupported_cluster_is_nacked_and_traffic_keeps_the_old_config(false).await;
}

#[tokio::test]
async fn delta_an_unsupported_cluster_is_nacked_and_traffic_keeps_the_old_config() {
    an_unsupported_cluster_is_nacked_and_traffic_keeps_the_old_config(true).await;
}

/// A client of `primary` and then `fallback` (gRFC A71).
fn xds_client_with_fallback(primary: u16, fallback: SocketAddr) -> XdsClient {
    let mut bootstrap = Bootstrap::new(&format!("127.0.0.1:{primary}"), "test-node").unwrap();
    bootstrap
        .servers
        .push(XdsServer::insecure(&fallback.to_string()).unwrap());
    XdsClient::builder(bootstrap)
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_control_plane_serves_until_the_primary_answers_under_load() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    // The primary is down when the client starts.
    let primary_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fallback = SnapshotServer::new();
    fallback.set("test-node", snapshot("1", &v1, &v2, 0, 100));
    let fallback_plane = fallback.start_standalone(0, None).unwrap();
    let xds = xds_client_with_fallback(primary_port, fallback_plane.address());
    let mesh = MeshClient::from_xds(&xds, "xds:///reviews").await.unwrap();
    let load = Traffic::start(&mesh, "http://reviews/");
    load.flows("traffic flows on the fallback's config", 50)
        .await;
    assert_eq!(v1.requests(), 0, "the fallback sends everything to v2");

    let primary = SnapshotServer::new();
    primary.set("test-node", snapshot("1", &v1, &v2, 100, 0));
    let started = std::time::Instant::now();
    let _primary_plane = primary.start_standalone(primary_port, None).unwrap();
    until("traffic moves to the primary's v1", async || {
        v1.requests() > 0
    })
    .await;
    let switched = started.elapsed();
    until("the fallback's stream closes", async || {
        fallback.streams_open() == 0
    })
    .await;
    let on_v2 = v2.requests();
    load.flows("traffic flows on the primary's config", 200)
        .await;
    assert_eq!(
        v2.requests(),
        on_v2,
        "nothing reaches v2 once the primary's config is in force"
    );
    let report = load.stop().await;
    println!(
        "fallback: {} requests, {} failed; on the primary's config {switched:?} after it started",
        report.sent, report.failed
    );
    assert_eq!(report.failed, 0, "failed requests");
    assert!(primary.nacks().is_empty() && fallback.nacks().is_empty());
}

#[tokio::test]
async fn an_authority_target_resolves_its_listener_from_the_authoritys_control_plane() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    // The listener comes from the authority's own control plane; the
    // old-style names it leads to (routes, clusters) from the top-level one.
    let listener = "xdstp://mesh.example/envoy.config.listener.v3.Listener/reviews";
    let everything = snapshot("1", &v1, &v2, 100, 0);
    let own = SnapshotServer::new();
    own.set(
        "test-node",
        Snapshot::new("1").with(api_listener(listener, "reviews-routes")),
    );
    let top = SnapshotServer::new();
    top.set("test-node", everything);
    let (own_plane, top_plane) = (
        own.start_standalone(0, None).unwrap(),
        top.start_standalone(0, None).unwrap(),
    );
    let mut bootstrap = Bootstrap::new(&top_plane.address().to_string(), "test-node").unwrap();
    bootstrap.authorities.insert(
        "mesh.example".to_owned(),
        meshlib_xds::Authority {
            servers: vec![XdsServer::insecure(&own_plane.address().to_string()).unwrap()],
            client_listener_resource_name_template: String::new(),
        },
    );
    let xds = XdsClient::new(bootstrap).unwrap();
    let mesh = MeshClient::from_xds(&xds, "xds://mesh.example/reviews")
        .await
        .unwrap();
    let counts = tally(&mesh, "http://reviews/r", &[], 20).await;
    assert_eq!(counts.get("v1"), Some(&20), "{counts:?}");
    assert_eq!(
        own.subscribed("test-node", &Listener::type_url()),
        [listener]
    );
    match MeshClient::from_xds(&xds, "xds://elsewhere.example/reviews").await {
        Err(XdsError::Target(reason)) => {
            assert!(
                reason.contains("no authority \"elsewhere.example\""),
                "{reason}"
            )
        }
        other => panic!("expected a target error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_listener_is_unavailable_with_the_reason() {
    let server = SnapshotServer::new();
    server.set_default(Snapshot::new("1").with(api_listener("other", "r")));
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), false);
    match MeshClient::from_xds(&xds, "xds:///reviews").await {
        Err(XdsError::Unavailable { reason, client }) => {
            assert_eq!(reason, "listener \"reviews\" does not exist");
            let err = send(&client, "http://reviews/", &[]).await.unwrap_err();
            assert_eq!(err.kind(), meshlib::ErrorKind::NoRoute);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        MeshClient::from_xds(&xds, "dns:///reviews").await,
        Err(XdsError::Target(_))
    ));
}

#[tokio::test]
async fn a_listener_without_a_router_is_nacked_with_grpcs_reason() {
    let server = SnapshotServer::new();
    let mut bad = api_listener("reviews", "r");
    let manager = HttpConnectionManager {
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "r".into(),
        })),
        ..Default::default()
    };
    bad.api_listener = Some(ApiListener {
        api_listener: Some(any(&manager)),
    });
    server.set_default(Snapshot::new("1").with(bad));
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), false);
    match MeshClient::from_xds(&xds, "reviews").await {
        Err(XdsError::Unavailable { reason, .. }) => assert_eq!(
            reason,
            "listener \"reviews\": http_filters: expected at least one HTTP filter (the router)"
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Watchers hear first; the NACK follows.
    until("the NACK arrives", async || !server.nacks().is_empty()).await;
    let nack = &server.nacks()[0];
    assert_eq!(
        nack.error.as_deref(),
        Some(
            "xDS response validation errors: [resource \"reviews\": http_filters: expected at least one HTTP filter (the router)]"
        )
    );
}

/// `shop`: one route to cluster `shop` with `policy`, hashing on `x-user`,
/// whose EDS assignment is `localities`.
fn shop_snapshot(
    version: &str,
    cluster_policy: cluster::LbPolicy,
    localities: Vec<LocalityLbEndpoints>,
) -> Snapshot {
    let mut route = prefix_route("all", "/", &[("shop", 1)]);
    if let Some(route::route::Action::Route(action)) = &mut route.action {
        action.hash_policy.push(route::route_action::HashPolicy {
            policy_specifier: Some(route::route_action::hash_policy::PolicySpecifier::Header(
                route::route_action::hash_policy::Header {
                    header_name: "x-user".into(),
                    regex_rewrite: None,
                },
            )),
            terminal: false,
        });
    }
    let mut shop = eds_cluster("shop");
    shop.lb_policy = cluster_policy as i32;
    Snapshot::new(version)
        .with(api_listener("shop", "shop-routes"))
        .with(route_configuration(
            "shop-routes",
            vec![virtual_host("shop", &["shop"], vec![route])],
        ))
        .with(shop)
        .with(ClusterLoadAssignment {
            cluster_name: "shop".into(),
            endpoints: localities,
            ..Default::default()
        })
}

fn locality(priority: u32, backends: &[(&Backend, HealthStatus)]) -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        locality: Some(Default::default()),
        priority,
        lb_endpoints: backends
            .iter()
            .map(|(backend, health)| {
                let mut endpoint = lb_endpoint(backend.address);
                endpoint.health_status = *health as i32;
                endpoint
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn eds_priorities_fail_over_when_health_falls_and_return_when_it_recovers() {
    let (p0a, p0b, p1) = (
        Backend::start("p0a").await,
        Backend::start("p0b").await,
        Backend::start("p1").await,
    );
    let healthy = HealthStatus::Healthy;
    let snapshot = |version: &str, p0_health: HealthStatus| {
        shop_snapshot(
            version,
            cluster::LbPolicy::RoundRobin,
            vec![
                locality(0, &[(&p0a, p0_health), (&p0b, p0_health)]),
                locality(1, &[(&p1, healthy)]),
            ],
        )
    };
    let server = SnapshotServer::new();
    server.set("test-node", snapshot("1", healthy));
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), false);
    let mesh = MeshClient::from_xds(&xds, "xds:///shop").await.unwrap();
    let counts = tally(&mesh, "http://shop/", &[], 200).await;
    assert_eq!(
        counts.get("p1"),
        None,
        "priority 1 idles while 0 is healthy: {counts:?}"
    );

    // Priority 0 goes unhealthy: everything fails over to priority 1. Only
    // endpoints changed: they reach the cluster's balancer in place, with no
    // new configuration.
    let version = mesh.version();
    let unhealthy = |mesh: &MeshClient| {
        mesh.endpoints("shop")
            .unwrap_or_default()
            .iter()
            .filter(|e| e.health == meshlib::config::HealthStatus::Unhealthy)
            .count()
    };
    server.set("test-node", snapshot("2", HealthStatus::Unhealthy));
    until("the failover applies", async || unhealthy(&mesh) == 2).await;
    let counts = tally(&mesh, "http://shop/", &[], 200).await;
    assert_eq!(counts.get("p1"), Some(&200), "{counts:?}");

    // Healthy again: traffic returns.
    server.set("test-node", snapshot("3", healthy));
    until("the recovery applies", async || unhealthy(&mesh) == 0).await;
    let counts = tally(&mesh, "http://shop/", &[], 200).await;
    assert_eq!(counts.get("p1"), None, "{counts:?}");
    assert_eq!(mesh.version(), version, "no configuration was rebuilt");
    assert!(server.nacks().is_empty(), "{:?}", server.nacks());
}

#[tokio::test]
async fn ring_hash_from_xds_keeps_each_user_on_one_backend() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let all: Vec<(&Backend, HealthStatus)> = backends
        .iter()
        .map(|b| (b, HealthStatus::Healthy))
        .collect();
    let server = SnapshotServer::new();
    server.set(
        "test-node",
        shop_snapshot("1", cluster::LbPolicy::RingHash, vec![locality(0, &all)]),
    );
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), true);
    let mesh = MeshClient::from_xds(&xds, "xds:///shop").await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let counts = tally(&mesh, "http://shop/", &[("x-user", &user)], 10).await;
        assert_eq!(counts.len(), 1, "{user} was spread: {counts:?}");
        seen.extend(counts.into_keys());
    }
    assert_eq!(
        seen.len(),
        3,
        "30 users should reach all 3 backends: {seen:?}"
    );
    assert!(server.nacks().is_empty(), "{:?}", server.nacks());
}

#[tokio::test]
async fn a_cluster_added_later_on_an_assignment_already_in_use_gets_its_endpoints() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    // reviews-v2 reads reviews-v1's assignment (EDS service name).
    let mut shared = eds_cluster("reviews-v2");
    if let Some(eds) = shared.eds_cluster_config.as_mut() {
        eds.service_name = "reviews-v1".into();
    }
    let server = SnapshotServer::new();
    let routes = |clusters: &[(&str, u32)]| {
        route_configuration(
            "reviews-routes",
            vec![virtual_host(
                "reviews",
                &["reviews"],
                vec![prefix_route("all", "/", clusters)],
            )],
        )
    };
    let base = |version: &str| {
        Snapshot::new(version)
            .with(api_listener("reviews", "reviews-routes"))
            .with(eds_cluster("reviews-v1"))
            .with(shared.clone())
            .with(cluster_load_assignment("reviews-v1", &[v1.address]))
            .with(cluster_load_assignment("reviews-v2", &[v2.address]))
    };
    server.set("test-node", base("1").with(routes(&[("reviews-v1", 1)])));
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), false);
    let mesh = MeshClient::from_xds(&xds, "reviews").await.unwrap();
    assert_eq!(
        tally(&mesh, "http://reviews/", &[], 20).await.get("v1"),
        Some(&20)
    );

    // The route moves to reviews-v2, whose assignment is the one in use.
    server.set("test-node", base("2").with(routes(&[("reviews-v2", 1)])));
    until("reviews-v2 is in force", async || {
        mesh.endpoints("reviews-v2").is_some_and(|e| !e.is_empty())
    })
    .await;
    assert_eq!(
        tally(&mesh, "http://reviews/", &[], 20).await.get("v1"),
        Some(&20)
    );
    assert!(server.nacks().is_empty(), "{:?}", server.nacks());
}

/// The default connector, counting the clusters it connects.
struct CountingConnect(Arc<AtomicUsize>);

impl meshlib::connect::Connect for CountingConnect {
    type Client = meshlib::connect::HttpEndpoint;
    type Cluster = meshlib::connect::HttpCluster;

    fn cluster(&self, cluster: &meshlib::config::Cluster) -> Self::Cluster {
        self.0.fetch_add(1, Ordering::SeqCst);
        meshlib::connect::HttpConnect::new().cluster(cluster)
    }
}

#[tokio::test]
async fn an_xds_client_connects_with_the_builders_connector() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let server = SnapshotServer::new();
    server.set("test-node", snapshot("1", &v1, &v2, 50, 50));
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), false);
    let clusters = Arc::new(AtomicUsize::new(0));
    let mesh = MeshClient::builder()
        .connect(CountingConnect(clusters.clone()))
        .xds(&xds, "xds:///reviews")
        .await
        .unwrap();
    assert_eq!(
        clusters.load(Ordering::SeqCst),
        2,
        "one connector per cluster"
    );
    let request = http::Request::get("http://reviews/r")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tower::ServiceExt::oneshot(mesh, request).await.unwrap();
    assert!(response.status().is_success());
}

#[tokio::test]
async fn a_strict_dns_cluster_from_xds_resolves_its_hosts_and_takes_traffic() {
    // `localhost` is answered by the resolver itself (RFC 6761): no name
    // server is needed, so the system resolver the xDS path uses will do.
    let backend = Backend::start("dns").await;
    let ext = Cluster {
        name: "ext".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        )),
        dns_lookup_family: cluster::DnsLookupFamily::V4Only as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: "ext".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![named_endpoint("localhost", backend.address.port())],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let server = SnapshotServer::new();
    server.set(
        "test-node",
        Snapshot::new("1")
            .with(api_listener("ext", "ext-routes"))
            .with(route_configuration(
                "ext-routes",
                vec![virtual_host(
                    "ext",
                    &["ext"],
                    vec![prefix_route("all", "/", &[("ext", 1)])],
                )],
            ))
            .with(ext),
    );
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), false);
    let mesh = MeshClient::from_xds(&xds, "ext").await.unwrap();
    until("localhost resolves", async || {
        mesh.endpoints("ext").is_some_and(|e| !e.is_empty())
    })
    .await;
    assert_eq!(
        mesh.endpoints("ext").unwrap()[0].address,
        backend.address,
        "localhost at the backend's port"
    );
    assert_eq!(
        tally(&mesh, "http://ext/", &[], 20).await.get("dns"),
        Some(&20)
    );
    assert!(server.nacks().is_empty(), "{:?}", server.nacks());
}

#[tokio::test]
async fn an_aggregate_cluster_fails_over_from_eds_to_logical_dns_and_back() {
    let (eds, dns) = (Backend::start("eds").await, Backend::start("dns").await);
    let routes = route_configuration(
        "svc-routes",
        vec![
            virtual_host(
                "svc",
                &["svc"],
                vec![prefix_route("all", "/", &[("svc", 1)])],
            ),
            virtual_host(
                "loop",
                &["loop"],
                vec![prefix_route("all", "/", &[("loop-a", 1)])],
            ),
        ],
    );
    // Nested, with `primary` twice: it keeps its first place (gRFC A37).
    let snapshot = |version: &str, primary: &[SocketAddr]| {
        Snapshot::new(version)
            .with(api_listener("svc", "svc-routes"))
            .with(routes.clone())
            .with(aggregate_cluster("svc", &["inner", "primary"]))
            .with(aggregate_cluster("inner", &["primary", "ext"]))
            .with(eds_cluster("primary"))
            .with(cluster_load_assignment("primary", primary))
            .with(logical_dns_cluster("ext", "localhost", dns.address.port()))
            .with(aggregate_cluster("loop-a", &["loop-b"]))
            .with(aggregate_cluster("loop-b", &["loop-a"]))
    };
    let server = SnapshotServer::new();
    server.set("test-node", snapshot("1", &[eds.address]));
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), false);
    let mesh = MeshClient::from_xds(&xds, "svc").await.unwrap();
    let config = mesh.config();
    let leaves = config.cluster("svc").unwrap().discovery.aggregate();
    assert_eq!(leaves, Some(&["primary".to_owned(), "ext".to_owned()][..]));
    assert_eq!(
        tally(&mesh, "http://svc/", &[], 20).await.get("eds"),
        Some(&20)
    );

    // The EDS cluster loses its endpoints: the LOGICAL_DNS one takes over.
    server.set("test-node", snapshot("2", &[]));
    until("primary loses its endpoints", async || {
        mesh.endpoints("primary").is_some_and(|e| e.is_empty())
    })
    .await;
    assert_eq!(
        tally(&mesh, "http://svc/", &[], 20).await.get("dns"),
        Some(&20)
    );
    assert_eq!(mesh.endpoints("ext").unwrap()[0].address, dns.address);

    // And gives the traffic back once they return.
    server.set("test-node", snapshot("3", &[eds.address]));
    until("primary gets its endpoint back", async || {
        mesh.endpoints("primary").is_some_and(|e| !e.is_empty())
    })
    .await;
    assert_eq!(
        tally(&mesh, "http://svc/", &[], 20).await.get("eds"),
        Some(&20)
    );

    // Aggregates that contain each other fail their own requests only.
    let error = send(&mesh, "http://loop/", &[]).await.unwrap_err();
    assert_eq!(error.kind(), meshlib::ErrorKind::NoEndpoints, "{error}");
    assert!(server.nacks().is_empty(), "{:?}", server.nacks());
}

/// An endpoint that names its host, as a DNS cluster's endpoints do.
fn named_endpoint(
    host: &str,
    port: u16,
) -> meshlib_xds::pb::envoy::config::endpoint::v3::LbEndpoint {
    use meshlib_xds::pb::envoy::config::core::v3::{
        Address, SocketAddress, address, socket_address,
    };
    use meshlib_xds::pb::envoy::config::endpoint::v3::{Endpoint, LbEndpoint, lb_endpoint};
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: host.to_owned(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_listeners_local_rate_limit_filter_limits_the_client_and_follows_the_plane() {
    use meshlib_xds::pb::envoy::config::core::v3::RuntimeFractionalPercent;
    use meshlib_xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
    use meshlib_xds::pb::envoy::r#type::v3::{FractionalPercent, TokenBucket};

    let all = || RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: 0,
        }),
        runtime_key: String::new(),
    };
    let limit = LocalRateLimit {
        stat_prefix: "reviews".to_owned(),
        token_bucket: Some(TokenBucket {
            max_tokens: 2,
            tokens_per_fill: None,
            fill_interval: Some(meshlib_xds::pb::google::protobuf::Duration {
                seconds: 60,
                nanos: 0,
            }),
        }),
        filter_enabled: Some(all()),
        filter_enforced: Some(all()),
        ..Default::default()
    };
    let limited = meshlib_xds::server::build::with_http_filter(
        api_listener("reviews", "reviews-routes"),
        "envoy.filters.http.local_ratelimit",
        any(&limit),
    );
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let server = SnapshotServer::new();
    server.set("test-node", snapshot("1", &v1, &v2, 100, 0).with(limited));
    let plane = server.start_standalone(0, None).unwrap();
    let xds = xds_client(plane.address(), false);
    let mesh = MeshClient::from_xds(&xds, "xds:///reviews").await.unwrap();

    assert!(send(&mesh, "http://reviews/", &[]).await.is_ok());
    assert!(send(&mesh, "http://reviews/", &[]).await.is_ok());
    let error = send(&mesh, "http://reviews/", &[]).await.unwrap_err();
    assert_eq!(error.kind(), meshlib::ErrorKind::RateLimited, "{error}");
    assert_eq!(v1.requests(), 2, "the refused request was not sent");
    let stats = mesh.rate_limit_stats().unwrap();
    assert_eq!((stats.ok(), stats.enforced()), (2, 1));

    // The plane drops the filter: the limit goes with it.
    let version = mesh.version();
    server.set("test-node", snapshot("2", &v1, &v2, 100, 0));
    until("the listener without the filter applies", async || {
        mesh.version() > version
    })
    .await;
    assert!(mesh.rate_limit_stats().is_none());
    assert!(send(&mesh, "http://reviews/", &[]).await.is_ok());
    assert!(server.nacks().is_empty(), "{:?}", server.nacks());
}
