//! `[auth]`: how the HTTP face authenticates callers (OAuth 2.1 bearer tokens, RFC 7662
//! introspection, API keys). Raw serde types, the validated types and their validation.
//!
//! Only shapes and relations are checked here; nothing is fetched and no secret is resolved.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::ValueRef;
use crate::error::{ConfigErrorKind, FieldPath};
use crate::raw::RawDuration;
use crate::validate::Validator;

/// Tolerated clock skew on `exp`/`nbf`: NTP-synchronised hosts differ by well under a second,
/// so one minute is generous without extending a stolen token's life meaningfully.
pub const DEFAULT_AUTH_LEEWAY: Duration = Duration::from_secs(60);
/// Upper bound for `leeway`: beyond a few minutes "expired" stops meaning anything.
pub const MAX_AUTH_LEEWAY: Duration = Duration::from_secs(300);
/// A JWKS unused for this long is fetched again even if every `kid` is known, so a key the
/// issuer withdrew stops being accepted.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// A token with an unknown `kid` triggers a JWKS fetch at most this often, so a caller
/// cannot make the gateway hammer the issuer with made-up key ids.
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);
/// Bound on every outbound request to the authorization server (discovery, JWKS,
/// introspection): a slow issuer delays callers, it must not hold them.
pub const DEFAULT_AUTH_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an introspection answer is reused (never beyond the token's `exp`): revocation at
/// the authorization server takes effect within this time.
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);
/// How often the gateway re-reads the API key store: a key created or revoked with
/// `mcp-warden keys` takes effect within this time (and last-used times are written back).
pub const DEFAULT_API_KEY_REFRESH: Duration = Duration::from_secs(5);
/// Claims read for roles when `roles_claims` is not set (Keycloak, Entra ID, Okta style).
pub const DEFAULT_ROLES_CLAIMS: &[&str] = &["roles", "groups"];

/// `[auth]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawAuth {
    /// `resource`: the canonical resource URI of the MCP endpoint.
    pub resource: Option<String>,
    /// `issuer`: the authorization server's issuer identifier.
    pub issuer: Option<String>,
    /// `jwks_uri`: where the issuer's signing keys are.
    pub jwks_uri: Option<String>,
    /// `audience`: the `aud` tokens must carry.
    pub audience: Option<String>,
    /// `algorithms`: accepted JWS algorithms.
    pub algorithms: Option<Vec<String>>,
    /// `leeway`: clock skew tolerated on `exp` and `nbf`.
    pub leeway: Option<RawDuration>,
    /// `require_at_jwt`: JWTs must be typed `at+jwt` (RFC 9068).
    pub require_at_jwt: Option<bool>,
    /// `roles_claims`: claims (dotted paths) holding roles or groups.
    pub roles_claims: Option<Vec<String>>,
    /// `required_scopes`: scopes every bearer token must hold.
    pub required_scopes: Option<Vec<String>>,
    /// `scopes_supported`: scopes announced in the resource metadata.
    pub scopes_supported: Option<Vec<String>>,
    /// `jwks_max_age`.
    pub jwks_max_age: Option<RawDuration>,
    /// `jwks_min_refresh_interval`.
    pub jwks_min_refresh_interval: Option<RawDuration>,
    /// `http_timeout`.
    pub http_timeout: Option<RawDuration>,
    /// `ca_file`: PEM certificates the authorization server's certificate may chain to,
    /// besides the Mozilla roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// `api_keys`: accept keys issued by `mcp-warden keys create`.
    pub api_keys: Option<bool>,
    /// `api_key_refresh`.
    pub api_key_refresh: Option<RawDuration>,
    /// `[auth.introspection]`.
    pub introspection: Option<RawIntrospection>,
}

/// `[auth.introspection]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawIntrospection {
    /// `endpoint`.
    pub endpoint: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `client_secret`: `env:` or `file:` reference.
    pub client_secret: Option<ValueRef>,
    /// `cache_ttl`.
    pub cache_ttl: Option<RawDuration>,
}

/// A JWS algorithm the gateway can verify. HMAC algorithms are deliberately absent: a
/// resource server that shares a symmetric key with the issuer can mint tokens itself, and
/// accepting `HS256` next to public keys is the classic key-confusion attack. `none` is absent
/// too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JwsAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519 (`EdDSA` with an `OKP` key on `Ed25519`).
    EdDsa,
}

impl JwsAlgorithm {
    /// Every supported algorithm, in the order of its name.
    pub const ALL: &'static [Self] = &[
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
        Self::Es256,
        Self::Es384,
        Self::EdDsa,
    ];

    /// The default allow-list: what common issuers sign with.
    pub const DEFAULT: &'static [Self] = &[Self::Rs256, Self::Es256, Self::EdDsa];

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with this exact `alg` name (case-sensitive, as RFC 7515 requires).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|alg| alg.as_str() == name)
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validated `[auth]`. Absent section (the default): no authentication configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// The canonical resource URI of the MCP endpoint (RFC 8707 / RFC 9728 `resource`):
    /// `resource`, else top-level `public_url`. Tokens must be issued for it.
    pub resource: Option<Url>,
    /// Bearer tokens (JWT and/or introspection), when `issuer` is set.
    pub oauth: Option<OAuthConfig>,
    /// Scopes every bearer token must hold; a token without them gets 403
    /// `insufficient_scope` naming them all.
    pub required_scopes: Vec<String>,
    /// Scopes announced in the protected resource metadata (default: `required_scopes`).
    pub scopes_supported: Vec<String>,
    /// API keys issued by `mcp-warden keys`, when enabled.
    pub api_keys: Option<ApiKeysConfig>,
}

impl AuthConfig {
    /// True when at least one authentication method is configured.
    pub fn is_enabled(&self) -> bool {
        self.oauth.is_some() || self.api_keys.is_some()
    }
}

/// OAuth 2.1 resource-server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The issuer identifier, compared byte for byte with `iss` (no normalisation).
    pub issuer: String,
    /// The JWKS location; `None`: discovered from the issuer's metadata (RFC 8414, then
    /// OpenID Connect discovery). `None` together with introspection and no discovery need:
    /// see [`OAuthConfig::jwt`].
    pub jwks_uri: Option<Url>,
    /// Whether JWTs are validated locally (false when only introspection is configured and no
    /// `jwks_uri` is given: then every token is introspected).
    pub jwt: bool,
    /// The `aud` value tokens must carry: `audience`, else the resource URI.
    pub audience: String,
    /// Accepted algorithms (never `none`, never HMAC).
    pub algorithms: Vec<JwsAlgorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// JWTs must carry `typ: at+jwt` (RFC 9068); otherwise an untyped or `JWT` token is
    /// accepted too. Tokens explicitly typed as anything else are refused either way.
    pub require_at_jwt: bool,
    /// Claims (dotted paths into nested objects) whose string or string-array values are roles.
    pub roles_claims: Vec<String>,
    /// Refetch the JWKS when it is older than this.
    pub jwks_max_age: Duration,
    /// Least time between two fetches triggered by unknown `kid`s.
    pub jwks_min_refresh_interval: Duration,
    /// Bound on each outbound request to the authorization server.
    pub http_timeout: Duration,
    /// PEM file of extra trust anchors for the authorization server (discovery, JWKS,
    /// introspection); `None`: the Mozilla roots only.
    pub ca_file: Option<std::path::PathBuf>,
    /// RFC 7662 introspection of opaque tokens.
    pub introspection: Option<IntrospectionConfig>,
}

/// `[auth.introspection]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// The introspection endpoint.
    pub endpoint: Url,
    /// The gateway's client id at the authorization server (HTTP Basic authentication).
    pub client_id: String,
    /// Its secret: an `env:` or `file:` reference, resolved at startup.
    pub client_secret: ValueRef,
    /// Longest reuse of an answer (never beyond the token's `exp`).
    pub cache_ttl: Duration,
}

/// API keys (`api_keys = true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeysConfig {
    /// How often the key store is re-read.
    pub refresh: Duration,
}

/// What is wrong with `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// An `alg` name that is not supported.
    #[error("unsupported algorithm \"{name}\"; expected one of {expected}")]
    UnknownAlgorithm {
        /// As written.
        name: String,
        /// The supported names.
        expected: String,
    },
    /// `none` or an HMAC algorithm.
    #[error(
        "algorithm \"{name}\" is refused: `none` and HMAC algorithms let anyone who knows the verification key forge tokens"
    )]
    ForbiddenAlgorithm {
        /// As written.
        name: String,
    },
    /// A plain-http URL to a non-loopback host.
    #[error(
        "\"{value}\" must use https (plain http is accepted only for loopback addresses, for local testing)"
    )]
    InsecureUrl {
        /// As written.
        value: String,
    },
    /// A key that needs another one.
    #[error("`{key}` requires {requires}")]
    Requires {
        /// The key that is set.
        key: &'static str,
        /// What is missing.
        requires: &'static str,
    },
    /// A plain secret value.
    #[error("plain secret values are not allowed; use env: or file:")]
    PlainSecret,
    /// A scope with characters RFC 6749 does not allow (space, quote, backslash, controls).
    #[error("invalid scope \"{value}\": scopes are printable ASCII without space, `\"` or `\\`")]
    InvalidScope {
        /// As written.
        value: String,
    },
    /// A duration over its bound.
    #[error("\"{value}\" is longer than the maximum of {max}")]
    TooLong {
        /// As written.
        value: String,
        /// The bound.
        max: &'static str,
    },
    /// A resource URI with a query.
    #[error("the resource URI must not have a query")]
    ResourceQuery,
}

impl From<AuthConfigError> for ConfigErrorKind {
    fn from(error: AuthConfigError) -> Self {
        ConfigErrorKind::Auth(error)
    }
}

/// True for `http` URLs whose host is a loopback address or `localhost`.
fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// True when `scope` is a valid RFC 6749 §3.3 scope token.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

impl Validator<'_> {
    /// Validates `[auth]`; `public_url` is the resource URI fallback.
    pub(crate) fn auth(
        &mut self,
        path: &FieldPath,
        raw: RawAuth,
        public_url: Option<&Url>,
    ) -> AuthConfig {
        let oauth_raw = raw.clone();
        let resource = match raw.resource {
            Some(value) => self.secure_url(path.key("resource"), value),
            None => public_url.cloned(),
        };
        if let Some(url) = &resource
            && url.query().is_some()
        {
            self.report(path.key("resource"), AuthConfigError::ResourceQuery.into());
        }
        let required_scopes = self.scopes(path.key("required_scopes"), raw.required_scopes);
        let scopes_supported = match raw.scopes_supported {
            Some(list) => self.scopes(path.key("scopes_supported"), Some(list)),
            None => required_scopes.clone(),
        };
        let api_keys = raw.api_keys.unwrap_or(false).then(|| ApiKeysConfig {
            refresh: self.duration(
                path.key("api_key_refresh"),
                raw.api_key_refresh.clone(),
                DEFAULT_API_KEY_REFRESH,
            ),
        });
        if api_keys.is_none() && raw.api_key_refresh.is_some() {
            self.report(
                path.key("api_key_refresh"),
                AuthConfigError::Requires {
                    key: "api_key_refresh",
                    requires: "`api_keys = true`",
                }
                .into(),
            );
        }
        let oauth = self.oauth(path, oauth_raw, resource.as_ref());
        if oauth.is_none() && !required_scopes.is_empty() {
            self.report(
                path.key("required_scopes"),
                AuthConfigError::Requires {
                    key: "required_scopes",
                    requires: "`issuer` (scopes come from bearer tokens)",
                }
                .into(),
            );
        }
        AuthConfig {
            resource,
            oauth,
            required_scopes,
            scopes_supported,
            api_keys,
        }
    }

    fn oauth(
        &mut self,
        path: &FieldPath,
        raw: RawAuth,
        resource: Option<&Url>,
    ) -> Option<OAuthConfig> {
        let Some(issuer) = raw.issuer else {
            for (key, set) in [
                ("jwks_uri", raw.jwks_uri.is_some()),
                ("audience", raw.audience.is_some()),
                ("algorithms", raw.algorithms.is_some()),
                ("leeway", raw.leeway.is_some()),
                ("require_at_jwt", raw.require_at_jwt.is_some()),
                ("roles_claims", raw.roles_claims.is_some()),
                ("jwks_max_age", raw.jwks_max_age.is_some()),
                (
                    "jwks_min_refresh_interval",
                    raw.jwks_min_refresh_interval.is_some(),
                ),
                ("http_timeout", raw.http_timeout.is_some()),
                ("ca_file", raw.ca_file.is_some()),
                ("introspection", raw.introspection.is_some()),
            ] {
                if set {
                    self.report(
                        path.key(key),
                        AuthConfigError::Requires {
                            key,
                            requires: "`issuer`",
                        }
                        .into(),
                    );
                }
            }
            return None;
        };
        let issuer_ok = self
            .secure_url(path.key("issuer"), issuer.clone())
            .is_some();
        let jwks_uri = raw
            .jwks_uri
            .and_then(|value| self.secure_url(path.key("jwks_uri"), value));
        if resource.is_none() {
            // The resource URI is the expected audience and the subject of the RFC 9728
            // metadata, which the MCP authorization specification makes mandatory.
            self.report(
                path.key("issuer"),
                AuthConfigError::Requires {
                    key: "issuer",
                    requires: "`resource` in [auth] or a top-level `public_url` (tokens must be issued for this gateway)",
                }
                .into(),
            );
        }
        let audience = match (raw.audience, resource) {
            (Some(audience), _) if audience.is_empty() => {
                self.report(path.key("audience"), ConfigErrorKind::Empty);
                None
            }
            (Some(audience), _) => Some(audience),
            (None, resource) => resource.map(|r| r.as_str().to_owned()),
        };
        let algorithms = self.algorithms(path.key("algorithms"), raw.algorithms);
        let leeway = self.duration_allowing_zero(
            path.key("leeway"),
            raw.leeway.clone(),
            DEFAULT_AUTH_LEEWAY,
        );
        let leeway = if leeway > MAX_AUTH_LEEWAY {
            self.report(
                path.key("leeway"),
                AuthConfigError::TooLong {
                    value: raw.leeway.map(|d| d.0).unwrap_or_default(),
                    max: "5m",
                }
                .into(),
            );
            DEFAULT_AUTH_LEEWAY
        } else {
            leeway
        };
        let roles_claims = match raw.roles_claims {
            None => DEFAULT_ROLES_CLAIMS.iter().map(|&s| s.to_owned()).collect(),
            Some(claims) => {
                for (index, claim) in claims.iter().enumerate() {
                    if claim.is_empty() || claim.split('.').any(str::is_empty) {
                        self.report(
                            path.key("roles_claims").index(index),
                            ConfigErrorKind::Empty,
                        );
                    }
                }
                claims
            }
        };
        let introspection = raw
            .introspection
            .and_then(|raw| self.introspection(&path.key("introspection"), raw));
        let jwt = jwks_uri.is_some() || introspection.is_none();
        let oauth = OAuthConfig {
            issuer,
            jwks_uri,
            jwt,
            audience: audience.unwrap_or_default(),
            algorithms,
            leeway,
            require_at_jwt: raw.require_at_jwt.unwrap_or(false),
            roles_claims,
            jwks_max_age: self.duration(
                path.key("jwks_max_age"),
                raw.jwks_max_age,
                DEFAULT_JWKS_MAX_AGE,
            ),
            jwks_min_refresh_interval: self.duration(
                path.key("jwks_min_refresh_interval"),
                raw.jwks_min_refresh_interval,
                DEFAULT_JWKS_MIN_REFRESH,
            ),
            http_timeout: self.duration(
                path.key("http_timeout"),
                raw.http_timeout,
                DEFAULT_AUTH_HTTP_TIMEOUT,
            ),
            ca_file: self.path(path.key("ca_file"), raw.ca_file),
            introspection,
        };
        issuer_ok.then_some(oauth)
    }

    fn introspection(
        &mut self,
        path: &FieldPath,
        raw: RawIntrospection,
    ) -> Option<IntrospectionConfig> {
        let missing = |validator: &mut Self, key: &'static str| {
            validator.report(
                path.key(key),
                AuthConfigError::Requires {
                    key: "introspection",
                    requires: match key {
                        "endpoint" => "`endpoint`",
                        "client_id" => "`client_id`",
                        _ => "`client_secret`",
                    },
                }
                .into(),
            );
        };
        let endpoint = match raw.endpoint {
            Some(value) => self.secure_url(path.key("endpoint"), value),
            None => {
                missing(self, "endpoint");
                None
            }
        };
        let client_id = match raw.client_id {
            Some(id) if id.is_empty() => {
                self.report(path.key("client_id"), ConfigErrorKind::Empty);
                None
            }
            Some(id) => Some(id),
            None => {
                missing(self, "client_id");
                None
            }
        };
        let client_secret = match raw.client_secret {
            Some(ValueRef::Literal(_)) => {
                self.report(
                    path.key("client_secret"),
                    AuthConfigError::PlainSecret.into(),
                );
                None
            }
            Some(secret) => Some(secret),
            None => {
                missing(self, "client_secret");
                None
            }
        };
        let cache_ttl = self.duration(
            path.key("cache_ttl"),
            raw.cache_ttl,
            DEFAULT_INTROSPECTION_CACHE_TTL,
        );
        Some(IntrospectionConfig {
            endpoint: endpoint?,
            client_id: client_id?,
            client_secret: client_secret?,
            cache_ttl,
        })
    }

    fn algorithms(&mut self, path: FieldPath, raw: Option<Vec<String>>) -> Vec<JwsAlgorithm> {
        let Some(names) = raw else {
            return JwsAlgorithm::DEFAULT.to_vec();
        };
        if names.is_empty() {
            self.report(
                path.clone(),
                ConfigErrorKind::EmptyList {
                    reason: "no token could be accepted; remove the key for the default",
                },
            );
        }
        let mut algorithms = Vec::new();
        for (index, name) in names.into_iter().enumerate() {
            if let Some(alg) = JwsAlgorithm::from_name(&name) {
                if !algorithms.contains(&alg) {
                    algorithms.push(alg);
                }
            } else if name.eq_ignore_ascii_case("none")
                || name.to_ascii_uppercase().starts_with("HS")
            {
                self.report(
                    path.index(index),
                    AuthConfigError::ForbiddenAlgorithm { name }.into(),
                );
            } else {
                let expected = JwsAlgorithm::ALL
                    .iter()
                    .map(|alg| alg.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.report(
                    path.index(index),
                    AuthConfigError::UnknownAlgorithm { name, expected }.into(),
                );
            }
        }
        algorithms
    }

    fn scopes(&mut self, path: FieldPath, raw: Option<Vec<String>>) -> Vec<String> {
        let mut scopes = Vec::new();
        for (index, scope) in raw.unwrap_or_default().into_iter().enumerate() {
            if is_scope_token(&scope) {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            } else {
                self.report(
                    path.index(index),
                    AuthConfigError::InvalidScope { value: scope }.into(),
                );
            }
        }
        scopes
    }

    /// An http(s) URL (see `http_url`) that is https unless its host is loopback.
    fn secure_url(&mut self, path: FieldPath, value: String) -> Option<Url> {
        let url = self.http_url(path.clone(), value.clone())?;
        if url.scheme() == "http" && !is_loopback_url(&url) {
            self.report(path, AuthConfigError::InsecureUrl { value }.into());
            return None;
        }
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn errors(text: &str) -> String {
        Config::parse(text, "warden.toml").unwrap_err().to_string()
    }

    #[test]
    fn parses_a_full_section() {
        let config = Config::parse(
            r#"
public_url = "https://gw.example.com/mcp"
[auth]
issuer = "https://as.example.com/realms/a"
algorithms = ["ES256", "EdDSA", "ES256"]
leeway = "10s"
roles_claims = ["realm_access.roles"]
required_scopes = ["mcp:tools"]
api_keys = true
[auth.introspection]
endpoint = "https://as.example.com/introspect"
client_id = "gw"
client_secret = "env:INTROSPECTION_SECRET"
"#,
            "warden.toml",
        )
        .unwrap();
        let auth = &config.auth;
        assert!(auth.is_enabled());
        let oauth = auth.oauth.as_ref().unwrap();
        assert_eq!(oauth.audience, "https://gw.example.com/mcp");
        assert_eq!(
            oauth.algorithms,
            [super::JwsAlgorithm::Es256, super::JwsAlgorithm::EdDsa]
        );
        assert_eq!(oauth.leeway, std::time::Duration::from_secs(10));
        assert!(
            !oauth.jwt,
            "introspection without jwks_uri introspects every token"
        );
        assert_eq!(auth.scopes_supported, ["mcp:tools"]);
        assert_eq!(
            auth.api_keys.as_ref().unwrap().refresh,
            super::DEFAULT_API_KEY_REFRESH
        );
    }

    #[test]
    fn absent_section_disables_authentication() {
        assert!(!Config::parse("", "warden.toml").unwrap().auth.is_enabled());
    }

    #[test]
    fn refuses_none_hmac_and_unknown_algorithms() {
        let text = errors(
            "public_url = \"https://gw.example.com/mcp\"\n[auth]\nissuer = \"https://as.example.com\"\nalgorithms = [\"none\", \"HS256\", \"ES512\"]\n",
        );
        assert!(
            text.contains("auth.algorithms[0]: algorithm \"none\" is refused"),
            "{text}"
        );
        assert!(
            text.contains("auth.algorithms[1]: algorithm \"HS256\" is refused"),
            "{text}"
        );
        assert!(
            text.contains("auth.algorithms[2]: unsupported algorithm \"ES512\""),
            "{text}"
        );
    }

    #[test]
    fn refuses_insecure_urls_plain_secrets_and_missing_resource() {
        let text = errors(
            "[auth]\nissuer = \"http://as.example.com\"\njwks_uri = \"http://10.0.0.1/jwks\"\n[auth.introspection]\nendpoint = \"https://as.example.com/i\"\nclient_id = \"gw\"\nclient_secret = \"hunter2\"\n",
        );
        assert!(
            text.contains("auth.issuer: \"http://as.example.com\" must use https"),
            "{text}"
        );
        assert!(
            text.contains("auth.jwks_uri: \"http://10.0.0.1/jwks\" must use https"),
            "{text}"
        );
        assert!(
            text.contains("auth.introspection.client_secret: plain secret values are not allowed"),
            "{text}"
        );
        assert!(text.contains("requires `resource`"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        // Loopback http is accepted (local testing).
        Config::parse(
            "[auth]\nresource = \"http://127.0.0.1:8080/mcp\"\nissuer = \"http://127.0.0.1:9000\"\n",
            "warden.toml",
        )
        .unwrap();
    }

    #[test]
    fn refuses_oauth_keys_without_issuer_and_bad_scopes() {
        let text = errors(
            "[auth]\njwks_uri = \"https://as.example.com/jwks\"\nrequired_scopes = [\"a b\"]\nleeway = \"10m\"\napi_key_refresh = \"1s\"\n",
        );
        assert!(
            text.contains("auth.jwks_uri: `jwks_uri` requires `issuer`"),
            "{text}"
        );
        assert!(
            text.contains("auth.leeway: `leeway` requires `issuer`"),
            "{text}"
        );
        assert!(text.contains("invalid scope \"a b\""), "{text}");
        assert!(
            text.contains("`api_key_refresh` requires `api_keys = true`"),
            "{text}"
        );
        let text = errors(
            "public_url = \"https://gw.example.com/mcp\"\n[auth]\nissuer = \"https://as.example.com\"\nleeway = \"10m\"\n",
        );
        assert!(
            text.contains("auth.leeway: \"10m\" is longer than the maximum of 5m"),
            "{text}"
        );
    }
}
