//! `keyring:SERVICE/USER` references: entries of the OS keyring (on Linux, the kernel key
//! retention service through keyutils: no D-Bus, works headless).
//!
//! Resolved only here, in the gateway process, before any upstream is spawned: the sandbox's
//! seccomp filter denies `keyctl` to servers, so a server can never read the keyring itself.
//! A value is never logged and never part of an error: errors name the service and user only.

use anyhow::bail;

/// Why a keyring entry could not be used. Never holds the secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyringError {
    /// No entry with this service and user.
    #[error("keyring:{service}/{user}: no such entry in the OS keyring")]
    NoEntry { service: String, user: String },
    /// The entry holds bytes that are not UTF-8.
    #[error("keyring:{service}/{user}: the entry is not UTF-8 text")]
    NotText { service: String, user: String },
    /// The keyring refused or failed (no keyring, permission denied, ...).
    #[error("keyring:{service}/{user}: the OS keyring failed: {reason}")]
    Platform {
        service: String,
        user: String,
        reason: String,
    },
}

fn platform(service: &str, user: &str, e: &keyring::Error) -> KeyringError {
    // Only variants whose text cannot hold the secret are shown; the rest by kind.
    let reason = match e {
        keyring::Error::PlatformFailure(inner) | keyring::Error::NoStorageAccess(inner) => {
            inner.to_string()
        }
        keyring::Error::TooLong(what, max) => format!("{what} is longer than {max}"),
        keyring::Error::Invalid(what, why) => format!("invalid {what}: {why}"),
        keyring::Error::Ambiguous(_) => "several entries match".to_owned(),
        _ => "unexpected error".to_owned(),
    };
    KeyringError::Platform {
        service: service.to_owned(),
        user: user.to_owned(),
        reason,
    }
}

/// The entry `service`/`user`: a `user` key described `keyring-rs:USER@SERVICE` (as the crate
/// names it) in the session keyring (for a process without a login session, the user-session
/// keyring the kernel substitutes).
///
/// Built by hand rather than with `Entry::new`: the crate's keyutils credential also asks for
/// the persistent keyring (`KEYCTL_GET_PERSISTENT`), and after that call the kernel refuses
/// (`EACCES`) the search of the session keyring in the same process wherever the session
/// keyring is the substituted user-session keyring (services, containers, CI), which the crate
/// reports as "no entry".
#[cfg(target_os = "linux")]
fn entry(service: &str, user: &str) -> Result<keyring::Entry, KeyringError> {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};
    let session = KeyRing::from_special_id(KeyRingIdentifier::Session, false).map_err(|e| {
        KeyringError::Platform {
            service: service.to_owned(),
            user: user.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let credential = keyring::keyutils::KeyutilsCredential {
        session,
        persistent: None,
        description: format!("keyring-rs:{user}@{service}"),
    };
    Ok(keyring::Entry::new_with_credential(Box::new(credential)))
}

#[cfg(not(target_os = "linux"))]
fn entry(service: &str, user: &str) -> Result<keyring::Entry, KeyringError> {
    keyring::Entry::new(service, user).map_err(|e| platform(service, user, &e))
}

/// The secret of entry `service`/`user`.
pub(crate) fn get(service: &str, user: &str) -> Result<String, KeyringError> {
    match entry(service, user)?.get_password() {
        Ok(secret) => Ok(secret),
        Err(keyring::Error::NoEntry) => Err(KeyringError::NoEntry {
            service: service.to_owned(),
            user: user.to_owned(),
        }),
        Err(keyring::Error::BadEncoding(_)) => Err(KeyringError::NotText {
            service: service.to_owned(),
            user: user.to_owned(),
        }),
        Err(e) => Err(platform(service, user, &e)),
    }
}

/// Stores `secret` as entry `service`/`user`, replacing any previous value.
pub(crate) fn set(service: &str, user: &str, secret: &str) -> anyhow::Result<()> {
    if secret.is_empty() {
        bail!("keyring:{service}/{user}: refusing to store an empty secret");
    }
    entry(service, user)?
        .set_password(secret)
        .map_err(|e| platform(service, user, &e))?;
    Ok(())
}

/// Removes entry `service`/`user`. Returns whether it existed.
pub(crate) fn delete(service: &str, user: &str) -> Result<bool, KeyringError> {
    match entry(service, user)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(e) => Err(platform(service, user, &e)),
    }
}
