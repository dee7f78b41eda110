//! Cost of authenticating one request.
//!
//! - `authn/bearer_cached`: the per-request path once a token has been validated (header
//!   parsing, SHA-256 of the token, cache lookup, scope check), JWKS fetched from a real
//!   issuer on 127.0.0.1 beforehand.
//! - `authn/verify/<alg>`: a first sight of a token: parsing, signature and claim checks.
//! - `authn/api_key`: checksum, HMAC-SHA-256 and record checks of an API key.
#![allow(missing_docs)]
#![expect(clippy::unwrap_used, reason = "bench setup")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt as _;
use serde_json::json;
use warden_auth::api_key::{ApiKeyVerifier, HmacKey, KeyAdmin};
use warden_auth::jwt::{self, ClaimRules, VerifyingKey};
use warden_auth::{Authenticator, Secret};
use warden_config::{Config, JwsAlgorithm};
use warden_store::{DynStore, MemoryStore};
use warden_test::oauth::{Issuer, SigningKey};

const RESOURCE: &str = "https://gw.example.com/mcp";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let keys = [
        (JwsAlgorithm::Rs256, SigningKey::rs256("rsa")),
        (JwsAlgorithm::Es256, SigningKey::es256("ec")),
        (JwsAlgorithm::EdDsa, SigningKey::ed25519("ed")),
    ];
    let issuer = runtime.block_on(Issuer::start(
        &keys.iter().map(|(_, k)| k).collect::<Vec<_>>(),
    ));
    let claims = json!({"iss": issuer.url, "aud": RESOURCE, "sub": "alice", "exp": now() + 3600,
        "scope": "mcp:tools mcp:read", "roles": ["dev"]});
    let text = format!(
        "[auth]\nresource = \"{RESOURCE}\"\nissuer = \"{}\"\njwks_uri = \"{}/jwks\"\nrequired_scopes = [\"mcp:tools\"]\n",
        issuer.url, issuer.url
    );
    let config = Config::parse(&text, "warden.toml").unwrap();
    let auth = Authenticator::new(&config.auth, None::<Secret>, None).unwrap();

    let mut group = c.benchmark_group("authn");
    let header = format!("Bearer {}", keys[0].1.sign(&claims));
    runtime
        .block_on(auth.authenticate(&[header.as_bytes()], None))
        .unwrap();
    group.bench_function("bearer_cached", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                auth.authenticate(&[black_box(header.as_bytes())], None)
                    .await
                    .unwrap(),
            )
        });
    });

    let roles = vec!["roles".to_owned()];
    let rules = ClaimRules {
        issuer: &issuer.url,
        audience: RESOURCE,
        leeway: 60,
        roles_claims: &roles,
    };
    for (alg, key) in &keys {
        let token = key.sign(&claims);
        let verifying = VerifyingKey::from_jwk(&key.jwk).unwrap();
        let at = now();
        group.bench_function(format!("verify/{alg}"), |b| {
            b.iter(|| {
                let parsed = jwt::parse(black_box(&token)).unwrap();
                let alg = jwt::algorithm(&parsed.header, JwsAlgorithm::DEFAULT).unwrap();
                verifying
                    .verify(alg, parsed.signing_input, &parsed.signature)
                    .unwrap();
                black_box(jwt::check_claims(&parsed.payload, &rules, at).unwrap())
            });
        });
    }

    let store: DynStore = Arc::new(MemoryStore::default());
    let hmac = HmacKey::from_bytes(&[9; 32]);
    let created = runtime
        .block_on(
            KeyAdmin {
                store: &store,
                hmac: &hmac,
            }
            .create("ci-bot", vec!["deployer".into()], None, None),
        )
        .unwrap();
    let opener_store = Arc::clone(&store);
    let verifier = ApiKeyVerifier::new(
        HmacKey::from_bytes(&[9; 32]),
        Arc::new(move || {
            let store = Arc::clone(&opener_store);
            async move { Ok(store) }.boxed()
        }),
    );
    runtime.block_on(verifier.refresh()).unwrap();
    let at = now();
    group.bench_function("api_key", |b| {
        b.iter(|| black_box(verifier.verify(black_box(&created.key), at).unwrap()));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
