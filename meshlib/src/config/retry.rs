//! Envoy's `RetryPolicy` (`route_components.proto`), as the model holds it
//! and the file writes it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HeaderMatcher, duration};

/// When and how often a request is retried: Envoy's `RetryPolicy`, set on a
/// route ([`RouteAction::retry_policy`](super::RouteAction::retry_policy)) or
/// on a virtual host ([`VirtualHost::retry_policy`](super::VirtualHost::retry_policy)).
/// A route's policy replaces its virtual host's whole: nothing is merged, as
/// in Envoy.
///
/// The [`Retry`](crate::retry::Retry) layer enforces it; see its docs for
/// what counts as a failure and which bodies can be resent.
///
/// ```
/// use std::time::Duration;
/// use meshlib::config::{MeshConfig, RetryCondition};
///
/// let config = MeshConfig::from_yaml(r#"
/// virtual_hosts:
///   - name: api
///     domains: ["api"]
///     retry_policy: { retry_on: "connect-failure" }
///     routes:
///       - name: orders
///         match: { prefix: /orders }
///         route:
///           cluster: orders
///           timeout: 2s
///           retry_policy:
///             retry_on: "5xx,retriable-status-codes"
///             retriable_status_codes: [429]
///             num_retries: 3
///             per_try_timeout: 500ms
///             retry_back_off: { base_interval: 10ms, max_interval: 100ms }
/// clusters: [{ name: orders }]
/// "#)?;
/// let policy = config.virtual_hosts[0].routes[0].action.retry_policy.as_ref().unwrap();
/// assert!(policy.retry_on.contains(RetryCondition::FiveXx));
/// assert_eq!(policy.num_retries, 3);
/// assert_eq!(policy.per_try_timeout, Some(Duration::from_millis(500)));
/// assert_eq!(policy.retry_back_off.max_interval, Duration::from_millis(100));
///
/// // Left out, Envoy's defaults: one retry, 25 ms base and 250 ms max backoff.
/// let host = config.virtual_hosts[0].retry_policy.as_ref().unwrap();
/// assert_eq!(host.num_retries, 1);
/// assert_eq!(host.retry_back_off.base_interval, Duration::from_millis(25));
/// assert_eq!(host.retry_back_off.max_interval, Duration::from_millis(250));
/// # Ok::<(), meshlib::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRetryPolicy", into = "RawRetryPolicy")]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The conditions a failed attempt must meet to be retried; Envoy's
    /// comma-separated `retry_on`, e.g. `"5xx,reset"`.
    pub retry_on: RetryOn,
    /// How many retries at most, after the first attempt (default 1).
    pub num_retries: u32,
    /// The longest one attempt may wait for its response headers; none when
    /// absent (or zero). The route's timeout still bounds the whole request.
    pub per_try_timeout: Option<Duration>,
    /// The wait between attempts.
    pub retry_back_off: RetryBackOff,
    /// Response statuses retried under `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// Response header rules retried under `retriable-headers`: a response
    /// matching any of them is retried. `:status` names the status.
    pub retriable_headers: Vec<HeaderMatcher>,
    /// When not empty, only requests matching one of these rules are retried.
    pub retriable_request_headers: Vec<HeaderMatcher>,
    /// Whose rules a gRPC request follows: Envoy's (the file's default) or
    /// gRPC's proxyless clients' (what a policy from xDS gets).
    pub grpc_rules: GrpcRetryRules,
}

/// Whose rules a gRPC request (`content-type: application/grpc…`) follows
/// under a [`RetryPolicy`]; other requests always follow Envoy's.
///
/// Envoy and gRPC read the same `RetryPolicy` differently. Under
/// [`Proxyless`](GrpcRetryRules::Proxyless), a meshlib client retries a gRPC
/// call as gRPC's own xDS clients do (gRFC A44 on A6), so the two agree when
/// one control plane configures both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GrpcRetryRules {
    /// Envoy's router: every `retry_on` condition counts, `num_retries` is
    /// not capped, and a `grpc-retry-pushback-ms` response header is not
    /// read.
    #[default]
    Envoy,
    /// gRPC's xDS clients (gRFC A44): only the five gRPC conditions count
    /// (`cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`,
    /// `unavailable`); a failure without a response counts as gRPC reports
    /// it (`UNAVAILABLE` for a connect failure or a reset,
    /// `DEADLINE_EXCEEDED` for a `per_try_timeout`); at most 5 attempts in
    /// all, as A6 caps `maxAttempts`; and the server's
    /// `grpc-retry-pushback-ms` sets the next wait (a negative or malformed
    /// value stops the retries), the backoff starting over after it.
    /// `per_try_timeout` is honoured, though gRPC ignores it: a sidecar user
    /// who set it expects it.
    Proxyless,
}

impl RetryPolicy {
    /// A policy retrying on `retry_on` with Envoy's defaults: one retry, no
    /// per-try timeout, 25 ms / 250 ms backoff, no status codes or header rules.
    pub fn new(retry_on: RetryOn) -> Self {
        RetryPolicy {
            retry_on,
            num_retries: 1,
            per_try_timeout: None,
            retry_back_off: RetryBackOff::default(),
            retriable_status_codes: Vec::new(),
            retriable_headers: Vec::new(),
            retriable_request_headers: Vec::new(),
            grpc_rules: GrpcRetryRules::Envoy,
        }
    }
}

/// Envoy's fully jittered exponential backoff: before retry `n` (from 0)
/// the wait is drawn uniformly from `[0, min(base_interval × 2ⁿ, max_interval))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryBackOff {
    /// The first retry's bound (default 25 ms; must be above 0).
    pub base_interval: Duration,
    /// The largest bound (default 10 × `base_interval`; at least `base_interval`).
    pub max_interval: Duration,
}

/// Envoy's default `base_interval`.
pub(crate) const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);

impl RetryBackOff {
    /// Backoff from `base_interval`, to `max_interval` or, when `None`, ten
    /// times the base, as Envoy defaults it.
    pub fn new(base_interval: Duration, max_interval: Option<Duration>) -> Self {
        RetryBackOff {
            base_interval,
            max_interval: max_interval.unwrap_or(base_interval.saturating_mul(10)),
        }
    }
}

impl Default for RetryBackOff {
    fn default() -> Self {
        RetryBackOff::new(DEFAULT_BASE_INTERVAL, None)
    }
}

/// One `retry_on` condition, by Envoy's name (`x-envoy-retry-on` and
/// `x-envoy-retry-grpc-on` values).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCondition {
    /// `5xx`: a 5xx response, or no response at all (connect failure, reset,
    /// per-try timeout).
    FiveXx,
    /// `gateway-error`: a 502, 503 or 504 response, or no response at all.
    GatewayError,
    /// `reset`: no response at all (connect failure, reset, per-try timeout).
    Reset,
    /// `reset-before-request`: the request never reached the endpoint
    /// (meshlib knows that of a connect failure).
    ResetBeforeRequest,
    /// `connect-failure`: connecting to the endpoint failed.
    ConnectFailure,
    /// `refused-stream`: the endpoint refused the HTTP/2 stream. Accepted,
    /// but meshlib cannot yet tell a refused stream from another reset, so
    /// on its own it retries nothing (`reset` covers it).
    RefusedStream,
    /// `retriable-4xx`: a 409 response (the only 4xx Envoy retries).
    Retriable4xx,
    /// `retriable-status-codes`: a status in [`RetryPolicy::retriable_status_codes`].
    RetriableStatusCodes,
    /// `retriable-headers`: a response matching [`RetryPolicy::retriable_headers`].
    RetriableHeaders,
    /// `envoy-ratelimited`: a response carrying `x-envoy-ratelimited`.
    EnvoyRateLimited,
    /// `cancelled`: gRPC status 1 in the response headers.
    Cancelled,
    /// `deadline-exceeded`: gRPC status 4.
    DeadlineExceeded,
    /// `resource-exhausted`: gRPC status 8.
    ResourceExhausted,
    /// `internal`: gRPC status 13.
    Internal,
    /// `unavailable`: gRPC status 14.
    Unavailable,
}

const CONDITIONS: [(RetryCondition, &str); 15] = [
    (RetryCondition::FiveXx, "5xx"),
    (RetryCondition::GatewayError, "gateway-error"),
    (RetryCondition::Reset, "reset"),
    (RetryCondition::ResetBeforeRequest, "reset-before-request"),
    (RetryCondition::ConnectFailure, "connect-failure"),
    (RetryCondition::RefusedStream, "refused-stream"),
    (RetryCondition::Retriable4xx, "retriable-4xx"),
    (
        RetryCondition::RetriableStatusCodes,
        "retriable-status-codes",
    ),
    (RetryCondition::RetriableHeaders, "retriable-headers"),
    (RetryCondition::EnvoyRateLimited, "envoy-ratelimited"),
    (RetryCondition::Cancelled, "cancelled"),
    (RetryCondition::DeadlineExceeded, "deadline-exceeded"),
    (RetryCondition::ResourceExhausted, "resource-exhausted"),
    (RetryCondition::Internal, "internal"),
    (RetryCondition::Unavailable, "unavailable"),
];

/// Conditions Envoy knows that never apply to meshlib (it speaks no HTTP/3):
/// accepted and without effect.
const INERT: [&str; 1] = ["http3-post-connect-failure"];

impl RetryCondition {
    /// Envoy's name for it, e.g. `connect-failure`.
    pub fn name(self) -> &'static str {
        CONDITIONS
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("", |(_, name)| name)
    }

    /// The condition Envoy calls `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        CONDITIONS.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }

    fn bit(self) -> u32 {
        1 << CONDITIONS.iter().position(|(c, _)| *c == self).unwrap_or(0)
    }
}

/// A set of [`RetryCondition`]s: a `retry_on` value.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u32);

impl RetryOn {
    /// No condition: nothing is retried.
    pub fn none() -> Self {
        RetryOn(0)
    }

    /// The set with `condition` added.
    pub fn with(mut self, condition: RetryCondition) -> Self {
        self.0 |= condition.bit();
        self
    }

    /// Whether `condition` is in the set.
    pub fn contains(self, condition: RetryCondition) -> bool {
        self.0 & condition.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Reads Envoy's comma-separated form (spaces around names allowed):
    /// the conditions, and the names that are none (empty names skipped).
    ///
    /// ```
    /// use meshlib::config::{RetryCondition, RetryOn};
    ///
    /// let (on, unknown) = RetryOn::parse("5xx, unavailable,bogus");
    /// assert!(on.contains(RetryCondition::FiveXx) && on.contains(RetryCondition::Unavailable));
    /// assert_eq!(unknown, ["bogus"]);
    /// assert_eq!(on.to_string(), "5xx,unavailable");
    /// ```
    pub fn parse(text: &str) -> (RetryOn, Vec<String>) {
        let mut on = RetryOn::none();
        let mut unknown = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match RetryCondition::from_name(name) {
                Some(condition) => on = on.with(condition),
                None if INERT.contains(&name) => {}
                None => unknown.push(name.to_owned()),
            }
        }
        (on, unknown)
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (condition, name) in CONDITIONS {
            if self.contains(condition) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryOn({self})")
    }
}

impl FromIterator<RetryCondition> for RetryOn {
    fn from_iter<I: IntoIterator<Item = RetryCondition>>(iter: I) -> Self {
        iter.into_iter().fold(RetryOn::none(), RetryOn::with)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackOff {
    #[serde(with = "duration")]
    base_interval: Duration,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    max_interval: Option<Duration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetryPolicy {
    #[serde(default)]
    retry_on: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_retries: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    per_try_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_back_off: Option<RawBackOff>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retriable_status_codes: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retriable_headers: Vec<HeaderMatcher>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retriable_request_headers: Vec<HeaderMatcher>,
    #[serde(default)]
    grpc_rules: GrpcRetryRules,
}

impl TryFrom<RawRetryPolicy> for RetryPolicy {
    type Error = String;

    fn try_from(raw: RawRetryPolicy) -> Result<Self, String> {
        let (retry_on, unknown) = RetryOn::parse(&raw.retry_on);
        // A file is ours to check: a misspelt condition would silently
        // retry nothing (over xDS, unknown names are ignored, as Envoy does).
        if !unknown.is_empty() {
            let known: Vec<&str> = CONDITIONS.iter().map(|(_, n)| *n).collect();
            return Err(format!(
                "retry_policy: retry_on: unknown condition {} (known: {})",
                unknown
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known.join(", ")
            ));
        }
        Ok(RetryPolicy {
            retry_on,
            num_retries: raw.num_retries.unwrap_or(1),
            per_try_timeout: raw.per_try_timeout.filter(|t| !t.is_zero()),
            retry_back_off: raw
                .retry_back_off
                .map(|b| RetryBackOff::new(b.base_interval, b.max_interval))
                .unwrap_or_default(),
            retriable_status_codes: raw.retriable_status_codes,
            retriable_headers: raw.retriable_headers,
            retriable_request_headers: raw.retriable_request_headers,
            grpc_rules: raw.grpc_rules,
        })
    }
}

impl From<RetryPolicy> for RawRetryPolicy {
    fn from(p: RetryPolicy) -> Self {
        RawRetryPolicy {
            retry_on: p.retry_on.to_string(),
            num_retries: Some(p.num_retries),
            per_try_timeout: p.per_try_timeout,
            retry_back_off: Some(RawBackOff {
                base_interval: p.retry_back_off.base_interval,
                max_interval: Some(p.retry_back_off.max_interval),
            }),
            retriable_status_codes: p.retriable_status_codes,
            retriable_headers: p.retriable_headers,
            retriable_request_headers: p.retriable_request_headers,
            grpc_rules: p.grpc_rules,
        }
    }
}
