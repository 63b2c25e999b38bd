//! Checked conversions from Envoy's protobufs into meshlib's model.
//!
//! Each returns the model value or the reason the resource is refused, which
//! becomes the NACK's `error_detail`. The rule (gRFC A27): a field meshlib does
//! not support is ignored when it cannot change where or how traffic goes,
//! and refused, naming the field, when it could.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use meshlib_xds::pb::envoy::config::cluster::v3 as cluster;
use meshlib_xds::pb::envoy::config::core::v3 as core;
use meshlib_xds::pb::envoy::config::endpoint::v3 as endpoint;
use meshlib_xds::pb::envoy::config::route::v3 as route;
use meshlib_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use meshlib_xds::pb::envoy::r#type::matcher::v3 as matcher;
use meshlib_xds::pb::google::protobuf;
use prost::{Message, Name};

use crate::config::{
    self, Destination, HeaderMatcher, HeaderRule, HealthStatus, LbPolicy, Locality, PathMatch,
    Protocol, RouteAction, RouteMatch, WeightedCluster,
};

/// Where a listener's routes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenerRoutes {
    /// In the listener itself.
    Inline(Vec<config::VirtualHost>),
    /// In the RouteConfiguration of this name (RDS).
    Rds(String),
}

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

pub(crate) fn duration(d: &protobuf::Duration) -> Option<Duration> {
    let seconds = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok()?;
    Some(Duration::new(seconds, nanos))
}

/// A client-side (API) listener: its HttpConnectionManager's routes.
pub(crate) fn listener(
    listener: &meshlib_xds::pb::envoy::config::listener::v3::Listener,
) -> Result<ListenerRoutes, String> {
    let api = listener
        .api_listener
        .as_ref()
        .and_then(|a| a.api_listener.as_ref())
        .ok_or(
            "api_listener: missing (a client listener carries an HttpConnectionManager there)",
        )?;
    if api.type_url != HCM_TYPE {
        return Err(format!(
            "api_listener: type {:?} is not an HttpConnectionManager",
            api.type_url
        ));
    }
    let manager = hcm::HttpConnectionManager::decode(api.value.as_slice())
        .map_err(|e| format!("api_listener: cannot decode HttpConnectionManager: {e}"))?;
    http_filters(&manager.http_filters)?;
    match manager.route_specifier {
        Some(hcm::http_connection_manager::RouteSpecifier::Rds(rds)) => {
            if rds.route_config_name.is_empty() {
                return Err("rds: route_config_name is empty".to_owned());
            }
            match rds
                .config_source
                .as_ref()
                .and_then(|s| s.config_source_specifier.as_ref())
            {
                Some(core::config_source::ConfigSourceSpecifier::Ads(_))
                | Some(core::config_source::ConfigSourceSpecifier::Self_(_)) => {}
                _ => return Err("rds: config_source must be ads or self".to_owned()),
            }
            Ok(ListenerRoutes::Rds(rds.route_config_name))
        }
        Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(config)) => {
            Ok(ListenerRoutes::Inline(route_configuration(&config)?))
        }
        Some(hcm::http_connection_manager::RouteSpecifier::ScopedRoutes(_)) => {
            Err("scoped_routes: not supported".to_owned())
        }
        None => Err("HttpConnectionManager has neither rds nor route_config".to_owned()),
    }
}

/// gRPC's rule: at least one filter, the router last; a filter meshlib does
/// not run is refused unless marked optional.
fn http_filters(filters: &[hcm::HttpFilter]) -> Result<(), String> {
    let Some((last, others)) = filters.split_last() else {
        return Err("http_filters: expected at least one HTTP filter (the router)".to_owned());
    };
    let type_of = |f: &hcm::HttpFilter| match &f.config_type {
        Some(hcm::http_filter::ConfigType::TypedConfig(any)) => any.type_url.clone(),
        _ => String::new(),
    };
    if type_of(last) != ROUTER_TYPE {
        return Err(format!(
            "http_filters: the last filter must be the router, found {:?}",
            last.name
        ));
    }
    for filter in others {
        let kind = type_of(filter);
        if kind == ROUTER_TYPE {
            return Err(format!(
                "http_filters: router {:?} is not last",
                filter.name
            ));
        }
        if !filter.is_optional {
            return Err(format!(
                "http_filters: filter {:?} ({kind}) is not supported",
                filter.name
            ));
        }
    }
    Ok(())
}

/// A RouteConfiguration's virtual hosts.
pub(crate) fn route_configuration(
    config: &route::RouteConfiguration,
) -> Result<Vec<config::VirtualHost>, String> {
    config
        .virtual_hosts
        .iter()
        .map(|vhost| {
            let routes = vhost
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    convert_route(r).map_err(|e| {
                        let label = if r.name.is_empty() {
                            format!("#{i}")
                        } else {
                            format!("{:?}", r.name)
                        };
                        format!("virtual_host {:?}: route {label}: {e}", vhost.name)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(config::VirtualHost {
                name: vhost.name.clone(),
                domains: vhost.domains.clone(),
                routes,
            })
        })
        .collect()
}

/// One route.
fn convert_route(r: &route::Route) -> Result<config::Route, String> {
    let Some(m) = &r.r#match else {
        return Err("match: missing".to_owned());
    };
    if !m.query_parameters.is_empty() {
        // gRPC skips such routes; an HTTP client must match them, which
        // comes with the routing work. Until then, refuse rather than guess.
        return Err("match: query_parameters is not supported yet".to_owned());
    }
    if m.runtime_fraction.is_some() {
        return Err("match: runtime_fraction is not supported yet".to_owned());
    }
    let path = match &m.path_specifier {
        Some(route::route_match::PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(route::route_match::PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(route::route_match::PathSpecifier::SafeRegex(r)) => {
            regex::Regex::new(&r.regex).map_err(|e| format!("match: safe_regex: {e}"))?;
            PathMatch::Regex(r.regex.clone())
        }
        Some(other) => return Err(format!("match: path specifier {other:?} is not supported")),
        None => return Err("match: no path specifier".to_owned()),
    };
    let headers = m
        .headers
        .iter()
        .map(header_matcher)
        .collect::<Result<Vec<_>, _>>()?;
    let action = match &r.action {
        Some(route::route::Action::Route(action)) => route_action(action)?,
        Some(route::route::Action::Redirect(_)) => return Err("redirect: not supported".to_owned()),
        Some(route::route::Action::DirectResponse(_)) => {
            return Err("direct_response: not supported".to_owned());
        }
        Some(_) => return Err("action: only `route` is supported".to_owned()),
        None => return Err("action: missing".to_owned()),
    };
    Ok(config::Route {
        name: r.name.clone(),
        matcher: RouteMatch {
            path,
            case_sensitive: m.case_sensitive.as_ref().is_none_or(|b| b.value),
            headers,
            query_parameters: Vec::new(),
            runtime_fraction: None,
        },
        action,
        request_headers_to_add: Vec::new(),
        request_headers_to_remove: Vec::new(),
    })
}

// The deprecated `*_match` fields are still what many control planes send.
#[allow(deprecated)]
fn header_matcher(h: &route::HeaderMatcher) -> Result<HeaderMatcher, String> {
    use route::header_matcher::HeaderMatchSpecifier as Spec;
    let field = format!("match: headers: {:?}", h.name);
    let mut ignore_case = false;
    let rule = match &h.header_match_specifier {
        Some(Spec::ExactMatch(v)) => HeaderRule::Exact(v.clone()),
        Some(Spec::PrefixMatch(v)) => HeaderRule::Prefix(v.clone()),
        Some(Spec::SuffixMatch(v)) => HeaderRule::Suffix(v.clone()),
        Some(Spec::ContainsMatch(v)) => HeaderRule::Contains(v.clone()),
        Some(Spec::SafeRegexMatch(r)) => HeaderRule::Regex(checked_regex(&r.regex, &field)?),
        Some(Spec::PresentMatch(p)) => HeaderRule::Present(*p),
        Some(Spec::RangeMatch(r)) => {
            if r.start >= r.end {
                return Err(format!("{field}: range [{}, {}) is empty", r.start, r.end));
            }
            HeaderRule::Range {
                start: r.start,
                end: r.end,
            }
        }
        Some(Spec::StringMatch(s)) => {
            ignore_case = s.ignore_case;
            use matcher::string_matcher::MatchPattern as P;
            match &s.match_pattern {
                Some(P::Exact(v)) => HeaderRule::Exact(v.clone()),
                Some(P::Prefix(v)) => HeaderRule::Prefix(v.clone()),
                Some(P::Suffix(v)) => HeaderRule::Suffix(v.clone()),
                Some(P::Contains(v)) => HeaderRule::Contains(v.clone()),
                Some(P::SafeRegex(r)) => HeaderRule::Regex(checked_regex(&r.regex, &field)?),
                _ => return Err(format!("{field}: string_match pattern not supported")),
            }
        }
        None => HeaderRule::Present(true),
    };
    Ok(HeaderMatcher {
        name: h.name.to_ascii_lowercase(),
        rule,
        ignore_case,
        invert_match: h.invert_match,
    })
}

fn checked_regex(pattern: &str, field: &str) -> Result<String, String> {
    regex::Regex::new(pattern).map_err(|e| format!("{field}: safe_regex: {e}"))?;
    Ok(pattern.to_owned())
}

fn route_action(action: &route::RouteAction) -> Result<RouteAction, String> {
    use route::route_action::ClusterSpecifier as C;
    let destination = match &action.cluster_specifier {
        Some(C::Cluster(name)) if !name.is_empty() => Destination::Cluster(name.clone()),
        Some(C::Cluster(_)) => return Err("cluster: empty name".to_owned()),
        Some(C::WeightedClusters(weighted)) => {
            let clusters: Vec<WeightedCluster> = weighted
                .clusters
                .iter()
                .map(|c| WeightedCluster {
                    name: c.name.clone(),
                    weight: c.weight.as_ref().map_or(0, |w| w.value),
                })
                .collect();
            let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
            if total == 0 {
                return Err("weighted_clusters: weights sum to 0".to_owned());
            }
            if total > u64::from(u32::MAX) {
                return Err(format!(
                    "weighted_clusters: weights sum to {total}, above 2^32-1"
                ));
            }
            Destination::WeightedClusters(clusters)
        }
        Some(C::ClusterHeader(_)) => return Err("cluster_header: not supported yet".to_owned()),
        Some(_) => return Err("cluster_specifier_plugin: not supported".to_owned()),
        None => return Err("route: no cluster specifier".to_owned()),
    };
    if !action.prefix_rewrite.is_empty() || action.regex_rewrite.is_some() {
        return Err("prefix_rewrite / regex_rewrite: not supported yet".to_owned());
    }
    if action.host_rewrite_specifier.is_some() {
        return Err("host_rewrite: not supported yet".to_owned());
    }
    Ok(RouteAction {
        destination,
        timeout: action
            .timeout
            .as_ref()
            .and_then(duration)
            .filter(|t| !t.is_zero()),
        ..RouteAction::cluster(String::new())
    })
}

/// What a Cluster resource says about where its endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointSource {
    /// EDS, under this service name.
    Eds(String),
    /// Listed in the cluster (`STATIC`).
    Static(Vec<config::Endpoint>),
}

/// A Cluster: meshlib's cluster (endpoints left empty) and its endpoint source.
pub(crate) fn cluster(c: &cluster::Cluster) -> Result<(config::Cluster, EndpointSource), String> {
    use cluster::cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy as Lb};
    let kind = match &c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(*t).ok(),
        Some(ClusterDiscoveryType::ClusterType(custom)) => {
            return Err(format!(
                "cluster_type: custom type {:?} is not supported",
                custom.name
            ));
        }
        None => Some(DiscoveryType::Static),
    };
    let source = match kind {
        Some(DiscoveryType::Eds) => {
            let eds = c.eds_cluster_config.as_ref();
            match eds
                .and_then(|e| e.eds_config.as_ref())
                .and_then(|s| s.config_source_specifier.as_ref())
            {
                Some(core::config_source::ConfigSourceSpecifier::Ads(_))
                | Some(core::config_source::ConfigSourceSpecifier::Self_(_)) => {}
                _ => return Err("eds_cluster_config: eds_config must be ads or self".to_owned()),
            }
            let service = eds.map(|e| e.service_name.clone()).unwrap_or_default();
            EndpointSource::Eds(if service.is_empty() {
                c.name.clone()
            } else {
                service
            })
        }
        Some(DiscoveryType::Static) => {
            let assignment = c
                .load_assignment
                .as_ref()
                .ok_or("type STATIC: load_assignment is missing")?;
            EndpointSource::Static(endpoints(assignment)?)
        }
        other => {
            return Err(format!(
                "type {}: only EDS and STATIC clusters are supported",
                other.map_or("unknown".to_owned(), |t| t.as_str_name().to_owned())
            ));
        }
    };
    let lb_policy = match Lb::try_from(c.lb_policy) {
        Ok(Lb::RoundRobin) => LbPolicy::RoundRobin,
        Ok(other) => {
            return Err(format!(
                "lb_policy {}: not supported yet",
                other.as_str_name()
            ));
        }
        Err(_) => return Err(format!("lb_policy {}: unknown", c.lb_policy)),
    };
    if c.load_balancing_policy.is_some() {
        return Err("load_balancing_policy: not supported yet".to_owned());
    }
    let connect_timeout = c
        .connect_timeout
        .as_ref()
        .and_then(duration)
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(5));
    Ok((
        config::Cluster {
            name: c.name.clone(),
            lb_policy,
            protocol: protocol(c),
            connect_timeout,
            ..config::Cluster::new(c.name.clone(), Vec::new())
        },
        source,
    ))
}

/// HTTP/2 when the cluster asks for it (the typed HttpProtocolOptions or the
/// deprecated `http2_protocol_options`), else HTTP/1.1 as in Envoy.
#[allow(deprecated)]
fn protocol(c: &cluster::Cluster) -> Protocol {
    use meshlib_xds::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use meshlib_xds::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
        UpstreamProtocolOptions as U, explicit_http_config::ProtocolConfig,
    };
    if c.http2_protocol_options.is_some() {
        return Protocol::Http2;
    }
    let options = c
        .typed_extension_protocol_options
        .get(HTTP_PROTOCOL_OPTIONS)
        .filter(|any| any.type_url == HttpProtocolOptions::type_url())
        .and_then(|any| HttpProtocolOptions::decode(any.value.as_slice()).ok());
    match options.and_then(|o| o.upstream_protocol_options) {
        Some(U::ExplicitHttpConfig(explicit)) => match explicit.protocol_config {
            Some(ProtocolConfig::Http2ProtocolOptions(_)) => Protocol::Http2,
            _ => Protocol::Http1,
        },
        _ => Protocol::Http1,
    }
}

/// A ClusterLoadAssignment's endpoints (priority 0; other priorities come
/// with priority failover).
pub(crate) fn endpoints(
    assignment: &endpoint::ClusterLoadAssignment,
) -> Result<Vec<config::Endpoint>, String> {
    let mut endpoints = Vec::new();
    for (i, locality) in assignment.endpoints.iter().enumerate() {
        if locality.priority != 0 {
            return Err(format!(
                "endpoints[{i}]: priority {} is not supported yet",
                locality.priority
            ));
        }
        let place = locality
            .locality
            .as_ref()
            .map_or_else(Locality::default, |l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            });
        for (j, lb) in locality.lb_endpoints.iter().enumerate() {
            let field = format!("endpoints[{i}].lb_endpoints[{j}]");
            let Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(e)) = &lb.host_identifier
            else {
                return Err(format!("{field}: endpoint is missing"));
            };
            let address =
                socket_address(e.address.as_ref()).map_err(|m| format!("{field}: {m}"))?;
            let weight = lb.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            if weight == 0 {
                return Err(format!("{field}: load_balancing_weight must be at least 1"));
            }
            endpoints.push(config::Endpoint {
                address,
                weight,
                health: health(lb.health_status),
                locality: place.clone(),
                priority: 0,
            });
        }
    }
    Ok(endpoints)
}

fn socket_address(address: Option<&core::Address>) -> Result<SocketAddr, String> {
    let Some(core::address::Address::SocketAddress(sa)) = address.and_then(|a| a.address.as_ref())
    else {
        return Err("address: only socket addresses are supported".to_owned());
    };
    let ip: IpAddr = sa.address.parse().map_err(|_| {
        format!(
            "address {:?}: only IP addresses are supported (no DNS names)",
            sa.address
        )
    })?;
    let port = match sa.port_specifier {
        Some(core::socket_address::PortSpecifier::PortValue(p)) => {
            u16::try_from(p).map_err(|_| format!("port_value {p} is above 65535"))?
        }
        _ => return Err("address: port_value is missing".to_owned()),
    };
    Ok(SocketAddr::new(ip, port))
}

/// EDS health: UNKNOWN and HEALTHY take traffic; UNHEALTHY, DRAINING (and
/// TIMEOUT, DEGRADED for now) do not.
fn health(status: i32) -> HealthStatus {
    match core::HealthStatus::try_from(status) {
        Ok(core::HealthStatus::Healthy) => HealthStatus::Healthy,
        Ok(core::HealthStatus::Unknown) => HealthStatus::Unknown,
        Ok(core::HealthStatus::Draining) => HealthStatus::Draining,
        _ => HealthStatus::Unhealthy,
    }
}
