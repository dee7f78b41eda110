//! Namespaces: the fixed set of state kinds that share one store.

use std::fmt;

/// The longest namespace name, in bytes.
const MAX_NAMESPACE_BYTES: usize = 32;

/// A kind of gateway state; keys in different namespaces never collide.
///
/// Names are 1 to 32 bytes of `[a-z0-9_]`, so a Redis backend can prefix keys with `<name>:`
/// unambiguously. Every namespace the gateway uses is declared here, in one place, so that two
/// crates cannot pick the same name by accident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(&'static str);

impl Namespace {
    /// Downstream sessions (ephemeral; idle sessions expire).
    pub const SESSION: Self = Self::new("session");
    /// Rate-limit buckets, keyed by principal (ephemeral counters).
    pub const RATE_LIMIT: Self = Self::new("rate_limit");
    /// Tool-definition pins (persistent).
    pub const PIN: Self = Self::new("pin");
    /// Pending and decided human approvals (persistent).
    pub const APPROVAL: Self = Self::new("approval");
    /// API keys, stored as hashes (persistent).
    pub const API_KEY: Self = Self::new("api_key");

    /// Declares a namespace.
    ///
    /// # Panics
    ///
    /// If `name` is empty, longer than 32 bytes, or has a byte outside `[a-z0-9_]`. Declare
    /// namespaces in a `const`, as above, so that mistake fails to compile instead.
    #[must_use]
    pub const fn new(name: &'static str) -> Self {
        let bytes = name.as_bytes();
        assert!(
            !bytes.is_empty() && bytes.len() <= MAX_NAMESPACE_BYTES,
            "namespace names are 1 to 32 bytes"
        );
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            assert!(
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_',
                "namespace names are made of [a-z0-9_]"
            );
            i += 1;
        }
        Self(name)
    }

    /// The namespace's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
