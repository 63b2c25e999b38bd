//! gRPC's connection backoff: 1 s initial, ×1.6 per attempt, ±20 % jitter,
//! at most 120 s (gRPC's `connection-backoff.md`, which A57 applies to the
//! xDS stream). It starts over once a stream has carried a response.

use std::time::Duration;

use rand::RngExt;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(120))
    }
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = self.next.mul_f64(1.6).min(self.max);
        base.mul_f64(rand::rng().random_range(0.8..=1.2))
    }

    /// A stream worked: the next failure waits the initial delay again.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_1_6_with_jitter_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<f64> = (0..12)
            .map(|_| backoff.next_delay().as_secs_f64())
            .collect();
        let mut base = 1.0f64;
        for d in &delays {
            assert!(
                (base * 0.8 - 1e-9..=base * 1.2 + 1e-9).contains(d),
                "{d} around {base}"
            );
            base = (base * 1.6).min(120.0);
        }
        assert!(delays[11] <= 144.0);
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(1200));
    }
}
