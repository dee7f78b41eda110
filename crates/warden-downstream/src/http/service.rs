//! One HTTP request, from the security checks to the response (see the table in [`super`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, HOST, HeaderValue, ORIGIN};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, trace, warn};
use warden_guard::Principal;
use warden_proto::mcp::{self, Era, V_2024_11_05};
use warden_proto::{DecodeError, ErrorCode, Id, Kind, Message, decode};
use warden_session::{Face, Handler, Reply, ReplyStream, Session, SessionError};

use super::HttpOptions;
use super::auth;
use super::body::{self, Rejection, ResponseBody, SseBody};
use super::cors;
use super::headers::{self, Accepts, BadHeader};
use super::params;
use super::streams::{self, StreamKind, StreamRegistry};

/// Live events buffered for a modern stream.
const MODERN_QUEUE: usize = 16;

/// State shared by every connection of one server.
pub(crate) struct Shared<H> {
    handler: Arc<H>,
    pub(crate) opts: HttpOptions,
    /// The port the listener is bound to: the default Host allow-list accepts it.
    local_port: u16,
    pub(crate) streams: StreamRegistry,
}

/// How to answer one POSTed message once the handler replied.
struct Exchange<'a> {
    /// The request id (for error bodies).
    id: Option<Id>,
    is_request: bool,
    accepts: Accepts,
    era: Era,
    /// The legacy session (SSE streams are numbered per session).
    session: Option<&'a Arc<Session>>,
    /// The caller (who answers, for the client, a server request it cannot receive).
    principal: &'a Principal,
    /// This is the session's `initialize`: announce the id on success, end it on failure.
    initialize: bool,
}

impl<H: Handler> Shared<H> {
    pub(crate) fn new(
        handler: Arc<H>,
        opts: HttpOptions,
        local_port: u16,
        streams: StreamRegistry,
    ) -> Self {
        Self {
            handler,
            opts,
            local_port,
            streams,
        }
    }

    /// Answers one request. Never fails: every problem is a status code.
    pub(crate) async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let (parts, body) = request.into_parts();
        // DNS-rebinding defence first: a refused origin learns nothing about paths or sessions.
        if let Err(rejection) = self.check_host_and_origin(&parts) {
            return rejection.response(None);
        }
        let cors = cors::origin_of(&self.opts, &parts);
        if cors::is_preflight(&parts) && self.serves(parts.uri.path()) {
            return cors::preflight(&parts, cors);
        }
        let mut response = self.serve_allowed(parts, body).await;
        match cors {
            Some(origin) => cors::allow(response.headers_mut(), origin),
            // The answer depends on the origin once some origins get CORS headers: a cache in
            // between (the metadata is cacheable) must not hand this one to a CORS origin.
            None if !self.opts.cors_origins.patterns().is_empty() => {
                cors::vary(response.headers_mut())
            }
            None => {}
        }
        debug!(status = response.status().as_u16(), "http request answered");
        response
    }

    /// Whether `path` is one the server answers: the endpoint, or the RFC 9728 metadata when
    /// OAuth is configured.
    fn serves(&self, path: &str) -> bool {
        path == self.opts.path || auth::metadata_at(&self.opts, path).is_some()
    }

    /// [`Shared::serve`] once `Host` and `Origin` are accepted and the request is not a
    /// preflight.
    async fn serve_allowed(&self, parts: Parts, body: Incoming) -> Response<ResponseBody> {
        // RFC 9728 metadata is public: clients read it to learn how to authenticate.
        if let Some(response) = auth::well_known(&self.opts, &parts.method, parts.uri.path()) {
            return response;
        }
        if parts.uri.path() != self.opts.path {
            return body::empty(StatusCode::NOT_FOUND);
        }
        let principal = match self.authenticate(&parts).await {
            Ok(principal) => principal,
            Err(response) => return response,
        };
        match parts.method {
            Method::POST => self.post(parts, body, principal).await,
            Method::GET => self.get(&parts, &principal).await,
            Method::DELETE => self.delete(&parts, &principal).await,
            _ => {
                let mut response = Rejection::invalid(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed; use POST, GET or DELETE",
                )
                .response(None);
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                response
            }
        }
    }

    fn check_host_and_origin(&self, parts: &Parts) -> Result<(), Rejection> {
        let mut headers = parts.headers.get_all(HOST).iter();
        let (header, again) = (headers.next(), headers.next());
        if again.is_some() {
            // RFC 9112: a request with more than one Host is refused (a proxy in front may
            // have read the other one).
            return Err(Rejection::invalid(
                StatusCode::BAD_REQUEST,
                "more than one Host header",
            ));
        }
        // HTTP/2 carries the host in the :authority pseudo-header (and an HTTP/1.1 request in
        // absolute form in its target); with a Host header too, both must name the same host.
        let authority = parts.uri.authority().map(|a| a.as_str());
        let host = match (header.map(|v| v.to_str().ok()), authority) {
            (Some(Some(h)), Some(a)) if !h.eq_ignore_ascii_case(a) => {
                return Err(Rejection::invalid(
                    StatusCode::BAD_REQUEST,
                    "the Host header and the request's authority differ",
                ));
            }
            (Some(h), _) => h,
            (None, a) => a,
        };
        let Some(host) = host else {
            return Err(Rejection::invalid(
                StatusCode::BAD_REQUEST,
                "missing or invalid Host header",
            ));
        };
        if !self.opts.allowed_hosts.allows(host, self.local_port) {
            debug!(host, "refused request: host not allowed");
            return Err(Rejection::invalid(
                StatusCode::FORBIDDEN,
                "host not allowed",
            ));
        }
        let mut origins = parts.headers.get_all(ORIGIN).iter();
        if let Some(origin) = origins.next() {
            let allowed = origins.next().is_none()
                && origin
                    .to_str()
                    .is_ok_and(|o| self.opts.allowed_origins.allows(o.trim()));
            if !allowed {
                debug!(origin = ?origin, "refused request: origin not allowed");
                return Err(Rejection::invalid(
                    StatusCode::FORBIDDEN,
                    "origin not allowed",
                ));
            }
        }
        Ok(())
    }

    /// Establishes who is calling ([`auth::authenticate`]; anonymous when no authentication
    /// is configured). It runs before any session lookup, so a refused caller never learns
    /// whether a session exists.
    async fn authenticate(&self, parts: &Parts) -> Result<Principal, Response<ResponseBody>> {
        auth::authenticate(self.opts.auth.as_ref(), self.opts.audit.as_ref(), parts).await
    }

    async fn post(
        &self,
        parts: Parts,
        body: Incoming,
        principal: Principal,
    ) -> Response<ResponseBody> {
        if !headers::is_json_content(&parts.headers) {
            return Rejection::invalid(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type must be application/json",
            )
            .response(None);
        }
        let accepts = Accepts::parse(&parts.headers);
        if !accepts.json && !accepts.sse {
            return Rejection::invalid(
                StatusCode::NOT_ACCEPTABLE,
                "accept must allow application/json or text/event-stream",
            )
            .response(None);
        }
        let bytes = match self.read_body(&parts, body).await {
            Ok(bytes) => bytes,
            Err(rejection) => return rejection.response(None),
        };
        if crate::stdio::is_array(&bytes) {
            return self.post_batch(&parts, &bytes, principal, accepts).await;
        }
        let message = match decode(bytes.clone(), &self.opts.limits) {
            Ok(message) => message,
            Err(error) => return decode_rejection_of(&error, &bytes),
        };
        trace!(body = ?String::from_utf8_lossy(message.bytes()), "http request body");
        let session_id = match headers::single(&parts.headers, &headers::SESSION_ID) {
            Ok(id) => id,
            Err(BadHeader) => {
                return Rejection::invalid(
                    StatusCode::BAD_REQUEST,
                    "invalid Mcp-Session-Id header",
                )
                .response(message.id());
            }
        };
        // Era: a body that declares its revision in `_meta` is stateless, whatever else it
        // carries (a stale session id is ignored, not echoed). Without a session id, a
        // modern version header also means a stateless request, one whose `_meta` is missing.
        let modern = mcp::declared_version(&message).is_some()
            || (session_id.is_none()
                && message.method() != Some("initialize")
                && headers::header_era(&parts.headers) == Some(Era::Modern));
        if modern {
            self.post_modern(&parts, message, principal, accepts).await
        } else {
            self.post_legacy(&parts, message, session_id, principal, accepts)
                .await
        }
    }

    async fn read_body(&self, parts: &Parts, body: Incoming) -> Result<Bytes, Rejection> {
        let max = self.opts.max_body_bytes;
        let too_large = || {
            Rejection::invalid(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds the limit of {max} bytes"),
            )
        };
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(too_large());
        }
        let read = tokio::time::timeout(
            self.opts.body_read_timeout,
            Limited::new(body, max).collect(),
        );
        match read.await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
                Err(too_large())
            }
            Ok(Err(error)) => {
                debug!(%error, "reading the request body failed");
                Err(Rejection::invalid(
                    StatusCode::BAD_REQUEST,
                    "failed to read the request body",
                ))
            }
            Err(_) => Err(Rejection::invalid(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            )),
        }
    }

    async fn post_modern(
        &self,
        parts: &Parts,
        message: Message,
        principal: Principal,
        accepts: Accepts,
    ) -> Response<ResponseBody> {
        let checked = headers::check_modern(&parts.headers, &message)
            .and_then(|()| self.check_param_headers(&parts.headers, &message));
        if let Err(rejection) = checked {
            debug!(method = ?message.method(), reason = %rejection.message, "refused stateless request");
            return rejection.response(message.id());
        }
        let exchange = Exchange {
            id: message.id().cloned(),
            is_request: message.is_request(),
            accepts,
            era: Era::Modern,
            session: None,
            principal: &principal,
            initialize: false,
        };
        let reply = self.handler.handle(None, &principal, message).await;
        self.respond(reply, exchange).await
    }

    /// A `tools/call`'s `Mcp-Param-{Name}` headers against the arguments they mirror (after
    /// `Mcp-Name`, so the tool named is the one the body names). A tool the handler has no
    /// annotations for is not checked: its `Mcp-Param-*` headers are ignored and never
    /// forwarded, so nothing downstream of the gateway acts on them.
    fn check_param_headers(&self, headers: &HeaderMap, message: &Message) -> Result<(), Rejection> {
        if message.method() != Some("tools/call") {
            return Ok(());
        }
        let params = message.params();
        let Some(tool) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            return Ok(());
        };
        let Some(annotated) = self.handler.param_headers(tool) else {
            return Ok(());
        };
        params::check(headers, &annotated, params.and_then(|p| p.get("arguments"))).map_err(
            |error| {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::HeaderMismatch,
                    error.to_string(),
                )
            },
        )
    }

    async fn post_legacy(
        &self,
        parts: &Parts,
        message: Message,
        session_id: Option<&str>,
        principal: Principal,
        accepts: Accepts,
    ) -> Response<ResponseBody> {
        let id = message.id().cloned();
        let Some(session_id) = session_id else {
            if message.is_request() && message.method() == Some("initialize") {
                return self.initialize(parts, message, principal, accepts).await;
            }
            return Rejection::invalid(StatusCode::BAD_REQUEST, "missing Mcp-Session-Id header")
                .response(id.as_ref());
        };
        let session = match self.session(session_id, &principal, parts).await {
            Ok(session) => session,
            Err(rejection) => return rejection.response(id.as_ref()),
        };
        let exchange = Exchange {
            id,
            is_request: message.is_request(),
            accepts,
            era: Era::Legacy,
            session: Some(&session),
            principal: &principal,
            initialize: false,
        };
        if exchange.is_request && self.streams.session(&session).all_read() {
            // Every stream of the session is being read: refused before the call starts
            // (once it has, its side effects may have happened, and a refusal invites a
            // second call).
            return self.too_many_streams(&exchange).await;
        }
        let reply = self
            .handler
            .handle(Some(&session), &principal, message)
            .await;
        self.respond(reply, exchange).await
    }

    /// A JSON-RPC batch: accepted only in a session that negotiated 2025-03-26, the one
    /// revision whose servers must accept batches (anything else is refused as before: a
    /// batch is not a message). Each element is decoded and handled as if posted alone, the
    /// notifications and responses at once, the requests all at once (a batch holds at most
    /// [`MAX_BATCH`](crate::stdio::MAX_BATCH) messages; a longer one is refused whole). The
    /// answer is one SSE stream carrying what the requests stream and each of their responses (the revision allows
    /// this), or, for a client that takes only JSON, one array of the responses in the order
    /// they came (JSON-RPC lets a batch's answers come in any order; clients match them by
    /// id). An element that is not a valid message, or an `initialize` (never batched), is
    /// answered with its error among them; only notifications and responses: 202.
    async fn post_batch(
        &self,
        parts: &Parts,
        bytes: &Bytes,
        principal: Principal,
        accepts: Accepts,
    ) -> Response<ResponseBody> {
        let elements = match crate::stdio::batch_parts(bytes, &self.opts.limits) {
            Ok(elements) => elements,
            Err(error) => return decode_rejection(&error),
        };
        let no_batches = || {
            decode_rejection(&DecodeError::Invalid {
                reason: "json-rpc batches are not supported",
                id: None,
            })
        };
        let session_id = match headers::single(&parts.headers, &headers::SESSION_ID) {
            Ok(Some(id)) => id,
            // `initialize` may not be in a batch, so there is no batch without a session.
            Ok(None) => return no_batches(),
            Err(BadHeader) => {
                return Rejection::invalid(
                    StatusCode::BAD_REQUEST,
                    "invalid Mcp-Session-Id header",
                )
                .response(None);
            }
        };
        let session = match self.session(session_id, &principal, parts).await {
            Ok(session) => session,
            Err(rejection) => return rejection.response(None),
        };
        if session.protocol_version().as_deref() != Some(mcp::V_2025_03_26) {
            return no_batches();
        }
        let mut requests = Vec::new();
        let mut refused = Vec::new();
        for element in elements {
            match crate::stdio::batch_element(element, &self.opts.limits) {
                Ok(message) if message.is_request() => requests.push(message),
                Ok(message) => {
                    // As alone: nothing waits for a notification's or a response's reply.
                    drop(
                        self.handler
                            .handle(Some(&session), &principal, message)
                            .await,
                    );
                }
                Err(error) => match Message::from_value(error.to_response()) {
                    Ok(answer) => refused.push(answer),
                    Err(_) => return decode_rejection(&error),
                },
            }
        }
        let exchange = Exchange {
            id: None,
            is_request: true,
            accepts,
            era: Era::Legacy,
            session: Some(&session),
            principal: &principal,
            initialize: false,
        };
        if requests.is_empty() && refused.is_empty() {
            return body::empty(StatusCode::ACCEPTED);
        }
        if !requests.is_empty() && self.streams.session(&session).all_read() {
            return self.too_many_streams(&exchange).await;
        }
        let answers = requests.len() + refused.len();
        let mut stream = self.run_batch(&session, &principal, requests, refused);
        if accepts.sse {
            let Some(first) = stream.next().await else {
                return self.failed_exchange(&exchange).await;
            };
            return match self.streams.session(&session).open(StreamKind::Post) {
                Some(opened) => self.legacy_sse(&session, opened, first, stream, false, answers),
                None => {
                    drop(stream);
                    self.too_many_streams(&exchange).await
                }
            };
        }
        let mut responses = Vec::with_capacity(answers);
        while let Some(message) = stream.next().await {
            if message.is_response() {
                responses.push(message.bytes().clone());
            } else {
                self.refuse_for_json_client(&exchange, &message).await;
            }
        }
        body::json(StatusCode::OK, crate::stdio::batch_bytes(&responses))
    }

    /// The messages of a batch's requests as one stream: first the `refused` elements'
    /// errors, then whatever the requests stream, as it comes, up to each one's response (a
    /// request whose reply ends without one gets `-32603`, as alone). All of them run at once
    /// (at most [`MAX_BATCH`](crate::stdio::MAX_BATCH)). Dropping the stream (the client went
    /// away) stops the work: the requests' reply streams are dropped, cancelling their calls.
    fn run_batch(
        &self,
        session: &Arc<Session>,
        principal: &Principal,
        requests: Vec<Message>,
        refused: Vec<Message>,
    ) -> ReplyStream {
        let (tx, rx) = mpsc::channel(MODERN_QUEUE);
        let handler = Arc::clone(&self.handler);
        let (session, principal) = (Arc::clone(session), principal.clone());
        tokio::spawn(async move {
            let closed = tx.clone();
            let work = async move {
                for error in refused {
                    if tx.send(error).await.is_err() {
                        return;
                    }
                }
                let answering = requests.into_iter().map(|request| {
                    let (handler, session, principal, tx) = (
                        Arc::clone(&handler),
                        Arc::clone(&session),
                        principal.clone(),
                        tx.clone(),
                    );
                    async move {
                        let id = request.id().map_or(Value::Null, Id::to_value);
                        let mut answered = false;
                        if let Reply::Stream(mut reply) =
                            handler.handle(Some(&session), &principal, request).await
                        {
                            while let Some(message) = reply.next().await {
                                answered |= message.is_response();
                                if tx.send(message).await.is_err() {
                                    return;
                                }
                            }
                        }
                        if !answered {
                            let failed = warden_proto::error::error_response(
                                &id,
                                ErrorCode::InternalError,
                                "no response",
                                None,
                            );
                            if let Ok(failed) = Message::from_value(failed) {
                                let _ = tx.send(failed).await;
                            }
                        }
                    }
                });
                futures::future::join_all(answering).await;
            };
            tokio::select! {
                () = work => {}
                // The client went away: every call of the batch is dropped with its reply.
                () = closed.closed() => {}
            }
        });
        ReplyStream::new(rx)
    }

    async fn initialize(
        &self,
        parts: &Parts,
        message: Message,
        principal: Principal,
        accepts: Accepts,
    ) -> Response<ResponseBody> {
        let id = message.id().cloned();
        if let Err(rejection) = legacy_version(parts, None) {
            return rejection.response(id.as_ref());
        }
        let session = match self
            .handler
            .open_session(principal.clone(), Face::Http)
            .await
        {
            Ok(session) => session,
            Err(error) => {
                warn!(%error, "refused initialize: cannot open a session");
                let text = match error {
                    SessionError::TooMany { .. } => "too many sessions",
                    SessionError::Store(_) => "session store unavailable",
                };
                return Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::RateLimited,
                    text,
                )
                .response(id.as_ref());
            }
        };
        debug!(session = %session.id(), "http session opened");
        let exchange = Exchange {
            id,
            is_request: true,
            accepts,
            era: Era::Legacy,
            session: Some(&session),
            principal: &principal,
            initialize: true,
        };
        let reply = self
            .handler
            .handle(Some(&session), &principal, message)
            .await;
        self.respond(reply, exchange).await
    }

    /// The live legacy HTTP session `raw` names, if it belongs to `principal`; checks the
    /// version header against it. Unknown sessions, other principals' sessions and non-HTTP
    /// sessions are the same 404, so a guessed id reveals nothing.
    async fn session(
        &self,
        raw: &str,
        principal: &Principal,
        parts: &Parts,
    ) -> Result<Arc<Session>, Rejection> {
        let found = self
            .handler
            .find_session(raw, principal)
            .await
            .map_err(|error| {
                warn!(%error, "session lookup failed");
                Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::UpstreamUnavailable,
                    "session store unavailable",
                )
            })?;
        let session = found
            .filter(|s| s.face() == Face::Http && s.principal().same_caller(principal))
            .ok_or_else(|| Rejection::invalid(StatusCode::NOT_FOUND, "session not found"))?;
        legacy_version(parts, Some(&session))?;
        session.touch();
        Ok(session)
    }

    async fn respond(&self, reply: Reply, exchange: Exchange<'_>) -> Response<ResponseBody> {
        let mut stream = match reply {
            Reply::Accepted if exchange.is_request => {
                warn!("handler accepted a request without replying");
                return self.failed_exchange(&exchange).await;
            }
            Reply::Accepted => return body::empty(StatusCode::ACCEPTED),
            // A notification or response needs no reply; nothing waits for one.
            Reply::Stream(_) if !exchange.is_request => {
                return body::empty(StatusCode::ACCEPTED);
            }
            Reply::Stream(stream) => stream,
        };
        let Some(first) = stream.next().await else {
            warn!("handler abandoned a request without a response");
            return self.failed_exchange(&exchange).await;
        };
        if first.is_response() && exchange.accepts.json {
            return self.json_reply(first, &exchange).await;
        }
        if first.is_response()
            && let Some(retry) = retry_after(&first)
        {
            // A rate-limit refusal before anything was streamed, to a client that takes only
            // SSE: still 429 with Retry-After. (Once a stream has started, the status is sent;
            // the refusal is then an event whose `data.retryAfterMs` carries the hint.)
            return self.limited_sse(first, retry, &exchange).await;
        }
        if !exchange.accepts.sse {
            // The client takes JSON only: what comes before the response cannot reach it.
            let mut next = Some(first);
            loop {
                match next.take() {
                    Some(message) if message.is_response() => {
                        return self.json_reply(message, &exchange).await;
                    }
                    Some(message) => self.refuse_for_json_client(&exchange, &message).await,
                    None => return self.failed_exchange(&exchange).await,
                }
                next = stream.next().await;
            }
        }
        match exchange.session {
            Some(session) if exchange.era == Era::Legacy => {
                match self.streams.session(session).open(StreamKind::Post) {
                    Some(opened) => {
                        self.legacy_sse(session, opened, first, stream, exchange.initialize, 1)
                    }
                    None => {
                        // Every stream of the session is being read: this request is refused
                        // (its upstream call cancelled with its reply stream) rather than one
                        // a client is reading ended without its response.
                        drop(stream);
                        self.too_many_streams(&exchange).await
                    }
                }
            }
            _ => self.modern_sse(first, stream),
        }
    }

    /// A message before the response that a client taking only JSON cannot receive: dropped;
    /// a server request is answered for the client (`-32601`), so that the upstream goes on
    /// instead of waiting for its timeout.
    async fn refuse_for_json_client(&self, exchange: &Exchange<'_>, message: &Message) {
        debug!(method = ?message.method(), "dropping message before the response: client does not accept sse");
        if message.is_request()
            && let Some(id) = message.id()
        {
            let refusal = warden_proto::error::error_response(
                &id.to_value(),
                ErrorCode::MethodNotFound,
                "the client accepts only JSON responses and cannot receive requests during a call",
                None,
            );
            if let Ok(refusal) = Message::from_value(refusal) {
                let answered = self
                    .handler
                    .handle(exchange.session, exchange.principal, refusal)
                    .await;
                drop(answered);
            }
        }
    }

    async fn json_reply(
        &self,
        message: Message,
        exchange: &Exchange<'_>,
    ) -> Response<ResponseBody> {
        let failed = *message.kind() == Kind::Error;
        let status = match exchange.era {
            Era::Modern => modern_status(&message),
            // The session ended while its request was on the way (a DELETE, expiry): the
            // request failed for that, and a client must learn it as it would have on arrival,
            // by a 404 that tells it to start a new session.
            Era::Legacy
                if failed
                    && !exchange.initialize
                    && exchange.session.is_some_and(|s| s.is_ended()) =>
            {
                StatusCode::NOT_FOUND
            }
            Era::Legacy => StatusCode::OK,
        };
        // A rate-limit refusal is also HTTP 429 with Retry-After, whatever the era.
        let retry_after = retry_after(&message);
        let status = if retry_after.is_some() {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            status
        };
        let mut response = body::json(status, message.bytes().clone());
        if let Some(value) = retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
        if exchange.initialize
            && let Some(session) = exchange.session
        {
            if failed {
                self.end_session(session).await;
            } else {
                set_session_header(&mut response, session);
            }
        }
        response
    }

    /// A rate-limit refusal as the whole answer to a client that accepts only SSE: 429 with
    /// `Retry-After`, and the error as the stream's one event.
    async fn limited_sse(
        &self,
        message: Message,
        retry: HeaderValue,
        exchange: &Exchange<'_>,
    ) -> Response<ResponseBody> {
        let mut event = Vec::with_capacity(message.bytes().len() + 16);
        warden_proto::sse::encode(&mut event, None, None, message.bytes());
        let mut response = body::sse(SseBody::new(
            VecDeque::from([Bytes::from(event)]),
            None,
            self.streams.config().keepalive,
        ));
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, retry);
        if exchange.initialize
            && let Some(session) = exchange.session
        {
            // A refused initialize opens nothing.
            self.end_session(session).await;
        }
        response
    }

    /// The handler produced no response: report it, and end a half-opened session.
    async fn failed_exchange(&self, exchange: &Exchange<'_>) -> Response<ResponseBody> {
        if exchange.initialize
            && let Some(session) = exchange.session
        {
            self.end_session(session).await;
        }
        Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "no response",
        )
        .response(exchange.id.as_ref())
    }

    /// The refusal of a request when every stream of its session is being read: 429 with
    /// `Retry-After` and a `-31004` error for its id.
    async fn too_many_streams(&self, exchange: &Exchange<'_>) -> Response<ResponseBody> {
        let id = exchange.id.as_ref().map_or(Value::Null, Id::to_value);
        let text = format!(
            "too many streams open in this session (at most {}): retry when one has ended",
            self.streams.config().max_streams
        );
        let data = serde_json::json!({ warden_guard::RETRY_AFTER_MS: 1000 });
        let refusal =
            warden_proto::error::error_response(&id, ErrorCode::RateLimited, &text, Some(data));
        let Ok(refusal) = Message::from_value(refusal) else {
            return self.failed_exchange(exchange).await;
        };
        if exchange.accepts.json {
            return self.json_reply(refusal, exchange).await;
        }
        let retry = HeaderValue::from_static("1");
        self.limited_sse(refusal, retry, exchange).await
    }

    fn legacy_sse(
        &self,
        session: &Arc<Session>,
        (log, attached): (Arc<streams::StreamLog>, streams::Attached),
        first: Message,
        stream: ReplyStream,
        initialize: bool,
        responses: usize,
    ) -> Response<ResponseBody> {
        let streams = self.streams.session(session);
        let final_error = initialize.then(|| {
            // The session id goes out before the response is known; end the session if
            // `initialize` then fails.
            let (tx, rx) = oneshot::channel();
            let handler = Arc::clone(&self.handler);
            let session = Arc::clone(session);
            let streams = Arc::clone(&streams);
            tokio::spawn(async move {
                if rx.await.unwrap_or(true) {
                    streams.cancel().cancel();
                    handler.end_session(&session).await;
                }
            });
            tx
        });
        let cancel = log.cancel().clone();
        streams::spawn_post(log, first, stream, cancel, final_error, responses);
        let mut response = body::sse(SseBody::new(
            attached.pending,
            attached.live,
            self.streams.config().keepalive,
        ));
        if initialize {
            set_session_header(&mut response, session);
        }
        response
    }

    fn modern_sse(&self, first: Message, stream: ReplyStream) -> Response<ResponseBody> {
        let (tx, rx) = mpsc::channel(MODERN_QUEUE);
        // Child of the server token: shutdown ends the stream (and so cancels the request).
        let cancel = self.streams.root_token();
        let stalled = self.streams.config().stalled_reader;
        streams::spawn_modern(first, stream, tx, cancel, stalled);
        body::sse(SseBody::new(
            VecDeque::new(),
            Some(rx),
            self.streams.config().keepalive,
        ))
    }

    async fn get(&self, parts: &Parts, principal: &Principal) -> Response<ResponseBody> {
        if !Accepts::parse(&parts.headers).sse {
            return Rejection::invalid(
                StatusCode::NOT_ACCEPTABLE,
                "accept must allow text/event-stream",
            )
            .response(None);
        }
        let session = match self.required_session(parts, principal).await {
            Ok(session) => session,
            Err(rejection) => return rejection.response(None),
        };
        let streams = self.streams.session(&session);
        let keepalive = self.streams.config().keepalive;
        // Resumption: replay from the named stream only, then continue it if it is still
        // open. An unknown or evicted id opens a fresh stream instead: the events are gone
        // either way, and the client keeps a working stream.
        let resume = headers::single(&parts.headers, &headers::LAST_EVENT_ID)
            .ok()
            .flatten()
            .and_then(|id| streams.find(id));
        if let Some((log, after)) = resume {
            let attached = match log.kind() {
                StreamKind::Post => log.attach(Some(after), false, false),
                StreamKind::Get => {
                    let unsolicited = session.take_unsolicited();
                    let attached = log.attach(Some(after), false, unsolicited.is_some());
                    match unsolicited {
                        Some(rx) if attached.reopened => {
                            streams::spawn_get(
                                Arc::clone(&log),
                                &session,
                                rx,
                                log.cancel().clone(),
                            );
                        }
                        Some(rx) => session.restore_unsolicited(rx),
                        None => {}
                    }
                    attached
                }
            };
            debug!(session = %session.id(), replayed = attached.pending.len(), live = attached.live.is_some(), "sse stream resumed");
            return body::sse(SseBody::new(attached.pending, attached.live, keepalive));
        }
        let Some(unsolicited) = session.take_unsolicited() else {
            return Rejection::invalid(
                StatusCode::CONFLICT,
                "a stream is already open for this session",
            )
            .response(None);
        };
        let Some((log, attached)) = streams.open(StreamKind::Get) else {
            session.restore_unsolicited(unsolicited);
            let mut refused = Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many streams open in this session: retry when one has ended",
            )
            .with_data(serde_json::json!({ warden_guard::RETRY_AFTER_MS: 1000 }))
            .response(None);
            refused
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return refused;
        };
        let cancel = log.cancel().clone();
        streams::spawn_get(log, &session, unsolicited, cancel);
        body::sse(SseBody::new(attached.pending, attached.live, keepalive))
    }

    async fn delete(&self, parts: &Parts, principal: &Principal) -> Response<ResponseBody> {
        let session = match self.required_session(parts, principal).await {
            Ok(session) => session,
            Err(rejection) => return rejection.response(None),
        };
        self.end_session(&session).await;
        debug!(session = %session.id(), "http session deleted");
        body::empty(StatusCode::NO_CONTENT)
    }

    async fn required_session(
        &self,
        parts: &Parts,
        principal: &Principal,
    ) -> Result<Arc<Session>, Rejection> {
        match headers::single(&parts.headers, &headers::SESSION_ID) {
            Ok(Some(raw)) => self.session(raw, principal, parts).await,
            Ok(None) => Err(Rejection::invalid(
                StatusCode::BAD_REQUEST,
                "missing Mcp-Session-Id header",
            )),
            Err(BadHeader) => Err(Rejection::invalid(
                StatusCode::BAD_REQUEST,
                "invalid Mcp-Session-Id header",
            )),
        }
    }

    async fn end_session(&self, session: &Session) {
        self.streams.remove(session.id().as_str());
        self.handler.end_session(session).await;
    }
}

/// Checks a legacy `MCP-Protocol-Version` header: absent is allowed (2025-03-26 clients send
/// none); present, it must be an initialize-based revision that has the header, and the
/// session's negotiated one once there is one.
fn legacy_version(parts: &Parts, session: Option<&Session>) -> Result<(), Rejection> {
    let bad = |message: &'static str| Rejection::invalid(StatusCode::BAD_REQUEST, message);
    let version = match headers::single(&parts.headers, &headers::PROTOCOL_VERSION) {
        Ok(None) => return Ok(()),
        Ok(Some(version)) => version,
        Err(BadHeader) => return Err(bad("invalid MCP-Protocol-Version header")),
    };
    if Era::of(version) != Some(Era::Legacy) || version == V_2024_11_05 {
        return Err(bad("unsupported MCP-Protocol-Version"));
    }
    if let Some(negotiated) = session.and_then(Session::protocol_version)
        && negotiated != version
    {
        return Err(bad(
            "MCP-Protocol-Version does not match the negotiated version",
        ));
    }
    Ok(())
}

fn set_session_header(response: &mut Response<ResponseBody>, session: &Session) {
    // Session ids are hex: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(session.id().as_str()) {
        response.headers_mut().insert(&headers::SESSION_ID, value);
    }
}

/// The HTTP status of a stateless request's final response (2026-07-28 transports §6):
/// unknown methods are 404 and header/version/capability errors 400, each with its JSON-RPC
/// body so a client can tell them from a legacy server's 404/400. Other errors are 200.
fn modern_status(message: &Message) -> StatusCode {
    if *message.kind() != Kind::Error {
        return StatusCode::OK;
    }
    let code = message
        .error()
        .and_then(|e| e.get("code"))
        .and_then(serde_json::Value::as_i64);
    match code {
        Some(c) if c == ErrorCode::MethodNotFound.code() => StatusCode::NOT_FOUND,
        Some(c)
            if c == ErrorCode::HeaderMismatch.code()
                || c == ErrorCode::MissingRequiredClientCapability.code()
                || c == ErrorCode::UnsupportedProtocolVersion.code() =>
        {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::OK,
    }
}

/// For a rate-limit error (`ErrorCode::RateLimited`): `Retry-After` in whole seconds, rounded
/// up from the error's `data.retryAfterMs` (at least 1).
fn retry_after(message: &Message) -> Option<HeaderValue> {
    let error = message.error()?;
    if error.get("code").and_then(Value::as_i64) != Some(ErrorCode::RateLimited.code()) {
        return None;
    }
    let ms = error
        .get("data")
        .and_then(|d| d.get(warden_guard::RETRY_AFTER_MS))
        .and_then(Value::as_u64)
        .unwrap_or(1000);
    Some(HeaderValue::from(ms.div_ceil(1000).max(1)))
}

/// 400 with the decoder's JSON-RPC error (`-32700` or `-32600`), 413 for an oversized message.
fn decode_rejection(error: &DecodeError) -> Response<ResponseBody> {
    decode_rejection_of(error, b"")
}

/// [`decode_rejection`] of the refused `body`: a request too large or too deep is answered
/// with its id when the body's start names one ([`DecodeError::to_response_for`]).
fn decode_rejection_of(error: &DecodeError, body: &[u8]) -> Response<ResponseBody> {
    debug!(%error, "invalid message in request body");
    let status = match error {
        DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    body::json_value(status, &error.to_response_for(body))
}
