//! Request paths normalised before routing: Envoy's HttpConnectionManager
//! `normalize_path` (RFC 3986: §6.2.2.2, percent-encoded unreserved
//! characters decoded, and §5.2.4, dot segments removed) and
//! `merge_slashes` (runs of `/` made one, after normalisation, as Envoy
//! orders them). Both are off by default, as in Envoy, which recommends
//! turning them on wherever routes guard what a path may reach: unnormalised,
//! `/public/../admin` matches a `/public` route and reaches `/admin` upstream.
//!
//! The normalised path is matched and is the one sent upstream, as Envoy
//! does. As Envoy's (Chromium's) canonicaliser, `..` above the root is
//! dropped rather than refused (`/../a` is `/a`), escapes other than of
//! unreserved characters are kept as written (no case normalisation), and a
//! path that does not start with `/` (other than `*`) cannot be normalised:
//! the request fails, where Envoy answers 400.

use std::borrow::Cow;

/// Which of the two normalisations a configuration turns on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PathNormalization {
    pub(crate) normalize: bool,
    pub(crate) merge_slashes: bool,
}

impl PathNormalization {
    /// `path` normalised, borrowed when nothing changed; an error saying
    /// why when it cannot be.
    pub(crate) fn apply<'p>(&self, path: &'p str) -> Result<Cow<'p, str>, &'static str> {
        if !self.normalize && !self.merge_slashes || path == "*" {
            return Ok(Cow::Borrowed(path));
        }
        if !path.starts_with('/') {
            return Err("does not start with `/`");
        }
        let mut path = Cow::Borrowed(path);
        if self.normalize {
            path = then(path, decode_unreserved);
            path = then(path, remove_dot_segments);
        }
        if self.merge_slashes {
            path = then(path, merge_slashes);
        }
        Ok(path)
    }
}

/// `step` applied to `path`, keeping it borrowed when neither changes it.
fn then<'p>(path: Cow<'p, str>, step: fn(&str) -> Cow<'_, str>) -> Cow<'p, str> {
    match path {
        Cow::Borrowed(borrowed) => step(borrowed),
        Cow::Owned(owned) => Cow::Owned(step(&owned).into_owned()),
    }
}

/// RFC 3986 §2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// `%XX` of an unreserved character decoded (`%41` is `A`, `%2e` is `.`);
/// every other escape kept as written.
fn decode_unreserved(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let escaped_unreserved = |at: usize| -> Option<u8> {
        let hex = bytes.get(at + 1..at + 3)?;
        let hex = std::str::from_utf8(hex).ok()?;
        u8::from_str_radix(hex, 16)
            .ok()
            .filter(|b| is_unreserved(*b))
    };
    if !(0..bytes.len()).any(|i| bytes[i] == b'%' && escaped_unreserved(i).is_some()) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], escaped_unreserved(i)) {
            (b'%', Some(byte)) => {
                out.push(char::from(byte));
                i += 3;
            }
            _ => {
                // Copied a whole character at a time, so the text stays UTF-8.
                let len = path[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&path[i..i + len]);
                i += len;
            }
        }
    }
    Cow::Owned(out)
}

/// RFC 3986 §5.2.4 on an absolute path: `.` segments dropped, each `..`
/// dropping the segment before it (none above the root); a path that ends
/// in one of them ends with `/`.
fn remove_dot_segments(path: &str) -> Cow<'_, str> {
    let segments = path.split('/').skip(1);
    if !segments.clone().any(|s| s == "." || s == "..") {
        return Cow::Borrowed(path);
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut ends_in_directory = false;
    for segment in segments {
        ends_in_directory = matches!(segment, "." | "..");
        match segment {
            "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if ends_in_directory || out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Runs of `/` made one.
fn merge_slashes(path: &str) -> Cow<'_, str> {
    if !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: PathNormalization = PathNormalization {
        normalize: true,
        merge_slashes: true,
    };

    #[test]
    fn dot_segments_go_as_rfc_3986_removes_them() {
        let normalize = PathNormalization {
            normalize: true,
            merge_slashes: false,
        };
        let cases = [
            ("/public/../admin/secret", "/admin/secret"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/../a", "/a"),
            ("/..", "/"),
            ("/a/%2e%2E/b", "/b"),
            ("/a/%2E./b", "/b"),
            ("/a//../b", "/a/b"),
            ("/a/..b/c", "/a/..b/c"),
            ("/%41%7e%2F%20", "/A~%2F%20"),
            ("/a//b", "/a//b"),
            ("/plain", "/plain"),
        ];
        for (path, expected) in cases {
            assert_eq!(normalize.apply(path).unwrap(), expected, "{path}");
        }
        assert!(matches!(normalize.apply("/plain"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn slashes_are_merged_after_normalisation() {
        let merge = PathNormalization {
            normalize: false,
            merge_slashes: true,
        };
        assert_eq!(merge.apply("//a///b/").unwrap(), "/a/b/");
        assert_eq!(merge.apply("/a/../b").unwrap(), "/a/../b");
        assert_eq!(BOTH.apply("//a/..//b").unwrap(), "/b");
        assert_eq!(BOTH.apply("/a//b/../c").unwrap(), "/a/c");
    }

    #[test]
    fn off_changes_nothing_and_a_path_without_a_slash_is_refused() {
        let off = PathNormalization::default();
        assert!(matches!(off.apply("/a/../b"), Ok(Cow::Borrowed("/a/../b"))));
        assert_eq!(BOTH.apply("*").unwrap(), "*");
        assert!(BOTH.apply("a/b").is_err());
    }

    #[test]
    fn a_long_path_normalises_in_linear_time() {
        let path = "/a/..".repeat(20_000) + &"//x".repeat(20_000);
        let start = std::time::Instant::now();
        assert_eq!(BOTH.apply(&path).unwrap().len(), 40_000);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
