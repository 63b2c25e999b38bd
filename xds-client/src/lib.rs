//! # meshlib-xds
//!
//! An xDS client for Rust: ADS over tonic in the state-of-the-world and delta
//! variants, gRPC's bootstrap format, typed watches, ACK/NACK with per-resource
//! reasons, and the failure modes of gRFC A57. It knows nothing of meshlib and
//! can serve any project.

// Library code does not panic on input; tests may unwrap.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod bootstrap;
mod client;
mod resource;
#[cfg(feature = "server")]
pub mod server;
mod state;
mod transport;

/// Envoy's protobuf types, re-exported from `envoy-types` so users of this
/// crate need not depend on it.
pub use envoy_types::pb;

pub use bootstrap::{
    Authority, Bootstrap, BootstrapError, ChannelCredentials, DELTA_ADS, IGNORE_RESOURCE_DELETION,
    Locality, Node, XdsServer,
};
pub use client::{
    ClientError, DEFAULT_MAX_MESSAGE_SIZE, ResourceState, Watch, WatchAll, XdsClient,
    XdsClientBuilder,
};
pub use resource::{Resource, ResourceError, canonical_name};
pub use state::{DumpEntry, Presence, WatchError};
