//! The compiled route table: virtual host selection and route matching.
//!
//! Semantics are Envoy's (`route_components.proto`) and gRPC's A28: the virtual
//! host is chosen by domain (exact, then the longest `*suffix`, then the longest
//! `prefix*`, then `*`), then routes are tried in order and the first whose
//! path, header and query parameter rules all match wins; a route with a
//! `runtime_fraction` then matches only that share of the requests, drawn at
//! random per request after its other rules held (as gRPC does). Regular
//! expressions are compiled here, once per configuration, never per request,
//! and each virtual host's routes are indexed by path (see [`PathIndex`]) so a
//! request is tested only against routes that could match it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use http::Request;

use super::action::RequestActions;
use super::hash::HashPolicies;
use super::index::{PathIndex, RouteKeys};
use super::normalize::PathNormalization;
use super::split::WeightedClusters;
use super::{RouteDecision, RouteInfo};
use crate::config::{self, ConfigError, Destination, MeshConfig, Problem};
use crate::error::{Error, ErrorKind, Quoted};
use crate::matcher::{
    HeaderCheck, HeaderRef, PathRule, QueryCheck, RequestHeaders, authority, compile_header,
    fraction_drawn,
};

/// A configuration's routes, compiled for matching requests.
///
/// ```
/// use meshlib::config::MeshConfig;
/// use meshlib::route::RouteTable;
///
/// let config = MeshConfig::from_yaml(r#"
/// virtual_hosts:
///   - name: shop
///     domains: ["shop", "*.shop.internal"]
///     routes:
///       - name: cart
///         match: { prefix: /cart, query_parameters: [{ name: debug, present_match: true }] }
///         route: { cluster: cart-debug }
///       - name: cart
///         match: { prefix: /cart }
///         route: { cluster: cart }
/// clusters:
///   - name: cart
///   - name: cart-debug
/// "#)?;
/// let table = RouteTable::new(&config)?;
/// let request = http::Request::get("http://eu.shop.internal/cart/42").body(())?;
/// let decision = table.decide(&request)?;
/// assert_eq!((decision.virtual_host(), decision.route(), decision.cluster()), ("shop", "cart", "cart"));
/// let request = http::Request::get("http://shop/cart/42?debug").body(())?;
/// assert_eq!(table.decide(&request)?.cluster(), "cart-debug");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RouteTable {
    virtual_hosts: Vec<VirtualHostEntry>,
    /// Lower-cased exact domains.
    exact: HashMap<Box<str>, usize>,
    /// `*.example.com` kept as `.example.com`, longest first.
    suffixes: Vec<(Box<str>, usize)>,
    /// `api.*` kept as `api.`, longest first.
    prefixes: Vec<(Box<str>, usize)>,
    /// The `*` virtual host.
    any: Option<usize>,
    /// How request paths are normalised before matching.
    paths: PathNormalization,
}

#[derive(Debug)]
struct VirtualHostEntry {
    name: Arc<str>,
    routes: Vec<RouteEntry>,
    /// The headers the index splits routes by, by their number there.
    headers: Box<[HeaderRef]>,
    index: PathIndex,
}

#[derive(Debug)]
struct RouteEntry {
    info: Arc<RouteInfo>,
    path: PathRule,
    headers: Box<[HeaderCheck]>,
    query: Box<[QueryCheck]>,
    /// The share of otherwise matching requests matched, in parts per million.
    fraction: Option<u32>,
    target: Target,
}

#[derive(Debug)]
enum Target {
    Cluster(Arc<str>),
    Weighted(WeightedClusters),
    /// The cluster named by this header.
    Header(http::HeaderName),
}

impl RouteTable {
    /// Compiles `config`'s virtual hosts and routes; a configuration that passed
    /// [`MeshConfig::validate`] always compiles.
    pub fn new(config: &MeshConfig) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut table = RouteTable {
            virtual_hosts: Vec::with_capacity(config.virtual_hosts.len()),
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            any: None,
            paths: PathNormalization {
                normalize: config.normalize_path,
                merge_slashes: config.merge_slashes,
            },
        };
        for (index, vhost) in config.virtual_hosts.iter().enumerate() {
            let name: Arc<str> = Arc::from(vhost.name.as_str());
            for domain in &vhost.domains {
                let domain = domain.to_ascii_lowercase();
                if domain == "*" {
                    table.any = Some(index);
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    table.suffixes.push((suffix.into(), index));
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    table.prefixes.push((prefix.into(), index));
                } else {
                    table.exact.insert(domain.into(), index);
                }
            }
            let routes = vhost
                .routes
                .iter()
                .enumerate()
                .filter_map(|(i, route)| {
                    match compile_route(&name, vhost, i, route, &config.regexes) {
                        Ok(entry) => Some(entry),
                        Err(problem) => {
                            problems.push(problem);
                            None
                        }
                    }
                })
                .collect::<Vec<_>>();
            let (index, headers) = index_routes(&vhost.routes, &routes);
            table.virtual_hosts.push(VirtualHostEntry {
                name,
                routes,
                headers,
                index,
            });
        }
        // Longest wildcard first, as Envoy; ties keep configuration order.
        table
            .suffixes
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        table
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        if problems.is_empty() {
            Ok(table)
        } else {
            Err(ConfigError::invalid(None, problems))
        }
    }

    /// Routes `request`: the virtual host, the route, and the policy it gets
    /// there: for weighted clusters a cluster picked at random in proportion
    /// to weight, the request's timeout, its hash. Pure but for the random
    /// draws (weighted clusters, `runtime_fraction`): the request is not
    /// changed; [`RouteDecision::apply`] applies the route's rewrites.
    ///
    /// With `normalize_path` or `merge_slashes` on, the path is normalised
    /// first (see [`MeshConfig::normalize_path`]): routes match the
    /// normalised path, and [`RouteDecision::apply`] sends it.
    pub fn decide<B>(&self, request: &Request<B>) -> Result<RouteDecision, Error> {
        let normalized = self.normalized_path(request)?;
        let route = self.find(request, normalized.as_ref())?;
        let cluster = match &route.target {
            Target::Cluster(name) => name.clone(),
            Target::Weighted(split) => split.pick_random().cloned().ok_or_else(|| {
                // Unreachable for a validated configuration: its weights sum above 0.
                Error::new(
                    ErrorKind::UnknownCluster,
                    format!("route {:?} has no cluster with weight", route.info.name),
                )
            })?,
            Target::Header(header) => request
                .headers()
                .get(header)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(Arc::from)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::UnknownCluster,
                        format!(
                            "route {:?} of virtual host {:?} takes its cluster from header {:?}, which the request does not carry",
                            route.info.name, route.info.virtual_host, header.as_str()
                        ),
                    )
                })?,
        };
        let timeout = super::request_timeout(
            route.info.timeout,
            route.info.max_stream_duration.as_ref(),
            request.headers(),
        );
        let path_and_query = normalized.as_ref().map(|n| n.path_and_query.as_str());
        let hash = route.info.hash.hash(request, path_and_query);
        Ok(RouteDecision::matched(
            route.info.clone(),
            cluster,
            timeout,
            hash,
            normalized.map(|n| n.path),
        ))
    }

    /// The request's path normalised, when the configuration asks for it
    /// and it changes; an error when it cannot be normalised.
    fn normalized_path<B>(&self, request: &Request<B>) -> Result<Option<NormalizedPath>, Error> {
        let uri = request.uri();
        let path = match self.paths.apply(uri.path()) {
            Ok(Cow::Borrowed(_)) => return Ok(None),
            Ok(Cow::Owned(path)) => path,
            Err(why) => {
                return Err(Error::new(
                    ErrorKind::InvalidPath,
                    format!("path {} cannot be normalised: it {why}", Quoted(uri.path())),
                ));
            }
        };
        let path_and_query = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.clone(),
        };
        Ok(Some(NormalizedPath {
            path: Arc::from(path),
            path_and_query,
        }))
    }

    fn find<B>(
        &self,
        request: &Request<B>,
        normalized: Option<&NormalizedPath>,
    ) -> Result<&RouteEntry, Error> {
        let vhost = self.virtual_host_of(request)?;
        let query = request.uri().query();
        let path = normalized.map_or(request.uri().path(), |n| &*n.path);
        // One view for the whole decision: a repeated header is joined once.
        let mut headers = RequestHeaders::new(request);
        if let Some(normalized) = normalized {
            headers = headers.with_path(&normalized.path_and_query);
        }
        vhost
            .index
            .first_match(
                path,
                |header| headers.value(vhost.headers.get(header as usize)?),
                |i| {
                    vhost
                        .routes
                        .get(i as usize)
                        .is_some_and(|route| route.matches(&headers, path, query))
                },
            )
            .and_then(|i| vhost.routes.get(i as usize))
            .ok_or_else(|| no_route(vhost, request, path))
    }

    fn virtual_host_of<B>(&self, request: &Request<B>) -> Result<&VirtualHostEntry, Error> {
        let authority = authority(request).ok_or_else(|| {
            Error::new(
                ErrorKind::NoRoute,
                "request has no authority or Host header",
            )
        })?;
        self.virtual_host(authority).ok_or_else(|| {
            Error::new(
                ErrorKind::NoRoute,
                format!("no virtual host for authority {}", Quoted(authority)),
            )
        })
    }

    fn virtual_host(&self, authority: &str) -> Option<&VirtualHostEntry> {
        let lowered: Cow<'_, str> = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(authority.to_ascii_lowercase())
        } else {
            Cow::Borrowed(authority)
        };
        let full = lowered.as_ref();
        // `host:port` is tried as written first (a domain may name a port), then
        // without the port.
        let without_port = strip_port(full);
        let candidates = [Some(full), without_port];
        let candidates = candidates.iter().flatten();
        let index = candidates
            .clone()
            .find_map(|host| self.exact.get(*host).copied())
            .or_else(|| {
                candidates.clone().find_map(|host| {
                    self.suffixes
                        .iter()
                        .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(&**suffix))
                        .map(|(_, i)| *i)
                })
            })
            .or_else(|| {
                candidates.clone().find_map(|host| {
                    self.prefixes
                        .iter()
                        .find(|(prefix, _)| {
                            host.len() > prefix.len() && host.starts_with(&**prefix)
                        })
                        .map(|(_, i)| *i)
                })
            })
            .or(self.any)?;
        self.virtual_hosts.get(index)
    }
}

/// A request path as normalisation made it, with its query for `:path`.
#[derive(Debug)]
struct NormalizedPath {
    path: Arc<str>,
    path_and_query: String,
}

/// `path` is the one matched: the request's, normalised if it was.
fn no_route<B>(vhost: &VirtualHostEntry, request: &Request<B>, path: &str) -> Error {
    Error::new(
        ErrorKind::NoRoute,
        format!(
            "no route in virtual host {:?} matches {} {}",
            vhost.name,
            request.method(),
            Quoted(path)
        ),
    )
}

/// `host` without a trailing `:port`, if it has one (`[::1]:80` → `[::1]`).
pub(crate) fn strip_port(authority: &str) -> Option<&str> {
    let colon = authority.rfind(':')?;
    let (host, port) = (&authority[..colon], &authority[colon + 1..]);
    let is_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let bracket_ok = !host.contains(':') || (host.starts_with('[') && host.ends_with(']'));
    (is_port && bracket_ok).then_some(host)
}

/// The index of a virtual host's routes (`config`, compiled as `compiled`),
/// and the headers it splits routes by, by their number in it: each distinct
/// header some route needs an exact value of.
fn index_routes(
    config: &[config::Route],
    compiled: &[RouteEntry],
) -> (PathIndex, Box<[HeaderRef]>) {
    let mut numbers: HashMap<&HeaderRef, u32> = HashMap::new();
    let keys: Vec<RouteKeys<'_>> = config
        .iter()
        .zip(compiled)
        .map(|(config, compiled)| RouteKeys {
            path: &config.matcher.path,
            exact_headers: compiled
                .headers
                .iter()
                .filter_map(|check| {
                    let value = check.exact_value()?;
                    let next = u32::try_from(numbers.len()).ok()?;
                    Some((*numbers.entry(check.name()).or_insert(next), value))
                })
                .collect(),
        })
        .collect();
    let index = PathIndex::new(keys);
    let mut headers: Vec<(u32, &HeaderRef)> = numbers.into_iter().map(|(h, n)| (n, h)).collect();
    headers.sort_unstable_by_key(|(n, _)| *n);
    (index, headers.into_iter().map(|(_, h)| h.clone()).collect())
}

fn compile_route(
    vhost: &Arc<str>,
    host: &config::VirtualHost,
    index: usize,
    route: &config::Route,
    regexes: &config::Regexes,
) -> Result<RouteEntry, Problem> {
    let label = if route.name.is_empty() {
        format!("route #{index}")
    } else {
        format!("route {:?}", route.name)
    };
    let problem = |field: &str, message: String| Problem {
        resource: format!("virtual_host {vhost:?}: {label}"),
        field: field.to_owned(),
        message,
    };
    let matcher = &route.matcher;
    let path = PathRule::compile(&matcher.path, matcher.case_sensitive, regexes)
        .map_err(|e| problem("match: safe_regex", e))?;
    let headers = matcher
        .headers
        .iter()
        .map(|h| {
            compile_header(h, regexes)
                .map_err(|m| problem(&format!("match: headers: {:?}", h.name), m))
        })
        .collect::<Result<_, _>>()?;
    let query = matcher
        .query_parameters
        .iter()
        .map(|q| {
            QueryCheck::compile(q, regexes)
                .map_err(|m| problem(&format!("match: query_parameters: {:?}", q.name), m))
        })
        .collect::<Result<_, _>>()?;
    let action = &route.action;
    let (target, split) = match &action.destination {
        Destination::Cluster(name) => (Target::Cluster(Arc::from(name.as_str())), Box::default()),
        Destination::WeightedClusters(clusters) => (
            Target::Weighted(WeightedClusters::new(
                clusters
                    .iter()
                    .map(|c| (Arc::from(c.name.as_str()), c.weight)),
            )),
            clusters.as_slice().into(),
        ),
        Destination::ClusterHeader(header) => (
            Target::Header(
                http::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|e| problem("cluster_header", e.to_string()))?,
            ),
            Box::default(),
        ),
    };
    let actions = RequestActions::compile(route, regexes)
        .map_err(|(field, message)| problem(field, message))?;
    let hash = HashPolicies::compile(&action.hash_policy)
        .map_err(|message| problem("hash_policy", message))?;
    // Envoy: the route's policy replaces the virtual host's, not merged.
    let retry = action
        .retry_policy
        .as_ref()
        .or(host.retry_policy.as_ref())
        .map(|policy| {
            crate::retry::Policy::compile(policy, regexes)
                .map(Arc::new)
                .map_err(|(field, message)| problem(&field, message))
        })
        .transpose()?;
    Ok(RouteEntry {
        info: Arc::new(RouteInfo {
            virtual_host: vhost.clone(),
            name: Arc::from(if route.name.is_empty() {
                label.as_str()
            } else {
                route.name.as_str()
            }),
            timeout: action.timeout.filter(|t| !t.is_zero()),
            max_stream_duration: action.max_stream_duration,
            split,
            mirrors: action.request_mirror_policies.as_slice().into(),
            hash,
            actions,
            retry,
            include_attempt_count: host.include_request_attempt_count,
        }),
        path,
        headers,
        query,
        fraction: matcher.runtime_fraction.map(|f| f.per_million()),
        target,
    })
}

impl RouteEntry {
    fn matches(&self, headers: &RequestHeaders<'_>, path: &str, query: Option<&str>) -> bool {
        self.path.matches(path)
            && self.headers.iter().all(|check| check.matches(headers))
            && self.query.iter().all(|check| check.matches(query))
            // Drawn last, so only requests the route otherwise matches draw.
            && self.fraction.is_none_or(fraction_drawn)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn table(yaml: &str) -> RouteTable {
        let config = MeshConfig::from_yaml(yaml).unwrap();
        RouteTable::new(&config).unwrap()
    }

    fn route_of(table: &RouteTable, request: Request<()>) -> Option<String> {
        table
            .decide(&request)
            .ok()
            .map(|d| format!("{}/{}", d.virtual_host(), d.route()))
    }

    fn get(uri: &str) -> Request<()> {
        Request::get(uri).body(()).unwrap()
    }

    #[test]
    fn virtual_hosts_are_chosen_by_envoys_domain_order() {
        let table = table(
            r#"
clusters: [{ name: c }]
virtual_hosts:
  - { name: exact, domains: ["api.example.com", "with-port:8080"], routes: [{ match: { prefix: / }, route: { cluster: c } }] }
  - { name: short-suffix, domains: ["*.com"], routes: [{ match: { prefix: / }, route: { cluster: c } }] }
  - { name: long-suffix, domains: ["*.example.com"], routes: [{ match: { prefix: / }, route: { cluster: c } }] }
  - { name: prefix, domains: ["api.*"], routes: [{ match: { prefix: / }, route: { cluster: c } }] }
  - { name: any, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: c } }] }
"#,
        );
        let cases = [
            ("http://api.example.com/", "exact"),
            ("http://API.Example.com/", "exact"),
            ("http://api.example.com:9000/", "exact"),
            ("http://with-port:8080/", "exact"),
            ("http://www.example.com/", "long-suffix"),
            ("http://www.other.com/", "short-suffix"),
            ("http://api.other.org/", "prefix"),
            ("http://elsewhere/", "any"),
            ("http://with-port:9090/", "any"),
        ];
        for (uri, vhost) in cases {
            let got = table.decide(&get(uri)).map(|d| d.virtual_host().to_owned());
            assert_eq!(got.ok().as_deref(), Some(vhost), "{uri}");
        }
    }

    #[test]
    fn the_host_header_stands_in_for_a_missing_authority() {
        let table = table(
            "clusters: [{ name: c }]\nvirtual_hosts: [{ name: v, domains: [svc], routes: [{ match: { prefix: / }, route: { cluster: c } }] }]",
        );
        let request = Request::get("/x").header("host", "svc").body(()).unwrap();
        assert_eq!(route_of(&table, request).as_deref(), Some("v/route #0"));
        let err = table.decide(&get("/x")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoRoute);
        let err = table.decide(&get("http://other/x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no route: no virtual host for authority \"other\""
        );
    }

    #[test]
    fn path_rules_match_as_envoy_documents() {
        let table = table(
            r#"
clusters: [{ name: c }]
virtual_hosts:
  - name: v
    domains: ["*"]
    routes:
      - { name: exact, match: { path: /exact }, route: { cluster: c } }
      - { name: exact-ci, match: { path: /CI, case_sensitive: false }, route: { cluster: c } }
      - { name: regex, match: { safe_regex: { regex: "/v[0-9]+/items" } }, route: { cluster: c } }
      - { name: grpc, match: { prefix: /helloworld.Greeter/ }, route: { cluster: c } }
      - { name: prefix-ci, match: { prefix: /Api, case_sensitive: false }, route: { cluster: c } }
      - { name: fallback, match: { prefix: "" }, route: { cluster: c } }
"#,
        );
        let cases = [
            ("/exact", "exact"),
            ("/exact?query=1", "exact"),
            ("/exact/more", "fallback"),
            ("/ci", "exact-ci"),
            ("/v2/items", "regex"),
            ("/v2/items/extra", "fallback"),
            ("/helloworld.Greeter/SayHello", "grpc"),
            ("/API/x", "prefix-ci"),
            ("/other", "fallback"),
        ];
        for (path, route) in cases {
            let request = get(&format!("http://any{path}"));
            assert_eq!(
                route_of(&table, request),
                Some(format!("v/{route}")),
                "{path}"
            );
        }
    }

    #[test]
    fn header_rules_match_as_envoy_documents() {
        let rule = |rule: &str| {
            table(&format!(
                "clusters: [{{ name: c }}]\nvirtual_hosts: [{{ name: v, domains: ['*'], routes: [{{ name: r, match: {{ prefix: /, headers: [{rule}] }}, route: {{ cluster: c }} }}] }}]"
            ))
        };
        let with = |headers: &[(&str, &str)]| {
            let mut builder = Request::get("http://svc/path");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap()
        };
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&str, Headers<'_>, bool)] = &[
            (
                "{ name: x-user, exact: alice }",
                &[("x-user", "alice")],
                true,
            ),
            (
                "{ name: x-user, exact: alice }",
                &[("x-user", "Alice")],
                false,
            ),
            (
                "{ name: x-user, exact: alice, ignore_case: true }",
                &[("x-user", "ALICE")],
                true,
            ),
            ("{ name: x-user, exact: alice }", &[], false),
            (
                "{ name: x-user, exact: alice, invert_match: true }",
                &[("x-user", "bob")],
                true,
            ),
            (
                "{ name: x-user, exact: alice, invert_match: true }",
                &[],
                false,
            ),
            ("{ name: x-user, prefix: al }", &[("x-user", "alice")], true),
            (
                "{ name: x-user, suffix: ice }",
                &[("x-user", "alice")],
                true,
            ),
            (
                "{ name: x-user, suffix: ICE, ignore_case: true }",
                &[("x-user", "alice")],
                true,
            ),
            (
                "{ name: x-user, contains: lic }",
                &[("x-user", "alice")],
                true,
            ),
            (
                "{ name: x-user, contains: LIC, ignore_case: true }",
                &[("x-user", "aLiCe")],
                true,
            ),
            (
                "{ name: x-user, safe_regex: { regex: 'a.*e' } }",
                &[("x-user", "alice")],
                true,
            ),
            (
                "{ name: x-user, safe_regex: { regex: 'a.*c' } }",
                &[("x-user", "alice")],
                false,
            ),
            ("{ name: x-user, present: true }", &[("x-user", "")], true),
            ("{ name: x-user, present: true }", &[], false),
            ("{ name: x-user, present: false }", &[], true),
            (
                "{ name: x-user, present: true, invert_match: true }",
                &[],
                true,
            ),
            (
                "{ name: x-n, range: { start: 10, end: 20 } }",
                &[("x-n", "10")],
                true,
            ),
            (
                "{ name: x-n, range: { start: 10, end: 20 } }",
                &[("x-n", "20")],
                false,
            ),
            (
                "{ name: x-n, range: { start: 10, end: 20 } }",
                &[("x-n", "ten")],
                false,
            ),
            (
                "{ name: x-multi, exact: 'a,b' }",
                &[("x-multi", "a"), ("x-multi", "b")],
                true,
            ),
            ("{ name: ':method', exact: GET }", &[], true),
            ("{ name: ':authority', exact: svc }", &[], true),
        ];
        for (matcher, headers, expected) in cases {
            let matched = route_of(&rule(matcher), with(headers)).is_some();
            assert_eq!(matched, *expected, "{matcher} with {headers:?}");
        }
    }

    #[test]
    fn the_first_matching_route_wins() {
        let table = table(
            r#"
clusters: [{ name: c }]
virtual_hosts:
  - name: v
    domains: ["*"]
    routes:
      - { name: canary, match: { prefix: /, headers: [{ name: x-canary, exact: "true" }] }, route: { cluster: c } }
      - { name: all, match: { prefix: / }, route: { cluster: c } }
      - { name: unreachable, match: { prefix: /x }, route: { cluster: c } }
"#,
        );
        let canary = Request::get("http://s/x")
            .header("x-canary", "true")
            .body(())
            .unwrap();
        assert_eq!(route_of(&table, canary).as_deref(), Some("v/canary"));
        assert_eq!(
            route_of(&table, get("http://s/x")).as_deref(),
            Some("v/all")
        );
    }

    #[test]
    fn ports_are_stripped_only_when_they_are_ports() {
        assert_eq!(strip_port("svc:80"), Some("svc"));
        assert_eq!(strip_port("[::1]:80"), Some("[::1]"));
        assert_eq!(strip_port("[::1]"), None);
        assert_eq!(strip_port("svc"), None);
        assert_eq!(strip_port("svc:"), None);
    }

    /// A table whose one virtual host `v` has `routes` (YAML flow list items,
    /// each with its `route:`), over clusters `a`, `b` and `c`.
    fn routes(routes: &[&str]) -> RouteTable {
        table(&format!(
            "clusters: [{{ name: a }}, {{ name: b }}, {{ name: c }}]\nvirtual_hosts: [{{ name: v, domains: ['*'], routes: [{}] }}]",
            routes.join(", ")
        ))
    }

    fn route_for(table: &RouteTable, uri: &str, headers: &[(&str, &str)]) -> Option<String> {
        let mut builder = Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        table
            .decide(&builder.body(()).unwrap())
            .ok()
            .map(|d| d.route().to_owned())
    }

    #[test]
    fn grpc_method_paths_match_as_a28_and_psm_interop_test() {
        // The shapes of psm-interop's path matching cases: a full method
        // path, a service prefix, a regex, case-insensitive variants, and
        // precedence by order.
        let table = routes(&[
            "{ name: empty-call, match: { path: /grpc.testing.TestService/EmptyCall }, route: { cluster: a } }",
            "{ name: unary-ci, match: { path: /GRPC.TESTING.TESTSERVICE/UNARYCALL, case_sensitive: false }, route: { cluster: a } }",
            "{ name: regex, match: { safe_regex: { regex: '^/grpc.testing.TestService/Streaming.*Call$' } }, route: { cluster: b } }",
            "{ name: service-ci, match: { prefix: /GRPC.TESTING.OTHERSERVICE/, case_sensitive: false }, route: { cluster: b } }",
            "{ name: service, match: { prefix: /grpc.testing.TestService/ }, route: { cluster: c } }",
            "{ name: shadowed, match: { path: /grpc.testing.TestService/UnimplementedCall }, route: { cluster: a } }",
        ]);
        let cases = [
            ("/grpc.testing.TestService/EmptyCall", Some("empty-call")),
            // `path` is case-sensitive by default.
            ("/grpc.testing.TestService/emptycall", Some("service")),
            ("/grpc.testing.TestService/UnaryCall", Some("unary-ci")),
            ("/grpc.testing.testservice/unarycall", Some("unary-ci")),
            (
                "/grpc.testing.TestService/StreamingOutputCall",
                Some("regex"),
            ),
            // `case_sensitive` does not apply to `safe_regex`.
            (
                "/grpc.testing.TestService/STREAMINGOUTPUTCALL",
                Some("service"),
            ),
            ("/grpc.testing.OtherService/Call", Some("service-ci")),
            // The earlier prefix route wins over the later exact one.
            (
                "/grpc.testing.TestService/UnimplementedCall",
                Some("service"),
            ),
            // A prefix is matched from the path's start, whole.
            ("/grpc.testing.TestServic/EmptyCall", None),
            ("/x/grpc.testing.TestService/EmptyCall", None),
        ];
        for (path, expected) in cases {
            let got = route_for(&table, &format!("http://svc{path}"), &[]);
            assert_eq!(got.as_deref(), expected, "{path}");
        }
    }

    #[test]
    fn header_rules_cover_a28s_matchers() {
        // One route per rule, then a fallback; each case names the route
        // expected to win.
        let table = routes(&[
            "{ name: exact, match: { prefix: /, headers: [{ name: x-exact, exact: v }] }, route: { cluster: a } }",
            "{ name: exact-ci, match: { prefix: /, headers: [{ name: x-exact-ci, exact: VaLuE, ignore_case: true }] }, route: { cluster: a } }",
            "{ name: prefix, match: { prefix: /, headers: [{ name: x-prefix, prefix: pre }] }, route: { cluster: a } }",
            "{ name: prefix-ci, match: { prefix: /, headers: [{ name: x-prefix-ci, prefix: PRE, ignore_case: true }] }, route: { cluster: a } }",
            "{ name: suffix, match: { prefix: /, headers: [{ name: x-suffix, suffix: fix }] }, route: { cluster: a } }",
            "{ name: contains, match: { prefix: /, headers: [{ name: x-contains, contains: mid }] }, route: { cluster: a } }",
            "{ name: present, match: { prefix: /, headers: [{ name: x-present, present: true }] }, route: { cluster: a } }",
            "{ name: range, match: { prefix: /, headers: [{ name: x-range, range: { start: -10, end: 10 } }] }, route: { cluster: a } }",
            "{ name: regex, match: { prefix: /, headers: [{ name: x-regex, safe_regex: { regex: 'user-[0-9]+' } }] }, route: { cluster: a } }",
            "{ name: regex-ci, match: { prefix: /, headers: [{ name: x-regex-ci, safe_regex: { regex: 'abc' }, ignore_case: true }] }, route: { cluster: a } }",
            "{ name: invert, match: { prefix: /, headers: [{ name: x-invert, exact: no, invert_match: true }] }, route: { cluster: a } }",
            "{ name: both, match: { prefix: /, headers: [{ name: x-one, exact: '1' }, { name: x-two, exact: '2' }] }, route: { cluster: a } }",
            "{ name: fallback, match: { prefix: / }, route: { cluster: b } }",
        ]);
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Headers<'_>, &str)] = &[
            (&[("x-exact", "v")], "exact"),
            (&[("x-exact", "V")], "fallback"),
            (&[("x-exact-ci", "VALUE")], "exact-ci"),
            (&[("x-prefix", "prefixed")], "prefix"),
            (&[("x-prefix", "PREfixed")], "fallback"),
            (&[("x-prefix-ci", "prEfixed")], "prefix-ci"),
            (&[("x-suffix", "suffix")], "suffix"),
            (&[("x-suffix", "fixes")], "fallback"),
            (&[("x-contains", "amidst")], "contains"),
            (&[("x-present", "")], "present"),
            (&[("x-range", "-10")], "range"),
            (&[("x-range", "9")], "range"),
            (&[("x-range", "10")], "fallback"),
            (&[("x-range", "1.5")], "fallback"),
            (&[("x-regex", "user-42")], "regex"),
            // `safe_regex` matches the whole value.
            (&[("x-regex", "user-42x")], "fallback"),
            // `ignore_case` is not applied to `safe_regex`.
            (&[("x-regex-ci", "ABC")], "fallback"),
            (&[("x-regex-ci", "abc")], "regex-ci"),
            (&[("x-invert", "yes")], "invert"),
            (&[("x-invert", "no")], "fallback"),
            // An absent header never matches, inverted or not.
            (&[], "fallback"),
            (&[("x-one", "1"), ("x-two", "2")], "both"),
            (&[("x-one", "1")], "fallback"),
        ];
        for (headers, expected) in cases {
            let got = route_for(&table, "http://svc/", headers);
            assert_eq!(got.as_deref(), Some(*expected), "{headers:?}");
        }
    }

    #[test]
    fn query_parameter_rules_match_the_first_decoded_value() {
        let table = routes(&[
            "{ name: exact, match: { prefix: /, query_parameters: [{ name: debug, string_match: { exact: 'on' } }] }, route: { cluster: a } }",
            "{ name: exact-ci, match: { prefix: /, query_parameters: [{ name: mode, string_match: { exact: fast, ignore_case: true } }] }, route: { cluster: a } }",
            "{ name: prefix, match: { prefix: /, query_parameters: [{ name: q, string_match: { prefix: 'hello ' } }] }, route: { cluster: a } }",
            "{ name: suffix, match: { prefix: /, query_parameters: [{ name: file, string_match: { suffix: .json } }] }, route: { cluster: a } }",
            "{ name: contains, match: { prefix: /, query_parameters: [{ name: tags, string_match: { contains: RED, ignore_case: true } }] }, route: { cluster: a } }",
            "{ name: regex, match: { prefix: /, query_parameters: [{ name: id, string_match: { safe_regex: { regex: '[0-9]+' } } }] }, route: { cluster: a } }",
            "{ name: present, match: { prefix: /, query_parameters: [{ name: trace, present_match: true }] }, route: { cluster: a } }",
            "{ name: both, match: { prefix: /, query_parameters: [{ name: x, present_match: true }, { name: y, string_match: { exact: '2' } }] }, route: { cluster: a } }",
            "{ name: fallback, match: { prefix: / }, route: { cluster: b } }",
        ]);
        let cases = [
            ("/?debug=on", "exact"),
            ("/?debug=ON", "fallback"),
            ("/?debug=off&debug=on", "fallback"),
            ("/?debug=on&debug=off", "exact"),
            ("/?mode=FAST", "exact-ci"),
            ("/?q=hello%20world", "prefix"),
            ("/?q=hello+world", "fallback"),
            ("/?file=a.json", "suffix"),
            ("/?tags=blue,Red", "contains"),
            ("/?id=123", "regex"),
            ("/?id=123a", "fallback"),
            ("/?trace", "present"),
            ("/?trace=", "present"),
            ("/?tracer=1", "fallback"),
            ("/?x&y=2", "both"),
            ("/?y=2", "fallback"),
            ("/?my%20debug=on&debug=on", "exact"),
            ("/", "fallback"),
        ];
        for (path, expected) in cases {
            let got = route_for(&table, &format!("http://svc{path}"), &[]);
            assert_eq!(got.as_deref(), Some(expected), "{path}");
        }
    }

    #[test]
    fn path_separated_prefix_matches_whole_segments() {
        let table = routes(&[
            "{ name: api, match: { path_separated_prefix: /api }, route: { cluster: a } }",
            "{ name: ci, match: { path_separated_prefix: /Docs, case_sensitive: false }, route: { cluster: a } }",
            "{ name: root, match: { path_separated_prefix: / }, route: { cluster: b } }",
        ]);
        let cases = [
            ("/api", Some("api")),
            ("/api/", Some("api")),
            ("/api/v1/users", Some("api")),
            ("/api?x=1", Some("api")),
            ("/apix", Some("root")),
            ("/API/v1", Some("root")),
            ("/docs/a", Some("ci")),
            ("/DOCS", Some("ci")),
            ("/docsx", Some("root")),
            ("/", Some("root")),
        ];
        for (path, expected) in cases {
            let got = route_for(&table, &format!("http://svc{path}"), &[]);
            assert_eq!(got.as_deref(), expected, "{path}");
        }
    }

    #[test]
    fn runtime_fraction_matches_its_share_of_requests() {
        let share = |fraction: &str| {
            let table = routes(&[
                &format!(
                    "{{ name: some, match: {{ prefix: /, runtime_fraction: {fraction} }}, route: {{ cluster: a }} }}"
                ),
                "{ name: rest, match: { prefix: / }, route: { cluster: b } }",
            ]);
            let n = 20_000;
            let hits = (0..n)
                .filter(|_| route_for(&table, "http://svc/", &[]).as_deref() == Some("some"))
                .count();
            hits as f64 / n as f64
        };
        assert_eq!(share("{ numerator: 0 }"), 0.0);
        assert_eq!(share("{ numerator: 100 }"), 1.0);
        assert_eq!(share("{ numerator: 1000000, denominator: million }"), 1.0);
        // 20,000 draws at p = 0.25: σ ≈ 0.003; ±0.02 is over 6σ.
        let quarter = share("{ numerator: 2500, denominator: ten_thousand }");
        assert!((0.23..=0.27).contains(&quarter), "{quarter}");
    }

    #[test]
    fn runtime_fraction_is_drawn_only_after_the_other_rules_hold() {
        // A route that can never match otherwise never matches, whatever its fraction.
        let table = routes(&[
            "{ name: never, match: { prefix: /, headers: [{ name: x-no, present: true }], runtime_fraction: { numerator: 100 } }, route: { cluster: a } }",
            "{ name: rest, match: { prefix: / }, route: { cluster: b } }",
        ]);
        assert_eq!(
            route_for(&table, "http://svc/", &[]).as_deref(),
            Some("rest")
        );
        assert_eq!(
            route_for(&table, "http://svc/", &[("x-no", "1")]).as_deref(),
            Some("never")
        );
    }

    #[test]
    fn the_decision_carries_the_routes_policy() {
        let table = routes(&[
            r#"{ name: r, match: { prefix: / }, route: { weighted_clusters: { clusters: [{ name: a, weight: 3 }, { name: b, weight: 1 }] }, timeout: 2s, request_mirror_policies: [{ cluster: c, runtime_fraction: { numerator: 10 } }], hash_policy: [{ header: { header_name: x-user } }], max_stream_duration: { grpc_timeout_header_max: 1s } } }"#,
        ]);
        let request = Request::get("http://svc/")
            .header("x-user", "alice")
            .header("grpc-timeout", "5S")
            .body(())
            .unwrap();
        let decision = table.decide(&request).unwrap();
        let split: Vec<_> = decision
            .weighted_clusters()
            .iter()
            .map(|c| (c.name.as_str(), c.weight))
            .collect();
        assert_eq!(split, [("a", 3), ("b", 1)]);
        assert!(["a", "b"].contains(&decision.cluster()));
        assert_eq!(decision.timeout(), Some(Duration::from_secs(1)));
        assert_eq!(decision.request_mirror_policies()[0].cluster, "c");
        assert_eq!(
            decision.hash(),
            Some(crate::balance::RequestHash(xxhash_rust::xxh64::xxh64(
                b"alice", 0
            )))
        );
        let plain = table.decide(&get("http://svc/")).unwrap();
        assert_eq!(
            plain.timeout(),
            None,
            "with max_stream_duration, the route timeout is not read"
        );
        assert_eq!(plain.hash(), None);
    }

    /// Property: for random tables and requests, the index finds exactly
    /// the route a linear scan finds.
    #[test]
    fn the_index_finds_what_a_linear_scan_finds() {
        use rand::{RngExt, SeedableRng};

        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let segments = ["a", "A", "ab", "b", "api", "API", "v1", ""];
        let path = |rng: &mut rand::rngs::StdRng| {
            let n = rng.random_range(0..4);
            let mut path = String::new();
            for _ in 0..n {
                path.push('/');
                path.push_str(segments[rng.random_range(0..segments.len())]);
            }
            if path.is_empty() || rng.random_bool(0.2) {
                path.push('/');
            }
            path
        };
        for round in 0..300 {
            let n = rng.random_range(1..40);
            let mut lines = Vec::new();
            // Every other round crowds routes onto a few prefixes, so the
            // index has keys with enough routes to split by header.
            let crowded = round % 2 == 0;
            for i in 0..n {
                let p = path(&mut rng);
                let rule = match rng.random_range(0..7) {
                    _ if crowded && rng.random_bool(0.7) => {
                        format!("prefix: '{}'", ["/", "/a"][rng.random_range(0..2)])
                    }
                    0 => format!("path: '{p}'"),
                    1 => {
                        let segments = p.trim_end_matches('/');
                        let prefix = if segments.is_empty() { "/" } else { segments };
                        format!("path_separated_prefix: '{prefix}'")
                    }
                    2 => format!("safe_regex: {{ regex: '{}.*' }}", regex::escape(&p)),
                    3 => format!("prefix: '{}'", &p[..rng.random_range(0..=p.len())]),
                    _ => format!("prefix: '{p}'"),
                };
                let case = if rng.random_bool(0.3) {
                    ", case_sensitive: false"
                } else {
                    ""
                };
                // Exact header rules often enough that the index splits
                // keys by them, and the variants it must not split by.
                let values = ["1", "2", "a"];
                let v = values[rng.random_range(0..values.len())];
                let w = values[rng.random_range(0..values.len())];
                let kind = if crowded && rng.random_bool(0.5) {
                    0
                } else {
                    rng.random_range(0..9)
                };
                let header = match kind {
                    0..=2 => format!(", headers: [{{ name: x-h, exact: '{v}' }}]"),
                    3 => format!(", headers: [{{ name: x-h, exact: '{v}', invert_match: true }}]"),
                    4 => format!(", headers: [{{ name: x-h, exact: '{v}', ignore_case: true }}]"),
                    5 => format!(
                        ", headers: [{{ name: x-g, exact: '{v}' }}, {{ name: x-h, exact: '{w}' }}]"
                    ),
                    6 => ", runtime_fraction: { numerator: 0 }".to_owned(),
                    7 => ", query_parameters: [{ name: q, present_match: true }]".to_owned(),
                    _ => String::new(),
                };
                lines.push(format!(
                    "{{ name: r{i}, match: {{ {rule}{case}{header} }}, route: {{ cluster: a }} }}"
                ));
            }
            let line_refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let table = routes(&line_refs);
            let vhost = &table.virtual_hosts[0];
            for _ in 0..50 {
                let mut uri = format!("http://svc{}", path(&mut rng));
                if rng.random_bool(0.3) {
                    uri.push_str("?q=1");
                }
                let mut builder = Request::get(uri.as_str());
                let sent = ["1", "2", "a", "A"];
                for _ in 0..rng.random_range(0..3) {
                    // Twice: the values are joined, "1,2", as Envoy matches them.
                    builder = builder.header("x-h", sent[rng.random_range(0..sent.len())]);
                }
                if rng.random_bool(0.5) {
                    builder = builder.header("x-g", sent[rng.random_range(0..sent.len())]);
                }
                let request = builder.body(()).unwrap();
                let (p, q) = (request.uri().path(), request.uri().query());
                let view = RequestHeaders::new(&request);
                let linear = vhost.routes.iter().position(|r| r.matches(&view, p, q));
                let indexed = table
                    .find(&request, None)
                    .ok()
                    .and_then(|found| vhost.routes.iter().position(|r| std::ptr::eq(r, found)));
                assert_eq!(indexed, linear, "round {round}: {uri} in {lines:#?}");
            }
        }
    }

    #[test]
    fn a_regex_that_passes_the_checks_builds_and_a_huge_one_is_refused_by_name() {
        // Nested groups near the regex crate's nesting limit: the table adds
        // `^(?:…)$`, so the checks must compile the same pattern it does.
        let yaml = |pattern: &str| {
            format!(
                "clusters: [{{ name: c }}]\nvirtual_hosts: [{{ name: v, domains: [v], routes: [{{ name: r, match: {{ safe_regex: {{ regex: '{pattern}' }} }}, route: {{ cluster: c }} }}] }}]"
            )
        };
        for depth in 245..=252 {
            let pattern = format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
            let unchecked: MeshConfig = yaml_serde::from_str(&yaml(&pattern)).unwrap();
            assert_eq!(
                MeshConfig::from_yaml(&yaml(&pattern)).is_ok(),
                RouteTable::new(&unchecked).is_ok(),
                "depth {depth}"
            );
        }
        // 100 of these took 584 MB and 10.4 s, each compiled three times.
        let start = std::time::Instant::now();
        let error = MeshConfig::from_yaml(&yaml("/1/\\w{100}"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("virtual_host \"v\": route \"r\": match: safe_regex: is too large"),
            "{error}"
        );
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_header_that_is_not_utf8_is_present_and_compared_by_its_bytes() {
        let table = routes(&[
            "{ name: absent, match: { prefix: /absent, headers: [{ name: x-v, present: false }] }, route: { cluster: c } }",
            "{ name: present, match: { prefix: /present, headers: [{ name: x-v, present: true }] }, route: { cluster: c } }",
            "{ name: prefix, match: { prefix: /prefix, headers: [{ name: x-v, prefix: ab }] }, route: { cluster: c } }",
            "{ name: regex, match: { prefix: /regex, headers: [{ name: x-v, safe_regex: { regex: 'ab.*' } }] }, route: { cluster: c } }",
            "{ name: not-regex, match: { prefix: /regex, headers: [{ name: x-v, safe_regex: { regex: 'ab.*' }, invert_match: true }] }, route: { cluster: c } }",
        ]);
        let request = |path: &str| {
            let mut request = get(&format!("http://svc{path}"));
            let value = http::HeaderValue::from_bytes(b"ab\xff").unwrap();
            request.headers_mut().insert("x-v", value);
            request
        };
        // Forwarded as sent, so present as Envoy sees it.
        assert_eq!(route_of(&table, request("/absent")), None);
        assert_eq!(
            route_of(&table, request("/present")).as_deref(),
            Some("v/present")
        );
        assert_eq!(
            route_of(&table, request("/prefix")).as_deref(),
            Some("v/prefix")
        );
        // A regex reads text: it does not match, so its inversion does.
        assert_eq!(
            route_of(&table, request("/regex")).as_deref(),
            Some("v/not-regex")
        );
    }

    #[test]
    fn a_header_sent_many_times_is_joined_once_per_decision() {
        // 1,000 routes and 10,000 values of 1 KB: the values were joined
        // again for every route (with `contains`, 1.3 s per decision in
        // release). A `prefix` rule keeps the rules' own cost out of it.
        let lines: Vec<String> = (0..1000)
            .map(|i| format!("{{ name: r{i}, match: {{ prefix: /, headers: [{{ name: x-big, prefix: 'needle-{i}' }}] }}, route: {{ cluster: c }} }}"))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let table = routes(&lines);
        let mut request = get("http://svc/x");
        let value = http::HeaderValue::from_str(&"v".repeat(1024)).unwrap();
        for _ in 0..10_000 {
            request.headers_mut().append("x-big", value.clone());
        }
        let start = std::time::Instant::now();
        assert_eq!(route_of(&table, request), None);
        let took = start.elapsed();
        eprintln!("decision over 1,000 routes and 10 MB of x-big: {took:?}");
        // Debug build: 1.39 s before, 28 ms after.
        assert!(took < Duration::from_millis(500), "{took:?}");
        // One 10 MB value is checked for UTF-8 once, not once per route.
        let mut request = get("http://svc/x");
        let value = http::HeaderValue::from_str(&"v".repeat(10 << 20)).unwrap();
        request.headers_mut().insert("x-big", value);
        let start = std::time::Instant::now();
        assert_eq!(route_of(&table, request), None);
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_no_route_error_quotes_at_most_256_bytes_of_the_path() {
        let table = routes(&["{ name: r, match: { path: /only }, route: { cluster: c } }"]);
        let path = format!("/{}", "x".repeat(60_000));
        let error = table
            .decide(&get(&format!("http://svc{path}")))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(message.contains("matches GET \"/xxx"), "{message}");
        assert!(message.ends_with("… (60001 bytes)"), "{message}");
    }

    #[test]
    fn a_rewrite_to_an_invalid_path_fails_the_request_by_route() {
        // It used to send the original path, with only a `debug!` line.
        let table = routes(&[
            "{ name: strip, match: { prefix: /x/ }, route: { cluster: c, regex_rewrite: { pattern: { regex: '^/x/(.*)$' }, substitution: '\\1' } } }",
        ]);
        let mut request = get("http://svc/x/secret?q=1");
        let decision = table.decide(&request).unwrap();
        let error = decision.apply(&mut request).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidPath);
        assert_eq!(error.http_status(), http::StatusCode::BAD_REQUEST);
        assert!(
            error.to_string().contains(
                "route \"strip\" of virtual host \"v\": regex_rewrite made the path \"secret\" from \"/x/secret\", which is not a path"
            ),
            "{error}"
        );
        assert!(table.check(&get("http://svc/x/secret")).is_err());
    }

    #[test]
    fn normalised_paths_are_matched_and_sent_when_asked_for() {
        let yaml = |options: &str| {
            format!(
                "{options}clusters: [{{ name: public }}, {{ name: admin }}]\nvirtual_hosts: [{{ name: v, domains: ['*'], routes: [{{ name: public, match: {{ prefix: /public }}, route: {{ cluster: public }} }}, {{ name: admin, match: {{ prefix: /admin }}, route: {{ cluster: admin, hash_policy: [{{ header: {{ header_name: ':path' }} }}] }} }}] }}]"
            )
        };
        // Envoy's default: off, and the dot segments reach `/public`.
        let off = table(&yaml(""));
        let request = || get("http://svc/public/../admin/secret?q=1");
        assert_eq!(off.decide(&request()).unwrap().cluster(), "public");
        let on = table(&yaml("normalize_path: true\nmerge_slashes: true\n"));
        let mut sent = request();
        let decision = on.decide(&sent).unwrap();
        assert_eq!(decision.cluster(), "admin");
        decision.apply(&mut sent).unwrap();
        assert_eq!(sent.uri(), "http://svc/admin/secret?q=1", "sent normalised");
        let merged = on.decide(&get("http://svc//public//%61")).unwrap();
        assert_eq!(merged.cluster(), "public");
        // Above the root is the root, as Envoy's canonicaliser has it.
        assert_eq!(
            on.decide(&get("http://svc/../../admin")).unwrap().cluster(),
            "admin"
        );
    }
}
