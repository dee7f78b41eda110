//! W3C trace context (`traceparent`, version `00`) and the sampling decision.
//!
//! Parsing is strict: exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase hex only, neither id
//! all zeros. Anything else is not a parent: the gateway starts a new trace instead, and never
//! reports the client's malformed header back as an error.

use std::fmt;

/// A 16-byte trace id, never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id, never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

/// Bit of `trace-flags` that says the caller recorded (sampled) its span.
pub const FLAG_SAMPLED: u8 = 0x01;

/// Length of a version-00 `traceparent`: `00-` + 32 + `-` + 16 + `-` + 2.
pub const TRACEPARENT_LEN: usize = 55;

impl TraceId {
    /// A random trace id from the thread's CSPRNG (never all zeros).
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0; 16] {
                return Self(bytes);
            }
        }
    }

    /// The id from its bytes; `None` for all zeros (the W3C invalid value).
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(Self(bytes))
    }

    /// The id's bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// Lowercase hex, 32 characters.
    ///
    /// ```
    /// let id = warden_trace::TraceId::from_bytes([0xab; 16]).unwrap();
    /// assert_eq!(id.to_hex(), "ab".repeat(16));
    /// ```
    pub fn to_hex(self) -> String {
        hex(&self.0)
    }

    /// Parses 32 lowercase hex digits (not all zeros).
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0; 16];
        decode_hex(text, &mut bytes)?;
        Self::from_bytes(bytes)
    }
}

impl SpanId {
    /// A random span id from the thread's CSPRNG (never all zeros).
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 8] = rand::random();
            if bytes != [0; 8] {
                return Self(bytes);
            }
        }
    }

    /// The id from its bytes; `None` for all zeros (the W3C invalid value).
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (bytes != [0; 8]).then_some(Self(bytes))
    }

    /// The id's bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// Lowercase hex, 16 characters.
    pub fn to_hex(self) -> String {
        hex(&self.0)
    }

    /// Parses 16 lowercase hex digits (not all zeros).
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0; 8];
        decode_hex(text, &mut bytes)?;
        Self::from_bytes(bytes)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", self.to_hex())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// One lowercase hex digit (W3C: uppercase is invalid in `traceparent`).
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Fills `out` from exactly `2 * out.len()` lowercase hex digits.
fn decode_hex(text: &str, out: &mut [u8]) -> Option<()> {
    let bytes = text.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

/// A parsed version-00 `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span (the parent of the span that receives this header).
    pub parent_id: SpanId,
    /// `trace-flags`; bit 0 is [`FLAG_SAMPLED`].
    pub flags: u8,
}

/// Why a `traceparent` is not a valid parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Not exactly 55 bytes.
    #[error("traceparent must be 55 characters, got {0}")]
    Length(usize),
    /// A `-` is missing where the fields meet.
    #[error("traceparent fields must be separated by `-`")]
    Delimiter,
    /// The version is not `00`.
    #[error("traceparent version is not 00")]
    Version,
    /// A field holds something other than lowercase hex.
    #[error("traceparent field `{0}` is not lowercase hex")]
    Hex(&'static str),
    /// The trace id is all zeros.
    #[error("traceparent trace-id is all zeros")]
    ZeroTraceId,
    /// The parent id is all zeros.
    #[error("traceparent parent-id is all zeros")]
    ZeroParentId,
}

impl TraceParent {
    /// Parses a version-00 `traceparent` strictly.
    ///
    /// ```
    /// use warden_trace::TraceParent;
    /// let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// assert!(tp.sampled());
    /// assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// assert!(TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_err());
    /// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, TraceParentError> {
        let b = text.as_bytes();
        if b.len() != TRACEPARENT_LEN {
            return Err(TraceParentError::Length(b.len()));
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(TraceParentError::Delimiter);
        }
        // Length and delimiters are ASCII-checked above, so these slices fall on char
        // boundaries only if the text before them is ASCII; `get` refuses otherwise.
        let field = |range: std::ops::Range<usize>| text.get(range).unwrap_or("");
        if field(0..2) != "00" {
            return Err(TraceParentError::Version);
        }
        let mut trace = [0; 16];
        decode_hex(field(3..35), &mut trace).ok_or(TraceParentError::Hex("trace-id"))?;
        let mut parent = [0; 8];
        decode_hex(field(36..52), &mut parent).ok_or(TraceParentError::Hex("parent-id"))?;
        let mut flags = [0; 1];
        decode_hex(field(53..55), &mut flags).ok_or(TraceParentError::Hex("trace-flags"))?;
        Ok(Self {
            trace_id: TraceId::from_bytes(trace).ok_or(TraceParentError::ZeroTraceId)?,
            parent_id: SpanId::from_bytes(parent).ok_or(TraceParentError::ZeroParentId)?,
            flags: flags[0],
        })
    }

    /// True when the caller sampled its span.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id.to_hex(),
            self.parent_id.to_hex(),
            self.flags
        )
    }
}

/// The gateway's span for one request: its ids, its parent, and whether it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace (the client's, or a new one).
    pub trace_id: TraceId,
    /// The gateway's span.
    pub span_id: SpanId,
    /// The client's span, when the request carried a valid `traceparent`.
    pub parent: Option<SpanId>,
    /// Whether the span is recorded and exported.
    pub sampled: bool,
}

impl SpanContext {
    /// The span as an audit record names it (boxed, as records hold it).
    pub fn audit_ref(&self) -> Box<warden_audit::TraceRef> {
        Box::new(warden_audit::TraceRef {
            trace_id: self.trace_id.to_hex(),
            span_id: self.span_id.to_hex(),
            parent_span_id: self.parent.map(SpanId::to_hex),
        })
    }

    /// The `traceparent` that makes this span the parent of the upstream's work.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: if self.sampled { FLAG_SAMPLED } else { 0 },
        }
    }
}

/// Which requests are recorded: the client's decision when it sent a valid `traceparent`
/// (parent-based, as the OpenTelemetry default sampler), otherwise a fixed ratio of new traces,
/// decided from the trace id so that every hop of one trace decides alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// Traces whose low 56 id bits are below this are sampled (`1 << 56` samples all).
    threshold: u64,
}

/// The sampler compares this many low bits of the trace id (as OpenTelemetry's
/// `TraceIdRatioBased` does), the bits W3C asks to be random.
const RATIO_BITS: u32 = 56;

impl Sampler {
    /// Samples `ratio` of new traces (clamped to 0..=1; NaN samples none).
    ///
    /// ```
    /// use warden_trace::{Sampler, TraceId};
    /// let id = TraceId::random();
    /// assert!(Sampler::ratio(1.0).sample(None, id));
    /// assert!(!Sampler::ratio(0.0).sample(None, id));
    /// ```
    pub fn ratio(ratio: f64) -> Self {
        let full = 1u64 << RATIO_BITS;
        let threshold = if ratio.is_nan() || ratio <= 0.0 {
            0
        } else if ratio >= 1.0 {
            full
        } else {
            // ratio is in (0, 1), so the product is in (0, 2^56): the cast cannot saturate.
            (ratio * (1u64 << RATIO_BITS) as f64) as u64
        };
        Self { threshold }
    }

    /// Whether the gateway span of a request in trace `trace_id`, with client context `parent`,
    /// is recorded.
    pub fn sample(&self, parent: Option<&TraceParent>, trace_id: TraceId) -> bool {
        match parent {
            Some(p) => p.sampled(),
            None => {
                let b = trace_id.to_bytes();
                let mut low = [0; 8];
                low.copy_from_slice(&b[8..]);
                (u64::from_be_bytes(low) & ((1u64 << RATIO_BITS) - 1)) < self.threshold
            }
        }
    }
}

#[cfg(test)]
mod tests;
