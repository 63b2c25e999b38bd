//! The xDS client against the snapshot control plane over loopback gRPC,
//! in both protocol variants.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use meshlib_xds::pb::envoy::config::cluster::v3::Cluster;
use meshlib_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use meshlib_xds::pb::google::protobuf::Any;
use meshlib_xds::server::{ServerTls, Snapshot, SnapshotServer};
use meshlib_xds::{Bootstrap, DELTA_ADS, Presence, Resource, ResourceState, XdsClient, XdsServer};
use support::eventually;

fn client(address: SocketAddr, delta: bool) -> XdsClient {
    let mut bootstrap = Bootstrap::new(&address.to_string(), "test-node").unwrap();
    if delta {
        bootstrap.servers[0] = XdsServer::insecure(&address.to_string())
            .unwrap()
            .with_feature(DELTA_ADS);
    }
    XdsClient::builder(bootstrap)
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap()
}

fn cluster(name: &str, connect_timeout_secs: i64) -> Cluster {
    Cluster {
        name: name.into(),
        connect_timeout: Some(meshlib_xds::pb::google::protobuf::Duration {
            seconds: connect_timeout_secs,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn timeout_of(state: &ResourceState<Cluster>) -> Option<i64> {
    state
        .resource
        .as_ref()
        .and_then(|c| c.connect_timeout.as_ref())
        .map(|d| d.seconds)
}

/// Waits, at most 10 s, for the watch to reach a state that `done` accepts.
async fn until<T: Resource>(
    watch: &mut meshlib_xds::Watch<T>,
    what: &str,
    done: impl Fn(&ResourceState<T>) -> bool,
) -> ResourceState<T> {
    let wait = async {
        let mut state = watch.current();
        while !done(&state) {
            state = watch.changed().await.unwrap();
        }
        state
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn initial_fetch_update_and_removal(delta: bool) {
    let server = SnapshotServer::new();
    server.set_default(
        Snapshot::new("1")
            .with(cluster("a", 1))
            .with(cluster("b", 1)),
    );
    let plane = server.start_standalone(0, None).unwrap();
    let client = client(plane.address(), delta);

    let mut a = client.watch::<Cluster>("a").await.unwrap();
    let mut b = client.watch::<Cluster>("b").await.unwrap();
    let state = until(&mut a, "a arrives", |s| s.presence == Presence::Exists).await;
    assert_eq!(timeout_of(&state), Some(1));
    until(&mut b, "b arrives", |s| s.presence == Presence::Exists).await;

    server.set_default(Snapshot::new("2").with(cluster("a", 7)));
    let state = until(&mut a, "a is updated", |s| timeout_of(s) == Some(7)).await;
    if !delta {
        assert_eq!(state.version, "2");
    }
    let state = until(&mut b, "b is removed", |s| {
        s.presence == Presence::DoesNotExist
    })
    .await;
    assert!(state.resource.is_none());
    assert!(server.nacks().is_empty(), "{:?}", server.nacks());
}

#[tokio::test]
async fn sotw_initial_fetch_update_and_removal() {
    initial_fetch_update_and_removal(false).await;
}

#[tokio::test]
async fn delta_initial_fetch_update_and_removal() {
    initial_fetch_update_and_removal(true).await;
}

async fn invalid_resource_is_nacked_and_the_old_one_stays(delta: bool) {
    let server = SnapshotServer::new();
    server.set_default(
        Snapshot::new("1")
            .with(cluster("a", 1))
            .with(cluster("b", 1)),
    );
    let plane = server.start_standalone(0, None).unwrap();
    let client = client(plane.address(), delta);
    let mut a = client.watch::<Cluster>("a").await.unwrap();
    let mut b = client.watch::<Cluster>("b").await.unwrap();
    until(&mut a, "a arrives", |s| s.presence == Presence::Exists).await;
    until(&mut b, "b arrives", |s| s.presence == Presence::Exists).await;

    // Version 2: a good `a`, and garbage served as `b`.
    let garbage = Any {
        type_url: Cluster::TYPE_URL.into(),
        value: vec![0x0a, 0x01, 0x62, 0xff],
    };
    server.set_default(
        Snapshot::new("2")
            .with(cluster("a", 2))
            .with_any("b", garbage),
    );
    until(&mut a, "the good sibling applies", |s| {
        timeout_of(s) == Some(2)
    })
    .await;

    let nack = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(nack) = server.nacks().into_iter().next() {
                return nack;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the client NACKs");
    let error = nack.error.unwrap();
    // A delta resource is named by its wrapper even when its bytes are not
    // readable; a SotW one only by its bytes.
    let named = if delta {
        "resource \"b\""
    } else {
        "unnamed resource"
    };
    assert!(
        error.starts_with(&format!(
            "xDS response validation errors: [{named}: cannot decode envoy.config.cluster.v3.Cluster"
        )),
        "{error}"
    );
    if delta {
        let heard = b.current().error.unwrap_or_default();
        assert!(
            heard.starts_with("cannot decode"),
            "b's watchers hear why: {heard}"
        );
    }
    if !delta {
        assert_eq!(
            nack.version_info, "1",
            "a NACK names the last accepted version"
        );
    }
    assert_eq!(
        timeout_of(&b.current()),
        Some(1),
        "the last good b stays in force"
    );
}

#[tokio::test]
async fn sotw_invalid_resource_is_nacked_and_the_old_one_stays() {
    invalid_resource_is_nacked_and_the_old_one_stays(false).await;
}

#[tokio::test]
async fn delta_invalid_resource_is_nacked_and_the_old_one_stays() {
    invalid_resource_is_nacked_and_the_old_one_stays(true).await;
}

async fn control_plane_restart_keeps_the_cache_then_resumes(delta: bool) {
    let server = SnapshotServer::new();
    server.set_default(Snapshot::new("1").with(cluster("a", 1)));
    let mut plane = server.start_standalone(0, None).unwrap();
    let port = plane.address().port();
    let client = client(plane.address(), delta);
    let mut a = client.watch::<Cluster>("a").await.unwrap();
    until(&mut a, "a arrives", |s| s.presence == Presence::Exists).await;

    plane.kill();
    let state = until(&mut a, "the stream error is reported", |s| {
        s.error.is_some()
    })
    .await;
    assert_eq!(
        timeout_of(&state),
        Some(1),
        "the cached resource stays in use"
    );
    assert_eq!(state.presence, Presence::Exists);

    // A new control plane on the same port with a new version.
    let restarted = SnapshotServer::new();
    restarted.set_default(Snapshot::new("2").with(cluster("a", 5)));
    let _plane = restarted.start_standalone(port, None).unwrap();
    let state = until(&mut a, "the new version after reconnecting", |s| {
        timeout_of(s) == Some(5)
    })
    .await;
    assert!(state.error.is_none());
    let subscribed = restarted.subscribed("test-node", Cluster::TYPE_URL);
    assert_eq!(subscribed, ["a"], "re-subscribed on the new stream");
}

#[tokio::test]
async fn sotw_control_plane_restart_keeps_the_cache_then_resumes() {
    control_plane_restart_keeps_the_cache_then_resumes(false).await;
}

#[tokio::test]
async fn delta_control_plane_restart_keeps_the_cache_then_resumes() {
    control_plane_restart_keeps_the_cache_then_resumes(true).await;
}

async fn missing_resource_does_not_exist_after_15_seconds(delta: bool) {
    let server = SnapshotServer::new();
    server.set_default(Snapshot::new("1").with(ClusterLoadAssignment {
        cluster_name: "present".into(),
        ..Default::default()
    }));
    let plane = server.start_standalone(0, None).unwrap();
    let client = client(plane.address(), delta);
    let mut present = client
        .watch::<ClusterLoadAssignment>("present")
        .await
        .unwrap();
    until(&mut present, "the present resource", |s| {
        s.presence == Presence::Exists
    })
    .await;
    let mut missing = client
        .watch::<ClusterLoadAssignment>("missing")
        .await
        .unwrap();
    if delta {
        // Delta servers say so at once, by removing the name.
        until(&mut missing, "removal", |s| {
            s.presence == Presence::DoesNotExist
        })
        .await;
        return;
    }
    // Let the subscription reach the server and its answer come back.
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.acks().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(14)).await;
    assert_eq!(
        missing.current().presence,
        Presence::Requested,
        "not before 15 s"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let state = until(&mut missing, "does-not-exist", |s| {
        s.presence == Presence::DoesNotExist
    })
    .await;
    assert!(state.resource.is_none());
    assert_eq!(present.current().presence, Presence::Exists);
}

#[tokio::test]
async fn sotw_missing_resource_does_not_exist_after_15_seconds() {
    missing_resource_does_not_exist_after_15_seconds(false).await;
}

#[tokio::test]
async fn delta_missing_resource_is_removed_by_the_server() {
    missing_resource_does_not_exist_after_15_seconds(true).await;
}

async fn two_watchers_share_one_subscription(delta: bool) {
    let server = SnapshotServer::new();
    server.set_default(
        Snapshot::new("1")
            .with(cluster("a", 1))
            .with(cluster("b", 1)),
    );
    let plane = server.start_standalone(0, None).unwrap();
    let client = client(plane.address(), delta);
    let mut first = client.watch::<Cluster>("a").await.unwrap();
    let mut second = client.watch::<Cluster>("a").await.unwrap();
    let mut b = client.watch::<Cluster>("b").await.unwrap();
    until(&mut first, "a for the first watcher", |s| {
        s.presence == Presence::Exists
    })
    .await;
    until(&mut second, "a for the second watcher", |s| {
        s.presence == Presence::Exists
    })
    .await;
    until(&mut b, "b", |s| s.presence == Presence::Exists).await;
    let subscribed = || server.subscribed("test-node", Cluster::TYPE_URL);
    assert_eq!(subscribed(), ["a", "b"]);

    drop(first);
    server.set_default(
        Snapshot::new("2")
            .with(cluster("a", 3))
            .with(cluster("b", 3)),
    );
    until(
        &mut second,
        "the remaining watcher still gets updates",
        |s| timeout_of(s) == Some(3),
    )
    .await;
    assert_eq!(subscribed(), ["a", "b"]);

    drop(second);
    tokio::time::timeout(Duration::from_secs(10), async {
        while subscribed() != ["b"] {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the last watcher's drop unsubscribes");
}

#[tokio::test]
async fn sotw_two_watchers_share_one_subscription() {
    two_watchers_share_one_subscription(false).await;
}

#[tokio::test]
async fn delta_two_watchers_share_one_subscription() {
    two_watchers_share_one_subscription(true).await;
}

#[tokio::test]
async fn wildcard_watch_sees_every_cluster() {
    for delta in [false, true] {
        let server = SnapshotServer::new();
        server.set_default(
            Snapshot::new("1")
                .with(cluster("x", 1))
                .with(cluster("y", 1)),
        );
        let plane = server.start_standalone(0, None).unwrap();
        let client = client(plane.address(), delta);
        let mut all = client.watch_all::<Cluster>().await.unwrap();
        let names = |v: Vec<(String, std::sync::Arc<Cluster>)>| {
            v.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
        };
        let mut seen = names(all.current());
        while seen != ["x", "y"] {
            seen = names(
                tokio::time::timeout(Duration::from_secs(10), all.changed())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        server.set_default(
            Snapshot::new("2")
                .with(cluster("y", 1))
                .with(cluster("z", 1)),
        );
        while seen != ["y", "z"] {
            seen = names(
                tokio::time::timeout(Duration::from_secs(10), all.changed())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_control_plane_is_reported_to_watchers() {
    let address: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = client(address, false);
    let mut a = client.watch::<Cluster>("a").await.unwrap();
    let state = until(&mut a, "a connection error", |s| s.error.is_some()).await;
    let error = state.error.unwrap();
    assert!(
        error.starts_with(&format!("xDS stream: cannot connect to http://{address}")),
        "{error}"
    );
    assert_eq!(state.presence, Presence::Requested);
}

/// A CA, and certificates it signs.
struct TestCa {
    cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `name` and its key, as PEM.
    fn issue(&self, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[tokio::test]
async fn tls_channel_credentials_connect_with_mutual_tls() {
    let ca = TestCa::new();
    let server = SnapshotServer::new();
    server.set_default(Snapshot::new("1").with(cluster("a", 1)));
    let plane = {
        let (certificate, key) = ca.issue("localhost");
        server
            .start_standalone(
                0,
                Some(ServerTls {
                    certificate_pem: certificate.into_bytes(),
                    private_key_pem: key.into_bytes(),
                    client_ca_pem: Some(ca.cert_pem.clone().into_bytes()),
                }),
            )
            .unwrap()
    };

    let dir = std::env::temp_dir().join(format!("meshlib-xds-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (client_cert, client_key) = ca.issue("client");
    let other_ca = TestCa::new();
    for (file, pem) in [
        ("ca.pem", &ca.cert_pem),
        ("other-ca.pem", &other_ca.cert_pem),
        ("client.pem", &client_cert),
        ("client-key.pem", &client_key),
    ] {
        std::fs::write(dir.join(file), pem).unwrap();
    }
    let bootstrap = |ca_file: &str| {
        Bootstrap::from_json(&format!(
            r#"{{"xds_servers": [{{"server_uri": "localhost:{port}", "channel_creds": [{{"type": "tls", "config": {{
                "ca_certificate_file": "{dir}/{ca_file}", "certificate_file": "{dir}/client.pem", "private_key_file": "{dir}/client-key.pem"}}}}]}}],
               "node": {{"id": "test-node"}}}}"#,
            port = plane.address().port(),
            dir = dir.display(),
        ))
        .unwrap()
    };
    assert!(
        bootstrap("ca.pem").servers[0]
            .uri
            .starts_with("https://localhost:")
    );

    let client = XdsClient::builder(bootstrap("ca.pem"))
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    let mut a = client.watch::<Cluster>("a").await.unwrap();
    let state = until(&mut a, "a over mutual TLS", |s| {
        s.presence == Presence::Exists
    })
    .await;
    assert_eq!(timeout_of(&state), Some(1));

    // A server certificate from another CA is refused, and said so.
    let untrusting = XdsClient::builder(bootstrap("other-ca.pem"))
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    let mut b = untrusting.watch::<Cluster>("a").await.unwrap();
    let state = until(&mut b, "a TLS error", |s| s.error.is_some()).await;
    assert!(state.resource.is_none());
    assert!(
        state
            .error
            .as_deref()
            .unwrap()
            .starts_with("xDS stream: cannot connect to https://localhost:"),
        "{:?}",
        state.error
    );

    // A missing file is named.
    let missing = XdsClient::builder(bootstrap("absent.pem")).build().unwrap();
    let mut c = missing.watch::<Cluster>("a").await.unwrap();
    let state = until(&mut c, "a file error", |s| s.error.is_some()).await;
    let error = state.error.unwrap();
    assert!(
        error.contains("cannot read TLS file") && error.contains("absent.pem"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A loopback port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client of `ports` in order of preference (gRFC A71), all in one variant.
fn client_of(ports: &[u16], delta: bool) -> XdsClient {
    let mut bootstrap = Bootstrap::new(&format!("127.0.0.1:{}", ports[0]), "test-node").unwrap();
    bootstrap.servers = ports
        .iter()
        .map(|port| {
            let server = XdsServer::insecure(&format!("127.0.0.1:{port}")).unwrap();
            if delta {
                server.with_feature(DELTA_ADS)
            } else {
                server
            }
        })
        .collect();
    XdsClient::builder(bootstrap)
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

async fn falls_back_while_the_primary_is_down_then_returns_to_it(delta: bool) {
    let primary_port = free_port();
    let fallback = SnapshotServer::new();
    // The same version string on both: the primary must not take the
    // fallback's "1" for its own.
    fallback.set_default(Snapshot::new("1").with(cluster("a", 2)));
    let fallback_plane = fallback.start_standalone(0, None).unwrap();
    let client = client_of(&[primary_port, fallback_plane.address().port()], delta);

    let mut a = client.watch::<Cluster>("a").await.unwrap();
    let state = until(&mut a, "a from the fallback", |s| timeout_of(s) == Some(2)).await;
    assert_eq!(
        state.error, None,
        "while a fallback serves, watchers hear of no failure"
    );

    let primary = SnapshotServer::new();
    primary.set_default(Snapshot::new("1").with(cluster("a", 1)));
    let _primary_plane = primary.start_standalone(primary_port, None).unwrap();
    let state = until(&mut a, "a from the primary once it answers", |s| {
        timeout_of(s) == Some(1)
    })
    .await;
    assert_eq!(state.error, None);
    eventually("the fallback's stream to close", || {
        fallback.streams_open() == 0
    })
    .await;
    assert_eq!(primary.subscribed("test-node", Cluster::TYPE_URL), ["a"]);

    // The primary's changes apply; the fallback's no longer do.
    fallback.set_default(Snapshot::new("2").with(cluster("a", 9)));
    primary.set_default(Snapshot::new("2").with(cluster("a", 3)));
    until(&mut a, "the primary's change", |s| timeout_of(s) == Some(3)).await;
    assert_eq!(fallback.streams_open(), 0);
    assert!(primary.nacks().is_empty() && fallback.nacks().is_empty());
}

#[tokio::test]
async fn sotw_falls_back_while_the_primary_is_down_then_returns_to_it() {
    falls_back_while_the_primary_is_down_then_returns_to_it(false).await;
}

#[tokio::test]
async fn delta_falls_back_while_the_primary_is_down_then_returns_to_it() {
    falls_back_while_the_primary_is_down_then_returns_to_it(true).await;
}

#[tokio::test]
async fn with_everything_cached_the_client_stays_with_its_primary_until_a_watch_needs_more() {
    let primary = SnapshotServer::new();
    primary.set_default(Snapshot::new("1").with(cluster("a", 1)));
    let mut primary_plane = primary.start_standalone(0, None).unwrap();
    let fallback = SnapshotServer::new();
    fallback.set_default(
        Snapshot::new("f1")
            .with(cluster("a", 2))
            .with(cluster("b", 4)),
    );
    let fallback_plane = fallback.start_standalone(0, None).unwrap();
    let client = client_of(
        &[
            primary_plane.address().port(),
            fallback_plane.address().port(),
        ],
        false,
    );
    let mut a = client.watch::<Cluster>("a").await.unwrap();
    until(&mut a, "a from the primary", |s| timeout_of(s) == Some(1)).await;

    // The primary goes: "a" is cached, so the client keeps it and says why.
    primary_plane.kill();
    let state = until(&mut a, "the primary's failure", |s| s.error.is_some()).await;
    assert_eq!(timeout_of(&state), Some(1));
    assert_eq!(
        fallback.streams_opened(),
        0,
        "no fallback while everything is cached"
    );

    // A new watch has no answer: now the fallback is used (gRFC A71).
    let mut b = client.watch::<Cluster>("b").await.unwrap();
    until(&mut b, "b from the fallback", |s| timeout_of(s) == Some(4)).await;
    assert_eq!(
        fallback.subscribed("test-node", Cluster::TYPE_URL),
        ["a", "b"],
        "the fallback is asked for every watched resource"
    );
    until(&mut a, "a as the fallback has it", |s| {
        timeout_of(s) == Some(2)
    })
    .await;
}

#[tokio::test]
async fn xdstp_names_are_served_by_their_authoritys_control_plane() {
    const CDS: &str = "envoy.config.cluster.v3.Cluster";
    let top = SnapshotServer::new();
    let own = SnapshotServer::new();
    let in_x = format!("xdstp://x.example/{CDS}/c");
    let in_y = format!("xdstp://y.example/{CDS}/d");
    top.set_default(
        Snapshot::new("1")
            .with(cluster("plain", 1))
            .with(cluster(&in_y, 2)),
    );
    own.set_default(Snapshot::new("1").with(cluster(&in_x, 3)));
    let top_plane = top.start_standalone(0, None).unwrap();
    let own_plane = own.start_standalone(0, None).unwrap();
    let bootstrap = Bootstrap::from_json(&format!(
        r#"{{"xds_servers": [{{"server_uri": "{}", "channel_creds": [{{"type": "insecure"}}]}}],
            "node": {{"id": "test-node"}},
            "authorities": {{
              "x.example": {{"xds_servers": [{{"server_uri": "{}", "channel_creds": [{{"type": "insecure"}}]}}]}},
              "y.example": {{}}}}}}"#,
        top_plane.address(),
        own_plane.address()
    ))
    .unwrap();
    let client = XdsClient::new(bootstrap).unwrap();

    let mut watches = client
        .watch_many::<Cluster>(&["plain".to_owned(), in_x.clone(), in_y.clone()])
        .await
        .unwrap();
    let names: Vec<&str> = watches.iter().map(|w| w.name()).collect();
    assert_eq!(
        names,
        ["plain", in_x.as_str(), in_y.as_str()],
        "in the order asked"
    );
    for (watch, seconds) in watches.iter_mut().zip([1, 3, 2]) {
        until(watch, watch.name().to_owned().as_str(), |s| {
            timeout_of(s) == Some(seconds)
        })
        .await;
    }
    assert_eq!(
        own.subscribed("test-node", Cluster::TYPE_URL),
        std::slice::from_ref(&in_x)
    );
    // An authority without servers of its own uses the top-level ones.
    assert_eq!(
        top.subscribed("test-node", Cluster::TYPE_URL),
        ["plain".to_owned(), in_y.clone()]
    );
    let dumped: std::collections::BTreeSet<String> = client
        .dump()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        dumped,
        ["plain".to_owned(), in_x.clone(), in_y]
            .into_iter()
            .collect()
    );

    // Context parameters in any order name one resource (gRFC A47): the
    // client subscribes with them sorted, and a resource that names itself
    // with them unsorted is still the one asked for.
    let canonical = format!("xdstp://x.example/{CDS}/p?env=prod&zone=z1");
    let unsorted = cluster(&format!("xdstp://x.example/{CDS}/p?zone=z1&env=prod"), 6);
    own.set_default(
        Snapshot::new("2")
            .with(cluster(&in_x, 3))
            .with_any(&canonical, meshlib_xds::server::build::any(&unsorted)),
    );
    let mut p = client
        .watch::<Cluster>(&format!("xdstp://x.example/{CDS}/p?zone=z1&env=prod"))
        .await
        .unwrap();
    assert_eq!(p.name(), canonical);
    until(&mut p, "the cluster with context parameters", |s| {
        timeout_of(s) == Some(6)
    })
    .await;

    let unknown = format!("xdstp://z.example/{CDS}/e");
    assert_eq!(
        client.watch::<Cluster>(&unknown).await.unwrap_err(),
        meshlib_xds::WatchError::UnknownAuthority(unknown)
    );
}

#[tokio::test]
async fn the_snapshot_server_answers_a_first_request_carrying_an_earlier_streams_nonce() {
    use meshlib_xds::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use meshlib_xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;

    let server = SnapshotServer::new();
    server.set_default(Snapshot::new("1").with(cluster("a", 1)));
    let plane = server.start_standalone(0, None).unwrap();
    let mut ads = AggregatedDiscoveryServiceClient::connect(format!("http://{}", plane.address()))
        .await
        .unwrap();
    let first = DiscoveryRequest {
        node: Some(Default::default()),
        version_info: "1".to_owned(),
        resource_names: vec!["a".to_owned()],
        type_url: Cluster::TYPE_URL.to_owned(),
        response_nonce: "from-an-earlier-stream".to_owned(),
        ..Default::default()
    };
    let mut responses = ads
        .stream_aggregated_resources(tokio_stream::StreamExt::chain(
            tokio_stream::iter([first]),
            tokio_stream::pending(),
        ))
        .await
        .unwrap()
        .into_inner();
    let response = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("the first request of a stream is answered whatever nonce it carries")
        .unwrap()
        .unwrap();
    assert_eq!(response.resources.len(), 1);
}
