use super::*;
use crate::Config;

fn errors(toml: &str) -> String {
    Config::parse(toml, "warden.toml").unwrap_err().to_string()
}

#[test]
fn tracing_is_off_by_default() {
    assert_eq!(Config::parse("", "warden.toml").unwrap().tracing, None);
}

#[test]
fn parses_every_key() {
    let c = Config::parse(
        "[tracing]\nendpoint = \"https://otel.example:4318/base/\"\n\
         headers = { authorization = \"env:OTLP_TOKEN\", x-tenant = \"team-a\" }\n\
         service_name = \"edge-gateway\"\nsample_ratio = 0.25\ntimeout = \"3s\"\n\
         export_interval = \"500ms\"\nqueue = 100\nmax_batch = 10\n",
        "warden.toml",
    )
    .unwrap();
    let t = c.tracing.unwrap();
    assert_eq!(t.endpoint.as_str(), "https://otel.example:4318/base/");
    assert_eq!(
        t.headers,
        vec![
            ("authorization".into(), ValueRef::Env("OTLP_TOKEN".into())),
            ("x-tenant".into(), ValueRef::Literal("team-a".into())),
        ]
    );
    assert_eq!(t.service_name, "edge-gateway");
    assert_eq!(t.sample_ratio.get(), 0.25);
    assert_eq!(t.timeout, Duration::from_secs(3));
    assert_eq!(t.export_interval, Duration::from_millis(500));
    assert_eq!(t.queue.get(), 100);
    assert_eq!(t.max_batch.get(), 10);
}

#[test]
fn defaults_apply_with_only_an_endpoint() {
    let t = Config::parse(
        "[tracing]\nendpoint = \"http://127.0.0.1:4318\"\n",
        "warden.toml",
    )
    .unwrap()
    .tracing
    .unwrap();
    assert_eq!(t.service_name, DEFAULT_TRACING_SERVICE_NAME);
    assert_eq!(t.sample_ratio, SampleRatio::ALL);
    assert_eq!(t.timeout, DEFAULT_TRACING_TIMEOUT);
    assert_eq!(t.export_interval, DEFAULT_TRACING_EXPORT_INTERVAL);
    assert_eq!(t.queue, DEFAULT_TRACING_QUEUE);
    assert_eq!(t.max_batch, DEFAULT_TRACING_MAX_BATCH);
    assert!(t.headers.is_empty());
}

#[test]
fn enabled_false_turns_tracing_off() {
    let c = Config::parse(
        "[tracing]\nenabled = false\nendpoint = \"http://127.0.0.1:4318\"\n",
        "warden.toml",
    )
    .unwrap();
    assert_eq!(c.tracing, None);
}

#[test]
fn refuses_a_section_without_endpoint() {
    let e = errors("[tracing]\nservice_name = \"x\"\n");
    assert!(
        e.contains("tracing.endpoint: [tracing] needs the collector's OTLP/HTTP endpoint"),
        "{e}"
    );
}

#[test]
fn refuses_bad_endpoints() {
    for (endpoint, want) in [
        ("ftp://collector:21", "ftp"),
        ("http://user:pw@collector:4318", "credentials"),
        ("http://collector:4318/?tenant=a", "remove the query"),
        ("not a url", "not a url"),
    ] {
        let e = errors(&format!("[tracing]\nendpoint = \"{endpoint}\"\n"));
        assert!(e.contains("tracing.endpoint"), "{endpoint}: {e}");
        assert!(e.contains(want), "{endpoint}: {e}");
        assert!(!e.contains("pw@"), "credentials echoed: {e}");
    }
}

#[test]
fn refuses_out_of_range_values_all_at_once() {
    let e = errors(
        "[tracing]\nendpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 1.5\nqueue = 0\n\
         max_batch = 2000000\ntimeout = \"0s\"\nservice_name = \" \"\n",
    );
    for want in [
        "warden.toml:3: tracing.sample_ratio: sample_ratio must be between 0.0 and 1.0, got 1.5",
        "warden.toml:4: tracing.queue",
        "warden.toml:5: tracing.max_batch",
        "warden.toml:6: tracing.timeout",
        "warden.toml:7: tracing.service_name",
    ] {
        assert!(e.contains(want), "missing {want:?} in {e}");
    }
}

#[test]
fn plain_http_is_for_loopback_unless_the_risk_is_accepted() {
    for ok in [
        "http://127.0.0.1:4318",
        "http://[::1]:4318",
        "http://localhost:4318",
    ] {
        let c = Config::parse(&format!("[tracing]\nendpoint = \"{ok}\"\n"), "warden.toml");
        assert!(c.is_ok_and(|c| c.tracing.is_some()), "{ok}");
    }
    let e = errors("[tracing]\nendpoint = \"http://otel-collector:4318\"\n");
    assert!(
        e.contains("warden.toml:2: tracing.endpoint: spans name principals"),
        "{e}"
    );
    let t = Config::parse(
        "[tracing]\nendpoint = \"http://otel-collector:4318\"\ninsecure_allow_http = true\n",
        "warden.toml",
    )
    .unwrap()
    .tracing
    .unwrap();
    assert!(t.insecure_allow_http);
}

#[test]
fn refuses_nan_ratio() {
    let e = errors("[tracing]\nendpoint = \"http://127.0.0.1:4318\"\nsample_ratio = nan\n");
    assert!(e.contains("tracing.sample_ratio"), "{e}");
}

#[test]
fn refuses_managed_and_malformed_headers() {
    let e = errors(
        "[tracing]\nendpoint = \"http://127.0.0.1:4318\"\n\
         headers = { content-type = \"text/plain\", \"bad name\" = \"x\" }\n",
    );
    assert!(e.contains("tracing.headers.content-type"), "{e}");
    assert!(
        e.contains("tracing.headers.\"bad name\"") || e.contains("bad name"),
        "{e}"
    );
}

#[test]
fn refuses_tracing_without_the_audit_log() {
    let e = errors("[audit]\nenabled = false\n\n[tracing]\nendpoint = \"http://127.0.0.1:4318\"\n");
    assert!(
        e.contains("warden.toml:5: tracing.endpoint: spans are built from the audit record stream"),
        "{e}"
    );
}

#[test]
fn refuses_unknown_keys() {
    let e = errors("[tracing]\nendpoint = \"http://127.0.0.1:4318\"\nprotocol = \"grpc\"\n");
    assert!(e.contains("protocol"), "{e}");
}
