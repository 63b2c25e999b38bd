//! Local rate limiting, as Envoy's `envoy.filters.http.local_ratelimit`:
//! one token bucket shared by every request through the layer, checked
//! before the request goes on.
//!
//! The bucket is GCRA ([`governor`]), the continuous bucket Envoy's filter
//! uses: it holds at most `max_tokens`, and a token comes back every
//! `fill_interval / tokens_per_fill`, so `tokens_per_fill` requests per
//! `fill_interval` pass on average, `max_tokens` at once after a quiet spell.
//! `filter_enabled` is the share of requests checked at all; of those,
//! `filter_enforced` the share a refusal applies to. A refusal that does
//! not apply is a shadow refusal: the request goes on, and is counted.
//! Both default to 0 %, as Envoy's ("for safety"): a configuration must say
//! how much of the limit it means.
//!
//! A refused request is answered at once, without reaching the service:
//! `status` (429 by default; one below 400 is taken as 429, as Envoy does),
//! with `x-envoy-ratelimited: true` and, when asked for, the draft
//! `X-RateLimit-*` headers. A gRPC request (`content-type: application/grpc…`)
//! gets a Trailers-Only answer instead: HTTP 200 with `grpc-status`
//! `UNAVAILABLE` (what gRPC makes of a 429), or `RESOURCE_EXHAUSTED` with
//! `rate_limited_as_resource_exhausted`.
//!
//! The layer works on either side: around a hyper, axum or tonic server's
//! service, it caps what the server accepts; around a [`MeshClient`]
//! (a service too), what a caller sends to its dependencies.
//!
//! ```
//! use std::time::Duration;
//! use meshlib::ratelimit::{LocalRateLimit, LocalRateLimitLayer, TokenBucket};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // 2 requests at once, then one every 500 ms.
//! let limit = LocalRateLimit::enforced(TokenBucket::new(2, 1, Duration::from_millis(500)));
//! let layer = LocalRateLimitLayer::new(limit)?;
//! let stats = layer.stats();
//! let service = layer.layer(service_fn(|_: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
//! }));
//! let mut statuses = Vec::new();
//! for _ in 0..3 {
//!     let response = service.clone().oneshot(http::Request::new(())).await?;
//!     statuses.push(response.status().as_u16());
//! }
//! assert_eq!(statuses, [200, 200, 429]);
//! assert_eq!(stats.rate_limited(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! [`MeshClient`]: crate::MeshClient

mod layer;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use rand::RngExt;
use serde::{Deserialize, Serialize};

pub use layer::{HeadersAdded, LocalRateLimitLayer, LocalRateLimitService};

/// Envoy's smallest `fill_interval`: shorter ones refill too eagerly.
pub const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

/// The settings of one local rate limit (Envoy's `LocalRateLimit`).
///
/// ```
/// use meshlib::ratelimit::LocalRateLimit;
///
/// let limit: LocalRateLimit = serde_json::from_str(r#"{
///   "token_bucket": {"max_tokens": 100, "tokens_per_fill": 10, "fill_interval": "1s"},
///   "filter_enabled": 100, "filter_enforced": 50, "status": 503
/// }"#)?;
/// assert_eq!(limit.token_bucket.max_tokens, 100);
/// assert_eq!(limit.filter_enforced, 50.0);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LocalRateLimit {
    /// The bucket every request takes a token from.
    pub token_bucket: TokenBucket,
    /// The share of requests checked, in percent (default 0, as Envoy's).
    #[serde(default)]
    pub filter_enabled: f64,
    /// Of the checked requests, the share a refusal applies to, in percent
    /// (default 0: refusals are only counted, the shadow mode).
    #[serde(default)]
    pub filter_enforced: f64,
    /// The HTTP status of a refusal (default 429; below 400 means 429).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Whether a refusal carries the draft `X-RateLimit-Limit`,
    /// `X-RateLimit-Remaining` and `X-RateLimit-Reset` headers (Envoy's
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`); allowed requests'
    /// responses carry them too.
    #[serde(default)]
    pub x_ratelimit_headers: bool,
    /// Whether a refused gRPC request fails `RESOURCE_EXHAUSTED` rather
    /// than `UNAVAILABLE`.
    #[serde(default)]
    pub rate_limited_as_resource_exhausted: bool,
}

fn default_status() -> u16 {
    429
}

impl LocalRateLimit {
    /// A limit checked and enforced on every request.
    pub fn enforced(token_bucket: TokenBucket) -> Self {
        LocalRateLimit {
            token_bucket,
            filter_enabled: 100.0,
            filter_enforced: 100.0,
            status: default_status(),
            x_ratelimit_headers: false,
            rate_limited_as_resource_exhausted: false,
        }
    }

    /// The same limit, counting refusals without applying them.
    pub fn shadow(mut self) -> Self {
        self.filter_enforced = 0.0;
        self
    }

    /// The same limit, with the `X-RateLimit-*` headers.
    pub fn with_x_ratelimit_headers(mut self) -> Self {
        self.x_ratelimit_headers = true;
        self
    }

    /// Checks the settings; the error names the field at fault.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let refuse = |field: &'static str, message: String| Err(SettingsError { field, message });
        let bucket = &self.token_bucket;
        if bucket.max_tokens == 0 {
            return refuse("token_bucket.max_tokens", "must be at least 1".to_owned());
        }
        if bucket.tokens_per_fill == 0 {
            return refuse(
                "token_bucket.tokens_per_fill",
                "must be at least 1".to_owned(),
            );
        }
        if bucket.fill_interval < MIN_FILL_INTERVAL {
            return refuse(
                "token_bucket.fill_interval",
                format!(
                    "{:?} is below Envoy's least, {MIN_FILL_INTERVAL:?}",
                    bucket.fill_interval
                ),
            );
        }
        for (field, percent) in [
            ("filter_enabled", self.filter_enabled),
            ("filter_enforced", self.filter_enforced),
        ] {
            if !(0.0..=100.0).contains(&percent) {
                return refuse(field, format!("{percent} is not a percentage (0 to 100)"));
            }
        }
        Ok(())
    }

    /// The status a refusal is answered with.
    pub fn refusal_status(&self) -> http::StatusCode {
        match http::StatusCode::from_u16(self.status) {
            Ok(status) if status.as_u16() >= 400 => status,
            _ => http::StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl PartialEq for LocalRateLimit {
    fn eq(&self, other: &Self) -> bool {
        self.token_bucket == other.token_bucket
            && self.filter_enabled.to_bits() == other.filter_enabled.to_bits()
            && self.filter_enforced.to_bits() == other.filter_enforced.to_bits()
            && self.status == other.status
            && self.x_ratelimit_headers == other.x_ratelimit_headers
            && self.rate_limited_as_resource_exhausted == other.rate_limited_as_resource_exhausted
    }
}

// Equal by their bits, the percentages compare reflexively.
impl Eq for LocalRateLimit {}

/// Settings a limiter cannot be made from: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// The field, as a path (`token_bucket.max_tokens`).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Envoy's `TokenBucket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenBucket {
    /// The most tokens the bucket holds: requests that may pass at once.
    pub max_tokens: u32,
    /// Tokens added per `fill_interval` (default 1).
    #[serde(default = "default_tokens_per_fill")]
    pub tokens_per_fill: u32,
    /// How often `tokens_per_fill` tokens come back (at least 50 ms).
    #[serde(with = "crate::config::duration")]
    pub fill_interval: Duration,
}

fn default_tokens_per_fill() -> u32 {
    1
}

impl TokenBucket {
    /// A bucket of `max_tokens`, gaining `tokens_per_fill` every `fill_interval`.
    pub fn new(max_tokens: u32, tokens_per_fill: u32, fill_interval: Duration) -> Self {
        TokenBucket {
            max_tokens,
            tokens_per_fill,
            fill_interval,
        }
    }
}

/// What the limiter has decided, counted since it was made (Envoy's
/// `local_rate_limit` statistics). Clones share the counters.
#[derive(Debug, Clone, Default)]
pub struct RateLimitStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    enabled: AtomicU64,
    ok: AtomicU64,
    rate_limited: AtomicU64,
    enforced: AtomicU64,
}

impl RateLimitStats {
    /// Requests checked against the bucket.
    pub fn enabled(&self) -> u64 {
        self.counters.enabled.load(Ordering::Relaxed)
    }

    /// Checked requests the bucket had a token for.
    pub fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::Relaxed)
    }

    /// Checked requests the bucket had no token for, refused or not.
    pub fn rate_limited(&self) -> u64 {
        self.counters.rate_limited.load(Ordering::Relaxed)
    }

    /// Requests refused: rate limited, with the refusal applied.
    pub fn enforced(&self) -> u64 {
        self.counters.enforced.load(Ordering::Relaxed)
    }

    /// Rate limited but let through (the shadow mode).
    pub fn shadow_limited(&self) -> u64 {
        self.rate_limited().saturating_sub(self.enforced())
    }
}

/// Tokio's clock for governor, so paused test time drives the bucket.
#[derive(Debug, Clone)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type Bucket = RateLimiter<NotKeyed, InMemoryState, TokioClock, StateInformationMiddleware>;

/// The outcome of [`LocalRateLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not checked, or checked with a token to spare: `remaining` tokens
    /// are left (`None` when not checked).
    Allowed {
        /// Tokens left after this request.
        remaining: Option<u32>,
    },
    /// No token: refuse, and tell the caller a token is back in `reset`.
    Refused {
        /// How long until a token is back.
        reset: Duration,
    },
    /// No token, but the refusal does not apply (shadow mode).
    ShadowRefused,
}

/// One limit's bucket and counters; shared by every clone of its layer.
#[derive(Debug)]
pub struct LocalRateLimiter {
    settings: LocalRateLimit,
    bucket: Bucket,
    /// The bucket's clock (a copy: both count from the same start).
    clock: TokioClock,
    stats: RateLimitStats,
}

impl LocalRateLimiter {
    /// A limiter for `settings`, with a full bucket; an error names the
    /// field at fault. Needs the Tokio time driver's clock, so make it
    /// inside a runtime.
    pub fn new(settings: LocalRateLimit) -> Result<Self, SettingsError> {
        settings.validate()?;
        let bucket = settings.token_bucket;
        let per_token = bucket.fill_interval / bucket.tokens_per_fill;
        let burst = NonZeroU32::new(bucket.max_tokens).unwrap_or(NonZeroU32::MIN);
        // Validated: at least 50 ms over at most 2^32 tokens, never zero.
        let quota = Quota::with_period(per_token)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        let clock = TokioClock {
            start: tokio::time::Instant::now(),
        };
        Ok(LocalRateLimiter {
            bucket: RateLimiter::direct_with_clock(quota, clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
            clock,
            settings,
            stats: RateLimitStats::default(),
        })
    }

    /// Its settings.
    pub fn settings(&self) -> &LocalRateLimit {
        &self.settings
    }

    /// Its counters.
    pub fn stats(&self) -> RateLimitStats {
        self.stats.clone()
    }

    /// Decides one request: takes a token if it is checked.
    pub fn check(&self) -> Decision {
        let counters = &self.stats.counters;
        if !drawn(self.settings.filter_enabled) {
            return Decision::Allowed { remaining: None };
        }
        counters.enabled.fetch_add(1, Ordering::Relaxed);
        match self.bucket.check() {
            Ok(state) => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
                Decision::Allowed {
                    remaining: Some(state.remaining_burst_capacity()),
                }
            }
            Err(not_until) => {
                counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                if drawn(self.settings.filter_enforced) {
                    counters.enforced.fetch_add(1, Ordering::Relaxed);
                    Decision::Refused {
                        reset: not_until.wait_time_from(self.clock.now()),
                    }
                } else {
                    Decision::ShadowRefused
                }
            }
        }
    }
}

/// Whether a request falls in `percent` of them.
fn drawn(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && rand::rng().random_range(0.0..100.0) < percent)
}

#[cfg(test)]
mod tests;
