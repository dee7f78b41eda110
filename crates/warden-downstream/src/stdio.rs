//! The stdio transport of `mcp-warden run`: one client on stdin/stdout, one session.
//!
//! Input is newline-delimited JSON-RPC, framed by [`LineDecoder`] and decoded strictly by
//! [`decode`]. A line that is not a valid message is answered with the JSON-RPC error its
//! [`DecodeError`] calls for (`-32700` for bad JSON and duplicate keys, `-32600` for invalid,
//! too large or too deep messages, with the request id when one could be read) and the
//! connection goes on with the next line.
//!
//! Requests are handled concurrently (a slow tool call does not hold up a `ping`), up to
//! [`StdioOptions::max_in_flight`] at once. Beyond that they wait in a queue, in arrival order,
//! bounded by [`StdioOptions::max_queued`] requests and [`StdioOptions::max_queued_bytes`]
//! (`[limits] stdio_max_*`); a request that finds the queue full is refused at once with
//! `-31004` (too many requests). The reader never stops reading because of requests: the calls
//! in flight may be waiting on the client itself (an answer to a sampling or elicitation
//! request, a cancellation), and those answers arrive on the same input, behind whatever the
//! client sent before them. The requests in flight are futures the reader itself polls (one
//! task for the whole client: no task spawned, no semaphore per request), so the reader never
//! waits on anything without also driving them.
//! A client that negotiated 2025-03-26 may send JSON-RPC batches (a line that is an array):
//! each element is handled as if it came on its own line, and the requests' responses go back
//! as one array in the batch's order (see `Reader::dispatch_batch`); other clients' arrays are
//! refused like any line that is not an object.
//! Notifications and responses are handled in arrival order, inline. One writer task owns the
//! output and writes each message followed by `\n`; everything reaches it through a bounded
//! channel (a client that does not read its output is the one thing that stops the reader).
//!
//! stdout *is* the protocol: this module writes nothing but protocol messages to `output`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use warden_guard::{Denial, Principal};
use warden_proto::framing::{Frame, LineDecoder};
use warden_proto::{DecodeError, ErrorCode, Id, Limits, Message, decode, mcp, split_batch};
use warden_session::{Face, Handler, Reply, Session};

use crate::DownstreamError;

/// How long in-flight requests may still finish after the client closed its input: long enough
/// for a normal tool call to deliver its result, short enough that `run` exits promptly.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// `error.data.guard` of the refusal a request gets when the queue is full.
const QUEUE_GUARD: &str = "stdio_queue";

/// Messages one JSON-RPC batch may hold (2025-03-26 clients); a longer batch is refused whole.
/// Real clients batch a handful; the bound keeps one line from holding dozens of answers.
pub const MAX_BATCH: usize = 32;
const _: () = assert!(MAX_BATCH == 32, "the refusal's text names the bound");

/// Messages queued for the writer: bounds memory when the client reads slowly.
const WRITER_QUEUE: usize = 64;

/// Bytes requested from the input per read. Below glibc's 64 KiB free-consolidation
/// threshold: the buffer is replaced whenever decoded messages still share it, and freeing a
/// 64 KiB block on every read made the allocator consolidate its caches each time.
const READ_CHUNK: usize = 16 * 1024;

/// Settings of the stdio transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdioOptions {
    /// Size and depth limits of one message (the line limit is `max_message_bytes`).
    pub limits: Limits,
    /// How long in-flight requests may finish after input EOF before they are abandoned.
    pub drain_timeout: Duration,
    /// Requests handled concurrently; later ones are queued.
    pub max_in_flight: usize,
    /// Requests queued behind those in flight; later ones are refused with `-31004`.
    pub max_queued: usize,
    /// Bytes of queued requests before later ones are refused (one request is always queued
    /// when the queue is empty, whatever its size: it is within the message limit).
    pub max_queued_bytes: usize,
}

impl StdioOptions {
    /// The `[limits]` defaults (`stdio_max_in_flight`, `stdio_max_queued`,
    /// `stdio_max_queued_bytes`) with the given message limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_in_flight: warden_config::DEFAULT_STDIO_MAX_IN_FLIGHT,
            max_queued: warden_config::DEFAULT_STDIO_MAX_QUEUED,
            max_queued_bytes: warden_config::DEFAULT_STDIO_MAX_QUEUED_BYTES,
        }
    }

    /// These options with the queue bounds of a `[limits]` table.
    pub fn with_queue_of(self, config: &warden_config::LimitsConfig) -> Self {
        Self {
            max_in_flight: config.stdio_max_in_flight.get(),
            max_queued: config.stdio_max_queued,
            max_queued_bytes: config.stdio_max_queued_bytes.get(),
            ..self
        }
    }
}

impl Default for StdioOptions {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// Serves one stdio client until its input reaches EOF or `stop` is cancelled.
///
/// Opens one session (`Face::Stdio`, [`Principal::local`]), hands every decoded message to
/// `handler` and writes every message of each reply to `output`, plus the session's
/// unsolicited messages. At EOF or `stop`, nothing more is read, in-flight requests get
/// [`StdioOptions::drain_timeout`] to finish (an upstream that died answers them with errors
/// at once), the session is ended and the output flushed; the caller then shuts the upstream
/// down. The requests in flight live in this future: dropping it abandons them unanswered,
/// so a caller that wants them answered cancels `stop` and awaits it instead.
///
/// Errors: the session could not be opened, reading the input failed, or writing the output
/// failed (the client is gone).
pub async fn serve_stdio_with<H, R, W>(
    handler: Arc<H>,
    mut input: R,
    output: W,
    options: StdioOptions,
    stop_reading: CancellationToken,
) -> Result<(), DownstreamError>
where
    H: Handler,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let principal = Principal::local();
    let session = handler
        .open_session(principal.clone(), Face::Stdio)
        .await
        .map_err(|source| DownstreamError::Session { source })?;
    debug!(session = %session.id(), "stdio session opened");

    let (out_tx, out_rx) = mpsc::channel::<Bytes>(WRITER_QUEUE);
    let mut writer = tokio::spawn(write_loop(output, out_rx));
    let stop = CancellationToken::new();
    let unsolicited = session.take_unsolicited().map(|rx| {
        tokio::spawn(pump_unsolicited(
            Arc::clone(&session),
            rx,
            out_tx.clone(),
            stop.clone(),
        ))
    });

    let mut reader = Reader {
        handler: Arc::clone(&handler),
        session: Arc::clone(&session),
        principal,
        limits: options.limits,
        out: out_tx.clone(),
        tasks: InFlight::new(&options),
        refused_any: false,
    };
    let read_result = reader.run(&mut input, &stop_reading).await;

    // Let in-flight requests deliver their results, within bounds.
    let drained = tokio::time::timeout(options.drain_timeout, async {
        while reader.tasks.next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            session = %session.id(),
            abandoned = reader.tasks.len(),
            "stdio input closed; abandoning requests still in flight"
        );
    }
    // Dropping an unfinished request cancels its upstream call; a queued one never started.
    reader.tasks.clear();
    stop.cancel();
    if let Some(pump) = unsolicited {
        let _ = pump.await;
    }
    handler.end_session(&session).await;
    debug!(session = %session.id(), "stdio session ended");

    // The writer ends once every sender is gone, after flushing what it was given.
    drop(reader);
    drop(out_tx);
    // Bounded too: a client that stopped reading its output would hold the writer (and the
    // upstream's shutdown after it) for ever.
    let write_result = match tokio::time::timeout(options.drain_timeout, &mut writer).await {
        Ok(Ok(result)) => result.map_err(|source| DownstreamError::Write { source }),
        Ok(Err(join)) => Err(DownstreamError::Write {
            source: std::io::Error::other(join),
        }),
        Err(_) => {
            writer.abort();
            warn!(session = %session.id(), "the client is not reading its output; what was left for it is dropped");
            Err(DownstreamError::Write {
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client stopped reading its output",
                ),
            })
        }
    };
    read_result.and(write_result)
}

/// One request (or one streamed reply, or one batch) in flight, polled by the reader; its
/// output is the number of slots it took.
type Task = Pin<Box<dyn Future<Output = usize> + Send>>;

/// Reads and dispatches client messages.
struct Reader<H: Handler> {
    handler: Arc<H>,
    session: Arc<Session>,
    principal: Principal,
    limits: Limits,
    out: mpsc::Sender<Bytes>,
    tasks: InFlight,
    /// Whether a request was refused for a full queue yet (logged once per client).
    refused_any: bool,
}

/// A queued task: the task, its size in bytes, its request's id (a cancellation removes it
/// before it ever runs), and the slots it takes.
struct Queued {
    task: Task,
    bytes: usize,
    id: Option<Id>,
    slots: usize,
}

/// The requests of one client: those in flight, polled together, and those queued behind them.
/// A request takes one slot; a batch one per request it may run at once.
struct InFlight {
    running: FuturesUnordered<Task>,
    /// Slots the running tasks take.
    busy: usize,
    queued: VecDeque<Queued>,
    queued_bytes: usize,
    /// The requests of batches (queued or running) that have not started: a cancellation
    /// removes them too.
    batches: Vec<std::sync::Weak<Waiting>>,
    max_running: usize,
    max_queued: usize,
    max_queued_bytes: usize,
}

impl InFlight {
    fn new(options: &StdioOptions) -> Self {
        Self {
            running: FuturesUnordered::new(),
            busy: 0,
            queued: VecDeque::new(),
            queued_bytes: 0,
            batches: Vec::new(),
            max_running: options.max_in_flight.max(1),
            max_queued: options.max_queued,
            max_queued_bytes: options.max_queued_bytes,
        }
    }

    /// Whether a request of `bytes` bytes taking `slots` slots can start or be queued now.
    fn has_room(&self, bytes: usize, slots: usize) -> bool {
        self.busy + slots <= self.max_running
            || (self.queued.len() < self.max_queued
                && (self.queued.is_empty() || self.queued_bytes + bytes <= self.max_queued_bytes))
    }

    /// Starts `task` (a request of `bytes` bytes taking `slots` slots, at most `max_running`)
    /// or queues it; the caller checked [`InFlight::has_room`].
    fn admit(&mut self, task: Task, bytes: usize, id: Option<Id>, slots: usize) {
        if self.queued.is_empty() && self.busy + slots <= self.max_running {
            self.busy += slots;
            self.running.push(task);
        } else {
            self.queued_bytes += bytes;
            self.queued.push_back(Queued {
                task,
                bytes,
                id,
                slots,
            });
        }
    }

    /// Removes the request `id` if it has not started: queued on its own, or waiting in a
    /// batch. True when it was.
    fn cancel_queued(&mut self, id: &Id) -> bool {
        self.batches.retain(|b| b.strong_count() > 0);
        if self
            .batches
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .any(|batch| batch.cancel(id))
        {
            return true;
        }
        let Some(at) = self.queued.iter().position(|q| q.id.as_ref() == Some(id)) else {
            return false;
        };
        if let Some(q) = self.queued.remove(at) {
            self.queued_bytes -= q.bytes;
        }
        true
    }

    /// Starts a task that is not a request (a streamed reply to a notification) at once: it is
    /// never queued or refused (a notification's reply must not wait behind requests), though
    /// it takes a slot while it runs.
    fn push_unlimited(&mut self, task: Task) {
        self.busy += 1;
        self.running.push(task);
    }

    /// Polls the tasks in flight; when one finishes, the queue's head takes its slots. Cancel
    /// safe: a finished task is accounted for in the same poll.
    async fn next(&mut self) -> Option<()> {
        let slots = self.running.next().await?;
        self.busy -= slots;
        while self
            .queued
            .front()
            .is_some_and(|q| self.busy + q.slots <= self.max_running)
        {
            let Some(q) = self.queued.pop_front() else {
                break;
            };
            self.queued_bytes -= q.bytes;
            self.busy += q.slots;
            self.running.push(q.task);
        }
        Some(())
    }

    /// Whether nothing is in flight (nothing is queued then either).
    fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    fn len(&self) -> usize {
        self.running.len() + self.queued.len()
    }

    fn clear(&mut self) {
        self.running.clear();
        self.queued.clear();
        self.queued_bytes = 0;
        self.busy = 0;
    }
}

/// The ids of a batch's requests that have not started yet.
struct Waiting(std::sync::Mutex<Vec<Id>>);

impl Waiting {
    /// Takes `id` off the list as it starts; false when it was cancelled meanwhile.
    fn start(&self, id: &Id) -> bool {
        self.cancel(id)
    }

    /// Takes `id` off the list; true when it was on it (it had not started).
    fn cancel(&self, id: &Id) -> bool {
        let Ok(mut ids) = self.0.lock() else {
            return false;
        };
        match ids.iter().position(|i| i == id) {
            Some(at) => {
                ids.swap_remove(at);
                true
            }
            None => false,
        }
    }
}

/// The writer is gone: the client closed its end of the output.
struct WriterGone;

impl<H: Handler> Reader<H> {
    /// Reads until EOF (`Ok`), a read error, or the writer's death (which `serve_stdio_with`
    /// reports from the writer's own result).
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        input: &mut R,
        stop: &CancellationToken,
    ) -> Result<(), DownstreamError> {
        let mut decoder = LineDecoder::new(self.limits.max_message_bytes);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                () = self.out.closed() => return Ok(()),
                () = stop.cancelled() => return Ok(()),
                // Requests in flight move on while the reader waits for input.
                Some(()) = self.tasks.next(), if !self.tasks.is_empty() => continue,
                read = input.read_buf(&mut buf) => read,
            };
            match read {
                Ok(0) => {
                    if let Some(frame) = decoder.finish(&mut buf) {
                        let head = decoder.take_discarded_head();
                        let _ = self.dispatch(frame, &head).await;
                    }
                    return Ok(());
                }
                Ok(_) => {
                    while let Some(frame) = decoder.decode(&mut buf) {
                        let head = match frame {
                            Frame::TooLong { .. } => decoder.take_discarded_head(),
                            Frame::Line(_) => Vec::new(),
                        };
                        if self.dispatch(frame, &head).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(DownstreamError::Read { source }),
            }
        }
    }

    /// Handles one frame; `head` is the start of a discarded over-long line.
    async fn dispatch(&mut self, frame: Frame, head: &[u8]) -> Result<(), WriterGone> {
        let line = match frame {
            Frame::Line(line) => line,
            Frame::TooLong { size } => {
                let error = DecodeError::TooLarge {
                    size,
                    limit: self.limits.max_message_bytes,
                };
                debug!(session = %self.session.id(), size, "over-long line from client discarded");
                return self.send(refusal_bytes(&error, head)).await;
            }
        };
        if self.is_batch(&line) {
            return self.dispatch_batch(line).await;
        }
        let message = match decode(line.clone(), &self.limits) {
            Ok(message) => message,
            Err(error) => {
                debug!(session = %self.session.id(), %error, "invalid message from client");
                return self.send(refusal_bytes(&error, &line)).await;
            }
        };
        if message.is_request() {
            let bytes = message.bytes().len();
            if !self.tasks.has_room(bytes, 1) {
                if !std::mem::replace(&mut self.refused_any, true) {
                    warn!(
                        session = %self.session.id(),
                        outstanding = self.tasks.len(),
                        "stdio client has too many requests outstanding; refusing further ones with -31004"
                    );
                }
                let refusal = self.refusal(&message);
                return self.send(refusal).await;
            }
            let handler = Arc::clone(&self.handler);
            let session = Arc::clone(&self.session);
            let principal = self.principal.clone();
            let out = self.out.clone();
            let id = message.id().cloned();
            self.tasks.admit(
                Box::pin(async move {
                    let reply = handler.handle(Some(&session), &principal, message).await;
                    let _ = forward(reply, &out).await;
                    1
                }),
                bytes,
                id,
                1,
            );
            Ok(())
        } else {
            self.handle_inline(message).await
        }
    }

    /// Whether `line` is a JSON-RPC batch (an array) from a client that negotiated
    /// 2025-03-26, the one revision whose servers must accept batches. Other clients' arrays
    /// are refused by the decoder like any message that is not an object.
    fn is_batch(&self, line: &[u8]) -> bool {
        is_array(line) && self.session.protocol_version().as_deref() == Some(mcp::V_2025_03_26)
    }

    /// A batch: each element is decoded and handled as if it came on its own line, the
    /// notifications and responses at once (in the batch's order), the requests together as
    /// one task taking one slot per request it runs at once (at most `max_in_flight`). Their
    /// answers go out as one array in the batch's order once all are in (a cancelled request
    /// has none; a cancellation, in the batch or after it, removes a request that has not
    /// started). What a request streams before its answer (progress, server requests) goes
    /// out as it comes. An element that is not a valid message, and an `initialize` (which
    /// may not be batched), is answered with its error in the array; a batch that is not
    /// valid JSON, empty, or longer than [`MAX_BATCH`], with one error, as a line would be.
    async fn dispatch_batch(&mut self, line: Bytes) -> Result<(), WriterGone> {
        let parts = match batch_parts(&line, &self.limits) {
            Ok(parts) => parts,
            Err(error) => {
                debug!(session = %self.session.id(), %error, "invalid batch from client");
                return self.send(error_bytes(&error)).await;
            }
        };
        let decoded: Vec<Result<Message, DecodeError>> = parts
            .into_iter()
            .map(|part| batch_element(part, &self.limits))
            .collect();
        let waiting = Arc::new(Waiting(std::sync::Mutex::new(
            decoded
                .iter()
                .filter_map(|m| m.as_ref().ok().filter(|m| m.is_request())?.id().cloned())
                .collect(),
        )));
        // Registered before the batch's own notifications are handled: a cancellation in it
        // finds its requests.
        self.tasks.batches.push(Arc::downgrade(&waiting));
        let mut answers = Vec::with_capacity(decoded.len());
        for message in decoded {
            match message {
                Ok(message) if message.is_request() => answers.push(Answer::Pending(message)),
                Ok(message) => self.handle_inline(message).await?,
                Err(error) => answers.push(Answer::Ready(error_bytes(&error))),
            }
        }
        if answers.is_empty() {
            return Ok(());
        }
        let requests = answers
            .iter()
            .filter(|a| matches!(a, Answer::Pending(_)))
            .count();
        let slots = requests.clamp(1, self.tasks.max_running);
        let bytes = line.len();
        if !self.tasks.has_room(bytes, slots) {
            let refused: Vec<Bytes> = answers
                .into_iter()
                .map(|answer| match answer {
                    Answer::Pending(request) => self.refusal(&request),
                    Answer::Ready(error) => error,
                })
                .collect();
            return self.send(batch_bytes(&refused)).await;
        }
        let handler = Arc::clone(&self.handler);
        let session = Arc::clone(&self.session);
        let principal = self.principal.clone();
        let out = self.out.clone();
        self.tasks.admit(
            Box::pin(async move {
                let answering = answers.into_iter().map(|answer| {
                    let (handler, session, principal, out, waiting) = (
                        Arc::clone(&handler),
                        Arc::clone(&session),
                        principal.clone(),
                        out.clone(),
                        Arc::clone(&waiting),
                    );
                    async move {
                        match answer {
                            Answer::Ready(error) => Some(error),
                            Answer::Pending(request) => {
                                if !request.id().is_some_and(|id| waiting.start(id)) {
                                    // Cancelled before it started: no response.
                                    return None;
                                }
                                let reply =
                                    handler.handle(Some(&session), &principal, request).await;
                                batch_answer(reply, &out).await
                            }
                        }
                    }
                });
                let answers: Vec<Bytes> = futures::stream::iter(answering)
                    .buffered(slots)
                    .filter_map(std::future::ready)
                    .collect()
                    .await;
                if !answers.is_empty() {
                    let _ = out.send(batch_bytes(&answers)).await;
                }
                slots
            }),
            bytes,
            None,
            slots,
        );
        Ok(())
    }

    /// A notification or response: handled in arrival order.
    async fn handle_inline(&mut self, message: Message) -> Result<(), WriterGone> {
        if message.method() == Some("notifications/cancelled")
            && let Some(id) = message
                .params()
                .and_then(|p| warden_proto::Field::field(p, "requestId"))
                .and_then(Id::from_value)
            && self.tasks.cancel_queued(&id)
        {
            // Still queued: it never runs, and (as the specification asks of a cancelled
            // request) gets no response.
            debug!(session = %self.session.id(), "a queued request was cancelled before it ran");
            return Ok(());
        }
        // Notifications and responses keep their order relative to later messages (a
        // cancellation must not overtake what came before it); the requests in flight
        // move on meanwhile.
        let handle = self
            .handler
            .handle(Some(&self.session), &self.principal, message);
        let reply = drive(&mut self.tasks, handle).await;
        if let Reply::Stream(_) = reply {
            let out = self.out.clone();
            self.tasks.push_unlimited(Box::pin(async move {
                let _ = forward(reply, &out).await;
                1
            }));
        }
        Ok(())
    }

    /// The error a request gets when the queue is full: a denial like the rate-limit guard's
    /// (`-31004`), with the limits it met.
    fn refusal(&self, request: &Message) -> Bytes {
        let id = request
            .id()
            .map_or(serde_json::Value::Null, |id| id.to_value());
        let mut response = Denial {
            guard: QUEUE_GUARD,
            code: ErrorCode::RateLimited,
            message: "too many requests outstanding on this connection; retry once some are \
                      answered"
                .to_owned(),
            detail: String::new(),
            controls: &["API-2"],
            retry_after: None,
        }
        .to_jsonrpc(&id);
        let data = &mut response["error"]["data"];
        data["maxInFlight"] = self.tasks.max_running.into();
        data["maxQueued"] = self.tasks.max_queued.into();
        json_bytes(&response)
    }

    async fn send(&mut self, bytes: Bytes) -> Result<(), WriterGone> {
        let send = self.out.send(bytes);
        drive(&mut self.tasks, send).await.map_err(|_| WriterGone)
    }
}

/// Awaits `future` while polling the requests in flight, so that nothing the reader waits on
/// can be held up by a request only the reader drives.
async fn drive<F: Future>(tasks: &mut InFlight, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    loop {
        tokio::select! {
            biased;
            output = &mut future => return output,
            Some(()) = tasks.next(), if !tasks.is_empty() => {}
        }
    }
}

/// Whether `bytes` hold a JSON array (a batch): its first byte that is not JSON whitespace.
pub(crate) fn is_array(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        == Some(&b'[')
}

/// The messages of a batch, each as its own bytes ([`split_batch`]), with the refusals both
/// faces give: not valid JSON as for one message, empty, or longer than [`MAX_BATCH`].
pub(crate) fn batch_parts(bytes: &Bytes, limits: &Limits) -> Result<Vec<Bytes>, DecodeError> {
    let parts = split_batch(bytes, limits)?;
    let reason = match parts.len() {
        0 => "empty batch",
        n if n > MAX_BATCH => "batch too long: at most 32 messages",
        _ => return Ok(parts),
    };
    Err(DecodeError::Invalid { reason, id: None })
}

/// One element of a batch, decoded as a line would be; an `initialize`, which may not be part
/// of a batch (2025-03-26), is refused with its id.
pub(crate) fn batch_element(part: Bytes, limits: &Limits) -> Result<Message, DecodeError> {
    let message = decode(part, limits)?;
    if message.is_request() && message.method() == Some("initialize") {
        return Err(DecodeError::Invalid {
            reason: "initialize may not be part of a batch",
            id: message.id().map(Id::to_value),
        });
    }
    Ok(message)
}

/// One element of a batch that gets an answer in the batch's array.
enum Answer {
    /// A request, answered by the handler.
    Pending(Message),
    /// An element refused by the decoder: its error.
    Ready(Bytes),
}

/// Writes every message of `reply` to the writer queue but its response, which it returns:
/// the request's answer in its batch. `None` when the request got no response (cancelled).
async fn batch_answer(reply: Reply, out: &mpsc::Sender<Bytes>) -> Option<Bytes> {
    let Reply::Stream(mut stream) = reply else {
        return None;
    };
    let mut answer = None;
    while let Some(message) = stream.next().await {
        if message.is_response() {
            answer = Some(line_bytes(&message));
        } else if out.send(line_bytes(&message)).await.is_err() {
            return None;
        }
    }
    answer
}

/// The answers of a batch as one JSON array.
pub(crate) fn batch_bytes<B: AsRef<[u8]>>(answers: &[B]) -> Bytes {
    let size = answers.iter().map(|a| a.as_ref().len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(size);
    out.push(b'[');
    for (i, answer) in answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(answer.as_ref());
    }
    out.push(b']');
    Bytes::from(out)
}

/// Writes every message of `reply` to the writer queue.
async fn forward(reply: Reply, out: &mpsc::Sender<Bytes>) -> Result<(), WriterGone> {
    if let Reply::Stream(mut stream) = reply {
        while let Some(message) = stream.next().await {
            out.send(line_bytes(&message))
                .await
                .map_err(|_| WriterGone)?;
        }
    }
    Ok(())
}

/// Delivers the session's unsolicited messages until stopped, then gives the receiver back.
async fn pump_unsolicited(
    session: Arc<Session>,
    mut rx: mpsc::Receiver<Message>,
    out: mpsc::Sender<Bytes>,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            message = rx.recv() => message,
        };
        let Some(message) = message else { break };
        // A client that stops reading its output fills the writer's queue: stopping must not
        // wait for room there.
        let sent = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            sent = out.send(line_bytes(&message)) => sent,
        };
        if sent.is_err() {
            break;
        }
    }
    session.restore_unsolicited(rx);
}

/// The bytes of `message` as one line.
///
/// The original bytes are forwarded, but a message from an HTTP upstream may be pretty-printed.
/// In valid JSON a raw CR or LF can only be whitespace between tokens (inside strings they
/// must be escaped), so replacing them with spaces keeps the message identical in meaning and
/// keeps the framing intact.
fn line_bytes(message: &Message) -> Bytes {
    let bytes = message.bytes();
    if warden_proto::framing::has_line_break(bytes) {
        let flat: Vec<u8> = bytes
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect();
        Bytes::from(flat)
    } else {
        bytes.clone()
    }
}

fn error_bytes(error: &DecodeError) -> Bytes {
    json_bytes(&error.to_response())
}

/// The error for a line the decoder refused, with the request's id when the start of `text`
/// names one ([`DecodeError::to_response_for`]; for an over-long line, its first 16 KiB).
fn refusal_bytes(error: &DecodeError, text: &[u8]) -> Bytes {
    json_bytes(&error.to_response_for(text))
}

/// A message the transport builds itself, as bytes.
fn json_bytes(message: &serde_json::Value) -> Bytes {
    // A `Value` built from strings and numbers always serialises.
    Bytes::from(serde_json::to_vec(message).unwrap_or_default())
}

/// Owns the output: writes each message followed by `\n`, flushing whenever the queue is empty.
async fn write_loop<W: AsyncWrite + Unpin>(
    output: W,
    mut rx: mpsc::Receiver<Bytes>,
) -> std::io::Result<()> {
    let mut out = BufWriter::new(output);
    while let Some(bytes) = rx.recv().await {
        out.write_all(&bytes).await?;
        out.write_all(b"\n").await?;
        // Batch what is already queued into one flush; flush at once when idle so a lone
        // response is never held back.
        while let Ok(bytes) = rx.try_recv() {
            out.write_all(&bytes).await?;
            out.write_all(b"\n").await?;
        }
        out.flush().await?;
    }
    out.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_bytes_flattens_pretty_printed_messages() {
        let m = Message::from_parts(
            Bytes::from_static(b"{\n  \"jsonrpc\": \"2.0\",\r\n  \"method\": \"a\\nb\"\n}"),
            serde_json::json!({"jsonrpc": "2.0", "method": "a\nb"}),
        )
        .unwrap();
        let line = line_bytes(&m);
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["method"], "a\nb");
    }
}
