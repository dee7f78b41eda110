//! stdio: framing errors, oversized lines, concurrency, unsolicited messages and EOF.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warden_downstream::{DownstreamError, StdioOptions, serve_stdio_with};
use warden_proto::Limits;

use crate::support::{TestHandler, bounded};

struct Client {
    input: Option<DuplexStream>,
    output: Lines<BufReader<DuplexStream>>,
    task: JoinHandle<Result<(), DownstreamError>>,
    handler: Arc<TestHandler>,
}

fn start(limits: Limits) -> Client {
    start_with(StdioOptions::new(limits))
}

fn start_with(options: StdioOptions) -> Client {
    let handler = TestHandler::new();
    let (client_in, server_in) = tokio::io::duplex(64 * 1024);
    let (server_out, client_out) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(serve_stdio_with(
        Arc::clone(&handler),
        server_in,
        server_out,
        options,
        CancellationToken::new(),
    ));
    Client {
        input: Some(client_in),
        output: BufReader::new(client_out).lines(),
        task,
        handler,
    }
}

impl Client {
    async fn send(&mut self, line: &str) {
        let input = self.input.as_mut().expect("input open");
        input.write_all(line.as_bytes()).await.unwrap();
        input.write_all(b"\n").await.unwrap();
    }

    /// `initialize` with `version`, which the test handler takes as negotiated.
    async fn initialize(&mut self, version: &str) {
        self.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":version}}).to_string())
            .await;
        assert_eq!(self.recv().await["result"]["protocolVersion"], version);
    }

    async fn recv(&mut self) -> Value {
        let line = self
            .output
            .next_line()
            .await
            .unwrap()
            .expect("output closed");
        serde_json::from_str(&line).unwrap()
    }
}

#[tokio::test]
async fn malformed_lines_get_errors_and_the_next_line_still_works() {
    bounded(async {
        let mut c = start(Limits::default());
        let deep = |head: &str| format!("{head}{}{}}}", "[".repeat(70), "]".repeat(70));
        let too_deep = deep(r#"{"jsonrpc":"2.0","id":9,"method":"a","params":"#);
        let too_deep_late_id = format!(
            "{},\"id\":10}}",
            deep(r#"{"jsonrpc":"2.0","method":"a","params":"#).trim_end_matches('}')
        );
        let too_deep_notification = deep(r#"{"jsonrpc":"2.0","method":"a","params":"#);
        let cases: &[(&str, i64, Value)] = &[
            // Too deep: refused with the request's id wherever it is, null without one.
            (&too_deep, -32600, json!(9)),
            (&too_deep_late_id, -32600, json!(10)),
            (&too_deep_notification, -32600, Value::Null),
            ("{bad", -32700, Value::Null),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a","params":{},"params":{}}"#,
                -32700,
                Value::Null,
            ),
            (r#"{"jsonrpc":"1.0","id":7,"method":"a"}"#, -32600, json!(7)),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"a"}]"#,
                -32600,
                Value::Null,
            ),
            ("42", -32600, Value::Null),
        ];
        for (line, code, id) in cases {
            c.send(line).await;
            let error = c.recv().await;
            assert_eq!(error["error"]["code"], *code, "{line}");
            assert_eq!(error["id"], *id, "{line}");
        }
        c.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
            .await;
        let ok = c.recv().await;
        assert_eq!(ok["id"], 2);
        assert_eq!(ok["result"]["echo"], "tools/list");
        assert_eq!(
            c.handler.methods(),
            ["tools/list"],
            "invalid lines never reach the handler"
        );
        drop(c.input.take());
        c.task.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_100_mb_line_gets_invalid_request_and_the_connection_survives() {
    bounded(async {
        let mut c = start(Limits::default());
        let mut input = c.input.take().unwrap();
        // Feed 100 MiB in 1 MiB chunks while reading the output concurrently.
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 1 << 20];
            input
                .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"")
                .await
                .unwrap();
            for _ in 0..100 {
                input.write_all(&chunk).await.unwrap();
            }
            input.write_all(b"\"}\n").await.unwrap();
            input
                .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"after\"}\n")
                .await
                .unwrap();
            input
        });
        let error = c.recv().await;
        assert_eq!(error["error"]["code"], -32600);
        // The request's id, read from the start of the line: its call fails at once.
        assert_eq!(error["id"], 1);
        let ok = c.recv().await;
        assert_eq!(ok["id"], 2);
        assert_eq!(c.handler.methods(), ["after"]);
        drop(writer.await.unwrap());
        c.task.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_slow_request_does_not_block_later_ones() {
    bounded(async {
        let mut c = start(Limits::default());
        c.send(r#"{"jsonrpc":"2.0","id":"slow","method":"slow","params":{"ms":400}}"#)
            .await;
        c.send(r#"{"jsonrpc":"2.0","id":"fast","method":"ping"}"#)
            .await;
        assert_eq!(c.recv().await["id"], "fast");
        assert_eq!(c.recv().await["id"], "slow");
    })
    .await;
}

/// A client's answer (to sampling, elicitation, roots) as the tests send it.
const CLIENT_ANSWER: &str = r#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#;

#[tokio::test]
async fn requests_beyond_the_limit_queue_and_the_clients_answers_still_get_through() {
    bounded(async {
        // Both slots taken by calls that wait on the client; the client sends one more request
        // before it answers them. A reader that stopped at the limit would never read the
        // answers: everything would hang until the calls timed out.
        let mut c = start_with(StdioOptions {
            max_in_flight: 2,
            ..StdioOptions::default()
        });
        for id in ["w1", "w2"] {
            c.send(&format!(
                r#"{{"jsonrpc":"2.0","id":"{id}","method":"awaits_client"}}"#
            ))
            .await;
        }
        c.send(r#"{"jsonrpc":"2.0","id":"later","method":"tools/list"}"#)
            .await;
        c.send(CLIENT_ANSWER).await;
        c.send(CLIENT_ANSWER).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let reply = tokio::time::timeout(Duration::from_secs(10), c.recv())
                .await
                .expect("every request is answered once the client has answered");
            assert!(reply.get("error").is_none(), "{reply}");
            ids.push(reply["id"].as_str().unwrap().to_owned());
        }
        ids.sort();
        assert_eq!(ids, ["later", "w1", "w2"]);
    })
    .await;
}

#[tokio::test]
async fn a_request_finding_the_queue_full_is_refused_at_once() {
    bounded(async {
        let mut c = start_with(StdioOptions {
            max_in_flight: 1,
            max_queued: 1,
            ..StdioOptions::default()
        });
        // `w1` runs, `w2` waits in the queue, `w3` finds it full.
        for id in ["w1", "w2", "w3"] {
            c.send(&format!(
                r#"{{"jsonrpc":"2.0","id":"{id}","method":"awaits_client"}}"#
            ))
            .await;
        }
        let refused = c.recv().await;
        assert_eq!(refused["id"], "w3");
        assert_eq!(refused["error"]["code"], -31004);
        assert_eq!(refused["error"]["data"]["guard"], "stdio_queue");
        assert_eq!(refused["error"]["data"]["maxInFlight"], 1);
        assert_eq!(refused["error"]["data"]["maxQueued"], 1);
        // The refused request never reached the handler; the queued one starts in order.
        c.send(CLIENT_ANSWER).await;
        assert_eq!(c.recv().await["id"], "w1");
        c.send(CLIENT_ANSWER).await;
        assert_eq!(c.recv().await["id"], "w2");
        assert_eq!(
            c.handler.methods(),
            ["awaits_client", "awaits_client"],
            "w3 was refused before the handler saw it"
        );
        // Room again: the connection goes on.
        c.send(r#"{"jsonrpc":"2.0","id":"after","method":"tools/list"}"#)
            .await;
        assert_eq!(c.recv().await["id"], "after");
        drop(c.input.take());
        c.task.await.unwrap().unwrap();
    })
    .await;
}

/// A request the client cancels while it waits in the queue never runs and gets no response
/// (the specification's rule for a cancelled request); the ones around it go on.
#[tokio::test]
async fn a_queued_request_the_client_cancels_never_runs() {
    bounded(async {
        let mut c = start_with(StdioOptions {
            max_in_flight: 1,
            max_queued: 4,
            ..StdioOptions::default()
        });
        for id in ["w1", "w2", "w3"] {
            c.send(&format!(
                r#"{{"jsonrpc":"2.0","id":"{id}","method":"awaits_client"}}"#
            ))
            .await;
        }
        c.send(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"w2"}}"#,
        )
        .await;
        c.send(CLIENT_ANSWER).await;
        assert_eq!(c.recv().await["id"], "w1");
        c.send(CLIENT_ANSWER).await;
        assert_eq!(c.recv().await["id"], "w3", "w2 was cancelled while queued");
        assert_eq!(
            c.handler.methods(),
            ["awaits_client", "awaits_client"],
            "the cancelled request never reached the handler (nor did its cancellation)"
        );
        drop(c.input.take());
        c.task.await.unwrap().unwrap();
    })
    .await;
}

/// The queue's other two bounds: no queue at all (`max_queued` 0), and its bytes.
#[tokio::test]
async fn the_queue_bounds_its_length_and_its_bytes() {
    bounded(async {
        let await_client =
            |id: &str| format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"awaits_client"}}"#);
        // No queue: the request beyond the one in flight is refused at once.
        let mut c = start_with(StdioOptions {
            max_in_flight: 1,
            max_queued: 0,
            ..StdioOptions::default()
        });
        c.send(&await_client("w1")).await;
        c.send(&await_client("w2")).await;
        let refused = c.recv().await;
        assert_eq!(refused["id"], "w2", "{refused}");
        assert_eq!(refused["error"]["code"], -31004, "{refused}");
        assert_eq!(refused["error"]["data"]["maxQueued"], 0, "{refused}");
        c.send(CLIENT_ANSWER).await;
        assert_eq!(c.recv().await["id"], "w1");

        // A queue of many requests but few bytes: the first waiting request is always
        // queued, whatever its size; the next one that would pass the byte bound is refused.
        let line = await_client("q1");
        let mut c = start_with(StdioOptions {
            max_in_flight: 1,
            max_queued: 10,
            max_queued_bytes: line.len() + 10,
            ..StdioOptions::default()
        });
        for id in ["w1", "q1", "q2"] {
            c.send(&await_client(id)).await;
        }
        let refused = c.recv().await;
        assert_eq!(refused["id"], "q2", "{refused}");
        assert_eq!(refused["error"]["code"], -31004, "{refused}");
        for id in ["w1", "q1"] {
            c.send(CLIENT_ANSWER).await;
            assert_eq!(c.recv().await["id"], id);
        }
        assert_eq!(c.handler.methods(), ["awaits_client", "awaits_client"]);
    })
    .await;
}

#[tokio::test]
async fn streams_replies_and_unsolicited_messages_in_order() {
    bounded(async {
        let mut c = start(Limits::default());
        c.send(r#"{"jsonrpc":"2.0","id":1,"method":"notify_first"}"#)
            .await;
        assert_eq!(c.recv().await["method"], "notifications/progress");
        assert_eq!(c.recv().await["id"], 1);

        c.send(r#"{"jsonrpc":"2.0","id":2,"method":"push","params":{"text":"hi"}}"#)
            .await;
        let mut got = [c.recv().await, c.recv().await];
        got.sort_by_key(|v| v["id"].is_null());
        assert_eq!(got[0]["id"], 2);
        assert_eq!(got[1]["method"], "notifications/message");

        // Pretty-printed upstream output still arrives as one line.
        c.send(r#"{"jsonrpc":"2.0","id":3,"method":"pretty"}"#)
            .await;
        let pretty = c.recv().await;
        assert_eq!(pretty["result"]["pretty"], true);
    })
    .await;
}

#[tokio::test]
async fn eof_waits_for_in_flight_requests_then_ends_the_session() {
    bounded(async {
        let mut c = start(Limits::default());
        c.send(r#"{"jsonrpc":"2.0","id":1,"method":"slow","params":{"ms":300}}"#)
            .await;
        c.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        drop(c.input.take());
        assert_eq!(
            c.recv().await["id"],
            1,
            "in-flight request finished after EOF"
        );
        c.task.await.unwrap().unwrap();
        assert_eq!(c.handler.ended.lock().unwrap().len(), 1);
        assert!(
            c.output.next_line().await.unwrap().is_none(),
            "output closed"
        );
    })
    .await;
}

/// A client that stops reading its output, then closes its input, does not hold the session
/// open: the replies it will never read are dropped after the drain timeout, the session ends
/// (so `run` can shut its upstream down), and the failure to write is reported.
#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_the_session_open() {
    bounded(async {
        let mut c = start_with(StdioOptions {
            drain_timeout: Duration::from_millis(300),
            ..StdioOptions::default()
        });
        // Far more reply bytes than the pipe, the writer's buffer and its queue hold.
        let pad = "x".repeat(4096);
        for id in 0..400 {
            c.send(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"echo_me","params":{{"pad":"{pad}"}}}}"#
            ))
            .await;
        }
        drop(c.input.take());
        let ended = tokio::time::timeout(Duration::from_secs(10), c.task)
            .await
            .expect("the session waited for a client that reads nothing")
            .unwrap();
        assert!(ended.is_err(), "the unread output is reported: {ended:?}");
        assert_eq!(c.handler.ended.lock().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn stop_ends_reading_but_answers_the_requests_in_flight() {
    bounded(async {
        let handler = TestHandler::new();
        let (mut client_in, server_in) = tokio::io::duplex(64 * 1024);
        let (server_out, client_out) = tokio::io::duplex(64 * 1024);
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_stdio_with(
            Arc::clone(&handler),
            server_in,
            server_out,
            StdioOptions::default(),
            stop.clone(),
        ));
        let mut output = BufReader::new(client_out).lines();
        client_in
            .write_all(
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"slow\",\"params\":{\"ms\":300}}\n",
            )
            .await
            .unwrap();
        // The request is in flight (the handler saw it) when reading stops.
        while handler.seen.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        stop.cancel();
        // Input stays open: the transport ends on `stop`, after answering.
        let line = output.next_line().await.unwrap().expect("the reply");
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["id"], 1);
        task.await.unwrap().unwrap();
        assert_eq!(handler.ended.lock().unwrap().len(), 1);
        assert!(output.next_line().await.unwrap().is_none(), "output closed");
        // The client's input was open all along.
        drop(client_in);
    })
    .await;
}

/// A client that negotiated 2025-03-26 may send JSON-RPC batches (that revision's servers must
/// accept them): each element is handled as a line would be, and the requests' answers come
/// back as one array in the batch's order, after what they streamed first.
#[tokio::test]
async fn a_2025_03_26_client_gets_its_batches_answered_as_arrays() {
    bounded(async {
        let mut c = start(Limits::default());
        c.initialize("2025-03-26").await;

        // A slow request first: the array waits for it and keeps the batch's order.
        c.send(concat!(
            r#" [{"jsonrpc":"2.0","id":1,"method":"slow","params":{"ms":100}},"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"},"#,
            r#"{"jsonrpc":"2.0","id":"b","method":"notify_first"},"#,
            r#"{"jsonrpc":"1.0","id":3,"method":"x"}, 42,"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"unknown/method"}]"#
        ))
        .await;
        let progress = c.recv().await;
        assert_eq!(progress["method"], "notifications/progress", "{progress}");
        let answers = c.recv().await;
        let answers = answers.as_array().unwrap_or_else(|| panic!("{answers}"));
        assert_eq!(answers.len(), 5, "{answers:?}");
        assert_eq!(answers[0]["id"], 1);
        assert_eq!(answers[0]["result"]["slept"], 100);
        assert_eq!(answers[1]["id"], "b");
        assert_eq!(answers[1]["result"]["done"], true);
        assert_eq!(
            (
                answers[2]["id"].clone(),
                answers[2]["error"]["code"].clone()
            ),
            (json!(3), json!(-32600))
        );
        assert_eq!(
            (
                answers[3]["id"].clone(),
                answers[3]["error"]["code"].clone()
            ),
            (Value::Null, json!(-32600))
        );
        assert_eq!(answers[4]["error"]["code"], -32601);
        assert!(
            c.handler
                .methods()
                .contains(&"notifications/initialized".to_owned()),
            "the batch's notification was handled"
        );

        // Only notifications: nothing comes back. Empty or invalid batches: one error.
        c.send(r#"[{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]"#)
            .await;
        c.send("[]").await;
        let empty = c.recv().await;
        assert_eq!(
            (empty["id"].clone(), empty["error"]["code"].clone()),
            (Value::Null, json!(-32600)),
            "{empty}"
        );
        c.send(r#"[{"jsonrpc":"2.0","id":5,"method":"a","params":{"k":1,"k":2}}]"#)
            .await;
        assert_eq!(c.recv().await["error"]["code"], -32700);
        c.send(r#"{"jsonrpc":"2.0","id":6,"method":"after"}"#).await;
        assert_eq!(c.recv().await["id"], 6);
    })
    .await;
}

/// Later revisions have no batches: an array is refused as before, whatever it holds.
#[tokio::test]
async fn a_batch_from_a_later_revision_is_refused() {
    bounded(async {
        let mut c = start(Limits::default());
        c.initialize("2025-06-18").await;
        c.send(r#"[{"jsonrpc":"2.0","id":1,"method":"a"}]"#).await;
        let refused = c.recv().await;
        assert_eq!(refused["error"]["code"], -32600, "{refused}");
        assert!(!c.handler.methods().contains(&"a".to_owned()));
    })
    .await;
}

/// A batch is held to the limits one request is: it takes a slot per request it runs (a
/// request after it waits when they are all taken), a cancellation removes a request of it
/// that has not started, `initialize` is refused in it, and a batch longer than 32 is refused
/// whole.
#[tokio::test]
async fn a_batch_takes_its_slots_and_its_requests_can_be_cancelled_before_they_start() {
    bounded(async {
        let mut options = StdioOptions::new(Limits::default());
        options.max_in_flight = 2;
        let mut c = start_with(options);
        c.initialize("2025-03-26").await;

        // Two slow requests take both slots: the request after the batch waits for them.
        c.send(concat!(
            r#"[{"jsonrpc":"2.0","id":1,"method":"slow","params":{"ms":300}},"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"slow","params":{"ms":300}}]"#
        ))
        .await;
        c.send(r#"{"jsonrpc":"2.0","id":3,"method":"quick"}"#).await;
        let first = c.recv().await;
        assert!(first.is_array(), "the batch answers first: {first}");
        assert_eq!(c.recv().await["id"], 3);

        // Queued behind a slow request, a batch whose first request is cancelled (by a
        // notification in the batch itself) and whose second is cancelled later.
        c.send(r#"{"jsonrpc":"2.0","id":4,"method":"slow","params":{"ms":300}}"#)
            .await;
        c.send(r#"{"jsonrpc":"2.0","id":5,"method":"slow","params":{"ms":300}}"#)
            .await;
        c.send(concat!(
            r#"[{"jsonrpc":"2.0","id":6,"method":"never"},"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"never_either"},"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"runs"},"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":6}},"#,
            r#"{"jsonrpc":"2.0","id":9,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}]"#
        ))
        .await;
        c.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}"#)
            .await;
        let mut ids = vec![];
        let mut batch = Value::Null;
        while ids.len() < 2 || batch.is_null() {
            let message = c.recv().await;
            if message.is_array() {
                batch = message;
            } else {
                ids.push(message["id"].clone());
            }
        }
        assert_eq!(ids, [json!(4), json!(5)]);
        let answers = batch.as_array().unwrap();
        assert_eq!(answers.len(), 2, "{batch}");
        assert_eq!(answers[0]["id"], 8);
        assert_eq!((answers[1]["id"].clone(), answers[1]["error"]["code"].clone()), (json!(9), json!(-32600)));
        let methods = c.handler.methods();
        assert!(
            !methods.iter().any(|m| m.starts_with("never")),
            "cancelled requests never ran: {methods:?}"
        );
        assert_eq!(methods.iter().filter(|m| *m == "initialize").count(), 1);

        let long: Vec<Value> = (100..133)
            .map(|id| json!({"jsonrpc":"2.0","id":id,"method":"counted"}))
            .collect();
        c.send(&Value::Array(long).to_string()).await;
        let refused = c.recv().await;
        assert_eq!((refused["id"].clone(), refused["error"]["code"].clone()), (Value::Null, json!(-32600)), "{refused}");
        assert!(!c.handler.methods().contains(&"counted".to_owned()));
    })
    .await;
}

/// A batch that finds no room (its slots taken, the queue full) is refused whole: an array of
/// `-31004` refusals, one per request, and none of them runs.
#[tokio::test]
async fn a_batch_finding_the_queue_full_is_refused_whole() {
    bounded(async {
        let mut options = StdioOptions::new(Limits::default());
        options.max_in_flight = 1;
        options.max_queued = 0;
        let mut c = start_with(options);
        c.initialize("2025-03-26").await;
        c.send(r#"{"jsonrpc":"2.0","id":1,"method":"slow","params":{"ms":300}}"#)
            .await;
        c.send(r#"[{"jsonrpc":"2.0","id":2,"method":"counted"},{"jsonrpc":"2.0","id":3,"method":"counted"}]"#)
            .await;
        let refused = c.recv().await;
        let refused = refused.as_array().unwrap_or_else(|| panic!("{refused}"));
        let codes: Vec<(Value, Value)> = refused
            .iter()
            .map(|r| (r["id"].clone(), r["error"]["code"].clone()))
            .collect();
        assert_eq!(codes, [(json!(2), json!(-31004)), (json!(3), json!(-31004))]);
        assert_eq!(c.recv().await["id"], 1);
        assert!(!c.handler.methods().contains(&"counted".to_owned()));
    })
    .await;
}
