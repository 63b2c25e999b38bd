//! Fuzz targets (issue 10) for the conversions, as property tests: each of
//! Listener, RouteConfiguration, Cluster and ClusterLoadAssignment from
//! arbitrary bytes (those prost decodes), and from valid resources mutated
//! on the wire, field by field and nested messages included (an
//! HttpConnectionManager inside its `Any` too), so most cases decode and
//! reach the conversion. Each conversion finishes well within
//! [`CASE_BOUND`](crate::fuzzing::CASE_BOUND), and refuses with a reason.
//! 256 cases each under `cargo test`; `PROPTEST_CASES=N` runs N.

use std::net::SocketAddr;

use meshlib_xds::pb::envoy::config::cluster::v3 as cluster;
use meshlib_xds::pb::envoy::config::endpoint::v3 as endpoint;
use meshlib_xds::pb::envoy::config::listener::v3 as listener;
use meshlib_xds::pb::envoy::config::route::v3 as route;
use meshlib_xds::pb::envoy::extensions::filters::http::router::v3::Router;
use meshlib_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use meshlib_xds::pb::envoy::r#type::matcher::v3 as matcher;
use meshlib_xds::pb::google::protobuf::{Duration, UInt32Value, UInt64Value};
use meshlib_xds::server::build;
use proptest::prelude::*;
use prost::Message;

use crate::fuzzing::bounded;

/// One field of a protobuf message on the wire.
#[derive(Debug, Clone)]
enum Wire {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
    Fixed32(u32),
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn write_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The fields of `bytes`, `None` when it is not a message.
fn fields(mut bytes: &[u8]) -> Option<Vec<(u32, Wire)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let number = u32::try_from(key >> 3).ok().filter(|n| *n > 0)?;
        let value = match key & 7 {
            0 => Wire::Varint(read_varint(&mut bytes)?),
            1 => {
                let (head, rest) = bytes.split_at_checked(8)?;
                bytes = rest;
                Wire::Fixed64(u64::from_le_bytes(head.try_into().ok()?))
            }
            2 => {
                let len = usize::try_from(read_varint(&mut bytes)?).ok()?;
                let (head, rest) = bytes.split_at_checked(len)?;
                bytes = rest;
                Wire::Bytes(head.to_vec())
            }
            5 => {
                let (head, rest) = bytes.split_at_checked(4)?;
                bytes = rest;
                Wire::Fixed32(u32::from_le_bytes(head.try_into().ok()?))
            }
            _ => return None,
        };
        out.push((number, value));
    }
    Some(out)
}

fn encode(fields: &[(u32, Wire)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (number, value) in fields {
        let kind = match value {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) => 2,
            Wire::Fixed32(_) => 5,
        };
        write_varint(u64::from(*number) << 3 | kind, &mut out);
        match value {
            Wire::Varint(n) => write_varint(*n, &mut out),
            Wire::Fixed64(n) => out.extend_from_slice(&n.to_le_bytes()),
            Wire::Bytes(b) => {
                write_varint(b.len() as u64, &mut out);
                out.extend_from_slice(b);
            }
            Wire::Fixed32(n) => out.extend_from_slice(&n.to_le_bytes()),
        }
    }
    out
}

/// One change to one field of a message, or to the message itself.
#[derive(Debug, Clone)]
enum Mutation {
    /// The field's value becomes this number or these bytes, whichever its
    /// wire type holds (another type would rarely decode).
    Set(u64, Vec<u8>),
    Drop,
    Repeat,
    /// A new field, with this number, is added to the message the field is in.
    Add(u32, Wire),
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(i64::MIN as u64),
        Just(1 << 31),
        0..20u64,
        any::<u64>(),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => "[a-z/*.:0-9]{0,6}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..12),
    ]
}

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        number().prop_map(Wire::Varint),
        any::<u64>().prop_map(Wire::Fixed64),
        any::<u32>().prop_map(Wire::Fixed32),
        bytes().prop_map(Wire::Bytes),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (number(), bytes()).prop_map(|(n, b)| Mutation::Set(n, b)),
        1 => Just(Mutation::Drop),
        2 => Just(Mutation::Repeat),
        1 => (1..40u32, wire()).prop_map(|(n, w)| Mutation::Add(n, w)),
    ]
}

/// `message` with `mutation` applied to its `target`th field, counting
/// depth first through every nested field that parses as a message.
fn mutate(message: &[u8], target: &mut usize, mutation: &Mutation) -> Vec<u8> {
    let Some(parsed) = fields(message) else {
        return message.to_vec();
    };
    let mut out = Vec::with_capacity(parsed.len() + 1);
    for (number, value) in parsed {
        match *target {
            // Done: the rest stays as it was.
            usize::MAX => out.push((number, value)),
            0 => {
                *target = usize::MAX;
                match mutation {
                    Mutation::Set(n, bytes) => out.push((
                        number,
                        match value {
                            Wire::Varint(_) => Wire::Varint(*n),
                            Wire::Fixed64(_) => Wire::Fixed64(*n),
                            Wire::Fixed32(_) => Wire::Fixed32(*n as u32),
                            // A message's bytes would rarely decode as one.
                            Wire::Bytes(old) if fields(&old).is_some_and(|f| !f.is_empty()) => {
                                Wire::Bytes(Vec::new())
                            }
                            Wire::Bytes(_) => Wire::Bytes(bytes.clone()),
                        },
                    )),
                    Mutation::Drop => {}
                    Mutation::Repeat => out.extend([(number, value.clone()), (number, value)]),
                    Mutation::Add(n, wire) => out.extend([(number, value), (*n, wire.clone())]),
                }
            }
            _ => {
                *target -= 1;
                let value = match value {
                    Wire::Bytes(inner) => Wire::Bytes(mutate(&inner, target, mutation)),
                    other => other,
                };
                out.push((number, value));
            }
        }
    }
    encode(&out)
}

/// `seed` mutated by each of `mutations` in turn.
fn mutated(seed: &[u8], mutations: &[(usize, Mutation)]) -> Vec<u8> {
    mutations
        .iter()
        .fold(seed.to_vec(), |bytes, (target, mutation)| {
            let count = count_fields(&bytes).max(1);
            mutate(&bytes, &mut (target % count), mutation)
        })
}

fn count_fields(message: &[u8]) -> usize {
    fields(message).map_or(0, |fields| {
        fields
            .iter()
            .map(|(_, value)| match value {
                Wire::Bytes(inner) => 1 + count_fields(inner),
                _ => 1,
            })
            .sum()
    })
}

fn mutations() -> impl Strategy<Value = Vec<(usize, Mutation)>> {
    proptest::collection::vec((any::<usize>(), mutation()), 1..4)
}

fn input() -> impl Strategy<Value = (usize, Vec<(usize, Mutation)>, Vec<u8>)> {
    (
        any::<usize>(),
        mutations(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
}

/// Decodes `bytes` as `M` (skipping what does not decode) and converts it,
/// within the bound; a refusal must say why.
fn converts<M: Message + Default + std::fmt::Debug, T>(
    bytes: &[u8],
    convert: impl FnOnce(&M) -> Result<T, String>,
) -> Result<(), TestCaseError> {
    let Ok(message) = M::decode(bytes) else {
        return Ok(());
    };
    if let Err(reason) = bounded(|| convert(&message)) {
        prop_assert!(!reason.is_empty(), "{message:?} refused without a reason");
    }
    Ok(())
}

fn exact(value: &str) -> matcher::StringMatcher {
    matcher::StringMatcher {
        match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(
            value.to_owned(),
        )),
        ignore_case: false,
    }
}

/// Routes using most of what the conversion reads.
fn route_configuration_seed() -> route::RouteConfiguration {
    let mut plain = build::with_exact_header(
        build::prefix_route("a", "/a", &[("c1", 3), ("c2", 1)]),
        "x-user",
        "u",
    );
    if let Some(route::route::Action::Route(action)) = &mut plain.action {
        action.timeout = Some(Duration {
            seconds: 2,
            nanos: 5,
        });
        action.retry_policy = Some(route::RetryPolicy {
            retry_on: "5xx,unavailable".to_owned(),
            num_retries: Some(UInt32Value { value: 3 }),
            ..Default::default()
        });
        action.hash_policy.push(route::route_action::HashPolicy {
            policy_specifier: Some(route::route_action::hash_policy::PolicySpecifier::Header(
                route::route_action::hash_policy::Header {
                    header_name: "x-user".to_owned(),
                    regex_rewrite: None,
                },
            )),
            terminal: false,
        });
        action.max_stream_duration = Some(route::route_action::MaxStreamDuration {
            max_stream_duration: Some(Duration {
                seconds: 3,
                nanos: 0,
            }),
            grpc_timeout_header_max: Some(Duration::default()),
            ..Default::default()
        });
    }
    let mut regex = build::prefix_route("b", "/", &[("c1", 1)]);
    if let Some(m) = &mut regex.r#match {
        m.path_specifier = Some(route::route_match::PathSpecifier::SafeRegex(
            matcher::RegexMatcher {
                regex: "/v[0-9]+/.*".to_owned(),
                ..Default::default()
            },
        ));
        m.query_parameters.push(route::QueryParameterMatcher {
            name: "q".to_owned(),
            query_parameter_match_specifier: Some(
                route::query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(exact(
                    "1",
                )),
            ),
        });
    }
    build::route_configuration(
        "rc",
        vec![build::virtual_host(
            "vh",
            &["*", "a.example"],
            vec![plain, regex],
        )],
    )
}

fn listener_seeds() -> Vec<listener::Listener> {
    let rds = build::api_listener("l", "rc");
    let manager = hcm::HttpConnectionManager {
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(
            route_configuration_seed(),
        )),
        http_filters: vec![hcm::HttpFilter {
            name: "router".to_owned(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(build::any(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        normalize_path: Some(meshlib_xds::pb::google::protobuf::BoolValue { value: true }),
        ..Default::default()
    };
    let mut inline = rds.clone();
    inline.api_listener = Some(listener::ApiListener {
        api_listener: Some(build::any(&manager)),
    });
    vec![rds, inline]
}

fn cluster_seeds() -> Vec<cluster::Cluster> {
    let mut ring = build::eds_cluster("ring");
    ring.lb_policy = cluster::cluster::LbPolicy::RingHash as i32;
    ring.lb_config = Some(cluster::cluster::LbConfig::RingHashLbConfig(
        cluster::cluster::RingHashLbConfig {
            minimum_ring_size: Some(UInt64Value { value: 64 }),
            maximum_ring_size: Some(UInt64Value { value: 4096 }),
            hash_function: 0,
        },
    ));
    ring.connect_timeout = Some(Duration {
        seconds: 1,
        nanos: 0,
    });
    vec![
        ring,
        build::aggregate_cluster("agg", &["a", "b"]),
        build::logical_dns_cluster("dns", "backend.example", 8080),
    ]
}

fn assignment_seed() -> endpoint::ClusterLoadAssignment {
    let addresses: [SocketAddr; 2] = [
        "127.0.0.1:8080".parse().expect("an address"),
        "[::1]:9090".parse().expect("an address"),
    ];
    let mut a = build::cluster_load_assignment("c", &addresses);
    let mut second = a.endpoints[0].clone();
    second.priority = 1;
    second.lb_endpoints = vec![build::lb_endpoint(
        "10.0.0.1:80".parse().expect("an address"),
    )];
    second.locality = Some(meshlib_xds::pb::envoy::config::core::v3::Locality {
        zone: "z2".to_owned(),
        ..Default::default()
    });
    second.load_balancing_weight = Some(UInt32Value { value: 7 });
    a.endpoints.push(second);
    a.policy = Some(endpoint::cluster_load_assignment::Policy {
        overprovisioning_factor: Some(UInt32Value { value: 140 }),
        ..Default::default()
    });
    a
}

/// One of `seeds`, encoded and mutated; or, for a few cases, `raw` as it is.
fn bytes_of<M: Message>(
    seeds: &[M],
    (pick, mutations, raw): &(usize, Vec<(usize, Mutation)>, Vec<u8>),
) -> Vec<u8> {
    if pick % 8 == 0 {
        return raw.clone();
    }
    mutated(&seeds[pick % seeds.len()].encode_to_vec(), mutations)
}

#[test]
fn the_seeds_convert() {
    for l in listener_seeds() {
        super::listener(&l).unwrap();
    }
    super::route_configuration(&route_configuration_seed()).unwrap();
    for c in cluster_seeds() {
        super::cluster(&c).unwrap();
    }
    super::assignment(&assignment_seed()).unwrap();
}

proptest! {
    #[test]
    fn listeners_convert_or_are_refused_with_a_reason(input in input()) {
        converts(&bytes_of(&listener_seeds(), &input), super::listener)?;
    }

    #[test]
    fn route_configurations_convert_or_are_refused_with_a_reason(input in input()) {
        converts(&bytes_of(&[route_configuration_seed()], &input), super::route_configuration)?;
    }

    #[test]
    fn clusters_convert_or_are_refused_with_a_reason(input in input()) {
        converts(&bytes_of(&cluster_seeds(), &input), super::cluster)?;
    }

    #[test]
    fn assignments_convert_or_are_refused_with_a_reason(input in input()) {
        converts(&bytes_of(&[assignment_seed()], &input), super::assignment)?;
    }
}
