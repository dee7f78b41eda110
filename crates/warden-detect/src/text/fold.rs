//! The folded view every phrase matcher reads: lowercase, invisible characters dropped,
//! look-alike letters mapped to Latin, runs of whitespace collapsed, `_` read as a space.
//! Each folded byte keeps the offset of the original character it came from, so a match in
//! the folded view maps back to an exact span of the original string.

/// A folded copy of a string with a map back to the original.
#[derive(Debug, Default)]
pub(crate) struct Folded {
    /// The folded text.
    pub(crate) text: String,
    /// `map[i]` is the byte offset, in the original, of the character that produced folded
    /// byte `i`. One entry per folded byte.
    map: Vec<u32>,
    /// The last answer of [`Folded::folded_offset`], where the next search starts.
    hint: std::cell::Cell<usize>,
}

impl Folded {
    /// The original span `[start, end)` covered by folded bytes `[a, b)`.
    pub(crate) fn original_span(&self, original: &str, a: usize, b: usize) -> (usize, usize) {
        if self.map.is_empty() || a >= b {
            let at = self.map.get(a).map_or(original.len(), |&x| x as usize);
            return (at, at);
        }
        let a = a.min(self.map.len() - 1);
        let b = b.min(self.map.len()).max(a + 1);
        let start = self.map[a] as usize;
        let last = self.map[b - 1] as usize;
        let end = last + original[last..].chars().next().map_or(0, char::len_utf8);
        (start, end.max(start))
    }

    /// The folded offset of the first folded byte produced at or after original offset `at`.
    ///
    /// Queries come in nearly increasing order, so the search gallops from the previous
    /// answer (logarithmic in the distance, cache-friendly) instead of bisecting the whole map.
    pub(crate) fn folded_offset(&self, at: usize) -> usize {
        let map = &self.map;
        let n = map.len();
        let h = self.hint.get().min(n);
        let less = |i: usize| (map[i] as usize) < at;
        let answer = if h < n && less(h) {
            let (mut lo, mut hi, mut step) = (h + 1, h + 1, 1);
            while hi < n && less(hi) {
                lo = hi + 1;
                hi = (hi + step).min(n);
                step *= 2;
            }
            lo + map[lo..hi].partition_point(|&x| (x as usize) < at)
        } else {
            let (mut lo, mut step) = (h, 1);
            while lo > 0 && !less(lo - 1) {
                lo = lo.saturating_sub(step);
                step *= 2;
            }
            lo + map[lo..h].partition_point(|&x| (x as usize) < at)
        };
        self.hint.set(answer);
        answer
    }
}

/// Characters that render as nothing: dropped from the folded view (the Unicode analysis
/// reports them separately).
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Latin look-alikes from other scripts (lowercase), so `іgnоre` reads as `ignore`. Applied
/// to patterns too, so patterns in those scripts still match their own text.
fn latin_lookalike(c: char) -> char {
    match c {
        'а' | 'α' | 'ɑ' => 'a',
        'е' | 'ё' | 'ε' => 'e',
        'о' | 'ο' | 'օ' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'с' | 'ϲ' => 'c',
        'у' | 'γ' => 'y',
        'х' | 'χ' => 'x',
        'і' | 'ı' | 'ι' | 'ɩ' => 'i',
        'ј' | 'ϳ' => 'j',
        'ѕ' => 's',
        'һ' => 'h',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ӏ' | 'ℓ' => 'l',
        'ν' => 'v',
        'κ' => 'k',
        'υ' | 'ս' => 'u',
        'ɡ' => 'g',
        '‘' | '’' | '‚' | '‛' | '′' | '´' => '\'',
        '“' | '”' | '„' | '‟' | '″' | '«' | '»' => '"',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Folds `s`. Linear: one pass, at most 3 output chars per input char (`to_lowercase`), so
/// the folded text is at most 3 × the input.
pub(crate) fn fold(s: &str) -> Folded {
    let mut text = String::with_capacity(s.len());
    let mut map: Vec<u32> = Vec::with_capacity(s.len());
    // Pending whitespace run: (original offset, contains a line break).
    let mut pending: Option<(usize, bool)> = None;
    let push = |text: &mut String, map: &mut Vec<u32>, ch: char, at: usize| {
        text.push(ch);
        for _ in 0..ch.len_utf8() {
            map.push(u32::try_from(at).unwrap_or(u32::MAX));
        }
    };
    let bytes = s.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let x = bytes[at];
        // ASCII fast path: one byte in, at most one byte out.
        if x < 0x80 {
            at += 1;
            if x.is_ascii_whitespace() || x == b'_' || x == 0x0B {
                let nl = matches!(x, b'\n' | b'\r' | 0x0B | 0x0C);
                pending = Some(match pending {
                    Some((start, had)) => (start, had || nl),
                    None => (at - 1, nl),
                });
                continue;
            }
            if x < 0x20 || x == 0x7F {
                continue;
            }
            if let Some((start, nl)) = pending.take()
                && !text.is_empty()
            {
                push(&mut text, &mut map, if nl { '\n' } else { ' ' }, start);
            }
            text.push(char::from(x.to_ascii_lowercase()));
            map.push(u32::try_from(at - 1).unwrap_or(u32::MAX));
            continue;
        }
        let Some(c) = s[at..].chars().next() else {
            break;
        };
        let here = at;
        at += c.len_utf8();
        if is_invisible(c) || (c.is_control() && !c.is_whitespace()) {
            continue;
        }
        if c.is_whitespace() || c == '\u{3000}' {
            let nl = is_line_break(c);
            pending = Some(match pending {
                Some((start, had)) => (start, had || nl),
                None => (here, nl),
            });
            continue;
        }
        if let Some((start, nl)) = pending.take()
            && !text.is_empty()
        {
            push(&mut text, &mut map, if nl { '\n' } else { ' ' }, start);
        }
        if is_unspaced_script(c) {
            // CJK, kana, Hangul, Arabic: no case, no look-alikes to map.
            push(&mut text, &mut map, latin_lookalike(c), here);
        } else {
            for l in c.to_lowercase() {
                push(&mut text, &mut map, latin_lookalike(l), here);
            }
        }
    }
    Folded {
        text,
        map,
        hint: std::cell::Cell::new(0),
    }
}

/// A character that belongs to a word of a space-delimited script. Used for word-boundary
/// checks; CJK, kana, Hangul and Arabic letters return `false` (no boundary checks there).
pub(crate) fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    c.is_alphanumeric() && !is_unspaced_script(c)
}

/// Scripts whose words are not separated by spaces (or take attached particles).
pub(crate) fn is_unspaced_script(c: char) -> bool {
    matches!(c,
        '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}' | '\u{08A0}'..='\u{08FF}'
        | '\u{1100}'..='\u{11FF}' | '\u{2E80}'..='\u{9FFF}' | '\u{A960}'..='\u{A97F}'
        | '\u{AC00}'..='\u{D7FF}' | '\u{F900}'..='\u{FAFF}' | '\u{FB50}'..='\u{FDFF}'
        | '\u{FE70}'..='\u{FEFF}' | '\u{FF66}'..='\u{FFDC}' | '\u{20000}'..='\u{3FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_invisibles_lookalikes_and_whitespace() {
        let s = "IG\u{200B}NORE  Рrevious_instructions";
        let f = fold(s);
        assert_eq!(f.text, "ignore previous instructions");
        let start = f.text.find("previous").unwrap();
        let (a, b) = f.original_span(s, start, start + "previous".len());
        assert_eq!(&s[a..b], "Рrevious");
    }

    #[test]
    fn keeps_line_breaks_as_one_newline() {
        assert_eq!(fold("a \r\n\n  b").text, "a\nb");
        assert_eq!(fold("  lead").text, "lead");
    }

    #[test]
    fn maps_spans_through_multibyte_lowercase() {
        let s = "XİY";
        let f = fold(s);
        let end = f.text.len();
        assert_eq!(f.original_span(s, 0, end), (0, s.len()));
        assert_eq!(f.folded_offset(1), 1);
    }

    #[test]
    fn galloping_offsets_match_bisection_in_any_order() {
        let s = "Ab  ç\u{200b}_DÉ   f\u{1F600}gH ijk";
        let f = fold(s);
        let mut queries: Vec<usize> = (0..=s.len() + 2).collect();
        queries.extend((0..=s.len()).rev());
        queries.extend([3, 17, 0, 30, 1, 2, 9]);
        for at in queries {
            assert_eq!(
                f.folded_offset(at),
                f.map.partition_point(|&x| (x as usize) < at),
                "at {at}"
            );
        }
    }
}
