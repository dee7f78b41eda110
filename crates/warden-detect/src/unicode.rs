//! Unicode tricks: tag characters (decoded and re-analysed), zero-width and bidi controls,
//! variation-selector smuggling, ANSI/terminal escapes and other control characters, and
//! look-alike names (UTS #39 skeletons and mixed scripts).
//!
//! One pass over the characters; a run of the same kind becomes one finding.

use unicode_security::{MixedScript, skeleton};

use crate::finding::Severity;
use crate::text::Role;

/// Rule ids of this module.
pub mod rules {
    /// Unicode tag characters (U+E0000 block): invisible ASCII.
    pub const TAG_CHARACTERS: &str = "unicode.tag-characters";
    /// Zero-width and other invisible characters.
    pub const INVISIBLE: &str = "unicode.invisible-characters";
    /// Bidirectional controls that reorder what is displayed.
    pub const BIDI: &str = "unicode.bidi-control";
    /// ANSI / terminal escape sequences.
    pub const TERMINAL_ESCAPE: &str = "unicode.terminal-escape";
    /// Other control characters.
    pub const CONTROL: &str = "unicode.control-characters";
    /// Long runs of variation selectors (data hidden in "emoji" modifiers).
    pub const VARIATION_SELECTORS: &str = "unicode.variation-selector-smuggling";
    /// A name mixing scripts (Latin with Cyrillic, ...).
    pub const MIXED_SCRIPT_NAME: &str = "unicode.mixed-script-name";
    /// A name outside ASCII.
    pub const NON_ASCII_NAME: &str = "unicode.non-ascii-name";
}

/// A raw finding of this module: rule, severity, byte span, evidence.
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) rule: &'static str,
    pub(crate) severity: Severity,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) evidence: String,
    /// For tag characters: the hidden ASCII they spell.
    pub(crate) hidden: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tag,
    Invisible,
    Bidi,
    BidiOverride,
    Variation,
    Control,
}

fn kind_of(c: char) -> Option<Kind> {
    Some(match c {
        '\u{E0000}'..='\u{E007F}' => Kind::Tag,
        '\u{202D}' | '\u{202E}' => Kind::BidiOverride,
        '\u{202A}'..='\u{202C}' | '\u{2066}'..='\u{2069}' => Kind::Bidi,
        '\u{200B}'..='\u{200D}'
        | '\u{2060}'..='\u{2064}'
        | '\u{FEFF}'
        | '\u{180E}'
        | '\u{00AD}'
        | '\u{034F}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{3164}'
        | '\u{FFA0}'
        | '\u{17B4}'
        | '\u{17B5}'
        | '\u{206A}'..='\u{206F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' => Kind::Invisible,
        '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' => Kind::Variation,
        '\u{00}'..='\u{08}' | '\u{0B}' | '\u{0C}' | '\u{0E}'..='\u{1F}' | '\u{7F}'..='\u{9F}' => {
            Kind::Control
        }
        _ => return None,
    })
}

/// ZWJ / ZWNJ are part of emoji sequences and of Indic, Arabic and Persian writing: only
/// suspicious between two ASCII characters (inside an ASCII word).
fn joiner_is_legit(s: &str, start: usize, end: usize) -> bool {
    let before = s[..start].chars().next_back();
    let after = s[end..].chars().next();
    !(before.is_some_and(|c| c.is_ascii_alphanumeric())
        && after.is_some_and(|c| c.is_ascii_alphanumeric()))
}

/// Lead bytes of every character this module reports: ASCII controls, and the UTF-8 lead
/// bytes of U+0080–U+00BF (C1, soft hyphen), U+034F, U+1100–U+1FFF, U+2000–U+2FFF,
/// U+3000–U+3FFF, U+F000–U+FFFF, U+1xxxx (0xF0) and U+Exxxx (0xF3). CJK ideographs, most
/// letters and all printable ASCII are skipped without decoding.
const fn lead_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = !matches!(i, 0x09 | 0x0A | 0x0D);
        i += 1;
    }
    t[0x7F] = true;
    t[0xC2] = true;
    t[0xCD] = true;
    t[0xE1] = true;
    t[0xE2] = true;
    t[0xE3] = true;
    t[0xEF] = true;
    t[0xF0] = true;
    t[0xF3] = true;
    t
}
const LEAD: [bool; 256] = lead_table();

/// Scans `s` for Unicode tricks.
pub(crate) fn scan(s: &str, role: Role) -> Vec<Raw> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut run: Option<(Kind, usize, usize, usize)> = None; // kind, start, end, count
    let mut i = 0;
    while i < b.len() {
        // Jump to the next byte that can start a reported character.
        match b[i..].iter().position(|x| LEAD[usize::from(*x)]) {
            Some(0) => {}
            Some(p) => {
                if run.is_some() {
                    flush(s, role, &mut run, &mut out);
                }
                i += p;
            }
            None => break,
        }
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        let at = i;
        i += c.len_utf8();
        // Terminal escapes: ESC or C1 CSI/OSC, reported with the sequence they start.
        if c == '\u{1B}' || c == '\u{9B}' || c == '\u{9D}' {
            flush(s, role, &mut run, &mut out);
            let mut chars = s[i..].char_indices().map(|(j, c)| (j + i, c)).peekable();
            let mut end = i;
            // Consume the sequence: ESC [ params final | ESC ] ... BEL/ST | ESC x.
            let mut kind = "";
            if c == '\u{1B}' {
                if let Some(&(_, n)) = chars.peek() {
                    kind = match n {
                        '[' => "csi",
                        ']' => "osc",
                        'P' => "dcs",
                        _ => "esc",
                    };
                    end += n.len_utf8();
                    chars.next();
                }
            } else {
                kind = if c == '\u{9B}' { "csi" } else { "osc" };
            }
            let mut taken = 0;
            while let Some(&(j, n)) = chars.peek() {
                // Bounded: a sequence longer than 256 characters is cut there.
                if taken >= 256 {
                    break;
                }
                match kind {
                    "csi" => {
                        chars.next();
                        end = j + n.len_utf8();
                        taken += 1;
                        if ('\u{40}'..='\u{7E}').contains(&n) {
                            break;
                        }
                    }
                    "osc" | "dcs" => {
                        chars.next();
                        end = j + n.len_utf8();
                        taken += 1;
                        if n == '\u{07}'
                            || n == '\u{9C}'
                            || (n == '\\' && s[..j].ends_with('\u{1B}'))
                        {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            i = end;
            let colour = kind == "csi" && s[..end].ends_with('m');
            let severity = match (role, kind) {
                (Role::Content, "osc" | "dcs") => Severity::High,
                (Role::Content, _) if colour => Severity::Low,
                (Role::Content, _) => Severity::Medium,
                _ => Severity::High,
            };
            out.push(Raw {
                rule: rules::TERMINAL_ESCAPE,
                severity,
                start: at,
                end,
                evidence: format!("{kind} escape sequence"),
                hidden: None,
            });
            continue;
        }
        let Some(k) = kind_of(c) else {
            if run.is_some() {
                flush(s, role, &mut run, &mut out);
            }
            continue;
        };
        // A BOM at the very start is an encoding mark, not a trick.
        if c == '\u{FEFF}' && at == 0 {
            continue;
        }
        let end = at + c.len_utf8();
        match &mut run {
            Some((rk, _, rend, count)) if *rk == k && *rend == at => {
                *rend = end;
                *count += 1;
            }
            _ => {
                flush(s, role, &mut run, &mut out);
                run = Some((k, at, end, 1));
            }
        }
    }
    flush(s, role, &mut run, &mut out);
    out
}

fn flush(s: &str, role: Role, run: &mut Option<(Kind, usize, usize, usize)>, out: &mut Vec<Raw>) {
    let Some((kind, start, end, count)) = run.take() else {
        return;
    };
    let meta = role != Role::Content;
    let (rule, severity, evidence, hidden) = match kind {
        Kind::Tag => {
            let hidden: String = s[start..end]
                .chars()
                .filter_map(|c| {
                    let v = c as u32 - 0xE0000;
                    (0x20..0x7F).contains(&v).then(|| char::from(v as u8))
                })
                .collect();
            // A lone tag sequence in an emoji flag (subdivision flags) is legit: black flag
            // + lowercase letters + cancel tag. Those are short and lowercase-only.
            let flag = s[..start].ends_with('\u{1F3F4}')
                && hidden
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if flag {
                return;
            }
            (
                rules::TAG_CHARACTERS,
                Severity::High,
                format!("{count} tag characters"),
                Some(hidden),
            )
        }
        Kind::BidiOverride => (
            rules::BIDI,
            if meta {
                Severity::High
            } else {
                Severity::Medium
            },
            format!("{count} bidi override character(s)"),
            None,
        ),
        Kind::Bidi => (
            rules::BIDI,
            // Embeddings and isolates are how right-to-left text is laid out; without any
            // right-to-left letters around they only reorder what is shown.
            if meta && !s.chars().any(is_rtl) {
                Severity::Medium
            } else {
                Severity::Low
            },
            format!("{count} bidi embedding/isolate character(s)"),
            None,
        ),
        Kind::Invisible => {
            let only_joiners = s[start..end]
                .chars()
                .all(|c| c == '\u{200C}' || c == '\u{200D}');
            if only_joiners && joiner_is_legit(s, start, end) {
                return;
            }
            if s[start..end].chars().all(|c| c == '\u{00AD}') && !meta {
                return;
            }
            let severity = match (meta, count >= 8) {
                (true, true) => Severity::High,
                (true, false) => Severity::Medium,
                (false, true) => Severity::Medium,
                (false, false) => Severity::Low,
            };
            (
                rules::INVISIBLE,
                severity,
                format!("{count} invisible character(s)"),
                None,
            )
        }
        Kind::Variation => {
            if count < 3 {
                return;
            }
            let severity = if count >= 8 {
                Severity::High
            } else {
                Severity::Medium
            };
            (
                rules::VARIATION_SELECTORS,
                severity,
                format!("{count} variation selectors in a row"),
                None,
            )
        }
        Kind::Control => (
            rules::CONTROL,
            if meta {
                Severity::Medium
            } else {
                Severity::Low
            },
            format!("{count} control character(s)"),
            None,
        ),
    };
    out.push(Raw {
        rule,
        severity,
        start,
        end,
        evidence,
        hidden,
    });
}

fn is_rtl(c: char) -> bool {
    matches!(c, '\u{0590}'..='\u{08FF}' | '\u{FB1D}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}')
}

/// Checks one name (tool or property name) for mixed scripts and non-ASCII letters.
pub(crate) fn name_checks(name: &str) -> Vec<Raw> {
    let mut out = Vec::new();
    if name.is_ascii() {
        return out;
    }
    if !name.is_single_script() {
        out.push(Raw {
            rule: rules::MIXED_SCRIPT_NAME,
            severity: Severity::High,
            start: 0,
            end: name.len(),
            evidence: format!(
                "mixed scripts; reads as `{}`",
                crate::text::snippet(&skeleton_of(name))
            ),
            hidden: None,
        });
    } else {
        out.push(Raw {
            rule: rules::NON_ASCII_NAME,
            severity: Severity::Low,
            start: 0,
            end: name.len(),
            evidence: "name outside ASCII".into(),
            hidden: None,
        });
    }
    out
}

/// The UTS #39 skeleton of a name, case-folded and with `-`, `_`, `.` and spaces removed,
/// so `get_Fіle` and `getfile` compare equal. Two names with the same skeleton look alike.
pub fn skeleton_of(name: &str) -> String {
    let lowered: String = name.chars().flat_map(char::to_lowercase).collect();
    skeleton(&lowered)
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' ') && !crate::text::fold::is_invisible(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Pairs of names (indices into `names`) that differ but look alike: same skeleton.
/// Linear in the number of names (one hash map), plus the pairs reported.
pub fn confusable_pairs(names: &[&str]) -> Vec<(usize, usize)> {
    let mut by_skeleton: std::collections::HashMap<String, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, n) in names.iter().enumerate() {
        by_skeleton.entry(skeleton_of(n)).or_default().push(i);
    }
    let mut pairs = Vec::new();
    let mut groups: Vec<_> = by_skeleton.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    for g in groups {
        for (x, &i) in g.iter().enumerate() {
            for &j in &g[x + 1..] {
                if names[i] != names[j] {
                    pairs.push((i, j));
                }
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests;
