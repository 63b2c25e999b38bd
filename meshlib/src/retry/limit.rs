//! A cluster's limits on retries in flight: Envoy's `max_retries` and
//! `retry_budget` circuit breakers ([`CircuitBreakers`]). Each cluster stack
//! holds one [`RetryLimits`]; the [`Retry`](super::Retry) layer asks it
//! before every retry through the [`RetryGate`] the cluster lookup puts in
//! the request's extensions.
//!
//! A retry counts from the moment it is decided (its backoff wait included)
//! until its attempt has an answer, as Envoy counts it. With a budget, the
//! limit is `budget_percent` of the requests in flight to the cluster
//! (awaiting their response headers; Envoy counts until the stream ends),
//! and never below `min_retry_concurrency`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::policy::Rules;
use crate::config::CircuitBreakers;

/// One cluster's retries in flight, and how many were refused.
#[derive(Debug)]
pub(crate) struct RetryLimits {
    /// As configured; `None` takes Envoy's default under Envoy's rules and
    /// no limit under gRPC's, as gRPC's clients have none.
    breakers: Option<CircuitBreakers>,
    active: AtomicU32,
    refused: AtomicU64,
}

/// Envoy's `max_retries` when a cluster sets no circuit breakers.
const ENVOY_DEFAULT_MAX_RETRIES: u32 = 3;

impl RetryLimits {
    pub(crate) fn new(breakers: Option<CircuitBreakers>) -> Self {
        RetryLimits {
            breakers,
            active: AtomicU32::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The most retries in flight at once for a request judged by `rules`,
    /// with `requests` in flight to the cluster (read only under a budget).
    fn limit(&self, rules: Rules, requests: impl FnOnce() -> u32) -> Option<u32> {
        let breakers = match (self.breakers, rules) {
            (Some(breakers), _) => breakers,
            (None, Rules::Envoy) => return Some(ENVOY_DEFAULT_MAX_RETRIES),
            (None, Rules::Grpc) => return None,
        };
        Some(match breakers.retry_budget {
            None => breakers.max_retries,
            Some(budget) => {
                let share = f64::from(requests()) * budget.budget_percent / 100.0;
                // Floored: a share is a whole number of retries.
                (share as u32).max(budget.min_retry_concurrency)
            }
        })
    }

    /// Starts a retry if the limit allows one more in flight; it counts
    /// until the returned guard is dropped. `None` is counted as refused.
    pub(crate) fn start(
        self: &Arc<Self>,
        rules: Rules,
        requests: impl FnOnce() -> u32,
    ) -> Option<InFlightRetry> {
        let guard = InFlightRetry(self.clone());
        let before = self.active.fetch_add(1, Ordering::AcqRel);
        match self.limit(rules, requests) {
            Some(limit) if before >= limit => {
                drop(guard);
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => Some(guard),
        }
    }

    /// Retries refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Retries in flight now.
    #[cfg(test)]
    pub(crate) fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }
}

/// One retry in flight; see [`RetryLimits::start`].
#[derive(Debug)]
pub(crate) struct InFlightRetry(Arc<RetryLimits>);

impl Drop for InFlightRetry {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the [`Retry`](super::Retry) layer asks of the request's cluster
/// before a retry: put in the request's extensions by the cluster lookup
/// (when the route has a retry policy), so the layer needs no knowledge of
/// the cluster stack's type.
#[derive(Clone)]
pub(crate) struct RetryGate(pub(crate) Arc<dyn Gate>);

impl std::fmt::Debug for RetryGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryGate")
    }
}

/// A cluster that limits retries.
pub(crate) trait Gate: Send + Sync {
    /// Starts a retry of a request judged by `rules`, if the cluster's
    /// limits allow it.
    fn start_retry(&self, rules: Rules) -> Option<InFlightRetry>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryBudget;

    fn limits(breakers: Option<CircuitBreakers>) -> Arc<RetryLimits> {
        Arc::new(RetryLimits::new(breakers))
    }

    #[test]
    fn without_breakers_envoy_allows_three_at_once_and_grpc_any() {
        let l = limits(None);
        let held: Vec<_> = (0..3)
            .map(|_| l.start(Rules::Envoy, || 0).unwrap())
            .collect();
        assert!(l.start(Rules::Envoy, || 0).is_none(), "the fourth");
        assert_eq!((l.active(), l.refused()), (3, 1));
        let grpc: Vec<_> = (0..50)
            .map(|_| l.start(Rules::Grpc, || 0).unwrap())
            .collect();
        drop((held, grpc));
        assert_eq!(l.active(), 0);
        assert!(l.start(Rules::Envoy, || 0).is_some(), "released");
    }

    #[test]
    fn max_retries_applies_to_both_rules_when_set() {
        let l = limits(Some(CircuitBreakers {
            max_retries: 1,
            ..CircuitBreakers::default()
        }));
        let first = l.start(Rules::Grpc, || 0).unwrap();
        assert!(l.start(Rules::Grpc, || 0).is_none());
        assert!(l.start(Rules::Envoy, || 0).is_none());
        drop(first);
        assert!(l.start(Rules::Grpc, || 0).is_some());
        assert_eq!(l.refused(), 2);
    }

    #[test]
    fn a_budget_grows_with_the_requests_in_flight_above_its_floor() {
        let mut budget = RetryBudget::new();
        budget.budget_percent = 25.0;
        budget.min_retry_concurrency = 2;
        let breakers = CircuitBreakers {
            retry_budget: Some(budget),
            ..CircuitBreakers::default()
        };
        let l = limits(Some(breakers));
        // 4 requests in flight: 25 % is 1, the floor 2.
        let held: Vec<_> = (0..2)
            .map(|_| l.start(Rules::Envoy, || 4).unwrap())
            .collect();
        assert!(l.start(Rules::Envoy, || 4).is_none());
        // 40 in flight: 10 retries.
        let more: Vec<_> = (0..8)
            .map(|_| l.start(Rules::Envoy, || 40).unwrap())
            .collect();
        assert!(l.start(Rules::Envoy, || 40).is_none());
        assert_eq!(l.active(), 10);
        drop((held, more));
    }
}
