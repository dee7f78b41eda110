//! HTTPS: a self-signed certificate made in the test, TLS 1.2 and 1.3 clients, and a TLS 1.1
//! client refused.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use warden_downstream::TlsFiles;

use crate::support::{Server, bounded};

struct Certs {
    _dir: tempfile::TempDir,
    files: TlsFiles,
    cert_der: Vec<u8>,
}

fn self_signed() -> Certs {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    Certs {
        _dir: dir,
        files: TlsFiles { cert, key },
        cert_der: certified.cert.der().to_vec(),
    }
}

fn connector(
    certs: &Certs,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.cert_der.clone().into()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn serves_https_to_tls12_and_tls13_clients() {
    bounded(async {
        let certs = self_signed();
        let files = certs.files.clone();
        let server = Server::start(|o| o.tls = Some(files)).await;
        for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
            let tcp = TcpStream::connect(server.addr).await.unwrap();
            let tls = connector(&certs, versions, &[b"http/1.1"])
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(connection);
            let request = server.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}));
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response.headers().contains_key("mcp-session-id"));
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["result"]["protocolVersion"], "2025-11-25");
        }

        // HTTP/2 by ALPN: the host comes from the :authority pseudo-header.
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let tls = connector(&certs, &[&rustls::version::TLS13], &[b"h2"])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        for (authority, expected) in [
            (server.host(), StatusCode::OK),
            ("evil.example.com".to_owned(), StatusCode::FORBIDDEN),
        ] {
            let mut request = server.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}));
            request.headers_mut().remove("host");
            *request.uri_mut() = format!("https://{authority}/mcp").parse().unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), expected, "{authority}");
        }

        // Plain HTTP on the TLS port gets nowhere.
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /mcp HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut reply = vec![];
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply)).await;
        assert!(!reply.starts_with(b"HTTP/1.1 200"));
    })
    .await;
}

/// A minimal TLS 1.1 ClientHello: record version 3.1, client version 3.2, one RSA cipher
/// suite, no extensions.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x02, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(hello.len()).unwrap().to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

// Proves: TLS-3 (TLS 1.2+ only on the gateway listener).
#[tokio::test]
async fn refuses_a_tls11_client() {
    bounded(async {
        let certs = self_signed();
        let files = certs.files.clone();
        let server = Server::start(|o| o.tls = Some(files)).await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&tls11_client_hello()).await.unwrap();
        let mut reply = vec![];
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply)).await;
        // Either an alert record (0x15) or a closed connection; never a ServerHello (0x16).
        assert!(
            reply.is_empty() || reply[0] == 0x15,
            "server answered a TLS 1.1 hello with {:02x?}",
            &reply[..reply.len().min(8)]
        );
        assert!(server.handler.methods().is_empty());
    })
    .await;
}

#[tokio::test]
async fn missing_tls_files_fail_at_bind() {
    let handler = crate::support::TestHandler::new();
    let mut opts = warden_downstream::HttpOptions::new("127.0.0.1:0".parse().unwrap());
    opts.tls = Some(TlsFiles {
        cert: "/nonexistent/cert.pem".into(),
        key: "/nonexistent/key.pem".into(),
    });
    let error = warden_downstream::bind_http(handler, opts)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/cert.pem"),
        "{error}"
    );
}

/// An HTTP/2 connection that opens no request (here not even the client preface) is closed
/// after the header-read timeout: HTTP/2 has no header timeout of its own, and its pings
/// would keep it open, holding a connection slot for ever.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    bounded(async {
        let certs = self_signed();
        let files = certs.files.clone();
        let server = Server::start(|o| {
            o.tls = Some(files);
            o.header_read_timeout = Duration::from_millis(300);
        })
        .await;
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut tls = connector(&certs, &[&rustls::version::TLS13], &[b"h2"])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        // The server's own preface may come first; then the connection must end.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 1024];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the idle connection was kept open");

        // One that was used, then left idle, is closed gracefully (GOAWAY).
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let tls = connector(&certs, &[&rustls::version::TLS13], &[b"h2"])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        let connection = tokio::spawn(connection);
        let mut request = server.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}));
        request.headers_mut().remove("host");
        *request.uri_mut() = format!("https://{}/mcp", server.host()).parse().unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        drop(response.into_body().collect().await.unwrap());
        let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
        assert!(ended.is_ok(), "the idle connection was kept open after its request");
    })
    .await;
}
