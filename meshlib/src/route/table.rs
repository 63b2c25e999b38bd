//! The compiled route table: virtual host selection and route matching.
//!
//! Semantics are Envoy's (`route_components.proto`) and gRPC's A28: the virtual
//! host is chosen by domain (exact, then the longest `*suffix`, then the longest
//! `prefix*`, then `*`), then routes are tried in order and the first whose path
//! rule and header rules all match wins. Regular expressions are compiled here,
//! once per configuration, never per request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Request;

use super::RouteDecision;
use super::split::WeightedClusters;
use crate::config::{self, ConfigError, Destination, HeaderRule, MeshConfig, PathMatch, Problem};
use crate::error::{Error, ErrorKind};

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
///         match: { prefix: /cart }
///         route: { cluster: cart }
/// clusters:
///   - name: cart
/// "#)?;
/// let table = RouteTable::new(&config)?;
/// let request = http::Request::get("http://eu.shop.internal/cart/42").body(())?;
/// let decision = table.decide(&request)?;
/// assert_eq!((decision.virtual_host(), decision.route(), decision.cluster()), ("shop", "cart", "cart"));
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
}

#[derive(Debug)]
struct VirtualHostEntry {
    name: Arc<str>,
    routes: Vec<RouteEntry>,
}

#[derive(Debug)]
struct RouteEntry {
    info: Arc<RouteInfo>,
    path: PathRule,
    headers: Vec<HeaderCheck>,
    target: Target,
}

/// What a request's route decision says about the route itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteInfo {
    pub(crate) virtual_host: Arc<str>,
    pub(crate) name: Arc<str>,
    pub(crate) timeout: Option<Duration>,
}

#[derive(Debug)]
enum PathRule {
    Prefix {
        prefix: Box<str>,
        case_sensitive: bool,
    },
    Exact {
        path: Box<str>,
        case_sensitive: bool,
    },
    Regex(regex::Regex),
    /// The prefix, matched whole or followed by `/`.
    Separated {
        prefix: Box<str>,
        case_sensitive: bool,
    },
}

#[derive(Debug)]
struct HeaderCheck {
    name: HeaderRef,
    rule: ValueRule,
    invert: bool,
}

#[derive(Debug)]
enum HeaderRef {
    Authority,
    Method,
    Path,
    Scheme,
    Header(http::HeaderName),
}

#[derive(Debug)]
enum ValueRule {
    Exact {
        value: Box<str>,
        ignore_case: bool,
    },
    Prefix {
        value: Box<str>,
        ignore_case: bool,
    },
    Suffix {
        value: Box<str>,
        ignore_case: bool,
    },
    /// `value` lower-cased when `ignore_case`.
    Contains {
        value: Box<str>,
        ignore_case: bool,
    },
    Regex(regex::Regex),
    Present(bool),
    Range {
        start: i64,
        end: i64,
    },
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
                .filter_map(|(i, route)| match compile_route(&name, i, route) {
                    Ok(entry) => Some(entry),
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                })
                .collect();
            table.virtual_hosts.push(VirtualHostEntry { name, routes });
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

    /// Routes `request`: the virtual host, the route and, for weighted clusters,
    /// a cluster picked at random in proportion to weight.
    pub fn decide<B>(&self, request: &Request<B>) -> Result<RouteDecision, Error> {
        let route = self.find(request)?;
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
        Ok(RouteDecision {
            route: route.info.clone(),
            cluster,
        })
    }

    fn find<B>(&self, request: &Request<B>) -> Result<&RouteEntry, Error> {
        let authority = authority(request).ok_or_else(|| {
            Error::new(
                ErrorKind::NoRoute,
                "request has no authority or Host header",
            )
        })?;
        let vhost = self.virtual_host(authority).ok_or_else(|| {
            Error::new(
                ErrorKind::NoRoute,
                format!("no virtual host for authority {authority:?}"),
            )
        })?;
        vhost
            .routes
            .iter()
            .find(|route| route.matches(request))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NoRoute,
                    format!(
                        "no route in virtual host {:?} matches {} {}",
                        vhost.name,
                        request.method(),
                        request.uri().path()
                    ),
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

/// The request's authority: the URI's, else the `Host` header.
fn authority<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

/// `host` without a trailing `:port`, if it has one (`[::1]:80` → `[::1]`).
fn strip_port(authority: &str) -> Option<&str> {
    let colon = authority.rfind(':')?;
    let (host, port) = (&authority[..colon], &authority[colon + 1..]);
    let is_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let bracket_ok = !host.contains(':') || (host.starts_with('[') && host.ends_with(']'));
    (is_port && bracket_ok).then_some(host)
}

fn compile_route(
    vhost: &Arc<str>,
    index: usize,
    route: &config::Route,
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
    let case_sensitive = route.matcher.case_sensitive;
    let path = match &route.matcher.path {
        PathMatch::Prefix(prefix) => PathRule::Prefix {
            prefix: prefix.as_str().into(),
            case_sensitive,
        },
        PathMatch::Exact(path) => PathRule::Exact {
            path: path.as_str().into(),
            case_sensitive,
        },
        PathMatch::Regex(pattern) => PathRule::Regex(
            full_match(pattern).map_err(|e| problem("match: safe_regex", e.to_string()))?,
        ),
        PathMatch::PathSeparatedPrefix(prefix) => PathRule::Separated {
            prefix: prefix.as_str().into(),
            case_sensitive,
        },
    };
    let headers = route
        .matcher
        .headers
        .iter()
        .map(|h| {
            compile_header(h).map_err(|m| problem(&format!("match: headers: {:?}", h.name), m))
        })
        .collect::<Result<_, _>>()?;
    let target = match &route.action.destination {
        Destination::Cluster(name) => Target::Cluster(Arc::from(name.as_str())),
        Destination::WeightedClusters(clusters) => Target::Weighted(WeightedClusters::new(
            clusters
                .iter()
                .map(|c| (Arc::from(c.name.as_str()), c.weight)),
        )),
        Destination::ClusterHeader(header) => Target::Header(
            http::HeaderName::from_bytes(header.as_bytes())
                .map_err(|e| problem("cluster_header", e.to_string()))?,
        ),
    };
    Ok(RouteEntry {
        info: Arc::new(RouteInfo {
            virtual_host: vhost.clone(),
            name: Arc::from(if route.name.is_empty() {
                label.as_str()
            } else {
                route.name.as_str()
            }),
            timeout: route.action.timeout.filter(|t| !t.is_zero()),
        }),
        path,
        headers,
        target,
    })
}

/// Envoy's `safe_regex` matches the whole value.
fn full_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

fn compile_header(matcher: &config::HeaderMatcher) -> Result<HeaderCheck, String> {
    let name = match matcher.name.as_str() {
        ":authority" | "host" => HeaderRef::Authority,
        ":method" => HeaderRef::Method,
        ":path" => HeaderRef::Path,
        ":scheme" => HeaderRef::Scheme,
        other => HeaderRef::Header(
            http::HeaderName::from_bytes(other.as_bytes()).map_err(|e| e.to_string())?,
        ),
    };
    let ignore_case = matcher.ignore_case;
    let text = |v: &str| -> Box<str> {
        if ignore_case {
            v.to_ascii_lowercase().into()
        } else {
            v.into()
        }
    };
    let rule = match &matcher.rule {
        HeaderRule::Exact(v) => ValueRule::Exact {
            value: text(v),
            ignore_case,
        },
        HeaderRule::Prefix(v) => ValueRule::Prefix {
            value: text(v),
            ignore_case,
        },
        HeaderRule::Suffix(v) => ValueRule::Suffix {
            value: text(v),
            ignore_case,
        },
        HeaderRule::Contains(v) => ValueRule::Contains {
            value: text(v),
            ignore_case,
        },
        HeaderRule::Regex(pattern) => {
            ValueRule::Regex(full_match(pattern).map_err(|e| format!("safe_regex: {e}"))?)
        }
        HeaderRule::Present(present) => ValueRule::Present(*present),
        HeaderRule::Range { start, end } => ValueRule::Range {
            start: *start,
            end: *end,
        },
    };
    Ok(HeaderCheck {
        name,
        rule,
        invert: matcher.invert_match,
    })
}

impl RouteEntry {
    fn matches<B>(&self, request: &Request<B>) -> bool {
        self.path.matches(request.uri().path())
            && self.headers.iter().all(|check| check.matches(request))
    }
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathRule::Prefix {
                prefix,
                case_sensitive: true,
            } => path.starts_with(&**prefix),
            PathRule::Prefix {
                prefix,
                case_sensitive: false,
            } => path
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes())),
            PathRule::Exact {
                path: p,
                case_sensitive: true,
            } => path == &**p,
            PathRule::Exact {
                path: p,
                case_sensitive: false,
            } => path.eq_ignore_ascii_case(p),
            PathRule::Regex(regex) => regex.is_match(path),
            PathRule::Separated {
                prefix,
                case_sensitive,
            } => {
                let Some(head) = path.get(..prefix.len()) else {
                    return false;
                };
                let head_matches = if *case_sensitive {
                    head == &**prefix
                } else {
                    head.eq_ignore_ascii_case(prefix)
                };
                head_matches && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
            }
        }
    }
}

impl HeaderCheck {
    fn matches<B>(&self, request: &Request<B>) -> bool {
        let Some(value) = self.value(request) else {
            // An absent header matches only `present: false`; inverting any
            // other rule does not make an absent header match (Envoy, gRPC A28).
            return match self.rule {
                ValueRule::Present(present) => present == self.invert,
                _ => false,
            };
        };
        self.rule.matches(&value) != self.invert
    }

    fn value<'a, B>(&self, request: &'a Request<B>) -> Option<Cow<'a, str>> {
        match &self.name {
            HeaderRef::Authority => authority(request).map(Cow::Borrowed),
            HeaderRef::Method => Some(Cow::Borrowed(request.method().as_str())),
            HeaderRef::Path => Some(Cow::Borrowed(
                request.uri().path_and_query().map_or("/", |p| p.as_str()),
            )),
            HeaderRef::Scheme => request.uri().scheme_str().map(Cow::Borrowed),
            HeaderRef::Header(name) => {
                let mut values = request.headers().get_all(name).iter();
                let first = std::str::from_utf8(values.next()?.as_bytes()).ok()?;
                let mut joined: Cow<'a, str> = Cow::Borrowed(first);
                // A header sent several times is matched on its values joined by `,`.
                for more in values {
                    let joined = joined.to_mut();
                    joined.push(',');
                    joined.push_str(std::str::from_utf8(more.as_bytes()).ok()?);
                }
                Some(joined)
            }
        }
    }
}

impl ValueRule {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueRule::Exact {
                value: v,
                ignore_case,
            } => {
                if *ignore_case {
                    value.eq_ignore_ascii_case(v)
                } else {
                    value == &**v
                }
            }
            ValueRule::Prefix {
                value: v,
                ignore_case,
            } => value
                .as_bytes()
                .get(..v.len())
                .is_some_and(|head| bytes_eq(head, v.as_bytes(), *ignore_case)),
            ValueRule::Suffix {
                value: v,
                ignore_case,
            } => value
                .len()
                .checked_sub(v.len())
                .and_then(|start| value.as_bytes().get(start..))
                .is_some_and(|tail| bytes_eq(tail, v.as_bytes(), *ignore_case)),
            ValueRule::Contains {
                value: v,
                ignore_case: false,
            } => value.contains(&**v),
            ValueRule::Contains {
                value: v,
                ignore_case: true,
            } => value.to_ascii_lowercase().contains(&**v),
            ValueRule::Regex(regex) => regex.is_match(value),
            ValueRule::Present(present) => *present,
            ValueRule::Range { start, end } => {
                value.parse::<i64>().is_ok_and(|n| *start <= n && n < *end)
            }
        }
    }
}

fn bytes_eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

#[cfg(test)]
mod tests {
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
}
