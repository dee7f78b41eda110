//! On-disk format of the [`crate::FileStore`] log.
//!
//! ```text
//! file    = header record*
//! header  = "WDSTORE1" file_id:u64
//! record  = 0xA5 len:u32 payload_crc:u32 header_crc:u32 payload[len]
//! payload = 1 ns key expires_at:u64 value     ; put (expires_at 0: never)
//!         | 2 ns key                          ; delete
//!         | 3 ns key expires_at:u64           ; set expiry
//! ns      = len:u8 utf8[len]      key = len:u16 utf8[len]      value = len:u32 bytes[len]
//! ```
//!
//! Integers are little-endian. Both checksums are CRC-32 seeded with the file id, so a record
//! only validates in the file it was written to (not, say, in stale blocks of an older log).
//! `header_crc` covers the 9 bytes before it, so scanning for the next valid record is cheap:
//! most offsets fail on the marker byte or this short checksum before any payload is hashed.

use bytes::Bytes;

use crate::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Identifies the file and its format version.
const MAGIC: &[u8; 8] = b"WDSTORE1";

/// Length of the file header.
pub(crate) const HEADER_LEN: usize = 16;

/// First byte of every record.
const MARKER: u8 = 0xA5;

/// Length of a record's framing before its payload.
const RECORD_HEADER_LEN: usize = 13;

/// Largest payload a valid record can have: the largest op is a put of a maximal key and value.
const MAX_PAYLOAD_LEN: usize = 1 + 1 + 255 + 2 + MAX_KEY_BYTES + 8 + 4 + MAX_VALUE_BYTES;

/// Largest record; any torn final write is shorter than this.
pub(crate) const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN + MAX_PAYLOAD_LEN;

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_EXPIRE: u8 = 3;

/// One logged change to one key. (No `Debug`: it holds values.)
pub(crate) enum Op {
    Put {
        namespace: String,
        key: String,
        value: Bytes,
        /// Unix milliseconds; `None` never expires.
        expires_at: Option<u64>,
    },
    Delete {
        namespace: String,
        key: String,
    },
    Expire {
        namespace: String,
        key: String,
        expires_at: u64,
    },
}

/// Why the bytes at an offset are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// Truncated, or framing/checksum mismatch: what a torn write looks like.
    Invalid,
    /// Checksums match but the payload does not decode: never produced by a torn write.
    Malformed,
}

/// Writes a file header.
pub(crate) fn encode_header(file_id: u64) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&file_id.to_le_bytes());
    header
}

/// Reads a file header, returning the file id.
pub(crate) fn decode_header(data: &[u8]) -> Option<u64> {
    let header = data.get(..HEADER_LEN)?;
    if &header[..8] != MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(header[8..].try_into().ok()?))
}

fn crc(file_id: u64, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&file_id.to_le_bytes());
    hasher.update(bytes);
    hasher.finalize()
}

/// Bytes [`encode_put`] appends for a put with names and value of these lengths.
pub(crate) fn put_record_len(namespace_len: usize, key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_LEN + 1 + 1 + namespace_len + 2 + key_len + 8 + 4 + value_len
}

/// Appends `op` as one record to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, file_id: u64, op: &Op) {
    match op {
        Op::Put {
            namespace,
            key,
            value,
            expires_at,
        } => encode_put(out, file_id, namespace, key, value, *expires_at),
        Op::Delete { namespace, key } => {
            encode(out, file_id, KIND_DELETE, namespace, key, |_| {});
        }
        Op::Expire {
            namespace,
            key,
            expires_at,
        } => encode(out, file_id, KIND_EXPIRE, namespace, key, |payload| {
            payload.extend_from_slice(&expires_at.to_le_bytes());
        }),
    }
}

/// Appends a put record to `out` without building an [`Op`] (compaction writes every entry).
pub(crate) fn encode_put(
    out: &mut Vec<u8>,
    file_id: u64,
    namespace: &str,
    key: &str,
    value: &[u8],
    expires_at: Option<u64>,
) {
    encode(out, file_id, KIND_PUT, namespace, key, |payload| {
        payload.extend_from_slice(&expires_at.unwrap_or(0).to_le_bytes());
        payload.extend_from_slice(&len_u32(value.len()).to_le_bytes());
        payload.extend_from_slice(value);
    });
}

/// Frames one record.
///
/// Names and values are bounded by [`crate::Namespace`] and [`crate::Limits`], so the length
/// prefixes cannot overflow; they saturate rather than wrap just in case, which makes such a record
/// fail to decode instead of decoding as something else.
fn encode(
    out: &mut Vec<u8>,
    file_id: u64,
    kind: u8,
    namespace: &str,
    key: &str,
    rest: impl FnOnce(&mut Vec<u8>),
) {
    let mut payload = Vec::with_capacity(1 + 1 + namespace.len() + 2 + key.len() + 16);
    payload.push(kind);
    payload.push(u8::try_from(namespace.len()).unwrap_or(u8::MAX));
    payload.extend_from_slice(namespace.as_bytes());
    payload.extend_from_slice(&u16::try_from(key.len()).unwrap_or(u16::MAX).to_le_bytes());
    payload.extend_from_slice(key.as_bytes());
    rest(&mut payload);
    let mut header = [0; RECORD_HEADER_LEN];
    header[0] = MARKER;
    header[1..5].copy_from_slice(&len_u32(payload.len()).to_le_bytes());
    header[5..9].copy_from_slice(&crc(file_id, &payload).to_le_bytes());
    let header_crc = crc(file_id, &header[..9]);
    header[9..].copy_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&payload);
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Reads the record at `pos`, returning it and the offset just past it.
pub(crate) fn decode_record(
    data: &[u8],
    pos: usize,
    file_id: u64,
) -> Result<(Op, usize), RecordError> {
    let payload = framed_payload(data, pos, file_id).ok_or(RecordError::Invalid)?;
    let op = decode_payload(payload).ok_or(RecordError::Malformed)?;
    Ok((op, pos + RECORD_HEADER_LEN + payload.len()))
}

/// Returns the payload at `pos` if its framing and checksums are valid.
fn framed_payload(data: &[u8], pos: usize, file_id: u64) -> Option<&[u8]> {
    let header = data.get(pos..pos.checked_add(RECORD_HEADER_LEN)?)?;
    if header[0] != MARKER || read_u32(&header[9..]) != crc(file_id, &header[..9]) {
        return None;
    }
    let len = usize::try_from(read_u32(&header[1..])).ok()?;
    if len > MAX_PAYLOAD_LEN {
        return None;
    }
    let start = pos + RECORD_HEADER_LEN;
    let payload = data.get(start..start.checked_add(len)?)?;
    (read_u32(&header[5..]) == crc(file_id, payload)).then_some(payload)
}

/// Finds the first offset after `pos` where a checksum-valid record starts.
pub(crate) fn next_valid_record(data: &[u8], pos: usize, file_id: u64) -> Option<usize> {
    (pos + 1..data.len()).find(|&candidate| framed_payload(data, candidate, file_id).is_some())
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut buf = [0; 4];
    buf.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(buf)
}

/// A cursor over a payload; every read fails on truncation.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self, len: usize) -> Option<String> {
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn decode_payload(payload: &[u8]) -> Option<Op> {
    let mut reader = Reader(payload);
    let kind = reader.u8()?;
    let namespace_len = usize::from(reader.u8()?);
    let namespace = reader.string(namespace_len)?;
    let key_len = usize::from(reader.u16()?);
    let key = reader.string(key_len)?;
    let op = match kind {
        KIND_PUT => {
            let expires_at = reader.u64()?;
            let value_len = usize::try_from(reader.u32()?).ok()?;
            let value = Bytes::copy_from_slice(reader.take(value_len)?);
            Op::Put {
                namespace,
                key,
                value,
                expires_at: (expires_at != 0).then_some(expires_at),
            }
        }
        KIND_DELETE => Op::Delete { namespace, key },
        KIND_EXPIRE => Op::Expire {
            namespace,
            key,
            expires_at: reader.u64()?,
        },
        _ => return None,
    };
    // Trailing bytes mean a writer this code does not understand.
    reader.0.is_empty().then_some(op)
}
