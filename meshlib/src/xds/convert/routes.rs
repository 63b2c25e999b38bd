//! RouteConfiguration → virtual hosts and routes.

use meshlib_xds::pb::envoy::config::core::v3 as core;
use meshlib_xds::pb::envoy::config::route::v3 as route;
use meshlib_xds::pb::envoy::r#type::matcher::v3 as matcher;
use meshlib_xds::pb::envoy::r#type::v3 as types;

use super::checked_duration;
use crate::config::{
    self, AppendAction, Denominator, Destination, FractionalPercent, GrpcRetryRules, HashOn,
    HashPolicy, HeaderMatcher, HeaderRule, HeaderToAdd, MaxStreamDuration, MirrorPolicy, PathMatch,
    QueryParameterMatcher, RegexRewrite, RetryBackOff, RetryOn, RetryPolicy, RouteAction,
    RouteMatch, StringMatcher, StringRule, WeightedCluster,
};

/// A RouteConfiguration's virtual hosts. Headers to add or remove set on the
/// virtual host or the whole configuration are folded into each route's
/// lists, after the route's own (Envoy's default order).
pub(crate) fn route_configuration(
    config: &route::RouteConfiguration,
) -> Result<Vec<config::VirtualHost>, String> {
    let global = HeaderChanges::of(
        &config.request_headers_to_add,
        &config.request_headers_to_remove,
    )
    .map_err(|e| format!("route configuration: {e}"))?;
    config
        .virtual_hosts
        .iter()
        .map(|vhost| {
            let context = |e: String| format!("virtual_host {:?}: {e}", vhost.name);
            let local = HeaderChanges::of(
                &vhost.request_headers_to_add,
                &vhost.request_headers_to_remove,
            )
            .map_err(context)?;
            super::filters::per_filter_config(&vhost.typed_per_filter_config).map_err(context)?;
            let mut routes = vhost
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut route = convert_route(r).map_err(|e| {
                        let label = if r.name.is_empty() {
                            format!("#{i}")
                        } else {
                            format!("{:?}", r.name)
                        };
                        context(format!("route {label}: {e}"))
                    })?;
                    for changes in [&local, &global] {
                        route
                            .request_headers_to_add
                            .extend(changes.add.iter().cloned());
                        route
                            .request_headers_to_remove
                            .extend(changes.remove.iter().cloned());
                    }
                    Ok(route)
                })
                .collect::<Result<Vec<_>, String>>()?;
            // Collecting results grows the vector by doubling: give back the
            // slack (a third of the memory at 10,000 routes).
            routes.shrink_to_fit();
            Ok(config::VirtualHost {
                name: vhost.name.clone(),
                domains: vhost.domains.clone(),
                routes,
                retry_policy: vhost
                    .retry_policy
                    .as_ref()
                    .map(retry_policy)
                    .transpose()
                    .map_err(|e| context(format!("retry_policy: {e}")))?,
                include_request_attempt_count: vhost.include_request_attempt_count,
            })
        })
        .collect()
}

/// Request headers to add and remove, at any level of a RouteConfiguration.
struct HeaderChanges {
    add: Vec<HeaderToAdd>,
    remove: Vec<String>,
}

impl HeaderChanges {
    fn of(add: &[core::HeaderValueOption], remove: &[String]) -> Result<Self, String> {
        let add = add
            .iter()
            .enumerate()
            .map(|(i, option)| {
                header_to_add(option).map_err(|e| format!("request_headers_to_add[{i}]: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(HeaderChanges {
            add,
            remove: remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
        })
    }
}

#[allow(deprecated)]
fn header_to_add(option: &core::HeaderValueOption) -> Result<HeaderToAdd, String> {
    use core::header_value_option::HeaderAppendAction as A;
    let header = option.header.as_ref().ok_or("header: missing")?;
    let value = if header.raw_value.is_empty() {
        header.value.clone()
    } else {
        String::from_utf8(header.raw_value.clone())
            .map_err(|_| format!("header {:?}: raw_value is not UTF-8", header.key))?
    };
    let append_action = match option.append.as_ref().map(|b| b.value) {
        // The deprecated `append` wins when set, as in Envoy.
        Some(true) => AppendAction::AppendIfExistsOrAdd,
        Some(false) => AppendAction::OverwriteIfExistsOrAdd,
        None => match A::try_from(option.append_action) {
            Ok(A::AppendIfExistsOrAdd) => AppendAction::AppendIfExistsOrAdd,
            Ok(A::AddIfAbsent) => AppendAction::AddIfAbsent,
            Ok(A::OverwriteIfExistsOrAdd) => AppendAction::OverwriteIfExistsOrAdd,
            Ok(A::OverwriteIfExists) => AppendAction::OverwriteIfExists,
            Err(_) => return Err(format!("append_action {}: unknown", option.append_action)),
        },
    };
    Ok(HeaderToAdd {
        name: header.key.to_ascii_lowercase(),
        value,
        append_action,
    })
}

/// One route.
fn convert_route(r: &route::Route) -> Result<config::Route, String> {
    let Some(m) = &r.r#match else {
        return Err("match: missing".to_owned());
    };
    super::filters::per_filter_config(&r.typed_per_filter_config)?;
    use route::route_match::PathSpecifier as P;
    let path = match &m.path_specifier {
        Some(P::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(P::Path(p)) => PathMatch::Exact(p.clone()),
        Some(P::SafeRegex(r)) => PathMatch::Regex(checked_regex(&r.regex, "match")?),
        Some(P::PathSeparatedPrefix(p)) => PathMatch::PathSeparatedPrefix(p.clone()),
        Some(P::PathMatchPolicy(_)) => {
            return Err("match: path_match_policy: not supported".to_owned());
        }
        Some(P::ConnectMatcher(_)) => {
            return Err("match: connect_matcher: not supported".to_owned());
        }
        None => return Err("match: no path specifier".to_owned()),
    };
    if m.grpc.is_some() {
        // Every request meshlib's gRPC channel sends is gRPC; an HTTP request
        // through the same route would be matched anyway. Refuse rather than differ.
        return Err("match: grpc: not supported".to_owned());
    }
    if !m.dynamic_metadata.is_empty() || !m.cookies.is_empty() {
        return Err("match: dynamic_metadata / cookies: not supported".to_owned());
    }
    if m.tls_context.is_some() {
        return Err("match: tls_context: not supported".to_owned());
    }
    let headers = m
        .headers
        .iter()
        .map(header_matcher)
        .collect::<Result<Vec<_>, _>>()?;
    let query_parameters = m
        .query_parameters
        .iter()
        .map(query_parameter)
        .collect::<Result<Vec<_>, _>>()?;
    let runtime_fraction = m
        .runtime_fraction
        .as_ref()
        .map(|f| fraction(f, "match: runtime_fraction"))
        .transpose()?
        .flatten();
    let action = match &r.action {
        Some(route::route::Action::Route(action)) => route_action(action)?,
        Some(route::route::Action::Redirect(_)) => return Err("redirect: not supported".to_owned()),
        Some(route::route::Action::DirectResponse(_)) => {
            return Err("direct_response: not supported".to_owned());
        }
        Some(_) => return Err("action: only `route` is supported".to_owned()),
        None => return Err("action: missing".to_owned()),
    };
    let changes = HeaderChanges::of(&r.request_headers_to_add, &r.request_headers_to_remove)?;
    Ok(config::Route {
        name: r.name.clone(),
        matcher: RouteMatch {
            path,
            case_sensitive: m.case_sensitive.as_ref().is_none_or(|b| b.value),
            headers,
            query_parameters,
            runtime_fraction,
        },
        action,
        request_headers_to_add: changes.add,
        request_headers_to_remove: changes.remove,
    })
}

/// A runtime fraction's default value (meshlib has no runtime to look the key
/// up in, as gRPC has none).
fn fraction(
    f: &core::RuntimeFractionalPercent,
    field: &str,
) -> Result<Option<FractionalPercent>, String> {
    let Some(value) = &f.default_value else {
        return Ok(None);
    };
    use types::fractional_percent::DenominatorType as D;
    let denominator = match D::try_from(value.denominator) {
        Ok(D::Hundred) => Denominator::Hundred,
        Ok(D::TenThousand) => Denominator::TenThousand,
        Ok(D::Million) => Denominator::Million,
        Err(_) => {
            return Err(format!(
                "{field}: denominator {} unknown",
                value.denominator
            ));
        }
    };
    Ok(Some(FractionalPercent {
        numerator: value.numerator,
        denominator,
    }))
}

fn query_parameter(q: &route::QueryParameterMatcher) -> Result<QueryParameterMatcher, String> {
    use route::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
    let field = format!("match: query_parameters: {:?}", q.name);
    let value = match &q.query_parameter_match_specifier {
        Some(Q::StringMatch(s)) => Some(string_matcher(s, &field)?),
        Some(Q::PresentMatch(true)) => None,
        Some(Q::PresentMatch(false)) | None => {
            return Err(format!(
                "{field}: needs string_match or present_match: true"
            ));
        }
    };
    Ok(QueryParameterMatcher {
        name: q.name.clone(),
        value,
    })
}

fn string_matcher(s: &matcher::StringMatcher, field: &str) -> Result<StringMatcher, String> {
    use matcher::string_matcher::MatchPattern as P;
    let rule = match &s.match_pattern {
        Some(P::Exact(v)) => StringRule::Exact(v.clone()),
        Some(P::Prefix(v)) => StringRule::Prefix(v.clone()),
        Some(P::Suffix(v)) => StringRule::Suffix(v.clone()),
        Some(P::Contains(v)) => StringRule::Contains(v.clone()),
        Some(P::SafeRegex(r)) => StringRule::Regex(checked_regex(&r.regex, field)?),
        _ => return Err(format!("{field}: string_match pattern not supported")),
    };
    Ok(StringMatcher {
        rule,
        ignore_case: s.ignore_case,
    })
}

// The deprecated `*_match` fields are still what many control planes send.
#[allow(deprecated)]
fn header_matcher(h: &route::HeaderMatcher) -> Result<HeaderMatcher, String> {
    use route::header_matcher::HeaderMatchSpecifier as Spec;
    let field = format!("match: headers: {:?}", h.name);
    let mut ignore_case = false;
    let rule = match &h.header_match_specifier {
        Some(Spec::ExactMatch(v)) => HeaderRule::Exact(v.clone()),
        Some(Spec::PrefixMatch(v)) => HeaderRule::Prefix(v.clone()),
        Some(Spec::SuffixMatch(v)) => HeaderRule::Suffix(v.clone()),
        Some(Spec::ContainsMatch(v)) => HeaderRule::Contains(v.clone()),
        Some(Spec::SafeRegexMatch(r)) => HeaderRule::Regex(checked_regex(&r.regex, &field)?),
        Some(Spec::PresentMatch(p)) => HeaderRule::Present(*p),
        Some(Spec::RangeMatch(r)) => {
            if r.start >= r.end {
                return Err(format!("{field}: range [{}, {}) is empty", r.start, r.end));
            }
            HeaderRule::Range {
                start: r.start,
                end: r.end,
            }
        }
        Some(Spec::StringMatch(s)) => {
            ignore_case = s.ignore_case;
            use matcher::string_matcher::MatchPattern as P;
            match &s.match_pattern {
                Some(P::Exact(v)) => HeaderRule::Exact(v.clone()),
                Some(P::Prefix(v)) => HeaderRule::Prefix(v.clone()),
                Some(P::Suffix(v)) => HeaderRule::Suffix(v.clone()),
                Some(P::Contains(v)) => HeaderRule::Contains(v.clone()),
                Some(P::SafeRegex(r)) => HeaderRule::Regex(checked_regex(&r.regex, &field)?),
                _ => return Err(format!("{field}: string_match pattern not supported")),
            }
        }
        None => HeaderRule::Present(true),
    };
    Ok(HeaderMatcher {
        name: h.name.to_ascii_lowercase(),
        rule,
        ignore_case,
        invert_match: h.invert_match,
    })
}

/// A `safe_regex`, checked as the route table compiles it: whole-value and
/// bounded in size.
fn checked_regex(pattern: &str, field: &str) -> Result<String, String> {
    crate::config::full_match(pattern).map_err(|e| format!("{field}: safe_regex {e}"))?;
    Ok(pattern.to_owned())
}

/// A `regex_rewrite` pattern, checked as the route compiles it: it finds
/// matches anywhere, and is bounded in size.
fn checked_search(pattern: &str, field: &str) -> Result<String, String> {
    crate::config::search(pattern).map_err(|e| format!("{field}: pattern {e}"))?;
    Ok(pattern.to_owned())
}

fn route_action(action: &route::RouteAction) -> Result<RouteAction, String> {
    use route::route_action::ClusterSpecifier as C;
    use route::route_action::HostRewriteSpecifier as H;
    let destination = match &action.cluster_specifier {
        Some(C::Cluster(name)) if !name.is_empty() => Destination::Cluster(name.clone()),
        Some(C::Cluster(_)) => return Err("cluster: empty name".to_owned()),
        Some(C::WeightedClusters(weighted)) => weighted_clusters(weighted)?,
        Some(C::ClusterHeader(_)) => {
            // Which clusters to fetch would not be known before a request
            // names one; Envoy fetches all clusters, meshlib the ones routes name.
            return Err(
                "cluster_header: not supported over xDS (meshlib subscribes to the clusters routes name)"
                    .to_owned(),
            );
        }
        Some(_) => return Err("cluster_specifier_plugin: not supported".to_owned()),
        None => return Err("route: no cluster specifier".to_owned()),
    };
    let prefix_rewrite = (!action.prefix_rewrite.is_empty()).then(|| action.prefix_rewrite.clone());
    let regex_rewrite = action
        .regex_rewrite
        .as_ref()
        .map(|r| {
            let pattern = r
                .pattern
                .as_ref()
                .ok_or("regex_rewrite: pattern is missing")?;
            Ok::<_, String>(RegexRewrite {
                pattern: checked_search(&pattern.regex, "regex_rewrite")?,
                // Envoy writes capture groups as `\1`; meshlib's model keeps
                // Envoy's syntax.
                substitution: r.substitution.clone(),
            })
        })
        .transpose()?;
    if prefix_rewrite.is_some() && regex_rewrite.is_some() {
        return Err("prefix_rewrite and regex_rewrite: set only one".to_owned());
    }
    if action.path_rewrite_policy.is_some() {
        return Err("path_rewrite_policy: not supported".to_owned());
    }
    let host_rewrite_literal = match &action.host_rewrite_specifier {
        None => None,
        Some(H::HostRewriteLiteral(host)) => {
            config::host_rewrite(host).map_err(|e| format!("host_rewrite_literal: {e}"))?;
            Some(host.clone())
        }
        Some(H::AutoHostRewrite(b)) if !b.value => None,
        Some(_) => {
            return Err("host_rewrite: only host_rewrite_literal is supported".to_owned());
        }
    };
    let request_mirror_policies = action
        .request_mirror_policies
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let field = format!("request_mirror_policies[{i}]");
            if m.cluster.is_empty() {
                return Err(format!(
                    "{field}: cluster is missing (cluster_header is not supported)"
                ));
            }
            Ok(MirrorPolicy {
                cluster: m.cluster.clone(),
                fraction: m
                    .runtime_fraction
                    .as_ref()
                    .map(|f| fraction(f, &field))
                    .transpose()?
                    .flatten(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hash_policy = action
        .hash_policy
        .iter()
        .enumerate()
        .map(|(i, p)| hash_policy(p).map_err(|e| format!("hash_policy[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let max_stream_duration = action
        .max_stream_duration
        .as_ref()
        .map(|m| {
            if m.grpc_timeout_header_offset.is_some() {
                return Err(
                    "max_stream_duration: grpc_timeout_header_offset: not supported".to_owned(),
                );
            }
            Ok(MaxStreamDuration {
                max_stream_duration: checked_duration(
                    m.max_stream_duration.as_ref(),
                    "max_stream_duration: max_stream_duration",
                )?
                .filter(|d| !d.is_zero()),
                grpc_timeout_header_max: checked_duration(
                    m.grpc_timeout_header_max.as_ref(),
                    "max_stream_duration: grpc_timeout_header_max",
                )?,
            })
        })
        .transpose()?;
    Ok(RouteAction {
        destination,
        timeout: checked_duration(action.timeout.as_ref(), "timeout")?.filter(|t| !t.is_zero()),
        prefix_rewrite,
        regex_rewrite,
        host_rewrite_literal,
        request_mirror_policies,
        hash_policy,
        max_stream_duration,
        retry_policy: action
            .retry_policy
            .as_ref()
            .map(retry_policy)
            .transpose()
            .map_err(|e| format!("retry_policy: {e}"))?,
    })
}

/// Envoy's `RetryPolicy`. Unknown `retry_on` names are ignored, as Envoy
/// does; fields that would change which host a retry goes to or how long
/// it waits, and that meshlib does not implement, are refused by name. gRPC
/// calls follow gRPC's xDS clients ([`GrpcRetryRules::Proxyless`]), and what
/// those refuse is refused here too (`num_retries: 0`, a bad backoff), so a
/// control plane's NACKs do not depend on which kind of client it serves.
fn retry_policy(p: &route::RetryPolicy) -> Result<RetryPolicy, String> {
    let (retry_on, unknown) = RetryOn::parse(&p.retry_on);
    if !unknown.is_empty() {
        tracing::debug!(
            ?unknown,
            "retry_on: ignoring unknown conditions, as Envoy does"
        );
    }
    if p.rate_limited_retry_back_off.is_some() {
        return Err("rate_limited_retry_back_off: not supported".to_owned());
    }
    if !p.retry_host_predicate.is_empty() || p.retry_priority.is_some() {
        return Err("retry_host_predicate / retry_priority: not supported".to_owned());
    }
    if p.per_try_idle_timeout.is_some() {
        return Err("per_try_idle_timeout: not supported".to_owned());
    }
    let retry_back_off = match &p.retry_back_off {
        None => RetryBackOff::default(),
        Some(b) => {
            let base = b
                .base_interval
                .as_ref()
                .ok_or("retry_back_off: base_interval: missing")?;
            let base = checked_duration(Some(base), "retry_back_off: base_interval")?
                .filter(|d| !d.is_zero())
                .ok_or("retry_back_off: base_interval: must be above 0")?;
            let max = match &b.max_interval {
                None => None,
                Some(max) => Some(
                    checked_duration(Some(max), "retry_back_off: max_interval")?
                        .filter(|d| !d.is_zero())
                        .ok_or("retry_back_off: max_interval: must be above 0")?,
                ),
            };
            if let Some(max) = max
                && max < base
            {
                return Err(format!(
                    "retry_back_off: max_interval {max:?} is below base_interval {base:?}"
                ));
            }
            RetryBackOff::new(base, max)
        }
    };
    let retriable_status_codes = p
        .retriable_status_codes
        .iter()
        .map(|c| {
            u16::try_from(*c)
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| format!("retriable_status_codes: {c} is not an HTTP status"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers = |list: &[route::HeaderMatcher], field: &str| {
        list.iter()
            .map(|h| header_matcher(h).map_err(|e| format!("{field}: {e}")))
            .collect::<Result<Vec<_>, _>>()
    };
    let num_retries = p.num_retries.as_ref().map_or(1, |n| n.value);
    if num_retries == 0 {
        // gRPC's clients NACK it (gRFC A44); Envoy would read "no retries".
        return Err("num_retries: must be at least 1".to_owned());
    }
    let mut policy = RetryPolicy::new(retry_on);
    policy.grpc_rules = GrpcRetryRules::Proxyless;
    policy.num_retries = num_retries;
    policy.per_try_timeout =
        checked_duration(p.per_try_timeout.as_ref(), "per_try_timeout")?.filter(|t| !t.is_zero());
    policy.retry_back_off = retry_back_off;
    policy.retriable_status_codes = retriable_status_codes;
    policy.retriable_headers = headers(&p.retriable_headers, "retriable_headers")?;
    policy.retriable_request_headers =
        headers(&p.retriable_request_headers, "retriable_request_headers")?;
    Ok(policy)
}

fn weighted_clusters(weighted: &route::WeightedCluster) -> Result<Destination, String> {
    let clusters = weighted
        .clusters
        .iter()
        .map(|c| {
            if c.cluster_header.is_empty() && c.name.is_empty() {
                return Err("weighted_clusters: a cluster has no name".to_owned());
            }
            if !c.cluster_header.is_empty() {
                return Err("weighted_clusters: cluster_header: not supported".to_owned());
            }
            super::filters::per_filter_config(&c.typed_per_filter_config)
                .map_err(|e| format!("weighted_clusters: {e}"))?;
            if !c.request_headers_to_add.is_empty()
                || !c.request_headers_to_remove.is_empty()
                || c.host_rewrite_specifier.is_some()
            {
                return Err(format!(
                    "weighted_clusters: cluster {:?}: per-cluster header or host rewrites are not supported",
                    c.name
                ));
            }
            Ok(WeightedCluster {
                name: c.name.clone(),
                weight: c.weight.as_ref().map_or(0, |w| w.value),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return Err("weighted_clusters: weights sum to 0".to_owned());
    }
    if total > u64::from(u32::MAX) {
        return Err(format!(
            "weighted_clusters: weights sum to {total}, above 2^32-1"
        ));
    }
    Ok(Destination::WeightedClusters(clusters))
}

fn hash_policy(p: &route::route_action::HashPolicy) -> Result<HashPolicy, String> {
    use route::route_action::hash_policy::PolicySpecifier as S;
    let on = match &p.policy_specifier {
        Some(S::Header(h)) => {
            if h.regex_rewrite.is_some() {
                return Err("header: regex_rewrite: not supported".to_owned());
            }
            HashOn::Header(h.header_name.to_ascii_lowercase())
        }
        Some(S::Cookie(c)) => {
            if c.ttl.is_some() {
                // Envoy would then generate the cookie; meshlib only reads one.
                return Err("cookie: ttl (cookie generation): not supported".to_owned());
            }
            HashOn::Cookie(c.name.clone())
        }
        Some(S::QueryParameter(q)) => HashOn::QueryParameter(q.name.clone()),
        Some(S::ConnectionProperties(c)) if c.source_ip => HashOn::SourceIp,
        Some(S::ConnectionProperties(_)) => {
            return Err("connection_properties: only source_ip is supported".to_owned());
        }
        Some(S::FilterState(f)) => {
            return Err(format!("filter_state {:?}: not supported", f.key));
        }
        None => return Err("no policy specifier".to_owned()),
    };
    Ok(HashPolicy {
        on,
        terminal: p.terminal,
    })
}

#[cfg(test)]
mod retry_tests {
    use std::time::Duration as StdDuration;

    use meshlib_xds::pb::google::protobuf::{Duration, UInt32Value};
    use meshlib_xds::server::build;

    use super::*;
    use crate::config::RetryCondition;

    fn converted(
        route_policy: Option<route::RetryPolicy>,
        host_policy: Option<route::RetryPolicy>,
    ) -> Result<config::VirtualHost, String> {
        let mut r = build::prefix_route("r", "/", &[("c", 1)]);
        if let Some(route::route::Action::Route(action)) = &mut r.action {
            action.retry_policy = route_policy;
        }
        let mut vhost = build::virtual_host("vh", &["*"], vec![r]);
        vhost.retry_policy = host_policy;
        vhost.include_request_attempt_count = true;
        let config = build::route_configuration("rc", vec![vhost]);
        route_configuration(&config).map(|mut v| v.remove(0))
    }

    fn ms(n: i32) -> Duration {
        Duration {
            seconds: 0,
            nanos: n * 1_000_000,
        }
    }

    #[test]
    fn retry_policies_are_taken_from_the_route_and_the_virtual_host() {
        let policy = route::RetryPolicy {
            retry_on: "5xx,unavailable,bogus-condition".to_owned(),
            num_retries: Some(UInt32Value { value: 3 }),
            per_try_timeout: Some(ms(300)),
            retry_back_off: Some(route::retry_policy::RetryBackOff {
                base_interval: Some(ms(10)),
                max_interval: None,
            }),
            retriable_status_codes: vec![429],
            ..Default::default()
        };
        let host = route::RetryPolicy {
            retry_on: "connect-failure".to_owned(),
            ..Default::default()
        };
        let vhost = converted(Some(policy), Some(host)).unwrap();
        assert!(vhost.include_request_attempt_count);
        let on_host = vhost.retry_policy.unwrap();
        assert_eq!(on_host.num_retries, 1, "Envoy's default");
        assert!(on_host.retry_on.contains(RetryCondition::ConnectFailure));
        let on_route = vhost.routes[0].action.retry_policy.clone().unwrap();
        // The unknown name is ignored, as Envoy does.
        assert_eq!(on_route.retry_on.to_string(), "5xx,unavailable");
        assert_eq!(on_route.num_retries, 3);
        assert_eq!(
            on_route.per_try_timeout,
            Some(StdDuration::from_millis(300))
        );
        assert_eq!(
            on_route.retry_back_off.max_interval,
            StdDuration::from_millis(100),
            "ten times the base"
        );
        assert_eq!(on_route.retriable_status_codes, [429]);
        assert_eq!(
            on_route.grpc_rules,
            GrpcRetryRules::Proxyless,
            "gRPC calls retry as gRPC's xDS clients do"
        );
    }

    #[test]
    fn a_bad_backoff_or_unsupported_field_is_refused_by_name() {
        let with_backoff = |base: Option<Duration>, max: Option<Duration>| route::RetryPolicy {
            retry_on: "5xx".to_owned(),
            retry_back_off: Some(route::retry_policy::RetryBackOff {
                base_interval: base,
                max_interval: max,
            }),
            ..Default::default()
        };
        let cases = [
            (
                with_backoff(Some(ms(0)), None),
                "base_interval: must be above 0",
            ),
            (with_backoff(None, None), "base_interval: missing"),
            (
                with_backoff(Some(ms(-5)), None),
                "base_interval: 0s -5000000ns is negative",
            ),
            (
                with_backoff(Some(ms(50)), Some(ms(10))),
                "is below base_interval",
            ),
            (
                route::RetryPolicy {
                    per_try_idle_timeout: Some(ms(5)),
                    ..Default::default()
                },
                "per_try_idle_timeout: not supported",
            ),
            (
                route::RetryPolicy {
                    retry_on: "unavailable".to_owned(),
                    num_retries: Some(UInt32Value { value: 0 }),
                    ..Default::default()
                },
                "num_retries: must be at least 1",
            ),
            (
                route::RetryPolicy {
                    retriable_status_codes: vec![1000],
                    ..Default::default()
                },
                "1000 is not an HTTP status",
            ),
        ];
        for (policy, expected) in cases {
            let error = converted(Some(policy.clone()), None).unwrap_err();
            assert!(
                error.starts_with("virtual_host \"vh\": route \"r\": retry_policy: ")
                    && error.contains(expected),
                "{error}"
            );
            let error = converted(None, Some(policy)).unwrap_err();
            assert!(
                error.starts_with("virtual_host \"vh\": retry_policy: ")
                    && error.contains(expected),
                "{error}"
            );
        }
    }
}
