//! A span-keeping reader for JSON with comments and trailing commas (JSONC), the format of
//! VS Code, Zed and several other clients' settings.
//!
//! The tree remembers the byte span of every value and key, so an edit can replace exactly one
//! value and leave every other byte (comments, indentation, key order) untouched.

use std::ops::Range;

/// Deepest nesting accepted: client configs are shallow; this bounds recursion.
pub const MAX_DEPTH: usize = 64;

/// A parsed value with its byte span in the source.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `{...}` with members in source order.
    Object {
        /// Span of the whole object, braces included.
        span: Range<usize>,
        /// Members in source order (duplicate keys are kept; lookups take the last, as
        /// JavaScript-based clients do).
        members: Vec<Member>,
    },
    /// `[...]`.
    Array {
        /// Span, brackets included.
        span: Range<usize>,
        /// Items in order.
        items: Vec<Node>,
    },
    /// A string (decoded).
    String {
        /// Span, quotes included.
        span: Range<usize>,
        /// The decoded text.
        value: String,
    },
    /// Any other scalar (number, `true`, `false`, `null`), kept as source text.
    Scalar {
        /// Span.
        span: Range<usize>,
        /// The literal as written.
        text: String,
    },
}

/// One `"key": value` of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The decoded key.
    pub key: String,
    /// Span of the key, quotes included.
    pub key_span: Range<usize>,
    /// The value.
    pub value: Node,
}

/// Why a JSONC text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at line {line}, column {column}")]
pub struct JsoncError {
    /// What was wrong.
    pub what: &'static str,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl Node {
    /// The value's byte span.
    pub fn span(&self) -> Range<usize> {
        match self {
            Node::Object { span, .. }
            | Node::Array { span, .. }
            | Node::String { span, .. }
            | Node::Scalar { span, .. } => span.clone(),
        }
    }

    /// The member `key` of an object (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object { members, .. } => members
                .iter()
                .rev()
                .find(|m| m.key == key)
                .map(|m| &m.value),
            _ => None,
        }
    }

    /// The members of an object, or none.
    pub fn members(&self) -> &[Member] {
        match self {
            Node::Object { members, .. } => members,
            _ => &[],
        }
    }

    /// The text of a string node.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The strings of an array of strings (`None` if anything else is in it).
    pub fn as_str_array(&self) -> Option<Vec<String>> {
        match self {
            Node::Array { items, .. } => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => None,
        }
    }

    /// The plain JSON value (comments and spans dropped).
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Node::Object { members, .. } => {
                let mut map = serde_json::Map::new();
                for m in members {
                    map.insert(m.key.clone(), m.value.to_value());
                }
                serde_json::Value::Object(map)
            }
            Node::Array { items, .. } => items.iter().map(Node::to_value).collect(),
            Node::String { value, .. } => serde_json::Value::String(value.clone()),
            Node::Scalar { text, .. } => {
                serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
            }
        }
    }
}

/// Parses `text` (JSON, or JSON with `//` and `/* */` comments and trailing commas).
pub fn parse(text: &str) -> Result<Node, JsoncError> {
    let mut p = Parser {
        src: text.as_bytes(),
        text,
        pos: 0,
    };
    // A UTF-8 byte order mark is allowed (Windows editors write one).
    if text.starts_with('\u{feff}') {
        p.pos = 3;
    }
    p.skip_trivia()?;
    let node = p.value(0)?;
    p.skip_trivia()?;
    if p.pos != p.src.len() {
        return Err(p.error("unexpected text after the value"));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, what: &'static str) -> JsoncError {
        let before = &self.text[..self.pos.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        JsoncError { what, line, column }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_trivia(&mut self) -> Result<(), JsoncError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                Some(b'/') if self.src.get(self.pos + 1) == Some(&b'/') => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                Some(b'/') if self.src.get(self.pos + 1) == Some(&b'*') => {
                    let start = self.pos;
                    self.pos += 2;
                    loop {
                        match self.peek() {
                            None => {
                                self.pos = start;
                                return Err(self.error("unterminated comment"));
                            }
                            Some(b'*') if self.src.get(self.pos + 1) == Some(&b'/') => {
                                self.pos += 2;
                                break;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, JsoncError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let (span, value) = self.string()?;
                Ok(Node::String { span, value })
            }
            Some(c) if c == b'-' || c.is_ascii_alphanumeric() => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                let text = &self.text[start..self.pos];
                if serde_json::from_str::<serde_json::Value>(text).is_err() {
                    self.pos = start;
                    return Err(self.error("invalid literal"));
                }
                Ok(Node::Scalar {
                    span: start..self.pos,
                    text: text.to_owned(),
                })
            }
            None => Err(self.error("unexpected end of input")),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node, JsoncError> {
        let start = self.pos;
        self.pos += 1;
        let mut members = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Node::Object {
                        span: start..self.pos,
                        members,
                    });
                }
                Some(b'"') => {}
                _ => return Err(self.error("expected a key or `}`")),
            }
            let (key_span, key) = self.string()?;
            self.skip_trivia()?;
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:`"));
            }
            self.pos += 1;
            self.skip_trivia()?;
            let value = self.value(depth + 1)?;
            members.push(Member {
                key,
                key_span,
                value,
            });
            self.skip_trivia()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node, JsoncError> {
        let start = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Node::Array {
                    span: start..self.pos,
                    items,
                });
            }
            items.push(self.value(depth + 1)?);
            self.skip_trivia()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {}
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn string(&mut self) -> Result<(Range<usize>, String), JsoncError> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None | Some(b'\n') => {
                    self.pos = start;
                    return Err(self.error("unterminated string"));
                }
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = self
            .text
            .get(start..self.pos)
            .ok_or_else(|| self.error("invalid string"))?;
        let value: String = serde_json::from_str(raw).map_err(|_| {
            self.pos = start;
            self.error("invalid string escape")
        })?;
        Ok((start..self.pos, value))
    }
}

/// JSON text for `s`, quoted and escaped.
pub fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests;
