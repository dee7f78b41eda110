//! The folded view every phrase matcher reads: lowercase, invisible characters dropped,
//! look-alike letters mapped to Latin, runs of whitespace collapsed, `_` read as a space.
//! Each folded byte keeps the offset of the original character it came from, so a match in
//! the folded view maps back to an exact span of the original string.

/// A folded copy of a string with a map back to the original.
///
/// The map is kept as segments rather than one offset per byte: most folded text is a copy
/// of the original (lower-cased ASCII, characters whose folded form is one character), where
/// folded and original offsets advance together. A segment starts wherever they stop doing so
/// (a collapsed whitespace run, a dropped character, a character folded to a different length).
#[derive(Debug, Default)]
pub(crate) struct Folded {
    /// The folded text.
    pub(crate) text: String,
    /// `(folded, original)` offsets where a segment starts, both increasing, both on character
    /// boundaries; the first segment starts at folded offset 0. Inside a segment starting at
    /// `(f, o)`, the folded character starting at `f + d` came from the original character
    /// starting at `o + d`. Every byte of a folded character maps to the start of the original
    /// character that produced it.
    segments: Vec<(usize, usize)>,
    /// The segment of the last answer of [`Folded::folded_offset`], where the next search
    /// starts.
    hint: std::cell::Cell<usize>,
}

impl Folded {
    /// The byte offset, in the original, of the character that produced folded byte `i`
    /// (`i < text.len()`).
    fn original_of(&self, i: usize) -> usize {
        let mut c = i;
        while c > 0 && !self.text.is_char_boundary(c) {
            c -= 1;
        }
        let k = self.segments.partition_point(|&(f, _)| f <= c).max(1) - 1;
        let (f, o) = self.segments[k];
        o + (c - f)
    }

    /// The original span `[start, end)` covered by folded bytes `[a, b)`.
    pub(crate) fn original_span(&self, original: &str, a: usize, b: usize) -> (usize, usize) {
        let n = self.text.len();
        if n == 0 || a >= b {
            let at = if a < n {
                self.original_of(a)
            } else {
                original.len()
            };
            return (at, at);
        }
        let a = a.min(n - 1);
        let b = b.min(n).max(a + 1);
        let start = self.original_of(a);
        let last = self.original_of(b - 1);
        let end = last + original[last..].chars().next().map_or(0, char::len_utf8);
        (start, end.max(start))
    }

    /// The folded offset of the first folded byte produced at or after original offset `at`.
    ///
    /// Queries come in nearly increasing order, so the search for the segment gallops from the
    /// previous answer (logarithmic in the distance) instead of bisecting all segments.
    pub(crate) fn folded_offset(&self, at: usize) -> usize {
        let segs = &self.segments;
        let n = segs.len();
        if n == 0 {
            return 0;
        }
        // `count`: the number of segments starting before `at` in the original.
        let h = self.hint.get().min(n);
        let less = |i: usize| segs[i].1 < at;
        let count = if h < n && less(h) {
            let (mut lo, mut hi, mut step) = (h + 1, h + 1, 1);
            while hi < n && less(hi) {
                lo = hi + 1;
                hi = (hi + step).min(n);
                step *= 2;
            }
            lo + segs[lo..hi].partition_point(|&(_, o)| o < at)
        } else {
            let (mut lo, mut step) = (h, 1);
            while lo > 0 && !less(lo - 1) {
                lo = lo.saturating_sub(step);
                step *= 2;
            }
            lo + segs[lo..h].partition_point(|&(_, o)| o < at)
        };
        self.hint.set(count);
        if count == 0 {
            // The first segment's first byte already maps at or after `at`.
            return 0;
        }
        let k = count - 1;
        let (f, o) = segs[k];
        let seg_end = segs.get(k + 1).map_or(self.text.len(), |&(f, _)| f);
        // Inside segment `k`, the first folded character starting at or after `f + (at - o)`.
        let mut i = f + (at - o);
        if i >= seg_end {
            return seg_end;
        }
        while !self.text.is_char_boundary(i) {
            i += 1;
        }
        i.min(seg_end)
    }
}

/// Builds the text and segments of a [`Folded`].
struct Builder {
    text: String,
    segments: Vec<(usize, usize)>,
    /// The original offset the current segment predicts for the next folded character.
    next: usize,
}

impl Builder {
    /// Notes that the folded character about to be appended at the end of the text came from
    /// the original character at `at`.
    #[inline]
    fn mark(&mut self, at: usize) {
        if self.segments.is_empty() || self.next != at {
            self.segments.push((self.text.len(), at));
            self.next = at;
        }
    }

    /// Appends the whitespace run `pending` (original offset, holds a line break) as one
    /// space or line break, unless it leads the text.
    #[inline]
    fn flush_whitespace(&mut self, pending: &mut Option<(usize, bool)>) {
        if let Some((start, nl)) = pending.take()
            && !self.text.is_empty()
        {
            self.push(if nl { '\n' } else { ' ' }, start);
        }
    }

    /// Appends one folded character produced by the original character at `at`.
    #[inline]
    fn push(&mut self, ch: char, at: usize) {
        self.mark(at);
        self.text.push(ch);
        self.next += ch.len_utf8();
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

/// ASCII bytes the fold copies as they are, lower-cased: printable, not space, not `_`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0x21;
    while c < 0x7F {
        t[c] = c != b'_' as usize;
        c += 1;
    }
    t
};

/// Folds `s`. Linear: one pass, at most 3 output chars per input char (`to_lowercase`), so
/// the folded text is at most 3 × the input.
pub(crate) fn fold(s: &str) -> Folded {
    let mut out = Builder {
        text: String::with_capacity(s.len()),
        segments: Vec::new(),
        next: 0,
    };
    // Pending whitespace run: (original offset, contains a line break).
    let mut pending: Option<(usize, bool)> = None;
    let bytes = s.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let x = bytes[at];
        // ASCII fast path: a run of printable bytes is copied and lower-cased at once; the
        // segment continues unless the run starts somewhere the segment does not predict.
        // Space and line break are the only bytes below 0x21 copied as they are, and only
        // inside a run (see below).
        if PLAIN[usize::from(x)] {
            out.flush_whitespace(&mut pending);
            // A single space or line break between printable bytes folds to itself: it
            // continues the run (words of prose are copied as one run, not one by one).
            let mut end = at;
            loop {
                end = bytes[end..]
                    .iter()
                    .position(|&y| !PLAIN[usize::from(y)])
                    .map_or(bytes.len(), |p| end + p);
                if end + 1 < bytes.len()
                    && matches!(bytes[end], b' ' | b'\n')
                    && PLAIN[usize::from(bytes[end + 1])]
                {
                    end += 1;
                    continue;
                }
                break;
            }
            out.mark(at);
            let from = out.text.len();
            out.text.push_str(&s[at..end]);
            out.text[from..].make_ascii_lowercase();
            out.next += end - at;
            at = end;
            continue;
        }
        if x < 0x80 {
            at += 1;
            if x.is_ascii_whitespace() || x == b'_' || x == 0x0B {
                let nl = matches!(x, b'\n' | b'\r' | 0x0B | 0x0C);
                pending = Some(match pending {
                    Some((start, had)) => (start, had || nl),
                    None => (at - 1, nl),
                });
            }
            // Other ASCII controls and DEL are dropped.
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
        out.flush_whitespace(&mut pending);
        if is_unspaced_script(c) {
            // CJK, kana, Hangul, Arabic: no case, no look-alikes to map.
            out.push(latin_lookalike(c), here);
        } else {
            for l in c.to_lowercase() {
                out.push(latin_lookalike(l), here);
            }
        }
    }
    Folded {
        text: out.text,
        segments: out.segments,
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

    /// The fold as it was first written: one original offset per folded byte. The segmented
    /// map must answer exactly as this one does.
    fn reference_fold(s: &str) -> (String, Vec<usize>) {
        let mut text = String::new();
        let mut map = Vec::new();
        let mut pending: Option<(usize, bool)> = None;
        let push = |text: &mut String, map: &mut Vec<usize>, ch: char, at: usize| {
            text.push(ch);
            map.extend(std::iter::repeat_n(at, ch.len_utf8()));
        };
        for (here, c) in s.char_indices() {
            if is_invisible(c) || (c.is_control() && !c.is_whitespace() && c != '\u{0B}') {
                continue;
            }
            if c.is_whitespace() || c == '_' || c == '\u{3000}' {
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
                push(&mut text, &mut map, latin_lookalike(c), here);
            } else {
                for l in c.to_lowercase() {
                    push(&mut text, &mut map, latin_lookalike(l), here);
                }
            }
        }
        (text, map)
    }

    /// Checks the fold of `s` against [`reference_fold`]: same text, same original offset for
    /// every folded byte and every span, same folded offset for every original offset, asked
    /// in increasing, decreasing and scattered order (the galloping search keeps state).
    fn check_against_reference(s: &str) {
        let f = fold(s);
        let (text, map) = reference_fold(s);
        assert_eq!(f.text, text, "text of {s:?}");
        for (i, &o) in map.iter().enumerate() {
            assert_eq!(f.original_of(i), o, "byte {i} of {s:?}");
        }
        let n = text.len();
        for a in 0..=n + 1 {
            for b in [a, a + 1, a + 3, n, n + 2] {
                let expected = if n == 0 || a >= b {
                    let at = map.get(a).copied().unwrap_or(s.len());
                    (at, at)
                } else {
                    let a = a.min(n - 1);
                    let b = b.min(n).max(a + 1);
                    let last = map[b - 1];
                    let end = last + s[last..].chars().next().map_or(0, char::len_utf8);
                    (map[a], end.max(map[a]))
                };
                assert_eq!(f.original_span(s, a, b), expected, "span {a}..{b} of {s:?}");
            }
        }
        let mut queries: Vec<usize> = (0..=s.len() + 2).collect();
        queries.extend((0..=s.len()).rev());
        queries.extend([3, 17, 0, 30, 1, 2, 9, s.len() / 2, 5]);
        for at in queries {
            assert_eq!(
                f.folded_offset(at),
                map.partition_point(|&x| x < at),
                "at {at} of {s:?}"
            );
        }
    }

    #[test]
    fn segmented_map_answers_like_a_per_byte_map() {
        for s in [
            "",
            "   ",
            "Ab  ç\u{200b}_DÉ   f\u{1F600}gH ijk",
            "XİY İİ ǅ ﬃ Ѐ",
            "  lead\r\n\r\ntrail  ",
            "a\u{0}b\u{7f}c\u{1b}[31md",
            "ІGNОRE　全角ＡＢＣ　text",
            "__x__y_ _z",
            "ℓ 𝐀 ß ẞ Σ ς",
            "中文，标点。\n\n한국어 العربية",
        ] {
            check_against_reference(s);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Any string, including control, invisible, multi-byte and case-changing characters.
        #[test]
        fn segmented_map_matches_the_reference(
            s in "([ -~]|[\\s_]|[\\x00-\\x1f]|\\u{200b}|İ|ǅ|ﬃ|Ꭰ|ẞ|Σ|\\u{3000}|[а-яА-Я]|[一-龥]|[\\u{80}-\\u{10ffff}]){0,40}"
        ) {
            check_against_reference(&s);
        }
    }
}
