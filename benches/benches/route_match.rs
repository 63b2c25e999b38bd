//! The cost of matching one request against a route table of 10, 1,000 and
//! 10,000 routes: `RouteTable::decide`, with the matching route near the
//! end of the table.
//!
//! `distinct_prefixes`: each route has its own path prefix and a header
//! rule, the shape of a large mesh's generated routes; the path index hands
//! the matcher only the routes whose prefix the path has. `shared_prefix`:
//! every route has the prefix `/` and differs only by an exact header value;
//! the index splits the prefix's routes by that header, so only the route
//! with the request's value is tested. `shared_prefix_header_prefix`: the
//! same with a `prefix` header rule, which the index cannot split by, so
//! every route before the match is tested: the index's worst case.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Request;
use meshlib::config::{
    Cluster, HeaderMatcher, HeaderRule, MeshConfig, Route, RouteAction, RouteMatch, VirtualHost,
};
use meshlib::route::RouteTable;

/// `n` routes: route `i` matches `prefix(i)` with header `x-tenant: t{i}`
/// (exactly, or as a prefix).
fn table(n: usize, prefix: impl Fn(usize) -> String, exact: bool) -> RouteTable {
    let routes = (0..n)
        .map(|i| {
            let mut matcher = RouteMatch::prefix(prefix(i));
            matcher.headers = vec![HeaderMatcher {
                name: "x-tenant".to_owned(),
                rule: if exact {
                    HeaderRule::Exact(format!("t{i}"))
                } else {
                    // `t{i}.` so that `t1` is not a prefix of `t12`.
                    HeaderRule::Prefix(format!("t{i}."))
                },
                ignore_case: false,
                invert_match: false,
            }];
            Route::new(
                format!("route-{i}"),
                matcher,
                RouteAction::cluster("backend"),
            )
        })
        .collect();
    let config = MeshConfig::new(
        vec![VirtualHost::new("mesh", vec!["mesh".to_owned()], routes)],
        vec![Cluster::new("backend", Vec::new())],
    );
    config.validate().unwrap();
    RouteTable::new(&config).unwrap()
}

/// A request with header `x-tenant: tenant`.
fn request(tenant: &str, path: &str) -> Request<()> {
    Request::get(format!("http://mesh{path}"))
        .header("x-tenant", tenant)
        .header("user-agent", "bench")
        .body(())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10, 1_000, 10_000] {
        // Near the end: the route before last.
        let target = n - 2;

        let distinct = table(n, |i| format!("/svc-{i}/"), true);
        let request_distinct = request(&format!("t{target}"), &format!("/svc-{target}/items/42"));
        assert_eq!(
            distinct.decide(&request_distinct).unwrap().route(),
            format!("route-{target}")
        );
        group.bench_with_input(BenchmarkId::new("distinct_prefixes", n), &n, |b, _| {
            b.iter(|| black_box(distinct.decide(black_box(&request_distinct)).unwrap()))
        });

        let shared = table(n, |_| "/".to_owned(), true);
        let request_shared = request(&format!("t{target}"), "/items/42");
        assert_eq!(
            shared.decide(&request_shared).unwrap().route(),
            format!("route-{target}")
        );
        group.bench_with_input(BenchmarkId::new("shared_prefix", n), &n, |b, _| {
            b.iter(|| black_box(shared.decide(black_box(&request_shared)).unwrap()))
        });

        let scanned = table(n, |_| "/".to_owned(), false);
        let request_scanned = request(&format!("t{target}.x"), "/items/42");
        assert_eq!(
            scanned.decide(&request_scanned).unwrap().route(),
            format!("route-{target}")
        );
        group.bench_with_input(
            BenchmarkId::new("shared_prefix_header_prefix", n),
            &n,
            |b, _| b.iter(|| black_box(scanned.decide(black_box(&request_scanned)).unwrap())),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
