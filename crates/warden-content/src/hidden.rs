//! Hidden tags in content: HTML comments (`<!-- ... -->`) and tags addressed to the model
//! (`<SECRET>`, `<IMPORTANT>`, `<system>`, ...), which a markdown or HTML view hides from
//! the user while the model reads them.
//!
//! Three treatments ([`HiddenTagsMode`]):
//! - `report`: leave the text as sent (the injection guard still reports the block);
//! - `visible`: rewrite the delimiters so every renderer shows them as text: the `<` and `>`
//!   of the tag or comment become `‹` (U+2039) and `›` (U+203A), which no markdown or HTML
//!   renderer treats as markup (`<SECRET>x</SECRET>` reads `‹SECRET›x‹/SECRET›`,
//!   `<!-- note -->` reads `‹!-- note --›`). Inside a comment every `<` and `>` is rewritten
//!   too, so nothing in it is markup either;
//! - `strip`: remove each comment and each `<TAG>...</TAG>` block with its content. An open
//!   tag without its close is removed alone (its text was never hidden). Removal can join
//!   the text around a block into a new one (`<!<!---->-- x -->`), so stripping repeats until
//!   nothing changes, at most [`MAX_STRIP_PASSES`] times; whatever is left then is made
//!   visible, so the output is always a fixed point.
//!
//! What matches: a comment runs from `<!--` to the first `-->` (or to the end of the text
//! when unclosed, as a browser hides it). A tag is `<NAME>` or `<NAME attributes>` or
//! `</NAME>`, NAME one of [`HIDDEN_TAG_NAMES`] in any case, attributes at most
//! [`MAX_TAG_LEN`] bytes without `<`, `>`, `‹` or `›`. Ordinary markup (`<b>`, `<div>`,
//! `<user>` in an XML result) is left alone. Every delimiter is ASCII, so every span lies on
//! UTF-8 boundaries. One pass is linear in the length of the text.

use std::collections::VecDeque;

use crate::sanitize::Skip;

/// What the sanitizer does with hidden tags and HTML comments in content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HiddenTagsMode {
    /// Leave them (the injection guard reports them).
    Report,
    /// Rewrite their delimiters so any renderer shows them as text.
    #[default]
    Visible,
    /// Remove comments and tag blocks with their content.
    Strip,
}

/// Tag names that mark text addressed to the model rather than markup.
pub const HIDDEN_TAG_NAMES: &[&str] = &[
    "secret",
    "important",
    "system",
    "system_prompt",
    "system-prompt",
    "sys",
    "instructions",
    "instruction",
    "hidden",
    "hidden_instructions",
    "tool_instructions",
    "admin",
    "assistant",
    "critical",
    "override",
    "directive",
    "developer",
    "mandatory",
    "priority",
];

/// Longest tag (from `<` to `>`) recognised, in bytes.
pub const MAX_TAG_LEN: usize = 256;

/// How many strip passes run before the remainder is made visible.
pub const MAX_STRIP_PASSES: usize = 8;

/// One thing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// `<!--` at `start`, content to `end` (exclusive), closed by `-->` or not.
    Comment { start: usize, end: usize },
    /// A tag `start..end`; `kind` its index in [`HIDDEN_TAG_NAMES`]; `close` for `</NAME>`.
    Tag {
        start: usize,
        end: usize,
        kind: usize,
        close: bool,
    },
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

fn hidden_name(name: &str) -> Option<usize> {
    HIDDEN_TAG_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
}

/// The tag starting at `i` (`s[i] == '<'`), if it is one of the hidden names.
fn tag_at(s: &str, i: usize) -> Option<Item> {
    let b = s.as_bytes();
    let mut j = i + 1;
    let close = b.get(j) == Some(&b'/');
    if close {
        j += 1;
    }
    let name_start = j;
    while j < b.len() && is_name_byte(b[j]) && j - i < MAX_TAG_LEN {
        j += 1;
    }
    if j == name_start {
        return None;
    }
    let kind = hidden_name(&s[name_start..j])?;
    match b.get(j) {
        Some(b'>') => Some(Item::Tag {
            start: i,
            end: j + 1,
            kind,
            close,
        }),
        Some(c) if c.is_ascii_whitespace() => {
            // Attributes: up to `>`, bounded, with no other delimiter inside.
            let rest = &s[j..];
            for (k, c) in rest.char_indices() {
                if j + k - i >= MAX_TAG_LEN {
                    return None;
                }
                match c {
                    '>' => {
                        return Some(Item::Tag {
                            start: i,
                            end: j + k + 1,
                            kind,
                            close,
                        });
                    }
                    '<' | '‹' | '›' => return None,
                    _ => {}
                }
            }
            None
        }
        _ => None,
    }
}

/// Every comment and hidden tag of `s`, in order, not overlapping.
fn scan(s: &str) -> Vec<Item> {
    let b = s.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    while let Some(k) = memchr_lt(&b[i..]) {
        let at = i + k;
        if b[at..].starts_with(b"<!--") {
            let end = match s[at + 4..].find("-->") {
                Some(e) => at + 4 + e + 3,
                None => b.len(),
            };
            items.push(Item::Comment { start: at, end });
            i = end;
        } else if let Some(tag) = tag_at(s, at) {
            if let Item::Tag { end, .. } = tag {
                i = end;
            }
            items.push(tag);
        } else {
            i = at + 1;
        }
    }
    items
}

fn memchr_lt(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'<')
}

/// Whether `s` holds a comment or hidden tag.
pub fn has_hidden_tags(s: &str) -> bool {
    s.contains('<') && !scan(s).is_empty()
}

/// `s` with its hidden tags and comments handled per `mode`; `None` when nothing changed.
pub fn surface(s: &str, mode: HiddenTagsMode) -> Option<String> {
    match mode {
        HiddenTagsMode::Report => None,
        HiddenTagsMode::Visible => visible(s),
        HiddenTagsMode::Strip => {
            let mut cur = strip_once(s)?;
            for _ in 1..MAX_STRIP_PASSES {
                match strip_once(&cur) {
                    Some(next) => cur = next,
                    None => return Some(cur),
                }
            }
            // Still changing: an input built to nest. Show the rest rather than loop on it.
            Some(visible(&cur).unwrap_or(cur))
        }
    }
}

/// The visible rewrite: delimiters to `‹ ›`.
fn visible(s: &str) -> Option<String> {
    if !s.contains('<') {
        return None;
    }
    let items = scan(s);
    if items.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(s.len() + items.len() * 8);
    let mut pos = 0;
    for item in items {
        match item {
            Item::Comment { start, end } => {
                out.push_str(&s[pos..start]);
                for c in s[start..end].chars() {
                    out.push(match c {
                        '<' => '‹',
                        '>' => '›',
                        c => c,
                    });
                }
                pos = end;
            }
            Item::Tag { start, end, .. } => {
                out.push_str(&s[pos..start]);
                out.push('‹');
                out.push_str(&s[start + 1..end - 1]);
                out.push('›');
                pos = end;
            }
        }
    }
    out.push_str(&s[pos..]);
    Some(out)
}

/// One strip pass: comments and `<TAG>...</TAG>` blocks removed.
fn strip_once(s: &str) -> Option<String> {
    if !s.contains('<') {
        return None;
    }
    let items = scan(s);
    if items.is_empty() {
        return None;
    }
    // Ranges to remove. An open tag removes through its matching close (the first later
    // close of the same name, case-insensitive); items inside it are covered. The closes of
    // each name are queued in order and consumed as the scan moves on, so matching is linear
    // however many tags are left open.
    let mut closes: Vec<VecDeque<usize>> = vec![VecDeque::new(); HIDDEN_TAG_NAMES.len()];
    for (idx, item) in items.iter().enumerate() {
        if let Item::Tag {
            kind, close: true, ..
        } = *item
        {
            closes[kind].push_back(idx);
        }
    }
    let mut remove: Vec<(usize, usize)> = Vec::new();
    let mut k = 0;
    while k < items.len() {
        match items[k] {
            Item::Comment { start, end } => {
                remove.push((start, end));
                k += 1;
            }
            Item::Tag {
                start,
                end,
                kind,
                close,
            } => {
                let queue = &mut closes[kind];
                while queue.front().is_some_and(|&c| c <= k) {
                    queue.pop_front();
                }
                let matching = if close {
                    None
                } else {
                    queue.front().copied().and_then(|c| match items[c] {
                        Item::Tag { end, .. } => Some((c, end)),
                        Item::Comment { .. } => None,
                    })
                };
                match matching {
                    Some((c, close_end)) => {
                        remove.push((start, close_end));
                        k = c + 1;
                    }
                    None => {
                        remove.push((start, end));
                        k += 1;
                    }
                }
            }
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    for (start, end) in remove {
        out.push_str(&s[pos..start]);
        pos = end;
    }
    out.push_str(&s[pos..]);
    Some(out)
}

/// Applies [`surface`] to every string of `value` (not members `skip` names). Returns how many
/// strings changed.
pub fn surface_json(value: &mut serde_json::Value, mode: HiddenTagsMode, skip: &Skip) -> usize {
    if mode == HiddenTagsMode::Report {
        return 0;
    }
    crate::sanitize::rewrite_strings(value, skip, &|s| surface(s, mode))
}

/// Whether [`surface_json`] would change any string of `value` (same walk), on the borrowed
/// value.
pub fn json_has_hidden_tags(value: &serde_json::Value, skip: &Skip) -> bool {
    fn walk(v: &serde_json::Value, skip: &Skip, depth: usize) -> bool {
        if depth > 256 {
            return false;
        }
        match v {
            serde_json::Value::String(s) => has_hidden_tags(s),
            serde_json::Value::Array(a) => a.iter().any(|x| walk(x, skip, depth + 1)),
            serde_json::Value::Object(o) => o
                .iter()
                .any(|(k, x)| !(x.is_string() && skip(o, k)) && walk(x, skip, depth + 1)),
            _ => false,
        }
    }
    walk(value, skip, 0)
}

#[cfg(test)]
mod tests;
