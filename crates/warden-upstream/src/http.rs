//! Streamable HTTP upstreams: the client side of both eras (2025-03-26 .. 2025-11-25 with
//! sessions, standalone GET stream and SSE resumption; 2026-07-28 stateless with mirrored
//! `Mcp-Method`/`Mcp-Name` headers).
//!
//! Each request is one POST whose answer (JSON or an SSE stream) is read by a task owned by
//! the request's `ResponseStream`; dropping the stream aborts the task and so closes the HTTP
//! stream, which is the 2026-07-28 cancellation signal. Redirects are never followed (an
//! upstream must not steer the gateway to another host), and every body is read under the
//! message size limit.
//!
//! The client is the gateway's shared one ([`warden_http`]: hyper over rustls, no redirects,
//! no proxy from the environment), driven directly: the endpoint's URI is parsed once and each
//! request is built from prepared headers, with no URL re-parsing on the path of every call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::time::timeout;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, trace, warn};
use url::Url;
use warden_http::{Request as Outgoing, Response, next_chunk};
use warden_proto::jsonrpc::{Recovered, recover_response_id};
use warden_proto::mcp::{self, Era};
use warden_proto::sse::{SseItem, SseParser};
use warden_proto::{DecodeError, ErrorCode, Id, Kind, Limits, Message, decode_lazy};

use crate::error::{CloseReason, UpstreamError, expect_kind, kind_name};
use crate::headers::{
    LAST_EVENT_ID, MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID,
    encode_mirrored_value, is_valid_session_id,
};
use crate::pending::{
    self, INITIALIZE, IdAllocator, Outcome, Pending, Route, decode_error_kind, deliver_note,
    refusal_reason,
};
use crate::stats::{Counters, Stats};
use crate::stream::{Link, ResponseStream, deadline_after};
use crate::{UNSOLICITED_CHANNEL_CAPACITY, lock};

/// Bounds one-way exchanges (notifications, responses, DELETE) and the wait for the headers
/// of a GET stream.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A reachable server accepts a TCP/TLS connection well within this.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reconnection delay when the server sent no `retry` field (the SSE default is
/// implementation-defined; browsers use a few seconds).
const DEFAULT_SSE_RETRY: Duration = Duration::from_secs(1);
/// A server's `retry` is capped: it must not park a request or the GET stream for hours.
const MAX_SSE_RETRY: Duration = Duration::from_secs(30);
/// Consecutive reconnections without a single event before a response stream is given up.
const MAX_RESUME_ATTEMPTS: u32 = 5;
/// Consecutive failures before the standalone GET stream is given up.
const MAX_LISTEN_FAILURES: u32 = 5;
/// Room for the `data:`/`id:`/`event:` field names around a message in one SSE event.
const SSE_EVENT_OVERHEAD: usize = 64 * 1024;

/// Headers the transport sets itself; a configured header may not override them.
const MANAGED_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    MCP_SESSION_ID,
    MCP_PROTOCOL_VERSION,
    MCP_METHOD,
    MCP_NAME,
    LAST_EVENT_ID,
];

/// How to reach a Streamable HTTP upstream.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// The upstream's configured name (used in logs and errors).
    pub name: String,
    /// The MCP endpoint (`http` or `https`).
    pub url: Url,
    /// Headers sent with every request (for example `Authorization`). The transport's own
    /// headers (`Accept`, `Content-Type`, `Mcp-*`, `Last-Event-ID`, ...) are refused.
    pub headers: Vec<(String, String)>,
    /// Message limits; every response body and SSE event is read under them.
    pub limits: Limits,
    /// Bounds notifications, responses, DELETE and waiting for a GET stream's headers.
    /// Requests use the timeout given to [`Connection::request`](crate::Connection::request).
    pub request_timeout: Duration,
    /// Bounds establishing a TCP/TLS connection.
    pub connect_timeout: Duration,
    /// For `tools/call` only: the longest a call may run in total, progress or not (see
    /// [`StdioSpec::max_call_duration`](crate::StdioSpec::max_call_duration)).
    pub max_call_duration: Option<Duration>,
    /// For an `https` endpoint: roots trusted besides the built-in Mozilla ones (an internal
    /// certificate authority) and a client certificate (mutual TLS).
    pub tls: warden_http::TlsOptions,
}

impl HttpSpec {
    /// A spec with no extra headers and default limits and timeouts.
    pub fn new(name: impl Into<String>, url: Url) -> HttpSpec {
        HttpSpec {
            name: name.into(),
            url,
            headers: Vec::new(),
            limits: Limits::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_call_duration: None,
            tls: warden_http::TlsOptions::default(),
        }
    }
}

/// What every connection to one upstream shares (forks included): the validated spec and
/// the client with its connection pool.
struct Endpoint {
    name: Arc<str>,
    /// The endpoint, parsed once.
    uri: Uri,
    /// Configured headers.
    headers: HeaderMap,
    limits: Limits,
    request_timeout: Duration,
    max_call: Option<Duration>,
    /// The pooled client (forks share it).
    client: warden_http::Client,
}

/// State of one connection (one legacy session at most).
pub(crate) struct Core {
    endpoint: Arc<Endpoint>,
    ids: IdAllocator,
    pending: Mutex<Pending>,
    session: watch::Sender<Option<Arc<str>>>,
    /// Set by a 404 on a session: only `initialize` is accepted until a new session starts.
    expired: AtomicBool,
    version: Mutex<Option<String>>,
    closed: AtomicBool,
    shutdown_done: OnceCell<()>,
    unsolicited: mpsc::Sender<crate::Unsolicited>,
    unsolicited_rx: Mutex<Option<mpsc::Receiver<crate::Unsolicited>>>,
    /// Ends the standalone GET stream.
    stop: CancellationToken,
    counters: Counters,
    /// Note queues that stayed full for a whole [`crate::pending::NOTE_WAIT`].
    stalled: crate::pending::Stalled,
}

/// What a `Connection` holds: dropping the last one stops the GET stream.
pub(crate) struct Handle {
    pub(crate) core: Arc<Core>,
    _stop: DropGuard,
}

/// Validates the spec and builds the client; no network I/O.
pub(crate) fn connect(spec: HttpSpec) -> Result<Handle, UpstreamError> {
    let config = |reason: String| UpstreamError::Config {
        name: spec.name.clone(),
        reason,
    };
    if !matches!(spec.url.scheme(), "http" | "https") || spec.url.host().is_none() {
        return Err(config(format!(
            "url `{}` is not an http or https url with a host",
            spec.url
        )));
    }
    if !spec.url.username().is_empty() || spec.url.password().is_some() {
        return Err(config(
            "the url carries credentials; configure an Authorization header instead".to_owned(),
        ));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| config(format!("header name `{name}` is invalid")))?;
        if MANAGED_HEADERS.contains(&header.as_str()) {
            return Err(config(format!(
                "header `{name}` is set by the transport and cannot be configured"
            )));
        }
        // The value may be a secret: never quote it.
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| config(format!("value of header `{name}` is invalid")))?;
        value.set_sensitive(true);
        headers.append(header, value);
    }
    let uri: Uri = warden_http::uri(&spec.url)
        .map_err(|_| config(format!("url `{}` is not a valid request target", spec.url)))?;
    let client = warden_http::Client::with_tls(spec.connect_timeout, spec.tls.clone());
    let endpoint = Arc::new(Endpoint {
        name: spec.name.as_str().into(),
        uri,
        headers,
        limits: spec.limits,
        request_timeout: spec.request_timeout,
        max_call: spec.max_call_duration,
        client,
    });
    Ok(Handle::new(endpoint))
}

impl Handle {
    fn new(endpoint: Arc<Endpoint>) -> Handle {
        let (unsolicited, unsolicited_rx) = mpsc::channel(UNSOLICITED_CHANNEL_CAPACITY);
        let stop = CancellationToken::new();
        let core = Arc::new(Core {
            endpoint,
            ids: IdAllocator::default(),
            pending: Mutex::new(Pending::default()),
            session: watch::Sender::new(None),
            expired: AtomicBool::new(false),
            version: Mutex::new(None),
            closed: AtomicBool::new(false),
            shutdown_done: OnceCell::new(),
            unsolicited,
            unsolicited_rx: Mutex::new(Some(unsolicited_rx)),
            stop: stop.clone(),
            counters: Counters::default(),
            stalled: crate::pending::Stalled::default(),
        });
        Handle {
            core,
            _stop: stop.drop_guard(),
        }
    }

    /// A fresh connection to the same endpoint (shared pool, no session, no version).
    pub(crate) fn fork(&self) -> Handle {
        Handle::new(self.core.endpoint.clone())
    }
}

/// True for revisions that mirror headers and have no resumption (2026-07-28 and later).
fn is_modern(version: &str) -> bool {
    match Era::of(version) {
        Some(era) => era == Era::Modern,
        // Unknown revisions dated after the first stateless one are assumed stateless too.
        None => is_revision_date(version) && version > mcp::V_2026_07_28,
    }
}

/// `YYYY-MM-DD`, the shape of every MCP revision name (so string order is date order).
fn is_revision_date(version: &str) -> bool {
    let b = version.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// The media type of a response, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Where an SSE stream left off.
struct Cursor {
    last_event_id: Option<String>,
    retry: Duration,
}

impl Default for Cursor {
    fn default() -> Cursor {
        Cursor {
            last_event_id: None,
            retry: DEFAULT_SSE_RETRY,
        }
    }
}

impl Core {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    pub(crate) fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && !self.expired.load(Ordering::Acquire)
    }

    /// Resolves once the connection is shut down (an HTTP upstream that stops answering is
    /// found by health checks, not here).
    pub(crate) async fn closed(&self) {
        self.stop.cancelled().await;
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.pending).len()
    }

    pub(crate) fn session_id(&self) -> Option<String> {
        self.session.borrow().as_deref().map(str::to_owned)
    }

    pub(crate) fn set_protocol_version(&self, version: &str) {
        *lock(&self.version) = Some(version.to_owned());
    }

    /// The revision a message goes out under: its own `_meta` declaration, else the one the
    /// session layer set.
    fn version_for(&self, message: &Message) -> Option<String> {
        mcp::declared_version(message)
            .map(str::to_owned)
            .or_else(|| lock(&self.version).clone())
    }

    fn check_open(&self) -> Result<(), UpstreamError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(UpstreamError::closed(self.name(), CloseReason::ShutDown));
        }
        Ok(())
    }

    fn expire(&self) {
        if !self.expired.swap(true, Ordering::AcqRel) {
            info!(upstream = %self.name(), "upstream session expired");
        }
    }

    fn transport_error(&self, error: warden_http::Error) -> UpstreamError {
        if error.is_timeout() {
            UpstreamError::Timeout
        } else {
            UpstreamError::Io {
                name: self.name().to_owned(),
                source: std::io::Error::other(error),
            }
        }
    }

    /// Headers common to every exchange: configured ones, the session and the version.
    fn base_headers(&self, version: Option<&str>) -> HeaderMap {
        let mut headers = self.endpoint.headers.clone();
        if let Some(session) = self.session.borrow().as_deref()
            && let Ok(value) = HeaderValue::from_str(session)
        {
            headers.insert(HeaderName::from_static(MCP_SESSION_ID), value);
        }
        if let Some(version) = version {
            match HeaderValue::from_str(version) {
                Ok(value) => {
                    headers.insert(HeaderName::from_static(MCP_PROTOCOL_VERSION), value);
                }
                Err(_) => {
                    debug!(upstream = %self.name(), "protocol version is not a valid header value; omitted")
                }
            }
        }
        headers
    }

    /// A request to the endpoint with `headers` and `body`.
    fn request_to(&self, method: Method, headers: HeaderMap, body: Bytes) -> Outgoing {
        warden_http::request(method, self.endpoint.uri.clone(), headers, body)
    }

    fn post(&self, message: &Message) -> Outgoing {
        let headers = self.post_headers(message, self.version_for(message).as_deref(), &[]);
        self.request_to(Method::POST, headers, message.bytes().clone())
    }

    /// The headers of a POST of `message` under `version`, with `extra` headers (2026-07-28
    /// `Mcp-Param-*` mirrors), which never replace the headers the transport manages.
    fn post_headers(
        &self,
        message: &Message,
        version: Option<&str>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> HeaderMap {
        let mut headers = self.base_headers(version);
        for (name, value) in extra {
            if !headers.contains_key(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if version.is_some_and(is_modern) {
            let mirrored = [
                (MCP_METHOD, message.method()),
                (MCP_NAME, mcp::header_name(message)),
            ];
            for (header, value) in mirrored {
                let Some(value) = value else { continue };
                match encode_mirrored_value(value).map(|v| HeaderValue::from_str(&v)) {
                    Some(Ok(value)) => {
                        headers.insert(HeaderName::from_static(header), value);
                    }
                    _ => {
                        warn!(upstream = %self.name(), header, "mirrored value too long; header omitted")
                    }
                }
            }
        }
        headers
    }

    fn get_stream(&self, last_event_id: Option<&str>) -> Outgoing {
        let version = lock(&self.version).clone();
        let mut headers = self.base_headers(version.as_deref());
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(id) = last_event_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert(HeaderName::from_static(LAST_EVENT_ID), id);
        }
        self.request_to(Method::GET, headers, Bytes::new())
    }

    async fn send(&self, request: Outgoing) -> Result<Response, UpstreamError> {
        self.endpoint
            .client
            .send(request)
            .await
            .map_err(|e| self.transport_error(e))
    }

    async fn send_bounded(&self, request: Outgoing) -> Result<Response, UpstreamError> {
        match timeout(
            self.endpoint.request_timeout,
            self.endpoint.client.send(request),
        )
        .await
        {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(self.transport_error(error)),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    /// Reads a whole body under the message size limit.
    async fn read_body(&self, response: Response) -> Result<Bytes, UpstreamError> {
        let limit = self.endpoint.limits.max_message_bytes;
        let (parts, body) = response.into_parts();
        match warden_http::read_body(&parts.headers, body, limit).await {
            Ok(body) => Ok(body),
            Err(warden_http::Error::TooLarge(_)) => {
                self.counters.invalid();
                Err(UpstreamError::protocol(self.name(), refusal_reason(None)))
            }
            Err(error) => Err(self.transport_error(error)),
        }
    }

    fn capture_session(&self, response: &Response) {
        let Some(value) = response.headers().get(MCP_SESSION_ID) else {
            return;
        };
        match value.to_str() {
            Ok(id) if is_valid_session_id(id) => {
                debug!(upstream = %self.name(), "upstream session started");
                self.session.send_replace(Some(id.into()));
                self.expired.store(false, Ordering::Release);
            }
            _ => warn!(upstream = %self.name(), "ignored an invalid session id from upstream"),
        }
    }

    pub(crate) async fn request(
        self: &Arc<Self>,
        message: &Message,
        timeout: Duration,
        extra: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<ResponseStream, UpstreamError> {
        expect_kind(message, &Kind::Request, "request")?;
        self.check_open()?;
        let is_initialize = message.method() == Some(INITIALIZE);
        if self.expired.load(Ordering::Acquire) {
            if !is_initialize {
                return Err(UpstreamError::SessionExpired);
            }
            // Re-initializing: the new session replaces the dead one.
            self.session.send_replace(None);
            self.expired.store(false, Ordering::Release);
        }
        let deadline = deadline_after(timeout);
        let prepared = pending::prepare(message, self.ids.next())
            .map_err(|_| UpstreamError::protocol(self.name(), "request cannot be re-encoded"))?;
        let (entry, receivers) = pending::entry(message, &prepared);
        let id = prepared.upstream_id.clone();
        lock(&self.pending)
            .register(id.clone(), entry)
            .map_err(|reason| UpstreamError::closed(self.name(), reason))?;
        // The version and the mirrored values come from the message as the caller passed it
        // (parsed already); the prepared copy differs only in its id and progress token.
        let version = self.version_for(message);
        let modern = version.as_deref().is_some_and(is_modern);
        let headers = self.post_headers(message, version.as_deref(), &extra);
        // 2026-07-28: closing the stream is the cancellation; no notification exists.
        let send_cancel = !is_initialize && !modern;
        let mut stream = ResponseStream::new(
            self.endpoint.name.clone(),
            id.clone(),
            receivers,
            deadline,
            send_cancel,
            Link::Http(self.clone()),
        );
        if let Some(max) = self.endpoint.max_call
            && message.method() == Some(pending::TOOLS_CALL)
        {
            stream.limit_call(timeout, max);
        }
        trace!(upstream = %self.name(), id = %id, "posting request");
        let post = self.request_to(Method::POST, headers, prepared.message.bytes().clone());
        // Boxed first: the exchange's future (the HTTP client's included) is ~2 KB, and
        // `spawn` moves it through several frames into the task; a box is moved once.
        let exchange = Box::pin(run_exchange(self.clone(), post, id, !modern, is_initialize));
        let task = tokio::spawn(exchange);
        stream.set_task(AbortOnDropHandle::new(task));
        Ok(stream)
    }

    pub(crate) async fn notify(&self, message: &Message) -> Result<(), UpstreamError> {
        expect_kind(message, &Kind::Notification, "notification")?;
        self.send_one_way(message).await
    }

    pub(crate) async fn respond(&self, message: &Message) -> Result<(), UpstreamError> {
        if !message.is_response() {
            return Err(UpstreamError::WrongKind {
                expected: "response",
                actual: kind_name(message.kind()),
            });
        }
        self.send_one_way(message).await
    }

    async fn send_one_way(&self, message: &Message) -> Result<(), UpstreamError> {
        self.check_open()?;
        if self.expired.load(Ordering::Acquire) {
            return Err(UpstreamError::SessionExpired);
        }
        let response = self.send_bounded(self.post(message)).await?;
        let status = response.status();
        // 202 is the rule; some servers answer 200 or 204, which mean the same here.
        if status.is_success() {
            Ok(())
        } else if status == StatusCode::NOT_FOUND && self.session_id().is_some() {
            self.expire();
            Err(UpstreamError::SessionExpired)
        } else {
            Err(UpstreamError::Http {
                name: self.name().to_owned(),
                status,
            })
        }
    }

    /// A stream gave up on request `id` (dropped or timed out).
    pub(crate) fn abandon(&self, id: &Id, send_cancel: bool, reason: &'static str) {
        if lock(&self.pending).remove(id).is_none() || !send_cancel || !self.is_alive() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        debug!(upstream = %self.name(), id = %id, reason, "cancelling request upstream");
        let request = self.post(&pending::cancellation(id, reason));
        let limit = self.endpoint.request_timeout;
        let name = self.endpoint.name.clone();
        let client = self.endpoint.client.clone();
        runtime.spawn(async move {
            match timeout(limit, client.send(request)).await {
                Ok(Ok(response)) if response.status().is_success() => {}
                Ok(Ok(response)) => {
                    debug!(upstream = %name, status = %response.status(), "upstream refused a cancellation");
                }
                _ => debug!(upstream = %name, "posting a cancellation failed"),
            }
        });
    }

    /// Routes one decoded message. `own` is the request whose response stream carried it;
    /// `None` for the standalone GET stream, whose messages go to the only request in flight
    /// when there is exactly one (as on stdio), and are unsolicited otherwise.
    /// A message was refused: if it was the response to a request in flight (see
    /// [`Pending::refused`]), that request fails now with the rule it broke.
    fn refused(&self, recovered: Recovered, error: Option<&DecodeError>, own: Option<&Id>) {
        let entry = lock(&self.pending).refused(recovered, own);
        if let Some(entry) = entry {
            let reason = refusal_reason(error);
            warn!(upstream = %self.name(), reason, "failed a request whose response was refused");
            entry.fail(UpstreamError::protocol(self.name(), reason));
        }
    }

    async fn deliver(&self, message: Message, own: Option<&Id>) {
        self.counters.received();
        let route = lock(&self.pending).route_with(message, own, own.is_none());
        match route {
            Route::Respond { outcome, message } => {
                let _ = outcome.send(Outcome::Response(message));
            }
            Route::Note {
                notes,
                message,
                then_end,
            } => {
                // On a request's own response stream, waiting is that stream's backpressure.
                // From the standalone GET stream (the only request in flight), the wait is
                // bounded: every unsolicited message of the connection waits behind it.
                let wait = own
                    .is_none()
                    .then_some((crate::pending::NOTE_WAIT, &self.stalled));
                deliver_note(self.name(), &self.counters, &notes, message, wait).await;
                if let Some(end) = then_end {
                    let _ = end.send(Outcome::Ended);
                }
            }
            Route::Unsolicited(message) => {
                // Only the standalone GET stream gets here; waiting is its backpressure.
                if self.unsolicited.send(message).await.is_err() {
                    self.counters.dropped();
                }
            }
            Route::UnknownResponse(message) => {
                self.counters.unknown_response();
                warn!(upstream = %self.name(), "dropped a response with an unknown id");
                trace!(upstream = %self.name(), id = ?message.id(), "unknown response id");
            }
            Route::Stale => {
                self.counters.dropped();
                debug!(upstream = %self.name(), "dropped a message for a finished request");
            }
        }
    }

    fn is_pending(&self, id: &Id) -> bool {
        lock(&self.pending).contains(id)
    }

    /// One request's POST and everything that answers it.
    async fn exchange(
        &self,
        post: Outgoing,
        id: &Id,
        resumable: bool,
        is_initialize: bool,
    ) -> Result<(), UpstreamError> {
        let response = self.send(post).await?;
        let status = response.status();
        let had_session = self.session_id().is_some();
        if is_initialize && status.is_success() {
            self.capture_session(&response);
        }
        let media = media_type(response.headers());
        if status == StatusCode::ACCEPTED {
            return Err(UpstreamError::protocol(
                self.name(),
                "answered a request with 202 accepted",
            ));
        }
        if status.is_success() {
            return match media.as_str() {
                "text/event-stream" => self.consume_sse(response, id, resumable).await,
                "application/json" => {
                    let body = self.read_body(response).await?;
                    self.deliver_body(body, id).await
                }
                _ => Err(UpstreamError::protocol(
                    self.name(),
                    "answered with an unexpected content type",
                )),
            };
        }
        // An error status. Modern servers explain it in a JSON-RPC error for this request
        // (400 with -32020/-32022, 404 with -32601): that is the response.
        let body = self.read_body(response).await.unwrap_or_default();
        let answer = decode_lazy(body, &self.endpoint.limits)
            .ok()
            .filter(|m| m.kind() == &Kind::Error && m.id() == Some(id));
        let session_gone = status == StatusCode::NOT_FOUND && had_session;
        match answer {
            Some(answer)
                if !session_gone
                    || answer
                        .error()
                        .and_then(|e| e.get("code"))
                        .and_then(|c| c.as_i64())
                        == Some(ErrorCode::MethodNotFound.code()) =>
            {
                self.deliver(answer, Some(id)).await;
                Ok(())
            }
            _ if session_gone => {
                self.expire();
                Err(UpstreamError::SessionExpired)
            }
            _ => Err(UpstreamError::Http {
                name: self.name().to_owned(),
                status,
            }),
        }
    }

    async fn deliver_body(&self, body: Bytes, id: &Id) -> Result<(), UpstreamError> {
        match decode_lazy(body, &self.endpoint.limits) {
            Ok(message) => {
                self.deliver(message, Some(id)).await;
                if self.is_pending(id) {
                    Err(UpstreamError::protocol(
                        self.name(),
                        "response body does not answer the request",
                    ))
                } else {
                    Ok(())
                }
            }
            Err(error) => {
                self.counters.invalid();
                warn!(upstream = %self.name(), error = decode_error_kind(&error), "dropped an invalid response body");
                Err(UpstreamError::protocol(
                    self.name(),
                    refusal_reason(Some(&error)),
                ))
            }
        }
    }

    /// Reads a request's SSE stream, resuming it with GET + `Last-Event-ID` when the server
    /// closes it before the response (SSE polling, 2025-11-25).
    async fn consume_sse(
        &self,
        mut response: Response,
        id: &Id,
        resumable: bool,
    ) -> Result<(), UpstreamError> {
        let mut cursor = Cursor::default();
        let mut attempts = 0;
        loop {
            let progressed = self.read_events(&mut response, &mut cursor, Some(id)).await;
            if !self.is_pending(id) {
                return Ok(());
            }
            let ended = || UpstreamError::closed(self.name(), CloseReason::StreamEnded);
            let Some(last_event_id) = cursor.last_event_id.clone().filter(|_| resumable) else {
                return Err(ended());
            };
            attempts = if progressed { 1 } else { attempts + 1 };
            if attempts > MAX_RESUME_ATTEMPTS {
                warn!(upstream = %self.name(), "gave up resuming a response stream");
                return Err(ended());
            }
            // The server asked for this pause before the client comes back.
            tokio::time::sleep(cursor.retry).await;
            debug!(upstream = %self.name(), id = %id, "resuming response stream");
            response = self
                .send_bounded(self.get_stream(Some(&last_event_id)))
                .await?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND && self.session_id().is_some() {
                self.expire();
                return Err(UpstreamError::SessionExpired);
            }
            if !status.is_success() {
                return Err(UpstreamError::Http {
                    name: self.name().to_owned(),
                    status,
                });
            }
            if media_type(response.headers()) != "text/event-stream" {
                return Err(UpstreamError::protocol(
                    self.name(),
                    "resumed stream is not an event stream",
                ));
            }
        }
    }

    /// Delivers the events of one SSE response until it ends (or, with `own`, until that
    /// request is answered). Returns whether any event arrived.
    async fn read_events(
        &self,
        response: &mut Response,
        cursor: &mut Cursor,
        own: Option<&Id>,
    ) -> bool {
        let limit = self.endpoint.limits.max_message_bytes;
        let mut parser = SseParser::new(limit.saturating_add(SSE_EVENT_OVERHEAD));
        let mut buf = BytesMut::new();
        let mut progressed = false;
        loop {
            let chunk = match next_chunk(response.body_mut()).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return progressed,
                Err(error) => {
                    debug!(upstream = %self.name(), %error, "event stream broke off");
                    return progressed;
                }
            };
            buf.extend_from_slice(&chunk);
            while let Some(item) = parser.next(&mut buf) {
                progressed = true;
                let event = match item {
                    SseItem::Event(event) => event,
                    SseItem::TooLarge => {
                        self.counters.invalid();
                        warn!(upstream = %self.name(), limit, "dropped an over-long event from upstream");
                        // Nothing of it was kept: on a request's own stream it is taken as
                        // that request's answer.
                        if own.is_some() {
                            self.refused(Recovered::Response(None), None, own);
                            return true;
                        }
                        continue;
                    }
                };
                if let Some(event_id) = event.id {
                    cursor.last_event_id = Some(event_id);
                }
                if let Some(ms) = event.retry {
                    cursor.retry = Duration::from_millis(ms).min(MAX_SSE_RETRY);
                }
                // Priming events carry an id and no data.
                if event.data.trim().is_empty() {
                    continue;
                }
                if event.event.as_deref().is_some_and(|e| e != "message") {
                    debug!(upstream = %self.name(), "ignored an event of another type");
                    continue;
                }
                let data = Bytes::from(event.data);
                match decode_lazy(data.clone(), &self.endpoint.limits) {
                    Ok(message) => {
                        self.deliver(message, own).await;
                        if own.is_some_and(|id| !self.is_pending(id)) {
                            return true;
                        }
                    }
                    Err(error) => {
                        self.counters.invalid();
                        warn!(upstream = %self.name(), error = decode_error_kind(&error), "dropped an invalid event from upstream");
                        self.refused(recover_response_id(&data), Some(&error), own);
                        if own.is_some_and(|id| !self.is_pending(id)) {
                            return true;
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn take_unsolicited(self: &Arc<Self>) -> Option<mpsc::Receiver<crate::Unsolicited>> {
        let receiver = lock(&self.unsolicited_rx).take()?;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(listen(self.clone()));
            }
            Err(_) => {
                warn!(upstream = %self.name(), "no runtime; the standalone stream is not opened")
            }
        }
        Some(receiver)
    }

    /// Resolves once the connection was shut down (or its last handle dropped).
    pub(crate) async fn ended(&self) {
        self.stop.cancelled().await;
    }

    /// DELETE the session (if any) and refuse further use.
    pub(crate) async fn shutdown(&self) {
        self.shutdown_done.get_or_init(|| self.run_shutdown()).await;
    }

    async fn run_shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop.cancel();
        let entries = lock(&self.pending).close(CloseReason::ShutDown);
        for entry in entries {
            entry.fail(UpstreamError::closed(self.name(), CloseReason::ShutDown));
        }
        if self.session_id().is_none() || self.expired.load(Ordering::Acquire) {
            return;
        }
        let version = lock(&self.version).clone();
        let request = self.request_to(
            Method::DELETE,
            self.base_headers(version.as_deref()),
            Bytes::new(),
        );
        match self.send_bounded(request).await {
            Ok(response) if response.status() == StatusCode::METHOD_NOT_ALLOWED => {
                debug!(upstream = %self.name(), "upstream does not let clients end sessions");
            }
            Ok(response) => {
                debug!(upstream = %self.name(), status = %response.status(), "upstream session deleted");
            }
            Err(error) => {
                debug!(upstream = %self.name(), %error, "deleting the upstream session failed")
            }
        }
    }
}

async fn run_exchange(core: Arc<Core>, post: Outgoing, id: Id, resumable: bool, init: bool) {
    let result = core.exchange(post, &id, resumable, init).await;
    // Anything short of a delivered response ends the request with an error.
    let error = match result {
        Ok(()) if !core.is_pending(&id) => return,
        Ok(()) => UpstreamError::protocol(core.name(), "exchange ended without a response"),
        Err(error) => error,
    };
    let entry = lock(&core.pending).remove(&id);
    if let Some(entry) = entry {
        entry.fail(error);
    }
}

/// The standalone GET stream of a legacy session, feeding the unsolicited channel. Opened
/// once a session exists; resumed with `Last-Event-ID` when the server closes it; given up on
/// 405 (the server offers none), after repeated failures, or when the receiver is dropped.
async fn listen(core: Arc<Core>) {
    let mut sessions = core.session.subscribe();
    'sessions: loop {
        let session = tokio::select! {
            () = core.stop.cancelled() => return,
            session = sessions.wait_for(Option::is_some) => match session {
                Ok(session) => session.clone(),
                Err(_) => return,
            },
        };
        let mut cursor = Cursor::default();
        let mut failures = 0;
        loop {
            if core.unsolicited.is_closed() {
                return;
            }
            if *sessions.borrow() != session {
                continue 'sessions;
            }
            let opened = tokio::select! {
                () = core.stop.cancelled() => return,
                opened = core.send_bounded(core.get_stream(cursor.last_event_id.as_deref())) => opened,
            };
            match opened {
                Ok(mut response)
                    if response.status().is_success()
                        && media_type(response.headers()) == "text/event-stream" =>
                {
                    debug!(upstream = %core.name(), "standalone stream open");
                    let progressed = tokio::select! {
                        () = core.stop.cancelled() => return,
                        // Nobody reads the messages any more.
                        () = core.unsolicited.closed() => return,
                        progressed = core.read_events(&mut response, &mut cursor, None) => progressed,
                    };
                    failures = if progressed { 0 } else { failures + 1 };
                }
                Ok(response) if response.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    debug!(upstream = %core.name(), "upstream offers no standalone stream");
                    return;
                }
                Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                    core.expire();
                    // Wait for the session layer to start a new session.
                    tokio::select! {
                        () = core.stop.cancelled() => return,
                        changed = sessions.wait_for(|s| *s != session) => if changed.is_err() { return },
                    }
                    continue 'sessions;
                }
                Ok(response) => {
                    debug!(upstream = %core.name(), status = %response.status(), "standalone stream refused");
                    failures += 1;
                }
                Err(error) => {
                    debug!(upstream = %core.name(), %error, "opening the standalone stream failed");
                    failures += 1;
                }
            }
            if failures >= MAX_LISTEN_FAILURES {
                warn!(upstream = %core.name(), "gave up on the standalone stream");
                return;
            }
            tokio::select! {
                () = core.stop.cancelled() => return,
                () = tokio::time::sleep(cursor.retry) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_stateless_revisions() {
        assert!(is_modern("2026-07-28"));
        assert!(is_modern("2027-01-01"));
        assert!(!is_modern("2025-11-25"));
        assert!(!is_modern("2025-03-26"));
        assert!(!is_modern("garbage"));
        assert!(!is_modern("9"));
        assert!(!is_modern("2027-1-1"));
    }

    #[test]
    fn refuses_managed_and_invalid_headers() {
        let url = Url::parse("http://127.0.0.1:1/mcp").unwrap();
        let mut spec = HttpSpec::new("up", url.clone());
        spec.headers = vec![("Mcp-Session-Id".into(), "x".into())];
        assert!(matches!(connect(spec), Err(UpstreamError::Config { .. })));
        let mut spec = HttpSpec::new("up", url.clone());
        spec.headers = vec![("authorization".into(), "bad\nvalue".into())];
        let error = connect(spec).err().unwrap();
        assert!(!error.to_string().contains("bad"), "{error}");
        let mut spec = HttpSpec::new("up", url);
        spec.headers = vec![("Authorization".into(), "Bearer x".into())];
        assert!(connect(spec).is_ok());
        let spec = HttpSpec::new("up", Url::parse("file:///etc/passwd").unwrap());
        assert!(matches!(connect(spec), Err(UpstreamError::Config { .. })));
    }

    #[test]
    fn reads_media_types_without_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Text/Event-Stream; charset=utf-8"),
        );
        assert_eq!(media_type(&headers), "text/event-stream");
        assert_eq!(media_type(&HeaderMap::new()), "");
    }
}
