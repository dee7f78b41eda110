//! One client session: its id, principal, negotiated version and the messages for it that belong
//! to no request (notifications, server-initiated requests).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::{RngCore, TryRngCore};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use warden_guard::{AuthMethod, Principal};
use warden_proto::Message;

use crate::Face;

/// Capacity of a session's queue of unsolicited messages: bounds memory per session; a client
/// that does not read its stream loses the oldest traffic, not the gateway's memory.
pub const UNSOLICITED_QUEUE: usize = 256;

/// A session id: 128 random bits from the OS CSPRNG, hex encoded (32 visible ASCII characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// A fresh, unguessable id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // The OS CSPRNG directly; ThreadRng (a CSPRNG seeded from the OS) if it is unavailable.
        if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
            rand::rng().fill_bytes(&mut bytes);
        }
        let mut s = String::with_capacity(32);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        SessionId(s.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id read back from the store or a client header; `None` unless it has the shape
    /// [`SessionId::random`] produces (anything else cannot name a session).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| SessionId(s.into()))
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors opening or using a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session table is full.
    #[error("too many sessions (limit {limit})")]
    TooMany {
        /// The configured limit.
        limit: usize,
    },
    /// The session store failed: the session cannot be created or looked up safely.
    #[error("session store unavailable")]
    Store(#[source] warden_store::StoreError),
}

/// What the session store holds for one session: everything another gateway replica needs to
/// serve it. Live state (streams, in-flight calls, upstream sessions) stays in the process that
/// holds it and is re-established on first use elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRecord {
    /// Format version of this record.
    pub v: u32,
    /// The subject of the principal that created the session.
    pub subject: String,
    /// How that principal was authenticated.
    pub method: String,
    /// Creation time, milliseconds since the Unix epoch (absolute expiry across replicas).
    pub created_ms: u64,
    /// The negotiated protocol version, once initialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// The capabilities the client declared in `initialize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_capabilities: Option<serde_json::Value>,
}

/// Current [`SessionRecord::v`].
pub const SESSION_RECORD_VERSION: u32 = 1;

fn method_name(m: AuthMethod) -> &'static str {
    match m {
        AuthMethod::Anonymous => "anonymous",
        AuthMethod::LocalProcess => "local",
        AuthMethod::Bearer => "bearer",
        AuthMethod::ApiKey => "api_key",
    }
}

fn method_from_name(s: &str) -> Option<AuthMethod> {
    Some(match s {
        "anonymous" => AuthMethod::Anonymous,
        "local" => AuthMethod::LocalProcess,
        "bearer" => AuthMethod::Bearer,
        "api_key" => AuthMethod::ApiKey,
        _ => return None,
    })
}

/// Milliseconds since the Unix epoch (wall clock: shared between replicas).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The MCP log levels (RFC 5424 severities), least severe first: a level's rank is its index.
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// No level asked for.
const NO_LOG_LEVEL: u8 = u8::MAX;

/// The rank of a log level's name, if it is one.
pub fn log_level_rank(name: &str) -> Option<u8> {
    LOG_LEVELS
        .iter()
        .position(|l| *l == name)
        .and_then(|i| u8::try_from(i).ok())
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    principal: Principal,
    face: Face,
    created: Instant,
    created_ms: u64,
    state: Mutex<State>,
    /// Set when the stored record is out of date (after `initialize`).
    dirty: AtomicBool,
    /// The caller as of its latest request: same subject and method as `principal`, with the
    /// roles and scopes of the token it last presented.
    current: std::sync::RwLock<Principal>,
    /// The rank of the `logging/setLevel` level the client asked for ([`LOG_LEVELS`]), or
    /// [`NO_LOG_LEVEL`].
    log_level: AtomicU8,
    unsolicited_tx: mpsc::Sender<Message>,
    unsolicited_rx: Mutex<Option<mpsc::Receiver<Message>>>,
}

#[derive(Debug)]
struct State {
    last_seen: Instant,
    protocol_version: Option<String>,
    initialized: bool,
    client_capabilities: Option<serde_json::Value>,
    client_info: Option<serde_json::Value>,
    ended: bool,
}

impl Session {
    /// A new session for `principal`.
    pub fn new(principal: Principal, face: Face) -> Self {
        Self::build(SessionId::random(), principal, face, now_ms(), None, None)
    }

    fn build(
        id: SessionId,
        principal: Principal,
        face: Face,
        created_ms: u64,
        protocol_version: Option<String>,
        client_capabilities: Option<serde_json::Value>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(UNSOLICITED_QUEUE);
        let now = Instant::now();
        // A session restored from the store keeps its age: its local clock starts as far in
        // the past as the record says (saturating at the local clock's origin).
        let age = Duration::from_millis(now_ms().saturating_sub(created_ms));
        let created = now.checked_sub(age).unwrap_or(now);
        Self {
            id,
            current: std::sync::RwLock::new(principal.clone()),
            principal,
            face,
            created,
            created_ms,
            state: Mutex::new(State {
                last_seen: now,
                initialized: protocol_version.is_some(),
                protocol_version,
                client_capabilities,
                client_info: None,
                ended: false,
            }),
            dirty: AtomicBool::new(false),
            log_level: AtomicU8::new(NO_LOG_LEVEL),
            unsolicited_tx: tx,
            unsolicited_rx: Mutex::new(Some(rx)),
        }
    }

    /// The record the session store keeps for this session.
    pub fn record(&self) -> SessionRecord {
        let (protocol_version, client_capabilities) = match self.state.lock() {
            Ok(s) => (s.protocol_version.clone(), s.client_capabilities.clone()),
            Err(_) => (None, None),
        };
        SessionRecord {
            v: SESSION_RECORD_VERSION,
            subject: self.principal.subject.to_string(),
            method: method_name(self.principal.method).to_owned(),
            created_ms: self.created_ms,
            protocol_version,
            client_capabilities,
        }
    }

    /// A session of this process for a record another replica (or an earlier lookup) stored.
    /// `None` when the record names an unknown authentication method.
    pub fn from_record(id: SessionId, record: SessionRecord, face: Face) -> Option<Self> {
        let method = method_from_name(&record.method)?;
        Some(Self::build(
            id,
            Principal::new(record.subject, method),
            face,
            record.created_ms,
            record.protocol_version,
            record.client_capabilities,
        ))
    }

    /// Milliseconds since the Unix epoch at creation.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// True (once) after a change the session store has not seen yet.
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The principal that created the session; every later request must match it.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// How the client is connected.
    pub fn face(&self) -> Face {
        self.face
    }

    /// Takes the receiver of unsolicited messages (a GET stream, or the stdio writer). Returns
    /// `None` while another stream holds it.
    pub fn take_unsolicited(&self) -> Option<mpsc::Receiver<Message>> {
        self.unsolicited_rx.lock().ok()?.take()
    }

    /// Gives the receiver back when the stream that held it ends.
    pub fn restore_unsolicited(&self, rx: mpsc::Receiver<Message>) {
        if let Ok(mut slot) = self.unsolicited_rx.lock() {
            *slot = Some(rx);
        }
    }

    /// Queues a message for the client outside any request. When the client is not reading
    /// (the queue is full or closed), the message is given back: dropped by the caller, which
    /// answers a server request for the client so that its upstream does not wait.
    pub fn push_unsolicited(&self, message: Message) -> Result<(), Message> {
        self.unsolicited_tx.try_send(message).map_err(|e| {
            tracing::debug!(session = %self.id, "unsolicited queue full or closed; message dropped");
            match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            }
        })
    }

    /// The caller with the roles and scopes of its latest request (a refreshed token may
    /// carry fewer than the one that opened the session): what decisions about traffic toward
    /// the session (server requests, notifications) are made for.
    pub fn current_principal(&self) -> Principal {
        self.current
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|_| self.principal.clone())
    }

    /// Records `latest`, the principal of a request on this session, if it is the session's
    /// caller (the same subject and method); anyone else changes nothing.
    pub fn refresh_principal(&self, latest: &Principal) {
        if !self.principal.same_caller(latest) {
            return;
        }
        // Usually the same token's principal again: compared under the read lock, so
        // concurrent requests of one session do not queue for the write lock.
        if self.current.read().is_ok_and(|c| *c == *latest) {
            return;
        }
        if let Ok(mut current) = self.current.write() {
            *current = latest.clone();
        }
    }

    /// Records the log level the client asked for (`rank` in [`LOG_LEVELS`]).
    pub fn set_log_level(&self, rank: u8) {
        self.log_level.store(rank, Ordering::Relaxed);
    }

    /// True when the client wants `message`: anything but a `notifications/message` below the
    /// level it asked for with `logging/setLevel`. A log message of no known level is
    /// delivered (nothing to judge it by), as is everything when no level was asked for.
    pub fn wants_log(&self, message: &Message) -> bool {
        if message.method() != Some("notifications/message") {
            return true;
        }
        let wanted = self.log_level.load(Ordering::Relaxed);
        if wanted == NO_LOG_LEVEL {
            return true;
        }
        let level = message
            .params()
            .and_then(|p| warden_proto::Field::field(p, "level"))
            .and_then(serde_json::Value::as_str)
            .and_then(log_level_rank);
        level.is_none_or(|rank| rank >= wanted)
    }

    /// Marks activity now.
    pub fn touch(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.last_seen = Instant::now();
        }
    }

    /// True when idle longer than `idle` or older than `max_lifetime`, or ended.
    pub fn is_expired(&self, idle: Duration, max_lifetime: Duration) -> bool {
        let now = Instant::now();
        match self.state.lock() {
            Ok(s) => {
                s.ended
                    || now.duration_since(s.last_seen) > idle
                    || now.duration_since(self.created) > max_lifetime
            }
            Err(_) => true,
        }
    }

    /// True once the session was ended (DELETE, expiry, shutdown).
    pub fn is_ended(&self) -> bool {
        self.state.lock().map(|s| s.ended).unwrap_or(true)
    }

    /// Marks the session ended; later lookups fail.
    pub fn end(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.ended = true;
        }
    }

    /// The negotiated protocol version, once `initialize` succeeded.
    pub fn protocol_version(&self) -> Option<String> {
        self.state.lock().ok()?.protocol_version.clone()
    }

    /// True once the client completed `initialize`.
    pub fn is_initialized(&self) -> bool {
        self.state.lock().map(|s| s.initialized).unwrap_or(false)
    }

    /// Records the outcome of `initialize`.
    pub fn set_initialized(
        &self,
        version: String,
        capabilities: Option<serde_json::Value>,
        info: Option<serde_json::Value>,
    ) {
        if let Ok(mut s) = self.state.lock() {
            s.protocol_version = Some(version);
            s.initialized = true;
            s.client_capabilities = capabilities;
            s.client_info = info;
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// The capabilities the client declared in `initialize`.
    pub fn client_capabilities(&self) -> Option<serde_json::Value> {
        self.state.lock().ok()?.client_capabilities.clone()
    }

    /// The client's self-description from `initialize` (self-reported: never for security).
    pub fn client_info(&self) -> Option<serde_json::Value> {
        self.state.lock().ok()?.client_info.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_bit_hex_and_distinct() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[tokio::test(start_paused = true)]
    async fn expires_when_idle_or_too_old() {
        let s = Session::new(Principal::anonymous(), Face::Http);
        let idle = Duration::from_secs(10);
        let max = Duration::from_secs(25);
        assert!(!s.is_expired(idle, max));
        tokio::time::advance(Duration::from_secs(8)).await;
        s.touch();
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(!s.is_expired(idle, max), "touched 8s ago");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(s.is_expired(idle, max), "idle 11s");
        let t = Session::new(Principal::anonymous(), Face::Http);
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(9)).await;
            t.touch();
        }
        assert!(t.is_expired(idle, max), "27s old");
    }

    #[test]
    fn a_record_round_trips_and_keeps_the_caller() {
        let p = Principal::new("alice", AuthMethod::ApiKey).with_roles(["ops"]);
        let s = Session::new(p.clone(), Face::Http);
        assert!(!s.take_dirty());
        s.set_initialized(
            "2025-11-25".into(),
            Some(serde_json::json!({"roots": {}})),
            None,
        );
        assert!(s.take_dirty(), "initialize changes the record");
        assert!(!s.take_dirty(), "reported once");
        let rec = s.record();
        let bytes = serde_json::to_vec(&rec).unwrap();
        let back: SessionRecord = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, rec);
        let r = Session::from_record(s.id().clone(), back, Face::Http).unwrap();
        assert!(r.principal().same_caller(&p));
        assert_eq!(r.protocol_version().as_deref(), Some("2025-11-25"));
        assert!(r.is_initialized());
        assert_eq!(r.client_capabilities(), s.client_capabilities());
        assert_eq!(r.created_ms(), s.created_ms());
    }

    #[test]
    fn a_record_with_an_unknown_method_is_refused() {
        let s = Session::new(Principal::anonymous(), Face::Http);
        let mut rec = s.record();
        rec.method = "root".into();
        assert!(Session::from_record(s.id().clone(), rec, Face::Http).is_none());
    }

    #[test]
    fn only_well_formed_ids_parse() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(id.as_str()), Some(id));
        for bad in [
            "",
            "x",
            &"A".repeat(32),
            &"0".repeat(31),
            &"0".repeat(33),
            "../../etc/passwd",
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ended_session_is_expired() {
        let s = Session::new(Principal::anonymous(), Face::Http);
        s.end();
        assert!(s.is_expired(Duration::from_secs(100), Duration::from_secs(100)));
    }
}
