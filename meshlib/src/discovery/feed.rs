//! Endpoints published for a cluster by a source outside its stack (the xDS
//! source's EDS), and the balancers that follow them.
//!
//! The publisher calls [`EndpointFeeds::publish`] as each update arrives; the
//! balancers of that cluster's stacks (the one in force, and an older one a
//! request may still hold) are updated at once, on the publisher's task, and
//! a stack built later starts from the latest publication. Nothing waits and
//! nothing is polled: an update costs one balancer rebuild per live stack of
//! that cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::config::Endpoint;

/// What follows a cluster's endpoints: its balancer.
pub(crate) trait EndpointSink: Send + Sync {
    /// Replaces the endpoints.
    fn update(&self, endpoints: &Arc<[Endpoint]>);

    /// The source could not refresh them: the endpoints stay, and a cluster
    /// left with none says why.
    fn failed(&self, error: &crate::Error);
}

/// The latest endpoints published for each cluster, and who follows them.
#[derive(Default)]
pub(crate) struct EndpointFeeds {
    by_cluster: Mutex<HashMap<Arc<str>, Feed>>,
}

#[derive(Default)]
struct Feed {
    /// `None` until the first publication.
    endpoints: Option<Arc<[Endpoint]>>,
    sinks: Vec<Weak<dyn EndpointSink>>,
}

impl std::fmt::Debug for EndpointFeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let feeds = self.lock();
        f.debug_map()
            .entries(
                feeds
                    .iter()
                    .map(|(name, feed)| (name, feed.endpoints.as_ref().map_or(0, |e| e.len()))),
            )
            .finish()
    }
}

impl EndpointFeeds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Feed>> {
        self.by_cluster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `endpoints` are now `cluster`'s: every live follower is updated before
    /// this returns. Publications to one cluster apply in the order made.
    pub(crate) fn publish(&self, cluster: &str, endpoints: Arc<[Endpoint]>) {
        let mut feeds = self.lock();
        let feed = match feeds.get_mut(cluster) {
            Some(feed) => feed,
            None => feeds.entry(Arc::from(cluster)).or_default(),
        };
        // Under the lock, so a follower added meanwhile misses nothing and
        // two publications cannot reach a balancer out of order.
        feed.sinks.retain(|sink| match sink.upgrade() {
            Some(sink) => {
                sink.update(&endpoints);
                true
            }
            None => false,
        });
        feed.endpoints = Some(endpoints);
    }

    /// `sink` follows `cluster` from now on, starting from its latest
    /// publication, if any; it stops when dropped.
    pub(crate) fn follow(&self, cluster: &str, sink: Weak<dyn EndpointSink>) {
        let mut feeds = self.lock();
        let feed = match feeds.get_mut(cluster) {
            Some(feed) => feed,
            None => feeds.entry(Arc::from(cluster)).or_default(),
        };
        if let (Some(endpoints), Some(live)) = (&feed.endpoints, sink.upgrade()) {
            live.update(endpoints);
        }
        feed.sinks.retain(|s| s.strong_count() > 0);
        feed.sinks.push(sink);
    }

    /// The latest endpoints published for `cluster`.
    #[cfg(test)]
    pub(crate) fn latest(&self, cluster: &str) -> Option<Arc<[Endpoint]>> {
        self.lock().get(cluster).and_then(|f| f.endpoints.clone())
    }

    /// Forgets every cluster `keep` rejects: the source no longer publishes
    /// for them.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.lock().retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Vec<u16>>>);

    impl EndpointSink for Recorder {
        fn update(&self, endpoints: &Arc<[Endpoint]>) {
            let ports = endpoints.iter().map(|e| e.address.port()).collect();
            self.0.lock().unwrap().push(ports);
        }

        fn failed(&self, _: &crate::Error) {}
    }

    fn endpoints(ports: &[u16]) -> Arc<[Endpoint]> {
        ports
            .iter()
            .map(|p| Endpoint::new(([127, 0, 0, 1], *p).into()))
            .collect()
    }

    #[test]
    fn a_follower_gets_the_latest_publication_then_every_later_one() {
        let feeds = EndpointFeeds::default();
        feeds.publish("a", endpoints(&[1]));
        feeds.publish("a", endpoints(&[2]));
        let recorder = Arc::new(Recorder::default());
        let sink: Arc<dyn EndpointSink> = recorder.clone();
        feeds.follow("a", Arc::downgrade(&sink));
        feeds.publish("a", endpoints(&[3]));
        feeds.publish("b", endpoints(&[4]));
        assert_eq!(*recorder.0.lock().unwrap(), vec![vec![2], vec![3]]);
    }

    #[test]
    fn a_follower_before_any_publication_waits_for_the_first() {
        let feeds = EndpointFeeds::default();
        let recorder = Arc::new(Recorder::default());
        let sink: Arc<dyn EndpointSink> = recorder.clone();
        feeds.follow("a", Arc::downgrade(&sink));
        assert!(recorder.0.lock().unwrap().is_empty());
        feeds.publish("a", endpoints(&[1]));
        assert_eq!(*recorder.0.lock().unwrap(), vec![vec![1]]);
    }

    #[test]
    fn a_dropped_follower_is_forgotten_and_retain_forgets_clusters() {
        let feeds = EndpointFeeds::default();
        let sink: Arc<dyn EndpointSink> = Arc::new(Recorder::default());
        feeds.follow("a", Arc::downgrade(&sink));
        drop(sink);
        feeds.publish("a", endpoints(&[1]));
        assert!(feeds.lock()["a"].sinks.is_empty());
        feeds.retain(|name| name != "a");
        assert!(feeds.latest("a").is_none());
    }
}
