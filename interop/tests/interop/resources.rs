//! The xDS resources the scenarios serve: one API listener `interop-service`
//! whose routes send to clusters of the interop backends.

use std::net::SocketAddr;

use meshlib_xds::pb::envoy::config::cluster::v3::{Cluster, cluster};
use meshlib_xds::pb::envoy::config::core::v3::Locality;
use meshlib_xds::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use meshlib_xds::pb::envoy::config::route::v3::{
    HeaderMatcher, RetryPolicy, Route, RouteMatch, header_matcher, retry_policy, route,
    route_action, route_match,
};
use meshlib_xds::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use meshlib_xds::pb::envoy::r#type::v3::Int64Range;
use meshlib_xds::pb::google::protobuf::{BoolValue, Duration, UInt32Value};
use meshlib_xds::server::Snapshot;
use meshlib_xds::server::build::{
    api_listener, eds_cluster, lb_endpoint, prefix_route, route_configuration, virtual_host,
};

/// The service name: the clients' target is `xds:///interop-service`.
pub(crate) const SERVICE: &str = "interop-service";

/// The route configuration the listener names.
pub(crate) const ROUTES: &str = "interop-routes";

/// A cluster and the backends (indices) behind it.
pub(crate) type ClusterSpec<'a> = (&'a str, &'a [usize]);

/// The listener and route configuration for `routes`, with an EDS cluster
/// per entry of `clusters` over the backends it names.
pub(crate) fn snapshot(
    version: u64,
    backends: &[SocketAddr],
    routes: Vec<Route>,
    clusters: &[ClusterSpec<'_>],
) -> Snapshot {
    let mut snapshot = Snapshot::new(version.to_string())
        .with(api_listener(SERVICE, ROUTES))
        .with(route_configuration(
            ROUTES,
            vec![virtual_host("interop", &[SERVICE], routes)],
        ));
    for &(name, members) in clusters {
        // Not `build::cluster_load_assignment`: its locality has no
        // `locality` field, which gRPC C-core NACKs.
        snapshot = snapshot
            .with(eds_cluster(name))
            .with(prioritized(name, backends, &[members]));
    }
    snapshot
}

/// Everything to `cluster`.
pub(crate) fn to(cluster: &str) -> Vec<Route> {
    vec![prefix_route("default", "/", &[(cluster, 1)])]
}

/// Everything split between clusters by weight.
pub(crate) fn split(clusters: &[(&str, u32)]) -> Vec<Route> {
    vec![prefix_route("split", "/", clusters)]
}

/// How a route matches the request path.
#[derive(Clone)]
pub(crate) enum Path<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
    ExactIgnoringCase(&'a str),
}

/// A route matching `path` to `cluster`, before the default route to `default`.
pub(crate) fn path_route(path: Path<'_>, cluster: &str, default: &str) -> Vec<Route> {
    let mut special = prefix_route("special", "/", &[(cluster, 1)]);
    let m = special.r#match.get_or_insert_with(RouteMatch::default);
    use route_match::PathSpecifier as P;
    m.path_specifier = Some(match path {
        Path::Exact(p) => P::Path(p.to_owned()),
        Path::Prefix(p) => P::Prefix(p.to_owned()),
        Path::Regex(r) => P::SafeRegex(regex(r)),
        Path::ExactIgnoringCase(p) => {
            m.case_sensitive = Some(BoolValue { value: false });
            P::Path(p.to_owned())
        }
    });
    let mut routes = vec![special];
    routes.extend(to(default));
    routes
}

/// How a route matches a header.
#[derive(Clone)]
pub(crate) enum Header<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Suffix(&'a str),
    Present,
    Regex(&'a str),
    Range(i64, i64),
    /// Exact, inverted.
    Not(&'a str),
}

/// A route matching header `name` by `rule` to `cluster`, before the
/// default route to `default`.
pub(crate) fn header_route(
    name: &str,
    rule: Header<'_>,
    cluster: &str,
    default: &str,
) -> Vec<Route> {
    use header_matcher::HeaderMatchSpecifier as S;
    let string = |pattern| {
        S::StringMatch(StringMatcher {
            match_pattern: Some(pattern),
            ..Default::default()
        })
    };
    let mut matcher = HeaderMatcher {
        name: name.to_owned(),
        ..Default::default()
    };
    matcher.header_match_specifier = Some(match rule {
        Header::Exact(v) => string(string_matcher::MatchPattern::Exact(v.to_owned())),
        Header::Prefix(v) => string(string_matcher::MatchPattern::Prefix(v.to_owned())),
        Header::Suffix(v) => string(string_matcher::MatchPattern::Suffix(v.to_owned())),
        Header::Regex(r) => string(string_matcher::MatchPattern::SafeRegex(regex(r))),
        Header::Present => S::PresentMatch(true),
        Header::Range(start, end) => S::RangeMatch(Int64Range { start, end }),
        Header::Not(v) => {
            matcher.invert_match = true;
            string(string_matcher::MatchPattern::Exact(v.to_owned()))
        }
    });
    let mut special = prefix_route("special", "/", &[(cluster, 1)]);
    if let Some(m) = &mut special.r#match {
        m.headers.push(matcher);
    }
    let mut routes = vec![special];
    routes.extend(to(default));
    routes
}

fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_owned(),
        ..Default::default()
    }
}

/// Everything to `cluster`, retried on `UNAVAILABLE` up to `num_retries`
/// times (gRFC A44), with a short backoff so a window of RPCs stays quick.
pub(crate) fn retried(cluster: &str, num_retries: u32) -> Vec<Route> {
    let mut routes = to(cluster);
    if let Some(route::Action::Route(action)) = &mut routes[0].action {
        action.retry_policy = Some(RetryPolicy {
            retry_on: "unavailable".to_owned(),
            num_retries: Some(UInt32Value { value: num_retries }),
            retry_back_off: Some(retry_policy::RetryBackOff {
                base_interval: Some(Duration {
                    seconds: 0,
                    nanos: 5_000_000,
                }),
                max_interval: None,
            }),
            ..Default::default()
        });
    }
    routes
}

/// Everything to `cluster`, each stream bounded to `seconds` by the route's
/// `max_stream_duration` (gRFC A31).
pub(crate) fn bounded(cluster: &str, seconds: i64) -> Vec<Route> {
    let mut routes = to(cluster);
    if let Some(route::Action::Route(action)) = &mut routes[0].action {
        action.max_stream_duration = Some(route_action::MaxStreamDuration {
            max_stream_duration: Some(Duration { seconds, nanos: 0 }),
            ..Default::default()
        });
    }
    routes
}

/// Routes hashing on header `name` (ring hash affinity) to `cluster`.
pub(crate) fn hash_by_header(cluster: &str, name: &str) -> Vec<Route> {
    let mut routes = to(cluster);
    if let Some(route::Action::Route(action)) = &mut routes[0].action {
        action.hash_policy.push(route_action::HashPolicy {
            policy_specifier: Some(route_action::hash_policy::PolicySpecifier::Header(
                route_action::hash_policy::Header {
                    header_name: name.to_owned(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        });
    }
    routes
}

/// An EDS cluster balanced by ring hash.
pub(crate) fn ring_hash_cluster(name: &str) -> Cluster {
    let mut cluster = eds_cluster(name);
    cluster.lb_policy = cluster::LbPolicy::RingHash as i32;
    cluster.lb_config = Some(cluster::LbConfig::RingHashLbConfig(
        cluster::RingHashLbConfig::default(),
    ));
    cluster
}

/// Endpoints in localities by priority: `priorities[p]` are the backends of
/// priority `p`, each priority its own zone.
pub(crate) fn prioritized(
    cluster: &str,
    backends: &[SocketAddr],
    priorities: &[&[usize]],
) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_owned(),
        endpoints: priorities
            .iter()
            .enumerate()
            .map(|(priority, members)| LocalityLbEndpoints {
                locality: Some(Locality {
                    region: "r".to_owned(),
                    zone: format!("z{priority}"),
                    ..Default::default()
                }),
                load_balancing_weight: Some(UInt32Value { value: 1 }),
                priority: priority as u32,
                lb_endpoints: members.iter().map(|&i| lb_endpoint(backends[i])).collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
