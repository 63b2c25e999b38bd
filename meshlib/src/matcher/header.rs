//! Header rules: Envoy's `HeaderMatcher` (gRPC A28), with pseudo-headers
//! read from the request line.

use std::borrow::Cow;

use http::Request;

use super::string::{ValueRule, compile_string};
use crate::config::{self, HeaderRule, StringRule};

/// One header rule of a route: the header's value (its values joined by
/// `,`) against a string rule, possibly inverted.
#[derive(Debug)]
pub(crate) struct HeaderCheck {
    name: HeaderRef,
    rule: ValueRule,
    invert: bool,
}

/// A header, or a pseudo-header read from the request line, named in a
/// matcher or a hash policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HeaderRef {
    Authority,
    Method,
    Path,
    Scheme,
    Header(http::HeaderName),
}

/// The request's authority: the URI's, else the `Host` header.
pub(crate) fn authority<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

pub(crate) fn compile_header(
    matcher: &config::HeaderMatcher,
    regexes: &config::Regexes,
) -> Result<HeaderCheck, String> {
    let ignore_case = matcher.ignore_case;
    let string = |rule: StringRule| compile_string(&rule, ignore_case, regexes);
    let rule = match &matcher.rule {
        HeaderRule::Exact(v) => string(StringRule::Exact(v.clone()))?,
        HeaderRule::Prefix(v) => string(StringRule::Prefix(v.clone()))?,
        HeaderRule::Suffix(v) => string(StringRule::Suffix(v.clone()))?,
        HeaderRule::Contains(v) => string(StringRule::Contains(v.clone()))?,
        HeaderRule::Regex(pattern) => string(StringRule::Regex(pattern.clone()))?,
        HeaderRule::Present(present) => ValueRule::Present(*present),
        HeaderRule::Range { start, end } => ValueRule::Range {
            start: *start,
            end: *end,
        },
    };
    Ok(HeaderCheck {
        name: HeaderRef::parse(&matcher.name)?,
        rule,
        invert: matcher.invert_match,
    })
}

impl HeaderRef {
    /// `:authority` (or `host`), `:method`, `:path`, `:scheme`, or a header.
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            ":authority" | "host" => HeaderRef::Authority,
            ":method" => HeaderRef::Method,
            ":path" => HeaderRef::Path,
            ":scheme" => HeaderRef::Scheme,
            other => HeaderRef::Header(
                http::HeaderName::from_bytes(other.as_bytes()).map_err(|e| e.to_string())?,
            ),
        })
    }

    /// The value in `request`: a header sent several times has its values
    /// joined by `,`, as Envoy matches it. `None` when absent or not UTF-8.
    pub(crate) fn value<'a, B>(&self, request: &'a Request<B>) -> Option<Cow<'a, str>> {
        match self {
            HeaderRef::Authority => authority(request).map(Cow::Borrowed),
            HeaderRef::Method => Some(Cow::Borrowed(request.method().as_str())),
            HeaderRef::Path => Some(Cow::Borrowed(
                request.uri().path_and_query().map_or("/", |p| p.as_str()),
            )),
            HeaderRef::Scheme => request.uri().scheme_str().map(Cow::Borrowed),
            HeaderRef::Header(name) => joined(request.headers(), name),
        }
    }
}

/// The values of `name` in `headers` joined by `,`; `None` when absent or
/// not UTF-8.
fn joined<'a>(headers: &'a http::HeaderMap, name: &http::HeaderName) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let first = std::str::from_utf8(values.next()?.as_bytes()).ok()?;
    let mut joined: Cow<'a, str> = Cow::Borrowed(first);
    for more in values {
        let joined = joined.to_mut();
        joined.push(',');
        joined.push_str(std::str::from_utf8(more.as_bytes()).ok()?);
    }
    Some(joined)
}

/// A header rule on a response (a retry policy's `retriable_headers`):
/// `:status` names its status.
#[derive(Debug)]
pub(crate) struct ResponseHeaderCheck {
    /// `None` for `:status`.
    name: Option<http::HeaderName>,
    rule: ValueRule,
    invert: bool,
}

pub(crate) fn compile_response_header(
    matcher: &config::HeaderMatcher,
    regexes: &config::Regexes,
) -> Result<ResponseHeaderCheck, String> {
    let request = config::HeaderMatcher {
        // Any header name compiles the rule; the name is read below.
        name: "x".to_owned(),
        ..matcher.clone()
    };
    let HeaderCheck { rule, invert, .. } = compile_header(&request, regexes)?;
    let name = match matcher.name.as_str() {
        ":status" => None,
        other => Some(http::HeaderName::from_bytes(other.as_bytes()).map_err(|e| e.to_string())?),
    };
    Ok(ResponseHeaderCheck { name, rule, invert })
}

impl ResponseHeaderCheck {
    pub(crate) fn matches(&self, status: http::StatusCode, headers: &http::HeaderMap) -> bool {
        let value = match &self.name {
            None => Some(Cow::Borrowed(status.as_str())),
            Some(name) => joined(headers, name),
        };
        let Some(value) = value else {
            return match self.rule {
                ValueRule::Present(present) => present == self.invert,
                _ => false,
            };
        };
        self.rule.matches(&value) != self.invert
    }
}

impl HeaderCheck {
    /// The header it reads.
    pub(crate) fn name(&self) -> &HeaderRef {
        &self.name
    }

    /// The value this check requires the header to have exactly, case
    /// included, if it is that kind of check.
    pub(crate) fn exact_value(&self) -> Option<&str> {
        match &self.rule {
            ValueRule::Exact {
                value,
                ignore_case: false,
            } if !self.invert => Some(value),
            _ => None,
        }
    }

    pub(crate) fn matches<B>(&self, request: &Request<B>) -> bool {
        let Some(value) = self.name.value(request) else {
            // An absent header matches only `present: false`; inverting any
            // other rule does not make an absent header match (Envoy, gRPC A28).
            return match self.rule {
                ValueRule::Present(present) => present == self.invert,
                _ => false,
            };
        };
        self.rule.matches(&value) != self.invert
    }
}
