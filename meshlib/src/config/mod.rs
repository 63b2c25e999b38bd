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

mod cloud_map;
mod depth;
mod discovery;
pub(crate) mod duration;
mod error;
mod expansion;
mod file;
mod raw;
mod retry;
mod safe_regex;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use cloud_map::{CloudMapDiscovery, CloudMapHealthFilter, IpPreference};
pub use discovery::{
    DnsDiscovery, DnsMode, DnsTarget, DnsTargetKind, FailureRefresh, LookupFamily,
};
pub use error::{ConfigError, Problem};
pub use file::{FileSource, FileWatch};
pub use retry::{GrpcRetryRules, RetryBackOff, RetryCondition, RetryOn, RetryPolicy};
pub use safe_regex::REGEX_SIZE_LIMIT;
pub(crate) use safe_regex::{Regexes, full_match, search};
pub use validate::MAX_PROBLEMS;
pub(crate) use validate::{host_rewrite, prefix_rewrite};

/// A whole mesh configuration: what to route where, and the clusters routed to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MeshConfig {
    /// Virtual hosts, selected by the request's authority.
    #[serde(default)]
    pub virtual_hosts: Vec<VirtualHost>,
    /// The clusters routes may send traffic to.
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    /// Whether request paths are normalised before routing, as RFC 3986
    /// says (percent-encoded unreserved characters decoded, `.` and `..`
    /// segments removed), and sent upstream normalised: Envoy's
    /// HttpConnectionManager `normalize_path`. Default `false`, as in Envoy,
    /// which recommends turning it on: without it `/public/../admin`
    /// matches a `/public` route. Over xDS, read from the listener's
    /// HttpConnectionManager.
    #[serde(default, skip_serializing_if = "is_false")]
    pub normalize_path: bool,
    /// Whether runs of `/` in request paths are merged into one before
    /// routing (after `normalize_path`), and sent upstream merged: Envoy's
    /// HttpConnectionManager `merge_slashes`. Default `false`, as in Envoy.
    #[serde(default, skip_serializing_if = "is_false")]
    pub merge_slashes: bool,
    /// A local rate limit on every request the client sends (Envoy's
    /// `envoy.filters.http.local_ratelimit` in the client's listener): a
    /// refused request fails with [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited)
    /// without being sent. Its bucket lives on across configuration updates
    /// while these settings stay the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_rate_limit: Option<crate::ratelimit::LocalRateLimit>,
    /// The regexes its last validation compiled, for its route table.
    #[serde(skip)]
    pub(crate) regexes: safe_regex::Regexes,
}

impl MeshConfig {
    /// A configuration of `virtual_hosts` over `clusters`.
    pub fn new(virtual_hosts: Vec<VirtualHost>, clusters: Vec<Cluster>) -> Self {
        MeshConfig {
            virtual_hosts,
            clusters,
            normalize_path: false,
            merge_slashes: false,
            local_rate_limit: None,
            regexes: Default::default(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A set of domains and the routes that apply to requests for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
    /// The retry policy of routes that have none of their own (Envoy's
    /// `VirtualHost.retry_policy`; a route's replaces it whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// Send `x-envoy-attempt-count` (1 for the first attempt, 2 for the
    /// first retry…) with every request upstream (Envoy's
    /// `include_request_attempt_count`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_request_attempt_count: bool,
}

impl VirtualHost {
    /// The virtual host `name` for `domains`, with `routes` tried in order.
    pub fn new(name: impl Into<String>, domains: Vec<String>, routes: Vec<Route>) -> Self {
        VirtualHost {
            name: name.into(),
            domains,
            routes,
            retry_policy: None,
            include_request_attempt_count: false,
        }
    }
}

/// One route: a match and the action taken for requests that match it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
    /// Headers added to matching requests before they are sent (Envoy's
    /// `request_headers_to_add`), after `request_headers_to_remove` is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_add: Vec<HeaderToAdd>,
    /// Header names removed from matching requests before they are sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_remove: Vec<String>,
}

impl Route {
    /// The route `name` taking `action` for the requests `matcher` matches,
    /// with no header changes.
    pub fn new(name: impl Into<String>, matcher: RouteMatch, action: RouteAction) -> Self {
        Route {
            name: name.into(),
            matcher,
            action,
            request_headers_to_add: Vec::new(),
            request_headers_to_remove: Vec::new(),
        }
    }
}

/// A header a route adds to the requests it matches: Envoy's `HeaderValueOption`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderToAdd {
    /// The header's name.
    pub name: String,
    /// The value to add.
    pub value: String,
    /// What to do when the request already has the header.
    #[serde(default)]
    pub append_action: AppendAction,
}

/// What adding a header does when the request already has it: Envoy's
/// `HeaderAppendAction`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppendAction {
    /// Add the value beside any existing ones (Envoy's default).
    #[default]
    AppendIfExistsOrAdd,
    /// Add the header only when the request does not have it.
    AddIfAbsent,
    /// Replace existing values, or add the header.
    OverwriteIfExistsOrAdd,
    /// Replace existing values; do nothing when the header is absent.
    OverwriteIfExists,
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
    /// Query parameter rules; every one must match.
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// When set, the route matches only this fraction of the requests that
    /// match its other rules, drawn at random per request (Envoy's
    /// `runtime_fraction` default value; gRPC's A28 fraction match).
    pub runtime_fraction: Option<FractionalPercent>,
}

impl RouteMatch {
    /// Matches every path starting with `prefix`, case-sensitively, with no other rules.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        RouteMatch {
            path: PathMatch::Prefix(prefix.into()),
            case_sensitive: true,
            headers: Vec::new(),
            query_parameters: Vec::new(),
            runtime_fraction: None,
        }
    }
}

/// A rule on one query parameter, Envoy's `QueryParameterMatcher`: the
/// parameter is present and, when `value` is set, its (percent-decoded) first
/// value matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "raw::QueryParameterMatcher",
    into = "raw::QueryParameterMatcher"
)]
pub struct QueryParameterMatcher {
    /// The parameter's name, compared exactly.
    pub name: String,
    /// The rule its value must satisfy; `None` (`present_match: true`) asks only
    /// that it is present.
    pub value: Option<StringMatcher>,
}

/// Envoy's `StringMatcher`: one rule on a string, optionally ignoring ASCII case.
/// In the file, exactly one of `exact`, `prefix`, `suffix`, `contains` or
/// `safe_regex: { regex: … }` is set, with `ignore_case` beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::StringMatcher", into = "raw::StringMatcher")]
pub struct StringMatcher {
    /// The rule.
    pub rule: StringRule,
    /// Compare ignoring ASCII case (not applied to `safe_regex`, as in Envoy).
    pub ignore_case: bool,
}

/// The rule of a [`StringMatcher`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringRule {
    /// The string equals this.
    Exact(String),
    /// The string starts with this.
    Prefix(String),
    /// The string ends with this.
    Suffix(String),
    /// The string contains this.
    Contains(String),
    /// The whole string matches this regular expression.
    Regex(String),
}

/// A fraction, Envoy's `FractionalPercent`: `numerator` out of `denominator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FractionalPercent {
    /// The part taken; a numerator above the denominator means all.
    pub numerator: u32,
    /// What the numerator is out of (default `hundred`).
    #[serde(default)]
    pub denominator: Denominator,
}

impl FractionalPercent {
    /// The fraction as parts per million, capped at one million.
    pub fn per_million(self) -> u32 {
        let scale = match self.denominator {
            Denominator::Hundred => 10_000,
            Denominator::TenThousand => 100,
            Denominator::Million => 1,
        };
        self.numerator.saturating_mul(scale).min(1_000_000)
    }
}

/// The denominator of a [`FractionalPercent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Denominator {
    /// Out of 100.
    #[default]
    Hundred,
    /// Out of 10,000.
    TenThousand,
    /// Out of 1,000,000.
    Million,
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
    /// The path is this, or starts with this followed by `/`
    /// (`path_separated_prefix: /api` matches `/api` and `/api/x`, not
    /// `/apix`). The prefix must start with `/` and not end with one.
    PathSeparatedPrefix(String),
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
#[non_exhaustive]
pub struct RouteAction {
    /// The cluster or clusters to send to.
    pub destination: Destination,
    /// How long to wait for the response headers; none when absent.
    pub timeout: Option<Duration>,
    /// The path's matched prefix (or, for `path` routes, the whole path) is
    /// replaced with this.
    pub prefix_rewrite: Option<String>,
    /// The path is rewritten by this regular expression.
    pub regex_rewrite: Option<RegexRewrite>,
    /// The request's authority (`Host`/`:authority`) is replaced with this.
    pub host_rewrite_literal: Option<String>,
    /// Clusters a share of the requests is copied to.
    pub request_mirror_policies: Vec<MirrorPolicy>,
    /// How the request's hash is computed for hashing load balancers.
    pub hash_policy: Vec<HashPolicy>,
    /// Limits on the request's duration and the use of its `grpc-timeout` header.
    pub max_stream_duration: Option<MaxStreamDuration>,
    /// When and how often requests are retried; when absent, the virtual
    /// host's policy applies, if it has one.
    pub retry_policy: Option<RetryPolicy>,
}

impl RouteAction {
    /// Every request to `cluster`, with nothing else set.
    pub fn cluster(cluster: impl Into<String>) -> Self {
        RouteAction {
            destination: Destination::Cluster(cluster.into()),
            timeout: None,
            prefix_rewrite: None,
            regex_rewrite: None,
            host_rewrite_literal: None,
            request_mirror_policies: Vec::new(),
            hash_policy: Vec::new(),
            max_stream_duration: None,
            retry_policy: None,
        }
    }
}

/// The cluster or clusters a route sends to. In the file, exactly one of
/// `cluster: name`, `weighted_clusters: { clusters: [...] }` or
/// `cluster_header: name` is set.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Every request to this cluster.
    Cluster(String),
    /// Each request to one of these, chosen at random in proportion to weight.
    WeightedClusters(Vec<WeightedCluster>),
    /// The cluster named by this request header's value; a request without
    /// the header, or naming an unknown cluster, fails as unroutable (503), as
    /// in Envoy.
    ClusterHeader(String),
}

/// A path rewrite by regular expression: Envoy's `RegexMatchAndSubstitute`.
/// Every match of `pattern` in the path is replaced by `substitution`, in
/// which `\1`… refer to capture groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexRewrite {
    /// The regular expression searched for in the path.
    pub pattern: String,
    /// What each match is replaced with.
    pub substitution: String,
}

/// Shadows a fraction of a route's requests to another cluster: Envoy's
/// `RequestMirrorPolicy`. The copy's response is discarded, and the copy never
/// delays or fails the original request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPolicy {
    /// The cluster that receives the copies.
    pub cluster: String,
    /// The share of requests copied; all when `None`.
    pub fraction: Option<FractionalPercent>,
}

/// One input to a request's hash, for the `ring_hash` and `maglev` policies:
/// Envoy's `RouteAction.HashPolicy`. Policies are evaluated in order; the
/// hashes they produce are combined, and a `terminal` policy that produced one
/// ends the evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashPolicy {
    /// What is hashed.
    pub on: HashOn,
    /// Stop evaluating further policies when this one produced a hash.
    pub terminal: bool,
}

/// What a [`HashPolicy`] hashes. In the file, exactly one of `header: { header_name }`,
/// `cookie: { name }`, `query_parameter: { name }` or
/// `connection_properties: { source_ip: true }` is set.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// The value of this request header (values of a repeated header joined with `,`).
    Header(String),
    /// The value of this cookie.
    Cookie(String),
    /// The value of this query parameter.
    QueryParameter(String),
    /// The request's source IP, from the [`SourceAddress`](crate::route::SourceAddress)
    /// extension when the caller set one.
    SourceIp,
}

/// gRPC's and Envoy's `MaxStreamDuration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MaxStreamDuration {
    /// The longest a request may wait for its response headers, overriding the
    /// route's `timeout`.
    pub max_stream_duration: Option<Duration>,
    /// When set, a request's `grpc-timeout` header sets its timeout, capped at
    /// this value (zero: no cap).
    pub grpc_timeout_header_max: Option<Duration>,
}

impl MaxStreamDuration {
    /// A `max_stream_duration` of `limit`, and a client's `grpc-timeout`
    /// honoured up to `grpc_timeout_header_max` when that is set.
    pub fn new(limit: Option<Duration>, grpc_timeout_header_max: Option<Duration>) -> Self {
        MaxStreamDuration {
            max_stream_duration: limit,
            grpc_timeout_header_max,
        }
    }
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
#[non_exhaustive]
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
    /// Locality weights (Envoy's locality-weighted balancing, gRPC's
    /// `weighted_target`): when listed, a request first picks a locality of
    /// the chosen priority in proportion to its weight scaled by its healthy
    /// share, then an endpoint in it. A locality not listed takes no traffic.
    /// Empty: localities are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locality_weights: Vec<LocalityWeight>,
    /// How much a priority's healthy share is inflated before traffic spills to
    /// the next priority, in percent (Envoy's `overprovisioning_factor`, default 140:
    /// a priority keeps all traffic while at least 1/1.4 ≈ 72 % of it is healthy).
    #[serde(default = "default_overprovisioning_factor")]
    pub overprovisioning_factor: u32,
    /// The endpoints, fixed in the configuration (with [`Discovery::Fixed`];
    /// other sources supply them while the client runs).
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Where the endpoints come from.
    #[serde(default, skip_serializing_if = "Discovery::is_fixed")]
    pub discovery: Discovery,
    /// Envoy's `circuit_breakers`, as far as meshlib enforces them: how many
    /// retries may be in flight to the cluster at once. Absent: requests
    /// under Envoy's retry rules get Envoy's default (3 at once); gRPC calls
    /// under [`GrpcRetryRules::Proxyless`] get no limit, as gRPC's clients
    /// have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<CircuitBreakers>,
}

/// A cluster's limits on retries (Envoy's `CircuitBreakers`, the `DEFAULT`
/// priority's `Thresholds`). A retry beyond them is not sent: the attempt
/// that failed is returned, and the refusal counted
/// ([`ClusterStack::retries_refused`](crate::stack::ClusterStack::retries_refused)).
///
/// ```
/// use meshlib::config::MeshConfig;
///
/// let config = MeshConfig::from_yaml(r#"
/// clusters:
///   - name: orders
///     circuit_breakers:
///       max_retries: 10
///       retry_budget: { budget_percent: 25, min_retry_concurrency: 2 }
/// "#)?;
/// let breakers = config.clusters[0].circuit_breakers.as_ref().unwrap();
/// assert_eq!(breakers.max_retries, 10);
/// assert_eq!(breakers.retry_budget.unwrap().budget_percent, 25.0);
/// # Ok::<(), meshlib::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitBreakers {
    /// Retries in flight to the cluster at once, at most (default 3).
    /// Ignored when `retry_budget` is set.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// A limit that grows with the traffic instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        CircuitBreakers {
            max_retries: default_max_retries(),
            retry_budget: None,
        }
    }
}

fn default_max_retries() -> u32 {
    3
}

/// Envoy's `RetryBudget`: retries in flight may be at most `budget_percent`
/// of the requests in flight to the cluster (retries included), and at
/// least `min_retry_concurrency`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryBudget {
    /// The share of requests in flight that may be retries, in percent
    /// (default 20, from 0 to 100).
    #[serde(default = "default_budget_percent")]
    pub budget_percent: f64,
    /// Retries allowed in flight whatever the traffic (default 3).
    #[serde(default = "default_max_retries")]
    pub min_retry_concurrency: u32,
}

impl RetryBudget {
    /// Envoy's defaults: 20 %, at least 3.
    pub fn new() -> Self {
        RetryBudget {
            budget_percent: default_budget_percent(),
            min_retry_concurrency: default_max_retries(),
        }
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new()
    }
}

// By bits: a configuration compares equal to itself, NaN included (which
// validation refuses).
impl PartialEq for RetryBudget {
    fn eq(&self, other: &Self) -> bool {
        self.budget_percent.to_bits() == other.budget_percent.to_bits()
            && self.min_retry_concurrency == other.min_retry_concurrency
    }
}

impl Eq for RetryBudget {}

fn default_budget_percent() -> f64 {
    20.0
}

/// Where a cluster's endpoints come from. Each source feeds that cluster's
/// balancer alone: an endpoint change builds no new configuration.
///
/// In a file: absent (or `discovery: fixed`) for the cluster's `endpoints`,
/// or a map of one source to its settings, `discovery: { dns: { … } }` or
/// `discovery: { cloud_map: { … } }`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Discovery {
    /// The cluster's [`endpoints`](Cluster::endpoints), fixed in the
    /// configuration (a file's, or Envoy's `STATIC`); a new configuration
    /// with other endpoints updates them in place.
    #[default]
    Fixed,
    /// Published by an xDS control plane's EDS under `service_name` (set by
    /// the xDS source, `MeshClient::from_xds`; a file cannot name it).
    Eds {
        /// The ClusterLoadAssignment's name: the cluster's EDS service name,
        /// or its own name.
        service_name: String,
    },
    /// Resolved from DNS (Envoy's `STRICT_DNS` and `LOGICAL_DNS`), by a task
    /// of the cluster's stack: `discovery: { dns: { targets: […] } }` in a
    /// file (the schema is [`DnsDiscovery`]; `examples/config/dns.yaml`).
    Dns(DnsDiscovery),
    /// Found in AWS Cloud Map (`DiscoverInstances`), by a task of the
    /// cluster's stack: `discovery: { cloud_map: { namespace: …, service: … } }`
    /// in a file (the schema is [`CloudMapDiscovery`];
    /// `examples/config/cloudmap.yaml`). Runs only with the `cloudmap` cargo
    /// feature; without it, validation refuses such a cluster. Boxed: it is
    /// the largest source by far, and every cluster carries a `Discovery`.
    CloudMap(Box<CloudMapDiscovery>),
    /// Failover across other clusters (Envoy's aggregate cluster, gRFC A37 as
    /// A75 corrects it): each request, and each retry of it, goes to the first
    /// of `clusters` with an endpoint that may take traffic, and is balanced
    /// there by that cluster's own policy, connector and endpoints. The
    /// aggregate's own policy fields are not used. With none able to take
    /// traffic, a request waits for the first that is still warming, else
    /// fails with [`ErrorKind::NoEndpoints`](crate::ErrorKind::NoEndpoints).
    /// `discovery: { aggregate: { clusters: [primary, fallback] } }` in a
    /// file; each must be a cluster of the same configuration that is not
    /// itself an aggregate (xDS's nested aggregates arrive flattened).
    Aggregate {
        /// The clusters, most preferred first.
        clusters: Vec<String>,
    },
}

impl<'de> Deserialize<'de> for Discovery {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(raw::DiscoveryVisitor)
    }
}

impl Serialize for Discovery {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Discovery::Fixed => serializer.serialize_str("fixed"),
            Discovery::Eds { service_name } => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("eds", &BTreeMap::from([("service_name", service_name)]))?;
                map.end()
            }
            Discovery::Dns(dns) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("dns", dns)?;
                map.end()
            }
            Discovery::CloudMap(cloud_map) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("cloud_map", cloud_map)?;
                map.end()
            }
            Discovery::Aggregate { clusters } => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("aggregate", &BTreeMap::from([("clusters", clusters)]))?;
                map.end()
            }
        }
    }
}

impl Discovery {
    /// Whether the endpoints are the configuration's own.
    pub fn is_fixed(&self) -> bool {
        matches!(self, Discovery::Fixed)
    }

    /// The clusters an aggregate cluster fails over across, most preferred
    /// first; `None` for any other source.
    pub fn aggregate(&self) -> Option<&[String]> {
        match self {
            Discovery::Aggregate { clusters } => Some(clusters),
            _ => None,
        }
    }
}

fn default_overprovisioning_factor() -> u32 {
    140
}

/// The weight of one locality of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalityWeight {
    /// The locality.
    pub locality: Locality,
    /// Its share of its priority's traffic, relative to the other localities'.
    pub weight: u32,
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
            locality_weights: Vec::new(),
            overprovisioning_factor: default_overprovisioning_factor(),
            endpoints,
            discovery: Discovery::Fixed,
            circuit_breakers: None,
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
            locality_weights,
            overprovisioning_factor,
            endpoints: _,
            discovery,
            circuit_breakers,
        } = self;
        *name == other.name
            && *lb_policy == other.lb_policy
            && *protocol == other.protocol
            && *connect_timeout == other.connect_timeout
            && *locality_weights == other.locality_weights
            && *overprovisioning_factor == other.overprovisioning_factor
            && *discovery == other.discovery
            && *circuit_breakers == other.circuit_breakers
    }
}

/// How a request picks one of a cluster's endpoints, among those of the
/// chosen priority (and locality, with locality weights) that may take traffic.
///
/// In the file, a policy without parameters is a name (`lb_policy: random`) and
/// one with parameters a map (`lb_policy: { ring_hash: { minimum_ring_size: 4096 } }`);
/// parameters left out take Envoy's defaults.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Each endpoint in turn, in proportion to its weight (smooth weighted
    /// round robin): Envoy's `ROUND_ROBIN`.
    #[default]
    RoundRobin,
    /// An endpoint chosen at random, in proportion to weight: Envoy's `RANDOM`.
    Random,
    /// The endpoint with the fewest requests in flight among `choice_count`
    /// chosen at random (power of two choices; weighted by endpoint weight):
    /// Envoy's `LEAST_REQUEST`, gRPC's A48.
    LeastRequest {
        /// How many endpoints are compared per pick (default 2, at least 2;
        /// more than [`MAX_CHOICE_COUNT`] count as that many, as in gRPC,
        /// and read as that many from a file or xDS).
        choice_count: u32,
    },
    /// Consistent hashing on a ring of the endpoints (Envoy's `RING_HASH`,
    /// gRPC's A42): requests with the same hash (see
    /// [`RouteAction::hash_policy`]) go to the same endpoint, and an endpoint
    /// leaving moves only its share of the keys.
    RingHash {
        /// The fewest entries on the ring (default 1,024).
        minimum_ring_size: u64,
        /// The most entries on the ring (default 8,388,608).
        maximum_ring_size: u64,
    },
    /// Consistent hashing with Maglev's lookup table (Envoy's `MAGLEV`): O(1)
    /// per pick.
    Maglev {
        /// The table's size, a prime (default 65,537).
        table_size: u64,
    },
    /// Power of two choices on latency: each endpoint's cost is its peak-EWMA
    /// response time times its requests in flight, as linkerd2-proxy balances.
    PeakEwma {
        /// How fast the latency estimate forgets a peak (default 10 s).
        #[serde(with = "duration")]
        decay: Duration,
        /// The latency assumed for an endpoint not yet measured (default 30 ms).
        #[serde(with = "duration")]
        default_rtt: Duration,
    },
}

impl<'de> Deserialize<'de> for LbPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(raw::LbPolicyVisitor)
    }
}

pub(super) fn default_choice_count() -> u32 {
    2
}
pub(super) fn default_minimum_ring_size() -> u64 {
    1024
}
pub(super) fn default_maximum_ring_size() -> u64 {
    8 * 1024 * 1024
}
pub(super) fn default_maglev_table_size() -> u64 {
    65_537
}
pub(super) fn default_ewma_decay() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_ewma_rtt() -> Duration {
    Duration::from_millis(30)
}

/// The largest `least_request` `choice_count` that is used: more are
/// clamped to it, as gRPC does (A48), so a huge count cannot make each pick
/// draw billions of candidates.
pub const MAX_CHOICE_COUNT: u32 = 10;

/// The bytes one `ring_hash` ring entry takes: its 64-bit hash and the
/// 32-bit position of its endpoint.
pub const RING_ENTRY_BYTES: u64 = 12;

/// The bytes one `maglev` table slot takes: the 32-bit position of its
/// endpoint.
pub const MAGLEV_SLOT_BYTES: u64 = 4;

/// The most memory a cluster's hash rings or maglev tables may take
/// together. A hashing cluster builds one ring or table per priority level,
/// so this bounds their sum, not each one: it is one of Envoy's largest rings
/// (8,388,608 entries of [`RING_ENTRY_BYTES`], 96 MiB), or 25,165,824 maglev
/// slots of [`MAGLEV_SLOT_BYTES`] (five of Envoy's largest tables).
///
/// A file whose listed endpoints could need more is refused by validation,
/// naming the cluster and field. Endpoints that arrive later (EDS, DNS) are
/// balanced on rings or tables shrunk so that together they stay within it.
pub const MAX_CLUSTER_HASH_BYTES: u64 = 8 * 1024 * 1024 * RING_ENTRY_BYTES;

/// Whether `size` is a usable `maglev` table size: a prime up to 5,000,011
/// (Envoy's limit). The bound is checked first, so a huge size costs nothing
/// to refuse.
pub fn maglev_table_size_ok(size: u64) -> bool {
    (2..=5_000_011).contains(&size)
        && (2..)
            .take_while(|d: &u64| d * d <= size)
            .all(|d| !size.is_multiple_of(d))
}

impl LbPolicy {
    /// `least_request` with Envoy's default of two choices.
    pub fn least_request() -> Self {
        LbPolicy::LeastRequest {
            choice_count: default_choice_count(),
        }
    }

    /// `ring_hash` with Envoy's default ring sizes.
    pub fn ring_hash() -> Self {
        LbPolicy::RingHash {
            minimum_ring_size: default_minimum_ring_size(),
            maximum_ring_size: default_maximum_ring_size(),
        }
    }

    /// `maglev` with Envoy's default table size.
    pub fn maglev() -> Self {
        LbPolicy::Maglev {
            table_size: default_maglev_table_size(),
        }
    }

    /// `peak_ewma` with linkerd2-proxy's defaults.
    pub fn peak_ewma() -> Self {
        LbPolicy::PeakEwma {
            decay: default_ewma_decay(),
            default_rtt: default_ewma_rtt(),
        }
    }
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
#[non_exhaustive]
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
    /// Its priority: 0, the default, is the highest. Traffic goes to the
    /// highest priority while enough of it is healthy and spills to the next
    /// as its health falls (Envoy's priority levels, gRPC's A56).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
            priority: 0,
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
    ///
    /// YAML aliases are followed, up to a bound: a document may expand to
    /// at most 4 values and string bytes per byte of it, and 1 Mi more, so a
    /// small file reusing a large anchor many times is refused, not read.
    /// Flow collections (`{…}`, `[…]`) may nest 128 deep, and are checked
    /// for it before parsing, which is quadratic in their depth.
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
        validate::check(self, validate::Rules::Model)
            .map_err(|problems| ConfigError::invalid(None, problems))
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub(crate) fn parse_yaml(text: &str, origin: Option<&str>) -> Result<Self, ConfigError> {
        depth::check(text).map_err(|e| ConfigError::syntax(origin, e))?;
        let config: MeshConfig = expansion::deserialize(
            yaml_serde::Deserializer::from_str(text),
            expansion::limit_for(text.len()),
        )
        .map_err(|e| ConfigError::syntax(origin, e.to_string()))?;
        validate::check(&config, validate::Rules::File)
            .map_err(|problems| ConfigError::invalid(origin, problems))?;
        Ok(config)
    }

    pub(crate) fn parse_json(text: &str, origin: Option<&str>) -> Result<Self, ConfigError> {
        let config: MeshConfig =
            serde_json::from_str(text).map_err(|e| ConfigError::syntax(origin, e.to_string()))?;
        validate::check(&config, validate::Rules::File)
            .map_err(|problems| ConfigError::invalid(origin, problems))?;
        Ok(config)
    }
}

impl std::str::FromStr for MeshConfig {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_yaml(text)
    }
}
