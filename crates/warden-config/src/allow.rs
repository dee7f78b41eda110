//! `allowed_hosts` and `allowed_origins`: which `Host` and `Origin` headers the HTTP face accepts.
//!
//! Both checks defend a loopback gateway against DNS rebinding and cross-site requests from
//! browsers; matching lives here so that the configuration and its enforcement cannot drift.

use std::fmt;

use url::Host;

/// Which ports a [`HostPattern`] or [`OriginPattern`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// No port written. For a host: the `Host` header must carry no port. For an origin: the
    /// scheme's default port (80 for http, 443 for https), which browsers leave out.
    Default,
    /// Exactly this port.
    Exact(u16),
    /// Any port, or none (written `:*`).
    Any,
}

/// One `allowed_hosts` entry: `host`, `host:port` or `host:*`, where host is a DNS name, an
/// IPv4 address or a bracketed IPv6 address. Names compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// The host, normalised (lowercase, IDNA).
    pub host: Host<String>,
    /// The accepted ports.
    pub port: PortMatch,
}

impl HostPattern {
    /// Parses a configuration entry; the error says what is wrong.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let (host, port) = split_host_port(value)?;
        Ok(Self {
            host: parse_host(host)?,
            port: parse_port(port, true)?,
        })
    }

    /// Whether a request's `Host` header value matches this pattern.
    pub fn matches(&self, host_header: &str) -> bool {
        parse_host_header(host_header).is_some_and(|(host, port)| self.matches_parsed(&host, port))
    }

    fn matches_parsed(&self, host: &Host<String>, port: Option<u16>) -> bool {
        *host == self.host
            && match self.port {
                PortMatch::Default => port.is_none(),
                PortMatch::Exact(expected) => port == Some(expected),
                PortMatch::Any => true,
            }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.host)?;
        write_port(f, self.port)
    }
}

/// The `Host` headers the HTTP face accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostAllowlist {
    /// The default: `localhost`, `127.0.0.1` and `[::1]`, each without a port or with the port
    /// the gateway is bound to. The port is the bound one, not `listen`'s, so `listen` port 0
    /// works.
    #[default]
    Loopback,
    /// Exactly these patterns (`allowed_hosts`, never empty).
    Only(Vec<HostPattern>),
}

impl HostAllowlist {
    /// Whether a request's `Host` header value is allowed, given the local port the request
    /// arrived on.
    pub fn allows(&self, host_header: &str, local_port: u16) -> bool {
        if let Self::Loopback = self
            && let Some(allowed) = loopback_fast_path(host_header, local_port)
        {
            return allowed;
        }
        let Some((host, port)) = parse_host_header(host_header) else {
            return false;
        };
        match self {
            Self::Loopback => {
                loopback_hosts().contains(&host) && port.is_none_or(|port| port == local_port)
            }
            Self::Only(patterns) => patterns
                .iter()
                .any(|pattern| pattern.matches_parsed(&host, port)),
        }
    }

    /// The patterns in force, with [`HostAllowlist::Loopback`] expanded for `local_port`.
    pub fn patterns(&self, local_port: u16) -> Vec<HostPattern> {
        match self {
            Self::Only(patterns) => patterns.clone(),
            Self::Loopback => loopback_hosts()
                .into_iter()
                .flat_map(|host| {
                    [
                        HostPattern {
                            host: host.clone(),
                            port: PortMatch::Default,
                        },
                        HostPattern {
                            host,
                            port: PortMatch::Exact(local_port),
                        },
                    ]
                })
                .collect(),
        }
    }
}

/// One `allowed_origins` entry: `scheme://host`, `scheme://host:port` or `scheme://host:*`, with
/// scheme `http` or `https` and no path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginPattern {
    /// `http` or `https`.
    pub scheme: OriginScheme,
    /// The host, normalised (lowercase, IDNA).
    pub host: Host<String>,
    /// The accepted ports.
    pub port: PortMatch,
}

/// The scheme of an [`OriginPattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OriginScheme {
    /// `http`, default port 80.
    Http,
    /// `https`, default port 443.
    Https,
}

impl OriginScheme {
    /// The port a URL of this scheme uses when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl OriginPattern {
    /// Parses a configuration entry; the error says what is wrong.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        parse_origin(value, true)
    }

    /// Whether the pattern's host is this machine's: `localhost`, `127.0.0.1` or `[::1]`.
    pub fn is_loopback(&self) -> bool {
        loopback_hosts().contains(&self.host)
    }

    /// Whether a request's `Origin` header value matches this pattern. `null` never matches.
    pub fn matches(&self, origin_header: &str) -> bool {
        parse_origin_header(origin_header).is_some_and(|origin| self.matches_parsed(&origin))
    }

    /// `origin` is a parsed header: its port is `Exact` or `Default`.
    fn matches_parsed(&self, origin: &OriginPattern) -> bool {
        let port = match origin.port {
            PortMatch::Exact(port) => port,
            PortMatch::Default | PortMatch::Any => origin.scheme.default_port(),
        };
        origin.scheme == self.scheme
            && origin.host == self.host
            && match self.port {
                PortMatch::Default => port == self.scheme.default_port(),
                PortMatch::Exact(expected) => port == expected,
                PortMatch::Any => true,
            }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        write_port(f, self.port)
    }
}

/// The `Origin` headers the HTTP face accepts (when a request carries one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginAllowlist(Vec<OriginPattern>);

impl OriginAllowlist {
    /// An allowlist of exactly these patterns.
    pub fn new(patterns: Vec<OriginPattern>) -> Self {
        Self(patterns)
    }

    /// Whether a request's `Origin` header value is allowed.
    pub fn allows(&self, origin_header: &str) -> bool {
        parse_origin_header(origin_header)
            .is_some_and(|origin| self.0.iter().any(|pattern| pattern.matches_parsed(&origin)))
    }

    /// The patterns in force.
    pub fn patterns(&self) -> &[OriginPattern] {
        &self.0
    }

    /// Whether every origin `pattern` matches is allowed by this list: one entry with the same
    /// scheme and host accepts all of its ports.
    pub fn covers(&self, pattern: &OriginPattern) -> bool {
        let default = pattern.scheme.default_port();
        let port_of = |port: PortMatch| match port {
            PortMatch::Default => Some(default),
            PortMatch::Exact(port) => Some(port),
            PortMatch::Any => None,
        };
        self.0.iter().any(|entry| {
            entry.scheme == pattern.scheme
                && entry.host == pattern.host
                && match (port_of(entry.port), port_of(pattern.port)) {
                    (None, _) => true,
                    (Some(a), Some(b)) => a == b,
                    (Some(_), None) => false,
                }
        })
    }
}

impl Default for OriginAllowlist {
    /// `http` and `https` on `localhost`, `127.0.0.1` and `[::1]`, any port: pages served from
    /// this machine (such as a local inspector) may call the gateway; other sites may not.
    fn default() -> Self {
        let mut patterns = Vec::new();
        for scheme in [OriginScheme::Http, OriginScheme::Https] {
            for host in loopback_hosts() {
                patterns.push(OriginPattern {
                    scheme,
                    host,
                    port: PortMatch::Any,
                });
            }
        }
        Self(patterns)
    }
}

/// `localhost`, `127.0.0.1` and `::1`.
fn loopback_hosts() -> [Host<String>; 3] {
    [
        Host::Domain("localhost".to_owned()),
        Host::Ipv4(std::net::Ipv4Addr::LOCALHOST),
        Host::Ipv6(std::net::Ipv6Addr::LOCALHOST),
    ]
}

/// The loopback check for the spellings clients send (`localhost`, `127.0.0.1`, `[::1]`, with
/// or without a port) without parsing the host as a URL host (IDNA and all, on every request).
/// `None` for anything else, which the full parse decides; where it answers, it answers as
/// the full parse does.
fn loopback_fast_path(host_header: &str, local_port: u16) -> Option<bool> {
    let (host, port) = split_host_port(host_header.trim()).ok()?;
    let canonical = matches!(host, "127.0.0.1" | "[::1]") || host.eq_ignore_ascii_case("localhost");
    if !canonical {
        return None;
    }
    Some(match parse_port(port, false) {
        Ok(PortMatch::Exact(port)) => port == local_port,
        Ok(_) => true,
        Err(_) => false,
    })
}

/// A `Host` header value as host and optional port; `None` if malformed.
fn parse_host_header(value: &str) -> Option<(Host<String>, Option<u16>)> {
    let (host, port) = split_host_port(value.trim()).ok()?;
    let port = match parse_port(port, false).ok()? {
        PortMatch::Exact(port) => Some(port),
        PortMatch::Default | PortMatch::Any => None,
    };
    Some((parse_host(host).ok()?, port))
}

/// An `Origin` header value; `None` if malformed or `null`. Its port is never `Any`.
fn parse_origin_header(value: &str) -> Option<OriginPattern> {
    parse_origin(value.trim(), false).ok()
}

fn write_port(f: &mut fmt::Formatter<'_>, port: PortMatch) -> fmt::Result {
    match port {
        PortMatch::Default => Ok(()),
        PortMatch::Exact(port) => write!(f, ":{port}"),
        PortMatch::Any => f.write_str(":*"),
    }
}

fn parse_origin(value: &str, allow_any_port: bool) -> Result<OriginPattern, &'static str> {
    let (scheme, rest) = value
        .split_once("://")
        .ok_or("expected scheme://host[:port], such as \"http://localhost:3000\"")?;
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        OriginScheme::Http
    } else if scheme.eq_ignore_ascii_case("https") {
        OriginScheme::Https
    } else {
        return Err("the scheme must be http or https");
    };
    if rest.contains(['/', '?', '#']) {
        return Err("an origin has no path, query or fragment");
    }
    if rest.contains('@') {
        return Err("an origin has no user name or password");
    }
    let (host, port) = split_host_port(rest)?;
    Ok(OriginPattern {
        scheme,
        host: parse_host(host)?,
        port: parse_port(port, allow_any_port)?,
    })
}

/// Splits `host[:port]`, where an IPv6 host is bracketed.
fn split_host_port(value: &str) -> Result<(&str, Option<&str>), &'static str> {
    if value.starts_with('[') {
        let close = value
            .find(']')
            .ok_or("missing `]` after the IPv6 address")?;
        let (host, after) = value.split_at(close + 1);
        if after.is_empty() {
            Ok((host, None))
        } else {
            let port = after
                .strip_prefix(':')
                .ok_or("expected `:port` after the bracketed IPv6 address")?;
            Ok((host, Some(port)))
        }
    } else {
        match value.split_once(':') {
            None => Ok((value, None)),
            Some((host, port)) if !port.contains(':') => Ok((host, Some(port))),
            Some(_) => Err("an IPv6 address must be in brackets, such as \"[::1]:8080\""),
        }
    }
}

fn parse_host(host: &str) -> Result<Host<String>, &'static str> {
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.contains('*') {
        return Err("wildcards are supported only for the port (`host:*`)");
    }
    Host::parse(host).map_err(|_| "not a valid host name or IP address")
}

fn parse_port(port: Option<&str>, allow_any: bool) -> Result<PortMatch, &'static str> {
    match port {
        None => Ok(PortMatch::Default),
        Some("*") if allow_any => Ok(PortMatch::Any),
        Some(digits) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err("the port must be a number from 0 to 65535, or `*`");
            }
            digits
                .parse()
                .map(PortMatch::Exact)
                .map_err(|_| "the port must be a number from 0 to 65535, or `*`")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loopback check as it is without the fast path.
    fn loopback_by_full_parse(host_header: &str, local_port: u16) -> bool {
        parse_host_header(host_header).is_some_and(|(host, port)| {
            loopback_hosts().contains(&host) && port.is_none_or(|port| port == local_port)
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]

        /// The fast path answers as the full parse would, wherever it answers.
        #[test]
        fn loopback_fast_path_agrees_with_the_full_parse(
            host in proptest::prop_oneof![
                proptest::strategy::Just("localhost".to_owned()),
                proptest::strategy::Just("LocalHost".to_owned()),
                proptest::strategy::Just("127.0.0.1".to_owned()),
                proptest::strategy::Just("[::1]".to_owned()),
                proptest::strategy::Just("127.1".to_owned()),
                proptest::strategy::Just("[0:0::1]".to_owned()),
                proptest::strategy::Just("localhost.".to_owned()),
                "[a-zA-Z0-9.:\\[\\]*%-]{0,12}",
            ],
            port in proptest::prop_oneof![
                proptest::strategy::Just(String::new()),
                proptest::strategy::Just(":8080".to_owned()),
                proptest::strategy::Just(":".to_owned()),
                proptest::strategy::Just(":99999".to_owned()),
                proptest::strategy::Just(":*".to_owned()),
                ":[0-9]{1,5}",
                ":[0-9a-z:]{0,6}",
            ],
            pad in proptest::prop_oneof![proptest::strategy::Just(""), proptest::strategy::Just(" ")],
        ) {
            let header = format!("{pad}{host}{port}{pad}");
            for local in [8080u16, 80] {
                let full = loopback_by_full_parse(&header, local);
                if let Some(fast) = loopback_fast_path(&header, local) {
                    proptest::prop_assert_eq!(fast, full, "{:?}", header);
                }
                proptest::prop_assert_eq!(HostAllowlist::Loopback.allows(&header, local), full);
            }
        }
    }

    #[test]
    fn loopback_hosts_accept_bound_port_and_no_port() {
        let list = HostAllowlist::Loopback;
        for header in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(list.allows(header, 8080), "{header}");
        }
        for header in [
            "localhost:8081",
            "evil.example",
            "evil.example:8080",
            "[::1]:9",
            "",
            "localhost:",
            "::1",
        ] {
            assert!(!list.allows(header, 8080), "{header}");
        }
    }

    #[test]
    fn host_patterns_parse_and_display() {
        for (input, shown) in [
            ("Example.COM", "example.com"),
            ("gw.internal:8443", "gw.internal:8443"),
            ("10.0.0.1:*", "10.0.0.1:*"),
            ("[::1]:80", "[::1]:80"),
        ] {
            assert_eq!(HostPattern::parse(input).unwrap().to_string(), shown);
        }
        for bad in [
            "",
            "::1",
            "*.example.com",
            "host:99999",
            "host:",
            "[::1",
            "a b",
            "host:+1",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_port_host_pattern_requires_that_port() {
        let pattern = HostPattern::parse("gw.internal:8443").unwrap();
        assert!(pattern.matches("GW.internal:8443"));
        assert!(!pattern.matches("gw.internal"));
        assert!(!pattern.matches("gw.internal:443"));
        let any = HostPattern::parse("gw.internal:*").unwrap();
        assert!(any.matches("gw.internal"));
        assert!(any.matches("gw.internal:1"));
    }

    #[test]
    fn default_origins_are_loopback_on_any_port() {
        let list = OriginAllowlist::default();
        for origin in [
            "http://localhost:3000",
            "https://localhost",
            "http://127.0.0.1:6274",
            "http://[::1]:1",
        ] {
            assert!(list.allows(origin), "{origin}");
        }
        for origin in [
            "null",
            "https://evil.example",
            "http://localhost.evil.example",
            "file://localhost",
            "http://localhost:3000/path",
        ] {
            assert!(!list.allows(origin), "{origin}");
        }
    }

    #[test]
    fn origin_without_port_means_the_default_port() {
        let pattern = OriginPattern::parse("https://app.example").unwrap();
        assert!(pattern.matches("https://app.example"));
        assert!(pattern.matches("https://app.example:443"));
        assert!(!pattern.matches("https://app.example:8443"));
        assert!(!pattern.matches("http://app.example"));
        assert!(OriginPattern::parse("ftp://x").is_err());
        assert!(OriginPattern::parse("https://x/").is_err());
        assert!(OriginPattern::parse("https://u@x").is_err());
    }
}
