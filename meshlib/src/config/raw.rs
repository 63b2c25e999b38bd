//! The file's shape for the model's one-of fields.
//!
//! Envoy's YAML writes a one-of as sibling keys (`prefix: /` or `path: /x`); the
//! model holds an enum. These structs read the keys as options and convert,
//! refusing zero or two of them with a message that names the keys.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    Destination, FractionalPercent, HashOn, HeaderRule, PathMatch, StringRule, WeightedCluster,
    duration,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SafeRegex {
    regex: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    safe_regex: Option<SafeRegex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path_separated_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    case_sensitive: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<super::HeaderMatcher>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    query_parameters: Vec<super::QueryParameterMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runtime_fraction: Option<FractionalPercent>,
}

/// Takes the single `Some` among `options`, or says which keys were wrong.
fn one_of<T>(what: &str, options: Vec<(&str, Option<T>)>) -> Result<T, String> {
    let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
    let mut set: Vec<(&str, T)> = options
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
    match set.len() {
        1 => Ok(set.remove(0).1),
        0 => Err(format!("{what}: set one of `{}`", names.join("`, `"))),
        _ => {
            let given: Vec<&str> = set.iter().map(|(name, _)| *name).collect();
            Err(format!(
                "{what}: set only one of `{}`, found `{}`",
                names.join("`, `"),
                given.join("` and `")
            ))
        }
    }
}

impl TryFrom<RouteMatch> for super::RouteMatch {
    type Error = String;

    fn try_from(raw: RouteMatch) -> Result<Self, String> {
        let path = one_of(
            "match",
            vec![
                ("prefix", raw.prefix.map(PathMatch::Prefix)),
                ("path", raw.path.map(PathMatch::Exact)),
                (
                    "safe_regex",
                    raw.safe_regex.map(|r| PathMatch::Regex(r.regex)),
                ),
                (
                    "path_separated_prefix",
                    raw.path_separated_prefix
                        .map(PathMatch::PathSeparatedPrefix),
                ),
            ],
        )?;
        Ok(super::RouteMatch {
            path,
            case_sensitive: raw.case_sensitive.unwrap_or(true),
            headers: raw.headers,
            query_parameters: raw.query_parameters,
            runtime_fraction: raw.runtime_fraction,
        })
    }
}

impl From<super::RouteMatch> for RouteMatch {
    fn from(m: super::RouteMatch) -> Self {
        let mut raw = RouteMatch {
            case_sensitive: (!m.case_sensitive).then_some(false),
            headers: m.headers,
            query_parameters: m.query_parameters,
            runtime_fraction: m.runtime_fraction,
            ..RouteMatch::default()
        };
        match m.path {
            PathMatch::Prefix(p) => raw.prefix = Some(p),
            PathMatch::Exact(p) => raw.path = Some(p),
            PathMatch::Regex(regex) => raw.safe_regex = Some(SafeRegex { regex }),
            PathMatch::PathSeparatedPrefix(p) => raw.path_separated_prefix = Some(p),
        }
        raw
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Range {
    start: i64,
    end: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderMatcher {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    safe_regex: Option<SafeRegex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    present: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<Range>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ignore_case: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    invert_match: bool,
}

impl TryFrom<HeaderMatcher> for super::HeaderMatcher {
    type Error = String;

    fn try_from(raw: HeaderMatcher) -> Result<Self, String> {
        let rule = one_of(
            &format!("header {:?}", raw.name),
            vec![
                ("exact", raw.exact.map(HeaderRule::Exact)),
                ("prefix", raw.prefix.map(HeaderRule::Prefix)),
                ("suffix", raw.suffix.map(HeaderRule::Suffix)),
                ("contains", raw.contains.map(HeaderRule::Contains)),
                (
                    "safe_regex",
                    raw.safe_regex.map(|r| HeaderRule::Regex(r.regex)),
                ),
                ("present", raw.present.map(HeaderRule::Present)),
                (
                    "range",
                    raw.range.map(|r| HeaderRule::Range {
                        start: r.start,
                        end: r.end,
                    }),
                ),
            ],
        )?;
        Ok(super::HeaderMatcher {
            name: raw.name.to_ascii_lowercase(),
            rule,
            ignore_case: raw.ignore_case,
            invert_match: raw.invert_match,
        })
    }
}

impl From<super::HeaderMatcher> for HeaderMatcher {
    fn from(m: super::HeaderMatcher) -> Self {
        let mut raw = HeaderMatcher {
            name: m.name,
            ignore_case: m.ignore_case,
            invert_match: m.invert_match,
            ..HeaderMatcher::default()
        };
        match m.rule {
            HeaderRule::Exact(v) => raw.exact = Some(v),
            HeaderRule::Prefix(v) => raw.prefix = Some(v),
            HeaderRule::Suffix(v) => raw.suffix = Some(v),
            HeaderRule::Contains(v) => raw.contains = Some(v),
            HeaderRule::Regex(regex) => raw.safe_regex = Some(SafeRegex { regex }),
            HeaderRule::Present(p) => raw.present = Some(p),
            HeaderRule::Range { start, end } => raw.range = Some(Range { start, end }),
        }
        raw
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WeightedClusters {
    clusters: Vec<WeightedCluster>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weighted_clusters: Option<WeightedClusters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster_header: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix_rewrite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex_rewrite: Option<RegexRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host_rewrite_literal: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    request_mirror_policies: Vec<MirrorPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hash_policy: Vec<HashPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_stream_duration: Option<MaxStreamDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_policy: Option<super::RetryPolicy>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegexRewrite {
    pattern: SafeRegex,
    substitution: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MirrorPolicy {
    cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runtime_fraction: Option<FractionalPercent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderName {
    header_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Name {
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectionProperties {
    source_ip: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HashPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<HeaderName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cookie: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query_parameter: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connection_properties: Option<ConnectionProperties>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    terminal: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MaxStreamDuration {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    max_stream_duration: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    grpc_timeout_header_max: Option<Duration>,
}

impl TryFrom<HashPolicy> for super::HashPolicy {
    type Error = String;

    fn try_from(raw: HashPolicy) -> Result<Self, String> {
        let on = one_of(
            "hash_policy",
            vec![
                (
                    "header",
                    raw.header
                        .map(|h| HashOn::Header(h.header_name.to_ascii_lowercase())),
                ),
                ("cookie", raw.cookie.map(|c| HashOn::Cookie(c.name))),
                (
                    "query_parameter",
                    raw.query_parameter.map(|q| HashOn::QueryParameter(q.name)),
                ),
                (
                    "connection_properties",
                    raw.connection_properties
                        .filter(|c| c.source_ip)
                        .map(|_| HashOn::SourceIp),
                ),
            ],
        )?;
        Ok(super::HashPolicy {
            on,
            terminal: raw.terminal,
        })
    }
}

impl From<super::HashPolicy> for HashPolicy {
    fn from(p: super::HashPolicy) -> Self {
        let mut raw = HashPolicy {
            terminal: p.terminal,
            ..HashPolicy::default()
        };
        match p.on {
            HashOn::Header(header_name) => raw.header = Some(HeaderName { header_name }),
            HashOn::Cookie(name) => raw.cookie = Some(Name { name }),
            HashOn::QueryParameter(name) => raw.query_parameter = Some(Name { name }),
            HashOn::SourceIp => {
                raw.connection_properties = Some(ConnectionProperties { source_ip: true })
            }
        }
        raw
    }
}

impl TryFrom<RouteAction> for super::RouteAction {
    type Error = String;

    fn try_from(raw: RouteAction) -> Result<Self, String> {
        let destination = one_of(
            "route",
            vec![
                ("cluster", raw.cluster.map(Destination::Cluster)),
                (
                    "weighted_clusters",
                    raw.weighted_clusters
                        .map(|w| Destination::WeightedClusters(w.clusters)),
                ),
                (
                    "cluster_header",
                    raw.cluster_header
                        .map(|h| Destination::ClusterHeader(h.to_ascii_lowercase())),
                ),
            ],
        )?;
        let hash_policy = raw
            .hash_policy
            .into_iter()
            .map(super::HashPolicy::try_from)
            .collect::<Result<_, _>>()?;
        Ok(super::RouteAction {
            destination,
            timeout: raw.timeout,
            prefix_rewrite: raw.prefix_rewrite,
            regex_rewrite: raw.regex_rewrite.map(|r| super::RegexRewrite {
                pattern: r.pattern.regex,
                substitution: r.substitution,
            }),
            host_rewrite_literal: raw.host_rewrite_literal,
            request_mirror_policies: raw
                .request_mirror_policies
                .into_iter()
                .map(|m| super::MirrorPolicy {
                    cluster: m.cluster,
                    fraction: m.runtime_fraction,
                })
                .collect(),
            hash_policy,
            max_stream_duration: raw.max_stream_duration.map(|m| super::MaxStreamDuration {
                max_stream_duration: m.max_stream_duration,
                grpc_timeout_header_max: m.grpc_timeout_header_max,
            }),
            retry_policy: raw.retry_policy,
        })
    }
}

impl From<super::RouteAction> for RouteAction {
    fn from(a: super::RouteAction) -> Self {
        let mut raw = RouteAction {
            timeout: a.timeout,
            prefix_rewrite: a.prefix_rewrite,
            regex_rewrite: a.regex_rewrite.map(|r| RegexRewrite {
                pattern: SafeRegex { regex: r.pattern },
                substitution: r.substitution,
            }),
            host_rewrite_literal: a.host_rewrite_literal,
            request_mirror_policies: a
                .request_mirror_policies
                .into_iter()
                .map(|m| MirrorPolicy {
                    cluster: m.cluster,
                    runtime_fraction: m.fraction,
                })
                .collect(),
            hash_policy: a.hash_policy.into_iter().map(HashPolicy::from).collect(),
            max_stream_duration: a.max_stream_duration.map(|m| MaxStreamDuration {
                max_stream_duration: m.max_stream_duration,
                grpc_timeout_header_max: m.grpc_timeout_header_max,
            }),
            retry_policy: a.retry_policy,
            ..RouteAction::default()
        };
        match a.destination {
            Destination::Cluster(c) => raw.cluster = Some(c),
            Destination::WeightedClusters(clusters) => {
                raw.weighted_clusters = Some(WeightedClusters { clusters })
            }
            Destination::ClusterHeader(h) => raw.cluster_header = Some(h),
        }
        raw
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StringMatcher {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    safe_regex: Option<SafeRegex>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ignore_case: bool,
}

impl TryFrom<StringMatcher> for super::StringMatcher {
    type Error = String;

    fn try_from(raw: StringMatcher) -> Result<Self, String> {
        let rule = one_of(
            "string_match",
            vec![
                ("exact", raw.exact.map(StringRule::Exact)),
                ("prefix", raw.prefix.map(StringRule::Prefix)),
                ("suffix", raw.suffix.map(StringRule::Suffix)),
                ("contains", raw.contains.map(StringRule::Contains)),
                (
                    "safe_regex",
                    raw.safe_regex.map(|r| StringRule::Regex(r.regex)),
                ),
            ],
        )?;
        Ok(super::StringMatcher {
            rule,
            ignore_case: raw.ignore_case,
        })
    }
}

impl From<super::StringMatcher> for StringMatcher {
    fn from(m: super::StringMatcher) -> Self {
        let mut raw = StringMatcher {
            ignore_case: m.ignore_case,
            ..StringMatcher::default()
        };
        match m.rule {
            StringRule::Exact(v) => raw.exact = Some(v),
            StringRule::Prefix(v) => raw.prefix = Some(v),
            StringRule::Suffix(v) => raw.suffix = Some(v),
            StringRule::Contains(v) => raw.contains = Some(v),
            StringRule::Regex(regex) => raw.safe_regex = Some(SafeRegex { regex }),
        }
        raw
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryParameterMatcher {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    string_match: Option<super::StringMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    present_match: Option<bool>,
}

impl TryFrom<QueryParameterMatcher> for super::QueryParameterMatcher {
    type Error = String;

    fn try_from(raw: QueryParameterMatcher) -> Result<Self, String> {
        let what = format!("query parameter {:?}", raw.name);
        let value = one_of(
            &what,
            vec![
                ("string_match", raw.string_match.map(Some)),
                (
                    "present_match",
                    match raw.present_match {
                        Some(true) => Some(None),
                        Some(false) => {
                            return Err(format!(
                                "{what}: present_match: false matches nothing; leave the parameter out"
                            ));
                        }
                        None => None,
                    },
                ),
            ],
        )?;
        Ok(super::QueryParameterMatcher {
            name: raw.name,
            value,
        })
    }
}

impl From<super::QueryParameterMatcher> for QueryParameterMatcher {
    fn from(m: super::QueryParameterMatcher) -> Self {
        QueryParameterMatcher {
            name: m.name,
            present_match: m.value.is_none().then_some(true),
            string_match: m.value,
        }
    }
}

/// Reads `lb_policy` as a bare name (`ring_hash`, parameters defaulted) or a
/// map of one name to its parameters (`{ ring_hash: { minimum_ring_size: 64 } }`).
pub(super) struct LbPolicyVisitor;

const LB_POLICIES: &[&str] = &[
    "round_robin",
    "random",
    "least_request",
    "ring_hash",
    "maglev",
    "peak_ewma",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParameters {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeastRequestParameters {
    #[serde(default = "super::default_choice_count")]
    choice_count: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RingHashParameters {
    #[serde(default = "super::default_minimum_ring_size")]
    minimum_ring_size: u64,
    #[serde(default = "super::default_maximum_ring_size")]
    maximum_ring_size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaglevParameters {
    #[serde(default = "super::default_maglev_table_size")]
    table_size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeakEwmaParameters {
    #[serde(default = "super::default_ewma_decay", with = "duration")]
    decay: Duration,
    #[serde(default = "super::default_ewma_rtt", with = "duration")]
    default_rtt: Duration,
}

impl<'de> serde::de::Visitor<'de> for LbPolicyVisitor {
    type Value = super::LbPolicy;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a policy name, or a map of one policy name to its parameters")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(match name {
            "round_robin" => super::LbPolicy::RoundRobin,
            "random" => super::LbPolicy::Random,
            "least_request" => super::LbPolicy::least_request(),
            "ring_hash" => super::LbPolicy::ring_hash(),
            "maglev" => super::LbPolicy::maglev(),
            "peak_ewma" => super::LbPolicy::peak_ewma(),
            other => return Err(E::unknown_variant(other, LB_POLICIES)),
        })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let Some(name) = map.next_key::<String>()? else {
            return Err(A::Error::custom("name one policy, e.g. `ring_hash: {}`"));
        };
        let policy = match name.as_str() {
            "round_robin" => {
                map.next_value::<NoParameters>()?;
                super::LbPolicy::RoundRobin
            }
            "random" => {
                map.next_value::<NoParameters>()?;
                super::LbPolicy::Random
            }
            "least_request" => {
                let p: LeastRequestParameters = map.next_value()?;
                // As gRPC reads it (A48): more than 10 is 10; below 2 is
                // left for validation to refuse by name.
                super::LbPolicy::LeastRequest {
                    choice_count: p.choice_count.min(super::MAX_CHOICE_COUNT),
                }
            }
            "ring_hash" => {
                let p: RingHashParameters = map.next_value()?;
                super::LbPolicy::RingHash {
                    minimum_ring_size: p.minimum_ring_size,
                    maximum_ring_size: p.maximum_ring_size,
                }
            }
            "maglev" => {
                let p: MaglevParameters = map.next_value()?;
                super::LbPolicy::Maglev {
                    table_size: p.table_size,
                }
            }
            "peak_ewma" => {
                let p: PeakEwmaParameters = map.next_value()?;
                super::LbPolicy::PeakEwma {
                    decay: p.decay,
                    default_rtt: p.default_rtt,
                }
            }
            other => return Err(A::Error::unknown_variant(other, LB_POLICIES)),
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(A::Error::custom(format!(
                "name one policy only, found `{name}` and `{extra}`"
            )));
        }
        Ok(policy)
    }
}

/// An aggregate cluster's settings, as Envoy's `ClusterConfig` names them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregateParameters {
    clusters: Vec<String>,
}

/// Reads a cluster's `discovery`: `fixed`, or a map of one source to its
/// settings (`dns: {…}`, `cloud_map: {…}`, `aggregate: {…}`); `eds` comes
/// only from xDS.
pub(super) struct DiscoveryVisitor;

impl<'de> serde::de::Visitor<'de> for DiscoveryVisitor {
    type Value = super::Discovery;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("`fixed`, or a map of one endpoint source to its settings, e.g. `dns: { targets: [...] }`")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        match name {
            "fixed" => Ok(super::Discovery::Fixed),
            other => Err(E::unknown_variant(other, &["fixed", "dns"])),
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let Some(name) = map.next_key::<String>()? else {
            return Err(A::Error::custom(
                "name one endpoint source, e.g. `dns: { targets: [...] }`",
            ));
        };
        let discovery = match name.as_str() {
            "dns" => super::Discovery::Dns(map.next_value()?),
            "cloud_map" => super::Discovery::CloudMap(Box::new(map.next_value()?)),
            "aggregate" => {
                let p: AggregateParameters = map.next_value()?;
                super::Discovery::Aggregate {
                    clusters: p.clusters,
                }
            }
            "eds" => {
                return Err(A::Error::custom(
                    "eds: EDS endpoints come from an xDS control plane (MeshClient::from_xds), not a file",
                ));
            }
            other => {
                return Err(A::Error::unknown_variant(
                    other,
                    &["dns", "cloud_map", "aggregate"],
                ));
            }
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(A::Error::custom(format!(
                "one endpoint source only: found `{name}` and `{extra}`"
            )));
        }
        Ok(discovery)
    }
}
