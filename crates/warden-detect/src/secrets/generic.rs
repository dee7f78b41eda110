//! Generic secrets: values assigned to secret-like names (`password = ...`, `api_key: ...`,
//! `"client_secret": "..."`), credentials in URLs (`postgres://user:pass@host`) and
//! `Authorization` header values, each checked for entropy and against placeholders so that
//! `password: string`, `token = ${TOKEN}` and `api_key = "<your key>"` are not findings.

use std::ops::Range;
use std::sync::LazyLock;

use regex_automata::Input;
use regex_automata::meta::Regex;

use super::gitleaks::{ceil_boundary, floor_boundary};
use super::{DataClass, Detection, GENERIC};
use crate::entropy;
use crate::finding::Severity;

/// What a secret-like name holds; decides how strict the value check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A password or passphrase: humans choose them, so low entropy is still a secret.
    Password,
    /// A token, key or client secret: machine generated, so it must look random.
    Token,
}

/// Keywords that make a name secret-like, and the markers of URL credentials and
/// `Authorization` values. Lower case; matched case-insensitively, in the same automaton pass
/// as the gitleaks keywords.
pub(crate) const KEYWORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "access-key",
    "accesskey",
    "auth_key",
    "auth-key",
    "authkey",
    "private_key",
    "private-key",
    "privatekey",
    "credential",
    "bearer",
    "basic ",
    "://",
];

/// Name endings that describe a secret without being one (`token_type`, `password_hint`).
const NOT_SECRET_SUFFIXES: &[&str] = &[
    "id",
    "ids",
    "name",
    "names",
    "type",
    "count",
    "length",
    "len",
    "size",
    "url",
    "uri",
    "path",
    "file",
    "endpoint",
    "policy",
    "hint",
    "field",
    "label",
    "expires",
    "expiry",
    "expiration",
    "limit",
    "ttl",
    "header",
    "prefix",
    "format",
    "version",
    "required",
    "enabled",
    "manager",
    "reset",
    "strength",
    "min",
    "max",
    "rule",
    "rules",
    "kind",
    "ref",
    "env",
];

/// Name beginnings that describe a quantity or a public value (`max_tokens`, `public_key`).
const NOT_SECRET_PREFIXES: &[&str] = &[
    "max",
    "min",
    "num",
    "total",
    "public",
    "pub",
    "csrf",
    "xsrf",
    "next",
    "page",
    "continuation",
    "cancellation",
    "sync",
    "progress",
    "input",
    "output",
    "prompt",
    "completion",
    "cache",
];

/// Values that are placeholders, not secrets (compared in lower case).
const PLACEHOLDERS: &[&str] = &[
    "null",
    "none",
    "nil",
    "true",
    "false",
    "undefined",
    "changeme",
    "change_me",
    "password",
    "passwd",
    "secret",
    "token",
    "example",
    "redacted",
    "required",
    "optional",
    "string",
    "hidden",
    "dummy",
    "sample",
    "placeholder",
    "notasecret",
    "test",
    "testing",
];

/// Value fragments that mark a placeholder or a reference rather than a value.
const PLACEHOLDER_FRAGMENTS: &[&str] = &[
    "example",
    "xxxx",
    "****",
    "....",
    "redacted",
    "your_",
    "your-",
    "<",
    ">",
    "${",
    "{{",
    "%(",
    "process.env",
    "os.environ",
    "getenv",
    "env.",
    "secrets.",
    "vault:",
    "file:",
    "keyring:",
    "env:",
];

/// Name fragments that mark a digest or a cache key, whose hex or base64 value is not a secret
/// (`token_hash`, `cache_key`, `key_fingerprint`, `etag`).
const DIGEST_NAMES: &[&str] = &[
    "hash",
    "digest",
    "checksum",
    "sha1",
    "sha256",
    "sha512",
    "sha",
    "md5",
    "etag",
    "fingerprint",
    "cache",
    "integrity",
    "crc",
];

/// Value prefixes of credentials that are public by design (Stripe publishable keys, SSH public
/// keys).
const PUBLIC_PREFIXES: &[&str] = &[
    "pk_live_",
    "pk_test_",
    "ssh-ed25519",
    "ssh-rsa",
    "AAAAC3Nza",
    "AAAAB3Nza",
    "ecdsa-sha2-",
];

/// Longest assignment value, in characters: a longer run is cut here (its first
/// `MAX_VALUE_CHARS` characters are the value, and a search resumes after them).
const MAX_VALUE_CHARS: usize = 200;

/// Longest `Authorization` value, in bytes (its alphabet is ASCII), cut the same way.
const MAX_HEADER_VALUE: usize = 2048;

/// Characters of a URL's user name: 1 to this many.
const MAX_URL_USER_CHARS: usize = 64;

/// Characters of a URL's password: `MIN_URL_PASSWORD_CHARS` to this many.
const MAX_URL_PASSWORD_CHARS: usize = 128;
const MIN_URL_PASSWORD_CHARS: usize = 3;

/// The passwords of `scheme://user:password@host` URLs in `window` of `text`.
///
/// The pattern leaves the user and password lengths open and they are checked here: neither
/// part may hold `:`, `@` or `/`, so each `://` decides both parts, and a start whose parts are
/// out of bounds fails for every start sharing its `://`. The next candidate's scheme begins
/// after the `@`, which is where the search resumes after a rejected match (an accepted one
/// resumes at its end, one character later, as the bounded pattern's iteration does). So the
/// matches kept are those of the pattern with the bounds in its repetitions.
fn url_passwords(text: &str, window: Range<usize>) -> Vec<Range<usize>> {
    let p = &*PATTERNS;
    let mut caps = p.url_credentials.create_captures();
    let mut found = Vec::new();
    let mut at = window.start;
    while at < window.end {
        p.url_credentials
            .search_captures(&Input::new(text).span(at..window.end), &mut caps);
        let (Some(m), Some(user), Some(password)) =
            (caps.get_match(), caps.get_group(1), caps.get_group(2))
        else {
            break;
        };
        let chars = |s: regex_automata::Span| text[s.range()].chars().count();
        let (user_len, password_len) = (chars(user), chars(password));
        if user_len <= MAX_URL_USER_CHARS
            && (MIN_URL_PASSWORD_CHARS..=MAX_URL_PASSWORD_CHARS).contains(&password_len)
        {
            found.push(password.range());
            // After a match, where the bounded pattern's match ends too.
            at = m.end();
        } else {
            // Just past the `@` (one byte).
            at = password.end + 1;
        }
    }
    found
}

/// The first `max_chars` characters of `span` in `text`.
fn cut(text: &str, span: Range<usize>, max_chars: usize) -> Range<usize> {
    match text[span.clone()].char_indices().nth(max_chars) {
        Some((at, _)) => span.start..span.start + at,
        None => span,
    }
}

// The values' lengths are bounded after matching (`cut`) rather than in the patterns: a
// counted repetition of a class is compiled as that many copies of it (`{16,2048}` alone held
// 1.1 MB), while a match of `{n,}` cut to `m` characters is the match `{n,m}` finds (the value
// is the pattern's last part, so its length decides nothing else), and the searches resume
// where the cut value ends, as they would after a bounded match.
struct Patterns {
    uuid: Regex,
    snake_identifier: Regex,
    assignment: Regex,
    url_credentials: Regex,
    auth_header: Regex,
    dotted_identifier: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let build = |p: &str| Regex::new(p).expect("a fixed, tested pattern compiles");
    Patterns {
        // name, optional closing quote, separator, optional opening quote, value.
        assignment: build(
            r#"(?i)(?-u:\b)([a-z0-9_.-]{0,40}?(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|auth[_-]?key|private[_-]?key|credentials?)[a-z0-9_.-]{0,24})["']?[ \t]{0,4}(?::=|=>|=|:)[ \t]{0,4}["'`]?([^\s"'`,;<>(){}\[\]|\\]{6,})"#,
        ),
        url_credentials: build(
            r"(?i)(?-u:\b)[a-z][a-z0-9+.-]{1,20}://([^\s:/@?#]+):([^\s:/@?#]+)@[a-z0-9\[]",
        ),
        auth_header: build(r"(?i)(?-u:\b)(?:bearer|basic)[ \t]+([A-Za-z0-9._~+/=-]{16,})"),
        uuid: build(
            r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        ),
        snake_identifier: build(r"^[a-z]+(?:_[a-z]+)+$"),
        dotted_identifier: build(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$"),
    }
});

/// Compiles the patterns now.
pub(crate) fn warm_up() {
    LazyLock::force(&PATTERNS);
}

/// Whether a name (an assignment's left side or a JSON key) holds a secret, and which kind.
///
/// ```
/// use warden_detect::secrets::generic::{key_kind, KeyKind};
/// assert_eq!(key_kind("DB_PASSWORD"), Some(KeyKind::Password));
/// assert_eq!(key_kind("client_secret"), Some(KeyKind::Token));
/// assert_eq!(key_kind("max_tokens"), None);
/// assert_eq!(key_kind("token_type"), None);
/// // camelCase names split into words: a progress token is the client's own identifier.
/// assert_eq!(key_kind("progressToken"), None);
/// assert_eq!(key_kind("nextPageToken"), None);
/// assert_eq!(key_kind("accessToken"), Some(KeyKind::Token));
/// assert_eq!(key_kind("clientSecret"), Some(KeyKind::Token));
/// ```
pub fn key_kind(name: &str) -> Option<KeyKind> {
    // Also rejects names longer than 64 bytes.
    if !may_name_secret(name) {
        return None;
    }
    // A redacted name says nothing about its value any more (and the marker's own kind,
    // `[REDACTED:private-key]`, must not make it look secret-like on a second pass).
    if name.contains("[REDACTED:") {
        return None;
    }
    // Words split at separators and at camelCase humps (`progressToken` is `progress token`,
    // a client-chosen identifier, not `progresstoken`), in lower case.
    let mut spaced = String::with_capacity(name.len() + 4);
    let mut previous_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() && previous_lower {
            spaced.push(' ');
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        spaced.push(c.to_ascii_lowercase());
    }
    let words: Vec<&str> = spaced
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let (first, last) = (words.first()?, words.last()?);
    if NOT_SECRET_PREFIXES.contains(first)
        || (words.len() > 1 && NOT_SECRET_SUFFIXES.contains(last))
    {
        return None;
    }
    let compact: String = words.concat();
    if ["password", "passwd", "passphrase", "pwd"]
        .iter()
        .any(|k| compact.contains(k))
    {
        return Some(KeyKind::Password);
    }
    let token_words = [
        "secret",
        "token",
        "apikey",
        "accesskey",
        "authkey",
        "privatekey",
        "credential",
    ];
    if compact.ends_with("tokens") {
        return None;
    }
    token_words
        .iter()
        .any(|k| compact.contains(k))
        .then_some(KeyKind::Token)
}

/// Every name [`key_kind`] accepts contains one of these in its lowercase letters and digits
/// (`password`, `passwd`, `passphrase` contain `pass`; `apikey`, `accesskey`, `authkey`,
/// `privatekey` contain `key`).
const SECRET_NAME_STEMS: [&[u8]; 6] = [b"pass", b"pwd", b"secret", b"token", b"key", b"credential"];

/// The allocation-free first test of [`key_kind`]: most JSON keys (`type`, `text`, `content`)
/// contain no stem of a secret's name and are rejected here, as are names longer than 64
/// bytes.
fn may_name_secret(name: &str) -> bool {
    if name.len() > 64 {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    for b in name.bytes().filter(u8::is_ascii_alphanumeric) {
        buf[n] = b.to_ascii_lowercase();
        n += 1;
    }
    let compact = &buf[..n];
    SECRET_NAME_STEMS
        .iter()
        .any(|stem| compact.windows(stem.len()).any(|w| w == *stem))
}

/// Whether `value` assigned to a name of kind `kind` looks like a real secret rather than a
/// placeholder, a reference, a type name or a word.
pub fn plausible_value(kind: KeyKind, value: &str) -> bool {
    let value = value.trim();
    if value.len() < 6 || value.len() > 256 || value.contains('\n') {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDERS.contains(&lower.as_str())
        || PLACEHOLDER_FRAGMENTS.iter().any(|f| lower.contains(f))
        || value.starts_with(['$', '%', '/', '~', '#', '@', '['])
        || value.starts_with("./")
        || lower.contains("://")
        || PATTERNS.dotted_identifier.is_match(value)
    {
        return false;
    }
    // A single repeated character (`aaaaaaaa`, `********`) is a mask.
    let first = value.as_bytes()[0];
    if value.bytes().all(|b| b == first) {
        return false;
    }
    let bytes = value.as_bytes();
    let classes = entropy::char_classes(bytes);
    let bits = entropy::shannon(bytes);
    match kind {
        KeyKind::Password => classes >= 2 || bits >= 3.0,
        KeyKind::Token => value.len() >= 12 && classes >= 2 && bits >= 3.2,
    }
}

/// Whether base64 `value` decodes to ordinary text (words separated by spaces, or mostly letters
/// of a script written without spaces), which is encoded content, not a key. Base64 of
/// `user:password` is not ordinary text and stays a finding.
fn base64_of_text(value: &str) -> bool {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    if value.len() < 16 {
        return false;
    }
    let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(value).ok());
    let Some(bytes) = decoded else { return false };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return false;
    };
    let printable = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .count();
    let spaces = text.chars().filter(|c| *c == ' ').count();
    // Words: spaces between them, or a script written without spaces (CJK, Thai).
    let letters_without_spaces = text
        .chars()
        .filter(|c| !c.is_ascii() && c.is_alphabetic())
        .count();
    let n = text.chars().count();
    printable * 100 >= n * 95 && (spaces * 12 >= n || letters_without_spaces * 2 >= n)
}

/// Whether a value found by a generic (keyword plus entropy) rule is a known non-secret: a
/// UUID, a digest under a digest-like name, a public-by-design key, base64 of ordinary text,
/// or a call or identifier in code. `name` is the text between the match start and the value,
/// `after` the text after the value.
pub(crate) fn generic_veto(name: &str, value: &str, after: &str) -> bool {
    let p = &PATTERNS;
    let lower_name = name.to_ascii_lowercase();
    p.uuid.is_match(value)
        || DIGEST_NAMES.iter().any(|d| lower_name.contains(d))
        || PUBLIC_PREFIXES
            .iter()
            .any(|prefix| value.starts_with(prefix))
        || base64_of_text(value)
        || after.trim_start().starts_with('(')
        || p.snake_identifier.is_match(value)
}

fn detection(kind: KeyKind, span: Range<usize>) -> Detection {
    let (kind, rule) = match kind {
        KeyKind::Password => ("password", "secret.password"),
        KeyKind::Token => ("generic-secret", "secret.generic-secret"),
    };
    Detection {
        kind,
        rule,
        class: DataClass::Secret,
        severity: Severity::Medium,
        span,
        specificity: GENERIC,
    }
}

/// Whether an assignment operator (`=`, `:`) follows the keyword ending at `at` within the
/// name's remaining characters and a closing quote: a necessary condition for the assignment
/// pattern, checked before any window is searched.
fn operator_follows(bytes: &[u8], at: usize) -> bool {
    for &b in bytes.iter().skip(at).take(40) {
        match b {
            b'=' | b':' => return true,
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b'_'
            | b'.'
            | b'-'
            | b' '
            | b'\t'
            | b'"'
            | b'\'' => {}
            _ => return false,
        }
    }
    false
}

/// Adds `window` to `windows`, merging it with the last one when they overlap. Hits come in
/// order of their end, so a window may start before the last one (an overlapping keyword).
fn push_window(windows: &mut Vec<Range<usize>>, window: Range<usize>) {
    match windows.last_mut() {
        Some(last) if window.start <= last.end && window.end >= last.start => {
            last.start = last.start.min(window.start);
            last.end = last.end.max(window.end);
        }
        _ => windows.push(window),
    }
}

/// Appends generic secrets in `text` to `out`. `hits` are the occurrences of [`KEYWORDS`] in
/// `text`, in order of their end (from the shared keyword pass).
pub(crate) fn scan(text: &str, hits: &[Range<usize>], out: &mut Vec<Detection>) {
    let p = &PATTERNS;
    let bytes = text.as_bytes();
    let mut assignments: Vec<Range<usize>> = Vec::new();
    let mut urls: Vec<Range<usize>> = Vec::new();
    let mut headers: Vec<Range<usize>> = Vec::new();
    for hit in hits {
        let around = |before: usize, after: usize| {
            floor_boundary(text, hit.start.saturating_sub(before))
                ..ceil_boundary(text, hit.end.saturating_add(after))
        };
        match &bytes[hit.clone()] {
            b"://" => push_window(&mut urls, around(24, 200)),
            k if k.eq_ignore_ascii_case(b"bearer") || k.eq_ignore_ascii_case(b"basic ") => {
                push_window(&mut headers, around(0, 2100));
            }
            // Names reach 40 bytes before the keyword and 24 after; values 200 after that.
            _ if operator_follows(bytes, hit.end) => push_window(&mut assignments, around(48, 280)),
            _ => {}
        }
    }
    for window in assignments {
        // A rejected candidate must not hide an assignment inside its value
        // (`a.password = b.password = s3cret!`): the search resumes at the value, not after it.
        let mut caps = p.assignment.create_captures();
        let mut at = window.start;
        while at < window.end {
            p.assignment
                .search_captures(&Input::new(text).span(at..window.end), &mut caps);
            let (Some(m), Some(name), Some(value)) =
                (caps.get_match(), caps.get_group(1), caps.get_group(2))
            else {
                break;
            };
            let (name, value) = (name.range(), cut(text, value.range(), MAX_VALUE_CHARS));
            let accepted = key_kind(&text[name.clone()]).filter(|&kind| {
                plausible_value(kind, &text[value.clone()])
                    && !generic_veto(
                        &text[name.clone()],
                        &text[value.clone()],
                        &text[value.end..],
                    )
            });
            match accepted {
                Some(kind) => {
                    // The end of the (cut) value: where the bounded match ended.
                    at = value.end;
                    out.push(detection(kind, value));
                }
                None => at = value.start.max(ceil_boundary(text, m.start() + 1)),
            }
        }
    }
    for window in urls {
        for secret in url_passwords(text, window.clone()) {
            if plausible_value(KeyKind::Password, &text[secret.clone()]) {
                out.push(Detection {
                    kind: "url-credentials",
                    rule: "secret.url-credentials",
                    ..detection(KeyKind::Password, secret)
                });
            }
        }
    }
    for window in headers {
        let mut caps = p.auth_header.create_captures();
        let mut at = window.start;
        while at < window.end {
            p.auth_header
                .search_captures(&Input::new(text).span(at..window.end), &mut caps);
            let Some(secret) = caps.get_group(1) else {
                break;
            };
            // ASCII alphabet: characters are bytes.
            let secret = cut(text, secret.range(), MAX_HEADER_VALUE);
            at = secret.end;
            let value = &text[secret.clone()];
            if entropy::shannon(value.as_bytes()) >= 3.5
                && entropy::char_classes(value.as_bytes()) >= 2
            {
                out.push(Detection {
                    kind: "authorization",
                    rule: "secret.authorization",
                    ..detection(KeyKind::Token, secret)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_automata::meta::Regex;

    /// The patterns as they were, with the values' bounds in the repetition, next to the
    /// patterns in use and the bound.
    fn bounded() -> &'static [(Regex, &'static Regex, usize); 2] {
        static BOUNDED: LazyLock<[(Regex, &'static Regex, usize); 2]> = LazyLock::new(|| {
            [
            (
                Regex::new(
                    r#"(?i)(?-u:\b)([a-z0-9_.-]{0,40}?(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|auth[_-]?key|private[_-]?key|credentials?)[a-z0-9_.-]{0,24})["']?[ \t]{0,4}(?::=|=>|=|:)[ \t]{0,4}["'`]?([^\s"'`,;<>(){}\[\]|\\]{6,200})"#,
                )
                .expect("compiles"),
                &PATTERNS.assignment,
                MAX_VALUE_CHARS,
            ),
            (
                Regex::new(r"(?i)(?-u:\b)(?:bearer|basic)[ \t]+([A-Za-z0-9._~+/=-]{16,2048})")
                    .expect("compiles"),
                &PATTERNS.auth_header,
                MAX_HEADER_VALUE,
            ),
        ]
        });
        &BOUNDED
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                Just("password".to_owned()),
                Just("api_key".to_owned()),
                Just("Bearer ".to_owned()),
                Just(" = ".to_owned()),
                Just(": \"".to_owned()),
                Just(" ".to_owned()),
                Just("\n".to_owned()),
                Just("é".to_owned()),
                "[a-zA-Z0-9._~+/=-]{1,12}",
                (1usize..300).prop_map(|n| "x".repeat(n)),
                (1usize..300).prop_map(|n| "Ab9".repeat(n)),
                (1usize..120).prop_map(|n| "ü1".repeat(n)),
            ],
            1..12,
        )
        .prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// An unbounded value cut to its bound is what the bounded pattern matches, from every
        /// search start: same match start, same groups.
        #[test]
        fn cut_unbounded_values_are_the_bounded_matches(text in text(), from in 0usize..64) {
            let from = floor_boundary(&text, from.min(text.len()));
            for (old, new, max) in bounded() {
                let max = *max;
                let (mut a, mut b) = (old.create_captures(), new.create_captures());
                old.search_captures(&Input::new(&text).span(from..text.len()), &mut a);
                new.search_captures(&Input::new(&text).span(from..text.len()), &mut b);
                proptest::prop_assert_eq!(a.get_match().map(|m| m.start()), b.get_match().map(|m| m.start()));
                let last = old.group_info().group_len(regex_automata::PatternID::ZERO) - 1;
                for g in 1..last {
                    proptest::prop_assert_eq!(a.get_group(g), b.get_group(g));
                }
                proptest::prop_assert_eq!(
                    a.get_group(last).map(|s| s.range()),
                    b.get_group(last).map(|s| cut(&text, s.range(), max))
                );
                // The bounded match ends where its value does: searches resume there.
                if let Some(m) = a.get_match() {
                    proptest::prop_assert_eq!(Some(m.end()), a.get_group(last).map(|s| s.end));
                }
            }
        }
    }

    /// URL passwords with the parts' bounds checked after matching are the matches of the
    /// pattern with the bounds in its repetitions, from every search start.
    fn url_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                Just("https://".to_owned()),
                Just("x.y-z+w://".to_owned()),
                Just(":".to_owned()),
                Just("@".to_owned()),
                Just("@h".to_owned()),
                Just("/".to_owned()),
                Just(" ".to_owned()),
                Just("é".to_owned()),
                "[a-zA-Z0-9._~+-]{1,12}",
                (1usize..140).prop_map(|n| "u".repeat(n)),
                (1usize..70).prop_map(|n| "ü1".repeat(n)),
                // Whole URLs, the parts' lengths around their bounds.
                (
                    prop_oneof![Just("s"), Just("git+ssh"), Just("a.b")],
                    prop_oneof![0usize..3, 62usize..67],
                    prop_oneof![1usize..5, 126usize..131],
                    any::<bool>(),
                )
                    .prop_map(|(scheme, user, password, wide)| {
                        let c = if wide { "ß" } else { "p" };
                        format!("{scheme}://{}:{}@h", "u".repeat(user), c.repeat(password))
                    }),
            ],
            1..8,
        )
        .prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, ..Default::default() })]

        #[test]
        fn url_passwords_are_the_bounded_matches(text in url_text(), from in 0usize..64) {
            static BOUNDED: LazyLock<Regex> = LazyLock::new(|| {
                Regex::new(
                    r"(?i)(?-u:\b)[a-z][a-z0-9+.-]{1,20}://[^\s:/@?#]{1,64}:([^\s:/@?#]{3,128})@[a-z0-9\[]",
                )
                .expect("compiles")
            });
            let from = floor_boundary(&text, from.min(text.len()));
            let expected: Vec<Range<usize>> = BOUNDED
                .captures_iter(Input::new(&text).span(from..text.len()))
                .filter_map(|c| c.get_group(1).map(|s| s.range()))
                .collect();
            proptest::prop_assert_eq!(url_passwords(&text, from..text.len()), expected);
        }
    }

    #[test]
    fn url_password_bounds_are_inclusive() {
        let url = |user: usize, password: usize| {
            format!(
                "see https://{}:{}@example.com",
                "u".repeat(user),
                "ü".repeat(password)
            )
        };
        let found = |t: &str| url_passwords(t, 0..t.len()).len();
        assert_eq!(found(&url(64, 128)), 1);
        assert_eq!(found(&url(1, 3)), 1);
        assert_eq!(found(&url(65, 10)), 0);
        assert_eq!(found(&url(10, 129)), 0);
        assert_eq!(found(&url(10, 2)), 0);
        // A rejected URL does not hide one right after its `@`.
        let t = format!(
            "{}http://a:bcd@h",
            url(65, 10).trim_end_matches("example.com")
        );
        assert_eq!(
            url_passwords(&t, 0..t.len()),
            vec![t.len() - 5..t.len() - 2]
        );
    }

    #[test]
    fn long_values_are_cut_at_their_bound() {
        // High-entropy values (a fixed pseudo-random sequence over the values' alphabets).
        let mut state = 0x2545_f491_u32;
        let mut next = |alphabet: &[char]| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            alphabet[(state >> 16) as usize % alphabet.len()]
        };
        let ascii: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
        let token: String = (0..3000).map(|_| next(&ascii)).collect();
        let text = format!("Authorization: Bearer {token}");
        let mut found = Vec::new();
        let keyword = 15..21;
        scan(&text, std::slice::from_ref(&keyword), &mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].span, 22..22 + MAX_HEADER_VALUE);
        let wide: Vec<char> = "üéß1234567890xyzXYZ".chars().collect();
        let value: String = (0..300).map(|_| next(&wide)).collect();
        let text = format!("password = {value}");
        let mut found = Vec::new();
        let keyword = 0..8;
        scan(&text, std::slice::from_ref(&keyword), &mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        let expected: String = value.chars().take(MAX_VALUE_CHARS).collect();
        assert_eq!(&text[found[0].span.clone()], expected);
    }
}
