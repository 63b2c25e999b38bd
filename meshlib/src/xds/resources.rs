//! The xDS resource types meshlib watches: Envoy's messages decoded and
//! converted into meshlib's model on arrival, so a resource meshlib cannot
//! use is NACKed with the reason, and a good one is ready to apply.

use meshlib_xds::pb::envoy::config::cluster::v3::Cluster;
use meshlib_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use meshlib_xds::pb::envoy::config::listener::v3::Listener;
use meshlib_xds::pb::envoy::config::route::v3::RouteConfiguration;
use meshlib_xds::{Resource, ResourceError};

use super::convert::{self, EndpointSource, ListenerRoutes};
use crate::config;

/// Decodes with the raw type's own checks, then converts, naming the
/// resource in the error.
fn decode<Raw: Resource, T>(
    bytes: &[u8],
    convert: impl FnOnce(&Raw) -> Result<T, String>,
) -> Result<T, ResourceError> {
    let raw = Raw::decode_resource(bytes)?;
    convert(&raw).map_err(|reason| ResourceError::named(raw.resource_name(), reason))
}

/// A client listener (LDS): its routes, inline or by RDS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XdsListener {
    pub(crate) name: String,
    pub(crate) routes: ListenerRoutes,
    /// Its HttpConnectionManager's `normalize_path` and `merge_slashes`.
    pub(crate) normalize_path: bool,
    pub(crate) merge_slashes: bool,
    /// Its `envoy.filters.http.local_ratelimit` filter's limit.
    pub(crate) local_rate_limit: Option<crate::ratelimit::LocalRateLimit>,
}

impl Resource for XdsListener {
    const TYPE_URL: &'static str = Listener::TYPE_URL;
    const ALL_IN_EACH_RESPONSE: bool = true;

    fn decode_resource(bytes: &[u8]) -> Result<Self, ResourceError> {
        decode(bytes, |l: &Listener| {
            let converted = convert::listener(l)?;
            Ok(XdsListener {
                name: l.name.clone(),
                routes: converted.routes,
                normalize_path: converted.normalize_path,
                merge_slashes: converted.merge_slashes,
                local_rate_limit: converted.local_rate_limit,
            })
        })
    }

    fn resource_name(&self) -> &str {
        &self.name
    }
}

/// A route configuration (RDS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XdsRoutes {
    pub(crate) name: String,
    pub(crate) virtual_hosts: Vec<config::VirtualHost>,
}

impl Resource for XdsRoutes {
    const TYPE_URL: &'static str = RouteConfiguration::TYPE_URL;
    const ALL_IN_EACH_RESPONSE: bool = false;

    fn decode_resource(bytes: &[u8]) -> Result<Self, ResourceError> {
        decode(bytes, |r: &RouteConfiguration| {
            Ok(XdsRoutes {
                name: r.name.clone(),
                virtual_hosts: convert::route_configuration(r)?,
            })
        })
    }

    fn resource_name(&self) -> &str {
        &self.name
    }
}

/// A cluster (CDS) and where its endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XdsCluster {
    pub(crate) cluster: config::Cluster,
    pub(crate) endpoints: EndpointSource,
}

impl Resource for XdsCluster {
    const TYPE_URL: &'static str = Cluster::TYPE_URL;
    const ALL_IN_EACH_RESPONSE: bool = true;

    fn decode_resource(bytes: &[u8]) -> Result<Self, ResourceError> {
        decode(bytes, |c: &Cluster| {
            let (cluster, endpoints) = convert::cluster(c)?;
            Ok(XdsCluster { cluster, endpoints })
        })
    }

    fn resource_name(&self) -> &str {
        &self.cluster.name
    }
}

/// A cluster's endpoints (EDS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XdsEndpoints {
    pub(crate) name: String,
    pub(crate) assignment: convert::Assignment,
}

impl Resource for XdsEndpoints {
    const TYPE_URL: &'static str = ClusterLoadAssignment::TYPE_URL;
    const ALL_IN_EACH_RESPONSE: bool = false;

    fn decode_resource(bytes: &[u8]) -> Result<Self, ResourceError> {
        decode(bytes, |a: &ClusterLoadAssignment| {
            Ok(XdsEndpoints {
                name: a.cluster_name.clone(),
                assignment: convert::assignment(a)?,
            })
        })
    }

    fn resource_name(&self) -> &str {
        &self.name
    }
}
