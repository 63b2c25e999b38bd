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
use crate::config::{ConfigError, MeshConfig};
use crate::connect::{Connect, HttpConnect};

/// A [`MeshClient::from_xds`] that could not start, or has no configuration yet.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum XdsError<C: Connect = HttpConnect> {
    /// The target is not `xds:///name`, `xds://authority/name` (an authority
    /// of the bootstrap) or a plain name; says which and why.
    #[error("xDS: {0}")]
    Target(String),
    /// The client could not be built (see [`Builder::build`](crate::Builder::build)).
    #[error("xDS: {0}")]
    Build(#[from] ConfigError),
    /// The client was made, but no configuration could be applied yet (the
    /// listener does not exist, was refused, or the control plane cannot be
    /// reached). The client keeps following the control plane and picks up
    /// the configuration when it comes; until then its requests fail.
    #[error("xDS: no configuration yet: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
        /// The client, still following the control plane.
        client: MeshClient<C>,
    },
}

impl<C: Connect> std::fmt::Debug for XdsError<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XdsError::Target(target) => f.debug_tuple("Target").field(target).finish(),
            XdsError::Build(error) => f.debug_tuple("Build").field(error).finish(),
            XdsError::Unavailable { reason, client } => f
                .debug_struct("Unavailable")
                .field("reason", reason)
                .field("client", client)
                .finish(),
        }
    }
}

impl MeshClient {
    /// A client configured by the control plane behind `xds`, for the target
    /// `xds:///name` (or just `name`), with the default connections: the
    /// same as [`Builder::xds`](crate::Builder::xds) on
    /// [`MeshClient::builder`].
    pub async fn from_xds(xds: &XdsClient, target: &str) -> Result<MeshClient, XdsError> {
        MeshClient::builder().xds(xds, target).await
    }
}

impl<C: Connect> crate::Builder<C> {
    /// Builds the client, configured by the control plane behind `xds` for
    /// the target `xds:///name` (or just `name`), or `xds://authority/name`:
    /// the Listener the bootstrap names for it (its listener name templates,
    /// as gRPC; see [`Bootstrap::listener_name`](meshlib_xds::Bootstrap::listener_name))
    /// and everything it leads to, `xdstp://` names from their authority's
    /// control planes, connecting with this builder's
    /// connector (so a TLS or custom one works with xDS too). The builder's
    /// own configuration source is not used. Returns once the first complete
    /// configuration is applied; see [`XdsError::Unavailable`] for when it
    /// cannot be. The watch lives as long as the client.
    ///
    /// ```no_run
    /// use meshlib::MeshClient;
    /// use meshlib::connect::HttpConnect;
    /// use meshlib_xds::{Bootstrap, XdsClient};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let xds = XdsClient::new(Bootstrap::from_env()?)?;
    /// let mesh = MeshClient::builder()
    ///     .connect(HttpConnect::new().idle_timeout(std::time::Duration::from_secs(30)))
    ///     .xds(&xds, "xds:///greeter")
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn xds(self, xds: &XdsClient, target: &str) -> Result<MeshClient<C>, XdsError<C>> {
        let name = xds
            .bootstrap()
            .listener_name(target)
            .map_err(|e| XdsError::Target(e.to_string()))?;
        let client = self.config(MeshConfig::default()).build()?;
        let (ready, mut readiness) = watch::channel(None);
        client
            .executor()
            .spawn(source::run(xds.clone(), name, client.downgrade(), ready));
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
