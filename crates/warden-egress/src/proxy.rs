//! The HTTP `CONNECT` proxy behind one upstream's Unix socket.
//!
//! Per connection: read the request head (bounded in size and time), accept only
//! `CONNECT host:port`, check the allow-list, resolve the name (bounded in time), refuse any
//! non-public address a name resolves to, connect (bounded in time), answer `200`, then relay
//! bytes both ways until both sides close or nothing moves for [`Limits::idle`]. Plain-HTTP
//! forwarding (`GET http://..`) is not offered: the answer is `405`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{info, warn};
use warden_policy::address::{AddressClass, classify};

use crate::allow::{AllowList, Target, parse_authority};

/// Largest request head accepted, in bytes.
const MAX_HEAD: usize = 8 * 1024;
/// Relay buffer per direction.
const BUFFER: usize = 16 * 1024;

/// Bounds of one proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tunnels open at once; more are answered `503`.
    pub max_connections: usize,
    /// Time to send the whole request head.
    pub handshake: Duration,
    /// Time to resolve the name and connect.
    pub connect: Duration,
    /// A tunnel where no byte moved either way for this long is closed.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            handshake: Duration::from_secs(10),
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(300),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many tunnels open (`503`).
    TooManyConnections,
    /// The head was not complete within [`Limits::handshake`] or too long (`408`/`431`).
    Handshake,
    /// Not a well-formed HTTP/1 request line (`400`).
    Malformed,
    /// A method other than `CONNECT` (`405`).
    NotConnect,
    /// The target is not on the allow-list (`403`).
    NotAllowed,
    /// The name did not resolve (`502`).
    Resolve,
    /// The name resolved to an address of this class, which only an explicit IP-literal
    /// rule may open (`403`).
    NonPublic(AddressClass),
    /// No resolved address accepted the connection in time (`502`).
    Connect,
    /// The tunnel was allowed but the observer of [`Proxy::on_decision_required`] could not
    /// record it (a fail-closed audit log that is full or closed) (`503`).
    Unrecorded,
}

impl Refusal {
    /// A short, constant description for logs and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too many connections",
            Refusal::Handshake => "request head too slow or too long",
            Refusal::Malformed => "malformed request",
            Refusal::NotConnect => "method other than CONNECT",
            Refusal::NotAllowed => "target not on the allow-list",
            Refusal::Resolve => "name did not resolve",
            Refusal::NonPublic(class) => class.noun(),
            Refusal::Connect => "target did not accept the connection",
            Refusal::Unrecorded => "decision could not be recorded",
        }
    }

    fn status(self) -> &'static str {
        match self {
            Refusal::TooManyConnections | Refusal::Unrecorded => "503 Service Unavailable",
            Refusal::Handshake => "408 Request Timeout",
            Refusal::Malformed => "400 Bad Request",
            Refusal::NotConnect => "405 Method Not Allowed",
            Refusal::NotAllowed | Refusal::NonPublic(_) => "403 Forbidden",
            Refusal::Resolve | Refusal::Connect => "502 Bad Gateway",
        }
    }
}

/// What the proxy decided for one connection (handed to [`Proxy::on_decision`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A tunnel was opened.
    Allowed {
        /// The requested host (a validated name or IP literal).
        host: String,
        /// The requested port.
        port: u16,
        /// The address connected to.
        address: SocketAddr,
    },
    /// The connection was refused.
    Refused {
        /// The requested host, when the request got that far.
        host: Option<String>,
        /// The requested port, when the request got that far.
        port: Option<u16>,
        /// Why.
        reason: Refusal,
    },
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Binding the Unix socket failed.
    #[error("binding the egress proxy socket `{}`", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Returns whether the decision was recorded (see [`Proxy::on_decision_required`]).
type Observer = Arc<dyn Fn(&Decision) -> bool + Send + Sync>;

/// The egress proxy of one upstream.
#[derive(Clone)]
pub struct Proxy {
    upstream: Arc<str>,
    allow: Arc<AllowList>,
    limits: Limits,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.upstream)
            .field("allow", &self.allow)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A running proxy: dropping it stops accepting, ends every tunnel and removes the socket.
#[derive(Debug)]
pub struct ProxyHandle {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    /// The Unix socket the forwarder connects to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Proxy {
    /// A proxy for `upstream` (the name used in logs) that opens tunnels only to `allow`.
    pub fn new(upstream: &str, allow: AllowList, limits: Limits) -> Proxy {
        Proxy {
            upstream: upstream.into(),
            allow: Arc::new(allow),
            limits,
            observer: None,
        }
    }

    /// Calls `observer` with every decision (for audit records), on the connection's task.
    #[must_use]
    pub fn on_decision(mut self, observer: impl Fn(&Decision) + Send + Sync + 'static) -> Proxy {
        self.observer = Some(Arc::new(move |decision: &Decision| {
            observer(decision);
            true
        }));
        self
    }

    /// Like [`Proxy::on_decision`], for an observer that must record every tunnel: it returns
    /// whether it recorded the decision, and an allowed tunnel it could not record is closed
    /// before a byte is relayed and refused with [`Refusal::Unrecorded`] (itself observed).
    #[must_use]
    pub fn on_decision_required(
        mut self,
        observer: impl Fn(&Decision) -> bool + Send + Sync + 'static,
    ) -> Proxy {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Binds `path` (mode 0600; its directory should be private to the gateway's user) and
    /// serves it on the current Tokio runtime until the handle is dropped.
    pub fn bind(self, path: &Path) -> Result<ProxyHandle, ProxyError> {
        let error = |source| ProxyError::Bind {
            path: path.to_owned(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(error)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(error)?;
        }
        let task = tokio::spawn(self.serve(listener));
        Ok(ProxyHandle {
            path: path.to_owned(),
            task,
        })
    }

    /// Accepts connections until the task is aborted.
    async fn serve(self, listener: UnixListener) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let mut tunnels = tokio::task::JoinSet::new();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(upstream = %self.upstream, %error, "egress proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            while tunnels.try_join_next().is_some() {}
            let proxy = self.clone();
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => {
                    tunnels.spawn(async move {
                        proxy.handle(stream).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tunnels.spawn(async move {
                        let mut stream = stream;
                        proxy
                            .refuse(&mut stream, None, None, Refusal::TooManyConnections)
                            .await;
                    });
                }
            }
        }
    }

    /// Whether the observer (if any) recorded `decision`.
    fn observe(&self, decision: &Decision) -> bool {
        match &self.observer {
            Some(observer) => observer(decision),
            None => true,
        }
    }

    async fn refuse(
        &self,
        stream: &mut UnixStream,
        host: Option<String>,
        port: Option<u16>,
        reason: Refusal,
    ) {
        warn!(
            upstream = %self.upstream,
            host = host.as_deref().unwrap_or("-"),
            port = port.unwrap_or(0),
            reason = reason.as_str(),
            "egress connection refused"
        );
        let response = format!(
            "HTTP/1.1 {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            reason.status()
        );
        let _ = tokio::time::timeout(self.limits.handshake, stream.write_all(response.as_bytes()))
            .await;
        let _ = stream.shutdown().await;
        // A refusal is final whether or not it was recorded.
        let _ = self.observe(&Decision::Refused { host, port, reason });
    }

    async fn handle(&self, mut stream: UnixStream) {
        let (head, rest) =
            match tokio::time::timeout(self.limits.handshake, read_head(&mut stream)).await {
                Ok(Some(read)) => read,
                Ok(None) | Err(_) => {
                    return self
                        .refuse(&mut stream, None, None, Refusal::Handshake)
                        .await;
                }
            };
        let Some((method, authority)) = request_line(&head) else {
            return self
                .refuse(&mut stream, None, None, Refusal::Malformed)
                .await;
        };
        if method != "CONNECT" {
            return self
                .refuse(&mut stream, None, None, Refusal::NotConnect)
                .await;
        }
        let Some((target, port)) = parse_authority(authority) else {
            return self
                .refuse(&mut stream, None, None, Refusal::Malformed)
                .await;
        };
        let host = target.to_string();
        if self.allow.find(&target, port).is_none() {
            return self
                .refuse(&mut stream, Some(host), Some(port), Refusal::NotAllowed)
                .await;
        }
        let connected = tokio::time::timeout(self.limits.connect, connect(&target, port)).await;
        let upstream = match connected {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(reason)) => {
                return self
                    .refuse(&mut stream, Some(host), Some(port), reason)
                    .await;
            }
            Err(_) => {
                return self
                    .refuse(&mut stream, Some(host), Some(port), Refusal::Connect)
                    .await;
            }
        };
        let address = match upstream.peer_addr() {
            Ok(address) => address,
            Err(_) => {
                return self
                    .refuse(&mut stream, Some(host), Some(port), Refusal::Connect)
                    .await;
            }
        };
        let allowed = Decision::Allowed {
            host: host.clone(),
            port,
            address,
        };
        if !self.observe(&allowed) {
            drop(upstream);
            return self
                .refuse(&mut stream, Some(host), Some(port), Refusal::Unrecorded)
                .await;
        }
        info!(upstream = %self.upstream, host = %host, port, %address, "egress tunnel opened");
        let established = b"HTTP/1.1 200 Connection Established\r\n\r\n";
        if stream.write_all(established).await.is_err() {
            return;
        }
        relay(stream, upstream, rest, self.limits.idle).await;
    }
}

/// Reads until the end of the head (`\r\n\r\n`); returns the head and any bytes after it.
/// `None` when the peer closed first or the head is longer than [`MAX_HEAD`].
async fn read_head(stream: &mut UnixStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        let searched_from = buffer.len().saturating_sub(3);
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let end = searched_from + at + 4;
            if end > MAX_HEAD {
                return None;
            }
            let rest = buffer.split_off(end);
            let head = String::from_utf8(buffer).ok()?;
            return Some((head, rest));
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
    }
}

/// `METHOD SP target SP HTTP/1.x` from the first line of the head.
fn request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.split("\r\n").next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return None;
    }
    Some((method, target))
}

/// Resolves (names only) and connects. A name's addresses must all be public: a name that
/// resolves to a loopback, private, link-local or metadata address is refused, whatever else
/// it resolves to (DNS rebinding). An IP literal was named explicitly by the allow-list.
async fn connect(target: &Target, port: u16) -> Result<TcpStream, Refusal> {
    let addresses: Vec<SocketAddr> = match target {
        Target::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Target::Name(name) => {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|_| Refusal::Resolve)?
                .collect();
            if resolved.is_empty() {
                return Err(Refusal::Resolve);
            }
            for address in &resolved {
                let class = classify(unmap(address.ip()));
                if class != AddressClass::Public {
                    return Err(Refusal::NonPublic(class));
                }
            }
            resolved
        }
    };
    for address in addresses {
        if let Ok(stream) = TcpStream::connect(address).await {
            return Ok(stream);
        }
    }
    Err(Refusal::Connect)
}

/// `::ffff:a.b.c.d` as the IPv4 address it carries.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Relays both ways until both directions are done or nothing moved for `idle`.
async fn relay(client: UnixStream, upstream: TcpStream, early: Vec<u8>, idle: Duration) {
    let start = Instant::now();
    let activity = AtomicU64::new(0);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, mut upstream_write) = upstream.into_split();
    let up = async {
        if !early.is_empty() && upstream_write.write_all(&early).await.is_err() {
            return;
        }
        pump(client_read, upstream_write, &activity, start).await;
    };
    let down = pump(upstream_read, client_write, &activity, start);
    let watchdog = async {
        loop {
            tokio::time::sleep(idle / 4).await;
            let last = Duration::from_millis(activity.load(Ordering::Relaxed));
            if start.elapsed().saturating_sub(last) >= idle {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        () = watchdog => {}
    }
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    activity: &AtomicU64,
    start: Instant,
) {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.store(now, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}
