//! Outbound HTTP to the authorization server: bounded in time and size, no redirects.

use std::time::Duration;

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
        source: reqwest::Error,
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

/// An HTTP client for the authorization server: every request bounded by `timeout`, redirects
/// refused (a redirect is a second, unvetted URL), rustls with the platform's web roots.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcp-warden/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends `request` and reads a JSON object of at most [`MAX_DOCUMENT_BYTES`].
pub(crate) async fn json_object(
    request: reqwest::RequestBuilder,
    url: &Url,
) -> Result<serde_json::Map<String, Value>, FetchError> {
    let name = || url.as_str().to_owned();
    let mut response = request
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|source| FetchError::Transport {
            url: name(),
            source,
        })?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status {
            url: name(),
            status: response.status().as_u16(),
        });
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(FetchError::TooLarge { url: name() });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| FetchError::Transport {
            url: name(),
            source,
        })?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::TooLarge { url: name() });
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(FetchError::NotJson { url: name() }),
    }
}
