//! # meshlib
//!
//! A service mesh without a sidecar: Tower layers that do in-process what an
//! Envoy sidecar does next to the process. Give [`MeshClient`] a mesh
//! configuration and use it as your HTTP client (or, through
//! [`MeshClient::channel`], as a tonic channel); each request is routed by
//! host, path and headers to a cluster, possibly split by weight, and balanced
//! over the cluster's endpoints on pooled HTTP/1.1 or HTTP/2 connections.
//!
//! ```no_run
//! use http_body_util::Empty;
//! use meshlib::MeshClient;
//! use meshlib::config::MeshConfig;
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let config = MeshConfig::from_yaml(r#"
//! virtual_hosts:
//!   - name: reviews
//!     domains: ["reviews"]
//!     routes:
//!       - name: split
//!         match: { prefix: "/" }
//!         route:
//!           weighted_clusters:
//!             clusters: [{ name: reviews-v1, weight: 90 }, { name: reviews-v2, weight: 10 }]
//! clusters:
//!   - name: reviews-v1
//!     endpoints: [{ address: "10.0.0.1:8080" }, { address: "10.0.0.2:8080" }]
//!   - name: reviews-v2
//!     endpoints: [{ address: "10.0.0.3:8080" }]
//! "#)?;
//! let mesh = MeshClient::new(config)?;
//! let request = http::Request::get("http://reviews/reviews/1").body(Empty::<bytes::Bytes>::new())?;
//! let response = mesh.clone().oneshot(request).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## The layers
//!
//! ```text
//! request ─► Route ─► Mirror ─► Timeout ─► ClusterLookup ─► Retry ─► ClusterSend ─► Balancer ─► endpoint's pooled client
//! ```
//!
//! Each is usable alone: [`route::Route`] matches, applies the route's
//! rewrites and header changes, and records a [`route::RouteDecision`] in the
//! request's extensions, [`mirror::Mirror`] copies a share of the requests to
//! mirror clusters, [`timeout::Timeout`] applies the request's timeout,
//! [`stack::ClusterLookup`] finds the cluster's [`stack::ClusterStack`],
//! [`retry::Retry`] resends failed attempts as the route's retry policy
//! says, and [`stack::ClusterSend`] hands the request to its
//! [`balance::Balancer`], which picks an endpoint and sends through its
//! [`connect::EndpointClient`]. [`stack`] puts them in order, and
//! [`check_route`] answers offline where a request would go.
//!
//! ## Features
//!
//! - `grpc` (default): [`MeshClient::channel`], a channel for tonic clients.
//! - `xds` (default): [`MeshClient::from_xds`], configuration from an xDS
//!   control plane through [`meshlib_xds`].
//! - `cloudmap`: `discovery: { cloud_map: … }` clusters, whose endpoints are
//!   the instances of an AWS Cloud Map service (`discovery::cloud_map`, on
//!   the AWS SDK for Rust; needs Rust 1.94.1). Without it such a cluster is
//!   refused by validation.

// Library code does not panic on input; tests may unwrap.
#![warn(clippy::unwrap_used, clippy::expect_used)]

// The README's examples compile as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub mod balance;
pub mod body;
mod client;
pub mod config;
pub mod connect;
pub mod discovery;
mod error;
pub mod future;
#[cfg(test)]
mod fuzzing;
#[cfg(feature = "grpc")]
mod grpc;
mod matcher;
pub mod mirror;
pub mod ratelimit;
pub mod retry;
pub mod route;
pub mod stack;
pub mod timeout;
#[cfg(feature = "xds")]
pub mod xds;

pub use body::BoxBody;
pub use client::{Builder, MeshClient};
pub use error::{BoxError, Error, ErrorKind};
#[cfg(feature = "grpc")]
pub use grpc::{ChannelFuture, MeshChannel};
#[cfg(feature = "xds")]
pub use meshlib_xds;
pub use route::check_route;
