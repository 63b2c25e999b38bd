//! A bound on how deeply a YAML document's flow collections (`{…}`, `[…]`)
//! nest, checked before the parser sees the document.
//!
//! libyaml's scanner (which `yaml_serde` ports) does work in proportion to
//! the current flow depth for every token, so parsing is quadratic in it:
//! `{a: ` nested 100,000 deep, a 500 KB file, took 80 s. `yaml_serde` refuses
//! a document nested more than 128 deep, but only once it has parsed all of
//! it; this check refuses it first, in one linear pass.
//!
//! The pass follows YAML's tokens as far as brackets need: quoted scalars,
//! comments, plain scalars (which in block context may hold brackets, as a
//! regex does: `regex: /v[0-9]+`) and block scalars (`|`, `>`) are skipped.
//! It is exact for flow collections and for the block documents people
//! write; it does not follow every rule of YAML (a plain scalar continued on
//! a line that starts with a quote, say), which is why files are also parsed
//! off the async runtime (see [`FileWatch`](super::FileWatch)).

/// The deepest flow nesting read: `yaml_serde`'s own limit for any nesting,
/// so no document it would read is refused.
pub(super) const MAX_FLOW_DEPTH: usize = 128;

/// Where the pass is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between tokens: a scalar, collection or comment may start here.
    TokenStart,
    /// In a plain scalar.
    Plain,
    /// Just after a quoted scalar or an alias, where `:` is an indicator
    /// whatever follows it (`{"a":"b"}`).
    AfterNode,
    /// In a double-quoted scalar.
    Double,
    /// In a single-quoted scalar.
    Single,
    /// In a block scalar's content: lines indented more than this.
    BlockScalar(usize),
}

/// The pass over a document, line by line.
struct Scanner {
    state: State,
    depth: usize,
}

/// `Ok` when `text`'s flow collections nest at most [`MAX_FLOW_DEPTH`]
/// deep; else where they go deeper.
pub(super) fn check(text: &str) -> Result<(), String> {
    let mut scanner = Scanner::new();
    for (number, line) in (1..).zip(text.lines()) {
        scanner.line(line).map_err(|()| {
            format!(
                "line {number}: flow collections (`{{…}}`, `[…]`) nest more than \
                 {MAX_FLOW_DEPTH} deep: refused before parsing"
            )
        })?;
    }
    Ok(())
}

impl Scanner {
    fn new() -> Self {
        Scanner {
            state: State::TokenStart,
            depth: 0,
        }
    }

    /// Follows one line; `Err` when the depth goes past the bound.
    fn line(&mut self, line: &str) -> Result<(), ()> {
        let indent = line.bytes().take_while(|b| *b == b' ').count();
        if let State::BlockScalar(parent) = self.state {
            if line.trim().is_empty() || indent > parent {
                return Ok(());
            }
            self.state = State::TokenStart;
        }
        if self.depth == 0 && matches!(self.state, State::Plain | State::AfterNode) {
            // A block plain scalar ends with its line here (its rare
            // continuation lines are read as new tokens).
            self.state = State::TokenStart;
        }
        let line = line.as_bytes();
        let mut i = 0;
        if self.depth == 0 && (line.starts_with(b"---") || line.starts_with(b"...")) {
            i = 3;
        }
        while i < line.len() {
            i = self.byte(line, i, indent)?;
        }
        Ok(())
    }

    /// Follows the byte at `i`; the index of the next one to read.
    fn byte(&mut self, line: &[u8], i: usize, indent: usize) -> Result<usize, ()> {
        let byte = line[i];
        let next = line.get(i + 1).copied();
        let after_blank = i == 0 || matches!(line[i - 1], b' ' | b'\t');
        let ends_token = next.is_none_or(|n| matches!(n, b' ' | b'\t'));
        let in_flow = self.depth > 0;
        match self.state {
            State::Double => match byte {
                b'\\' => return Ok(i + 2),
                b'"' => self.state = State::AfterNode,
                _ => {}
            },
            State::Single => match byte {
                b'\'' if next == Some(b'\'') => return Ok(i + 2),
                b'\'' => self.state = State::AfterNode,
                _ => {}
            },
            State::BlockScalar(_) => return Ok(line.len()),
            State::TokenStart => match byte {
                b' ' | b'\t' => {}
                b'#' if after_blank => return Ok(line.len()),
                b'"' => self.state = State::Double,
                b'\'' => self.state = State::Single,
                b'[' | b'{' => {
                    self.depth += 1;
                    if self.depth > MAX_FLOW_DEPTH {
                        return Err(());
                    }
                }
                b']' | b'}' if in_flow => {
                    self.depth -= 1;
                    self.state = State::AfterNode;
                }
                b',' if in_flow => {}
                b'-' | b'?' | b':' if ends_token || (in_flow && byte == b':') => {}
                b'|' | b'>' if !in_flow => {
                    self.state = State::BlockScalar(indent);
                    return Ok(line.len());
                }
                // An anchor or tag: the node follows it.
                b'&' | b'!' => return Ok(self.skip_name(line, i)),
                b'*' => {
                    self.state = State::AfterNode;
                    return Ok(self.skip_name(line, i));
                }
                _ => self.state = State::Plain,
            },
            State::Plain | State::AfterNode => match byte {
                b'#' if after_blank => return Ok(line.len()),
                b':' if self.state == State::AfterNode
                    || ends_token
                    || (in_flow && next.is_some_and(is_flow_indicator)) =>
                {
                    self.state = State::TokenStart;
                }
                // Ends the scalar: read the indicator again.
                b',' | b'[' | b']' | b'{' | b'}' if in_flow => {
                    self.state = State::TokenStart;
                    return Ok(i);
                }
                _ => {}
            },
        }
        Ok(i + 1)
    }

    /// The index past the anchor, tag or alias name starting at `i`.
    fn skip_name(&self, line: &[u8], i: usize) -> usize {
        let in_flow = self.depth > 0;
        let length = line[i..]
            .iter()
            .take_while(|b| !(matches!(b, b' ' | b'\t') || (in_flow && is_flow_indicator(**b))))
            .count();
        i + length
    }
}

fn is_flow_indicator(byte: u8) -> bool {
    matches!(byte, b',' | b'[' | b']' | b'{' | b'}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_refused_in_one_pass() {
        // 500 KB that took 80 s to parse.
        let text = "{a: ".repeat(100_000);
        let start = std::time::Instant::now();
        let error = check(&text).unwrap_err();
        assert!(error.contains("nest more than 128 deep"), "{error}");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        let error = check(&"[".repeat(129)).unwrap_err();
        assert!(error.starts_with("line 1: "), "{error}");
        assert!(check(&format!("{}{}", "[".repeat(128), "]".repeat(128))).is_ok());
        let error = crate::config::MeshConfig::from_yaml(&text)
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 1: flow collections"), "{error}");
        // Siblings do not add up.
        assert!(check(&"[[1], [2]], ".repeat(1000)).is_ok());
    }

    #[test]
    fn brackets_in_scalars_and_comments_are_not_collections() {
        let depth = |text: &str| {
            let mut scanner = Scanner::new();
            for line in text.lines() {
                scanner.line(line).unwrap();
            }
            scanner.depth
        };
        assert_eq!(depth("regex: /v[0-9+\n"), 0, "a block plain scalar");
        assert_eq!(depth("a: \"[[[\"\nb: '{{'' ['\n"), 0, "quoted scalars");
        assert_eq!(depth("a: 1 # [[[\n# {{{\n"), 0, "comments");
        assert_eq!(depth("a: |\n  [[[\n  {{\nb: [\n"), 1, "a block scalar");
        assert_eq!(depth("a: [x, \"]\", 'y]', z\"]\n"), 0, "flow scalars");
        assert_eq!(depth("a: [x]y, {b: c}\n"), 0);
        assert_eq!(depth("a: { b: [\n  c, d\n  ], e: f"), 1);
        assert_eq!(depth("{\"a\":\"]\", \"b\":[\"}\"]"), 1, "JSON");
        assert_eq!(depth("a: &x [\nb: !!seq {\nc: *x ["), 3, "after properties");
        assert_eq!(depth("--- [\n"), 1, "after a document marker");
    }

    #[test]
    fn the_example_configurations_close_every_collection() {
        for text in [
            include_str!("../../../examples/config/reference.yaml"),
            include_str!("../../../examples/config/aggregate.yaml"),
            include_str!("../../../examples/config/cloudmap.yaml"),
            include_str!("../../../examples/config/dns.yaml"),
            include_str!("../../../examples/config/reviews.yaml"),
        ] {
            let mut scanner = Scanner::new();
            for line in text.lines() {
                scanner.line(line).unwrap();
            }
            assert_eq!(scanner.depth, 0, "every collection is closed");
        }
    }
}
