//! meshlib configured by xDS (feature `xds`).
//!
//! A target `xds:///name` resolves the Listener `name` through an
//! [`XdsClient`] (an API listener whose HttpConnectionManager carries the
//! routes inline or names them by RDS), then the RouteConfiguration, the
//! Clusters its routes name, and the ClusterLoadAssignment of each EDS
//! cluster, with gRPC's proxyless semantics (gRFC A27, A28). Each resource is
//! converted into meshlib's model on arrival; what meshlib cannot honour is
//! NACKed with the reason, naming the resource and field, and the last good
//! version stays in force. Complete configurations are applied atomically
//! (gRFC A74).
//!
//! ```no_run
//! use meshlib::MeshClient;
//! use meshlib_xds::{Bootstrap, XdsClient};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let xds = XdsClient::new(Bootstrap::from_env()?)?;
//! let mesh = MeshClient::from_xds(&xds, "xds:///greeter").await?;
//! let channel = mesh.channel("greeter")?; // for a tonic client
//! # Ok(())
//! # }
//! ```

mod convert;
mod resources;
mod source;

use meshlib_xds::XdsClient;
use tokio::sync::watch;

use crate::client::MeshClient;
use crate::config::MeshConfig;

/// A [`MeshClient::from_xds`] that could not start, or has no configuration yet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdsError {
    /// The target is not `xds:///name` or a plain name.
    #[error("xDS target {0:?}: expected xds:///name (authorities are not supported yet)")]
    Target(String),
    /// The client was made, but no configuration could be applied yet (the
    /// listener does not exist, was refused, or the control plane cannot be
    /// reached). The client keeps following the control plane and picks up
    /// the configuration when it comes; until then its requests fail.
    #[error("xDS: no configuration yet: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
        /// The client, still following the control plane.
        client: MeshClient,
    },
}

impl MeshClient {
    /// A client configured by the control plane behind `xds`, for the target
    /// `xds:///name` (or just `name`): the Listener `name` (through the
    /// bootstrap's `client_default_listener_resource_name_template`, as gRPC)
    /// and everything it leads to. Returns once the first complete configuration is applied;
    /// see [`XdsError::Unavailable`] for when it cannot be. Must be called
    /// inside a Tokio runtime; the watch lives as long as the client.
    pub async fn from_xds(xds: &XdsClient, target: &str) -> Result<MeshClient, XdsError> {
        let name = match target.strip_prefix("xds:///") {
            Some(name) => name,
            None if target.contains("://") || target.starts_with("xds:") => {
                return Err(XdsError::Target(target.to_owned()));
            }
            None => target,
        };
        if name.is_empty() {
            return Err(XdsError::Target(target.to_owned()));
        }
        let client = MeshClient::new(MeshConfig::default())
            .map_err(|_| XdsError::Target(target.to_owned()))?;
        let (ready, mut readiness) = watch::channel(None);
        client.executor().spawn(source::run(
            xds.clone(),
            name.to_owned(),
            client.downgrade(),
            ready,
        ));
        let outcome = readiness
            .wait_for(Option::is_some)
            .await
            .map(|r| r.clone())
            .unwrap_or(Some(Err("the xDS watch stopped".to_owned())));
        match outcome {
            Some(Ok(())) => Ok(client),
            Some(Err(reason)) => Err(XdsError::Unavailable { reason, client }),
            None => Err(XdsError::Unavailable {
                reason: "the xDS watch stopped".to_owned(),
                client,
            }),
        }
    }
}
