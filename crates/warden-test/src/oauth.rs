//! A real OAuth authorization server for tests, on 127.0.0.1: it publishes RFC 8414 metadata
//! and a JWKS over HTTP, answers RFC 7662 introspection, and signs tokens with keys generated
//! in the test (RS256, ES256, EdDSA) using the independent `jsonwebtoken` implementation.
//! Every request is counted per path, so tests can prove what the gateway fetched.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use serde_json::{Value, json};

/// A signing key with its public JWK.
pub struct SigningKey {
    /// `kid`.
    pub kid: String,
    /// The algorithm.
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public JWK (with `kid`, `alg`, `use`).
    pub jwk: Value,
    /// RSA only: the public key as PKCS#1 DER (an attacker's HMAC secret).
    pub public_der: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A fresh RSA 2048 key for RS256.
    pub fn rs256(kid: &str) -> Self {
        use rsa::pkcs1::{EncodeRsaPrivateKey as _, EncodeRsaPublicKey as _};
        use rsa::traits::PublicKeyParts as _;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        let public_der = key
            .to_public_key()
            .to_pkcs1_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        Self {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())}),
            public_der,
        }
    }

    /// A fresh P-256 key for ES256.
    pub fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = sig::EcdsaKeyPair::from_pkcs8(
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let point = pair.public_key().as_ref();
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": b64(&point[1..33]), "y": b64(&point[33..])}),
            public_der: Vec::new(),
        }
    }

    /// A fresh Ed25519 key for EdDSA.
    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                "x": b64(pair.public_key().as_ref())}),
            public_der: Vec::new(),
        }
    }

    /// A token with `claims`, signed, with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with(&header, claims)
    }

    /// A token with a custom header, signed with this key.
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).unwrap()
    }
}

/// An unsigned token (`alg: none`, empty signature).
pub fn unsigned(kid: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": kid, "typ": "JWT"})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// The key-confusion forgery: HS256 with the issuer's *public* RSA key as the HMAC secret.
pub fn hmac_with_public_key(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&key.public_der)).unwrap()
}

/// Shared state of the running server.
#[derive(Default)]
pub struct State {
    /// The JWKS served at `/jwks` (replaceable: key rotation).
    pub jwks: Value,
    /// Introspection answers by token; unknown tokens are `{"active": false}`.
    pub introspection: HashMap<String, Value>,
    /// Requests per path.
    pub hits: HashMap<String, usize>,
    /// How long each introspection takes to answer (a slow authorization server).
    pub introspection_delay: std::time::Duration,
}

/// A running authorization server.
pub struct Issuer {
    /// The issuer identifier, `http://127.0.0.1:PORT`.
    pub url: String,
    /// `client_id` the introspection endpoint accepts.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Shared state.
    pub state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Issuer {
    /// Starts the server, publishing `keys`.
    pub async fn start(keys: &[&SigningKey]) -> Issuer {
        Issuer::start_with(keys, None).await
    }

    /// Starts the server over HTTPS (`https://127.0.0.1:PORT`), presenting `certificate` (made
    /// for `127.0.0.1`, by a test authority), publishing `keys`.
    pub async fn start_tls(keys: &[&SigningKey], certificate: &crate::tls::Issued) -> Issuer {
        Issuer::start_with(keys, Some(crate::tls::acceptor(certificate))).await
    }

    async fn start_with(keys: &[&SigningKey], tls: Option<tokio_rustls::TlsAcceptor>) -> Issuer {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{}", addr.port());
        let state = Arc::new(Mutex::new(State {
            jwks: json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}),
            ..State::default()
        }));
        let (client_id, client_secret) = (
            "warden-gateway".to_owned(),
            "introspection secret".to_owned(),
        );
        let context = Arc::new((
            url.clone(),
            client_id.clone(),
            client_secret.clone(),
            Arc::clone(&state),
        ));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let context = Arc::clone(&context);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let context = Arc::clone(&context);
                        async move { Ok::<_, Infallible>(handle(&context, request).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        // A client that refuses the certificate ends the handshake.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Issuer {
            url,
            client_id,
            client_secret,
            state,
            task,
        }
    }

    /// Requests served for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Replaces the published keys.
    pub fn publish(&self, keys: &[&SigningKey]) {
        self.state.lock().unwrap().jwks =
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    /// Makes every introspection take `delay` before it answers.
    pub fn slow_introspection(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().introspection_delay = delay;
    }

    /// Makes introspection answer `answer` for `token`.
    pub fn introspects(&self, token: &str, answer: Value) {
        self.state
            .lock()
            .unwrap()
            .introspection
            .insert(token.to_owned(), answer);
    }
}

type Context = (String, String, String, Arc<Mutex<State>>);

async fn handle(context: &Context, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (issuer, client_id, client_secret, state) = context;
    let path = request.uri().path().to_owned();
    *state.lock().unwrap().hits.entry(path.clone()).or_default() += 1;
    let reply = |status: StatusCode, value: Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(value.to_string())))
            .unwrap()
    };
    match path.as_str() {
        "/.well-known/oauth-authorization-server" => reply(
            StatusCode::OK,
            json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
                "introspection_endpoint": format!("{issuer}/introspect")}),
        ),
        "/jwks" => reply(StatusCode::OK, state.lock().unwrap().jwks.clone()),
        "/introspect" => {
            let expected = format!(
                "Basic {}",
                STANDARD.encode(format!("{client_id}:{}", client_secret.replace(' ', "+")))
            );
            let authorized = request
                .headers()
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == expected.as_bytes());
            if !authorized {
                return reply(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
            }
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let delay = state.lock().unwrap().introspection_delay;
            tokio::time::sleep(delay).await;
            let token = url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let answer = state
                .lock()
                .unwrap()
                .introspection
                .get(&token)
                .cloned()
                .unwrap_or_else(|| json!({"active": false}));
            reply(StatusCode::OK, answer)
        }
        _ => reply(StatusCode::NOT_FOUND, json!({})),
    }
}
