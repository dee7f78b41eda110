//! Authentication of the gateway's HTTP face: who is calling, proven by an OAuth 2.1 bearer
//! token or an API key, turned into a [`Principal`].
//!
//! Position on the request path: first, right after the DNS-rebinding checks of the HTTP
//! server and before any session lookup or body parsing, so a refused caller learns nothing
//! about sessions or upstreams. The HTTP face calls [`Authenticator::authenticate`] with the
//! request's `Authorization` headers and answers a [`Failure`] with the status and
//! `WWW-Authenticate` challenge it names.
//!
//! - **Bearer JWTs** ([`jwt`]) are verified against the issuer's JWKS ([`jwks`]): algorithm
//!   allow-list (never `none` or HMAC), key type bound to the algorithm, `iss`, `aud` equal to
//!   this gateway's resource URI (RFC 8707), `exp`/`nbf` with a small leeway.
//! - **Opaque tokens** go to RFC 7662 introspection ([`introspect`]) when configured.
//! - **API keys** ([`api_key`]) are `mwk_…` keys stored only as an HMAC.
//! - **Metadata**: the RFC 9728 protected resource document ([`Authenticator::metadata`]).
//!
//! What this crate must never do: accept a token issued for another audience, pass a token on
//! (it returns a principal, never the credential), log or return a token, key or secret,
//! listen on a socket, or wait on the network without a timeout (its only outbound requests go
//! to the configured authorization server, bounded by `http_timeout`, without redirects).
#![forbid(unsafe_code)]

pub mod api_key;
mod cache;
mod fetch;
pub mod introspect;
pub mod jwks;
pub mod jwt;
mod secret;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tracing::debug;
use url::Url;
use warden_config::{AuthConfig, JwsAlgorithm};
use warden_guard::{AuthMethod, Principal};

pub use api_key::{ApiKeyVerifier, HmacKey, KeyAdmin, KeyRecord};
pub use fetch::{FetchError, Http, MAX_DOCUMENT_BYTES};
pub use secret::Secret;

use cache::TokenCache;
use introspect::{IntrospectionError, Introspector};
use jwks::Jwks;
use jwt::{Accepted, ClaimRules, JwtError, SubjectClaim};

/// The RFC 9728 well-known path prefix.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Why the authenticator cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Introspection is configured but its secret was not given.
    #[error("introspection is configured but no client secret was resolved")]
    MissingSecret,
    /// OAuth is configured without a resource URI.
    #[error("OAuth needs the gateway's resource URI (`resource` or `public_url`)")]
    NoResource,
    /// `ca_file` could not be used as a set of trust anchors.
    #[error("auth.ca_file: {0}")]
    CaFile(String),
}

/// How a request failed authentication; maps to an HTTP status and challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No credential: 401 with a challenge and no error code.
    Missing,
    /// A malformed `Authorization` header, several of them, or a token in the query: 400
    /// `invalid_request`.
    Malformed,
    /// A credential that is not valid: 401 `invalid_token`.
    Invalid,
    /// A valid token without the required scopes: 403 `insufficient_scope`.
    InsufficientScope,
    /// The authorization server could not be reached to decide: 503.
    Unavailable,
}

/// A refused request: the kind (what the client is told) and a detail for logs and audit
/// (never the credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the client is told.
    pub kind: FailureKind,
    /// Why, for logs and audit.
    pub detail: String,
}

impl Failure {
    fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self.kind {
            FailureKind::Missing | FailureKind::Invalid => 401,
            FailureKind::Malformed => 400,
            FailureKind::InsufficientScope => 403,
            FailureKind::Unavailable => 503,
        }
    }

    /// The stable message the client gets in the JSON-RPC error.
    pub fn message(&self) -> &'static str {
        match self.kind {
            FailureKind::Missing => "authentication required",
            FailureKind::Malformed => "malformed authorization request",
            FailureKind::Invalid => "invalid credentials",
            FailureKind::InsufficientScope => "insufficient scope",
            FailureKind::Unavailable => "authentication temporarily unavailable",
        }
    }
}

/// The settings of the OAuth part.
#[derive(Debug)]
struct OAuth {
    issuer: String,
    audience: String,
    algorithms: Vec<JwsAlgorithm>,
    leeway: u64,
    require_at_jwt: bool,
    roles_claims: Vec<String>,
    jwks: Option<Jwks>,
    introspector: Option<Introspector>,
    introspection_ttl: Duration,
    /// Seconds a validated JWT is served from the cache at most: its signing key is looked up
    /// again at least as often as the key set is refreshed, so a key the issuer withdrew stops
    /// being accepted then, whatever the token's `exp`.
    jwks_max_age: u64,
}

impl OAuth {
    fn rules(&self) -> ClaimRules<'_> {
        ClaimRules {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway: self.leeway,
            roles_claims: &self.roles_claims,
        }
    }
}

/// Authenticates requests of the HTTP face.
#[derive(Debug)]
pub struct Authenticator {
    oauth: Option<OAuth>,
    api_keys: Option<Arc<ApiKeyVerifier>>,
    required_scopes: Vec<String>,
    /// `resource_metadata="…"` target.
    metadata_url: Option<String>,
    /// The PRM document.
    metadata: Option<Bytes>,
    cache: TokenCache,
    /// Tokens introspection refused lately, by digest, until when: asked again only after
    /// [`REFUSAL_TTL_SECS`], so a client repeating a bad token costs one call to the
    /// authorization server, not one per request.
    refused: TokenCache,
    /// Introspection calls in flight at most ([`MAX_INTROSPECTIONS`]): past it a new token
    /// is answered 503 at once, so a flood of made-up tokens cannot queue unbounded calls to
    /// the authorization server (and use up its quota for the gateway).
    introspections: tokio::sync::Semaphore,
}

/// Seconds a token introspection refused is refused again without asking.
const REFUSAL_TTL_SECS: u64 = 15;
/// Introspection calls in flight at once, at most.
const MAX_INTROSPECTIONS: usize = 32;

impl Authenticator {
    /// Builds the authenticator for `config`. `introspection_secret` is the resolved
    /// `client_secret` when introspection is configured; `api_keys` the verifier when API keys
    /// are enabled. Nothing is fetched yet.
    pub fn new(
        config: &AuthConfig,
        introspection_secret: Option<Secret>,
        api_keys: Option<Arc<ApiKeyVerifier>>,
    ) -> Result<Self, AuthError> {
        let mut metadata_url = None;
        let mut metadata = None;
        let oauth = match &config.oauth {
            None => None,
            Some(o) => {
                let resource = config.resource.as_ref().ok_or(AuthError::NoResource)?;
                let tls = warden_http::TlsOptions::trusting(o.ca_file.as_deref())
                    .map_err(AuthError::CaFile)?;
                let http = fetch::Http::new(o.http_timeout, tls);
                let introspector = match &o.introspection {
                    None => None,
                    Some(i) => Some(Introspector::new(
                        i.endpoint.clone(),
                        i.client_id.clone(),
                        introspection_secret.ok_or(AuthError::MissingSecret)?,
                        http.clone(),
                    )),
                };
                metadata_url = Some(metadata_url_for(resource));
                let scopes = &config.scopes_supported;
                let mut document = json!({
                    "resource": resource.as_str(),
                    "authorization_servers": [o.issuer],
                    "bearer_methods_supported": ["header"],
                });
                if !scopes.is_empty() {
                    document["scopes_supported"] = json!(scopes);
                }
                if o.jwt {
                    document["resource_signing_alg_values_supported"] =
                        json!(o.algorithms.iter().map(|a| a.as_str()).collect::<Vec<_>>());
                }
                metadata = Some(Bytes::from(document.to_string()));
                Some(OAuth {
                    issuer: o.issuer.clone(),
                    audience: o.audience.clone(),
                    algorithms: o.algorithms.clone(),
                    leeway: o.leeway.as_secs(),
                    require_at_jwt: o.require_at_jwt,
                    roles_claims: o.roles_claims.clone(),
                    jwks: o.jwt.then(|| Jwks::new(o, http.clone())),
                    introspector,
                    introspection_ttl: o
                        .introspection
                        .as_ref()
                        .map_or(Duration::ZERO, |i| i.cache_ttl),
                    jwks_max_age: o.jwks_max_age.as_secs().max(1),
                })
            }
        };
        Ok(Self {
            oauth,
            api_keys,
            required_scopes: config.required_scopes.clone(),
            metadata_url,
            metadata,
            cache: TokenCache::new(cache::MAX_CACHED_TOKENS),
            refused: TokenCache::new(cache::MAX_CACHED_TOKENS),
            introspections: tokio::sync::Semaphore::new(MAX_INTROSPECTIONS),
        })
    }

    /// The RFC 9728 document, when OAuth is configured.
    pub fn metadata(&self) -> Option<&Bytes> {
        self.metadata.as_ref()
    }

    /// Authenticates a request from its `Authorization` header values and its query string.
    pub async fn authenticate(
        &self,
        authorization: &[&[u8]],
        query: Option<&str>,
    ) -> Result<Principal, Failure> {
        // Tokens in URIs end up in logs and histories; the specification forbids them.
        if let Some(query) = query
            && url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "access_token")
        {
            return Err(Failure::new(
                FailureKind::Malformed,
                "access token in the query string",
            ));
        }
        let token = match authorization {
            [] => return Err(Failure::new(FailureKind::Missing, "no credentials")),
            [value] => bearer_token(value)?,
            _ => {
                return Err(Failure::new(
                    FailureKind::Malformed,
                    "several authorization headers",
                ));
            }
        };
        let now = api_key::unix_now();
        if token.starts_with(api_key::KEY_PREFIX) {
            let Some(keys) = &self.api_keys else {
                return Err(Failure::new(
                    FailureKind::Invalid,
                    "api keys are not enabled",
                ));
            };
            return keys
                .verify(token, now)
                .map_err(|refusal| Failure::new(FailureKind::Invalid, refusal.to_string()));
        }
        let Some(oauth) = &self.oauth else {
            return Err(Failure::new(
                FailureKind::Invalid,
                "bearer tokens are not enabled",
            ));
        };
        let digest = cache::digest(token);
        let principal = match self.cache.get(&digest, now) {
            Some(principal) => principal,
            None => {
                if self.refused.get(&digest, now).is_some() {
                    return Err(Failure::new(
                        FailureKind::Invalid,
                        "introspection refused the token (recently)",
                    ));
                }
                let (accepted, valid_until) = self.validate(oauth, token, &digest, now).await?;
                let principal = principal_of(&oauth.issuer, &accepted);
                self.cache.insert(
                    digest,
                    principal.clone(),
                    valid_until,
                    accepted
                        .not_before
                        .map(|nbf| nbf.saturating_sub(oauth.leeway)),
                    now,
                );
                principal
            }
        };
        self.check_scopes(&principal)?;
        Ok(principal)
    }

    /// Validates a bearer token; returns its claims and the last second it may be cached.
    async fn validate(
        &self,
        oauth: &OAuth,
        token: &str,
        digest: &cache::Digest,
        now: u64,
    ) -> Result<(Accepted, u64), Failure> {
        let invalid = |error: JwtError| Failure::new(FailureKind::Invalid, error.to_string());
        match (&oauth.jwks, &oauth.introspector) {
            (Some(jwks), _) if jwt::looks_like_jwt(token) => {
                let parsed = jwt::parse(token).map_err(invalid)?;
                jwt::token_type(&parsed.header, oauth.require_at_jwt).map_err(invalid)?;
                let alg = jwt::algorithm(&parsed.header, &oauth.algorithms).map_err(invalid)?;
                let key = match jwks.key(parsed.header.kid.as_deref(), alg).await {
                    Ok(Ok(key)) => key,
                    Ok(Err(refusal)) => return Err(invalid(refusal)),
                    Err(error) => {
                        // With its causes: "certificate ... UnknownIssuer" is what an operator
                        // needs to see, not only "cannot fetch".
                        let detail = warden_http::error_chain(&error);
                        debug!(error = %detail, "no signing keys available");
                        return Err(Failure::new(FailureKind::Unavailable, detail));
                    }
                };
                key.verify(alg, parsed.signing_input, &parsed.signature)
                    .map_err(invalid)?;
                let accepted =
                    jwt::check_claims(&parsed.payload, &oauth.rules(), now).map_err(invalid)?;
                let until = accepted
                    .expires
                    .saturating_add(oauth.leeway)
                    .min(now.saturating_add(oauth.jwks_max_age));
                Ok((accepted, until))
            }
            (_, Some(introspector)) => {
                if token.len() > jwt::MAX_TOKEN_BYTES {
                    return Err(invalid(JwtError::Malformed));
                }
                let Ok(_slot) = self.introspections.try_acquire() else {
                    return Err(Failure::new(
                        FailureKind::Unavailable,
                        "too many token introspections in flight",
                    ));
                };
                match introspector.introspect(token, &oauth.rules(), now).await {
                    Ok(accepted) => {
                        let ttl = oauth.introspection_ttl.as_secs();
                        let until = accepted.expires.min(now.saturating_add(ttl));
                        Ok((accepted, until))
                    }
                    Err(IntrospectionError::Fetch(error)) => {
                        let detail = warden_http::error_chain(&error);
                        debug!(error = %detail, "introspection unavailable");
                        Err(Failure::new(FailureKind::Unavailable, detail))
                    }
                    Err(refusal) => {
                        let until = now.saturating_add(REFUSAL_TTL_SECS);
                        self.refused
                            .insert(*digest, Principal::anonymous(), until, None, now);
                        Err(Failure::new(FailureKind::Invalid, refusal.to_string()))
                    }
                }
            }
            _ => Err(invalid(JwtError::Malformed)),
        }
    }

    /// Bearer principals must hold every required scope; API keys carry no scopes and are not
    /// subject to them.
    fn check_scopes(&self, principal: &Principal) -> Result<(), Failure> {
        if principal.method != AuthMethod::Bearer {
            return Ok(());
        }
        let missing: Vec<&str> = self
            .required_scopes
            .iter()
            .filter(|scope| !principal.has_scope(scope))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(
                FailureKind::InsufficientScope,
                format!("missing scopes: {}", missing.join(" ")),
            ))
        }
    }

    /// The `WWW-Authenticate` value for `failure` (none for 503).
    pub fn challenge(&self, failure: &Failure) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        match failure.kind {
            FailureKind::Missing => {}
            FailureKind::Malformed => parts.push("error=\"invalid_request\"".into()),
            FailureKind::Invalid => parts.push("error=\"invalid_token\"".into()),
            FailureKind::InsufficientScope => parts.push("error=\"insufficient_scope\"".into()),
            FailureKind::Unavailable => return None,
        }
        // Every required scope in one challenge, so a client steps up once (MCP authorization
        // §11.1.1); scope values are checked scope tokens, safe inside a quoted string.
        if !self.required_scopes.is_empty()
            && matches!(
                failure.kind,
                FailureKind::Missing | FailureKind::InsufficientScope
            )
        {
            parts.push(format!("scope=\"{}\"", self.required_scopes.join(" ")));
        }
        match &self.metadata_url {
            Some(url) => parts.push(format!("resource_metadata=\"{url}\"")),
            None => parts.push("realm=\"mcp-warden\"".into()),
        }
        Some(format!("Bearer {}", parts.join(", ")))
    }
}

/// `Bearer <token>` → the token (RFC 6750 §2.1: `b64token`, scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Result<&str, Failure> {
    let malformed = || Failure::new(FailureKind::Malformed, "malformed authorization header");
    let value = std::str::from_utf8(value).map_err(|_| malformed())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Failure::new(
            FailureKind::Missing,
            "unsupported authorization scheme",
        ));
    }
    let token = rest.trim_matches(' ');
    let body = token.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if ok { Ok(token) } else { Err(malformed()) }
}

/// `https://gw/.well-known/oauth-protected-resource/<path>` (RFC 9728 §3.1: the well-known
/// segment goes between the host and the resource's path).
pub fn metadata_url_for(resource: &Url) -> String {
    let mut url = resource.clone();
    let path = resource.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{METADATA_PATH}{path}"));
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The principal of an accepted token. A `sub` is `<issuer>#<sub>`; a subject from another
/// claim is prefixed with that claim's name (`client:<issuer>#<client_id>`,
/// `username:<issuer>#<username>`). The issuer is an http(s) URL, so a `sub` principal always
/// starts with `http` and can never be spelled like one of the others, whatever the values.
pub(crate) fn principal_of(issuer: &str, accepted: &Accepted) -> Principal {
    let subject = &accepted.subject;
    let name = match accepted.subject_claim {
        SubjectClaim::Sub => format!("{issuer}#{subject}"),
        SubjectClaim::Username => format!("username:{issuer}#{subject}"),
        SubjectClaim::ClientId => format!("client:{issuer}#{subject}"),
    };
    Principal::new(name, AuthMethod::Bearer)
        .with_roles(accepted.roles.iter().map(String::as_str))
        .with_scopes(accepted.scopes.iter().map(String::as_str))
}

#[cfg(test)]
mod tests;
