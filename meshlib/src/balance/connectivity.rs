//! What the balancer learns of an endpoint's reachability from connecting to
//! it: gRPC's subchannel connectivity state, reduced to what a pick needs.
//!
//! An endpoint whose connection attempt fails (refused, unreachable, timed
//! out) takes no traffic from then on, as gRPC's pickers skip a subchannel in
//! `TRANSIENT_FAILURE`: it counts as unhealthy in its priority's health (so a
//! priority whose endpoints all refuse fails over to the next, as gRPC's
//! `priority` policy does, gRFC A56) and is left out of its group. A probe
//! task then retries a TCP connection with gRPC's connection backoff
//! (`doc/connection-backoff.md`: 1 s, ×1.6, ±20 % jitter, at most 120 s, each
//! attempt given at least 20 s) through the cluster's connector (so a TLS
//! connector's handshake is part of what is probed) and gives the endpoint
//! its traffic back once one succeeds.
//!
//! The request path only reads a flag when a set is built and sets it on a
//! failure; the probe, the only thing that waits, runs on its own task and
//! asks the balancer to rebuild its set on each change, off the request path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::RngExt;

use crate::connect::ProbeFuture;

/// What a probe needs of its balancer.
pub(super) trait Probes: Send + Sync {
    /// Rebuild the endpoint set from the current endpoints, now that one's
    /// reachability changed.
    fn refresh(&self);
    /// One connection attempt to `address` through the cluster's connector.
    fn probe(&self, address: SocketAddr, timeout: Duration) -> ProbeFuture;
    /// Runs `probe` on the client's executor.
    fn spawn(&self, probe: BoxFuture<'static, ()>);
}

/// One endpoint's reachability, kept across endpoint updates like its load.
/// Its address is not kept here (the endpoint set has it, and a failure
/// report carries it): a mesh has one of these per endpoint.
pub(super) struct Connectivity {
    failing: AtomicBool,
    balancer: Weak<dyn Probes>,
}

impl std::fmt::Debug for Connectivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectivity")
            .field("failing", &self.failing())
            .finish_non_exhaustive()
    }
}

impl Connectivity {
    /// An endpoint not known to fail, of the balancer `balancer`.
    pub(super) fn new(balancer: Weak<dyn Probes>) -> Self {
        Connectivity {
            failing: AtomicBool::new(false),
            balancer,
        }
    }

    /// An endpoint of no balancer, for tests of what holds one.
    #[cfg(test)]
    pub(super) fn detached() -> Self {
        struct Nothing;
        impl Probes for Nothing {
            fn refresh(&self) {}
            fn probe(&self, _: SocketAddr, _: Duration) -> ProbeFuture {
                Box::pin(std::future::pending())
            }
            fn spawn(&self, _: BoxFuture<'static, ()>) {}
        }
        Connectivity::new(Weak::<Nothing>::new())
    }

    /// Whether the last connection attempt failed and no probe has connected
    /// since: the endpoint takes no traffic.
    pub(super) fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// A connection to the endpoint, at `address`, could not be made. The
    /// first report starts a probe of `address` (which takes the endpoint out
    /// of the balancer's set); later ones, while it runs, change nothing.
    pub(super) fn connect_failed(self: &Arc<Self>, address: SocketAddr) {
        if !self.failing.swap(true, Ordering::AcqRel)
            && let Some(balancer) = self.balancer.upgrade()
        {
            balancer.spawn(Box::pin(probe(Arc::downgrade(self), address)));
        }
    }
}

/// Takes the endpoint out of its balancer's set, then tries to connect with
/// backoff until it can, and puts it back. Ends early when the endpoint or
/// its balancer is gone.
async fn probe(endpoint: Weak<Connectivity>, address: SocketAddr) {
    if !refresh(&endpoint) {
        return;
    }
    let mut backoff = Backoff::default();
    loop {
        let jitter = rand::rng().random_range(-JITTER..=JITTER);
        let (delay, attempt_timeout) = backoff.next(jitter);
        tokio::time::sleep(delay).await;
        let Some(attempt) = endpoint.upgrade().and_then(|e| {
            let balancer = e.balancer.upgrade()?;
            Some(balancer.probe(address, attempt_timeout))
        }) else {
            return;
        };
        if attempt.await.is_ok() {
            if let Some(e) = endpoint.upgrade() {
                e.failing.store(false, Ordering::Release);
            }
            refresh(&endpoint);
            return;
        }
    }
}

/// Asks the endpoint's balancer to rebuild its set; `false` if either is gone.
fn refresh(endpoint: &Weak<Connectivity>) -> bool {
    let Some(balancer) = endpoint.upgrade().and_then(|e| e.balancer.upgrade()) else {
        return false;
    };
    balancer.refresh();
    true
}

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MULTIPLIER: f64 = 1.6;
const JITTER: f64 = 0.2;
const MAX_BACKOFF: Duration = Duration::from_secs(120);
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// gRPC's connection backoff: the wait before each attempt and how long the
/// attempt may take.
#[derive(Debug)]
struct Backoff {
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            current: INITIAL_BACKOFF,
        }
    }
}

impl Backoff {
    /// The next attempt's wait, moved by `jitter` (a fraction within
    /// ±[`JITTER`]), and its connect timeout.
    fn next(&mut self, jitter: f64) -> (Duration, Duration) {
        let base = self.current;
        self.current = base.mul_f64(MULTIPLIER).min(MAX_BACKOFF);
        (base.mul_f64(1.0 + jitter), base.max(MIN_CONNECT_TIMEOUT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_grpcs_multiplier_up_to_its_maximum() {
        let mut backoff = Backoff::default();
        let waits: Vec<u128> = (0..14).map(|_| backoff.next(0.0).0.as_millis()).collect();
        assert_eq!(
            waits,
            [
                1000, 1600, 2560, 4096, 6553, 10485, 16777, 26843, 42949, 68719, 109951, 120000,
                120000, 120000
            ]
        );
    }

    #[test]
    fn jitter_moves_the_wait_and_the_attempt_gets_at_least_twenty_seconds() {
        let mut backoff = Backoff::default();
        assert_eq!(
            backoff.next(-JITTER),
            (Duration::from_millis(800), MIN_CONNECT_TIMEOUT)
        );
        assert_eq!(backoff.next(JITTER).0, Duration::from_millis(1920));
        let mut late = Backoff {
            current: MAX_BACKOFF,
        };
        assert_eq!(late.next(0.0), (MAX_BACKOFF, MAX_BACKOFF));
    }

    struct Counting(std::sync::atomic::AtomicUsize);

    impl Probes for Counting {
        fn refresh(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn probe(&self, address: SocketAddr, timeout: Duration) -> ProbeFuture {
            crate::connect::ClusterConnect::probe(&|_: SocketAddr| (), address, timeout)
        }
        fn spawn(&self, probe: BoxFuture<'static, ()>) {
            tokio::spawn(probe);
        }
    }

    #[tokio::test]
    async fn a_failure_refreshes_once_and_a_probe_that_connects_refreshes_again() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let balancer = Arc::new(Counting(Default::default()));
        let weak: Weak<Counting> = Arc::downgrade(&balancer);
        let endpoint = Arc::new(Connectivity::new(weak));

        tokio::time::pause();
        endpoint.connect_failed(address);
        endpoint.connect_failed(address);
        assert!(endpoint.failing());
        tokio::task::yield_now().await;
        assert_eq!(
            balancer.0.load(Ordering::SeqCst),
            1,
            "one probe, one refresh"
        );

        // The listener accepts, so the first attempt, after the first
        // backoff, connects and gives the endpoint back.
        tokio::time::advance(INITIAL_BACKOFF.mul_f64(1.0 + JITTER)).await;
        tokio::time::resume();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while endpoint.failing() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!endpoint.failing(), "the probe connected");
        assert_eq!(balancer.0.load(Ordering::SeqCst), 2);
    }
}
