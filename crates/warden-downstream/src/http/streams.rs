//! SSE streams of the HTTP face: the per-session event-id space, replay buffers and the tasks
//! that feed streams.
//!
//! Every legacy stream (the response stream of a POST, or a standalone GET stream) gets a
//! number unique within its session; its events are numbered from 1 and carry the id
//! `<stream>-<seq>`, so ids are unique across the session's streams and name their stream
//! (2025-11-25 transports §2.4). The priming event of a stream has sequence 0 and no data.
//!
//! A [`StreamLog`] keeps the most recent events of one stream (bounded in count and bytes) and
//! at most one live subscriber. A GET with `Last-Event-ID: <stream>-<seq>` replays the events
//! after `seq` from that stream only, then continues live while the stream is open. A POST
//! stream whose client went away keeps consuming its reply into the log (legacy clients resume
//! rather than cancel); a modern stream has no log and treats a disconnect as cancellation.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use warden_proto::{Kind, Message, sse};
use warden_session::{ReplyStream, Session};

/// Events buffered between a stream's producer and its connection. Small: a slow client slows
/// its producer instead of growing memory.
const LIVE_QUEUE: usize = 16;

/// Stream settings taken from the HTTP options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamConfig {
    pub(crate) replay_events: usize,
    pub(crate) replay_bytes: usize,
    pub(crate) max_streams: usize,
    pub(crate) keepalive: Duration,
    pub(crate) retry: Duration,
    /// How long one event may wait for a client that does not read ([`STALLED_READER`]).
    pub(crate) stalled_reader: Duration,
    /// Bytes of events kept for replay across every session ([`REPLAY_BUDGET`]).
    pub(crate) replay_budget: usize,
}

/// Most bytes of SSE events kept for `Last-Event-ID` replay across all sessions. Each stream
/// keeps at most `sse_replay_buffer` events and 8 MiB, and a session 16 streams, but sessions
/// are many: past this budget a stream keeps fewer of its oldest events (an event may go out
/// without being kept at all, and is then not replayed).
pub(crate) const REPLAY_BUDGET: usize = 256 * 1024 * 1024;

/// How long an SSE event may wait for its client to take it. A client that keeps its
/// connection open but stops reading would otherwise hold the producer, and with it the
/// upstream call: nothing would ask the upstream for its next message, so neither the request
/// timeout nor the call's maximum duration would fire. Past this, a legacy stream's reader is
/// detached (the events stay in the log for a `Last-Event-ID` reconnect) and a 2026-07-28
/// stream ends, which cancels its upstream call.
pub(crate) const STALLED_READER: Duration = Duration::from_secs(30);

/// Stream state of every legacy session that has used SSE.
#[derive(Debug)]
pub(crate) struct StreamRegistry {
    config: StreamConfig,
    root: CancellationToken,
    sessions: Mutex<HashMap<Arc<str>, Arc<SessionStreams>>>,
    /// Bytes kept for replay by every stream log.
    replay: Arc<ReplayBudget>,
}

/// The bytes every stream log keeps for replay, against [`StreamConfig::replay_budget`].
#[derive(Debug, Default)]
struct ReplayBudget {
    used: AtomicUsize,
    /// Every log that may hold events, oldest first.
    logs: Mutex<Registered>,
}

#[derive(Debug, Default)]
struct Registered {
    logs: VecDeque<Weak<StreamLog>>,
    /// Dead entries are pruned when the list reaches this length (then twice the live
    /// count): amortised, so opening a stream does not scan every other one.
    prune_at: usize,
}

impl ReplayBudget {
    fn register(&self, log: &Arc<StreamLog>) {
        let mut r = lock(&self.logs);
        if r.logs.len() >= r.prune_at {
            r.logs.retain(|l| l.strong_count() > 0);
            r.prune_at = (2 * r.logs.len()).max(64);
        }
        r.logs.push_back(Arc::downgrade(log));
    }

    /// Drops the oldest kept events, oldest logs first (`current` last: its newest events
    /// are what a reconnect needs most), until the bytes kept fit `budget`.
    fn trim(&self, budget: usize, current: &StreamLog) {
        if self.used.load(Ordering::Relaxed) <= budget {
            return;
        }
        let logs: Vec<Arc<StreamLog>> = lock(&self.logs)
            .logs
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let others = logs
            .iter()
            .filter(|l| !std::ptr::eq(Arc::as_ptr(l), current));
        for log in others.map(|l| &**l).chain(std::iter::once(current)) {
            let mut state = lock(&log.state);
            while self.used.load(Ordering::Relaxed) > budget && state.drop_oldest(&self.used) {}
            if self.used.load(Ordering::Relaxed) <= budget {
                return;
            }
        }
    }
}

impl StreamRegistry {
    pub(crate) fn new(config: StreamConfig) -> Self {
        Self {
            config,
            root: CancellationToken::new(),
            sessions: Mutex::new(HashMap::new()),
            replay: Arc::new(ReplayBudget::default()),
        }
    }

    pub(crate) fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// The stream state of `session`, created on first use.
    pub(crate) fn session(&self, session: &Arc<Session>) -> Arc<SessionStreams> {
        let mut map = lock(&self.sessions);
        let entry = map
            .entry(Arc::from(session.id().as_str()))
            .or_insert_with(|| {
                Arc::new(SessionStreams {
                    session: Arc::downgrade(session),
                    cancel: self.root.child_token(),
                    next_stream: AtomicU64::new(0),
                    logs: Mutex::new(VecDeque::new()),
                    config: self.config,
                    replay: Arc::clone(&self.replay),
                })
            });
        Arc::clone(entry)
    }

    /// Forgets `id`'s streams and ends their producers (the session was deleted).
    pub(crate) fn remove(&self, id: &str) {
        let removed = lock(&self.sessions).remove(id);
        if let Some(streams) = removed {
            streams.cancel.cancel();
        }
    }

    /// Forgets the streams of sessions that ended or were dropped by the session layer.
    pub(crate) fn sweep(&self) {
        let mut map = lock(&self.sessions);
        map.retain(|_, streams| {
            let live = streams.session.upgrade().is_some_and(|s| !is_ended(&s));
            if !live {
                streams.cancel.cancel();
            }
            live
        });
    }

    /// A token cancelled at server shutdown, for streams that belong to no session.
    pub(crate) fn root_token(&self) -> CancellationToken {
        self.root.child_token()
    }

    /// Ends every stream (server shutdown).
    pub(crate) fn shutdown(&self) {
        self.root.cancel();
    }
}

fn is_ended(session: &Session) -> bool {
    session.is_ended()
}

/// The streams of one session.
#[derive(Debug)]
pub(crate) struct SessionStreams {
    /// Weak: stream state must not keep a session alive that the session layer dropped.
    session: Weak<Session>,
    cancel: CancellationToken,
    next_stream: AtomicU64,
    /// Oldest first.
    logs: Mutex<VecDeque<Arc<StreamLog>>>,
    config: StreamConfig,
    replay: Arc<ReplayBudget>,
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// The response stream of one POSTed request.
    Post,
    /// The standalone GET stream (unsolicited messages).
    Get,
}

impl SessionStreams {
    /// Cancelled when the session is deleted or the server shuts down.
    pub(crate) fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// A new stream with a fresh number. When the session already keeps `max_streams` logs,
    /// the oldest closed one is dropped; when every one is still being fed, the oldest whose
    /// client went away is dropped and its producer stopped (which cancels its upstream call):
    /// `max_streams` bounds the producers of a session, not only their logs, so a client that
    /// POSTs and disconnects in a loop cannot pile up upstream calls. When every one is still
    /// being fed to a connected client, nothing is stopped: `None`, and the new request is
    /// refused instead (a stream a client is reading never ends without its response).
    pub(crate) fn open(&self, kind: StreamKind) -> Option<(Arc<StreamLog>, Attached)> {
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let log = Arc::new(StreamLog {
            stream,
            kind,
            cancel: self.cancel.child_token(),
            config: self.config,
            replay: Arc::clone(&self.replay),
            replaced: tokio::sync::Notify::new(),
            state: Mutex::new(LogState {
                events: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                open: false,
                live: None,
            }),
        });
        // Decided, and the new stream made open and live, under one lock: two requests
        // opening streams at once cannot both pass the check and then stop a read stream, nor
        // take the other's new stream for an abandoned one.
        let mut logs = lock(&self.logs);
        while logs.len() >= self.config.max_streams {
            let victim = logs
                .iter()
                .position(|l| !l.is_open())
                .or_else(|| logs.iter().position(|l| !l.is_live()));
            let Some(victim) = victim else {
                // Every stream is being read by a connected client.
                return None;
            };
            if let Some(old) = logs.remove(victim)
                && old.is_open()
            {
                debug!(
                    stream = old.stream,
                    "too many streams in the session; an abandoned one is stopped"
                );
                old.cancel.cancel();
            }
        }
        let attached = log.attach(None, true, true);
        logs.push_back(Arc::clone(&log));
        drop(logs);
        self.replay.register(&log);
        Some((log, attached))
    }

    /// True when the session holds `max_streams` streams and a connected client is reading
    /// every one (a new stream would be refused).
    pub(crate) fn all_read(&self) -> bool {
        let logs = lock(&self.logs);
        logs.len() >= self.config.max_streams && logs.iter().all(|l| l.is_open() && l.is_live())
    }

    /// The stream named by a `Last-Event-ID`, and the sequence number to replay after.
    pub(crate) fn find(&self, last_event_id: &str) -> Option<(Arc<StreamLog>, u64)> {
        let (stream, seq) = parse_event_id(last_event_id)?;
        let logs = lock(&self.logs);
        let log = logs.iter().find(|l| l.stream == stream)?;
        Some((Arc::clone(log), seq))
    }
}

/// `<stream>-<seq>`, both decimal.
fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (stream, seq) = id.trim().split_once('-')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

/// Recent events of one stream and its live subscriber.
#[derive(Debug)]
pub(crate) struct StreamLog {
    stream: u64,
    kind: StreamKind,
    /// Stops its producer: the session's token's child, cancelled alone when the log is
    /// dropped while still fed.
    cancel: CancellationToken,
    config: StreamConfig,
    /// The registry's count of bytes kept for replay, which this log's events are part of.
    replay: Arc<ReplayBudget>,
    state: Mutex<LogState>,
    /// Signalled when a new subscriber replaces the live one: the GET stream's producer then
    /// lets go of the old one (whose response ends) and watches the new one.
    replaced: tokio::sync::Notify,
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        let bytes = lock(&self.state).bytes;
        self.replay.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct LogState {
    /// `(seq, encoded event)`, oldest first.
    events: VecDeque<(u64, Bytes)>,
    bytes: usize,
    next_seq: u64,
    /// A producer is running.
    open: bool,
    live: Option<mpsc::Sender<Bytes>>,
}

impl LogState {
    /// Drops the oldest kept event, giving its bytes back to the log and to the registry's
    /// count (`used`); `false` when none is kept.
    fn drop_oldest(&mut self, used: &AtomicUsize) -> bool {
        let Some((_, old)) = self.events.pop_front() else {
            return false;
        };
        self.bytes -= old.len();
        used.fetch_sub(old.len(), Ordering::Relaxed);
        true
    }
}

/// The outcome of attaching a connection to a stream.
#[derive(Debug)]
pub(crate) struct Attached {
    /// Events to send first (priming and/or replay).
    pub(crate) pending: VecDeque<Bytes>,
    /// Live events; `None` when the stream is closed (the response ends after `pending`).
    pub(crate) live: Option<mpsc::Receiver<Bytes>>,
    /// The caller asked to reopen a closed stream and must start its producer.
    pub(crate) reopened: bool,
}

impl StreamLog {
    pub(crate) fn kind(&self) -> StreamKind {
        self.kind
    }

    fn is_open(&self) -> bool {
        lock(&self.state).open
    }

    /// A connection is attached (and has not gone away).
    fn is_live(&self) -> bool {
        lock(&self.state)
            .live
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    /// Stops this stream's producer (and the session's, through its parent).
    pub(crate) fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Subscribes a connection: replays the events after `after` (none for a new stream), adds
    /// a priming event if asked, and becomes the live subscriber if the stream is open — or
    /// reopens it when `reopen` is set (the caller then starts a producer). A previous
    /// subscriber is replaced: its response ends.
    pub(crate) fn attach(&self, after: Option<u64>, priming: bool, reopen: bool) -> Attached {
        let mut pending = VecDeque::new();
        if priming {
            let mut out = Vec::with_capacity(48);
            let id = format!("{}-0", self.stream);
            let retry = u64::try_from(self.config.retry.as_millis()).unwrap_or(u64::MAX);
            sse::encode_retry(&mut out, Some(&id), retry);
            pending.push_back(Bytes::from(out));
        }
        let mut state = lock(&self.state);
        if let Some(after) = after {
            pending.extend(
                state
                    .events
                    .iter()
                    .filter(|(seq, _)| *seq > after)
                    .map(|(_, event)| event.clone()),
            );
        }
        let mut reopened = false;
        let live = if state.open || reopen {
            reopened = !state.open;
            state.open = true;
            let (tx, rx) = mpsc::channel(LIVE_QUEUE);
            if state.live.replace(tx).is_some() {
                // A permit is kept if the producer is not waiting right now.
                self.replaced.notify_one();
            }
            Some(rx)
        } else {
            None
        };
        Attached {
            pending,
            live,
            reopened,
        }
    }

    /// Numbers, encodes and keeps `message`; returns the event and the live subscriber.
    fn record(&self, message: &Message) -> (Bytes, Option<mpsc::Sender<Bytes>>) {
        let mut state = lock(&self.state);
        let seq = state.next_seq;
        state.next_seq += 1;
        let id = format!("{}-{seq}", self.stream);
        let mut out = Vec::with_capacity(message.bytes().len() + id.len() + 16);
        sse::encode(&mut out, Some(&id), None, message.bytes());
        let event = Bytes::from(out);
        state.bytes += event.len();
        self.replay.used.fetch_add(event.len(), Ordering::Relaxed);
        state.events.push_back((seq, event.clone()));
        while (state.events.len() > self.config.replay_events
            || (state.bytes > self.config.replay_bytes && state.events.len() > 1))
            && state.drop_oldest(&self.replay.used)
        {}
        let live = state.live.clone();
        drop(state);
        // Over the budget across sessions: older logs give way first (after the lock above
        // is released: `trim` locks one log at a time).
        self.replay.trim(self.config.replay_budget, self);
        (event, live)
    }

    /// Records `message` and sends it to the live subscriber, if any; waits while the
    /// subscriber's queue is full. A subscriber that went away is detached (the event stays
    /// in the log for a reconnect).
    pub(crate) async fn deliver(&self, message: &Message) {
        let (event, live) = self.record(message);
        let Some(tx) = live else { return };
        match tokio::time::timeout(self.config.stalled_reader, tx.send(event)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => self.detach(&tx),
            Err(_) => {
                debug!(stream = %self.stream, "the client stopped reading; its connection is detached from the stream");
                self.detach(&tx);
            }
        }
    }

    /// Removes `tx` as live subscriber unless another connection replaced it already.
    fn detach(&self, tx: &mpsc::Sender<Bytes>) {
        let mut state = lock(&self.state);
        if state.live.as_ref().is_some_and(|l| l.same_channel(tx)) {
            state.live = None;
        }
    }

    /// The live subscriber; when there is none, marks the stream closed (atomically, so an
    /// `attach` either sees the stream open and becomes the subscriber, or sees it closed).
    fn live_or_close(&self) -> Option<mpsc::Sender<Bytes>> {
        let mut state = lock(&self.state);
        if state.live.is_none() {
            state.open = false;
        }
        state.live.clone()
    }

    /// The producer finished: no more events; the live response ends after what it has.
    fn close(&self) {
        let mut state = lock(&self.state);
        state.open = false;
        state.live = None;
    }
}

/// Feeds a legacy POST stream: `first`, then the rest of `reply` up to the `responses`th
/// response (one, but for a batch). Keeps consuming after the client disconnected, so a
/// reconnect with `Last-Event-ID` gets the rest. Sends on `final_error` whether the exchange
/// ended without a successful response.
pub(crate) fn spawn_post(
    log: Arc<StreamLog>,
    first: Message,
    mut reply: ReplyStream,
    cancel: CancellationToken,
    final_error: Option<oneshot::Sender<bool>>,
    responses: usize,
) {
    tokio::spawn(async move {
        let mut responses_left = responses.max(1);
        let mut failed = true;
        let mut next = Some(first);
        loop {
            let message = match next.take() {
                Some(m) => m,
                None => tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    m = reply.next() => match m {
                        Some(m) => m,
                        None => break,
                    },
                },
            };
            let is_response = message.is_response();
            if is_response {
                failed = *message.kind() == Kind::Error;
                responses_left -= 1;
            }
            let is_final = responses_left == 0;
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = log.deliver(&message) => {}
            }
            if is_final {
                break;
            }
        }
        log.close();
        if let Some(tx) = final_error {
            let _ = tx.send(failed);
        }
    });
}

/// Feeds a legacy GET stream from the session's unsolicited messages while a connection is
/// attached; then gives the receiver back to the session so the next GET can take it.
pub(crate) fn spawn_get(
    log: Arc<StreamLog>,
    session: &Arc<Session>,
    mut unsolicited: mpsc::Receiver<Message>,
    cancel: CancellationToken,
) {
    let session = Arc::downgrade(session);
    tokio::spawn(async move {
        loop {
            let Some(live) = log.live_or_close() else {
                break;
            };
            let message = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = live.closed() => {
                    log.detach(&live);
                    continue;
                }
                // A resumption took over: let go of the old subscriber, watch the new one.
                () = log.replaced.notified() => continue,
                m = unsolicited.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = log.deliver(&message) => {}
            }
        }
        log.close();
        match session.upgrade() {
            Some(session) => session.restore_unsolicited(unsolicited),
            None => debug!("session dropped while its get stream was open"),
        }
    });
}

/// Feeds a modern (stateless) stream: no ids, no log. The client closing the stream is the
/// cancellation signal: the reply is dropped at once.
pub(crate) fn spawn_modern(
    first: Message,
    mut reply: ReplyStream,
    live: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
    stalled_reader: Duration,
) {
    tokio::spawn(async move {
        let mut next = Some(first);
        loop {
            let message = match next.take() {
                Some(m) => m,
                None => tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = live.closed() => break,
                    m = reply.next() => match m {
                        Some(m) => m,
                        None => break,
                    },
                },
            };
            let mut out = Vec::with_capacity(message.bytes().len() + 16);
            sse::encode(&mut out, None, None, message.bytes());
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                sent = tokio::time::timeout(stalled_reader, live.send(Bytes::from(out))) => match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        debug!("the client stopped reading; its request is cancelled");
                        break;
                    }
                },
            }
            if message.is_response() {
                break;
            }
        }
    });
}

/// Locks `m`, recovering from poisoning: the protected state stays consistent because no
/// code path panics while holding these locks.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> StreamConfig {
        StreamConfig {
            replay_events: 3,
            replay_bytes: 1 << 20,
            max_streams: 2,
            keepalive: Duration::from_secs(10),
            retry: Duration::from_millis(500),
            stalled_reader: Duration::from_millis(200),
            replay_budget: 1 << 20,
        }
    }

    fn note(n: u64) -> Message {
        Message::from_value(json!({"jsonrpc": "2.0", "method": "n", "params": {"n": n}})).unwrap()
    }

    fn streams() -> (Arc<Session>, Arc<SessionStreams>) {
        let registry = StreamRegistry::new(config());
        let session = Arc::new(Session::new(
            warden_guard::Principal::anonymous(),
            warden_session::Face::Http,
        ));
        let streams = registry.session(&session);
        (session, streams)
    }

    /// A subscriber that stops reading is detached after `stalled_reader`: the producer goes
    /// on (so the upstream's timeouts still apply) and the events stay for a reconnect.
    #[tokio::test]
    async fn a_reader_that_stops_reading_is_detached_not_waited_for() {
        let (_s, streams) = streams();
        let (log, attached) = streams.open(StreamKind::Post).unwrap();
        let _unread = attached.live.expect("a live subscriber");
        let started = tokio::time::Instant::now();
        for n in 0..(LIVE_QUEUE as u64 + 5) {
            tokio::time::timeout(Duration::from_secs(5), log.deliver(&note(n)))
                .await
                .expect("delivery does not wait for ever");
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            lock(&log.state).live.is_none(),
            "the stalled reader was detached"
        );
        let again = log.attach(Some(0), false, false);
        assert_eq!(
            again.pending.len(),
            3,
            "the log keeps the last events to replay"
        );
    }

    /// A 2026-07-28 stream whose client stops reading ends, which drops the reply (and so
    /// cancels the upstream call) instead of holding it.
    #[tokio::test]
    async fn a_modern_stream_ends_when_its_reader_stalls() {
        let (notes, rx) = tokio::sync::mpsc::channel(64);
        let reply = ReplyStream::new(rx);
        for n in 0..64 {
            notes.try_send(note(n)).unwrap();
        }
        let (live, _unread) = mpsc::channel(2);
        let cancel = CancellationToken::new();
        spawn_modern(note(1000), reply, live, cancel, Duration::from_millis(100));
        // The producer gives up on the reader and drops the reply: its source sees it go.
        tokio::time::timeout(Duration::from_secs(5), notes.closed())
            .await
            .expect("the reply was dropped");
    }

    /// `max_streams` bounds the producers of a session: opening one more stops the oldest
    /// producer whose client went away (its reply is dropped, which cancels the upstream
    /// call), not one a client still reads.
    #[tokio::test]
    async fn one_stream_too_many_stops_the_oldest_unread_producer() {
        let (_s, streams) = streams();
        let producer = |log: &Arc<StreamLog>| {
            let (tx, rx) = mpsc::channel(8);
            spawn_post(
                Arc::clone(log),
                note(0),
                ReplyStream::new(rx),
                log.cancel().clone(),
                None,
                1,
            );
            tx
        };
        let (read, attached) = streams.open(StreamKind::Post).unwrap();
        let _reader = attached.live;
        let read_source = producer(&read);
        let (gone, attached) = streams.open(StreamKind::Post).unwrap();
        drop(attached);
        let gone_source = producer(&gone);
        // The next event finds the client gone: the stream is detached but still fed.
        gone_source.send(note(1)).await.unwrap();
        while gone.is_live() {
            tokio::task::yield_now().await;
        }
        assert!(gone.is_open());

        let _third = streams.open(StreamKind::Post).unwrap();
        tokio::time::timeout(Duration::from_secs(5), gone_source.closed())
            .await
            .expect("the unread producer was stopped");
        assert!(!read_source.is_closed(), "the read one goes on");
        assert!(read.is_open());
    }

    /// When every stream of the session is being read, opening one more stops none of them:
    /// the new one is refused (`None`), and every producer goes on.
    #[tokio::test]
    async fn one_stream_too_many_while_all_are_read_is_refused() {
        let (_s, streams) = streams();
        let mut kept = vec![];
        for _ in 0..2 {
            let (log, attached) = streams.open(StreamKind::Post).unwrap();
            let reader = attached.live;
            let (tx, rx) = mpsc::channel(8);
            spawn_post(
                Arc::clone(&log),
                note(0),
                ReplyStream::new(rx),
                log.cancel().clone(),
                None,
                1,
            );
            kept.push((log, reader, tx));
        }
        assert!(streams.open(StreamKind::Post).is_none());
        assert!(streams.open(StreamKind::Get).is_none());
        for (log, _reader, source) in &kept {
            assert!(log.is_open() && log.is_live());
            assert!(!source.is_closed(), "a read stream was stopped");
        }
    }

    /// Events kept for replay count against one budget across sessions: past it, a stream
    /// keeps fewer of its oldest events, and a dropped log gives its bytes back.
    #[tokio::test]
    async fn replay_memory_is_bounded_across_sessions() {
        let registry = StreamRegistry::new(StreamConfig {
            replay_events: 100,
            replay_budget: 2000,
            ..config()
        });
        let session = || {
            Arc::new(Session::new(
                warden_guard::Principal::anonymous(),
                warden_session::Face::Http,
            ))
        };
        let big = |n: u64| {
            Message::from_value(json!({"jsonrpc": "2.0", "method": "n", "params": {"n": n, "pad": "x".repeat(300)}}))
                .unwrap()
        };
        let (a, b) = (session(), session());
        let (log_a, _) = registry.session(&a).open(StreamKind::Post).unwrap();
        for n in 0..5 {
            log_a.deliver(&big(n)).await;
        }
        let (log_b, _) = registry.session(&b).open(StreamKind::Post).unwrap();
        for n in 0..5 {
            log_b.deliver(&big(n)).await;
        }
        let used = registry.replay.used.load(Ordering::Relaxed);
        assert!(used <= 2000, "{used} bytes kept");
        let kept_b = log_b.attach(Some(0), false, false).pending.len();
        assert!(
            kept_b >= 1,
            "the newest events of the stream being fed are kept"
        );
        let kept_a = log_a.attach(Some(0), false, false).pending.len();
        assert!(
            kept_a + kept_b < 10,
            "older events gave way: {kept_a} + {kept_b}"
        );
        drop(log_a);
        registry.remove(a.id().as_str());
        let after = registry.replay.used.load(Ordering::Relaxed);
        assert_eq!(
            after,
            lock(&log_b.state).bytes,
            "a dropped log's bytes are released"
        );
    }

    #[test]
    fn parses_event_ids() {
        assert_eq!(parse_event_id("3-17"), Some((3, 17)));
        assert_eq!(parse_event_id("x-1"), None);
        assert_eq!(parse_event_id("31"), None);
    }

    #[tokio::test]
    async fn replays_only_events_after_the_id_and_keeps_the_last_n() {
        let (_s, streams) = streams();
        let (log, first) = streams.open(StreamKind::Post).unwrap();
        assert_eq!(first.pending.len(), 1, "priming event");
        drop(first);
        for n in 1..=5 {
            log.deliver(&note(n)).await;
        }
        let again = log.attach(Some(3), false, false);
        let text: Vec<String> = again
            .pending
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        assert_eq!(text.len(), 2);
        assert!(text[0].starts_with(&format!("id: {}-4\n", log.stream)));
        assert!(text[1].starts_with(&format!("id: {}-5\n", log.stream)));
        let all = log.attach(Some(0), false, false);
        assert_eq!(all.pending.len(), 3, "only the last 3 are kept");
    }

    #[test]
    fn stream_numbers_are_unique_and_old_closed_logs_are_evicted() {
        let (_s, streams) = streams();
        let (a, _) = streams.open(StreamKind::Post).unwrap();
        // Its producer finished: closed.
        a.close();
        let (b, _b_reader) = streams.open(StreamKind::Post).unwrap();
        let (c, _c_reader) = streams.open(StreamKind::Post).unwrap();
        assert_ne!(a.stream, b.stream);
        assert_ne!(b.stream, c.stream);
        assert!(
            streams.find(&format!("{}-0", a.stream)).is_none(),
            "closed a evicted"
        );
        assert!(streams.find(&format!("{}-0", b.stream)).is_some());
        assert!(streams.find(&format!("{}-0", c.stream)).is_some());
    }
}
