//! The HttpConnectionManager's `http_filters`: the router, and the filters
//! meshlib runs in the client (Envoy's local rate limit).

use meshlib_xds::pb::envoy::config::core::v3 as core;
use meshlib_xds::pb::envoy::extensions::common::ratelimit::v3::XRateLimitHeadersRfcVersion;
use meshlib_xds::pb::envoy::extensions::filters::http::local_ratelimit::v3 as local_ratelimit;
use meshlib_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use meshlib_xds::pb::envoy::r#type::v3 as types;
use prost::Message;

use super::duration;
use crate::ratelimit::{LocalRateLimit, TokenBucket};

pub(super) const ROUTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
pub(super) const LOCAL_RATE_LIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// gRPC's rule: at least one filter, the router last; a filter meshlib does
/// not run is refused unless marked optional. A local rate limit filter
/// gives the client its limit (one at most: two would be two buckets in a
/// row, which meshlib does not run).
pub(super) fn http_filters(filters: &[hcm::HttpFilter]) -> Result<Option<LocalRateLimit>, String> {
    let Some((last, others)) = filters.split_last() else {
        return Err("http_filters: expected at least one HTTP filter (the router)".to_owned());
    };
    let config_of = |f: &hcm::HttpFilter| match &f.config_type {
        Some(hcm::http_filter::ConfigType::TypedConfig(any)) => Some(any.clone()),
        _ => None,
    };
    let type_of = |f: &hcm::HttpFilter| config_of(f).map(|a| a.type_url).unwrap_or_default();
    if type_of(last) != ROUTER_TYPE {
        return Err(format!(
            "http_filters: the last filter must be the router, found {:?}",
            last.name
        ));
    }
    let mut limit = None;
    for filter in others {
        let kind = type_of(filter);
        if kind == ROUTER_TYPE {
            return Err(format!(
                "http_filters: router {:?} is not last",
                filter.name
            ));
        }
        if kind == LOCAL_RATE_LIMIT_TYPE && !filter.disabled {
            let context = |e: String| format!("http_filters: {:?}: {e}", filter.name);
            let any = config_of(filter).unwrap_or_default();
            let raw = local_ratelimit::LocalRateLimit::decode(any.value.as_slice())
                .map_err(|e| context(format!("cannot decode LocalRateLimit: {e}")))?;
            if let Some(converted) = local_rate_limit(&raw).map_err(context)? {
                if limit.is_some() {
                    return Err(context(
                        "a second local rate limit filter is not supported".to_owned(),
                    ));
                }
                limit = Some(converted);
            }
            continue;
        }
        if !filter.is_optional {
            return Err(format!(
                "http_filters: filter {:?} ({kind}) is not supported",
                filter.name
            ));
        }
    }
    Ok(limit)
}

/// A listener-level `LocalRateLimit`; `None` without a token bucket (Envoy
/// then limits only routes that carry their own, which meshlib refuses).
/// Fields that would change what is limited, and that meshlib does not
/// run, are refused by name.
fn local_rate_limit(
    raw: &local_ratelimit::LocalRateLimit,
) -> Result<Option<LocalRateLimit>, String> {
    let unsupported = [
        ("descriptors", !raw.descriptors.is_empty()),
        ("rate_limits", !raw.rate_limits.is_empty()),
        (
            "local_cluster_rate_limit",
            raw.local_cluster_rate_limit.is_some(),
        ),
        (
            "local_rate_limit_per_downstream_connection",
            raw.local_rate_limit_per_downstream_connection,
        ),
        (
            "response_headers_to_add",
            !raw.response_headers_to_add.is_empty(),
        ),
        (
            "request_headers_to_add_when_not_enforced",
            !raw.request_headers_to_add_when_not_enforced.is_empty(),
        ),
        ("enable_retry_after_header", raw.enable_retry_after_header),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(format!("{field}: not supported"));
    }
    let Some(bucket) = &raw.token_bucket else {
        return Ok(None);
    };
    let fill_interval = bucket
        .fill_interval
        .as_ref()
        .and_then(duration)
        .ok_or("token_bucket.fill_interval: missing or negative")?;
    let mut limit = LocalRateLimit::enforced(TokenBucket::new(
        bucket.max_tokens,
        bucket.tokens_per_fill.as_ref().map_or(1, |t| t.value),
        fill_interval,
    ));
    limit.filter_enabled = percent(raw.filter_enabled.as_ref(), "filter_enabled")?;
    limit.filter_enforced = percent(raw.filter_enforced.as_ref(), "filter_enforced")?;
    if let Some(status) = &raw.status {
        limit.status = u16::try_from(status.code).unwrap_or(0);
    }
    limit.x_ratelimit_headers =
        match XRateLimitHeadersRfcVersion::try_from(raw.enable_x_ratelimit_headers) {
            Ok(XRateLimitHeadersRfcVersion::Off) => false,
            Ok(XRateLimitHeadersRfcVersion::DraftVersion03) => true,
            Err(_) => {
                return Err(format!(
                    "enable_x_ratelimit_headers: {} unknown",
                    raw.enable_x_ratelimit_headers
                ));
            }
        };
    limit.rate_limited_as_resource_exhausted = raw.rate_limited_as_resource_exhausted;
    limit.validate().map_err(|e| e.to_string())?;
    Ok(Some(limit))
}

/// A `RuntimeFractionalPercent`'s default, in percent; absent is 0 %, as
/// Envoy's filter takes it (the runtime key is not read: there is no runtime).
fn percent(value: Option<&core::RuntimeFractionalPercent>, field: &str) -> Result<f64, String> {
    let Some(fraction) = value.and_then(|v| v.default_value.as_ref()) else {
        return Ok(0.0);
    };
    use types::fractional_percent::DenominatorType as D;
    let per = match D::try_from(fraction.denominator) {
        Ok(D::Hundred) => 100.0,
        Ok(D::TenThousand) => 10_000.0,
        Ok(D::Million) => 1_000_000.0,
        Err(_) => {
            return Err(format!(
                "{field}: denominator {} unknown",
                fraction.denominator
            ));
        }
    };
    // Above the whole is the whole, as Envoy's runtime reads it.
    Ok((f64::from(fraction.numerator) / per * 100.0).min(100.0))
}

const FILTER_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";

/// A virtual host's, route's or weighted cluster's `typed_per_filter_config`:
/// a local rate limit there is a bucket of its own for those requests, which
/// meshlib does not run; refused rather than silently ignored.
pub(super) fn per_filter_config(
    configs: &std::collections::HashMap<String, meshlib_xds::pb::google::protobuf::Any>,
) -> Result<(), String> {
    for (name, any) in configs {
        let inner = if any.type_url == FILTER_CONFIG_TYPE {
            meshlib_xds::pb::envoy::config::route::v3::FilterConfig::decode(any.value.as_slice())
                .ok()
                .and_then(|f| f.config)
                .map(|c| c.type_url)
                .unwrap_or_default()
        } else {
            any.type_url.clone()
        };
        if inner == LOCAL_RATE_LIMIT_TYPE {
            return Err(format!(
                "typed_per_filter_config[{name:?}]: a local rate limit per route or virtual host is not supported"
            ));
        }
    }
    Ok(())
}
