//! `Mcp-Param-{Name}` headers of a 2026-07-28 `tools/call` (SEP-2243), checked against the
//! arguments they mirror.
//!
//! A tool may mark arguments with `x-mcp-header` in its `inputSchema`; a client then sends each
//! such argument's value as `Mcp-Param-{Name}` too, so intermediaries can route on it without
//! reading the body. The body is the source of truth: a header that is missing while the body
//! has the value, present while the body has none, not decodable, or different from the body is
//! refused (`-32020` HeaderMismatch), because something in front of the gateway may have acted
//! on the header while the gateway acts on the body.
//!
//! Rules (2026-07-28 `basic/transports/streamable-http.mdx`, "Value Encoding", "Server Behavior
//! for Custom Headers", "Server Validation"):
//! - header names are case-insensitive; optional whitespace around the value is not part of it;
//! - `=?base64?…?=` (exact, lowercase markers) carries the Base64 of the value's UTF-8; invalid
//!   Base64 (alphabet, padding) or UTF-8 is refused; any other value is literal;
//! - strings compare exactly; booleans as `true` / `false`; numbers numerically (`42.0` equals
//!   `42`): integers by exact decimal value, never through floating point;
//! - a `null` or absent argument expects no header. An argument a client cannot mirror (an
//!   object, an array, an integer outside ±(2^53−1)) expects none either, but a header sent for
//!   it must still match, so it never can for an object or array.
//!
//! Header values are never echoed: they may be secrets.

use std::borrow::Cow;

use http::HeaderMap;
use serde_json::{Number, Value};
use warden_session::ParamHeader;

use super::headers::decode_value;

/// The header-name prefix of mirrored arguments.
pub(crate) const PREFIX: &str = "Mcp-Param-";

/// Largest integer a JavaScript client represents exactly (2^53 − 1): the specification's bound
/// on mirrored integers.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Exponents beyond this are not a number the gateway compares (no mirrored value has one).
const MAX_EXPONENT: i64 = 1_000_000;

/// Why a request's `Mcp-Param-*` headers are refused. The text goes to the client: it names the
/// header, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParamError {
    /// The body has the argument; the header is absent.
    #[error("missing {header} header")]
    Missing {
        /// `Mcp-Param-{Name}`.
        header: String,
    },
    /// Repeated, not visible ASCII, or an invalid `=?base64?…?=` value.
    #[error("invalid {header} header")]
    Invalid {
        /// `Mcp-Param-{Name}`.
        header: String,
    },
    /// The decoded header differs from the argument (or the body has no such argument).
    #[error("{header} header does not match the body")]
    Mismatch {
        /// `Mcp-Param-{Name}`.
        header: String,
    },
}

/// Checks every annotated argument of one `tools/call` against its `Mcp-Param-{Name}` header;
/// `arguments` is the body's `params.arguments`. The first fault, in `params` order, is
/// returned. Headers of names not in `params` are ignored (never forwarded either).
pub(crate) fn check(
    headers: &HeaderMap,
    params: &[ParamHeader],
    arguments: Option<&Value>,
) -> Result<(), ParamError> {
    for param in params {
        check_one(headers, param, arguments)?;
    }
    Ok(())
}

fn check_one(
    headers: &HeaderMap,
    param: &ParamHeader,
    arguments: Option<&Value>,
) -> Result<(), ParamError> {
    let display = || format!("{PREFIX}{}", param.header);
    let body = value_at(arguments, &param.path);
    let header = match header_value(headers, &param.header) {
        Ok(header) => header,
        Err(()) => return Err(ParamError::Invalid { header: display() }),
    };
    let Some(raw) = header else {
        return match body {
            Some(value) if mirrorable(value) => Err(ParamError::Missing { header: display() }),
            _ => Ok(()),
        };
    };
    let Some(decoded) = decode_value(raw) else {
        return Err(ParamError::Invalid { header: display() });
    };
    if body.is_some_and(|value| matches(&decoded, value)) {
        Ok(())
    } else {
        Err(ParamError::Mismatch { header: display() })
    }
}

/// The single value of `Mcp-Param-{name}`, optional whitespace trimmed (RFC 9110 §5.5);
/// `Err` when repeated or not visible ASCII (control characters, obs-text).
fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ()> {
    let key = format!("{PREFIX}{name}").to_ascii_lowercase();
    // A name that is no valid header name (the session layer admits RFC 9110 tokens only)
    // matches nothing: the header counts as absent, which fails closed below.
    let mut values = headers.get_all(key.as_str()).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    let text = first.to_str().map_err(|_| ())?;
    Ok(Some(text.trim_matches([' ', '\t'])))
}

/// The argument at `path`; `None` when a step is missing or not an object, and for `null`.
fn value_at<'a>(arguments: Option<&'a Value>, path: &[String]) -> Option<&'a Value> {
    let mut node = arguments?;
    for key in path {
        node = node.as_object()?.get(key)?;
    }
    (!node.is_null()).then_some(node)
}

/// Whether a conforming client mirrors `value` (and so must have sent the header).
fn mirrorable(value: &Value) -> bool {
    match value {
        Value::String(_) | Value::Bool(_) => true,
        Value::Number(n) => is_safe(n),
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// False for an integral number beyond ±(2^53 − 1): JavaScript clients cannot represent it and
/// send no header for it.
fn is_safe(n: &Number) -> bool {
    if let Some(i) = n.as_i64() {
        i.unsigned_abs() <= MAX_SAFE_INTEGER
    } else if n.as_u64().is_some() {
        false
    } else {
        n.as_f64()
            .is_some_and(|f| f.fract() != 0.0 || f.abs() <= MAX_SAFE_INTEGER as f64)
    }
}

/// Whether the decoded header value stands for `body`.
fn matches(decoded: &str, body: &Value) -> bool {
    match body {
        Value::String(s) => decoded == s,
        Value::Bool(b) => decoded == if *b { "true" } else { "false" },
        Value::Number(n) => number_eq(decoded, n),
        // No header text stands for these: a header sent for one is a mismatch.
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// Whether the decimal text `decoded` is the number `body`. Integers compare exactly; a
/// non-integer body is already an `f64` (its source text is gone), so the header is read as the
/// nearest `f64` and compared with it: shortest-text algorithms disagree on last digits.
fn number_eq(decoded: &str, body: &Number) -> bool {
    if body.is_f64() {
        Decimal::parse(decoded).is_some() && decoded.parse::<f64>().ok() == body.as_f64()
    } else {
        decimal_eq(decoded, &body.to_string())
    }
}

/// Exact numeric equality of two decimal texts (`-?digits[.digits][e[+-]digits]`): `42`,
/// `42.0` and `4.2e1` are equal; anything else (`+1`, `0x2A`, ` 42`, `NaN`) equals nothing.
pub(crate) fn decimal_eq(a: &str, b: &str) -> bool {
    match (Decimal::parse(a), Decimal::parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A decimal number in canonical form: `±0.digits × 10^exponent` with no leading or trailing
/// zero digit; zero is `(false, "", 0)`.
#[derive(Debug, PartialEq, Eq)]
struct Decimal<'a> {
    negative: bool,
    digits: Cow<'a, str>,
    exponent: i64,
}

impl<'a> Decimal<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (mantissa, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return None;
        }
        let frac = frac.unwrap_or("");
        let exponent = match exponent {
            None => 0,
            Some(e) => {
                let unsigned = e.strip_prefix(['+', '-']).unwrap_or(e);
                if !all_digits(unsigned) || unsigned.len() > 7 {
                    return None;
                }
                let magnitude: i64 = unsigned.parse().ok()?;
                if magnitude > MAX_EXPONENT {
                    return None;
                }
                if e.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        // value = int.frac × 10^exponent = 0.(int frac) × 10^(exponent + len(int)).
        let int_trimmed = int.trim_start_matches('0');
        let (digits, shift): (Cow<'a, str>, i64) = if int_trimmed.is_empty() {
            // 0.frac: leading zeros of the fraction move the point.
            let significant = frac.trim_start_matches('0');
            let zeros = (frac.len() - significant.len()) as i64;
            (Cow::Borrowed(significant), -zeros)
        } else {
            (
                Cow::Owned(format!("{int_trimmed}{frac}")),
                int_trimmed.len() as i64,
            )
        };
        let digits = match digits {
            Cow::Borrowed(d) => Cow::Borrowed(d.trim_end_matches('0')),
            Cow::Owned(d) => Cow::Owned(d.trim_end_matches('0').to_owned()),
        };
        if digits.is_empty() {
            return Some(Self {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        Some(Self {
            negative,
            digits,
            exponent: exponent + shift,
        })
    }
}

#[cfg(test)]
mod tests;
