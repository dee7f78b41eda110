//! A test handler and a small HTTP client for the integration tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use warden_downstream::{HttpOptions, bind_http};
use warden_guard::Principal;
use warden_proto::sse::{Event, SseItem, SseParser};
use warden_proto::{Id, Message};
use warden_session::{Face, Handler, ParamHeader, Reply, ReplyStream, Session, SessionError};

/// Bound on every test; generous, so slow CI machines do not flake.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the test handler was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) method: Option<String>,
    pub(crate) stateless: bool,
}

/// An echo-like handler with sessions.
///
/// Methods: `initialize` (fails when `params.protocolVersion` is `"bad"`), `slow` (answers after
/// `params.ms`), `notify_first` (a progress notification, then the response), `gated` (two
/// notifications, then waits for a permit on `gate`, then a third and the response), `push`
/// (queues an unsolicited notification on the session), `unknown/method` (`-32601`),
/// `limited` (a rate-limit refusal), `progress_then_limited` (a notification, then one),
/// `pretty` (a pretty-printed response), `awaits_client` (answers once the client has sent a
/// response of its own: a call waiting on sampling or elicitation), `asks_first` (a server
/// request `srv-1`, then the response once the client answered it). Anything else is echoed.
///
/// Tools: `region_tool` mirrors `region` into `Mcp-Param-Region` and `options.count` into
/// `Mcp-Param-Count` (x-mcp-header); every other tool has no annotations.
pub(crate) struct TestHandler {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    pub(crate) seen: Mutex<Vec<Seen>>,
    pub(crate) ended: Mutex<Vec<String>>,
    pub(crate) gate: Arc<Semaphore>,
    /// One permit per response the client sent; `awaits_client` takes one.
    client_answers: Arc<Semaphore>,
    /// The responses the client sent, in order.
    pub(crate) answers: Mutex<Vec<Value>>,
    /// `slow` requests that ran to their end (not dropped on the way).
    pub(crate) slow_finished: std::sync::atomic::AtomicUsize,
}

impl TestHandler {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            sessions: Mutex::default(),
            seen: Mutex::default(),
            ended: Mutex::default(),
            gate: Arc::new(Semaphore::new(0)),
            client_answers: Arc::new(Semaphore::new(0)),
            answers: Mutex::default(),
            slow_finished: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    pub(crate) fn methods(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| s.method.clone())
            .collect()
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }
}

fn result(id: &Id, result: Value) -> Message {
    Message::from_value(json!({"jsonrpc": "2.0", "id": id.to_value(), "result": result})).unwrap()
}

fn error(id: &Id, code: i64, message: &str) -> Message {
    Message::from_value(
        json!({"jsonrpc": "2.0", "id": id.to_value(), "error": {"code": code, "message": message}}),
    )
    .unwrap()
}

/// What the rate-limit guard answers (`Denial::to_jsonrpc`), with a 2.5 s retry hint.
fn limited(id: &Id) -> Message {
    Message::from_value(json!({"jsonrpc": "2.0", "id": id.to_value(), "error": {
        "code": -31004, "message": "request rate limit exceeded; retry after 2500 ms",
        "data": {"retryAfterMs": 2500}}}))
    .unwrap()
}

fn notification(method: &str, params: Value) -> Message {
    Message::from_value(json!({"jsonrpc": "2.0", "method": method, "params": params})).unwrap()
}

/// The tool [`TestHandler::param_headers`] knows annotations for.
pub(crate) const ANNOTATED_TOOL: &str = "region_tool";

impl Handler for TestHandler {
    fn param_headers(&self, tool: &str) -> Option<Arc<[ParamHeader]>> {
        (tool == ANNOTATED_TOOL).then(|| {
            Arc::from(vec![
                ParamHeader {
                    header: "Region".into(),
                    path: vec!["region".into()],
                },
                ParamHeader {
                    header: "Count".into(),
                    path: vec!["options".into(), "count".into()],
                },
            ])
        })
    }

    fn open_session(
        &self,
        principal: Principal,
        face: Face,
    ) -> BoxFuture<'_, Result<Arc<Session>, SessionError>> {
        let session = Arc::new(Session::new(principal, face));
        self.sessions
            .lock()
            .unwrap()
            .insert(session.id().to_string(), Arc::clone(&session));
        Box::pin(async move { Ok(session) })
    }

    fn find_session<'a>(
        &'a self,
        id: &'a str,
        principal: &'a Principal,
    ) -> BoxFuture<'a, Result<Option<Arc<Session>>, SessionError>> {
        let found = self
            .sessions
            .lock()
            .unwrap()
            .get(id)
            .filter(|s| s.principal().same_caller(principal))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn end_session<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.sessions.lock().unwrap().remove(session.id().as_str());
            self.ended.lock().unwrap().push(session.id().to_string());
            session.end();
        })
    }

    fn handle<'a>(
        &'a self,
        session: Option<&'a Arc<Session>>,
        _principal: &'a Principal,
        message: Message,
    ) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(Seen {
                method: message.method().map(str::to_owned),
                stateless: session.is_none(),
            });
            if !message.is_request() {
                if message.method().is_none() {
                    self.answers.lock().unwrap().push(message.value().clone());
                    self.client_answers.add_permits(1);
                }
                return Reply::Accepted;
            }
            let id = message.id().cloned().unwrap();
            let params = message.params().cloned().unwrap_or(Value::Null);
            let method = message.method().unwrap_or_default().to_owned();
            let single = |m: Message| Reply::Stream(ReplyStream::single(m));
            match method.as_str() {
                "initialize" => {
                    let version = params["protocolVersion"].as_str().unwrap_or("2025-11-25");
                    if version == "bad" {
                        return single(error(&id, -32602, "unsupported version"));
                    }
                    if let Some(s) = session {
                        s.set_initialized(version.to_owned(), None, None);
                    }
                    single(result(
                        &id,
                        json!({"protocolVersion": version, "capabilities": {}, "serverInfo": {"name": "test", "version": "1"}}),
                    ))
                }
                "asks_first" => {
                    // A server request first, then the response once the client answered it.
                    let (tx, rx) = mpsc::channel(2);
                    let answers = Arc::clone(&self.client_answers);
                    tokio::spawn(async move {
                        let ask = json!({"jsonrpc": "2.0", "id": "srv-1", "method": "roots/list"});
                        let _ = tx.send(Message::from_value(ask).unwrap()).await;
                        answers.acquire().await.unwrap().forget();
                        let _ = tx.send(result(&id, json!({"answered": true}))).await;
                    });
                    Reply::Stream(ReplyStream::new(rx))
                }
                "awaits_client" => {
                    self.client_answers.acquire().await.unwrap().forget();
                    single(result(&id, json!({"answered": true})))
                }
                "slow" => {
                    let ms = params["ms"].as_u64().unwrap_or(200);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    self.slow_finished
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    single(result(&id, json!({"slept": ms})))
                }
                "notify_first" => {
                    let (tx, rx) = mpsc::channel(4);
                    tx.try_send(notification(
                        "notifications/progress",
                        json!({"progress": 1}),
                    ))
                    .unwrap();
                    tx.try_send(result(&id, json!({"done": true}))).unwrap();
                    Reply::Stream(ReplyStream::new(rx))
                }
                "gated" => {
                    let (tx, rx) = mpsc::channel(1);
                    let gate = Arc::clone(&self.gate);
                    let tag = params["tag"].clone();
                    tokio::spawn(async move {
                        for n in 1..=2 {
                            let _ = tx
                                .send(notification(
                                    "notifications/progress",
                                    json!({"n": n, "tag": tag}),
                                ))
                                .await;
                        }
                        let _permit = gate.acquire().await.unwrap();
                        let _ = tx
                            .send(notification(
                                "notifications/progress",
                                json!({"n": 3, "tag": tag}),
                            ))
                            .await;
                        let _ = tx.send(result(&id, json!({"tag": tag}))).await;
                    });
                    Reply::Stream(ReplyStream::new(rx))
                }
                "push" => {
                    if let Some(s) = session {
                        let _ = s.push_unsolicited(notification(
                            "notifications/message",
                            params.clone(),
                        ));
                    }
                    single(result(&id, json!({})))
                }
                "unknown/method" => single(error(&id, -32601, "method not found")),
                // The session ends while the request is handled (a DELETE racing it): what the
                // gateway answers then.
                "ended_meanwhile" => {
                    if let Some(s) = session {
                        s.end();
                    }
                    single(error(&id, -32600, "session not found"))
                }
                // A rate-limit refusal (-31004, retry hint 2.5 s), alone or after a
                // progress notification (the stream has started).
                "limited" => single(limited(&id)),
                "progress_then_limited" => {
                    let (tx, rx) = mpsc::channel(4);
                    tx.try_send(notification(
                        "notifications/progress",
                        json!({"progress": 1}),
                    ))
                    .unwrap();
                    tx.try_send(limited(&id)).unwrap();
                    Reply::Stream(ReplyStream::new(rx))
                }
                "pretty" => {
                    let text = format!(
                        "{{\n  \"jsonrpc\": \"2.0\",\n  \"id\": {},\n  \"result\": {{\n    \"pretty\": true\n  }}\n}}",
                        id.to_json()
                    );
                    let value: Value = serde_json::from_str(&text).unwrap();
                    single(Message::from_parts(Bytes::from(text), value).unwrap())
                }
                _ => single(result(&id, json!({"echo": method, "params": params}))),
            }
        })
    }
}

/// A running server on 127.0.0.1:0.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) handler: Arc<TestHandler>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: tokio::task::JoinHandle<Result<(), warden_downstream::DownstreamError>>,
}

impl Server {
    pub(crate) async fn start(configure: impl FnOnce(&mut HttpOptions)) -> Server {
        let handler = TestHandler::new();
        let mut opts = HttpOptions::new("127.0.0.1:0".parse().unwrap());
        opts.sse_keepalive = Duration::from_secs(5);
        configure(&mut opts);
        let bound = bind_http(Arc::clone(&handler), opts).await.unwrap();
        let addr = bound.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bound.run(shutdown.clone()));
        Server {
            addr,
            handler,
            shutdown,
            task,
        }
    }

    pub(crate) fn host(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// A request to `/mcp` with a valid Host header.
    pub(crate) fn request(&self, method: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri("/mcp")
            .header("host", self.host())
    }

    /// A JSON POST with the headers a 2025-11-25 client sends.
    pub(crate) fn post(&self, body: &Value) -> Request<Full<Bytes>> {
        self.request("POST")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    /// A POST in `session`.
    pub(crate) fn post_in(&self, session: &str, body: &Value) -> Request<Full<Bytes>> {
        let mut request = self.post(body);
        request
            .headers_mut()
            .insert("mcp-session-id", session.parse().unwrap());
        request
    }

    pub(crate) async fn send(&self, request: Request<Full<Bytes>>) -> Response<Incoming> {
        send(self.addr, request).await
    }

    /// Sends and reads the whole body.
    pub(crate) async fn call(
        &self,
        request: Request<Full<Bytes>>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let response = self.send(request).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, bytes)
    }

    /// Sends and parses the body as JSON.
    pub(crate) async fn call_json(
        &self,
        request: Request<Full<Bytes>>,
    ) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, bytes) = self.call(request).await;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }

    /// Opens a session with `initialize`; returns its id.
    pub(crate) async fn initialize(&self) -> String {
        let (status, headers, body) = self
            .call_json(self.post(&json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
            })))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        headers["mcp-session-id"].to_str().unwrap().to_owned()
    }
}

/// One request on a fresh HTTP/1.1 connection.
pub(crate) async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Response<Incoming> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender.send_request(request).await.unwrap()
}

/// Reads SSE events from a response body.
pub(crate) struct SseReader {
    body: Incoming,
    parser: SseParser,
    buf: BytesMut,
}

impl SseReader {
    pub(crate) fn new(response: Response<Incoming>) -> Self {
        Self {
            body: response.into_body(),
            parser: SseParser::new(1 << 20),
            buf: BytesMut::new(),
        }
    }

    /// The next event; `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(item) = self.parser.next(&mut self.buf) {
                match item {
                    SseItem::Event(event) => return Some(event),
                    SseItem::TooLarge => panic!("event too large"),
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => panic!("body error: {e}"),
                None => return None,
            }
        }
    }

    /// The next event with data, parsed as JSON.
    pub(crate) async fn next_message(&mut self) -> Option<(Option<String>, Value)> {
        loop {
            let event = self.next().await?;
            if event.data.trim().is_empty() {
                continue;
            }
            return Some((event.id, serde_json::from_str(&event.data).unwrap()));
        }
    }
}

/// Runs `f` under [`TEST_TIMEOUT`].
pub(crate) async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test exceeded its time bound")
}
