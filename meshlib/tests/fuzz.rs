//! Fuzz targets (issue 10) for the configuration loader and the route
//! table, as property tests (cargo-fuzz needs nightly): arbitrary text, and
//! valid configurations mutated value by value so most cases get past the
//! parser to validation and routing. Each case must not panic, must finish
//! within [`CASE_BOUND`], and a refusal must say what and where.
//!
//! `cargo test` runs proptest's default 256 cases per target, a few seconds;
//! `PROPTEST_CASES=20000 cargo test -p meshlib --test fuzz` runs longer.

use std::time::{Duration, Instant};

use meshlib::config::{ConfigError, MeshConfig};
use meshlib::route::RouteTable;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Far above what any case takes (milliseconds in a debug build), so only a
/// runaway, quadratic or worse, fails it.
const CASE_BOUND: Duration = Duration::from_secs(2);

fn bounded<T>(case: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = case();
    let took = start.elapsed();
    assert!(took < CASE_BOUND, "one case took {took:?}");
    out
}

/// A refusal says why, and each rule it breaks names its resource or field.
/// (A document that does not parse gets the parser's message, which does
/// not always give a position: YAML's scanner errors (a lone `` ` ``) and
/// errors at the top level have none.)
fn explains(error: &ConfigError) -> Result<(), TestCaseError> {
    prop_assert!(!error.to_string().is_empty(), "{error:?}");
    for problem in error.problems() {
        prop_assert!(!problem.message.is_empty(), "{problem:?}");
        prop_assert!(
            !problem.resource.is_empty() || !problem.field.is_empty(),
            "{problem:?} names neither resource nor field"
        );
    }
    Ok(())
}

const SEEDS: &[&str] = &[
    include_str!("../../examples/config/reference.yaml"),
    include_str!("../../examples/config/reviews.yaml"),
    include_str!("../../examples/config/aggregate.yaml"),
    include_str!("../../examples/config/dns.yaml"),
];

fn seeds() -> Vec<Value> {
    SEEDS
        .iter()
        .map(|text| yaml_serde::from_str(text).expect("a seed is YAML"))
        .collect()
}

/// Text of every kind: anything, YAML's indicators, and anchors expanded
/// many times over (a small document naming a large one).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z:{}\\[\\],&*!|>'\"#%@`? \n-]{0,200}",
        (1..9usize, 1..12usize).prop_map(|(depth, width)| {
            let mut doc = String::from("a0: &a0 [x, x]\n");
            for i in 1..depth {
                let refs = vec![format!("*a{}", i - 1); width].join(", ");
                doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
            }
            doc.push_str(&format!("clusters: *a{}\n", depth - 1));
            doc
        }),
        (1..400usize).prop_map(|depth| format!("clusters: {}", "[".repeat(depth))),
    ]
}

proptest! {
    #[test]
    fn the_loader_survives_any_text(text in text()) {
        for parsed in [
            bounded(|| MeshConfig::from_yaml(&text)),
            bounded(|| MeshConfig::from_json(&text)),
        ] {
            if let Err(error) = parsed {
                explains(&error)?;
            }
        }
    }
}

/// Values a field may be given in place of its own.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(i64::from(u32::MAX) + 1),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(Value::from),
        prop_oneof![Just(u64::MAX), any::<u64>()].prop_map(Value::from),
        prop_oneof![Just(0.5f64), Just(1e300), Just(-0.0)].prop_map(Value::from),
        proptest::sample::select(vec![
            "",
            "/",
            "*",
            "cart-v1",
            "cart-v2",
            "1s",
            "0s",
            "-1s",
            "1.5ms",
            "99999999999999999999s",
            "1e30s",
            "10.0.0.1:8080",
            "[::1]:0",
            "localhost:80",
            "x-user",
            ":status",
            "round_robin",
            "ring_hash",
            "http2",
            "5xx,unavailable",
            "hundred",
            "(",
            "a)|(b",
            "\\w{100}",
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change somewhere in a document.
#[derive(Debug, Clone)]
enum Mutation {
    /// The node, a scalar, becomes the `n`th scalar of its kind found in
    /// the seeds (a name, an address, a duration…), or `bool` flipped.
    Swap(usize),
    /// The node becomes this value, of any kind.
    Replace(Value),
    /// The node is removed from its object or array.
    Remove,
    /// The node (an array element) is listed twice.
    Repeat,
    /// The node, an object, gains (or has replaced) the field of the
    /// `n`th name used anywhere in the seeds, or of this random name.
    AddField(usize, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => any::<usize>().prop_map(Mutation::Swap),
        3 => value().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        1 => Just(Mutation::Repeat),
        2 => (any::<usize>(), "[a-z_]{1,10}", value())
            .prop_map(|(n, name, value)| Mutation::AddField(n, name, value)),
    ]
}

/// What the seeds hold: field names, and scalars by kind.
#[derive(Default)]
struct Parts {
    names: Vec<String>,
    strings: Vec<Value>,
    numbers: Vec<Value>,
}

impl Parts {
    fn of(value: &Value, parts: &mut Parts) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    parts.names.push(key.clone());
                    Parts::of(value, parts);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| Parts::of(v, parts)),
            Value::String(_) => parts.strings.push(value.clone()),
            Value::Number(_) => parts.numbers.push(value.clone()),
            Value::Null | Value::Bool(_) => {}
        }
    }
}

fn count(value: &Value) -> usize {
    1 + match value {
        Value::Object(map) => map.values().map(count).sum(),
        Value::Array(items) => items.iter().map(count).sum(),
        _ => 0,
    }
}

/// Applies `mutation` to the `target`th node, counting depth first; a node
/// is removed or repeated by its parent. `true` once applied.
fn mutate(value: &mut Value, target: &mut usize, mutation: &Mutation, parts: &Parts) -> bool {
    if *target == 0 {
        match mutation {
            Mutation::Swap(n) => match value {
                Value::String(_) => *value = parts.strings[n % parts.strings.len()].clone(),
                Value::Number(_) => *value = parts.numbers[n % parts.numbers.len()].clone(),
                Value::Bool(b) => *b = !*b,
                _ => {}
            },
            Mutation::Replace(new) => *value = new.clone(),
            Mutation::AddField(n, random, new) => {
                if let Value::Object(map) = value {
                    let name = if n % 3 == 0 {
                        random
                    } else {
                        &parts.names[n % parts.names.len()]
                    };
                    map.insert(name.clone(), new.clone());
                }
            }
            Mutation::Remove | Mutation::Repeat => {}
        }
        return true;
    }
    *target -= 1;
    let child_is_target = |target: &usize| *target == 0;
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if child_is_target(target) && matches!(mutation, Mutation::Remove) {
                    map.remove(&key);
                    return true;
                }
                if let Some(child) = map.get_mut(&key)
                    && mutate(child, target, mutation, parts)
                {
                    return true;
                }
            }
        }
        Value::Array(items) => {
            for i in 0..items.len() {
                if child_is_target(target) {
                    match mutation {
                        Mutation::Remove => {
                            items.remove(i);
                            return true;
                        }
                        Mutation::Repeat => {
                            let copy = items[i].clone();
                            items.insert(i, copy);
                            return true;
                        }
                        _ => {}
                    }
                }
                if mutate(&mut items[i], target, mutation, parts) {
                    return true;
                }
            }
        }
        _ => {}
    }
    false
}

fn mutated(seed: usize, mutations: &[(usize, Mutation)]) -> Value {
    let seeds = seeds();
    let mut parts = Parts::default();
    seeds.iter().for_each(|s| Parts::of(s, &mut parts));
    let mut document = seeds[seed % seeds.len()].clone();
    for (target, mutation) in mutations {
        let mut target = target % count(&document);
        mutate(&mut document, &mut target, mutation, &parts);
    }
    document
}

#[test]
fn the_seeds_load() {
    for text in SEEDS {
        let config = MeshConfig::from_yaml(text).unwrap();
        RouteTable::new(&config).unwrap();
    }
}

proptest! {
    #[test]
    fn the_loader_refuses_a_mutated_configuration_by_name_or_takes_it(
        seed in any::<usize>(),
        mutations in proptest::collection::vec((any::<usize>(), mutation()), 1..4),
        requests in proptest::collection::vec(request(), 0..3),
    ) {
        let document = mutated(seed, &mutations);
        let yaml = yaml_serde::to_string(&document).expect("a value writes as YAML");
        let json = serde_json::to_string(&document).expect("a value writes as JSON");
        let from_yaml = bounded(|| MeshConfig::from_yaml(&yaml));
        let from_json = bounded(|| MeshConfig::from_json(&json));
        for parsed in [&from_yaml, &from_json] {
            if let Err(error) = parsed {
                explains(error)?;
            }
        }
        // The same document, in either syntax, is read the same. (Not
        // always taken by both: serde_json, unlike YAML, reads a struct
        // from an array of its fields' values, `runtime_fraction: [1]`.)
        if let (Ok(yaml), Ok(json)) = (&from_yaml, &from_json) {
            prop_assert_eq!(yaml, json);
        }
        if let Ok(config) = from_json {
            routes(&config, &requests)?;
        }
    }
}

/// A configuration that loaded compiles, and routes any request or says why not.
fn routes(config: &MeshConfig, requests: &[Request]) -> Result<(), TestCaseError> {
    let table = match bounded(|| RouteTable::new(config)) {
        Ok(table) => table,
        Err(error) => {
            return Err(TestCaseError::fail(format!(
                "a valid configuration does not compile: {error}"
            )));
        }
    };
    for request in requests {
        let Some(request) = request.build() else {
            continue;
        };
        match bounded(|| table.decide(&request)) {
            Ok(decision) => {
                prop_assert!(!decision.route().is_empty() || !decision.virtual_host().is_empty());
                let mut sent = request;
                if let Err(error) = bounded(|| decision.apply(&mut sent)) {
                    prop_assert!(!error.message().is_empty(), "{error:?}");
                }
            }
            Err(error) => prop_assert!(!error.message().is_empty(), "{error:?}"),
        }
    }
    Ok(())
}

/// A request's parts, built into one when `http` takes them.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    authority: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    fn build(&self) -> Option<http::Request<()>> {
        let mut request = http::Request::builder()
            .method(self.method.as_str())
            .uri(format!("http://{}{}", self.authority, self.path))
            .body(())
            .ok()?;
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_bytes(value),
            ) {
                request.headers_mut().append(name, value);
            }
        }
        Some(request)
    }
}

const AUTHORITIES: &[&str] = &[
    "shop",
    "shop.internal:8080",
    "a.shop.internal",
    "shop.example",
    "reviews",
    "vh",
    "a.example",
    "x.example",
    "a.example:80",
    "[::1]:80",
];
const PATHS: &[&str] = &[
    "/",
    "/cart",
    "/cart/1",
    "/CART",
    "/cartx",
    "/a",
    "/a/b",
    "/v1/x",
    "/public/../admin",
    "//a///b",
    "/%2e%2e/a",
    "/a?q=1&debug=1",
    "/a?trace",
    "/x%41",
];
const HEADERS: &[&str] = &[
    "x-tenant",
    "x-user",
    "x-a",
    "cookie",
    "x-canary",
    "host",
    "grpc-timeout",
    "x-cluster",
];

fn request() -> impl Strategy<Value = Request> {
    let method =
        proptest::sample::select(vec!["GET", "POST", "PUT", "CONNECT"]).prop_map(str::to_owned);
    let authority = prop_oneof![
        3 => proptest::sample::select(AUTHORITIES).prop_map(str::to_owned),
        1 => "[a-z0-9.:*-]{0,12}",
    ];
    let path = prop_oneof![
        3 => proptest::sample::select(PATHS).prop_map(str::to_owned),
        1 => "/[ -~]{0,20}",
    ];
    let header = (
        proptest::sample::select(HEADERS).prop_map(str::to_owned),
        prop_oneof![
            proptest::sample::select(vec!["c1", "c2", "gold", "1", "a", "100m"])
                .prop_map(|v| v.as_bytes().to_vec()),
            "[a-zA-Z0-9=;, -]{0,10}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..8),
        ],
    );
    (
        method,
        authority,
        path,
        proptest::collection::vec(header, 0..4),
    )
        .prop_map(|(method, authority, path, headers)| Request {
            method,
            authority,
            path,
            headers,
        })
}

/// A path rule, with values that overlap the requests' paths.
fn path_rule() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        9 => proptest::sample::select(vec!["/", "/a", "/cart", "/a/", "/v1", "/a/b", "/x%41"]).prop_map(str::to_owned),
        1 => "/[a-z/.%*]{0,8}",
    ];
    let regex = prop_oneof![
        9 => proptest::sample::select(vec!["/.*", "/v[0-9]+/.*", "/a|/b", "/(a|b)?", ".*x"]).prop_map(str::to_owned),
        1 => "[/a-z.*+?()|\\[\\]{}0-9]{0,12}",
    ];
    prop_oneof![
        path.clone().prop_map(|p| json!({ "prefix": p })),
        path.clone().prop_map(|p| json!({ "path": p })),
        path.prop_map(|p| json!({ "path_separated_prefix": p })),
        regex.prop_map(|r| json!({ "safe_regex": { "regex": r } })),
    ]
}

fn string_rule() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        proptest::sample::select(vec!["gold", "1", "", "a", "A", "=", "x;y"])
            .prop_map(str::to_owned),
        "[a-zA-Z0-9]{0,4}",
    ];
    prop_oneof![
        text.clone().prop_map(|t| json!({ "exact": t })),
        text.clone().prop_map(|t| json!({ "prefix": t })),
        text.clone().prop_map(|t| json!({ "suffix": t })),
        text.prop_map(|t| json!({ "contains": t })),
        prop_oneof![
            9 => proptest::sample::select(vec!["g.*", "[0-9]+", "a|b", ""]).prop_map(str::to_owned),
            1 => "[a-z.*+?()|0-9]{0,8}",
        ]
        .prop_map(|r| json!({ "safe_regex": { "regex": r } })),
    ]
}

fn header_rule() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        9 => proptest::sample::select(vec!["x-tenant", "x-user", "x-a", ":method", ":path", ":authority", ":scheme", "host"])
            .prop_map(str::to_owned),
        1 => "[a-z:-]{0,6}",
    ];
    let rule = prop_oneof![
        3 => string_rule(),
        1 => any::<bool>().prop_map(|p| json!({ "present": p })),
        1 => (-3..3i64, -3..3i64).prop_map(|(start, end)| json!({ "range": { "start": start, "end": end } })),
    ];
    (name, rule, any::<bool>(), any::<bool>()).prop_map(
        |(name, mut rule, ignore_case, invert_match)| {
            let fields = rule.as_object_mut().expect("a rule is an object");
            fields.insert("name".to_owned(), Value::from(name));
            fields.insert("ignore_case".to_owned(), Value::from(ignore_case));
            fields.insert("invert_match".to_owned(), Value::from(invert_match));
            rule
        },
    )
}

fn route() -> impl Strategy<Value = Value> {
    let query = (
        proptest::sample::select(vec!["q", "debug", "trace"]),
        proptest::option::of(string_rule()),
    )
        .prop_map(|(name, rule)| match rule {
            Some(rule) => json!({ "name": name, "string_match": rule }),
            None => json!({ "name": name, "present_match": true }),
        });
    let destination = prop_oneof![
        proptest::sample::select(vec!["c1", "c2"]).prop_map(|c| json!({ "cluster": c })),
        (0..5u32, 0..5u32).prop_map(|(a, b)| json!({
            "weighted_clusters": { "clusters": [{ "name": "c1", "weight": a }, { "name": "c2", "weight": b }] }
        })),
        Just(json!({ "cluster_header": "x-cluster" })),
    ];
    (
        path_rule(),
        any::<bool>(),
        prop_oneof![2 => Just(Vec::new()), 1 => proptest::collection::vec(header_rule(), 1..3)],
        prop_oneof![3 => Just(Vec::new()), 1 => proptest::collection::vec(query, 1..2)],
        destination,
    )
        .prop_map(|(path, case_sensitive, headers, query, action)| {
            let mut matcher = path.as_object().cloned().unwrap_or_default();
            matcher.insert("case_sensitive".to_owned(), Value::from(case_sensitive));
            matcher.insert("headers".to_owned(), Value::from(headers));
            matcher.insert("query_parameters".to_owned(), Value::from(query));
            json!({ "name": "", "match": matcher, "route": action })
        })
}

fn virtual_host() -> impl Strategy<Value = Value> {
    let domain = prop_oneof![
        9 => proptest::sample::select(vec!["*", "*", "a.example", "*.example", "a.*", "a.example:80", "vh", "*.a.example"])
            .prop_map(str::to_owned),
        1 => "[a-z.*:0-9]{0,8}",
    ];
    (
        proptest::collection::vec(domain, 1..3),
        proptest::collection::vec(route(), 1..6),
    )
        .prop_map(|(domains, routes)| json!({ "name": "", "domains": domains, "routes": routes }))
}

fn configuration() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(virtual_host(), 1..4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(mut virtual_hosts, normalize_path, merge_slashes, catch_all)| {
                // Names and domains unique, so that most configurations load.
                let mut taken = std::collections::HashSet::new();
                for (i, vhost) in virtual_hosts.iter_mut().enumerate() {
                    vhost["name"] = Value::from(format!("vh{i}"));
                    if let Some(domains) = vhost["domains"].as_array_mut() {
                        domains.retain(|d| taken.insert(d.to_string()));
                    }
                    if let Some(routes) = vhost["routes"].as_array_mut() {
                        if catch_all {
                            routes.push(
                                json!({ "match": { "prefix": "/" }, "route": { "cluster": "c1" } }),
                            );
                        }
                        for (j, route) in routes.iter_mut().enumerate() {
                            route["name"] = Value::from(format!("r{j}"));
                        }
                    }
                }
                let mut config = Map::new();
                config.insert("virtual_hosts".to_owned(), Value::from(virtual_hosts));
                config.insert("normalize_path".to_owned(), Value::from(normalize_path));
                config.insert("merge_slashes".to_owned(), Value::from(merge_slashes));
                config.insert(
                    "clusters".to_owned(),
                    json!([
                        { "name": "c1", "endpoints": [{ "address": "127.0.0.1:1" }] },
                        { "name": "c2", "endpoints": [{ "address": "127.0.0.1:2" }] },
                    ]),
                );
                Value::Object(config)
            },
        )
}

proptest! {
    #[test]
    fn a_route_table_from_arbitrary_routes_routes_arbitrary_requests(
        config in configuration(),
        requests in proptest::collection::vec(request(), 1..6),
    ) {
        let text = config.to_string();
        match bounded(|| MeshConfig::from_json(&text)) {
            Ok(config) => routes(&config, &requests)?,
            Err(error) => explains(&error)?,
        }
    }
}
