use super::*;

#[test]
fn bearer_header_parsing() {
    assert_eq!(
        bearer_token(b"Bearer abc.def-_~+/=").unwrap(),
        "abc.def-_~+/="
    );
    assert_eq!(bearer_token(b"bearer  abc").unwrap(), "abc");
    assert_eq!(
        bearer_token(b"Basic dXNlcjpwYXNz").unwrap_err().kind,
        FailureKind::Missing
    );
    for bad in [
        &b"Bearer"[..],
        b"Bearer ",
        b"Bearer a b",
        b"Bearer a\"b",
        b"Bearer \xff",
        b"Bearer =abc",
    ] {
        assert_eq!(
            bearer_token(bad).unwrap_err().kind,
            FailureKind::Malformed,
            "{bad:?}"
        );
    }
}

#[test]
fn metadata_url_inserts_the_well_known_segment() {
    let url = |s: &str| metadata_url_for(&Url::parse(s).unwrap());
    assert_eq!(
        url("https://gw.example.com/mcp"),
        "https://gw.example.com/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(
        url("https://gw.example.com/"),
        "https://gw.example.com/.well-known/oauth-protected-resource"
    );
    assert_eq!(
        url("http://127.0.0.1:9000/a/mcp"),
        "http://127.0.0.1:9000/.well-known/oauth-protected-resource/a/mcp"
    );
}
