//! Newline-delimited framing for stdio.
//!
//! Each message is one line of UTF-8 JSON. A line longer than the limit is discarded up to its
//! newline and reported once, so a peer cannot make the gateway buffer without bound, and the
//! next line is read normally (the connection survives).

use bytes::{Buf, Bytes, BytesMut};

/// How much of a discarded over-long line is kept for [`LineDecoder::take_discarded_head`]:
/// enough to find the envelope (`id`, `result`) a peer writes first.
pub const DISCARDED_HEAD_BYTES: usize = 16 * 1024;

/// One framing outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its `\n` (and without a trailing `\r`).
    Line(Bytes),
    /// A line exceeded the limit and was discarded; `size` is how many bytes were dropped.
    TooLong {
        /// Bytes discarded (at least the limit).
        size: usize,
    },
}

/// Incremental line decoder with a maximum line length.
#[derive(Debug)]
pub struct LineDecoder {
    max_line: usize,
    /// True while skipping the rest of an over-long line.
    discarding: bool,
    discarded: usize,
    /// How far `buf` has been searched for a newline already.
    scanned: usize,
    /// The first bytes of the last over-long line.
    head: Vec<u8>,
}

impl LineDecoder {
    /// A decoder accepting lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            discarding: false,
            discarded: 0,
            scanned: 0,
            head: Vec::new(),
        }
    }

    /// The first (up to [`DISCARDED_HEAD_BYTES`]) bytes of the line the last
    /// [`Frame::TooLong`] reported, so a receiver can tell which request it answered; empty
    /// once taken.
    pub fn take_discarded_head(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.head)
    }

    fn keep_head(&mut self, bytes: &[u8]) {
        self.head.clear();
        self.head
            .extend_from_slice(&bytes[..bytes.len().min(DISCARDED_HEAD_BYTES)]);
    }

    /// Takes the next frame out of `buf`, or `None` if more bytes are needed.
    ///
    /// Empty lines (keep-alives some peers send) are skipped.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        loop {
            let newline = memchr(b'\n', &buf[self.scanned..]).map(|p| p + self.scanned);
            match newline {
                Some(pos) => {
                    self.scanned = 0;
                    if self.discarding {
                        self.discarding = false;
                        let size = self.discarded + pos;
                        self.discarded = 0;
                        buf.advance(pos + 1);
                        return Some(Frame::TooLong { size });
                    }
                    if pos > self.max_line {
                        self.keep_head(&buf[..pos]);
                        buf.advance(pos + 1);
                        return Some(Frame::TooLong { size: pos });
                    }
                    let mut line = buf.split_to(pos + 1);
                    line.truncate(pos);
                    if line.last() == Some(&b'\r') {
                        line.truncate(pos - 1);
                    }
                    if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                        continue;
                    }
                    return Some(Frame::Line(line.freeze()));
                }
                None => {
                    if self.discarding {
                        self.discarded += buf.len();
                        buf.clear();
                        self.scanned = 0;
                    } else if buf.len() > self.max_line {
                        self.keep_head(&buf[..]);
                        self.discarding = true;
                        self.discarded = buf.len();
                        buf.clear();
                        self.scanned = 0;
                    } else {
                        self.scanned = buf.len();
                    }
                    return None;
                }
            }
        }
    }

    /// Called at end of input: the unterminated rest, if any.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        self.scanned = 0;
        if self.discarding {
            self.discarding = false;
            let size = self.discarded + buf.len();
            buf.clear();
            return Some(Frame::TooLong { size });
        }
        if buf
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            buf.clear();
            return None;
        }
        Some(Frame::Line(buf.split().freeze()))
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

/// Whether `bytes` hold a raw CR or LF. In valid JSON these can only be whitespace between
/// tokens (inside strings they must be escaped), so a writer that finds one replaces it with a
/// space and keeps one message on one line.
pub fn has_line_break(bytes: &[u8]) -> bool {
    memchr::memchr2(b'\n', b'\r', bytes).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(dec: &mut LineDecoder, buf: &mut BytesMut) -> Vec<Frame> {
        let mut out = vec![];
        while let Some(f) = dec.decode(buf) {
            out.push(f);
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_cr() {
        let mut d = LineDecoder::new(100);
        let mut b = BytesMut::from(&b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\""[..]);
        assert_eq!(
            all(&mut d, &mut b),
            vec![
                Frame::Line(Bytes::from_static(b"{\"a\":1}")),
                Frame::Line(Bytes::from_static(b"{\"b\":2}"))
            ]
        );
        b.extend_from_slice(b":3}\n");
        assert_eq!(
            all(&mut d, &mut b),
            vec![Frame::Line(Bytes::from_static(b"{\"c\":3}"))]
        );
    }

    #[test]
    fn discards_an_over_long_line_and_recovers() {
        let mut d = LineDecoder::new(10);
        let mut b = BytesMut::new();
        b.extend_from_slice(&[b'x'; 25]);
        assert_eq!(all(&mut d, &mut b), vec![]);
        assert!(b.is_empty(), "an over-long line is not buffered");
        b.extend_from_slice(&[b'x'; 5]);
        b.extend_from_slice(b"\nok\n");
        assert_eq!(
            all(&mut d, &mut b),
            vec![
                Frame::TooLong { size: 30 },
                Frame::Line(Bytes::from_static(b"ok"))
            ]
        );
    }

    #[test]
    fn keeps_the_head_of_a_discarded_line() {
        // Streamed in pieces: the head is what was buffered when discarding began.
        let mut d = LineDecoder::new(10);
        let mut b = BytesMut::from(&b"{\"id\":7,\"result\""[..]);
        assert_eq!(all(&mut d, &mut b), vec![]);
        b.extend_from_slice(b":1}\n");
        assert_eq!(all(&mut d, &mut b), vec![Frame::TooLong { size: 19 }]);
        assert_eq!(d.take_discarded_head(), b"{\"id\":7,\"result\"");
        assert!(d.take_discarded_head().is_empty(), "taken once");
        // Whole in one buffer, and bounded.
        let mut d = LineDecoder::new(10);
        let mut b = BytesMut::from(&[b'y'; DISCARDED_HEAD_BYTES + 100][..]);
        b.extend_from_slice(b"\n");
        assert_eq!(
            all(&mut d, &mut b),
            vec![Frame::TooLong {
                size: DISCARDED_HEAD_BYTES + 100
            }]
        );
        assert_eq!(d.take_discarded_head().len(), DISCARDED_HEAD_BYTES);
    }

    #[test]
    fn finish_returns_the_unterminated_tail() {
        let mut d = LineDecoder::new(10);
        let mut b = BytesMut::from(&b"abc"[..]);
        assert_eq!(d.decode(&mut b), None);
        assert_eq!(
            d.finish(&mut b),
            Some(Frame::Line(Bytes::from_static(b"abc")))
        );
    }

    proptest! {
        #[test]
        fn has_line_break_finds_exactly_cr_and_lf(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let naive = bytes.iter().any(|&b| b == b'\n' || b == b'\r');
            prop_assert_eq!(has_line_break(&bytes), naive);
        }

        #[test]
        fn chunking_does_not_change_frames(lines in proptest::collection::vec("[a-z{}]{0,20}", 0..10), cut in 1usize..7) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let mut whole = LineDecoder::new(12);
            let mut b = BytesMut::from(text.as_bytes());
            let expected = all(&mut whole, &mut b);
            let mut chunked = LineDecoder::new(12);
            let mut b = BytesMut::new();
            let mut got = vec![];
            for chunk in text.as_bytes().chunks(cut) {
                b.extend_from_slice(chunk);
                got.extend(all(&mut chunked, &mut b));
            }
            prop_assert_eq!(got, expected);
        }
    }
}
