//! The stream of messages related to one request, ending with its response.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use warden_proto::{Id, Message};

use crate::error::{CloseReason, UpstreamError};
use crate::pending::{Outcome, PROGRESS, Receivers};
use crate::{http, stdio};

/// Reason sent upstream in `notifications/cancelled` when a stream is dropped early.
pub const CANCEL_REASON_DROPPED: &str = "request cancelled";
/// Reason sent upstream in `notifications/cancelled` when a request times out.
pub const CANCEL_REASON_TIMEOUT: &str = "timeout";
/// Reason sent upstream in `notifications/cancelled` when a `tools/call` reaches the
/// connection's maximum call duration (however much progress it reported).
pub const CANCEL_REASON_MAX_DURATION: &str = "maximum call duration exceeded";

/// The connection a stream belongs to, for cancellation.
#[derive(Clone)]
pub(crate) enum Link {
    Stdio(Arc<stdio::Core>),
    Http(Arc<http::Core>),
}

impl Link {
    fn abandon(&self, id: &Id, send_cancel: bool, reason: &'static str) {
        match self {
            Link::Stdio(core) => core.abandon(id, send_cancel, reason),
            Link::Http(core) => core.abandon(id, send_cancel, reason),
        }
    }
}

/// Messages related to one request, ending with its response.
///
/// Items are `Ok(message)` for notifications and requests the server sent in the context of
/// the request, then the final response (`Kind::Response` or `Kind::Error`), after which
/// [`ResponseStream::next`] returns `None`. An `Err` also ends the stream (upstream died,
/// timeout, HTTP error).
///
/// The response carries the *upstream-side* id ([`ResponseStream::upstream_id`]); restore the
/// caller's id with [`Message::with_id`]. Notifications routed here have their correlation
/// values restored already: `params.progressToken` of `notifications/progress` and the
/// `io.modelcontextprotocol/subscriptionId` of subscription notifications are the caller's
/// again.
///
/// Dropping the stream before the response arrived cancels the request: the connection
/// sends `notifications/cancelled` upstream (stdio and legacy HTTP; never for `initialize`)
/// or, on 2026-07-28 HTTP, closes the response stream.
#[must_use = "dropping the stream cancels the request"]
pub struct ResponseStream {
    name: Arc<str>,
    upstream_id: Id,
    receivers: Receivers,
    deadline: Instant,
    /// False for `initialize` and for 2026-07-28 HTTP requests (closing the stream is the
    /// cancellation there).
    send_cancel: bool,
    done: bool,
    link: Link,
    /// The HTTP exchange feeding this stream; aborted (connection closed) on drop.
    task: Option<AbortOnDropHandle<()>>,
    /// Set for a `tools/call` on a connection with a maximum call duration.
    limit: Option<CallLimit>,
}

/// The deadlines of a long call: progress pushes the response deadline back by `idle` (the
/// request timeout), never past `hard` (the maximum call duration).
#[derive(Debug, Clone, Copy)]
struct CallLimit {
    idle: Duration,
    hard: Instant,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("upstream", &self.name)
            .field("upstream_id", &self.upstream_id)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A deadline `timeout` from now, saturating instead of overflowing.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

impl ResponseStream {
    pub(crate) fn new(
        name: Arc<str>,
        upstream_id: Id,
        receivers: Receivers,
        deadline: Instant,
        send_cancel: bool,
        link: Link,
    ) -> ResponseStream {
        ResponseStream {
            name,
            upstream_id,
            receivers,
            deadline,
            send_cancel,
            done: false,
            link,
            task: None,
            limit: None,
        }
    }

    /// Makes this stream a long call: `notifications/progress` for it pushes the deadline back
    /// to `idle` from its arrival, and nothing pushes it past `max` from now.
    pub(crate) fn limit_call(&mut self, idle: Duration, max: Duration) {
        let hard = deadline_after(max);
        self.deadline = self.deadline.min(hard);
        self.limit = Some(CallLimit { idle, hard });
    }

    pub(crate) fn set_task(&mut self, task: AbortOnDropHandle<()>) {
        self.task = Some(task);
    }

    /// Marks the stream finished without cancelling anything (the request was never sent).
    pub(crate) fn disarm(&mut self) {
        self.done = true;
    }

    /// The id the request was sent upstream under (and that the response carries).
    pub fn upstream_id(&self) -> &Id {
        &self.upstream_id
    }

    /// The next related message, the response, or an error; `None` after the end.
    pub async fn next(&mut self) -> Option<Result<Message, UpstreamError>> {
        if self.done {
            return None;
        }
        let outcome = tokio::select! {
            // Notes first: everything the upstream sent before the response is queued before
            // the response is handed over, so this keeps the upstream's order.
            biased;
            Some(note) = self.receivers.notes.recv() => {
                // A queue an upstream keeps full (a flood of progress for a call it never
                // answers) would otherwise starve the deadline below forever. (A response
                // already in is not lost to it: it follows the notes queued ahead of it.)
                if Instant::now() >= self.deadline && self.receivers.outcome.is_empty() {
                    return Some(self.timed_out());
                }
                if let Some(limit) = self.limit
                    && note.method() == Some(PROGRESS)
                {
                    self.deadline = deadline_after(limit.idle).min(limit.hard);
                }
                return Some(Ok(note));
            }
            outcome = &mut self.receivers.outcome => outcome,
            () = tokio::time::sleep_until(self.deadline) => return Some(self.timed_out()),
        };
        self.finish();
        match outcome {
            Ok(Outcome::Response(message)) => Some(Ok(message)),
            Ok(Outcome::Failed(error)) => Some(Err(error)),
            Ok(Outcome::Ended) => None,
            // The connection dropped the entry without a word: it is being torn down.
            Err(_) => Some(Err(UpstreamError::closed(
                &self.name,
                CloseReason::Abandoned,
            ))),
        }
    }

    /// Ends the call at its deadline: cancelled upstream, a timeout for the caller.
    fn timed_out(&mut self) -> Result<Message, UpstreamError> {
        self.finish();
        let reason = match self.limit {
            Some(limit) if self.deadline >= limit.hard => {
                tracing::warn!(upstream = %self.name, id = %self.upstream_id, "call reached the maximum call duration; cancelling it upstream");
                CANCEL_REASON_MAX_DURATION
            }
            _ => CANCEL_REASON_TIMEOUT,
        };
        self.link
            .abandon(&self.upstream_id, self.send_cancel, reason);
        Err(UpstreamError::Timeout)
    }

    fn finish(&mut self) {
        self.done = true;
        // The exchange has nothing more to give this caller.
        self.task = None;
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        if !self.done {
            self.link
                .abandon(&self.upstream_id, self.send_cancel, CANCEL_REASON_DROPPED);
        }
    }
}
