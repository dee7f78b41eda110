//! RFC 7662 token introspection for opaque tokens.
//!
//! The gateway authenticates to the endpoint with HTTP Basic (`client_id`, `client_secret`).
//! An answer counts only when `active` is `true`, `iss` (when present) is the configured issuer
//! and `aud` names this resource: an active token issued for another resource is refused like
//! any other wrong-audience token. Answers are cached by the token's SHA-256 for at most
//! `cache_ttl` and never beyond the token's `exp`.

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value};
use url::Url;

use crate::fetch::{self, FetchError};
use crate::jwt::{self, Accepted, ClaimRules, JwtError, SubjectClaim};
use crate::secret::Secret;

/// Why introspection did not accept a token.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    /// The endpoint could not be asked.
    #[error("introspection failed")]
    Fetch(#[from] FetchError),
    /// The answer refuses the token.
    #[error("introspection refused the token: {0}")]
    Refused(JwtError),
    /// `active` is not `true`.
    #[error("token is not active")]
    Inactive,
}

/// The introspection endpoint and the gateway's credentials for it.
#[derive(Debug)]
pub struct Introspector {
    endpoint: Url,
    client_id: String,
    client_secret: Secret,
    http: fetch::Http,
}

impl Introspector {
    /// An introspector for `endpoint`.
    pub fn new(endpoint: Url, client_id: String, client_secret: Secret, http: fetch::Http) -> Self {
        Self {
            endpoint,
            client_id,
            client_secret,
            http,
        }
    }

    /// Asks the endpoint about `token` and checks the answer against `rules` at `now`.
    pub async fn introspect(
        &self,
        token: &str,
        rules: &ClaimRules<'_>,
        now: u64,
    ) -> Result<Accepted, IntrospectionError> {
        // RFC 7617 basic credentials of the form-encoded id and secret (RFC 6749 2.3.1).
        let credentials = format!(
            "{}:{}",
            form_encode(&self.client_id),
            form_encode(self.client_secret.expose())
        );
        let mut authorization = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ))
        .expect("form-encoded text in base64 is a valid header value");
        authorization.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let answer = self
            .http
            .json_object(Method::POST, &self.endpoint, headers, Bytes::from(body))
            .await?;
        accept(&answer, rules, now)
    }
}

/// Checks an introspection answer.
pub(crate) fn accept(
    answer: &Map<String, Value>,
    rules: &ClaimRules<'_>,
    now: u64,
) -> Result<Accepted, IntrospectionError> {
    if answer.get("active") != Some(&Value::Bool(true)) {
        return Err(IntrospectionError::Inactive);
    }
    // `iss` is optional in RFC 7662; when the server omits it, the answer speaks for the
    // configured issuer (it is that issuer's endpoint).
    let mut claims = answer.clone();
    claims
        .entry("iss")
        .or_insert_with(|| Value::String(rules.issuer.to_owned()));
    jwt::check_claim_map(&claims, rules, now, false, INTROSPECTED_SUBJECTS)
        .map_err(IntrospectionError::Refused)
}

/// An introspected token's subject: `sub`, else `username`, else `client_id` (RFC 7662 §2.2).
const INTROSPECTED_SUBJECTS: &[(&str, SubjectClaim)] = &[
    ("sub", SubjectClaim::Sub),
    ("username", SubjectClaim::Username),
    ("client_id", SubjectClaim::ClientId),
];

/// RFC 6749 §2.3.1: client credentials in HTTP Basic are form-urlencoded first.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> ClaimRules<'static> {
        ClaimRules {
            issuer: "https://as.example.com",
            audience: "https://gw.example.com/mcp",
            leeway: 0,
            roles_claims: &[],
        }
    }

    fn answer(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn accepts_an_active_token_for_this_resource() {
        let ok = accept(
            &answer(json!({"active": true, "sub": "alice", "aud": "https://gw.example.com/mcp", "scope": "a b", "exp": 2000})),
            &rules(),
            1000,
        )
        .unwrap();
        assert_eq!(ok.subject, "alice");
        assert_eq!(ok.scopes, ["a", "b"]);
        assert_eq!(ok.expires, 2000);
    }

    #[test]
    fn refuses_inactive_foreign_and_expired_tokens() {
        let cases = [
            json!({"active": false, "sub": "alice", "aud": "https://gw.example.com/mcp"}),
            json!({"active": "true", "sub": "alice", "aud": "https://gw.example.com/mcp"}),
            json!({"active": true, "sub": "alice", "aud": "https://other.example.com/mcp"}),
            json!({"active": true, "sub": "alice"}),
            json!({"active": true, "sub": "alice", "aud": "https://gw.example.com/mcp", "iss": "https://evil.example.com"}),
            json!({"active": true, "sub": "alice", "aud": "https://gw.example.com/mcp", "exp": 999}),
        ];
        for case in cases {
            assert!(
                accept(&answer(case.clone()), &rules(), 1000).is_err(),
                "{case}"
            );
        }
    }

    #[test]
    fn credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c"), "a+b%3Ac");
    }
}
