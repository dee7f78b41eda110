//! Outbound HTTP to the authorization server: bounded in time and size, no redirects.

use std::time::Duration;

use bytes::Bytes;
use http::header::ACCEPT;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;
use url::Url;

/// Largest document accepted from the authorization server (metadata, JWKS, introspection).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why a fetch failed. Never carries a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connection, TLS or timeout.
    #[error("request to `{url}` failed")]
    Transport {
        /// The URL (configuration, not a secret).
        url: String,
        /// The cause.
        #[source]
        source: warden_http::Error,
    },
    /// A status other than 200.
    #[error("`{url}` answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// Over [`MAX_DOCUMENT_BYTES`].
    #[error("`{url}` sent more than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// The URL.
        url: String,
    },
    /// Not a JSON object.
    #[error("`{url}` did not send a JSON object")]
    NotJson {
        /// The URL.
        url: String,
    },
}

/// The HTTP client for the authorization server: every request bounded by `timeout` (connect,
/// answer and body together), no redirects (a redirect is a second, unvetted URL), rustls with
/// the Mozilla roots plus `ca_file`'s (see [`warden_http`]).
#[derive(Debug, Clone)]
pub struct Http {
    client: warden_http::Client,
    timeout: Duration,
}

impl Http {
    /// A client whose requests take at most `timeout` each, trusting what `tls` adds.
    pub fn new(timeout: Duration, tls: warden_http::TlsOptions) -> Http {
        Http {
            client: warden_http::Client::with_tls(timeout, tls),
            timeout,
        }
    }

    /// GETs a JSON object from `url`.
    pub(crate) async fn get_object(
        &self,
        url: &Url,
    ) -> Result<serde_json::Map<String, Value>, FetchError> {
        self.json_object(Method::GET, url, HeaderMap::new(), Bytes::new())
            .await
    }

    /// Sends a request and reads a JSON object of at most [`MAX_DOCUMENT_BYTES`].
    pub(crate) async fn json_object(
        &self,
        method: Method,
        url: &Url,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<serde_json::Map<String, Value>, FetchError> {
        let name = || url.as_str().to_owned();
        let transport = |source| FetchError::Transport {
            url: name(),
            source,
        };
        let uri = warden_http::uri(url).map_err(transport)?;
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let request = warden_http::request(method, uri, headers, body);
        let fetched = match self
            .client
            .fetch(request, self.timeout, MAX_DOCUMENT_BYTES)
            .await
        {
            Ok(fetched) => fetched,
            Err(warden_http::Error::TooLarge(_)) => {
                return Err(FetchError::TooLarge { url: name() });
            }
            Err(e) => return Err(transport(e)),
        };
        if fetched.status != StatusCode::OK {
            return Err(FetchError::Status {
                url: name(),
                status: fetched.status.as_u16(),
            });
        }
        match serde_json::from_slice(&fetched.body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(FetchError::NotJson { url: name() }),
        }
    }
}
