//! Structural poisoning signals in one string: hidden instruction blocks (`<IMPORTANT>`,
//! `<system>`, HTML comments), fake conversation turns, markdown images and URL templates
//! that carry data out, padding that buries text, identifiers that name other tools, and
//! encoded runs (base64, hex, percent-encoding) to decode and re-analyse.
//!
//! Every scanner here is a hand-written single pass over the bytes (no regex engine).

use crate::finding::Severity;
use crate::injection::Cue;
use crate::text::fold::Folded;
use crate::text::{Hit, Role};

/// Rule ids of this module: `(tool definition, content)`.
pub mod rules {
    /// `<IMPORTANT>`, `<system>`, `<!-- -->` and similar blocks.
    pub const HIDDEN_BLOCK: (&str, &str) = (
        "poison.hidden-instructions",
        "injection.hidden-instructions",
    );
    /// `System:` / `Assistant:` lines that fake a conversation turn.
    pub const FAKE_TURN: (&str, &str) = (
        "poison.fake-conversation-turn",
        "injection.fake-conversation-turn",
    );
    /// Markdown image or URL template that sends data in its query.
    pub const IMAGE_EXFIL: (&str, &str) = (
        "poison.markdown-image-exfiltration",
        "injection.markdown-image-exfiltration",
    );
    /// Whitespace or filler that pushes text out of view.
    pub const PADDING: (&str, &str) = ("poison.padding", "injection.padding");
    /// Encoded text that decodes to something the rules flag.
    pub const ENCODED: (&str, &str) = ("poison.encoded-payload", "injection.encoded-payload");
}

fn pick(role: Role, ids: (&'static str, &'static str)) -> &'static str {
    match role {
        Role::Content => ids.1,
        Role::Name | Role::Metadata => ids.0,
    }
}

/// A structural finding, in original byte offsets.
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) rule: &'static str,
    pub(crate) severity: Severity,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) evidence: &'static str,
}

/// What the structural pass found: direct findings and extra cues for the rules.
#[derive(Debug, Default)]
pub(crate) struct Structure {
    pub(crate) findings: Vec<Raw>,
    pub(crate) hits: Vec<Hit>,
}

/// Cues that make a block an instruction rather than markup.
const INSTRUCTION_CUES: &[Cue] = &[
    Cue::Override,
    Cue::Conceal,
    Cue::Mandate,
    Cue::Call,
    Cue::CredFile,
    Cue::Send,
    Cue::Command,
    Cue::Exec,
    Cue::AiAddress,
    Cue::FakeUser,
    Cue::Urgency,
    Cue::ParamManip,
    Cue::Redirect,
    Cue::RoleReassign,
    Cue::OutputManip,
    Cue::Pretext,
    Cue::Read,
];

/// Tag names that mark a block addressed to the model.
const HIDDEN_TAGS: &[&str] = &[
    "important",
    "system",
    "instructions",
    "instruction",
    "information",
    "secret",
    "hidden",
    "admin",
    "sys",
    "system_prompt",
    "system-prompt",
    "assistant",
    "user",
    "critical",
    "override",
    "prompt",
    "ai",
    "note",
    "rules",
    "context",
    "hidden_instructions",
    "tool_instructions",
    "directive",
    "developer",
    "priority",
    "mandatory",
    "warning",
];

/// Role words that start a fake turn, per language.
const ROLE_WORDS: &[&str] = &[
    "system",
    "assistant",
    "human",
    "user",
    "ai",
    "model",
    "developer",
    "sys",
    "系统",
    "用户",
    "助手",
    "sistema",
    "usuario",
    "asistente",
    "система",
    "пользователь",
    "ассистент",
    "benutzer",
    "nutzer",
    "utilisateur",
    "システム",
    "ユーザー",
    "アシスタント",
    "시스템",
    "사용자",
    "어시스턴트",
    "usuário",
    "assistente",
    "النظام",
    "المستخدم",
    "المساعد",
];

/// The ASCII first letters of [`ROLE_WORDS`].
const ROLE_ASCII_FIRST: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < ROLE_WORDS.len() {
        let first = ROLE_WORDS[i].as_bytes()[0];
        if first < 0x80 {
            t[first as usize] = true;
        }
        i += 1;
    }
    t
};

pub(crate) fn structure(
    s: &str,
    folded: &Folded,
    hits: &[Hit],
    role: Role,
    vocab: &[&str],
) -> Structure {
    let mut st = Structure::default();
    // Instruction cues sorted by start, so counting the cues inside a block is a binary
    // search plus the cues inside it (blocks are disjoint or nested a bounded number deep).
    let mut starts: Vec<(usize, usize)> = hits
        .iter()
        .filter(|h| INSTRUCTION_CUES.contains(&h.cue))
        .map(|h| (h.start, h.end))
        .collect();
    starts.sort_unstable();
    let cues_in = |start: usize, end: usize| -> usize {
        let (a, b) = (folded.folded_offset(start), folded.folded_offset(end));
        let first = starts.partition_point(|&(s, _)| s < a);
        starts[first..]
            .iter()
            .take_while(|&&(s, _)| s < b)
            .filter(|&&(_, e)| e <= b)
            .take(8)
            .count()
    };
    blocks(s, role, &cues_in, &mut st);
    role_lines(s, role, &cues_in, &mut st);
    images_and_templates(s, role, &mut st);
    if role != Role::Content {
        padding(s, role, &mut st);
    }
    identifiers(s, folded, vocab, &mut st);
    emails(s, folded, &mut st);
    shouted_headers(s, folded, &mut st);
    st
}

/// `CRITICAL SYSTEM UPDATE:`, `SECURITY PROTOCOL:`: two or more upper-case words ending in a
/// colon, the house style of borrowed authority. A pretext cue for the rules.
fn shouted_headers(s: &str, folded: &Folded, st: &mut Structure) {
    let b = s.as_bytes();
    for (colon, _) in s.match_indices(':') {
        // Walk back over upper-case words and spaces, at most 64 bytes.
        let mut a = colon;
        while a > 0
            && colon - a < 64
            && (b[a - 1].is_ascii_uppercase() || b[a - 1] == b' ' || b[a - 1] == b'_')
        {
            a -= 1;
        }
        let header = s[a..colon].trim();
        let words = header.split(' ').filter(|w| w.len() >= 3).count();
        if words >= 2 && header.split(' ').all(|w| w.len() >= 2) {
            let start = a + (s[a..colon].len() - s[a..colon].trim_start().len());
            let (fa, fe) = (folded.folded_offset(start), folded.folded_offset(colon + 1));
            if fe > fa {
                st.hits.push(Hit {
                    cue: Cue::Pretext,
                    start: fa,
                    end: fe,
                });
            }
        }
    }
}

/// `name@host.tld` addresses: a destination, like a URL.
fn emails(s: &str, folded: &Folded, st: &mut Structure) {
    let b = s.as_bytes();
    for (at, _) in s.match_indices('@') {
        let mut a = at;
        while a > 0
            && (b[a - 1].is_ascii_alphanumeric() || matches!(b[a - 1], b'.' | b'_' | b'+' | b'-'))
            && at - a < 64
        {
            a -= 1;
        }
        let mut e = at + 1;
        while e < b.len()
            && (b[e].is_ascii_alphanumeric() || matches!(b[e], b'.' | b'-'))
            && e - at < 255
        {
            e += 1;
        }
        let domain = s[at + 1..e].trim_end_matches('.');
        if a < at && domain.contains('.') && domain.len() >= 4 {
            let (fa, fe) = (
                folded.folded_offset(a),
                folded.folded_offset(at + 1 + domain.len()),
            );
            if fe > fa {
                st.hits.push(Hit {
                    cue: Cue::Url,
                    start: fa,
                    end: fe,
                });
            }
        }
    }
}

fn is_tag_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' ')
}

/// `<TAG>...</TAG>` blocks with suspicious names, and `<!-- -->` comments.
fn blocks(s: &str, role: Role, cues_in: &dyn Fn(usize, usize) -> usize, st: &mut Structure) {
    let b = s.as_bytes();
    // Open tags waiting for their close: (lowercased name, start). Bounded to 64 entries.
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut found: Vec<(usize, usize, bool)> = Vec::new(); // start, end, is_comment
    let mut i = 0;
    while i < b.len() {
        let Some(lt) = s[i..].find('<') else {
            break;
        };
        i += lt;
        if b[i..].starts_with(b"<!--") {
            let end = find(b, i + 4, b"-->").map_or(b.len(), |e| e + 3);
            found.push((i, end, true));
            i = end;
            continue;
        }
        let closing = b.get(i + 1) == Some(&b'/');
        let name_start = i + 1 + usize::from(closing);
        let mut j = name_start;
        while j < b.len() && j - name_start <= 40 && is_tag_name_byte(b[j]) {
            j += 1;
        }
        if j < b.len() && b[j] == b'>' && j > name_start {
            let name = s[name_start..j].trim();
            let lower = name.to_ascii_lowercase();
            let shouting = name.len() >= 4
                && name
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c == b'_' || c == b' ' || c == b'-')
                && name.bytes().any(|c| c.is_ascii_uppercase());
            let suspicious = HIDDEN_TAGS.contains(&lower.as_str()) || shouting;
            if suspicious {
                if closing {
                    if let Some(pos) = open.iter().rposition(|(n, _)| *n == lower) {
                        let (_, start) = open.remove(pos);
                        found.push((start, j + 1, false));
                    }
                } else if open.len() < 64 {
                    open.push((lower, i));
                } else {
                    found.push((i, j + 1, false));
                }
            }
            i = j + 1;
            continue;
        }
        i += 1;
    }
    // A tag that is never closed is named, not used: only the tag itself is reported, low.
    for (_, start) in open {
        let end = s[start..].find('>').map_or(b.len(), |e| start + e + 1);
        st.findings.push(Raw {
            rule: pick(role, rules::HIDDEN_BLOCK),
            severity: Severity::Low,
            start,
            end,
            evidence: "unclosed instruction-style tag",
        });
    }
    found.sort_unstable();
    for (start, end, comment) in found {
        let cues = cues_in(start, end);
        // `... text like <IMPORTANT>...</IMPORTANT>`: an example in prose about attacks.
        let lead = s[..start]
            .char_indices()
            .rev()
            .nth(15)
            .map_or(0, |(i, _)| i);
        let lead = s[lead..start].to_lowercase();
        if [
            "like ",
            "such as ",
            "e.g. ",
            "example",
            "例如",
            "por ejemplo",
        ]
        .iter()
        .any(|w| lead.contains(w))
        {
            st.findings.push(Raw {
                rule: pick(role, rules::HIDDEN_BLOCK),
                severity: Severity::Low,
                start,
                end,
                evidence: "instruction block cited as an example",
            });
            continue;
        }
        let severity = match (role, comment, cues) {
            (Role::Content, true, 0) => continue,
            (Role::Content, false, 0) => Severity::Low,
            (Role::Content, _, _) => Severity::High,
            (_, true, 0) => Severity::Medium,
            (_, _, _) => Severity::High,
        };
        st.findings.push(Raw {
            rule: pick(role, rules::HIDDEN_BLOCK),
            severity,
            start,
            end,
            evidence: if comment {
                "HTML comment"
            } else {
                "hidden instruction block"
            },
        });
    }
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Lines that start with a role label (`System:`, `### Assistant:`, `[user]:`).
fn role_lines(s: &str, role: Role, cues_in: &dyn Fn(usize, usize) -> usize, st: &mut Structure) {
    let mut line_start = 0;
    for line in s.split_inclusive('\n') {
        let start = line_start;
        line_start += line.len();
        let trimmed = line.trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, '#' | '*' | '>' | '-' | '[' | '<' | '|')
        });
        // Most lines start with no role word's first letter: rejected before any other work
        // (`lower` below starts with the lower case of the line's first character).
        let Some(first) = trimmed.chars().next() else {
            continue;
        };
        let first = first.to_lowercase().next().unwrap_or(first);
        let may_start_role = if first.is_ascii() {
            ROLE_ASCII_FIRST[first as usize]
        } else {
            ROLE_WORDS.iter().any(|w| w.starts_with(first))
        };
        if !may_start_role {
            continue;
        }
        let offset = start + (line.len() - trimmed.len());
        // A role label ends in a colon within its first 32 bytes; most lines have none.
        let head_end = (0..=trimmed.len().min(32))
            .rev()
            .find(|&i| trimmed.is_char_boundary(i))
            .unwrap_or(0);
        let head = &trimmed[..head_end];
        if !head.contains(':') && !head.contains('：') {
            continue;
        }
        let lower: String = trimmed
            .chars()
            .take(24)
            .flat_map(char::to_lowercase)
            .collect();
        let Some(word) = ROLE_WORDS.iter().find(|w| lower.starts_with(**w)) else {
            continue;
        };
        let rest = lower[word.len()..].trim_start_matches(['*', ']', '>', '|', ' ']);
        if !(rest.starts_with(':') || rest.starts_with('：')) {
            continue;
        }
        let end = start + line.trim_end().len();
        let cues = cues_in(offset, end.max(offset));
        let strong_role = !matches!(
            *word,
            "user"
                | "model"
                | "ai"
                | "developer"
                | "usuario"
                | "benutzer"
                | "nutzer"
                | "utilisateur"
                | "usuário"
                | "用户"
                | "ユーザー"
                | "사용자"
                | "пользователь"
                | "المستخدم"
        );
        let severity = match (role, strong_role, cues) {
            (Role::Content, _, 0) => continue,
            (Role::Content, _, _) => Severity::High,
            (_, true, _) => Severity::High,
            (_, false, 0) => continue,
            (_, false, _) => Severity::Medium,
        };
        st.findings.push(Raw {
            rule: pick(role, rules::FAKE_TURN),
            severity,
            start: offset,
            end: end.max(offset),
            evidence: "line poses as a conversation turn",
        });
    }
}

fn url_end(b: &[u8], from: usize) -> usize {
    let mut j = from;
    while j < b.len()
        && !b[j].is_ascii_whitespace()
        && !matches!(b[j], b')' | b'"' | b'\'' | b'<' | b'>' | b'`' | b']')
    {
        j += 1;
    }
    j
}

fn has_placeholder(url: &str) -> bool {
    url.contains('{')
        || url.contains("$(")
        || url.contains("${")
        || url.contains("%7B")
        || url.contains("%7b")
        || url.contains('[')
        || url.contains("<")
        || url.to_ascii_uppercase().contains("INSERT")
        || url.contains("...")
}

/// The starts of what [`images_and_templates`] looks at.
static IMAGE_OR_URL: std::sync::LazyLock<aho_corasick::AhoCorasick> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(["![", "http://", "https://"])
            .expect("three short literals fit the automaton size limits")
    });

/// Markdown images (`![x](https://host/p?q=...)`) and URL templates with placeholders.
fn images_and_templates(s: &str, role: Role, st: &mut Structure) {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        // Jump to the next `![`, `http://` or `https://` (a vectorised search).
        match IMAGE_OR_URL.find(aho_corasick::Input::new(b).span(i..b.len())) {
            Some(m) => i = m.start(),
            None => break,
        }
        if i + 1 >= b.len() {
            break;
        }
        let is_image = b[i] == b'!' && b[i + 1] == b'[';
        let is_url = b[i..].starts_with(b"http://") || b[i..].starts_with(b"https://");
        if !is_image && !is_url {
            i += 1;
            continue;
        }
        if is_image {
            // `![alt](url)`: alt text up to 256 bytes on the same line.
            let mut j = i + 2;
            while j < b.len() && j - i < 256 && b[j] != b']' && b[j] != b'\n' {
                j += 1;
            }
            if j + 1 < b.len() && b[j] == b']' && b[j + 1] == b'(' {
                let u0 = j + 2;
                let u1 = url_end(b, u0);
                let url = &s[u0..u1];
                let query = url.split_once('?').map(|(_, q)| q);
                let placeholder = has_placeholder(url);
                let severity = match (role, placeholder, query) {
                    (_, true, _) => Some(Severity::High),
                    (Role::Content, false, Some(q)) if q.len() >= 64 => Some(Severity::Medium),
                    (Role::Content, false, _) => None,
                    (_, false, Some(_)) => Some(Severity::High),
                    (_, false, None) => Some(Severity::Low),
                };
                if let Some(severity) = severity {
                    let end = if u1 < b.len() && b[u1] == b')' {
                        u1 + 1
                    } else {
                        u1
                    };
                    st.findings.push(Raw {
                        rule: pick(role, rules::IMAGE_EXFIL),
                        severity,
                        start: i,
                        end,
                        evidence: "markdown image that loads a URL",
                    });
                }
                i = u1.max(i + 2);
                continue;
            }
            i += 2;
            continue;
        }
        let u1 = url_end(b, i);
        let url = &s[i..u1];
        if role != Role::Content && url.contains('?') && has_placeholder(url) {
            st.findings.push(Raw {
                rule: pick(role, rules::IMAGE_EXFIL),
                severity: Severity::Medium,
                start: i,
                end: u1,
                evidence: "URL template with a placeholder in its query",
            });
        }
        i = u1.max(i + 1);
    }
}

/// Long whitespace or filler runs followed by more text.
fn padding(s: &str, role: Role, st: &mut Structure) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let mut j = i;
        let mut lines = 0;
        if c.is_ascii_whitespace() {
            while j < b.len() && b[j].is_ascii_whitespace() {
                lines += usize::from(b[j] == b'\n');
                j += 1;
            }
        } else if c.is_ascii_punctuation() || c == b'0' {
            while j < b.len() && b[j] == c {
                j += 1;
            }
        } else {
            i += 1;
            continue;
        }
        let long = if c.is_ascii_whitespace() {
            j - i >= 128 || lines >= 16
        } else {
            j - i >= 200
        };
        let rest_has_text =
            b[j..].iter().any(|x| x.is_ascii_alphanumeric()) || (j < b.len() && b[j] >= 0x80);
        if long && rest_has_text {
            st.findings.push(Raw {
                rule: pick(role, rules::PADDING),
                severity: Severity::Medium,
                start: i,
                end: j,
                evidence: "padding pushes the text after it out of view",
            });
        }
        i = j.max(i + 1);
    }
}

/// Identifiers that look like tool names (snake_case, or in backticks) and are not this
/// tool's own vocabulary (its name, property names, enum values).
fn identifiers(s: &str, folded: &Folded, vocab: &[&str], st: &mut Structure) {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    // Candidates contain `_` or follow a backtick: jump between those bytes (memchr speed on
    // prose), then take the whole token around the anchor. Tokens never overlap: `i` only
    // moves forward.
    let mut i = 0;
    while i < b.len() {
        let Some(anchor) = b[i..]
            .iter()
            .position(|&c| c == b'_' || c == b'`')
            .map(|p| p + i)
        else {
            break;
        };
        let mut start = anchor;
        if b[anchor] == b'`' {
            start = anchor + 1;
        } else {
            while start > i && word(b[start - 1]) {
                start -= 1;
            }
        }
        i = start;
        while i < b.len() && word(b[i]) {
            i += 1;
        }
        if i == start {
            i = anchor + 1;
            continue;
        }
        let token = &s[start..i];
        let prev = s[..start].chars().next_back();
        let next = s[i..].chars().next();
        // Paths, file names, URLs, env vars and template variables are not tool names.
        if matches!(prev, Some('.' | '/' | '$' | '-' | '@' | '%' | '='))
            || matches!(next, Some('/' | '(' | '=' | '-'))
        {
            continue;
        }
        if next == Some('.')
            && s[i + 1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            continue;
        }
        let backticked = prev == Some('`') && next == Some('`');
        let snake = token.contains('_')
            && !token.starts_with('_')
            && !token.ends_with('_')
            && token.bytes().any(|c| c.is_ascii_lowercase())
            && token.split('_').all(|p| !p.is_empty());
        if !(snake
            || (backticked && token.len() >= 3 && token.bytes().any(|c| c.is_ascii_lowercase())))
        {
            continue;
        }
        if vocab.iter().any(|v| v.eq_ignore_ascii_case(token)) {
            continue;
        }
        let a = folded.folded_offset(start);
        let e = folded.folded_offset(i);
        if e > a {
            st.hits.push(Hit {
                cue: Cue::ToolRef,
                start: a,
                end: e,
            });
            // `write_file tool`, `'kill_process' tool`, `tool "x_y"`: named as a tool.
            let after = s[i..].trim_start_matches(['\'', '"', '`']).trim_start();
            let before = s[..start].trim_end_matches(['\'', '"', '`']).trim_end();
            let named = after
                .get(..4)
                .is_some_and(|w| w.eq_ignore_ascii_case("tool"))
                || before.len() >= 4
                    && before
                        .get(before.len() - 4..)
                        .is_some_and(|w| w.eq_ignore_ascii_case("tool"));
            if named {
                st.hits.push(Hit {
                    cue: Cue::NamedTool,
                    start: a,
                    end: e,
                });
            }
        }
    }
}

/// An encoded run and its decoded text.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) encoding: &'static str,
    pub(crate) decoded: String,
}

/// Decoded text worth re-analysing: valid UTF-8, mostly printable, with letters.
fn texty(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    let total = s.chars().count();
    if total < 8 {
        return None;
    }
    let printable = s
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .count();
    let letters = s.chars().filter(|c| c.is_alphabetic()).count();
    (printable * 100 >= total * 95 && letters * 2 >= total).then(|| s.to_owned())
}

/// Bytes an encoded run is made of: base64 (both alphabets), `=` and `%`.
const RUN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let x = c as u8;
        t[c] = x.is_ascii_alphanumeric() || matches!(x, b'+' | b'/' | b'-' | b'_' | b'=' | b'%');
        c += 1;
    }
    t
};

/// Base64, hex and percent-encoded runs that decode to text. The decoded bytes of all runs
/// together never exceed the input length (each decoding shrinks its run).
pub(crate) fn encoded_runs(s: &str) -> Vec<Encoded> {
    use base64::Engine as _;
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // A run starts at a base64 byte or `%` (not at `=`) and goes on over run bytes.
        let Some(p) = b[i..]
            .iter()
            .position(|&x| RUN_BYTE[usize::from(x)] && x != b'=')
        else {
            break;
        };
        let start = i + p;
        let j = b[start..]
            .iter()
            .position(|&x| !RUN_BYTE[usize::from(x)])
            .map_or(b.len(), |q| start + q);
        i = j.max(start + 1);
        // Runs shorter than any encoding this reports (4 percent escapes, 32 hex digits,
        // 20 base64 characters) are words, numbers and identifiers: skipped.
        if j - start < 12 {
            continue;
        }
        let run = &s[start..j];
        let percent = (start..j)
            .filter(|&k| {
                b[k] == b'%'
                    && k + 2 < b.len()
                    && b[k + 1].is_ascii_hexdigit()
                    && b[k + 2].is_ascii_hexdigit()
            })
            .count();
        if percent >= 4 {
            if let Some(text) = texty(&percent_decode(run.as_bytes())) {
                out.push(Encoded {
                    start,
                    end: j,
                    encoding: "percent-encoding",
                    decoded: text,
                });
            }
            continue;
        }
        let core = run.trim_end_matches('=');
        if core.len() >= 32
            && core.len().is_multiple_of(2)
            && core.bytes().all(|c| c.is_ascii_hexdigit())
        {
            let bytes: Vec<u8> = core
                .as_bytes()
                .chunks(2)
                .filter_map(|p| {
                    std::str::from_utf8(p)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect();
            if let Some(text) = texty(&bytes) {
                out.push(Encoded {
                    start,
                    end: j,
                    encoding: "hex",
                    decoded: text,
                });
            }
            continue;
        }
        if core.len() < 20 || core.contains('%') {
            continue;
        }
        let mixed = core.bytes().any(|c| c.is_ascii_lowercase())
            && core.bytes().any(|c| c.is_ascii_uppercase());
        if !mixed {
            continue;
        }
        let usable = core.len() - usize::from(core.len() % 4 == 1);
        let body = &core[..usable];
        let decoded = if body.contains(['-', '_']) {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body)
        } else {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(body)
        };
        if let Some(text) = decoded.ok().and_then(|d| texty(&d)) {
            out.push(Encoded {
                start,
                end: j,
                encoding: "base64",
                decoded: text,
            });
        }
    }
    out
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}
