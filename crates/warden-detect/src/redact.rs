//! Redaction of secrets and personal data from text and from JSON values.
//!
//! Every detected span is replaced by a typed marker, `[REDACTED:<kind>]`. Markers contain no
//! digit, no `@`, no rule keyword and no character any value pattern accepts after a `[`, so
//! redacting redacted text changes nothing (checked by property tests). Overlapping detections
//! are merged into one redaction named after the most specific detection, so no byte of any
//! detection survives.
//!
//! [`redact_json`] redacts every string value and every object key of a `serde_json::Value` in
//! place: the result is still valid JSON with the same shape (same arrays, same objects, strings
//! stay strings). Values of secret-like keys (`"password": "..."`) are checked with the key as
//! context, which plain text scanning of the value alone cannot do.

use std::ops::Range;

use serde::Serialize;
use serde_json::Value;

use crate::finding::Finding;
use crate::pii;
use crate::secrets::{self, DataClass, Detection, generic};
use crate::text::{CLEAN_MAX_BYTES, CleanMemo};

/// Nesting beyond which a JSON value is replaced whole (fails closed): far deeper than any
/// parser the gateway uses accepts.
pub const MAX_JSON_DEPTH: usize = 256;

/// Compiles every detector now (a fraction of a second), so the first redacted message is not
/// slower than the others. Call once at start-up; calling again is free.
pub fn warm_up() {
    secrets::warm_up();
    pii::warm_up();
}

/// Which classes of data to redact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedactOptions {
    /// Credentials, keys, tokens.
    pub secrets: bool,
    /// Personal data (emails, phones, cards, IBANs, national ids).
    pub pii: bool,
}

impl Default for RedactOptions {
    /// Both classes: the zero-config posture redacts secrets and personal data.
    fn default() -> Self {
        RedactOptions {
            secrets: true,
            pii: true,
        }
    }
}

/// One redacted span: its kind and its byte offsets in the original input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Redacted {
    /// Kind named in the marker, e.g. `aws-access-token`.
    pub kind: &'static str,
    /// Start offset in the original input (bytes, on a UTF-8 boundary).
    pub start: usize,
    /// End offset in the original input (bytes, exclusive, on a UTF-8 boundary).
    pub end: usize,
    /// Rule id of the detection that names the span, e.g. `secret.aws-access-token`.
    #[serde(skip)]
    pub rule: &'static str,
    /// Class of the detection that names the span.
    #[serde(skip)]
    pub class: DataClass,
}

impl Redacted {
    /// The span as a range.
    pub fn span(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// Text with secrets replaced by markers, and what was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redaction {
    /// The redacted text.
    pub text: String,
    /// The replaced spans, in order, not overlapping, offsets into the input.
    pub findings: Vec<Redacted>,
}

/// The marker that replaces a span of `kind`.
///
/// ```
/// assert_eq!(warden_detect::redact::marker("jwt"), "[REDACTED:jwt]");
/// ```
pub fn marker(kind: &str) -> String {
    format!("[REDACTED:{kind}]")
}

/// Every secret and personal datum in `text` under `options`, sorted, possibly overlapping.
pub fn scan_with(text: &str, options: RedactOptions) -> Vec<Detection> {
    let mut out = Vec::new();
    if options.secrets {
        out.extend(secrets::scan(text));
    }
    if options.pii {
        out.extend(pii::scan(text));
    }
    out.sort_by_key(|d| (d.span.start, d.span.end));
    out
}

/// Every secret and personal datum in `text` (both classes), sorted, possibly overlapping.
pub fn scan(text: &str) -> Vec<Detection> {
    scan_with(text, RedactOptions::default())
}

/// Findings for the shared report format (`inspect --text`, audit records), one per detection.
pub fn findings(text: &str, field: &str) -> Vec<Finding> {
    scan(text).iter().map(|d| d.to_finding(field)).collect()
}

/// Merges overlapping detections into disjoint spans, each named after its most
/// specific detection (ties: the longest, then the first).
pub fn merge(detections: &[Detection]) -> Vec<Redacted> {
    let mut sorted: Vec<&Detection> = detections.iter().filter(|d| !d.span.is_empty()).collect();
    sorted.sort_by_key(|d| (d.span.start, std::cmp::Reverse(d.span.end)));
    let mut out: Vec<(Redacted, (u8, usize))> = Vec::new();
    for d in sorted {
        let rank = (d.specificity, d.span.len());
        match out.last_mut() {
            Some((last, best)) if d.span.start < last.end => {
                last.end = last.end.max(d.span.end);
                if rank > *best {
                    *best = rank;
                    last.kind = d.kind;
                    last.rule = d.rule;
                    last.class = d.class;
                }
            }
            _ => out.push((
                Redacted {
                    kind: d.kind,
                    start: d.span.start,
                    end: d.span.end,
                    rule: d.rule,
                    class: d.class,
                },
                rank,
            )),
        }
    }
    out.into_iter().map(|(r, _)| r).collect()
}

/// Replaces `spans` (disjoint, sorted, on char boundaries of `text`) by their markers.
fn apply(text: &str, spans: &[Redacted]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in spans {
        out.push_str(&text[at..s.start]);
        out.push_str(&marker(s.kind));
        at = s.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Most scan passes per text. One pass almost always suffices; a second one catches a value
/// that a first-pass detection was hiding (a generic value that ran into an email), after which
/// the text is a fixed point.
const MAX_PASSES: usize = 4;

fn marker_len(kind: &str) -> usize {
    "[REDACTED:".len() + kind.len() + "]".len()
}

/// Maps a span of the redacted text back to the original text; a boundary inside a marker
/// widens to the whole span that marker replaced.
fn map_back(spans: &[Redacted], r: &Range<usize>) -> Range<usize> {
    // `delta` = original offset - redacted offset, for positions after the markers seen so far.
    let mut delta: isize = 0;
    let mut start = None;
    let mut end = None;
    let shift = |p: usize, delta: isize| p.saturating_add_signed(delta);
    for s in spans {
        let marker_start = shift(s.start, -delta);
        let marker_end = marker_start + marker_len(s.kind);
        if start.is_none() && r.start < marker_end {
            start = Some(if r.start < marker_start {
                shift(r.start, delta)
            } else {
                s.start
            });
        }
        if end.is_none() && r.end <= marker_end {
            end = Some(if r.end <= marker_start {
                shift(r.end, delta)
            } else {
                s.end
            });
        }
        let original_len = isize::try_from(s.end - s.start).unwrap_or(isize::MAX);
        let replaced_len = isize::try_from(marker_len(s.kind)).unwrap_or(isize::MAX);
        delta += original_len - replaced_len;
    }
    start.unwrap_or_else(|| shift(r.start, delta))..end.unwrap_or_else(|| shift(r.end, delta))
}

/// How far from a marker a later pass looks for what the redaction revealed. A detection that
/// a first-pass detection hid overlaps or adjoins it, within one match length of the longest
/// bounded rule; everything farther away was already scanned in the same context.
const RESCAN_REACH: usize = 1024;

/// Scans the lines within [`RESCAN_REACH`] of each marker of `current` (the text redacted with
/// `spans`), returning detections with offsets into `current`.
fn rescan_near_markers(
    current: &str,
    spans: &[Redacted],
    options: RedactOptions,
) -> Vec<Detection> {
    let mut windows: Vec<Range<usize>> = Vec::new();
    let mut delta: isize = 0;
    for s in spans {
        let marker_start = s.start.saturating_add_signed(-delta);
        let marker_end = marker_start + marker_len(s.kind);
        let from = marker_start.saturating_sub(RESCAN_REACH);
        let to = marker_end.saturating_add(RESCAN_REACH).min(current.len());
        // Whole lines, so no window edge falls inside a token.
        let from = current[..floor_char(current, from)]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let to = current[ceil_char(current, to)..]
            .find('\n')
            .map_or(current.len(), |i| ceil_char(current, to) + i);
        match windows.last_mut() {
            Some(last) if from <= last.end => last.end = last.end.max(to),
            _ => windows.push(from..to),
        }
        let original_len = isize::try_from(s.end - s.start).unwrap_or(isize::MAX);
        let replaced_len = isize::try_from(marker_len(s.kind)).unwrap_or(isize::MAX);
        delta += original_len - replaced_len;
    }
    let mut out = Vec::new();
    for w in windows {
        for d in scan_with(&current[w.clone()], options) {
            let span = d.span.start + w.start..d.span.end + w.start;
            out.push(Detection { span, ..d });
        }
    }
    out
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(text: &str, mut i: usize) -> usize {
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i.min(text.len())
}

/// Scans, redacts and scans the redacted text again until nothing new is found (at most
/// [`MAX_PASSES`] passes), so that redacting the output finds nothing. `detections` are extra
/// first-pass detections (key-aware JSON values).
fn redact_spans(
    text: &str,
    options: RedactOptions,
    mut detections: Vec<Detection>,
) -> Vec<Redacted> {
    detections.extend(scan_with(text, options));
    let mut spans = merge(&detections);
    for _ in 1..MAX_PASSES {
        if spans.is_empty() {
            break;
        }
        let current = apply(text, &spans);
        let found = rescan_near_markers(&current, &spans, options);
        if found.is_empty() {
            break;
        }
        for d in found {
            let span = map_back(&spans, &d.span);
            detections.push(Detection { span, ..d });
        }
        spans = merge(&detections);
    }
    spans
}

/// Redacts secrets and personal data from `text` under `options`.
pub fn redact_with(text: &str, options: RedactOptions) -> Redaction {
    let findings = redact_spans(text, options, Vec::new());
    Redaction {
        text: apply(text, &findings),
        findings,
    }
}

/// Redacts secrets and personal data from `text`.
///
/// ```
/// let r = warden_detect::redact::redact("key: ghp_R8xT2mQv9LpZ4nW7yK1sB6cJ0dF3hG5aE2uV");
/// assert_eq!(r.text, "key: [REDACTED:github-pat]");
/// assert_eq!((r.findings[0].start, r.findings[0].end), (5, 45));
/// ```
pub fn redact(text: &str) -> Redaction {
    redact_with(text, RedactOptions::default())
}

/// One redaction inside a JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonRedacted {
    /// JSON Pointer (RFC 6901) to the string that was redacted, as it was before redaction. For
    /// an object key, the pointer names the member and `key` is true.
    pub pointer: String,
    /// Whether the redacted string is the member's key rather than a value.
    pub key: bool,
    /// The span, with offsets into that string.
    #[serde(flatten)]
    pub redacted: Redacted,
}

/// Appends `/i` to a JSON pointer without a temporary string.
fn push_index(pointer: &mut String, i: usize) {
    use std::fmt::Write as _;
    // Writing to a `String` cannot fail.
    let _ = write!(pointer, "/{i}");
}

/// Appends `segment` to a JSON pointer, escaped (`~` as `~0`, `/` as `~1`); most keys need
/// no escaping and are copied as they are.
fn push_escaped(pointer: &mut String, segment: &str) {
    if !segment.contains(['~', '/']) {
        pointer.push_str(segment);
        return;
    }
    for c in segment.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// Redacts every string value and object key of `value` in place under `options`, keeping it
/// valid JSON of the same shape, and returns what was redacted.
pub fn redact_json_with(value: &mut Value, options: RedactOptions) -> Vec<JsonRedacted> {
    let mut out = Vec::new();
    let walker = Walker {
        options,
        skip_binary: false,
    };
    walker.walk(value, &mut String::new(), None, 0, &mut out);
    out
}

/// Redacts an MCP result or message that carries content (a `tools/call` result, a resource
/// read, a prompt, a sampling or elicitation message) in place: every string and key, in
/// `content`, `structuredContent`, `contents`, `_meta` and anywhere else, except base64 binary
/// payloads (`data` of `image` and `audio` blocks, `blob` of resource contents), which are
/// opaque bytes: rewriting them would corrupt the image without protecting anything a client
/// shows as text. Returns what was redacted, with JSON Pointers into the original value.
///
/// ```
/// let mut result = serde_json::json!({
///     "content": [
///         {"type": "text", "text": "key AKIAZ3MSJV7WQ4TLBN2K"},
///         {"type": "image", "mimeType": "image/png", "data": "iVBORw0KGgo="}
///     ],
///     "structuredContent": {"owner": "jane@corp.example.com"}
/// });
/// let found = warden_detect::redact::redact_tool_result(&mut result, Default::default());
/// assert_eq!(result["content"][0]["text"], "key [REDACTED:aws-access-token]");
/// assert_eq!(result["content"][1]["data"], "iVBORw0KGgo=");
/// assert_eq!(result["structuredContent"]["owner"], "[REDACTED:email]");
/// assert_eq!(found[0].pointer, "/content/0/text");
/// ```
pub fn redact_tool_result(result: &mut Value, options: RedactOptions) -> Vec<JsonRedacted> {
    let mut out = Vec::new();
    let walker = Walker {
        options,
        skip_binary: true,
    };
    walker.walk(result, &mut String::new(), None, 0, &mut out);
    out
}

/// Redacts every string value and object key of `value` in place, keeping it valid JSON of the
/// same shape, and returns what was redacted.
///
/// ```
/// let mut v = serde_json::json!({"password": "hunter2!x", "note": "mail bob@example.org"});
/// let found = warden_detect::redact::redact_json(&mut v);
/// assert_eq!(v["password"], "[REDACTED:password]");
/// assert_eq!(v["note"], "mail [REDACTED:email]");
/// assert_eq!(found.len(), 2);
/// ```
pub fn redact_json(value: &mut Value) -> Vec<JsonRedacted> {
    redact_json_with(value, RedactOptions::default())
}

/// Redacts one string; `key` is the member name the string is the value of, if any.
fn redact_string(s: &mut String, key: Option<&str>, options: RedactOptions) -> Vec<Redacted> {
    let spans = string_spans(s, key, options);
    if !spans.is_empty() {
        *s = apply(s, &spans);
    }
    spans
}

/// What [`redact_string`] would replace in `s`, without changing it.
fn string_spans(s: &str, key: Option<&str>, options: RedactOptions) -> Vec<Redacted> {
    string_spans_with(s, key, options, true)
}

thread_local! {
    static CLEAN: std::cell::RefCell<CleanMemo> = const { std::cell::RefCell::new(CleanMemo::new()) };
}

/// [`string_spans`], remembering short strings that hold nothing when `memo` is set (tests
/// compare both). Without a secret-like key the spans are a function of the string and the
/// classes looked for alone (the rules are built once and never change), so a short string
/// found clean before, such as a result's keys and tags, is not scanned again; the memo is
/// per thread and seeded with the classes ([`CleanMemo`]).
fn string_spans_with(
    s: &str,
    key: Option<&str>,
    options: RedactOptions,
    memo: bool,
) -> Vec<Redacted> {
    let mut detections = Vec::new();
    // The value of a secret-like key, judged with the key as context.
    let keyed = key
        .filter(|_| options.secrets)
        .and_then(|name| Some((name, generic::key_kind(name)?)));
    let seed = u8::from(options.secrets) | (u8::from(options.pii) << 1);
    let remember = memo && keyed.is_none() && s.len() <= CLEAN_MAX_BYTES;
    if remember && CLEAN.with(|m| m.borrow().contains(s, seed)) {
        return Vec::new();
    }
    if let Some((name, kind)) = keyed
        && generic::plausible_value(kind, s)
        && !s.starts_with("[REDACTED:")
        && !generic::generic_veto(name, s, "")
    {
        let (kind, rule) = match kind {
            generic::KeyKind::Password => ("password", "secret.password"),
            generic::KeyKind::Token => ("generic-secret", "secret.generic-secret"),
        };
        detections.push(Detection {
            kind,
            rule,
            class: DataClass::Secret,
            severity: crate::Severity::Medium,
            span: 0..s.len(),
            specificity: 0,
        });
    }
    let spans = redact_spans(s, options, detections);
    if remember && spans.is_empty() {
        CLEAN.with(|m| m.borrow_mut().insert(s, seed));
    }
    spans
}

/// Whether member `name` of `object` is an MCP binary payload: the `blob` of resource contents
/// (an object with a `uri`), the `data` of an image or audio block. Only those shapes: a server
/// names its other members as it likes, and a `blob` anywhere else is text like any other.
pub fn is_binary_member(object: &serde_json::Map<String, Value>, name: &str) -> bool {
    match name {
        "blob" => object.get("uri").is_some_and(Value::is_string),
        "data" => matches!(
            object.get("type").and_then(Value::as_str),
            Some("image" | "audio")
        ),
        _ => false,
    }
}

struct Walker {
    options: RedactOptions,
    /// Leave base64 binary payloads of MCP content alone.
    skip_binary: bool,
}

/// The finding for a value nested deeper than [`MAX_JSON_DEPTH`] (replaced whole by a marker).
fn too_deep(pointer: &str) -> JsonRedacted {
    JsonRedacted {
        pointer: pointer.to_owned(),
        key: false,
        redacted: Redacted {
            kind: "too-deep",
            start: 0,
            end: 0,
            rule: "secret.too-deep",
            class: DataClass::Secret,
        },
    }
}

impl Walker {
    /// Whether member `name` of `object` is a binary payload this walk leaves alone.
    fn is_binary(&self, object: &serde_json::Map<String, Value>, name: &str) -> bool {
        self.skip_binary && is_binary_member(object, name)
    }

    fn walk(
        &self,
        value: &mut Value,
        pointer: &mut String,
        key: Option<&str>,
        depth: usize,
        out: &mut Vec<JsonRedacted>,
    ) {
        let options = self.options;
        if depth > MAX_JSON_DEPTH {
            *value = Value::String(marker("too-deep"));
            out.push(too_deep(pointer));
            return;
        }
        match value {
            Value::String(s) => {
                for r in redact_string(s, key, options) {
                    out.push(JsonRedacted {
                        pointer: pointer.clone(),
                        key: false,
                        redacted: r,
                    });
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = pointer.len();
                    push_index(pointer, i);
                    self.walk(item, pointer, None, depth + 1, out);
                    pointer.truncate(len);
                }
            }
            Value::Object(map) => {
                let binary: Vec<bool> = map.keys().map(|k| self.is_binary(map, k)).collect();
                let old = std::mem::take(map);
                let mut suffixes: std::collections::HashMap<String, usize> =
                    std::collections::HashMap::new();
                for ((name, mut member), binary) in old.into_iter().zip(binary) {
                    let len = pointer.len();
                    pointer.push('/');
                    push_escaped(pointer, &name);
                    if !binary {
                        self.walk(&mut member, pointer, Some(&name), depth + 1, out);
                    }
                    let mut new_name = name.clone();
                    for r in redact_string(&mut new_name, None, options) {
                        out.push(JsonRedacted {
                            pointer: pointer.clone(),
                            key: true,
                            redacted: r,
                        });
                    }
                    pointer.truncate(len);
                    // Two keys may redact to the same marker: keep both members, distinctly named.
                    let mut unique = new_name.clone();
                    while map.contains_key(&unique) {
                        let n = suffixes.entry(new_name.clone()).or_insert(1);
                        *n += 1;
                        unique = format!("{new_name}#{n}");
                    }
                    map.insert(unique, member);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// What [`Walker::walk`] would redact, read from the borrowed value: the same findings, in
    /// the same order, with the same pointers.
    fn scan(
        &self,
        value: &Value,
        pointer: &mut String,
        key: Option<&str>,
        depth: usize,
        out: &mut Vec<JsonRedacted>,
    ) {
        let options = self.options;
        if depth > MAX_JSON_DEPTH {
            out.push(too_deep(pointer));
            return;
        }
        match value {
            Value::String(s) => {
                for r in string_spans(s, key, options) {
                    out.push(JsonRedacted {
                        pointer: pointer.clone(),
                        key: false,
                        redacted: r,
                    });
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = pointer.len();
                    push_index(pointer, i);
                    self.scan(item, pointer, None, depth + 1, out);
                    pointer.truncate(len);
                }
            }
            Value::Object(map) => {
                for (name, member) in map {
                    let len = pointer.len();
                    pointer.push('/');
                    push_escaped(pointer, name);
                    if !self.is_binary(map, name) {
                        self.scan(member, pointer, Some(name), depth + 1, out);
                    }
                    for r in string_spans(name, None, options) {
                        out.push(JsonRedacted {
                            pointer: pointer.clone(),
                            key: true,
                            redacted: r,
                        });
                    }
                    pointer.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// What [`redact_tool_result`] would redact in `result`, found without changing or copying it:
/// the same findings with the same pointers. A guard that only reports, or finds nothing,
/// never needs a copy of the result.
///
/// ```
/// let result = serde_json::json!({
///     "content": [{"type": "text", "text": "key AKIAZ3MSJV7WQ4TLBN2K"}]
/// });
/// let found = warden_detect::redact::scan_tool_result(&result, Default::default());
/// assert_eq!(found[0].pointer, "/content/0/text");
/// assert_eq!(found[0].redacted.kind, "aws-access-token");
/// ```
pub fn scan_tool_result(result: &Value, options: RedactOptions) -> Vec<JsonRedacted> {
    let mut out = Vec::new();
    let walker = Walker {
        options,
        skip_binary: true,
    };
    walker.scan(result, &mut String::new(), None, 0, &mut out);
    out
}

/// What [`redact_json_with`] would redact in `value`, found without changing or copying it.
pub fn scan_json_with(value: &Value, options: RedactOptions) -> Vec<JsonRedacted> {
    let mut out = Vec::new();
    let walker = Walker {
        options,
        skip_binary: false,
    };
    walker.scan(value, &mut String::new(), None, 0, &mut out);
    out
}

#[cfg(test)]
mod tests;
