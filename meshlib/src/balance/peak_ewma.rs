//! `peak_ewma`: power of two choices on latency, as linkerd2-proxy balances
//! (tower's `PeakEwma` load behind `p2c::Balance`).
//!
//! Each endpoint keeps a latency estimate that jumps to any response time
//! above it (the peak) and otherwise moves towards each new response time by
//! an exponentially weighted moving average whose weight depends on the time
//! since the last one (`decay`). Between responses the estimate decays towards
//! zero, so an endpoint that stopped getting traffic because it was slow is
//! tried again. An endpoint not yet measured is assumed to answer in
//! `default_rtt`. A pick draws two distinct endpoints and takes the one of
//! lower cost, its estimate times its requests in flight plus one.
//!
//! Unlike tower, reading an estimate writes nothing (the decay is computed,
//! not stored), so picks contend on no cache line; and endpoint weights are
//! honoured (linkerd2-proxy has none): the two candidates are drawn in
//! proportion to weight, then latency and load alone choose between them, so
//! idle endpoints of equal latency share traffic by weight. With equal
//! weights this is tower's behaviour exactly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;

use super::group::Member;
use super::load::Clock;
use super::sampler::WeightedIndex;

/// The estimate's parameters and the clock it is kept on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ewma {
    decay_ns: f64,
    default_ns: f64,
    clock: Clock,
}

impl Ewma {
    pub(super) fn new(decay: Duration, default_rtt: Duration, clock: Clock) -> Self {
        Ewma {
            decay_ns: (decay.as_nanos() as f64).max(1.0),
            default_ns: default_rtt.as_nanos() as f64,
            clock,
        }
    }

    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// How much of an estimate `elapsed_ns` old is left.
    fn remaining(&self, elapsed_ns: u64) -> f64 {
        (-(elapsed_ns as f64) / self.decay_ns).exp()
    }
}

/// Not measured yet.
const NEVER: u64 = u64::MAX;

/// One endpoint's latency estimate, in nanoseconds, kept in two atomics: the
/// estimate (as `f64` bits) and when it was last set. A reader racing a writer
/// may see the new time with the old estimate: the error is one response's
/// worth of decay, which the policy tolerates.
#[derive(Debug)]
pub(super) struct RttEstimate {
    nanos: AtomicU64,
    at: AtomicU64,
}

impl Default for RttEstimate {
    fn default() -> Self {
        RttEstimate {
            nanos: AtomicU64::new(0f64.to_bits()),
            at: AtomicU64::new(NEVER),
        }
    }
}

impl RttEstimate {
    /// The estimate at `now`: the last one decayed towards zero for the time
    /// since, or `default_rtt` if there is none.
    pub(super) fn estimate(&self, ewma: &Ewma, now: u64) -> f64 {
        let at = self.at.load(Ordering::Acquire);
        if at == NEVER {
            return ewma.default_ns;
        }
        f64::from_bits(self.nanos.load(Ordering::Relaxed)) * ewma.remaining(now.saturating_sub(at))
    }

    /// Takes a response time `rtt_ns` measured at `now` into the estimate.
    pub(super) fn record(&self, ewma: &Ewma, rtt_ns: f64, now: u64) {
        let at = self.at.load(Ordering::Relaxed);
        let mut current = self.nanos.load(Ordering::Relaxed);
        loop {
            let estimate = f64::from_bits(current);
            let next = if at == NEVER || rtt_ns >= estimate {
                rtt_ns
            } else {
                let kept = ewma.remaining(now.saturating_sub(at));
                estimate * kept + rtt_ns * (1.0 - kept)
            };
            match self.nanos.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // After the estimate, so a reader that sees the time sees the estimate.
        self.at.store(now, Ordering::Release);
    }
}

/// The `peak_ewma` picker over one group's members.
#[derive(Debug)]
pub(super) struct PeakEwma {
    candidates: WeightedIndex,
    ewma: Ewma,
}

impl PeakEwma {
    /// The picker over `members`; `None` if none has weight.
    pub(super) fn new(members: &[Member], ewma: Ewma) -> Option<Self> {
        Some(PeakEwma {
            candidates: WeightedIndex::new(members.iter().map(|m| m.weight))?,
            ewma,
        })
    }

    /// The position in `members` of the cheaper of two distinct candidates.
    pub(super) fn pick<R: Rng + ?Sized>(&self, members: &[Member], rng: &mut R) -> usize {
        let a = self.candidates.sample(rng);
        let b = self.candidates.sample_other(rng, a);
        if a == b {
            return a;
        }
        let now = self.ewma.clock.now();
        if self.cost(&members[b], now) < self.cost(&members[a], now) {
            b
        } else {
            a
        }
    }

    fn cost(&self, member: &Member, now: u64) -> f64 {
        let load = &member.load;
        load.rtt().estimate(&self.ewma, now) * f64::from(load.active() + 1)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::balance::group::tests::members;

    fn ewma() -> Ewma {
        Ewma::new(
            Duration::from_secs(10),
            Duration::from_millis(30),
            Clock::new(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_higher_response_time_is_taken_at_once_a_lower_one_gradually() {
        let ewma = ewma();
        let rtt = RttEstimate::default();
        let now = || ewma.clock().now();
        rtt.record(&ewma, 10e6, now());
        assert_eq!(
            rtt.estimate(&ewma, now()),
            10e6,
            "the first measurement replaces the default"
        );
        rtt.record(&ewma, 100e6, now());
        assert_eq!(rtt.estimate(&ewma, now()), 100e6, "a peak is taken whole");

        // One decay period later the old estimate keeps e⁻¹ of its weight.
        tokio::time::advance(Duration::from_secs(10)).await;
        rtt.record(&ewma, 10e6, now());
        let expected = 100e6 * (-1f64).exp() + 10e6 * (1.0 - (-1f64).exp());
        assert!((rtt.estimate(&ewma, now()) - expected).abs() < 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_estimate_decays_towards_zero_while_the_endpoint_is_idle() {
        let ewma = ewma();
        let rtt = RttEstimate::default();
        rtt.record(&ewma, 100e6, ewma.clock().now());
        tokio::time::advance(Duration::from_secs(20)).await;
        let estimate = rtt.estimate(&ewma, ewma.clock().now());
        assert!((estimate - 100e6 * (-2f64).exp()).abs() < 1.0, "{estimate}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_faster_endpoint_wins_and_requests_in_flight_add_to_its_cost() {
        let ewma = ewma();
        let members = members(&[1, 1]);
        let now = ewma.clock().now();
        members[0].load.rtt().record(&ewma, 5e6, now);
        members[1].load.rtt().record(&ewma, 50e6, now);
        let picker = PeakEwma::new(&members, ewma).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            assert_eq!(picker.pick(&members, &mut rng), 0);
        }
        // Ten requests stuck on the fast one: 5 ms × 11 > 50 ms × 1.
        let stuck: Vec<_> = (0..10).map(|_| members[0].load.start(None)).collect();
        for _ in 0..100 {
            assert_eq!(picker.pick(&members, &mut rng), 1);
        }
        drop(stuck);
        assert_eq!(picker.pick(&members, &mut rng), 0);
    }

    #[test]
    fn unmeasured_endpoints_are_drawn_by_weight() {
        let members = members(&[1, 3]);
        let picker = PeakEwma::new(&members, ewma()).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let mut counts = [0usize; 2];
        for _ in 0..20_000 {
            counts[picker.pick(&members, &mut rng)] += 1;
        }
        // Equal costs: the first candidate, drawn by weight, wins.
        let light = counts[0] as f64 * 100.0 / 20_000.0;
        assert!((23.0..=27.0).contains(&light), "{counts:?}");
    }
}
