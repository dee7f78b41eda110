//! The host allow-list of `network = { allow = [..] }` (sandbox egress through the gateway's
//! proxy, see the `warden-egress` crate): `host:port` entries, where host is a DNS name, `*.` followed by a DNS
//! name (any name strictly under it), or an IP literal (`[..]` for IPv6). Ports are always
//! explicit. Names compare case-insensitively, without a trailing dot.

use std::fmt;
use std::net::IpAddr;

/// Why an allow-list entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    /// No `:port` at the end.
    #[error("`{entry}`: expected host:port (the port is required)")]
    MissingPort {
        /// The entry as written.
        entry: String,
    },
    /// The port is not a number in 1..=65535.
    #[error("`{entry}`: port must be a number from 1 to 65535")]
    BadPort {
        /// The entry as written.
        entry: String,
    },
    /// The host is not a DNS name, a `*.` wildcard or an IP literal.
    #[error(
        "`{entry}`: host must be a DNS name, `*.` followed by a DNS name, or an IP literal ([..] for IPv6)"
    )]
    BadHost {
        /// The entry as written.
        entry: String,
    },
}

/// The host part of a [`Rule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name (lowercase, no trailing dot).
    Name(String),
    /// Any name strictly under this one (`*.example.com` matches `a.example.com` and
    /// `a.b.example.com`, not `example.com`).
    Suffix(String),
    /// This address, whatever its class (an explicit IP literal may name a loopback or private
    /// address).
    Ip(IpAddr),
}

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The host part.
    pub host: HostPattern,
    /// The port.
    pub port: u16,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Name(name) => write!(f, "{name}:{}", self.port),
            HostPattern::Suffix(name) => write!(f, "*.{name}:{}", self.port),
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            HostPattern::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
        }
    }
}

/// The validated allow-list of one upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<Rule>,
}

/// A requested target, parsed from a `CONNECT` authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A DNS name (lowercase, no trailing dot).
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Name(name) => f.write_str(name),
            Target::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl AllowList {
    /// Parses every entry; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, AllowListError> {
        let rules = entries
            .iter()
            .map(|e| parse_rule(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowList { rules })
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule that lets `target:port` through, if any. A name matches name rules
    /// only and an IP literal matches IP rules only: `CONNECT 140.82.112.3:443` is not
    /// allowed by `api.github.com:443`.
    pub fn find(&self, target: &Target, port: u16) -> Option<&Rule> {
        self.rules.iter().find(|rule| {
            rule.port == port
                && match (&rule.host, target) {
                    (HostPattern::Name(allowed), Target::Name(name)) => allowed == name,
                    (HostPattern::Suffix(suffix), Target::Name(name)) => name
                        .strip_suffix(suffix.as_str())
                        .and_then(|head| head.strip_suffix('.'))
                        .is_some_and(|head| !head.is_empty()),
                    (HostPattern::Ip(allowed), Target::Ip(ip)) => allowed == ip,
                    _ => false,
                }
        })
    }
}

/// Parses a `CONNECT` authority (`host:port`, `[v6]:port`) into a target and port.
pub fn parse_authority(authority: &str) -> Option<(Target, u16)> {
    let (host, port) = split_host_port(authority)?;
    let port = parse_port(port)?;
    Some((parse_host(host)?, port))
}

fn parse_rule(entry: &str) -> Result<Rule, AllowListError> {
    let (host, port) = split_host_port(entry).ok_or_else(|| AllowListError::MissingPort {
        entry: entry.to_owned(),
    })?;
    let port = parse_port(port).ok_or_else(|| AllowListError::BadPort {
        entry: entry.to_owned(),
    })?;
    let bad_host = || AllowListError::BadHost {
        entry: entry.to_owned(),
    };
    let host = if let Some(rest) = host.strip_prefix("*.") {
        match parse_host(rest) {
            Some(Target::Name(name)) => HostPattern::Suffix(name),
            _ => return Err(bad_host()),
        }
    } else {
        match parse_host(host).ok_or_else(bad_host)? {
            Target::Name(name) => HostPattern::Name(name),
            Target::Ip(ip) => HostPattern::Ip(ip),
        }
    };
    Ok(Rule { host, port })
}

/// `host:port` or `[v6]:port`; an unbracketed IPv6 address is rejected (ambiguous).
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        // Only an IPv6 literal may be bracketed.
        host.parse::<std::net::Ipv6Addr>().ok()?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

fn parse_port(port: &str) -> Option<u16> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse::<u16>().ok().filter(|p| *p != 0)
}

/// An IP literal (dotted quad or IPv6, no zone) or a DNS name: labels of letters, digits and
/// hyphens (and `_`, seen in service names), 1..=63 bytes, not starting or ending with a
/// hyphen, 253 bytes at most; lowercased, one trailing dot removed.
fn parse_host(host: &str) -> Option<Target> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Target::Ip(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    // All-numeric dotted names (`127.1`, `0x7f.1` is caught by the charset check only in
    // part) would be read as addresses by some resolvers: refuse them as names.
    let numeric = name
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()) || l.starts_with("0x"));
    (labels_ok && !numeric).then_some(Target::Name(name))
}

#[cfg(test)]
mod tests;
