//! What a route does to the requests it matches before they are sent:
//! Envoy's `request_headers_to_remove` and `request_headers_to_add`
//! (`HeaderValueOption` with its `append_action`), then `host_rewrite_literal`,
//! then `prefix_rewrite` or `regex_rewrite` (`route_components.proto`,
//! `RouteEntryImplBase::finalizeRequestHeaders`).
//!
//! Everything is compiled once per configuration: header names and values
//! parsed, regular expressions built, RE2 substitutions translated. Applying
//! allocates only the rewritten path.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};

use crate::config::{self, AppendAction, PathMatch};
use crate::error::Quoted;

/// A route's compiled request actions; the default does nothing.
#[derive(Debug, Default)]
pub(crate) struct RequestActions {
    remove: Box<[HeaderName]>,
    add: Box<[HeaderToAdd]>,
    /// Whether a name appears more than once in `add`: then every addition's
    /// condition is read before any is made, as Envoy does.
    add_repeats_a_name: bool,
    host: Option<HostRewrite>,
    path: Option<PathRewrite>,
}

#[derive(Debug)]
struct HeaderToAdd {
    name: HeaderName,
    value: HeaderValue,
    action: AppendAction,
}

#[derive(Debug)]
struct HostRewrite {
    authority: Authority,
    header: HeaderValue,
}

#[derive(Debug)]
enum PathRewrite {
    /// The first `matched` bytes of the path (the route's prefix, matched
    /// whatever its case) are replaced with `with`.
    Prefix { matched: usize, with: Box<str> },
    /// The whole path (a `path` or `safe_regex` route) is replaced with `with`.
    Path { with: Box<str> },
    /// Every match of `regex` in the path is replaced by `substitution`
    /// (the `regex` crate's syntax: `${1}`).
    Regex {
        regex: regex::Regex,
        substitution: Box<str>,
    },
}

/// A compile problem: the field and what is wrong with it.
pub(super) type Invalid = (&'static str, String);

impl RequestActions {
    pub(super) fn compile(
        route: &config::Route,
        regexes: &config::Regexes,
    ) -> Result<Self, Invalid> {
        let remove = route
            .request_headers_to_remove
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    (
                        "request_headers_to_remove",
                        format!("{name:?} is not a header name"),
                    )
                })
            })
            .collect::<Result<Box<[_]>, _>>()?;
        let add = route
            .request_headers_to_add
            .iter()
            // Envoy drops a header whose value is empty (`keep_empty_value`
            // defaults to false).
            .filter(|header| !header.value.is_empty())
            .map(|header| {
                let invalid = |what: &str| {
                    (
                        "request_headers_to_add",
                        format!("{:?} is not a header {what}", header.name),
                    )
                };
                Ok(HeaderToAdd {
                    name: HeaderName::from_bytes(header.name.as_bytes())
                        .map_err(|_| invalid("name"))?,
                    value: HeaderValue::from_str(&header.value).map_err(|_| invalid("value"))?,
                    action: header.append_action,
                })
            })
            .collect::<Result<Box<[_]>, Invalid>>()?;
        let add_repeats_a_name = add
            .iter()
            .enumerate()
            .any(|(i, a)| add[..i].iter().any(|b| b.name == a.name));
        let action = &route.action;
        let host = match &action.host_rewrite_literal {
            Some(host) => {
                let invalid = |message| ("host_rewrite_literal", message);
                Some(HostRewrite {
                    authority: config::host_rewrite(host).map_err(invalid)?,
                    header: HeaderValue::from_str(host)
                        .map_err(|_| invalid(format!("{host:?} is not a header value")))?,
                })
            }
            None => None,
        };
        let path = match (&action.prefix_rewrite, &action.regex_rewrite) {
            // An empty `prefix_rewrite` is proto3's unset string in Envoy: no rewrite.
            (Some(with), _) if !with.is_empty() => {
                config::prefix_rewrite(with).map_err(|message| ("prefix_rewrite", message))?;
                let with = with.as_str().into();
                Some(match &route.matcher.path {
                    PathMatch::Prefix(prefix) | PathMatch::PathSeparatedPrefix(prefix) => {
                        PathRewrite::Prefix {
                            matched: prefix.len(),
                            with,
                        }
                    }
                    PathMatch::Exact(_) | PathMatch::Regex(_) => PathRewrite::Path { with },
                })
            }
            (_, Some(rewrite)) => Some(PathRewrite::Regex {
                regex: regexes
                    .search(&rewrite.pattern)
                    .map_err(|e| ("regex_rewrite: pattern", e))?,
                substitution: re2_substitution(&rewrite.substitution)
                    .map_err(|message| ("regex_rewrite: substitution", message))?
                    .into(),
            }),
            _ => None,
        };
        Ok(RequestActions {
            remove,
            add,
            add_repeats_a_name,
            host,
            path,
        })
    }

    /// Applies the actions to `request`; see the module docs for the order.
    /// Applies the actions to `request`; an error, the request half
    /// changed, when its path rewrite makes a path that is not valid.
    pub(super) fn apply<B>(&self, request: &mut Request<B>) -> Result<(), String> {
        for name in &*self.remove {
            request.headers_mut().remove(name);
        }
        if !self.add.is_empty() {
            self.add_headers(request.headers_mut());
        }
        if let Some(host) = &self.host {
            rewrite_host(request, host);
        }
        match &self.path {
            Some(path) => rewrite_path(request, path),
            None => Ok(()),
        }
    }

    /// Envoy's `HeaderParser::evaluateHeaders`: every condition is read from
    /// the headers as they are after the removals, then the overwrites are
    /// made, then the additions.
    fn add_headers(&self, headers: &mut HeaderMap) {
        let before: Option<Vec<bool>> = self.add_repeats_a_name.then(|| {
            self.add
                .iter()
                .map(|header| headers.contains_key(&header.name))
                .collect()
        });
        // With every name once, no addition changes another's condition, so
        // each can be read as it comes.
        let present = |i: usize, header: &HeaderToAdd, headers: &HeaderMap| match &before {
            Some(before) => before.get(i).copied().unwrap_or(false),
            None => headers.contains_key(&header.name),
        };
        for (i, header) in self.add.iter().enumerate() {
            let overwrite = match header.action {
                AppendAction::OverwriteIfExistsOrAdd => true,
                AppendAction::OverwriteIfExists => present(i, header, headers),
                AppendAction::AppendIfExistsOrAdd | AppendAction::AddIfAbsent => false,
            };
            if overwrite {
                headers.insert(header.name.clone(), header.value.clone());
            }
        }
        for (i, header) in self.add.iter().enumerate() {
            let add = match header.action {
                AppendAction::AppendIfExistsOrAdd => true,
                AppendAction::AddIfAbsent => !present(i, header, headers),
                AppendAction::OverwriteIfExistsOrAdd | AppendAction::OverwriteIfExists => false,
            };
            if add {
                headers.append(header.name.clone(), header.value.clone());
            }
        }
    }
}

/// Replaces the URI's authority, if it has one, and the `Host` header, if
/// the request has one or no authority in its URI (HTTP/1 clients send an
/// existing `Host` header as it is, so both must change).
fn rewrite_host<B>(request: &mut Request<B>, host: &HostRewrite) {
    if request.uri().authority().is_some() {
        let mut parts = request.uri().clone().into_parts();
        parts.authority = Some(host.authority.clone());
        match Uri::from_parts(parts) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(error) => tracing::debug!(%error, "host_rewrite_literal left the URI unchanged"),
        }
    }
    if request.uri().authority().is_none() || request.headers().contains_key(http::header::HOST) {
        request
            .headers_mut()
            .insert(http::header::HOST, host.header.clone());
    }
}

/// Rewrites the request's path; an error when the rewrite makes one that
/// is not valid (a `regex_rewrite` substitution can, from some paths). Envoy
/// would forward such a path for the upstream to refuse; it cannot be sent
/// at all here, and sending the original path instead would reach what the
/// route meant to hide.
fn rewrite_path<B>(request: &mut Request<B>, rewrite: &PathRewrite) -> Result<(), String> {
    let path = request.uri().path();
    let (rewritten, field) = match rewrite {
        PathRewrite::Prefix { matched, with } => match path.get(*matched..) {
            Some(rest) => ([&**with, rest].concat(), "prefix_rewrite"),
            None => return Ok(()),
        },
        PathRewrite::Path { with } => (with.to_string(), "prefix_rewrite"),
        PathRewrite::Regex {
            regex,
            substitution,
        } => match regex.replace_all(path, &**substitution) {
            std::borrow::Cow::Owned(rewritten) => (rewritten, "regex_rewrite"),
            // No match: nothing to rewrite.
            std::borrow::Cow::Borrowed(_) => return Ok(()),
        },
    };
    replace_path(request, &rewritten).map_err(|why| {
        format!(
            "{field} made the path {} from {}, which {why}",
            Quoted(&rewritten),
            Quoted(request.uri().path())
        )
    })
}

/// Replaces the request's path with `path`, its query kept; an error saying
/// why when `path` is not a valid one.
pub(super) fn replace_path<B>(request: &mut Request<B>, path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err("is not a path (it must start with `/` and hold no `?` or `#`)");
    }
    let mut path_and_query = path.to_owned();
    if let Some(query) = request.uri().query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::from_maybe_shared(Bytes::from(path_and_query))
            .map_err(|_| "holds characters a path cannot")?,
    );
    *request.uri_mut() = Uri::from_parts(parts).map_err(|_| "does not make a valid URI")?;
    Ok(())
}

/// Translates an RE2 rewrite string (`\1` for a group, `\\` for a
/// backslash) into the `regex` crate's syntax (`${1}`, `$$` for a dollar).
fn re2_substitution(re2: &str) -> Result<String, String> {
    let mut out = String::with_capacity(re2.len() + 4);
    let mut chars = re2.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(digit @ '0'..='9') => {
                    out.push_str("${");
                    out.push(digit);
                    out.push('}');
                }
                Some('\\') => out.push('\\'),
                Some(other) => {
                    return Err(format!(
                        "`\\{other}` is not a rewrite escape (use `\\0`…`\\9` or `\\\\`)"
                    ));
                }
                None => return Err("ends with a lone `\\`".to_owned()),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MeshConfig;

    /// The actions of the first route of a configuration whose one virtual
    /// host has `route` (YAML) as its only route.
    fn actions(route: &str) -> RequestActions {
        let config = MeshConfig::from_yaml(&format!(
            "clusters: [{{ name: c }}]\nvirtual_hosts: [{{ name: v, domains: ['*'], routes: [{route}] }}]"
        ))
        .unwrap();
        RequestActions::compile(&config.virtual_hosts[0].routes[0], &config.regexes).unwrap()
    }

    fn applied(actions: &RequestActions, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        actions.apply(&mut request).unwrap();
        request
    }

    fn path_after(route: &str, uri: &str) -> String {
        applied(&actions(route), uri, &[])
            .uri()
            .path_and_query()
            .unwrap()
            .to_string()
    }

    #[test]
    fn prefix_rewrite_replaces_the_matched_prefix_as_envoy_documents() {
        // Envoy's `prefix_rewrite` docs: stripping `/prefix` takes two routes,
        // `/prefix/` → `/` and `/prefix` → `/`; one `/prefix` route alone turns
        // `/prefix/etc` into `//etc`.
        let slash = "{ match: { prefix: /prefix/ }, route: { cluster: c, prefix_rewrite: / } }";
        let bare = "{ match: { prefix: /prefix }, route: { cluster: c, prefix_rewrite: / } }";
        let cases = [
            (slash, "http://s/prefix/etc", "/etc"),
            (bare, "http://s/prefix", "/"),
            (bare, "http://s/prefix/etc", "//etc"),
            (bare, "http://s/prefixed", "/ed"),
            // The query string is kept.
            (slash, "http://s/prefix/etc?a=1&b=2", "/etc?a=1&b=2"),
            // A case-insensitive match replaces the prefix as the request spells it.
            (
                "{ match: { prefix: /API/, case_sensitive: false }, route: { cluster: c, prefix_rewrite: /v2/ } }",
                "http://s/api/users",
                "/v2/users",
            ),
            // A `path` route's whole path is replaced.
            (
                "{ match: { path: /old }, route: { cluster: c, prefix_rewrite: /new } }",
                "http://s/old?x=1",
                "/new?x=1",
            ),
            // A `path_separated_prefix` route's prefix is replaced.
            (
                "{ match: { path_separated_prefix: /api }, route: { cluster: c, prefix_rewrite: /v2 } }",
                "http://s/api/users?q",
                "/v2/users?q",
            ),
            (
                "{ match: { path_separated_prefix: /api }, route: { cluster: c, prefix_rewrite: /v2 } }",
                "http://s/api",
                "/v2",
            ),
            // A `safe_regex` route's whole path is replaced.
            (
                "{ match: { safe_regex: { regex: '/v[0-9]+/.*' } }, route: { cluster: c, prefix_rewrite: /latest } }",
                "http://s/v3/items",
                "/latest",
            ),
            // An empty `prefix_rewrite` is Envoy's unset string: no rewrite.
            (
                "{ match: { prefix: /a }, route: { cluster: c, prefix_rewrite: '' } }",
                "http://s/a/b",
                "/a/b",
            ),
        ];
        for (route, uri, expected) in cases {
            assert_eq!(path_after(route, uri), expected, "{route} on {uri}");
        }
    }

    #[test]
    fn regex_rewrite_replaces_every_match_as_envoy_documents() {
        let route = |pattern: &str, substitution: &str| {
            format!(
                "{{ match: {{ prefix: / }}, route: {{ cluster: c, regex_rewrite: {{ pattern: {{ regex: '{pattern}' }}, substitution: '{substitution}' }} }} }}"
            )
        };
        // The examples of Envoy's `regex_rewrite` docs.
        let cases = [
            (
                route(r"^/service/([^/]+)(/.*)$", r"\2/instance/\1"),
                "http://s/service/foo/v1/api",
                "/v1/api/instance/foo",
            ),
            (
                route("one", "two"),
                "http://s/xxx/one/yyy/one/zzz",
                "/xxx/two/yyy/two/zzz",
            ),
            (
                route(r"^(.*?)one(.*)$", r"\1two\2"),
                "http://s/xxx/one/yyy/one/zzz",
                "/xxx/two/yyy/one/zzz",
            ),
            (
                route("(?i)/xxx/", "/yyy/"),
                "http://s/aaa/XxX/bbb",
                "/aaa/yyy/bbb",
            ),
            // The query string is kept and not rewritten.
            (route("one", "two"), "http://s/one?one=1", "/two?one=1"),
            // No match: unchanged.
            (route("zzz", "two"), "http://s/one", "/one"),
            // A `$` in the substitution is literal, as in RE2.
            (route("one", "$1"), "http://s/one", "/$1"),
            (route("(one)", r"\0-\\"), "http://s/one", r"/one-\"),
        ];
        for (route, uri, expected) in cases {
            assert_eq!(path_after(&route, uri), expected, "{route} on {uri}");
        }
    }

    #[test]
    fn re2_substitutions_translate_or_are_refused() {
        assert_eq!(re2_substitution(r"\2/x/\1").unwrap(), "${2}/x/${1}");
        assert_eq!(re2_substitution("a$b").unwrap(), "a$$b");
        assert_eq!(re2_substitution(r"a\\b").unwrap(), r"a\b");
        assert!(re2_substitution(r"\n").is_err());
        assert!(re2_substitution("x\\").is_err());
    }

    #[test]
    fn host_rewrite_literal_replaces_the_authority_and_host_header() {
        let actions = actions(
            "{ match: { prefix: / }, route: { cluster: c, host_rewrite_literal: 'backend.internal:8080' } }",
        );
        let request = applied(&actions, "http://api:80/x?y", &[]);
        assert_eq!(request.uri(), "http://backend.internal:8080/x?y");
        assert!(
            request.headers().get("host").is_none(),
            "no Host header added beside the URI's authority"
        );

        let request = applied(&actions, "http://api/x", &[("host", "api")]);
        assert_eq!(request.uri(), "http://backend.internal:8080/x");
        assert_eq!(request.headers()["host"], "backend.internal:8080");

        let request = applied(&actions, "/x", &[("host", "api")]);
        assert_eq!(request.uri(), "/x");
        assert_eq!(request.headers()["host"], "backend.internal:8080");
    }

    fn header_values(request: &Request<()>, name: &str) -> Vec<String> {
        request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn header_additions_follow_their_append_action() {
        let with = |action: &str| {
            actions(&format!(
                "{{ match: {{ prefix: / }}, route: {{ cluster: c }}, request_headers_to_add: [{{ name: x-a, value: new, append_action: {action} }}] }}"
            ))
        };
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("append_if_exists_or_add", &[], &["new"]),
            ("append_if_exists_or_add", &["old"], &["old", "new"]),
            ("add_if_absent", &[], &["new"]),
            ("add_if_absent", &["old"], &["old"]),
            ("overwrite_if_exists_or_add", &[], &["new"]),
            ("overwrite_if_exists_or_add", &["old", "older"], &["new"]),
            ("overwrite_if_exists", &[], &[]),
            ("overwrite_if_exists", &["old"], &["new"]),
        ];
        for (action, before, after) in cases {
            let existing: Vec<(&str, &str)> = before.iter().map(|v| ("x-a", *v)).collect();
            let request = applied(&with(action), "http://s/", &existing);
            assert_eq!(
                header_values(&request, "x-a"),
                *after,
                "{action} over {before:?}"
            );
        }
    }

    #[test]
    fn removals_come_before_additions() {
        let actions = actions(
            "{ match: { prefix: / }, route: { cluster: c }, request_headers_to_remove: [x-a, x-gone], request_headers_to_add: [{ name: x-a, value: new, append_action: add_if_absent }, { name: x-b, value: b }] }",
        );
        let request = applied(
            &actions,
            "http://s/",
            &[
                ("x-a", "old"),
                ("x-a", "older"),
                ("x-gone", "1"),
                ("x-b", "a"),
            ],
        );
        assert_eq!(header_values(&request, "x-a"), ["new"]);
        assert!(request.headers().get("x-gone").is_none());
        assert_eq!(header_values(&request, "x-b"), ["a", "b"]);
    }

    #[test]
    fn repeated_names_read_their_conditions_before_any_addition() {
        // As Envoy: `add_if_absent` sees the header absent even though an
        // earlier entry adds it; overwrites are made before appends.
        let actions = actions(
            "{ match: { prefix: / }, route: { cluster: c }, request_headers_to_add: [{ name: x-a, value: one }, { name: x-a, value: two, append_action: add_if_absent }, { name: x-a, value: three, append_action: overwrite_if_exists }, { name: x-b, value: b1, append_action: overwrite_if_exists_or_add }, { name: x-b, value: b2, append_action: overwrite_if_exists_or_add }] }",
        );
        let request = applied(&actions, "http://s/", &[]);
        assert_eq!(header_values(&request, "x-a"), ["one", "two"]);
        assert_eq!(header_values(&request, "x-b"), ["b2"]);
        let request = applied(&actions, "http://s/", &[("x-a", "zero")]);
        assert_eq!(header_values(&request, "x-a"), ["three", "one"]);
    }

    #[test]
    fn an_empty_value_is_not_added() {
        let actions = actions(
            "{ match: { prefix: / }, route: { cluster: c }, request_headers_to_add: [{ name: x-a, value: '' }] }",
        );
        assert!(
            applied(&actions, "http://s/", &[])
                .headers()
                .get("x-a")
                .is_none()
        );
    }

    #[test]
    fn a_route_without_actions_leaves_the_request_alone() {
        let request = applied(&RequestActions::default(), "http://s/a?b", &[("x", "1")]);
        assert_eq!(request.uri(), "http://s/a?b");
        assert_eq!(header_values(&request, "x"), ["1"]);
    }
}
