//! Endpoint sources: each yields the endpoint changes of one cluster, into
//! that cluster's balancer alone, so an endpoint change never builds a new
//! configuration or touches another cluster.
//!
//! - fixed: the configuration's own endpoints, updated in place when a new
//!   configuration changes them (`stack::ClusterSet`);
//! - EDS: published by the xDS source into the client's endpoint feeds, which
//!   hand each publication to the balancers following that cluster;
//! - [`dns`]: Envoy's `STRICT_DNS` and `LOGICAL_DNS` clusters, configured by
//!   [`DnsDiscovery`](crate::config::DnsDiscovery): a task per cluster stack;
//! - `cloud_map` (the `cloudmap` feature): the instances of an AWS Cloud Map
//!   service, configured by
//!   [`CloudMapDiscovery`](crate::config::CloudMapDiscovery): a task per
//!   cluster stack.
//!
//! A source that runs as a task of its own hands what it finds to a
//! [`Publish`]: a whole new endpoint list when the list changed, a failure
//! when a refresh failed (the endpoints published before stay in force). The
//! task ends when the `Publish` answers that the cluster is gone.

#[cfg(feature = "cloudmap")]
pub mod cloud_map;
pub mod dns;
mod feed;

pub(crate) use feed::{EndpointFeeds, EndpointSink};

use std::sync::{Arc, Weak};

use crate::config::Endpoint;

/// What a client hands the discovery sources of its cluster stacks.
#[derive(Default)]
pub(crate) struct Sources {
    /// What external sources (EDS) publish for each cluster.
    pub(crate) feeds: EndpointFeeds,
    /// The AWS SDK configuration Cloud Map clusters start from; `None`:
    /// `aws-config`'s default chain.
    #[cfg(feature = "cloudmap")]
    pub(crate) cloud_map: Option<aws_sdk_servicediscovery::Config>,
}

/// `endpoints` as a source publishes them: sorted by address, an address
/// found twice listed once, at its best priority and then its highest weight,
/// so the same answer in another order is no change.
pub(crate) fn canonical(mut endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    endpoints.sort_by(|a, b| {
        (a.address, a.priority, std::cmp::Reverse(a.weight)).cmp(&(
            b.address,
            b.priority,
            std::cmp::Reverse(b.weight),
        ))
    });
    endpoints.dedup_by(|later, first| later.address == first.address);
    endpoints
}

/// Publishes into a balancer, for as long as it lives.
pub(crate) struct ToBalancer(pub(crate) Weak<dyn EndpointSink>);

impl Publish for ToBalancer {
    fn endpoints(&mut self, endpoints: Vec<Endpoint>) -> bool {
        self.0
            .upgrade()
            .map(|sink| sink.update(&Arc::from(endpoints)))
            .is_some()
    }

    fn failed(&mut self, error: crate::Error) -> bool {
        self.0.upgrade().map(|sink| sink.failed(&error)).is_some()
    }
}

/// Where a discovery task sends what it finds for its cluster.
///
/// ```
/// use meshlib::config::Endpoint;
/// use meshlib::discovery::Publish;
///
/// /// Forwards into a channel; the cluster is gone when the receiver is.
/// struct Updates(tokio::sync::mpsc::UnboundedSender<Result<Vec<Endpoint>, meshlib::Error>>);
///
/// impl Publish for Updates {
///     fn endpoints(&mut self, endpoints: Vec<Endpoint>) -> bool {
///         self.0.send(Ok(endpoints)).is_ok()
///     }
///     fn failed(&mut self, error: meshlib::Error) -> bool {
///         self.0.send(Err(error)).is_ok()
///     }
/// }
/// ```
pub trait Publish: Send + 'static {
    /// A new endpoint list (replaces the previous one). Returns false when the
    /// cluster is gone: the task stops.
    fn endpoints(&mut self, endpoints: Vec<Endpoint>) -> bool;

    /// A refresh failed; the endpoints published before stay in force. Returns
    /// false when the cluster is gone.
    fn failed(&mut self, error: crate::Error) -> bool;
}
