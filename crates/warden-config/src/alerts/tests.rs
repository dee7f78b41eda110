use super::*;
use crate::Config;

fn errors(text: &str) -> String {
    Config::parse(text, "warden.toml").unwrap_err().to_string()
}

#[test]
fn alerts_are_off_without_a_section() {
    let c = Config::parse("", "warden.toml").unwrap();
    assert!(!c.alerts.enabled);
    assert_eq!(c.alerts, AlertsConfig::default());
}

#[test]
fn an_empty_section_enables_the_documented_defaults() {
    let c = Config::parse("[alerts]\n", "warden.toml").unwrap();
    let a = c.alerts;
    assert!(a.enabled);
    assert_eq!(a.auth_failures.threshold.get(), 10);
    assert_eq!(a.auth_failures.window, Duration::from_secs(60));
    assert_eq!(a.denials.threshold.get(), 20);
    assert_eq!(a.pin_changed.threshold.get(), 1);
    assert_eq!(a.upstream_crash_loop.threshold.get(), 3);
    assert_eq!(a.untrusted_then_sensitive.sensitive_tools, None);
    assert_eq!(
        a.untrusted_then_sensitive.untrusted_tools,
        DEFAULT_UNTRUSTED_TOOLS
    );
    assert!(a.log.enabled);
    assert!(a.webhook.is_none());
}

#[test]
fn parses_every_key() {
    let c = Config::parse(
        r#"
[alerts]
queue = 16
[alerts.auth_failures]
threshold = 3
window = "30s"
cooldown = "1m"
severity = "critical"
[alerts.denials]
enabled = false
[alerts.pin_changed]
severity = "medium"
[alerts.poisoning]
cooldown = "0s"
[alerts.upstream_crash_loop]
threshold = 5
window = "10m"
[alerts.untrusted_then_sensitive]
window = "30s"
untrusted_tools = ["web__*"]
untrusted_upstreams = ["browser"]
sensitive_tools = ["fs__write_*"]
[alerts.webhook]
url = "https://alerts.example.com/hook"
secret = "env:ALERT_SECRET"
timeout = "2s"
retries = 1
[alerts.log]
file = "alerts.jsonl"
"#,
        "warden.toml",
    )
    .unwrap();
    let a = c.alerts;
    assert_eq!(a.queue.get(), 16);
    assert_eq!(a.auth_failures.threshold.get(), 3);
    assert_eq!(a.auth_failures.window, Duration::from_secs(30));
    assert_eq!(a.auth_failures.cooldown, Duration::from_secs(60));
    assert_eq!(a.auth_failures.severity, AlertSeverity::Critical);
    assert!(!a.denials.enabled);
    assert_eq!(a.pin_changed.severity, AlertSeverity::Medium);
    assert_eq!(a.poisoning.cooldown, Duration::ZERO);
    assert_eq!(a.upstream_crash_loop.threshold.get(), 5);
    let s = a.untrusted_then_sensitive;
    assert_eq!(s.window, Duration::from_secs(30));
    assert_eq!(s.untrusted_tools, ["web__*"]);
    assert_eq!(s.untrusted_upstreams, ["browser"]);
    assert_eq!(s.sensitive_tools, Some(vec!["fs__write_*".to_owned()]));
    let w = a.webhook.unwrap();
    assert_eq!(w.url.as_str(), "https://alerts.example.com/hook");
    assert_eq!(w.secret, Some(ValueRef::Env("ALERT_SECRET".into())));
    assert_eq!(w.timeout, Duration::from_secs(2));
    assert_eq!(w.retries, 1);
    assert_eq!(a.log.file, Some(PathBuf::from("alerts.jsonl")));
}

#[test]
fn refuses_alerts_without_the_audit_log() {
    let text = errors("[audit]\nenabled = false\n[alerts]\n");
    assert!(
        text.contains("warden.toml:3: alerts: alerts are evaluated over the audit log"),
        "{text}"
    );
    // Explicitly disabled alerts are fine without the log.
    let c = Config::parse(
        "[audit]\nenabled = false\n[alerts]\nenabled = false\n",
        "warden.toml",
    )
    .unwrap();
    assert!(!c.alerts.enabled);
}

#[test]
fn refuses_a_plain_webhook_secret() {
    let text = errors("[alerts.webhook]\nurl = \"https://a.example/h\"\nsecret = \"hunter2\"\n");
    assert!(
        text.contains("warden.toml:3: alerts.webhook.secret: plain secret values are not allowed"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn refuses_plain_http_to_a_remote_host_but_not_to_loopback() {
    let text = errors("[alerts.webhook]\nurl = \"http://alerts.example.com/h\"\n");
    assert!(
        text.contains(
            "warden.toml:2: alerts.webhook.url: \"http://alerts.example.com/h\" must use https"
        ),
        "{text}"
    );
    for url in [
        "http://127.0.0.1:9/h",
        "http://[::1]:9/h",
        "http://localhost/h",
    ] {
        let c = Config::parse(
            &format!("[alerts.webhook]\nurl = \"{url}\"\n"),
            "warden.toml",
        )
        .unwrap();
        assert_eq!(c.alerts.webhook.unwrap().url.as_str(), url);
    }
}

#[test]
fn reports_bad_values_with_their_line() {
    let text = errors(
        "[alerts]\nqueue = 0\n[alerts.denials]\nthreshold = 0\nwindow = \"0s\"\nseverity = \"dire\"\n\
         [alerts.webhook]\nretries = 11\ntimeout = \"2m\"\n[alerts.untrusted_then_sensitive]\n\
         untrusted_tools = [\"\"]\n[alerts.log]\nfile = \"\"\n[alerts.bursts]\n",
    );
    for expected in [
        "warden.toml:2: alerts.queue: 0 is out of range",
        "warden.toml:4: alerts.denials.threshold: 0 is out of range",
        "warden.toml:5: alerts.denials.window: duration \"0s\" must be greater than zero",
        "warden.toml:6: alerts.denials.severity",
        "warden.toml:7: alerts.webhook: `url` is required",
        "warden.toml:8: alerts.webhook.retries: 11 is out of range",
        "warden.toml:9: alerts.webhook.timeout: the webhook timeout must be at most 1m",
        "warden.toml:11: alerts.untrusted_then_sensitive.untrusted_tools[0]: must not be empty",
        "warden.toml:13: alerts.log.file: must not be empty",
        "warden.toml:14: alerts",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
