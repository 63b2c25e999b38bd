//! The in-process cost of meshlib's request path: route match, weighted
//! cluster pick, balancer pick and dispatch, over an in-memory endpoint, next
//! to the same endpoint called directly; the same with a retry policy that
//! never triggers, and with a local rate limit that never refuses; and the
//! limiter alone, checked from one thread and from two at once.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::Empty;
use meshlib::MeshClient;
use meshlib::config::{MeshConfig, RetryCondition, RetryOn, RetryPolicy};
use meshlib::connect::EndpointClient;
use meshlib::ratelimit::{LocalRateLimit, LocalRateLimiter, TokenBucket};
use meshlib_benches::{InMemory, InMemoryEndpoint};
use tower::ServiceExt;

const DEMO: &str = include_str!("../../examples/config/reviews.yaml");

fn request(canary: bool) -> Request<Empty<Bytes>> {
    Request::get("http://reviews/reviews/42")
        .header("x-canary", if canary { "true" } else { "false" })
        .body(Empty::new())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let config = MeshConfig::from_yaml(DEMO).unwrap();
    let mesh = MeshClient::builder()
        .connect(InMemory)
        .config(config)
        .executor(runtime.handle().clone())
        .build()
        .unwrap();

    // The same mesh with a retry policy on the virtual host, never
    // triggered (the endpoint answers 200): what a policy costs by itself.
    let mut retrying = MeshConfig::from_yaml(DEMO).unwrap();
    let mut policy = RetryPolicy::new(RetryOn::none().with(RetryCondition::FiveXx));
    policy.num_retries = 2;
    retrying.virtual_hosts[0].retry_policy = Some(policy);
    let retrying = MeshClient::builder()
        .connect(InMemory)
        .config(retrying)
        .executor(runtime.handle().clone())
        .build()
        .unwrap();

    // A limit no benchmark run exhausts: every request checked and allowed.
    let unlimited = || {
        LocalRateLimit::enforced(TokenBucket::new(
            u32::MAX,
            u32::MAX,
            std::time::Duration::from_millis(50),
        ))
    };
    let mut limited = MeshConfig::from_yaml(DEMO).unwrap();
    limited.local_rate_limit = Some(unlimited());
    let limited = MeshClient::builder()
        .connect(InMemory)
        .config(limited)
        .executor(runtime.handle().clone())
        .build()
        .unwrap();

    let mut group = c.benchmark_group("request_path");
    group.bench_function("bare_endpoint", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = request(false).map(meshlib::body::boxed);
            black_box(InMemoryEndpoint.send(request).await.unwrap())
        })
    });
    group.bench_function("mesh_weighted_split", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(mesh.clone().oneshot(request(false)).await.unwrap()) })
    });
    group.bench_function("mesh_header_route", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(mesh.clone().oneshot(request(true)).await.unwrap()) })
    });
    group.bench_function("mesh_weighted_split_retry_policy", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(retrying.clone().oneshot(request(false)).await.unwrap()) })
    });
    group.bench_function("mesh_weighted_split_local_rate_limit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(limited.clone().oneshot(request(false)).await.unwrap()) })
    });
    group.finish();

    // The bucket alone: one compare-and-swap per check; two threads contend
    // for the same atomic.
    let limiter = std::sync::Arc::new(
        runtime.block_on(async { LocalRateLimiter::new(unlimited()).unwrap() }),
    );
    let mut group = c.benchmark_group("local_rate_limit");
    group.bench_function("check_one_thread", |b| {
        b.iter(|| black_box(limiter.check()))
    });
    group.bench_function("check_two_threads", |b| {
        b.iter_custom(|iterations| {
            let started = std::time::Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    let limiter = &limiter;
                    scope.spawn(move || {
                        for _ in 0..iterations {
                            black_box(limiter.check());
                        }
                    });
                }
            });
            // Per check, as both threads see it: the wall time of n checks on each.
            started.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
