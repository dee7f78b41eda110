//! The Streamable HTTP server of `mcp-warden serve` (hyper 1, HTTP/1.1, and HTTP/2 over TLS).
//!
//! One endpoint ([`HttpOptions::path`], `/mcp` by default) serves both protocol eras:
//!
//! - **Legacy** (2025-03-26 .. 2025-11-25): `initialize` without a session id opens a session
//!   whose id is returned in `Mcp-Session-Id`; later POSTs, the standalone GET stream and DELETE
//!   must carry it. The gateway owns the SSE event-id space of each session and replays a
//!   stream's recent events on a GET with `Last-Event-ID`.
//! - **Modern** (2026-07-28): a POST whose body declares
//!   `_meta["io.modelcontextprotocol/protocolVersion"]` is stateless. Its `MCP-Protocol-Version`,
//!   `Mcp-Method` and `Mcp-Name` headers are validated against the body (the body is the source
//!   of truth) before the handler sees it, and so are a `tools/call`'s `Mcp-Param-{Name}`
//!   headers, against the arguments the tool marks with `x-mcp-header`
//!   ([`Handler::param_headers`](warden_session::Handler::param_headers)).
//!
//! Before any of that, every request passes the DNS-rebinding defence (`Host` and `Origin`
//! allow-lists, 403), and the body is bounded in size and in read time; headers are bounded in
//! read time (slowloris). Then the caller is authenticated ([`HttpOptions::auth`]: bearer
//! tokens or API keys, 400/401/403/503 with a `WWW-Authenticate` challenge) before any session
//! lookup; without it every caller is [`Principal::anonymous`](warden_guard::Principal::anonymous).
//! `GET /.well-known/oauth-protected-resource` (and the same with the endpoint path appended)
//! serves the RFC 9728 metadata when OAuth is configured.
//!
//! Status codes, by check order:
//!
//! | condition | status | JSON-RPC body |
//! |---|---|---|
//! | `Host` missing | 400 | `-32600`, id null |
//! | `Host` not in `allowed_hosts`, or `Origin` present and not in `allowed_origins` | 403 | `-32600`, id null |
//! | CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) to a served path, from a `cors_origins` origin, for `GET`/`POST`/`DELETE` and MCP's headers | 204 + `Access-Control-Allow-*` | none |
//! | any other CORS preflight to a served path | 403 | `-32600`, id null |
//! | path is the RFC 9728 metadata (OAuth configured) | 200 | the metadata document |
//! | path is not the endpoint | 404 | none |
//! | `access_token` in the query, several or malformed `Authorization` headers | 400 + challenge | `-32600`, id null |
//! | no credentials; invalid, expired, foreign-audience token; bad API key | 401 + `WWW-Authenticate` | `-31003`, id null |
//! | token without the required scopes | 403 + `error="insufficient_scope"` | `-31003`, id null |
//! | authorization server unreachable and no cached keys | 503 | `-32603`, id null |
//! | method other than POST, GET, DELETE | 405 + `Allow` | `-32600`, id null |
//! | POST `Content-Type` not `application/json` | 415 | `-32600`, id null |
//! | `Accept` allows neither JSON nor SSE (GET: not SSE) | 406 | `-32600`, id null |
//! | body over `max_body_bytes` (or message over `limits.max_message_bytes`) | 413 | `-32600` |
//! | body not read within `body_read_timeout` | 408 | `-32600`, id null |
//! | invalid JSON, duplicate keys | 400 | `-32700`, id null |
//! | not a JSON-RPC message, too deep; a batch (array) outside a 2025-03-26 session, or empty | 400 | `-32600`, id when readable |
//! | batch in a 2025-03-26 session: only notifications and responses | 202 | none |
//! | batch in a 2025-03-26 session with requests | 200 `text/event-stream` (each response an event), or `application/json` (one array) for a JSON-only client | the answers |
//! | modern: `MCP-Protocol-Version` missing, or differs from `_meta` | 400 | `-32020` |
//! | modern: `_meta` lacks `protocolVersion` or `clientCapabilities` | 400 | `-32602` |
//! | modern: version not supported | 400 | `-32022`, `data: {supported, requested}` |
//! | modern: `Mcp-Method` / `Mcp-Name` missing, invalid or different from the body | 400 | `-32020` |
//! | modern `tools/call`: an `Mcp-Param-{Name}` of the tool's `x-mcp-header` arguments missing, invalid or different from the argument | 400 | `-32020` |
//! | modern: handler answers `-32601` / `-32020`, `-32021`, `-32022` | 404 / 400 | the handler's |
//! | legacy: no `Mcp-Session-Id` on anything but `initialize` | 400 | `-32600` |
//! | legacy: unknown, ended or another principal's session | 404 | `-32600` |
//! | legacy: the session ended while the request was handled (a DELETE, expiry), and it failed | 404 (a JSON answer; SSE has sent 200 already) | its error |
//! | legacy: `MCP-Protocol-Version` unsupported or not the negotiated one | 400 | `-32600` |
//! | legacy: session table full on `initialize` | 503 | `-31004` |
//! | second concurrent GET stream of a session | 409 | `-32600` |
//! | notification or response accepted | 202 | none |
//! | request: final response first | 200 `application/json` | the response |
//! | request: a rate-limit refusal (`-31004`) first | 429 + `Retry-After`; `application/json`, or one `text/event-stream` event when the client takes only SSE | the refusal, with `data.retryAfterMs` |
//! | request: a rate-limit refusal after other events | (200 `text/event-stream` already sent) | the refusal as an event, with `data.retryAfterMs` |
//! | request: anything before the response | 200 `text/event-stream` | events |
//! | DELETE of a live session | 204 | none |
//!
//! Every answer to a request from a `cors_origins` origin (except a refused preflight) names
//! that origin in `Access-Control-Allow-Origin` and exposes the MCP headers (see `cors`).

mod audit;
mod auth;
mod body;
mod cors;
mod headers;
mod params;
mod service;
mod streams;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use warden_proto::{DEFAULT_MAX_MESSAGE_BYTES, Limits};
use warden_session::Handler;

use crate::DownstreamError;
pub use auth::HttpAuth;
use service::Shared;
use streams::{StreamConfig, StreamRegistry};
use warden_config::{HostAllowlist, OriginAllowlist};

/// The MCP endpoint path.
pub const DEFAULT_PATH: &str = "/mcp";
/// Slowloris bound: a client gets this long to send a complete request head (and to finish a
/// TLS handshake). Also how long an idle HTTP/1.1 keep-alive connection stays open.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A body of `max_body_bytes` arrives well within this on any working link.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 ping interval (and the time a ping may go unanswered) to detect dead peers.
pub const DEFAULT_HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
/// SSE comment interval: below the 60 s idle timeout of common proxies and load balancers.
pub const DEFAULT_SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Reconnection delay the priming event asks clients to wait after a dropped stream.
pub const DEFAULT_SSE_RETRY: Duration = Duration::from_secs(1);
/// Events kept per stream for `Last-Event-ID` replay: covers a reconnect after a brief drop.
pub const DEFAULT_SSE_REPLAY_BUFFER: usize = 64;
/// Bytes kept per stream for replay, whatever the event count: bounds memory per stream.
pub const DEFAULT_SSE_REPLAY_BYTES: usize = 8 << 20;
/// Streams (open or recently closed) whose events a session keeps for replay.
pub const DEFAULT_MAX_STREAMS_PER_SESSION: usize = 16;
/// Concurrent client connections: bounds sockets and per-connection memory.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long open requests may finish after shutdown is requested.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often session stream state is checked for sessions that ended or expired.
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);
/// Concurrent streams per HTTP/2 connection.
const HTTP2_MAX_STREAMS: u32 = 256;

/// Certificate chain and private key of the TLS listener (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Settings of the Streamable HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The MCP endpoint path; other paths are 404.
    pub path: String,
    /// Accepted `Host` values: `name` (any port) or `name:port`; IPv6 in brackets (`[::1]`);
    /// `*` accepts any host (only behind a proxy that checks it). Case-insensitive.
    pub allowed_hosts: HostAllowlist,
    /// Accepted `Origin` values when the header is present: `scheme://host` (the scheme's
    /// default port), `scheme://host:port` or `scheme://host:*`; the opaque `null` origin never
    /// matches. Requests without `Origin` (non-browser clients) are not affected.
    pub allowed_origins: OriginAllowlist,
    /// Origins whose pages may read the answers (CORS, see `cors`); each should also be in
    /// `allowed_origins`, whose check comes first. Empty (the default): no CORS headers, and
    /// a preflight is refused.
    pub cors_origins: OriginAllowlist,
    /// Largest accepted POST body.
    pub max_body_bytes: usize,
    /// Size and depth limits of the decoded message.
    pub limits: Limits,
    /// Time to receive a complete request head, and to finish a TLS handshake.
    pub header_read_timeout: Duration,
    /// Time to receive a complete request body.
    pub body_read_timeout: Duration,
    /// HTTP/2 keep-alive ping interval and ping timeout.
    pub http2_keepalive: Duration,
    /// Interval of SSE keep-alive comments on idle streams.
    pub sse_keepalive: Duration,
    /// `retry` hint sent in each stream's priming event.
    pub sse_retry: Duration,
    /// Events kept per stream for `Last-Event-ID` replay.
    pub sse_replay_buffer: usize,
    /// Bytes kept per stream for replay.
    pub sse_replay_bytes: usize,
    /// Streams per session whose events are kept for replay; the oldest closed stream's events
    /// are dropped first.
    pub max_streams_per_session: usize,
    /// Concurrent connections; further connections are closed at once.
    pub max_connections: usize,
    /// Time open requests get to finish after shutdown is requested.
    pub shutdown_grace: Duration,
    /// Serve HTTPS (TLS 1.2 and 1.3) with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Authenticates every request before the session layer and serves the RFC 9728
    /// metadata; `None`: every caller is anonymous.
    pub auth: Option<HttpAuth>,
    /// The audit log: every authentication attempt is recorded (a refusal is on disk before the
    /// refusal is sent).
    pub audit: Option<warden_audit::AuditLog>,
}

impl HttpOptions {
    /// Defaults for `listen`: on a loopback address, `localhost`, `127.0.0.1` and `[::1]` are
    /// the allowed hosts and their `http`/`https` origins the allowed origins; otherwise the
    /// listen address itself.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            path: DEFAULT_PATH.into(),
            allowed_hosts: HostAllowlist::default(),
            allowed_origins: OriginAllowlist::default(),
            cors_origins: OriginAllowlist::new(Vec::new()),
            max_body_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            limits: Limits::default(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            http2_keepalive: DEFAULT_HTTP2_KEEPALIVE,
            sse_keepalive: DEFAULT_SSE_KEEPALIVE,
            sse_retry: DEFAULT_SSE_RETRY,
            sse_replay_buffer: DEFAULT_SSE_REPLAY_BUFFER,
            sse_replay_bytes: DEFAULT_SSE_REPLAY_BYTES,
            max_streams_per_session: DEFAULT_MAX_STREAMS_PER_SESSION,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            tls: None,
            auth: None,
            audit: None,
        }
    }

    fn validate(&self) -> Result<(), DownstreamError> {
        let fail = |reason: &str| {
            Err(DownstreamError::Options {
                reason: reason.into(),
            })
        };
        if !self.path.starts_with('/') {
            return fail("path must start with `/`");
        }
        if let HostAllowlist::Only(list) = &self.allowed_hosts
            && list.is_empty()
        {
            return fail("allowed_hosts is empty: every request would be refused");
        }
        if self.max_body_bytes == 0 || self.max_connections == 0 {
            return fail("max_body_bytes and max_connections must be positive");
        }
        let zero = Duration::ZERO;
        if self.header_read_timeout == zero
            || self.body_read_timeout == zero
            || self.sse_keepalive == zero
            || self.http2_keepalive == zero
        {
            return fail("timeouts and keep-alive intervals must be positive");
        }
        Ok(())
    }
}

/// A bound, not yet running HTTP server: lets callers (and tests on `127.0.0.1:0`) learn the
/// address before serving.
pub struct BoundServer<H: Handler> {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared<H>>,
}

impl<H: Handler> std::fmt::Debug for BoundServer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundServer")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Validates `opts`, loads TLS files and binds the listener.
pub async fn bind_http<H: Handler>(
    handler: Arc<H>,
    opts: HttpOptions,
) -> Result<BoundServer<H>, DownstreamError> {
    opts.validate()?;
    let tls = opts.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener =
        TcpListener::bind(opts.listen)
            .await
            .map_err(|source| DownstreamError::Bind {
                addr: opts.listen,
                source,
            })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| DownstreamError::Bind {
            addr: opts.listen,
            source,
        })?;
    let streams = StreamRegistry::new(StreamConfig {
        replay_events: opts.sse_replay_buffer,
        replay_bytes: opts.sse_replay_bytes,
        max_streams: opts.max_streams_per_session.max(1),
        keepalive: opts.sse_keepalive,
        retry: opts.sse_retry,
        stalled_reader: streams::STALLED_READER,
        replay_budget: streams::REPLAY_BUDGET,
    });
    let shared = Arc::new(Shared::new(handler, opts, local_addr.port(), streams));
    Ok(BoundServer {
        listener,
        local_addr,
        tls,
        shared,
    })
}

/// Binds and serves until `shutdown` is cancelled; see [`bind_http`] and [`BoundServer::run`].
pub async fn serve_http<H: Handler>(
    handler: Arc<H>,
    opts: HttpOptions,
    shutdown: CancellationToken,
) -> Result<(), DownstreamError> {
    bind_http(handler, opts).await?.run(shutdown).await
}

impl<H: Handler> BoundServer<H> {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts connections until `shutdown` is cancelled, then stops accepting, ends open SSE
    /// streams, lets in-flight requests finish within [`HttpOptions::shutdown_grace`] and
    /// returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DownstreamError> {
        let BoundServer {
            listener,
            local_addr,
            tls,
            shared,
        } = self;
        info!(addr = %local_addr, tls = tls.is_some(), path = %shared.opts.path, "serving streamable http");
        let tracker = TaskTracker::new();
        let connections = Arc::new(Semaphore::new(shared.opts.max_connections));
        let sweeper = tokio::spawn(sweep(Arc::clone(&shared), shutdown.clone()));
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Per-connection failures (reset before accept) and descriptor exhaustion
                    // are transient: back off briefly instead of spinning or stopping.
                    warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                debug!(%peer, "connection limit reached; closing connection");
                drop(tcp);
                continue;
            };
            // Small JSON responses must not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
            tracker.spawn(connection(
                Arc::clone(&shared),
                tls.clone(),
                tcp,
                peer,
                shutdown.clone(),
                permit,
            ));
        }
        drop(listener);
        sweeper.abort();
        // SSE streams never end on their own; cancelling them lets connections close.
        shared.streams.shutdown();
        tracker.close();
        if tokio::time::timeout(shared.opts.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                open = tracker.len(),
                "shutdown grace elapsed; dropping open connections"
            );
        }
        info!(addr = %local_addr, "streamable http stopped");
        Ok(())
    }
}

/// Drops the stream state of sessions that ended or expired.
async fn sweep<H: Handler>(shared: Arc<Shared<H>>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => shared.streams.sweep(),
        }
    }
}

async fn connection<H: Handler>(
    shared: Arc<Shared<H>>,
    tls: Option<TlsAcceptor>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let Some(acceptor) = tls else {
        // Plain HTTP is HTTP/1.1 only: no prior-knowledge HTTP/2, whose preface detection and
        // stream handling have no header-read timeout.
        serve_http1(shared, tcp, peer, shutdown).await;
        return;
    };
    let handshake = tokio::time::timeout(shared.opts.header_read_timeout, acceptor.accept(tcp));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            debug!(%peer, %error, "tls handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "tls handshake timed out");
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        serve_http2(shared, stream, peer, shutdown).await;
    } else {
        serve_http1(shared, stream, peer, shutdown).await;
    }
}

async fn serve_http1<H, S>(
    shared: Arc<Shared<H>>,
    io: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
) where
    H: Handler,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.opts.header_read_timeout)
        .keep_alive(true);
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let shared = Arc::clone(&shared);
        // The peer's address, for the audit records of authentication attempts.
        request.extensions_mut().insert(audit::Remote(peer));
        async move { Ok::<_, Infallible>(shared.serve(request).await) }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!(%peer, %error, "http/1 connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

async fn serve_http2<H, S>(
    shared: Arc<Shared<H>>,
    io: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
) where
    H: Handler,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(shared.opts.http2_keepalive)
        .keep_alive_timeout(shared.opts.http2_keepalive)
        .max_concurrent_streams(HTTP2_MAX_STREAMS);
    // HTTP/2 has no header-read timeout, and its pings keep an idle connection alive: a peer
    // that opens no request (not even the preface) would hold a connection slot for ever. A
    // connection with no request being handled for `header_read_timeout` is closed: at once if
    // it never had one (hyper defers a graceful close until the peer's preface, which may
    // never come), else gracefully (GOAWAY; streams already answered, such as an SSE body, run
    // to their end), as HTTP/1 closes a keep-alive connection that sends no request head in
    // that time.
    let (active, mut watched) = tokio::sync::watch::channel(Requests::default());
    let active = Arc::new(active);
    let requests = Arc::clone(&active);
    let idle_limit = shared.opts.header_read_timeout;
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let shared = Arc::clone(&shared);
        let handling = Handling::new(Arc::clone(&active));
        // The peer's address, for the audit records of authentication attempts.
        request.extensions_mut().insert(audit::Remote(peer));
        async move {
            let _handling = handling;
            Ok::<_, Infallible>(shared.serve(request).await)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Resolves when the connection has been idle for `idle_limit`: with whether it ever had
    // a request.
    let idle = async move {
        loop {
            let now = *watched.borrow_and_update();
            if now.active == 0 {
                tokio::select! {
                    () = tokio::time::sleep(idle_limit) => return now.seen > 0,
                    changed = watched.changed() => if changed.is_err() { return true },
                }
            } else if watched.changed().await.is_err() {
                return true;
            }
        }
    };
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    debug!(%peer, %error, "http/2 connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                if requests.borrow().seen == 0 {
                    // A graceful close waits for the peer's preface, which may never come.
                    return;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            served = &mut idle, if !closing => {
                debug!(%peer, served, "idle http/2 connection closed");
                if !served {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The requests of one HTTP/2 connection: being handled now, and handled so far.
#[derive(Debug, Default, Clone, Copy)]
struct Requests {
    active: usize,
    seen: u64,
}

/// One request being handled on an HTTP/2 connection: counted while it lives.
struct Handling(Arc<tokio::sync::watch::Sender<Requests>>);

impl Handling {
    fn new(count: Arc<tokio::sync::watch::Sender<Requests>>) -> Self {
        count.send_modify(|r| {
            r.active += 1;
            r.seen += 1;
        });
        Self(count)
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0
            .send_modify(|r| r.active = r.active.saturating_sub(1));
    }
}
