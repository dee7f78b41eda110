//! Server-sent events: an incremental parser for upstream streams and an encoder for clients.
//!
//! The parser follows the WHATWG event-stream rules the Streamable HTTP transport uses: fields
//! `event`, `data` (several lines joined with `\n`), `id` and `retry`; lines starting with `:`
//! are comments; a blank line dispatches the event. Any of `\r\n`, `\n` or `\r` ends a line.
//! An event larger than the limit is dropped and reported, so an upstream cannot make the
//! gateway buffer without bound.

use bytes::{Buf, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event` field (`None` means the default type, `message`).
    pub event: Option<String>,
    /// The data, lines joined with `\n`.
    pub data: String,
    /// The `id` field of this event, if it had one.
    pub id: Option<String>,
    /// The `retry` field, in milliseconds.
    pub retry: Option<u64>,
}

/// What the parser produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A complete event.
    Event(Event),
    /// An event exceeded the size limit and was dropped.
    TooLarge,
}

/// Incremental event-stream parser.
#[derive(Debug)]
pub struct SseParser {
    max_event: usize,
    current: Event,
    has_data: bool,
    size: usize,
    oversized: bool,
    /// A `\r` ended the previous chunk: a `\n` at the start of the next one belongs to it.
    pending_cr: bool,
    started: bool,
    /// The bytes before `buf` were part of the current line (dropped as over-long).
    mid_line: bool,
}

impl SseParser {
    /// A parser that drops events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            max_event,
            current: Event::default(),
            has_data: false,
            size: 0,
            oversized: false,
            pending_cr: false,
            started: false,
            mid_line: false,
        }
    }

    /// Takes the next item out of `buf`, or `None` when more bytes are needed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Option<SseItem> {
        loop {
            if self.pending_cr && !buf.is_empty() {
                if buf[0] == b'\n' {
                    buf.advance(1);
                }
                self.pending_cr = false;
            }
            if !self.started {
                // A UTF-8 byte order mark may open the stream.
                if buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(buf) && !buf.is_empty() {
                    return None;
                }
                if buf.starts_with(b"\xEF\xBB\xBF") {
                    buf.advance(3);
                    self.started = true;
                }
                if !buf.is_empty() {
                    self.started = true;
                }
            }
            let end = memchr::memchr2(b'\n', b'\r', buf);
            let Some(end) = end else {
                if !buf.is_empty() && self.size + buf.len() + 1 > self.max_event {
                    self.size += buf.len();
                    self.oversized = true;
                    self.mid_line = true;
                    buf.clear();
                }
                return None;
            };
            let line = buf.split_to(end);
            let terminator = buf[0];
            buf.advance(1);
            if terminator == b'\r' {
                if buf.first() == Some(&b'\n') {
                    buf.advance(1);
                } else if buf.is_empty() {
                    self.pending_cr = true;
                }
            }
            let continued = std::mem::replace(&mut self.mid_line, false);
            if line.is_empty() && !continued {
                if let Some(item) = self.dispatch() {
                    return Some(item);
                }
                continue;
            }
            self.size += line.len() + 1;
            if self.size > self.max_event {
                self.oversized = true;
            }
            if self.oversized {
                continue;
            }
            self.field(&line);
        }
    }

    fn field(&mut self, line: &[u8]) {
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.current.event = Some(value.into_owned()),
            b"data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.has_data = true;
            }
            b"id" if !value.contains('\0') => self.current.id = Some(value.into_owned()),
            b"retry" => {
                if let Ok(ms) = value.parse() {
                    self.current.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<SseItem> {
        let event = std::mem::take(&mut self.current);
        let had_data = std::mem::replace(&mut self.has_data, false);
        let oversized = std::mem::replace(&mut self.oversized, false);
        self.size = 0;
        if oversized {
            return Some(SseItem::TooLarge);
        }
        if had_data || event.id.is_some() || event.retry.is_some() {
            return Some(SseItem::Event(event));
        }
        None
    }
}

/// Encodes one event. `data` may contain newlines; each line becomes a `data:` field.
pub fn encode(out: &mut Vec<u8>, id: Option<&str>, event: Option<&str>, data: &[u8]) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    // Every line break a client's parser reads as one (`\r\n`, `\r`, `\n`: in a JSON-RPC
    // message only whitespace between tokens) starts a new `data` line, which the client joins
    // back with `\n`. A bare `\r` written as it is would end the line in the middle of the
    // message, and the client would read a broken one.
    let mut rest = data;
    loop {
        let end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..end]);
        out.push(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.push(b'\n');
}

/// Encodes a `retry` hint with an optional id and empty data (a priming event).
pub fn encode_retry(out: &mut Vec<u8>, id: Option<&str>, retry_ms: u64) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(format!("retry: {retry_ms}\ndata: \n\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(p: &mut SseParser, b: &mut BytesMut) -> Vec<SseItem> {
        let mut v = vec![];
        while let Some(i) = p.next(b) {
            v.push(i);
        }
        v
    }

    #[test]
    fn parses_fields_and_multiline_data() {
        let mut p = SseParser::new(1 << 16);
        let mut b = BytesMut::from(
            &b": comment\nid: 7\nevent: message\ndata: {\"a\":\ndata: 1}\nretry: 300\n\n"[..],
        );
        assert_eq!(
            all(&mut p, &mut b),
            vec![SseItem::Event(Event {
                event: Some("message".into()),
                data: "{\"a\":\n1}".into(),
                id: Some("7".into()),
                retry: Some(300),
            })]
        );
    }

    #[test]
    fn accepts_crlf_and_cr_line_ends_across_chunks() {
        let mut p = SseParser::new(1 << 16);
        let mut b = BytesMut::from(&b"data: a\r"[..]);
        assert_eq!(all(&mut p, &mut b), vec![]);
        b.extend_from_slice(b"\n\r\n");
        let got = all(&mut p, &mut b);
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], SseItem::Event(e) if e.data == "a"));
    }

    #[test]
    fn a_crlf_split_across_reads_does_not_end_the_event() {
        // Found by fuzzing (docs/fuzzing.md, F1).
        let mut p = SseParser::new(1 << 10);
        let mut b = BytesMut::from(&b"data: a\r"[..]);
        assert_eq!(all(&mut p, &mut b), vec![]);
        b.extend_from_slice(b"\ndata: b\r\n\r\n");
        let got = all(&mut p, &mut b);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(matches!(&got[0], SseItem::Event(e) if e.data == "a\nb"));
    }

    #[test]
    fn the_rest_of_a_dropped_event_is_not_delivered_as_another() {
        // Found by fuzzing (docs/fuzzing.md, F2): the newline of a dropped over-long line is
        // not a blank line.
        let mut p = SseParser::new(16);
        let mut b = BytesMut::new();
        b.extend_from_slice(b"data: ");
        b.extend_from_slice(&[b'x'; 40]);
        assert_eq!(all(&mut p, &mut b), vec![]);
        b.extend_from_slice(b"\nid: 9\ndata: tail\n\n");
        assert_eq!(all(&mut p, &mut b), vec![SseItem::TooLarge]);
    }

    #[test]
    fn priming_event_with_only_an_id_is_dispatched() {
        let mut p = SseParser::new(100);
        let mut b = BytesMut::from(&b"id: 0\ndata:\n\n"[..]);
        let got = all(&mut p, &mut b);
        assert!(
            matches!(&got[0], SseItem::Event(e) if e.id.as_deref() == Some("0") && e.data.is_empty())
        );
    }

    #[test]
    fn drops_oversized_event_and_continues() {
        let mut p = SseParser::new(16);
        let mut b = BytesMut::new();
        b.extend_from_slice(b"data: ");
        b.extend_from_slice(&[b'x'; 100]);
        assert_eq!(all(&mut p, &mut b), vec![]);
        assert!(b.len() < 20, "oversized data is not buffered");
        b.extend_from_slice(b"\n\ndata: ok\n\n");
        let got = all(&mut p, &mut b);
        assert_eq!(got[0], SseItem::TooLarge);
        assert!(matches!(&got[1], SseItem::Event(e) if e.data == "ok"));
    }

    #[test]
    fn encode_round_trips() {
        let mut out = vec![];
        encode(&mut out, Some("s1-4"), None, b"{\"x\":1}");
        let mut p = SseParser::new(1 << 10);
        let mut b = BytesMut::from(&out[..]);
        assert!(
            matches!(&all(&mut p, &mut b)[0], SseItem::Event(e) if e.data == "{\"x\":1}" && e.id.as_deref() == Some("s1-4"))
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_chunking_is_invisible(bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b'd'), Just(b' '), any::<u8>()], 0..200), cut in 1usize..9) {
            let mut whole = SseParser::new(64);
            let mut b = BytesMut::from(&bytes[..]);
            let expected = all(&mut whole, &mut b);
            let mut chunked = SseParser::new(64);
            let mut b = BytesMut::new();
            let mut got = vec![];
            for c in bytes.chunks(cut) {
                b.extend_from_slice(c);
                got.extend(all(&mut chunked, &mut b));
            }
            // Oversize detection may trigger earlier when a chunk boundary splits a line, but
            // events that fit are identical.
            let ok = |v: &Vec<SseItem>| v.iter().filter(|i| matches!(i, SseItem::Event(_))).cloned().collect::<Vec<_>>();
            prop_assert_eq!(ok(&got), ok(&expected));
        }

        /// Whatever line breaks the data holds (a JSON message may have `\r` between tokens),
        /// a client reads one event with that data, each break read as `\n`: a bare `\r` does
        /// not cut the message short.
        #[test]
        fn encoded_data_is_read_back_as_one_event(data in "[a-z{}:\" \r\n]{0,100}") {
            let mut out = vec![];
            encode(&mut out, Some("s1-1"), None, data.as_bytes());
            let mut p = SseParser::new(1 << 16);
            let mut b = BytesMut::from(&out[..]);
            let got = all(&mut p, &mut b);
            let expected = data.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(got.len(), 1);
            let SseItem::Event(e) = &got[0] else { panic!("{got:?}") };
            prop_assert_eq!(&e.data, &expected);
        }
    }
}
