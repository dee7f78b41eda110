//! Classification of IP addresses for SSRF protection: which addresses an upstream must never
//! be sent to on a client's say-so. Pure functions; resolution lives in [`crate::arguments`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Routable on the public internet.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918, RFC 4193 (`fc00::/7`), CGNAT `100.64.0.0/10`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Cloud instance metadata endpoints (`169.254.169.254`, `fd00:ec2::254`,
    /// `100.100.100.200`).
    Metadata,
    /// `0.0.0.0/8`, `::` (reaches the local host on most systems).
    Unspecified,
    /// Multicast and broadcast.
    Multicast,
    /// Documentation, benchmarking, reserved and other special-purpose ranges.
    Reserved,
}

impl AddressClass {
    /// A short noun for messages ("loopback address").
    pub fn noun(self) -> &'static str {
        match self {
            AddressClass::Public => "public address",
            AddressClass::Loopback => "loopback address",
            AddressClass::Private => "private address",
            AddressClass::LinkLocal => "link-local address",
            AddressClass::Metadata => "cloud metadata address",
            AddressClass::Unspecified => "unspecified address",
            AddressClass::Multicast => "multicast or broadcast address",
            AddressClass::Reserved => "reserved address",
        }
    }
}

/// Classifies `ip`. IPv6 forms that embed an IPv4 address (mapped `::ffff:a.b.c.d`,
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are classified by the
/// embedded address, so `::ffff:127.0.0.1` is loopback.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let o = ip.octets();
    let n = u32::from(ip);
    let within = |base: [u8; 4], bits: u32| {
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        n & mask == u32::from(Ipv4Addr::from(base)) & mask
    };
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        return AddressClass::Metadata;
    }
    if o[0] == 127 {
        AddressClass::Loopback
    } else if o[0] == 0 {
        AddressClass::Unspecified
    } else if within([10, 0, 0, 0], 8)
        || within([172, 16, 0, 0], 12)
        || within([192, 168, 0, 0], 16)
        || within([100, 64, 0, 0], 10)
    {
        AddressClass::Private
    } else if within([169, 254, 0, 0], 16) {
        AddressClass::LinkLocal
    } else if within([224, 0, 0, 0], 4) || ip == Ipv4Addr::BROADCAST {
        AddressClass::Multicast
    } else if within([192, 0, 0, 0], 24)
        || within([192, 0, 2, 0], 24)
        || within([198, 18, 0, 0], 15)
        || within([198, 51, 100, 0], 24)
        || within([203, 0, 113, 0], 24)
        || within([192, 88, 99, 0], 24)
        || within([240, 0, 0, 0], 4)
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    // IPv4-compatible (deprecated, `::a.b.c.d`), NAT64 (`64:ff9b::/96`, RFC 6052) and the
    // local-use NAT64 prefix `64:ff9b:1::/48` carry the IPv4 address in the low 32 bits.
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(low);
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        // Local-use NAT64 (RFC 8215): translated inside the operator's network.
        return AddressClass::Private;
    }
    // 6to4 (`2002::/16`) embeds the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return classify_v4(v4);
    }
    if s[0] == 0xfd00 && s[1] == 0x0ec2 && s[2..7] == [0, 0, 0, 0, 0] && s[7] == 0x254 {
        return AddressClass::Metadata;
    }
    if s[0] & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if s[0] & 0xffc0 == 0xfec0 {
        // Deprecated site-local: private in practice.
        AddressClass::Private
    } else if s[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if s[0] == 0x2001 && s[1] == 0x0db8 || s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        // Documentation (`2001:db8::/32`) and discard-only (`100::/64`).
        AddressClass::Reserved
    } else if s[0] & 0xe000 != 0x2000 {
        // Outside global unicast `2000::/3`: nothing public lives there.
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// Host names that name the local host or a metadata service whatever DNS says.
pub fn is_internal_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h == "metadata.google.internal"
        || h == "metadata"
        || h.ends_with(".internal")
        || h.ends_with(".local")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn c(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn known_addresses() {
        assert_eq!(c("169.254.169.254"), AddressClass::Metadata);
        assert_eq!(c("fd00:ec2::254"), AddressClass::Metadata);
        assert_eq!(c("127.0.0.1"), AddressClass::Loopback);
        assert_eq!(c("127.1.2.3"), AddressClass::Loopback);
        assert_eq!(c("::1"), AddressClass::Loopback);
        assert_eq!(c("::ffff:127.0.0.1"), AddressClass::Loopback);
        assert_eq!(c("::ffff:169.254.169.254"), AddressClass::Metadata);
        assert_eq!(c("::127.0.0.1"), AddressClass::Loopback);
        assert_eq!(c("64:ff9b::a9fe:a9fe"), AddressClass::Metadata);
        assert_eq!(c("2002:7f00:1::"), AddressClass::Loopback);
        assert_eq!(c("0.0.0.0"), AddressClass::Unspecified);
        assert_eq!(c("::"), AddressClass::Unspecified);
        assert_eq!(c("10.1.2.3"), AddressClass::Private);
        assert_eq!(c("172.31.255.255"), AddressClass::Private);
        assert_eq!(c("172.32.0.1"), AddressClass::Public);
        assert_eq!(c("192.168.1.1"), AddressClass::Private);
        assert_eq!(c("100.64.0.1"), AddressClass::Private);
        assert_eq!(c("fc00::1"), AddressClass::Private);
        assert_eq!(c("fe80::1"), AddressClass::LinkLocal);
        assert_eq!(c("169.254.1.1"), AddressClass::LinkLocal);
        assert_eq!(c("224.0.0.1"), AddressClass::Multicast);
        assert_eq!(c("255.255.255.255"), AddressClass::Multicast);
        assert_eq!(c("8.8.8.8"), AddressClass::Public);
        assert_eq!(c("2606:4700::1111"), AddressClass::Public);
        assert_eq!(c("2001:db8::1"), AddressClass::Reserved);
    }

    #[test]
    fn internal_names() {
        assert!(is_internal_name("localhost"));
        assert!(is_internal_name("LOCALHOST."));
        assert!(is_internal_name("a.localhost"));
        assert!(is_internal_name("metadata.google.internal"));
        assert!(!is_internal_name("example.com"));
    }

    proptest! {
        // Every IPv4 address classifies the same through each IPv6 form that embeds it.
        #[test]
        fn embedded_ipv4_classifies_as_itself(n in any::<u32>()) {
            let v4 = Ipv4Addr::from(n);
            let expected = classify(IpAddr::V4(v4));
            prop_assert_eq!(classify(IpAddr::V6(v4.to_ipv6_mapped())), expected);
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, (n >> 16) as u16, n as u16);
            prop_assert_eq!(classify(IpAddr::V6(nat64)), expected);
        }

        // Nothing in the special-purpose IPv4 blocks is ever public.
        #[test]
        fn special_ipv4_blocks_are_never_public(host in any::<u32>(), block in 0usize..8) {
            let (base, bits): (u32, u32) = [
                (0x7f00_0000, 8), (0x0a00_0000, 8), (0xac10_0000, 12), (0xc0a8_0000, 16),
                (0xa9fe_0000, 16), (0x0000_0000, 8), (0x6440_0000, 10), (0xe000_0000, 4),
            ][block];
            let ip = Ipv4Addr::from(base | (host & (u32::MAX >> bits)));
            prop_assert_ne!(classify(IpAddr::V4(ip)), AddressClass::Public);
        }

        // Loopback and link-local IPv6 ranges are never public.
        #[test]
        fn special_ipv6_ranges_are_never_public(low in any::<u128>()) {
            let link_local = Ipv6Addr::from((0xfe80u128 << 112) | (low >> 64));
            prop_assert_ne!(classify(IpAddr::V6(link_local)), AddressClass::Public);
            let ula = Ipv6Addr::from((0xfc00u128 << 112) | (low >> 8));
            prop_assert_ne!(classify(IpAddr::V6(ula)), AddressClass::Public);
        }
    }
}
