//! Personal data: email addresses, phone numbers (conservative E.164 and North American forms),
//! payment card numbers (Luhn and issuer prefix), IBANs (ISO 13616 length and mod-97), US social
//! security numbers (SSA validity rules), Spanish DNI/NIE (check letter), Brazilian CPF (two
//! mod-11 check digits) and Chinese resident identity numbers (ISO 7064 MOD 11-2).
//!
//! Everything numeric is gated by one pass that finds runs of at least seven digits (with the
//! usual separators); the validators run only on small windows around those runs. Emails are
//! gated by `@`. Work is linear in the input.

use std::ops::Range;
use std::sync::LazyLock;

use regex_automata::Input;
use regex_automata::meta::Regex;

use crate::finding::Severity;
use crate::secrets::gitleaks::{ceil_boundary, floor_boundary};
use crate::secrets::{DataClass, Detection, VERIFIED};

/// Specificity of a format-only PII match (email, phone).
const FORMAT: u8 = 2;

/// Fewest digits in a run that can hold any numeric identifier handled here (NIE: 7).
const MIN_DIGITS: usize = 7;

struct Patterns {
    email: Regex,
    phone_e164: Regex,
    phone_nanp: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ssn_context: Regex,
    dni: Regex,
    nie: Regex,
    cpf: Regex,
    cn_id: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let build = |p: &str| Regex::new(p).expect("a fixed, tested pattern compiles");
    Patterns {
        email: build(
            r"[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}([A-Za-z]{2,24})(?-u:\b)",
        ),
        phone_e164: build(r"\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,5}\)?){1,6}"),
        phone_nanp: build(
            r"(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[-. ])[2-9][0-9]{2}[-. ][0-9]{4}(?-u:\b)",
        ),
        card: build(r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)"),
        iban: build(r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?-u:\b)"),
        ssn: build(r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)"),
        ssn_context: build(
            r"(?i)(?:ssn|social[ _-]security(?:[ _-]number)?|soc\.? ?sec\.?)[^0-9\n]{0,24}([0-9]{9}|[0-9]{3} [0-9]{2} [0-9]{4})(?-u:\b)",
        ),
        dni: build(r"(?-u:\b)[0-9]{8}-?[A-Z](?-u:\b)"),
        nie: build(r"(?-u:\b)[XYZ]-?[0-9]{7}-?[A-Z](?-u:\b)"),
        cpf: build(r"(?-u:\b)[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}(?-u:\b)"),
        cn_id: build(
            r"(?-u:\b)[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?-u:\b)",
        ),
    }
});

/// Compiles the patterns now.
pub fn warm_up() {
    LazyLock::force(&PATTERNS);
}

fn detection(
    kind: &'static str,
    rule: &'static str,
    specificity: u8,
    span: Range<usize>,
) -> Detection {
    Detection {
        kind,
        rule,
        class: DataClass::Pii,
        severity: Severity::Medium,
        span,
        specificity,
    }
}

/// Every piece of personal data in `text`, sorted by start offset. Spans may overlap.
pub fn scan(text: &str) -> Vec<Detection> {
    let mut out = Vec::new();
    emails(text, &mut out);
    let windows = numeric_windows(text);
    for window in &windows {
        numeric(text, window.clone(), &mut out);
    }
    out.sort_by(|a, b| (a.span.start, a.span.end, a.kind).cmp(&(b.span.start, b.span.end, b.kind)));
    out.dedup_by(|a, b| a.span == b.span && a.kind == b.kind);
    out
}

/// File extensions that follow `@` in asset names (`logo@2x.png`), not top-level domains.
const NOT_TLDS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "ts", "json", "map", "txt",
    "md", "html", "xml", "yaml", "yml", "lock", "py", "rs", "go",
];

fn emails(text: &str, out: &mut Vec<Detection>) {
    let p = &PATTERNS;
    let mut windows: Vec<Range<usize>> = Vec::new();
    for (at, _) in text.match_indices('@') {
        let start = floor_boundary(text, at.saturating_sub(64));
        let end = ceil_boundary(text, at.saturating_add(300));
        match windows.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => windows.push(start..end),
        }
    }
    for window in windows {
        for caps in p.email.captures_iter(Input::new(text).span(window)) {
            let (Some(m), Some(tld)) = (caps.get_match(), caps.get_group(1)) else {
                continue;
            };
            let tld = text[tld.range()].to_ascii_lowercase();
            if NOT_TLDS.contains(&tld.as_str()) {
                continue;
            }
            out.push(detection("email", "pii.email", FORMAT, m.range()));
        }
    }
}

/// Windows around runs of at least [`MIN_DIGITS`] digits, where runs may contain the separators
/// numbers are written with (at most two in a row).
fn numeric_windows(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut windows: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut last_digit = i;
        let mut digits = 0;
        let mut gap = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_digit() {
                digits += 1;
                last_digit = i;
                gap = 0;
            } else if matches!(b, b' ' | b'-' | b'.' | b'/' | b'(' | b')') && gap < 2 {
                gap += 1;
            } else {
                break;
            }
            i += 1;
        }
        i = last_digit + 1;
        if digits >= MIN_DIGITS {
            // Reach back for IBAN country codes, `+` and SSN context words; forward for check letters.
            let ws = floor_boundary(text, start.saturating_sub(48));
            let we = ceil_boundary(text, last_digit.saturating_add(1 + 16));
            match windows.last_mut() {
                Some(last) if ws <= last.end => last.end = last.end.max(we),
                _ => windows.push(ws..we),
            }
        }
    }
    windows
}

/// The character before `start` and after `end` do not continue a number: no digit, letter or
/// digit-separator-digit around the match (`v1.2.3-4567`, `123-45-6789-0`).
fn isolated(text: &str, span: &Range<usize>) -> bool {
    let bytes = text.as_bytes();
    let before = span.start.checked_sub(1).map(|i| bytes[i]);
    let before2 = span.start.checked_sub(2).map(|i| bytes[i]);
    let after = bytes.get(span.end).copied();
    let after2 = bytes.get(span.end + 1).copied();
    let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let joins = |sep: Option<u8>, next: Option<u8>| {
        sep.is_some_and(|b| matches!(b, b'-' | b'.' | b'/' | b':'))
            && next.is_some_and(|b| b.is_ascii_digit())
    };
    !word(before) && !word(after) && !joins(before, before2) && !joins(after, after2)
}

fn numeric(text: &str, window: Range<usize>, out: &mut Vec<Detection>) {
    let p = &PATTERNS;
    let input = || Input::new(text).span(window.clone());
    for m in p.card.find_iter(input()) {
        if isolated(text, &m.range()) && card_ok(&text[m.range()]) {
            out.push(detection(
                "credit-card",
                "pii.credit-card",
                VERIFIED,
                m.range(),
            ));
        }
    }
    for m in p.iban.find_iter(input()) {
        if iban_ok(&text[m.range()]) {
            out.push(detection("iban", "pii.iban", VERIFIED, m.range()));
        }
    }
    for m in p.ssn.find_iter(input()) {
        if isolated(text, &m.range()) && ssn_ok(&text[m.range()]) {
            out.push(detection("us-ssn", "pii.us-ssn", VERIFIED, m.range()));
        }
    }
    for caps in p.ssn_context.captures_iter(input()) {
        let Some(g) = caps.get_group(1) else { continue };
        if isolated(text, &g.range()) && ssn_ok(&text[g.range()]) {
            out.push(detection("us-ssn", "pii.us-ssn", VERIFIED, g.range()));
        }
    }
    for m in p.dni.find_iter(input()).chain(p.nie.find_iter(input())) {
        if spanish_id_ok(&text[m.range()]) {
            out.push(detection("es-dni", "pii.es-dni", VERIFIED, m.range()));
        }
    }
    for m in p.cpf.find_iter(input()) {
        if isolated(text, &m.range()) && cpf_ok(&text[m.range()]) {
            out.push(detection("br-cpf", "pii.br-cpf", VERIFIED, m.range()));
        }
    }
    for m in p.cn_id.find_iter(input()) {
        if cn_id_ok(&text[m.range()]) {
            out.push(detection(
                "cn-resident-id",
                "pii.cn-resident-id",
                VERIFIED,
                m.range(),
            ));
        }
    }
    for m in p.phone_e164.find_iter(input()) {
        let span = trim_phone(text, m.range());
        let digits = text[span.clone()]
            .bytes()
            .filter(u8::is_ascii_digit)
            .count();
        if (8..=15).contains(&digits) && isolated(text, &span) {
            out.push(detection("phone", "pii.phone", FORMAT, span));
        }
    }
    for m in p.phone_nanp.find_iter(input()) {
        if isolated(text, &m.range()) {
            out.push(detection("phone", "pii.phone", FORMAT, m.range()));
        }
    }
}

/// Drops trailing separators and an unbalanced `(` the E.164 pattern may end with.
fn trim_phone(text: &str, mut span: Range<usize>) -> Range<usize> {
    while span.end > span.start
        && !text.as_bytes()[span.end - 1].is_ascii_digit()
        && text.as_bytes()[span.end - 1] != b')'
    {
        span.end -= 1;
    }
    span
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// Luhn checksum over decimal digits.
///
/// ```
/// assert!(warden_detect::pii::luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
/// assert!(!warden_detect::pii::luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
/// ```
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// A payment card number: 13 to 19 digits, one consistent separator in groups of 3 to 6, a
/// known issuer prefix, a valid Luhn checksum, and not one repeated digit.
pub fn card_ok(candidate: &str) -> bool {
    let d = digits(candidate);
    if !(13..=19).contains(&d.len()) || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let seps: Vec<u8> = candidate.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if let Some(&first) = seps.first() {
        if seps.iter().any(|&s| s != first) {
            return false;
        }
        let groups_ok = candidate
            .split(char::from(first))
            .all(|g| (3..=6).contains(&g.len()));
        if !groups_ok {
            return false;
        }
    }
    let prefix = |n: usize| d[..n].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    let issuer = match d[0] {
        4 => matches!(d.len(), 13 | 16 | 19),                 // Visa
        5 => (51..=55).contains(&prefix(2)) && d.len() == 16, // Mastercard
        2 => (2221..=2720).contains(&prefix(4)) && d.len() == 16, // Mastercard 2-series
        3 => {
            (matches!(prefix(2), 34 | 37) && d.len() == 15)             // American Express
                || ((3528..=3589).contains(&prefix(4)) && d.len() >= 16) // JCB
                || (((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38 | 39)) && d.len() >= 14) // Diners
        }
        6 => {
            prefix(4) == 6011
                || prefix(2) == 65
                || (644..=649).contains(&prefix(3))
                || prefix(2) == 62 // UnionPay
        }
        _ => false,
    };
    issuer && luhn(&d)
}

/// IBAN length per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// An IBAN: the registered length for its country and `mod 97 == 1` over the rearranged number.
///
/// ```
/// assert!(warden_detect::pii::iban_ok("GB82 WEST 1234 5698 7654 32"));
/// assert!(!warden_detect::pii::iban_ok("GB82 WEST 1234 5698 7654 33"));
/// ```
pub fn iban_ok(candidate: &str) -> bool {
    let compact: Vec<u8> = candidate.bytes().filter(|&b| b != b' ').collect();
    let Some(country) = compact.get(..2).and_then(|c| std::str::from_utf8(c).ok()) else {
        return false;
    };
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) else {
        return false;
    };
    if compact.len() != len {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for &b in rearranged {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A US social security number under the SSA rules: area not 000, 666 or 900-999, group not
/// 00, serial not 0000, and not one of the numbers printed in advertising.
pub fn ssn_ok(candidate: &str) -> bool {
    let d = digits(candidate);
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = d[3] * 10 + d[4];
    let serial = d[5..].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    let advertised = d == [0, 7, 8, 0, 5, 1, 1, 2, 0] || d == [2, 1, 9, 0, 9, 9, 9, 9, 9];
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 && !advertised
}

/// A Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter) with the mod-23 letter.
///
/// ```
/// assert!(warden_detect::pii::spanish_id_ok("12345678Z"));
/// assert!(!warden_detect::pii::spanish_id_ok("12345678A"));
/// ```
pub fn spanish_id_ok(candidate: &str) -> bool {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let compact: Vec<u8> = candidate.bytes().filter(|&b| b != b'-').collect();
    let Some((&letter, body)) = compact.split_last() else {
        return false;
    };
    let mut n: u32 = 0;
    for (i, &b) in body.iter().enumerate() {
        let v = match (i, b) {
            (0, b'X') => 0,
            (0, b'Y') => 1,
            (0, b'Z') => 2,
            (_, b'0'..=b'9') => u32::from(b - b'0'),
            _ => return false,
        };
        n = n * 10 + v;
    }
    body.len() == 8 && LETTERS[(n % 23) as usize] == letter
}

/// A Brazilian CPF (`000.000.000-00`) with both mod-11 check digits, not one repeated digit.
///
/// ```
/// assert!(warden_detect::pii::cpf_ok("111.444.777-35"));
/// assert!(!warden_detect::pii::cpf_ok("111.444.777-36"));
/// ```
pub fn cpf_ok(candidate: &str) -> bool {
    let d = digits(candidate);
    if d.len() != 11 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let check = |n: usize| {
        let sum: u32 = d[..n]
            .iter()
            .enumerate()
            .map(|(i, &x)| u32::from(x) * (n as u32 + 1 - i as u32))
            .sum();
        let r = (sum * 10) % 11;
        if r == 10 { 0 } else { r as u8 }
    };
    check(9) == d[9] && check(10) == d[10]
}

/// A Chinese resident identity number (18 characters) with the ISO 7064 MOD 11-2 check.
///
/// ```
/// assert!(warden_detect::pii::cn_id_ok("11010519491231002X"));
/// assert!(!warden_detect::pii::cn_id_ok("110105194912310021"));
/// ```
pub fn cn_id_ok(candidate: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = candidate.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(&x, w)| u32::from(x - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize] == b[17].to_ascii_uppercase()
}

#[cfg(test)]
mod tests;
