//! The gateway: the [`Handler`] the client faces call, routing every message to its upstream.
//!
//! Two shapes, one code path:
//! - *transparent* (`mcp-warden run`): one client, one upstream, names unchanged; the client's
//!   own `initialize` reaches the upstream, so the upstream sees the real client.
//! - *namespaced* (`mcp-warden serve`): many clients, many upstreams; the gateway answers
//!   `initialize` and `server/discover` itself, aggregates lists under `<server>__<name>` and
//!   routes each call by name or URI.
//!
//! Era handling: an upstream's era is detected as the specification prescribes (probe with
//! `server/discover`; a result or a recognised modern error means modern, anything else means
//! legacy and `initialize`). A client of either era is then bridged to an upstream of either
//! era for tools, resources, prompts and completions (see [`crate::bridge`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Duration;
use tokio_util::sync::CancellationToken;
use warden_guard::{Call, Direction, Outcome, Pipeline, Principal};
use warden_proto::fast_map::FastMap;
use warden_proto::mcp::Era;
use warden_proto::{ErrorCode, Id, Kind, Message, error::error_response};
use warden_store::{DynStore, MemoryStore, Namespace};
use warden_upstream::{Connection, HttpSpec, StdioSpec, UpstreamError};

use crate::bridge::{self, ServerDescription};
use crate::naming::NameMap;
use crate::params::{ParamHeader, ToolParams};
use crate::session::{SessionError, SessionId, SessionRecord, now_ms};
use crate::{Face, Handler, Reply, ReplyStream, Session};

/// Upper bound on list pages fetched from one upstream for one aggregated list: a server that
/// returns cursors forever cannot keep the gateway busy. The pages of one list also share one
/// request timeout, and stop at [`MAX_LIST_ITEMS`].
pub(crate) const MAX_LIST_PAGES: usize = 100;
/// Most items kept from one upstream's list (the pin store's bound on tools per upstream): a
/// server cannot make the gateway hold 100 pages of the largest messages it accepts.
pub(crate) const MAX_LIST_ITEMS: usize = 10_000;
/// How often expired sessions are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// How to reach one upstream.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "built once per upstream at startup; boxing would buy nothing"
)]
pub enum Transport {
    /// A child process speaking stdio.
    Stdio(StdioSpec),
    /// A remote Streamable HTTP server.
    Http(HttpSpec),
}

/// Which era to assume for an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EraPreference {
    /// Probe with `server/discover`, fall back to `initialize`.
    #[default]
    Auto,
    /// Skip the probe: initialize-based.
    Legacy,
    /// Skip the probe: stateless.
    Modern,
}

/// One configured upstream.
#[derive(Debug, Clone)]
pub struct UpstreamDef {
    /// Name used in namespacing, logs and audit.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Era to assume.
    pub era: EraPreference,
    /// Longest wait for one response.
    pub request_timeout: Duration,
    /// Longest wait for start-up and era detection.
    pub startup_timeout: Duration,
    /// Expose names as `<name>__<item>` (true) or unchanged (false), in namespaced mode.
    pub namespace: bool,
    /// Restarts, health checks and mark-down (`serve` only; see [`crate::supervise`]).
    pub lifecycle: crate::supervise::Policy,
}

/// Gateway-wide options.
#[derive(Clone)]
pub struct GatewayOptions {
    /// One upstream, names unchanged, client `initialize` forwarded (`run`).
    pub transparent: bool,
    /// Idle expiry of legacy sessions.
    pub session_idle: Duration,
    /// Absolute expiry of legacy sessions.
    pub session_max_lifetime: Duration,
    /// Most live sessions.
    pub max_sessions: usize,
    /// Where Streamable HTTP session records live ([`Namespace::SESSION`]): the embedded
    /// in-memory store by default, a shared store when several replicas serve one endpoint.
    pub session_store: DynStore,
    /// The audit log (sessions, calls, upstream messages); `None` writes no records.
    pub audit: Option<warden_audit::AuditLog>,
    /// Trace context for audited requests (`[tracing]`): each gets a gateway span and is
    /// forwarded with it in `params._meta.traceparent`. `None` (the default) leaves requests
    /// as they are.
    pub trace: Option<warden_trace::Propagator>,
    /// Asked before the gateway starts a stdio upstream's process again after start-up (a
    /// restart, or the second process for legacy clients); a refusal means the process is
    /// not started. `serve` and `run` re-check command pins (RUN-3) here, so an executable
    /// replaced while the gateway runs is caught at its next start, not only at the first.
    pub prelaunch: Option<Arc<dyn Prelaunch>>,
    /// Told each time an upstream's process exits, with its exit code (`None` when killed by
    /// a signal or when the code is unknown). `serve` and `run` drop a cached sandbox probe
    /// result when the sandbox launcher reports that it could not build a sandbox.
    pub on_exit: Option<ExitHook>,
}

/// See [`GatewayOptions::on_exit`]: called with the upstream's name and exit code.
pub type ExitHook = Arc<dyn Fn(&str, Option<i32>) + Send + Sync>;

/// What a [`Prelaunch`] check decided: `Ok` to start, with the identity the program must
/// still have when the sandbox runs it (`None`: no such check); `Err` with the reason.
pub type PrelaunchResult = Result<Option<warden_upstream::ProgramIdentity>, String>;

/// A check before a stdio upstream's process is started again ([`GatewayOptions::prelaunch`]).
pub trait Prelaunch: Send + Sync + 'static {
    /// `Ok` to start `upstream`'s command now (with the identity of the executable checked,
    /// which the sandbox launcher verifies again right before it executes it); `Err` with the
    /// reason (for logs and the audit detail, free of secrets) to refuse.
    fn check<'a>(
        &'a self,
        upstream: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = PrelaunchResult> + Send + 'a>>;
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("transparent", &self.transparent)
            .field("session_idle", &self.session_idle)
            .field("session_max_lifetime", &self.session_max_lifetime)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            transparent: false,
            session_idle: Duration::from_secs(30 * 60),
            session_max_lifetime: Duration::from_secs(24 * 3600),
            max_sessions: 10_000,
            session_store: Arc::new(MemoryStore::default()),
            audit: None,
            trace: None,
            prelaunch: None,
            on_exit: None,
        }
    }
}

/// How long a session's store entry may go without its expiry being pushed back: refreshing on
/// every request would cost a store write per call, so the entry's TTL is renewed at most once
/// per this fraction of the idle timeout (the local idle clock is exact either way).
const STORE_TOUCH_FRACTION: u32 = 8;

/// Why an upstream's era could not be detected or its handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The transport failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A modern server that supports none of the gateway's revisions.
    #[error("upstream `{name}` is modern but supports none of the gateway's protocol revisions")]
    NoCommonVersion {
        /// The upstream.
        name: String,
    },
    /// `era = "modern"` but `server/discover` failed.
    #[error("upstream `{name}` is configured as modern but did not answer server/discover")]
    NotModern {
        /// The upstream.
        name: String,
    },
    /// An initialize result the gateway cannot read.
    #[error("upstream `{name}` sent an initialize result without a protocol version")]
    BadInitialize {
        /// The upstream.
        name: String,
    },
    /// A modern upstream that does not accept `initialize`.
    #[error("upstream `{name}` does not accept initialize")]
    NoLegacy {
        /// The upstream.
        name: String,
    },
    /// The upstream is marked down (crash loop or failed health checks).
    #[error("upstream `{name}` is marked down")]
    Down {
        /// The upstream.
        name: String,
    },
    /// The upstream answered initialize with an error.
    #[error("upstream `{name}` refused initialize with error code {code}")]
    InitializeRefused {
        /// The upstream.
        name: String,
        /// The JSON-RPC error code it sent.
        code: i64,
    },
}

/// Failures that may be timeouts (the client gets a distinct code for those).
pub(crate) trait Failure: std::error::Error {
    fn timed_out(&self) -> bool;
}

impl Failure for UpstreamError {
    fn timed_out(&self) -> bool {
        matches!(self, UpstreamError::Timeout)
    }
}

impl Failure for HandshakeError {
    fn timed_out(&self) -> bool {
        matches!(self, HandshakeError::Upstream(UpstreamError::Timeout))
    }
}

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// An upstream could not be started.
    #[error("upstream `{name}` failed to start")]
    Upstream {
        /// The upstream.
        name: String,
        /// Why.
        #[source]
        source: UpstreamError,
    },
    /// Transparent mode needs exactly one upstream.
    #[error("transparent mode needs exactly one upstream, got {0}")]
    Transparent(usize),
}

pub(crate) struct UpstreamState {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) namespace: bool,
    /// The current shared connection, replaced by the supervisor on restart: read it with
    /// [`UpstreamState::conn`].
    pub(crate) conn: crate::supervise::CurrentConn,
    /// Supervision state (down flag, policy); see [`crate::supervise`].
    pub(crate) life: crate::supervise::Life,
    pub(crate) is_http: bool,
    pub(crate) era_pref: EraPreference,
    pub(crate) request_timeout: Duration,
    pub(crate) startup_timeout: Duration,
    /// What the upstream said about itself on the shared connection. Held across the
    /// handshake, so that one client's handshake is not repeated by the next; set it with
    /// [`UpstreamState::set_desc`], which also publishes it to [`UpstreamState::known_desc`].
    pub(crate) desc: tokio::sync::Mutex<Option<ServerDescription>>,
    /// The last description set, readable without waiting: the request path reads it
    /// (routing, the era of a transparent upstream). A `try_lock` of `desc` instead failed
    /// whenever another request happened to hold it, which made a resource "unknown".
    known: std::sync::RwLock<Option<ServerDescription>>,
    /// For an upstream first described as modern: whether it also accepts `initialize`
    /// (dual-era), learned the first time a legacy client needed it. `DiscoverResult` lists
    /// only stateless revisions, so trying is the only way to know.
    pub(crate) legacy_desc: tokio::sync::Mutex<Option<Option<(ServerDescription, Connection)>>>,
    /// How to start the stdio child again (a dual-era stdio server gets a second process for
    /// legacy traffic: SDKs scope the legacy era to the whole process once initialized).
    pub(crate) stdio_spec: Option<StdioSpec>,
    pub(crate) catalog: RwLock<Catalog>,
    /// The log level the gateway set on the connection legacy callers share (that connection,
    /// and the level's rank): the most verbose any caller asked for. Held across the
    /// forwarding, so that concurrent requests leave the upstream at the most verbose of them.
    pub(crate) shared_log_level: tokio::sync::Mutex<Option<(Connection, u8)>>,
    /// Orders the resource subscriptions and unsubscriptions sent on the shared connection:
    /// held from the decision to forward one until its answer passes, so that whether another
    /// session still holds a URI is judged against what the upstream was actually told.
    pub(crate) subscription_order: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
pub(crate) struct Catalog {
    pub(crate) tools: NameMap,
    pub(crate) prompts: NameMap,
    /// `x-mcp-header` annotations of the listed tools, by the upstream's own tool name.
    pub(crate) tool_params: ToolParams,
    /// Tool objects of the last `tools/list`, by the upstream's own tool name: what argument
    /// validation checks a call against.
    pub(crate) tool_defs: FastMap<String, Arc<Value>>,
    /// When `tools/list` last succeeded for this upstream: a call to a tool the catalog does
    /// not know triggers at most one listing per [`crate::guarded::RELIST_INTERVAL`].
    pub(crate) tools_listed_at: Option<tokio::time::Instant>,
    pub(crate) resources: HashSet<String>,
    /// When a request for a URI the catalog did not know last made the gateway list this
    /// upstream's resources: at most once per [`crate::guarded::RELIST_INTERVAL`], so that
    /// made-up URIs cannot make every upstream list everything on each request.
    pub(crate) resources_listed_at: Option<tokio::time::Instant>,
    /// Literal prefixes of resource templates (the text before the first `{`).
    pub(crate) templates: Vec<String>,
}

/// Routing state of one session.
#[derive(Default)]
pub(crate) struct Routes {
    /// Per-session connections (legacy HTTP upstreams), by upstream index.
    pub(crate) conns: tokio::sync::Mutex<HashMap<usize, Connection>>,
    /// In-flight client requests, by client id: cancelled on `notifications/cancelled`.
    pub(crate) inflight: Mutex<HashMap<Id, Inflight>>,
    /// Server-initiated requests forwarded to the client, by the id the client saw.
    pub(crate) server_requests: Mutex<HashMap<Id, ServerRequest>>,
    pub(crate) next_server_request: AtomicU64,
    /// Upstream of the bridged era per session in transparent mode: true when a legacy client
    /// is bridged to a modern upstream.
    pub(crate) bridged_to_modern: std::sync::atomic::AtomicBool,
    /// Resources the session subscribed to, as (upstream index, URI): `resources/updated` from
    /// a shared connection goes to the sessions subscribed to its URI, and an unsubscription
    /// reaches a shared connection only when no other session is still subscribed.
    pub(crate) subscriptions: Mutex<HashSet<(usize, String)>>,
    /// Subscriptions forwarded and not yet answered: they count toward [`MAX_SUBSCRIPTIONS`]
    /// (changed under the `subscriptions` lock), so concurrent ones on different upstreams
    /// cannot pass it together.
    pub(crate) subscribing: std::sync::atomic::AtomicUsize,
    /// Set when the session ended and released its subscriptions: one the upstream accepts
    /// later (it was in flight) is released at once.
    pub(crate) released: std::sync::atomic::AtomicBool,
    /// Client requests cancelled before the gateway recorded them (a `notifications/cancelled`
    /// handled while its request had not yet started or reached the upstream), with when: the
    /// request is refused, or its exchange cancelled, as soon as it gets that far. Kept
    /// [`EARLY_CANCEL_TTL`], at most [`MAX_EARLY_CANCELS`].
    pub(crate) cancelled_early: Mutex<std::collections::VecDeque<(Id, tokio::time::Instant)>>,
    /// Whether `cancelled_early` may hold any: the common case (none) takes no lock per request.
    any_cancelled_early: std::sync::atomic::AtomicBool,
    /// Set (under the `conns` lock) when the session's upstream connections are closed: a
    /// request of the session still in flight then opens no new one, which nothing would
    /// close.
    pub(crate) closed: std::sync::atomic::AtomicBool,
    /// The client notifications this session may still forward now ([`NOTIFY_BURST`], refilled
    /// at [`NOTIFY_RATE`] per second), and when the budget was last refilled.
    notify_budget: Mutex<Option<(f64, tokio::time::Instant)>>,
}

/// Most server-initiated requests one session keeps waiting for the client's answer. At the
/// cap the oldest is answered for the client with an error and forgotten: a server that sends
/// requests a client never answers would otherwise grow the table for the session's life.
pub const MAX_SERVER_REQUESTS: usize = 256;

/// How long a cancellation of a request not yet recorded is remembered (the race it covers
/// is a request and its cancellation read together; an id a client reuses later is not hit).
pub const EARLY_CANCEL_TTL: Duration = Duration::from_secs(1);
/// Most cancellations of requests not yet recorded that one session remembers.
pub const MAX_EARLY_CANCELS: usize = 64;

/// Most resources one session may be subscribed to at once (each is kept until unsubscribed or
/// the session ends).
pub const MAX_SUBSCRIPTIONS: usize = 1024;

/// A server-initiated request forwarded to the client, awaiting the client's answer.
pub(crate) struct ServerRequest {
    /// Order of arrival in the session (the oldest goes first at the cap).
    pub(crate) seq: u64,
    /// The connection it came on, which the answer goes back to.
    pub(crate) conn: Connection,
    /// Its id at the upstream.
    pub(crate) upstream_id: Id,
    /// The upstream's name, for the guards' per-upstream settings.
    pub(crate) upstream: Box<str>,
    /// Its method: the guards judge the answer by what it answers.
    pub(crate) method: Box<str>,
}

/// Client notifications a session may forward in a burst: every one goes to every upstream (a
/// `roots/list_changed` makes each ask for the roots again), and neither policy nor rate limits
/// judge notifications.
pub const NOTIFY_BURST: f64 = 64.0;
/// Client notifications per second a session may forward, sustained.
pub const NOTIFY_RATE: f64 = 32.0;

impl Routes {
    /// Takes one client notification from the session's budget; `false` when it is spent.
    pub(crate) fn may_notify(&self) -> bool {
        let Ok(mut budget) = self.notify_budget.lock() else {
            return false;
        };
        let now = tokio::time::Instant::now();
        let (tokens, at) = budget.get_or_insert((NOTIFY_BURST, now));
        let refilled = *tokens + now.duration_since(*at).as_secs_f64() * NOTIFY_RATE;
        *at = now;
        *tokens = refilled.min(NOTIFY_BURST);
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// Remembers the client's cancellation of `id`, a request not recorded (yet).
    pub(crate) fn note_early_cancel(&self, id: Id) {
        if let Ok(mut early) = self.cancelled_early.lock() {
            let now = tokio::time::Instant::now();
            early.retain(|(_, at)| now.duration_since(*at) < EARLY_CANCEL_TTL);
            if early.len() >= MAX_EARLY_CANCELS {
                early.pop_front();
            }
            early.push_back((id, now));
            self.any_cancelled_early.store(true, Ordering::Release);
        }
    }

    /// Whether the client cancelled `id` before it was recorded (forgotten once asked).
    pub(crate) fn take_early_cancel(&self, id: &Id) -> bool {
        if !self.any_cancelled_early.load(Ordering::Acquire) {
            return false;
        }
        let Ok(mut early) = self.cancelled_early.lock() else {
            return false;
        };
        let now = tokio::time::Instant::now();
        early.retain(|(_, at)| now.duration_since(*at) < EARLY_CANCEL_TTL);
        let found = match early.iter().position(|(i, _)| i == id) {
            Some(at) => {
                early.remove(at);
                true
            }
            None => false,
        };
        self.any_cancelled_early
            .store(!early.is_empty(), Ordering::Release);
        found
    }

    /// True when the session holds `key` (an upstream index and a URI).
    pub(crate) fn is_subscribed(&self, key: &(usize, String)) -> bool {
        self.subscriptions
            .lock()
            .is_ok_and(|s| !s.is_empty() && s.contains(key))
    }

    /// Forgets the server request the client knows as `client_id` and answers it for the
    /// client with an error, saying `why`.
    pub(crate) async fn refuse_server_request(&self, client_id: &Id, why: &str) {
        let taken = self
            .server_requests
            .lock()
            .ok()
            .and_then(|mut m| m.remove(client_id));
        let Some(request) = taken else { return };
        let refusal = error(
            &request.upstream_id.to_value(),
            ErrorCode::InternalError,
            why,
        );
        if let Err(e) = request.conn.respond(&refusal).await {
            tracing::debug!(error = %e, "refusal of a server request not sent");
        }
    }

    /// Forgets the server request the upstream of connection `conn` sent as `upstream_id`;
    /// the id the client knows it by.
    pub(crate) fn forget_server_request(&self, conn: usize, upstream_id: &Id) -> Option<Id> {
        let mut m = self.server_requests.lock().ok()?;
        let client_id = m
            .iter()
            .find(|(_, r)| r.conn.id() == conn && &r.upstream_id == upstream_id)
            .map(|(k, _)| k.clone())?;
        m.remove(&client_id);
        Some(client_id)
    }

    /// Records a server request forwarded to the client under `client_id`. At
    /// [`MAX_SERVER_REQUESTS`] the oldest is removed and returned, for its upstream to be told.
    pub(crate) fn remember(&self, client_id: Id, request: ServerRequest) -> Option<ServerRequest> {
        let Ok(mut m) = self.server_requests.lock() else {
            return None;
        };
        let evicted = if m.len() >= MAX_SERVER_REQUESTS && !m.contains_key(&client_id) {
            m.iter()
                .min_by_key(|(_, r)| r.seq)
                .map(|(k, _)| k.clone())
                .and_then(|k| m.remove(&k))
        } else {
            None
        };
        m.insert(client_id, request);
        evicted
    }
}

/// One client request being served.
pub(crate) struct Inflight {
    /// Cancels the exchange (client `notifications/cancelled`, session end).
    pub(crate) token: CancellationToken,
    /// The connection it is on ([`Connection::id`]) and its request's id there.
    pub(crate) conn: usize,
    pub(crate) upstream_id: Id,
}

struct Entry {
    session: Arc<Session>,
    routes: Arc<Routes>,
    /// When the store entry's expiry was last pushed back.
    stored_touch: tokio::time::Instant,
}

/// The gateway.
pub struct Gateway {
    /// A handle on itself, for tasks that outlive one call.
    pub(crate) me: std::sync::Weak<Gateway>,
    pub(crate) opts: GatewayOptions,
    pub(crate) pipeline: Pipeline,
    pub(crate) upstreams: Vec<Arc<UpstreamState>>,
    sessions: Mutex<FastMap<String, Entry>>,
    /// Upstream calls waiting for a 2026-07-28 client's input, by `requestState`.
    pub(crate) parked: Mutex<HashMap<String, crate::mrtr::Parked>>,
    /// Routes of stateless requests (no session). Shared by every caller, so nothing keyed by a
    /// client's id is recorded in it: no in-flight entries, no cancellation.
    pub(crate) stateless: Arc<Routes>,
    pub(crate) shutdown: CancellationToken,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field(
                "upstreams",
                &self.upstreams.iter().map(|u| &u.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

pub(crate) fn request(method: &str, params: Value) -> Message {
    // A value the gateway builds itself always classifies as a request.
    Message::from_value(json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params}))
        .expect("a request built by the gateway is a valid request")
}

pub(crate) fn notification(method: &str, params: Option<Value>) -> Message {
    let mut v = json!({"jsonrpc": "2.0", "method": method});
    if let Some(p) = params {
        v["params"] = p;
    }
    Message::from_value(v).expect("a notification built by the gateway is valid")
}

pub(crate) fn response(id: &Value, result: Value) -> Message {
    Message::from_value(json!({"jsonrpc": "2.0", "id": id, "result": result}))
        .expect("a response built by the gateway is valid")
}

pub(crate) fn error(id: &Value, code: ErrorCode, text: &str) -> Message {
    Message::from_value(error_response(id, code, text, None))
        .expect("an error built by the gateway is valid")
}

/// The client's copy of an error object an upstream answered with.
pub(crate) fn relayed_error(id: &Value, upstream_error: &Value) -> Message {
    Message::from_value(json!({"jsonrpc": "2.0", "id": id, "error": upstream_error}))
        .unwrap_or_else(|_| {
            error(
                id,
                ErrorCode::InternalError,
                "the upstream's error is malformed",
            )
        })
}

pub(crate) fn upstream_error(id: &Value, upstream: &str, err: &dyn Failure) -> Message {
    let (code, text) = match err.timed_out() {
        true => (
            ErrorCode::UpstreamTimeout,
            format!("upstream `{upstream}` did not answer in time"),
        ),
        false => (
            ErrorCode::UpstreamUnavailable,
            format!("upstream `{upstream}` is unavailable"),
        ),
    };
    // With its causes: "i/o with upstream failed" alone does not say that a certificate was
    // refused or a connection reset.
    tracing::warn!(upstream, error = %crate::supervise::error_chain(err), "upstream request failed");
    error(id, code, &text)
}

/// The outcome of one upstream exchange consumed entirely by the gateway.
pub(crate) enum Answer {
    Result(Value),
    Error(Value),
}

impl Gateway {
    /// Starts every upstream (spawning stdio children, preparing HTTP clients) and, in
    /// namespaced mode, detects each upstream's era and initializes it.
    ///
    /// An upstream that fails to start is logged and left out (its calls fail with an
    /// "unavailable" error) in namespaced mode; in transparent mode it is an error.
    pub async fn start(
        defs: Vec<UpstreamDef>,
        pipeline: Pipeline,
        opts: GatewayOptions,
    ) -> Result<Arc<Gateway>, GatewayError> {
        if opts.transparent && defs.len() != 1 {
            return Err(GatewayError::Transparent(defs.len()));
        }
        let mut upstreams = Vec::with_capacity(defs.len());
        for (index, def) in defs.into_iter().enumerate() {
            let stdio_spec = match &def.transport {
                Transport::Stdio(spec) => Some(spec.clone()),
                Transport::Http(_) => None,
            };
            let life = crate::supervise::Life::new(def.lifecycle, def.transport.clone());
            let (conn, is_http) = match def.transport {
                Transport::Stdio(spec) => (Connection::spawn_stdio(spec).await, false),
                Transport::Http(spec) => (Connection::http(spec), true),
            };
            let conn = match conn {
                Ok(c) => c,
                Err(source) => {
                    if opts.transparent {
                        return Err(GatewayError::Upstream {
                            name: def.name,
                            source,
                        });
                    }
                    tracing::error!(upstream = %def.name, error = %source, "upstream failed to start; serving without it");
                    continue;
                }
            };
            upstreams.push(Arc::new(UpstreamState {
                index,
                name: def.name,
                namespace: def.namespace,
                conn: crate::supervise::current(conn),
                life,
                is_http,
                era_pref: def.era,
                request_timeout: def.request_timeout,
                startup_timeout: def.startup_timeout,
                desc: tokio::sync::Mutex::new(None),
                known: std::sync::RwLock::new(None),
                legacy_desc: tokio::sync::Mutex::new(None),
                stdio_spec,
                catalog: RwLock::new(Catalog::default()),
                shared_log_level: tokio::sync::Mutex::new(None),
                subscription_order: Arc::new(tokio::sync::Mutex::new(())),
            }));
        }
        let gateway = Arc::new_cyclic(|me| Gateway {
            me: me.clone(),
            opts,
            pipeline,
            upstreams,
            sessions: Mutex::new(FastMap::default()),
            parked: Mutex::new(HashMap::new()),
            stateless: Arc::new(Routes::default()),
            shutdown: CancellationToken::new(),
        });
        if !gateway.opts.transparent {
            let probes = gateway.upstreams.iter().map(|u| {
                let u = u.clone();
                async move {
                    if let Err(e) = u.describe().await {
                        tracing::error!(upstream = %u.name, error = %e, "upstream did not complete its handshake");
                    }
                }
            });
            futures::future::join_all(probes).await;
        }
        // Unsolicited messages, stderr reports, restarts and health checks of every upstream.
        crate::supervise::start(&gateway);
        tokio::spawn(sweep(Arc::downgrade(&gateway)));
        Ok(gateway)
    }

    /// Names of the upstreams whose handshake has not completed. A namespaced gateway
    /// handshakes with every upstream in [`Gateway::start`], so right after it these are the
    /// upstreams that could not be reached or did not answer (the cause is logged).
    pub fn upstreams_undescribed(&self) -> Vec<String> {
        self.upstreams
            .iter()
            .filter(|u| u.known_era().is_none())
            .map(|u| u.name.clone())
            .collect()
    }

    /// Shuts every upstream down (stdio: close stdin, SIGTERM, SIGKILL).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let entries: Vec<Arc<Routes>> = match self.sessions.lock() {
            Ok(mut s) => s.drain().map(|(_, e)| e.routes).collect(),
            Err(_) => vec![],
        };
        for routes in entries {
            close_routes(&routes).await;
        }
        let mut conns = vec![];
        for u in &self.upstreams {
            conns.extend(u.connections().await);
        }
        futures::future::join_all(conns.iter().map(Connection::shutdown)).await;
    }

    /// Pids of stdio upstream children (for tests and `check`).
    pub fn upstream_pids(&self) -> Vec<u32> {
        let mut pids = vec![];
        for u in &self.upstreams {
            pids.extend(u.conn().pid());
            if let Ok(slot) = u.legacy_desc.try_lock()
                && let Some(Some((_, c))) = slot.as_ref()
            {
                pids.extend(c.pid());
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn entry(&self, session: &Session) -> Option<Arc<Routes>> {
        self.sessions
            .lock()
            .ok()?
            .get(session.id().as_str())
            .map(|e| e.routes.clone())
    }

    fn purge_expired(&self) -> Vec<(Arc<Session>, Arc<Routes>)> {
        let Ok(mut sessions) = self.sessions.lock() else {
            return vec![];
        };
        let idle = self.opts.session_idle;
        let max = self.opts.session_max_lifetime;
        let expired: Vec<String> = sessions
            .iter()
            .filter(|(_, e)| e.session.face() == Face::Http && e.session.is_expired(idle, max))
            .map(|(k, _)| k.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|k| sessions.remove(&k))
            .map(|e| {
                e.session.end();
                (e.session, e.routes)
            })
            .collect()
    }

    /// [`Gateway::guard_in`] for a message that belongs to no client session.
    pub(crate) async fn guard(
        &self,
        message: Message,
        direction: Direction,
        principal: &Principal,
        upstream: Option<&str>,
        request_method: Option<&str>,
    ) -> Result<Message, Message> {
        self.guard_in(
            None,
            message,
            direction,
            principal,
            upstream,
            request_method,
        )
        .await
    }

    /// Runs the guards of `direction` on a message of `session` (named in their audit
    /// records). `Ok` with the message to pass on, `Err` with the error for the sender.
    pub(crate) async fn guard_in(
        &self,
        session: Option<&Session>,
        message: Message,
        direction: Direction,
        principal: &Principal,
        upstream: Option<&str>,
        request_method: Option<&str>,
    ) -> Result<Message, Message> {
        if self.pipeline.is_passthrough(direction) {
            return Ok(message);
        }
        let outcome = self
            .pipeline
            .run(&Call {
                message: &message,
                direction,
                principal,
                session: session.map(|s| s.id().as_str()),
                upstream,
                request_method,
                target: None,
                permits: None,
            })
            .await;
        let id = message.id().map(Id::to_value).unwrap_or(Value::Null);
        match outcome {
            Outcome::Forward => Ok(message),
            Outcome::ForwardRewritten(m) => Ok(m),
            Outcome::Deny(d) => {
                tracing::info!(guard = d.guard, detail = %d.detail, "message denied");
                Err(Message::from_value(d.to_jsonrpc(&id))
                    .expect("a denial is a valid error response"))
            }
            Outcome::Hold(t) => Err(error(
                &id,
                ErrorCode::Denied,
                &format!("call held for approval (ticket {})", t.id),
            )),
        }
    }
}

async fn sweep(gateway: std::sync::Weak<Gateway>) {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let Some(g) = gateway.upgrade() else { return };
        if g.shutdown.is_cancelled() {
            return;
        }
        g.sweep_parked();
        for (session, routes) in g.purge_expired() {
            g.retire_expired(&session, routes);
        }
    }
}

async fn close_routes(routes: &Routes) {
    let conns: Vec<Connection> = {
        let mut conns = routes.conns.lock().await;
        routes.closed.store(true, Ordering::SeqCst);
        conns.drain().map(|(_, c)| c).collect()
    };
    for c in conns {
        c.shutdown().await;
    }
    if let Ok(inflight) = routes.inflight.lock() {
        for t in inflight.values() {
            t.token.cancel();
        }
    }
}

impl UpstreamState {
    /// The upstream's description on the shared connection, detecting its era and
    /// initializing it on first use.
    pub(crate) async fn describe(&self) -> Result<ServerDescription, HandshakeError> {
        self.describe_as(None, None).await
    }

    /// [`UpstreamState::describe`], handshaking (if it has not happened yet) with a client's
    /// own capabilities and info instead of the gateway's.
    pub(crate) async fn describe_as(
        &self,
        capabilities: Option<&Value>,
        client_info: Option<&Value>,
    ) -> Result<ServerDescription, HandshakeError> {
        let mut slot = self.desc.lock().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let conn = self.conn();
        let d = detect(
            &self.name,
            &conn,
            self.era_pref,
            self.startup_timeout,
            capabilities,
            client_info,
        )
        .await?;
        if self.is_http && d.era == Era::Legacy {
            conn.set_protocol_version(&d.protocol_version);
        }
        self.set_desc(&mut slot, Some(d.clone()));
        Ok(d)
    }

    /// The era to speak to this upstream for a client of `client_era`: the client's own when
    /// the upstream supports it (full fidelity: server requests, subscriptions, logging),
    /// otherwise the upstream's.
    pub(crate) async fn era_for(
        self: &Arc<Self>,
        gateway: &std::sync::Weak<Gateway>,
        client_era: Era,
    ) -> Result<Era, HandshakeError> {
        // Per-request fast path: a known description that fits, read without cloning it.
        let fits = self.known.read().is_ok_and(|d| {
            d.as_ref()
                .is_some_and(|d| d.era == client_era || d.supports(client_era))
        });
        if fits {
            return Ok(client_era);
        }
        // The rest is boxed: it runs once per upstream, and its future (a handshake) would
        // otherwise size every request's.
        Box::pin(async {
            let d = self.describe().await?;
            if d.era == client_era || d.supports(client_era) {
                return Ok(client_era);
            }
            if client_era == Era::Legacy && self.legacy(gateway).await.is_some() {
                return Ok(Era::Legacy);
            }
            Ok(d.era)
        })
        .await
    }

    /// Legacy handshake of an upstream first described as modern, tried once, since a
    /// `DiscoverResult` lists only stateless revisions. On stdio it runs in a second child
    /// process kept for legacy traffic (SDKs scope the legacy era to the whole process once it
    /// is initialized, so one process cannot serve both eras reliably); on HTTP it runs on a
    /// throw-away session, since legacy clients get upstream sessions of their own.
    async fn legacy(
        self: &Arc<Self>,
        gateway: &std::sync::Weak<Gateway>,
    ) -> Option<(ServerDescription, Connection)> {
        let mut slot = self.legacy_desc.lock().await;
        if let Some(known) = slot.as_ref() {
            return known.clone();
        }
        let allowed = match (&self.stdio_spec, gateway.upgrade()) {
            (Some(_), Some(g)) => match &g.opts.prelaunch {
                Some(p) => p.check(&self.name).await,
                None => Ok(None),
            },
            _ => Ok(None),
        };
        let identity = match allowed {
            Ok(identity) => identity,
            Err(reason) => {
                // Not remembered: once the change is approved, the next legacy client gets it.
                tracing::error!(upstream = %self.name, %reason, "second process for legacy clients not started");
                return None;
            }
        };
        let probe = match &self.stdio_spec {
            Some(spec) => match Connection::spawn_stdio(checked_spec(spec, identity)).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(upstream = %self.name, error = %e, "second process for legacy clients failed to start");
                    None
                }
            },
            None => self.conn().fork_http(),
        };
        let outcome = match probe {
            Some(conn) => {
                let r = detect(
                    &self.name,
                    &conn,
                    EraPreference::Legacy,
                    self.startup_timeout,
                    None,
                    None,
                )
                .await;
                match r {
                    Ok(d) if !self.is_http => {
                        if let Some(rx) = conn.take_unsolicited() {
                            tokio::spawn(pump_unsolicited(
                                gateway.clone(),
                                self.clone(),
                                conn.clone(),
                                None,
                                rx,
                            ));
                        }
                        Some((d, conn))
                    }
                    Ok(d) => {
                        conn.shutdown().await;
                        Some((d, self.conn()))
                    }
                    Err(e) => {
                        conn.shutdown().await;
                        tracing::info!(upstream = %self.name, error = %e, "modern upstream does not accept initialize; legacy clients are bridged");
                        None
                    }
                }
            }
            None => None,
        };
        *slot = Some(outcome.clone());
        // The supervisor watches the second process too (see `crate::supervise`); it reads
        // the slot when woken, so the lock goes first.
        drop(slot);
        self.life.legacy_started();
        outcome
    }

    /// The connection for legacy traffic that no client session owns, handshake done.
    pub(crate) async fn ensure_legacy(
        self: &Arc<Self>,
        gateway: &std::sync::Weak<Gateway>,
    ) -> Result<Connection, HandshakeError> {
        let d = self.describe().await?;
        if d.era == Era::Legacy {
            return Ok(self.conn());
        }
        match self.legacy(gateway).await {
            Some((_, conn)) if !self.is_http => Ok(conn),
            _ => Err(HandshakeError::NoLegacy {
                name: self.name.clone(),
            }),
        }
    }

    /// Capabilities from the legacy handshake of a dual-era upstream, once it happened.
    pub(crate) async fn legacy_capabilities(&self) -> Option<Value> {
        match self.legacy_desc.lock().await.as_ref() {
            Some(Some((d, _))) => Some(d.capabilities.clone()),
            _ => None,
        }
    }

    /// Every connection of this upstream the gateway owns outside sessions.
    async fn connections(&self) -> Vec<Connection> {
        let mut all = vec![self.conn()];
        if let Some(Some((_, c))) = self.legacy_desc.lock().await.as_ref()
            && self.stdio_spec.is_some()
        {
            all.push(c.clone());
        }
        all
    }

    pub(crate) fn known_desc(&self) -> Option<ServerDescription> {
        self.known.read().ok().and_then(|d| d.clone())
    }

    /// The era of the last description set, without cloning it.
    pub(crate) fn known_era(&self) -> Option<Era> {
        self.known
            .read()
            .ok()
            .and_then(|d| d.as_ref().map(|d| d.era))
    }

    /// Sets the description (`slot` is the locked `desc`) and publishes it.
    pub(crate) fn set_desc(
        &self,
        slot: &mut Option<ServerDescription>,
        d: Option<ServerDescription>,
    ) {
        if let Ok(mut known) = self.known.write() {
            known.clone_from(&d);
        }
        *slot = d;
    }
}

/// Longest wait for the `server/discover` probe: a legacy server that ignores requests before
/// `initialize` costs this much once, at start-up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Detects the era of the server behind `conn` and completes its handshake.
pub(crate) async fn detect(
    name: &str,
    conn: &Connection,
    pref: EraPreference,
    timeout: Duration,
    capabilities: Option<&Value>,
    client_info: Option<&Value>,
) -> Result<ServerDescription, HandshakeError> {
    if pref != EraPreference::Legacy {
        let probe = exchange(
            conn,
            request("server/discover", bridge::discover_params()),
            timeout.min(PROBE_TIMEOUT),
        )
        .await;
        match probe {
            Ok(Answer::Result(r)) => {
                if let Some(d) = ServerDescription::from_discover(&r) {
                    return Ok(d);
                }
            }
            Ok(Answer::Error(e)) if bridge::is_modern_error(&e) => {
                // A modern server that does not speak our revision: nothing to fall back to.
                return Err(HandshakeError::NoCommonVersion { name: name.into() });
            }
            // A dead upstream is dead whatever its era.
            Err(e @ UpstreamError::Closed { .. }) => return Err(e.into()),
            // Any other error, or a timeout, means legacy (never keyed on one error code).
            Ok(Answer::Error(_)) | Err(_) => {}
        }
        if pref == EraPreference::Modern {
            return Err(HandshakeError::NotModern { name: name.into() });
        }
    }
    let init = request(
        "initialize",
        bridge::initialize_params(capabilities.or(Some(&gateway_capabilities())), client_info),
    );
    match exchange(conn, init, timeout).await? {
        Answer::Result(r) => {
            let d = ServerDescription::from_initialize(&r)
                .ok_or_else(|| HandshakeError::BadInitialize { name: name.into() })?;
            conn.notify(&notification("notifications/initialized", None))
                .await?;
            Ok(d)
        }
        // A modern error to `initialize` after a probe that timed out: the server was still
        // starting when the probe's time ran out (an interpreter loading its SDK), then read
        // the probe, answered it late and took the modern era. Its error says it is modern, so
        // ask again, now that it is up, instead of failing the upstream.
        Answer::Error(e) if pref != EraPreference::Legacy && bridge::is_modern_error(&e) => {
            match exchange(
                conn,
                request("server/discover", bridge::discover_params()),
                timeout,
            )
            .await?
            {
                Answer::Result(r) => ServerDescription::from_discover(&r)
                    .ok_or_else(|| HandshakeError::NoCommonVersion { name: name.into() }),
                Answer::Error(_) => Err(HandshakeError::NoCommonVersion { name: name.into() }),
            }
        }
        Answer::Error(e) => Err(HandshakeError::InitializeRefused {
            name: name.into(),
            code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
        }),
    }
}

/// Capabilities the gateway declares when it initializes an upstream on its own behalf: all
/// the server-to-client features it can route to a client that declared them.
fn gateway_capabilities() -> Value {
    json!({"roots": {"listChanged": true}, "sampling": {}, "elicitation": {"form": {}, "url": {}}})
}

/// Sends one request and waits for its final answer, discarding interim messages.
pub(crate) async fn exchange(
    conn: &Connection,
    msg: Message,
    timeout: Duration,
) -> Result<Answer, UpstreamError> {
    let mut stream = conn.request(&msg, timeout).await?;
    while let Some(item) = stream.next().await {
        let m = item?;
        match m.kind() {
            Kind::Response => {
                return Ok(Answer::Result(m.result().cloned().unwrap_or(Value::Null)));
            }
            Kind::Error => return Ok(Answer::Error(m.error().cloned().unwrap_or(Value::Null))),
            Kind::Request => {
                // Sent in the context of the gateway's own request (on its stream, or while it
                // was the only one in flight): no client can take it. Answered, so that an
                // upstream waiting for it (roots before a listing) goes on.
                let id = m.id().map(Id::to_value).unwrap_or(Value::Null);
                let refusal = error(
                    &id,
                    ErrorCode::MethodNotFound,
                    "no client session can receive this request",
                );
                if let Err(e) = conn.respond(&refusal).await {
                    tracing::debug!(error = %e, "refusal of a server request not sent");
                }
            }
            Kind::Notification => {}
        }
    }
    Err(UpstreamError::Closed {
        name: String::new(),
        reason: warden_upstream::CloseReason::StreamEnded,
    })
}

/// Delivers messages an upstream sent outside any request.
pub(crate) async fn pump_unsolicited(
    gateway: std::sync::Weak<Gateway>,
    upstream: Arc<UpstreamState>,
    // The connection the messages come from: answers to server requests go back on it.
    conn: Connection,
    // Set for a per-session connection: everything goes to that session.
    owner: Option<(Arc<Session>, Arc<Routes>)>,
    mut rx: mpsc::Receiver<warden_upstream::Unsolicited>,
) {
    loop {
        // The connection's sender lives as long as the connection, and this task holds the
        // connection: it ends when the connection is shut down (the session ended, or the
        // connection was replaced), not when the channel closes.
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            () = conn.ended() => None,
        };
        let Some(warden_upstream::Unsolicited {
            message: msg,
            in_flight,
        }) = msg
        else {
            return;
        };
        let Some(g) = gateway.upgrade() else { return };
        let method = msg.method().unwrap_or("").to_owned();
        if method == "notifications/resources/list_changed" {
            upstream.catalog_stale();
        }
        let targets: Vec<(Arc<Session>, Arc<Routes>)> = match &owner {
            Some((s, r)) => vec![(s.clone(), r.clone())],
            None if method == "notifications/resources/updated" && !g.opts.transparent => {
                let uri = msg
                    .params()
                    .and_then(|p| warden_proto::Field::field(p, "uri"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                g.subscribers(upstream.index, uri)
            }
            // An upstream withdrawing one of its own requests: the session it was sent to.
            None if method == "notifications/cancelled" && !g.opts.transparent => msg
                .params()
                .and_then(|p| warden_proto::Field::field(p, "requestId"))
                .and_then(Id::from_value)
                .map(|id| g.server_request_holders(conn.id(), &id))
                .unwrap_or_default(),
            None => g.unsolicited_targets(&method, Some((conn.id(), &in_flight))),
        };
        if targets.is_empty() {
            if msg.is_request() {
                // Nobody can answer: tell the upstream rather than let it wait.
                let id = msg.id().map(Id::to_value).unwrap_or(Value::Null);
                let _ = conn
                    .respond(&error(
                        &id,
                        ErrorCode::MethodNotFound,
                        "no client session can receive this request",
                    ))
                    .await;
            } else {
                tracing::debug!(upstream = %upstream.name, method = %method, "unsolicited message has no session to go to; dropped");
            }
            continue;
        }
        for (session, routes) in targets {
            let Some(out) = g
                .to_client(msg.clone(), &session, &routes, &conn, &upstream.name, None)
                .await
            else {
                continue;
            };
            if let Err(dropped) = session.push_unsolicited(out)
                && dropped.is_request()
                && let Some(id) = dropped.id()
            {
                // The client cannot take it: its upstream is told now, not after its timeout.
                routes
                    .refuse_server_request(id, "the client is not reading the session's stream")
                    .await;
            }
        }
    }
}

/// `notifications/cancelled` naming `id` as the request it cancels.
fn with_request_id(cancelled: &Message, id: &Id) -> Option<Message> {
    let mut value = cancelled.value().clone();
    value["params"]["requestId"] = id.to_value();
    Message::from_value(value).ok()
}

/// True when `session` is a legacy HTTP session `principal` may use.
fn owned_by(session: &Session, principal: &Principal) -> bool {
    session.face() == Face::Http && session.principal().same_caller(principal)
}

/// Notifications every session receives: list changes, and resource updates that are not
/// routed by subscription (in `run`, and from a connection of one session).
fn is_broadcast(method: &str) -> bool {
    method.ends_with("/list_changed") || method == "notifications/resources/updated"
}

impl UpstreamState {
    fn catalog_stale(&self) {
        if let Ok(mut c) = self.catalog.write() {
            c.resources.clear();
            c.templates.clear();
            c.resources_listed_at = None;
        }
    }
}

impl Gateway {
    /// Sessions an unsolicited message from a shared upstream connection goes to: every
    /// session for a change all must learn about (and in `run`), else the one session whose
    /// requests are all the requests that were in flight on that connection (`origin`: the
    /// connection's id and the upstream-side ids in flight when the message arrived).
    pub(crate) fn unsolicited_targets(
        &self,
        method: &str,
        origin: Option<(usize, &[Id])>,
    ) -> Vec<(Arc<Session>, Arc<Routes>)> {
        let Ok(sessions) = self.sessions.lock() else {
            return vec![];
        };
        if self.opts.transparent || is_broadcast(method) {
            // One client (run), or a change every client must learn about.
            return sessions
                .values()
                .map(|e| (e.session.clone(), e.routes.clone()))
                .collect();
        }
        // Anything else cannot be tied to a request for certain (stdio carries no context).
        // It may be about any request in flight on its connection when it arrived: deliver it
        // only when one session owns every one of them. A request of another session, of a
        // stateless caller (recorded nowhere) or not recorded yet leaves one unowned: dropped.
        // Never guess, never broadcast a message meant for one client.
        let Some((conn, in_flight)) = origin.filter(|(_, ids)| !ids.is_empty()) else {
            return vec![];
        };
        let owns = |e: &Entry| {
            e.routes.inflight.lock().is_ok_and(|m| {
                in_flight
                    .iter()
                    .all(|id| m.values().any(|f| f.conn == conn && f.upstream_id == *id))
            })
        };
        let mut owners = sessions.values().filter(|e| owns(e));
        match (owners.next(), owners.next()) {
            (Some(e), None) => vec![(e.session.clone(), e.routes.clone())],
            _ => vec![],
        }
    }

    /// A session found expired (by the sweep, or when another is opened), out of the table
    /// already: audited, its subscriptions released and its upstream state closed.
    fn retire_expired(&self, session: &Session, routes: Arc<Routes>) {
        tracing::info!(session = %session.id(), "session expired");
        self.audit_session_end(session, "expired");
        self.release_subscriptions(&routes);
        tokio::spawn(async move { close_routes(&routes).await });
    }

    /// The sessions holding the server request connection `conn` sent as `upstream_id`.
    fn server_request_holders(
        &self,
        conn: usize,
        upstream_id: &Id,
    ) -> Vec<(Arc<Session>, Arc<Routes>)> {
        let Ok(sessions) = self.sessions.lock() else {
            return vec![];
        };
        sessions
            .values()
            .filter(|e| {
                e.routes.server_requests.lock().is_ok_and(|m| {
                    m.values()
                        .any(|r| r.conn.id() == conn && &r.upstream_id == upstream_id)
                })
            })
            .map(|e| (e.session.clone(), e.routes.clone()))
            .collect()
    }

    /// The sessions subscribed to `uri` of upstream `index`.
    fn subscribers(&self, index: usize, uri: &str) -> Vec<(Arc<Session>, Arc<Routes>)> {
        let Ok(sessions) = self.sessions.lock() else {
            return vec![];
        };
        let key = (index, uri.to_owned());
        sessions
            .values()
            .filter(|e| e.routes.is_subscribed(&key))
            .map(|e| (e.session.clone(), e.routes.clone()))
            .collect()
    }

    /// True when a session (other than the one of `except`) is subscribed to `uri` of upstream
    /// `index` (when the table cannot be read: true, which keeps the subscription).
    pub(crate) fn subscribed_elsewhere(
        &self,
        index: usize,
        uri: &str,
        except: Option<&Arc<Routes>>,
    ) -> bool {
        let Ok(sessions) = self.sessions.lock() else {
            return true;
        };
        let key = (index, uri.to_owned());
        sessions.values().any(|e| {
            except.is_none_or(|r| !Arc::ptr_eq(&e.routes, r)) && e.routes.is_subscribed(&key)
        })
    }

    /// Unsubscribes shared connections from the resources only an ended session (`routes`, no
    /// longer in the table) was subscribed to, in the background.
    pub(crate) fn release_subscriptions(&self, routes: &Arc<Routes>) {
        routes
            .released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let held: Vec<(usize, String)> = routes
            .subscriptions
            .lock()
            .map(|mut s| s.drain().collect())
            .unwrap_or_default();
        self.unsubscribe_orphans(held, routes);
    }

    /// Unsubscribes shared connections, in the background, from the resources of `held` (upstream
    /// index, URI) that no session but the one of `routes` is subscribed to.
    pub(crate) fn unsubscribe_orphans(&self, held: Vec<(usize, String)>, routes: &Arc<Routes>) {
        let orphaned: Vec<(Arc<UpstreamState>, String)> = held
            .into_iter()
            .filter(|(index, uri)| !self.subscribed_elsewhere(*index, uri, Some(routes)))
            .filter_map(|(index, uri)| {
                let up = self.upstreams.iter().find(|u| u.index == index)?;
                (!up.is_http).then(|| (up.clone(), uri))
            })
            .collect();
        if orphaned.is_empty() {
            return;
        }
        let gateway = self.me.clone();
        tokio::spawn(async move {
            let Some(g) = gateway.upgrade() else { return };
            for (up, uri) in orphaned {
                // Ordered with the sessions' own (un)subscriptions: one another session has
                // in flight is answered, and counts, before this is decided.
                let Ok(_order) =
                    tokio::time::timeout(up.request_timeout, up.subscription_order.lock()).await
                else {
                    tracing::debug!(upstream = %up.name, "resources/unsubscribe of an ended session not sent: another subscription request is still unanswered");
                    continue;
                };
                // Another session may have subscribed since: then the subscription stays.
                if g.subscribed_elsewhere(up.index, &uri, None) {
                    continue;
                }
                // The connection legacy traffic to this upstream uses (a dual-era stdio server
                // keeps legacy traffic to a process of its own), spoken in its era.
                let routes = Arc::new(Routes::default());
                let legacy = crate::dispatch::ClientEra { modern: false };
                let Ok((conn, Era::Legacy)) = g.conn_for(None, &routes, &up, legacy).await else {
                    continue;
                };
                let unsubscribe = request("resources/unsubscribe", json!({ "uri": uri }));
                if let Err(e) = exchange(&conn, unsubscribe, up.request_timeout).await {
                    tracing::debug!(upstream = %up.name, error = %e, "resources/unsubscribe of an ended session not applied");
                }
            }
        });
    }

    /// Prepares one upstream message for the client of `session`: server-initiated requests
    /// get an id the client answers to, then the response-direction guards run.
    pub(crate) async fn to_client(
        &self,
        msg: Message,
        session: &Session,
        routes: &Routes,
        conn: &Connection,
        upstream: &str,
        request_method: Option<&str>,
    ) -> Option<Message> {
        self.audit_message(&msg, session, upstream);
        if !self.opts.transparent && !session.wants_log(&msg) {
            // Below the level this client asked for (the shared upstream logs at the most
            // verbose level any caller asked for).
            return None;
        }
        let msg = if msg.is_request() {
            let upstream_id = msg.id().cloned()?;
            let method = msg.method().unwrap_or("");
            if !self.client_accepts(session, method) {
                let _ = conn
                    .respond(&error(
                        &upstream_id.to_value(),
                        ErrorCode::MethodNotFound,
                        "the client did not declare this capability",
                    ))
                    .await;
                return None;
            }
            let seq = routes.next_server_request.fetch_add(1, Ordering::Relaxed);
            // One client and one upstream in transparent mode: the ids cannot collide, so
            // they are kept as sent. Otherwise each gets one of the session's own.
            let client_id = if self.opts.transparent {
                upstream_id.clone()
            } else {
                Id::String(format!("warden-{seq}").into())
            };
            let pending = ServerRequest {
                seq,
                conn: conn.clone(),
                upstream_id,
                upstream: upstream.into(),
                method: method.into(),
            };
            if let Some(old) = routes.remember(client_id.clone(), pending) {
                tracing::warn!(upstream, method = %old.method, "a server request the client has not answered was dropped: too many were waiting");
                let _ = old
                    .conn
                    .respond(&error(
                        &old.upstream_id.to_value(),
                        ErrorCode::InternalError,
                        "the client has not answered: too many requests were waiting for it",
                    ))
                    .await;
            }
            if self.opts.transparent {
                msg
            } else {
                msg.into_with_id(&client_id)
            }
        } else if !self.opts.transparent && msg.method() == Some("notifications/cancelled") {
            // The upstream withdraws one of its own requests: the client knows it by the id
            // the gateway gave it. One the client was never sent (or has answered) is dropped;
            // the upstream's own ids never reach the client.
            let upstream_id = msg
                .params()
                .and_then(|p| warden_proto::Field::field(p, "requestId"))
                .and_then(Id::from_value)?;
            let Some(client_id) = routes.forget_server_request(conn.id(), &upstream_id) else {
                // Not this session's request (it came while another session's call was the
                // one in flight): to the session that request went to, if any.
                // Delivered as the unsolicited path delivers it (the holder's own to_client).
                for (holder, its_routes) in self.server_request_holders(conn.id(), &upstream_id) {
                    let out = Box::pin(self.to_client(
                        msg.clone(),
                        &holder,
                        &its_routes,
                        conn,
                        upstream,
                        None,
                    ))
                    .await;
                    if let Some(out) = out {
                        let _ = holder.push_unsolicited(out);
                    }
                }
                return None;
            };
            with_request_id(&msg, &client_id)?
        } else {
            msg
        };
        let client_id = msg.is_request().then(|| msg.id().cloned()).flatten();
        match self
            .guard_in(
                Some(session),
                msg,
                Direction::ToClient,
                &session.current_principal(),
                Some(upstream),
                request_method,
            )
            .await
        {
            Ok(m) => Some(m),
            Err(denial) => {
                // A refused server-initiated request is answered with the refusal, so the
                // upstream does not wait for a client that will never see it.
                let pending =
                    client_id.and_then(|id| routes.server_requests.lock().ok()?.remove(&id));
                if let Some(p) = pending {
                    let _ = p.conn.respond(&denial.into_with_id(&p.upstream_id)).await;
                }
                None
            }
        }
    }

    fn client_accepts(&self, session: &Session, method: &str) -> bool {
        let cap = match method {
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            "roots/list" => "roots",
            _ => return true,
        };
        if self.opts.transparent {
            // The client negotiated with the upstream directly; the upstream knows.
            return true;
        }
        session
            .client_capabilities()
            .is_some_and(|c| c.get(cap).is_some())
    }
}

impl Gateway {
    /// The TTL of a session's store entry: its idle timeout, cut to what remains of its lifetime.
    fn store_ttl(&self, created_ms: u64) -> Option<Duration> {
        let age = Duration::from_millis(now_ms().saturating_sub(created_ms));
        let left = self.opts.session_max_lifetime.checked_sub(age)?;
        let ttl = self.opts.session_idle.min(left);
        (ttl >= Duration::from_millis(1)).then_some(ttl)
    }

    /// Writes the session's record (after creation and after `initialize`).
    async fn save_session(&self, session: &Session) -> Result<(), SessionError> {
        if session.face() != Face::Http {
            // A stdio session is its pipe: no other process can ever serve it.
            return Ok(());
        }
        let Some(ttl) = self.store_ttl(session.created_ms()) else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&session.record())
            .map(bytes::Bytes::from)
            .expect("a session record always serializes");
        self.opts
            .session_store
            .put(Namespace::SESSION, session.id().as_str(), bytes, Some(ttl))
            .await
            .map_err(SessionError::Store)
    }

    /// Drops a session this process holds that the store no longer knows (ended or expired by
    /// another replica, or expired here).
    async fn forget_local(&self, id: &str) {
        let entry = self.sessions.lock().ok().and_then(|mut s| s.remove(id));
        if let Some(e) = entry {
            e.session.end();
            close_routes(&e.routes).await;
            self.release_subscriptions(&e.routes);
        }
    }
}

impl Handler for Gateway {
    fn open_session(
        &self,
        principal: Principal,
        face: Face,
    ) -> BoxFuture<'_, Result<Arc<Session>, SessionError>> {
        async move {
            for (session, routes) in self.purge_expired() {
                self.retire_expired(&session, routes);
            }
            let session = {
                let mut sessions = self
                    .sessions
                    .lock()
                    .map_err(|_| SessionError::TooMany { limit: 0 })?;
                if sessions.len() >= self.opts.max_sessions {
                    return Err(SessionError::TooMany {
                        limit: self.opts.max_sessions,
                    });
                }
                let session = Arc::new(Session::new(principal, face));
                sessions.insert(
                    session.id().as_str().to_owned(),
                    Entry {
                        session: session.clone(),
                        routes: Arc::new(Routes::default()),
                        stored_touch: tokio::time::Instant::now(),
                    },
                );
                session
            };
            if let Err(e) = self.save_session(&session).await {
                // Not stored means not shared: refuse rather than hand out a session that
                // other replicas would answer 404 for.
                self.forget_local(session.id().as_str()).await;
                return Err(e);
            }
            self.audit_session_start(&session);
            Ok(session)
        }
        .boxed()
    }

    fn find_session<'a>(
        &'a self,
        id: &'a str,
        principal: &'a Principal,
    ) -> BoxFuture<'a, Result<Option<Arc<Session>>, SessionError>> {
        async move {
            let Some(sid) = SessionId::parse(id) else {
                return Ok(None);
            };
            // The store is the authority: a session ended or expired anywhere is gone here too.
            let stored = self
                .opts
                .session_store
                .get(Namespace::SESSION, sid.as_str())
                .await
                .map_err(SessionError::Store)?;
            let Some(stored) = stored else {
                self.forget_local(sid.as_str()).await;
                return Ok(None);
            };
            let idle = self.opts.session_idle;
            let max = self.opts.session_max_lifetime;
            let local = {
                let mut sessions = self.sessions.lock().map_err(|_| SessionError::TooMany {
                    limit: self.opts.max_sessions,
                })?;
                match sessions.get_mut(sid.as_str()) {
                    // Another caller's session, or a stdio one: not found, and not touched.
                    Some(e) if !owned_by(&e.session, principal) => return Ok(None),
                    Some(e) if e.session.is_expired(idle, max) => None,
                    Some(e) => {
                        e.session.touch();
                        let renew = e.stored_touch.elapsed() >= idle / STORE_TOUCH_FRACTION;
                        if renew {
                            e.stored_touch = tokio::time::Instant::now();
                        }
                        Some((e.session.clone(), renew))
                    }
                    None => {
                        // Created by another replica (or before this process took over):
                        // serve it here. Upstream sessions are re-established on first use.
                        if sessions.len() >= self.opts.max_sessions {
                            return Err(SessionError::TooMany {
                                limit: self.opts.max_sessions,
                            });
                        }
                        let Ok(record) = serde_json::from_slice::<SessionRecord>(&stored) else {
                            tracing::warn!(
                                "unreadable session record; treating the session as unknown"
                            );
                            return Ok(None);
                        };
                        let Some(session) = Session::from_record(sid.clone(), record, Face::Http)
                        else {
                            return Ok(None);
                        };
                        if !owned_by(&session, principal) {
                            // Not adopted (no entry, no renewal) for a caller it is not.
                            return Ok(None);
                        }
                        if session.is_expired(idle, max) {
                            return Ok(None);
                        }
                        let session = Arc::new(session);
                        sessions.insert(
                            sid.as_str().to_owned(),
                            Entry {
                                session: session.clone(),
                                routes: Arc::new(Routes::default()),
                                stored_touch: tokio::time::Instant::now(),
                            },
                        );
                        Some((session, true))
                    }
                }
            };
            let Some((session, renew)) = local else {
                // Expired here: end it everywhere.
                let _ = self
                    .opts
                    .session_store
                    .delete(Namespace::SESSION, sid.as_str())
                    .await;
                self.forget_local(sid.as_str()).await;
                return Ok(None);
            };
            if renew && let Some(ttl) = self.store_ttl(session.created_ms()) {
                // Best effort: a failed renewal only shortens the session's life elsewhere.
                if let Err(e) = self
                    .opts
                    .session_store
                    .touch(Namespace::SESSION, sid.as_str(), ttl)
                    .await
                {
                    tracing::warn!(error = %e, "session store did not renew a session");
                }
            }
            Ok(Some(session))
        }
        .boxed()
    }

    fn end_session<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, ()> {
        async move {
            self.audit_session_end(session, "closed");
            session.end();
            if session.face() == Face::Http
                && let Err(e) = self
                    .opts
                    .session_store
                    .delete(Namespace::SESSION, session.id().as_str())
                    .await
            {
                tracing::warn!(error = %e, "session store did not delete an ended session");
            }
            self.forget_local(session.id().as_str()).await;
        }
        .boxed()
    }

    fn handle<'a>(
        &'a self,
        session: Option<&'a Arc<Session>>,
        principal: &'a Principal,
        message: Message,
    ) -> BoxFuture<'a, Reply> {
        async move {
            if let Some(s) = session {
                // Sessions are bound to the principal that created them.
                if !s.principal().same_caller(principal) {
                    let id = message.id().map(Id::to_value).unwrap_or(Value::Null);
                    return Reply::Stream(ReplyStream::single(error(
                        &id,
                        ErrorCode::InvalidRequest,
                        "session not found",
                    )));
                }
                s.touch();
                s.refresh_principal(principal);
            }
            let routes = match session {
                // A session that ended between the face's lookup and now: its routes are
                // gone, and the shared stateless ones are not its to use.
                Some(s) => match self.entry(s) {
                    Some(routes) => routes,
                    None if message.is_request() => {
                        let id = message.id().map(Id::to_value).unwrap_or(Value::Null);
                        return Reply::Stream(ReplyStream::single(error(
                            &id,
                            ErrorCode::InvalidRequest,
                            "session not found",
                        )));
                    }
                    None => return Reply::Accepted,
                },
                None => self.stateless.clone(),
            };
            match message.kind() {
                Kind::Request => {
                    let reply = self
                        .audited_request(session, routes, principal, message)
                        .await;
                    if let Some(s) = session
                        && s.take_dirty()
                        && let Err(e) = self.save_session(s).await
                    {
                        tracing::warn!(session = %s.id(), error = %e, "session store did not record the initialized session");
                    }
                    reply
                }
                // Boxed: both futures are larger than a request's (3.6 against 2.4 KB) and
                // would size every request's, which is created and moved once per request.
                Kind::Notification => {
                    Box::pin(self.handle_notification(session, &routes, principal, message))
                        .await;
                    Reply::Accepted
                }
                Kind::Response | Kind::Error => {
                    Box::pin(self.handle_client_response(session, &routes, principal, message))
                        .await;
                    Reply::Accepted
                }
            }
        }
        .boxed()
    }

    fn param_headers(&self, tool: &str) -> Option<Arc<[ParamHeader]>> {
        // The upstream the call would be routed to, and the mapping from its last `tools/list`.
        // A tool never listed has none: nothing to check, and the client's `Mcp-Param-*`
        // headers never reach an upstream (the gateway forwards the body only).
        let (up, original) = self.route_name(tool, crate::dispatch::Item::Tool)?;
        let catalog = up.catalog.read().ok()?;
        catalog.tool_params.get(&original)
    }
}

/// `spec` to start after a [`Prelaunch`] check: with the identity the check found, so the
/// sandbox runs only that file; unchanged when the check gave none.
pub(crate) fn checked_spec(
    spec: &StdioSpec,
    identity: Option<warden_upstream::ProgramIdentity>,
) -> StdioSpec {
    let mut spec = spec.clone();
    if identity.is_some() {
        spec.set_program_identity(identity);
    }
    spec
}
