//! Rate-limit refusals (`-31004` with `data.retryAfterMs`) on every response path of the HTTP
//! face: plain JSON, a client that takes only SSE (still 429 with `Retry-After`), and an SSE
//! stream that had already started (the refusal is an event carrying the hint).
//!
//! Proves: API-2 (graduated responses: HTTP 429 with `Retry-After`, or the hint in `data`).

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{Server, SseReader, bounded};

fn request(id: u64, method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}})
}

fn assert_refusal(body: &Value, id: u64) {
    assert_eq!(body["id"], id, "{body}");
    assert_eq!(body["error"]["code"], -31004, "{body}");
    assert_eq!(body["error"]["data"]["retryAfterMs"], 2500, "{body}");
}

#[tokio::test]
async fn a_refusal_answered_as_json_is_429_with_retry_after() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        let (status, headers, body) = server
            .call_json(server.post_in(&session, &request(1, "limited")))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["content-type"], "application/json");
        // 2500 ms, rounded up to whole seconds.
        assert_eq!(headers["retry-after"], "3");
        assert_refusal(&body, 1);
    })
    .await;
}

#[tokio::test]
async fn a_refusal_to_an_sse_only_client_is_429_with_retry_after_and_one_event() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        let mut sse_only = server.post_in(&session, &request(2, "limited"));
        sse_only
            .headers_mut()
            .insert("accept", "text/event-stream".parse().unwrap());
        let response = server.send(sse_only).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers().clone();
        assert_eq!(headers["retry-after"], "3");
        assert_eq!(headers["content-type"], "text/event-stream");
        let mut sse = SseReader::new(response);
        let (_, body) = sse.next_message().await.expect("the refusal as an event");
        assert_refusal(&body, 2);
        assert!(
            sse.next().await.is_none(),
            "the stream ends after the refusal"
        );
        // The session is still usable: a refusal is not an error of the session.
        let (status, _, body) = server
            .call_json(server.post_in(&session, &request(3, "tools/list")))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    })
    .await;
}

#[tokio::test]
async fn a_refusal_after_the_stream_started_carries_the_hint_in_data() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let session = server.initialize().await;
        let response = server
            .send(server.post_in(&session, &request(4, "progress_then_limited")))
            .await;
        // The status went out with the first event, before the refusal was known.
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert!(response.headers().get("retry-after").is_none());
        let mut sse = SseReader::new(response);
        let (_, progress) = sse.next_message().await.unwrap();
        assert_eq!(progress["method"], "notifications/progress");
        let (_, body) = sse.next_message().await.unwrap();
        assert_refusal(&body, 4);
        assert!(sse.next().await.is_none());
    })
    .await;
}
