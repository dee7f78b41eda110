//! The shared client against real servers on loopback: bounded bodies, redirects returned as
//! answers, timeouts, URLs it refuses, and https to a server of an internal certificate authority.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use warden_http::{Client, Error};

/// A loopback HTTP/1.1 server answering every request with `answer`: its URL, the number of
/// connections it accepted, and its task. With `keep_alive` false it closes each connection
/// after its answer.
struct TestServer {
    url: url::Url,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start(
        keep_alive: bool,
        answer: fn(http::Request<Incoming>) -> http::Response<Full<Bytes>>,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service =
                        service_fn(move |r| async move { Ok::<_, Infallible>(answer(r)) });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/path")).expect("a url");
        TestServer {
            url,
            accepted,
            task,
        }
    }
}

/// A loopback TCP server that is not HTTP-aware: `serve` gets the listener and speaks (or
/// stays silent) as it likes. Its URL and task.
async fn raw_server<F, Fut>(serve: F) -> (url::Url, tokio::task::JoinHandle<()>)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("bound").port();
    let task = tokio::spawn(serve(listener));
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).expect("a url");
    (url, task)
}

fn get(url: &url::Url) -> warden_http::Request {
    warden_http::request(
        Method::GET,
        warden_http::uri(url).expect("a request target"),
        HeaderMap::new(),
        Bytes::new(),
    )
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the test finished in time")
}

#[tokio::test]
async fn bodies_are_read_under_their_bound() {
    bounded(async {
        let server = TestServer::start(true, |r| {
            let n = if r.uri().query() == Some("big") {
                2000
            } else {
                1000
            };
            http::Response::new(Full::new(Bytes::from(vec![b'x'; n])))
        })
        .await;
        let url = server.url.clone();
        let client = Client::new(Duration::from_secs(5));
        let fetched = client
            .fetch(get(&url), Duration::from_secs(5), 1000)
            .await
            .unwrap();
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.body.len(), 1000);
        let mut big = url.clone();
        big.set_query(Some("big"));
        let refused = client.fetch(get(&big), Duration::from_secs(5), 1000).await;
        assert!(matches!(refused, Err(Error::TooLarge(1000))), "{refused:?}");
        server.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_redirect_is_an_answer_not_followed() {
    // Also: the user agent is set when the request sets none.
    bounded(async {
        let server = TestServer::start(true, |r| {
            assert_eq!(
                r.headers()["user-agent"].to_str().unwrap(),
                warden_http::USER_AGENT_VALUE
            );
            let mut answer = http::Response::new(Full::new(Bytes::new()));
            *answer.status_mut() = StatusCode::FOUND;
            answer
                .headers_mut()
                .insert("location", "http://127.0.0.1:9/elsewhere".parse().unwrap());
            answer
        })
        .await;
        let url = server.url.clone();
        let client = Client::new(Duration::from_secs(5));
        let fetched = client
            .fetch(get(&url), Duration::from_secs(5), 1000)
            .await
            .unwrap();
        assert_eq!(fetched.status, StatusCode::FOUND);
        server.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_silent_server_times_out() {
    bounded(async {
        // Accepts and never answers.
        let (url, server) = raw_server(|listener| async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        })
        .await;
        let client = Client::new(Duration::from_secs(5));
        let error = client
            .fetch(get(&url), Duration::from_millis(200), 1000)
            .await
            .unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
        server.abort();
    })
    .await;
}

#[test]
fn urls_with_credentials_or_fragments_are_refused() {
    for bad in [
        "http://u:p@127.0.0.1/",
        "http://u@127.0.0.1/",
        "http://127.0.0.1/#f",
    ] {
        let url = url::Url::parse(bad).unwrap();
        assert!(matches!(warden_http::uri(&url), Err(Error::Url)), "{bad}");
    }
    let ok = url::Url::parse("https://127.0.0.1:8443/mcp?x=1").unwrap();
    assert_eq!(
        warden_http::uri(&ok).unwrap().to_string(),
        "https://127.0.0.1:8443/mcp?x=1"
    );
}

/// Connections `n` sequential requests open against a `TestServer`, each answer read to the
/// end. With keep-alive, each request waits until the connection is back
/// in the pool (it goes back from a task of its own).
async fn connections_for(keep_alive: bool, n: usize) -> usize {
    // Large enough not to arrive with the head.
    let server = TestServer::start(keep_alive, |_| {
        http::Response::new(Full::new(Bytes::from(vec![b' '; 256 * 1024])))
    })
    .await;
    let url = server.url.clone();
    let client = Client::new(Duration::from_secs(5));
    for _ in 0..n {
        let fetched = client
            .fetch(get(&url), Duration::from_secs(5), 1 << 20)
            .await
            .expect("an answer");
        assert_eq!(fetched.body.len(), 256 * 1024);
        if keep_alive {
            while client.idle_connections() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    server.task.abort();
    server.accepted.load(Ordering::SeqCst)
}

#[tokio::test]
async fn connections_are_reused_once_their_answer_is_read() {
    assert_eq!(bounded(connections_for(true, 5)).await, 1);
}

#[tokio::test]
async fn connections_the_server_closes_are_not_reused() {
    assert_eq!(bounded(connections_for(false, 3)).await, 3);
}

#[tokio::test]
async fn a_streamed_body_is_cut_off_at_its_bound() {
    // Chunked, so no `Content-Length` announces the size: the bound applies as it arrives.
    bounded(async {
        let (url, server) = raw_server(|listener| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = tcp.read(&mut head).await;
            let chunk = vec![b'x'; 800];
            let mut answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..3 {
                answer.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                answer.extend_from_slice(&chunk);
                answer.extend_from_slice(b"\r\n");
            }
            answer.extend_from_slice(b"0\r\n\r\n");
            let _ = tcp.write_all(&answer).await;
        })
        .await;
        let client = Client::new(Duration::from_secs(5));
        let refused = client.fetch(get(&url), Duration::from_secs(5), 2000).await;
        assert!(matches!(refused, Err(Error::TooLarge(2000))), "{refused:?}");
        server.abort();
    })
    .await;
}

/// An HTTPS server on loopback (certificate for `localhost`) answering every request with
/// "ok"; its port. With `clients_of`, it requires a client certificate that CA issued.
async fn https_server(
    chain: Vec<warden_http::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    clients_of: Option<warden_http::CertificateDer<'static>>,
) -> (u16, tokio::task::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients_of {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|_req: http::Request<Incoming>| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn an_internal_certificate_authority_is_trusted_only_when_given() {
    bounded(async {
        let ca = warden_test::tls::internal_ca("localhost");
        let key = rustls::pki_types::PrivateKeyDer::try_from(ca.key_der.clone()).unwrap();
        let (port, server) = https_server(vec![ca.cert_der.clone().into()], key, None).await;
        let url = url::Url::parse(&format!("https://localhost:{port}/mcp")).unwrap();

        // The Mozilla roots alone: the server's certificate chains to nothing trusted.
        let plain = Client::new(Duration::from_secs(5));
        let error = plain.send(get(&url)).await.unwrap_err();
        let text = warden_http::error_chain(&error);
        assert!(text.contains("UnknownIssuer"), "{text}");

        // The CA read from its PEM file: trusted, and the request goes through.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, &ca.ca_pem).unwrap();
        let roots = warden_http::read_ca_file(&file).unwrap();
        assert_eq!(roots, vec![ca.ca_der.clone().into()]);
        let trusting = Client::with_tls(
            Duration::from_secs(5),
            warden_http::TlsOptions {
                extra_roots: roots,
                identity: None,
            },
        );
        let response = trusting.send(get(&url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        server.abort();
    })
    .await;
}

#[test]
fn a_ca_file_must_hold_certificates_that_can_be_anchors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = warden_http::read_ca_file(&dir.path().join("absent.pem")).unwrap_err();
    assert!(missing.contains("cannot read"), "{missing}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let none = warden_http::read_ca_file(&empty).unwrap_err();
    assert!(none.contains("holds no PEM certificate"), "{none}");

    // Well-formed PEM around bytes that are no certificate.
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bad = warden_http::read_ca_file(&junk).unwrap_err();
    assert!(bad.contains("cannot be a trust anchor"), "{bad}");
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_the_server_requires_one() {
    bounded(async {
        let ca = warden_test::tls::internal_ca("localhost");
        let key = rustls::pki_types::PrivateKeyDer::try_from(ca.key_der.clone()).unwrap();
        let (port, server) = https_server(
            vec![ca.cert_der.clone().into()],
            key,
            Some(ca.ca_der.clone().into()),
        )
        .await;
        let url = url::Url::parse(&format!("https://localhost:{port}/mcp")).unwrap();
        let roots = vec![warden_http::CertificateDer::from(ca.ca_der.clone())];

        // Trusting the server but presenting nothing: the server ends the handshake.
        let anonymous = Client::with_tls(
            Duration::from_secs(5),
            warden_http::TlsOptions {
                extra_roots: roots.clone(),
                identity: None,
            },
        );
        assert!(anonymous.send(get(&url)).await.is_err());

        // A certificate of the same authority, read from PEM files: answered.
        let client = ca.issue("mcp-warden client");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            dir.path().join("client.pem"),
            dir.path().join("client-key.pem"),
        );
        std::fs::write(&cert, &client.cert_pem).unwrap();
        std::fs::write(&key, &client.key_pem).unwrap();
        let identity = warden_http::ClientIdentity::read(&cert, &key).unwrap();
        let presenting = Client::with_tls(
            Duration::from_secs(5),
            warden_http::TlsOptions {
                extra_roots: roots,
                identity: Some(Arc::new(identity)),
            },
        );
        let response = presenting.send(get(&url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        server.abort();
    })
    .await;
}

#[test]
fn a_client_certificate_and_key_must_belong_together() {
    let ca = warden_test::tls::internal_ca("localhost");
    let other = ca.issue("someone else");
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let wrong_key = dir.path().join("other-key.pem");
    std::fs::write(&cert, &ca.cert_pem).unwrap();
    std::fs::write(&key, &ca.key_pem).unwrap();
    std::fs::write(&wrong_key, &other.key_pem).unwrap();
    assert!(warden_http::ClientIdentity::read(&cert, &key).is_ok());
    let mismatch = warden_http::ClientIdentity::read(&cert, &wrong_key)
        .err()
        .unwrap();
    assert!(mismatch.contains("cannot be used together"), "{mismatch}");
    let no_key = warden_http::ClientIdentity::read(&cert, &cert)
        .err()
        .unwrap();
    assert!(no_key.contains("holds no PEM private key"), "{no_key}");
    let missing = warden_http::ClientIdentity::read(&dir.path().join("absent.pem"), &key)
        .err()
        .unwrap();
    assert!(missing.contains("cannot read"), "{missing}");
    // The key never appears in an error.
    assert!(!mismatch.contains("PRIVATE KEY"));
}
