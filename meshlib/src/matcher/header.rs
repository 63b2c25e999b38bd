//! Header rules: Envoy's `HeaderMatcher` (gRPC A28), with pseudo-headers
//! read from the request line.
//!
//! Values are bytes, as Envoy reads them: a header whose value is not UTF-8
//! is present (`present_match` sees it, as it is forwarded), and the string
//! rules compare its bytes; only `safe_regex` and `range_match`, which read
//! text, do not match it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

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
    authority_of(request.uri(), request.headers())
}

fn authority_of<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Option<&'a str> {
    match uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

/// A request as header rules read it during one decision. A large or
/// repeated header's value is read once, on first use: the values of a
/// header sent several times are joined by `,` and checked for UTF-8 then,
/// and that one copy serves every later rule, so a decision over many rules
/// and a large repeated header costs the header's size once, not once per
/// rule. A short value sent once is simply read again.
#[derive(Debug)]
pub(crate) struct RequestHeaders<'a> {
    method: &'a http::Method,
    uri: &'a http::Uri,
    /// `:path`: the URI's path and query, or as normalisation made them.
    path_and_query: &'a str,
    headers: &'a http::HeaderMap,
    read: RefCell<HashMap<http::HeaderName, HeaderValue<'a>>>,
}

/// One header's value as a rule reads it: text when it is UTF-8, else its
/// bytes; borrowed from the request when it was sent once, else joined.
#[derive(Debug, Clone)]
pub(crate) enum HeaderValue<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    JoinedText(Rc<str>),
    JoinedBytes(Rc<[u8]>),
}

impl HeaderValue<'_> {
    /// The value as text, `None` when it is not UTF-8.
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            HeaderValue::Text(text) => Some(text),
            HeaderValue::JoinedText(text) => Some(text),
            HeaderValue::Bytes(_) | HeaderValue::JoinedBytes(_) => None,
        }
    }
}

impl AsRef<[u8]> for HeaderValue<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            HeaderValue::Text(text) => text.as_bytes(),
            HeaderValue::JoinedText(text) => text.as_bytes(),
            HeaderValue::Bytes(bytes) => bytes,
            HeaderValue::JoinedBytes(bytes) => bytes,
        }
    }
}

impl<'a> RequestHeaders<'a> {
    /// `request`'s request line and headers; nothing is read yet.
    pub(crate) fn new<B>(request: &'a Request<B>) -> Self {
        RequestHeaders {
            method: request.method(),
            uri: request.uri(),
            path_and_query: request.uri().path_and_query().map_or("/", |p| p.as_str()),
            headers: request.headers(),
            read: RefCell::default(),
        }
    }

    /// The same, its `:path` being `path_and_query` (the request's path as
    /// normalisation made it).
    pub(crate) fn with_path(self, path_and_query: &'a str) -> Self {
        RequestHeaders {
            path_and_query,
            ..self
        }
    }

    /// The value of `header`, `None` when it is absent.
    pub(crate) fn value(&self, header: &HeaderRef) -> Option<HeaderValue<'a>> {
        let text = |s: &'a str| Some(HeaderValue::Text(s));
        match header {
            HeaderRef::Authority => authority_of(self.uri, self.headers).and_then(text),
            HeaderRef::Method => text(self.method.as_str()),
            HeaderRef::Path => text(self.path_and_query),
            HeaderRef::Scheme => self.uri.scheme_str().and_then(text),
            HeaderRef::Header(name) => self.header(name),
        }
    }

    fn header(&self, name: &http::HeaderName) -> Option<HeaderValue<'a>> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        if values.next().is_none() && first.len() <= READ_AGAIN_UP_TO {
            // Cheaper to check again than to keep: the common case allocates nothing.
            return Some(borrowed_value(first.as_bytes()));
        }
        let known = self.read.borrow().get(name).cloned();
        if known.is_some() {
            return known;
        }
        let value = read_value(self.headers, name)?;
        self.read.borrow_mut().insert(name.clone(), value.clone());
        Some(value)
    }
}

/// A header sent once with a value of at most this many bytes is read (its
/// UTF-8 checked) by each rule; a longer one, or one sent several times, is
/// read once per decision and kept.
const READ_AGAIN_UP_TO: usize = 256;

fn borrowed_value(bytes: &[u8]) -> HeaderValue<'_> {
    match std::str::from_utf8(bytes) {
        Ok(text) => HeaderValue::Text(text),
        Err(_) => HeaderValue::Bytes(bytes),
    }
}

/// The value of `name` in `headers`, its values joined when it was sent
/// several times; `None` when absent.
fn read_value<'a>(
    headers: &'a http::HeaderMap,
    name: &http::HeaderName,
) -> Option<HeaderValue<'a>> {
    Some(match joined_values(headers, name)? {
        Cow::Borrowed(bytes) => borrowed_value(bytes),
        Cow::Owned(bytes) => match String::from_utf8(bytes) {
            Ok(text) => HeaderValue::JoinedText(text.into()),
            Err(error) => HeaderValue::JoinedBytes(error.into_bytes().into()),
        },
    })
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
}

/// The values of `name` in `headers` joined by `,`, as Envoy matches a
/// header sent several times; `None` when absent.
fn joined_values<'a>(
    headers: &'a http::HeaderMap,
    name: &http::HeaderName,
) -> Option<Cow<'a, [u8]>> {
    let mut values = headers.get_all(name).iter();
    let mut joined = Cow::Borrowed(values.next()?.as_bytes());
    for more in values {
        let joined = joined.to_mut();
        joined.push(b',');
        joined.extend_from_slice(more.as_bytes());
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
            None => Some(HeaderValue::Text(status.as_str())),
            Some(name) => read_value(headers, name),
        };
        let Some(value) = value else {
            return match self.rule {
                ValueRule::Present(present) => present == self.invert,
                _ => false,
            };
        };
        self.rule.matches_value(&value) != self.invert
    }
}

impl ValueRule {
    fn matches_value(&self, value: &HeaderValue<'_>) -> bool {
        match value.text() {
            Some(text) => self.matches(text),
            None => self.matches_bytes(value.as_ref()),
        }
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

    /// Whether the request `headers` reads passes this rule.
    pub(crate) fn matches(&self, headers: &RequestHeaders<'_>) -> bool {
        let Some(value) = headers.value(&self.name) else {
            // An absent header matches only `present: false`; inverting any
            // other rule does not make an absent header match (Envoy, gRPC A28).
            return match self.rule {
                ValueRule::Present(present) => present == self.invert,
                _ => false,
            };
        };
        self.rule.matches_value(&value) != self.invert
    }
}
