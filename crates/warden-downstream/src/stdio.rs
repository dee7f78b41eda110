//! The stdio transport of `mcp-warden run`: one client on stdin/stdout, one session.
//!
//! Input is newline-delimited JSON-RPC, framed by [`LineDecoder`] and decoded strictly by
//! [`decode`]. A line that is not a valid message is answered with the JSON-RPC error its
//! [`DecodeError`] calls for (`-32700` for bad JSON and duplicate keys, `-32600` for invalid,
//! too large or too deep messages, with the request id when one could be read) and the
//! connection goes on with the next line.
//!
//! Requests are handled concurrently (a slow tool call does not hold up a `ping`), up to
//! [`StdioOptions::max_in_flight`] at once; beyond that the reader stops reading, so a client
//! cannot make the gateway queue without bound. The requests in flight are futures the reader
//! itself polls (one task for the whole client: no task spawned, no semaphore per request), so
//! the reader never waits on anything without also driving them. Notifications and responses
//! are handled in arrival order, inline. One writer task owns the output and writes each
//! message followed by `\n`; everything reaches it through a bounded channel.
//!
//! stdout *is* the protocol: this module writes nothing but protocol messages to `output`.

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
use warden_guard::Principal;
use warden_proto::framing::{Frame, LineDecoder};
use warden_proto::{DecodeError, Limits, Message, decode};
use warden_session::{Face, Handler, Reply, Session};

use crate::DownstreamError;

/// How long in-flight requests may still finish after the client closed its input: long enough
/// for a normal tool call to deliver its result, short enough that `run` exits promptly.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Concurrent requests per stdio client: more than any interactive client issues, few enough
/// that a flooding client is slowed down by backpressure instead of growing memory.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

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
    /// Requests handled concurrently before the reader applies backpressure.
    pub max_in_flight: usize,
}

impl StdioOptions {
    /// Defaults with the given message limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl Default for StdioOptions {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// Serves one stdio client until its input reaches EOF, with default options.
///
/// See [`serve_stdio_with`].
pub async fn serve_stdio<H, R, W>(
    handler: Arc<H>,
    input: R,
    output: W,
    limits: Limits,
) -> Result<(), DownstreamError>
where
    H: Handler,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let never = CancellationToken::new();
    serve_stdio_with(handler, input, output, StdioOptions::new(limits), never).await
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
    let writer = tokio::spawn(write_loop(output, out_rx));
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
        max_in_flight: options.max_in_flight.max(1),
        tasks: FuturesUnordered::new(),
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
    // Dropping an unfinished request cancels its upstream call.
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
    let write_result = match writer.await {
        Ok(result) => result.map_err(|source| DownstreamError::Write { source }),
        Err(join) => Err(DownstreamError::Write {
            source: std::io::Error::other(join),
        }),
    };
    read_result.and(write_result)
}

/// One request (or one streamed reply) in flight, polled by the reader.
type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Reads and dispatches client messages.
struct Reader<H: Handler> {
    handler: Arc<H>,
    session: Arc<Session>,
    principal: Principal,
    limits: Limits,
    out: mpsc::Sender<Bytes>,
    max_in_flight: usize,
    tasks: FuturesUnordered<Task>,
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
                        let _ = self.dispatch(frame).await;
                    }
                    return Ok(());
                }
                Ok(_) => {
                    while let Some(frame) = decoder.decode(&mut buf) {
                        if self.dispatch(frame).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(DownstreamError::Read { source }),
            }
        }
    }

    async fn dispatch(&mut self, frame: Frame) -> Result<(), WriterGone> {
        let line = match frame {
            Frame::Line(line) => line,
            Frame::TooLong { size } => {
                let error = DecodeError::TooLarge {
                    size,
                    limit: self.limits.max_message_bytes,
                };
                debug!(session = %self.session.id(), size, "over-long line from client discarded");
                return self.send(error_bytes(&error)).await;
            }
        };
        let message = match decode(line, &self.limits) {
            Ok(message) => message,
            Err(error) => {
                debug!(session = %self.session.id(), %error, "invalid message from client");
                return self.send(error_bytes(&error)).await;
            }
        };
        if message.is_request() {
            // Waiting here is the backpressure: the reader stops reading while the client
            // already has `max_in_flight` requests outstanding.
            while self.tasks.len() >= self.max_in_flight {
                tokio::select! {
                    biased;
                    () = self.out.closed() => return Err(WriterGone),
                    _ = self.tasks.next() => {}
                }
            }
            let handler = Arc::clone(&self.handler);
            let session = Arc::clone(&self.session);
            let principal = self.principal.clone();
            let out = self.out.clone();
            self.tasks.push(Box::pin(async move {
                let reply = handler.handle(Some(&session), &principal, message).await;
                let _ = forward(reply, &out).await;
            }));
            Ok(())
        } else {
            // Notifications and responses keep their order relative to later messages (a
            // cancellation must not overtake what came before it); the requests in flight
            // move on meanwhile.
            let handle = self
                .handler
                .handle(Some(&self.session), &self.principal, message);
            let reply = drive(&mut self.tasks, handle).await;
            if let Reply::Stream(_) = reply {
                let out = self.out.clone();
                self.tasks.push(Box::pin(async move {
                    let _ = forward(reply, &out).await;
                }));
            }
            Ok(())
        }
    }

    async fn send(&mut self, bytes: Bytes) -> Result<(), WriterGone> {
        let send = self.out.send(bytes);
        drive(&mut self.tasks, send).await.map_err(|_| WriterGone)
    }
}

/// Awaits `future` while polling the requests in flight, so that nothing the reader waits on
/// can be held up by a request only the reader drives.
async fn drive<F: Future>(tasks: &mut FuturesUnordered<Task>, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    loop {
        tokio::select! {
            biased;
            output = &mut future => return output,
            Some(()) = tasks.next(), if !tasks.is_empty() => {}
        }
    }
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
        if out.send(line_bytes(&message)).await.is_err() {
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
    // A `Value` built from strings and numbers always serialises.
    Bytes::from(serde_json::to_vec(&error.to_response()).unwrap_or_default())
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
