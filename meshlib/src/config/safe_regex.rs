//! Envoy's `safe_regex`, compiled one way for the configuration's checks and
//! for the route table, so a pattern that passes the checks always builds.
//!
//! Envoy compiles with RE2 and refuses a program of more than
//! `max_program_size` instructions (100 by default). The `regex` crate bounds
//! the compiled program's heap size in bytes instead ([`REGEX_SIZE_LIMIT`]):
//! see there for how the two compare.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// The most heap, in bytes, one compiled regex may take (the `regex` crate's
/// `size_limit`): 1 MiB, a tenth of the crate's default.
///
/// Envoy's bound is RE2's program size, 100 instructions by default. Measured
/// with `regex` 1.13, an ASCII pattern of about 100 RE2 instructions
/// (`[a-zA-Z0-9_]{14}`, `/api/v[0-9]+/users/[^/]+`) compiles to 1–10 KB, far
/// below this; but `\w`, `\d` and `\s` are Unicode classes here and ASCII in
/// RE2, so `\w{14}`, which RE2 accepts at 100, takes 700 KB. 1 MiB accepts
/// that (up to `\w{20}`), and refuses `\w{100}` (5 MB, which RE2 refuses too)
/// after about 5 ms (30 ms in a debug build) instead of compiling it whole.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A regex matching the whole value, as Envoy's `safe_regex` matches; the
/// error says why, to follow a field's name.
pub(crate) fn full_match(pattern: &str) -> Result<regex::Regex, String> {
    build(&anchored(pattern)?)
}

/// A regex that finds its matches anywhere in the value (`regex_rewrite`).
pub(crate) fn search(pattern: &str) -> Result<regex::Regex, String> {
    build(pattern)
}

/// `pattern` between anchors, once it parses alone: else the anchors could
/// complete it, and `a)|(b` would become `^(?:a)|(b)$`, matching every
/// value that starts with `a` (RE2, Envoy's, refuses the pattern).
fn anchored(pattern: &str) -> Result<String, String> {
    regex_syntax::ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| format!("does not compile: {e}"))?;
    Ok(format!("^(?:{pattern})$"))
}

/// Compiled regexes, by the source they were compiled from: the regexes of
/// a configuration's last validation, which its route table takes rather
/// than compile each pattern again (a regex's clone shares its program).
///
/// Not part of the configuration's value: it compares equal whatever it
/// holds, and is neither written nor read by serde.
#[derive(Default)]
pub(crate) struct Regexes(Mutex<Compiled>);

type Compiled = HashMap<Box<str>, regex::Regex>;

impl Regexes {
    /// [`full_match`], from the last validation when it compiled `pattern`.
    pub(crate) fn full_match(&self, pattern: &str) -> Result<regex::Regex, String> {
        self.get(anchored(pattern)?)
    }

    /// [`search`], from the last validation when it compiled `pattern`.
    pub(crate) fn search(&self, pattern: &str) -> Result<regex::Regex, String> {
        self.get(pattern.to_owned())
    }

    fn get(&self, source: String) -> Result<regex::Regex, String> {
        match self.lock().get(source.as_str()) {
            Some(regex) => Ok(regex.clone()),
            None => build(&source),
        }
    }

    /// The start of a validation: it compiles what the last one did not.
    pub(super) fn start(&self) -> Compiling {
        Compiling {
            previous: std::mem::take(&mut *self.lock()),
            kept: HashMap::new(),
        }
    }

    /// The end of a validation: its regexes replace the last one's, so
    /// patterns no longer in the configuration are not kept.
    pub(super) fn finish(&self, compiling: Compiling) {
        *self.lock() = compiling.kept;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Compiled> {
        // A panic while holding the lock leaves a map that is still whole.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clone for Regexes {
    fn clone(&self) -> Self {
        Regexes(Mutex::new(self.lock().clone()))
    }
}

impl PartialEq for Regexes {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Regexes {}

impl std::fmt::Debug for Regexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} compiled", self.lock().len())
    }
}

/// One validation's regexes: those of the last validation it can reuse,
/// and those it has checked.
#[derive(Default)]
pub(super) struct Compiling {
    previous: Compiled,
    kept: Compiled,
}

impl Compiling {
    /// Checks `pattern` as [`full_match`] compiles it; the error says why.
    pub(super) fn full_match(&mut self, pattern: &str) -> Result<(), String> {
        self.check(anchored(pattern)?)
    }

    /// Checks `pattern` as [`search`] compiles it; the error says why.
    pub(super) fn search(&mut self, pattern: &str) -> Result<(), String> {
        self.check(pattern.to_owned())
    }

    fn check(&mut self, source: String) -> Result<(), String> {
        if self.kept.contains_key(source.as_str()) {
            return Ok(());
        }
        let regex = match self.previous.remove(source.as_str()) {
            Some(regex) => regex,
            None => build(&source)?,
        };
        self.kept.insert(source.into(), regex);
        Ok(())
    }
}

fn build(pattern: &str) -> Result<regex::Regex, String> {
    #[cfg(test)]
    tests::COMPILES.with(|c| c.set(c.get() + 1));
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "is too large: it compiles to more than {limit} bytes \
                 (meshlib's bound, as Envoy bounds RE2's program size)"
            ),
            other => format!("does not compile: {other}"),
        })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    thread_local! {
        /// How many regexes this thread compiled.
        pub(in crate::config) static COMPILES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn a_huge_program_is_refused_fast_and_a_usual_one_compiles() {
        let start = std::time::Instant::now();
        let error = full_match("/1/\\w{100}").unwrap_err();
        assert!(error.starts_with("is too large"), "{error}");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        for pattern in ["/api/v[0-9]+/users/[^/]+", "\\w+", "\\w{14}", ".*"] {
            full_match(pattern).unwrap();
        }
        assert!(full_match("(").unwrap_err().starts_with("does not compile"));
    }

    #[test]
    fn a_pattern_is_matched_whole() {
        let regex = full_match("a|b").unwrap();
        assert!(regex.is_match("a") && !regex.is_match("ab"));
        assert!(search("a|b").unwrap().is_match("xbx"));
    }

    #[test]
    fn a_pattern_that_is_not_a_regex_alone_is_refused_not_left_unanchored() {
        // Found by the matcher fuzz target: wrapped in the anchors, `a)|(b`
        // was `^(?:a)|(b)$`, and matched `ax`.
        for pattern in ["a)|(b", ")(", "a)|(?:b"] {
            let error = full_match(pattern).unwrap_err();
            assert!(error.starts_with("does not compile"), "{pattern}: {error}");
        }
        let yaml = r#"
virtual_hosts:
  - name: vh
    domains: ["*"]
    routes:
      - match: { safe_regex: { regex: "/a)|(/b" } }
        route: { cluster: c }
clusters: [{ name: c, endpoints: [{ address: "127.0.0.1:1" }] }]
"#;
        let error = crate::config::MeshConfig::from_yaml(yaml).unwrap_err();
        assert!(error.to_string().contains("does not compile"), "{error}");
    }
}
