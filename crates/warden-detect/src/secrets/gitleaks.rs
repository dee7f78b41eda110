//! The gitleaks rule set (MIT, vendored in `rules/gitleaks/`), compiled for linear-time matching.
//!
//! gitleaks patterns are Go RE2. RE2 and the Rust `regex` engines are both automata based, so
//! every pattern keeps its linear-time guarantee; [`translate`] only rewrites the few constructs
//! whose meaning or syntax differs (ASCII `\w \d \s \b`, literal `{`, `[` and `&&`/`--`/`~~`
//! inside classes).
//!
//! Rules are gated by their keywords: one Aho-Corasick pass over the input finds every keyword
//! occurrence, and a rule runs only on windows around its own keywords. A window reaches as far
//! as the longest match of the rule (computed from the pattern), so every match that contains a
//! keyword is found; patterns without an upper bound are searched [`UNBOUNDED_WINDOW`] bytes
//! each side of a keyword. Rules written with gitleaks' assignment template are instead searched
//! around the operator that follows their keyword, and only when a value can follow it
//! (`AssignmentReach`). Windows of one rule are merged, so each rule reads each input byte at
//! most once: work per byte is bounded by the number of rules whose keywords occur. The same
//! keyword pass reports the generic detectors' keywords (`Gitleaks::with_extra_keywords`).

use std::ops::Range;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Input, util::captures::Captures};

use crate::entropy;

include!(concat!(env!("OUT_DIR"), "/gitleaks_rules.rs"));

/// How far each side of a keyword a rule without a maximum match length is searched.
/// Bounds the work per keyword; longer matches are cut at the window edge.
pub const UNBOUNDED_WINDOW: usize = 16 * 1024;

/// How far beyond a rule's longest match its keyword may be, for rules whose pattern does not
/// spell every keyword. gitleaks runs a rule when a keyword occurs anywhere in the scanned
/// fragment; a few rules' keywords are not part of the match (`facebook`, `airtable`): this
/// keeps them working when the keyword is nearby (a name on the same or the previous lines)
/// while the work per keyword stays bounded. Rules whose pattern contains every keyword (a
/// keyword hit is then inside the match) reach only their longest match.
pub const KEYWORD_SLACK: usize = 256;

/// The terminator most gitleaks rules put after the secret: a quote, backtick, whitespace, `;`,
/// an escaped line break or the end of the text.
const UPSTREAM_TERMINATOR: &str = r#"(?:[\x60'"\s;]|\\[nr]|$)"#;

/// The same terminator, also accepting the delimiters that end a value in prose, CSV, Markdown
/// tables, JSON arrays and objects, XML and URL query strings (`.` `,` `|` `)` `]` `}` `<` `>`
/// `&`). A
/// deliberate widening: tool results are full of such values; an alternative is only added, so
/// nothing that matched before stops matching.
const WIDE_TERMINATOR: &str = r#"(?:[\x60'"\s;,.|)\]}<>&]|\\[nr]|$)"#;

/// The part of gitleaks' assignment template between the keyword group and the value.
const ASSIGNMENT_TEMPLATE: &str =
    r#"(?:[ \t\w.-]{0,20})[\s'"]{0,3}(?:=|>|:{1,3}=|\|\||:|=>|\?=|,)"#;

/// How many name characters may follow a keyword before the operator, in rules written with the
/// assignment template: the rest of the keyword group (`sonar` + `_token`), 20 name characters
/// and 3 quotes or spaces, rounded up.
const ASSIGNMENT_REACH: usize = 64;

/// Whether `pattern` uses the assignment template with every keyword inside the name before
/// the operator (checked by matching each keyword against the pattern's name part). Rules whose
/// keywords are in the value (`lob-api-key` keys on `live_`) are not gated by the operator.
fn keywords_name_the_value(pattern: &str, keywords: &[&str]) -> bool {
    let Some(at) = pattern.find(ASSIGNMENT_TEMPLATE) else {
        return false;
    };
    let Ok((name, _)) = compile(&pattern[..at]) else {
        return false;
    };
    keywords.iter().all(|k| name.is_match(k))
}

/// Where the assignment operator (`=`, `>`, `:`, `|`, `?`, `,`) after `at` is, if one follows
/// after at most [`ASSIGNMENT_REACH`] name characters (word characters, `.`, `-`, whitespace,
/// quotes). A necessary condition for a match of an assignment-template rule whose keyword ends
/// at `at`; and since none of those characters is an operator, the operator of such a match is
/// this one.
fn operator_after(text: &[u8], at: usize) -> Option<usize> {
    for (i, &b) in text.iter().enumerate().skip(at).take(ASSIGNMENT_REACH + 1) {
        match b {
            b'=' | b'>' | b':' | b'|' | b'?' | b',' => return Some(i),
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b'_'
            | b'.'
            | b'-'
            | b' '
            | b'\t'
            | b'\r'
            | b'\n'
            | b'\x0c'
            | b'\''
            | b'"' => {}
            _ => return None,
        }
    }
    None
}

/// Longest operator of the assignment template (`:::=`).
const OPERATOR_MAX: usize = 4;

/// The part of [`ASSIGNMENT_TEMPLATE`] between the keyword group and the operator.
const TEMPLATE_BEFORE_OPERATOR: &str = r#"(?:[ \t\w.-]{0,20})[\s'"]{0,3}"#;

/// Where a match of an assignment-template rule can lie relative to its operator: the name and
/// the template before the operator reach at most `before` bytes back, the value at most
/// `tail` forward. Windows are then placed around operators rather than [`UNBOUNDED_WINDOW`]
/// around keywords.
struct AssignmentReach {
    before: usize,
    tail: super::reach::Tail,
    /// The pattern after the operator (case-insensitive, so it accepts a superset of what
    /// follows the operator in a match): a match uses an operator only when this matches right
    /// after one of the operator's possible lengths.
    rest: LazyRegex,
}

impl AssignmentReach {
    /// From a pattern written with the assignment template. `None` when a bound cannot be
    /// derived (flags that change the meaning of the value part, or no cheap bound for it).
    fn of(pattern: &str) -> Option<Self> {
        let at = pattern.find(ASSIGNMENT_TEMPLATE)?;
        let name = &pattern[..at];
        // Flags set in the name part would carry over to the value part, which is analysed
        // on its own below: only case-insensitivity is accounted for (by assuming it).
        let flags = name.match_indices("(?").all(|(i, _)| {
            let rest = &name[i + 2..];
            (i == 0 && rest.starts_with("i)"))
                || [":", "i:", "-i:", "-u:", "i-u:"]
                    .iter()
                    .any(|f| rest.starts_with(f))
        });
        if !flags {
            return None;
        }
        let parse = |p: &str, case_insensitive: bool| {
            syntax::parse_with(
                &translate(p),
                &syntax::Config::new()
                    .nest_limit(250)
                    .case_insensitive(case_insensitive),
            )
            .ok()
        };
        let name_max = parse(name, false)?.properties().maximum_len()?;
        let template_max = parse(TEMPLATE_BEFORE_OPERATOR, false)?
            .properties()
            .maximum_len()?;
        // Case-insensitive: a superset of the bytes the value can hold, whatever the flags.
        let rest_pattern = translate(&pattern[at + ASSIGNMENT_TEMPLATE.len()..]);
        let rest_hir = parse(&pattern[at + ASSIGNMENT_TEMPLATE.len()..], true)?;
        Some(AssignmentReach {
            before: name_max.checked_add(template_max)?,
            tail: super::reach::Tail::of(&rest_hir)?,
            rest: LazyRegex::new(vec![rest_pattern], true, None),
        })
    }

    /// Whether a value can follow the operator at `op`: the part of the pattern after the
    /// operator matches, anchored, after one of the operator's lengths. A necessary condition
    /// for a match using this operator; an anchored search stops at the first byte that
    /// cannot continue it, so most operators cost a few bytes.
    fn value_follows(&self, text: &str, op: usize) -> bool {
        // Built and tested with the rule; a regex that could not be built gates nothing out.
        let Some(rest) = self.rest.get() else {
            return true;
        };
        (1..=OPERATOR_MAX).any(|len| {
            let from = op + len;
            from <= text.len()
                && text.is_char_boundary(from)
                && rest.is_match(
                    Input::new(text)
                        .range(from..)
                        .anchored(regex_automata::Anchored::Yes),
                )
        })
    }

    /// The window around the operator at `op` that holds every match using it.
    fn window(&self, text: &str, op: usize) -> Range<usize> {
        let start = floor_boundary(text, op.saturating_sub(self.before));
        let end = self
            .tail
            .end(text.as_bytes(), op + OPERATOR_MAX, UNBOUNDED_WINDOW);
        start..ceil_boundary(text, end)
    }
}

/// Lazy DFA cache per rule and thread (an upper bound; it grows only as states are built).
const LAZY_DFA_CACHE: usize = 16 * 1024 * 1024;

/// Bounds the compiled size of one rule (the generic rules are large).
const REGEX_SIZE_LIMIT: usize = 64 * 1024 * 1024;

/// A regex built on first use. Compiled rules are most of the scanner's memory (about 27 MB
/// for the whole set) and most rules never run: a rule's regexes are built when one of its
/// keywords first occurs in scanned text, so memory follows what the traffic names. The
/// patterns are parsed when the rule set is built (a pattern that does not parse skips its
/// rule), and a test builds every lazy regex of the set, so building one cannot fail on the
/// scanning path; if it did, [`LazyRegex::get`] returns `None` and the caller treats that as
/// documented at each use.
struct LazyRegex {
    patterns: Vec<String>,
    case_insensitive: bool,
    /// `Some` for the rules' own patterns, whose lazy DFAs need a larger cache.
    cache_capacity: Option<usize>,
    built: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    /// `patterns` in the Rust dialect (already [`translate`]d); the regex matches when any does.
    fn new(patterns: Vec<String>, case_insensitive: bool, cache_capacity: Option<usize>) -> Self {
        LazyRegex {
            patterns,
            case_insensitive,
            cache_capacity,
            built: OnceLock::new(),
        }
    }

    fn get(&self) -> Option<&Regex> {
        self.built.get_or_init(|| self.build().ok()).as_ref()
    }

    fn build(&self) -> Result<Regex, String> {
        let mut config = meta::Config::new()
            .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
            .dfa_size_limit(Some(REGEX_SIZE_LIMIT));
        if let Some(capacity) = self.cache_capacity {
            config = config
                .onepass_size_limit(Some(REGEX_SIZE_LIMIT))
                .hybrid_cache_capacity(capacity);
        }
        meta::Builder::new()
            .syntax(
                syntax::Config::new()
                    .nest_limit(NEST_LIMIT)
                    .case_insensitive(self.case_insensitive),
            )
            .configure(config)
            .build_many(&self.patterns)
            .map_err(|e| e.to_string())
    }

    /// Whether it has been built (for tests and measurements).
    #[cfg(test)]
    fn is_built(&self) -> bool {
        self.built.get().is_some()
    }
}

/// Nesting limit of the patterns' syntax trees.
const NEST_LIMIT: u32 = 250;

/// One rule as vendored (generated by `build.rs`).
#[derive(Debug)]
pub(crate) struct RuleDef {
    pub(crate) id: &'static str,
    pub(crate) rule: &'static str,
    pub(crate) description: &'static str,
    pub(crate) regex: Option<&'static str>,
    pub(crate) path: Option<&'static str>,
    pub(crate) keywords: &'static [&'static str],
    pub(crate) entropy: Option<f64>,
    pub(crate) secret_group: Option<usize>,
    pub(crate) allowlists: &'static [AllowDef],
}

/// One rule allowlist as vendored.
#[derive(Debug)]
pub(crate) struct AllowDef {
    pub(crate) target: Target,
    pub(crate) require_all: bool,
    pub(crate) regexes: &'static [&'static str],
    pub(crate) stopwords: &'static [&'static str],
    pub(crate) paths: &'static [&'static str],
}

/// What an allowlist regex is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The extracted secret (the capture group).
    Secret,
    /// The whole match of the rule.
    Match,
    /// The line the match is on.
    Line,
}

/// A rule in use, as the engine runs it.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    /// The gitleaks rule id, also the redaction kind.
    pub id: &'static str,
    /// The upstream description.
    pub description: &'static str,
    /// The pattern in the Rust dialect ([`translate`] of the upstream pattern).
    pub pattern: String,
    /// Lower-case keywords that gate the rule.
    pub keywords: &'static [&'static str],
    /// Entropy the secret must exceed, if any.
    pub entropy: Option<f64>,
    /// Capture group holding the secret; without one, the first non-empty group or the match.
    pub secret_group: Option<usize>,
}

/// A rule that is not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRule {
    /// The gitleaks rule id.
    pub id: &'static str,
    /// Why it is not used on content.
    pub reason: String,
}

struct Allow {
    target: Target,
    require_all: bool,
    /// All of the list's regexes as one multi-pattern automaton (one pass per check).
    regexes: Option<LazyRegex>,
    stopwords: Option<AhoCorasick>,
    has_paths: bool,
}

struct Rule {
    def: &'static RuleDef,
    regex: LazyRegex,
    /// Longest possible match in bytes, if bounded.
    max_len: Option<usize>,
    allow: Vec<Allow>,
    generic: bool,
    /// Whether a keyword may lie outside the match (the pattern does not spell every keyword),
    /// so windows reach [`KEYWORD_SLACK`] further.
    distant_keywords: bool,
    /// Written with gitleaks' assignment template (`<name with keyword> = <value>`): a keyword
    /// occurrence can only be part of a match when an assignment operator follows it.
    assignment: bool,
    /// For assignment-template rules, where matches lie around the operator.
    assignment_reach: Option<AssignmentReach>,
    /// For rules without a longest match whose keyword is part of the match, where matches
    /// lie around a keyword occurrence.
    around: Option<super::reach::Around>,
    /// Every match starts with a keyword of the rule (its pattern starts with a literal that
    /// starts with the keyword): windows start at keyword occurrences.
    starts_with_keyword: bool,
}

impl Rule {
    /// The rule's own regex, its allowlists' and its operator gate's.
    fn lazy_regexes(&self) -> impl Iterator<Item = &LazyRegex> {
        std::iter::once(&self.regex)
            .chain(self.allow.iter().filter_map(|a| a.regexes.as_ref()))
            .chain(self.assignment_reach.as_ref().map(|r| &r.rest))
    }
}

/// A match of one rule: the rule and the byte span of the secret in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleMatch {
    pub(crate) id: &'static str,
    pub(crate) rule: &'static str,
    pub(crate) generic: bool,
    pub(crate) span: Range<usize>,
}

/// The compiled rule set.
pub(crate) struct Gitleaks {
    rules: Vec<Rule>,
    keywords: AhoCorasick,
    /// For each keyword pattern, the rules it gates.
    keyword_rules: Vec<Vec<usize>>,
    /// For each keyword pattern, whether it is also one of the extra keywords passed to
    /// [`Gitleaks::with_extra_keywords`], whose hits [`Gitleaks::scan`] reports.
    keyword_extra: Vec<bool>,
    global_allow: Option<Regex>,
    global_stopwords: AhoCorasick,
    skipped: Vec<SkippedRule>,
}

/// Rewrites a Go RE2 pattern into the Rust `regex` dialect with the same meaning.
///
/// - `\w \d \s \b` and their negations are ASCII in Go and Unicode in Rust: they become the ASCII
///   classes (`\s` is Go's `[\t\n\f\r ]`).
/// - Go reads a `{` that does not start a repetition as a literal; Rust rejects it: it is escaped.
/// - Inside a class Go reads `[` (other than `[:name:]`), `&`, `~` and `-` pairs literally; Rust
///   reads nested classes and set operations: they are escaped.
pub fn translate(go: &str) -> String {
    let mut out = String::with_capacity(go.len() + 32);
    let mut in_class = false;
    // Position right after a class's `[` or `[^`, where `]` is a literal.
    let mut class_start = false;
    let mut rest = go;
    while let Some(c) = rest.chars().next() {
        let mut advance = c.len_utf8();
        let at_class_start = class_start;
        class_start = false;
        match c {
            '\\' => {
                let next = rest[1..].chars().next();
                match next {
                    Some('w') => out.push_str("[[:word:]]"),
                    Some('W') => out.push_str("[^[:word:]]"),
                    Some('d') => out.push_str("[0-9]"),
                    Some('D') => out.push_str("[^0-9]"),
                    Some('s') => out.push_str(r"[\t\n\f\r ]"),
                    Some('S') => out.push_str(r"[^\t\n\f\r ]"),
                    Some('b') if !in_class => out.push_str(r"(?-u:\b)"),
                    Some('B') if !in_class => out.push_str(r"(?-u:\B)"),
                    Some(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                }
                advance += next.map_or(0, char::len_utf8);
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if rest[1..].starts_with('^') {
                    out.push('^');
                    advance += 1;
                }
                class_start = true;
            }
            '[' => {
                if let Some(end) = rest.strip_prefix("[:").and_then(|r| r.find(":]")) {
                    out.push_str(&rest[..end + 4]);
                    advance = end + 4;
                } else {
                    out.push_str(r"\[");
                }
            }
            ']' if in_class && at_class_start => out.push_str(r"\]"),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '-' if in_class && rest[1..].starts_with('-') => {
                out.push_str(r"\-");
            }
            '{' if !in_class => match repetition_len(rest) {
                Some(n) => {
                    out.push_str(&rest[..n]);
                    advance = n;
                }
                None => out.push_str(r"\{"),
            },
            '}' if !in_class => out.push_str(r"\}"),
            _ => out.push(c),
        }
        rest = &rest[advance..];
    }
    out
}

/// Length of a `{n}`, `{n,}` or `{n,m}` repetition at the start of `s`, if it is one.
fn repetition_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    if bytes.get(i) == Some(&b',') {
        i += 1;
        digits(&mut i);
    }
    (bytes.get(i) == Some(&b'}')).then_some(i + 1)
}

fn compile(pattern: &str) -> Result<(Regex, Option<usize>), String> {
    let (lazy, max_len, _) = parse_rule_pattern(pattern)?;
    Ok((lazy.build()?, max_len))
}

/// A rule's pattern, parsed (not built: see [`LazyRegex`]), with its longest match and where
/// matches lie around a keyword they contain when the pattern has no longest match (see
/// [`super::reach::Around`]).
fn parse_rule_pattern(pattern: &str) -> Result<(LazyRegex, Option<usize>, Shape), String> {
    let translated = translate(pattern);
    let hir = syntax::parse_with(&translated, &syntax::Config::new().nest_limit(NEST_LIMIT))
        .map_err(|e| e.to_string())?;
    let max_len = hir.properties().maximum_len();
    let shape = Shape {
        around: super::reach::Around::of(&hir),
        prefix: leading_literal(&hir),
    };
    // The generic rules' lazy DFAs outgrow the default 2 MiB cache on ordinary text and would
    // be rebuilt over and over; the cache grows only as needed.
    let regex = LazyRegex::new(vec![translated], false, Some(LAZY_DFA_CACHE));
    Ok((regex, max_len, shape))
}

/// What the scanner uses of a pattern's structure to place its windows.
struct Shape {
    /// See [`super::reach::Around`].
    around: Option<super::reach::Around>,
    /// The literal every match starts with (after zero-width assertions), if any.
    prefix: Option<Vec<u8>>,
}

/// The literal every match of `hir` starts with, looking through captures and leading
/// zero-width assertions (`\b`).
fn leading_literal(hir: &regex_syntax::hir::Hir) -> Option<Vec<u8>> {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Literal(lit) => Some(lit.0.to_vec()),
        HirKind::Capture(cap) => leading_literal(&cap.sub),
        HirKind::Concat(subs) => subs
            .iter()
            .find(|s| !matches!(s.kind(), HirKind::Look(_)))
            .and_then(leading_literal),
        _ => None,
    }
}

/// Several patterns as one automaton that matches when any of them does, built on first use
/// (each pattern is parsed now: one that does not parse is an error).
fn compile_many(patterns: &[&str]) -> Result<Option<LazyRegex>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let translated: Vec<String> = patterns.iter().map(|p| translate(p)).collect();
    for pattern in &translated {
        syntax::parse_with(pattern, &syntax::Config::new().nest_limit(NEST_LIMIT))
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(LazyRegex::new(translated, false, None)))
}

fn stopword_matcher(words: &[&str]) -> Result<Option<AhoCorasick>, String> {
    if words.is_empty() {
        return Ok(None);
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .build(words)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Rules replaced by a stricter detector of this crate, with the reason.
const REPLACED: &[(&str, &str)] = &[(
    "private-key",
    "replaced by `secret.private-key`, which requires a base64 body: the upstream pattern \
     accepts any 64 characters between a BEGIN line and the next `KEY-----`, so it can span \
     two headers and unrelated text",
)];

/// Corrections of upstream patterns: (rule, text to replace, replacement, reason).
const PATCHES: &[(&str, &str, &str, &str)] = &[(
    "openai-api-key",
    r"{58})\b|",
    r"{58})|",
    "the key alphabet contains `-` and `_`, so a `\\b` after the body rejects keys that end in \
     either before punctuation; the terminator group that follows already ends the match",
)];

/// Corrections of upstream allowlist regexes: (rule, regex, replacement, reason).
const ALLOW_PATCHES: &[(&str, &str, &str, &str)] = &[(
    "vault-service-token",
    r"s\.[A-Za-z]{24}",
    r"^s\.[A-Za-z]{24}$",
    "meant for legacy `s.` tokens of letters only, but unanchored it also matches inside an      `hvs.` token whose first 24 characters after `hvs.` happen to be letters (about 0.7 % of      real tokens), which then went unreported",
)];

/// `regex`, an allowlist regex of `def`, with the allowlist patches applied.
fn effective_allow(def: &RuleDef, regex: &str) -> String {
    ALLOW_PATCHES
        .iter()
        .find(|(id, from, _, _)| *id == def.id && *from == regex)
        .map_or_else(|| regex.to_owned(), |(_, _, to, _)| (*to).to_owned())
}

/// The upstream pattern of `def` with the terminator widened and the patches applied.
fn effective_pattern(def: &RuleDef) -> Option<String> {
    let mut pattern = def.regex?.replace(UPSTREAM_TERMINATOR, WIDE_TERMINATOR);
    for (id, from, to, _) in PATCHES {
        if *id == def.id {
            pattern = pattern.replace(from, to);
        }
    }
    Some(pattern)
}

fn compile_rule(def: &'static RuleDef) -> Result<Rule, String> {
    if let Some((_, reason)) = REPLACED.iter().find(|(id, _)| *id == def.id) {
        return Err((*reason).to_owned());
    }
    if let Some(path) = def.path {
        return Err(format!(
            "applies only to files whose path matches `{path}`; content has no path"
        ));
    }
    let pattern = effective_pattern(def).ok_or("has no content pattern")?;
    if def.keywords.is_empty() {
        return Err("has no keywords to gate it".to_owned());
    }
    let (regex, max_len, shape) = parse_rule_pattern(&pattern)?;
    let mut allow = Vec::new();
    for list in def.allowlists {
        let patched: Vec<String> = list
            .regexes
            .iter()
            .map(|r| effective_allow(def, r))
            .collect();
        let patched: Vec<&str> = patched.iter().map(String::as_str).collect();
        let regexes = compile_many(&patched)?;
        allow.push(Allow {
            target: list.target,
            require_all: list.require_all,
            regexes,
            stopwords: stopword_matcher(list.stopwords)?,
            has_paths: !list.paths.is_empty(),
        });
    }
    let assignment = keywords_name_the_value(&pattern, def.keywords);
    let assignment_reach = assignment.then(|| AssignmentReach::of(&pattern)).flatten();
    let distant_keywords = !assignment && {
        let lower = pattern.to_ascii_lowercase();
        !def.keywords
            .iter()
            .all(|k| lower.contains(&k.to_ascii_lowercase()))
    };
    // Only for rules whose keyword is part of the match (assignment-template rules are
    // searched around their operator instead).
    let around = shape.around.filter(|_| !distant_keywords && !assignment);
    // Every match starts with one of the rule's keywords: it is found from the keyword
    // occurrence at its start, so windows need not reach back from a keyword.
    let starts_with_keyword = !assignment
        && around.is_none()
        && shape.prefix.is_some_and(|prefix| {
            let prefix = prefix.to_ascii_lowercase();
            def.keywords
                .iter()
                .any(|k| !k.is_empty() && prefix.starts_with(k.to_ascii_lowercase().as_bytes()))
        });
    Ok(Rule {
        def,
        regex,
        max_len,
        allow,
        generic: def.id.starts_with("generic"),
        assignment,
        assignment_reach,
        // A keyword matched by the name part of the assignment template is part of the match;
        // otherwise a keyword the pattern does not spell may be elsewhere.
        distant_keywords,
        around,
        starts_with_keyword,
    })
}

impl Gitleaks {
    /// Compiles the vendored rule set. Rules that cannot run on content are recorded in
    /// [`Gitleaks::skipped`].
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_extra_keywords(&[])
    }

    /// Compiles the vendored rule set, with `extra` keywords in the same automaton (the generic
    /// detectors' keywords: one pass over the text serves both). Rules that cannot run on
    /// content are recorded in [`Gitleaks::skipped`].
    pub(crate) fn with_extra_keywords(extra: &[&str]) -> Self {
        let mut rules = Vec::new();
        let mut skipped = Vec::new();
        for def in RULES {
            match compile_rule(def) {
                Ok(rule) => rules.push(rule),
                Err(reason) => skipped.push(SkippedRule { id: def.id, reason }),
            }
        }
        let mut patterns: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            for keyword in rule.def.keywords {
                let keyword = keyword.to_ascii_lowercase();
                match patterns.iter().position(|p| *p == keyword) {
                    Some(p) => keyword_rules[p].push(index),
                    None => {
                        patterns.push(keyword);
                        keyword_rules.push(vec![index]);
                    }
                }
            }
        }
        let mut keyword_extra = vec![false; patterns.len()];
        for keyword in extra {
            let keyword = keyword.to_ascii_lowercase();
            match patterns.iter().position(|p| *p == keyword) {
                Some(p) => keyword_extra[p] = true,
                None => {
                    patterns.push(keyword);
                    keyword_rules.push(Vec::new());
                    keyword_extra.push(true);
                }
            }
        }
        // A DFA: one table lookup per byte, which matters because short keywords (`ey`, `sk`,
        // `api`, `key`) occur on most lines of ordinary text.
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .expect("a few hundred short literals fit the automaton size limits");
        let global_allow = compile_many(GLOBAL_ALLOW_REGEXES)
            .expect("the vendored global allowlist compiles (tested)")
            .map(|lazy| {
                lazy.build()
                    .expect("the vendored global allowlist compiles (tested)")
            });
        let global_stopwords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(GLOBAL_STOPWORDS)
            .expect("two short literals fit the automaton size limits");
        Gitleaks {
            rules,
            keywords,
            keyword_rules,
            keyword_extra,
            global_allow,
            global_stopwords,
            skipped,
        }
    }

    /// Builds the regexes of the generic rules, whose keywords (`key`, `token`, `secret`...)
    /// occur in most text, so that the first results do not pay for them. Other rules are
    /// built when their keywords first occur.
    pub(crate) fn build_common(&self) {
        for rule in self.rules.iter().filter(|r| r.generic) {
            rule.lazy_regexes().for_each(|r| {
                r.get();
            });
        }
    }

    /// Every regex a rule may build, built or not (for tests).
    #[cfg(test)]
    fn all_lazy(&self) -> impl Iterator<Item = (&'static str, &LazyRegex)> + '_ {
        self.rules
            .iter()
            .flat_map(|r| r.lazy_regexes().map(move |lazy| (r.def.id, lazy)))
    }

    /// Rules that are not used, with the reason.
    pub(crate) fn skipped(&self) -> &[SkippedRule] {
        &self.skipped
    }

    /// Number of rules in use.
    pub(crate) fn active(&self) -> usize {
        self.rules.len()
    }

    /// The upstream description of a rule in use.
    pub(crate) fn description(&self, id: &str) -> Option<&'static str> {
        self.rules
            .iter()
            .find(|r| r.def.id == id)
            .map(|r| r.def.description)
    }

    /// The rules in use.
    pub(crate) fn infos(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .map(|r| RuleInfo {
                id: r.def.id,
                description: r.def.description,
                pattern: effective_pattern(r.def)
                    .map(|p| translate(&p))
                    .unwrap_or_default(),
                keywords: r.def.keywords,
                entropy: r.def.entropy,
                secret_group: r.def.secret_group,
            })
            .collect()
    }

    /// Ids of the rules in use.
    pub(crate) fn active_ids(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.rules.iter().map(|r| r.def.id)
    }

    /// Every match of every rule in `text`, each with the span of the secret; and every
    /// occurrence of an extra keyword (overlapping occurrences included), in order of their end.
    pub(crate) fn scan(&self, text: &str) -> (Vec<RuleMatch>, Vec<Range<usize>>) {
        // Most strings of a result name no keyword: they cost one automaton pass and none of
        // the per-rule state below (which is sized by the rule count, not by the text).
        let mut hits = self.keywords.find_overlapping_iter(text).peekable();
        if hits.peek().is_none() {
            return (Vec::new(), Vec::new());
        }
        let mut extra_hits = Vec::new();
        let mut windows: Vec<Vec<Range<usize>>> = vec![Vec::new(); self.rules.len()];
        // The operator each rule's last operator window was built for: several keywords of one
        // name (`api_key_token =`) share an operator and so a window.
        let mut last_operator: Vec<usize> = vec![usize::MAX; self.rules.len()];
        // What each rule's keyword-run walks have seen (rules with `around` only).
        let mut seen: Vec<super::reach::Seen> = vec![Default::default(); self.rules.len()];
        let bytes = text.as_bytes();
        for hit in hits {
            if self.keyword_extra[hit.pattern().as_usize()] {
                extra_hits.push(hit.range());
            }
            // Computed once per hit, for all the assignment-template rules it gates.
            let mut operator = None;
            for &index in &self.keyword_rules[hit.pattern().as_usize()] {
                let rule = &self.rules[index];
                let window = if rule.assignment {
                    let Some(op) =
                        *operator.get_or_insert_with(|| operator_after(bytes, hit.end()))
                    else {
                        continue;
                    };
                    match &rule.assignment_reach {
                        Some(_) if last_operator[index] == op => continue,
                        Some(reach) => {
                            last_operator[index] = op;
                            if !reach.value_follows(text, op) {
                                continue;
                            }
                            reach.window(text, op)
                        }
                        None => keyword_window(rule, text, hit.range()),
                    }
                } else if let Some(around) = &rule.around {
                    let w = around.window(bytes, hit.range(), UNBOUNDED_WINDOW, &mut seen[index]);
                    floor_boundary(text, w.start)..ceil_boundary(text, w.end)
                } else {
                    keyword_window(rule, text, hit.range())
                };
                let list = &mut windows[index];
                match list.last_mut() {
                    Some(last) if window.start <= last.end && window.end >= last.start => {
                        last.start = last.start.min(window.start);
                        last.end = last.end.max(window.end);
                    }
                    _ => list.push(window),
                }
            }
        }
        let mut out = Vec::new();
        for (index, list) in windows.iter_mut().enumerate() {
            if list.is_empty() {
                continue;
            }
            merge(list);
            let rule = &self.rules[index];
            // Built when first needed; every rule's regex is built in a test.
            let Some(regex) = rule.regex.get() else {
                continue;
            };
            let mut caps = regex.create_captures();
            for window in list.iter() {
                let mut at = window.start;
                while at < window.end {
                    // The match bounds first (DFA only); capture groups only for a match that
                    // can pass: a generic rule's secret must contain a digit.
                    let Some(m) = regex.search(&Input::new(text).span(at..window.end)) else {
                        break;
                    };
                    let next_start = ceil_boundary(text, m.start() + 1);
                    if rule.generic && !text.as_bytes()[m.range()].iter().any(u8::is_ascii_digit) {
                        at = m.end().max(next_start);
                        continue;
                    }
                    let exact = Input::new(text)
                        .span(m.range())
                        .anchored(regex_automata::Anchored::Yes);
                    regex.search_captures(&exact, &mut caps);
                    if caps.get_match() != Some(m) {
                        // Cannot happen: the same regex on its own match. Skip it safely.
                        at = m.end().max(next_start);
                        continue;
                    }
                    match self.accept(rule, text, &caps) {
                        Ok(span) => {
                            out.push(RuleMatch {
                                id: rule.def.id,
                                rule: rule.def.rule,
                                generic: rule.generic,
                                span,
                            });
                            // Patterns never match empty in practice; step past one anyway.
                            at = m.end().max(next_start);
                        }
                        // A rejected match must not hide a candidate that starts inside its
                        // secret (redacting a neighbour would otherwise reveal it on a second
                        // pass): resume at the secret, which is past the match start.
                        Err(secret_start) => at = secret_start.max(next_start),
                    }
                }
            }
        }
        (out, extra_hits)
    }

    /// Applies the rule's secret extraction, entropy and allowlists to one match.
    /// `Err` carries where the secret started, to resume the search there.
    fn accept(&self, rule: &Rule, text: &str, caps: &Captures) -> Result<Range<usize>, usize> {
        let Some(whole) = caps.get_match().map(|m| m.range()) else {
            return Err(text.len());
        };
        let span = match rule.def.secret_group {
            Some(group) => match caps.get_group(group) {
                Some(g) => g.range(),
                None => return Err(whole.end),
            },
            None => (1..caps.group_len())
                .filter_map(|g| caps.get_group(g))
                .map(|s| s.range())
                .find(|r| !r.is_empty())
                .unwrap_or_else(|| whole.clone()),
        };
        let secret = &text[span.clone()];
        if rule
            .def
            .entropy
            .is_some_and(|min| entropy::shannon(secret.as_bytes()) <= min)
        {
            return Err(span.start);
        }
        if rule.generic
            && (!secret.bytes().any(|b| b.is_ascii_digit())
                || super::generic::generic_veto(
                    &text[whole.start..span.start],
                    secret,
                    &text[span.end..whole.end],
                ))
        {
            return Err(span.start);
        }
        if self
            .global_allow
            .as_ref()
            .is_some_and(|re| re.is_match(secret))
            || self.global_stopwords.is_match(secret)
        {
            return Err(span.start);
        }
        for list in &rule.allow {
            let target = match list.target {
                Target::Secret => secret,
                Target::Match => &text[whole.clone()],
                Target::Line => line_of(text, &whole),
            };
            // An allowlist regex that could not be built (a test builds them all) allows
            // nothing: the match is reported rather than hidden.
            let regex_hit = || {
                list.regexes
                    .as_ref()
                    .and_then(LazyRegex::get)
                    .is_some_and(|re| re.is_match(target))
            };
            let stop_hit = || list.stopwords.as_ref().is_some_and(|s| s.is_match(secret));
            let allowed = if list.require_all {
                // Content has no path, so a condition that needs one never holds.
                !list.has_paths
                    && (list.regexes.is_none() || regex_hit())
                    && (list.stopwords.is_none() || stop_hit())
                    && !(list.regexes.is_none() && list.stopwords.is_none())
            } else {
                regex_hit() || stop_hit()
            };
            if allowed {
                return Err(span.start);
            }
        }
        Ok(span)
    }
}

/// The window around a keyword hit that holds every match of `rule` containing it: the rule's
/// longest match (or [`UNBOUNDED_WINDOW`]) each side, plus [`KEYWORD_SLACK`] for rules whose
/// keyword may lie outside the match. For rules whose matches start with a keyword, only
/// forward: a match containing the hit also contains the keyword occurrence it starts with,
/// whose own window holds it.
fn keyword_window(rule: &Rule, text: &str, hit: Range<usize>) -> Range<usize> {
    let slack = if rule.distant_keywords {
        KEYWORD_SLACK
    } else {
        0
    };
    let reach = rule
        .max_len
        .unwrap_or(UNBOUNDED_WINDOW)
        .saturating_add(slack);
    let back = if rule.starts_with_keyword { 0 } else { reach };
    floor_boundary(text, hit.start.saturating_sub(back))
        ..ceil_boundary(text, hit.end.saturating_add(reach))
}

fn merge(list: &mut Vec<Range<usize>>) {
    list.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(list.len());
    for r in list.drain(..) {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    *list = merged;
}

fn line_of<'t>(text: &'t str, span: &Range<usize>) -> &'t str {
    let start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let end = text[span.end..]
        .find('\n')
        .map_or(text.len(), |i| span.end + i);
    &text[start..end]
}

/// The largest char boundary at or below `i`.
pub(crate) fn floor_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary at or above `i` (clamped to the length).
pub(crate) fn ceil_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
