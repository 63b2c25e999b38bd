//! What the balancer knows of each endpoint's load: its requests in flight
//! and, for `peak_ewma`, its latency estimate. One [`EndpointLoad`] per
//! endpoint address, kept across endpoint updates like the endpoint's client,
//! and shared with every request in flight to it through an [`InFlight`] guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::peak_ewma::{Ewma, RttEstimate};

/// A balancer's clock: nanoseconds since the balancer was made. Tokio's
/// clock, so tests can pause and advance it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    epoch: tokio::time::Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock {
            epoch: tokio::time::Instant::now(),
        }
    }

    /// Nanoseconds since the clock was made.
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One endpoint's load, updated with atomics only.
#[derive(Debug, Default)]
pub(super) struct EndpointLoad {
    active: AtomicU32,
    rtt: RttEstimate,
}

impl EndpointLoad {
    /// Requests sent to the endpoint whose response headers have not arrived.
    pub(super) fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// The endpoint's latency estimate.
    pub(super) fn rtt(&self) -> &RttEstimate {
        &self.rtt
    }

    /// Counts a request in flight until the returned guard is dropped; with
    /// `ewma`, the guard also measures the request's latency.
    pub(super) fn start(self: &Arc<Self>, ewma: Option<&Ewma>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        InFlight {
            load: self.clone(),
            probe: ewma.map(|ewma| Probe {
                started: ewma.clock().now(),
                ewma: *ewma,
            }),
        }
    }
}

/// One request in flight to an endpoint: counted in its load until dropped.
///
/// Dropped when the response headers arrive (the endpoint has answered), when
/// the request fails, or when the caller gives up on it. Its latency is
/// recorded when the response arrives and when the caller gives up (the time
/// waited is a lower bound of the endpoint's latency, which the peak estimate
/// should see), not when the request fails: an endpoint that refuses
/// connections at once must not look fast.
#[derive(Debug)]
pub(crate) struct InFlight {
    load: Arc<EndpointLoad>,
    probe: Option<Probe>,
}

#[derive(Debug)]
struct Probe {
    started: u64,
    ewma: Ewma,
}

impl InFlight {
    /// The request failed: its latency says nothing of the endpoint's.
    pub(super) fn failed(mut self) {
        self.probe = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(Probe { started, ewma }) = self.probe.take() {
            let now = ewma.clock().now();
            self.load
                .rtt
                .record(&ewma, now.saturating_sub(started) as f64, now);
        }
        self.load.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_request_counts_until_its_guard_is_dropped() {
        let load = Arc::new(EndpointLoad::default());
        let first = load.start(None);
        let second = load.start(None);
        assert_eq!(load.active(), 2);
        drop(first);
        assert_eq!(load.active(), 1);
        second.failed();
        assert_eq!(load.active(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_records_the_latency_of_an_answer_or_of_giving_up_not_of_a_failure() {
        let ewma = Ewma::new(
            Duration::from_secs(10),
            Duration::from_millis(30),
            Clock::new(),
        );
        let load = Arc::new(EndpointLoad::default());
        let now = || ewma.clock().now();
        assert_eq!(
            load.rtt().estimate(&ewma, now()),
            30e6,
            "unmeasured: the default"
        );

        let request = load.start(Some(&ewma));
        tokio::time::advance(Duration::from_millis(80)).await;
        request.failed();
        assert_eq!(
            load.rtt().estimate(&ewma, now()),
            30e6,
            "a failure is not a measurement"
        );

        let request = load.start(Some(&ewma));
        tokio::time::advance(Duration::from_millis(50)).await;
        drop(request);
        assert_eq!(load.rtt().estimate(&ewma, now()), 50e6);
        assert_eq!(load.active(), 0);
    }
}
