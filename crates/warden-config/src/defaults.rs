//! Defaults and bounds, each with the reason for its value. `docs/configuration.md` repeats them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// Loopback only: a gateway nobody configured must not be reachable from the network.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// Bounds memory per message: the gateway holds a whole JSON-RPC message to inspect it, so this
/// caps what one message can make it allocate. 4 MiB fits large tool results.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Bounds recursion when parsing and inspecting JSON: real MCP messages nest a few levels;
/// deep nesting only serves to exhaust the stack.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Upper bound for every byte limit: a bigger buffer for one message is a mistake, not a need.
pub const MAX_BYTES_LIMIT: usize = 1 << 30;

/// Upper bound for `max_depth`: deeper documents risk exhausting the stack of recursive code.
pub const MAX_DEPTH_LIMIT: usize = 1024;

/// Requests one stdio client (`run`) may have handled at once: more than any interactive
/// client issues, few enough that a flood cannot start unbounded work.
pub const DEFAULT_STDIO_MAX_IN_FLIGHT: usize = 64;

/// Upper bound for `stdio_max_in_flight`.
pub const STDIO_MAX_IN_FLIGHT_LIMIT: usize = 4096;

/// Requests a stdio client may have waiting for a slot before further ones are refused with
/// `-31004`. The reader never stops for requests (a client's answers to sampling or
/// elicitation arrive behind them), so this queue, not backpressure, bounds what it holds.
pub const DEFAULT_STDIO_MAX_QUEUED: usize = 256;

/// Upper bound for `stdio_max_queued`.
pub const STDIO_MAX_QUEUED_LIMIT: usize = 65_536;

/// Bytes of queued stdio requests before further ones are refused: bounds the queue's memory
/// whatever the size of each request.
pub const DEFAULT_STDIO_MAX_QUEUED_BYTES: usize = 16 << 20;

/// Closes connections that send their request head slowly (slowloris) before they pile up.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for an upstream's response: long enough for slow tools (builds, searches),
/// short enough that a hung upstream does not hold a client forever.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Frees a session and its upstream state when its client vanished without ending it.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Bounds how long one session id, which grants access, stays valid even while in use.
pub const DEFAULT_SESSION_MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Bounds the memory sessions hold: clients cannot exhaust the gateway by opening sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// Upper bound for `max_sessions`.
pub const MAX_SESSIONS_LIMIT: usize = 1_000_000;

/// Bounds concurrent SSE streams (the GET stream and POST responses) one session may hold open.
pub const DEFAULT_MAX_STREAMS_PER_SESSION: usize = 16;

/// Upper bound for `max_streams_per_session`.
pub const MAX_STREAMS_PER_SESSION_LIMIT: usize = 1024;

/// Keeps idle SSE streams open through proxies that drop silent connections (often after 30 to
/// 60 seconds).
pub const DEFAULT_SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// Events kept per session so a client can resume a broken stream with `Last-Event-ID`;
/// bounds that memory per session. 0 turns resumption off.
pub const DEFAULT_SSE_REPLAY_BUFFER: usize = 256;

/// Upper bound for `sse_replay_buffer`.
pub const MAX_SSE_REPLAY_BUFFER_LIMIT: usize = 65_536;

/// Time for an upstream to start and answer `initialize`; `npx` may download a package first.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Time between closing a stdio upstream's stdin and SIGTERM, and between SIGTERM and SIGKILL:
/// a well-behaved server can flush and exit; a hung one dies soon.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Upper bound for every duration: longer values are mistakes, and unbounded ones overflow time
/// arithmetic. 366 days, so that humantime's `"1y"` (365.25 days) fits.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Upper bound for an upstream name, which prefixes every tool name it exposes (clients limit
/// tool names, often to 64 characters).
pub const MAX_UPSTREAM_NAME_LEN: usize = 32;

/// Joins an upstream name and a tool name into the name clients see: `<upstream>__<tool>`.
/// Upstream names contain no `_`, so the first `__` always ends the upstream name.
pub const TOOL_NAMESPACE_SEPARATOR: &str = "__";

/// Refuses to read an accidentally huge file (or a device) as configuration.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 << 20;

/// The audit log's file name inside the data directory when no path is configured.
pub const DEFAULT_AUDIT_LOG_FILE_NAME: &str = "audit.jsonl";
