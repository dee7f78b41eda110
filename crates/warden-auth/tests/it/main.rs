//! The authenticator against a real authorization server on 127.0.0.1 (metadata, JWKS and
//! introspection over HTTP) with tokens signed by an independent JWT implementation.
#![allow(missing_docs, unreachable_pub)]
#![expect(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use warden_auth::{Authenticator, FailureKind, Secret};
use warden_config::Config;
use warden_guard::AuthMethod;
use warden_test::oauth::{self, Issuer, SigningKey};

const RESOURCE: &str = "https://gw.example.com/mcp";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn config(issuer: &Issuer, extra: &str) -> Config {
    let text = format!(
        "[auth]\nresource = \"{RESOURCE}\"\nissuer = \"{}\"\n{extra}\n",
        issuer.url
    );
    Config::parse(&text, "warden.toml").unwrap()
}

fn authenticator(config: &Config) -> Authenticator {
    Authenticator::new(
        &config.auth,
        Some(Secret::new("introspection secret")),
        None,
    )
    .unwrap()
}

fn claims(issuer: &Issuer) -> Value {
    json!({"iss": issuer.url, "aud": RESOURCE, "sub": "alice", "exp": now() + 300,
        "nbf": now() - 5, "scope": "mcp:tools", "roles": ["dev"]})
}

async fn check(
    auth: &Authenticator,
    token: &str,
) -> Result<warden_guard::Principal, warden_auth::Failure> {
    let header = format!("Bearer {token}");
    auth.authenticate(&[header.as_bytes()], None).await
}

#[tokio::test]
async fn accepts_rs256_es256_and_eddsa_with_one_discovery_and_one_jwks_fetch() {
    let (rsa, ec, ed) = (
        SigningKey::rs256("r1"),
        SigningKey::es256("e1"),
        SigningKey::ed25519("d1"),
    );
    let issuer = Issuer::start(&[&rsa, &ec, &ed]).await;
    // No jwks_uri: discovered through RFC 8414 metadata.
    let auth = authenticator(&config(&issuer, ""));
    for key in [&rsa, &ec, &ed] {
        let principal = check(&auth, &key.sign(&claims(&issuer))).await.unwrap();
        assert_eq!(&*principal.subject, format!("{}#alice", issuer.url));
        assert_eq!(principal.method, AuthMethod::Bearer);
        assert!(principal.has_scope("mcp:tools"));
        assert!(principal.has_role("dev"));
    }
    assert_eq!(issuer.hits("/.well-known/oauth-authorization-server"), 1);
    assert_eq!(issuer.hits("/jwks"), 1);
}

#[tokio::test]
async fn refuses_every_forged_or_foreign_token() {
    let rsa = SigningKey::rs256("r1");
    let stranger = SigningKey::ed25519("d1");
    let issuer = Issuer::start(&[&rsa]).await;
    let auth = authenticator(&config(
        &issuer,
        &format!("jwks_uri = \"{}/jwks\"", issuer.url),
    ));
    let good = claims(&issuer);
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let mut forged_kid = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    forged_kid.kid = Some("r1".into());
    let cases: Vec<(&str, String)> = vec![
        ("expired", rsa.sign(&with(json!({"exp": now() - 3600})))),
        (
            "not yet valid",
            rsa.sign(&with(json!({"nbf": now() + 3600}))),
        ),
        (
            "wrong audience",
            rsa.sign(&with(json!({"aud": "https://other.example.com/mcp"}))),
        ),
        (
            "wrong issuer",
            rsa.sign(&with(json!({"iss": "https://evil.example.com"}))),
        ),
        ("unknown kid", stranger.sign(&good)),
        (
            "kid of a published key, signed by another",
            stranger.sign_with(&forged_kid, &good),
        ),
        ("alg none", oauth::unsigned("r1", &good)),
        (
            "hmac with the public key",
            oauth::hmac_with_public_key(&rsa, &good),
        ),
        (
            "no exp",
            rsa.sign(&json!({"iss": issuer.url, "aud": RESOURCE, "sub": "alice"})),
        ),
        ("garbage", "not-a-jwt".into()),
    ];
    for (name, token) in cases {
        let failure = check(&auth, &token).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Invalid, "{name}: {failure:?}");
        let challenge = auth.challenge(&failure).unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(
            challenge.contains("resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/mcp\""),
            "{challenge}"
        );
    }
    // The good token still passes.
    check(&auth, &rsa.sign(&good)).await.unwrap();
}

#[tokio::test]
async fn unknown_kids_cannot_make_the_gateway_hammer_the_issuer() {
    let old = SigningKey::es256("old");
    let issuer = Issuer::start(&[&old]).await;
    let auth = authenticator(&config(
        &issuer,
        &format!(
            "jwks_uri = \"{}/jwks\"\njwks_min_refresh_interval = \"1h\"",
            issuer.url
        ),
    ));
    check(&auth, &old.sign(&claims(&issuer))).await.unwrap();
    assert_eq!(issuer.hits("/jwks"), 1);
    for i in 0..20 {
        let made_up = SigningKey::ed25519(&format!("made-up-{i}"));
        assert_eq!(
            check(&auth, &made_up.sign(&claims(&issuer)))
                .await
                .unwrap_err()
                .kind,
            FailureKind::Invalid
        );
    }
    // The set fetched at first use is recent: made-up kids trigger no fetch at all.
    assert_eq!(issuer.hits("/jwks"), 1);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_its_first_use() {
    let old = SigningKey::es256("old");
    let next = SigningKey::ed25519("next");
    let issuer = Issuer::start(&[&old]).await;
    let auth = authenticator(&config(
        &issuer,
        &format!(
            "jwks_uri = \"{}/jwks\"\njwks_min_refresh_interval = \"1ms\"",
            issuer.url
        ),
    ));
    check(&auth, &old.sign(&claims(&issuer))).await.unwrap();
    issuer.publish(&[&old, &next]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    check(&auth, &next.sign(&claims(&issuer))).await.unwrap();
    assert_eq!(issuer.hits("/jwks"), 2);
}

/// A cached token is verified again once the key set is due for a refresh: a key the issuer
/// withdrew stops being accepted then, even for a token whose `exp` is far off.
#[tokio::test]
async fn a_cached_token_of_a_withdrawn_key_stops_being_accepted() {
    let old = SigningKey::es256("old");
    let next = SigningKey::ed25519("next");
    let issuer = Issuer::start(&[&old]).await;
    let auth = authenticator(&config(
        &issuer,
        &format!(
            "jwks_uri = \"{}/jwks\"\njwks_max_age = \"1s\"\njwks_min_refresh_interval = \"1ms\"",
            issuer.url
        ),
    ));
    let mut long = claims(&issuer);
    long["exp"] = json!(now() + 86_400);
    let token = old.sign(&long);
    check(&auth, &token).await.unwrap();
    check(&auth, &token).await.unwrap();
    assert_eq!(
        issuer.hits("/jwks"),
        1,
        "the second use came from the cache"
    );
    issuer.publish(&[&next]);
    // Past the key set's age (whole seconds, so up to two).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        check(&auth, &token).await.unwrap_err().kind,
        FailureKind::Invalid
    );
}

#[tokio::test]
async fn validated_tokens_are_cached_and_scopes_are_checked_each_time() {
    let ed = SigningKey::ed25519("d1");
    let issuer = Issuer::start(&[&ed]).await;
    let auth = authenticator(&config(
        &issuer,
        &format!(
            "jwks_uri = \"{}/jwks\"\nrequired_scopes = [\"mcp:tools\", \"mcp:admin\"]",
            issuer.url
        ),
    ));
    let token = ed.sign(&claims(&issuer));
    for _ in 0..3 {
        let failure = check(&auth, &token).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::InsufficientScope);
        assert_eq!(failure.status(), 403);
        assert_eq!(
            auth.challenge(&failure).unwrap(),
            "Bearer error=\"insufficient_scope\", scope=\"mcp:tools mcp:admin\", resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/mcp\""
        );
    }
    let mut wide = claims(&issuer);
    wide["scope"] = json!("mcp:tools mcp:admin");
    check(&auth, &ed.sign(&wide)).await.unwrap();
    assert_eq!(issuer.hits("/jwks"), 1);
    // Missing credentials: 401 whose challenge names the scopes to request.
    let missing = auth.authenticate(&[], None).await.unwrap_err();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        auth.challenge(&missing).unwrap(),
        "Bearer scope=\"mcp:tools mcp:admin\", resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/mcp\""
    );
}

#[tokio::test]
async fn refuses_tokens_in_the_query_and_repeated_headers() {
    let ed = SigningKey::ed25519("d1");
    let issuer = Issuer::start(&[&ed]).await;
    let auth = authenticator(&config(&issuer, ""));
    let token = ed.sign(&claims(&issuer));
    let header = format!("Bearer {token}");
    let query = format!("access_token={token}");
    let failure = auth
        .authenticate(&[header.as_bytes()], Some(&query))
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Malformed);
    let failure = auth
        .authenticate(&[header.as_bytes(), header.as_bytes()], None)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Malformed);
    // Nothing was fetched for either.
    assert_eq!(issuer.hits("/jwks"), 0);
}

#[tokio::test]
async fn opaque_tokens_are_introspected_checked_and_cached() {
    let issuer = Issuer::start(&[]).await;
    let auth = authenticator(&config(
        &issuer,
        &format!(
            "[auth.introspection]\nendpoint = \"{}/introspect\"\nclient_id = \"warden-gateway\"\nclient_secret = \"env:UNUSED\"",
            issuer.url
        ),
    ));
    issuer.introspects(
        "opaque-good",
        json!({"active": true, "sub": "bob", "aud": RESOURCE, "exp": now() + 300, "scope": "a"}),
    );
    issuer.introspects("opaque-foreign", json!({"active": true, "sub": "bob", "aud": "https://other.example.com/mcp", "exp": now() + 300}));
    issuer.introspects(
        "opaque-expired",
        json!({"active": true, "sub": "bob", "aud": RESOURCE, "exp": now() - 300}),
    );
    let principal = check(&auth, "opaque-good").await.unwrap();
    assert_eq!(&*principal.subject, format!("{}#bob", issuer.url));
    check(&auth, "opaque-good").await.unwrap();
    assert_eq!(
        issuer.hits("/introspect"),
        1,
        "the second use is served from the cache"
    );
    for token in ["opaque-foreign", "opaque-expired", "opaque-unknown"] {
        assert_eq!(
            check(&auth, token).await.unwrap_err().kind,
            FailureKind::Invalid,
            "{token}"
        );
    }
    // A JWT-shaped token is introspected too when no JWKS is configured.
    assert_eq!(
        check(&auth, "a.b.c").await.unwrap_err().kind,
        FailureKind::Invalid
    );
    assert_eq!(issuer.hits("/introspect"), 5);
    // A refused token presented again is refused without asking again (for a while).
    for _ in 0..3 {
        assert_eq!(
            check(&auth, "opaque-unknown").await.unwrap_err().kind,
            FailureKind::Invalid
        );
    }
    assert_eq!(issuer.hits("/introspect"), 5, "refusals are remembered");
}

/// A flood of made-up opaque tokens cannot queue unbounded calls to the authorization server:
/// with 32 introspections in flight, the next token is refused at once as unavailable (503),
/// without a call; once they are answered, introspection works again.
#[tokio::test]
async fn introspections_in_flight_are_bounded() {
    let issuer = Issuer::start(&[]).await;
    let auth = Arc::new(authenticator(&config(
        &issuer,
        &format!(
            "[auth.introspection]\nendpoint = \"{}/introspect\"\nclient_id = \"warden-gateway\"\nclient_secret = \"env:UNUSED\"",
            issuer.url
        ),
    )));
    issuer.slow_introspection(Duration::from_millis(1500));
    let in_flight: Vec<_> = (0..32)
        .map(|n| {
            let auth = Arc::clone(&auth);
            tokio::spawn(async move { check(&auth, &format!("made-up-{n}")).await })
        })
        .collect();
    // Every one of them has reached the authorization server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while issuer.hits("/introspect") < 32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            issuer.hits("/introspect")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = check(&auth, "one-more").await.unwrap_err();
    assert_eq!(refused.kind, FailureKind::Unavailable, "{refused:?}");
    assert_eq!(refused.status(), 503);
    assert_eq!(issuer.hits("/introspect"), 32, "the 33rd was not asked");
    for call in in_flight {
        assert_eq!(call.await.unwrap().unwrap_err().kind, FailureKind::Invalid);
    }
    issuer.slow_introspection(Duration::ZERO);
    issuer.introspects(
        "opaque-good",
        json!({"active": true, "sub": "bob", "aud": RESOURCE, "exp": now() + 300}),
    );
    check(&auth, "opaque-good").await.unwrap();
}

/// `sub`, `client_id` and `username` are separate namespaces: a client (whose id it may choose)
/// or a user (whose name they may choose) named like another user's `sub` never becomes that
/// user, neither for sessions (`same_caller`) nor for policy (the subject string).
#[tokio::test]
async fn a_client_or_username_named_like_a_subject_is_another_principal() {
    let key = SigningKey::es256("e1");
    let issuer = Issuer::start(&[&key]).await;
    let auth = authenticator(&config(&issuer, ""));
    let introspecting = authenticator(&config(
        &issuer,
        &format!(
            "[auth.introspection]\nendpoint = \"{}/introspect\"\nclient_id = \"warden-gateway\"\nclient_secret = \"env:UNUSED\"",
            issuer.url
        ),
    ));
    let user = check(&auth, &key.sign(&claims(&issuer))).await.unwrap();
    let mut client_claims = claims(&issuer);
    let map = client_claims.as_object_mut().unwrap();
    map.remove("sub");
    map.insert("client_id".into(), json!("alice"));
    let client = check(&auth, &key.sign(&client_claims)).await.unwrap();
    issuer.introspects(
        "opaque-named",
        json!({"active": true, "username": "alice", "aud": RESOURCE, "exp": now() + 300}),
    );
    issuer.introspects(
        "opaque-client",
        json!({"active": true, "client_id": "alice", "aud": RESOURCE, "exp": now() + 300}),
    );
    let named = check(&introspecting, "opaque-named").await.unwrap();
    let introspected_client = check(&introspecting, "opaque-client").await.unwrap();

    assert_eq!(&*user.subject, format!("{}#alice", issuer.url));
    assert_eq!(&*client.subject, format!("client:{}#alice", issuer.url));
    assert_eq!(&*named.subject, format!("username:{}#alice", issuer.url));
    assert_eq!(
        client.subject, introspected_client.subject,
        "one client, whichever way its token is checked"
    );
    for (other, what) in [(&client, "client_id"), (&named, "username")] {
        assert!(!other.same_caller(&user), "{what} became the user");
        assert_ne!(other.subject, user.subject, "{what}");
    }
    assert!(!client.same_caller(&named));
}

#[tokio::test]
async fn an_unreachable_issuer_fails_closed_with_503() {
    let port = warden_test::free_port();
    let text = format!(
        "[auth]\nresource = \"{RESOURCE}\"\nissuer = \"http://127.0.0.1:{port}\"\nhttp_timeout = \"2s\"\n"
    );
    let config = Config::parse(&text, "warden.toml").unwrap();
    let auth = authenticator(&config);
    let ed = SigningKey::ed25519("d1");
    let token = ed.sign(&json!({"iss": format!("http://127.0.0.1:{port}"), "aud": RESOURCE, "sub": "a", "exp": now() + 60}));
    let failure = check(&auth, &token).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Unavailable);
    assert_eq!(failure.status(), 503);
    assert!(auth.challenge(&failure).is_none());
}

#[tokio::test]
async fn metadata_names_the_resource_and_the_issuer() {
    let issuer = Issuer::start(&[]).await;
    let auth = authenticator(&config(&issuer, "scopes_supported = [\"mcp:tools\"]"));
    let document: Value = serde_json::from_slice(auth.metadata().unwrap()).unwrap();
    assert_eq!(document["resource"], RESOURCE);
    assert_eq!(document["authorization_servers"], json!([issuer.url]));
    assert_eq!(document["scopes_supported"], json!(["mcp:tools"]));
    assert_eq!(document["bearer_methods_supported"], json!(["header"]));
}

fn toml_path(path: &std::path::Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap()
}

#[tokio::test]
async fn an_issuer_behind_an_internal_ca_is_trusted_only_with_ca_file() {
    let ca = warden_test::tls::internal_ca("127.0.0.1");
    let ed = SigningKey::ed25519("d1");
    let certificate = ca.issue("127.0.0.1");
    let issuer = Issuer::start_tls(&[&ed], &certificate).await;
    assert!(issuer.url.starts_with("https://"), "{}", issuer.url);
    let token = ed.sign(&claims(&issuer));

    // The Mozilla roots alone: the issuer's certificate chains to nothing trusted; the
    // gateway cannot decide, and says so (503), without fetching anything.
    let plain = authenticator(&config(&issuer, ""));
    let failure = check(&plain, &token).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Unavailable, "{failure:?}");
    assert!(
        failure.detail.contains("UnknownIssuer"),
        "{}",
        failure.detail
    );
    assert_eq!(issuer.hits("/jwks"), 0);

    // With the authority's certificate: discovery and JWKS over TLS, the token is accepted.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, &ca.ca_pem).unwrap();
    let trusting = authenticator(&config(&issuer, &format!("ca_file = {}", toml_path(&file))));
    let principal = check(&trusting, &token).await.unwrap();
    assert_eq!(&*principal.subject, format!("{}#alice", issuer.url));
    assert_eq!(issuer.hits("/jwks"), 1);
}

#[tokio::test]
async fn an_unusable_ca_file_stops_the_authenticator_naming_the_field() {
    let issuer = Issuer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for file in [missing, empty] {
        let config = config(&issuer, &format!("ca_file = {}", toml_path(&file)));
        let Err(error) = Authenticator::new(&config.auth, None, None) else {
            panic!("an unusable ca_file must be refused: {}", file.display());
        };
        let text = error.to_string();
        assert!(text.starts_with("auth.ca_file: "), "{text}");
        assert!(text.contains(&file.display().to_string()), "{text}");
    }
}

#[test]
fn ca_file_requires_an_issuer() {
    let error = Config::parse(
        "[auth]\napi_keys = true\nca_file = \"/x.pem\"\n",
        "warden.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("ca_file"), "{error}");
    assert!(error.contains("issuer"), "{error}");
}

/// A JWT's `typ`: an access token (`at+jwt`, any case, with or without `application/`) or an
/// untyped/`JWT` one passes; a token typed as anything else (a logout token, a security event
/// token, a DPoP proof) is refused before its key is even looked up, and with
/// `require_at_jwt` only `at+jwt` passes.
#[tokio::test]
async fn a_jwt_typed_as_something_else_than_an_access_token_is_refused() {
    let key = SigningKey::es256("t1");
    let issuer = Issuer::start(&[&key]).await;
    let lenient = authenticator(&config(&issuer, ""));
    let strict = authenticator(&config(&issuer, "require_at_jwt = true"));
    let typed = |typ: Option<&str>| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("t1".to_owned());
        header.typ = typ.map(str::to_owned);
        key.sign_with(&header, &claims(&issuer))
    };
    for (typ, lenient_ok, strict_ok) in [
        (Some("at+jwt"), true, true),
        (Some("application/AT+JWT"), true, true),
        (Some("JWT"), true, false),
        (None, true, false),
        (Some("logout+jwt"), false, false),
        (Some("secevent+jwt"), false, false),
        (Some("dpop+jwt"), false, false),
        (Some("id_token+jwt"), false, false),
    ] {
        let token = typed(typ);
        for (auth, ok) in [(&lenient, lenient_ok), (&strict, strict_ok)] {
            let got = check(auth, &token).await;
            assert_eq!(got.is_ok(), ok, "{typ:?}: {got:?}");
            if let Err(failure) = got {
                assert_eq!(failure.kind, FailureKind::Invalid, "{typ:?}");
            }
        }
    }
}
