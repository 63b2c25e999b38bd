//! The file's shape for the model's one-of fields.
//!
//! Envoy's YAML writes a one-of as sibling keys (`prefix: /` or `path: /x`); the
//! model holds an enum. These structs read the keys as options and convert,
//! refusing zero or two of them with a message that names the keys.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Destination, HeaderRule, PathMatch, WeightedCluster, duration};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SafeRegex {
    regex: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    safe_regex: Option<SafeRegex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    case_sensitive: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<super::HeaderMatcher>,
}

/// Takes the single `Some` among `options`, or says which keys were wrong.
fn one_of<T>(what: &str, options: Vec<(&str, Option<T>)>) -> Result<T, String> {
    let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
    let mut set: Vec<(&str, T)> = options
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
    match set.len() {
        1 => Ok(set.remove(0).1),
        0 => Err(format!("{what}: set one of `{}`", names.join("`, `"))),
        _ => {
            let given: Vec<&str> = set.iter().map(|(name, _)| *name).collect();
            Err(format!(
                "{what}: set only one of `{}`, found `{}`",
                names.join("`, `"),
                given.join("` and `")
            ))
        }
    }
}

impl TryFrom<RouteMatch> for super::RouteMatch {
    type Error = String;

    fn try_from(raw: RouteMatch) -> Result<Self, String> {
        let path = one_of(
            "match",
            vec![
                ("prefix", raw.prefix.map(PathMatch::Prefix)),
                ("path", raw.path.map(PathMatch::Exact)),
                (
                    "safe_regex",
                    raw.safe_regex.map(|r| PathMatch::Regex(r.regex)),
                ),
            ],
        )?;
        Ok(super::RouteMatch {
            path,
            case_sensitive: raw.case_sensitive.unwrap_or(true),
            headers: raw.headers,
        })
    }
}

impl From<super::RouteMatch> for RouteMatch {
    fn from(m: super::RouteMatch) -> Self {
        let mut raw = RouteMatch {
            case_sensitive: (!m.case_sensitive).then_some(false),
            headers: m.headers,
            ..RouteMatch::default()
        };
        match m.path {
            PathMatch::Prefix(p) => raw.prefix = Some(p),
            PathMatch::Exact(p) => raw.path = Some(p),
            PathMatch::Regex(regex) => raw.safe_regex = Some(SafeRegex { regex }),
        }
        raw
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Range {
    start: i64,
    end: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderMatcher {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    safe_regex: Option<SafeRegex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    present: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<Range>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ignore_case: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    invert_match: bool,
}

impl TryFrom<HeaderMatcher> for super::HeaderMatcher {
    type Error = String;

    fn try_from(raw: HeaderMatcher) -> Result<Self, String> {
        let rule = one_of(
            &format!("header {:?}", raw.name),
            vec![
                ("exact", raw.exact.map(HeaderRule::Exact)),
                ("prefix", raw.prefix.map(HeaderRule::Prefix)),
                ("suffix", raw.suffix.map(HeaderRule::Suffix)),
                ("contains", raw.contains.map(HeaderRule::Contains)),
                (
                    "safe_regex",
                    raw.safe_regex.map(|r| HeaderRule::Regex(r.regex)),
                ),
                ("present", raw.present.map(HeaderRule::Present)),
                (
                    "range",
                    raw.range.map(|r| HeaderRule::Range {
                        start: r.start,
                        end: r.end,
                    }),
                ),
            ],
        )?;
        Ok(super::HeaderMatcher {
            name: raw.name.to_ascii_lowercase(),
            rule,
            ignore_case: raw.ignore_case,
            invert_match: raw.invert_match,
        })
    }
}

impl From<super::HeaderMatcher> for HeaderMatcher {
    fn from(m: super::HeaderMatcher) -> Self {
        let mut raw = HeaderMatcher {
            name: m.name,
            ignore_case: m.ignore_case,
            invert_match: m.invert_match,
            ..HeaderMatcher::default()
        };
        match m.rule {
            HeaderRule::Exact(v) => raw.exact = Some(v),
            HeaderRule::Prefix(v) => raw.prefix = Some(v),
            HeaderRule::Suffix(v) => raw.suffix = Some(v),
            HeaderRule::Contains(v) => raw.contains = Some(v),
            HeaderRule::Regex(regex) => raw.safe_regex = Some(SafeRegex { regex }),
            HeaderRule::Present(p) => raw.present = Some(p),
            HeaderRule::Range { start, end } => raw.range = Some(Range { start, end }),
        }
        raw
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WeightedClusters {
    clusters: Vec<WeightedCluster>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weighted_clusters: Option<WeightedClusters>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    timeout: Option<Duration>,
}

impl TryFrom<RouteAction> for super::RouteAction {
    type Error = String;

    fn try_from(raw: RouteAction) -> Result<Self, String> {
        let destination = one_of(
            "route",
            vec![
                ("cluster", raw.cluster.map(Destination::Cluster)),
                (
                    "weighted_clusters",
                    raw.weighted_clusters
                        .map(|w| Destination::WeightedClusters(w.clusters)),
                ),
            ],
        )?;
        Ok(super::RouteAction {
            destination,
            timeout: raw.timeout,
        })
    }
}

impl From<super::RouteAction> for RouteAction {
    fn from(a: super::RouteAction) -> Self {
        let mut raw = RouteAction {
            timeout: a.timeout,
            ..RouteAction::default()
        };
        match a.destination {
            Destination::Cluster(c) => raw.cluster = Some(c),
            Destination::WeightedClusters(clusters) => {
                raw.weighted_clusters = Some(WeightedClusters { clusters })
            }
        }
        raw
    }
}
