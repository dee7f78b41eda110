//! Audit records of authentication attempts on the HTTP face.

use warden_audit::{AuditLog, AuthOutcome, Event};
use warden_auth::{Failure, FailureKind};
use warden_guard::{AuthMethod, Principal};

fn method_name(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Bearer => "bearer",
        AuthMethod::ApiKey => "api_key",
        AuthMethod::Anonymous => "anonymous",
        AuthMethod::LocalProcess => "local_process",
    }
}

/// Records an accepted credential (queued; nothing waits).
pub(crate) fn auth_success(audit: Option<&AuditLog>, principal: &Principal) {
    let Some(log) = audit else { return };
    let event = Event::Auth {
        principal: Some(principal.subject.to_string()),
        method: method_name(principal.method).to_owned(),
        outcome: AuthOutcome::Success,
        reason: None,
        remote: None,
    };
    if let Err(e) = log.record(event) {
        tracing::error!(error = %e, "authentication could not be audited");
    }
}

/// Records a refused credential and waits until it is on disk (the flush policy's
/// default for failures), so a burst of failures is on record before the client sees one.
pub(crate) async fn auth_failure(audit: Option<&AuditLog>, failure: &Failure) {
    let Some(log) = audit else { return };
    let kind = match failure.kind {
        FailureKind::Missing => "missing",
        FailureKind::Malformed => "malformed",
        FailureKind::Invalid => "invalid",
        FailureKind::InsufficientScope => "insufficient_scope",
        FailureKind::Unavailable => "unavailable",
    };
    let event = Event::Auth {
        principal: None,
        method: "http".to_owned(),
        outcome: AuthOutcome::Failure,
        // `detail` is the auth layer's audit text: it names the check, never the credential.
        reason: Some(format!("{kind}: {}", failure.detail)),
        remote: None,
    };
    // The refusal is sent either way: a failed write is already an alert in the log.
    let _ = log.submit(event, false).await;
}
