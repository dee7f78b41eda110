//! Stateless (2026-07-28) requests: header–body validation and status mapping.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::support::{ANNOTATED_TOOL, Server, SseReader, bounded};

const V: &str = "2026-07-28";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}
    })
}

fn body(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = meta();
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A POST with the headers a modern client sends, then `edit` applied.
fn modern(
    server: &Server,
    body: &Value,
    headers: &[(&str, &str)],
    remove: &[&str],
) -> http::Request<Full<Bytes>> {
    let method = body["method"].as_str().unwrap();
    let mut request = server.post(body);
    let h = request.headers_mut();
    h.insert("mcp-protocol-version", V.parse().unwrap());
    h.insert("mcp-method", method.parse().unwrap());
    if let Some(name) = body["params"]["name"]
        .as_str()
        .or(body["params"]["uri"].as_str())
    {
        h.insert("mcp-name", name.parse().unwrap());
    }
    for name in remove {
        h.remove(*name);
    }
    for (name, value) in headers {
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

#[tokio::test]
async fn serves_stateless_requests_without_a_session() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let (status, headers, json) = server
            .call_json(modern(
                &server,
                &body(5, "server/discover", json!({})),
                &[],
                &[],
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["id"], 5);
        assert!(!headers.contains_key("mcp-session-id"));
        let seen = server.handler.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].stateless);
        assert_eq!(server.handler.session_count(), 0);

        // A stale session id is ignored: the body's `_meta` decides.
        let (status, headers, _) = server
            .call_json(modern(
                &server,
                &body(6, "tools/list", json!({})),
                &[("mcp-session-id", "0123456789abcdef0123456789abcdef")],
                &[],
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!headers.contains_key("mcp-session-id"));

        // Whitespace around values, lower- and upper-case header names, base64 names.
        let call = body(7, "tools/call", json!({"name": "héllo", "arguments": {}}));
        let mut request = modern(&server, &call, &[], &["mcp-name"]);
        request
            .headers_mut()
            .insert("MCP-NAME", "=?base64?aMOpbGxv?=".parse().unwrap());
        let (status, _, json) = server.call_json(request).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        let call = body(8, "tools/call", json!({"name": "echo", "arguments": {}}));
        let (status, _, _) = server
            .call_json(modern(&server, &call, &[("mcp-name", "  echo  ")], &[]))
            .await;
        assert_eq!(status, StatusCode::OK);

        // Notifications are accepted with 202.
        let note =
            json!({"jsonrpc": "2.0", "method": "notifications/x", "params": {"_meta": meta()}});
        let (status, _, _) = server.call(modern(&server, &note, &[], &[])).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    })
    .await;
}

// Proves: API-1 (headers that disagree with the body are refused before any routing).
#[tokio::test]
async fn header_mismatches_are_400_header_mismatch_with_the_request_id() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let list = body(11, "tools/list", json!({}));
        let call = body(12, "tools/call", json!({"name": "echo", "arguments": {}}));
        let read = body(13, "resources/read", json!({"uri": "test://a"}));
        let mut wrong_meta = list.clone();
        wrong_meta["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] =
            json!("v999.0.0");
        let cases: Vec<(&str, http::Request<Full<Bytes>>)> = vec![
            (
                "missing version header",
                modern(&server, &list, &[], &["mcp-protocol-version"]),
            ),
            (
                "version header differs from _meta",
                modern(&server, &wrong_meta, &[], &[]),
            ),
            (
                "missing Mcp-Method",
                modern(&server, &list, &[], &["mcp-method"]),
            ),
            (
                "other method",
                modern(&server, &list, &[("mcp-method", "prompts/list")], &[]),
            ),
            (
                "method case differs",
                modern(&server, &list, &[("mcp-method", "TOOLS/LIST")], &[]),
            ),
            (
                "wrong Mcp-Name",
                modern(&server, &call, &[("mcp-name", "wrong_tool_name")], &[]),
            ),
            (
                "missing Mcp-Name",
                modern(&server, &call, &[], &["mcp-name"]),
            ),
            (
                "wrong uri",
                modern(&server, &read, &[("mcp-name", "test://b")], &[]),
            ),
            (
                "bad base64 padding",
                modern(&server, &call, &[("mcp-name", "=?base64?ZWNobw?=")], &[]),
            ),
            (
                "bad base64 alphabet",
                modern(&server, &call, &[("mcp-name", "=?base64?ZW!!obw==?=")], &[]),
            ),
        ];
        for (what, request) in cases {
            let id = serde_json::from_slice::<Value>(
                &http_body_util::BodyExt::collect(request.body().clone())
                    .await
                    .unwrap()
                    .to_bytes(),
            )
            .unwrap()["id"]
                .clone();
            let (status, _, json) = server.call_json(request).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
            assert_eq!(json["error"]["code"], -32020, "{what}: {json}");
            assert_eq!(json["id"], id, "{what}");
        }
        assert!(
            server.handler.methods().is_empty(),
            "no mismatched request reached the handler"
        );
    })
    .await;
}

/// What a case is about, the call's arguments, and its `Mcp-Param-*` headers.
type ParamCase = (&'static str, Value, Vec<(&'static str, &'static str)>);

// Proves: API-1 (a tools/call whose Mcp-Param headers disagree with its arguments is refused
// before the handler, so nothing routes on a header the body contradicts).
#[tokio::test]
async fn mcp_param_headers_are_checked_against_the_annotated_arguments() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let call = |id: u64, arguments: Value| {
            body(
                id,
                "tools/call",
                json!({"name": ANNOTATED_TOOL, "arguments": arguments}),
            )
        };
        let full = json!({"region": "Hello", "options": {"count": 42}, "query": "q"});

        // Accepted: literal, base64, numerically equal, any header-name case, whitespace
        // around the value; null and absent arguments need no header.
        let accepted: Vec<ParamCase> = vec![
            (
                "literal values",
                full.clone(),
                vec![("Mcp-Param-Region", "Hello"), ("mcp-param-count", "42")],
            ),
            (
                "base64 and 42.0",
                full.clone(),
                vec![
                    ("MCP-PARAM-REGION", "  =?base64?SGVsbG8=?=  "),
                    ("Mcp-Param-Count", "42.0"),
                ],
            ),
            (
                "non-ascii value",
                json!({"region": "Grüße"}),
                vec![("Mcp-Param-Region", "=?base64?R3LDvMOfZQ==?=")],
            ),
            (
                "null and absent arguments",
                json!({"region": null, "options": {}}),
                vec![],
            ),
            ("no arguments at all", json!({}), vec![]),
        ];
        for (n, (what, arguments, headers)) in accepted.into_iter().enumerate() {
            let request = call(100 + n as u64, arguments);
            let (status, _, json) = server
                .call_json(modern(&server, &request, &headers, &[]))
                .await;
            assert_eq!(status, StatusCode::OK, "{what}: {json}");
            assert_eq!(json["result"]["echo"], "tools/call", "{what}");
        }
        let reached = server.handler.methods().len();

        let refused: Vec<ParamCase> = vec![
            (
                "missing header, value in body",
                full.clone(),
                vec![("Mcp-Param-Count", "42")],
            ),
            (
                "missing nested header",
                full.clone(),
                vec![("Mcp-Param-Region", "Hello")],
            ),
            (
                "invalid base64 padding",
                full.clone(),
                vec![
                    ("Mcp-Param-Region", "=?base64?SGVsbG8?="),
                    ("Mcp-Param-Count", "42"),
                ],
            ),
            (
                "invalid base64 characters",
                full.clone(),
                vec![
                    ("Mcp-Param-Region", "=?base64?SGVs!!!bG8=?="),
                    ("Mcp-Param-Count", "42"),
                ],
            ),
            (
                "different value",
                full.clone(),
                vec![("Mcp-Param-Region", "World"), ("Mcp-Param-Count", "42")],
            ),
            (
                "different number",
                full.clone(),
                vec![("Mcp-Param-Region", "Hello"), ("Mcp-Param-Count", "43")],
            ),
            (
                "base64 text without the full wrapper is literal",
                full.clone(),
                vec![
                    ("Mcp-Param-Region", "=?base64?SGVsbG8="),
                    ("Mcp-Param-Count", "42"),
                ],
            ),
            (
                "header for an absent argument",
                json!({}),
                vec![("Mcp-Param-Region", "Hello")],
            ),
        ];
        for (n, (what, arguments, headers)) in refused.into_iter().enumerate() {
            let id = 200 + n as u64;
            let request = call(id, arguments);
            let (status, _, json) = server
                .call_json(modern(&server, &request, &headers, &[]))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {json}");
            assert_eq!(json["error"]["code"], -32020, "{what}: {json}");
            assert_eq!(json["id"], id, "{what}");
            assert!(
                !json["error"]["message"].as_str().unwrap().contains("World"),
                "header values are not echoed"
            );
        }
        assert_eq!(
            server.handler.methods().len(),
            reached,
            "no refused request reached the handler"
        );

        // Repeated headers are invalid.
        let mut request = modern(
            &server,
            &call(300, full.clone()),
            &[("Mcp-Param-Count", "42")],
            &[],
        );
        request
            .headers_mut()
            .append("mcp-param-region", "Hello".parse().unwrap());
        request
            .headers_mut()
            .append("Mcp-Param-Region", "Hello".parse().unwrap());
        let (status, _, json) = server.call_json(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["code"], -32020);

        // A tool without annotations: Mcp-Param headers are neither checked nor forwarded.
        let plain = body(
            301,
            "tools/call",
            json!({"name": "echo", "arguments": {"region": "Hello"}}),
        );
        let (status, _, _) = server
            .call_json(modern(
                &server,
                &plain,
                &[("Mcp-Param-Region", "=?base64?!!?=")],
                &[],
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn unsupported_version_and_missing_meta_are_400() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let mut unsupported = body(21, "server/discover", json!({}));
        unsupported["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] =
            json!("v999.0.0");
        let (status, _, json) = server
            .call_json(modern(
                &server,
                &unsupported,
                &[("mcp-protocol-version", "v999.0.0")],
                &[],
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["code"], -32022);
        assert_eq!(json["error"]["data"]["requested"], "v999.0.0");
        assert_eq!(json["error"]["data"]["supported"], json!([V]));
        assert_eq!(json["id"], 21);

        // A legacy revision declared statelessly is unsupported too.
        let mut legacy = body(22, "server/discover", json!({}));
        legacy["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2025-11-25");
        let (status, _, json) = server
            .call_json(modern(
                &server,
                &legacy,
                &[("mcp-protocol-version", "2025-11-25")],
                &[],
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["code"], -32022);

        // Missing `_meta` (the version header says modern): -32602.
        let bare = json!({"jsonrpc": "2.0", "id": 23, "method": "server/discover", "params": {}});
        let (status, _, json) = server.call_json(modern(&server, &bare, &[], &[])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["code"], -32602);
        assert_eq!(json["id"], 23);

        let mut no_caps = body(24, "server/discover", json!({}));
        no_caps["params"]["_meta"]
            .as_object_mut()
            .unwrap()
            .remove("io.modelcontextprotocol/clientCapabilities");
        let (status, _, json) = server.call_json(modern(&server, &no_caps, &[], &[])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["code"], -32602);
        assert!(server.handler.methods().is_empty());
    })
    .await;
}

#[tokio::test]
async fn maps_handler_errors_to_http_status() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        for method in ["unknown/method", "initialize"] {
            let request = body(31, method, json!({}));
            let (status, _, json) = server.call_json(modern(&server, &request, &[], &[])).await;
            if method == "unknown/method" {
                assert_eq!(status, StatusCode::NOT_FOUND);
                assert_eq!(json["error"]["code"], -32601);
                assert_eq!(json["id"], 31);
            } else {
                // A stateless `initialize` goes to the handler, not the session machinery.
                assert_eq!(status, StatusCode::OK);
                assert_eq!(server.handler.session_count(), 0);
            }
        }
    })
    .await;
}

#[tokio::test]
async fn modern_streams_carry_no_ids_and_end_with_the_response() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let response = server
            .send(modern(
                &server,
                &body(41, "notify_first", json!({})),
                &[],
                &[],
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut sse = SseReader::new(response);
        let first = sse.next().await.unwrap();
        assert!(first.id.is_none(), "no resumability in 2026-07-28");
        assert_eq!(
            serde_json::from_str::<Value>(&first.data).unwrap()["method"],
            "notifications/progress"
        );
        let (_, done) = sse.next_message().await.unwrap();
        assert_eq!(done["id"], 41);
        assert!(sse.next().await.is_none());
    })
    .await;
}
