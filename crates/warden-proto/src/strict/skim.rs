//! The fast path of [`decode_lazy`](super::decode_lazy): a byte-level validator for the
//! common message, with the serde-based validator behind it for everything else.
//!
//! [`skim`] walks a message once, byte by byte, checking what the serde-based validator checks
//! (JSON syntax as `serde_json` accepts it, UTF-8, duplicate keys, nesting depth) and noting
//! where the envelope's members are. It is deliberately *incomplete*: whatever it is not sure
//! to judge exactly as `serde_json` would it declines (`None`), and the caller then runs the
//! serde-based validator, which gives the verdict and the exact error. So the skim may only
//! ever say yes to what the serde path accepts; it never produces an error of its own.
//! Declined: any syntax error, a top-level value that is not an object, a key with an escape
//! (duplicates are compared after unescaping), a `\u` escape of a surrogate, a control
//! character in a string, a number with a fraction, an exponent or more than 18 digits (those
//! are re-checked by `serde_json` itself, token by token), and nesting beyond the limit or
//! beyond `serde_json`'s own recursion limit. The property tests and the `jsonrpc_decode` fuzz
//! target compare the two paths on arbitrary and mutated input.

use std::ops::Range;

use super::{CheckSeed, SeenKeys, Shape, deserialize_all};

/// Deepest nesting `serde_json` itself accepts: its recursion guard fails the 128th level.
const SERDE_MAX_DEPTH: usize = 127;

/// Where the envelope's members are in a message the skim accepted.
#[derive(Default)]
pub(super) struct Skimmed {
    pub(super) jsonrpc: Option<Range<usize>>,
    pub(super) id: Option<Range<usize>>,
    pub(super) method: Option<Range<usize>>,
    pub(super) error: Option<Range<usize>>,
    pub(super) params: Option<Shape>,
    pub(super) result: Option<Shape>,
}

/// Validates `bytes` as a JSON object nested at most `max_depth` deep; `None` when the skim
/// cannot vouch for it (see the module documentation), which is not a verdict.
pub(super) fn skim(bytes: &[u8], max_depth: usize) -> Option<Skimmed> {
    // Outside strings only ASCII is valid JSON, so checking the whole input once is the same
    // as checking every string (and much faster than per string).
    std::str::from_utf8(bytes).ok()?;
    let mut s = Skim {
        b: bytes,
        i: 0,
        max_depth: max_depth.min(SERDE_MAX_DEPTH),
    };
    s.ws();
    // Anything but an object is declined here (`object` expects its `{`).
    let mut env = Skimmed::default();
    s.object(1, Some(&mut env))?;
    s.ws();
    (s.i == bytes.len()).then_some(env)
}

struct Skim<'a> {
    b: &'a [u8],
    i: usize,
    max_depth: usize,
}

impl<'a> Skim<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// JSON whitespace, as `serde_json` skips it.
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// One value at nesting `depth` (containers count from 1); its shape.
    fn value(&mut self, depth: usize) -> Option<Shape> {
        match self.peek()? {
            b'{' => self.object(depth, None).map(|()| Shape::Object),
            b'[' => self.array(depth).map(|()| Shape::Array),
            b'"' => self.string(false).map(|_| Shape::Scalar),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<Shape> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| {
            self.i = end;
            Shape::Scalar
        })
    }

    /// An object starting at `{`. With `env`, it is the top-level one: its envelope members
    /// are noted.
    fn object(&mut self, depth: usize, mut env: Option<&mut Skimmed>) -> Option<()> {
        if self.open(depth, b'{', b'}')? {
            return Some(());
        }
        let mut keys = SeenKeys::new();
        loop {
            let key = self.string(true)?;
            if !keys.insert(key) {
                return None;
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            let start = self.i;
            let shape = self.value(depth + 1)?;
            if let Some(env) = env.as_deref_mut() {
                let span = Some(start..self.i);
                match key {
                    b"jsonrpc" => env.jsonrpc = span,
                    b"id" => env.id = span,
                    b"method" => env.method = span,
                    b"error" => env.error = span,
                    b"params" => env.params = Some(shape),
                    b"result" => env.result = Some(shape),
                    _ => {}
                }
            }
            if !self.more(b'}')? {
                return Some(());
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if self.open(depth, b'[', b']')? {
            return Some(());
        }
        loop {
            self.value(depth + 1)?;
            if !self.more(b']')? {
                return Some(());
            }
        }
    }

    /// Enters a container at nesting `depth` (within the limit) at its `open` byte; whether it
    /// is empty (its `close` byte consumed).
    fn open(&mut self, depth: usize, open: u8, close: u8) -> Option<bool> {
        if depth > self.max_depth {
            return None;
        }
        self.eat(open)?;
        self.ws();
        let empty = self.peek()? == close;
        if empty {
            self.i += 1;
        }
        Some(empty)
    }

    /// After a container's member: whether another follows (`,`), or the container ends
    /// (`close`).
    fn more(&mut self, close: u8) -> Option<bool> {
        self.ws();
        match self.next()? {
            b',' => {
                self.ws();
                Some(true)
            }
            c if c == close => Some(false),
            _ => None,
        }
    }

    /// A string starting at `"`; its raw content. A key (`is_key`) with an escape is declined:
    /// keys are compared unescaped.
    fn string(&mut self, is_key: bool) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            let rest = self.b.get(self.i..)?;
            let n = memchr::memchr2(b'"', b'\\', rest)?;
            // A control character: serde_json refuses it. (UTF-8 was checked up front; bytes
            // >= 0x80 are parts of valid characters.) Branch-free, so it vectorises.
            if rest[..n].iter().fold(false, |any, &c| any | (c < 0x20)) {
                return None;
            }
            self.i += n + 1;
            match rest[n] {
                b'"' => return Some(&self.b[start..self.i - 1]),
                _ if !is_key => self.escape()?,
                // An escaped key.
                _ => return None,
            }
        }
    }

    /// The rest of an escape after its `\`.
    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hex = self.b.get(self.i..self.i.checked_add(4)?)?;
                let mut code: u32 = 0;
                for &h in hex {
                    code = code * 16 + char::from(h).to_digit(16)?;
                }
                self.i += 4;
                // Surrogates must pair up; serde_json judges those.
                (!(0xD800..=0xDFFF).contains(&code)).then_some(())
            }
            _ => None,
        }
    }

    /// A number: an integer of at most 18 digits is valid as it stands; anything longer, or
    /// with a fraction or an exponent, is judged by `serde_json` (range, rounding).
    fn number(&mut self) -> Option<Shape> {
        let start = self.i;
        if self.peek()? == b'-' {
            self.i += 1;
        }
        let digits = self.digits();
        if digits == 0 || (digits > 1 && self.b[self.i - digits] == b'0') {
            return None;
        }
        let mut simple = digits <= 18;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
            simple = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            simple = false;
        }
        if !simple {
            deserialize_all(&self.b[start..self.i], CheckSeed { depth_left: 1 }).ok()?;
        }
        Some(Shape::Scalar)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }
}
