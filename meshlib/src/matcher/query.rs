//! Reading one parameter of a request's query string, as Envoy's
//! `QueryParamsMulti` does: `&`-separated `name=value` pairs, a name without
//! `=` having the empty value, the first occurrence of a name winning.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use super::string::{ValueRule, compile_string};
use crate::config::QueryParameterMatcher;

/// The raw (still percent-encoded) first value of the parameter `name` in
/// `query`; names are compared after percent-decoding, case-sensitively, as
/// Envoy's route matcher reads the query (`parseAndDecodeQueryString`).
fn first_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let same = if key.contains('%') {
            percent_decode_str(key).eq(name.bytes())
        } else {
            key == name
        };
        same.then_some(value)
    })
}

/// The raw first value of the parameter whose raw name is `name`: nothing
/// decoded, as Envoy's query-parameter hash policy reads the query
/// (`parseQueryString`), so `a%20b=1` is not the parameter `a b` there.
pub(crate) fn first_raw_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// `raw` percent-decoded; invalid UTF-8 is replaced, as a matcher sees text.
/// Borrows unless there is something to decode.
fn decode(raw: &str) -> Cow<'_, str> {
    percent_decode_str(raw).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_of_a_parameter_is_found_by_its_decoded_name() {
        let cases = [
            ("a=1&b=2", "b", Some("2")),
            ("a=1&a=2", "a", Some("1")),
            ("flag&b=2", "flag", Some("")),
            ("a=&b=2", "a", Some("")),
            ("a=x=y", "a", Some("x=y")),
            ("my%20key=v", "my key", Some("v")),
            ("ab=1", "a", None),
            ("", "a", None),
            ("A=1", "a", None),
        ];
        for (query, name, expected) in cases {
            assert_eq!(first_value(query, name), expected, "{name} in {query:?}");
        }
    }

    #[test]
    fn a_raw_lookup_decodes_neither_names_nor_values() {
        assert_eq!(first_raw_value("my%20key=v%21", "my%20key"), Some("v%21"));
        assert_eq!(first_raw_value("my%20key=v", "my key"), None);
        assert_eq!(first_raw_value("a=1&a=2", "a"), Some("1"));
        assert_eq!(first_raw_value("flag", "flag"), Some(""));
    }

    #[test]
    fn values_are_percent_decoded_and_borrowed_when_plain() {
        assert_eq!(decode("hello%20world"), "hello world");
        assert_eq!(decode("a%2Fb"), "a/b");
        // Envoy decodes `%XX` only; a `+` stays a `+`.
        assert_eq!(decode("a+b"), "a+b");
        assert!(matches!(decode("plain"), Cow::Borrowed("plain")));
        assert_eq!(decode("%ff"), "\u{fffd}");
    }
}

/// One query parameter rule of a route (Envoy's `QueryParameterMatcher`):
/// the parameter's first value, percent-decoded, against a string rule.
#[derive(Debug)]
pub(crate) struct QueryCheck {
    name: Box<str>,
    /// `None`: the parameter need only be present.
    value: Option<ValueRule>,
}

impl QueryCheck {
    /// The check for `matcher`; the error says what is wrong with its value rule.
    pub(crate) fn compile(
        matcher: &QueryParameterMatcher,
        regexes: &crate::config::Regexes,
    ) -> Result<Self, String> {
        let value = matcher
            .value
            .as_ref()
            .map(|m| compile_string(&m.rule, m.ignore_case, regexes))
            .transpose()?;
        Ok(QueryCheck {
            name: matcher.name.as_str().into(),
            value,
        })
    }

    pub(crate) fn matches(&self, query: Option<&str>) -> bool {
        let Some(raw) = query.and_then(|q| first_value(q, &self.name)) else {
            return false;
        };
        match &self.value {
            None => true,
            Some(rule) => rule.matches(&decode(raw)),
        }
    }
}
