//! Fuzz target (issue 10) for the bootstrap parser, as a property test
//! (cargo-fuzz needs nightly): arbitrary text, and a valid bootstrap mutated
//! value by value so most cases get past the JSON parser. Each case must not
//! panic, must finish within [`CASE_BOUND`], and a refusal must name the
//! field at fault or, for a document that does not parse, the position.
//!
//! `cargo test` runs proptest's default 256 cases;
//! `PROPTEST_CASES=20000 cargo test -p meshlib-xds --test fuzz` runs longer.

use std::time::{Duration, Instant};

use meshlib_xds::Bootstrap;
use proptest::prelude::*;
use serde_json::{Value, json};

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

fn seed() -> Value {
    json!({
        "xds_servers": [
            {
                "server_uri": "cp.example:18000",
                "channel_creds": [{ "type": "google_default" }, { "type": "insecure" }],
                "server_features": ["xds_v3", "ignore_resource_deletion"]
            },
            {
                "server_uri": "https://cp2.example:443",
                "channel_creds": [{ "type": "tls", "config": {
                    "ca_certificate_file": "/ca.pem",
                    "certificate_file": "/c.pem",
                    "private_key_file": "/k.pem"
                } }]
            }
        ],
        "node": {
            "id": "n1",
            "cluster": "c",
            "locality": { "region": "r", "zone": "z", "sub_zone": "s" },
            "metadata": { "a": [1, 2.5, true, null, { "b": "x" }], "c": {} }
        },
        "authorities": {
            "a.example": {
                "client_listener_resource_name_template": "xdstp://a.example/envoy.config.listener.v3.Listener/%s",
                "xds_servers": [{ "server_uri": "dns:///a.example:1", "channel_creds": [{ "type": "insecure" }] }]
            }
        },
        "client_default_listener_resource_name_template": "xdstp://a.example/l/%s",
        "certificate_providers": { "default": { "plugin_name": "file_watcher", "config": {} } }
    })
}

/// The text a bootstrap is read from: anything, JSON-ish, or deep.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[{}\\[\\]\":,0-9a-z_ ]{0,120}",
        (1..300usize).prop_map(|depth| format!(
            "{{\"node\": {{\"metadata\": {}{}",
            "{\"a\": [".repeat(depth),
            "]}".repeat(depth) + "}}"
        )),
    ]
}

/// Strings a bootstrap's fields hold, or nearly.
const STRINGS: &[&str] = &[
    "",
    "insecure",
    "tls",
    "xds_v3",
    "ignore_resource_deletion",
    "delta_ads",
    ":",
    "host:0",
    "http://h:1",
    "https://",
    "unix:/tmp/s",
    "dns:///",
    "[::1]:80",
    "%s",
    "xdstp://a.example/",
    "xdstp://b.example/%s",
    "a.example",
];

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(STRINGS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Values put in place of the seed's.
fn value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(1e300)),
        string().prop_map(Value::from),
    ];
    scalar.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The seed's nodes, depth first, as JSON pointers.
fn pointers(value: &Value, at: String, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(
                    child,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    into,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), into);
            }
        }
        _ => {}
    }
    into.push(at);
}

/// One change: a node replaced, by a value of its own kind (a string by
/// this string, a bool flipped) or of any kind, or removed from its parent.
#[derive(Debug, Clone)]
enum Mutation {
    Swap(String),
    Replace(Value),
    Remove,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => string().prop_map(Mutation::Swap),
        2 => value().prop_map(Mutation::Replace),
        1 => Just(Mutation::Remove),
    ]
}

fn mutated(mutations: &[(usize, Mutation)]) -> Value {
    let mut document = seed();
    for (target, mutation) in mutations {
        let mut all = Vec::new();
        pointers(&document, String::new(), &mut all);
        let pointer = &all[target % all.len()];
        match mutation {
            Mutation::Swap(new) => match document.pointer_mut(pointer) {
                Some(Value::String(old)) => *old = new.clone(),
                Some(Value::Bool(b)) => *b = !*b,
                _ => {}
            },
            Mutation::Replace(new) => {
                if let Some(node) = document.pointer_mut(pointer) {
                    *node = new.clone();
                }
            }
            Mutation::Remove => {
                let Some((parent, last)) = pointer.rsplit_once('/') else {
                    continue;
                };
                match document.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = last.parse::<usize>() {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    document
}

/// Reads `text`; a refusal names its field, or where the text stops parsing.
fn reads(text: &str, targets: &[String]) -> Result<(), TestCaseError> {
    match bounded(|| Bootstrap::from_json(text)) {
        Ok(bootstrap) => {
            prop_assert!(!bootstrap.servers.is_empty());
            bounded(|| bootstrap.node.to_envoy());
            for target in targets {
                // A refused target says which and why.
                if let Err(error) = bounded(|| bootstrap.listener_name(target)) {
                    let message = error.to_string();
                    prop_assert!(message.contains(&format!("{target:?}")), "{message}");
                }
                bounded(|| bootstrap.servers_for(target).map(<[_]>::len));
            }
        }
        Err(error) => {
            let message = error.to_string();
            prop_assert!(message.starts_with("xDS bootstrap: "), "{message}");
            prop_assert!(
                !error.field().is_empty()
                    || message.contains(" at line ")
                    || message.contains("EOF"),
                "{message} names no field and no position"
            );
        }
    }
    Ok(())
}

#[test]
fn the_seed_reads() {
    Bootstrap::from_json(&seed().to_string()).unwrap();
}

proptest! {
    #[test]
    fn the_bootstrap_parser_survives_any_text(
        text in text(),
        targets in proptest::collection::vec(any::<String>(), 0..2),
    ) {
        reads(&text, &targets)?;
    }

    #[test]
    fn a_mutated_bootstrap_is_read_or_refused_by_field(
        mutations in proptest::collection::vec((any::<usize>(), mutation()), 1..4),
        targets in proptest::collection::vec(any::<String>(), 0..2),
    ) {
        reads(&mutated(&mutations).to_string(), &targets)?;
    }
}
