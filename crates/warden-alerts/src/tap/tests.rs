//! The tap with real sinks: a webhook receiver served by hyper on 127.0.0.1, and a file.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use warden_audit::{AuditRecord, AuthOutcome, Event};
use warden_config::{AlertsConfig, Config};

use super::*;
use crate::sink::{LogSink, Secret, Sinks, WebhookSink, signature};

/// Bound on every wait in this module.
const BOUND: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    signature: Option<String>,
    alert_id: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

/// A webhook receiver on 127.0.0.1: answers with the scripted statuses (then 200), and
/// answers nothing while `gate` has no permits.
struct Receiver {
    url: String,
    got: mpsc::Receiver<Received>,
    gate: Arc<Semaphore>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(statuses: &[u16], open: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, got) = mpsc::channel(1024);
        let script = Arc::new(std::sync::Mutex::new(
            statuses.iter().copied().collect::<VecDeque<_>>(),
        ));
        let gate = Arc::new(Semaphore::new(if open {
            Semaphore::MAX_PERMITS
        } else {
            0
        }));
        let g = gate.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (tx, script, gate) = (tx.clone(), script.clone(), g.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (tx, script, gate) = (tx.clone(), script.clone(), gate.clone());
                            async move {
                                let h = |n: &str| {
                                    request
                                        .headers()
                                        .get(n)
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_owned)
                                };
                                let (signature, alert_id, content_type) = (
                                    h(SIGNATURE_HEADER_NAME),
                                    h(ALERT_ID_HEADER_NAME),
                                    h("content-type"),
                                );
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                let _ = tx
                                    .send(Received {
                                        signature,
                                        alert_id,
                                        content_type,
                                        body,
                                    })
                                    .await;
                                let _permit = gate.acquire().await.unwrap();
                                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                                Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Receiver {
            url,
            got,
            gate,
            _task: task,
        }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(BOUND, self.got.recv())
            .await
            .unwrap()
            .unwrap()
    }
}

const SIGNATURE_HEADER_NAME: &str = crate::sink::SIGNATURE_HEADER;
const ALERT_ID_HEADER_NAME: &str = crate::sink::ALERT_ID_HEADER;

fn config(toml: &str) -> AlertsConfig {
    Config::parse(&format!("[alerts]\n{toml}"), "warden.toml")
        .unwrap()
        .alerts
}

fn failure(principal: &str, secs: u64) -> AuditRecord {
    AuditRecord {
        ts: warden_audit::record::timestamp(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs),
        ),
        event: Event::Auth {
            principal: Some(principal.into()),
            method: "http".into(),
            outcome: AuthOutcome::Failure,
            reason: Some("invalid: unknown api key".into()),
            remote: None,
        },
    }
}

fn webhook_sinks(c: &AlertsConfig, secret: Option<Secret>) -> Sinks {
    Sinks {
        log: None,
        webhook: Some(WebhookSink::new(c.webhook.as_ref().unwrap(), secret).unwrap()),
    }
}

// Proves: MON-3 (alerts reach a webhook, signed)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_posted_once_signed_to_the_webhook() {
    let mut rx = Receiver::start(&[], true).await;
    let c = config(&format!(
        "[alerts.auth_failures]\nthreshold = 3\n[alerts.webhook]\nurl = \"{}\"\nsecret = \"env:X\"\n",
        rx.url
    ));
    let secret = Secret::new(b"correct horse battery staple".to_vec());
    let alerts = Alerts::start(&c, &[], webhook_sinks(&c, Some(secret.clone()))).unwrap();
    let burst: Vec<_> = (0..50).map(|i| failure("mallory", i / 10)).collect();
    alerts.records(&burst, true);
    assert!(alerts.close(BOUND).await);
    assert_eq!(
        (alerts.fired(), alerts.delivered(), alerts.dropped()),
        (1, 1, 0)
    );
    let got = rx.next().await;
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.signature, Some(signature(&secret, &got.body)));
    assert_ne!(
        got.signature,
        Some(signature(&Secret::new(b"wrong".to_vec()), &got.body))
    );
    let v: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(got.alert_id.as_deref(), v["id"].as_str());
    assert_eq!(v["rule"], "auth_failures");
    assert_eq!(v["severity"], "high");
    assert_eq!(v["principal"], "mallory");
    assert_eq!(v["count"], 3);
    assert_eq!(v["window_secs"], 60);
    assert_eq!(v["controls"][0], "MON-1");
    assert!(v["summary"].as_str().unwrap().contains("mallory"));
    // One burst, one alert: nothing else was posted.
    assert!(rx.got.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_and_client_errors_are_not() {
    let mut rx = Receiver::start(&[503, 500, 200, 400], true).await;
    let c = config(&format!(
        "[alerts.auth_failures]\nthreshold = 1\n[alerts.webhook]\nurl = \"{}\"\nretries = 2\n",
        rx.url
    ));
    let alerts = Alerts::start(&c, &[], webhook_sinks(&c, None)).unwrap();
    alerts.records(&[failure("a", 0), failure("b", 0)], true);
    assert!(alerts.close(BOUND).await);
    // First alert: 503, 500, then 200 (three attempts). Second: 400, not retried.
    let ids: Vec<Option<String>> = vec![
        rx.next().await.alert_id,
        rx.next().await.alert_id,
        rx.next().await.alert_id,
        rx.next().await.alert_id,
    ];
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_ne!(ids[2], ids[3]);
    assert!(rx.got.try_recv().is_err());
    assert_eq!((alerts.fired(), alerts.delivered()), (2, 1));
    // Unsigned without a secret.
    assert_eq!(alerts.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_webhook_never_blocks_the_audit_writer() {
    // The receiver takes requests but answers none until the test opens the gate.
    let mut rx = Receiver::start(&[], false).await;
    let c = config(&format!(
        "queue = 2\n[alerts.auth_failures]\nthreshold = 1\ncooldown = \"0s\"\n\
         [alerts.webhook]\nurl = \"{}\"\ntimeout = \"60s\"\nretries = 0\n",
        rx.url
    ));
    let alerts = Arc::new(Alerts::start(&c, &[], webhook_sinks(&c, None)).unwrap());
    // One alert to occupy the sink thread, seen by the receiver.
    alerts.records(&[failure("first", 0)], true);
    let _ = rx.next().await;
    // Then a hundred alerts: the tap must return with the webhook still stuck (if it waited,
    // the gate below would never open and the bound would fail the test).
    let a = alerts.clone();
    tokio::time::timeout(
        BOUND,
        tokio::task::spawn_blocking(move || {
            let burst: Vec<_> = (0..100).map(|i| failure(&format!("p{i}"), 1)).collect();
            a.records(&burst, true);
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(alerts.fired(), 101);
    // The queue holds two; the rest were dropped and counted.
    assert_eq!(alerts.dropped(), 98);
    rx.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    assert!(alerts.close(BOUND).await);
    assert_eq!(alerts.delivered(), 3);
}

#[tokio::test]
async fn the_log_sink_appends_json_lines_to_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let c = config("[alerts.auth_failures]\nthreshold = 2\n");
    let sinks = Sinks {
        log: Some(LogSink::open(Some(&path)).unwrap()),
        webhook: None,
    };
    let alerts = Alerts::start(&c, &[], sinks).unwrap();
    alerts.records(
        &[
            failure("a", 0),
            failure("a", 1),
            failure("b", 1),
            failure("b", 2),
        ],
        true,
    );
    assert!(alerts.close(BOUND).await);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["principal"], "a");
    assert_eq!(lines[1]["principal"], "b");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Alerts after close are dropped and counted, never queued.
    alerts.records(&[failure("c", 0), failure("c", 0)], true);
    assert_eq!(alerts.dropped(), 1);
}

#[test]
fn an_unwritable_log_file_is_a_start_error_naming_it() {
    let e = LogSink::open(Some(std::path::Path::new("/nonexistent-dir/alerts.jsonl"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot open the alert log file `/nonexistent-dir/alerts.jsonl`"
    );
}
