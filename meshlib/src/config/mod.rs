//! The protocol-neutral configuration model.
//!
//! One model, whichever source fills it (a YAML/JSON file today; xDS, DNS and
//! Cloud Map-style registries later): virtual hosts with domains → ordered routes
//! (path and header matchers) → an action (one cluster or weighted clusters, a
//! timeout); clusters (load-balancing policy, protocol, endpoints); endpoints
//! (address, weight, health, locality). The field names follow Envoy's
//! `RouteConfiguration` and `Cluster` where a concept is the same, so a reader of
//! Envoy's docs finds their way.
//!
//! This module knows nothing of xDS, of the network or of the layers: it parses,
//! validates and holds plain values.
//!
//! ```
//! use meshlib::config::MeshConfig;
//!
//! let config = MeshConfig::from_yaml(r#"
//! virtual_hosts:
//!   - name: reviews
//!     domains: ["reviews"]
//!     routes:
//!       - name: canary
//!         match: { prefix: "/", headers: [{ name: x-canary, exact: "true" }] }
//!         route: { cluster: reviews-v2 }
//!       - name: split
//!         match: { prefix: "/" }
//!         route:
//!           weighted_clusters:
//!             clusters: [{ name: reviews-v1, weight: 90 }, { name: reviews-v2, weight: 10 }]
//! clusters:
//!   - name: reviews-v1
//!     endpoints: [{ address: "127.0.0.1:9081" }]
//!   - name: reviews-v2
//!     endpoints: [{ address: "127.0.0.1:9082" }]
//! "#)?;
//! assert_eq!(config.clusters.len(), 2);
//! # Ok::<(), meshlib::config::ConfigError>(())
//! ```

mod duration;
mod error;
mod file;
mod raw;
mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{ConfigError, Problem};
pub use file::{FileSource, FileWatch};

/// A whole mesh configuration: what to route where, and the clusters routed to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// Virtual hosts, selected by the request's authority.
    #[serde(default)]
    pub virtual_hosts: Vec<VirtualHost>,
    /// The clusters routes may send traffic to.
    #[serde(default)]
    pub clusters: Vec<Cluster>,
}

/// A set of domains and the routes that apply to requests for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHost {
    /// Names the virtual host in errors and route decisions.
    pub name: String,
    /// Authorities this virtual host answers: `reviews`, `reviews:8080`,
    /// `*.example.com`, `api.*` or `*` (Envoy's rules: exact, then the longest
    /// suffix wildcard, then the longest prefix wildcard, then `*`).
    pub domains: Vec<String>,
    /// Routes, tried in order; the first that matches wins.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// One route: a match and the action taken for requests that match it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Names the route in errors and route decisions; optional, as in Envoy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Which requests the route applies to.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Where matching requests go.
    #[serde(rename = "route")]
    pub action: RouteAction,
}

/// Which requests a route applies to: a path rule and header rules, all of which
/// must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::RouteMatch", into = "raw::RouteMatch")]
pub struct RouteMatch {
    /// The rule for the request's path (query string excluded).
    pub path: PathMatch,
    /// Whether `prefix` and `path` compare case-sensitively (default `true`;
    /// as in Envoy it does not apply to `safe_regex`).
    pub case_sensitive: bool,
    /// Header rules; every one must match.
    pub headers: Vec<HeaderMatcher>,
}

impl RouteMatch {
    /// Matches every path starting with `prefix`, case-sensitively, with no header rules.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        RouteMatch {
            path: PathMatch::Prefix(prefix.into()),
            case_sensitive: true,
            headers: Vec::new(),
        }
    }
}

/// The rule for a request's path. In the file, exactly one of `prefix`, `path`
/// or `safe_regex: { regex: … }` is set.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with this (`prefix: /api`); `/` matches everything.
    Prefix(String),
    /// The path is exactly this (`path: /healthz`).
    Exact(String),
    /// The whole path matches this RE2-style regular expression
    /// (`safe_regex: { regex: "/v[0-9]+/.*" }`).
    Regex(String),
}

/// A rule on one request header, Envoy's `HeaderMatcher`.
///
/// A header sent more than once is matched on its values joined with `,`, as
/// Envoy does. `:authority`, `:method`, `:path` and `:scheme` name the request's
/// pseudo-headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::HeaderMatcher", into = "raw::HeaderMatcher")]
pub struct HeaderMatcher {
    /// The header name, lower case.
    pub name: String,
    /// What its value must satisfy.
    pub rule: HeaderRule,
    /// Whether string rules compare ignoring ASCII case.
    pub ignore_case: bool,
    /// Invert the result: the route matches when the rule does not.
    pub invert_match: bool,
}

/// What a header's value must satisfy. In the file, exactly one of `exact`,
/// `prefix`, `suffix`, `contains`, `safe_regex`, `present` or `range` is set.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRule {
    /// The value equals this.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The value ends with this.
    Suffix(String),
    /// The value contains this.
    Contains(String),
    /// The whole value matches this regular expression.
    Regex(String),
    /// `true`: the header is present; `false`: it is absent.
    Present(bool),
    /// The value is an integer in `[start, end)`.
    Range {
        /// Inclusive lower bound.
        start: i64,
        /// Exclusive upper bound.
        end: i64,
    },
}

/// Where a route sends a request, and with what limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::RouteAction", into = "raw::RouteAction")]
pub struct RouteAction {
    /// The cluster or clusters to send to.
    pub destination: Destination,
    /// How long to wait for the response headers; none when absent.
    pub timeout: Option<Duration>,
}

/// The cluster or clusters a route sends to. In the file, exactly one of
/// `cluster: name` or `weighted_clusters: { clusters: [...] }` is set.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Every request to this cluster.
    Cluster(String),
    /// Each request to one of these, chosen at random in proportion to weight.
    WeightedClusters(Vec<WeightedCluster>),
}

/// One cluster of a weighted split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    /// The cluster's name.
    pub name: String,
    /// Its share, relative to the sum of the split's weights.
    pub weight: u32,
}

/// A named group of interchangeable endpoints and how traffic is spread over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The name routes refer to it by.
    pub name: String,
    /// How a request picks an endpoint.
    #[serde(default)]
    pub lb_policy: LbPolicy,
    /// The protocol spoken to the endpoints.
    #[serde(default)]
    pub protocol: Protocol,
    /// How long a TCP connect may take (default 5 s, as Envoy's `connect_timeout`).
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// The endpoints, fixed in the configuration.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Cluster {
    /// A round-robin HTTP/1.1 cluster over `endpoints`, with the default timeouts.
    pub fn new(name: impl Into<String>, endpoints: Vec<Endpoint>) -> Self {
        Cluster {
            name: name.into(),
            lb_policy: LbPolicy::default(),
            protocol: Protocol::default(),
            connect_timeout: default_connect_timeout(),
            endpoints,
        }
    }

    /// Whether `other` differs from this cluster at most in its endpoints: then
    /// the cluster's connections and balancer can be kept and only its endpoint
    /// set updated.
    pub fn same_policy(&self, other: &Cluster) -> bool {
        let Cluster {
            name,
            lb_policy,
            protocol,
            connect_timeout,
            endpoints: _,
        } = self;
        *name == other.name
            && *lb_policy == other.lb_policy
            && *protocol == other.protocol
            && *connect_timeout == other.connect_timeout
    }
}

/// How a request picks one of a cluster's endpoints.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Each endpoint in turn, in proportion to its weight (smooth weighted
    /// round robin), skipping endpoints that may not take traffic.
    #[default]
    RoundRobin,
}

/// The protocol a cluster's endpoints speak.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1, with pooled keep-alive connections; HTTP/2 requests (gRPC
    /// calls) still go over HTTP/2, as they cannot travel over HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c), as gRPC needs; one
    /// multiplexed connection per endpoint.
    Http2,
}

/// One address of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// Its share of the cluster's traffic relative to the other endpoints
    /// (default 1; Envoy's `load_balancing_weight`).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Whether it may take traffic.
    #[serde(default)]
    pub health: HealthStatus,
    /// Where it runs, for locality-aware balancing.
    #[serde(default, skip_serializing_if = "Locality::is_empty")]
    pub locality: Locality,
}

fn default_weight() -> u32 {
    1
}

impl Endpoint {
    /// A healthy endpoint of weight 1 at `address`, with no locality.
    pub fn new(address: SocketAddr) -> Self {
        Endpoint {
            address,
            weight: default_weight(),
            health: HealthStatus::default(),
            locality: Locality::default(),
        }
    }
}

/// An endpoint's health, with EDS's meaning: `healthy` and `unknown` take
/// traffic, `unhealthy` and `draining` take none.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Known good.
    #[default]
    Healthy,
    /// Not known; takes traffic, as in Envoy and gRPC.
    Unknown,
    /// Known bad.
    Unhealthy,
    /// Going away; finishes what it has, takes nothing new.
    Draining,
}

impl HealthStatus {
    /// Whether an endpoint in this state may be sent new requests.
    pub fn takes_traffic(self) -> bool {
        matches!(self, HealthStatus::Healthy | HealthStatus::Unknown)
    }
}

/// Where an endpoint runs: Envoy's `Locality`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locality {
    /// Region, e.g. `eu-west-1`.
    #[serde(default)]
    pub region: String,
    /// Zone, e.g. `eu-west-1a`.
    #[serde(default)]
    pub zone: String,
    /// Sub-zone, e.g. a rack.
    #[serde(default)]
    pub sub_zone: String,
}

impl Locality {
    fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.sub_zone.is_empty()
    }
}

impl MeshConfig {
    /// Parses and validates a YAML document (JSON is YAML too).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        Self::parse_yaml(text, None)
    }

    /// Parses and validates a JSON document.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Self::parse_json(text, None)
    }

    /// Checks every rule the model's types cannot express: names unique and
    /// non-empty, routes pointing at defined clusters, weights summing above
    /// zero, regular expressions that compile. All problems are reported at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::check(self).map_err(|problems| ConfigError::invalid(None, problems))
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub(crate) fn parse_yaml(text: &str, origin: Option<&str>) -> Result<Self, ConfigError> {
        let config: MeshConfig =
            yaml_serde::from_str(text).map_err(|e| ConfigError::syntax(origin, e.to_string()))?;
        validate::check(&config).map_err(|problems| ConfigError::invalid(origin, problems))?;
        Ok(config)
    }

    pub(crate) fn parse_json(text: &str, origin: Option<&str>) -> Result<Self, ConfigError> {
        let config: MeshConfig =
            serde_json::from_str(text).map_err(|e| ConfigError::syntax(origin, e.to_string()))?;
        validate::check(&config).map_err(|problems| ConfigError::invalid(origin, problems))?;
        Ok(config)
    }
}

impl std::str::FromStr for MeshConfig {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_yaml(text)
    }
}
