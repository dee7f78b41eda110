//! The proxy against real sockets: a Unix-socket client speaking `CONNECT`, real TCP servers
//! on 127.0.0.1.
#![allow(missing_docs, unreachable_pub)]
#![expect(clippy::unwrap_used, reason = "tests")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use warden_egress::{AllowList, Decision, Limits, Proxy, ProxyHandle, Refusal};

const WAIT: Duration = Duration::from_secs(20);

/// A TCP server on 127.0.0.1 (port chosen by the OS) that counts connections and answers
/// each with `hello` and the first line it received.
struct Server {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(WAIT)).unwrap();
                    let mut buf = [0u8; 256];
                    let n = stream.read(&mut buf).unwrap_or(0);
                    let line = String::from_utf8_lossy(&buf[..n]);
                    let first = line.lines().next().unwrap_or("").to_owned();
                    let _ = writeln!(stream, "hello {first}");
                });
            }
        });
        Server { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The count once it reached `n` (the accept thread may run after the proxy's connect
    /// returned), or as it stands after [`WAIT`].
    async fn connections_reaching(&self, n: usize) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.connections() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.connections()
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    handle: ProxyHandle,
    decisions: Arc<Mutex<Vec<Decision>>>,
}

fn proxy(allow: &[String], limits: Limits) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let decisions = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&decisions);
    let handle = Proxy::new("test", AllowList::parse(allow).unwrap(), limits)
        .on_decision(move |d| sink.lock().unwrap().push(d.clone()))
        .bind(&dir.path().join("egress.sock"))
        .unwrap();
    Harness {
        _dir: dir,
        handle,
        decisions,
    }
}

async fn request(socket: &Path, head: &str) -> (String, UnixStream) {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(WAIT, async {
        while !response.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            response.push(byte[0]);
        }
    })
    .await
    .unwrap();
    (String::from_utf8(response).unwrap(), stream)
}

fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

#[tokio::test]
async fn connect_to_an_allowed_ip_literal_tunnels() {
    let server = Server::start();
    let h = proxy(&[format!("127.0.0.1:{}", server.port)], Limits::default());
    let (response, mut stream) = request(
        h.handle.path(),
        &format!("CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\nProxy-Authorization: Basic c2VjcmV0\r\n\r\nping\n", server.port),
    )
    .await;
    assert_eq!(status(&response), "200", "{response}");
    let mut reply = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    // The bytes sent right after the head reached the server through the tunnel.
    assert_eq!(reply, "hello ping\n");
    assert_eq!(server.connections(), 1);
    let decisions = h.decisions.lock().unwrap().clone();
    assert!(
        matches!(&decisions[..], [Decision::Allowed { host, port, .. }] if host == "127.0.0.1" && *port == server.port),
        "{decisions:?}"
    );
}

#[tokio::test]
async fn every_refusal_answers_and_the_target_never_sees_a_connection() {
    let allowed = Server::start();
    let other = Server::start();
    let h = proxy(
        &[
            format!("127.0.0.1:{}", allowed.port),
            // A name that resolves to loopback is refused: only an IP literal opens it.
            format!("localhost:{}", other.port),
        ],
        Limits::default(),
    );
    let cases = [
        (
            format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", other.port),
            "403",
            Refusal::NotAllowed,
        ),
        (
            format!("CONNECT localhost:{} HTTP/1.1\r\n\r\n", allowed.port),
            "403",
            Refusal::NotAllowed,
        ),
        (
            format!("CONNECT localhost:{} HTTP/1.1\r\n\r\n", other.port),
            "403",
            Refusal::NonPublic(warden_policy::address::AddressClass::Loopback),
        ),
        (
            format!("CONNECT 127.0.0.2:{} HTTP/1.1\r\n\r\n", allowed.port),
            "403",
            Refusal::NotAllowed,
        ),
        (
            format!("GET http://127.0.0.1:{}/ HTTP/1.1\r\n\r\n", allowed.port),
            "405",
            Refusal::NotConnect,
        ),
        (
            "CONNECT nonsense HTTP/1.1\r\n\r\n".to_owned(),
            "400",
            Refusal::Malformed,
        ),
        (
            "\x16\x03\x01\x02\x00\r\n\r\n".to_owned(),
            "400",
            Refusal::Malformed,
        ),
        (
            format!("CONNECT 127.0.0.1:{} HTTP/2\r\n\r\n", allowed.port),
            "400",
            Refusal::Malformed,
        ),
        (
            format!(
                "CONNECT 127.0.0.1:{} HTTP/1.1\r\n{}\r\n\r\n",
                allowed.port,
                "x".repeat(9000)
            ),
            "408",
            Refusal::Handshake,
        ),
    ];
    for (head, want, reason) in &cases {
        let (response, _) = request(h.handle.path(), head).await;
        assert_eq!(status(&response), *want, "{head:.60}: {response}");
        let last = h.decisions.lock().unwrap().last().cloned();
        assert!(
            matches!(&last, Some(Decision::Refused { reason: r, .. }) if r == reason),
            "{head:.60}: {last:?}"
        );
    }
    assert_eq!(allowed.connections(), 0);
    assert_eq!(other.connections(), 0);
}

#[tokio::test]
async fn bounds_hold() {
    let server = Server::start();
    let limits = Limits {
        max_connections: 1,
        handshake: Duration::from_millis(300),
        connect: Duration::from_secs(5),
        idle: Duration::from_secs(60),
    };
    let h = proxy(&[format!("127.0.0.1:{}", server.port)], limits);
    // A client that never finishes its head is cut off after the handshake time.
    let mut slow = UnixStream::connect(h.handle.path()).await.unwrap();
    slow.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, slow.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(&response), "408", "{response}");
    // One tunnel open; a second connection is turned away while it lasts.
    let (first, _open) = request(
        h.handle.path(),
        &format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", server.port),
    )
    .await;
    assert_eq!(status(&first), "200", "{first}");
    let (second, _) = request(
        h.handle.path(),
        &format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", server.port),
    )
    .await;
    assert_eq!(status(&second), "503", "{second}");
    assert_eq!(server.connections_reaching(1).await, 1);
}

#[tokio::test]
async fn dropping_the_handle_removes_the_socket() {
    let h = proxy(&["127.0.0.1:9".to_owned()], Limits::default());
    let path = h.handle.path().to_owned();
    assert!(path.exists());
    drop(h.handle);
    assert!(!path.exists());
}

#[tokio::test]
async fn a_tunnel_the_observer_cannot_record_is_refused_before_a_byte_moves() {
    // A target that reports every byte of its first connection once the proxy closes it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (received, bytes_of) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        let _ = received.send(bytes);
    });
    let dir = tempfile::tempdir().unwrap();
    let decisions = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&decisions);
    // An observer whose log refuses every record (a full fail-closed audit log).
    let handle = Proxy::new(
        "test",
        AllowList::parse(&[format!("127.0.0.1:{port}")]).unwrap(),
        Limits::default(),
    )
    .on_decision_required(move |d| {
        seen.lock().unwrap().push(d.clone());
        false
    })
    .bind(&dir.path().join("egress.sock"))
    .unwrap();
    let (response, mut stream) = request(
        handle.path(),
        &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\nsmuggled bytes\n"),
    )
    .await;
    assert_eq!(status(&response), "503", "{response}");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "nothing after the refusal: {rest:?}");
    let decisions = decisions.lock().unwrap().clone();
    assert!(
        matches!(
            &decisions[..],
            [
                Decision::Allowed { port: p, .. },
                Decision::Refused { reason: Refusal::Unrecorded, port: Some(q), .. },
            ] if *p == port && *q == port
        ),
        "{decisions:?}"
    );
    // The proxy closed its connection to the target without relaying a byte.
    let bytes = tokio::time::timeout(WAIT, bytes_of).await.unwrap().unwrap();
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    drop(handle);
}
