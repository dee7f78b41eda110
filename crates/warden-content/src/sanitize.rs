//! Terminal escapes and invisible characters, removed or made visible.
//!
//! What counts: ANSI/VT escape sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL|ST`, and
//! two-byte `ESC x`), the C1 CSI introducer U+009B, other C0 and C1 controls except tab,
//! newline and carriage return, zero-width characters, bidirectional controls and Unicode tag
//! characters (U+E0000..U+E007F, which can spell out instructions no one sees). One pass,
//! linear time.

use crate::SanitizeMode;

/// True for a character the sanitizer removes (outside escape sequences).
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{ad}'                       // soft hyphen
        | '\u{180e}'                     // Mongolian vowel separator
        | '\u{200b}'..='\u{200f}'        // zero-width space/joiners, LRM/RLM
        | '\u{202a}'..='\u{202e}'        // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}'        // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}'        // bidi isolates
        | '\u{feff}'                     // zero-width no-break space
        | '\u{e0000}'..='\u{e007f}'      // tag characters
    )
}

/// `s` with escapes and invisible characters handled per `mode`; `None` when nothing changed.
pub fn sanitize(s: &str, mode: SanitizeMode) -> Option<String> {
    if mode == SanitizeMode::Off || !needs_sanitizing(s) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' || c == '\u{9b}' {
            // Consume the whole sequence so no half of it reaches a terminal.
            let kind = if c == '\u{9b}' {
                Some('[')
            } else {
                chars.next()
            };
            match kind {
                Some('[') => {
                    // CSI: parameters and intermediates, then one final byte @..~.
                    for d in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&d) {
                            break;
                        }
                    }
                }
                Some(']' | 'P' | '_' | '^' | 'X') => {
                    // OSC/DCS/APC/PM/SOS: up to BEL or ST (ESC \).
                    while let Some(d) = chars.next() {
                        if d == '\u{7}' || d == '\u{9c}' {
                            break;
                        }
                        if d == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            }
            if mode == SanitizeMode::Visible {
                out.push_str("⟦ESC⟧");
            }
            continue;
        }
        if is_invisible(c) {
            if mode == SanitizeMode::Visible {
                out.push_str(&format!("⟦U+{:04X}⟧", c as u32));
            }
            continue;
        }
        out.push(c);
    }
    Some(out)
}

/// Whether `s` holds anything [`sanitize`] removes or makes visible.
pub fn needs_sanitizing(s: &str) -> bool {
    s.chars().any(|c| c == '\u{1b}' || is_invisible(c))
}

/// True when every byte is printable ASCII other than a backslash, or a newline: JSON text
/// that can hold no escape sequence and no invisible character, which are control bytes,
/// multi-byte UTF-8 or written as `\u` escapes. Branch-free within 64-byte blocks, so the
/// compiler vectorises it: it reads every message a sanitising guard sees.
pub fn is_plain_text(bytes: &[u8]) -> bool {
    bytes.chunks(64).all(|block| {
        block.iter().fold(true, |plain, &b| {
            plain & (((0x20..0x7f).contains(&b) & (b != b'\\')) | (b == b'\n'))
        })
    })
}

/// True when `bytes` may hold a hidden tag or comment: a `<`, or a backslash (an escaped
/// one, `\u003c`).
pub fn may_hold_tags(bytes: &[u8]) -> bool {
    memchr::memchr2(b'<', b'\\', bytes).is_some()
}

/// Which string members a walk leaves as they are: `skip(object, key)` for the member `key` of
/// `object`, asked only when the member's value is a string (an identifier the client sends
/// back, a binary payload). Never a whole subtree: a member named like one of those but holding
/// an object or an array is walked like any other.
pub type Skip = dyn Fn(&serde_json::Map<String, serde_json::Value>, &str) -> bool;

/// Whether [`sanitize_json`] would change any string of `value` (same walk, same `skip`), read
/// from the borrowed value, so a clean result is never copied.
pub fn json_needs_sanitizing(value: &serde_json::Value, skip: &Skip) -> bool {
    fn walk(v: &serde_json::Value, skip: &Skip, depth: usize) -> bool {
        if depth > 256 {
            return false;
        }
        match v {
            serde_json::Value::String(s) => needs_sanitizing(s),
            serde_json::Value::Array(a) => a.iter().any(|x| walk(x, skip, depth + 1)),
            serde_json::Value::Object(o) => o
                .iter()
                .any(|(k, x)| !(x.is_string() && skip(o, k)) && walk(x, skip, depth + 1)),
            _ => false,
        }
    }
    walk(value, skip, 0)
}

/// Rewrites every string value of `value` in place with `rewrite` (which returns `None` to
/// leave a string as it is), skipping members whose key `skip` names and anything nested deeper
/// than 256 levels. Object keys are never rewritten. Returns how many strings changed.
pub(crate) fn rewrite_strings(
    value: &mut serde_json::Value,
    skip: &Skip,
    rewrite: &dyn Fn(&str) -> Option<String>,
) -> usize {
    fn walk(
        v: &mut serde_json::Value,
        skip: &Skip,
        rewrite: &dyn Fn(&str) -> Option<String>,
        depth: usize,
        n: &mut usize,
    ) {
        if depth > 256 {
            return;
        }
        match v {
            serde_json::Value::String(s) => {
                if let Some(t) = rewrite(s) {
                    *s = t;
                    *n += 1;
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    walk(x, skip, rewrite, depth + 1, n);
                }
            }
            serde_json::Value::Object(o) => {
                let kept: Vec<bool> = o.iter().map(|(k, x)| x.is_string() && skip(o, k)).collect();
                for ((_, x), kept) in o.iter_mut().zip(kept) {
                    if !kept {
                        walk(x, skip, rewrite, depth + 1, n);
                    }
                }
            }
            _ => {}
        }
    }
    let mut n = 0;
    walk(value, skip, rewrite, 0, &mut n);
    n
}

/// Sanitizes every string value of `value` in place (not object keys), except members `skip`
/// names, whose value must stay as sent (such as tool names the client calls back with).
/// Returns how many strings changed.
pub fn sanitize_json(value: &mut serde_json::Value, mode: SanitizeMode, skip: &Skip) -> usize {
    rewrite_strings(value, skip, &|s| sanitize(s, mode))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bytes_near_the_edges() -> impl Strategy<Value = Vec<u8>> {
        // Mostly printable ASCII with the bytes each test turns on: controls, newline, DEL,
        // backslash, `<`, high bytes; lengths across the 64-byte blocks.
        let byte = prop_oneof![
            8 => 0x20u8..0x7f,
            1 => prop_oneof![Just(b'\n'), Just(b'\\'), Just(b'<'), Just(0x7f), Just(0x1b), Just(0x1f), Just(0x20), Just(0x7e)],
            1 => any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..200)
    }

    proptest! {
        /// The block-wise scans say exactly what the byte loops they replace said.
        #[test]
        fn the_fast_byte_scans_agree_with_the_byte_loops(bytes in bytes_near_the_edges()) {
            let plain = bytes
                .iter()
                .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\' || b == b'\n');
            prop_assert_eq!(is_plain_text(&bytes), plain);
            let tags = bytes.iter().any(|&b| b == b'<' || b == b'\\');
            prop_assert_eq!(may_hold_tags(&bytes), tags);
        }
    }

    #[test]
    fn plain_text_edges() {
        assert!(is_plain_text(b""));
        assert!(is_plain_text(b" ~\n"));
        for bad in [0x1fu8, 0x7f, b'\\', b'\t', b'\r', 0x80, 0xff] {
            // In every position of a block and past it.
            for at in [0, 31, 63, 64, 100] {
                let mut text = vec![b'a'; 101];
                text[at] = bad;
                assert!(!is_plain_text(&text), "{bad:#x} at {at}");
            }
        }
    }

    #[test]
    fn strips_escapes_and_invisible_characters() {
        let s = "ok\u{1b}[31mred\u{1b}[0m \u{1b}]0;title\u{7}x\u{200b}y\u{202e}z\u{e0041}\u{e0042}!\ttab\n";
        assert_eq!(
            sanitize(s, SanitizeMode::Strip).unwrap(),
            "okred xyz!\ttab\n"
        );
        let v = sanitize("a\u{200b}b", SanitizeMode::Visible).unwrap();
        assert_eq!(v, "a⟦U+200B⟧b");
        assert_eq!(
            sanitize("plain text, ünïcödé 漢字", SanitizeMode::Strip),
            None
        );
        assert_eq!(sanitize("a\u{200b}b", SanitizeMode::Off), None);
    }

    #[test]
    fn an_unterminated_sequence_is_removed_to_the_end() {
        assert_eq!(
            sanitize("a\u{1b}]8;;http://x", SanitizeMode::Strip).unwrap(),
            "a"
        );
        assert_eq!(sanitize("a\u{1b}", SanitizeMode::Strip).unwrap(), "a");
    }

    proptest! {
        /// Nothing the sanitizer removes survives it, and a second pass changes nothing.
        #[test]
        fn output_is_clean_and_idempotent(s in "\\PC{0,40}|[\\x00-\\x7f\u{200b}\u{202e}\u{e0041}\u{9b}]{0,40}") {
            if let Some(out) = sanitize(&s, SanitizeMode::Strip) {
                prop_assert!(!out.chars().any(|c| c == '\u{1b}' || is_invisible(c)), "{:?}", out);
                prop_assert_eq!(sanitize(&out, SanitizeMode::Strip), None);
            }
            if let Some(out) = sanitize(&s, SanitizeMode::Visible) {
                prop_assert!(!out.chars().any(|c| c == '\u{1b}' || is_invisible(c)), "{:?}", out);
            }
        }

        /// The borrowed check agrees with the rewriting walk: it says "needs" exactly when
        /// sanitizing changes something.
        #[test]
        fn the_borrowed_check_agrees_with_the_walk(
            a in "\\PC{0,20}|[\\x00-\\x7f\u{200b}\u{202e}\u{e0041}\u{9b}]{0,20}",
            b in "\\PC{0,20}|[\\x00-\\x7f\u{200b}\u{202e}\u{e0041}\u{9b}]{0,20}",
        ) {
            let value = serde_json::json!({"name": a.clone(), "content": [{"text": b.clone()}, a.clone()]});
            let skip = |_: &serde_json::Map<String, serde_json::Value>, k: &str| k == "name";
            let needs = json_needs_sanitizing(&value, &skip);
            let mut copy = value.clone();
            let changed = sanitize_json(&mut copy, SanitizeMode::Strip, &skip);
            prop_assert_eq!(needs, changed > 0);
        }
    }
}
