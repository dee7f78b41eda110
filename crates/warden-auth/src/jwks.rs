//! The issuer's signing keys: discovered, fetched, cached and refreshed.
//!
//! The key set is fetched on first use, again once it is older than `jwks_max_age`, and again
//! when a token names a `kid` the set lacks (key rotation) — but then at most once per
//! `jwks_min_refresh_interval`, so made-up key ids cannot turn the gateway into a request
//! amplifier against the issuer. Fetches are single-flight. When a refresh fails, the last good
//! set stays in use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, warn};
use url::Url;
use warden_config::{JwsAlgorithm, OAuthConfig};

use crate::fetch::{self, FetchError};
use crate::jwt::{JwtError, VerifyingKey};

/// Most keys kept from one JWKS: issuers publish a handful (current, next, previous).
pub const MAX_JWKS_KEYS: usize = 64;

/// Why no key could be obtained.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The metadata or key set could not be fetched.
    #[error("cannot fetch the issuer's keys")]
    Fetch(#[from] FetchError),
    /// The metadata names another issuer, or no usable `jwks_uri`.
    #[error("authorization server metadata is unusable: {reason}")]
    Metadata {
        /// Why.
        reason: &'static str,
    },
    /// A set with no `keys` array.
    #[error("the JWKS has no `keys` array")]
    NoKeys,
}

/// A fetched key set.
#[derive(Debug)]
struct KeySet {
    by_kid: HashMap<String, Arc<VerifyingKey>>,
    all: Vec<Arc<VerifyingKey>>,
    fetched: Instant,
}

#[derive(Debug, Default)]
struct RefreshState {
    /// The resolved JWKS location (configured, or discovered once).
    jwks_uri: Option<Url>,
    /// When the last fetch was attempted (success or not).
    last_attempt: Option<Instant>,
}

/// The cached key set of one issuer.
#[derive(Debug)]
pub struct Jwks {
    issuer: String,
    configured_uri: Option<Url>,
    max_age: std::time::Duration,
    min_refresh: std::time::Duration,
    http: fetch::Http,
    current: RwLock<Option<Arc<KeySet>>>,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl Jwks {
    /// A cache for the issuer of `config`; nothing is fetched yet.
    pub fn new(config: &OAuthConfig, http: fetch::Http) -> Self {
        Self {
            issuer: config.issuer.clone(),
            configured_uri: config.jwks_uri.clone(),
            max_age: config.jwks_max_age,
            min_refresh: config.jwks_min_refresh_interval,
            http,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The key for a token with `kid` and `alg`. `Ok(Err(_))` is a refusal of the token;
    /// `Err(_)` means no key set could be obtained at all.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: JwsAlgorithm,
    ) -> Result<Result<Arc<VerifyingKey>, JwtError>, JwksError> {
        let now = Instant::now();
        let snapshot = self.snapshot();
        if let Some(set) = &snapshot {
            let fresh = now.duration_since(set.fetched) < self.max_age;
            match select(set, kid, alg) {
                Ok(key) if fresh => return Ok(Ok(key)),
                Err(JwtError::UnknownKey) if fresh => {}
                Err(refusal) if fresh => return Ok(Err(refusal)),
                _ => {}
            }
        }
        let set = self.refreshed(snapshot.as_ref()).await?;
        Ok(select(&set, kid, alg))
    }

    /// A newer key set than `seen`, when a fetch is due; else the current one.
    async fn refreshed(&self, seen: Option<&Arc<KeySet>>) -> Result<Arc<KeySet>, JwksError> {
        let mut state = self.refresh.lock().await;
        // Someone else refreshed while this task waited: use theirs.
        if let Some(current) = self.snapshot()
            && seen.is_none_or(|seen| !Arc::ptr_eq(seen, &current))
        {
            return Ok(current);
        }
        let now = Instant::now();
        let throttled = state
            .last_attempt
            .is_some_and(|last| now.duration_since(last) < self.min_refresh);
        if throttled {
            debug!("jwks refresh throttled");
            return self.snapshot().ok_or(JwksError::Metadata {
                reason: "no key set yet and refresh is throttled",
            });
        }
        state.last_attempt = Some(now);
        match self.fetch(&mut state).await {
            Ok(set) => {
                let set = Arc::new(set);
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&set));
                debug!(keys = set.all.len(), "jwks fetched");
                Ok(set)
            }
            Err(error) => {
                warn!(%error, "jwks fetch failed");
                // The last good set stays in use, stale or not.
                self.snapshot().ok_or(error)
            }
        }
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<KeySet, JwksError> {
        let uri = match (&self.configured_uri, &state.jwks_uri) {
            (Some(uri), _) | (None, Some(uri)) => uri.clone(),
            (None, None) => {
                let uri = self.discover().await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let document = self.http.get_object(&uri).await?;
        let Some(Value::Array(keys)) = document.get("keys") else {
            return Err(JwksError::NoKeys);
        };
        let mut set = KeySet {
            by_kid: HashMap::new(),
            all: Vec::new(),
            fetched: Instant::now(),
        };
        for key in keys
            .iter()
            .filter_map(VerifyingKey::from_jwk)
            .take(MAX_JWKS_KEYS)
        {
            let key = Arc::new(key);
            if let Some(kid) = &key.kid {
                // Duplicate kids are ambiguous: the first wins, as in most libraries.
                set.by_kid
                    .entry(kid.clone())
                    .or_insert_with(|| Arc::clone(&key));
            }
            set.all.push(key);
        }
        Ok(set)
    }

    /// RFC 8414 metadata, then OpenID Connect discovery; the document's `issuer` must be ours.
    async fn discover(&self) -> Result<Url, JwksError> {
        let mut last = None;
        for url in discovery_urls(&self.issuer) {
            match self.http.get_object(&url).await {
                Ok(metadata) => {
                    if metadata.get("issuer").and_then(Value::as_str) != Some(&self.issuer) {
                        return Err(JwksError::Metadata {
                            reason: "`issuer` differs from the configured issuer",
                        });
                    }
                    let uri = metadata
                        .get("jwks_uri")
                        .and_then(Value::as_str)
                        .and_then(|u| Url::parse(u).ok())
                        .filter(is_secure)
                        .ok_or(JwksError::Metadata {
                            reason: "no https `jwks_uri`",
                        })?;
                    return Ok(uri);
                }
                Err(error) => last = Some(error),
            }
        }
        Err(last.map_or(
            JwksError::Metadata {
                reason: "issuer is not a URL",
            },
            JwksError::Fetch,
        ))
    }
}

/// https, or http to a loopback host (local testing), as for configured URLs.
pub(crate) fn is_secure(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Where the issuer's metadata may be, in the order RFC 8414 §3.1 and OpenID Connect
/// Discovery §4 give (path insertion, then path appending).
pub(crate) fn discovery_urls(issuer: &str) -> Vec<Url> {
    let Ok(base) = Url::parse(issuer) else {
        return Vec::new();
    };
    let path = base.path().trim_end_matches('/').to_owned();
    let mut urls = Vec::new();
    for (suffix, insert) in [
        ("/.well-known/oauth-authorization-server", true),
        ("/.well-known/openid-configuration", true),
        ("/.well-known/openid-configuration", false),
    ] {
        let mut url = base.clone();
        url.set_query(None);
        if path.is_empty() {
            url.set_path(suffix);
        } else if insert {
            url.set_path(&format!("{suffix}{path}"));
        } else {
            url.set_path(&format!("{path}{suffix}"));
        }
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls
}

fn select(
    set: &KeySet,
    kid: Option<&str>,
    alg: JwsAlgorithm,
) -> Result<Arc<VerifyingKey>, JwtError> {
    let key = match kid {
        Some(kid) => set.by_kid.get(kid).ok_or(JwtError::UnknownKey)?,
        None => {
            let mut fitting = set.all.iter().filter(|key| key.fits(alg));
            match (fitting.next(), fitting.next()) {
                (Some(key), None) => key,
                _ => return Err(JwtError::AmbiguousKey),
            }
        }
    };
    if key.fits(alg) {
        Ok(Arc::clone(key))
    } else {
        Err(JwtError::KeyMismatch(alg.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_inserts_then_appends_the_issuer_path() {
        let urls: Vec<String> = discovery_urls("https://as.example.com/realms/a")
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "https://as.example.com/.well-known/oauth-authorization-server/realms/a",
                "https://as.example.com/.well-known/openid-configuration/realms/a",
                "https://as.example.com/realms/a/.well-known/openid-configuration",
            ]
        );
        let root: Vec<String> = discovery_urls("https://as.example.com")
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            root,
            [
                "https://as.example.com/.well-known/oauth-authorization-server",
                "https://as.example.com/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn plain_http_is_secure_only_on_loopback() {
        for (url, ok) in [
            ("https://as.example.com/jwks", true),
            ("http://127.0.0.1:8080/jwks", true),
            ("http://[::1]/jwks", true),
            ("http://localhost/jwks", true),
            ("http://as.example.com/jwks", false),
            ("http://10.0.0.1/jwks", false),
            ("file:///etc/passwd", false),
        ] {
            assert_eq!(is_secure(&Url::parse(url).unwrap()), ok, "{url}");
        }
    }
}
