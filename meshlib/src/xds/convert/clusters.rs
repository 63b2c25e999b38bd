//! Cluster and ClusterLoadAssignment → clusters and endpoints.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use meshlib_xds::pb::envoy::config::cluster::v3 as cluster;
use meshlib_xds::pb::envoy::config::core::v3 as core;
use meshlib_xds::pb::envoy::config::endpoint::v3 as endpoint;
use prost::{Message, Name};

use super::checked_duration;
use crate::config::{self, HealthStatus, LbPolicy, Locality, Protocol};

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// What a Cluster resource says about where its endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointSource {
    /// EDS, under this service name.
    Eds(String),
    /// Listed in the cluster (`STATIC`).
    Static(Assignment),
    /// Resolved from DNS by the cluster's stack (`STRICT_DNS`, `LOGICAL_DNS`).
    Dns(config::DnsDiscovery),
    /// An aggregate cluster (`envoy.clusters.aggregate`): these clusters, most
    /// preferred first, any of them aggregates too (gRFC A37).
    Aggregate(Vec<String>),
}

/// A ClusterLoadAssignment in meshlib's terms: the endpoints (each with its
/// locality and priority) and what EDS says of their balancing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Assignment {
    /// Shared: what is published to the clusters' balancers is this very list.
    pub(crate) endpoints: std::sync::Arc<[config::Endpoint]>,
    /// Empty when no locality has a weight: localities are then ignored.
    pub(crate) locality_weights: Vec<config::LocalityWeight>,
    pub(crate) overprovisioning_factor: Option<u32>,
}

impl Assignment {
    /// Puts these endpoints and their balancing into `cluster`.
    pub(crate) fn apply_to(&self, cluster: &mut config::Cluster) {
        cluster.endpoints = self.endpoints.to_vec();
        self.apply_policy_to(cluster);
    }

    /// Puts what this assignment says of balancing into `cluster`, leaving
    /// its endpoints alone.
    pub(crate) fn apply_policy_to(&self, cluster: &mut config::Cluster) {
        cluster.locality_weights = self.locality_weights.clone();
        if let Some(factor) = self.overprovisioning_factor {
            cluster.overprovisioning_factor = factor;
        }
    }
}

/// A Cluster: meshlib's cluster (endpoints left empty) and its endpoint source.
pub(crate) fn cluster(c: &cluster::Cluster) -> Result<(config::Cluster, EndpointSource), String> {
    use cluster::cluster::{ClusterDiscoveryType, DiscoveryType};
    let kind = match &c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(*t).ok(),
        Some(ClusterDiscoveryType::ClusterType(custom)) => {
            let clusters = aggregate(custom)?;
            // Its balancing is its clusters' (Envoy's CLUSTER_PROVIDED, which
            // gRPC does not require): the policy fields are not read.
            let cluster = config::Cluster::new(c.name.clone(), Vec::new());
            return Ok((cluster, EndpointSource::Aggregate(clusters)));
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
            EndpointSource::Static(self::assignment(assignment)?)
        }
        Some(DiscoveryType::StrictDns) => EndpointSource::Dns(dns(c, config::DnsMode::Strict)?),
        Some(DiscoveryType::LogicalDns) => EndpointSource::Dns(dns(c, config::DnsMode::Logical)?),
        other => {
            return Err(format!(
                "type {}: only EDS, STATIC, STRICT_DNS and LOGICAL_DNS clusters are supported",
                other.map_or("unknown".to_owned(), |t| t.as_str_name().to_owned())
            ));
        }
    };
    let lb_policy = lb_policy(c)?;
    let connect_timeout = checked_duration(c.connect_timeout.as_ref(), "connect_timeout")?
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(5));
    Ok((
        config::Cluster {
            name: c.name.clone(),
            lb_policy,
            protocol: protocol(c),
            connect_timeout,
            circuit_breakers: circuit_breakers(c)?,
            ..config::Cluster::new(c.name.clone(), Vec::new())
        },
        source,
    ))
}

/// The retry limits of the `DEFAULT` priority's circuit-breaker thresholds
/// (Envoy's defaults for what a threshold leaves out; a `circuit_breakers`
/// without a `DEFAULT` threshold gets them all). The other limits
/// (connections, pending requests, requests) are not enforced yet and are
/// not read; HIGH-priority thresholds do not apply, as meshlib routes no
/// request at high priority.
fn circuit_breakers(c: &cluster::Cluster) -> Result<Option<config::CircuitBreakers>, String> {
    let Some(breakers) = &c.circuit_breakers else {
        return Ok(None);
    };
    let mut limits = config::CircuitBreakers::default();
    let Some(default) = breakers
        .thresholds
        .iter()
        .find(|t| t.priority == core::RoutingPriority::Default as i32)
    else {
        return Ok(Some(limits));
    };
    if let Some(max) = &default.max_retries {
        limits.max_retries = max.value;
    }
    if let Some(b) = &default.retry_budget {
        let mut budget = config::RetryBudget::new();
        if let Some(percent) = &b.budget_percent {
            if !(0.0..=100.0).contains(&percent.value) {
                return Err(format!(
                    "circuit_breakers: retry_budget: budget_percent {} is not a percentage (0 to 100)",
                    percent.value
                ));
            }
            budget.budget_percent = percent.value;
        }
        if let Some(min) = &b.min_retry_concurrency {
            budget.min_retry_concurrency = min.value;
        }
        // A window of recent requests rather than those in flight: another
        // limit than the one meshlib computes, so refused rather than bent.
        if b.budget_interval
            .as_ref()
            .is_some_and(|d| d.seconds != 0 || d.nanos != 0)
        {
            return Err(
                "circuit_breakers: retry_budget: budget_interval: not supported (only 0, requests in flight)"
                    .to_owned(),
            );
        }
        limits.retry_budget = Some(budget);
    }
    Ok(Some(limits))
}

/// An aggregate cluster's clusters, from its `cluster_type`: the only custom
/// type meshlib knows (gRFC A37 identifies it by the config's type, as here).
fn aggregate(custom: &cluster::cluster::CustomClusterType) -> Result<Vec<String>, String> {
    use meshlib_xds::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig;
    let any = custom
        .typed_config
        .as_ref()
        .filter(|any| any.type_url == ClusterConfig::type_url())
        .ok_or_else(|| {
            format!(
                "cluster_type: custom type {:?} is not supported (only envoy.clusters.aggregate is)",
                custom.name
            )
        })?;
    let config = ClusterConfig::decode(any.value.as_slice())
        .map_err(|e| format!("cluster_type: aggregate ClusterConfig: {e}"))?;
    if config.clusters.is_empty() {
        return Err("cluster_type: aggregate ClusterConfig: clusters is empty".to_owned());
    }
    if let Some(i) = config.clusters.iter().position(String::is_empty) {
        return Err(format!(
            "cluster_type: aggregate ClusterConfig: clusters[{i}] is empty"
        ));
    }
    Ok(config.clusters)
}

/// The cluster's balancing policy: the first supported entry of the typed
/// `load_balancing_policy` list when there is one (gRFC A52), else the
/// `lb_policy` enum with its `lb_config`.
fn lb_policy(c: &cluster::Cluster) -> Result<LbPolicy, String> {
    use cluster::cluster::{LbConfig, LbPolicy as Lb};
    if let Some(typed) = &c.load_balancing_policy {
        return typed_lb_policy(typed, "load_balancing_policy");
    }
    let policy = match Lb::try_from(c.lb_policy) {
        Ok(Lb::RoundRobin) => LbPolicy::RoundRobin,
        Ok(Lb::Random) => LbPolicy::Random,
        Ok(Lb::LeastRequest) => {
            let config = match &c.lb_config {
                Some(LbConfig::LeastRequestLbConfig(l)) => l.choice_count.map(|n| n.value),
                _ => None,
            };
            least_request(config)?
        }
        Ok(Lb::RingHash) => {
            let (min, max, function) = match &c.lb_config {
                Some(LbConfig::RingHashLbConfig(r)) => (
                    r.minimum_ring_size.map(|n| n.value),
                    r.maximum_ring_size.map(|n| n.value),
                    r.hash_function,
                ),
                _ => (None, None, 0),
            };
            if function != 0 {
                return Err(
                    "ring_hash_lb_config: hash_function: only XX_HASH is supported".to_owned(),
                );
            }
            ring_hash(min, max)?
        }
        Ok(Lb::Maglev) => {
            let size = match &c.lb_config {
                Some(LbConfig::MaglevLbConfig(m)) => m.table_size.map(|n| n.value),
                _ => None,
            };
            maglev(size)?
        }
        Ok(Lb::LoadBalancingPolicyConfig) => {
            return Err(
                "lb_policy LOAD_BALANCING_POLICY_CONFIG: load_balancing_policy is missing"
                    .to_owned(),
            );
        }
        Ok(other) => {
            return Err(format!("lb_policy {}: not supported", other.as_str_name()));
        }
        Err(_) => return Err(format!("lb_policy {}: unknown", c.lb_policy)),
    };
    Ok(policy)
}

/// The first policy of `typed` meshlib supports (gRFC A52). `wrr_locality`
/// stands for its child: meshlib weights localities whenever EDS gives them
/// weights, as gRPC does.
fn typed_lb_policy(typed: &cluster::LoadBalancingPolicy, field: &str) -> Result<LbPolicy, String> {
    use meshlib_xds::pb::envoy::extensions::load_balancing_policies as lb;
    let mut seen = Vec::new();
    for (i, policy) in typed.policies.iter().enumerate() {
        let Some(any) = policy
            .typed_extension_config
            .as_ref()
            .and_then(|t| t.typed_config.as_ref())
        else {
            return Err(format!(
                "{field}: policies[{i}]: typed_extension_config is missing"
            ));
        };
        let decode_error = |e: prost::DecodeError| format!("{field}: policies[{i}]: {e}");
        let url = any.type_url.as_str();
        let policy = if url == lb::round_robin::v3::RoundRobin::type_url() {
            LbPolicy::RoundRobin
        } else if url == lb::random::v3::Random::type_url() {
            LbPolicy::Random
        } else if url == lb::least_request::v3::LeastRequest::type_url() {
            let l = lb::least_request::v3::LeastRequest::decode(any.value.as_slice())
                .map_err(decode_error)?;
            least_request(l.choice_count.map(|n| n.value))?
        } else if url == lb::ring_hash::v3::RingHash::type_url() {
            let r =
                lb::ring_hash::v3::RingHash::decode(any.value.as_slice()).map_err(decode_error)?;
            if r.hash_function != 0 {
                return Err(format!(
                    "{field}: ring_hash: hash_function: only XX_HASH is supported"
                ));
            }
            ring_hash(
                r.minimum_ring_size.map(|n| n.value),
                r.maximum_ring_size.map(|n| n.value),
            )?
        } else if url == lb::maglev::v3::Maglev::type_url() {
            let m = lb::maglev::v3::Maglev::decode(any.value.as_slice()).map_err(decode_error)?;
            maglev(m.table_size.map(|n| n.value))?
        } else if url == lb::wrr_locality::v3::WrrLocality::type_url() {
            let w = lb::wrr_locality::v3::WrrLocality::decode(any.value.as_slice())
                .map_err(decode_error)?;
            let child = w.endpoint_picking_policy.as_ref().ok_or_else(|| {
                format!("{field}: wrr_locality: endpoint_picking_policy is missing")
            })?;
            typed_lb_policy(
                child,
                &format!("{field}: wrr_locality: endpoint_picking_policy"),
            )?
        } else {
            seen.push(url.rsplit('/').next().unwrap_or(url).to_owned());
            continue;
        };
        return Ok(policy);
    }
    Err(format!(
        "{field}: no supported policy (found: {})",
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        }
    ))
}

/// `choice_count` as gRPC's A48 reads it: below 2 refused, above
/// [`config::MAX_CHOICE_COUNT`] (10) clamped to it.
fn least_request(choice_count: Option<u32>) -> Result<LbPolicy, String> {
    match choice_count {
        None => Ok(LbPolicy::least_request()),
        Some(n) if n >= 2 => Ok(LbPolicy::LeastRequest {
            choice_count: n.min(config::MAX_CHOICE_COUNT),
        }),
        Some(n) => Err(format!("least_request: choice_count {n} is below 2")),
    }
}

fn ring_hash(minimum: Option<u64>, maximum: Option<u64>) -> Result<LbPolicy, String> {
    // Envoy's defaults; its maximum is also the largest ring it allows.
    let (default_min, default_max) = (1024, 8 * 1024 * 1024);
    let (min, max) = (
        minimum.unwrap_or(default_min),
        maximum.unwrap_or(default_max),
    );
    if min == 0 || max > default_max || min > max {
        return Err(format!(
            "ring_hash: ring sizes {min}..{max} must satisfy 1 <= minimum <= maximum <= {default_max}"
        ));
    }
    Ok(LbPolicy::RingHash {
        minimum_ring_size: min,
        maximum_ring_size: max,
    })
}

fn maglev(table_size: Option<u64>) -> Result<LbPolicy, String> {
    let size = match table_size {
        None => return Ok(LbPolicy::maglev()),
        Some(n) => n,
    };
    if !config::maglev_table_size_ok(size) {
        return Err(format!(
            "maglev: table_size {size} must be a prime up to 5000011"
        ));
    }
    Ok(LbPolicy::Maglev { table_size: size })
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

/// A `STRICT_DNS` or `LOGICAL_DNS` cluster's DNS source, as Envoy reads
/// one: each `load_assignment` endpoint's socket address is a name and port
/// to resolve (with that endpoint's weight, locality and priority), and the
/// cluster's `dns_*` fields pace it. gRPC (A37) takes only `LOGICAL_DNS`, with
/// one endpoint; Envoy takes both, and so does meshlib. A resolver other than
/// the system's (`typed_dns_resolver_config`, `dns_resolvers`) is refused by
/// name rather than ignored.
// The `dns_*` fields are deprecated in favour of the `DnsCluster` extension,
// but Envoy still reads them and control planes (Istio among them) still send
// them.
#[allow(deprecated)]
fn dns(c: &cluster::Cluster, mode: config::DnsMode) -> Result<config::DnsDiscovery, String> {
    let custom_resolvers = !c.dns_resolvers.is_empty();
    if c.typed_dns_resolver_config.is_some() || custom_resolvers {
        return Err(
            "typed_dns_resolver_config / dns_resolvers: only the system resolver is supported"
                .to_owned(),
        );
    }
    let assignment = c
        .load_assignment
        .as_ref()
        .ok_or("load_assignment: a DNS cluster names its hosts there")?;
    let mut targets = Vec::new();
    for (i, locality) in assignment.endpoints.iter().enumerate() {
        let place = locality
            .locality
            .as_ref()
            .map_or_else(Locality::default, |l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            });
        for (j, lb) in locality.lb_endpoints.iter().enumerate() {
            let field = format!("load_assignment.endpoints[{i}].lb_endpoints[{j}]");
            let Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(e)) = &lb.host_identifier
            else {
                return Err(format!("{field}: endpoint is missing"));
            };
            let Some(core::address::Address::SocketAddress(sa)) =
                e.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                return Err(format!("{field}: address: a socket address is needed"));
            };
            let port = match sa.port_specifier {
                Some(core::socket_address::PortSpecifier::PortValue(p)) => {
                    port_value(p).map_err(|e| format!("{field}: {e}"))?
                }
                _ => return Err(format!("{field}: address: port_value is missing")),
            };
            let weight = lb.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            targets.push(
                config::DnsTarget::address(sa.address.clone(), port)
                    .with_weight(weight)
                    .with_priority(locality.priority)
                    .with_locality(place.clone()),
            );
        }
    }
    let mut dns = match mode {
        config::DnsMode::Logical => {
            let [target] = <[config::DnsTarget; 1]>::try_from(targets).map_err(|targets| {
                format!(
                    "type LOGICAL_DNS: load_assignment must have exactly one endpoint, found {}",
                    targets.len()
                )
            })?;
            config::DnsDiscovery::logical(target)
        }
        _ => config::DnsDiscovery::strict(targets),
    };
    if let Some(rate) = checked_duration(c.dns_refresh_rate.as_ref(), "dns_refresh_rate")? {
        dns.refresh_rate = rate;
    }
    if let Some(rate) = &c.dns_failure_refresh_rate {
        let base = checked_duration(
            rate.base_interval.as_ref(),
            "dns_failure_refresh_rate.base_interval",
        )?
        .ok_or("dns_failure_refresh_rate.base_interval: field not present")?;
        let max = checked_duration(
            rate.max_interval.as_ref(),
            "dns_failure_refresh_rate.max_interval",
        )?
        .unwrap_or(base * 10);
        dns.failure_refresh_rate = Some(config::FailureRefresh::new(base, max));
    }
    dns.respect_ttl = c.respect_dns_ttl;
    use cluster::cluster::DnsLookupFamily as Family;
    dns.lookup_family = match Family::try_from(c.dns_lookup_family) {
        Ok(Family::Auto) => config::LookupFamily::Auto,
        Ok(Family::V4Only) => config::LookupFamily::V4Only,
        Ok(Family::V6Only) => config::LookupFamily::V6Only,
        Ok(Family::V4Preferred) => config::LookupFamily::V4Preferred,
        Ok(Family::All) => config::LookupFamily::All,
        Err(_) => {
            return Err(format!(
                "dns_lookup_family {}: unknown",
                c.dns_lookup_family
            ));
        }
    };
    let problems = dns.validate(&c.name);
    if let Some(problem) = problems.first() {
        return Err(format!("{}: {}", problem.field, problem.message));
    }
    Ok(dns)
}

/// A ClusterLoadAssignment: endpoints with their locality and priority,
/// locality weights, and the overprovisioning factor.
pub(crate) fn assignment(a: &endpoint::ClusterLoadAssignment) -> Result<Assignment, String> {
    let mut endpoints = Vec::new();
    // Each address's index, so a large assignment is checked for repeats in
    // linear time.
    let mut listed = std::collections::HashMap::new();
    let mut locality_weights: Vec<config::LocalityWeight> = Vec::new();
    let mut priorities = std::collections::BTreeSet::new();
    for (i, locality) in a.endpoints.iter().enumerate() {
        // gRPC (C-core and grpc-js) refuse a locality group without its
        // locality; Envoy takes it as the empty locality. meshlib follows gRPC.
        let Some(l) = &locality.locality else {
            return Err(format!("endpoints[{i}].locality: field not present"));
        };
        let place = Locality {
            region: l.region.clone(),
            zone: l.zone.clone(),
            sub_zone: l.sub_zone.clone(),
        };
        priorities.insert(locality.priority);
        if let Some(weight) = locality
            .load_balancing_weight
            .map(|w| w.value)
            .filter(|w| *w > 0)
        {
            if locality_weights.iter().any(|lw| lw.locality == place) {
                return Err(format!(
                    "endpoints[{i}]: locality {place:?} is listed twice"
                ));
            }
            locality_weights.push(config::LocalityWeight {
                locality: place.clone(),
                weight,
            });
        }
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
            if let Some(other) = listed.insert(address, endpoints.len()) {
                return Err(format!(
                    "{field}: address {address} is listed twice (endpoint #{other})"
                ));
            }
            endpoints.push(config::Endpoint {
                address,
                weight,
                health: health(lb.health_status),
                locality: place.clone(),
                priority: locality.priority,
            });
        }
    }
    // Priorities must run 0, 1, 2… without gaps (gRPC refuses gaps).
    if let Some((expected, found)) = priorities
        .iter()
        .enumerate()
        .find(|(expected, found)| u32::try_from(*expected).ok() != Some(**found))
    {
        return Err(format!(
            "endpoints: priority {found} is used but priority {expected} is not (priorities must not skip a level)"
        ));
    }
    let policy = a.policy.as_ref();
    if policy.is_some_and(|p| !p.drop_overloads.is_empty()) {
        return Err("policy: drop_overloads: not supported".to_owned());
    }
    let overprovisioning_factor = policy
        .and_then(|p| p.overprovisioning_factor)
        .map(|f| f.value);
    if overprovisioning_factor == Some(0) {
        return Err("policy: overprovisioning_factor must be above 0".to_owned());
    }
    // Kept for the resource's life: without the slack of its growth.
    locality_weights.shrink_to_fit();
    Ok(Assignment {
        endpoints: endpoints.into(),
        locality_weights,
        overprovisioning_factor,
    })
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
        Some(core::socket_address::PortSpecifier::PortValue(p)) => port_value(p)?,
        _ => return Err("address: port_value is missing".to_owned()),
    };
    Ok(SocketAddr::new(ip, port))
}

/// An endpoint's `port_value`: 1 to 65535 (port 0 cannot be connected to).
fn port_value(p: u32) -> Result<u16, String> {
    match u16::try_from(p) {
        Ok(0) => Err("port_value 0: an endpoint cannot be connected to on port 0".to_owned()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("port_value {p} is above 65535")),
    }
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
