//! A bound on how deeply a YAML document's flow collections (`{…}`, `[…]`)
//! nest, checked before the parser sees the document.
//!
//! libyaml's scanner (which `yaml_serde` ports) does work in proportion to
//! the current flow depth for every token, so parsing is quadratic in it:
//! `{a: ` nested 100,000 deep, a 500 KB file, took 80 s. `yaml_serde` refuses
//! a document nested more than 128 deep, but only once it has parsed all of
//! it; this check refuses it first, in one linear pass.
//!
//! The pass follows libyaml's scanner as far as brackets need: quoted
//! scalars, comments, plain scalars (which in block context may hold
//! brackets, as a regex does: `regex: /v[0-9]+`, and go on over more
//! indented lines), block scalars (`|`, `>`) and, to know where those two
//! end, the indentation of block collections, kept as libyaml keeps it.
//! Tabs, `|2`-style indentation indicators and the like are not followed
//! exactly; files are also parsed off the async runtime (see
//! [`FileWatch`](super::FileWatch)), so a file that got past this would cost
//! a blocking thread, not a runtime worker.

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
    /// Just after a quoted scalar, an alias or a flow collection, where `:`
    /// is an indicator whatever follows it (`{"a":"b"}`).
    AfterNode,
    /// In a double-quoted scalar.
    Double,
    /// In a single-quoted scalar.
    Single,
    /// In a block scalar: its lines are indented at least `min`, and as
    /// much as its first non-blank line (`content`, once seen).
    BlockScalar { min: usize, content: Option<usize> },
}

/// The pass over a document, line by line.
struct Scanner {
    state: State,
    depth: usize,
    /// The columns of the block collections the pass is in, innermost last
    /// (libyaml's indentation stack).
    indents: Vec<usize>,
    /// Where the current block-context token began.
    token_column: usize,
    /// The column a block plain scalar's next line must reach to go on.
    plain_min: usize,
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
            indents: Vec::new(),
            token_column: 0,
            plain_min: 0,
        }
    }

    /// The innermost block collection's column; -1 outside any.
    fn indent(&self) -> isize {
        self.indents.last().map_or(-1, |&i| i as isize)
    }

    /// A block collection's entry at `column`: one more level if deeper.
    fn roll(&mut self, column: usize) {
        if column as isize > self.indent() {
            self.indents.push(column);
        }
    }

    /// A token at `column` closes the block collections deeper than it.
    fn unroll(&mut self, column: usize) {
        while self.indent() > column as isize {
            self.indents.pop();
        }
    }

    /// The column just past the innermost block collection's.
    fn inside(&self) -> usize {
        (self.indent() + 1) as usize
    }

    /// Follows one line; `Err` when the depth goes past the bound.
    fn line(&mut self, line: &str) -> Result<(), ()> {
        let indent = line.bytes().take_while(|b| *b == b' ').count();
        let rest = line.trim_start_matches(' ');
        let blank = rest.trim().is_empty();
        if self.continues(indent, rest, blank) {
            return Ok(());
        }
        let line = line.as_bytes();
        let mut i = indent;
        if self.depth == 0 && self.state == State::TokenStart && !blank {
            if !rest.starts_with('#') {
                self.unroll(indent);
            }
            if indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) {
                i = 3;
            }
        }
        while i < line.len() {
            i = self.byte(line, i)?;
        }
        Ok(())
    }

    /// Whether the line at `indent` (its text from there `rest`) belongs
    /// to the block scalar the pass is in, and so is skipped; also ends a
    /// block plain scalar the line does not continue.
    fn continues(&mut self, indent: usize, rest: &str, blank: bool) -> bool {
        if self.depth > 0 {
            return false;
        }
        match self.state {
            State::BlockScalar { min, content } => {
                if blank {
                    return true;
                }
                let needed = content.unwrap_or(min);
                if indent >= needed {
                    self.state = State::BlockScalar {
                        min,
                        content: Some(content.unwrap_or(indent)),
                    };
                    return true;
                }
                self.state = State::TokenStart;
                false
            }
            State::Plain => {
                let marker = indent == 0 && (rest.starts_with("---") || rest.starts_with("..."));
                if !blank && (indent < self.plain_min || rest.starts_with('#') || marker) {
                    self.state = State::TokenStart;
                }
                blank
            }
            State::AfterNode => {
                self.state = State::TokenStart;
                false
            }
            _ => false,
        }
    }

    /// Follows the byte at `i`; the index of the next one to read.
    fn byte(&mut self, line: &[u8], i: usize) -> Result<usize, ()> {
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
            State::BlockScalar { .. } => return Ok(line.len()),
            State::TokenStart => return self.token(line, i, in_flow, after_blank, ends_token),
            State::Plain | State::AfterNode => match byte {
                b'#' if after_blank => return Ok(line.len()),
                b':' if self.state == State::AfterNode
                    || ends_token
                    || (in_flow && next.is_some_and(is_flow_indicator)) =>
                {
                    if !in_flow {
                        // The scalar before it was a block mapping's key.
                        self.roll(self.token_column);
                    }
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

    /// Follows the byte at `i`, where a token may start.
    fn token(
        &mut self,
        line: &[u8],
        i: usize,
        in_flow: bool,
        after_blank: bool,
        ends_token: bool,
    ) -> Result<usize, ()> {
        let byte = line[i];
        if !in_flow {
            self.token_column = i;
        }
        match byte {
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
            b':' if in_flow || ends_token => {}
            b'-' | b'?' if ends_token => {
                if !in_flow {
                    self.roll(i);
                }
            }
            b'|' | b'>' if !in_flow => {
                self.state = State::BlockScalar {
                    min: self.inside(),
                    content: None,
                };
                return Ok(line.len());
            }
            // An anchor or tag: the node follows it.
            b'&' | b'!' => return Ok(self.skip_name(line, i)),
            b'*' => {
                self.state = State::AfterNode;
                return Ok(self.skip_name(line, i));
            }
            _ => {
                self.state = State::Plain;
                self.plain_min = self.inside();
            }
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
        // A plain scalar goes on over more indented lines, quotes and all.
        assert_eq!(
            depth("a: b\n  \"c\nx: {{{\n"),
            3,
            "a quote continuing a plain scalar"
        );
        assert_eq!(depth("- a: b\n   'c\n  x: [[\n"), 2);
        // A block scalar ends where its mapping's next key is.
        assert_eq!(
            depth("- a: |\n    text\n  b: {{{\n"),
            3,
            "a key after a block scalar"
        );
        assert_eq!(
            depth("a: >\n    t [\n\n    u {\nb: [\n"),
            1,
            "blank lines inside"
        );
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
