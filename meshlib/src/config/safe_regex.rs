//! Envoy's `safe_regex`, compiled one way for the configuration's checks and
//! for the route table, so a pattern that passes the checks always builds.
//!
//! Envoy compiles with RE2 and refuses a program of more than
//! `max_program_size` instructions (100 by default). The `regex` crate bounds
//! the compiled program's heap size in bytes instead ([`REGEX_SIZE_LIMIT`]):
//! see there for how the two compare.

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
    build(&format!("^(?:{pattern})$"))
}

/// A regex that finds its matches anywhere in the value (`regex_rewrite`).
pub(crate) fn search(pattern: &str) -> Result<regex::Regex, String> {
    build(pattern)
}

fn build(pattern: &str) -> Result<regex::Regex, String> {
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
mod tests {
    use super::*;

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
}
