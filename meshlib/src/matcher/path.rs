//! Path rules: Envoy's `RouteMatch` path specifiers (`prefix`, `path`,
//! `safe_regex`, `path_separated_prefix`) with `case_sensitive`.

use crate::config::{PathMatch, Regexes};

/// A route's path rule, compiled.
#[derive(Debug)]
pub(crate) enum PathRule {
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

impl PathRule {
    /// The rule for `path`; the error says why a `safe_regex` does not
    /// compile. A `safe_regex` is taken from `regexes` when they hold it.
    pub(crate) fn compile(
        path: &PathMatch,
        case_sensitive: bool,
        regexes: &Regexes,
    ) -> Result<Self, String> {
        Ok(match path {
            PathMatch::Prefix(prefix) => PathRule::Prefix {
                prefix: prefix.as_str().into(),
                case_sensitive,
            },
            PathMatch::Exact(path) => PathRule::Exact {
                path: path.as_str().into(),
                case_sensitive,
            },
            PathMatch::Regex(pattern) => PathRule::Regex(regexes.full_match(pattern)?),
            PathMatch::PathSeparatedPrefix(prefix) => PathRule::Separated {
                prefix: prefix.as_str().into(),
                case_sensitive,
            },
        })
    }
}

impl PathRule {
    pub(crate) fn matches(&self, path: &str) -> bool {
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
                let Some(head) = path.as_bytes().get(..prefix.len()) else {
                    return false;
                };
                let head_matches = if *case_sensitive {
                    head == prefix.as_bytes()
                } else {
                    head.eq_ignore_ascii_case(prefix.as_bytes())
                };
                // The prefix must end at a segment boundary; `/` (the one
                // prefix allowed to end with `/`) already does.
                head_matches
                    && (prefix.ends_with('/')
                        || matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
            }
        }
    }
}
