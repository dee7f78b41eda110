//! How far a match of an assignment-template rule can reach past its operator, computed from
//! the pattern, so a rule is searched in a window that fits the match instead of a fixed
//! [`super::gitleaks::UNBOUNDED_WINDOW`] around every keyword.
//!
//! Most rules have a bounded longest match. A few (`generic-api-key`) end in a value without an
//! upper bound, such as `[a-z0-9][a-z0-9+/]{11,}`: a match of the part after the operator is
//! then either bounded, or a bounded amount of text, one contiguous run of bytes from a known
//! set, and a bounded amount of text. Its end is found by walking that run in the text, which
//! costs one byte test per run byte and never cuts a match short.

use regex_syntax::hir::{Class, Hir, HirKind};

/// How far the text after an operator can be part of a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// At most this many bytes.
    Bounded(usize),
    /// A match either avoids the unbounded repetition and is at most `avoiding` bytes long, or
    /// goes through it: at most `before` bytes, then a contiguous run of bytes from `run`,
    /// then at most `after` bytes.
    Run {
        /// Longest match that does not go through the unbounded repetition.
        avoiding: usize,
        /// Longest text before the run.
        before: usize,
        /// Longest text after the run.
        after: usize,
        /// Bytes the unbounded repetition can match (non-ASCII characters as all bytes >= 0x80).
        run: Box<[bool; 256]>,
    },
}

/// What [`walk`] knows of a sub-pattern: its longest match avoiding the unbounded repetition,
/// and, if it contains it, the longest text before and after it on paths through it.
struct Part {
    avoiding: usize,
    through: Option<(usize, usize)>,
}

impl Tail {
    /// Analyses the part of a pattern after the operator. `None` when it has more than one
    /// unbounded repetition, or one inside another repetition: no cheap bound is known then.
    pub(crate) fn of(hir: &Hir) -> Option<Tail> {
        if let Some(n) = hir.properties().maximum_len() {
            return Some(Tail::Bounded(n));
        }
        let mut run = None;
        let part = walk(hir, false, &mut run)?;
        let (before, after) = part.through?;
        run.map(|run| Tail::Run {
            avoiding: part.avoiding,
            before,
            after,
            run,
        })
    }

    /// The end of the text a match can cover when the tail starts at or before `from` (clamped
    /// to `text.len()`); `cap` bounds how far an unbounded run is followed.
    pub(crate) fn end(&self, text: &[u8], from: usize, cap: usize) -> usize {
        match self {
            Tail::Bounded(n) => from.saturating_add(*n).min(text.len()),
            Tail::Run {
                avoiding,
                before,
                after,
                run,
            } => {
                // The run starts within `before` bytes and is contiguous: wherever it starts,
                // following it from there reaches its end.
                let mut at = from.saturating_add(*before).min(text.len());
                let limit = at.saturating_add(cap).min(text.len());
                while at < limit && run[usize::from(text[at])] {
                    at += 1;
                }
                at.saturating_add(*after)
                    .max(from.saturating_add(*avoiding))
                    .min(text.len())
            }
        }
    }
}

/// Where a match of a pattern without a longest match can lie around a keyword occurrence it
/// contains. The pattern is a concatenation of a bounded head (at most `before` bytes), a
/// middle made of bytes from `run` only, and a bounded tail (at most `after` bytes); a match
/// containing the keyword therefore lies inside the contiguous run of `run` bytes around the
/// keyword, widened by `before` and `after`. Found by walking that run in the text, instead
/// of searching [`super::gitleaks::UNBOUNDED_WINDOW`] bytes each side of every keyword (the
/// `jwt` rule's `ey` occurs on most lines of text).
#[derive(Debug, Clone)]
pub(crate) struct Around {
    before: usize,
    after: usize,
    run: Box<[bool; 256]>,
}

/// What the walks of one rule have already seen: `[start, end)` holds `run` bytes only.
/// Keeps the walks linear when many keywords lie in one run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seen {
    start: usize,
    end: usize,
}

impl Around {
    /// From a whole pattern. `None` when it has no unbounded middle, or when the middle can
    /// hold a space or a line break (its runs would be whole paragraphs: no gain).
    pub(crate) fn of(hir: &Hir) -> Option<Around> {
        if hir.properties().maximum_len().is_some() {
            return None;
        }
        let parts: Vec<&Hir> = match hir.kind() {
            HirKind::Concat(subs) => subs.iter().collect(),
            _ => vec![hir],
        };
        let bounded = |p: &&&Hir| p.properties().maximum_len().is_some();
        let head = parts.iter().take_while(bounded).count();
        let tail = parts[head..].iter().rev().take_while(bounded).count();
        let mut before = 0usize;
        for p in &parts[..head] {
            before = before.checked_add(p.properties().maximum_len()?)?;
        }
        let mut after = 0usize;
        for p in &parts[parts.len() - tail..] {
            after = after.checked_add(p.properties().maximum_len()?)?;
        }
        let mut run = Box::new([false; 256]);
        for p in &parts[head..parts.len() - tail] {
            bytes_of(p, &mut run);
        }
        if run[usize::from(b' ')] || run[usize::from(b'\n')] {
            return None;
        }
        Some(Around { before, after, run })
    }

    /// The window that holds every match containing the keyword occurrence `hit`, with runs
    /// followed at most `cap` bytes. `seen` carries what earlier walks of the same rule found.
    ///
    /// A match `m` containing `hit` is `head · middle · tail`, the middle `[y0, y1)` all run
    /// bytes. It ends by `y1 + after`: either `y1 <= hit.start + before`, or the middle covers
    /// `[hit.start + before, y1)`, which the forward walk from there crosses. It starts at or
    /// after `y0 - before`: either `y0 >= hit.end - after`, or the middle covers
    /// `[y0, hit.end - after)`, which the backward walk from there crosses.
    pub(crate) fn window(
        &self,
        text: &[u8],
        hit: std::ops::Range<usize>,
        cap: usize,
        seen: &mut Seen,
    ) -> std::ops::Range<usize> {
        let n = text.len();
        // Forward.
        let q = hit.start.saturating_add(self.before).min(n);
        let limit = q.saturating_add(cap).min(n);
        let known = seen.start <= q && q <= seen.end;
        let mut at = if known { seen.end } else { q };
        if at >= limit {
            at = limit;
        } else {
            while at < limit && self.run[usize::from(text[at])] {
                at += 1;
            }
        }
        *seen = Seen {
            start: if known { seen.start } else { q },
            end: at.max(if known { seen.end } else { q }),
        };
        let end = at.saturating_add(self.after).max(hit.end).min(n);
        // Backward.
        let q = hit.end.saturating_sub(self.after).min(n);
        let limit = q.saturating_sub(cap);
        let mut at = q;
        while at > limit {
            if seen.start < at && at <= seen.end {
                // `[seen.start, seen.end)` is known to be run bytes.
                at = seen.start.max(limit);
                continue;
            }
            if !self.run[usize::from(text[at - 1])] {
                break;
            }
            at -= 1;
        }
        // `[at, q)` is run bytes too: kept with what was seen when the two touch.
        *seen = if at <= seen.end && q >= seen.start {
            Seen {
                start: seen.start.min(at),
                end: seen.end.max(q),
            }
        } else {
            Seen { start: at, end: q }
        };
        let start = at.saturating_sub(self.before).min(hit.start);
        start..end
    }
}

/// See [`Part`]; the unbounded repetition's byte set goes to `run`. `None` when there is a
/// second one or one nested in a repetition.
fn walk(hir: &Hir, in_repetition: bool, run: &mut Option<Box<[bool; 256]>>) -> Option<Part> {
    let leaf = |n: usize| {
        Some(Part {
            avoiding: n,
            through: None,
        })
    };
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => leaf(0),
        HirKind::Literal(lit) => leaf(lit.0.len()),
        HirKind::Class(_) => leaf(hir.properties().maximum_len()?),
        HirKind::Capture(cap) => walk(&cap.sub, in_repetition, run),
        HirKind::Concat(subs) => {
            let parts: Vec<Part> = subs
                .iter()
                .map(|s| walk(s, in_repetition, run))
                .collect::<Option<_>>()?;
            let mut avoiding = 0usize;
            for p in &parts {
                avoiding = avoiding.checked_add(p.avoiding)?;
            }
            let mut through = None;
            if let Some(j) = parts.iter().position(|p| p.through.is_some()) {
                let (b, c) = parts[j].through?;
                let mut before = b;
                for p in &parts[..j] {
                    before = before.checked_add(p.avoiding)?;
                }
                let mut after = c;
                for p in &parts[j + 1..] {
                    after = after.checked_add(p.avoiding)?;
                }
                through = Some((before, after));
            }
            Some(Part { avoiding, through })
        }
        HirKind::Alternation(subs) => {
            let mut avoiding = 0;
            let mut through = None;
            for s in subs {
                let p = walk(s, in_repetition, run)?;
                avoiding = avoiding.max(p.avoiding);
                through = through.or(p.through);
            }
            Some(Part { avoiding, through })
        }
        HirKind::Repetition(rep) => match rep.max {
            Some(max) => {
                let one = walk(&rep.sub, true, run)?;
                leaf(one.avoiding.checked_mul(usize::try_from(max).ok()?)?)
            }
            None => {
                if in_repetition || run.is_some() || rep.sub.properties().maximum_len().is_none() {
                    return None;
                }
                let mut set = Box::new([false; 256]);
                bytes_of(&rep.sub, &mut set);
                *run = Some(set);
                Some(Part {
                    avoiding: 0,
                    through: Some((0, 0)),
                })
            }
        },
    }
}

/// Marks every byte `hir` can match.
fn bytes_of(hir: &Hir, set: &mut [bool; 256]) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => {
            for &b in lit.0.iter() {
                set[usize::from(b)] = true;
            }
        }
        HirKind::Class(Class::Bytes(class)) => {
            for r in class.iter() {
                for b in r.start()..=r.end() {
                    set[usize::from(b)] = true;
                }
            }
        }
        HirKind::Class(Class::Unicode(class)) => {
            for r in class.iter() {
                let (start, end) = (u32::from(r.start()), u32::from(r.end()));
                for b in start..=end.min(0x7f) {
                    set[b as usize] = true;
                }
                if end >= 0x80 {
                    for slot in &mut set[0x80..] {
                        *slot = true;
                    }
                }
            }
        }
        HirKind::Capture(cap) => bytes_of(&cap.sub, set),
        HirKind::Repetition(rep) => bytes_of(&rep.sub, set),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            for s in subs {
                bytes_of(s, set);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(p: &str) -> Option<Tail> {
        Tail::of(&regex_syntax::parse(p).expect("test pattern parses"))
    }

    #[test]
    fn bounded_patterns_give_their_longest_match() {
        assert_eq!(tail("[a-z]{3,10}x?"), Some(Tail::Bounded(11)));
    }

    #[test]
    fn one_unbounded_run_is_followed_in_the_text() {
        let t = tail(r#"["' ]{0,5}([a-z0-9]{10,150}|[a-z0-9][a-z0-9+/]{11,}={0,3})(?:\s|$)"#)
            .expect("one run");
        let Tail::Run {
            avoiding,
            before,
            after,
            run,
        } = &t
        else {
            panic!("expected a run, got {t:?}");
        };
        // Avoiding the run: 5 + 150 + 3 (`\s` is Unicode here: up to 3 bytes); through it:
        // 5 + 1 before, 3 + 3 after.
        assert_eq!((*avoiding, *before, *after), (158, 6, 6));
        assert!(run[usize::from(b'+')] && run[usize::from(b'z')] && !run[usize::from(b' ')]);
        let text = format!("{} tail and more text after it", "a".repeat(1000));
        // From 0: 6 bytes, then the run to 1000, then 6 more.
        assert_eq!(t.end(text.as_bytes(), 0, 16 * 1024), 1006);
        // The cap stops the walk.
        assert_eq!(t.end(text.as_bytes(), 0, 10), 158);
        assert_eq!(t.end(text.as_bytes(), 0, 500), 6 + 500 + 6);
        // A short value: the path avoiding the run is the longer bound.
        assert_eq!(t.end(b"abc def ghi", 0, 16 * 1024), 11);
    }

    /// The `jwt` rule's shape: a bounded head, runs of token bytes, a bounded terminator.
    const JWT_LIKE: &str = r#"(?-u:\b)(ey[a-zA-Z0-9]{3,}\.ey[a-zA-Z0-9/\\_-]{3,}\.(?:[a-zA-Z0-9/\\_-]{2,}={0,2})?)(?:[\x60'"\s;]|\\[nr]|$)"#;

    fn around(p: &str) -> Option<Around> {
        Around::of(&regex_syntax::parse(p).expect("test pattern parses"))
    }

    /// Every match of `pattern` in `text` that contains an occurrence of `keyword` lies in
    /// the window of that occurrence, the occurrences taken in order with one [`Seen`], as
    /// the scanner does.
    fn check_windows_hold_matches(pattern: &str, keyword: &str, text: &str, cap: usize) {
        let a = around(pattern).expect("a run pattern");
        let re = regex_automata::meta::Regex::new(pattern).expect("test pattern compiles");
        let mut seen = Seen::default();
        let hits: Vec<usize> = text.match_indices(keyword).map(|(i, _)| i).collect();
        let windows: Vec<std::ops::Range<usize>> = hits
            .iter()
            .map(|&h| a.window(text.as_bytes(), h..h + keyword.len(), cap, &mut seen))
            .collect();
        // All matches, at every start (overlapping candidates included).
        for start in 0..text.len() {
            let input = regex_automata::Input::new(text)
                .range(start..)
                .anchored(regex_automata::Anchored::Yes);
            let Some(m) = re.find(input) else { continue };
            if m.len() > cap {
                continue;
            }
            for (h, w) in hits.iter().zip(&windows) {
                if m.start() <= *h && h + keyword.len() <= m.end() {
                    assert!(
                        w.start <= m.start() && m.end() <= w.end,
                        "match {:?} outside window {w:?} of keyword at {h} in {text:?}",
                        m.range()
                    );
                }
            }
        }
    }

    #[test]
    fn runs_around_a_keyword_hold_its_matches() {
        let a = around(JWT_LIKE).expect("head, runs, tail");
        // The terminator: `\s` is Unicode here (up to 3 bytes).
        assert_eq!((a.before, a.after), (0, 3));
        assert!(a.run[usize::from(b'.')] && !a.run[usize::from(b' ')]);
        let token = "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl";
        let text = format!("the key is {token} and they said hey");
        let mut seen = Seen::default();
        let at = text.find(token).expect("planted");
        // The window is the token's run plus the terminator, not 16 KiB (the backward walk
        // starts `after` bytes before the keyword's end, so it takes in the word `is`).
        let w = a.window(text.as_bytes(), at..at + 2, 16 * 1024, &mut seen);
        assert_eq!(w, at - 3..at + token.len() + 3);
        // `ey` inside `key`: the word's run only.
        let mut seen = Seen::default();
        let w = a.window(text.as_bytes(), 5..7, 16 * 1024, &mut seen);
        assert_eq!(w, 4..10);
        check_windows_hold_matches(JWT_LIKE, "ey", &text, 16 * 1024);
        // Patterns whose middle holds spaces, or without an unbounded part, are not handled.
        assert!(around(r"curl(?:.*?)-u [a-z]+").is_none());
        assert!(around(r"ey[a-z]{3,20}").is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Random texts made of JWT-like tokens and noise over the bytes that matter (token
        /// bytes, dots, `ey`, spaces, terminators, non-ASCII), with small caps too: windows
        /// always hold the matches containing their keyword, however many keywords share a run.
        #[test]
        fn windows_hold_every_match_containing_the_keyword(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    "ey[a-zA-Z0-9]{3,6}\\.ey[a-z0-9_-]{3,6}\\.([a-z0-9]{2,4}={0,2})?",
                    "(ey|eyJ|[a-zA-Z0-9]|\\.|-|_|/|=|;| |\n|é|\\\\n){0,12}",
                ],
                0..8,
            ),
            cap in proptest::prop_oneof![proptest::prelude::Just(16 * 1024), 4usize..40],
        ) {
            check_windows_hold_matches(JWT_LIKE, "ey", &pieces.concat(), cap);
        }
    }

    #[test]
    fn two_runs_or_nested_runs_have_no_cheap_bound() {
        assert_eq!(tail("[a-z]+-[0-9]+"), None);
        assert_eq!(tail("(?:[a-z]+-){2}"), None);
    }
}
