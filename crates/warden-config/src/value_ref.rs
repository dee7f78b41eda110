//! Values that may be credentials: a literal, or a reference resolved later, never here.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Prefix of a reference to an environment variable of the gateway's process.
pub const ENV_PREFIX: &str = "env:";
/// Prefix of a reference to a file whose contents are the value.
pub const FILE_PREFIX: &str = "file:";

/// The value of an upstream `env` variable or HTTP header, as written in the configuration.
///
/// Written as `"env:NAME"` (the gateway's environment variable `NAME`), `"file:/path"` (the
/// contents of that file) or anything else (the literal text). A value that starts with `env:`
/// or `file:` is always a reference; there is no escape. This crate never resolves references.
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
}

impl fmt::Debug for ValueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Never print a literal: env values and headers are where tokens live.
            Self::Literal(_) => f.debug_tuple("Literal").field(&"***").finish(),
            Self::Env(name) => f.debug_tuple("Env").field(name).finish(),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Why a `env:` or `file:` reference is malformed.
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
                f.write_str("a string: a literal, \"env:NAME\" or \"file:/path\"")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ValueRef, E> {
                value.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
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
