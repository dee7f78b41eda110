//! Request id rewriting and the map of in-flight requests (shared by stdio and HTTP).
//!
//! Many callers share one connection, and their request ids may collide, so every request is
//! sent upstream under an id the connection allocates. Progress tokens are rewritten the same
//! way (to the upstream id), because two callers may both use token `1` and the server's
//! `notifications/progress` could otherwise not be told apart. The caller's token is restored
//! before a routed notification is handed back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tracing::warn;
use warden_proto::Field;
use warden_proto::fast_map::FastMap;
use warden_proto::jsonrpc::Recovered;
use warden_proto::mcp::META_SUBSCRIPTION_ID;
use warden_proto::{DecodeError, Id, Kind, Message};

use crate::error::{CloseReason, UpstreamError};
use crate::stats::Counters;

/// Method of progress notifications.
pub(crate) const PROGRESS: &str = "notifications/progress";
/// Method of cancellation notifications.
pub(crate) const CANCELLED: &str = "notifications/cancelled";
/// Method of the 2026-07-28 subscription stream request.
pub(crate) const LISTEN: &str = "subscriptions/listen";
/// Method of the legacy handshake; it must never be cancelled.
pub(crate) const INITIALIZE: &str = "initialize";
/// The one method a maximum call duration applies to.
pub(crate) const TOOLS_CALL: &str = "tools/call";

/// Bounds memory per in-flight request: a caller that stops reading its stream while the
/// upstream floods it with notifications loses notifications, never the response.
pub(crate) const NOTE_CHANNEL_CAPACITY: usize = 64;

/// Allocates upstream-side request ids, unique for the life of one connection.
#[derive(Debug, Default)]
pub(crate) struct IdAllocator(AtomicU64);

impl IdAllocator {
    /// The next id: 1, 2, 3, ... as JSON numbers (every server accepts integer ids).
    pub(crate) fn next(&self) -> Id {
        Id::from(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// How an in-flight request ends.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The response (or error response), with the upstream-side id.
    Response(Message),
    /// The request failed (connection gone, HTTP error, ...).
    Failed(UpstreamError),
    /// The upstream ended the request without a response (a `subscriptions/listen` it tore
    /// down with `notifications/cancelled`).
    Ended,
}

/// The sending half of a request's note queue. A channel allocates its first block of 32
/// slots when it is created, once per request; a `Message` is one pointer, so the block is
/// small.
pub(crate) type NoteSender = mpsc::Sender<Message>;

/// One in-flight request.
#[derive(Debug)]
pub(crate) struct Entry {
    method: Box<str>,
    caller_id: Id,
    caller_token: Option<Value>,
    notes: NoteSender,
    outcome: oneshot::Sender<Outcome>,
}

impl Entry {
    /// Ends the request with an error.
    pub(crate) fn fail(self, error: UpstreamError) {
        // The stream may be gone already; nobody is left to tell.
        let _ = self.outcome.send(Outcome::Failed(error));
    }
}

/// The receiving halves of an entry, owned by the `ResponseStream`.
#[derive(Debug)]
pub(crate) struct Receivers {
    pub(crate) notes: mpsc::Receiver<Message>,
    pub(crate) outcome: oneshot::Receiver<Outcome>,
}

/// An entry for a request sent as `prepared`, and the receivers its stream reads.
pub(crate) fn entry(original: &Message, prepared: &Prepared) -> (Entry, Receivers) {
    let (notes_tx, notes_rx) = mpsc::channel(NOTE_CHANNEL_CAPACITY);
    let (outcome_tx, outcome_rx) = oneshot::channel();
    let entry = Entry {
        method: original.method().unwrap_or_default().into(),
        caller_id: original
            .id()
            .cloned()
            .unwrap_or_else(|| prepared.upstream_id.clone()),
        caller_token: prepared.caller_token.clone(),
        notes: notes_tx,
        outcome: outcome_tx,
    };
    (
        entry,
        Receivers {
            notes: notes_rx,
            outcome: outcome_rx,
        },
    )
}

/// A request ready to go upstream.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The message to send: the caller's request under the upstream id.
    pub(crate) message: Message,
    /// The upstream id.
    pub(crate) upstream_id: Id,
    /// The caller's `_meta.progressToken`, when it was rewritten.
    pub(crate) caller_token: Option<Value>,
}

/// Rewrites a request's id (and its progress token, if any) to `upstream_id`.
///
/// Without a progress token only the id's bytes change ([`Message::with_id`]); with one, the
/// message is re-serialised once.
pub(crate) fn prepare(request: &Message, upstream_id: Id) -> Result<Prepared, DecodeError> {
    let token = request
        .params()
        .and_then(|p| p.field("_meta"))
        .and_then(|m| m.field("progressToken"))
        .filter(|t| t.is_string() || t.is_number())
        .cloned();
    let message = match &token {
        None => request.with_id(&upstream_id),
        Some(_) => {
            let mut value = request.value().clone();
            value["id"] = upstream_id.to_value();
            value["params"]["_meta"]["progressToken"] = upstream_id.to_value();
            Message::from_value(value)?
        }
    };
    Ok(Prepared {
        message,
        upstream_id,
        caller_token: token,
    })
}

/// `notifications/cancelled` for an upstream request id.
pub(crate) fn cancellation(upstream_id: &Id, reason: &str) -> Message {
    let value = serde_json::json!({
        "jsonrpc": "2.0",
        "method": CANCELLED,
        "params": { "requestId": upstream_id.to_value(), "reason": reason },
    });
    Message::from_value(value).expect("a cancellation notification is a valid message")
}

/// Where a message from the upstream goes.
#[derive(Debug)]
pub(crate) enum Route {
    /// The response to an in-flight request; its entry has been removed.
    Respond {
        /// Where the outcome goes.
        outcome: oneshot::Sender<Outcome>,
        /// The response, with the upstream id.
        message: Message,
    },
    /// A message in the context of an in-flight request.
    Note {
        /// That request's stream.
        notes: NoteSender,
        /// The message (correlation values restored to the caller's).
        message: Message,
        /// Set when the message ends the request: send [`Outcome::Ended`] after the note.
        then_end: Option<oneshot::Sender<Outcome>>,
    },
    /// Belongs to no request: goes to the unsolicited channel, with the ids of the requests in
    /// flight when it arrived (one of them may be what it is about).
    Unsolicited(crate::Unsolicited),
    /// A response nobody waits for (unknown, finished or cancelled id, or no id at all).
    UnknownResponse(Message),
    /// Sent in the context of a request that is no longer in flight.
    Stale,
}

/// The in-flight requests of one connection.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Keyed by the gateway's own upstream-side ids ([`IdAllocator`]).
    entries: FastMap<Id, Entry>,
    closed: Option<CloseReason>,
}

impl Pending {
    /// Adds a request; fails once the connection is closed.
    pub(crate) fn register(&mut self, id: Id, entry: Entry) -> Result<(), CloseReason> {
        if let Some(reason) = self.closed {
            return Err(reason);
        }
        self.entries.insert(id, entry);
        Ok(())
    }

    /// Removes a request (cancelled, timed out or failed).
    pub(crate) fn remove(&mut self, id: &Id) -> Option<Entry> {
        self.entries.remove(id)
    }

    /// True while `id` awaits its response.
    pub(crate) fn contains(&self, id: &Id) -> bool {
        self.entries.contains_key(id)
    }

    /// Number of requests in flight.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Why the connection closed, once it has.
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.closed
    }

    /// Refuses new requests from now on and hands back every in-flight one. The first reason
    /// sticks (the exit status is more useful than "stdout closed").
    pub(crate) fn close(&mut self, reason: CloseReason) -> Vec<Entry> {
        self.closed.get_or_insert(reason);
        self.entries.drain().map(|(_, e)| e).collect()
    }

    /// Like [`Pending::close`], but replaces a less precise reason by an exit status.
    pub(crate) fn close_with_exit(&mut self, reason: CloseReason) -> Vec<Entry> {
        if matches!(
            self.closed,
            None | Some(CloseReason::OutputClosed | CloseReason::WriteFailed)
        ) {
            self.closed = Some(reason);
        }
        self.entries.drain().map(|(_, e)| e).collect()
    }

    /// The request a message the gateway refused was meant to answer, taken out of the map so
    /// its caller can be failed at once (instead of waiting for its timeout).
    ///
    /// `recovered` comes from a bounded scan of the refused text. A readable id names the
    /// request (an id nobody waits for names none). A response without a readable id is
    /// attributed to `context` (the request whose HTTP stream carried it) or, with no context,
    /// to the only request in flight if there is exactly one. Anything that is not a response
    /// (a request, a notification, text) fails nothing.
    pub(crate) fn refused(&mut self, recovered: Recovered, context: Option<&Id>) -> Option<Entry> {
        match recovered {
            Recovered::Other => None,
            Recovered::Response(Some(id)) => self.entries.remove(&id),
            Recovered::Response(None) => match context {
                Some(id) => self.entries.remove(id),
                None if self.entries.len() == 1 => {
                    let id = self.entries.keys().next()?.clone();
                    self.entries.remove(&id)
                }
                None => None,
            },
        }
    }

    /// Decides where a message from the upstream goes.
    ///
    /// `context` is the upstream id of the request whose HTTP response stream carried the
    /// message; `None` for stdio and the standalone GET stream.
    #[cfg(test)]
    pub(crate) fn route(&mut self, message: Message, context: Option<&Id>) -> Route {
        self.route_with(message, context, false)
    }

    /// [`Pending::route`]; with `sole`, a message no rule correlates goes to the only request
    /// in flight, if there is exactly one (stdio writes everything on one pipe, and an HTTP
    /// server may use its standalone GET stream: a log line or a server request sent while one
    /// call is running belongs to it, and on that call's stream it stays ahead of the call's
    /// response). Changes every session must see (`*/list_changed`, `resources/updated`) stay
    /// unsolicited. (A server's `notifications/cancelled` of its own request goes to the call
    /// in flight too, behind the request it cancels; the gateway finds the session that
    /// request went to by its id.)
    pub(crate) fn route_with(
        &mut self,
        message: Message,
        context: Option<&Id>,
        sole: bool,
    ) -> Route {
        if sole
            && context.is_none()
            && !message.is_response()
            && let Some(method) = message.method()
            && !(method.ends_with("/list_changed") || method == "notifications/resources/updated")
            && self.entries.len() == 1
        {
            if let Some(route) = self.correlate(&message) {
                return route;
            }
            // The handshake is never what a server message is about: a notification that
            // arrives on the standalone stream while `initialize` is still in flight (the
            // stream opens as soon as the session id is known) is unsolicited.
            if let Some(entry) = self.entries.values().next()
                && &*entry.method != INITIALIZE
            {
                return Route::Note {
                    notes: entry.notes.clone(),
                    message,
                    then_end: None,
                };
            }
        }
        match message.kind() {
            Kind::Response | Kind::Error => {
                match message.id().and_then(|id| self.entries.remove(id)) {
                    Some(entry) => Route::Respond {
                        outcome: entry.outcome,
                        message,
                    },
                    None => Route::UnknownResponse(message),
                }
            }
            Kind::Notification => {
                if let Some(route) = self.correlate(&message) {
                    return route;
                }
                self.in_context(message, context)
            }
            Kind::Request => self.in_context(message, context),
        }
    }

    fn in_context(&self, message: Message, context: Option<&Id>) -> Route {
        match context {
            None => Route::Unsolicited(crate::Unsolicited {
                message,
                in_flight: self.entries.keys().cloned().collect(),
            }),
            Some(id) => match self.entries.get(id) {
                Some(entry) => Route::Note {
                    notes: entry.notes.clone(),
                    message,
                    then_end: None,
                },
                None => Route::Stale,
            },
        }
    }

    /// Routes notifications that name an in-flight request: progress (by token), 2026-07-28
    /// subscription notifications (by subscription id) and the `notifications/cancelled` that
    /// tears a `subscriptions/listen` down.
    fn correlate(&mut self, message: &Message) -> Option<Route> {
        let method = message.method()?;
        if method == PROGRESS {
            let params = message.params();
            // Every progress token an upstream is given is the upstream id of its request
            // (`prepare`). One that names no request in flight, or one sent without a token, is
            // late (the call was answered, cancelled or timed out) or made up: it belongs to no
            // caller and is dropped, never handed to whatever request is in flight now (which
            // may be another session's).
            let Some((entry, token)) = params
                .and_then(|p| p.field("progressToken"))
                .and_then(Id::from_value)
                .and_then(|id| self.entries.get(&id))
                .and_then(|entry| Some((entry, entry.caller_token.clone()?)))
            else {
                return Some(Route::Stale);
            };
            let restored = restore(message, |v| v["params"]["progressToken"] = token);
            return Some(Route::Note {
                notes: entry.notes.clone(),
                message: restored,
                then_end: None,
            });
        }
        let params = message.params()?;
        if method == CANCELLED {
            // Legacy servers only cancel their own requests; 2026-07-28 servers only cancel a
            // `subscriptions/listen`. Matching on the method keeps a server's own request ids
            // (a separate id space) from being mistaken for ours.
            let id = Id::from_value(params.field("requestId")?)?;
            if self.entries.get(&id)?.method.as_ref() != LISTEN {
                return None;
            }
            let entry = self.entries.remove(&id)?;
            let caller = entry.caller_id.to_value();
            let restored = restore(message, |v| v["params"]["requestId"] = caller);
            return Some(Route::Note {
                notes: entry.notes,
                message: restored,
                then_end: Some(entry.outcome),
            });
        }
        let id = Id::from_value(params.field("_meta")?.field(META_SUBSCRIPTION_ID)?)?;
        let entry = self.entries.get(&id)?;
        let caller = entry.caller_id.to_value();
        let restored = restore(message, |v| {
            v["params"]["_meta"][META_SUBSCRIPTION_ID] = caller;
        });
        Some(Route::Note {
            notes: entry.notes.clone(),
            message: restored,
            then_end: None,
        })
    }
}

/// Hands a note to a request's stream.
///
/// With `wait`, a full stream gets that long to make room before the note is dropped (the
/// stdio reader serves every request of the connection and must not stall behind one slow
/// caller); without, the sender waits as long as the stream lives (an HTTP exchange feeds one
/// stream only, and the stream's deadline bounds it).
pub(crate) async fn deliver_note(
    name: &str,
    counters: &Counters,
    notes: &NoteSender,
    message: Message,
    wait: Option<(Duration, &Stalled)>,
) {
    let message = match notes.try_send(message) {
        Ok(()) => {
            if let Some((_, stalled)) = wait {
                stalled.recovered(notes);
            }
            return;
        }
        // The stream was dropped; its entry is being removed.
        Err(TrySendError::Closed(_)) => {
            counters.dropped();
            return;
        }
        Err(TrySendError::Full(message)) => message,
    };
    let sent = match wait {
        // Found full for a whole wait already, and still full: not waited for again.
        Some((_, stalled)) if stalled.contains(notes) => false,
        Some((wait, stalled)) => {
            let sent = matches!(timeout(wait, notes.send(message)).await, Ok(Ok(())));
            if !sent {
                stalled.add(notes);
            }
            sent
        }
        None => notes.send(message).await.is_ok(),
    };
    if !sent {
        counters.dropped();
        warn!(upstream = %name, "dropped a notification: its request's stream is not being read");
    }
}

/// How long a shared reader (stdout, an HTTP standalone GET stream) waits for a slow stream
/// before dropping a notification for it.
pub(crate) const NOTE_WAIT: Duration = Duration::from_millis(250);

/// Most note queues a connection remembers as stalled.
const MAX_STALLED: usize = 16;

/// The note queues of one connection's requests that stayed full for a whole wait (a stream
/// nobody reads: a call parked until its client retries, a slow client). Further notes for
/// them are dropped at once until one fits again, so such a stream costs the connection's
/// shared reader one wait, not one per note (every other request on the connection waits
/// behind that reader).
#[derive(Debug, Default)]
pub(crate) struct Stalled {
    queues: std::sync::Mutex<Vec<NoteSender>>,
    /// Whether `queues` may hold any: the common case (none) takes no lock.
    any: std::sync::atomic::AtomicBool,
}

impl Stalled {
    fn contains(&self, notes: &NoteSender) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .queues
                .lock()
                .is_ok_and(|v| v.iter().any(|s| s.same_channel(notes)))
    }

    fn add(&self, notes: &NoteSender) {
        if let Ok(mut v) = self.queues.lock() {
            v.retain(|s| !s.is_closed());
            if v.len() >= MAX_STALLED {
                v.remove(0);
            }
            v.push(notes.clone());
            self.any.store(true, Ordering::Release);
        }
    }

    /// `notes` took a note: it is read again.
    fn recovered(&self, notes: &NoteSender) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut v) = self.queues.lock() {
            v.retain(|s| !s.same_channel(notes) && !s.is_closed());
            self.any.store(!v.is_empty(), Ordering::Release);
        }
    }
}

/// Prefix of the reason a request fails with when the gateway refused its response.
pub(crate) const REFUSED_PREFIX: &str = "refused its response: ";

/// Why a refused response failed its request (the reason of an [`UpstreamError::Protocol`],
/// shown to the client): which rule the response broke. `None` is an over-long line.
pub(crate) fn refusal_reason(error: Option<&DecodeError>) -> &'static str {
    match error {
        None | Some(DecodeError::TooLarge { .. }) => {
            "refused its response: larger than the message size limit"
        }
        Some(DecodeError::TooDeep) => "refused its response: nested deeper than the depth limit",
        Some(DecodeError::DuplicateKey { .. }) => "refused its response: duplicate object keys",
        Some(DecodeError::Syntax { .. }) => "refused its response: not valid JSON or not UTF-8",
        Some(DecodeError::Invalid { .. }) => "refused its response: not a valid JSON-RPC message",
    }
}

/// A content-free name for a decoding failure, safe to log at any level.
pub(crate) fn decode_error_kind(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::Syntax { .. } => "syntax",
        DecodeError::DuplicateKey { .. } => "duplicate_key",
        DecodeError::TooDeep => "too_deep",
        DecodeError::TooLarge { .. } => "too_large",
        DecodeError::Invalid { reason, .. } => reason,
    }
}

/// Applies `edit` to a copy of the message; keeps the original if the result cannot be
/// serialised (it always can: the edit only swaps one scalar for another).
fn restore(message: &Message, edit: impl FnOnce(&mut Value)) -> Message {
    let mut value = message.value().clone();
    edit(&mut value);
    Message::from_value(value).unwrap_or_else(|_| message.clone())
}

#[cfg(test)]
mod tests;
