//! Guards on content: tool results, resource contents, prompts, and server-initiated
//! sampling and elicitation messages.

use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use warden_detect::redact::{RedactOptions, redact_tool_result, scan_tool_result};
use warden_detect::{Severity, TextKind};
use warden_guard::{Call, Denial, Guard, GuardError, Report, Verdict};
use warden_proto::ErrorCode;

use crate::hidden::{HiddenTagsMode, json_has_hidden_tags, surface_json};
use crate::mode::{ContentModes, Mode, SanitizeMode};
use crate::sanitize::{json_needs_sanitizing, sanitize_json};
use crate::{content_of, displayed_text};

/// The message with its member `part` (`result`, `params`, `error`) replaced by `content`.
fn rewrite(
    guard: &'static str,
    call: &Call<'_>,
    content: Value,
    part: &str,
) -> Result<Verdict, GuardError> {
    let mut value = call.message.value().clone();
    value[part] = content;
    Verdict::rewrite(guard, value)
}

fn text_kind(call: &Call<'_>) -> TextKind {
    match (call.message.method(), call.request_method) {
        (Some(_), _) => TextKind::SamplingMessage,
        (None, Some("resources/read")) => TextKind::Resource,
        (None, Some("prompts/get")) => TextKind::Prompt,
        _ => TextKind::ToolResult,
    }
}

/// Where a text block sits in content: its index in the array of blocks (`content`,
/// `contents` or `messages`), and for a message whose content is itself an array, the index in
/// that array.
type Block = (usize, Option<usize>);

/// The arrays of text blocks a host joins before the model reads them, with where a finding in
/// their joined text is said to be: a result's `content` (tools), a resource's `contents`, and
/// the `messages` of a prompt or a sampling request (a message's `content` is one block or, since
/// 2025-11-25, an array of them).
const BLOCKS: [(&str, &str); 3] = [
    ("content", "content[*].text (joined)"),
    ("contents", "contents[*].text (joined)"),
    ("messages", "messages[*].content (joined)"),
];

/// The text of a block: a `text` member beside `type: "text"`, or (resource contents, which
/// have no `type`) beside a `uri`.
fn block_text(block: &Value) -> Option<&str> {
    let typed = match block.get("type") {
        Some(t) => t.as_str() == Some("text"),
        None => block.get("uri").is_some(),
    };
    typed.then(|| block.get("text").and_then(Value::as_str))?
}

/// The text blocks of `content` (a result's or a request's params) but those at `flagged`,
/// joined by spaces, when there are at least two, with where a finding in them is said to be.
/// (A space, not a newline: the analysis reads a line break as the end of a clause, and a word
/// split across blocks, `prev` + `ious`, is still read across a space.)
fn joined_text(content: &Value, flagged: &[Block]) -> Option<(String, &'static str)> {
    let (items, label) = BLOCKS
        .iter()
        .find_map(|(key, label)| Some((content.get(*key)?.as_array()?, *label)))?;
    let mut blocks: Vec<&str> = vec![];
    for (i, item) in items.iter().enumerate() {
        match item
            .get("content")
            .filter(|_| label.starts_with("messages"))
        {
            Some(Value::Array(inner)) => blocks.extend(
                inner
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| !flagged.contains(&(i, Some(*j))))
                    .filter_map(|(_, b)| block_text(b)),
            ),
            Some(single) if !flagged.contains(&(i, None)) => blocks.extend(block_text(single)),
            Some(_) => {}
            None if !flagged.contains(&(i, None)) => blocks.extend(block_text(item)),
            None => {}
        }
    }
    (blocks.len() >= 2).then(|| (blocks.join(" "), label))
}

/// The text block a finding's field path names: `content[3].text`, `contents[3].text`,
/// `messages[3].content.text` or `messages[3].content[1].text`.
fn text_block(field: &str) -> Option<Block> {
    let index = |s: &str| s.parse::<usize>().ok();
    for key in ["content[", "contents["] {
        if let Some(i) = field
            .strip_prefix(key)
            .and_then(|r| r.strip_suffix("].text"))
        {
            return Some((index(i)?, None));
        }
    }
    let (i, rest) = field.strip_prefix("messages[")?.split_once(']')?;
    if rest == ".content.text" {
        return Some((index(i)?, None));
    }
    let j = rest.strip_prefix(".content[")?.strip_suffix("].text")?;
    Some((index(i)?, Some(index(j)?)))
}

/// Indirect prompt injection in content.
pub struct InjectionGuard {
    modes: ContentModes,
}

impl InjectionGuard {
    /// Guard name.
    pub const NAME: &'static str = "injection_scan";
    /// Controls.
    pub const CONTROLS: &'static [&'static str] = &["PROMPT-1", "PROMPT-2", "TOOL-7", "API-3"];

    /// Under `modes`.
    pub fn new(modes: ContentModes) -> Self {
        Self { modes }
    }

    /// The refusal of a result that tries to instruct the model; `detail` goes to the audit only.
    fn withheld(detail: String) -> Verdict {
        Verdict::Deny(Denial {
            guard: Self::NAME,
            code: ErrorCode::Denied,
            message: "the server's answer was withheld: it contains text that tries to instruct the model".into(),
            detail,
            controls: Self::CONTROLS,
            retry_after: None,
        })
    }

    fn check_sync(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        let mode = self.modes.of(call.upstream).injection;
        if mode == Mode::Off {
            return Ok(Verdict::Continue);
        }
        // Content, or the text of an error: hosts hand a failed call's message to the model.
        let (content, part) = match content_of(call) {
            Some((c, is_result)) => (c, if is_result { "result" } else { "params" }),
            None => match displayed_text(call).filter(|(_, part)| *part == "error") {
                Some(error) => error,
                None => return Ok(Verdict::Continue),
            },
        };
        let mut findings = warden_detect::analyze_json_text(content, text_kind(call));
        // Blocks with a finding of their own are judged (and in `redact` replaced) on their own;
        // the others are read together too.
        let flagged: Vec<Block> = findings
            .iter()
            .filter(|f| f.severity >= Severity::Medium)
            .filter_map(|f| text_block(&f.location.field))
            .collect();
        if let Some((joined, label)) = joined_text(content, &flagged) {
            // Hosts join text blocks (a result's, a resource's contents, a conversation's
            // messages) before the model reads them: an injection split across blocks is read
            // whole. (Found only in the joined text, it cannot be replaced in place: `redact`
            // withholds the result.)
            let mut whole = warden_detect::analyze_text(&joined, text_kind(call));
            for f in &mut whole {
                f.location.field = label.into();
            }
            findings.extend(whole);
        }
        let serious: Vec<_> = findings
            .iter()
            .filter(|f| f.severity >= Severity::Medium)
            .collect();
        if serious.is_empty() {
            return Ok(Verdict::Continue);
        }
        for f in &serious {
            tracing::warn!(
                upstream = call.upstream.unwrap_or(""),
                rule = f.rule,
                severity = %f.severity,
                location = %f.location,
                mode = ?mode,
                "possible prompt injection in content"
            );
        }
        match mode {
            Mode::Off => Ok(Verdict::Continue),
            // Let through, but audited: rule ids and locations, never the matched text.
            Mode::Report => Ok(Verdict::Report(Report {
                detail: serious
                    .iter()
                    .map(|f| format!("{} at {}", f.rule, f.location))
                    .collect::<Vec<_>>()
                    .join("; "),
                controls: Self::CONTROLS,
            })),
            Mode::Block => Ok(Self::withheld(
                serious
                    .iter()
                    .map(|f| format!("{} at {}", f.rule, f.location))
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
            Mode::Redact => {
                // Replace each string holding a serious finding with a notice; keep the shape.
                let mut value = content.clone();
                let mut fields: Vec<&str> =
                    serious.iter().map(|f| f.location.field.as_str()).collect();
                fields.sort_unstable();
                fields.dedup();
                let mut replaced = 0;
                warden_detect::tool::walk_strings_mut(&mut value, &mut |path, slot| {
                    if fields.binary_search(&path).is_err() {
                        return;
                    }
                    let rules: Vec<&str> = serious
                        .iter()
                        .filter(|f| f.location.field == path)
                        .map(|f| f.rule)
                        .collect();
                    *slot = format!(
                        "[mcp-warden removed {} bytes suspected of prompt injection ({})]",
                        slot.len(),
                        rules.join(", ")
                    );
                    replaced += 1;
                });
                if replaced < fields.len() {
                    // A finding in an object key (which cannot be replaced without changing
                    // the shape) or one that could not be located: refuse rather than forward
                    // the rest.
                    return Ok(Self::withheld(
                        "injection finding could not be redacted in place".into(),
                    ));
                }
                rewrite(Self::NAME, call, value, part)
            }
        }
    }
}

sync_guard!(InjectionGuard);

/// Secrets and personal data in content.
pub struct RedactGuard {
    modes: ContentModes,
}

impl RedactGuard {
    /// Guard name.
    pub const NAME: &'static str = "redact";
    /// Controls.
    pub const CONTROLS: &'static [&'static str] = &["DATA-5", "PROMPT-4", "SAMP-2", "DATA-1"];

    /// Under `modes`.
    pub fn new(modes: ContentModes) -> Self {
        Self { modes }
    }

    fn check_sync(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        let modes = self.modes.of(call.upstream);
        if modes.secrets == Mode::Off && modes.pii == Mode::Off {
            return Ok(Verdict::Continue);
        }
        // Content, or the other server text a client displays (a secret in a log line or an
        // error message leaks as surely as one in a result).
        let (content, part) = match content_of(call) {
            Some((c, is_result)) => (c, if is_result { "result" } else { "params" }),
            None => match displayed_text(call) {
                Some(shown) => shown,
                None => return Ok(Verdict::Continue),
            },
        };
        // Detect both classes the modes care about on the borrowed result; copy and rewrite
        // only when some class is set to redact and was found.
        let found = scan_tool_result(
            content,
            RedactOptions {
                secrets: modes.secrets != Mode::Off,
                pii: modes.pii != Mode::Off,
            },
        );
        if found.is_empty() {
            return Ok(Verdict::Continue);
        }
        let mode_of = |class: warden_detect::secrets::DataClass| match class {
            warden_detect::secrets::DataClass::Secret => modes.secrets,
            _ => modes.pii,
        };
        for f in &found {
            tracing::info!(
                upstream = call.upstream.unwrap_or(""),
                kind = f.redacted.kind,
                pointer = %f.pointer,
                mode = ?mode_of(f.redacted.class),
                "sensitive data in content"
            );
        }
        if found
            .iter()
            .any(|f| mode_of(f.redacted.class) == Mode::Block)
        {
            return Ok(Verdict::Deny(Denial {
                guard: Self::NAME,
                code: ErrorCode::Denied,
                message:
                    "the server's answer was withheld: it contains credentials or personal data"
                        .into(),
                detail: found
                    .iter()
                    .map(|f| format!("{} at {}", f.redacted.kind, f.pointer))
                    .collect::<Vec<_>>()
                    .join("; "),
                controls: Self::CONTROLS,
                retry_after: None,
            }));
        }
        let redact_secrets = modes.secrets == Mode::Redact;
        let redact_pii = modes.pii == Mode::Redact;
        if !found
            .iter()
            .any(|f| mode_of(f.redacted.class) == Mode::Redact)
        {
            // Every class found is only reported: let through, audited (kinds and JSON
            // pointers, never the values).
            return Ok(Verdict::Report(Report {
                detail: found
                    .iter()
                    .map(|f| format!("{} at {}", f.redacted.kind, f.pointer))
                    .collect::<Vec<_>>()
                    .join("; "),
                controls: Self::CONTROLS,
            }));
        }
        // Redact with exactly the classes set to redact (the scan also found classes that are
        // only reported).
        let mut value = content.clone();
        redact_tool_result(
            &mut value,
            RedactOptions {
                secrets: redact_secrets,
                pii: redact_pii,
            },
        );
        rewrite(Self::NAME, call, value, part)
    }
}

sync_guard!(RedactGuard);

/// Which members' values the sanitizer leaves alone.
type KeyFilter = crate::sanitize::Skip;

/// Members of content left as they are: a `uri` (an identifier), and MCP's binary payloads in
/// their own shapes only (see [`warden_detect::redact::is_binary_member`]).
fn is_identifier_or_binary(object: &Map<String, Value>, key: &str) -> bool {
    key == "uri" || warden_detect::redact::is_binary_member(object, key)
}

/// Terminal escapes and invisible characters in everything the client displays (results,
/// definitions, log and progress messages, error text), and hidden tags and HTML comments in
/// content (results, sampling and elicitation messages).
pub struct SanitizeGuard {
    modes: ContentModes,
}

impl SanitizeGuard {
    /// Guard name.
    pub const NAME: &'static str = "sanitize";
    /// Controls.
    pub const CONTROLS: &'static [&'static str] = &["UX-5", "API-3", "PROMPT-7"];

    /// Under `modes`.
    pub fn new(modes: ContentModes) -> Self {
        Self { modes }
    }

    fn check_sync(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        let modes = self.modes.of(call.upstream);
        let mode = modes.sanitize;
        // Hidden tags are a matter of content only: definitions are the poisoning guard's.
        let hidden = modes.hidden_tags;
        if mode == SanitizeMode::Off && hidden == HiddenTagsMode::Report {
            return Ok(Verdict::Continue);
        }
        // Definitions too: hidden text in a description is the model's to read and the
        // user's never to see. Names and URIs are identifiers the client sends back: kept.
        let (content, part, skip, is_content): (&Value, &str, &KeyFilter, bool) =
            match (call.message.method(), call.request_method) {
                // Besides results, clients show a server's log messages, its progress messages
                // and the text of its errors (to the user, and often to the model).
                _ if let Some((text, part)) = displayed_text(call) => (
                    text,
                    part,
                    &|_: &Map<String, Value>, k: &str| matches!(k, "progressToken" | "taskId"),
                    false,
                ),
                (
                    None,
                    Some(
                        "tools/list"
                        | "prompts/list"
                        | "resources/list"
                        | "resources/templates/list",
                    ),
                )
                | (None, Some("initialize" | "server/discover")) => match call.message.result() {
                    Some(r) => (
                        r,
                        "result",
                        &|_: &Map<String, Value>, k: &str| {
                            matches!(k, "name" | "uri" | "uriTemplate" | "nextCursor")
                        },
                        false,
                    ),
                    None => return Ok(Verdict::Continue),
                },
                _ => match content_of(call) {
                    Some((c, r)) => (
                        c,
                        if r { "result" } else { "params" },
                        &|o: &Map<String, Value>, k: &str| is_identifier_or_binary(o, k),
                        true,
                    ),
                    None => return Ok(Verdict::Continue),
                },
            };
        let hidden = if is_content {
            hidden
        } else {
            HiddenTagsMode::Report
        };
        // Cheap pre-checks on the raw bytes: escapes are ESC or `\u001b`/`\u009b` in JSON, and
        // invisible characters are multi-byte UTF-8 or escaped; pure printable ASCII with no
        // backslash needs no walk. Hidden tags need a `<` (or an escaped one).
        let bytes = call.message.bytes();
        let chars = mode != SanitizeMode::Off && !crate::sanitize::is_plain_text(bytes);
        let tags = hidden != HiddenTagsMode::Report && crate::sanitize::may_hold_tags(bytes);
        // Checked on the borrowed value: text with non-ASCII letters but nothing to remove is
        // not copied.
        let chars = chars && json_needs_sanitizing(content, skip);
        let tags = tags && json_has_hidden_tags(content, skip);
        if !chars && !tags {
            return Ok(Verdict::Continue);
        }
        let mut value = content.clone();
        // Characters first: a zero-width character inside `<SECRET>` must not hide the tag.
        let changed_chars = if chars {
            sanitize_json(&mut value, mode, skip)
        } else {
            0
        };
        let changed_tags = if hidden != HiddenTagsMode::Report {
            surface_json(&mut value, hidden, skip)
        } else {
            0
        };
        if changed_chars + changed_tags == 0 {
            return Ok(Verdict::Continue);
        }
        if changed_chars > 0 {
            tracing::info!(upstream = call.upstream.unwrap_or(""), mode = ?mode, "terminal escapes or invisible characters removed");
        }
        if changed_tags > 0 {
            tracing::info!(upstream = call.upstream.unwrap_or(""), mode = ?hidden, strings = changed_tags, "hidden tags or comments surfaced in content");
        }
        rewrite(Self::NAME, call, value, part)
    }
}

impl SanitizeGuard {
    /// Controls when only hidden tags are handled (every upstream's `sanitize` is off):
    /// output encoding, not terminal safety.
    pub const HIDDEN_TAGS_CONTROLS: &'static [&'static str] = &["API-3"];
}

impl Guard for SanitizeGuard {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn controls(&self) -> &'static [&'static str] {
        if self.modes.any(|m| m.sanitize != SanitizeMode::Off) {
            Self::CONTROLS
        } else {
            Self::HIDDEN_TAGS_CONTROLS
        }
    }
    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        let r = self.check_sync(call);
        async move { r }.boxed()
    }
    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        Some(self.check_sync(call))
    }
}

#[cfg(test)]
mod tests;
