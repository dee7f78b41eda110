//! Alerts end to end: `mcp-warden serve` with API keys and an `[alerts]` webhook pointing at a
//! receiver this test serves with hyper on 127.0.0.1. A burst of bad API keys must yield
//! exactly one `auth_failures` alert, signed with the secret the gateway read from its
//! environment, carrying no credential.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::interop::everything_stdio;
use crate::support::toml_str;

/// Bound on every wait in this module.
const BOUND: Duration = Duration::from_secs(60);
/// The webhook signing secret, given to the gateway through its environment.
const SECRET: &str = "alert-signing-secret-for-the-test";
const SECRET_VAR: &str = "WARDEN_IT_ALERT_SECRET";

/// One POST the receiver got: (path, signature header, alert-id header, body).
type Delivery = (String, Option<String>, Option<String>, Bytes);

/// A webhook receiver on a port the OS chooses; every request is answered 200 and reported.
async fn receiver() -> (
    String,
    mpsc::Receiver<Delivery>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/warden", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let header = |n: &str| {
                            request
                                .headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let path = request.uri().path().to_owned();
                        let (sig, id) = (header("x-warden-signature"), header("x-warden-alert-id"));
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let _ = tx.send((path, sig, id, body)).await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (url, rx, task)
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

// Proves: MON-3, LOG-3 (a burst of refused authentications alerts once, signed, over a webhook)
#[tokio::test]
async fn a_burst_of_bad_api_keys_posts_one_signed_alert() {
    let (url, mut deliveries, _receiver) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let key = crate::support::create_api_key(dir.path(), "ci-bot").await;
    let port = warden_test::free_port();
    let server = everything_stdio();
    let args: Vec<String> = server[1..].iter().map(|a| toml_str(a)).collect();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[upstreams.e]\ncommand = {}\nargs = [{}]\n\
             [auth]\napi_keys = true\n\
             [alerts.auth_failures]\nthreshold = 3\nwindow = \"1m\"\n\
             [alerts.webhook]\nurl = {}\nsecret = \"env:{SECRET_VAR}\"\ntimeout = \"5s\"\n\
             [alerts.log]\nfile = \"alerts.jsonl\"\n",
            toml_str(&server[0]),
            args.join(", "),
            toml_str(&url),
        ),
    )
    .unwrap();
    let mut cmd = crate::support::serve_command(&config, dir.path());
    cmd.env(SECRET_VAR, SECRET);
    let mut guard = warden_test::process::Guard::spawn(cmd).unwrap();
    warden_test::wait_port(port, BOUND).await.unwrap();

    let client = warden_test::http::HttpClient::new(format!("http://127.0.0.1:{port}/mcp"));
    let init = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "alerts-test", "version": "0"}}}))
    .unwrap();
    // Eight bad keys: the third completes the burst, the other five fall in the cooldown.
    let wrong: Vec<String> = (0..8)
        .map(|i| format!("mwk_{i:016}_wrongwrongwrongwrongwrongwrong"))
        .collect();
    for w in &wrong {
        let r = client
            .post_raw(init.clone(), &[("authorization", &format!("Bearer {w}"))])
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{}", r.text);
    }
    let (path, signature, id, body) = tokio::time::timeout(BOUND, deliveries.recv())
        .await
        .expect("the webhook received no alert")
        .unwrap();
    assert_eq!(path, "/hooks/warden");
    // The signature is HMAC-SHA-256 of the exact body under the secret from the environment.
    assert_eq!(
        signature.as_deref(),
        Some(format!("sha256={}", hmac_hex(SECRET.as_bytes(), &body)).as_str())
    );
    let alert: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(id.as_deref(), alert["id"].as_str());
    assert_eq!(alert["rule"], "auth_failures");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["count"], 3);
    assert_eq!(alert["window_secs"], 60);
    assert_eq!(
        alert["controls"],
        json!(["MON-1", "MON-3", "LOG-2", "LOG-3"])
    );
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .starts_with("3 refused authentications in 1m from"),
        "{alert}"
    );
    // Keyed by the client's host (each refused attempt may come on a new connection, from a
    // new source port): the audit records the peer of every attempt.
    assert_eq!(alert["remote"], "127.0.0.1", "{alert}");
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .ends_with("from remote \"127.0.0.1\""),
        "{alert}"
    );
    assert!(alert["ts"].as_str().unwrap().ends_with('Z'), "{alert}");
    let text = String::from_utf8_lossy(&body);
    for w in &wrong {
        assert!(
            !text.contains(w.as_str()),
            "a credential reached an alert: {text}"
        );
    }
    assert!(!text.contains(SECRET), "{text}");

    // The gateway still serves a good key.
    let ok = client
        .post_raw(init, &[("authorization", &format!("Bearer {key}"))])
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text);

    // A clean stop delivers whatever is queued; the burst still yields exactly one alert.
    let status = guard.terminate(BOUND).await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        deliveries.try_recv().is_err(),
        "a burst must yield one alert, not one per failure"
    );
    // The log sink's file holds the same alert.
    let lines = std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap();
    let logged: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged, vec![alert]);
}
