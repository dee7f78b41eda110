//! stdio upstreams: a child process speaking newline-delimited JSON-RPC on stdin/stdout.
//!
//! Four tasks serve one child: a writer (the only code that touches stdin, fed by a bounded
//! channel), a stdout reader (framing, strict decoding, routing), a stderr reader (into
//! `tracing`, capped and rate-bounded) and a waiter that reaps the child and fails every
//! request in flight the moment it exits.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};
use warden_proto::framing::{Frame, LineDecoder};
use warden_proto::jsonrpc::recover_response_id;
use warden_proto::{DecodeError, Id, Kind, Limits, Message, decode_lazy};

use crate::error::{CloseReason, UpstreamError, expect_kind, kind_name};
use crate::pending::{
    self, INITIALIZE, IdAllocator, NOTE_WAIT, Outcome, Pending, Route, decode_error_kind,
    deliver_note, refusal_reason,
};
use crate::stats::{Counters, Stats};
use crate::stream::{Link, ResponseStream, deadline_after};
use crate::sys::{self, Signal};
use crate::{UNSOLICITED_CHANNEL_CAPACITY, lock};

/// Long enough for a server to flush and exit after stdin closes; short enough that a
/// gateway restart is not held up by a stuck server.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Enough for a stack-trace line; longer stderr lines are truncated.
pub const DEFAULT_STDERR_CAP: usize = 4096;
/// Stderr bytes logged per window: a few hundred lines of diagnostics; a server that writes
/// more is counted, not logged.
pub const DEFAULT_STDERR_BUDGET: u64 = 64 * 1024;
/// The window [`DEFAULT_STDERR_BUDGET`] applies to.
pub const DEFAULT_STDERR_WINDOW: Duration = Duration::from_secs(60);
/// Stderr reports waiting for a reader; more are dropped (the next one still counts its
/// window's bytes).
const STDERR_REPORT_CAPACITY: usize = 16;

/// Bounds memory between callers and the writer task.
const WRITER_CHANNEL_CAPACITY: usize = 64;
/// Bytes of queued messages gathered into one write to the child's stdin.
const WRITE_BATCH: usize = 64 * 1024;
/// Read size for stdout and stderr.
const READ_CHUNK: usize = 16 * 1024;
/// How long a notification, response or cancellation may wait for room in the writer
/// channel: a server that has not drained its stdin for this long is stuck.
const WRITE_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most messages from synchronous code (cancellations, refusals of server requests) waiting
/// for room in a full writer queue. Past it they are dropped: a server that stops reading its
/// stdin while it floods requests would otherwise start a task per refusal.
const MAX_DETACHED_WRITES: usize = 64;
/// After stdout closes, how long to wait for the exit status so errors can report it. A dead
/// child is reaped within milliseconds, so this only delays the rare server that closes
/// stdout and keeps running.
const EXIT_STATUS_WAIT: Duration = Duration::from_secs(1);
/// After SIGKILL, how long to wait for the kernel to let us reap the child.
const KILL_REAP_WAIT: Duration = Duration::from_secs(5);
/// Stderr lines logged per second on average; a chatty or hostile server cannot flood logs.
const STDERR_LINES_PER_SECOND: f64 = 50.0;
/// Stderr lines logged in a burst before the rate bound applies.
const STDERR_BURST: f64 = 200.0;

/// How to start a stdio upstream.
#[derive(Debug, Clone)]
pub struct StdioSpec {
    /// The upstream's configured name (used in logs and errors).
    pub name: String,
    /// The program to run (looked up in `PATH` unless it contains a slash).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables to set.
    pub env: Vec<(String, String)>,
    /// Start from an empty environment instead of the gateway's.
    pub env_clear: bool,
    /// Working directory (the gateway's when `None`).
    pub cwd: Option<PathBuf>,
    /// Message limits; `max_message_bytes` is also the longest accepted stdout line.
    pub limits: Limits,
    /// How long to wait after closing stdin, and again after SIGTERM, before escalating.
    pub shutdown_grace: Duration,
    /// Longest stderr line logged, in bytes (the rest of the line is cut).
    pub stderr_cap: usize,
    /// Stderr bytes logged per window (see [`StderrBudget`]); `None`: no byte budget (the line
    /// rate bound still applies).
    pub stderr_budget: Option<StderrBudget>,
    /// For `tools/call` only: the longest a call may run in total. With it set, each
    /// `notifications/progress` for the call pushes its deadline back by the request timeout,
    /// up to this bound; without it, the request timeout is absolute. When the bound is reached
    /// the call fails with [`UpstreamError::Timeout`] and is cancelled upstream.
    pub max_call_duration: Option<Duration>,
    /// Run the child in this sandbox (`program`, `args` and `cwd` are then the profile's, and
    /// the environment is exactly `env`).
    pub sandbox: Option<warden_sandbox::Sandbox>,
}

impl StdioSpec {
    /// Makes a sandboxed child run only the file with `identity` (the one a command pin was
    /// checked on; see [`warden_sandbox::Profile::program_identity`]). No effect without a
    /// sandbox.
    pub fn set_program_identity(&mut self, identity: Option<warden_sandbox::ProgramIdentity>) {
        if let Some(sandbox) = self.sandbox.as_mut() {
            sandbox.profile.program_identity = identity;
        }
    }

    /// A spec with no arguments, the gateway's environment and default limits.
    pub fn new(name: impl Into<String>, program: impl Into<String>) -> StdioSpec {
        StdioSpec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            cwd: None,
            limits: Limits::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            stderr_cap: DEFAULT_STDERR_CAP,
            stderr_budget: Some(StderrBudget::default()),
            max_call_duration: None,
            sandbox: None,
        }
    }
}

/// How much of an upstream's stderr reaches the logs: at most `bytes` per `window`. Each
/// window that saw output ends with a [`StderrReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StderrBudget {
    /// Bytes logged per window (lines after the per-line cap, each with its newline).
    pub bytes: u64,
    /// The window.
    pub window: Duration,
}

impl Default for StderrBudget {
    fn default() -> StderrBudget {
        StderrBudget {
            bytes: DEFAULT_STDERR_BUDGET,
            window: DEFAULT_STDERR_WINDOW,
        }
    }
}

/// What one stdio upstream wrote to stderr in one window (see
/// [`Connection::take_stderr_reports`](crate::Connection::take_stderr_reports)).
#[derive(Debug, Clone)]
pub struct StderrReport {
    /// Bytes read from stderr in the window.
    pub bytes: u64,
    /// Lines among them.
    pub lines: u64,
    /// Bytes not logged because the window's budget was spent (lines after the line cap, each
    /// with its newline).
    pub over_budget: u64,
    /// What was logged (each line cut at the line cap and ending with a newline): at most the
    /// budget.
    /// It may hold anything the server printed, secrets included: digest it, never log it.
    pub logged: Bytes,
    /// How long the window lasted.
    pub window: Duration,
}

enum WriteCommand {
    /// One message, written as one line.
    Line(Bytes),
    /// Close stdin once everything queued before is written (graceful shutdown).
    Close,
}

/// State shared by the tasks and handles of one stdio upstream.
pub(crate) struct Core {
    name: Arc<str>,
    pid: u32,
    limits: Limits,
    shutdown_grace: Duration,
    ids: IdAllocator,
    pending: Mutex<Pending>,
    writer: mpsc::Sender<WriteCommand>,
    /// Cancelled when the connection dies or shuts down: the writer drops stdin at once.
    close_stdin: CancellationToken,
    unsolicited: mpsc::Sender<crate::Unsolicited>,
    unsolicited_rx: Mutex<Option<mpsc::Receiver<crate::Unsolicited>>>,
    alive: AtomicBool,
    exit: watch::Receiver<Option<ExitStatus>>,
    /// True while the process group may still hold processes that are ours to kill. Cleared
    /// once the group has been SIGKILLed after the child was reaped, so a recycled pid is
    /// never signalled.
    group_armed: AtomicBool,
    shutting_down: AtomicBool,
    shutdown_done: OnceCell<()>,
    counters: Counters,
    /// Note queues that stayed full for a whole [`NOTE_WAIT`].
    stalled: crate::pending::Stalled,
    /// Cancelled when the connection dies (exit, closed stdout, failed write) or shuts down.
    dead: CancellationToken,
    /// See [`StdioSpec::max_call_duration`].
    max_call: Option<Duration>,
    stderr_reports: Mutex<Option<mpsc::Receiver<StderrReport>>>,
    /// Slots for [`Core::enqueue_detached`]'s waits ([`MAX_DETACHED_WRITES`]).
    detached: Arc<tokio::sync::Semaphore>,
}

/// What a `Connection` holds: dropping the last one kills the process group.
pub(crate) struct Handle {
    pub(crate) core: Arc<Core>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.core.group_armed.swap(false, Ordering::AcqRel) {
            debug!(upstream = %self.core.name, pid = self.core.pid, "connection dropped; killing the process group");
            self.core.signal_group(Signal::Kill);
        }
    }
}

/// Starts the child and its tasks.
pub(crate) async fn spawn(spec: StdioSpec) -> Result<Handle, UpstreamError> {
    let name: Arc<str> = spec.name.as_str().into();
    // warden-sandbox spawns: own process group, parent-death signal, piped stdio,
    // kill_on_drop; through the sandbox launcher when `spec.sandbox` is set.
    let launch = warden_sandbox::Launch {
        program: spec.program.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        env_clear: spec.env_clear,
        cwd: spec.cwd.clone(),
        sandbox: spec.sandbox.clone(),
    };
    let mut child = warden_sandbox::spawn(&launch).map_err(|source| UpstreamError::Spawn {
        name: spec.name.clone(),
        source,
    })?;
    let pid = child
        .id()
        .expect("a child that was just spawned has not been reaped");
    let stdin = child.stdin.take().expect("stdin is piped above");
    let stdout = child.stdout.take().expect("stdout is piped above");
    let stderr = child.stderr.take().expect("stderr is piped above");

    let (writer, writer_rx) = mpsc::channel(WRITER_CHANNEL_CAPACITY);
    let (unsolicited, unsolicited_rx) = mpsc::channel(UNSOLICITED_CHANNEL_CAPACITY);
    let (exit_tx, exit_rx) = watch::channel(None);
    let close_stdin = CancellationToken::new();
    let (reports, reports_rx) = mpsc::channel(STDERR_REPORT_CAPACITY);
    let core = Arc::new(Core {
        name: name.clone(),
        pid,
        limits: spec.limits,
        shutdown_grace: spec.shutdown_grace,
        ids: IdAllocator::default(),
        pending: Mutex::new(Pending::default()),
        writer,
        close_stdin: close_stdin.clone(),
        unsolicited,
        unsolicited_rx: Mutex::new(Some(unsolicited_rx)),
        alive: AtomicBool::new(true),
        exit: exit_rx,
        group_armed: AtomicBool::new(true),
        shutting_down: AtomicBool::new(false),
        shutdown_done: OnceCell::new(),
        counters: Counters::default(),
        stalled: crate::pending::Stalled::default(),
        dead: CancellationToken::new(),
        max_call: spec.max_call_duration,
        stderr_reports: Mutex::new(Some(reports_rx)),
        detached: Arc::new(tokio::sync::Semaphore::new(MAX_DETACHED_WRITES)),
    });
    // Built before the tasks so that any early return still kills the group.
    let handle = Handle { core: core.clone() };
    info!(upstream = %name, pid, program = %spec.program, "upstream process started");

    tokio::spawn(write_stdin(
        name.clone(),
        Arc::downgrade(&core),
        stdin,
        writer_rx,
        close_stdin,
    ));
    tokio::spawn(read_stdout(core.clone(), stdout));
    tokio::spawn(read_stderr(
        name,
        stderr,
        spec.stderr_cap,
        spec.stderr_budget,
        reports,
    ));
    tokio::spawn(wait_for_exit(core, child, exit_tx));
    Ok(handle)
}

impl Core {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.pending).len()
    }

    pub(crate) fn take_unsolicited(&self) -> Option<mpsc::Receiver<crate::Unsolicited>> {
        lock(&self.unsolicited_rx).take()
    }

    pub(crate) fn take_stderr_reports(&self) -> Option<mpsc::Receiver<StderrReport>> {
        lock(&self.stderr_reports).take()
    }

    /// Resolves once the connection died or was shut down.
    pub(crate) async fn ended(&self) {
        self.dead.cancelled().await;
    }

    /// Resolves once the connection is dead or shut down, with the exit status when the child
    /// was reaped (waiting briefly for it after stdout closes).
    pub(crate) async fn closed(&self) -> Option<ExitStatus> {
        self.dead.cancelled().await;
        self.wait_exit(EXIT_STATUS_WAIT).await;
        self.exit_status()
    }

    fn closed_error(&self) -> UpstreamError {
        let reason = lock(&self.pending)
            .closed()
            .unwrap_or(CloseReason::Abandoned);
        UpstreamError::closed(&self.name, reason)
    }

    pub(crate) async fn request(
        self: &Arc<Self>,
        message: &Message,
        timeout: Duration,
    ) -> Result<ResponseStream, UpstreamError> {
        expect_kind(message, &Kind::Request, "request")?;
        let deadline = deadline_after(timeout);
        let prepared = pending::prepare(message, self.ids.next())
            .map_err(|_| UpstreamError::protocol(&self.name, "request cannot be re-encoded"))?;
        let (entry, receivers) = pending::entry(message, &prepared);
        let id = prepared.upstream_id.clone();
        lock(&self.pending)
            .register(id.clone(), entry)
            .map_err(|reason| UpstreamError::closed(&self.name, reason))?;
        let send_cancel = message.method() != Some(INITIALIZE);
        let mut stream = ResponseStream::new(
            self.name.clone(),
            id.clone(),
            receivers,
            deadline,
            send_cancel,
            Link::Stdio(self.clone()),
        );
        if let Some(max) = self.max_call
            && message.method() == Some(pending::TOOLS_CALL)
        {
            stream.limit_call(timeout, max);
        }
        trace!(upstream = %self.name, id = %id, "sending request");
        if let Err(error) = self
            .enqueue(prepared.message.bytes().clone(), deadline)
            .await
        {
            // Never written: nothing to cancel upstream.
            lock(&self.pending).remove(&id);
            stream.disarm();
            return Err(error);
        }
        Ok(stream)
    }

    pub(crate) async fn notify(&self, message: &Message) -> Result<(), UpstreamError> {
        expect_kind(message, &Kind::Notification, "notification")?;
        self.enqueue(message.bytes().clone(), deadline_after(WRITE_QUEUE_TIMEOUT))
            .await
    }

    pub(crate) async fn respond(&self, message: &Message) -> Result<(), UpstreamError> {
        if !message.is_response() {
            return Err(UpstreamError::WrongKind {
                expected: "response",
                actual: kind_name(message.kind()),
            });
        }
        self.enqueue(message.bytes().clone(), deadline_after(WRITE_QUEUE_TIMEOUT))
            .await
    }

    /// Queues one message for the writer.
    async fn enqueue(&self, bytes: Bytes, deadline: Instant) -> Result<(), UpstreamError> {
        if !self.is_alive() {
            return Err(self.closed_error());
        }
        match timeout_at(deadline, self.writer.send(WriteCommand::Line(bytes))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    /// A stream gave up on request `id` (dropped or timed out).
    pub(crate) fn abandon(&self, id: &Id, send_cancel: bool, reason: &'static str) {
        // Removing first settles the race with the reader: if the response won, there is
        // nothing left to cancel.
        if lock(&self.pending).remove(id).is_none() || !send_cancel || !self.is_alive() {
            return;
        }
        debug!(upstream = %self.name, id = %id, reason, "cancelling request upstream");
        let note = pending::cancellation(id, reason);
        self.enqueue_detached(note.bytes().clone());
    }

    /// Queues a message from synchronous code (drop paths).
    fn enqueue_detached(&self, bytes: Bytes) {
        match self.writer.try_send(WriteCommand::Line(bytes)) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(command)) => {
                let Ok(slot) = self.detached.clone().try_acquire_owned() else {
                    debug!(upstream = %self.name, "the upstream is not reading its stdin; a cancellation or refusal was dropped");
                    return;
                };
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let writer = self.writer.clone();
                    runtime.spawn(async move {
                        let _ = timeout(WRITE_QUEUE_TIMEOUT, writer.send(command)).await;
                        drop(slot);
                    });
                }
            }
        }
    }

    /// Fails every request in flight and refuses new ones; closes stdin at once.
    fn fail_all(&self, reason: CloseReason) {
        self.close_stdin.cancel();
        self.fail_pending(reason);
    }

    /// Fails every request in flight and refuses new ones.
    fn fail_pending(&self, reason: CloseReason) {
        self.alive.store(false, Ordering::Release);
        self.dead.cancel();
        let (entries, reason) = {
            let mut pending = lock(&self.pending);
            let entries = pending.close(reason);
            (entries, pending.closed().unwrap_or(reason))
        };
        for entry in entries {
            entry.fail(UpstreamError::closed(&self.name, reason));
        }
    }

    /// The child was reaped.
    fn on_exit(&self, status: ExitStatus) {
        // Descendants left in the group are part of this upstream: end them now, then never
        // signal the group again (its id may be recycled once it is empty).
        if self.group_armed.swap(false, Ordering::AcqRel) {
            self.signal_group(Signal::Kill);
        }
        self.alive.store(false, Ordering::Release);
        self.close_stdin.cancel();
        self.dead.cancel();
        let entries = lock(&self.pending).close_with_exit(CloseReason::Exited(status));
        let in_flight = entries.len();
        for entry in entries {
            entry.fail(UpstreamError::closed(
                &self.name,
                CloseReason::Exited(status),
            ));
        }
        if self.shutting_down.load(Ordering::Acquire) {
            info!(upstream = %self.name, pid = self.pid, %status, "upstream process exited");
        } else {
            warn!(upstream = %self.name, pid = self.pid, %status, in_flight, "upstream process exited unexpectedly");
        }
    }

    fn signal_group(&self, signal: Signal) {
        match sys::signal_group(self.pid, signal) {
            Ok(_) => {}
            Err(error) => {
                warn!(upstream = %self.name, pid = self.pid, ?signal, %error, "signalling the upstream process group failed");
            }
        }
    }

    /// Graceful shutdown: close stdin, wait, SIGTERM the group, wait, SIGKILL, reap.
    pub(crate) async fn shutdown(&self) {
        self.shutdown_done.get_or_init(|| self.run_shutdown()).await;
    }

    async fn run_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.fail_pending(CloseReason::ShutDown);
        // Close stdin after what is already queued (a last notification, say) is written.
        let deadline = deadline_after(self.shutdown_grace);
        let queued = timeout_at(deadline, self.writer.send(WriteCommand::Close)).await;
        if !matches!(queued, Ok(Ok(()))) {
            self.close_stdin.cancel();
        }
        let exited = timeout_at(deadline, self.wait_exit(self.shutdown_grace)).await;
        // A writer stuck on a full pipe is cut off now.
        self.close_stdin.cancel();
        if matches!(exited, Ok(true)) {
            return;
        }
        if self.group_armed.load(Ordering::Acquire) {
            info!(upstream = %self.name, pid = self.pid, "upstream did not exit after stdin closed; sending SIGTERM");
            self.signal_group(Signal::Term);
        }
        if self.wait_exit(self.shutdown_grace).await {
            return;
        }
        if self.group_armed.load(Ordering::Acquire) {
            warn!(upstream = %self.name, pid = self.pid, "upstream ignored SIGTERM; sending SIGKILL");
            self.signal_group(Signal::Kill);
        }
        if !self.wait_exit(KILL_REAP_WAIT).await {
            warn!(upstream = %self.name, pid = self.pid, "upstream was not reaped after SIGKILL");
        }
    }

    /// Waits up to `limit` for the child to be reaped (and its group cleared).
    async fn wait_exit(&self, limit: Duration) -> bool {
        let mut exit = self.exit.clone();
        // A closed channel means the waiter is gone, which only happens after the exit.
        timeout(limit, exit.wait_for(Option::is_some)).await.is_ok()
    }

    /// Routes one decoded message from stdout.
    async fn dispatch(&self, message: Message) {
        self.counters.received();
        let route = lock(&self.pending).route_with(message, None, true);
        match route {
            Route::Respond { outcome, message } => {
                trace!(upstream = %self.name, id = ?message.id(), "response received");
                let _ = outcome.send(Outcome::Response(message));
            }
            Route::Note {
                notes,
                message,
                then_end,
            } => {
                let wait = Some((NOTE_WAIT, &self.stalled));
                deliver_note(&self.name, &self.counters, &notes, message, wait).await;
                if let Some(end) = then_end {
                    let _ = end.send(Outcome::Ended);
                }
            }
            Route::Unsolicited(message) => self.deliver_unsolicited(message),
            Route::UnknownResponse(message) => {
                self.counters.unknown_response();
                warn!(upstream = %self.name, "dropped a response with an unknown id");
                trace!(upstream = %self.name, id = ?message.id(), "unknown response id");
            }
            // Only HTTP exchanges route with a context.
            Route::Stale => self.counters.dropped(),
        }
    }

    fn deliver_unsolicited(&self, unsolicited: crate::Unsolicited) {
        let is_request = unsolicited.message.is_request();
        let id = unsolicited.message.id().cloned();
        match self.unsolicited.try_send(unsolicited) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => {
                warn!(upstream = %self.name, "dropped a server message: the unsolicited channel is full");
            }
            Err(TrySendError::Closed(_)) => {
                debug!(upstream = %self.name, "dropped a server message: nobody reads unsolicited messages");
            }
        }
        self.counters.dropped();
        // A server waiting for an answer that will never come would hang: tell it.
        if is_request && let Some(id) = id {
            let reply = crate::dropped_request_error(&id);
            self.enqueue_detached(reply.bytes().clone());
        }
    }

    /// Decodes one line of stdout. `head` is the start of an over-long line.
    ///
    /// The value is parsed lazily: a response that is only forwarded is validated but never
    /// turned into a tree.
    fn on_frame(&self, frame: Frame, head: &[u8]) -> Option<Message> {
        match frame {
            Frame::TooLong { size } => {
                self.counters.invalid();
                warn!(upstream = %self.name, bytes = size, limit = self.limits.max_message_bytes, "dropped an over-long line from upstream stdout");
                self.refused(head, None);
                None
            }
            Frame::Line(line) => match decode_lazy(line.clone(), &self.limits) {
                Ok(message) => Some(message),
                Err(error) => {
                    self.counters.invalid();
                    warn!(upstream = %self.name, bytes = line.len(), error = decode_error_kind(&error), "dropped an invalid line from upstream stdout");
                    trace!(upstream = %self.name, line = %String::from_utf8_lossy(&line), "invalid line");
                    self.refused(&line, Some(&error));
                    None
                }
            },
        }
    }

    /// A line was refused: if it was the response to a request in flight, that request fails
    /// now with the rule the response broke, instead of waiting for its timeout.
    fn refused(&self, text: &[u8], error: Option<&DecodeError>) {
        let recovered = recover_response_id(text);
        let entry = lock(&self.pending).refused(recovered, None);
        if let Some(entry) = entry {
            let reason = refusal_reason(error);
            warn!(upstream = %self.name, reason, "failed a request whose response was refused");
            entry.fail(UpstreamError::protocol(&self.name, reason));
        }
    }
}

/// The only code that writes to the child's stdin.
///
/// Messages queued while a write is in progress are written together: the queue is drained
/// into one buffer (up to [`WRITE_BATCH`] bytes) and written with one system call, so a burst
/// of pipelined requests costs one `write` instead of one per message. A lone message is
/// written at once (nothing waits for a batch to fill). A queued `Close` is honoured after
/// everything queued before it.
async fn write_stdin(
    name: Arc<str>,
    core: Weak<Core>,
    mut stdin: ChildStdin,
    mut commands: mpsc::Receiver<WriteCommand>,
    close: CancellationToken,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    let mut closing = false;
    while !closing {
        let command = tokio::select! {
            biased;
            () = close.cancelled() => break,
            command = commands.recv() => command,
        };
        let Some(WriteCommand::Line(bytes)) = command else {
            break;
        };
        batch.clear();
        push_line(&mut batch, &bytes);
        while batch.len() < WRITE_BATCH {
            match commands.try_recv() {
                Ok(WriteCommand::Line(bytes)) => push_line(&mut batch, &bytes),
                Ok(WriteCommand::Close) => {
                    closing = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let result = tokio::select! {
            biased;
            () = close.cancelled() => break,
            result = async {
                stdin.write_all(&batch).await?;
                stdin.flush().await
            } => result,
        };
        if batch.capacity() > WRITE_BATCH * 4 {
            // One huge message must not pin its buffer for the life of the connection.
            batch = Vec::with_capacity(WRITE_BATCH);
        }
        if let Err(error) = result {
            debug!(upstream = %name, %error, "writing to upstream stdin failed");
            // Usually the child died: prefer its exit status as the reason.
            if let Some(core) = core.upgrade()
                && !core.wait_exit(EXIT_STATUS_WAIT).await
            {
                core.fail_all(CloseReason::WriteFailed);
            }
            break;
        }
    }
    // Dropping stdin closes the pipe: the server reads EOF, its cue to exit.
    drop(stdin);
    debug!(upstream = %name, "upstream stdin closed");
}

/// Appends one message as one line. JSON strings cannot hold raw CR or LF, so any in the
/// bytes are whitespace between tokens (pretty-printed input) and become spaces: a message
/// can never span two lines.
fn push_line(out: &mut Vec<u8>, bytes: &[u8]) {
    if warden_proto::framing::has_line_break(bytes) {
        out.extend(
            bytes
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'\n');
}

async fn read_stdout(core: Arc<Core>, mut stdout: ChildStdout) {
    let mut decoder = LineDecoder::new(core.limits.max_message_bytes);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        buf.reserve(READ_CHUNK);
        match stdout.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {
                while let Some(frame) = decoder.decode(&mut buf) {
                    let head = match frame {
                        Frame::TooLong { .. } => decoder.take_discarded_head(),
                        Frame::Line(_) => Vec::new(),
                    };
                    if let Some(message) = core.on_frame(frame, &head) {
                        core.dispatch(message).await;
                    }
                }
            }
            Err(error) => {
                warn!(upstream = %core.name, %error, "reading upstream stdout failed");
                break;
            }
        }
    }
    if let Some(frame) = decoder.finish(&mut buf)
        && let Some(message) = core.on_frame(frame, &decoder.take_discarded_head())
    {
        core.dispatch(message).await;
    }
    // Give the waiter a moment, so errors carry the exit status rather than "stdout closed".
    let exited = core.wait_exit(EXIT_STATUS_WAIT).await;
    if !exited {
        debug!(upstream = %core.name, "upstream closed stdout");
        core.fail_all(CloseReason::OutputClosed);
    }
}

async fn wait_for_exit(core: Arc<Core>, mut child: Child, exit: watch::Sender<Option<ExitStatus>>) {
    match child.wait().await {
        Ok(status) => {
            core.on_exit(status);
            // Published after the group was killed: whoever waits on this sees a clean group.
            exit.send_replace(Some(status));
        }
        Err(error) => {
            warn!(upstream = %core.name, %error, "waiting for the upstream process failed");
            if core.group_armed.swap(false, Ordering::AcqRel) {
                core.signal_group(Signal::Kill);
            }
            core.fail_all(CloseReason::Abandoned);
        }
    }
}

/// Logs stderr line by line: each line cut at `cap` bytes, at most a burst of
/// [`STDERR_BURST`] lines then [`STDERR_LINES_PER_SECOND`], and at most the budget's bytes per
/// window; the rest is counted and reported. Each window that saw output ends with a
/// [`StderrReport`] on `reports` (dropped when nobody keeps up).
async fn read_stderr(
    name: Arc<str>,
    mut stderr: ChildStderr,
    cap: usize,
    budget: Option<StderrBudget>,
    reports: mpsc::Sender<StderrReport>,
) {
    let cap = cap.max(1);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut limiter = LineLimiter::new();
    let mut window = StderrWindow::new(budget);
    // True while skipping the rest of a line already logged in part.
    let mut skipping = false;
    loop {
        buf.reserve(READ_CHUNK);
        let before = buf.len();
        let read = tokio::select! {
            // `read_buf` is cancel safe: a window ending mid-read loses nothing.
            read = stderr.read_buf(&mut buf) => read,
            () = sleep_until_opt(window.end()) => {
                window.close(&name, &reports);
                continue;
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if window.expired() {
            window.close(&name, &reports);
        }
        window.read((buf.len() - before) as u64);
        loop {
            match buf.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let line = buf.split_to(pos + 1);
                    window.lines += 1;
                    if std::mem::take(&mut skipping) {
                        continue;
                    }
                    let text = &line[..pos];
                    let shown = &text[..text.len().min(cap)];
                    if window.admit(&name, shown) {
                        limiter.log(&name, shown, text.len() > cap);
                    }
                }
                None => {
                    if buf.len() > cap {
                        if !skipping {
                            let shown = &buf[..cap];
                            if window.admit(&name, shown) {
                                limiter.log(&name, shown, true);
                            }
                            skipping = true;
                        }
                        buf.clear();
                    }
                    break;
                }
            }
        }
    }
    if !buf.is_empty() && !skipping {
        window.lines += 1;
        let shown = &buf[..buf.len().min(cap)];
        if window.admit(&name, shown) {
            limiter.log(&name, shown, buf.len() > cap);
        }
    }
    limiter.report(&name);
    window.close(&name, &reports);
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// One stderr window: what was read, what was logged, and the byte budget.
struct StderrWindow {
    budget: Option<StderrBudget>,
    /// Set by the first byte of a window; `None` while nothing was read.
    started: Option<Instant>,
    bytes: u64,
    lines: u64,
    over_budget: u64,
    logged: BytesMut,
    /// The budget ran out in this window (warned once).
    exhausted: bool,
}

impl StderrWindow {
    fn new(budget: Option<StderrBudget>) -> StderrWindow {
        StderrWindow {
            budget,
            started: None,
            bytes: 0,
            lines: 0,
            over_budget: 0,
            logged: BytesMut::new(),
            exhausted: false,
        }
    }

    /// When the current window ends (none while nothing was read).
    fn end(&self) -> Option<Instant> {
        let window = self.budget.map_or(DEFAULT_STDERR_WINDOW, |b| b.window);
        self.started.map(|s| deadline_after_from(s, window))
    }

    fn expired(&self) -> bool {
        self.end().is_some_and(|end| Instant::now() >= end)
    }

    fn read(&mut self, bytes: u64) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Whether `line` fits in what is left of the budget; counts it either way.
    fn admit(&mut self, name: &str, line: &[u8]) -> bool {
        let len = line.len() as u64;
        let Some(budget) = self.budget else {
            return true;
        };
        // Each logged line costs its bytes and its newline.
        if (self.logged.len() as u64).saturating_add(len + 1) > budget.bytes {
            self.over_budget = self.over_budget.saturating_add(len + 1);
            if !std::mem::replace(&mut self.exhausted, true) {
                warn!(upstream = %name, budget = budget.bytes, window_ms = budget.window.as_millis() as u64, "upstream stderr over its byte budget; the rest of this window is counted, not logged");
            }
            return false;
        }
        self.logged.extend_from_slice(line);
        self.logged.extend_from_slice(b"\n");
        true
    }

    /// Ends the window: reports it if anything was read, then starts afresh.
    fn close(&mut self, name: &str, reports: &mpsc::Sender<StderrReport>) {
        let Some(started) = self.started.take() else {
            return;
        };
        let report = StderrReport {
            bytes: std::mem::take(&mut self.bytes),
            lines: std::mem::take(&mut self.lines),
            over_budget: std::mem::take(&mut self.over_budget),
            logged: std::mem::take(&mut self.logged).freeze(),
            window: started.elapsed(),
        };
        self.exhausted = false;
        if report.over_budget > 0 {
            warn!(upstream = %name, bytes = report.bytes, over_budget = report.over_budget, "upstream stderr window ended over its budget");
        }
        if reports.try_send(report).is_err() {
            debug!(upstream = %name, "stderr report dropped: nobody reads them");
        }
    }
}

/// `start + window`, saturating.
fn deadline_after_from(start: Instant, window: Duration) -> Instant {
    start
        .checked_add(window)
        .unwrap_or_else(|| start + Duration::from_secs(86_400 * 365))
}

/// A token bucket for stderr lines.
struct LineLimiter {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl LineLimiter {
    fn new() -> LineLimiter {
        LineLimiter {
            tokens: STDERR_BURST,
            last: Instant::now(),
            suppressed: 0,
        }
    }

    fn log(&mut self, name: &str, line: &[u8], truncated: bool) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * STDERR_LINES_PER_SECOND).min(STDERR_BURST);
        if self.tokens < 1.0 {
            self.suppressed += 1;
            return;
        }
        self.tokens -= 1.0;
        self.report(name);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        debug!(upstream = %name, line = %String::from_utf8_lossy(line), truncated, "upstream stderr");
    }

    fn report(&mut self, name: &str) {
        if self.suppressed > 0 {
            warn!(upstream = %name, lines = self.suppressed, "suppressed upstream stderr lines over the rate bound");
            self.suppressed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_keeps_a_message_on_one_line() {
        let mut out = Vec::new();
        push_line(&mut out, b"{\"a\":\r\n 1}");
        push_line(&mut out, b"{}");
        assert_eq!(out, b"{\"a\":   1}\n{}\n");
    }
}
