//! The registry fed by a real audit log's writer thread, scraped over a real listener on
//! 127.0.0.1.
#![allow(missing_docs, unreachable_pub)]
#![expect(clippy::unwrap_used, reason = "tests")]

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warden_audit::{AuditLog, AuditOptions, AuthOutcome, Direction, Event, Status, Verdict};
use warden_metrics::{CONTENT_TYPE, Metrics, MetricsOptions, MetricsServer, ServerOptions};

/// Bound on any one HTTP exchange with the listener.
const BOUND: Duration = Duration::from_secs(10);

struct Setup {
    _dir: tempfile::TempDir,
    log: AuditLog,
    url: String,
    stop: CancellationToken,
    http: reqwest::Client,
}

async fn setup(token: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(MetricsOptions::new(
        NonZeroUsize::new(50).unwrap(),
        "0.0.0-test",
    )));
    let mut opts = AuditOptions::new(dir.path().join("audit.jsonl"), dir.path().join("audit.key"));
    opts.taps.push(metrics.clone());
    let log = AuditLog::open(opts, None).unwrap();
    let server = MetricsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        metrics,
        ServerOptions {
            bearer_token: token.map(str::to_owned),
            audit: Some(log.clone()),
            audit_queue_capacity: Some(4096),
        },
    )
    .await
    .unwrap();
    let url = format!("http://{}/metrics", server.local_addr());
    let stop = CancellationToken::new();
    tokio::spawn(server.run(stop.clone()));
    Setup {
        _dir: dir,
        log,
        url,
        stop,
        http: reqwest::Client::builder().timeout(BOUND).build().unwrap(),
    }
}

fn call(tool: &str, status: Status) -> Event {
    Event::Call {
        session: Some("s".into()),
        principal: "anonymous".into(),
        direction: Direction::ToUpstream,
        method: "tools/call".into(),
        name: Some(tool.into()),
        upstream: Some("fx".into()),
        latency_us: 1200,
        status,
        code: None,
        arguments: None,
        result: None,
        trace: None,
    }
}

/// The value of the sample line that starts with `series` (name and labels as rendered).
fn sample(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn counts_what_the_writer_wrote_and_serves_it() {
    let s = setup(None).await;
    for _ in 0..3 {
        s.log.record(call("fx__add", Status::Result)).unwrap();
    }
    s.log
        .record(Event::Decision {
            session: Some("s".into()),
            principal: "anonymous".into(),
            direction: Direction::ToUpstream,
            method: Some("tools/call".into()),
            name: Some("fx__rm".into()),
            upstream: Some("fx".into()),
            guard: "policy".into(),
            verdict: Verdict::Deny,
            reason: "not allowed".into(),
            controls: vec![],
            ticket: None,
            trace: None,
        })
        .unwrap();
    s.log.record(call("fx__rm", Status::Denied)).unwrap();
    s.log
        .record(Event::Auth {
            principal: None,
            method: "api_key".into(),
            outcome: AuthOutcome::Failure,
            reason: Some("unknown key".into()),
            remote: None,
        })
        .unwrap();
    // The tap runs on the writer thread just after the write (and after the flush is
    // acknowledged): scrape until the last record is counted, bounded.
    s.log.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + BOUND;
    let body = loop {
        let r = s.http.get(&s.url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], CONTENT_TYPE);
        let body = r.text().await.unwrap();
        if sample(&body, "warden_audit_records_total{event=\"auth\"}") == Some(1) {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        sample(
            &body,
            "warden_tool_calls_total{upstream=\"fx\",tool=\"fx__add\",status=\"result\"}"
        ),
        Some(3),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "warden_requests_total{direction=\"to_upstream\",method=\"tools/call\",upstream=\"fx\",status=\"denied\"}"
        ),
        Some(1)
    );
    assert_eq!(
        sample(
            &body,
            "warden_guard_decisions_total{guard=\"policy\",verdict=\"deny\",direction=\"to_upstream\"}"
        ),
        Some(1)
    );
    assert_eq!(
        sample(
            &body,
            "warden_auth_attempts_total{method=\"api_key\",outcome=\"failure\"}"
        ),
        Some(1)
    );
    assert_eq!(
        sample(
            &body,
            "warden_request_duration_seconds_bucket{method=\"tools/call\",upstream=\"fx\",le=\"0.001\"}"
        ),
        Some(0)
    );
    assert_eq!(
        sample(
            &body,
            "warden_request_duration_seconds_bucket{method=\"tools/call\",upstream=\"fx\",le=\"0.0025\"}"
        ),
        Some(4)
    );
    assert_eq!(sample(&body, "warden_audit_queue_capacity"), Some(4096));
    assert_eq!(sample(&body, "warden_audit_dropped_records_total"), Some(0));
    assert!(
        sample(&body, "warden_audit_queue_depth").is_some(),
        "{body}"
    );

    // HEAD: headers only.
    let r = s.http.head(&s.url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");

    s.log.close().await.unwrap();
    s.stop.cancel();
}

#[tokio::test]
async fn serves_only_get_of_metrics() {
    let s = setup(None).await;
    let base = s.url.trim_end_matches("/metrics");
    let r = s.http.get(format!("{base}/mcp")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = s.http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = s.http.post(&s.url).body("x").send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    s.log.close().await.unwrap();
    s.stop.cancel();
}

/// DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own name as `Host`.
#[tokio::test]
async fn a_loopback_listener_refuses_other_host_names() {
    let s = setup(None).await;
    for host in [
        "evil.example",
        "evil.example:9464",
        "localhost.evil.example",
    ] {
        let r = s
            .http
            .get(&s.url)
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{host}");
        assert!(!r.text().await.unwrap().contains("warden_"));
    }
    for host in ["localhost", "127.0.0.1:1"] {
        let r = s
            .http
            .get(&s.url)
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    s.log.close().await.unwrap();
    s.stop.cancel();
}

#[tokio::test]
async fn a_configured_token_is_required() {
    let s = setup(Some("s3cret-token")).await;
    let r = s.http.get(&s.url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let body = r.text().await.unwrap();
    assert!(!body.contains("warden_"), "{body}");
    for wrong in [
        "Bearer s3cret-toke",
        "Bearer s3cret-token2",
        "Basic s3cret-token",
        "s3cret-token",
    ] {
        let r = s
            .http
            .get(&s.url)
            .header("authorization", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{wrong}");
    }
    let r = s
        .http
        .get(&s.url)
        .header("authorization", "Bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("warden_build_info{version=\"0.0.0-test\"} 1")
    );
    s.log.close().await.unwrap();
    s.stop.cancel();
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncReadExt as _;
    let s = setup(None).await;
    let addr = s
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Send nothing: the listener must hang up on its own (header read timeout, 5 s).
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
        .await
        .expect("the listener kept a silent connection open")
        .unwrap_or(0);
    // Either a plain close or hyper's 408 before it.
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    s.log.close().await.unwrap();
    s.stop.cancel();
}
