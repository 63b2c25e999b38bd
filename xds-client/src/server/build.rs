//! Builders for the resources a proxyless client needs, for tests and examples:
//! the shapes gRPC's and meshlib's clients expect, without the protobuf nesting.
//!
//! ```
//! use meshlib_xds::server::{Snapshot, build};
//!
//! let snapshot = Snapshot::new("1")
//!     .with(build::api_listener("greeter", "greeter-routes"))
//!     .with(build::route_configuration(
//!         "greeter-routes",
//!         vec![build::virtual_host("greeter", &["greeter"], vec![build::prefix_route("all", "/", &[("greeter", 1)])])],
//!     ))
//!     .with(build::eds_cluster("greeter"))
//!     .with(build::cluster_load_assignment("greeter", &["127.0.0.1:50051".parse().unwrap()]));
//! assert_eq!(snapshot.version(), "1");
//! ```

use std::net::SocketAddr;

use prost::{Message, Name};

use crate::pb::envoy::config::cluster::v3::{Cluster, cluster};
use crate::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ConfigSource, Locality, SocketAddress, address, config_source,
    socket_address,
};
use crate::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use crate::pb::envoy::config::listener::v3::{ApiListener, Listener};
use crate::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster, header_matcher, route, route_action, route_match, weighted_cluster,
};
use crate::pb::envoy::extensions::filters::http::router::v3::Router;
use crate::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use crate::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use crate::pb::google::protobuf::{Any, UInt32Value};

/// Packs `message` into an `Any`.
pub fn any<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// `{ ads: {} }`: fetch over the same ADS stream.
pub fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// An API listener named `name` whose HttpConnectionManager takes its routes
/// from RDS `route_config`, with the router filter.
pub fn api_listener(name: &str, route_config: &str) -> Listener {
    let manager = HttpConnectionManager {
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config.to_owned(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: name.to_owned(),
        api_listener: Some(ApiListener {
            api_listener: Some(any(&manager)),
        }),
        ..Default::default()
    }
}

/// `listener` (an API listener, as [`api_listener`] makes) with an HTTP
/// filter named `name` of config `typed_config` ahead of its router.
pub fn with_http_filter(mut listener: Listener, name: &str, typed_config: Any) -> Listener {
    let Some(api) = listener
        .api_listener
        .as_mut()
        .and_then(|a| a.api_listener.as_mut())
    else {
        return listener;
    };
    let Ok(mut manager) = HttpConnectionManager::decode(api.value.as_slice()) else {
        return listener;
    };
    manager.http_filters.insert(
        0,
        HttpFilter {
            name: name.to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(typed_config)),
            ..Default::default()
        },
    );
    *api = any(&manager);
    listener
}

/// A RouteConfiguration of these virtual hosts.
pub fn route_configuration(name: &str, virtual_hosts: Vec<VirtualHost>) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_owned(),
        virtual_hosts,
        ..Default::default()
    }
}

/// A virtual host.
pub fn virtual_host(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.to_owned(),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        routes,
        ..Default::default()
    }
}

/// A route matching a path prefix, to clusters with weights (one cluster
/// with any weight routes everything to it).
pub fn prefix_route(name: &str, prefix: &str, clusters: &[(&str, u32)]) -> Route {
    Route {
        name: name.to_owned(),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(prefix.to_owned())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
                WeightedCluster {
                    clusters: clusters
                        .iter()
                        .map(|(cluster, weight)| weighted_cluster::ClusterWeight {
                            name: (*cluster).to_owned(),
                            weight: Some(UInt32Value { value: *weight }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The same route, also requiring header `name` to equal `value`.
pub fn with_exact_header(mut route: Route, name: &str, value: &str) -> Route {
    if let Some(m) = &mut route.r#match {
        m.headers.push(HeaderMatcher {
            name: name.to_owned(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(value.to_owned())),
                    ..Default::default()
                },
            )),
            ..Default::default()
        });
    }
    route
}

/// An EDS cluster fetched over ADS, round robin.
pub fn eds_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        ..Default::default()
    }
}

/// An aggregate cluster (`envoy.clusters.aggregate`, gRFC A37) over
/// `clusters`, most preferred first.
pub fn aggregate_cluster(name: &str, clusters: &[&str]) -> Cluster {
    use crate::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig;
    let config = ClusterConfig {
        clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
    };
    Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::ClusterType(
            cluster::CustomClusterType {
                name: "envoy.clusters.aggregate".to_owned(),
                typed_config: Some(any(&config)),
            },
        )),
        // Left at its default: gRPC ignores it but NACKs CLUSTER_PROVIDED,
        // which Envoy requires here; meshlib accepts either.
        ..Default::default()
    }
}

/// A `LOGICAL_DNS` cluster resolving `host` by the system's resolver, its
/// one endpoint at `port`; IPv4 only (`localhost` may also be `::1`, where a
/// loopback test's server does not listen), a field gRPC ignores.
pub fn logical_dns_cluster(name: &str, host: &str, port: u16) -> Cluster {
    Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::LogicalDns as i32,
        )),
        dns_lookup_family: cluster::DnsLookupFamily::V4Only as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_owned(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(Address {
                            address: Some(address::Address::SocketAddress(SocketAddress {
                                address: host.to_owned(),
                                port_specifier: Some(socket_address::PortSpecifier::PortValue(
                                    u32::from(port),
                                )),
                                ..Default::default()
                            })),
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One locality (the empty one, weight 1, priority 0) of healthy endpoints
/// at `addresses`.
pub fn cluster_load_assignment(cluster: &str, addresses: &[SocketAddr]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            // gRPC's clients refuse a group without its locality.
            locality: Some(Locality::default()),
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            lb_endpoints: addresses.iter().map(|a| lb_endpoint(*a)).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One endpoint at `address`.
pub fn lb_endpoint(address: SocketAddr) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: address.ip().to_string(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                        address.port(),
                    ))),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}
