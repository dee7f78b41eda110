//! Audit records of authentication attempts on the HTTP face.

use std::net::SocketAddr;

use warden_audit::{AuditLog, AuthOutcome, Event};
use warden_auth::{Failure, FailureKind};
use warden_guard::{AuthMethod, Principal};

/// The TCP peer of a request (set as a request extension where the connection is accepted).
/// Forwarding headers are not trusted for it: behind a proxy it is the proxy's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Remote(pub(crate) SocketAddr);

fn method_name(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Bearer => "bearer",
        AuthMethod::ApiKey => "api_key",
        AuthMethod::Anonymous => "anonymous",
        AuthMethod::LocalProcess => "local_process",
    }
}

/// What a refused request presented, as far as the audit may say: the kind of credential
/// and, for an API key, its public key id. Nothing of a refused credential is trusted as an
/// identity, so a refusal never names a principal: a bearer token's claims are not even read
/// (its `sub` is whatever the sender wrote), and a key id is recorded as the key presented, not
/// as who presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presented {
    /// `bearer`, `api_key`, or `none` (no credential, or a scheme other than Bearer).
    pub(crate) method: &'static str,
    /// The public id of a well-formed API key (`mwk_<id>_…`, checksum valid).
    pub(crate) key_id: Option<String>,
}

impl Presented {
    /// Classifies the `Authorization` header values of a request. Only a single
    /// `Bearer <token>` value names a credential; the token itself is never kept.
    pub(crate) fn of(values: &[&[u8]]) -> Self {
        let none = Self {
            method: "none",
            key_id: None,
        };
        let [value] = values else { return none };
        let Some(token) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim_matches(' '))
        else {
            return none;
        };
        if token.starts_with(warden_auth::api_key::KEY_PREFIX) {
            Self {
                method: "api_key",
                key_id: warden_auth::api_key::parse_key(token).map(str::to_owned),
            }
        } else {
            Self {
                method: "bearer",
                key_id: None,
            }
        }
    }
}

/// Records an accepted credential (queued; nothing waits).
pub(crate) fn auth_success(
    audit: Option<&AuditLog>,
    principal: &Principal,
    remote: Option<SocketAddr>,
) {
    let Some(log) = audit else { return };
    let event = Event::Auth {
        principal: Some(principal.subject.to_string()),
        method: method_name(principal.method).to_owned(),
        outcome: AuthOutcome::Success,
        reason: None,
        remote: remote.map(|r| r.to_string()),
    };
    if let Err(e) = log.record(event) {
        tracing::error!(error = %e, "authentication could not be audited");
    }
}

/// The audit reason of a refusal: the failure kind, the auth layer's detail (it names the
/// check, never the credential) and, for an API key, the public id of the key presented.
pub(crate) fn failure_reason(failure: &Failure, presented: &Presented) -> String {
    let kind = match failure.kind {
        FailureKind::Missing => "missing",
        FailureKind::Malformed => "malformed",
        FailureKind::Invalid => "invalid",
        FailureKind::InsufficientScope => "insufficient_scope",
        FailureKind::Unavailable => "unavailable",
    };
    match &presented.key_id {
        Some(id) => format!("{kind}: {} (key id {id})", failure.detail),
        None => format!("{kind}: {}", failure.detail),
    }
}

/// Records a refused credential and waits until it is on disk (the flush policy's
/// default for failures), so a burst of failures is on record before the client sees one.
/// The record names no principal (see [`Presented`]) and carries the peer's address.
pub(crate) async fn auth_failure(
    audit: Option<&AuditLog>,
    failure: &Failure,
    presented: &Presented,
    remote: Option<SocketAddr>,
) {
    let Some(log) = audit else { return };
    let event = Event::Auth {
        principal: None,
        method: presented.method.to_owned(),
        outcome: AuthOutcome::Failure,
        reason: Some(failure_reason(failure, presented)),
        remote: remote.map(|r| r.to_string()),
    };
    // The refusal is sent either way: a failed write is already an alert in the log.
    let _ = log.submit(event, false).await;
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Presented;

    /// A well-formed key as `keys create` makes them: id, secret, CRC-32 checksum.
    fn key(id: &str, secret: &str) -> String {
        let body = format!("mwk_{id}_{secret}");
        format!("{body}{:08x}", crc32fast::hash(body.as_bytes()))
    }

    #[test]
    fn classifies_what_was_presented_without_keeping_it() {
        let secret = "ab".repeat(32);
        let good = key("0123456789abcdef", &secret);
        let p = Presented::of(&[format!("Bearer {good}").as_bytes()]);
        assert_eq!(
            (p.method, p.key_id.as_deref()),
            ("api_key", Some("0123456789abcdef"))
        );
        // A key with a bad checksum names no key id: it is not a key `keys create` made.
        let bad = format!("{}0", &good[..good.len() - 1]);
        let p = Presented::of(&[format!("bearer {bad}").as_bytes()]);
        assert_eq!((p.method, p.key_id), ("api_key", None));
        let p = Presented::of(&[b"Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"]);
        assert_eq!((p.method, p.key_id), ("bearer", None));
        for values in [
            &[][..],
            &[&b"Basic dXNlcjpwYXNz"[..]],
            &[b"Bearer a", b"Bearer b"],
        ] {
            assert_eq!(Presented::of(values).method, "none");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_a_key_id_is_never_secret(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            let p = Presented::of(&[&value]);
            if let Some(id) = p.key_id {
                // Only the 16-hex-digit public id, never more of the credential.
                prop_assert_eq!(id.len(), 16);
                prop_assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }

        #[test]
        fn a_well_formed_key_yields_exactly_its_id(id in "[0-9a-f]{16}", secret in "[0-9a-f]{64}") {
            let k = key(&id, &secret);
            let p = Presented::of(&[format!("Bearer {k}").as_bytes()]);
            prop_assert_eq!(p.method, "api_key");
            prop_assert_eq!(p.key_id, Some(id));
        }
    }
}
