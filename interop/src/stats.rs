//! What a test client reports through `LoadBalancerStatsService`.
//!
//! Every RPC gets an id when it starts. `GetClientStats` asks about the next
//! `num_rpcs` RPCs *started* after the request (a block of consecutive ids,
//! so slow backends cannot skew the picture), and answers once they have all
//! completed or the timeout passes; `GetClientAccumulatedStats` reports
//! everything since the client started.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::pb::load_balancer_accumulated_stats_response::MethodStats;
use crate::pb::load_balancer_stats_response::RpcsByPeer;
use crate::pb::{LoadBalancerAccumulatedStatsResponse, LoadBalancerStatsResponse};

/// A method the test client calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `grpc.testing.TestService/EmptyCall`.
    EmptyCall,
    /// `grpc.testing.TestService/UnaryCall`.
    UnaryCall,
}

impl Method {
    /// Both, in the protocol's enum order.
    pub const ALL: [Method; 2] = [Method::EmptyCall, Method::UnaryCall];

    /// The name used in `--rpc`, `--metadata` and per-window stats: `UnaryCall`.
    pub fn name(self) -> &'static str {
        match self {
            Method::EmptyCall => "EmptyCall",
            Method::UnaryCall => "UnaryCall",
        }
    }

    /// The name used in accumulated stats: `UNARY_CALL`.
    pub fn enum_name(self) -> &'static str {
        match self {
            Method::EmptyCall => "EMPTY_CALL",
            Method::UnaryCall => "UNARY_CALL",
        }
    }

    /// Parses `UnaryCall` / `EmptyCall`.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name.trim())
    }

    /// From `ClientConfigureRequest.RpcType`.
    pub fn from_rpc_type(value: i32) -> Option<Method> {
        use crate::pb::client_configure_request::RpcType;
        match RpcType::try_from(value).ok()? {
            RpcType::EmptyCall => Some(Method::EmptyCall),
            RpcType::UnaryCall => Some(Method::UnaryCall),
        }
    }
}

/// The statistics of one client; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    windows: Vec<Arc<Window>>,
    started: HashMap<Method, i32>,
    /// method → status code → count.
    results: HashMap<Method, BTreeMap<i32, i32>>,
}

/// The handle of one started RPC, to pass back to [`Stats::finish`].
#[derive(Debug, Clone, Copy)]
pub struct Started {
    id: u64,
    method: Method,
}

/// A `GetClientStats` in progress: a block of RPC ids being watched.
#[derive(Debug)]
pub struct Window {
    start: u64,
    end: u64,
    tally: Mutex<Tally>,
    done: Notify,
}

#[derive(Debug, Default)]
struct Tally {
    by_peer: BTreeMap<String, i32>,
    by_method: BTreeMap<&'static str, BTreeMap<String, i32>>,
    failed: i32,
    remaining: u64,
}

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the start of an RPC of `method`.
    pub fn start(&self, method: Method) -> Started {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        *inner.started.entry(method).or_default() += 1;
        Started { id, method }
    }

    /// Records how an RPC ended: the hostname of the server that answered,
    /// or the status code it failed with (`code` is 0 on success).
    pub fn finish(&self, rpc: Started, code: i32, peer: Option<&str>) {
        let windows: Vec<Arc<Window>> = {
            let mut inner = self.lock();
            *inner
                .results
                .entry(rpc.method)
                .or_default()
                .entry(code)
                .or_default() += 1;
            inner
                .windows
                .iter()
                .filter(|w| (w.start..w.end).contains(&rpc.id))
                .cloned()
                .collect()
        };
        for window in windows {
            window.record(rpc.method, peer.filter(|p| !p.is_empty()));
        }
    }

    /// Starts watching the next `num_rpcs` RPCs to start.
    pub fn watch(&self, num_rpcs: u64) -> Arc<Window> {
        let mut inner = self.lock();
        let window = Arc::new(Window {
            start: inner.next_id,
            end: inner.next_id + num_rpcs,
            tally: Mutex::new(Tally {
                remaining: num_rpcs,
                ..Tally::default()
            }),
            done: Notify::new(),
        });
        inner.windows.push(window.clone());
        window
    }

    /// `GetClientStats`: watches the next `num_rpcs` RPCs and reports on them
    /// once all have completed, or after `timeout` with what was seen (the
    /// missing ones count as failures).
    pub async fn window(&self, num_rpcs: u64, timeout: Duration) -> LoadBalancerStatsResponse {
        let window = self.watch(num_rpcs);
        let _ = tokio::time::timeout(timeout, window.completed()).await;
        self.lock().windows.retain(|w| !Arc::ptr_eq(w, &window));
        window.report()
    }

    /// `GetClientAccumulatedStats`.
    pub fn accumulated(&self) -> LoadBalancerAccumulatedStatsResponse {
        let inner = self.lock();
        let mut response = LoadBalancerAccumulatedStatsResponse::default();
        for method in Method::ALL {
            let started = inner.started.get(&method).copied().unwrap_or(0);
            let results = inner.results.get(&method).cloned().unwrap_or_default();
            let succeeded = results.get(&0).copied().unwrap_or(0);
            let failed = results.values().sum::<i32>() - succeeded;
            let name = method.enum_name().to_owned();
            response
                .num_rpcs_started_by_method
                .insert(name.clone(), started);
            response
                .num_rpcs_succeeded_by_method
                .insert(name.clone(), succeeded);
            response
                .num_rpcs_failed_by_method
                .insert(name.clone(), failed);
            response.stats_per_method.insert(
                name,
                MethodStats {
                    rpcs_started: started,
                    result: results.into_iter().collect(),
                },
            );
        }
        response
    }
}

impl Window {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, method: Method, peer: Option<&str>) {
        let mut tally = self.lock();
        match peer {
            Some(peer) => {
                *tally.by_peer.entry(peer.to_owned()).or_default() += 1;
                *tally
                    .by_method
                    .entry(method.name())
                    .or_default()
                    .entry(peer.to_owned())
                    .or_default() += 1;
            }
            None => tally.failed += 1,
        }
        tally.remaining = tally.remaining.saturating_sub(1);
        if tally.remaining == 0 {
            self.done.notify_one();
        }
    }

    /// Resolves once every RPC of the window has completed.
    pub async fn completed(&self) {
        loop {
            let notified = self.done.notified();
            if self.lock().remaining == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The window as `GetClientStats` reports it.
    pub fn report(&self) -> LoadBalancerStatsResponse {
        let tally = self.lock();
        LoadBalancerStatsResponse {
            rpcs_by_peer: tally.by_peer.clone().into_iter().collect(),
            num_failures: tally.failed + i32::try_from(tally.remaining).unwrap_or(i32::MAX),
            rpcs_by_method: tally
                .by_method
                .iter()
                .map(|(method, peers)| {
                    (
                        (*method).to_owned(),
                        RpcsByPeer {
                            rpcs_by_peer: peers.clone().into_iter().collect(),
                        },
                    )
                })
                .collect(),
            metadatas_by_peer: HashMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_window_counts_only_rpcs_started_after_it() {
        let stats = Stats::default();
        let before = stats.start(Method::UnaryCall);
        let window = stats.watch(2);
        let a = stats.start(Method::UnaryCall);
        let b = stats.start(Method::EmptyCall);
        let after = stats.start(Method::UnaryCall);
        stats.finish(before, 0, Some("x"));
        stats.finish(after, 0, Some("x"));
        stats.finish(b, 14, None);
        stats.finish(a, 0, Some("y"));
        window.completed().await;
        let report = window.report();
        assert_eq!(report.rpcs_by_peer, HashMap::from([("y".to_owned(), 1)]));
        assert_eq!(report.num_failures, 1);
        assert_eq!(report.rpcs_by_method["UnaryCall"].rpcs_by_peer["y"], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_that_times_out_counts_the_missing_rpcs_as_failures() {
        let stats = Stats::default();
        let waiter = tokio::spawn({
            let stats = stats.clone();
            async move { stats.window(3, Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        let a = stats.start(Method::UnaryCall);
        stats.finish(a, 0, Some("x"));
        let report = waiter.await.unwrap();
        assert_eq!(report.rpcs_by_peer["x"], 1);
        assert_eq!(report.num_failures, 2);
    }

    #[test]
    fn accumulated_stats_count_by_method_and_status() {
        let stats = Stats::default();
        for code in [0, 0, 14] {
            let rpc = stats.start(Method::UnaryCall);
            stats.finish(rpc, code, (code == 0).then_some("x"));
        }
        stats.start(Method::EmptyCall);
        let acc = stats.accumulated();
        assert_eq!(acc.num_rpcs_started_by_method["UNARY_CALL"], 3);
        assert_eq!(acc.num_rpcs_succeeded_by_method["UNARY_CALL"], 2);
        assert_eq!(acc.num_rpcs_failed_by_method["UNARY_CALL"], 1);
        assert_eq!(acc.stats_per_method["UNARY_CALL"].result[&14], 1);
        assert_eq!(acc.stats_per_method["EMPTY_CALL"].rpcs_started, 1);
    }
}
