//! The gateway's one outbound HTTP client: HTTP upstreams, the authorization server (metadata,
//! JWKS, introspection), alert webhooks, trace export and the scanner's TLS probe all use it,
//! so the binary carries one client stack.
//!
//! hyper's pooled client over rustls: ring, TLS 1.2 and 1.3, the Mozilla root set (webpki
//! roots, built in; the system store is not read), HTTP/2 or HTTP/1.1 by ALPN, `TCP_NODELAY`.
//! It follows no redirect (a 3xx is an answer like any other: a redirect would be a second,
//! unvetted URL) and takes no proxy from the environment. Bodies are read under a size bound.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The `User-Agent` every request carries unless it sets its own.
pub const USER_AGENT_VALUE: &str = concat!("mcp-warden/", env!("CARGO_PKG_VERSION"));

/// Keeps idle pooled connections long enough to be reused by the next request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A request about to be sent.
pub type Request = http::Request<Full<Bytes>>;
/// An answer whose body is still to be read.
pub type Response = http::Response<Incoming>;

/// Why a request failed. Never carries a header value or a body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not a valid request target.
    #[error("the url is not a valid request target")]
    Url,
    /// No answer within the time allowed.
    #[error("timed out")]
    Timeout,
    /// Connecting, TLS, or sending the request failed.
    #[error("request failed")]
    Transport(#[source] hyper_util::client::legacy::Error),
    /// The body broke off.
    #[error("reading the body failed")]
    Body(#[source] hyper::Error),
    /// The body is longer than allowed.
    #[error("the body exceeds {0} bytes")]
    TooLarge(usize),
    /// The TLS configuration could not be built.
    #[error("the tls configuration cannot be built")]
    Tls(#[source] rustls::Error),
}

impl Error {
    /// True for a timeout, including the connector's connect timeout.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout => true,
            Error::Transport(e) => causes_include_timeout(e),
            _ => false,
        }
    }

    /// The error and its causes, joined by `: ` (for logs and findings; names no secret).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            out.push_str(": ");
            out.push_str(&e.to_string());
            source = e.source();
        }
        out
    }
}

fn causes_include_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// A whole answer: status, headers and body.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, at most the bound asked for.
    pub body: Bytes,
}

/// The pooled client; clones share the pool.
#[derive(Clone, Debug)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    /// A client whose connections are established within `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Result<Client, Error> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(Error::Tls)?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Client { inner })
    }

    /// Sends `request` and returns the answer's head; its body is the caller's to read.
    pub async fn send(&self, request: Request) -> Result<Response, Error> {
        self.inner.request(request).await.map_err(Error::Transport)
    }

    /// Sends `request` and reads the whole answer, at most `max_body` bytes of body, all
    /// within `timeout`.
    pub async fn fetch(
        &self,
        request: Request,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Fetched, Error> {
        let exchange = async {
            let response = self.send(request).await?;
            let (parts, body) = response.into_parts();
            let body = read_body(&parts.headers, body, max_body).await?;
            Ok(Fetched {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout)?
    }
}

/// A request of `method` to `uri` with `headers` (plus the user agent unless set) and `body`.
pub fn request(method: Method, uri: Uri, mut headers: HeaderMap, body: Bytes) -> Request {
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    }
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// The request target of `url` (for http and https URLs; credentials in a URL are refused, as
/// are fragments, which are never sent).
pub fn uri(url: &url::Url) -> Result<Uri, Error> {
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(Error::Url);
    }
    url.as_str().parse().map_err(|_| Error::Url)
}

/// The next data chunk of a body (trailers are skipped), `None` at its end.
pub async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>, hyper::Error> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Reads a whole body of at most `max` bytes (a larger `Content-Length` is refused before
/// anything is read).
pub async fn read_body(
    headers: &HeaderMap,
    mut body: Incoming,
    max: usize,
) -> Result<Bytes, Error> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Error::TooLarge(max));
    }
    let mut out = BytesMut::new();
    while let Some(chunk) = next_chunk(&mut body).await.map_err(Error::Body)? {
        if out.len() + chunk.len() > max {
            return Err(Error::TooLarge(max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}
