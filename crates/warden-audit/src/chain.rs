//! The line format and the hash chain.
//!
//! One audit line is, byte for byte (compact JSON, fixed key order, lowercase hex):
//!
//! ```text
//! {"seq":<n>,"rec":<record object>,"prev":"<64 hex>","hash":"<64 hex>","mac":"<64 hex>"}\n
//! ```
//!
//! - `hash = SHA-256("mcp-warden-audit-v1\0" || seq as u64 big-endian || prev || rec bytes)`,
//!   where `prev` is the previous record's `hash` (32 zero bytes for the first record ever) and
//!   `rec bytes` are the exact bytes of the record object as written;
//! - `mac = HMAC-SHA-256(chain key, hash)`. Since `hash` commits to every earlier record through
//!   `prev`, the MAC is a keyed hash chained over the whole log: nobody without the key can edit,
//!   insert, delete or reorder a record and produce MACs that verify.
//!
//! The parser accepts only this canonical form (any other spelling of the same JSON is refused),
//! so every byte of a line is either hashed or checked for its one valid value.

use ring::{digest, hmac};

/// Length of a hash, a MAC and a chain link.
pub const HASH_LEN: usize = 32;
/// A SHA-256 hash or an HMAC-SHA-256 tag.
pub type Hash = [u8; HASH_LEN];
/// The `prev` of the first record ever written.
pub const GENESIS: Hash = [0; HASH_LEN];

const DOMAIN: &[u8] = b"mcp-warden-audit-v1\0";
const PREFIX: &[u8] = b"{\"seq\":";
const REC: &[u8] = b",\"rec\":";
const PREV: &[u8] = b",\"prev\":\"";
const HASH: &[u8] = b"\",\"hash\":\"";
const MAC: &[u8] = b"\",\"mac\":\"";
const END: &[u8] = b"\"}";
/// Bytes after the record object: three hex fields and the closing brace.
const SUFFIX_LEN: usize = PREV.len() + 64 + HASH.len() + 64 + MAC.len() + 64 + END.len();

/// The chain hash of one record.
pub fn record_hash(seq: u64, prev: &Hash, rec: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(DOMAIN);
    ctx.update(&seq.to_be_bytes());
    ctx.update(prev);
    ctx.update(rec);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The keyed tag of one record's hash.
pub fn record_mac(key: &hmac::Key, hash: &Hash) -> Hash {
    let tag = hmac::sign(key, hash);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Checks a record's tag in constant time.
pub fn mac_matches(key: &hmac::Key, hash: &Hash, mac: &Hash) -> bool {
    hmac::verify(key, hash, mac).is_ok()
}

/// Appends one canonical line (with its trailing newline) to `out`.
pub fn encode_line(seq: u64, rec: &[u8], prev: &Hash, hash: &Hash, mac: &Hash, out: &mut Vec<u8>) {
    out.reserve(PREFIX.len() + 20 + REC.len() + rec.len() + SUFFIX_LEN + 1);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(REC);
    out.extend_from_slice(rec);
    out.extend_from_slice(PREV);
    push_hex(prev, out);
    out.extend_from_slice(HASH);
    push_hex(hash, out);
    out.extend_from_slice(MAC);
    push_hex(mac, out);
    out.extend_from_slice(END);
    out.push(b'\n');
}

/// One line, split into its parts. Nothing is verified but the syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// Position in the whole chain (across rotated files), from 0.
    pub seq: u64,
    /// The record object, exactly as written (these bytes are hashed).
    pub rec: &'a str,
    /// The previous record's hash.
    pub prev: Hash,
    /// This record's hash, as written.
    pub hash: Hash,
    /// This record's tag, as written.
    pub mac: Hash,
}

/// Why a line is not a canonical audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not UTF-8.
    #[error("not valid UTF-8")]
    Utf8,
    /// Not the canonical framing (`{"seq":..,"rec":..,"prev":..,"hash":..,"mac":..}`).
    #[error("not a canonical audit line")]
    Framing,
    /// `seq` is not a canonical decimal `u64`.
    #[error("bad sequence number")]
    Seq,
    /// A hex field is not 64 lowercase hex digits.
    #[error("bad hex field")]
    Hex,
    /// `rec` is not one JSON object.
    #[error("record is not a JSON object")]
    Record,
}

/// Parses one line (without its newline). Accepts only the canonical form [`encode_line`]
/// writes.
pub fn parse_line(line: &[u8]) -> Result<Line<'_>, LineError> {
    let text = std::str::from_utf8(line).map_err(|_| LineError::Utf8)?;
    let rest = text
        .as_bytes()
        .strip_prefix(PREFIX)
        .ok_or(LineError::Framing)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || (digits > 1 && rest[0] == b'0') {
        return Err(LineError::Seq);
    }
    // ASCII digits: the slice is valid UTF-8.
    let seq: u64 = std::str::from_utf8(&rest[..digits])
        .map_err(|_| LineError::Seq)?
        .parse()
        .map_err(|_| LineError::Seq)?;
    let rest = rest[digits..].strip_prefix(REC).ok_or(LineError::Framing)?;
    if rest.len() < SUFFIX_LEN + 2 {
        return Err(LineError::Framing);
    }
    let (rec, suffix) = rest.split_at(rest.len() - SUFFIX_LEN);
    let suffix = suffix.strip_prefix(PREV).ok_or(LineError::Framing)?;
    let (prev, suffix) = suffix.split_at(64);
    let suffix = suffix.strip_prefix(HASH).ok_or(LineError::Framing)?;
    let (hash, suffix) = suffix.split_at(64);
    let suffix = suffix.strip_prefix(MAC).ok_or(LineError::Framing)?;
    let (mac, suffix) = suffix.split_at(64);
    if suffix != END {
        return Err(LineError::Framing);
    }
    // The record: one JSON object and nothing around it (whitespace would be unhashed slack
    // that a canonical writer never produces).
    if rec.first() != Some(&b'{') || rec.last() != Some(&b'}') {
        return Err(LineError::Record);
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(rec).map_err(|_| LineError::Record)?;
    let rec = std::str::from_utf8(rec).map_err(|_| LineError::Utf8)?;
    Ok(Line {
        seq,
        rec,
        prev: parse_hex(prev)?,
        hash: parse_hex(hash)?,
        mac: parse_hex(mac)?,
    })
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(bytes, &mut out);
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

fn push_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
}

/// Parses exactly 64 lowercase hex digits.
pub fn parse_hex(text: &[u8]) -> Result<Hash, LineError> {
    if text.len() != 64 {
        return Err(LineError::Hex);
    }
    let mut out = [0u8; HASH_LEN];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

/// Parses lowercase hex of any even length.
pub fn parse_hex_vec(text: &str) -> Result<Vec<u8>, LineError> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return Err(LineError::Hex);
    }
    text.chunks_exact(2)
        .map(|p| Ok((nibble(p[0])? << 4) | nibble(p[1])?))
        .collect()
}

fn nibble(c: u8) -> Result<u8, LineError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(LineError::Hex),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32])
    }

    #[test]
    fn encoded_line_parses_back_to_its_parts() {
        let rec = br#"{"ts":"2026-01-01T00:00:00Z","event":"gateway_start"}"#;
        let hash = record_hash(5, &GENESIS, rec);
        let mac = record_mac(&key(), &hash);
        let mut out = vec![];
        encode_line(5, rec, &GENESIS, &hash, &mac, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let line = parse_line(&out[..out.len() - 1]).unwrap();
        assert_eq!(line.seq, 5);
        assert_eq!(line.rec.as_bytes(), rec);
        assert_eq!(line.hash, hash);
        assert_eq!(line.mac, mac);
        assert!(mac_matches(&key(), &hash, &mac));
    }

    #[test]
    fn refuses_non_canonical_spellings() {
        let rec = br#"{"a":1}"#;
        let hash = record_hash(0, &GENESIS, rec);
        let mac = record_mac(&key(), &hash);
        let mut out = vec![];
        encode_line(0, rec, &GENESIS, &hash, &mac, &mut out);
        let good = String::from_utf8(out[..out.len() - 1].to_vec()).unwrap();
        assert!(parse_line(good.as_bytes()).is_ok());
        for bad in [
            good.replacen("\"seq\":0", "\"seq\":00", 1),
            good.replacen("\"seq\":0", "\"seq\": 0", 1),
            good.replacen("{\"a\":1}", " {\"a\":1}", 1),
            good.replacen("{\"a\":1}", "[1]", 1),
            good.replacen("{\"a\":1}", "{\"a\":1", 1),
            good.replacen(&hex(&hash), &hex(&hash).to_uppercase(), 1),
            format!("{good} "),
        ] {
            assert!(parse_line(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_depends_on_seq_prev_and_bytes() {
        let a = record_hash(1, &GENESIS, b"{}");
        assert_ne!(a, record_hash(2, &GENESIS, b"{}"));
        assert_ne!(a, record_hash(1, &[1; 32], b"{}"));
        assert_ne!(a, record_hash(1, &GENESIS, b"{ }"));
    }
}
