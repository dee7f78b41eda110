//! The `/metrics` listener: plain HTTP/1.1, `GET` (or `HEAD`) of one path, nothing else.
//!
//! It runs beside the MCP face, never through it: it shares neither the port nor the
//! authentication of `/mcp`. Connections are bounded in number and lifetime, and headers must
//! arrive within a timeout, so a scraper (or anyone who can reach the port) cannot hold the
//! gateway's resources.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use warden_audit::AuditLog;

use crate::exposition::CONTENT_TYPE;
use crate::registry::{Live, Metrics};

/// Connections served at once: scrapers are few; the rest wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection (keep-alive included), so idle connections cannot hold
/// every slot.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Settings of a [`MetricsServer`].
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// A scraper must send `Authorization: Bearer <token>` when set.
    pub bearer_token: Option<String>,
    /// The audit log whose queue depth and drop count are read at each scrape.
    pub audit: Option<AuditLog>,
    /// The audit queue's capacity, reported beside its depth.
    pub audit_queue_capacity: Option<u64>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("audit", &self.audit)
            .field("audit_queue_capacity", &self.audit_queue_capacity)
            .finish()
    }
}

/// A bound `/metrics` listener; [`MetricsServer::run`] serves it.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
    handler: Arc<Handler>,
}

struct Handler {
    metrics: Arc<Metrics>,
    /// SHA-256 of the token: compared in constant time against the digest of what arrives.
    token: Option<[u8; 32]>,
    /// Bound to a loopback address: only loopback names are accepted in `Host`, so a web
    /// page whose name was rebound to 127.0.0.1 cannot read the metrics (DNS rebinding).
    loopback: bool,
    audit: Option<AuditLog>,
    audit_queue_capacity: Option<u64>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("token", &self.token.map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `addr`. The caller decides whether the address is acceptable (the configuration
    /// refuses a non-loopback one without a token or an explicit opt-out).
    pub async fn bind(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        options: ServerOptions,
    ) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        Ok(Self {
            listener,
            addr,
            handler: Arc::new(Handler {
                metrics,
                token: options
                    .bearer_token
                    .map(|t| Sha256::digest(t.as_bytes()).into()),
                loopback: addr.ip().is_loopback(),
                audit: options.audit,
                audit_queue_capacity: options.audit_queue_capacity,
            }),
        })
    }

    /// The bound address (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled; open connections are dropped then.
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => return,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let (stream, remote) = tokio::select! {
                () = shutdown.cancelled() => return,
                a = self.listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        // Out of descriptors and similar: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let handler = self.handler.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler.handle(&req)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    () = stop.cancelled() => {}
                    r = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {
                        if let Ok(Err(e)) = r {
                            tracing::debug!(error = %e, %remote, "metrics connection ended with an error");
                        }
                    }
                }
            });
        }
    }
}

impl Handler {
    fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if self.loopback && !loopback_host(req) {
            tracing::debug!("metrics request refused: Host is not a loopback name");
            return plain(StatusCode::FORBIDDEN, "forbidden host\n");
        }
        if req.uri().path() != "/metrics" {
            return plain(
                StatusCode::NOT_FOUND,
                "not found; metrics are at /metrics\n",
            );
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        if let Some(expected) = &self.token
            && !self.authorized(req, expected)
        {
            tracing::debug!("metrics scrape refused: missing or wrong bearer token");
            let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return r;
        }
        let live = Live {
            audit_queue_depth: self
                .audit
                .as_ref()
                .map(|a| u64::try_from(a.queue_depth()).unwrap_or(u64::MAX)),
            audit_queue_capacity: self.audit_queue_capacity,
            audit_dropped: self.audit.as_ref().map(AuditLog::dropped),
        };
        let body = if req.method() == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(self.metrics.render(&live))
        };
        let mut r = Response::new(Full::new(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(CONTENT_TYPE),
        );
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        r
    }

    fn authorized(&self, req: &Request<Incoming>, expected: &[u8; 32]) -> bool {
        let Some(given) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
        else {
            return false;
        };
        // Digests of equal length, compared without an early exit: the time taken says
        // nothing about how much of the token was right.
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// True when the request's `Host` (one header, or the URI's authority) names this machine's
/// loopback: `localhost`, an IPv4 address in 127.0.0.0/8 or `[::1]`, with any port.
fn loopback_host(req: &Request<Incoming>) -> bool {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.to_str().ok(),
        (None, _) => req.uri().host(),
        _ => None,
    };
    host.is_some_and(is_loopback_name)
}

fn is_loopback_name(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[::1]:port`
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::{bearer, is_loopback_name};

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for ok in [
            "localhost",
            "LOCALHOST:9464",
            "127.0.0.1",
            "127.0.0.1:9464",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:9464",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9464",
            "localhost.evil.example",
            "127.0.0.1.nip.io:9464",
            "10.0.0.1",
            "[::2]:1",
            "",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
