//! The rules a configuration must keep beyond its types.
//!
//! Every problem is collected (up to [`MAX_PROBLEMS`]), so a user fixes a file
//! in one pass. The regexes compiled to check them are kept in the
//! configuration, and `route::RouteTable` takes them from there.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::safe_regex::Compiling;
use super::{
    Cluster, Destination, HeaderMatcher, HeaderRule, LbPolicy, MeshConfig, PathMatch, Problem,
    RetryPolicy, Route, StringRule,
};

/// The most problems reported: a file that repeats a mistake (or a YAML
/// alias that repeats one) a million times gets the first ones and a count,
/// not an error message of hundreds of megabytes.
pub const MAX_PROBLEMS: usize = 100;

/// The problems found, and the regexes compiled to find them.
struct Problems {
    found: Vec<Problem>,
    /// How many were found beyond [`MAX_PROBLEMS`].
    more: usize,
    regexes: Compiling,
    rules: Rules,
}

/// Which rules a configuration is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rules {
    /// The model's: what Envoy accepts over xDS, meshlib accepts too.
    Model,
    /// A file's, stricter: a mistake Envoy would let through over xDS (a
    /// route path without its leading `/`, which no request path matches)
    /// is refused where a person wrote it.
    File,
}

impl Problems {
    fn push(&mut self, resource: &str, field: &str, message: impl Into<String>) {
        if self.found.len() == MAX_PROBLEMS {
            self.more += 1;
            return;
        }
        self.found.push(Problem {
            resource: resource.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Problems found elsewhere (a discovery source's own checks).
    fn extend(&mut self, problems: Vec<Problem>) {
        for problem in problems {
            self.push(&problem.resource, &problem.field, problem.message);
        }
    }

    /// How many were found.
    fn len(&self) -> usize {
        self.found.len() + self.more
    }

    /// The problems to report: the first [`MAX_PROBLEMS`], and a last one
    /// saying how many more there were.
    fn into_reported(mut self) -> Vec<Problem> {
        if self.more > 0 {
            self.found.push(Problem {
                resource: "configuration".to_owned(),
                field: "problems".to_owned(),
                message: format!(
                    "{} more not listed (the first {MAX_PROBLEMS} are)",
                    self.more
                ),
            });
        }
        self.found
    }
}

/// Checks `config` under `rules`; the problems found, or `Ok`.
/// The regexes it compiles are kept in `config` for its route table.
pub(super) fn check(config: &MeshConfig, rules: Rules) -> Result<(), Vec<Problem>> {
    let mut problems = Problems {
        found: Vec::new(),
        more: 0,
        regexes: config.regexes.start(),
        rules,
    };
    check_clusters(config, &mut problems);
    check_virtual_hosts(config, &mut problems);
    if let Some(Err(e)) = config.local_rate_limit.as_ref().map(|l| l.validate()) {
        problems.push("local_rate_limit", e.field, e.message);
    }
    let regexes = std::mem::take(&mut problems.regexes);
    config.regexes.finish(regexes);
    if problems.found.is_empty() {
        Ok(())
    } else {
        Err(problems.into_reported())
    }
}

/// An aggregate cluster names clusters of the same configuration, each once,
/// none of them an aggregate (Envoy refuses nesting too; xDS's nested
/// aggregates arrive flattened by the xDS source).
fn check_aggregate(
    config: &MeshConfig,
    cluster: &Cluster,
    clusters: &[String],
    resource: &str,
    problems: &mut Problems,
) {
    if clusters.is_empty() {
        problems.push(
            resource,
            "discovery: aggregate: clusters",
            "lists no cluster",
        );
    }
    let mut seen = HashMap::new();
    for (j, name) in clusters.iter().enumerate() {
        let field = format!("discovery: aggregate: clusters[{j}]");
        if let Some(first) = seen.insert(name.as_str(), j) {
            problems.push(
                resource,
                &field,
                format!("{name:?} is listed twice (also clusters[{first}])"),
            );
            continue;
        }
        if *name == cluster.name {
            problems.push(resource, &field, "an aggregate cluster cannot list itself");
            continue;
        }
        match config.cluster(name) {
            None => problems.push(resource, &field, format!("no cluster is named {name:?}")),
            Some(child) if child.discovery.aggregate().is_some() => problems.push(
                resource,
                &field,
                format!("{name:?} is an aggregate cluster too: list its clusters instead"),
            ),
            Some(_) => {}
        }
    }
}

fn check_clusters(config: &MeshConfig, problems: &mut Problems) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, cluster) in config.clusters.iter().enumerate() {
        if cluster.name.is_empty() {
            problems.push(&format!("cluster #{i}"), "name", "must not be empty");
            continue;
        }
        let resource = format!("cluster {:?}", cluster.name);
        check_name(&cluster.name, &resource, problems);
        if let Some(first) = seen.insert(&cluster.name, i) {
            problems.push(
                &resource,
                "name",
                format!("defined twice (also cluster #{first})"),
            );
        }
        if cluster.connect_timeout.is_zero() {
            problems.push(&resource, "connect_timeout", "must be above 0");
        }
        let known = problems.len();
        check_lb_policy(cluster, &resource, problems);
        if problems.len() == known {
            check_hash_budget(cluster, &resource, problems);
        }
        if cluster.overprovisioning_factor == 0 {
            problems.push(&resource, "overprovisioning_factor", "must be above 0");
        }
        if let Some(budget) = cluster.circuit_breakers.and_then(|b| b.retry_budget)
            && !(0.0..=100.0).contains(&budget.budget_percent)
        {
            problems.push(
                &resource,
                "circuit_breakers.retry_budget.budget_percent",
                format!("{} is not a percentage (0 to 100)", budget.budget_percent),
            );
        }
        let mut localities = HashMap::new();
        for (j, lw) in cluster.locality_weights.iter().enumerate() {
            let field = format!("locality_weights[{j}]");
            if lw.weight == 0 {
                problems.push(
                    &resource,
                    &field,
                    "weight must be at least 1 (leave a locality out to give it no traffic)",
                );
            }
            if let Some(first) = localities.insert(&lw.locality, j) {
                problems.push(
                    &resource,
                    &field,
                    format!("locality listed twice (also locality_weights[{first}])"),
                );
            }
        }
        match &cluster.discovery {
            super::Discovery::Dns(dns) => problems.extend(dns.validate(&cluster.name)),
            super::Discovery::CloudMap(cloud_map) => {
                problems.extend(cloud_map.validate(&cluster.name));
                // Refused rather than ignored: the cluster would never get an
                // endpoint.
                #[cfg(not(feature = "cloudmap"))]
                problems.push(
                    &resource,
                    "discovery: cloud_map",
                    "meshlib was built without the `cloudmap` feature; enable it to \
                     discover endpoints from AWS Cloud Map",
                );
            }
            super::Discovery::Aggregate { clusters } => {
                check_aggregate(config, cluster, clusters, &resource, problems);
            }
            _ => {}
        }
        if !cluster.discovery.is_fixed() && !cluster.endpoints.is_empty() {
            problems.push(
                &resource,
                "endpoints",
                "listed, but this cluster's endpoints come from its discovery source",
            );
        }
        let mut addresses = HashMap::new();
        for (j, endpoint) in cluster.endpoints.iter().enumerate() {
            let field = format!("endpoints[{j}]");
            if endpoint.weight == 0 {
                problems.push(&resource, &field, "weight must be at least 1");
            }
            if endpoint.address.port() == 0 {
                problems.push(
                    &resource,
                    &format!("{field}: address"),
                    format!("{}: port 0 cannot be connected to", endpoint.address),
                );
            }
            if let Some(first) = addresses.insert(endpoint.address, j) {
                problems.push(
                    &resource,
                    &field,
                    format!(
                        "address {} listed twice (also endpoints[{first}])",
                        endpoint.address
                    ),
                );
            }
        }
    }
}

fn check_lb_policy(cluster: &Cluster, resource: &str, problems: &mut Problems) {
    match cluster.lb_policy {
        LbPolicy::LeastRequest { choice_count } if choice_count < 2 => {
            problems.push(
                resource,
                "lb_policy: least_request: choice_count",
                format!("must be at least 2, is {choice_count}"),
            );
        }
        LbPolicy::RingHash {
            minimum_ring_size,
            maximum_ring_size,
        } => {
            const LIMIT: u64 = 8 * 1024 * 1024;
            let field = "lb_policy: ring_hash";
            if minimum_ring_size == 0 || maximum_ring_size > LIMIT {
                problems.push(
                    resource,
                    field,
                    format!("ring sizes must be within 1..={LIMIT}"),
                );
            } else if minimum_ring_size > maximum_ring_size {
                problems.push(
                    resource,
                    field,
                    format!(
                        "minimum_ring_size {minimum_ring_size} is above maximum_ring_size {maximum_ring_size}"
                    ),
                );
            }
        }
        LbPolicy::Maglev { table_size } if !super::maglev_table_size_ok(table_size) => {
            problems.push(
                resource,
                "lb_policy: maglev: table_size",
                format!("must be a prime up to 5000011, is {table_size}"),
            );
        }
        LbPolicy::PeakEwma { decay, .. } if decay.is_zero() => {
            problems.push(resource, "lb_policy: peak_ewma: decay", "must be above 0");
        }
        _ => {}
    }
}

/// A hashing cluster builds a ring or table per priority level: for its
/// listed endpoints, they must fit [`super::MAX_CLUSTER_HASH_BYTES`] together.
fn check_hash_budget(cluster: &Cluster, resource: &str, problems: &mut Problems) {
    let field = match cluster.lb_policy {
        LbPolicy::RingHash { .. } => "lb_policy: ring_hash: maximum_ring_size",
        LbPolicy::Maglev { .. } => "lb_policy: maglev: table_size",
        _ => return,
    };
    let levels = level_weights(cluster);
    let bytes = levels
        .values()
        .map(|weights| hash_bytes(cluster.lb_policy, weights))
        .fold(0, u64::saturating_add);
    let limit = super::MAX_CLUSTER_HASH_BYTES;
    if bytes > limit {
        problems.push(
            resource,
            field,
            format!(
                "the rings or tables of its {} priority levels would take up to {bytes} bytes, \
                 above the {limit} a cluster may use in all: use a smaller size or fewer levels",
                levels.len()
            ),
        );
    }
}

/// The weights of each priority level's endpoints as its ring or table
/// weighs them: times their locality's weight, unlisted localities left out.
fn level_weights(cluster: &Cluster) -> BTreeMap<u32, Vec<u64>> {
    let mut levels: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for endpoint in &cluster.endpoints {
        let locality = if cluster.locality_weights.is_empty() {
            Some(1)
        } else {
            cluster
                .locality_weights
                .iter()
                .find(|lw| lw.locality == endpoint.locality)
                .map(|lw| lw.weight)
        };
        if let Some(locality) = locality.filter(|w| *w > 0)
            && endpoint.weight > 0
        {
            levels
                .entry(endpoint.priority)
                .or_default()
                .push(u64::from(endpoint.weight) * u64::from(locality));
        }
    }
    levels
}

/// The most bytes the ring or table over endpoints of `weights` takes under
/// `policy` (to within an entry: the ring's float arithmetic may add one).
fn hash_bytes(policy: LbPolicy, weights: &[u64]) -> u64 {
    match policy {
        LbPolicy::RingHash {
            minimum_ring_size,
            maximum_ring_size,
        } => {
            let total = weights.iter().copied().fold(0, u64::saturating_add);
            let lightest = weights.iter().copied().min().unwrap_or(1).max(1);
            // The ring is scaled so its lightest endpoint gets
            // ceil(its share × minimum) entries: at most minimum + total / lightest.
            let entries = minimum_ring_size
                .saturating_add(total.div_ceil(lightest))
                .min(maximum_ring_size);
            entries.saturating_mul(super::RING_ENTRY_BYTES)
        }
        LbPolicy::Maglev { table_size } => table_size.saturating_mul(super::MAGLEV_SLOT_BYTES),
        _ => 0,
    }
}

fn check_virtual_hosts(config: &MeshConfig, problems: &mut Problems) {
    let clusters: HashSet<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut domains: HashMap<String, &str> = HashMap::new();
    for (i, vhost) in config.virtual_hosts.iter().enumerate() {
        if vhost.name.is_empty() {
            problems.push(&format!("virtual_host #{i}"), "name", "must not be empty");
            continue;
        }
        let resource = format!("virtual_host {:?}", vhost.name);
        check_name(&vhost.name, &resource, problems);
        if let Some(first) = names.insert(&vhost.name, i) {
            problems.push(
                &resource,
                "name",
                format!("defined twice (also virtual_host #{first})"),
            );
        }
        if vhost.domains.is_empty() {
            problems.push(
                &resource,
                "domains",
                "must list at least one domain (`*` for any)",
            );
        }
        for domain in &vhost.domains {
            if let Err(message) = check_domain(domain) {
                problems.push(&resource, "domains", message);
            }
            if let Some(other) = domains.insert(domain.to_ascii_lowercase(), &vhost.name) {
                problems.push(
                    &resource,
                    "domains",
                    format!("domain {domain:?} is also in virtual_host {other:?}"),
                );
            }
        }
        if let Some(policy) = &vhost.retry_policy {
            check_retry_policy(policy, &resource, problems);
        }
        for (j, route) in vhost.routes.iter().enumerate() {
            let resource = if route.name.is_empty() {
                format!("{resource}: route #{j}")
            } else {
                format!("{resource}: route {:?}", route.name)
            };
            check_name(&route.name, &resource, problems);
            check_route(&clusters, route, &resource, problems);
        }
    }
}

/// Names appear in errors, logs, metrics labels and config dumps: a control
/// character (a NUL above all) in one is refused.
fn check_name(name: &str, resource: &str, problems: &mut Problems) {
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        problems.push(
            resource,
            "name",
            format!("holds the control character U+{:04X}", u32::from(c)),
        );
    }
}

/// `host_rewrite_literal` as the route sends it: a host (a name or an IP
/// literal) and an optional port from 1 to 65535, nothing else. The checks
/// and the route table both read it with this.
pub(crate) fn host_rewrite(host: &str) -> Result<http::uri::Authority, String> {
    let invalid = |why: &str| format!("{host:?} is not a valid authority: {why}");
    let authority: http::uri::Authority = host.parse().map_err(|_| invalid("not `host[:port]`"))?;
    if host.contains('@') {
        return Err(invalid("it holds user information (`@`)"));
    }
    if authority.host().is_empty() {
        return Err(invalid("it has no host"));
    }
    let port_text = authority
        .as_str()
        .strip_prefix(authority.host())
        .unwrap_or("");
    if let Some(port) = port_text.strip_prefix(':')
        && !matches!(port.parse::<u16>(), Ok(1..))
    {
        return Err(invalid("its port is not from 1 to 65535"));
    }
    http::HeaderValue::from_str(host).map_err(|_| invalid("not a header value"))?;
    Ok(authority)
}

/// A `prefix_rewrite` the route table can put in a request's path; one rule
/// for the checks and the table.
pub(crate) fn prefix_rewrite(with: &str) -> Result<(), String> {
    if http::uri::PathAndQuery::try_from(with).is_err() || with.contains(['?', '#']) {
        return Err(format!("{with:?} is not a valid path"));
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    let ok = match domain.matches('*').count() {
        0 => !domain.is_empty(),
        1 => domain == "*" || domain.starts_with('*') || domain.ends_with('*'),
        _ => false,
    };
    if ok {
        Ok(())
    } else if domain.is_empty() {
        Err("a domain must not be empty".to_owned())
    } else {
        Err(format!(
            "domain {domain:?}: a wildcard `*` may only stand alone, or at the start or end"
        ))
    }
}

fn check_route(clusters: &HashSet<&str>, route: &Route, resource: &str, problems: &mut Problems) {
    if problems.rules == Rules::File {
        check_path_start(&route.matcher.path, resource, problems);
    }
    if let PathMatch::Regex(pattern) = &route.matcher.path
        && let Err(e) = problems.regexes.full_match(pattern)
    {
        problems.push(resource, "match: safe_regex", e);
    }
    if let PathMatch::PathSeparatedPrefix(prefix) = &route.matcher.path
        && (!prefix.starts_with('/')
            || (prefix.len() > 1 && prefix.ends_with('/'))
            || prefix.contains(['?', '#']))
    {
        problems.push(
            resource,
            "match: path_separated_prefix",
            format!("{prefix:?} must start with `/`, not end with one, and hold no `?` or `#`"),
        );
    }
    for header in &route.matcher.headers {
        check_header(header, resource, problems);
    }
    for query in &route.matcher.query_parameters {
        let field = format!("match: query_parameters: {:?}", query.name);
        if query.name.is_empty() {
            problems.push(resource, "match: query_parameters", "a matcher has no name");
        }
        if let Some(matcher) = &query.value
            && let StringRule::Regex(pattern) = &matcher.rule
            && let Err(e) = problems.regexes.full_match(pattern)
        {
            problems.push(resource, &field, format!("safe_regex {e}"));
        }
    }
    check_route_action(clusters, route, resource, problems);
    if let Some(policy) = &route.action.retry_policy {
        check_retry_policy(policy, resource, problems);
    }
    for (i, header) in route.request_headers_to_add.iter().enumerate() {
        let field = format!("request_headers_to_add[{i}]");
        if let Err(message) = check_writable_header(&header.name) {
            problems.push(resource, &field, message);
        }
        if http::HeaderValue::from_str(&header.value).is_err() {
            problems.push(
                resource,
                &field,
                format!("value {:?} is not a valid header value", header.value),
            );
        }
    }
    for (i, name) in route.request_headers_to_remove.iter().enumerate() {
        if let Err(message) = check_writable_header(name) {
            problems.push(
                resource,
                &format!("request_headers_to_remove[{i}]"),
                message,
            );
        }
    }
}

/// A `prefix` or `path` that is not empty must start with `/`: a request
/// path always does, so the route could never match. Envoy accepts one over
/// xDS (its proto has no rule), so only a file is held to this.
fn check_path_start(path: &PathMatch, resource: &str, problems: &mut Problems) {
    let (field, text) = match path {
        PathMatch::Prefix(prefix) => ("match: prefix", prefix),
        PathMatch::Exact(path) => ("match: path", path),
        PathMatch::Regex(_) | PathMatch::PathSeparatedPrefix(_) => return,
    };
    if !text.is_empty() && !text.starts_with('/') {
        problems.push(
            resource,
            field,
            format!(
                "{text:?} must start with `/` (a request path always does, so it would never match)"
            ),
        );
    }
}

/// Whether a rule can read the header `name`: a header, or a pseudo-header
/// the matchers take from the request line (the status line, for a
/// response's). Any other `:name` would pass here and fail the route table.
fn readable_header(name: &str, response: bool) -> bool {
    let pseudo: &[&str] = if response {
        &[":status"]
    } else {
        &[":authority", ":method", ":path", ":scheme"]
    };
    pseudo.contains(&name) || http::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

/// Envoy refuses to add or remove pseudo-headers and `host` by these lists.
fn check_writable_header(name: &str) -> Result<(), String> {
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(format!(
            "header {name:?} cannot be changed this way (use host_rewrite_literal for the authority)"
        ));
    }
    http::HeaderName::from_bytes(name.as_bytes())
        .map(drop)
        .map_err(|_| format!("{name:?} is not a valid header name"))
}

fn check_route_action(
    clusters: &HashSet<&str>,
    route: &Route,
    resource: &str,
    problems: &mut Problems,
) {
    let action = &route.action;
    if action.prefix_rewrite.is_some() && action.regex_rewrite.is_some() {
        problems.push(
            resource,
            "prefix_rewrite",
            "set only one of `prefix_rewrite` and `regex_rewrite`",
        );
    }
    // An empty one is proto3's unset string in Envoy: no rewrite.
    if let Some(with) = action.prefix_rewrite.as_deref().filter(|w| !w.is_empty())
        && let Err(message) = prefix_rewrite(with)
    {
        problems.push(resource, "prefix_rewrite", message);
    }
    if let Some(rewrite) = &action.regex_rewrite
        && let Err(e) = problems.regexes.search(&rewrite.pattern)
    {
        problems.push(resource, "regex_rewrite: pattern", e);
    }
    if let Some(host) = &action.host_rewrite_literal
        && let Err(message) = host_rewrite(host)
    {
        problems.push(resource, "host_rewrite_literal", message);
    }
    for (i, mirror) in action.request_mirror_policies.iter().enumerate() {
        if !clusters.contains(mirror.cluster.as_str()) {
            problems.push(
                resource,
                &format!("request_mirror_policies[{i}]"),
                format!("no cluster named {:?}", mirror.cluster),
            );
        }
    }
    for (i, policy) in action.hash_policy.iter().enumerate() {
        if let super::HashOn::Header(name) = &policy.on
            && !readable_header(name, false)
        {
            problems.push(
                resource,
                &format!("hash_policy[{i}]: header"),
                format!("{name:?} is not a valid header name"),
            );
        }
    }
    match &route.action.destination {
        Destination::Cluster(name) => {
            if !clusters.contains(name.as_str()) {
                problems.push(resource, "cluster", format!("no cluster named {name:?}"));
            }
        }
        Destination::WeightedClusters(split) => {
            let field = "weighted_clusters";
            if split.is_empty() {
                problems.push(resource, field, "lists no cluster");
            }
            let mut total: u64 = 0;
            for weighted in split {
                total += u64::from(weighted.weight);
                if !clusters.contains(weighted.name.as_str()) {
                    problems.push(
                        resource,
                        field,
                        format!("no cluster named {:?}", weighted.name),
                    );
                }
            }
            if total == 0 && !split.is_empty() {
                problems.push(resource, field, "weights sum to 0");
            }
            if total > u64::from(u32::MAX) {
                problems.push(
                    resource,
                    field,
                    format!("weights sum to {total}, above 2^32-1"),
                );
            }
        }
        Destination::ClusterHeader(name) => {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(
                    resource,
                    "cluster_header",
                    format!("{name:?} is not a valid header name"),
                );
            }
        }
    }
}

/// Envoy's rules for a `RetryPolicy`: a backoff above zero whose maximum is
/// not below its base, statuses that are statuses, header rules that compile.
fn check_retry_policy(policy: &RetryPolicy, resource: &str, problems: &mut Problems) {
    let backoff = &policy.retry_back_off;
    if backoff.base_interval.is_zero() {
        problems.push(
            resource,
            "retry_policy: retry_back_off: base_interval",
            "must be above 0",
        );
    }
    if backoff.max_interval < backoff.base_interval {
        problems.push(
            resource,
            "retry_policy: retry_back_off: max_interval",
            format!(
                "{:?} is below base_interval {:?}",
                backoff.max_interval, backoff.base_interval
            ),
        );
    }
    for (i, code) in policy.retriable_status_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            problems.push(
                resource,
                &format!("retry_policy: retriable_status_codes[{i}]"),
                format!("{code} is not an HTTP status (100..=599)"),
            );
        }
    }
    for (list, field) in [
        (&policy.retriable_headers, "retriable_headers"),
        (
            &policy.retriable_request_headers,
            "retriable_request_headers",
        ),
    ] {
        for header in list {
            check_header_as(
                header,
                resource,
                &format!("retry_policy: {field}: {:?}", header.name),
                field == "retriable_headers",
                problems,
            );
        }
    }
}

fn check_header(header: &HeaderMatcher, resource: &str, problems: &mut Problems) {
    let field = format!("match: headers: {:?}", header.name);
    check_header_as(header, resource, &field, false, problems);
}

/// Checks a header rule reported under `field`; `response` for a rule on a
/// response's headers.
fn check_header_as(
    header: &HeaderMatcher,
    resource: &str,
    field: &str,
    response: bool,
    problems: &mut Problems,
) {
    let field = field.to_owned();
    if header.name.is_empty() {
        problems.push(resource, &field, "a header matcher has no name");
    } else if !readable_header(&header.name, response) {
        problems.push(resource, &field, "is not a valid header name");
    }
    match &header.rule {
        HeaderRule::Regex(pattern) => {
            if let Err(e) = problems.regexes.full_match(pattern) {
                problems.push(resource, &field, format!("safe_regex {e}"));
            }
        }
        HeaderRule::Range { start, end } if start >= end => {
            problems.push(resource, &field, format!("range [{start}, {end}) is empty"));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::config::MeshConfig;

    fn problems(yaml: &str) -> Vec<String> {
        match MeshConfig::from_yaml(yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().iter().map(ToString::to_string).collect(),
        }
    }

    const CLUSTERS: &str = "
clusters:
  - name: v1
    endpoints: [{ address: \"127.0.0.1:1\" }]
  - name: v2
    endpoints: [{ address: \"127.0.0.1:2\" }]
";

    #[test]
    fn zero_weights_are_named_by_route() {
        let yaml = format!(
            "{CLUSTERS}
virtual_hosts:
  - name: reviews
    domains: [reviews]
    routes:
      - name: reviews-canary
        match: {{ prefix: / }}
        route: {{ weighted_clusters: {{ clusters: [{{ name: v1, weight: 0 }}, {{ name: v2, weight: 0 }}] }} }}
"
        );
        assert_eq!(
            problems(&yaml),
            [
                "virtual_host \"reviews\": route \"reviews-canary\": weighted_clusters: weights sum to 0"
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let yaml = format!(
            "{CLUSTERS}
  - name: v1
    endpoints: [{{ address: \"127.0.0.1:3\", weight: 0 }}]
virtual_hosts:
  - name: a
    domains: [\"a\", \"*b*\"]
    routes:
      - match: {{ safe_regex: {{ regex: \"(\" }} }}
        route: {{ cluster: missing }}
      - match: {{ prefix: /, headers: [{{ name: x, range: {{ start: 5, end: 1 }} }}] }}
        route: {{ cluster: v1 }}
  - name: b
    domains: [\"A\"]
"
        );
        let found = problems(&yaml);
        let expected = [
            "cluster \"v1\": name: defined twice (also cluster #0)",
            "cluster \"v1\": endpoints[0]: weight must be at least 1",
            "virtual_host \"a\": domains: domain \"*b*\": a wildcard `*` may only stand alone, or at the start or end",
            "virtual_host \"a\": route #0: match: safe_regex: does not compile",
            "virtual_host \"a\": route #0: cluster: no cluster named \"missing\"",
            "virtual_host \"a\": route #1: match: headers: \"x\": range [5, 1) is empty",
            "virtual_host \"b\": domains: domain \"A\" is also in virtual_host \"a\"",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(
                found.starts_with(expected),
                "{found:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn a_retry_budget_is_a_percentage() {
        let err = MeshConfig::from_yaml(
            "clusters: [{ name: c, circuit_breakers: { retry_budget: { budget_percent: 120 } } }]",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cluster \"c\"")
                && err.contains("circuit_breakers.retry_budget.budget_percent")
                && err.contains("120 is not a percentage"),
            "{err}"
        );
    }

    #[test]
    fn one_of_fields_name_the_keys() {
        let err = MeshConfig::from_yaml(
            "virtual_hosts: [{ name: a, domains: [a], routes: [{ match: { prefix: /, path: /x }, route: { cluster: c } }] }]",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "match: set only one of `prefix`, `path`, `safe_regex`, `path_separated_prefix`, found `prefix` and `path`"
            ),
            "{err}"
        );
        let err = MeshConfig::from_yaml(
            "virtual_hosts: [{ name: a, domains: [a], routes: [{ match: { prefix: / }, route: { } }] }]",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("route: set one of `cluster`, `weighted_clusters`, `cluster_header`"),
            "{err}"
        );
    }

    #[test]
    fn the_reference_file_is_valid_and_means_what_it_says() {
        use crate::config::{AppendAction, Destination, LbPolicy, PathMatch};
        let config =
            MeshConfig::from_yaml(include_str!("../../../examples/config/reference.yaml")).unwrap();
        let cart = &config.virtual_hosts[0].routes[0];
        assert_eq!(
            cart.matcher.path,
            PathMatch::PathSeparatedPrefix("/cart".to_owned())
        );
        assert!(!cart.matcher.case_sensitive);
        assert_eq!(cart.matcher.query_parameters.len(), 2);
        assert_eq!(
            cart.matcher.runtime_fraction.map(|f| f.per_million()),
            Some(500_000)
        );
        assert!(matches!(
            cart.action.destination,
            Destination::WeightedClusters(ref c) if c.len() == 2
        ));
        assert_eq!(cart.action.hash_policy.len(), 4);
        assert_eq!(
            cart.request_headers_to_add[0].append_action,
            AppendAction::OverwriteIfExistsOrAdd
        );
        let v1 = config.cluster("cart-v1").unwrap();
        assert_eq!(
            v1.lb_policy,
            LbPolicy::RingHash {
                minimum_ring_size: 512,
                maximum_ring_size: 8 * 1024 * 1024
            }
        );
        assert_eq!(v1.locality_weights.len(), 2);
        assert_eq!(v1.endpoints[2].priority, 1);
        assert_eq!(v1.circuit_breakers.map(|b| b.max_retries), Some(5));
        // Every endpoint's locality is one the weights list.
        for endpoint in &v1.endpoints {
            assert!(
                v1.locality_weights
                    .iter()
                    .any(|w| w.locality == endpoint.locality),
                "{endpoint:?}"
            );
        }
    }

    #[test]
    fn lb_policies_read_as_names_or_with_parameters() {
        use crate::config::LbPolicy;
        let config = MeshConfig::from_yaml(
            "clusters:
  - { name: a, lb_policy: maglev }
  - { name: b, lb_policy: { ring_hash: { minimum_ring_size: 64 } } }
  - { name: c, lb_policy: { least_request: { choice_count: 3 } } }
  - { name: d, lb_policy: { peak_ewma: { decay: 5s } } }
  - { name: e }",
        )
        .unwrap();
        let policies: Vec<LbPolicy> = config.clusters.iter().map(|c| c.lb_policy).collect();
        assert_eq!(
            policies,
            [
                LbPolicy::maglev(),
                LbPolicy::RingHash {
                    minimum_ring_size: 64,
                    maximum_ring_size: 8 * 1024 * 1024
                },
                LbPolicy::LeastRequest { choice_count: 3 },
                LbPolicy::PeakEwma {
                    decay: std::time::Duration::from_secs(5),
                    default_rtt: std::time::Duration::from_millis(30)
                },
                LbPolicy::RoundRobin,
            ]
        );
        // What the model writes, it reads back.
        let written = serde_json::to_string(&config).unwrap();
        assert_eq!(MeshConfig::from_json(&written).unwrap(), config);
    }

    #[test]
    fn routing_fields_are_checked_by_name() {
        let yaml = format!(
            "{CLUSTERS}
  - name: maglev
    lb_policy: {{ maglev: {{ table_size: 65536 }} }}
virtual_hosts:
  - name: a
    domains: [a]
    routes:
      - name: r
        match: {{ path_separated_prefix: /api/, query_parameters: [{{ name: q, string_match: {{ safe_regex: {{ regex: \"(\" }} }} }}] }}
        route:
          cluster_header: x-cluster
          prefix_rewrite: /v2
          regex_rewrite: {{ pattern: {{ regex: \"^/x\" }}, substitution: /y }}
          host_rewrite_literal: \"bad host\"
          request_mirror_policies: [{{ cluster: nowhere }}]
        request_headers_to_add: [{{ name: \":path\", value: x }}]
"
        );
        let found = problems(&yaml);
        let expected = [
            "cluster \"maglev\": lb_policy: maglev: table_size: must be a prime",
            "virtual_host \"a\": route \"r\": match: path_separated_prefix: \"/api/\" must start with `/`, not end with one",
            "virtual_host \"a\": route \"r\": match: query_parameters: \"q\": safe_regex does not compile",
            "virtual_host \"a\": route \"r\": prefix_rewrite: set only one of `prefix_rewrite` and `regex_rewrite`",
            "virtual_host \"a\": route \"r\": host_rewrite_literal: \"bad host\" is not a valid authority",
            "virtual_host \"a\": route \"r\": request_mirror_policies[0]: no cluster named \"nowhere\"",
            "virtual_host \"a\": route \"r\": request_headers_to_add[0]: header \":path\" cannot be changed",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(
                found.starts_with(expected),
                "{found:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused_not_ignored() {
        let err = MeshConfig::from_yaml("clusters: [{ name: a, lb_polcy: round_robin }]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `lb_polcy`"), "{err}");
        let err = MeshConfig::from_yaml("clusters: [{ name: a, lb_policy: magnetic }]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `magnetic`"), "{err}");
        let err = MeshConfig::from_yaml(
            "clusters: [{ name: a, lb_policy: { ring_hash: { minimum_ring: 8 } } }]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `minimum_ring`"), "{err}");
    }

    #[test]
    fn a_huge_maglev_table_size_is_refused_at_once() {
        // Its primality test once ran for minutes (and overflowed in debug).
        let yaml =
            "clusters: [{ name: a, lb_policy: { maglev: { table_size: 18446744073709551557 } } }]";
        let error = MeshConfig::from_yaml(yaml).unwrap_err().to_string();
        assert!(error.contains("must be a prime up to 5000011"), "{error}");
        assert!(super::super::maglev_table_size_ok(65_537));
        assert!(!super::super::maglev_table_size_ok(65_536));
    }

    /// A hashing cluster with `levels` endpoints, one per priority level.
    fn hashing_cluster(policy: &str, levels: u32) -> String {
        let endpoints: Vec<String> = (0..levels)
            .map(|p| format!("{{ address: \"127.0.0.1:{}\", priority: {p} }}", p + 1))
            .collect();
        format!(
            "clusters: [{{ name: a, overprovisioning_factor: 1, lb_policy: {policy}, endpoints: [{}] }}]",
            endpoints.join(", ")
        )
    }

    #[test]
    fn rings_and_tables_are_bounded_per_cluster_not_only_per_level() {
        // 20 levels of 8M-entry rings once took 2.05 GB and 13.4 s to build.
        let ring = "{ ring_hash: { minimum_ring_size: 8388608, maximum_ring_size: 8388608 } }";
        let found = problems(&hashing_cluster(ring, 20));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with(
                "cluster \"a\": lb_policy: ring_hash: maximum_ring_size: the rings or tables of its 20 priority levels"
            ),
            "{found:?}"
        );
        // 100 levels of Envoy's largest maglev table once took 1.9 GB.
        let found = problems(&hashing_cluster("{ maglev: { table_size: 5000011 } }", 100));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("cluster \"a\": lb_policy: maglev: table_size: the rings"),
            "{found:?}"
        );
        // What Envoy allows of one ring, and many levels of the default
        // sizes, stay within the bound.
        assert_eq!(problems(&hashing_cluster(ring, 1)), Vec::<String>::new());
        assert_eq!(
            problems(&hashing_cluster("{ maglev: { table_size: 5000011 } }", 5)),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(&hashing_cluster("ring_hash", 100)),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(&hashing_cluster("maglev", 100)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_pseudo_header_no_rule_reads_is_refused_not_left_to_fail_the_route_table() {
        // Found by the route-table fuzz target: any `:name` passed these
        // checks, and RouteTable::new then refused the configuration.
        let yaml = format!(
            "{CLUSTERS}
virtual_hosts:
  - name: a
    domains: [a]
    routes:
      - name: r
        match: {{ prefix: /, headers: [{{ name: \":\", present: true }}, {{ name: \":path\", prefix: / }}] }}
        route:
          cluster: v1
          hash_policy: [{{ header: {{ header_name: \":foo\" }} }}, {{ header: {{ header_name: \":authority\" }} }}]
          retry_policy:
            retriable_headers: [{{ name: \":authority\", present: true }}, {{ name: \":status\", exact: \"503\" }}]
            retriable_request_headers: [{{ name: \":bar\", present: true }}, {{ name: \":method\", exact: GET }}]
"
        );
        assert_eq!(
            problems(&yaml),
            [
                "virtual_host \"a\": route \"r\": match: headers: \":\": is not a valid header name",
                "virtual_host \"a\": route \"r\": hash_policy[0]: header: \":foo\" is not a valid header name",
                "virtual_host \"a\": route \"r\": retry_policy: retriable_headers: \":authority\": is not a valid header name",
                "virtual_host \"a\": route \"r\": retry_policy: retriable_request_headers: \":bar\": is not a valid header name",
            ]
        );
        let readable = yaml
            .replace(r#"":""#, r#"":scheme""#)
            .replace(":foo", ":path")
            .replace(r#"":authority", present"#, r#""x-a", present"#)
            .replace(":bar", "x-b");
        let config = MeshConfig::from_yaml(&readable).unwrap();
        crate::route::RouteTable::new(&config).unwrap();
    }

    #[test]
    fn a_prefix_rewrite_that_is_not_a_path_is_refused_not_left_to_fail_the_route_table() {
        // Found by the config fuzz target: these checks passed it, and
        // RouteTable::new then refused the configuration.
        let yaml = |with: &str| {
            format!(
                "{CLUSTERS}
virtual_hosts:
  - name: a
    domains: [a]
    routes:
      - name: r
        match: {{ prefix: /v1 }}
        route: {{ cluster: v1, prefix_rewrite: \"{with}\" }}
"
            )
        };
        for with in ["v2", "/v2?x", "/v2#x", "/v 2"] {
            assert_eq!(
                problems(&yaml(with)),
                [format!(
                    "virtual_host \"a\": route \"r\": prefix_rewrite: {with:?} is not a valid path"
                )]
            );
        }
        for with in ["/v2", ""] {
            let config = MeshConfig::from_yaml(&yaml(with)).unwrap();
            crate::route::RouteTable::new(&config).unwrap();
        }
    }

    #[test]
    fn each_regex_is_compiled_once_for_the_checks_and_the_route_table() {
        use crate::config::safe_regex::tests::COMPILES;
        let yaml = "
clusters: [{ name: c }]
virtual_hosts:
  - name: v
    domains: [v]
    routes:
      - match: { safe_regex: { regex: \"/a/[0-9]+\" }, headers: [{ name: x, safe_regex: { regex: \"[a-z]+\" } }] }
        route: { cluster: c, regex_rewrite: { pattern: { regex: \"^/a\" }, substitution: /b } }
      - match: { prefix: /, query_parameters: [{ name: q, string_match: { safe_regex: { regex: \"[a-z]+\" } } }] }
        route: { cluster: c, retry_policy: { retriable_headers: [{ name: y, safe_regex: { regex: \"z\" } }] } }
";
        let compiles = || COMPILES.with(std::cell::Cell::get);
        let before = compiles();
        let config = MeshConfig::from_yaml(yaml).unwrap();
        // Four distinct patterns; `[a-z]+` twice. Each was compiled three
        // times before: by from_yaml, by MeshClient's check, by the table.
        assert_eq!(compiles() - before, 4);
        config.validate().unwrap();
        crate::route::RouteTable::new(&config).unwrap();
        assert_eq!(compiles() - before, 4);
        // A pattern the configuration no longer holds is not kept.
        let mut changed = config.clone();
        changed.virtual_hosts[0].routes.truncate(1);
        changed.validate().unwrap();
        assert_eq!(format!("{:?}", changed.regexes), "3 compiled");
    }

    #[test]
    fn a_repeated_mistake_reports_the_first_problems_and_a_count() {
        // One domain in 1,000 virtual hosts: 999 problems. A YAML alias
        // repeating one this way once made an 857 MB error message.
        let hosts: Vec<String> = (0..1000)
            .map(|i| format!("{{ name: h{i}, domains: [same] }}"))
            .collect();
        let yaml = format!("virtual_hosts: [{}]", hosts.join(", "));
        let found = problems(&yaml);
        assert_eq!(found.len(), super::MAX_PROBLEMS + 1);
        assert_eq!(
            found.last().unwrap(),
            "configuration: problems: 899 more not listed (the first 100 are)"
        );
        let message = MeshConfig::from_yaml(&yaml).unwrap_err().to_string();
        assert!(message.len() < 20_000, "{} bytes", message.len());
    }

    #[test]
    fn choice_count_reads_as_grpc_reads_it() {
        use crate::config::LbPolicy;
        let policy = |count: &str| {
            MeshConfig::from_yaml(&format!(
                "clusters: [{{ name: a, lb_policy: {{ least_request: {{ choice_count: {count} }} }} }}]"
            ))
            .map(|c| c.clusters[0].lb_policy)
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            policy("4294967295"),
            Ok(LbPolicy::LeastRequest { choice_count: 10 })
        );
        assert_eq!(policy("7"), Ok(LbPolicy::LeastRequest { choice_count: 7 }));
        for count in ["0", "1"] {
            let error = policy(count).unwrap_err();
            assert!(
                error.contains("lb_policy: least_request: choice_count: must be at least 2"),
                "{error}"
            );
        }
    }

    #[test]
    fn an_aggregate_cluster_names_plain_clusters_of_the_same_configuration() {
        let yaml = format!(
            "{CLUSTERS}
  - name: both
    discovery: {{ aggregate: {{ clusters: [v1, v2] }} }}
"
        );
        let config = MeshConfig::from_yaml(&yaml).unwrap();
        let both = config.cluster("both").unwrap();
        assert_eq!(
            both.discovery.aggregate(),
            Some(&["v1".to_owned(), "v2".to_owned()][..])
        );

        let yaml = format!(
            "{CLUSTERS}
  - name: both
    discovery: {{ aggregate: {{ clusters: [v1, v1, both, missing, nested] }} }}
    endpoints: [{{ address: \"127.0.0.1:9\" }}]
  - name: nested
    discovery: {{ aggregate: {{ clusters: [v2] }} }}
  - name: empty
    discovery: {{ aggregate: {{ clusters: [] }} }}
"
        );
        assert_eq!(
            problems(&yaml),
            [
                "cluster \"both\": discovery: aggregate: clusters[1]: \"v1\" is listed twice (also clusters[0])",
                "cluster \"both\": discovery: aggregate: clusters[2]: an aggregate cluster cannot list itself",
                "cluster \"both\": discovery: aggregate: clusters[3]: no cluster is named \"missing\"",
                "cluster \"both\": discovery: aggregate: clusters[4]: \"nested\" is an aggregate cluster too: list its clusters instead",
                "cluster \"both\": endpoints: listed, but this cluster's endpoints come from its discovery source",
                "cluster \"empty\": discovery: aggregate: clusters: lists no cluster",
            ]
        );
        let error = MeshConfig::from_yaml(
            "clusters: [{ name: a, discovery: { aggregate: { cluster: [b] } } }]",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `cluster`"), "{error}");
    }

    #[test]
    fn the_aggregate_example_file_is_valid_and_means_what_it_says() {
        let config =
            MeshConfig::from_yaml(include_str!("../../../examples/config/aggregate.yaml")).unwrap();
        let checkout = config.cluster("checkout").unwrap();
        assert_eq!(
            checkout.discovery.aggregate(),
            Some(&["checkout-local".to_owned(), "checkout-remote".to_owned()][..])
        );
    }

    #[test]
    fn retry_policies_are_checked_by_route_and_field() {
        let yaml = "
clusters: [{ name: c }]
virtual_hosts:
  - name: a
    domains: [a]
    retry_policy: { retry_on: 5xx, retry_back_off: { base_interval: 0s } }
    routes:
      - name: r
        match: { prefix: / }
        route:
          cluster: c
          retry_policy:
            retry_on: retriable-status-codes
            retry_back_off: { base_interval: 50ms, max_interval: 10ms }
            retriable_status_codes: [42]
            retriable_headers: [{ name: x-a, safe_regex: { regex: \"(\" } }]
";
        let found = problems(yaml);
        let expected = [
            "virtual_host \"a\": retry_policy: retry_back_off: base_interval: must be above 0",
            "virtual_host \"a\": route \"r\": retry_policy: retry_back_off: max_interval: 10ms is below base_interval 50ms",
            "virtual_host \"a\": route \"r\": retry_policy: retriable_status_codes[0]: 42 is not an HTTP status",
            "virtual_host \"a\": route \"r\": retry_policy: retriable_headers: \"x-a\": safe_regex does not compile",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(found.starts_with(expected), "{found} / {expected}");
        }
        let typo = MeshConfig::from_yaml(
            "clusters: [{ name: c }]\nvirtual_hosts: [{ name: a, domains: [a], routes: [{ match: { prefix: / }, route: { cluster: c, retry_policy: { retry_on: 5XX } } }] }]",
        )
        .unwrap_err()
        .to_string();
        assert!(
            typo.contains("retry_on: unknown condition \"5XX\""),
            "{typo}"
        );
    }

    #[test]
    fn hostile_values_are_refused_by_field() {
        let yaml = "
clusters:
  - name: \"c\\0x\"
    endpoints: [{ address: \"127.0.0.1:0\" }]
  - name: c
virtual_hosts:
  - name: a
    domains: [a]
    routes:
      - name: evil
        match: { prefix: / }
        route: { cluster: c, host_rewrite_literal: \"user@evil.com:99999\" }
      - name: slashless
        match: { prefix: api }
        route: { cluster: c, timeout: 0s }
";
        let found = problems(yaml);
        let expected = [
            "cluster \"c\\0x\": name: holds the control character U+0000",
            "cluster \"c\\0x\": endpoints[0]: address: 127.0.0.1:0: port 0 cannot be connected to",
            "virtual_host \"a\": route \"evil\": host_rewrite_literal: \"user@evil.com:99999\" is not a valid authority",
            "virtual_host \"a\": route \"slashless\": match: prefix: \"api\" must start with `/`",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(
                found.starts_with(expected),
                "{found:?} should start with {expected:?}"
            );
        }
        // A negative zero is a syntax error, named by its place (the path
        // stops at `route`, whose fields are read flattened; the line and
        // column point at the value).
        let error = MeshConfig::from_yaml(&yaml.replace("timeout: 0s", "timeout: -0s"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("routes[1].route: "), "{error}");
        assert!(error.contains("at line 15 column 16"), "{error}");
        assert!(error.contains("duration \"-0s\" is negative"), "{error}");
    }

    #[test]
    fn a_host_rewrite_is_a_host_and_an_optional_port() {
        for good in ["example.com", "example.com:8080", "10.0.0.1:1", "[::1]:443"] {
            assert!(super::host_rewrite(good).is_ok(), "{good}");
        }
        for bad in [
            "user@evil.com",
            "evil.com:99999",
            "evil.com:0",
            "evil.com:",
            "a b",
            "",
        ] {
            assert!(super::host_rewrite(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_path_without_its_slash_is_refused_from_a_file_only() {
        let yaml = "clusters: [{ name: c }]\nvirtual_hosts: [{ name: a, domains: [a], routes: [{ match: { path: api }, route: { cluster: c } }] }]";
        let error = MeshConfig::from_yaml(yaml).unwrap_err().to_string();
        assert!(
            error.contains("match: path: \"api\" must start with `/`"),
            "{error}"
        );
        // Envoy accepts it over xDS, and so does the model.
        let config: MeshConfig = yaml_serde::from_str(yaml).unwrap();
        assert!(config.validate().is_ok());
        assert!(MeshConfig::from_yaml(&yaml.replace("path: api", "prefix: ''")).is_ok());
    }
}
