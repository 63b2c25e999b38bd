//! The DNS endpoint source of a cluster, as the file writes it: Envoy's
//! `cluster.v3.Cluster` DNS fields, with Envoy's defaults. This module only
//! describes and checks a source; `discovery::dns` runs it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HealthStatus, Locality, Problem, duration};

/// Endpoints found by resolving DNS names, again and again: Envoy's
/// `STRICT_DNS` and `LOGICAL_DNS` cluster types.
///
/// The fields are Envoy's `Cluster` DNS fields (`type`, `dns_refresh_rate`,
/// `dns_failure_refresh_rate`, `respect_dns_ttl`, `dns_lookup_family`, the
/// resolvers and query timeout of `typed_dns_resolver_config`) without their
/// `dns_` prefix, since they sit in a cluster's `dns:` block:
///
/// ```yaml
/// dns:
///   mode: strict                  # or logical
///   targets:
///     - { name: reviews.default.svc.cluster.local, port: 9080 }
///     - { srv: _http._tcp.ratings.default.svc.cluster.local, priority: 1 }
///   refresh_rate: 5s
///   failure_refresh_rate: { base_interval: 1s, max_interval: 30s }
///   respect_ttl: true
///   lookup_family: v4_only        # auto | v4_only | v6_only | v4_preferred | all
///   query_timeout: 5s
///   resolvers: ["10.96.0.10:53"]  # default: /etc/resolv.conf
/// ```
///
/// `examples/config/dns.yaml` shows whole clusters.
///
/// ```
/// use std::time::Duration;
/// use meshlib::config::{DnsDiscovery, DnsTarget};
///
/// let dns: DnsDiscovery = yaml_serde::from_str(
///     "{ targets: [{ name: reviews.default.svc.cluster.local, port: 9080 }], refresh_rate: 10s }",
/// )?;
/// let mut expected = DnsDiscovery::strict(vec![DnsTarget::address("reviews.default.svc.cluster.local", 9080)]);
/// expected.refresh_rate = Duration::from_secs(10);
/// assert_eq!(dns, expected);
/// assert!(dns.validate("reviews").is_empty());
/// # Ok::<(), yaml_serde::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsDiscovery {
    /// Every address of every target (`strict`, the default) or the first
    /// address of a single target (`logical`).
    #[serde(default)]
    pub mode: DnsMode,
    /// The names resolved.
    pub targets: Vec<DnsTarget>,
    /// How often each target is resolved again (Envoy's `dns_refresh_rate`,
    /// default 5 s).
    #[serde(default = "default_refresh_rate", with = "duration")]
    pub refresh_rate: Duration,
    /// How a target that failed to resolve is retried (Envoy's
    /// `dns_failure_refresh_rate`); `None`: at `refresh_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_refresh_rate: Option<FailureRefresh>,
    /// Resolve a target again when its answer's TTL runs out instead of at
    /// `refresh_rate` (Envoy's `respect_dns_ttl`, default `false`). An answer
    /// with no records or a TTL of 0 is refreshed at `refresh_rate`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub respect_ttl: bool,
    /// Which address families are asked for (Envoy's `dns_lookup_family`).
    #[serde(default)]
    pub lookup_family: LookupFamily,
    /// How long one refresh of a target may take, the resolver's retries
    /// included, before it counts as failed (default 5 s, Envoy's c-ares
    /// `query_timeout_seconds`). A name server that is down answers nothing,
    /// so this is how soon its failure is seen.
    #[serde(default = "default_query_timeout", with = "duration")]
    pub query_timeout: Duration,
    /// The name servers asked, in order; names are then looked up as written,
    /// with no search list and no hosts file. Empty (the default): the
    /// system's `/etc/resolv.conf`, with its search domains and `ndots` (in a
    /// Kubernetes pod, `reviews` finds `reviews.<namespace>.svc.cluster.local`),
    /// and `/etc/hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<SocketAddr>,
}

fn default_refresh_rate() -> Duration {
    Duration::from_secs(5)
}

fn default_query_timeout() -> Duration {
    Duration::from_secs(5)
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl DnsDiscovery {
    /// Every address of every one of `targets` is an endpoint (Envoy's
    /// `STRICT_DNS`), with Envoy's defaults for the rest.
    pub fn strict(targets: Vec<DnsTarget>) -> Self {
        DnsDiscovery {
            mode: DnsMode::Strict,
            targets,
            refresh_rate: default_refresh_rate(),
            failure_refresh_rate: None,
            respect_ttl: false,
            lookup_family: LookupFamily::default(),
            query_timeout: default_query_timeout(),
            resolvers: Vec::new(),
        }
    }

    /// The first address `target` resolves to is the cluster's one endpoint
    /// (Envoy's `LOGICAL_DNS`), with Envoy's defaults for the rest.
    pub fn logical(target: DnsTarget) -> Self {
        DnsDiscovery {
            mode: DnsMode::Logical,
            ..Self::strict(vec![target])
        }
    }

    /// The rules the types cannot express, as problems naming `cluster` and the
    /// field; empty when there are none.
    ///
    /// ```
    /// use meshlib::config::{DnsDiscovery, DnsTarget};
    ///
    /// let dns = DnsDiscovery::strict(vec![DnsTarget::srv("_http._tcp.reviews").with_port(80)]);
    /// let problems: Vec<String> = dns.validate("reviews").iter().map(ToString::to_string).collect();
    /// assert_eq!(
    ///     problems,
    ///     ["cluster \"reviews\": dns: targets[0]: port: an SRV target takes its ports from the SRV records"]
    /// );
    /// ```
    pub fn validate(&self, cluster: &str) -> Vec<Problem> {
        let resource = format!("cluster {cluster:?}");
        let mut problems = Vec::new();
        let mut push = |field: &str, message: String| {
            problems.push(Problem {
                resource: resource.clone(),
                field: format!("dns: {field}"),
                message,
            });
        };
        if self.targets.is_empty() {
            push("targets", "lists no target".to_owned());
        }
        let mut seen = HashMap::new();
        for (i, target) in self.targets.iter().enumerate() {
            let at = format!("targets[{i}]");
            if let Err(why) = check_name(&target.name, target.kind) {
                push(
                    &format!("{at}: {}", target.kind.key()),
                    format!("{:?} is not a valid DNS name: {why}", target.name),
                );
            }
            match (target.kind, target.port) {
                (DnsTargetKind::Address, None) => push(
                    &format!("{at}: port"),
                    "an address target needs a port".to_owned(),
                ),
                (DnsTargetKind::Address, Some(0)) => {
                    push(&format!("{at}: port"), "must be above 0".to_owned())
                }
                (DnsTargetKind::Srv, Some(_)) => push(
                    &format!("{at}: port"),
                    "an SRV target takes its ports from the SRV records".to_owned(),
                ),
                _ => {}
            }
            match target.kind {
                DnsTargetKind::Address if target.weight == 0 => {
                    push(&format!("{at}: weight"), "must be at least 1".to_owned())
                }
                DnsTargetKind::Srv if target.weight != default_weight() => push(
                    &format!("{at}: weight"),
                    "an SRV target takes its weights from the SRV records; leave it out".to_owned(),
                ),
                _ => {}
            }
            let key = (target.kind, target.name.to_ascii_lowercase(), target.port);
            if let Some(first) = seen.insert(key, i) {
                push(&at, format!("listed twice (also targets[{first}])"));
            }
        }
        if self.mode == DnsMode::Logical {
            if self.targets.len() > 1 {
                push(
                    "mode",
                    format!(
                        "logical DNS takes exactly one target, found {}",
                        self.targets.len()
                    ),
                );
            }
            if self.targets.iter().any(|t| t.kind == DnsTargetKind::Srv) {
                push(
                    "mode",
                    "logical DNS resolves an address name, not an SRV name".to_owned(),
                );
            }
        }
        if self.refresh_rate.is_zero() {
            push("refresh_rate", "must be above 0".to_owned());
        }
        if self.query_timeout.is_zero() {
            push("query_timeout", "must be above 0".to_owned());
        }
        if let Some(failure) = &self.failure_refresh_rate {
            for (field, message) in failure_refresh_problems(failure) {
                push(field, message);
            }
        }
        for (i, resolver) in self.resolvers.iter().enumerate() {
            if resolver.port() == 0 {
                push(
                    &format!("resolvers[{i}]"),
                    "port must be above 0".to_owned(),
                );
            }
        }
        problems
    }
}

/// What is wrong with a `failure_refresh_rate`, as (field, message) pairs.
pub(super) fn failure_refresh_problems(failure: &FailureRefresh) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if failure.base_interval.is_zero() {
        problems.push((
            "failure_refresh_rate: base_interval",
            "must be above 0".to_owned(),
        ));
    }
    if failure.base_interval > failure.max_interval {
        problems.push((
            "failure_refresh_rate",
            format!(
                "base_interval {} is above max_interval {}",
                duration::format(failure.base_interval),
                duration::format(failure.max_interval)
            ),
        ));
    }
    problems
}

/// Checks `name` the way a resolver will read it: labels of 1 to 63 letters,
/// digits, `-` or `_` (SRV names are `_service._proto.…`), not starting or
/// ending with `-`, 253 characters at most, one trailing `.` allowed. An
/// address target may also be an IP address, which resolves to itself.
fn check_name(name: &str, kind: DnsTargetKind) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if kind == DnsTargetKind::Address && name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > 253 {
        return Err(format!("{} characters, above 253", name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label".to_owned());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("{c:?} is not allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with `-`"));
        }
    }
    Ok(())
}

/// How a cluster's targets become its endpoints.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsMode {
    /// Every address of every target is an endpoint; the set follows the
    /// answers (Envoy's `STRICT_DNS`).
    #[default]
    Strict,
    /// One target, and only the first address of its answer is the cluster's
    /// single endpoint, for a large DNS-balanced service such as an external
    /// API (Envoy's `LOGICAL_DNS`).
    Logical,
}

/// What is asked for when a name is resolved: Envoy's `DnsLookupFamily`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupFamily {
    /// IPv6 (`AAAA`) addresses; IPv4 (`A`) ones when there are none (Envoy's
    /// default, `AUTO`).
    #[default]
    Auto,
    /// Only IPv4 addresses.
    V4Only,
    /// Only IPv6 addresses.
    V6Only,
    /// IPv4 addresses; IPv6 ones when there are none.
    V4Preferred,
    /// Both IPv4 and IPv6 addresses.
    All,
}

/// The backoff for a target that failed to resolve: Envoy's
/// `Cluster.RefreshRate`. The first retry waits up to `base_interval`, each
/// next one up to twice as long as the one before, at most `max_interval`;
/// each wait is jittered. A success starts over.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawFailureRefresh", into = "RawFailureRefresh")]
pub struct FailureRefresh {
    /// The first retry's wait.
    pub base_interval: Duration,
    /// The longest wait (default ten times `base_interval`, as in Envoy).
    pub max_interval: Duration,
}

impl FailureRefresh {
    /// A backoff from `base_interval` up to `max_interval`.
    pub fn new(base_interval: Duration, max_interval: Duration) -> Self {
        FailureRefresh {
            base_interval,
            max_interval,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailureRefresh {
    #[serde(with = "duration")]
    base_interval: Duration,
    #[serde(default, with = "duration::option")]
    max_interval: Option<Duration>,
}

impl TryFrom<RawFailureRefresh> for FailureRefresh {
    type Error = String;

    fn try_from(raw: RawFailureRefresh) -> Result<Self, String> {
        let max_interval = match raw.max_interval {
            Some(max) => max,
            None => raw
                .base_interval
                .checked_mul(10)
                .ok_or_else(|| "failure_refresh_rate: base_interval is too large".to_owned())?,
        };
        Ok(FailureRefresh::new(raw.base_interval, max_interval))
    }
}

impl From<FailureRefresh> for RawFailureRefresh {
    fn from(f: FailureRefresh) -> Self {
        RawFailureRefresh {
            base_interval: f.base_interval,
            max_interval: Some(f.max_interval),
        }
    }
}

/// One name a DNS source resolves, and what its endpoints carry: Envoy's
/// `LbEndpoint` of a DNS cluster's load assignment.
///
/// In the file, an address name is `{ name: reviews.default.svc.cluster.local,
/// port: 9080 }` (its `A`/`AAAA` records, at that port) and an SRV name is
/// `{ srv: _http._tcp.reviews.default.svc.cluster.local }` (its SRV records'
/// hosts, each resolved to addresses, at the record's port).
///
/// ```
/// use meshlib::config::{DnsTarget, DnsTargetKind};
///
/// let target: DnsTarget = yaml_serde::from_str("{ srv: _grpc._tcp.ratings, priority: 1 }")?;
/// assert_eq!(target, DnsTarget::srv("_grpc._tcp.ratings").with_priority(1));
/// assert_eq!(target.kind, DnsTargetKind::Srv);
/// # Ok::<(), yaml_serde::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawDnsTarget", into = "RawDnsTarget")]
pub struct DnsTarget {
    /// The name resolved.
    pub name: String,
    /// Whether `name` has address records or SRV records.
    pub kind: DnsTargetKind,
    /// The endpoints' port, for an address name; an SRV name's endpoints take
    /// their record's port.
    pub port: Option<u16>,
    /// The endpoints' weight (default 1), for an address name; an SRV name's
    /// endpoints take their record's weight (0 counts as 1).
    pub weight: u32,
    /// The endpoints' priority (default 0, the highest). An SRV name's
    /// endpoints add their record's rank: the records of the lowest SRV
    /// priority value get this priority, those of the next value this + 1, …
    pub priority: u32,
    /// The endpoints' locality.
    pub locality: Locality,
    /// The endpoints' health (default healthy).
    pub health: HealthStatus,
}

/// Which records a [`DnsTarget`]'s name has.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsTargetKind {
    /// `A`/`AAAA` records (through any `CNAME`s): a Kubernetes ClusterIP
    /// Service's one address, a headless Service's pod addresses, an
    /// ExternalName Service's `CNAME`.
    Address,
    /// `SRV` records, such as a headless Kubernetes Service's
    /// `_port._proto.service.namespace.svc.cluster.local`.
    Srv,
}

impl DnsTargetKind {
    /// The key that names the target in the file.
    fn key(self) -> &'static str {
        match self {
            DnsTargetKind::Address => "name",
            DnsTargetKind::Srv => "srv",
        }
    }
}

fn default_weight() -> u32 {
    1
}

impl DnsTarget {
    /// The addresses of `name`, at `port`, of weight 1 and priority 0.
    pub fn address(name: impl Into<String>, port: u16) -> Self {
        DnsTarget {
            name: name.into(),
            kind: DnsTargetKind::Address,
            port: Some(port),
            weight: default_weight(),
            priority: 0,
            locality: Locality::default(),
            health: HealthStatus::default(),
        }
    }

    /// The hosts of `name`'s SRV records, at their ports, weights and priorities.
    pub fn srv(name: impl Into<String>) -> Self {
        DnsTarget {
            kind: DnsTargetKind::Srv,
            port: None,
            ..Self::address(name, 0)
        }
    }

    /// The same target with endpoints at `port`.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The same target with endpoints of `weight`.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The same target with endpoints at `priority`.
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// The same target with endpoints in `locality`.
    pub fn with_locality(mut self, locality: Locality) -> Self {
        self.locality = locality;
        self
    }
}

/// The file's shape of a target: `name` or `srv` says the kind.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnsTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    srv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default, skip_serializing_if = "super::is_zero")]
    priority: u32,
    #[serde(default, skip_serializing_if = "Locality::is_empty")]
    locality: Locality,
    #[serde(default)]
    health: HealthStatus,
}

impl TryFrom<RawDnsTarget> for DnsTarget {
    type Error = String;

    fn try_from(raw: RawDnsTarget) -> Result<Self, String> {
        let (name, kind) = match (raw.name, raw.srv) {
            (Some(name), None) => (name, DnsTargetKind::Address),
            (None, Some(name)) => (name, DnsTargetKind::Srv),
            (Some(_), Some(_)) => {
                return Err("dns target: set only one of `name` and `srv`".to_owned());
            }
            (None, None) => {
                return Err(
                    "dns target: set one of `name` (an address name, with `port`) and `srv` (an SRV name)"
                        .to_owned(),
                );
            }
        };
        Ok(DnsTarget {
            name,
            kind,
            port: raw.port,
            weight: raw.weight,
            priority: raw.priority,
            locality: raw.locality,
            health: raw.health,
        })
    }
}

impl From<DnsTarget> for RawDnsTarget {
    fn from(t: DnsTarget) -> Self {
        let (name, srv) = match t.kind {
            DnsTargetKind::Address => (Some(t.name), None),
            DnsTargetKind::Srv => (None, Some(t.name)),
        };
        RawDnsTarget {
            name,
            srv,
            port: t.port,
            weight: t.weight,
            priority: t.priority,
            locality: t.locality,
            health: t.health,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let dns: DnsDiscovery = yaml_serde::from_str(yaml).unwrap();
        let problems = dns.validate("reviews");
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_file_shape_reads_with_envoys_defaults() {
        let dns: DnsDiscovery = yaml_serde::from_str(
            "targets:
  - { name: reviews.default.svc.cluster.local, port: 9080 }
  - { srv: _http._tcp.reviews.default.svc.cluster.local, priority: 1, locality: { zone: z1 } }",
        )
        .unwrap();
        let expected = DnsDiscovery::strict(vec![
            DnsTarget::address("reviews.default.svc.cluster.local", 9080),
            DnsTarget::srv("_http._tcp.reviews.default.svc.cluster.local")
                .with_priority(1)
                .with_locality(Locality {
                    zone: "z1".to_owned(),
                    ..Locality::default()
                }),
        ]);
        assert_eq!(dns, expected);
        assert_eq!(dns.mode, DnsMode::Strict);
        assert_eq!(dns.refresh_rate, Duration::from_secs(5));
        assert_eq!(dns.failure_refresh_rate, None);
        assert!(!dns.respect_ttl);
        assert_eq!(dns.lookup_family, LookupFamily::Auto);
        assert_eq!(dns.query_timeout, Duration::from_secs(5));
        assert!(dns.resolvers.is_empty());
        assert!(dns.validate("reviews").is_empty());
    }

    #[test]
    fn every_field_reads_and_writes_back() {
        let dns: DnsDiscovery = yaml_serde::from_str(
            "mode: logical
targets: [{ name: api.example.com, port: 443, weight: 3, health: draining }]
refresh_rate: 250ms
failure_refresh_rate: { base_interval: 1s }
respect_ttl: true
lookup_family: v4_preferred
query_timeout: 2s
resolvers: [\"127.0.0.1:5353\", \"[::1]:53\"]",
        )
        .unwrap();
        assert_eq!(dns.mode, DnsMode::Logical);
        assert_eq!(dns.targets[0].weight, 3);
        assert_eq!(dns.targets[0].health, HealthStatus::Draining);
        assert_eq!(dns.refresh_rate, Duration::from_millis(250));
        // Envoy's default max_interval: ten times base_interval.
        assert_eq!(
            dns.failure_refresh_rate,
            Some(FailureRefresh::new(
                Duration::from_secs(1),
                Duration::from_secs(10)
            ))
        );
        assert!(dns.respect_ttl);
        assert_eq!(dns.lookup_family, LookupFamily::V4Preferred);
        assert_eq!(dns.query_timeout, Duration::from_secs(2));
        assert_eq!(dns.resolvers.len(), 2);
        let written = serde_json::to_string(&dns).unwrap();
        assert_eq!(serde_json::from_str::<DnsDiscovery>(&written).unwrap(), dns);
    }

    #[test]
    fn a_target_is_either_a_name_or_an_srv_name() {
        let err = yaml_serde::from_str::<DnsTarget>("{ name: a, srv: _b._tcp.c }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("set only one of `name` and `srv`"), "{err}");
        let err = yaml_serde::from_str::<DnsTarget>("{ port: 80 }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("set one of `name`"), "{err}");
        let err = yaml_serde::from_str::<DnsTarget>("{ name: a, port: 80, prot: 1 }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `prot`"), "{err}");
        let err = yaml_serde::from_str::<DnsDiscovery>("{ targets: [], refresh: 1s }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `refresh`"), "{err}");
    }

    #[test]
    fn problems_name_the_cluster_and_the_field() {
        let found = problems(
            "targets:
  - { name: \"reviews..svc\", port: 80 }
  - { name: reviews, port: 0 }
  - { name: ratings }
  - { srv: _http._tcp.ratings, port: 80, weight: 5 }
  - { name: \"-bad.example\", port: 1, weight: 0 }
  - { name: reviews, port: 0 }
  - { name: \"10.0.0.1\", port: 80 }
refresh_rate: 0s
query_timeout: 0s
failure_refresh_rate: { base_interval: 5s, max_interval: 1s }",
        );
        let expected = [
            "cluster \"reviews\": dns: targets[0]: name: \"reviews..svc\" is not a valid DNS name: it has an empty label",
            "cluster \"reviews\": dns: targets[1]: port: must be above 0",
            "cluster \"reviews\": dns: targets[2]: port: an address target needs a port",
            "cluster \"reviews\": dns: targets[3]: port: an SRV target takes its ports from the SRV records",
            "cluster \"reviews\": dns: targets[3]: weight: an SRV target takes its weights from the SRV records; leave it out",
            "cluster \"reviews\": dns: targets[4]: name: \"-bad.example\" is not a valid DNS name: label \"-bad\" starts or ends with `-`",
            "cluster \"reviews\": dns: targets[4]: weight: must be at least 1",
            "cluster \"reviews\": dns: targets[5]: port: must be above 0",
            "cluster \"reviews\": dns: targets[5]: listed twice (also targets[1])",
            "cluster \"reviews\": dns: refresh_rate: must be above 0",
            "cluster \"reviews\": dns: query_timeout: must be above 0",
            "cluster \"reviews\": dns: failure_refresh_rate: base_interval 5s is above max_interval 1s",
        ];
        assert_eq!(found, expected, "{found:#?}");
        assert_eq!(
            problems("{ targets: [], failure_refresh_rate: { base_interval: 0s } }"),
            [
                "cluster \"reviews\": dns: targets: lists no target",
                "cluster \"reviews\": dns: failure_refresh_rate: base_interval: must be above 0",
            ]
        );
    }

    #[test]
    fn logical_dns_takes_exactly_one_address_name() {
        assert_eq!(
            problems(
                "{ mode: logical, targets: [{ name: a.example, port: 80 }, { srv: _x._tcp.b.example }] }"
            ),
            [
                "cluster \"reviews\": dns: mode: logical DNS takes exactly one target, found 2",
                "cluster \"reviews\": dns: mode: logical DNS resolves an address name, not an SRV name",
            ]
        );
        assert!(problems("{ mode: logical, targets: [{ name: a.example, port: 80 }] }").is_empty());
    }

    #[test]
    fn names_are_checked_as_a_resolver_reads_them() {
        fn ok(name: &str) -> bool {
            check_name(name, DnsTargetKind::Address).is_ok()
        }
        assert!(ok("reviews"));
        assert!(ok("reviews.default.svc.cluster.local."));
        assert!(ok("_http._tcp.reviews"));
        assert!(ok("::1"));
        assert!(!ok(""));
        assert!(!ok("a b"));
        assert!(!ok("."));
        assert!(!ok(&"a".repeat(64)));
        assert!(!ok(&["a"; 128].join(".")));
        assert!(check_name("::1", DnsTargetKind::Srv).is_err());
    }

    #[test]
    fn the_example_file_parses_into_the_model() {
        // examples/config/dns.yaml loads whole, as a mesh configuration.
        let config =
            crate::config::MeshConfig::from_yaml(include_str!("../../../examples/config/dns.yaml"))
                .unwrap();
        let found: Vec<(String, DnsDiscovery)> = config
            .clusters
            .iter()
            .map(|cluster| match &cluster.discovery {
                crate::config::Discovery::Dns(dns) => (cluster.name.clone(), dns.clone()),
                other => panic!("cluster {}: {other:?}", cluster.name),
            })
            .collect();
        let [(_, reviews), (_, ratings), (_, payments)] = &found[..] else {
            panic!("expected three clusters, found {}", found.len());
        };
        assert_eq!(reviews.mode, DnsMode::Strict);
        assert_eq!(
            reviews.targets[0],
            DnsTarget::address("reviews.default.svc.cluster.local", 9080)
        );
        assert_eq!(ratings.targets[0].kind, DnsTargetKind::Srv);
        assert_eq!(ratings.targets[1].priority, 1);
        assert!(ratings.respect_ttl);
        assert_eq!(payments.mode, DnsMode::Logical);
        assert_eq!(payments.lookup_family, LookupFamily::V4Only);
        assert_eq!(
            payments.failure_refresh_rate,
            Some(FailureRefresh::new(
                Duration::from_secs(1),
                Duration::from_secs(30)
            ))
        );
    }

    #[test]
    fn a_cluster_names_one_source_and_lists_no_endpoints_beside_it() {
        use crate::config::MeshConfig;
        let error = |yaml: &str| MeshConfig::from_yaml(yaml).unwrap_err().to_string();
        let both = error(
            "clusters: [{ name: a, endpoints: [{ address: '127.0.0.1:1' }], \
             discovery: { dns: { targets: [{ name: a.test, port: 80 }] } } }]",
        );
        assert!(
            both.contains(
                "endpoints: listed, but this cluster's endpoints come from its discovery source"
            ),
            "{both}"
        );
        let eds = error("clusters: [{ name: a, discovery: { eds: { service_name: a } } }]");
        assert!(
            eds.contains("EDS endpoints come from an xDS control plane"),
            "{eds}"
        );
        let two =
            error("clusters: [{ name: a, discovery: { dns: { targets: [] }, cloud_map: {} } }]");
        assert!(two.contains("one endpoint source only"), "{two}");
        let typo = error("clusters: [{ name: a, discovery: { dns: { target: [] } } }]");
        assert!(typo.contains("unknown field `target`"), "{typo}");
        let bad = error(
            "clusters: [{ name: a, discovery: { dns: { targets: [{ name: 'no spaces', port: 80 }] } } }]",
        );
        assert!(bad.contains("cluster \"a\""), "{bad}");
        let fixed = MeshConfig::from_yaml("clusters: [{ name: a, discovery: fixed }]").unwrap();
        assert!(fixed.clusters[0].discovery.is_fixed());
    }
}
