//! Streamable HTTP upstreams: a real HTTP server on 127.0.0.1.

use std::time::Duration;

use serde_json::{Value, json};
use warden_proto::{Kind, Limits};
use warden_upstream::{CloseReason, Connection, HttpSpec, UpstreamError};

use crate::support::{CALL, HttpFixture, bounded, call, drain, message, request};

fn connect(server: &HttpFixture) -> Connection {
    Connection::http(HttpSpec::new("remote", server.mcp_url())).expect("valid spec")
}

/// A connection with a legacy session, as the session layer leaves it after `initialize`.
async fn initialized(server: &HttpFixture) -> Connection {
    let conn = connect(server);
    let init = call(
        &conn,
        "initialize",
        json!({"protocolVersion": "2025-11-25"}),
    )
    .await;
    assert_eq!(
        init.result().expect("initialize succeeds")["protocolVersion"],
        json!("2025-11-25")
    );
    conn.set_protocol_version("2025-11-25");
    conn
}

fn headers(response: &warden_proto::Message) -> &Value {
    &response.result().expect("a result")["headers"]
}

#[tokio::test]
async fn captures_the_session_and_sends_transport_headers() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let mut spec = HttpSpec::new("remote", server.mcp_url());
        spec.headers = vec![("Authorization".into(), "Bearer upstream-token".into())];
        let conn = Connection::http(spec).unwrap();
        assert!(conn.session_id().is_none());
        let init = call(&conn, "initialize", json!({})).await;
        // No session and no version on the initialize itself.
        assert_eq!(headers(&init).get("mcp-session-id"), None);
        assert_eq!(headers(&init).get("mcp-protocol-version"), None);
        let session = conn.session_id().expect("session captured");
        assert!(session.starts_with("sess-"));
        conn.set_protocol_version("2025-11-25");

        let reply = call(&conn, "echo", json!({"x": 1})).await;
        let h = headers(&reply);
        assert_eq!(h["mcp-session-id"], json!(session));
        assert_eq!(h["mcp-protocol-version"], json!("2025-11-25"));
        assert_eq!(h["accept"], json!("application/json, text/event-stream"));
        assert_eq!(h["content-type"], json!("application/json"));
        assert_eq!(h["authorization"], json!("Bearer upstream-token"));
        assert_eq!(h.get("mcp-method"), None, "legacy requests mirror nothing");
        assert_eq!(reply.result().unwrap()["params"], json!({"x": 1}));
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn delivers_sse_notifications_in_order_then_the_response() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = initialized(&server).await;
        let m = request(
            json!("c-1"),
            "sse_echo",
            json!({"_meta": {"progressToken": 99}}),
        );
        let stream = conn.request(&m, CALL).await.unwrap();
        let upstream_id = stream.upstream_id().clone();
        let (notes, response) = drain(stream).await;
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].method(), Some("notifications/progress"));
        assert_eq!(
            notes[0].params().unwrap()["progressToken"],
            json!(99),
            "restored"
        );
        assert_eq!(notes[1].method(), Some("notifications/message"));
        assert_eq!(response.id(), Some(&upstream_id));
        assert_eq!(
            response.result().unwrap()["id_seen"],
            upstream_id.to_value()
        );
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn resumes_a_closed_sse_stream_with_last_event_id() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = initialized(&server).await;
        let stream = conn
            .request(&request(json!(5), "resumable", json!({})), CALL)
            .await
            .unwrap();
        let upstream_id = stream.upstream_id().clone();
        let (notes, response) = drain(stream).await;
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].params().unwrap()["data"], json!("resumed"));
        assert_eq!(response.id(), Some(&upstream_id));
        let result = response.result().unwrap();
        let last = result["last_event_id"].as_str().unwrap();
        assert!(
            last.ends_with("-0"),
            "resumed after the priming event: {last}"
        );
        let gets = server.state().await["gets"].clone();
        assert_eq!(gets[0]["last_event_id"], json!(last));
        assert_eq!(gets[0]["session"], json!(conn.session_id().unwrap()));
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn stateless_requests_mirror_headers_and_are_not_resumed() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = connect(&server);
        let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
        let m = request(
            json!(1),
            "tools/call",
            json!({"name": "héllo", "arguments": {}, "_meta": meta}),
        );
        let (_, reply) = drain(conn.request(&m, CALL).await.unwrap()).await;
        let h = headers(&reply);
        assert_eq!(h["mcp-protocol-version"], json!("2026-07-28"));
        assert_eq!(h["mcp-method"], json!("tools/call"));
        assert_eq!(h["mcp-name"], json!("=?base64?aMOpbGxv?="));
        assert_eq!(h.get("mcp-session-id"), None);

        let m = request(
            json!(2),
            "resources/read",
            json!({"uri": "test://a b", "_meta": meta}),
        );
        let (_, reply) = drain(conn.request(&m, CALL).await.unwrap()).await;
        assert_eq!(headers(&reply)["mcp-name"], json!("test://a b"));

        // 2026-07-28 has no resumability: a stream that ends early is an error.
        let m = request(json!(3), "resumable", json!({"_meta": meta}));
        let mut stream = conn.request(&m, CALL).await.unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Err(UpstreamError::Closed {
                reason: CloseReason::StreamEnded,
                ..
            }))
        ));
        assert_eq!(server.state().await["gets"], json!([]));
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn stateless_cancellation_closes_the_stream_without_a_notification() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = connect(&server);
        let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
        let stream = conn
            .request(&request(json!(1), "slow_sse", json!({"_meta": meta})), CALL)
            .await
            .unwrap();
        let upstream_id = stream.upstream_id().to_value();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(stream);
        let mut state = Value::Null;
        for _ in 0..300 {
            state = server.state().await;
            if state["disconnected"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(state["disconnected"], json!([upstream_id]));
        assert_eq!(state["cancelled"], json!([]));
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn legacy_cancellation_and_timeout_post_notifications_cancelled() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = initialized(&server).await;
        let stream = conn
            .request(&request(json!(1), "slow", json!({"ms": 2000})), CALL)
            .await
            .unwrap();
        let dropped_id = stream.upstream_id().to_value();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(stream);
        let mut timed_out = conn
            .request(
                &request(json!(2), "slow", json!({"ms": 2000})),
                Duration::from_millis(200),
            )
            .await
            .unwrap();
        let timed_out_id = timed_out.upstream_id().to_value();
        assert!(matches!(
            timed_out.next().await,
            Some(Err(UpstreamError::Timeout))
        ));
        let mut cancelled = Value::Null;
        for _ in 0..300 {
            cancelled = server.state().await["cancelled"].clone();
            if cancelled.as_array().is_some_and(|c| c.len() == 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cancelled = cancelled.as_array().unwrap();
        assert!(
            cancelled.contains(&json!({"requestId": dropped_id, "reason": "request cancelled"}))
        );
        assert!(cancelled.contains(&json!({"requestId": timed_out_id, "reason": "timeout"})));
        assert_eq!(conn.in_flight(), 0);
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_404_on_the_session_expires_it_until_reinitialized() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = initialized(&server).await;
        let first = conn.session_id().unwrap();
        call(&conn, "expire", json!({})).await;
        let mut stream = conn
            .request(&request(json!(1), "echo", json!({})), CALL)
            .await
            .unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Err(UpstreamError::SessionExpired))
        ));
        assert!(!conn.is_alive());
        assert!(matches!(
            conn.request(&request(json!(2), "echo", json!({})), CALL)
                .await,
            Err(UpstreamError::SessionExpired)
        ));
        // initialize starts a new session on the same connection.
        call(&conn, "initialize", json!({})).await;
        let second = conn.session_id().unwrap();
        assert_ne!(first, second);
        assert!(conn.is_alive());
        call(&conn, "echo", json!({})).await;
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn json_rpc_error_bodies_are_responses_and_bare_errors_are_http_errors() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = initialized(&server).await;

        let reply = call(&conn, "rpc_error_400", json!({})).await;
        assert_eq!(reply.kind(), &Kind::Error);
        assert_eq!(reply.error().unwrap()["code"], json!(-32022));

        // 404 with -32601 for this request: an answer, not an expired session.
        let reply = call(&conn, "not_found_method", json!({})).await;
        assert_eq!(reply.error().unwrap()["code"], json!(-32601));
        assert!(conn.is_alive());

        for (method, status) in [("fail_500", 500), ("redirect", 307)] {
            let mut stream = conn
                .request(&request(json!(1), method, json!({})), CALL)
                .await
                .unwrap();
            match stream.next().await {
                Some(Err(UpstreamError::Http { status: got, .. })) => {
                    assert_eq!(got.as_u16(), status)
                }
                other => panic!("{method}: expected http error, got {other:?}"),
            }
        }
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bodies_and_events_are_bounded_and_validated() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let mut spec = HttpSpec::new("remote", server.mcp_url());
        spec.limits = Limits {
            max_message_bytes: 4096,
            ..Limits::default()
        };
        let conn = Connection::http(spec).unwrap();
        let mut stream = conn
            .request(
                &request(json!(1), "big_json", json!({"bytes": 100_000})),
                CALL,
            )
            .await
            .unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Err(UpstreamError::Protocol { .. }))
        ));
        assert_eq!(conn.stats().invalid, 1);

        let reply = call(&conn, "garbage_sse", json!({})).await;
        assert_eq!(reply.result().unwrap(), &json!({"ok": true}));
        assert_eq!(conn.stats().invalid, 3);
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn server_requests_on_a_response_stream_are_answered_with_respond() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = initialized(&server).await;
        let mut stream = conn
            .request(&request(json!(1), "sse_sample", json!({})), CALL)
            .await
            .unwrap();
        let server_request = stream.next().await.unwrap().unwrap();
        assert_eq!(server_request.kind(), &Kind::Request);
        assert_eq!(server_request.method(), Some("sampling/createMessage"));
        let answer = message(json!({
            "jsonrpc": "2.0",
            "id": server_request.id().unwrap().to_value(),
            "result": {"role": "assistant", "content": {"type": "text", "text": "ok"}}
        }));
        conn.respond(&answer).await.unwrap();
        let (_, response) = drain(stream).await;
        assert_eq!(
            response.result().unwrap()["answered"]["content"]["text"],
            json!("ok")
        );
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn standalone_get_stream_feeds_unsolicited_and_resumes() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = connect(&server);
        // Taken before a session exists: the stream opens once initialize created one.
        let mut unsolicited = conn.take_unsolicited().unwrap();
        assert!(conn.take_unsolicited().is_none());
        call(&conn, "initialize", json!({})).await;
        conn.set_protocol_version("2025-11-25");
        let first = unsolicited.recv().await.unwrap().message;
        assert_eq!(first.params().unwrap()["data"], json!("first"));
        let second = unsolicited.recv().await.unwrap().message;
        assert_eq!(second.params().unwrap()["data"], json!("second after g-1"));
        // The third GET answers 405: the connection stops asking.
        let session = conn.session_id().unwrap();
        for _ in 0..300 {
            let gets = server.state().await["gets"].clone();
            if gets.as_array().is_some_and(|g| g.len() >= 3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let gets = server.state().await["gets"].clone();
        assert_eq!(gets.as_array().unwrap().len(), 3, "{gets}");
        assert!(
            gets.as_array()
                .unwrap()
                .iter()
                .all(|g| g["session"] == json!(session))
        );
        assert_eq!(gets[1]["last_event_id"], json!("g-1"));
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_405_means_no_standalone_stream() {
    bounded(async {
        let server = HttpFixture::start(&["--no-get"]).await;
        let conn = initialized(&server).await;
        let _unsolicited = conn.take_unsolicited().unwrap();
        let mut gets = 0;
        for _ in 0..300 {
            gets = server.state().await["gets"].as_array().unwrap().len();
            if gets > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(gets, 1);
        // Longer than the default reconnection delay: a retry would show up.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(server.state().await["gets"].as_array().unwrap().len(), 1);
        call(&conn, "echo", json!({})).await;
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_deletes_the_session_and_refuses_further_use() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = initialized(&server).await;
        let session = conn.session_id().unwrap();
        let pending = conn
            .request(&request(json!(1), "slow", json!({"ms": 5000})), CALL)
            .await
            .unwrap();
        conn.shutdown().await;
        let mut pending = pending;
        assert!(matches!(
            pending.next().await,
            Some(Err(UpstreamError::Closed {
                reason: CloseReason::ShutDown,
                ..
            }))
        ));
        assert_eq!(server.state().await["deleted"], json!([session]));
        assert!(!conn.is_alive());
        assert!(matches!(
            conn.request(&request(json!(2), "echo", json!({})), CALL)
                .await,
            Err(UpstreamError::Closed { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn fork_starts_a_separate_session() {
    bounded(async {
        let server = HttpFixture::start(&[]).await;
        let conn = initialized(&server).await;
        let fork = conn.fork_http().expect("http connections fork");
        assert!(fork.session_id().is_none());
        let reply = call(&fork, "echo", json!({})).await;
        assert_eq!(
            headers(&reply).get("mcp-protocol-version"),
            None,
            "no version yet"
        );
        call(&fork, "initialize", json!({})).await;
        assert_ne!(fork.session_id(), conn.session_id());
        assert!(fork.pid().is_none());
        fork.shutdown().await;
        assert!(conn.is_alive(), "the original is untouched");
        call(&conn, "echo", json!({})).await;
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_an_io_error() {
    bounded(async {
        // Bind and close a port so nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/mcp")).unwrap();
        let conn = Connection::http(HttpSpec::new("gone", url)).unwrap();
        let mut stream = conn
            .request(&request(json!(1), "echo", json!({})), CALL)
            .await
            .unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Err(UpstreamError::Io { .. }))
        ));
        let note = message(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert!(matches!(
            conn.notify(&note).await,
            Err(UpstreamError::Io { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn an_https_upstream_with_an_untrusted_certificate_is_refused() {
    // A TLS server on loopback with a self-signed certificate for `localhost`: the client
    // speaks TLS to it (offering HTTP/1.1 by ALPN), finds the certificate issued by no root
    // it trusts, and sends nothing over the connection.
    bounded(async {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let start =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
                    .await
                    .unwrap();
            let alpn: Vec<Vec<u8>> = start
                .client_hello()
                .alpn()
                .map(|p| p.map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            let handshake = start.into_stream(std::sync::Arc::new(config)).await;
            (alpn, handshake.is_ok())
        });
        let url = url::Url::parse(&format!("https://localhost:{port}/mcp")).unwrap();
        let conn = Connection::http(HttpSpec::new("untrusted", url)).unwrap();
        let mut stream = conn
            .request(&request(json!(1), "echo", json!({})), CALL)
            .await
            .unwrap();
        let error = match stream.next().await {
            Some(Err(error @ UpstreamError::Io { .. })) => error,
            other => panic!("expected an i/o error, got {other:?}"),
        };
        let text = warden_http::error_chain(&error);
        assert!(text.contains("UnknownIssuer"), "{text}");
        let (alpn, handshake_ok) = server.await.unwrap();
        assert_eq!(alpn, vec![b"http/1.1".to_vec()]);
        assert!(!handshake_ok, "the client must abort the handshake");
    })
    .await;
}
