use std::time::Duration;

use crate::*;

fn parse(text: &str) -> Config {
    match Config::parse(text, "warden.toml") {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid configuration, got:\n{errors}"),
    }
}

fn errors(text: &str) -> String {
    match Config::parse(text, "warden.toml") {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn an_upstream_without_the_table_gets_the_documented_defaults() {
    let c = parse("[upstreams.a]\ncommand = \"srv\"\n");
    let l = &c.upstreams[0].lifecycle;
    assert_eq!(l, &LifecycleConfig::default());
    assert_eq!(l.restart, RestartPolicy::OnFailure);
    assert_eq!(l.max_restarts, DEFAULT_MAX_RESTARTS);
    assert_eq!(l.backoff_jitter_permille, 200);
    assert_eq!(l.health_interval, Some(DEFAULT_HEALTH_INTERVAL));
    assert_eq!(l.max_call_duration, DEFAULT_MAX_CALL_DURATION);
    assert_eq!(l.stderr_budget, Some(DEFAULT_STDERR_BUDGET));
}

#[test]
fn every_key_is_read() {
    let c = parse(
        r#"
[upstreams.a]
command = "srv"
[upstreams.a.lifecycle]
restart = "never"
backoff_initial = "200ms"
backoff_max = "5s"
backoff_jitter = 0.5
max_restarts = 2
restart_window = "30s"
down_retry = "0s"
health_interval = "0s"
health_timeout = "2s"
health_failures = 1
on_unhealthy = "mark_down"
max_call_duration = "90s"
stderr_budget = "1KiB"
stderr_window = "10s"
"#,
    );
    let l = &c.upstreams[0].lifecycle;
    assert_eq!(l.restart, RestartPolicy::Never);
    assert_eq!(l.backoff_initial, Duration::from_millis(200));
    assert_eq!(l.backoff_max, Duration::from_secs(5));
    assert_eq!(l.backoff_jitter_permille, 500);
    assert_eq!(l.max_restarts, 2);
    assert_eq!(l.restart_window, Duration::from_secs(30));
    assert_eq!(l.down_retry, None);
    assert_eq!(l.health_interval, None);
    assert_eq!(l.health_timeout, Duration::from_secs(2));
    assert_eq!(l.health_failures, 1);
    assert_eq!(l.on_unhealthy, UnhealthyAction::MarkDown);
    assert_eq!(l.max_call_duration, Duration::from_secs(90));
    assert_eq!(l.stderr_budget, Some(1024));
    assert_eq!(l.stderr_window, Duration::from_secs(10));
}

#[test]
fn unlimited_stderr_budget_is_none() {
    let c = parse(
        "[upstreams.a]\ncommand = \"srv\"\n[upstreams.a.lifecycle]\nstderr_budget = \"unlimited\"\n",
    );
    assert_eq!(c.upstreams[0].lifecycle.stderr_budget, None);
}

#[test]
fn bad_values_are_all_reported_with_their_field() {
    let e = errors(
        r#"
[upstreams.a]
command = "srv"
[upstreams.a.lifecycle]
restart = "always"
backoff_initial = "10s"
backoff_max = "1s"
backoff_jitter = 1.5
max_restarts = 0
health_failures = 5000
on_unhealthy = "ignore"
max_call_duration = "0s"
stderr_budget = "lots"
"#,
    );
    for needle in [
        "upstreams.a.lifecycle.restart: unknown restart policy \"always\"",
        "upstreams.a.lifecycle.backoff_max: backoff_max must not be shorter than backoff_initial",
        "upstreams.a.lifecycle.backoff_jitter: jitter 1.5 is out of range",
        "upstreams.a.lifecycle.max_restarts: 0 is out of range",
        "upstreams.a.lifecycle.health_failures: 5000 is out of range",
        "upstreams.a.lifecycle.on_unhealthy: unknown action \"ignore\"",
        "upstreams.a.lifecycle.max_call_duration: duration \"0s\" must be greater than zero",
        "upstreams.a.lifecycle.stderr_budget: invalid size \"lots\"",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
    }
}

#[test]
fn stderr_keys_are_refused_on_http_upstreams() {
    let e = errors(
        "[upstreams.r]\nurl = \"https://example.com/mcp\"\n[upstreams.r.lifecycle]\nstderr_budget = \"1KiB\"\n",
    );
    assert!(
        e.contains("upstreams.r.lifecycle.stderr_budget: applies only to stdio upstreams"),
        "{e}"
    );
}

#[test]
fn unknown_keys_are_refused() {
    let e = errors("[upstreams.a]\ncommand = \"srv\"\n[upstreams.a.lifecycle]\nretries = 3\n");
    assert!(e.contains("unknown key `retries`"), "{e}");
}
