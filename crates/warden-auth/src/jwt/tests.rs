use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use serde_json::{Value, json};

use super::*;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn compact(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

struct Ed {
    pair: sig::Ed25519KeyPair,
}

impl Ed {
    fn new() -> Self {
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Self {
            pair: sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        }
    }
    fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(self.pair.public_key().as_ref())})
    }
    fn token(&self, claims: &Value) -> String {
        compact(&json!({"alg": "EdDSA", "kid": "ed"}), claims, |m| {
            self.pair.sign(m).as_ref().to_vec()
        })
    }
}

fn p256_jwk() -> (sig::EcdsaKeyPair, Value) {
    let rng = SystemRandom::new();
    let pkcs8 =
        sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..])});
    (pair, jwk)
}

const ISS: &str = "https://as.example.com";
const AUD: &str = "https://gw.example.com/mcp";
const NOW: u64 = 1_800_000_000;

fn rules(roles: &[String]) -> ClaimRules<'_> {
    ClaimRules {
        issuer: ISS,
        audience: AUD,
        leeway: 60,
        roles_claims: roles,
    }
}

fn good_claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": NOW + 600, "nbf": NOW - 10, "scope": "mcp:read mcp:write"})
}

#[test]
fn verifies_an_ed25519_token_and_refuses_a_tampered_one() {
    let ed = Ed::new();
    let key = VerifyingKey::from_jwk(&ed.jwk()).unwrap();
    let token = ed.token(&good_claims());
    let parsed = parse(&token).unwrap();
    let alg = algorithm(&parsed.header, JwsAlgorithm::DEFAULT).unwrap();
    key.verify(alg, parsed.signing_input, &parsed.signature)
        .unwrap();

    // Same header and signature, different payload.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = b64(
        json!({"iss": ISS, "aud": AUD, "sub": "mallory", "exp": NOW + 600})
            .to_string()
            .as_bytes(),
    );
    parts[1] = &forged;
    let forged = parts.join(".");
    let parsed = parse(&forged).unwrap();
    assert_eq!(
        key.verify(alg, parsed.signing_input, &parsed.signature),
        Err(JwtError::Signature)
    );
}

#[test]
fn verifies_es256_and_binds_the_key_type_to_the_algorithm() {
    let (pair, jwk) = p256_jwk();
    let key = VerifyingKey::from_jwk(&jwk).unwrap();
    let rng = SystemRandom::new();
    let token = compact(&json!({"alg": "ES256", "kid": "ec"}), &good_claims(), |m| {
        pair.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    let parsed = parse(&token).unwrap();
    key.verify(JwsAlgorithm::Es256, parsed.signing_input, &parsed.signature)
        .unwrap();
    // An EC key never verifies for another algorithm, whatever the header says.
    for alg in [
        JwsAlgorithm::Rs256,
        JwsAlgorithm::EdDsa,
        JwsAlgorithm::Es384,
    ] {
        assert_eq!(
            key.verify(alg, parsed.signing_input, &parsed.signature),
            Err(JwtError::KeyMismatch(alg.as_str()))
        );
    }
}

#[test]
fn a_jwk_declaring_its_alg_is_used_only_for_it() {
    let mut jwk = Ed::new().jwk();
    jwk["alg"] = json!("ES256");
    let key = VerifyingKey::from_jwk(&jwk).unwrap();
    assert!(!key.fits(JwsAlgorithm::EdDsa));
}

#[test]
fn refuses_none_hmac_and_unlisted_algorithms() {
    for alg in ["none", "None", "HS256", "HS512", "ES512", "RS256 ", ""] {
        let header: Header = serde_json::from_value(json!({"alg": alg})).unwrap();
        assert!(
            matches!(
                algorithm(&header, JwsAlgorithm::ALL),
                Err(JwtError::Algorithm(_))
            ),
            "{alg}"
        );
    }
    let header: Header = serde_json::from_value(json!({"alg": "RS256"})).unwrap();
    assert!(algorithm(&header, &[JwsAlgorithm::Es256]).is_err());
}

#[test]
fn refuses_unusable_jwks_entries() {
    let ed = Ed::new().jwk();
    let cases = [
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "OKP", "crv": "X25519", "x": ed["x"]}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": ed["x"], "use": "enc"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": ed["x"], "key_ops": ["encrypt"]}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": ed["x"], "d": "private"}),
        json!({"kty": "RSA", "n": "", "e": "AQAB"}),
        json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
        json!("not an object"),
    ];
    for case in cases {
        assert!(VerifyingKey::from_jwk(&case).is_none(), "{case}");
    }
    assert!(VerifyingKey::from_jwk(&ed).is_some());
}

#[test]
fn refuses_malformed_compact_forms() {
    let ed = Ed::new();
    let token = ed.token(&good_claims());
    let (input, signature) = token.rsplit_once('.').unwrap();
    let cases = [
        String::new(),
        "a.b".into(),
        format!("{token}.x"),
        format!("{input}."),
        format!("{input}.{signature}="),
        format!("{input}.{signature}!"),
        format!(
            "{}.{}",
            b64(b"{\"alg\":\"EdDSA\""),
            &token[token.find('.').unwrap() + 1..]
        ),
        "x".repeat(MAX_TOKEN_BYTES + 1),
    ];
    for case in &cases {
        assert!(parse(case).is_err(), "{case:.80}");
    }
}

#[test]
fn refuses_critical_header_parameters() {
    let ed = Ed::new();
    let token = compact(
        &json!({"alg": "EdDSA", "kid": "ed", "crit": ["exp"], "exp": 1}),
        &good_claims(),
        |m| ed.pair.sign(m).as_ref().to_vec(),
    );
    assert_eq!(parse(&token).unwrap_err(), JwtError::Critical);
}

#[test]
fn accepts_good_claims_and_reads_scopes_and_roles() {
    let roles = vec!["roles".to_owned(), "realm_access.roles".to_owned()];
    let mut claims = good_claims();
    claims["scp"] = json!(["extra"]);
    claims["roles"] = json!("admin");
    claims["realm_access"] = json!({"roles": ["dev", 7, ""]});
    let ok = check_claims(claims.to_string().as_bytes(), &rules(&roles), NOW).unwrap();
    assert_eq!(ok.subject, "alice");
    assert_eq!(ok.scopes, ["mcp:read", "mcp:write", "extra"]);
    assert_eq!(ok.roles, ["admin", "dev"]);
    assert_eq!(ok.expires, NOW + 600);
}

#[test]
fn refuses_each_bad_claim() {
    let roles = [];
    let cases: Vec<(Value, JwtError)> = vec![
        (json!({"iss": "https://evil.example.com"}), JwtError::Issuer),
        (json!({"iss": null}), JwtError::Issuer),
        (
            json!({"aud": "https://other.example.com/mcp"}),
            JwtError::Audience,
        ),
        (
            json!({"aud": ["https://other.example.com/mcp"]}),
            JwtError::Audience,
        ),
        (json!({"aud": null}), JwtError::Audience),
        (json!({"exp": null}), JwtError::NoExpiry),
        (json!({"exp": "soon"}), JwtError::NoExpiry),
        (json!({"exp": NOW - 61}), JwtError::Expired),
        (json!({"nbf": NOW + 61}), JwtError::NotYetValid),
        (json!({"nbf": "later"}), JwtError::NotYetValid),
        (json!({"sub": ""}), JwtError::NoSubject),
    ];
    for (patch, expected) in cases {
        let mut claims = good_claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        assert_eq!(
            check_claims(claims.to_string().as_bytes(), &rules(&roles), NOW),
            Err(expected.clone()),
            "{patch}"
        );
    }
}

#[test]
fn leeway_tolerates_small_skew_only() {
    let mut claims = good_claims();
    claims["exp"] = json!(NOW - 60);
    claims["nbf"] = json!(NOW + 60);
    assert!(check_claims(claims.to_string().as_bytes(), &rules(&[]), NOW).is_ok());
}

#[test]
fn audience_compares_canonical_resource_uris() {
    assert!(same_resource("https://GW.example.com/mcp", AUD));
    assert!(same_resource("HTTPS://gw.example.com:443/mcp/", AUD));
    assert!(same_resource(AUD, AUD));
    assert!(!same_resource("https://gw.example.com/mcp2", AUD));
    assert!(!same_resource("https://gw.example.com/MCP", AUD));
    assert!(!same_resource("https://gw.example.com.evil/mcp", AUD));
    assert!(!same_resource("http://gw.example.com/mcp", AUD));
    assert!(same_resource("api://gateway", "api://gateway"));
    assert!(!same_resource("api://Gateway", "api://gateway"));
    // Only case, a default port and a trailing slash may differ: any other spelling the URL
    // parser would resolve to the same resource is another resource.
    for other in [
        "https://gw.example.com/other/%2e%2e/mcp",
        "https://gw.example.com/other/../mcp",
        "https://gw.example.com/./mcp",
        "https://\u{ff47}\u{ff57}.example.com/mcp",
        "https://gw.example.com\\mcp",
        "https://gw.example.com/m\tcp",
        "https://user@gw.example.com/mcp",
        "https://gw.example.com/%6dcp",
    ] {
        assert!(!same_resource(other, AUD), "{other}");
    }
    assert!(same_resource(
        "https://[::1]:8443/mcp",
        "https://[::1]:8443/mcp/"
    ));
    assert!(same_resource("https://gw.example.com:443/mcp", AUD));
}

proptest! {
    #[test]
    fn parse_never_panics(token in "[A-Za-z0-9_.=-]{0,300}") {
        let _ = parse(&token);
    }

    #[test]
    fn claims_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = check_claims(&payload, &rules(&["a.b".to_owned()]), NOW);
    }

    #[test]
    fn audience_match_is_reflexive_and_rejects_suffixes(path in "[a-z]{1,12}") {
        let aud = format!("https://gw.example.com/{path}");
        prop_assert!(same_resource(&aud, &aud));
        let longer = format!("{aud}x");
        prop_assert!(!same_resource(&longer, &aud));
    }
}

#[test]
fn token_type_accepts_access_tokens_only() {
    let header = |typ: Value| Header {
        alg: "ES256".into(),
        kid: None,
        crit: None,
        typ: (!typ.is_null()).then_some(typ),
    };
    assert!(token_type(&header(json!("at+jwt")), true).is_ok());
    assert!(token_type(&header(json!("Application/At+JWT")), true).is_ok());
    assert!(token_type(&header(json!("JWT")), false).is_ok());
    assert!(token_type(&header(Value::Null), false).is_ok());
    assert!(token_type(&header(json!("JWT")), true).is_err());
    assert!(token_type(&header(Value::Null), true).is_err());
    assert_eq!(
        token_type(&header(json!(["at+jwt"])), false),
        Err(JwtError::BadHeader)
    );
    assert_eq!(
        token_type(&header(json!("logout+jwt\u{1b}")), false),
        Err(JwtError::TokenType("logout+jwt?".into()))
    );
}
