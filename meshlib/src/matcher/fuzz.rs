//! Fuzz targets (issue 10) for the matchers, as property tests: `safe_regex`
//! patterns, and header rules against arbitrary requests, each checked
//! against the rule computed apart. 256 cases each under `cargo test`;
//! `PROPTEST_CASES=N` runs N.

use http::Request;
use proptest::prelude::*;

use super::header::{RequestHeaders, compile_header};
use crate::config::{self, HeaderMatcher, HeaderRule, Regexes};
use crate::fuzzing::bounded;

/// Patterns: any text, and text over regex syntax so most of them parse.
fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        r"[ab.*+?()\[\]{}|^$\\,0-9:#=<>!wdsPL-]{0,24}",
        // Groups and alternations, which the anchors wrap.
        "[ab()|?:]{0,8}",
        // Repetitions that multiply, to reach the size limit.
        (r"[a\\w.]{1,3}", 1..4usize, 1..2000u32).prop_map(|(atom, depth, n)| format!(
            "{}{atom}{}",
            "(".repeat(depth),
            format!("){{{n}}}").repeat(depth)
        )),
    ]
}

fn subject() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ab01 ]{0,12}"]
}

proptest! {
    #[test]
    fn safe_regex_matches_whole_values_or_is_refused(
        pattern in pattern(),
        subjects in proptest::collection::vec(subject(), 0..4),
    ) {
        let compiled = bounded(|| config::full_match(&pattern));
        match compiled {
            Err(message) => prop_assert!(!message.is_empty()),
            Ok(regex) => {
                // Envoy (RE2) refuses a pattern that is not a regex alone: the
                // anchors wrapped around it must not make it one.
                prop_assert!(regex::Regex::new(&pattern).is_ok(), "{pattern:?} taken");
                for subject in &subjects {
                    if let Some(found) = bounded(|| regex.find(subject)) {
                        prop_assert_eq!(found.range(), 0..subject.len(), "{:?} on {:?}", pattern, subject);
                    }
                }
            }
        }
    }
}

const NAMES: &[&str] = &[
    ":authority",
    "host",
    ":method",
    ":path",
    ":scheme",
    "x-a",
    "x-b",
    "X-A",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(NAMES).prop_map(str::to_owned),
        1 => "[a-zA-Z:_ -]{0,6}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[aAbB,1 -]{0,4}", any::<String>()]
}

fn rule() -> impl Strategy<Value = HeaderRule> {
    prop_oneof![
        text().prop_map(HeaderRule::Exact),
        text().prop_map(HeaderRule::Prefix),
        text().prop_map(HeaderRule::Suffix),
        text().prop_map(HeaderRule::Contains),
        pattern().prop_map(HeaderRule::Regex),
        any::<bool>().prop_map(HeaderRule::Present),
        (any::<i64>(), any::<i64>()).prop_map(|(start, end)| HeaderRule::Range { start, end }),
        (-3..3i64, -3..3i64).prop_map(|(start, end)| HeaderRule::Range { start, end }),
    ]
}

fn matcher() -> impl Strategy<Value = HeaderMatcher> {
    (name(), rule(), any::<bool>(), any::<bool>()).prop_map(
        |(name, rule, ignore_case, invert_match)| HeaderMatcher {
            name,
            rule,
            ignore_case,
            invert_match,
        },
    )
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[aAbB,1 -]{0,4}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
        // Longer than a value read again per rule.
        "[ab]{250,300}".prop_map(String::into_bytes),
    ]
}

/// A request with these headers, those `http` takes.
fn request(authority: &str, path: &str, headers: &[(String, Vec<u8>)]) -> Request<()> {
    let mut request = Request::get(format!("http://{authority}{path}"))
        .body(())
        .unwrap_or_else(|_| Request::new(()));
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    request
}

/// Whether `matcher` passes a request whose header of its name is `value`,
/// joined over repeats; `None` for the rules not computed here.
fn expected(matcher: &HeaderMatcher, value: Option<&[u8]>) -> Option<bool> {
    let Some(value) = value else {
        return Some(matches!(matcher.rule, HeaderRule::Present(p) if p == matcher.invert_match));
    };
    let fold = |bytes: &[u8]| {
        if matcher.ignore_case {
            bytes.to_ascii_lowercase()
        } else {
            bytes.to_vec()
        }
    };
    let (value, text) = (fold(value), |s: &String| fold(s.as_bytes()));
    let hit = match &matcher.rule {
        HeaderRule::Exact(s) => value == text(s),
        HeaderRule::Prefix(s) => value.starts_with(&text(s)),
        HeaderRule::Suffix(s) => value.ends_with(&text(s)),
        HeaderRule::Contains(s) => {
            let s = text(s);
            s.is_empty() || value.windows(s.len()).any(|w| w == s)
        }
        HeaderRule::Present(present) => *present,
        HeaderRule::Range { start, end } => std::str::from_utf8(&value)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|n| *start <= n && n < *end),
        _ => return None,
    };
    Some(hit != matcher.invert_match)
}

proptest! {
    #[test]
    fn header_matchers_agree_with_their_rules(
        matchers in proptest::collection::vec(matcher(), 1..5),
        authority in "[a-z0-9.:-]{0,12}",
        path in "/[ -~]{0,16}",
        headers in proptest::collection::vec((name(), value()), 0..6),
    ) {
        let request = request(&authority, &path, &headers);
        let regexes = Regexes::default();
        // One view for every rule, as a decision reads it, and it must
        // answer as a fresh one does.
        let shared = RequestHeaders::new(&request);
        for matcher in &matchers {
            let check = match bounded(|| compile_header(matcher, &regexes)) {
                Ok(check) => check,
                Err(message) => {
                    prop_assert!(!message.is_empty());
                    continue;
                }
            };
            let got = bounded(|| check.matches(&shared));
            prop_assert_eq!(got, check.matches(&RequestHeaders::new(&request)));
            if matcher.name.starts_with(':') || matcher.name == "host" {
                continue;
            }
            let name = http::HeaderName::from_bytes(matcher.name.as_bytes())
                .expect("compile_header took it");
            let values: Vec<&[u8]> = request.headers().get_all(&name).iter().map(|v| v.as_bytes()).collect();
            let joined = (!values.is_empty()).then(|| values.join(&b','));
            if let Some(want) = expected(matcher, joined.as_deref()) {
                prop_assert_eq!(got, want, "{:?} on {:?}", matcher, joined);
            }
        }
    }
}
