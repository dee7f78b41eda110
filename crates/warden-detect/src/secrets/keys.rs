//! Key material whose format can be verified: PEM private keys, JWTs (decoded header), wallet
//! private keys (hex with context, WIF and BIP-32 `xprv` with base58check) and BIP-39 seed
//! phrases (English word list, checksum verified).

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use base64::Engine as _;
use regex_automata::Input;
use regex_automata::meta::Regex;
use sha2::{Digest, Sha256};

use super::gitleaks::{ceil_boundary, floor_boundary};
use super::{DataClass, Detection, VERIFIED};
use crate::finding::Severity;

/// Longest PEM body searched for its `-----END` line. Real keys are under 8 KiB (RSA 4096 is
/// about 3.3 KiB); the bound keeps the work per `-----BEGIN` constant.
const MAX_PEM_BODY: usize = 64 * 1024;

/// How far before a 64-hex value a wallet keyword may be (same line).
const WALLET_CONTEXT: usize = 48;

struct Patterns {
    pem_begin: Regex,
    jwt: Regex,
    wallet_context: Regex,
    /// `-----BEGIN `, searched with a vectorised substring search.
    pem_marker: AhoCorasick,
    /// `eyJ`, the start of every JWT, likewise.
    jwt_marker: AhoCorasick,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let build = |p: &str| Regex::new(p).expect("a fixed, tested pattern compiles");
    Patterns {
        pem_begin: build(r"-----BEGIN ([A-Z0-9]+ ){0,3}PRIVATE KEY( BLOCK)?-----"),
        jwt: build(r"(?-u:\b)eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        wallet_context: build(
            r"(?i)(?:priv(?:ate)?[ _.-]?key|privkey|secret[ _.-]?key|wallet|signing[ _.-]?key|(?:eth|evm|sol|btc)[ _.-]?key|seed)",
        ),
        pem_marker: AhoCorasick::new(["-----BEGIN "]).expect("one short literal"),
        jwt_marker: AhoCorasick::new(["eyJ"]).expect("one short literal"),
    }
});

/// The first occurrence of `marker` in `text` at or after `from`.
fn next_marker(marker: &AhoCorasick, text: &str, from: usize) -> Option<usize> {
    let rest = text.as_bytes().get(from..)?;
    marker.find(rest).map(|m| from + m.start())
}

/// Compiles the patterns now.
pub(crate) fn warm_up() {
    LazyLock::force(&PATTERNS);
    LazyLock::force(&WORDS);
}

fn detection(
    kind: &'static str,
    rule: &'static str,
    severity: Severity,
    span: std::ops::Range<usize>,
) -> Detection {
    Detection {
        kind,
        rule,
        class: DataClass::Secret,
        severity,
        span,
        specificity: VERIFIED,
    }
}

/// Appends every verified key in `text` to `out`.
pub(crate) fn scan(text: &str, out: &mut Vec<Detection>) {
    pem(text, out);
    jwt(text, out);
    words(text, out);
}

/// Characters a PEM body may contain: base64, line breaks (also as JSON-escaped `\n`),
/// RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`).
fn pem_body_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'+' | b'/' | b'=' | b'\r' | b'\n' | b' ' | b'\t' | b'\\' | b':' | b',' | b'-'
        )
}

fn pem(text: &str, out: &mut Vec<Detection>) {
    let p = &PATTERNS;
    let mut from = 0;
    while let Some(pos) = next_marker(&p.pem_marker, text, from) {
        from = pos + 1;
        let header_end = ceil_boundary(text, pos + 80);
        let Some(begin) = p.pem_begin.find(
            Input::new(text)
                .range(pos..header_end)
                .anchored(regex_automata::Anchored::Yes),
        ) else {
            continue;
        };
        let body_start = begin.end();
        let limit = ceil_boundary(text, body_start.saturating_add(MAX_PEM_BODY));
        // The body runs until the first byte a PEM body cannot contain or `-----END`.
        let bytes = text.as_bytes();
        let mut i = body_start;
        let mut end = None;
        while i < limit {
            if bytes[i] == b'-' && text[i..].starts_with("-----BEGIN ") {
                break;
            }
            if bytes[i] == b'-' && text[i..].starts_with("-----END ") {
                let close = text[i + 9..limit].find("-----").map(|j| i + 9 + j + 5);
                end = Some(close.unwrap_or(i));
                break;
            }
            if !pem_body_byte(bytes[i]) {
                break;
            }
            i += 1;
        }
        let end = end.unwrap_or(i);
        let body = &text[body_start..end];
        // Base64 in runs of at least 16 characters: key material, not a few stray words.
        let base64_len: usize = body
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
            .filter(|run| run.len() >= 16)
            .map(str::len)
            .sum();
        // A truncated key still leaks: redact it when it has a real body.
        if base64_len >= 32 {
            out.push(detection(
                "private-key",
                "secret.private-key",
                Severity::Critical,
                pos..end,
            ));
            from = end.max(from);
        }
    }
}

/// Decodes one base64url JWT segment into a JSON object.
fn jwt_segment(segment: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&raw).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

fn jwt(text: &str, out: &mut Vec<Detection>) {
    let p = &PATTERNS;
    let mut from = 0;
    while let Some(pos) = next_marker(&p.jwt_marker, text, from) {
        from = pos + 3;
        // A JWT is at most a few KiB; 16 KiB bounds the work per candidate.
        let limit = ceil_boundary(text, pos + 16 * 1024);
        let Some(m) = p.jwt.find(
            Input::new(text)
                .range(pos..limit)
                .anchored(regex_automata::Anchored::Yes),
        ) else {
            continue;
        };
        let token = &text[m.range()];
        let mut parts = token.split('.');
        let header = parts.next().and_then(jwt_segment);
        let verified = header.is_some_and(|h| {
            h.contains_key("alg") || h.contains_key("typ") || h.contains_key("enc")
        });
        if verified {
            out.push(detection("jwt", "secret.jwt", Severity::High, m.range()));
            from = m.end();
        }
    }
}

fn is_base58(b: u8) -> bool {
    b.is_ascii_alphanumeric() && !matches!(b, b'0' | b'O' | b'I' | b'l')
}

/// Checks one standalone run of letters and digits for a wallet key: 64 hex digits (optionally
/// `0x`) after a wallet keyword, a WIF or a BIP-32 `xprv`.
fn wallet_candidate(text: &str, run: std::ops::Range<usize>, out: &mut Vec<Detection>) {
    let p = &PATTERNS;
    let word = &text.as_bytes()[run.clone()];
    let hex = match word.len() {
        64 => Some(word),
        66 if word.starts_with(b"0x") => Some(&word[2..]),
        _ => None,
    };
    if hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
        let line_start = text[..run.start].rfind('\n').map_or(0, |i| i + 1);
        let ctx_start =
            floor_boundary(text, run.start.saturating_sub(WALLET_CONTEXT)).max(line_start);
        if p.wallet_context
            .is_match(Input::new(text).range(ctx_start..run.start))
        {
            out.push(detection(
                "wallet-private-key",
                "secret.wallet-private-key",
                Severity::Critical,
                run,
            ));
        }
        return;
    }
    let wif = matches!(word.len(), 51 | 52) && matches!(word[0], b'5' | b'K' | b'L' | b'c' | b'9');
    let xprv =
        matches!(word.len(), 111 | 112) && (word.starts_with(b"xprv") || word.starts_with(b"tprv"));
    if !(wif || xprv) || !word.iter().all(|&b| is_base58(b)) {
        return;
    }
    let Ok(raw) = bs58::decode(word).into_vec() else {
        return;
    };
    let valid = if wif {
        // Version byte 0x80 (main net) or 0xef (test net); 32-byte key, optional 0x01 flag.
        matches!(raw.first(), Some(0x80 | 0xef))
            && (raw.len() == 37 || (raw.len() == 38 && raw[33] == 0x01))
    } else {
        // BIP-32 serialization: 78 bytes + 4 checksum; private keys carry a 0x00 key prefix.
        raw.len() == 82 && raw[45] == 0
    };
    if valid && double_sha256_ok(&raw) {
        out.push(detection(
            "wallet-private-key",
            "secret.wallet-private-key",
            Severity::Critical,
            run,
        ));
    }
}

fn double_sha256_ok(raw: &[u8]) -> bool {
    if raw.len() < 5 {
        return false;
    }
    let (payload, check) = raw.split_at(raw.len() - 4);
    let digest = Sha256::digest(Sha256::digest(payload));
    digest[..4] == *check
}

/// Whether `words` (English word-list indices) form a valid BIP-39 mnemonic: 12 to 24 words in
/// steps of 3, whose last bits are the SHA-256 checksum of the entropy.
pub fn bip39_checksum_ok(words: &[u16]) -> bool {
    let n = words.len();
    if !(12..=24).contains(&n) || !n.is_multiple_of(3) {
        return false;
    }
    let total_bits = n * 11;
    let checksum_bits = total_bits / 33;
    let entropy_bytes = (total_bits - checksum_bits) / 8;
    let mut bits = [0u8; 33];
    for (i, &w) in words.iter().enumerate() {
        for b in 0..11 {
            if w & (1 << (10 - b)) != 0 {
                let bit = i * 11 + b;
                bits[bit / 8] |= 0x80 >> (bit % 8);
            }
        }
    }
    let digest = Sha256::digest(&bits[..entropy_bytes]);
    let expected = digest[0] >> (8 - checksum_bits);
    let got = bits[entropy_bytes] >> (8 - checksum_bits);
    expected == got
}

/// The English word list packed big-endian into `u64`s (every word has 3 to 8 letters, and
/// big-endian packing keeps the list's alphabetical order, so positions are word indices), with
/// the range of words for each two-letter prefix: a lookup is one table read and a short scan,
/// without allocation.
struct WordList {
    packed: Vec<u64>,
    by_prefix: Vec<(u16, u16)>,
}

static WORDS: LazyLock<WordList> = LazyLock::new(|| {
    let packed: Vec<u64> = bip39::Language::English
        .word_list()
        .iter()
        .filter_map(|w| pack(w.as_bytes()))
        .collect();
    let mut by_prefix = vec![(0u16, 0u16); 26 * 26];
    for (i, w) in bip39::Language::English.word_list().iter().enumerate() {
        let b = w.as_bytes();
        let slot = usize::from(b[0] - b'a') * 26 + usize::from(b[1] - b'a');
        let i = u16::try_from(i).expect("2048 words");
        if by_prefix[slot].1 == 0 {
            by_prefix[slot] = (i, i + 1);
        } else {
            by_prefix[slot].1 = i + 1;
        }
    }
    WordList { packed, by_prefix }
});

fn pack(word: &[u8]) -> Option<u64> {
    if word.len() < 3 || word.len() > 8 {
        return None;
    }
    let mut buf = [0u8; 8];
    for (slot, b) in buf.iter_mut().zip(word) {
        *slot = b.to_ascii_lowercase();
    }
    Some(u64::from_be_bytes(buf))
}

/// Index of `word` (ASCII letters, any case) in the English BIP-39 list.
fn bip39_index(word: &[u8]) -> Option<u16> {
    let key = pack(word)?;
    let (a, b) = (word[0].to_ascii_lowercase(), word[1].to_ascii_lowercase());
    if !a.is_ascii_lowercase() || !b.is_ascii_lowercase() {
        return None;
    }
    let (lo, hi) = WORDS.by_prefix[usize::from(a - b'a') * 26 + usize::from(b - b'a')];
    let range = usize::from(lo)..usize::from(hi);
    WORDS.packed[range.clone()]
        .iter()
        .position(|&w| w == key)
        .and_then(|p| u16::try_from(range.start + p).ok())
}

/// Index of `word` (any ASCII case) in the English BIP-39 list.
pub fn bip39_index_of(word: &str) -> Option<u16> {
    bip39_index(word.as_bytes())
}

/// Reports the mnemonics in a run of consecutive word-list words (index, start, end), longest
/// valid length first at each position.
fn flush_mnemonics(run: &mut Vec<(u16, usize, usize)>, out: &mut Vec<Detection>) {
    let mut k = 0;
    while run.len() >= 12 && k + 12 <= run.len() {
        let found = [24usize, 21, 18, 15, 12].into_iter().find(|&n| {
            k + n <= run.len() && {
                let mut idx = [0u16; 24];
                for (slot, w) in idx.iter_mut().zip(&run[k..k + n]) {
                    *slot = w.0;
                }
                bip39_checksum_ok(&idx[..n])
            }
        });
        match found {
            Some(n) => {
                out.push(detection(
                    "bip39-mnemonic",
                    "secret.bip39-mnemonic",
                    Severity::Critical,
                    run[k].1..run[k + n - 1].2,
                ));
                k += n;
            }
            None => k += 1,
        }
    }
    run.clear();
}

/// [`BYTE_CLASS`] bit: an ASCII letter or digit.
const ALNUM: u8 = 1;
/// [`BYTE_CLASS`] bit: whitespace or a comma, which may separate the words of a mnemonic.
const GAP: u8 = 2;

/// The class of every byte, for the word pass (one table read per byte).
static BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = ALNUM;
        } else if c.is_ascii_whitespace() || c == b',' {
            t[b] = GAP;
        }
        b += 1;
    }
    t
};

/// One pass over the runs of ASCII letters and digits: wallet key candidates, and runs of
/// BIP-39 words separated only by whitespace, commas or list numbers (`1. abandon 2) ability`).
///
/// Words are looked up in the word list only inside a streak of at least 12 words that could be
/// on it (3 to 8 letters, nothing else between them): most text has no such streak, and a
/// mnemonic is at least 12 words.
fn words(text: &str, out: &mut Vec<Detection>) {
    let bytes = text.as_bytes();
    let mut streak: Vec<(usize, usize)> = Vec::new();
    let mut run: Vec<(u16, usize, usize)> = Vec::new();
    let mut i = 0;
    // Whether the bytes since the last word keep a mnemonic going.
    let mut gap_ok = true;
    while i < bytes.len() {
        let class = BYTE_CLASS[usize::from(bytes[i])];
        if class & ALNUM == 0 {
            gap_ok &= class & GAP != 0;
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = false;
        while i < bytes.len() && BYTE_CLASS[usize::from(bytes[i])] & ALNUM != 0 {
            digits |= bytes[i].is_ascii_digit();
            i += 1;
        }
        let letters = !digits || bytes[start..i].iter().any(u8::is_ascii_alphabetic);
        let glued = (start > 0 && bytes[start - 1] == b'_') || bytes.get(i) == Some(&b'_');
        if digits && !letters && !glued && matches!(bytes.get(i), Some(b'.' | b')' | b':')) {
            // A list number: part of the gap.
            i += 1;
            continue;
        }
        if !gap_ok {
            flush_streak(bytes, &mut streak, &mut run, out);
        }
        gap_ok = true;
        if glued {
            flush_streak(bytes, &mut streak, &mut run, out);
            gap_ok = false;
            continue;
        }
        if !digits && (3..=8).contains(&(i - start)) {
            streak.push((start, i));
        } else {
            flush_streak(bytes, &mut streak, &mut run, out);
            if i - start >= 51 {
                wallet_candidate(text, start..i, out);
            }
        }
    }
    flush_streak(bytes, &mut streak, &mut run, out);
}

/// Ends a streak of possible word-list words: when it is long enough for a mnemonic, splits it
/// at the words that are not on the list and checks each run of list words.
fn flush_streak(
    bytes: &[u8],
    streak: &mut Vec<(usize, usize)>,
    run: &mut Vec<(u16, usize, usize)>,
    out: &mut Vec<Detection>,
) {
    if streak.len() >= 12 {
        for &(start, end) in streak.iter() {
            match bip39_index(&bytes[start..end]) {
                Some(index) => run.push((index, start, end)),
                None => flush_mnemonics(run, out),
            }
        }
        flush_mnemonics(run, out);
    }
    streak.clear();
}
