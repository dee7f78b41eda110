//! The gateway's span for a request, and the request rewritten to carry it upstream in
//! `params._meta.traceparent` (the OpenTelemetry MCP conventions' propagation format).
//!
//! The rewrite edits bytes, not a parsed tree: the message is scanned for where `params` and
//! `params._meta` lie, and only `_meta` is rebuilt (or inserted), so every other byte reaches
//! the upstream exactly as the client wrote it. Nothing here runs unless tracing is configured.

use std::future::Future;

use bytes::Bytes;
use warden_proto::{Limits, Message};

use crate::context::{Sampler, SpanContext, SpanId, TraceId, TraceParent};

/// Key of the W3C trace context in `params._meta`.
pub const TRACEPARENT: &str = "traceparent";
/// Key of the W3C vendor state in `params._meta`.
pub const TRACESTATE: &str = "tracestate";
/// Longest `tracestate` passed through; W3C lets a hop drop what exceeds 512 characters.
pub const MAX_TRACESTATE_BYTES: usize = 512;

tokio::task_local! {
    static CURRENT: SpanContext;
}

/// Runs `future` with `ctx` as the span of the request being handled, so that what happens
/// while handling it (guard decisions) can name the span ([`current`]).
///
/// Not an `async fn`: that would hold `future` twice in its state (the argument and the scoped
/// copy), and request futures are kilobytes that every poll of the caller then carries.
pub fn in_span<F: Future>(ctx: SpanContext, future: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(ctx, future)
}

/// The span of the request this task is handling, inside [`in_span`].
pub fn current() -> Option<SpanContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Starts gateway spans and writes their context into forwarded requests.
#[derive(Debug, Clone, Copy)]
pub struct Propagator {
    sampler: Sampler,
}

impl Propagator {
    /// A propagator sampling with `sampler`.
    pub fn new(sampler: Sampler) -> Self {
        Self { sampler }
    }

    /// The gateway's span for the client request `message`, child of the client's
    /// `params._meta.traceparent` when that is valid (a new trace otherwise), and the request
    /// to forward, whose `params._meta.traceparent` names the gateway's span.
    ///
    /// The client's `tracestate` is kept with a valid parent and dropped with a new trace (it
    /// describes a trace the request no longer belongs to). A request whose `params` or
    /// `params._meta` is not an object is forwarded unchanged (it still gets a span).
    pub fn start(&self, message: Message) -> (Message, SpanContext) {
        let parsed = Envelope::read(message.bytes());
        let parent = parsed.as_ref().and_then(|e| e.parent);
        let trace_id = parent.map_or_else(TraceId::random, |p| p.trace_id);
        let ctx = SpanContext {
            trace_id,
            span_id: SpanId::random(),
            parent: parent.map(|p| p.parent_id),
            sampled: self.sampler.sample(parent.as_ref(), trace_id),
        };
        let Some(envelope) = parsed else {
            return (message, ctx);
        };
        let bytes = envelope.write(&ctx.traceparent());
        let limits = Limits {
            max_message_bytes: bytes.len(),
            // The original passed the gateway's depth limit; the rewrite adds at most
            // `params._meta` (depth 3) at the top, and serde_json bounds recursion anyway.
            max_depth: usize::MAX,
        };
        match warden_proto::decode_lazy(Bytes::from(bytes), &limits) {
            Ok(rewritten) => (rewritten, ctx),
            Err(e) => {
                // Cannot happen for a message that decoded; forward the original if it does.
                tracing::debug!(error = %e, "trace context not injected");
                (message, ctx)
            }
        }
    }
}

/// A byte range of the message.
type Span = std::ops::Range<usize>;

/// One member of a JSON object: the key's text (without quotes, escapes undecoded) and the
/// value's range.
struct Member {
    key: Span,
    value: Span,
}

/// A structural reader over the bytes of a message that is already valid JSON (every
/// [`Message`] is: decoded strictly, or serialised by the gateway). It only finds where values
/// start and end; it never panics and gives up (`None`) on anything unexpected, and the
/// rewritten message is validated again before it is forwarded.
struct Scan<'a> {
    b: &'a [u8],
}

impl Scan<'_> {
    fn ws(&self, mut i: usize) -> usize {
        while matches!(self.b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    /// End of the string starting at `i` (just past its closing quote).
    fn string(&self, i: usize) -> Option<usize> {
        if self.b.get(i) != Some(&b'"') {
            return None;
        }
        let mut j = i + 1;
        loop {
            // Jump to the next quote or backslash: string content is most of a message.
            j += self
                .b
                .get(j..)?
                .iter()
                .position(|&c| c == b'"' || c == b'\\')?;
            match self.b.get(j)? {
                b'"' => return Some(j + 1),
                _ => j += 2,
            }
        }
    }

    /// End of the value starting at `i`.
    fn value(&self, i: usize) -> Option<usize> {
        match self.b.get(i)? {
            b'"' => self.string(i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                loop {
                    match self.b.get(j)? {
                        b'"' => {
                            j = self.string(j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            _ => {
                let mut j = i;
                while !matches!(
                    self.b.get(j),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    j += 1;
                }
                (j > i).then_some(j)
            }
        }
    }

    /// The members of the object at `range` and the position of its closing brace; `None`
    /// when it is not an object.
    fn object(&self, range: &Span) -> Option<(Vec<Member>, usize)> {
        let mut i = self.ws(range.start);
        if self.b.get(i) != Some(&b'{') {
            return None;
        }
        let mut out = Vec::new();
        i = self.ws(i + 1);
        if self.b.get(i) == Some(&b'}') {
            return Some((out, i));
        }
        loop {
            let key_end = self.string(i)?;
            let key = i + 1..key_end - 1;
            i = self.ws(key_end);
            if self.b.get(i) != Some(&b':') {
                return None;
            }
            let start = self.ws(i + 1);
            let end = self.value(start)?;
            out.push(Member {
                key,
                value: start..end,
            });
            i = self.ws(end);
            match self.b.get(i)? {
                b',' => i = self.ws(i + 1),
                b'}' => return Some((out, i)),
                _ => return None,
            }
        }
    }

    /// The text of `range` (a string's content, or a raw value).
    fn text(&self, range: &Span) -> Option<&str> {
        std::str::from_utf8(self.b.get(range.clone())?).ok()
    }

    /// The string value at `range`, unescaped.
    fn string_value(&self, range: &Span) -> Option<String> {
        serde_json::from_str(self.text(range)?).ok()
    }

    /// The member of `members` whose key is `key` (escaped keys are decoded to compare).
    fn find<'m>(&self, members: &'m [Member], key: &str) -> Option<&'m Member> {
        members.iter().find(|m| match self.text(&m.key) {
            Some(raw) if !raw.contains('\\') => raw == key,
            Some(raw) => {
                serde_json::from_str::<String>(&format!("\"{raw}\"")).is_ok_and(|k| k == key)
            }
            None => false,
        })
    }
}

/// What [`Propagator::start`] needs of a request: where `params` and `_meta` are, and the
/// client's trace context.
struct Envelope<'a> {
    scan: Scan<'a>,
    /// End of the top-level object (its closing brace).
    top_close: usize,
    /// `params`: its range and members.
    params: Option<(Span, Vec<Member>)>,
    /// `params._meta`: its range and members.
    meta: Option<(Span, Vec<Member>)>,
    parent: Option<TraceParent>,
    /// The client's `tracestate`, raw, when it is kept.
    tracestate: Option<Span>,
}

impl<'a> Envelope<'a> {
    /// `None` when the message, its `params` or its `_meta` is not an object.
    fn read(bytes: &'a [u8]) -> Option<Self> {
        let scan = Scan { b: bytes };
        let all = 0..bytes.len();
        let (top, top_close) = scan.object(&all)?;
        let params = match scan.find(&top, "params") {
            None => None,
            Some(m) => Some((m.value.clone(), scan.object(&m.value)?.0)),
        };
        let meta = match params.as_ref().and_then(|(_, p)| scan.find(p, "_meta")) {
            None => None,
            Some(m) => Some((m.value.clone(), scan.object(&m.value)?.0)),
        };
        let header = |key: &str| {
            meta.as_ref()
                .and_then(|(_, members)| scan.find(members, key))
                .map(|m| m.value.clone())
        };
        let parent = header(TRACEPARENT)
            .and_then(|range| scan.string_value(&range))
            .and_then(|text| TraceParent::parse(&text).ok());
        // Kept only as a string within bounds, and only under a valid parent.
        let tracestate = header(TRACESTATE).filter(|range| {
            parent.is_some()
                && scan
                    .string_value(range)
                    .is_some_and(|s| s.len() <= MAX_TRACESTATE_BYTES)
        });
        Some(Self {
            scan,
            top_close,
            params,
            meta,
            parent,
            tracestate,
        })
    }

    /// The message with `params._meta` carrying `traceparent` (and the kept `tracestate`);
    /// every other byte as it was.
    fn write(&self, traceparent: &TraceParent) -> Vec<u8> {
        let b = self.scan.b;
        let header = format!("\"{traceparent}\"");
        let mut meta = String::with_capacity(96);
        meta.push('{');
        let mut first = true;
        let mut member = |out: &mut String, key: &str, value: &str| {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(key);
            out.push(':');
            out.push_str(value);
        };
        let mut placed = false;
        if let Some((_, members)) = &self.meta {
            for m in members {
                let key = self.scan.text(&m.key).unwrap_or("");
                let quoted = format!("\"{key}\"");
                let name: Option<String> = if key.contains('\\') {
                    serde_json::from_str(&quoted).ok()
                } else {
                    Some(key.to_owned())
                };
                match name.as_deref() {
                    Some(TRACEPARENT) if !placed => {
                        member(&mut meta, &quoted, &header);
                        placed = true;
                    }
                    Some(TRACEPARENT) => {}
                    Some(TRACESTATE) => {
                        if let Some(state) = &self.tracestate {
                            member(&mut meta, &quoted, self.scan.text(state).unwrap_or("\"\""));
                        }
                    }
                    _ => member(
                        &mut meta,
                        &quoted,
                        self.scan.text(&m.value).unwrap_or("null"),
                    ),
                }
            }
        }
        if !placed {
            member(&mut meta, "\"traceparent\"", &header);
        }
        meta.push('}');
        let mut out = Vec::with_capacity(b.len() + meta.len() + 24);
        match (&self.params, &self.meta) {
            (_, Some((range, _))) => {
                out.extend_from_slice(&b[..range.start]);
                out.extend_from_slice(meta.as_bytes());
                out.extend_from_slice(&b[range.end..]);
            }
            (Some((range, members)), None) => {
                // Before the closing brace of `params`.
                let close = range.end - 1;
                out.extend_from_slice(&b[..close]);
                if !members.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"_meta\":");
                out.extend_from_slice(meta.as_bytes());
                out.extend_from_slice(&b[close..]);
            }
            (None, None) => {
                out.extend_from_slice(&b[..self.top_close]);
                out.extend_from_slice(b",\"params\":{\"_meta\":");
                out.extend_from_slice(meta.as_bytes());
                out.push(b'}');
                out.extend_from_slice(&b[self.top_close..]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
