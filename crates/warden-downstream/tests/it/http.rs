//! Streamable HTTP: security checks, legacy sessions, SSE and resumability.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Server, SseReader, bounded};

fn request(id: u64, method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}})
}

// Proves: CAUTH-3 (DNS-rebinding defence: Host and Origin checked on every request).
#[tokio::test]
async fn refuses_foreign_host_and_origin_with_403() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let body = request(1, "tools/list");

        let mut bad_host = server.post(&body);
        bad_host
            .headers_mut()
            .insert("host", "evil.example.com".parse().unwrap());
        let (status, _, json) = server.call_json(bad_host).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(json["error"]["code"], -32600);
        assert_eq!(json["id"], Value::Null);

        let mut bad_origin = server.post(&body);
        bad_origin
            .headers_mut()
            .insert("origin", "http://evil.example.com".parse().unwrap());
        let (status, _, _) = server.call(bad_origin).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // What the conformance suite's dns-rebinding scenario sends.
        let mut both = server.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}}));
        both.headers_mut()
            .insert("host", "evil.example.com".parse().unwrap());
        both.headers_mut()
            .insert("origin", "http://evil.example.com".parse().unwrap());
        let (status, _, _) = server.call(both).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        assert!(
            server.handler.methods().is_empty(),
            "refused requests never reach the handler"
        );

        // The legitimate counterpart is served.
        let mut good = server.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}}));
        good.headers_mut().insert(
            "origin",
            format!("http://localhost:{}", server.addr.port())
                .parse()
                .unwrap(),
        );
        let (status, headers, _) = server.call(good).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.contains_key("mcp-session-id"));
    })
    .await;
}

/// A request naming its host twice is refused before the allow-list is read: two Host headers,
/// or a Host header that differs from the request's absolute target (which a proxy in front
/// might read instead).
#[tokio::test]
async fn a_request_naming_two_hosts_is_refused() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        // An initialize: served (200) wherever the host check lets it through.
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}});
        let mut twice = server.post(&body);
        twice
            .headers_mut()
            .append("host", "evil.example.com".parse().unwrap());
        let (status, _, json) = server.call_json(twice).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(json["error"]["code"], -32600);

        let mut absolute = server.post(&body);
        *absolute.uri_mut() = "http://evil.example.com/mcp".parse().unwrap();
        let (status, _, json) = server.call_json(absolute).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");

        // The same target naming the allowed host is served.
        let mut same = server.post(&body);
        *same.uri_mut() = format!("http://{}/mcp", server.host()).parse().unwrap();
        let (status, _, json) = server.call_json(same).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert!(
            server.handler.methods() == ["initialize"],
            "refused requests never reach the handler: {:?}",
            server.handler.methods()
        );
    })
    .await;
}

/// A client that accepts only JSON cannot receive a server request sent during its call: the
/// face answers it for the client (`-32601`), so the call goes on instead of waiting for an
/// answer that cannot come.
#[tokio::test]
async fn a_server_request_a_json_only_client_cannot_receive_is_answered_for_it() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        let mut json_only = server.post_in(&session, &request(5, "asks_first"));
        json_only
            .headers_mut()
            .insert("accept", "application/json".parse().unwrap());
        let (status, _, body) = server.call_json(json_only).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["result"]["answered"], true, "{body}");
        let answers = server.handler.answers.lock().unwrap().clone();
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0]["id"], "srv-1");
        assert_eq!(answers[0]["error"]["code"], -32601);
    })
    .await;
}

#[tokio::test]
async fn rejects_oversized_bodies_with_413() {
    bounded(async {
        let server = Server::start(|o| o.max_body_bytes = 1024).await;
        let big =
            json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"pad": "y".repeat(4096)}});
        let (status, _, json) = server.call_json(server.post(&big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json["error"]["code"], -32600);

        // Without Content-Length (chunked): the limit applies while reading.
        let stream = futures::stream::iter((0..8).map(|_| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b' '; 512])))
        }));
        let request = server
            .request("POST")
            .header("content-type", "application/json")
            .body(http_body_util::StreamBody::new(stream))
            .unwrap();
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(connection);
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(server.handler.methods().is_empty());
    })
    .await;
}

#[tokio::test]
async fn malformed_bodies_get_400_with_the_right_jsonrpc_code() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let raw = |text: &'static str| {
            server
                .request("POST")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(text.as_bytes())))
                .unwrap()
        };
        let cases: &[(&str, i64, Value)] = &[
            ("{not json", -32700, Value::Null),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
                -32700,
                Value::Null,
            ),
            (r#"{"jsonrpc":"1.0","id":7,"method":"a"}"#, -32600, json!(7)),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"a"}]"#,
                -32600,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"a"}"#,
                -32600,
                Value::Null,
            ),
        ];
        for (text, code, id) in cases {
            let (status, _, json) = server.call_json(raw(text)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
            assert_eq!(json["error"]["code"], *code, "{text}");
            assert_eq!(json["id"], *id, "{text}");
        }
        assert!(server.handler.methods().is_empty());
    })
    .await;
}

#[tokio::test]
async fn checks_method_path_and_content_type() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let put = server.request("PUT").body(Full::new(Bytes::new())).unwrap();
        let (status, headers, _) = server.call(put).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["allow"], "GET, POST, DELETE");

        let elsewhere = http::Request::builder()
            .method("POST")
            .uri("/other")
            .header("host", server.host())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        assert_eq!(server.call(elsewhere).await.0, StatusCode::NOT_FOUND);

        let mut text = server.post(&request(1, "x"));
        text.headers_mut()
            .insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(
            server.call(text).await.0,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );

        let mut html = server.post(&request(1, "x"));
        html.headers_mut()
            .insert("accept", "text/html".parse().unwrap());
        assert_eq!(server.call(html).await.0, StatusCode::NOT_ACCEPTABLE);
        assert!(server.handler.methods().is_empty());
    })
    .await;
}

#[tokio::test]
async fn session_lifecycle_missing_unknown_and_deleted_sessions() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        assert_eq!(session.len(), 32);

        // Missing session id: 400.
        let (status, _, json) = server
            .call_json(server.post(&request(1, "tools/list")))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["id"], 1);

        // Unknown session id: 404.
        let (status, _, _) = server
            .call(server.post_in(
                "0123456789abcdef0123456789abcdef",
                &request(2, "tools/list"),
            ))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Valid session: JSON response, no new session id.
        let (status, headers, json) = server
            .call_json(server.post_in(&session, &request(3, "tools/list")))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(json["result"]["echo"], "tools/list");
        assert!(!headers.contains_key("mcp-session-id"));

        // Notification: 202, no body.
        let (status, _, body) = server
            .call(server.post_in(
                &session,
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            ))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert!(body.is_empty());

        // Version header: the negotiated one passes, another does not.
        let mut wrong = server.post_in(&session, &request(4, "tools/list"));
        wrong
            .headers_mut()
            .insert("mcp-protocol-version", "2025-06-18".parse().unwrap());
        assert_eq!(server.call(wrong).await.0, StatusCode::BAD_REQUEST);
        let mut right = server.post_in(&session, &request(5, "tools/list"));
        right
            .headers_mut()
            .insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
        assert_eq!(server.call(right).await.0, StatusCode::OK);

        // DELETE, then the id is gone.
        let delete = server
            .request("DELETE")
            .header("mcp-session-id", &session)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(server.call(delete).await.0, StatusCode::NO_CONTENT);
        assert_eq!(
            server.handler.ended.lock().unwrap().as_slice(),
            std::slice::from_ref(&session)
        );
        let (status, _, _) = server
            .call(server.post_in(&session, &request(6, "tools/list")))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let delete = server
            .request("DELETE")
            .header("mcp-session-id", &session)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(server.call(delete).await.0, StatusCode::NOT_FOUND);
        let no_id = server
            .request("DELETE")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(server.call(no_id).await.0, StatusCode::BAD_REQUEST);
    })
    .await;
}

#[tokio::test]
async fn failed_initialize_leaves_no_session() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let (status, headers, json) = server
            .call_json(server.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "bad"}})))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["error"]["code"], -32602);
        assert!(!headers.contains_key("mcp-session-id"));
        assert_eq!(server.handler.session_count(), 0);
        assert_eq!(server.handler.ended.lock().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn streams_sse_when_messages_precede_the_response() {
    bounded(async {
        let server = Server::start(|o| o.sse_retry = Duration::from_millis(250)).await;
        let session = server.initialize().await;
        let response = server
            .send(server.post_in(&session, &request(9, "notify_first")))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-accel-buffering"], "no");
        let mut sse = SseReader::new(response);

        let priming = sse.next().await.unwrap();
        let priming_id = priming.id.clone().unwrap();
        assert!(priming.data.is_empty());
        assert_eq!(priming.retry, Some(250));
        let (stream, seq) = priming_id.split_once('-').unwrap();
        assert_eq!(seq, "0");

        let (id1, note) = sse.next_message().await.unwrap();
        assert_eq!(note["method"], "notifications/progress");
        assert_eq!(id1.unwrap(), format!("{stream}-1"));
        let (id2, done) = sse.next_message().await.unwrap();
        assert_eq!(done["id"], 9);
        assert_eq!(done["result"]["done"], true);
        assert_eq!(id2.unwrap(), format!("{stream}-2"));
        assert!(sse.next().await.is_none(), "stream ends after the response");

        // The same request answered with the response first is plain JSON.
        let (status, headers, _) = server
            .call(server.post_in(&session, &request(10, "tools/list")))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");

        // A client that takes only JSON gets the response as JSON.
        let mut json_only = server.post_in(&session, &request(11, "notify_first"));
        json_only
            .headers_mut()
            .insert("accept", "application/json".parse().unwrap());
        let (status, headers, body) = server.call_json(json_only).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body["id"], 11);
    })
    .await;
}

#[tokio::test]
async fn get_stream_delivers_unsolicited_messages_one_stream_at_a_time() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        let get = || {
            server
                .request("GET")
                .header("accept", "text/event-stream")
                .header("mcp-session-id", &session)
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let response = server.send(get()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut sse = SseReader::new(response);
        let priming = sse.next().await.unwrap();
        assert!(priming.data.is_empty() && priming.id.is_some());

        let (status, _, _) = server
            .call(server.post_in(&session, &json!({"jsonrpc": "2.0", "id": 1, "method": "push", "params": {"text": "hello"}})))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, pushed) = sse.next_message().await.unwrap();
        assert_eq!(pushed["method"], "notifications/message");
        assert_eq!(pushed["params"]["text"], "hello");

        // A second GET while the first is open.
        let (status, _, json) = server.call_json(get()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(json["error"]["code"], -32600);

        // Closing the first stream gives the queue back.
        drop(sse);
        let mut reopened = None;
        for _ in 0..100 {
            let response = server.send(get()).await;
            if response.status() == StatusCode::OK {
                reopened = Some(response);
                break;
            }
            // The producer notices the disconnect only when it next looks; nudge it.
            let _ = server
                .call(server.post_in(&session, &json!({"jsonrpc": "2.0", "id": 2, "method": "push", "params": {"text": "nudge"}})))
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut sse = SseReader::new(reopened.expect("a new get stream after the first closed"));
        assert!(sse.next().await.unwrap().data.is_empty(), "priming");

        // GET needs a session and an SSE Accept.
        let no_session = server
            .request("GET")
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(server.call(no_session).await.0, StatusCode::BAD_REQUEST);
        let json_accept = server
            .request("GET")
            .header("accept", "application/json")
            .header("mcp-session-id", &session)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(server.call(json_accept).await.0, StatusCode::NOT_ACCEPTABLE);
    })
    .await;
}

/// Reads a gated stream up to its second notification; returns its stream number.
async fn open_gated(server: &Server, session: &str, id: u64, tag: &str) -> (SseReader, String) {
    let response = server
        .send(server.post_in(
            session,
            &json!({"jsonrpc": "2.0", "id": id, "method": "gated", "params": {"tag": tag}}),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut sse = SseReader::new(response);
    let priming = sse.next().await.unwrap().id.unwrap();
    let stream = priming.split_once('-').unwrap().0.to_owned();
    for n in 1..=2 {
        let (id, message) = sse.next_message().await.unwrap();
        assert_eq!(id.unwrap(), format!("{stream}-{n}"));
        assert_eq!(message["params"]["n"], n);
    }
    (sse, stream)
}

#[tokio::test]
async fn last_event_id_replays_only_the_named_stream_and_delivers_the_rest() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        let (a, stream_a) = open_gated(&server, &session, 1, "a").await;
        let (b, stream_b) = open_gated(&server, &session, 2, "b").await;
        assert_ne!(stream_a, stream_b);
        // Both clients disconnect before their responses; the gateway keeps consuming.
        drop(a);
        drop(b);
        server.handler.gate.add_permits(2);

        let resume = server
            .request("GET")
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .header("last-event-id", format!("{stream_a}-1"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = server.send(resume).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut sse = SseReader::new(response);
        let mut got = vec![];
        while let Some((id, message)) = sse.next_message().await {
            let id = id.unwrap();
            assert!(
                id.starts_with(&format!("{stream_a}-")),
                "event {id} from another stream"
            );
            if let Some(tag) = message["params"]["tag"].as_str() {
                assert_eq!(tag, "a");
            }
            got.push((id, message));
        }
        let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            [
                format!("{stream_a}-2"),
                format!("{stream_a}-3"),
                format!("{stream_a}-4")
            ]
        );
        assert_eq!(got[2].1["id"], 1);
        assert_eq!(got[2].1["result"]["tag"], "a");
    })
    .await;
}

/// A session whose every stream is being read refuses one more streamed request (429, `-31004`,
/// `Retry-After`) instead of ending one a client is reading; the read streams finish intact.
#[tokio::test]
async fn a_streamed_request_past_the_session_cap_is_refused_not_another_stopped() {
    bounded(async {
        let server = Server::start(|o| o.max_streams_per_session = 2).await;
        let session = server.initialize().await;
        let (mut a, _) = open_gated(&server, &session, 1, "a").await;
        let (mut b, _) = open_gated(&server, &session, 2, "b").await;
        let refused = server
            .send(server.post_in(
                &session,
                &json!({"jsonrpc": "2.0", "id": 3, "method": "gated", "params": {"tag": "c"}}),
            ))
            .await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        let body = http_body_util::BodyExt::collect(refused.into_body())
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("-31004") && text.contains("\"id\":3"),
            "{text}"
        );
        let gated = server
            .handler
            .methods()
            .iter()
            .filter(|m| *m == "gated")
            .count();
        assert_eq!(gated, 2, "the refused call never started");
        server.handler.gate.add_permits(2);
        for (sse, tag) in [(&mut a, "a"), (&mut b, "b")] {
            let mut last = None;
            while let Some((_, message)) = sse.next_message().await {
                last = Some(message);
            }
            let last = last.expect("the stream went on");
            assert_eq!(last["result"]["tag"], tag, "{last}");
        }
    })
    .await;
}

/// The standalone GET stream is refused the same way when every stream of the session is
/// being read (429, `Retry-After`), and the session's unsolicited messages stay for a later GET.
#[tokio::test]
async fn a_get_stream_past_the_session_cap_is_refused() {
    bounded(async {
        let server = Server::start(|o| o.max_streams_per_session = 1).await;
        let session = server.initialize().await;
        let (mut a, _) = open_gated(&server, &session, 1, "a").await;
        let refused = server.send(get_stream(&server, &session, None)).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        server.handler.gate.add_permits(1);
        while a.next_message().await.is_some() {}
        let again = server.send(get_stream(&server, &session, None)).await;
        assert_eq!(
            again.status(),
            StatusCode::OK,
            "the GET stream is still available"
        );
    })
    .await;
}

#[tokio::test]
async fn slowloris_client_is_disconnected_after_the_header_timeout() {
    bounded(async {
        let server = Server::start(|o| o.header_read_timeout = Duration::from_millis(300)).await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"POST /mcp HTTP/1.1\r\nHost: local")
            .await
            .unwrap();
        let mut sink = vec![];
        // The server closes the connection; the generous bound only guards the test.
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "connection still open after 10 s");
        assert!(server.handler.methods().is_empty());
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_returns() {
    bounded(async {
        let server = Server::start(|o| o.shutdown_grace = Duration::from_secs(5)).await;
        let session = server.initialize().await;
        let get = server
            .request("GET")
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let mut sse = SseReader::new(server.send(get).await);
        assert!(sse.next().await.is_some());
        server.shutdown.cancel();
        assert!(sse.next().await.is_none(), "stream ended by shutdown");
        server.task.await.unwrap().unwrap();
        assert!(
            TcpStream::connect(server.addr).await.is_err(),
            "listener closed"
        );
    })
    .await;
}

#[tokio::test]
async fn rejects_bad_options_at_bind() {
    let handler = crate::support::TestHandler::new();
    let mut opts = warden_downstream::HttpOptions::new("127.0.0.1:0".parse().unwrap());
    opts.allowed_hosts = warden_config::HostAllowlist::Only(vec![]);
    assert!(
        warden_downstream::bind_http(handler.clone(), opts)
            .await
            .is_err()
    );
    let mut opts = warden_downstream::HttpOptions::new("127.0.0.1:0".parse().unwrap());
    opts.path = "no-slash".into();
    assert!(warden_downstream::bind_http(handler, opts).await.is_err());
}

/// A GET for `session`'s standalone stream, resuming after `last` if given.
fn get_stream(server: &Server, session: &str, last: Option<String>) -> http::Request<Full<Bytes>> {
    let mut builder = server
        .request("GET")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session);
    if let Some(last) = last {
        builder = builder.header("last-event-id", last);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

/// Resuming the standalone stream while its first connection is still open takes it over:
/// the old response ends at once (it does not linger until the next message), and the new
/// one gets what comes next.
#[tokio::test]
async fn resuming_the_get_stream_ends_the_connection_it_replaces() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        let get = |last: Option<String>| get_stream(&server, &session, last);
        let mut first = SseReader::new(server.send(get(None)).await);
        let priming = first.next().await.unwrap().id.unwrap();
        let mut second = SseReader::new(server.send(get(Some(priming))).await);
        let ended = tokio::time::timeout(Duration::from_secs(5), first.next()).await;
        assert!(
            matches!(ended, Ok(None)),
            "the replaced connection stayed open: {ended:?}"
        );
        let push = json!({"jsonrpc": "2.0", "id": 1, "method": "push", "params": {"text": "next"}});
        server.call(server.post_in(&session, &push)).await;
        let (_, message) = second.next_message().await.unwrap();
        assert_eq!(message["params"]["text"], "next");
    })
    .await;
}

#[tokio::test]
async fn get_stream_resumes_with_last_event_id_and_continues_live() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        let get = |last: Option<String>| get_stream(&server, &session, last);
        let push = |id: u64, text: &str| {
            server.post_in(
                &session,
                &json!({"jsonrpc": "2.0", "id": id, "method": "push", "params": {"text": text}}),
            )
        };
        let mut sse = SseReader::new(server.send(get(None)).await);
        let stream = sse
            .next()
            .await
            .unwrap()
            .id
            .unwrap()
            .split_once('-')
            .unwrap()
            .0
            .to_owned();
        for (n, text) in [(1, "one"), (2, "two")] {
            server.call(push(n, text)).await;
            let (id, message) = sse.next_message().await.unwrap();
            assert_eq!(id.unwrap(), format!("{stream}-{n}"));
            assert_eq!(message["params"]["text"], text);
        }
        drop(sse);

        // Resume after the first event: the second is replayed, then the same stream goes on.
        let mut resumed = None;
        for _ in 0..100 {
            let mut sse = SseReader::new(server.send(get(Some(format!("{stream}-1")))).await);
            let (id, message) = sse.next_message().await.unwrap();
            assert_eq!(id.unwrap(), format!("{stream}-2"));
            assert_eq!(message["params"]["text"], "two");
            server.call(push(3, "three")).await;
            // Until the old connection's producer noticed the disconnect, the resumed stream
            // may end after the replay; then try again.
            match sse.next_message().await {
                Some((id, message)) => {
                    resumed = Some((id, message));
                    break;
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let (id, message) = resumed.expect("resumed stream continued live");
        assert!(id.unwrap().starts_with(&format!("{stream}-")));
        assert_eq!(message["method"], "notifications/message");
    })
    .await;
}

/// Opens a session that negotiated `version`; returns its id.
async fn session_of(server: &Server, version: &str) -> String {
    let (status, headers, body) = server
        .call_json(server.post(&json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["protocolVersion"], version);
    headers["mcp-session-id"].to_str().unwrap().to_owned()
}

const BATCH: &str = concat!(
    r#"[{"jsonrpc":"2.0","id":1,"method":"slow","params":{"ms":100}},"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"},"#,
    r#"{"jsonrpc":"2.0","id":"b","method":"notify_first"},"#,
    r#"{"jsonrpc":"1.0","id":3,"method":"x"}, 42,"#,
    r#"{"jsonrpc":"2.0","id":4,"method":"unknown/method"}]"#
);

fn batch_post(
    server: &Server,
    session: &str,
    body: &str,
    accept: &str,
) -> http::Request<Full<Bytes>> {
    server
        .request("POST")
        .header("content-type", "application/json")
        .header("accept", accept)
        .header("mcp-session-id", session)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// A 2025-03-26 session may post JSON-RPC batches (that revision's servers must accept them):
/// over SSE each response is an event, after what its request streamed first; a client that
/// takes only JSON gets one array in the batch's order.
#[tokio::test]
async fn a_2025_03_26_session_gets_its_batches_answered() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = session_of(&server, "2025-03-26").await;

        let response = server
            .send(batch_post(
                &server,
                &session,
                BATCH,
                "application/json, text/event-stream",
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut events = SseReader::new(response);
        let mut messages = vec![];
        while let Some((_, message)) = events.next_message().await {
            messages.push(message);
        }
        let progress = messages
            .iter()
            .position(|m| m["method"] == "notifications/progress")
            .expect("the streamed note");
        let answer_b = messages.iter().position(|m| m["id"] == "b").unwrap();
        assert!(progress < answer_b, "{messages:?}");
        let mut ids: Vec<String> = messages
            .iter()
            .filter(|m| m.get("result").is_some() || m.get("error").is_some())
            .map(|m| m["id"].to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, ["\"b\"", "1", "3", "4", "null"], "{messages:?}");
        assert!(
            server
                .handler
                .methods()
                .contains(&"notifications/initialized".to_owned())
        );

        let (status, headers, body) = server
            .call_json(batch_post(&server, &session, BATCH, "application/json"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        let answers = body.as_array().unwrap_or_else(|| panic!("{body}"));
        let ids: Vec<Value> = answers.iter().map(|a| a["id"].clone()).collect();
        // The invalid elements' errors first, then the requests' responses as they came.
        assert_eq!(ids.len(), 5, "{body}");
        assert_eq!(&ids[..2], &[json!(3), Value::Null], "{body}");
        assert!(ids.contains(&json!(1)) && ids.contains(&json!("b")) && ids.contains(&json!(4)));

        // Only notifications: 202, nothing to answer.
        let (status, _, _) = server
            .call(batch_post(
                &server,
                &session,
                r#"[{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]"#,
                "application/json, text/event-stream",
            ))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // Empty or malformed batches: one error, as for one message.
        for (body, code) in [
            ("[]", -32600),
            (r#"[{"a":1,"a":2}]"#, -32700),
            ("[{", -32700),
        ] {
            let (status, _, json) = server
                .call_json(batch_post(&server, &session, body, "application/json"))
                .await;
            assert_eq!(
                (status, json["error"]["code"].clone()),
                (StatusCode::BAD_REQUEST, json!(code)),
                "{body}"
            );
        }
    })
    .await;
}

/// Later revisions have no batches: an array is refused with 400, and nothing in it runs.
#[tokio::test]
async fn a_batch_outside_a_2025_03_26_session_is_refused() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = session_of(&server, "2025-11-25").await;
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"a"}]"#;
        let (status, _, json) = server
            .call_json(batch_post(&server, &session, batch, "application/json"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(json["error"]["code"], -32600);
        // Without a session (initialize may not be batched) and in an unknown one.
        let mut alone = batch_post(&server, &session, batch, "application/json");
        alone.headers_mut().remove("mcp-session-id");
        let (status, _, json) = server.call_json(alone).await;
        assert_eq!(
            (status, json["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(-32600))
        );
        let (status, _, _) = server
            .call_json(batch_post(
                &server,
                "0123456789abcdef0123456789abcdef",
                batch,
                "application/json",
            ))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!server.handler.methods().contains(&"a".to_owned()));
    })
    .await;
}

/// A request whose session ends while it is handled (a DELETE racing it) fails with 404, as it
/// would have on arrival: the client learns to start a new session.
#[tokio::test]
async fn a_request_whose_session_ended_meanwhile_gets_404() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        let mut ended = server.post_in(&session, &request(5, "ended_meanwhile"));
        ended
            .headers_mut()
            .insert("accept", "application/json".parse().unwrap());
        let (status, _, json) = server.call_json(ended).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
        assert_eq!(
            (json["id"].clone(), json["error"]["code"].clone()),
            (json!(5), json!(-32600))
        );
        // A failure in a live session stays 200.
        let session = server.initialize().await;
        let mut live = server.post_in(&session, &request(6, "unknown/method"));
        live.headers_mut()
            .insert("accept", "application/json".parse().unwrap());
        let (status, _, json) = server.call_json(live).await;
        assert_eq!(status, StatusCode::OK, "{json}");
    })
    .await;
}

/// A batch's calls end when its JSON-only client goes away; `initialize` is refused in a batch;
/// a batch longer than 32 is refused whole.
#[tokio::test]
async fn a_batch_is_bounded_and_ends_with_its_client() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = session_of(&server, "2025-03-26").await;
        let slow = r#"[{"jsonrpc":"2.0","id":1,"method":"slow","params":{"ms":600}},{"jsonrpc":"2.0","id":2,"method":"slow","params":{"ms":600}}]"#;
        let gone = tokio::time::timeout(
            Duration::from_millis(150),
            server.call(batch_post(&server, &session, slow, "application/json")),
        )
        .await;
        assert!(gone.is_err(), "the client gave up before the answers");
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(
            server
                .handler
                .slow_finished
                .load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the calls were dropped with their client"
        );

        let with_initialize = r#"[{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"2025-03-26"}},{"jsonrpc":"2.0","id":4,"method":"ping"}]"#;
        let (status, _, body) = server
            .call_json(batch_post(&server, &session, with_initialize, "application/json"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answers = body.as_array().unwrap_or_else(|| panic!("{body}"));
        let refused = answers.iter().find(|a| a["id"] == 3).unwrap();
        assert_eq!(refused["error"]["code"], -32600, "{body}");
        assert!(answers.iter().any(|a| a["id"] == 4 && a.get("result").is_some()), "{body}");

        let long: Vec<Value> = (100..133)
            .map(|id| json!({"jsonrpc":"2.0","id":id,"method":"counted"}))
            .collect();
        let (status, _, body) = server
            .call_json(batch_post(&server, &session, &Value::Array(long).to_string(), "application/json"))
            .await;
        assert_eq!((status, body["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!(-32600)), "{body}");
        assert!(!server.handler.methods().contains(&"counted".to_owned()));
    })
    .await;
}

/// A batch with requests meets the session's stream cap as one request does: refused (429,
/// `Retry-After`) before any of its calls starts, when every stream is being read.
#[tokio::test]
async fn a_batch_past_the_session_stream_cap_is_refused_before_it_runs() {
    bounded(async {
        let server = Server::start(|o| o.max_streams_per_session = 1).await;
        let session = session_of(&server, "2025-03-26").await;
        let (mut a, _) = open_gated(&server, &session, 1, "a").await;
        let batch = r#"[{"jsonrpc":"2.0","id":7,"method":"counted"},{"jsonrpc":"2.0","id":8,"method":"counted"}]"#;
        let refused = server
            .send(batch_post(&server, &session, batch, "application/json, text/event-stream"))
            .await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        assert!(!server.handler.methods().contains(&"counted".to_owned()));
        server.handler.gate.add_permits(1);
        while a.next_message().await.is_some() {}
    })
    .await;
}
