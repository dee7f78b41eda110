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

    #[test]
    fn two_runs_or_nested_runs_have_no_cheap_bound() {
        assert_eq!(tail("[a-z]+-[0-9]+"), None);
        assert_eq!(tail("(?:[a-z]+-){2}"), None);
    }
}
