//! The cost of one load-balancing pick, `Balancer::pick`, per policy over 10
//! and 1,000 healthy endpoints of one priority: what each request pays for
//! choosing its endpoint, before any I/O.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use meshlib::balance::Balancer;
use meshlib::config::{Cluster, Endpoint, LbPolicy};

fn cluster(policy: LbPolicy, endpoints: usize) -> Cluster {
    let endpoints = (0..endpoints)
        .map(|i| {
            let [_, _, hi, lo] = (i as u32).to_be_bytes();
            Endpoint::new(SocketAddr::from(([10, 1, hi, lo], 8080)))
        })
        .collect();
    let mut cluster = Cluster::new("bench", endpoints);
    cluster.lb_policy = policy;
    cluster
}

fn bench(c: &mut Criterion) {
    let policies = [
        ("round_robin", LbPolicy::RoundRobin),
        ("random", LbPolicy::Random),
        ("least_request", LbPolicy::least_request()),
        ("peak_ewma", LbPolicy::peak_ewma()),
        ("ring_hash", LbPolicy::ring_hash()),
        ("maglev", LbPolicy::maglev()),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("lb_pick");
    for (name, policy) in policies {
        for endpoints in [10, 1000] {
            let balancer = Balancer::new(
                &cluster(policy, endpoints),
                |_| (),
                runtime.handle().clone(),
            );
            let mut hash: u64 = 0x9e37_79b9_7f4a_7c15;
            group.bench_function(BenchmarkId::new(name, endpoints), |b| {
                b.iter(|| {
                    // A different hash each time, as requests have.
                    hash = hash.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    black_box(balancer.pick(black_box(Some(hash))).unwrap())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
