//! Endpoint sources: each yields the endpoint changes of one cluster, into
//! that cluster's balancer alone, so an endpoint change never builds a new
//! configuration or touches another cluster.
//!
//! - fixed: the configuration's own endpoints, updated in place when a new
//!   configuration changes them (`stack::ClusterSet`);
//! - EDS: published by the xDS source into an [`EndpointFeeds`], which hands
//!   each publication to the balancers following that cluster.

mod feed;

pub(crate) use feed::{EndpointFeeds, EndpointSink};
