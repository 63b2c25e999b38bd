//! Checked conversions from Envoy's protobufs into meshlib's model.
//!
//! Each returns the model value or the reason the resource is refused, which
//! becomes the NACK's `error_detail`. The rule (gRFC A27): a field meshlib does
//! not support is ignored when it cannot change where or how traffic goes,
//! and refused, naming the field, when it could.

mod clusters;
mod filters;
mod routes;

use std::time::Duration;

use meshlib_xds::pb::envoy::config::core::v3 as core;
use meshlib_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use meshlib_xds::pb::google::protobuf;
use prost::Message;

use crate::config;

pub(crate) use clusters::{Assignment, EndpointSource, assignment, cluster};
pub(crate) use routes::route_configuration;

/// Where a listener's routes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenerRoutes {
    /// In the listener itself.
    Inline(Vec<config::VirtualHost>),
    /// In the RouteConfiguration of this name (RDS).
    Rds(String),
}

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn duration(d: &protobuf::Duration) -> Option<Duration> {
    let seconds = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(seconds, nanos))
}

/// The duration in `field`, if set; an error naming the field when it is
/// negative or not a valid `google.protobuf.Duration` (Envoy refuses a
/// negative duration where it reads one as a time, `DurationUtil`).
pub(crate) fn checked_duration(
    d: Option<&protobuf::Duration>,
    field: &str,
) -> Result<Option<Duration>, String> {
    d.map(|d| {
        duration(d).ok_or_else(|| {
            format!(
                "{field}: {}s {}ns is negative or not a valid duration",
                d.seconds, d.nanos
            )
        })
    })
    .transpose()
}

/// What meshlib takes of a client-side (API) listener's
/// HttpConnectionManager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConvertedListener {
    pub(crate) routes: ListenerRoutes,
    /// `normalize_path` (unset is `false`, Envoy's default without a runtime).
    pub(crate) normalize_path: bool,
    pub(crate) merge_slashes: bool,
    /// Its `envoy.filters.http.local_ratelimit` filter's limit, if any.
    pub(crate) local_rate_limit: Option<crate::ratelimit::LocalRateLimit>,
}

/// A client-side (API) listener: its HttpConnectionManager's routes and
/// path normalisation.
pub(crate) fn listener(
    listener: &meshlib_xds::pb::envoy::config::listener::v3::Listener,
) -> Result<ConvertedListener, String> {
    let api = listener
        .api_listener
        .as_ref()
        .and_then(|a| a.api_listener.as_ref())
        .ok_or(
            "api_listener: missing (a client listener carries an HttpConnectionManager there)",
        )?;
    if api.type_url != HCM_TYPE {
        return Err(format!(
            "api_listener: type {:?} is not an HttpConnectionManager",
            api.type_url
        ));
    }
    let manager = hcm::HttpConnectionManager::decode(api.value.as_slice())
        .map_err(|e| format!("api_listener: cannot decode HttpConnectionManager: {e}"))?;
    let local_rate_limit = filters::http_filters(&manager.http_filters)?;
    let routes = listener_routes(manager.route_specifier)?;
    Ok(ConvertedListener {
        routes,
        normalize_path: manager.normalize_path.is_some_and(|b| b.value),
        merge_slashes: manager.merge_slashes,
        local_rate_limit,
    })
}

fn listener_routes(
    specifier: Option<hcm::http_connection_manager::RouteSpecifier>,
) -> Result<ListenerRoutes, String> {
    match specifier {
        Some(hcm::http_connection_manager::RouteSpecifier::Rds(rds)) => {
            if rds.route_config_name.is_empty() {
                return Err("rds: route_config_name is empty".to_owned());
            }
            match rds
                .config_source
                .as_ref()
                .and_then(|s| s.config_source_specifier.as_ref())
            {
                Some(core::config_source::ConfigSourceSpecifier::Ads(_))
                | Some(core::config_source::ConfigSourceSpecifier::Self_(_)) => {}
                _ => return Err("rds: config_source must be ads or self".to_owned()),
            }
            Ok(ListenerRoutes::Rds(rds.route_config_name))
        }
        Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(config)) => {
            Ok(ListenerRoutes::Inline(route_configuration(&config)?))
        }
        Some(hcm::http_connection_manager::RouteSpecifier::ScopedRoutes(_)) => {
            Err("scoped_routes: not supported".to_owned())
        }
        None => Err("HttpConnectionManager has neither rds nor route_config".to_owned()),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
