//! The gateway's one outbound HTTP client: HTTP upstreams, the authorization server (metadata,
//! JWKS, introspection), alert webhooks, trace export and the scanner's TLS probe all use it,
//! so the binary carries one client stack.
//!
//! HTTP/1.1 on hyper's connection-level API, with a small pool of idle connections per host,
//! over rustls on `https` (ring, TLS 1.2 and 1.3, the Mozilla root set from webpki roots,
//! built in: the system store is not read; ALPN `http/1.1`). `TCP_NODELAY` is set. It follows
//! no redirect (a 3xx is an answer like any other: a redirect would be a second, unvetted URL)
//! and takes no proxy from the environment. Bodies are read under a size bound. Errors name no
//! URL, header or body.
//!
//! HTTP/2 is not offered: every MCP server speaks HTTP/1.1, and a general-purpose pooled client
//! with HTTP/2 (hyper-util's, which reqwest also wraps) is about a megabyte of code, most of
//! the gateway's idle memory being its own code pages.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
pub use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The `User-Agent` every request carries unless it sets its own.
pub const USER_AGENT_VALUE: &str = concat!("mcp-warden/", env!("CARGO_PKG_VERSION"));

/// An idle pooled connection older than this is closed instead of reused.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per client (the oldest go first).
const POOL_MAX_IDLE: usize = 32;

/// A request about to be sent.
pub type Request = http::Request<Full<Bytes>>;
/// An answer whose body is still to be read.
pub type Response = http::Response<Incoming>;

/// Why a request failed. Never carries a URL, a header value or a body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not a valid request target.
    #[error("the url is not a valid request target")]
    Url,
    /// No answer (or no connection) within the time allowed.
    #[error("timed out")]
    Timeout,
    /// The host could not be resolved or connected to.
    #[error("cannot connect")]
    Connect(#[source] std::io::Error),
    /// The TLS handshake failed (an untrusted or mismatched certificate, among others).
    #[error("tls handshake failed")]
    Handshake(#[source] std::io::Error),
    /// The HTTP exchange failed (the connection broke, the answer was malformed).
    #[error("http exchange failed")]
    Http(#[source] hyper::Error),
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
    /// True for a timeout, the connect timeout included.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }

    /// The error and its causes, joined by `: ` (for logs and findings; names no secret).
    pub fn chain(&self) -> String {
        error_chain(self)
    }
}

/// An error and its causes on one line, joined by `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
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

/// Where a connection goes: scheme and authority (a cheap clone of the request's, so a
/// request allocates nothing to find its pooled connection).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    authority: Authority,
}

impl Origin {
    fn of(uri: &Uri) -> Result<Origin, Error> {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(Error::Url),
        };
        let authority = uri.authority().ok_or(Error::Url)?.clone();
        let origin = Origin { https, authority };
        if origin.authority.as_str().contains('@') || origin.host().is_empty() {
            return Err(Error::Url);
        }
        Ok(origin)
    }

    /// The host, without the brackets of an IPv6 address.
    fn host(&self) -> &str {
        let host = self.authority.host();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.https { 443 } else { 80 })
    }
}

struct Idle {
    origin: Origin,
    sender: http1::SendRequest<Full<Bytes>>,
    since: Instant,
}

struct Inner {
    /// Built on the first `https` connection: a client that only ever speaks plain HTTP (a
    /// loopback upstream) never touches the TLS code.
    tls: std::sync::OnceLock<Result<tokio_rustls::TlsConnector, rustls::Error>>,
    /// Trust beyond the Mozilla roots, and a client certificate ([`Client::with_tls`]).
    options: TlsOptions,
    connect_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

/// The client; clones share its pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connect_timeout", &self.inner.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client whose connections (TCP and TLS) are established within `connect_timeout`.
    /// Nothing is built yet (the TLS configuration waits for the first `https` connection).
    pub fn new(connect_timeout: Duration) -> Client {
        Client::with_tls(connect_timeout, TlsOptions::default())
    }

    /// [`Client::new`] with `options` for its `https` connections: roots trusted besides the
    /// Mozilla ones, a client certificate.
    pub fn with_tls(connect_timeout: Duration, options: TlsOptions) -> Client {
        Client {
            inner: Arc::new(Inner {
                tls: std::sync::OnceLock::new(),
                options,
                connect_timeout,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    fn tls(&self) -> Result<tokio_rustls::TlsConnector, Error> {
        self.inner
            .tls
            .get_or_init(|| tls_connector(&self.inner.options))
            .clone()
            .map_err(Error::Tls)
    }

    /// Sends `request` (absolute URI) and returns the answer's head; its body is the caller's
    /// to read. A pooled connection the server closed before the request went out is replaced
    /// by a new one, once.
    pub async fn send(&self, mut request: Request) -> Result<Response, Error> {
        let origin = Origin::of(request.uri())?;
        to_origin_form(&mut request, &origin)?;
        let mut fresh = false;
        let mut sender = match self.checkout(&origin) {
            Some(sender) => sender,
            None => {
                fresh = true;
                self.connect(&origin).await?
            }
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut error) => match error.take_message() {
                // Never written: the pooled connection was gone. A new one, once.
                Some(request) if !fresh => {
                    sender = self.connect(&origin).await?;
                    sender.send_request(request).await.map_err(Error::Http)?
                }
                _ => return Err(Error::Http(error.into_error())),
            },
        };
        self.checkin_when_ready(origin, sender);
        Ok(response)
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

    /// Idle connections in the pool now (for diagnostics and tests).
    pub fn idle_connections(&self) -> usize {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The most recently used idle connection to `origin` that is still open and young.
    fn checkout(&self, origin: &Origin) -> Option<http1::SendRequest<Full<Bytes>>> {
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        idle.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < POOL_IDLE_TIMEOUT);
        let at = idle.iter().rposition(|i| i.origin == *origin)?;
        Some(idle.remove(at).sender)
    }

    /// Returns the connection to the pool once its answer has been read to the end (an
    /// HTTP/1.1 connection carries one exchange at a time); a connection that closes instead
    /// (the body was dropped unread, or the server ended it) is not kept.
    fn checkin_when_ready(&self, origin: Origin, mut sender: http1::SendRequest<Full<Bytes>>) {
        let pool = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            let Some(inner) = pool.upgrade() else { return };
            let mut idle = inner.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() >= POOL_MAX_IDLE {
                idle.remove(0);
            }
            idle.push(Idle {
                origin,
                sender,
                since: Instant::now(),
            });
        });
    }

    /// A new connection to `origin`: TCP (each resolved address in turn), TLS for `https`,
    /// the HTTP/1.1 handshake, all within the connect timeout.
    async fn connect(&self, origin: &Origin) -> Result<http1::SendRequest<Full<Bytes>>, Error> {
        let connect = async {
            let tcp = tcp_connect(origin.host(), origin.port()).await?;
            let stream = if origin.https {
                let name =
                    ServerName::try_from(origin.host().to_owned()).map_err(|_| Error::Url)?;
                let tls = self
                    .tls()?
                    .connect(name, tcp)
                    .await
                    .map_err(Error::Handshake)?;
                Stream::Tls(Box::new(tls))
            } else {
                Stream::Plain(tcp)
            };
            handshake(stream).await
        };
        tokio::time::timeout(self.inner.connect_timeout, connect)
            .await
            .map_err(|_| Error::Timeout)?
    }
}

/// What an `https` connection trusts and presents beyond the defaults.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// Certificates trusted as roots besides the Mozilla ones (an internal certificate
    /// authority; [`read_ca_file`]).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// A certificate to present when the server asks for one (mutual TLS).
    pub identity: Option<Arc<ClientIdentity>>,
}

impl TlsOptions {
    /// The certificates of the PEM file `ca_file` as roots besides the Mozilla ones (none
    /// without a file), no client certificate: what every `ca_file` setting means. Errors are
    /// [`read_ca_file`]'s, for the caller to prefix with the setting's name.
    pub fn trusting(ca_file: Option<&std::path::Path>) -> Result<TlsOptions, String> {
        Ok(TlsOptions {
            extra_roots: match ca_file {
                Some(path) => read_ca_file(path)?,
                None => Vec::new(),
            },
            identity: None,
        })
    }
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("extra_roots", &self.extra_roots.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// A client certificate chain and its private key, for mutual TLS.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Reads a PEM certificate chain (`cert`, the client's own certificate first) and its PEM
    /// private key (`key`: PKCS#8, PKCS#1 or SEC1), and checks that rustls can present them.
    /// The error names the file and what is wrong, never the key.
    pub fn read(cert: &std::path::Path, key: &std::path::Path) -> Result<ClientIdentity, String> {
        let chain = pem_certificates(cert)?;
        let key_der = rustls_pemfile::private_key(&mut read_file(key)?.as_slice())
            .map_err(|e| format!("{} is not valid PEM: {e}", key.display()))?
            .ok_or_else(|| format!("{} holds no PEM private key", key.display()))?;
        let identity = ClientIdentity {
            chain,
            key: key_der,
        };
        // rustls checks here that it can sign with the key and that the key is the
        // certificate's: a wrong pair fails at start-up, not at the first connection.
        rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(identity.key.clone_key())
            .and_then(|signing| {
                rustls::sign::CertifiedKey::new(identity.chain.clone(), signing).keys_match()
            })
            .map_err(|e| {
                format!(
                    "{} and {} cannot be used together: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
        Ok(identity)
    }
}

/// rustls with ring, TLS 1.2 and 1.3, the Mozilla roots and `options`' extra ones, its client
/// certificate if any, ALPN `http/1.1`.
fn tls_connector(options: &TlsOptions) -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in &options.extra_roots {
        roots.add(cert.clone())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let mut config = match &options.identity {
        Some(identity) => {
            builder.with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The certificates of a PEM file, to trust as roots ([`TlsOptions::extra_roots`]): at least one,
/// each one a certificate rustls accepts as a trust anchor. The error says what is wrong with
/// the file, without its contents.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = pem_certificates(path)?;
    let mut check = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        check.add(cert.clone()).map_err(|e| {
            format!(
                "certificate {} of {} cannot be a trust anchor: {e}",
                i + 1,
                path.display()
            )
        })?;
    }
    Ok(certs)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The certificates of a PEM file: at least one.
fn pem_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut read_file(path)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        ));
    }
    Ok(certs)
}

async fn tcp_connect(host: &str, port: u16) -> Result<TcpStream, Error> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port))
        .await
        .map_err(Error::Connect)?
    {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                tcp.set_nodelay(true).map_err(Error::Connect)?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Connect(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
    })))
}

/// A connection's byte stream, plain or TLS: one type, so hyper's HTTP/1.1 client code is
/// compiled once (a generic `handshake` doubled it).
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

async fn handshake(io: Stream) -> Result<http1::SendRequest<Full<Bytes>>, Error> {
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(Error::Http)?;
    tokio::spawn(async move {
        // Ends when the connection closes; an error here is the exchange's error too.
        let _ = connection.await;
    });
    Ok(sender)
}

/// An absolute URI becomes origin-form (`/path?query`) with a `Host` header, as HTTP/1.1
/// sends it.
fn to_origin_form(request: &mut Request, origin: &Origin) -> Result<(), Error> {
    if !request.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(origin.authority.as_str()).map_err(|_| Error::Url)?;
        request.headers_mut().insert(HOST, host);
    }
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
    Ok(())
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
