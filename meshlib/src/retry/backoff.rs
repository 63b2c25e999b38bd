//! Envoy's fully jittered exponential backoff
//! (`JitteredExponentialBackOffStrategy`): the bound starts at the base
//! interval and doubles after each retry up to the maximum; each wait is
//! drawn uniformly below the current bound.

use std::time::Duration;

use crate::config::RetryBackOff;

/// The waits before the retries of one request.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(config: &RetryBackOff) -> Self {
        Backoff {
            next: config.base_interval.min(config.max_interval),
            max: config.max_interval,
        }
    }

    /// The bound of the next wait, moving on to the one after.
    pub(crate) fn next_bound(&mut self) -> Duration {
        let bound = self.next;
        self.next = if self.next < self.max / 2 {
            self.next * 2
        } else {
            self.max
        };
        bound
    }

    /// The next wait: `draw(n)` must return a number in `[0, n)`, `n` the
    /// bound in nanoseconds (the random source, injected so tests are
    /// deterministic).
    pub(crate) fn next_wait(&mut self, draw: impl FnOnce(u64) -> u64) -> Duration {
        let bound = u64::try_from(self.next_bound().as_nanos()).unwrap_or(u64::MAX);
        if bound == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(draw(bound) % bound)
    }
}

/// A wait drawn from the thread's random generator.
pub(crate) fn random_below(bound: u64) -> u64 {
    use rand::RngExt;
    rand::rng().random_range(0..bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_bound_doubles_from_the_base_and_stops_at_the_max() {
        let mut backoff = Backoff::new(&RetryBackOff::default());
        let bounds: Vec<Duration> = (0..6).map(|_| backoff.next_bound()).collect();
        assert_eq!(bounds, [ms(25), ms(50), ms(100), ms(200), ms(250), ms(250)]);

        let mut backoff = Backoff::new(&RetryBackOff::new(ms(10), Some(ms(10))));
        assert_eq!(
            [backoff.next_bound(), backoff.next_bound()],
            [ms(10), ms(10)]
        );
    }

    #[test]
    fn each_wait_is_drawn_below_its_bound() {
        let mut backoff = Backoff::new(&RetryBackOff::default());
        // The largest draw gives just under the bound; zero gives no wait.
        let top = backoff.next_wait(|n| n - 1);
        assert!(top < ms(25) && top > ms(24), "{top:?}");
        assert_eq!(backoff.next_wait(|_| 0), Duration::ZERO);
        // A draw out of range is folded into it.
        let folded = backoff.next_wait(|n| n + 7);
        assert_eq!(folded, Duration::from_nanos(7));
    }

    #[test]
    fn random_waits_stay_within_bounds() {
        let mut backoff = Backoff::new(&RetryBackOff::new(ms(1), Some(ms(8))));
        for bound in [1, 2, 4, 8, 8, 8] {
            for _ in 0..50 {
                let mut probe = backoff.clone();
                assert!(probe.next_wait(random_below) < ms(bound));
            }
            backoff.next_bound();
        }
    }
}
