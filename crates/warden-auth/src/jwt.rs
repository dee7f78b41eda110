//! Compact JWS parsing, signature verification and claim checks for bearer JWTs. No I/O.
//!
//! Order (each step refuses before the next runs, so a forged token never reaches the
//! verifier with attacker-chosen parameters):
//! 1. shape: three base64url segments (canonical, unpadded), bounded size;
//! 2. header: a JSON object with a string `alg` from the allow-list, no `crit`, a `typ` (if
//!    any) that is an access token's;
//! 3. key: chosen by `kid` from the issuer's JWKS and required to match `alg` (type, curve,
//!    the JWK's own `alg` and `use`), so an RSA public key can never act as an HMAC secret;
//! 4. signature;
//! 5. claims: `iss`, `aud`, `exp`, `nbf`, subject.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;
use serde::Deserialize;
use serde_json::{Map, Value};
use warden_config::JwsAlgorithm;

/// Largest token accepted: real access tokens are a few KiB; this bounds parsing work.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most roles taken from a token; bounds what a principal carries.
pub const MAX_ROLES: usize = 256;
/// Most scopes taken from a token.
pub const MAX_SCOPES: usize = 256;

/// Why a JWT was refused. The text is for logs and audit; clients get a generic message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url segments, or too large.
    #[error("malformed token")]
    Malformed,
    /// The header is not a JSON object with a string `alg`.
    #[error("malformed token header")]
    BadHeader,
    /// `alg` is not in the allow-list (this includes `none` and HMAC).
    #[error("algorithm `{0}` is not allowed")]
    Algorithm(String),
    /// `typ` says the token is not an access token (or, with `require_at_jwt`, not `at+jwt`).
    #[error("token type `{0}` is not an access token")]
    TokenType(String),
    /// The header names extensions (`crit`) the gateway does not implement.
    #[error("critical header parameters are not supported")]
    Critical,
    /// No key in the issuer's JWKS has this `kid`.
    #[error("unknown key id")]
    UnknownKey,
    /// No `kid`, and the JWKS does not have exactly one key for the algorithm.
    #[error("token has no key id and the key is ambiguous")]
    AmbiguousKey,
    /// The key's type, curve, `alg` or `use` does not fit the token's `alg`.
    #[error("the key does not match algorithm `{0}`")]
    KeyMismatch(&'static str),
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// The payload is not a JSON object.
    #[error("malformed claims")]
    BadClaims,
    /// `iss` missing or different.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` missing or not this resource.
    #[error("wrong audience")]
    Audience,
    /// `exp` missing or not a number.
    #[error("token has no valid exp claim")]
    NoExpiry,
    /// `exp` is past (with leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (with leeway), or not a number.
    #[error("token not yet valid")]
    NotYetValid,
    /// Neither `sub` nor `client_id` is a non-empty string.
    #[error("token has no subject")]
    NoSubject,
}

/// A token split into its parts; nothing verified yet.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The protected header.
    pub header: Header,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// The JOSE header fields the gateway reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Header {
    /// The algorithm, as written.
    pub alg: String,
    /// The key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Critical extensions; any value is refused.
    #[serde(default)]
    pub crit: Option<Value>,
    /// The token's media type (`at+jwt` for an RFC 9068 access token); not a string: refused.
    #[serde(default)]
    pub typ: Option<Value>,
}

/// True when `token` has the shape of a compact JWS (three non-empty base64url segments).
/// Used to route between local validation and introspection; proves nothing.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let shape = (parts.next(), parts.next(), parts.next(), parts.next());
    matches!(shape, (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty())
}

/// Splits and decodes a compact JWS and parses its header. Never panics, whatever the input.
pub fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode = |segment: &str| {
        URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| JwtError::Malformed)
    };
    let header_bytes = decode(h)?;
    let payload = decode(p)?;
    let signature = decode(s)?;
    if h.is_empty() || p.is_empty() || signature.is_empty() {
        return Err(JwtError::Malformed);
    }
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwtError::BadHeader)?;
    if header.crit.is_some() {
        return Err(JwtError::Critical);
    }
    Ok(Parsed {
        header,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        payload,
        signature,
    })
}

/// Checks the header's `typ` (RFC 8725 §3.11 explicit typing): an access token is `at+jwt`
/// (RFC 9068; `application/at+jwt` too, any case). A token typed as anything else ending in
/// `+jwt` (a logout token, a security event, a DPoP proof, ...) is never an access token and
/// is refused; so is a `typ` that is not a string. An untyped token or plain `JWT` (what most
/// issuers send) passes unless `require_at_jwt`.
pub fn token_type(header: &Header, require_at_jwt: bool) -> Result<(), JwtError> {
    let typ = match &header.typ {
        None => None,
        Some(Value::String(typ)) => Some(typ.to_ascii_lowercase()),
        Some(_) => return Err(JwtError::BadHeader),
    };
    let typ = typ
        .as_deref()
        .map(|t| t.strip_prefix("application/").unwrap_or(t));
    match typ {
        Some("at+jwt") => Ok(()),
        None | Some("jwt") if !require_at_jwt => Ok(()),
        other => Err(JwtError::TokenType(
            other
                .unwrap_or("(none)")
                .chars()
                .take(32)
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect(),
        )),
    }
}

/// The algorithm named by the header, if it is in `allowed`.
pub fn algorithm(header: &Header, allowed: &[JwsAlgorithm]) -> Result<JwsAlgorithm, JwtError> {
    JwsAlgorithm::from_name(&header.alg)
        .filter(|alg| allowed.contains(alg))
        // The name is attacker-chosen and ends up in logs: printable ASCII only, bounded.
        .ok_or_else(|| {
            JwtError::Algorithm(
                header
                    .alg
                    .chars()
                    .take(32)
                    .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                    .collect(),
            )
        })
}

/// A public key from a JWKS, decoded once when the JWKS is fetched.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    /// `kid`, if the JWK has one.
    pub kid: Option<String>,
    /// The JWK's own `alg`, if it declares one: then only that algorithm may use it.
    pub alg: Option<String>,
    /// The key material.
    pub material: KeyMaterial,
}

/// Key material by type.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// `kty: RSA`: big-endian modulus and exponent.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// `kty: EC, crv: P-256`: uncompressed point (`04 || x || y`).
    P256(Vec<u8>),
    /// `kty: EC, crv: P-384`: uncompressed point.
    P384(Vec<u8>),
    /// `kty: OKP, crv: Ed25519`: the 32-byte public key.
    Ed25519(Vec<u8>),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.material {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::P256(_) => "P-256",
            KeyMaterial::P384(_) => "P-384",
            KeyMaterial::Ed25519(_) => "Ed25519",
        };
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &kind)
            .finish()
    }
}

/// One JWK as published (only the members the gateway reads).
#[derive(Debug, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    /// Private members: a JWKS that publishes them is misconfigured; such a key is skipped.
    #[serde(default)]
    d: Option<Value>,
}

impl VerifyingKey {
    /// Decodes one JWK. `None` for keys the gateway cannot or must not use for verification
    /// (symmetric `oct` keys, encryption keys, unsupported curves, malformed members,
    /// published private keys).
    pub fn from_jwk(value: &Value) -> Option<Self> {
        let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
        if jwk.d.is_some() {
            return None;
        }
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        if let Some(ops) = &jwk.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return None;
        }
        let b64 = |field: &Option<String>| URL_SAFE_NO_PAD.decode(field.as_deref()?).ok();
        let fixed = |field: &Option<String>, len: usize| b64(field).filter(|v| v.len() == len);
        let material = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => {
                let n = b64(&jwk.n)?;
                let e = b64(&jwk.e)?;
                if n.is_empty() || e.is_empty() {
                    return None;
                }
                KeyMaterial::Rsa { n, e }
            }
            ("EC", Some("P-256")) => {
                let mut point = vec![4];
                point.extend(fixed(&jwk.x, 32)?);
                point.extend(fixed(&jwk.y, 32)?);
                KeyMaterial::P256(point)
            }
            ("EC", Some("P-384")) => {
                let mut point = vec![4];
                point.extend(fixed(&jwk.x, 48)?);
                point.extend(fixed(&jwk.y, 48)?);
                KeyMaterial::P384(point)
            }
            ("OKP", Some("Ed25519")) => KeyMaterial::Ed25519(fixed(&jwk.x, 32)?),
            _ => return None,
        };
        Some(Self {
            kid: jwk.kid,
            alg: jwk.alg,
            material,
        })
    }

    /// True when this key may verify `alg`: the key type (and curve) fits, and the JWK's own
    /// `alg`, when present, is `alg`.
    pub fn fits(&self, alg: JwsAlgorithm) -> bool {
        use JwsAlgorithm::*;
        let kind_fits = match self.material {
            KeyMaterial::Rsa { .. } => matches!(alg, Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512),
            KeyMaterial::P256(_) => alg == Es256,
            KeyMaterial::P384(_) => alg == Es384,
            KeyMaterial::Ed25519(_) => alg == EdDsa,
        };
        kind_fits
            && self
                .alg
                .as_deref()
                .is_none_or(|declared| declared == alg.as_str())
    }

    /// Verifies `signature` over `message` with this key and `alg`.
    pub fn verify(
        &self,
        alg: JwsAlgorithm,
        message: &[u8],
        signature_bytes: &[u8],
    ) -> Result<(), JwtError> {
        use JwsAlgorithm::*;
        if !self.fits(alg) {
            return Err(JwtError::KeyMismatch(alg.as_str()));
        }
        let result = match &self.material {
            KeyMaterial::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(JwtError::KeyMismatch(alg.as_str())),
                };
                signature::RsaPublicKeyComponents { n, e }.verify(params, message, signature_bytes)
            }
            KeyMaterial::P256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature_bytes)
            }
            KeyMaterial::P384(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature_bytes)
            }
            KeyMaterial::Ed25519(key) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, key)
                    .verify(message, signature_bytes)
            }
        };
        result.map_err(|_| JwtError::Signature)
    }
}

/// What the claims must satisfy.
#[derive(Debug, Clone)]
pub struct ClaimRules<'a> {
    /// Exact `iss`.
    pub issuer: &'a str,
    /// The `aud` (string or one of an array) that must be present.
    pub audience: &'a str,
    /// Seconds of clock skew tolerated.
    pub leeway: u64,
    /// Dotted claim paths holding roles.
    pub roles_claims: &'a [String],
}

/// The claim a token's subject was taken from. Each is its own namespace: an OAuth client
/// may be named like a user (`client_id` is often chosen by the client, a URL under Client ID
/// Metadata Documents) and a `username` is often chosen by the user, so neither may ever become
/// the principal a `sub` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectClaim {
    /// `sub`: the authorization server's identifier of the end user (or client).
    Sub,
    /// `username` (introspection answers without `sub`).
    Username,
    /// `client_id` (client-credential tokens without `sub`).
    ClientId,
}

/// Claims of an accepted token, reduced to what a principal needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The value of `sub`, or of the claim [`Accepted::subject_claim`] names.
    pub subject: String,
    /// Where [`Accepted::subject`] came from.
    pub subject_claim: SubjectClaim,
    /// Roles from the configured claims.
    pub roles: Vec<String>,
    /// Scopes from `scope` and `scp`.
    pub scopes: Vec<String>,
    /// `exp`, in whole Unix seconds (rounded down).
    pub expires: u64,
    /// `nbf`, in whole Unix seconds (rounded up), if present.
    pub not_before: Option<u64>,
}

/// Checks `payload` against `rules` at Unix time `now`.
pub fn check_claims(
    payload: &[u8],
    rules: &ClaimRules<'_>,
    now: u64,
) -> Result<Accepted, JwtError> {
    let claims: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|_| JwtError::BadClaims)?;
    check_claim_map(&claims, rules, now, true, JWT_SUBJECTS)
}

/// A JWT's subject: `sub`, else `client_id` (RFC 9068).
pub(crate) const JWT_SUBJECTS: &[(&str, SubjectClaim)] = &[
    ("sub", SubjectClaim::Sub),
    ("client_id", SubjectClaim::ClientId),
];

/// Claim checks shared by JWTs and introspection answers. `require_expiry`: JWTs must carry
/// `exp`; an introspection answer may omit it. `subjects`: the claims a subject may come from,
/// in order of preference.
pub(crate) fn check_claim_map(
    claims: &Map<String, Value>,
    rules: &ClaimRules<'_>,
    now: u64,
    require_expiry: bool,
    subjects: &[(&str, SubjectClaim)],
) -> Result<Accepted, JwtError> {
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer) {
        return Err(JwtError::Issuer);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => same_resource(aud, rules.audience),
        Some(Value::Array(list)) => list.iter().any(|aud| {
            aud.as_str()
                .is_some_and(|aud| same_resource(aud, rules.audience))
        }),
        _ => false,
    };
    if !audience_ok {
        return Err(JwtError::Audience);
    }
    let expires = match claims.get("exp").map(numeric_date) {
        Some(Some(exp)) => exp.floor() as u64,
        Some(None) => return Err(JwtError::NoExpiry),
        None if require_expiry => return Err(JwtError::NoExpiry),
        None => u64::MAX,
    };
    if now > expires.saturating_add(rules.leeway) {
        return Err(JwtError::Expired);
    }
    let not_before = match claims.get("nbf").map(numeric_date) {
        Some(Some(nbf)) => Some(nbf.ceil() as u64),
        Some(None) => return Err(JwtError::NotYetValid),
        None => None,
    };
    if not_before.is_some_and(|nbf| now.saturating_add(rules.leeway) < nbf) {
        return Err(JwtError::NotYetValid);
    }
    let (subject, subject_claim) = subjects
        .iter()
        .find_map(|(name, claim)| {
            claims
                .get(*name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_owned(), *claim))
        })
        .ok_or(JwtError::NoSubject)?;
    let mut scopes = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(list)) => {
                scopes.extend(list.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
            }
            Some(Value::Array(list)) => {
                scopes.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    scopes.truncate(MAX_SCOPES);
    let mut roles = Vec::new();
    for path in rules.roles_claims {
        match lookup(claims, path) {
            Some(Value::String(role)) => roles.push(role.clone()),
            Some(Value::Array(list)) => {
                roles.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    roles.retain(|role| !role.is_empty());
    roles.truncate(MAX_ROLES);
    Ok(Accepted {
        subject,
        subject_claim,
        roles,
        scopes,
        expires,
        not_before,
    })
}

/// A NumericDate: a finite, non-negative JSON number.
fn numeric_date(value: &Value) -> Option<f64> {
    value.as_f64().filter(|v| v.is_finite() && *v >= 0.0)
}

/// The value at a dotted path (`realm_access.roles`). A claim whose own name contains a dot
/// is found too: the whole path is tried as one name first.
fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// Compares an `aud` value with the configured audience. Resource URIs compare after the
/// canonicalisation the MCP specification asks for (scheme and host case-insensitive, a
/// trailing `/` of the path ignored); anything else compares exactly.
pub fn same_resource(aud: &str, expected: &str) -> bool {
    if aud == expected {
        return true;
    }
    match (canonical(aud), canonical(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn canonical(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.fragment().is_some() {
        return None;
    }
    if !spelled_as_parsed(value, &url) {
        // The parser changed more than the specification lets differ (a `..` or `%2e%2e`
        // segment resolved, a backslash or a tab, a full-width or non-ASCII host, user
        // information): another spelling of some resource, compared exactly.
        return None;
    }
    // `Url` lowercases scheme and host and drops default ports.
    let mut text = url.as_str().to_owned();
    if url.query().is_none() && text.ends_with('/') {
        text.pop();
    }
    Some(text)
}

/// True when `value` differs from what `url` (parsed from it) says only where resource URIs
/// may: the case of the scheme and host, a default port, an empty path for `/`.
fn spelled_as_parsed(value: &str, url: &url::Url) -> bool {
    if !value.is_ascii() || value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return false;
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((inner, _)) => &authority[..inner.len() + 2],
            None => return false,
        },
        None => authority.split(':').next().unwrap_or(authority),
    };
    let path_and_query = &url[url::Position::BeforePath..url::Position::AfterQuery];
    scheme.eq_ignore_ascii_case(url.scheme())
        && url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host))
        && (tail == path_and_query || (tail.is_empty() && path_and_query == "/"))
}

#[cfg(test)]
mod tests;
