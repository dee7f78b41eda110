//! Values that may be credentials: a literal, or a reference resolved later, never here.
//!
//! References: `env:NAME` (the gateway's environment), `file:/path` (a file's contents) and
//! `keyring:SERVICE/USER` (an entry of the OS keyring; on Linux the kernel key retention
//! service, which needs neither D-Bus nor a desktop session).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Prefix of a reference to an environment variable of the gateway's process.
pub const ENV_PREFIX: &str = "env:";
/// Prefix of a reference to a file whose contents are the value.
pub const FILE_PREFIX: &str = "file:";
/// Prefix of a reference to an OS keyring entry, `keyring:SERVICE/USER`.
pub const KEYRING_PREFIX: &str = "keyring:";
/// Longest service or user name of a keyring reference: keyring descriptions are bounded.
pub const MAX_KEYRING_NAME: usize = 255;

/// The value of an upstream `env` variable or HTTP header, as written in the configuration.
///
/// Written as `"env:NAME"` (the gateway's environment variable `NAME`), `"file:/path"` (the
/// contents of that file), `"keyring:SERVICE/USER"` (the OS keyring entry of that service and
/// user) or anything else (the literal text). A value that starts with `env:`, `file:` or
/// `keyring:` is always a reference; there is no escape. This crate never resolves references.
///
/// `Debug` prints `Literal("***")` for literals, so a configuration can be logged without
/// leaking the credentials it holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ValueRef {
    /// The text itself.
    Literal(String),
    /// The value of this environment variable of the gateway's process, read when resolved.
    Env(String),
    /// The contents of this file, read when resolved.
    File(PathBuf),
    /// The OS keyring entry of this service and user, read when resolved.
    Keyring {
        /// The entry's service (no `/`, no `@`).
        service: String,
        /// The entry's user (everything after the first `/`).
        user: String,
    },
}

impl fmt::Debug for ValueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Never print a literal: env values and headers are where tokens live.
            Self::Literal(_) => f.debug_tuple("Literal").field(&"***").finish(),
            Self::Env(name) => f.debug_tuple("Env").field(name).finish(),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Keyring { service, user } => f
                .debug_struct("Keyring")
                .field("service", service)
                .field("user", user)
                .finish(),
        }
    }
}

/// Why a `env:`, `file:` or `keyring:` reference is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueRefError {
    /// `env:` with a name no environment can hold.
    #[error(
        "invalid reference \"{value}\": the environment variable name must be non-empty without `=` or NUL"
    )]
    EnvName {
        /// The reference as written.
        value: String,
    },
    /// `file:` with an empty path or a NUL byte.
    #[error("invalid reference \"{value}\": the file path must be non-empty without NUL")]
    FilePath {
        /// The reference as written.
        value: String,
    },
    /// `keyring:` without `SERVICE/USER`, or with a part that cannot name an entry.
    #[error(
        "invalid reference \"{value}\": expected keyring:SERVICE/USER, both non-empty, at most 255 bytes, without NUL or control characters, the service without `/` or `@`"
    )]
    Keyring {
        /// The reference as written.
        value: String,
    },
}

impl FromStr for ValueRef {
    type Err = ValueRefError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if let Some(name) = value.strip_prefix(ENV_PREFIX) {
            if !is_env_name(name) {
                return Err(ValueRefError::EnvName {
                    value: value.to_owned(),
                });
            }
            Ok(Self::Env(name.to_owned()))
        } else if let Some(path) = value.strip_prefix(FILE_PREFIX) {
            if path.is_empty() || path.contains('\0') {
                return Err(ValueRefError::FilePath {
                    value: value.to_owned(),
                });
            }
            Ok(Self::File(PathBuf::from(path)))
        } else if let Some(entry) = value.strip_prefix(KEYRING_PREFIX) {
            parse_keyring(entry).ok_or_else(|| ValueRefError::Keyring {
                value: value.to_owned(),
            })
        } else {
            Ok(Self::Literal(value.to_owned()))
        }
    }
}

impl<'de> serde::Deserialize<'de> for ValueRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ValueRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a string: a literal, \"env:NAME\", \"file:/path\" or \"keyring:SERVICE/USER\"",
                )
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ValueRef, E> {
                value.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// `SERVICE/USER` of a keyring reference. The service may hold neither `/` (the separator) nor
/// `@`: the Linux keyutils store names an entry `…:USER@SERVICE`, so with `@` allowed in both
/// parts two references could name one entry.
fn parse_keyring(entry: &str) -> Option<ValueRef> {
    let (service, user) = entry.split_once('/')?;
    let ok =
        |s: &str| !s.is_empty() && s.len() <= MAX_KEYRING_NAME && !s.chars().any(char::is_control);
    (ok(service) && ok(user) && !service.contains('@')).then(|| ValueRef::Keyring {
        service: service.to_owned(),
        user: user.to_owned(),
    })
}

impl ValueRef {
    /// True for a reference (`env:`, `file:`, `keyring:`), false for literal text.
    pub fn is_reference(&self) -> bool {
        !matches!(self, Self::Literal(_))
    }
}

/// Whether `name` can be the name of an environment variable on every platform we support.
pub(crate) fn is_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_and_literals() {
        assert_eq!("env:TOKEN".parse(), Ok(ValueRef::Env("TOKEN".into())));
        assert_eq!(
            "file:/run/secrets/token".parse(),
            Ok(ValueRef::File("/run/secrets/token".into()))
        );
        assert_eq!("Bearer x".parse(), Ok(ValueRef::Literal("Bearer x".into())));
        assert_eq!("".parse(), Ok(ValueRef::Literal(String::new())));
    }

    #[test]
    fn rejects_malformed_references() {
        assert!("env:".parse::<ValueRef>().is_err());
        assert!("env:A=B".parse::<ValueRef>().is_err());
        assert!("file:".parse::<ValueRef>().is_err());
    }

    #[test]
    fn parses_keyring_references() {
        assert_eq!(
            "keyring:mcp-warden/github-token".parse(),
            Ok(ValueRef::Keyring {
                service: "mcp-warden".into(),
                user: "github-token".into()
            })
        );
        // The user is everything after the first `/`.
        assert_eq!(
            "keyring:svc/a/b@c".parse(),
            Ok(ValueRef::Keyring {
                service: "svc".into(),
                user: "a/b@c".into()
            })
        );
        for bad in [
            "keyring:",
            "keyring:svc",
            "keyring:/user",
            "keyring:svc/",
            "keyring:s@v/user",
            "keyring:svc/us\0er",
            "keyring:svc/us\ner",
        ] {
            assert!(
                matches!(bad.parse::<ValueRef>(), Err(ValueRefError::Keyring { .. })),
                "{bad:?}"
            );
        }
        let long = format!("keyring:svc/{}", "u".repeat(MAX_KEYRING_NAME + 1));
        assert!(long.parse::<ValueRef>().is_err());
    }

    proptest::proptest! {
        // Every accepted keyring reference names its parts exactly, and distinct references
        // never name one keyutils description (`USER@SERVICE`).
        #[test]
        fn keyring_references_are_unambiguous(a in "[ -~]{0,20}", b in "[ -~]{0,20}") {
            let (x, y) = (format!("keyring:{a}"), format!("keyring:{b}"));
            if let (Ok(ValueRef::Keyring { service: s1, user: u1 }), Ok(ValueRef::Keyring { service: s2, user: u2 })) = (x.parse::<ValueRef>(), y.parse::<ValueRef>()) {
                proptest::prop_assert_eq!(format!("keyring:{s1}/{u1}"), x.clone());
                if x != y {
                    proptest::prop_assert_ne!(format!("{u1}@{s1}"), format!("{u2}@{s2}"));
                }
            }
        }
    }

    #[test]
    fn debug_never_shows_a_literal() {
        let literal = ValueRef::Literal("ghp_supersecret".into());
        let shown = format!("{literal:?} {literal:#?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert_eq!(format!("{literal:?}"), r#"Literal("***")"#);
        assert_eq!(
            format!("{:?}", ValueRef::Env("TOKEN".into())),
            r#"Env("TOKEN")"#
        );
    }
}
