use super::*;
use proptest::prelude::*;

fn list(entries: &[&str]) -> AllowList {
    AllowList::parse(entries).unwrap()
}

fn allows(list: &AllowList, authority: &str) -> bool {
    let (target, port) = parse_authority(authority).unwrap();
    list.find(&target, port).is_some()
}

#[test]
fn exact_names_and_ports() {
    let l = list(&["api.github.com:443"]);
    assert!(allows(&l, "api.github.com:443"));
    assert!(allows(&l, "API.GitHub.com.:443"));
    assert!(!allows(&l, "api.github.com:80"));
    assert!(!allows(&l, "github.com:443"));
    assert!(!allows(&l, "evil-api.github.com:443"));
    assert!(!allows(&l, "api.github.com.evil.net:443"));
}

#[test]
fn wildcards_cover_subdomains_only() {
    let l = list(&["*.example.com:443"]);
    assert!(allows(&l, "a.example.com:443"));
    assert!(allows(&l, "a.b.example.com:443"));
    assert!(!allows(&l, "example.com:443"));
    assert!(!allows(&l, "badexample.com:443"));
    assert!(!allows(&l, "a.example.com:444"));
}

#[test]
fn ip_literals_match_ip_rules_only() {
    let l = list(&["127.0.0.1:8080", "[::1]:8080", "api.github.com:443"]);
    assert!(allows(&l, "127.0.0.1:8080"));
    assert!(allows(&l, "[::1]:8080"));
    assert!(!allows(&l, "127.0.0.2:8080"));
    assert!(!allows(&l, "140.82.112.3:443"));
    assert_eq!(
        l.rules()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["127.0.0.1:8080", "[::1]:8080", "api.github.com:443"]
    );
}

#[test]
fn bad_entries_are_rejected() {
    for (entry, want) in [
        ("api.github.com", "MissingPort"),
        ("api.github.com:0", "BadPort"),
        ("api.github.com:65536", "BadPort"),
        ("api.github.com:+443", "BadPort"),
        ("::1:443", "MissingPort"),
        ("*.:443", "BadHost"),
        ("*:443", "BadHost"),
        ("*.*.example.com:443", "BadHost"),
        ("a..b:443", "BadHost"),
        ("-a.b:443", "BadHost"),
        ("a b:443", "BadHost"),
        ("127.1:443", "BadHost"),
        ("0x7f.0x1:443", "BadHost"),
        ("*.10.0.0.1:443", "BadHost"),
        ("[api.github.com]:443", "MissingPort"),
    ] {
        let error = AllowList::parse(&[entry]).unwrap_err();
        assert!(format!("{error:?}").starts_with(want), "{entry}: {error:?}");
    }
}

#[test]
fn authorities_that_are_not_host_port_are_rejected() {
    for bad in [
        "", ":443", "host", "host:", "host:x", "[::1]", "::1:443", "a b:443", "h:1:2",
    ] {
        assert!(parse_authority(bad).is_none(), "{bad}");
    }
}

fn label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]"
}

proptest! {
    // A wildcard never matches its own apex nor a name that merely ends with the same text.
    #[test]
    fn wildcard_matches_exactly_the_names_under_it(
        sub in label(), apex in label(), tld in label(), glue in label(), port in 1u16..,
    ) {
        let l = list(&[&format!("*.{apex}.{tld}:{port}")]);
        let under = Target::Name(format!("{sub}.{apex}.{tld}"));
        let apex_name = Target::Name(format!("{apex}.{tld}"));
        let glued = Target::Name(format!("{glue}{apex}.{tld}"));
        let next = if port == u16::MAX { 1 } else { port + 1 };
        prop_assert!(l.find(&under, port).is_some());
        prop_assert!(l.find(&apex_name, port).is_none());
        prop_assert!(l.find(&glued, port).is_none());
        prop_assert!(l.find(&under, next).is_none());
    }

    // Parsing never panics, and whatever parses matches itself and prints back to an
    // equivalent rule.
    #[test]
    fn rules_round_trip(entry in "\\PC{0,40}") {
        if let Ok(l) = AllowList::parse(&[&entry]) {
            let printed = l.rules()[0].to_string();
            prop_assert_eq!(AllowList::parse(&[&printed]).unwrap(), l);
        }
        let _ = parse_authority(&entry);
    }

    // An exact rule matches one name and port: any other port or a changed name misses.
    #[test]
    fn exact_rules_match_one_name(a in label(), b in label(), port in 1u16.., other in 1u16..) {
        let l = list(&[&format!("{a}.com:{port}")]);
        let name = Target::Name(format!("{a}.com"));
        let renamed = Target::Name(format!("{b}.com"));
        prop_assert!(l.find(&name, port).is_some());
        prop_assert_eq!(l.find(&name, other).is_some(), other == port);
        prop_assert_eq!(l.find(&renamed, port).is_some(), a == b);
    }
}
