//! Namespacing of aggregated names: `<server>__<name>`.
//!
//! Several clients accept only tool names matching `^[a-zA-Z0-9_-]{1,64}$`. An upstream name is
//! exposed as `<server>__<name>` when that fits. When it does not (a character outside the set,
//! such as `.`, or a combined length over 64), the exposed name is made to fit: every character
//! outside the set becomes `_`, and a name still too long is cut and ends with `_` and 8 hex
//! digits of a hash of the original name, so it stays stable across restarts. The gateway keeps
//! the mapping, so calls reach the upstream with the original name, and it logs each adjusted
//! name. If two upstream names of one server map to the same exposed name, both are withheld
//! from the list (never "first wins") and the collision is logged.

use std::collections::HashMap;

/// Separator between the server name and the upstream's own name.
pub const SEPARATOR: &str = "__";
/// Longest name several clients accept.
pub const MAX_NAME: usize = 64;

/// True for names every known client accepts.
pub fn is_portable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The exposed name for `name` of upstream `server`, and whether it had to be adjusted.
pub fn expose(server: &str, name: &str) -> (String, bool) {
    let plain = format!("{server}{SEPARATOR}{name}");
    if is_portable(&plain) {
        return (plain, false);
    }
    let mut cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let budget = MAX_NAME - server.len() - SEPARATOR.len();
    if cleaned.len() > budget || cleaned.is_empty() {
        let hash = fnv1a(name.as_bytes());
        let keep = budget.saturating_sub(9);
        cleaned.truncate(keep);
        cleaned.push_str(&format!("_{hash:08x}"));
    }
    (format!("{server}{SEPARATOR}{cleaned}"), true)
}

/// Splits an exposed name into `(server, rest)`.
pub fn split(exposed: &str) -> Option<(&str, &str)> {
    exposed.split_once(SEPARATOR)
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Exposed-name -> original-name mapping of one server, for one kind of item.
#[derive(Debug, Default, Clone)]
pub struct NameMap {
    to_original: HashMap<String, String>,
}

impl NameMap {
    /// Builds the map for `names` of `server`; returns the map and, in input order, the exposed
    /// name of each input (`None` when withheld because of a collision).
    pub fn build<'a>(
        server: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> (Self, Vec<Option<String>>) {
        Self::build_with(server, true, names)
    }

    /// Like [`NameMap::build`]; with `namespaced == false` the names are exposed unchanged.
    pub fn build_with<'a>(
        server: &str,
        namespaced: bool,
        names: impl IntoIterator<Item = &'a str>,
    ) -> (Self, Vec<Option<String>>) {
        let names: Vec<&str> = names.into_iter().collect();
        let exposed: Vec<(String, bool)> = names
            .iter()
            .map(|n| {
                if namespaced {
                    expose(server, n)
                } else {
                    ((*n).to_owned(), false)
                }
            })
            .collect();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (e, _) in &exposed {
            *count.entry(e.as_str()).or_default() += 1;
        }
        let mut map = NameMap::default();
        let mut out = Vec::with_capacity(names.len());
        for (original, (e, adjusted)) in names.iter().zip(&exposed) {
            if count[e.as_str()] > 1 {
                tracing::warn!(server, name = %original, exposed = %e, "name collision after namespacing; item withheld");
                out.push(None);
                continue;
            }
            if *adjusted {
                tracing::info!(server, name = %original, exposed = %e, "name adjusted to fit ^[a-zA-Z0-9_-]{{1,64}}$");
            }
            map.to_original.insert(e.clone(), (*original).to_owned());
            out.push(Some(e.clone()));
        }
        (map, out)
    }

    /// True when `exposed` was listed by this server.
    pub fn contains(&self, exposed: &str) -> bool {
        self.to_original.contains_key(exposed)
    }

    /// The upstream's own name for an exposed name: from the map, or else the text after the
    /// separator (a name never listed is passed through as the client wrote it).
    pub fn original<'a>(&'a self, exposed: &'a str) -> Option<&'a str> {
        if let Some(o) = self.to_original.get(exposed) {
            return Some(o);
        }
        split(exposed).map(|(_, rest)| rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_are_prefixed() {
        assert_eq!(expose("fs", "read_file"), ("fs__read_file".into(), false));
        assert_eq!(split("fs__read_file"), Some(("fs", "read_file")));
        assert_eq!(split("fs__a__b"), Some(("fs", "a__b")));
    }

    #[test]
    fn dotted_and_long_names_are_adjusted_and_mapped_back() {
        let long = "x".repeat(100);
        let (map, exposed) = NameMap::build("fs", ["files.read", long.as_str(), "ok"]);
        assert_eq!(exposed[0].as_deref(), Some("fs__files_read"));
        let e1 = exposed[1].clone().unwrap();
        assert!(is_portable(&e1), "{e1}");
        assert_eq!(map.original("fs__files_read"), Some("files.read"));
        assert_eq!(map.original(&e1), Some(long.as_str()));
        assert_eq!(map.original("fs__ok"), Some("ok"));
        assert_eq!(map.original("fs__never_listed"), Some("never_listed"));
    }

    #[test]
    fn plain_names_are_kept_and_mapped_to_themselves() {
        let (map, exposed) = NameMap::build_with("fs", false, ["read.file", "x"]);
        assert_eq!(exposed, vec![Some("read.file".into()), Some("x".into())]);
        assert!(map.contains("read.file"));
        assert_eq!(map.original("read.file"), Some("read.file"));
    }

    #[test]
    fn collisions_withhold_both() {
        let (map, exposed) = NameMap::build("fs", ["a.b", "a_b", "c"]);
        assert_eq!(exposed, vec![None, None, Some("fs__c".into())]);
        // The withheld names still route by their literal spelling, never to the other item.
        assert_eq!(map.original("fs__a_b"), Some("a_b"));
    }

    proptest! {
        #[test]
        fn exposed_names_are_always_portable(server in "[a-z0-9-]{1,32}", name in "\\PC{0,100}") {
            let (e, _) = expose(&server, &name);
            prop_assert!(is_portable(&e), "{}", e);
            let prefix = format!("{server}__");
            prop_assert!(e.starts_with(&prefix));
        }
    }
}
