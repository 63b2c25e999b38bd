//! The conversions, field by field: what is taken, and what is refused by name.

use meshlib_xds::pb::envoy::config::cluster::v3 as cluster;
use meshlib_xds::pb::envoy::config::core::v3 as core;
use meshlib_xds::pb::envoy::config::endpoint::v3 as endpoint;
use meshlib_xds::pb::envoy::config::route::v3 as route;
use meshlib_xds::pb::envoy::extensions::load_balancing_policies as lb;
use meshlib_xds::pb::envoy::r#type::matcher::v3 as matcher;
use meshlib_xds::pb::google::protobuf::{BoolValue, Duration, UInt32Value, UInt64Value};
use meshlib_xds::server::build;

use super::{assignment, cluster, route_configuration};
use crate::config::{
    AppendAction, Denominator, Destination, FractionalPercent, HashOn, HashPolicy, HeaderToAdd,
    LbPolicy, Locality, LocalityWeight, MaxStreamDuration, MirrorPolicy, PathMatch, RegexRewrite,
    StringRule,
};

fn one_route(r: route::Route) -> Result<crate::config::Route, String> {
    let config = build::route_configuration("rc", vec![build::virtual_host("vh", &["*"], vec![r])]);
    route_configuration(&config).map(|mut vhosts| vhosts.remove(0).routes.remove(0))
}

fn action_of(r: &mut route::Route) -> &mut route::RouteAction {
    match &mut r.action {
        Some(route::route::Action::Route(action)) => action,
        _ => panic!("the builder makes route actions"),
    }
}

fn policy_entry<M: prost::Message + prost::Name>(
    message: &M,
) -> cluster::load_balancing_policy::Policy {
    cluster::load_balancing_policy::Policy {
        typed_extension_config: Some(core::TypedExtensionConfig {
            name: M::NAME.to_owned(),
            typed_config: Some(build::any(message)),
        }),
    }
}

#[test]
fn matchers_beyond_path_and_headers_are_taken() {
    let mut r = build::prefix_route("r", "/", &[("c", 1)]);
    let m = r.r#match.as_mut().unwrap();
    m.path_specifier = Some(route::route_match::PathSpecifier::PathSeparatedPrefix(
        "/api".to_owned(),
    ));
    m.query_parameters.push(route::QueryParameterMatcher {
        name: "debug".to_owned(),
        query_parameter_match_specifier: Some(
            route::query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                matcher::StringMatcher {
                    match_pattern: Some(matcher::string_matcher::MatchPattern::Prefix(
                        "Y".to_owned(),
                    )),
                    ignore_case: true,
                },
            ),
        ),
    });
    m.runtime_fraction = Some(core::RuntimeFractionalPercent {
        default_value: Some(meshlib_xds::pb::envoy::r#type::v3::FractionalPercent {
            numerator: 25,
            denominator: 1, // TEN_THOUSAND
        }),
        runtime_key: "ignored".to_owned(),
    });
    let converted = one_route(r).unwrap();
    assert_eq!(
        converted.matcher.path,
        PathMatch::PathSeparatedPrefix("/api".to_owned())
    );
    let query = &converted.matcher.query_parameters[0];
    assert_eq!(query.name, "debug");
    let value = query.value.as_ref().unwrap();
    assert_eq!(
        (&value.rule, value.ignore_case),
        (&StringRule::Prefix("Y".to_owned()), true)
    );
    assert_eq!(
        converted.matcher.runtime_fraction,
        Some(FractionalPercent {
            numerator: 25,
            denominator: Denominator::TenThousand
        })
    );
}

#[test]
#[allow(deprecated)]
fn route_actions_are_taken() {
    let mut r = build::prefix_route("r", "/", &[("c", 1)]);
    r.request_headers_to_add.push(core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: "X-Route".to_owned(),
            value: "1".to_owned(),
            ..Default::default()
        }),
        append_action: 1, // ADD_IF_ABSENT
        ..Default::default()
    });
    r.request_headers_to_remove.push("x-secret".to_owned());
    let action = action_of(&mut r);
    action.prefix_rewrite = "/v2/".to_owned();
    action.host_rewrite_specifier = Some(
        route::route_action::HostRewriteSpecifier::HostRewriteLiteral("backend:8080".to_owned()),
    );
    action
        .request_mirror_policies
        .push(route::route_action::RequestMirrorPolicy {
            cluster: "shadow".to_owned(),
            ..Default::default()
        });
    action.hash_policy = vec![
        route::route_action::HashPolicy {
            policy_specifier: Some(route::route_action::hash_policy::PolicySpecifier::Header(
                route::route_action::hash_policy::Header {
                    header_name: "X-User".to_owned(),
                    regex_rewrite: None,
                },
            )),
            terminal: true,
        },
        route::route_action::HashPolicy {
            policy_specifier: Some(route::route_action::hash_policy::PolicySpecifier::Cookie(
                route::route_action::hash_policy::Cookie {
                    name: "session".to_owned(),
                    ..Default::default()
                },
            )),
            terminal: false,
        },
    ];
    action.max_stream_duration = Some(route::route_action::MaxStreamDuration {
        max_stream_duration: Some(Duration {
            seconds: 3,
            nanos: 0,
        }),
        grpc_timeout_header_max: Some(Duration::default()),
        grpc_timeout_header_offset: None,
    });
    let mut config =
        build::route_configuration("rc", vec![build::virtual_host("vh", &["*"], vec![r])]);
    config.virtual_hosts[0]
        .request_headers_to_add
        .push(core::HeaderValueOption {
            header: Some(core::HeaderValue {
                key: "x-vhost".to_owned(),
                value: "2".to_owned(),
                ..Default::default()
            }),
            append: Some(BoolValue { value: false }),
            ..Default::default()
        });
    let converted = route_configuration(&config)
        .unwrap()
        .remove(0)
        .routes
        .remove(0);
    let action = &converted.action;
    assert_eq!(action.prefix_rewrite.as_deref(), Some("/v2/"));
    assert_eq!(action.host_rewrite_literal.as_deref(), Some("backend:8080"));
    assert_eq!(
        action.request_mirror_policies,
        [MirrorPolicy {
            cluster: "shadow".to_owned(),
            fraction: None
        }]
    );
    assert_eq!(
        action.hash_policy,
        [
            HashPolicy {
                on: HashOn::Header("x-user".to_owned()),
                terminal: true
            },
            HashPolicy {
                on: HashOn::Cookie("session".to_owned()),
                terminal: false
            }
        ]
    );
    assert_eq!(
        action.max_stream_duration,
        Some(MaxStreamDuration {
            max_stream_duration: Some(std::time::Duration::from_secs(3)),
            grpc_timeout_header_max: Some(std::time::Duration::ZERO),
        })
    );
    // The route's own header first, then the virtual host's; the deprecated
    // `append: false` means overwrite.
    assert_eq!(
        converted.request_headers_to_add,
        [
            HeaderToAdd {
                name: "x-route".to_owned(),
                value: "1".to_owned(),
                append_action: AppendAction::AddIfAbsent
            },
            HeaderToAdd {
                name: "x-vhost".to_owned(),
                value: "2".to_owned(),
                append_action: AppendAction::OverwriteIfExistsOrAdd
            }
        ]
    );
    assert_eq!(converted.request_headers_to_remove, ["x-secret"]);
}

#[test]
fn regex_rewrites_keep_envoys_substitution() {
    let mut r = build::prefix_route("r", "/", &[("c", 1)]);
    action_of(&mut r).regex_rewrite = Some(matcher::RegexMatchAndSubstitute {
        pattern: Some(matcher::RegexMatcher {
            regex: "^/service/([^/]+)(/.*)$".to_owned(),
            ..Default::default()
        }),
        substitution: "\\2/instance/\\1".to_owned(),
    });
    assert_eq!(
        one_route(r).unwrap().action.regex_rewrite,
        Some(RegexRewrite {
            pattern: "^/service/([^/]+)(/.*)$".to_owned(),
            substitution: "\\2/instance/\\1".to_owned()
        })
    );
}

#[test]
fn what_would_change_traffic_is_refused_by_name() {
    type Change = fn(&mut route::Route);
    let cases: Vec<(Change, &str)> = vec![
        (
            |r| {
                action_of(r).cluster_specifier = Some(
                    route::route_action::ClusterSpecifier::ClusterHeader("x-cluster".to_owned()),
                )
            },
            "cluster_header: not supported over xDS",
        ),
        (
            |r| {
                action_of(r).host_rewrite_specifier = Some(
                    route::route_action::HostRewriteSpecifier::HostRewriteHeader("x".to_owned()),
                )
            },
            "host_rewrite: only host_rewrite_literal is supported",
        ),
        (
            |r| {
                action_of(r)
                    .hash_policy
                    .push(route::route_action::HashPolicy {
                        policy_specifier: Some(
                            route::route_action::hash_policy::PolicySpecifier::Cookie(
                                route::route_action::hash_policy::Cookie {
                                    name: "s".to_owned(),
                                    ttl: Some(Duration {
                                        seconds: 60,
                                        nanos: 0,
                                    }),
                                    ..Default::default()
                                },
                            ),
                        ),
                        terminal: false,
                    })
            },
            "hash_policy[0]: cookie: ttl (cookie generation): not supported",
        ),
        (
            |r| {
                let m = r.r#match.as_mut().unwrap();
                m.query_parameters.push(route::QueryParameterMatcher {
                    name: "q".to_owned(),
                    query_parameter_match_specifier: None,
                })
            },
            "match: query_parameters: \"q\": needs string_match or present_match: true",
        ),
    ];
    for (change, expected) in cases {
        let mut r = build::prefix_route("r", "/", &[("c", 1)]);
        change(&mut r);
        let error = one_route(r).unwrap_err();
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
        assert!(
            error.starts_with("virtual_host \"vh\": route \"r\": "),
            "{error}"
        );
    }
}

#[test]
fn lb_policies_come_from_the_enum_and_its_config() {
    let mut c = build::eds_cluster("c");
    c.lb_policy = cluster::cluster::LbPolicy::RingHash as i32;
    c.lb_config = Some(cluster::cluster::LbConfig::RingHashLbConfig(
        cluster::cluster::RingHashLbConfig {
            minimum_ring_size: Some(UInt64Value { value: 64 }),
            maximum_ring_size: Some(UInt64Value { value: 4096 }),
            hash_function: 0,
        },
    ));
    assert_eq!(
        cluster(&c).unwrap().0.lb_policy,
        LbPolicy::RingHash {
            minimum_ring_size: 64,
            maximum_ring_size: 4096
        }
    );
    c.lb_policy = cluster::cluster::LbPolicy::LeastRequest as i32;
    c.lb_config = None;
    assert_eq!(cluster(&c).unwrap().0.lb_policy, LbPolicy::least_request());
    c.lb_policy = cluster::cluster::LbPolicy::Maglev as i32;
    assert_eq!(cluster(&c).unwrap().0.lb_policy, LbPolicy::maglev());
    c.lb_policy = cluster::cluster::LbPolicy::Random as i32;
    assert_eq!(cluster(&c).unwrap().0.lb_policy, LbPolicy::Random);
    c.lb_config = Some(cluster::cluster::LbConfig::MaglevLbConfig(
        cluster::cluster::MaglevLbConfig {
            table_size: Some(UInt64Value { value: 1000 }),
        },
    ));
    c.lb_policy = cluster::cluster::LbPolicy::Maglev as i32;
    let error = cluster(&c).unwrap_err();
    assert!(
        error.contains("maglev: table_size 1000 must be a prime"),
        "{error}"
    );
}

#[test]
fn a_huge_maglev_table_size_is_nacked_at_once() {
    // Its primality test ran before the bound: minutes in release, an
    // overflow panic in debug.
    let mut c = build::eds_cluster("c");
    c.lb_policy = cluster::cluster::LbPolicy::Maglev as i32;
    c.lb_config = Some(cluster::cluster::LbConfig::MaglevLbConfig(
        cluster::cluster::MaglevLbConfig {
            table_size: Some(UInt64Value {
                value: 18_446_744_073_709_551_557,
            }),
        },
    ));
    let start = std::time::Instant::now();
    let error = cluster(&c).unwrap_err();
    assert!(
        error.contains("maglev: table_size 18446744073709551557 must be a prime up to 5000011"),
        "{error}"
    );
    c.lb_config = None;
    c.load_balancing_policy = Some(cluster::LoadBalancingPolicy {
        policies: vec![policy_entry(&lb::maglev::v3::Maglev {
            table_size: Some(UInt64Value { value: u64::MAX }),
            ..Default::default()
        })],
    });
    assert!(cluster(&c).unwrap_err().contains("must be a prime"));
    assert!(start.elapsed() < std::time::Duration::from_millis(100));
}

#[test]
fn choice_count_is_clamped_to_10_and_refused_below_2_as_grpc_does() {
    // 4294967295 was taken whole: 17.7 s of CPU per request.
    let mut c = build::eds_cluster("c");
    let mut with_count = |count: u32| {
        c.lb_policy = cluster::cluster::LbPolicy::LeastRequest as i32;
        c.lb_config = Some(cluster::cluster::LbConfig::LeastRequestLbConfig(
            cluster::cluster::LeastRequestLbConfig {
                choice_count: Some(UInt32Value { value: count }),
                ..Default::default()
            },
        ));
        cluster(&c).map(|(c, _)| c.lb_policy)
    };
    assert_eq!(
        with_count(u32::MAX),
        Ok(LbPolicy::LeastRequest { choice_count: 10 })
    );
    assert_eq!(
        with_count(7),
        Ok(LbPolicy::LeastRequest { choice_count: 7 })
    );
    for count in [0, 1] {
        let error = with_count(count).unwrap_err();
        assert!(
            error.contains(&format!("least_request: choice_count {count} is below 2")),
            "{error}"
        );
    }
    let mut c = build::eds_cluster("c");
    c.load_balancing_policy = Some(cluster::LoadBalancingPolicy {
        policies: vec![policy_entry(&lb::least_request::v3::LeastRequest {
            choice_count: Some(UInt32Value { value: u32::MAX }),
            ..Default::default()
        })],
    });
    assert_eq!(
        cluster(&c).unwrap().0.lb_policy,
        LbPolicy::LeastRequest { choice_count: 10 }
    );
}

#[test]
fn the_first_supported_typed_policy_wins() {
    let mut c = build::eds_cluster("c");
    let unsupported =
        lb::client_side_weighted_round_robin::v3::ClientSideWeightedRoundRobin::default();
    let ring = lb::ring_hash::v3::RingHash {
        minimum_ring_size: Some(UInt64Value { value: 10 }),
        maximum_ring_size: Some(UInt64Value { value: 100 }),
        ..Default::default()
    };
    c.load_balancing_policy = Some(cluster::LoadBalancingPolicy {
        policies: vec![policy_entry(&unsupported), policy_entry(&ring)],
    });
    assert_eq!(
        cluster(&c).unwrap().0.lb_policy,
        LbPolicy::RingHash {
            minimum_ring_size: 10,
            maximum_ring_size: 100
        }
    );

    // What gRPC's control planes send: wrr_locality around the endpoint policy.
    let wrr = lb::wrr_locality::v3::WrrLocality {
        endpoint_picking_policy: Some(cluster::LoadBalancingPolicy {
            policies: vec![policy_entry(&lb::least_request::v3::LeastRequest {
                choice_count: Some(UInt32Value { value: 3 }),
                ..Default::default()
            })],
        }),
    };
    c.load_balancing_policy = Some(cluster::LoadBalancingPolicy {
        policies: vec![policy_entry(&wrr)],
    });
    assert_eq!(
        cluster(&c).unwrap().0.lb_policy,
        LbPolicy::LeastRequest { choice_count: 3 }
    );

    c.load_balancing_policy = Some(cluster::LoadBalancingPolicy {
        policies: vec![policy_entry(&unsupported)],
    });
    let error = cluster(&c).unwrap_err();
    assert!(
        error.contains("load_balancing_policy: no supported policy (found: envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin)"),
        "{error}"
    );
}

fn locality(
    zone: &str,
    weight: Option<u32>,
    priority: u32,
    port: u16,
) -> endpoint::LocalityLbEndpoints {
    endpoint::LocalityLbEndpoints {
        locality: Some(core::Locality {
            zone: zone.to_owned(),
            ..Default::default()
        }),
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        priority,
        lb_endpoints: vec![build::lb_endpoint(([127, 0, 0, 1], port).into())],
        ..Default::default()
    }
}

#[test]
fn an_address_listed_twice_is_refused_in_linear_time() {
    // 60,000 endpoints: a pairwise check (1.8 billion comparisons) would
    // take minutes in a debug build.
    let mut addresses: Vec<std::net::SocketAddr> = (0..60_000u32)
        .map(|i| (std::net::Ipv4Addr::from(0x0a00_0000 + i), 80).into())
        .collect();
    let large = build::cluster_load_assignment("c", &addresses);
    assert_eq!(assignment(&large).unwrap().endpoints.len(), 60_000);

    addresses.push(addresses[7]);
    let repeated = build::cluster_load_assignment("c", &addresses);
    assert_eq!(
        assignment(&repeated).unwrap_err(),
        "endpoints[0].lb_endpoints[60000]: address 10.0.0.7:80 is listed twice (endpoint #7)"
    );
}

#[test]
fn assignments_carry_priorities_locality_weights_and_overprovisioning() {
    let a = endpoint::ClusterLoadAssignment {
        cluster_name: "c".to_owned(),
        endpoints: vec![
            locality("a", Some(3), 0, 1),
            locality("b", Some(1), 0, 2),
            locality("c", Some(1), 1, 3),
        ],
        policy: Some(endpoint::cluster_load_assignment::Policy {
            overprovisioning_factor: Some(UInt32Value { value: 200 }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let converted = assignment(&a).unwrap();
    let priorities: Vec<u32> = converted.endpoints.iter().map(|e| e.priority).collect();
    assert_eq!(priorities, [0, 0, 1]);
    let zone = |z: &str| Locality {
        zone: z.to_owned(),
        ..Default::default()
    };
    assert_eq!(
        converted.locality_weights,
        [
            LocalityWeight {
                locality: zone("a"),
                weight: 3
            },
            LocalityWeight {
                locality: zone("b"),
                weight: 1
            },
            LocalityWeight {
                locality: zone("c"),
                weight: 1
            }
        ]
    );
    assert_eq!(converted.overprovisioning_factor, Some(200));

    // No weights anywhere: localities are not weighted at all.
    let plain = endpoint::ClusterLoadAssignment {
        endpoints: vec![locality("a", None, 0, 1), locality("b", None, 0, 2)],
        ..Default::default()
    };
    assert!(assignment(&plain).unwrap().locality_weights.is_empty());

    // A skipped priority is refused, as gRPC refuses it.
    let gap = endpoint::ClusterLoadAssignment {
        endpoints: vec![locality("a", Some(1), 0, 1), locality("b", Some(1), 2, 2)],
        ..Default::default()
    };
    let error = assignment(&gap).unwrap_err();
    assert!(
        error.contains("priority 2 is used but priority 1 is not"),
        "{error}"
    );

    // A group without its locality is refused, as gRPC's clients refuse it
    // (Envoy would take it as the empty locality); an empty one is fine.
    let mut unplaced = locality("b", None, 0, 2);
    unplaced.locality = None;
    let missing = endpoint::ClusterLoadAssignment {
        endpoints: vec![locality("a", None, 0, 1), unplaced.clone()],
        ..Default::default()
    };
    assert_eq!(
        assignment(&missing).unwrap_err(),
        "endpoints[1].locality: field not present"
    );
    unplaced.locality = Some(Default::default());
    let empty = endpoint::ClusterLoadAssignment {
        endpoints: vec![unplaced],
        ..Default::default()
    };
    assert_eq!(assignment(&empty).unwrap().endpoints.len(), 1);
}

#[test]
fn destinations_stay_as_written() {
    let r = build::prefix_route("r", "/", &[("a", 1), ("b", 3)]);
    assert!(matches!(
        one_route(r).unwrap().action.destination,
        Destination::WeightedClusters(ref c) if c.len() == 2
    ));
}

/// A DNS cluster of `kind` naming `hosts` (name, port) in its load assignment.
#[allow(deprecated)]
fn dns_cluster(kind: cluster::cluster::DiscoveryType, hosts: &[(&str, u32)]) -> cluster::Cluster {
    let lb_endpoints = hosts
        .iter()
        .map(|(name, port)| endpoint::LbEndpoint {
            host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                endpoint::Endpoint {
                    address: Some(core::Address {
                        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
                            address: (*name).to_owned(),
                            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(
                                *port,
                            )),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                },
            )),
            load_balancing_weight: Some(UInt32Value { value: 3 }),
            ..Default::default()
        })
        .collect();
    cluster::Cluster {
        name: "ext".into(),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(kind as i32)),
        load_assignment: Some(endpoint::ClusterLoadAssignment {
            cluster_name: "ext".into(),
            endpoints: vec![endpoint::LocalityLbEndpoints {
                priority: 1,
                lb_endpoints,
                ..Default::default()
            }],
            ..Default::default()
        }),
        dns_refresh_rate: Some(Duration {
            seconds: 2,
            nanos: 0,
        }),
        respect_dns_ttl: true,
        dns_lookup_family: cluster::cluster::DnsLookupFamily::V4Only as i32,
        ..Default::default()
    }
}

#[test]
fn strict_and_logical_dns_clusters_become_dns_sources_as_envoy_reads_them() {
    use super::EndpointSource;
    use crate::config::{DnsMode, DnsTarget, LookupFamily};
    use cluster::cluster::DiscoveryType;
    let (_, source) = cluster(&dns_cluster(
        DiscoveryType::StrictDns,
        &[("a.example", 80), ("b.example", 81)],
    ))
    .unwrap();
    let EndpointSource::Dns(dns) = source else {
        panic!("{source:?}")
    };
    assert_eq!(dns.mode, DnsMode::Strict);
    assert_eq!(
        dns.targets,
        [
            DnsTarget::address("a.example", 80)
                .with_weight(3)
                .with_priority(1),
            DnsTarget::address("b.example", 81)
                .with_weight(3)
                .with_priority(1),
        ]
    );
    assert_eq!(dns.refresh_rate, std::time::Duration::from_secs(2));
    assert!(dns.respect_ttl);
    assert_eq!(dns.lookup_family, LookupFamily::V4Only);

    let (_, source) = cluster(&dns_cluster(
        DiscoveryType::LogicalDns,
        &[("a.example", 80)],
    ))
    .unwrap();
    assert!(matches!(source, EndpointSource::Dns(ref d) if d.mode == DnsMode::Logical));
}

#[test]
fn a_logical_dns_cluster_with_two_hosts_or_a_bad_name_is_refused_by_field() {
    use cluster::cluster::DiscoveryType;
    let two = cluster(&dns_cluster(
        DiscoveryType::LogicalDns,
        &[("a.example", 80), ("b.example", 80)],
    ))
    .unwrap_err();
    assert!(two.contains("exactly one endpoint, found 2"), "{two}");
    let bad = cluster(&dns_cluster(
        DiscoveryType::StrictDns,
        &[("not a name", 80)],
    ))
    .unwrap_err();
    assert!(bad.contains("not a valid DNS name"), "{bad}");
    let mut no_hosts = dns_cluster(DiscoveryType::StrictDns, &[]);
    no_hosts.load_assignment = None;
    let missing = cluster(&no_hosts).unwrap_err();
    assert!(missing.contains("load_assignment"), "{missing}");
}

#[test]
fn an_aggregate_cluster_lists_its_clusters_and_an_empty_or_unknown_one_is_refused() {
    use super::EndpointSource;
    use meshlib_xds::server::build::aggregate_cluster;
    // Envoy requires CLUSTER_PROVIDED on an aggregate, gRPC NACKs it: the
    // policy is not read either way.
    let mut provided = aggregate_cluster("svc", &["a", "b"]);
    provided.lb_policy = cluster::cluster::LbPolicy::ClusterProvided as i32;
    let (converted, source) = cluster(&provided).unwrap();
    assert_eq!(converted.name, "svc");
    assert_eq!(
        source,
        EndpointSource::Aggregate(vec!["a".into(), "b".into()])
    );

    let empty = cluster(&aggregate_cluster("svc", &[])).unwrap_err();
    assert_eq!(
        empty,
        "cluster_type: aggregate ClusterConfig: clusters is empty"
    );
    let mut unknown = aggregate_cluster("svc", &["a"]);
    if let Some(cluster::cluster::ClusterDiscoveryType::ClusterType(custom)) =
        &mut unknown.cluster_discovery_type
    {
        custom.name = "envoy.clusters.redis".into();
        custom.typed_config = None;
    }
    let unknown = cluster(&unknown).unwrap_err();
    assert!(
        unknown.contains("only envoy.clusters.aggregate is"),
        "{unknown}"
    );
}

#[test]
fn a_negative_duration_is_refused_by_field_not_taken_as_unset() {
    let negative = Duration {
        seconds: -1,
        nanos: 0,
    };
    let mut r = build::prefix_route("r", "/", &[("c", 1)]);
    action_of(&mut r).timeout = Some(negative);
    let error = one_route(r).unwrap_err();
    assert!(
        error.contains("timeout: -1s 0ns is negative or not a valid duration"),
        "{error}"
    );
    let mut c = build::eds_cluster("c");
    c.connect_timeout = Some(negative);
    let error = cluster(&c).map(drop).unwrap_err();
    assert!(
        error.contains("connect_timeout: -1s 0ns is negative"),
        "{error}"
    );
}

#[test]
fn path_normalisation_is_read_from_the_http_connection_manager() {
    use meshlib_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
    use prost::Message;
    let plain = build::api_listener("l", "rc");
    let converted = super::listener(&plain).unwrap();
    assert!(
        !converted.normalize_path && !converted.merge_slashes,
        "Envoy's defaults"
    );
    let mut listener = plain.clone();
    let api = listener
        .api_listener
        .as_mut()
        .unwrap()
        .api_listener
        .as_mut()
        .unwrap();
    let mut manager = hcm::HttpConnectionManager::decode(api.value.as_slice()).unwrap();
    manager.normalize_path = Some(BoolValue { value: true });
    manager.merge_slashes = true;
    *api = build::any(&manager);
    let converted = super::listener(&listener).unwrap();
    assert!(converted.normalize_path && converted.merge_slashes);
}

#[test]
fn an_endpoint_on_port_0_is_refused_by_field() {
    let zero: std::net::SocketAddr = ([10, 0, 0, 1], 0).into();
    let error = assignment(&build::cluster_load_assignment("c", &[zero])).unwrap_err();
    assert!(
        error.contains("endpoints[0].lb_endpoints[0]") && error.contains("port_value 0"),
        "{error}"
    );
}

#[test]
fn a_host_rewrite_literal_that_is_not_host_and_port_is_refused() {
    let mut r = build::prefix_route("r", "/", &[("c", 1)]);
    action_of(&mut r).host_rewrite_specifier = Some(
        route::route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "user@evil.com:99999".to_owned(),
        ),
    );
    let error = one_route(r).unwrap_err();
    assert!(
        error.contains("host_rewrite_literal: \"user@evil.com:99999\" is not a valid authority"),
        "{error}"
    );
}

#[test]
fn circuit_breakers_give_the_default_prioritys_retry_limits() {
    use cluster::circuit_breakers::{Thresholds, thresholds::RetryBudget};
    use meshlib_xds::pb::envoy::r#type::v3::Percent;
    let with = |thresholds: Vec<Thresholds>| {
        let mut c = build::eds_cluster("c");
        c.circuit_breakers = Some(cluster::CircuitBreakers {
            thresholds,
            ..Default::default()
        });
        cluster(&c).map(|(c, _)| c.circuit_breakers)
    };
    assert_eq!(
        cluster(&build::eds_cluster("c"))
            .unwrap()
            .0
            .circuit_breakers,
        None,
        "none sent, none set"
    );

    let high = Thresholds {
        priority: core::RoutingPriority::High as i32,
        max_retries: Some(UInt32Value { value: 99 }),
        ..Default::default()
    };
    let default = Thresholds {
        max_retries: Some(UInt32Value { value: 7 }),
        // Not enforced yet: read past, not refused.
        max_connections: Some(UInt32Value { value: 1 }),
        ..Default::default()
    };
    let breakers = with(vec![high, default]).unwrap().unwrap();
    assert_eq!(
        breakers.max_retries, 7,
        "the DEFAULT priority's, not HIGH's"
    );
    assert_eq!(breakers.retry_budget, None);
    let only_high = with(vec![high]).unwrap().unwrap();
    assert_eq!(only_high.max_retries, 3, "Envoy's default");

    let budget = |percent: f64| Thresholds {
        retry_budget: Some(RetryBudget {
            budget_percent: Some(Percent { value: percent }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let budgeted = with(vec![budget(35.0)]).unwrap().unwrap();
    let read = budgeted.retry_budget.unwrap();
    assert_eq!((read.budget_percent, read.min_retry_concurrency), (35.0, 3));
    let error = with(vec![budget(140.0)]).unwrap_err();
    assert!(
        error.contains("budget_percent 140 is not a percentage"),
        "{error}"
    );
    let mut windowed = budget(20.0);
    if let Some(b) = &mut windowed.retry_budget {
        b.budget_interval = Some(Duration {
            seconds: 1,
            nanos: 0,
        });
    }
    let error = with(vec![windowed]).unwrap_err();
    assert!(error.contains("budget_interval: not supported"), "{error}");
}

mod local_rate_limit {
    use meshlib_xds::pb::envoy::config::core::v3 as core;
    use meshlib_xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
    use meshlib_xds::pb::envoy::r#type::v3 as types;
    use meshlib_xds::pb::google::protobuf::{Duration, UInt32Value};
    use meshlib_xds::server::build;

    use super::super::listener;

    const NAME: &str = "envoy.filters.http.local_ratelimit";

    fn filter() -> LocalRateLimit {
        LocalRateLimit {
            stat_prefix: "client".to_owned(),
            token_bucket: Some(types::TokenBucket {
                max_tokens: 20,
                tokens_per_fill: Some(UInt32Value { value: 5 }),
                fill_interval: Some(Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            }),
            filter_enabled: Some(fraction(100, 0)),
            filter_enforced: Some(fraction(2_500, 1)),
            ..Default::default()
        }
    }

    fn fraction(numerator: u32, denominator: i32) -> core::RuntimeFractionalPercent {
        core::RuntimeFractionalPercent {
            default_value: Some(types::FractionalPercent {
                numerator,
                denominator,
            }),
            runtime_key: "ignored".to_owned(),
        }
    }

    fn converted(f: LocalRateLimit) -> Result<Option<crate::ratelimit::LocalRateLimit>, String> {
        let l = build::with_http_filter(build::api_listener("l", "rc"), NAME, build::any(&f));
        listener(&l).map(|c| c.local_rate_limit)
    }

    #[test]
    fn the_listeners_filter_is_the_clients_limit() {
        let limit = converted(filter()).unwrap().unwrap();
        assert_eq!(
            (
                limit.token_bucket.max_tokens,
                limit.token_bucket.tokens_per_fill
            ),
            (20, 5)
        );
        assert_eq!(
            limit.token_bucket.fill_interval,
            std::time::Duration::from_secs(1)
        );
        // 2,500 per ten thousand.
        assert_eq!((limit.filter_enabled, limit.filter_enforced), (100.0, 25.0));
        assert_eq!(limit.refusal_status(), http::StatusCode::TOO_MANY_REQUESTS);

        let mut unset = filter();
        unset.filter_enabled = None;
        assert_eq!(
            converted(unset).unwrap().unwrap().filter_enabled,
            0.0,
            "Envoy's default"
        );
        let mut no_bucket = filter();
        no_bucket.token_bucket = None;
        assert_eq!(converted(no_bucket).unwrap(), None);
    }

    #[test]
    fn what_the_client_does_not_run_is_refused_by_name() {
        let mut descriptors = filter();
        descriptors.descriptors.push(Default::default());
        let mut per_connection = filter();
        per_connection.local_rate_limit_per_downstream_connection = true;
        let mut too_fast = filter();
        too_fast.token_bucket.as_mut().unwrap().fill_interval = Some(Duration {
            seconds: 0,
            nanos: 1_000_000,
        });
        for (bad, field) in [
            (descriptors, "descriptors"),
            (per_connection, "local_rate_limit_per_downstream_connection"),
            (too_fast, "token_bucket.fill_interval"),
        ] {
            let error = converted(bad).unwrap_err();
            assert!(error.contains(NAME) && error.contains(field), "{error}");
        }

        let mut route = build::prefix_route("r", "/", &[("c", 1)]);
        route
            .typed_per_filter_config
            .insert(NAME.to_owned(), build::any(&filter()));
        let error = super::one_route(route).unwrap_err();
        assert!(error.contains("typed_per_filter_config"), "{error}");
    }
}
