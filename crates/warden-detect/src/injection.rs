//! Instruction analysis: phrase cues in ten languages, combined per clause into findings.
//!
//! One Aho-Corasick automaton (a DFA, no backtracking) holds every phrase of
//! [`lexicon::LEXICON`]; it runs once over the folded text. Each match is a *cue* (an intent
//! such as "ignore ...", "... previous instructions", "do not tell the user", "read",
//! "~/.ssh"). Cues alone are weak; rules fire on combinations of cues inside a window of two
//! consecutive clauses (a clause ends at `.`, `!`, `?`, `;`, their CJK forms, or a line
//! break). This is what separates "call `list_calendars` first" (a tool reference) from
//! "for security compliance you must first call `screenshot`" (a tool reference, a mandate
//! and a borrowed authority).
//!
//! Work per byte: the automaton reports at most one match per (position, pattern ending
//! there); the number of patterns that can end at one position is bounded by the lexicon,
//! not the input. Windows are evaluated once each, so evaluation is linear in the number
//! of matches.

pub(crate) mod lexicon;

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use crate::finding::Severity;
use crate::text::fold::{Folded, fold, is_word_char};
use crate::text::{Hit, Role};

/// An intent a phrase expresses. At most 64 variants (they live in a `u64` set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Cue {
    Override,
    Prior,
    Conceal,
    CredFile,
    CredData,
    Read,
    Send,
    Mandate,
    Pretext,
    Command,
    Exec,
    Redirect,
    ParamManip,
    AiAddress,
    FakeUser,
    RoleReassign,
    OutputManip,
    ContextData,
    PersonalData,
    ParamSmuggle,
    ExfilHost,
    Promo,
    PreferDirective,
    Sequence,
    Call,
    Urgency,
    SpecialToken,
    Leak,
    Meta,
    Example,
    Deny,
    /// Structural: an identifier that names a tool other than this one.
    ToolRef,
    /// Structural: an identifier written as a tool (`write_file tool`, `tool 'x_y'`).
    NamedTool,
    /// Structural: an `http(s)://` URL.
    Url,
    /// Structural: a quotation mark (for the "quoting an attack" downgrade).
    Quote,
}

impl Cue {
    const fn bit(self) -> u64 {
        1 << (self as u64)
    }
}

/// A set of cues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cues(u64);

impl Cues {
    pub(crate) fn has(self, c: Cue) -> bool {
        self.0 & c.bit() != 0
    }
    fn add(&mut self, c: Cue) {
        self.0 |= c.bit();
    }
    fn union(self, o: Cues) -> Cues {
        Cues(self.0 | o.0)
    }
    fn any(self, cs: &[Cue]) -> bool {
        cs.iter().any(|&c| self.has(c))
    }
}

struct Pattern {
    cue: Cue,
    check_start: bool,
    check_end: bool,
    /// A ROT13-rotated copy of a strong-cue phrase: matching it on the text is matching the
    /// phrase on the ROT13 view of the text, in the same pass.
    rotated: bool,
}

struct Matcher {
    automaton: AhoCorasick,
    patterns: Vec<Pattern>,
}

/// Cues whose ROT13 forms are matched too (what the strong rules read).
const ROTATED_CUES: &[Cue] = &[
    Cue::Override,
    Cue::Prior,
    Cue::Conceal,
    Cue::CredFile,
    Cue::CredData,
    Cue::Read,
    Cue::Send,
    Cue::Mandate,
    Cue::Exec,
    Cue::Urgency,
    Cue::Command,
    Cue::ContextData,
    Cue::PersonalData,
    Cue::ParamSmuggle,
    Cue::ExfilHost,
    Cue::SpecialToken,
    Cue::Deny,
    Cue::Meta,
    Cue::Example,
    Cue::Pretext,
];

/// ROT13 of ASCII letters; everything else unchanged.
pub(crate) fn rot13(c: char) -> char {
    match c {
        'a'..='m' | 'A'..='M' => char::from(c as u8 + 13),
        'n'..='z' | 'N'..='Z' => char::from(c as u8 - 13),
        _ => c,
    }
}

/// Builds the phrase automaton now.
pub(crate) fn warm_up() {
    let _ = matcher();
}

fn matcher() -> &'static Matcher {
    static MATCHER: OnceLock<Matcher> = OnceLock::new();
    MATCHER.get_or_init(|| {
        let mut texts = Vec::new();
        let mut patterns = Vec::new();
        for (cue, phrases) in lexicon::LEXICON {
            for phrase in *phrases {
                let open_start = phrase.starts_with('*');
                let open_end = phrase.len() > 1 && phrase.ends_with('*');
                let core = phrase.trim_start_matches('*').trim_end_matches('*');
                let folded = fold(core).text;
                // A trailing space in a pattern ("sudo ") is part of it; keep it.
                let folded = if core.ends_with(' ') && !folded.ends_with(' ') {
                    format!("{folded} ")
                } else {
                    folded
                };
                if folded.is_empty() {
                    continue;
                }
                let first = folded.chars().next().is_some_and(is_word_char);
                let last = folded.chars().next_back().is_some_and(is_word_char);
                let check_start = !open_start && first;
                let check_end = !open_end && last;
                if ROTATED_CUES.contains(cue) {
                    let rotated: String = folded.chars().map(rot13).collect();
                    if rotated != folded {
                        texts.push(rotated);
                        patterns.push(Pattern {
                            cue: *cue,
                            check_start,
                            check_end,
                            rotated: true,
                        });
                    }
                }
                patterns.push(Pattern {
                    cue: *cue,
                    check_start,
                    check_end,
                    rotated: false,
                });
                texts.push(folded);
            }
        }
        // Structural cues found by the same pass.
        for (t, cue) in [("http://", Cue::Url), ("https://", Cue::Url)] {
            texts.push(t.to_owned());
            patterns.push(Pattern {
                cue,
                check_start: false,
                check_end: false,
                rotated: false,
            });
        }
        // A contiguous NFA rather than a DFA: over 2,277 phrases (and their ROT13 forms) the
        // DFA holds 22 MB and takes ~40 ms to build; the NFA holds ~1 MB, builds in ~5 ms and
        // costs ~50 ns more per short string (136 -> 189 ns on a 48-byte result; bulk 368 ->
        // 272 MB/s for this pass alone, which is a small part of the analysis).
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&texts)
            .or_else(|_| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&texts)
            })
            .expect("the lexicon is a fixed, valid set of literal patterns");
        Matcher {
            automaton,
            patterns,
        }
    })
}

/// Every cue in the folded text, as folded byte spans: the plain cues, and the cues of its
/// ROT13 view.
pub(crate) fn cue_hits(folded: &str) -> (Vec<Hit>, Vec<Hit>) {
    let m = matcher();
    let bytes = folded.as_bytes();
    let mut hits = Vec::new();
    let mut rotated = Vec::new();
    for mat in m.automaton.find_overlapping_iter(folded) {
        let p = &m.patterns[mat.pattern().as_usize()];
        let (s, e) = (mat.start(), mat.end());
        if p.check_start && s > 0 {
            let prev = folded[..s].chars().next_back();
            if prev.is_some_and(is_word_char) {
                continue;
            }
        }
        if p.check_end && e < bytes.len() {
            let next = folded[e..].chars().next();
            if next.is_some_and(is_word_char) {
                continue;
            }
        }
        let hit = Hit {
            cue: p.cue,
            start: s,
            end: e,
        };
        if p.rotated {
            rotated.push(hit)
        } else {
            hits.push(hit)
        }
    }
    (hits, rotated)
}

/// A rule that fired on a window, before spans are mapped back.
#[derive(Debug, Clone)]
pub(crate) struct Fired {
    pub(crate) rule: &'static str,
    pub(crate) severity: Severity,
    /// Folded byte span.
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Rule ids. Tool-definition strings report `poison.*`, content reports `injection.*`.
pub(crate) mod rules {
    pub(crate) const IGNORE_INSTRUCTIONS: (&str, &str) = (
        "poison.ignore-instructions",
        "injection.ignore-instructions",
    );
    pub(crate) const CONCEAL: (&str, &str) =
        ("poison.conceal-from-user", "injection.conceal-from-user");
    pub(crate) const SENSITIVE_FILE: (&str, &str) = (
        "poison.sensitive-file-access",
        "injection.sensitive-file-access",
    );
    pub(crate) const EXFILTRATION: (&str, &str) = ("poison.exfiltration", "injection.exfiltration");
    pub(crate) const COMMAND: (&str, &str) =
        ("poison.command-execution", "injection.command-execution");
    pub(crate) const SHADOWING: (&str, &str) =
        ("poison.tool-shadowing", "injection.tool-directive");
    pub(crate) const PARAM_MANIP: (&str, &str) = (
        "poison.parameter-manipulation",
        "injection.parameter-manipulation",
    );
    pub(crate) const PRETEXT: (&str, &str) =
        ("poison.authority-pretext", "injection.authority-pretext");
    pub(crate) const OUTPUT_MANIP: (&str, &str) = (
        "poison.output-manipulation",
        "injection.output-manipulation",
    );
    pub(crate) const ADDRESSED: (&str, &str) =
        ("poison.addresses-model", "injection.addresses-model");
    pub(crate) const ROLE: (&str, &str) =
        ("poison.role-reassignment", "injection.role-reassignment");
    pub(crate) const SPECIAL_TOKEN: (&str, &str) = (
        "poison.chat-template-token",
        "injection.chat-template-token",
    );
    pub(crate) const LEAK: (&str, &str) = ("poison.prompt-leak", "injection.prompt-leak");
    pub(crate) const PREFERENCE: (&str, &str) = (
        "poison.preference-manipulation",
        "injection.preference-manipulation",
    );
    pub(crate) const SENSITIVE_MENTION: (&str, &str) = (
        "poison.sensitive-file-mention",
        "injection.sensitive-file-mention",
    );
}

fn pick(role: Role, ids: (&'static str, &'static str)) -> &'static str {
    match role {
        Role::Content => ids.1,
        Role::Name | Role::Metadata => ids.0,
    }
}

/// Bytes [`clauses_of`] acts on: quotation marks, `<`, the ASCII terminators and the UTF-8
/// lead bytes of the CJK and Arabic ones (`。` 0xE3, `！` `？` `；` 0xEF, `؟` 0xD8). Every
/// other byte is skipped without decoding.
const CLAUSE_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let bytes = [
        b'\'', b'"', b'<', b'\n', b'.', b'!', b'?', b';', 0xD8, 0xE3, 0xEF,
    ];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
};

/// The clauses of a folded string: boundaries (offsets just after a clause terminator) and,
/// per clause, whether it holds a quotation mark or `<` (for the "citing an attack"
/// downgrade). Computed once per string and shared by the plain and the ROT13 evaluation.
#[derive(Debug, Default)]
pub(crate) struct Clauses {
    ends: Vec<usize>,
    quoted: Vec<bool>,
}

/// The clauses of `folded` (see [`Clauses`]).
pub(crate) fn clauses_of(folded: &str) -> Clauses {
    let b = folded.as_bytes();
    let mut ends = Vec::new();
    let mut quoted = vec![false];
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&x| CLAUSE_BYTES[usize::from(x)]) {
        i += p;
        let x = b[i];
        if x < 0x80 {
            if matches!(x, b'\'' | b'"' | b'<') {
                if let Some(q) = quoted.last_mut() {
                    *q = true;
                }
                i += 1;
                continue;
            }
            let end = i + 1;
            let terminal = match x {
                b'\n' => true,
                b'.' => {
                    (end >= b.len() || b[end] == b' ' || b[end] == b'\n')
                        && !abbreviation(&folded[..i])
                }
                b'!' | b'?' | b';' => end >= b.len() || b[end] == b' ' || b[end] == b'\n',
                _ => false,
            };
            if terminal {
                ends.push(end);
                quoted.push(false);
            }
        } else {
            // Start of a multi-byte character: CJK and Arabic terminators.
            let c = folded[i..].chars().next().unwrap_or(' ');
            if matches!(c, '。' | '！' | '？' | '；' | '؟') {
                ends.push(i + c.len_utf8());
                quoted.push(false);
            }
        }
        i += 1;
    }
    Clauses { ends, quoted }
}

/// `e.g.`, `i.e.`, `etc.`, `vs.`, single letters: a dot that does not end a sentence.
fn abbreviation(before: &str) -> bool {
    let word = before.rsplit([' ', '\n', '(']).next().unwrap_or("");
    matches!(
        word,
        "e.g" | "i.e" | "etc" | "vs" | "approx" | "no" | "cf" | "ca"
    ) || word.chars().count() == 1
}

#[derive(Clone, Copy, Default)]
struct Clause {
    cues: Cues,
    start: usize,
    end: usize,
    /// Span of the "instruction" cues only (for tighter evidence).
    any: bool,
}

/// Evaluates the rules on the cue hits of one string, whose clauses are `clauses`
/// ([`clauses_of`] of the folded text). `hits` may be in any order.
pub(crate) fn evaluate(
    folded: &Folded,
    clauses: &Clauses,
    hits: &mut [Hit],
    role: Role,
    strong_only: bool,
) -> Vec<Fired> {
    if hits.is_empty() {
        // No clause holds a cue: no window is evaluated and no rule fires.
        return Vec::new();
    }
    let text = &folded.text;
    hits.sort_by_key(|h| h.start);
    let (ends, quoted) = (&clauses.ends, &clauses.quoted);
    let mut clauses = vec![Clause::default(); ends.len() + 1];
    for (c, q) in clauses.iter_mut().zip(quoted) {
        if *q {
            c.cues.add(Cue::Quote);
        }
    }
    let mut ci = 0;
    for h in hits.iter() {
        while ci < ends.len() && h.start >= ends[ci] {
            ci += 1;
        }
        let c = &mut clauses[ci];
        if c.any {
            c.start = c.start.min(h.start);
            c.end = c.end.max(h.end);
        } else {
            c.start = h.start;
            c.end = h.end;
            c.any = true;
        }
        c.cues.add(h.cue);
    }
    let mut fired: Vec<Fired> = Vec::new();
    // Whole-string counts for the preference rule: distinct promotional phrases.
    let promo_count = {
        let mut seen: Vec<&str> = Vec::new();
        for h in hits.iter().filter(|h| h.cue == Cue::Promo) {
            let t = &text[h.start..h.end];
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
        seen.len()
    };
    for i in 0..clauses.len() {
        let a = clauses[i];
        let (cues, start, end) = match clauses.get(i + 1) {
            Some(b) if b.any && a.any => {
                (a.cues.union(b.cues), a.start.min(b.start), a.end.max(b.end))
            }
            Some(b) if b.any => (a.cues.union(b.cues), b.start, b.end),
            _ if a.any => (a.cues, a.start, a.end),
            _ => continue,
        };
        let single = a.cues;
        window_rules(role, cues, single, strong_only, &mut |rule, severity| {
            fired.push(Fired {
                rule,
                severity,
                start,
                end,
            });
        });
    }
    if !strong_only && role != Role::Content && promo_count >= 2 {
        let first = hits.iter().find(|h| h.cue == Cue::Promo);
        let last = hits.iter().rev().find(|h| h.cue == Cue::Promo);
        if let (Some(f), Some(l)) = (first, last) {
            let sev = if hits.iter().any(|h| h.cue == Cue::PreferDirective) || promo_count >= 4 {
                Severity::High
            } else {
                Severity::Medium
            };
            fired.push(Fired {
                rule: pick(role, rules::PREFERENCE),
                severity: sev,
                start: f.start,
                end: l.end,
            });
        }
    }
    merge(fired)
}

/// The combination rules on one window. `w` is the union of two adjacent clauses, `one`
/// the first clause alone (for rules that must not span a sentence).
fn window_rules(
    role: Role,
    w: Cues,
    one: Cues,
    strong_only: bool,
    emit: &mut dyn FnMut(&'static str, Severity),
) {
    use Cue::*;
    let content = role == Role::Content;
    let hi = Severity::High;
    // A phrase cited next to words that describe attacks ("detects prompts such as
    // 'ignore previous instructions'") describes the attack: reported low. Never when the
    // window also borrows authority and gives orders, which is what attackers do.
    let citing =
        w.has(Meta) && (w.has(Quote) || w.has(Example)) && !(w.has(Pretext) && w.has(Mandate));
    let cited = |s: Severity| if citing { Severity::Low } else { s };
    // The sensitive file is named to say it is refused or excluded.
    let refused = w.has(Deny) && !w.any(&[Send, Exec, Urgency, Conceal, ParamSmuggle]);

    if one.has(Override) && one.has(Prior) {
        emit(
            pick(role, rules::IGNORE_INSTRUCTIONS),
            cited(if content { hi } else { Severity::Critical }),
        );
    }
    if w.has(Conceal) {
        emit(pick(role, rules::CONCEAL), cited(hi));
    }
    let file_action = w.any(&[Read, Send, Mandate, Exec, Urgency]);
    if w.has(CredFile) && file_action && !refused {
        emit(pick(role, rules::SENSITIVE_FILE), cited(hi));
    }
    let data = w.any(&[CredFile, CredData, ContextData, PersonalData]);
    // "Never send your password by email": advice, unless paired with secrecy or urgency.
    let advice = w.has(Deny) && !w.any(&[Conceal, ParamSmuggle, Urgency, Exec]);
    if !advice && (w.has(Send) && data && w.any(&[Url, ExfilHost, ParamSmuggle, Conceal]))
        || (data && w.has(ParamSmuggle))
        || (w.has(ExfilHost) && w.any(&[Send, Mandate, Read, Command]))
    {
        emit(pick(role, rules::EXFILTRATION), cited(hi));
    }
    if one.has(SpecialToken) {
        emit(pick(role, rules::SPECIAL_TOKEN), hi);
    }
    if strong_only {
        return;
    }
    if w.has(CredFile) && (!file_action || refused) && !content {
        emit(pick(role, rules::SENSITIVE_MENTION), Severity::Low);
    }
    if w.has(Url) && w.has(Mandate) && w.has(Pretext) && !content {
        emit(pick(role, rules::EXFILTRATION), hi);
    }
    if w.has(ExfilHost) && !content {
        emit(pick(role, rules::EXFILTRATION), Severity::Medium);
    }
    if w.has(Command) {
        let sev = if content {
            if w.any(&[Mandate, Urgency, AiAddress, FakeUser]) && w.any(&[Exec, Pretext]) {
                hi
            } else {
                Severity::Low
            }
        } else if w.any(&[Mandate, Exec, Pretext, Urgency]) {
            hi
        } else {
            Severity::Low
        };
        emit(pick(role, rules::COMMAND), sev);
    }
    if w.has(ParamManip) {
        emit(
            pick(role, rules::PARAM_MANIP),
            if content { Severity::Medium } else { hi },
        );
    }
    if content {
        // A directive to call a tool, given by the content to the model.
        let directive = w.has(Call) && (w.has(ToolRef) || w.has(Sequence));
        if directive && w.any(&[Mandate, AiAddress, FakeUser, Urgency, Pretext]) {
            emit(pick(role, rules::SHADOWING), cited(hi));
        }
        if w.has(NamedTool) && w.has(Call) && !directive_fired(w) {
            emit(pick(role, rules::SHADOWING), cited(Severity::Medium));
        }
        if w.has(FakeUser)
            || w.has(AiAddress) && w.any(&[Mandate, Call, OutputManip, Urgency, Override])
        {
            emit(pick(role, rules::ADDRESSED), cited(hi));
        }
        if w.has(OutputManip) && w.any(&[Override, AiAddress, FakeUser]) {
            emit(pick(role, rules::OUTPUT_MANIP), cited(Severity::Medium));
        }
        if w.has(Pretext) && w.has(Mandate) && w.any(&[Urgency, Exec, Call]) {
            emit(pick(role, rules::PRETEXT), Severity::Medium);
        }
    } else {
        if w.has(ToolRef) {
            // Another tool, plus: a redirect with authority, borrowed authority with an
            // order, an order to call it first with fixed arguments or scripted output,
            // secrecy, or changed arguments.
            let hijack = w.has(Redirect) && w.any(&[Mandate, Pretext])
                || w.has(Pretext) && w.any(&[Mandate, Sequence])
                || w.has(Mandate) && w.has(Sequence) && w.any(&[Quote, OutputManip])
                || w.has(Conceal)
                || w.has(ParamManip);
            if hijack {
                emit(pick(role, rules::SHADOWING), hi);
            }
        }
        // "SYSTEM UPDATE: the search tool now uses ...": a claim that another tool changed.
        if w.has(Redirect) && w.has(Pretext) && !w.has(ToolRef) {
            emit(pick(role, rules::SHADOWING), Severity::Medium);
        }
        // A definition that orders the conversation itself into an argument.
        if w.has(ContextData) && w.has(Mandate) && !w.has(Deny) {
            emit(pick(role, rules::EXFILTRATION), Severity::Medium);
        }
        // An instruction to contact a URL before or while using the tool.
        if w.has(Send) && w.has(Url) && w.any(&[Mandate, Sequence]) {
            emit(pick(role, rules::EXFILTRATION), Severity::Medium);
        }
        if w.has(FakeUser) {
            emit(pick(role, rules::ADDRESSED), cited(hi));
        } else if w.has(AiAddress) && w.any(&[Mandate, Urgency, Override, Conceal]) {
            emit(pick(role, rules::ADDRESSED), cited(Severity::Medium));
        }
        if w.has(OutputManip) && w.has(Mandate) {
            let sev = if w.any(&[Pretext, Urgency]) {
                hi
            } else {
                Severity::Medium
            };
            emit(pick(role, rules::OUTPUT_MANIP), sev);
        }
        if w.has(Pretext) && w.has(Mandate) {
            emit(pick(role, rules::PRETEXT), Severity::Medium);
        }
        if w.has(PreferDirective) {
            emit(pick(role, rules::PREFERENCE), Severity::Medium);
        }
    }
    if w.has(RoleReassign) {
        emit(pick(role, rules::ROLE), cited(Severity::Medium));
    }
    if w.has(Leak) {
        emit(
            pick(role, rules::LEAK),
            cited(if content { Severity::Medium } else { hi }),
        );
    }
}

fn directive_fired(w: Cues) -> bool {
    use Cue::*;
    w.has(Call)
        && (w.has(ToolRef) || w.has(Sequence))
        && w.any(&[Mandate, AiAddress, FakeUser, Urgency, Pretext])
}

/// Merges overlapping spans of the same rule, keeping the highest severity.
fn merge(mut fired: Vec<Fired>) -> Vec<Fired> {
    fired.sort_by(|a, b| a.rule.cmp(b.rule).then(a.start.cmp(&b.start)));
    let mut out: Vec<Fired> = Vec::with_capacity(fired.len());
    for f in fired {
        if let Some(last) = out.last_mut()
            && last.rule == f.rule
            && f.start <= last.end
        {
            last.end = last.end.max(f.end);
            last.severity = last.severity.max(f.severity);
            continue;
        }
        out.push(f);
    }
    out
}
