//! String rules: Envoy's `type.matcher.v3.StringMatcher` (`exact`,
//! `prefix`, `suffix`, `contains`, `safe_regex`, `ignore_case`), plus the
//! `present` and `range` rules a header matcher adds.

use crate::config::{Regexes, StringRule};

/// A compiled string rule, checked against one value.
#[derive(Debug)]
pub(crate) enum ValueRule {
    /// `value` lower-cased when `ignore_case`, here and in the three below.
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

/// The compared text, lower-cased when the comparison ignores case.
fn text(value: &str, ignore_case: bool) -> Box<str> {
    if ignore_case {
        value.to_ascii_lowercase().into()
    } else {
        value.into()
    }
}

/// Envoy's `StringMatcher`; `ignore_case` is not applied to `safe_regex`.
/// A `safe_regex` is taken from `regexes` when they hold it.
pub(crate) fn compile_string(
    rule: &StringRule,
    ignore_case: bool,
    regexes: &Regexes,
) -> Result<ValueRule, String> {
    Ok(match rule {
        StringRule::Exact(v) => ValueRule::Exact {
            value: text(v, ignore_case),
            ignore_case,
        },
        StringRule::Prefix(v) => ValueRule::Prefix {
            value: text(v, ignore_case),
            ignore_case,
        },
        StringRule::Suffix(v) => ValueRule::Suffix {
            value: text(v, ignore_case),
            ignore_case,
        },
        StringRule::Contains(v) => ValueRule::Contains {
            value: text(v, ignore_case),
            ignore_case,
        },
        StringRule::Regex(pattern) => ValueRule::Regex(
            regexes
                .full_match(pattern)
                .map_err(|e| format!("safe_regex {e}"))?,
        ),
    })
}

impl ValueRule {
    /// Whether `value`, which is not UTF-8, passes. The string rules
    /// compare bytes, as Envoy does; `safe_regex` and `range` read text, so
    /// such a value passes neither.
    pub(crate) fn matches_bytes(&self, value: &[u8]) -> bool {
        match self {
            ValueRule::Exact {
                value: v,
                ignore_case,
            } => bytes_eq(value, v.as_bytes(), *ignore_case),
            ValueRule::Prefix {
                value: v,
                ignore_case,
            } => value
                .get(..v.len())
                .is_some_and(|head| bytes_eq(head, v.as_bytes(), *ignore_case)),
            ValueRule::Suffix {
                value: v,
                ignore_case,
            } => value
                .len()
                .checked_sub(v.len())
                .and_then(|start| value.get(start..))
                .is_some_and(|tail| bytes_eq(tail, v.as_bytes(), *ignore_case)),
            ValueRule::Contains {
                value: v,
                ignore_case,
            } => {
                v.is_empty()
                    || value
                        .windows(v.len())
                        .any(|window| bytes_eq(window, v.as_bytes(), *ignore_case))
            }
            ValueRule::Regex(_) | ValueRule::Range { .. } => false,
            ValueRule::Present(present) => *present,
        }
    }

    /// Whether the text `value` passes: the byte rules as for any value,
    /// and the rules that need text (`safe_regex`, `range`).
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            ValueRule::Contains {
                value: v,
                ignore_case: false,
            } => value.contains(&**v),
            ValueRule::Regex(regex) => regex.is_match(value),
            ValueRule::Range { start, end } => {
                value.parse::<i64>().is_ok_and(|n| *start <= n && n < *end)
            }
            _ => self.matches_bytes(value.as_bytes()),
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
