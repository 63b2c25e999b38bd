//! The balancer as a whole: priorities, localities and each policy through
//! `Balancer::pick` and `Balancer::send`, with endpoint updates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::{HealthStatus, LbPolicy, Locality, LocalityWeight};
use crate::connect::{ClusterConnect, ProbeFuture};

/// A client that never answers, counting how many were made.
struct Silent;

impl EndpointClient for Silent {
    type Body = ();
    type Future = std::future::Pending<Result<http::Response<()>, Error>>;

    fn send(&self, _: http::Request<crate::BoxBody>) -> Self::Future {
        std::future::pending()
    }
}

fn address(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 80))
}

fn endpoint(i: u8) -> Endpoint {
    Endpoint::new(address(i))
}

fn with_weight(mut endpoint: Endpoint, weight: u32) -> Endpoint {
    endpoint.weight = weight;
    endpoint
}

fn at_priority(mut endpoint: Endpoint, priority: u32) -> Endpoint {
    endpoint.priority = priority;
    endpoint
}

fn in_zone(mut endpoint: Endpoint, zone: &str) -> Endpoint {
    endpoint.locality = zone_locality(zone);
    endpoint
}

fn zone_locality(zone: &str) -> Locality {
    Locality {
        region: "eu".into(),
        zone: zone.into(),
        sub_zone: String::new(),
    }
}

fn cluster(lb_policy: LbPolicy, endpoints: Vec<Endpoint>) -> Cluster {
    let mut cluster = Cluster::new("svc", endpoints);
    cluster.lb_policy = lb_policy;
    cluster
}

/// A runtime for the probes of balancers made outside one.
fn executor() -> Handle {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    });
    RUNTIME.handle().clone()
}

fn balancer(cluster: &Cluster) -> Balancer<Silent> {
    Balancer::new(cluster, |_| Silent, executor())
}

/// Each endpoint's share of `n` picks, in percent, by the last octet of its address.
fn shares<C>(
    balancer: &Balancer<C>,
    n: usize,
    hash: impl Fn(usize) -> Option<u64>,
) -> BTreeMap<u8, f64> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let picked = balancer.pick(hash(i)).unwrap();
        let SocketAddr::V4(v4) = picked else {
            unreachable!()
        };
        *counts.entry(v4.ip().octets()[3]).or_insert(0usize) += 1;
    }
    counts
        .into_iter()
        .map(|(k, c)| (k, c as f64 * 100.0 / n as f64))
        .collect()
}

#[track_caller]
fn assert_shares(actual: &BTreeMap<u8, f64>, expected: &[(u8, f64)]) {
    for (endpoint, share) in expected {
        let got = actual.get(endpoint).copied().unwrap_or(0.0);
        assert!(
            (got - share).abs() <= 2.0,
            "endpoint {endpoint}: {got:.2}% instead of {share}% ({actual:?})"
        );
    }
    let listed: f64 = expected.iter().map(|(_, s)| s).sum();
    assert!(
        (listed - 100.0).abs() < 0.01,
        "expected shares must sum to 100"
    );
}

fn weighted_endpoints() -> Vec<Endpoint> {
    vec![
        with_weight(endpoint(1), 1),
        with_weight(endpoint(2), 3),
        with_weight(endpoint(3), 6),
    ]
}

const PICKS: usize = 100_000;

fn random_hash(_: usize) -> Option<u64> {
    None
}

#[test]
fn every_policy_respects_weights() {
    let expected = [(1, 10.0), (2, 30.0), (3, 60.0)];
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        LbPolicy::least_request(),
        LbPolicy::RingHash {
            minimum_ring_size: 100_000,
            maximum_ring_size: 8 << 20,
        },
        LbPolicy::maglev(),
        LbPolicy::peak_ewma(),
    ] {
        let balancer = balancer(&cluster(policy, weighted_endpoints()));
        let s = shares(&balancer, PICKS, random_hash);
        assert_shares(&s, &expected);
    }
}

#[test]
fn round_robin_is_exact_and_skips_endpoints_that_take_no_traffic() {
    let mut endpoints = weighted_endpoints();
    for (i, health) in [(4, HealthStatus::Draining), (5, HealthStatus::Unhealthy)] {
        let mut e = endpoint(i);
        e.health = health;
        endpoints.push(e);
    }
    let mut unknown = endpoint(6);
    unknown.health = HealthStatus::Unknown;
    endpoints.push(with_weight(unknown, 10));
    let balancer = balancer(&cluster(LbPolicy::RoundRobin, endpoints));
    // One cycle is 20 turns: exact counts, not just shares.
    let s = shares(&balancer, 20, random_hash);
    assert_eq!(
        s.into_iter().collect::<Vec<_>>(),
        [(1, 5.0), (2, 15.0), (3, 30.0), (6, 50.0)]
    );
}

#[test]
fn ring_hash_and_maglev_follow_the_request_hash() {
    for policy in [LbPolicy::ring_hash(), LbPolicy::maglev()] {
        let endpoints: Vec<Endpoint> = (1..=10).map(endpoint).collect();
        let balancer = balancer(&cluster(policy, endpoints));
        let mut reached = std::collections::BTreeSet::new();
        for key in 0..1000u64 {
            let hash = xxhash_rust::xxh64::xxh64(&key.to_le_bytes(), 0);
            let first = balancer.pick(Some(hash)).unwrap();
            assert_eq!(balancer.pick(Some(hash)).unwrap(), first, "{policy:?}");
            reached.insert(first);
        }
        // A hash that is read, not dropped: different keys reach every endpoint.
        assert_eq!(reached.len(), 10, "{policy:?}: {reached:?}");
        // Without a hash: random, so spread over every endpoint.
        let s = shares(&balancer, 10_000, random_hash);
        assert_eq!(s.len(), 10, "{policy:?}: {s:?}");
    }
}

fn priorities(p0_healthy: usize) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for i in 0..4u8 {
        let mut e = endpoint(i + 1);
        if usize::from(i) >= p0_healthy {
            e.health = HealthStatus::Unhealthy;
        }
        endpoints.push(e);
    }
    endpoints.extend((5..=8).map(|i| at_priority(endpoint(i), 1)));
    endpoints
}

fn priority_shares(balancer: &Balancer<Silent>, hashing: bool) -> (f64, f64) {
    let hash = |i: usize| hashing.then(|| xxhash_rust::xxh64::xxh64(&i.to_le_bytes(), 0));
    let s = shares(balancer, PICKS, hash);
    let p0: f64 = s.range(1..=4).map(|(_, v)| v).sum();
    let p1: f64 = s.range(5..=8).map(|(_, v)| v).sum();
    (p0, p1)
}

#[test]
fn priority_load_fails_over_and_returns_as_health_changes() {
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::least_request(),
        LbPolicy::ring_hash(),
        LbPolicy::maglev(),
    ] {
        let hashing = matches!(policy, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. });
        let balancer = balancer(&cluster(policy, priorities(4)));
        // (P0 healthy of 4, expected P0 %, expected P1 %) at 140 %.
        for (healthy, p0, p1) in [
            (4, 100, 0),
            (3, 100, 0),
            (2, 70, 30),
            (1, 35, 65),
            (0, 0, 100),
            (4, 100, 0),
        ] {
            balancer.update(&priorities(healthy));
            let loads: Vec<(u32, u32)> = [(0, p0), (1, p1)]
                .into_iter()
                .filter(|(_, l)| *l > 0)
                .collect();
            assert_eq!(balancer.shared.set.load().priority_loads(), loads);
            let (p0, p1) = (f64::from(p0), f64::from(p1));
            let (got0, got1) = priority_shares(&balancer, hashing);
            assert!(
                (got0 - p0).abs() <= 2.0 && (got1 - p1).abs() <= 2.0,
                "{policy:?}, P0 {healthy}/4 healthy: {got0:.1}/{got1:.1} instead of {p0}/{p1}"
            );
        }
    }
}

#[test]
fn the_overprovisioning_factor_sets_when_traffic_spills() {
    let mut cluster = cluster(LbPolicy::Random, priorities(3));
    cluster.overprovisioning_factor = 100;
    let balancer = balancer(&cluster);
    let (p0, p1) = priority_shares(&balancer, false);
    assert!(
        (p0 - 75.0).abs() <= 2.0 && (p1 - 25.0).abs() <= 2.0,
        "{p0}/{p1}"
    );
}

#[test]
fn a_cluster_with_nothing_healthy_fails_naming_the_cluster() {
    let mut endpoints = priorities(0);
    for e in &mut endpoints {
        e.health = HealthStatus::Unhealthy;
    }
    let balancer = balancer(&cluster(LbPolicy::RoundRobin, endpoints));
    let err = balancer.pick(None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoEndpoints);
    assert_eq!(
        err.message(),
        "cluster \"svc\" has no endpoint that may take traffic (8 configured)"
    );
    let empty = Balancer::<Silent>::new(
        &cluster(LbPolicy::maglev(), Vec::new()),
        |_| Silent,
        executor(),
    );
    assert_eq!(
        empty.pick(Some(1)).unwrap_err().kind(),
        ErrorKind::NoEndpoints
    );
}

fn zoned(a_healthy: usize) -> Vec<Endpoint> {
    // Zone a: endpoints 1-4; zone b: 5-8; zone c (unlisted): 9.
    let mut endpoints = Vec::new();
    for i in 1..=4u8 {
        let mut e = in_zone(endpoint(i), "a");
        if usize::from(i) > a_healthy {
            e.health = HealthStatus::Unhealthy;
        }
        endpoints.push(e);
    }
    endpoints.extend((5..=8).map(|i| in_zone(endpoint(i), "b")));
    endpoints.push(in_zone(endpoint(9), "c"));
    endpoints
}

fn zoned_cluster(policy: LbPolicy, a_healthy: usize) -> Cluster {
    let mut cluster = cluster(policy, zoned(a_healthy));
    cluster.locality_weights = vec![
        LocalityWeight {
            locality: zone_locality("a"),
            weight: 1,
        },
        LocalityWeight {
            locality: zone_locality("b"),
            weight: 2,
        },
    ];
    cluster
}

fn zone_shares(s: &BTreeMap<u8, f64>) -> (f64, f64, f64) {
    let sum = |r: std::ops::RangeInclusive<u8>| s.range(r).map(|(_, v)| v).sum::<f64>();
    (sum(1..=4), sum(5..=8), sum(9..=9))
}

#[test]
fn localities_share_by_effective_weight_and_unlisted_ones_get_nothing() {
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        LbPolicy::least_request(),
        LbPolicy::peak_ewma(),
    ] {
        // (zone a healthy of 4, a's share): weight 1 against b's 2, at 140 %.
        for (healthy, a_share) in [
            (4, 100.0 / 3.0),
            (3, 100.0 / 3.0),
            (2, 0.7 / 2.7 * 100.0),
            (1, 0.35 / 2.35 * 100.0),
            (0, 0.0),
        ] {
            let balancer = balancer(&zoned_cluster(policy, healthy));
            let (a, b, c) = zone_shares(&shares(&balancer, PICKS, random_hash));
            assert!(
                (a - a_share).abs() <= 2.0 && (b - (100.0 - a_share)).abs() <= 2.0,
                "{policy:?}, a {healthy}/4 healthy: a {a:.1}%, b {b:.1}% instead of {a_share:.1}%"
            );
            assert_eq!(c, 0.0, "zone c is not listed");
        }
    }
}

#[test]
fn hashing_policies_multiply_endpoint_and_locality_weights() {
    for policy in [
        LbPolicy::RingHash {
            minimum_ring_size: 100_000,
            maximum_ring_size: 8 << 20,
        },
        LbPolicy::maglev(),
    ] {
        let mut cluster = zoned_cluster(policy, 4);
        // Endpoint 1 weighs 5 in zone a (weight 1); zone b's four weigh 1 × 2.
        cluster.endpoints[0].weight = 5;
        let balancer = balancer(&cluster);
        let s = shares(&balancer, PICKS, random_hash);
        // Weights: a: 5, 1, 1, 1; b: 2, 2, 2, 2; total 16. Health does not
        // scale a locality here (gRPC's ring has no effective weight).
        assert_shares(
            &s,
            &[
                (1, 31.25),
                (2, 6.25),
                (3, 6.25),
                (4, 6.25),
                (5, 12.5),
                (6, 12.5),
                (7, 12.5),
                (8, 12.5),
            ],
        );
    }
}

#[test]
fn an_update_keeps_clients_and_loads_of_addresses_that_stay() {
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    let make = move |_: SocketAddr| {
        counter.fetch_add(1, Ordering::SeqCst);
        Silent
    };
    let endpoints: Vec<Endpoint> = (1..=2).map(endpoint).collect();
    let cluster = cluster(LbPolicy::least_request(), endpoints);
    let balancer = Balancer::new(&cluster, make, executor());
    assert_eq!(made.load(Ordering::SeqCst), 2);

    // Pin requests on endpoint 1, then update: the load survives.
    let mut stuck = Vec::new();
    while stuck.len() < 5 {
        let request = http::Request::new(crate::body::boxed(
            http_body_util::Empty::<bytes::Bytes>::new(),
        ));
        stuck.push(balancer.send(request).unwrap());
    }
    let set = balancer.shared.set.load_full();
    let loads: Vec<u32> = set.states.iter().map(|e| e.load.active()).collect();
    assert_eq!(loads.iter().sum::<u32>(), 5);

    let endpoints: Vec<Endpoint> = (1..=3).map(endpoint).collect();
    balancer.update(&endpoints);
    assert_eq!(
        made.load(Ordering::SeqCst),
        3,
        "only the new endpoint gets a client"
    );
    let updated = balancer.shared.set.load_full();
    for (old, new) in set.states.iter().zip(updated.states.iter()) {
        assert!(Arc::ptr_eq(&old.client, &new.client));
        assert!(Arc::ptr_eq(&old.load, &new.load));
    }
    drop(stuck);
    assert!(updated.states.iter().all(|e| e.load.active() == 0));

    // The same endpoints again: nothing is rebuilt, no client is made.
    balancer.update(&endpoints);
    assert!(Arc::ptr_eq(&updated, &balancer.shared.set.load_full()));
    assert_eq!(made.load(Ordering::SeqCst), 3);
}

#[test]
fn least_request_avoids_an_endpoint_with_requests_stuck_on_it() {
    let endpoints: Vec<Endpoint> = (1..=3).map(endpoint).collect();
    let balancer = balancer(&cluster(LbPolicy::least_request(), endpoints));
    let set = balancer.shared.set.load_full();
    let _stuck: Vec<_> = (0..10).map(|_| set.states[0].load.start(None)).collect();
    let s = shares(&balancer, PICKS, random_hash);
    // Endpoint 1 only when both candidates are it: 1/9.
    assert_shares(&s, &[(1, 100.0 / 9.0), (2, 400.0 / 9.0), (3, 400.0 / 9.0)]);
}

#[test]
fn round_robin_resumes_its_turn_after_an_update() {
    let endpoints: Vec<Endpoint> = (1..=3).map(endpoint).collect();
    let balancer = balancer(&cluster(LbPolicy::RoundRobin, endpoints.clone()));
    assert_eq!(balancer.pick(None).unwrap(), address(1));
    let mut changed = endpoints;
    changed.push(endpoint(4));
    balancer.update(&changed);
    assert_eq!(
        balancer.pick(None).unwrap(),
        address(2),
        "not back to the first"
    );
}

/// A client whose every request fails to connect.
struct Refusing;

impl EndpointClient for Refusing {
    type Body = ();
    type Future = std::future::Ready<Result<http::Response<()>, Error>>;

    fn send(&self, _: http::Request<crate::BoxBody>) -> Self::Future {
        std::future::ready(Err(Error::new(ErrorKind::Connect, "refused")))
    }
}

#[tokio::test]
async fn endpoints_that_fail_to_connect_together_all_leave_the_set() {
    // Loopback ports nothing listens on, so the probes find them refusing too.
    let addresses: Vec<SocketAddr> = (0..5)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        })
        .collect();
    let endpoints = addresses.iter().map(|a| Endpoint::new(*a)).collect();
    let balancer = Balancer::new(
        &cluster(LbPolicy::RoundRobin, endpoints),
        |_| Refusing,
        Handle::current(),
    );
    // Five requests before any probe runs: each reaches another endpoint and
    // fails, and five probes ask for a refresh at about the same time.
    for _ in 0..5 {
        let request = http::Request::new(crate::body::boxed(http_body_util::Empty::new()));
        let error = balancer.send(request).unwrap().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connect);
    }
    for _ in 0..100 {
        if balancer.pick(None).is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let error = balancer.pick(None).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoEndpoints);
    assert!(
        error
            .message()
            .ends_with("(5 configured, 5 failing to connect)"),
        "{}",
        error.message()
    );
}

/// A connector whose clients all fail to connect and whose probes succeed,
/// counting them.
struct ProbeSucceeds(Arc<AtomicUsize>);

impl ClusterConnect for ProbeSucceeds {
    type Client = Refusing;

    fn endpoint(&self, _: SocketAddr) -> Refusing {
        Refusing
    }

    fn probe(&self, _: SocketAddr, _: std::time::Duration) -> ProbeFuture {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_probed_through_the_clusters_connector() {
    let probes = Arc::new(AtomicUsize::new(0));
    let balancer = Balancer::new(
        &cluster(LbPolicy::RoundRobin, vec![endpoint(1)]),
        ProbeSucceeds(probes.clone()),
        Handle::current(),
    );
    let request = http::Request::new(crate::body::boxed(http_body_util::Empty::new()));
    let error = balancer.send(request).unwrap().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connect);
    tokio::task::yield_now().await;
    assert_eq!(
        balancer.pick(None).unwrap_err().kind(),
        ErrorKind::NoEndpoints
    );

    // The first probe, after gRPC's first backoff (1 s ± 20 %), is the
    // connector's, and it gives the endpoint back.
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert_eq!(probes.load(Ordering::SeqCst), 1);
    assert_eq!(balancer.pick(None).unwrap(), address(1));
}

#[test]
fn a_huge_choice_count_is_clamped_as_grpc_does_so_a_pick_stays_cheap() {
    // 4294967295 candidates per pick took 17.7 s of CPU per request before.
    let endpoints: Vec<Endpoint> = (1..=2).map(endpoint).collect();
    let balancer = balancer(&cluster(
        LbPolicy::LeastRequest {
            choice_count: u32::MAX,
        },
        endpoints,
    ));
    for _ in 0..1000 {
        balancer.pick(None).unwrap();
    }
    assert!(matches!(
        balancer.shared.policy.kind,
        policy::Kind::LeastRequest {
            choice_count: crate::config::MAX_CHOICE_COUNT
        }
    ));
}

#[test]
fn rings_and_tables_of_many_levels_share_one_bound() {
    use crate::config::{MAGLEV_SLOT_BYTES, MAX_CLUSTER_HASH_BYTES, RING_ENTRY_BYTES};
    use policy::Kind;
    // 20 levels of 8M-entry rings from EDS once took 2.05 GB to build.
    let ring = Kind::RingHash {
        minimum_size: 8 << 20,
        maximum_size: 8 << 20,
    };
    let Kind::RingHash {
        minimum_size,
        maximum_size,
    } = ring.within_hash_budget(20)
    else {
        unreachable!()
    };
    assert!(minimum_size <= maximum_size);
    assert!(20 * maximum_size * RING_ENTRY_BYTES <= MAX_CLUSTER_HASH_BYTES);
    assert!(maximum_size >= (8 << 20) / 21);
    // 100 levels of Envoy's largest maglev table, 1.9 GB.
    let Kind::Maglev { table_size } = (Kind::Maglev {
        table_size: 5_000_011,
    })
    .within_hash_budget(100) else {
        unreachable!()
    };
    assert!(100 * table_size * MAGLEV_SLOT_BYTES <= MAX_CLUSTER_HASH_BYTES);
    assert!(
        (2..table_size).all(|d| table_size % d != 0),
        "{table_size} is a prime"
    );
    // Sizes within the bound are Envoy's, untouched.
    assert!(matches!(
        ring.within_hash_budget(1),
        Kind::RingHash {
            minimum_size: 8_388_608,
            maximum_size: 8_388_608
        }
    ));
    assert!(matches!(
        Kind::Maglev { table_size: 65_537 }.within_hash_budget(100),
        Kind::Maglev { table_size: 65_537 }
    ));
    assert!(matches!(
        Kind::Maglev {
            table_size: 5_000_011
        }
        .within_hash_budget(5),
        Kind::Maglev {
            table_size: 5_000_011
        }
    ));
}
