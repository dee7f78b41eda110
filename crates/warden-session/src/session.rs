//! One client session: its id, principal, negotiated version and the messages for it that belong
//! to no request (notifications, server-initiated requests).

use std::sync::{Arc, Mutex};

use rand::{RngCore, TryRngCore};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use warden_guard::Principal;
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
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    principal: Principal,
    face: Face,
    created: Instant,
    state: Mutex<State>,
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
        let (tx, rx) = mpsc::channel(UNSOLICITED_QUEUE);
        let now = Instant::now();
        Self {
            id: SessionId::random(),
            principal,
            face,
            created: now,
            state: Mutex::new(State {
                last_seen: now,
                protocol_version: None,
                initialized: false,
                client_capabilities: None,
                client_info: None,
                ended: false,
            }),
            unsolicited_tx: tx,
            unsolicited_rx: Mutex::new(Some(rx)),
        }
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

    /// Queues a message for the client outside any request; drops it (and says so) when the
    /// client is not reading.
    pub fn push_unsolicited(&self, message: Message) {
        if self.unsolicited_tx.try_send(message).is_err() {
            tracing::debug!(session = %self.id, "unsolicited queue full or closed; message dropped");
        }
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
    fn ended_session_is_expired() {
        let s = Session::new(Principal::anonymous(), Face::Http);
        s.end();
        assert!(s.is_expired(Duration::from_secs(100), Duration::from_secs(100)));
    }
}
