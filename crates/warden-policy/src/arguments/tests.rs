use std::path::Path;

use serde_json::json;
use warden_guard::{Principal, Target};
use warden_proto::Message;

use super::*;

fn guard(roots: &[&Path]) -> ArgumentGuard {
    let config = ArgumentsConfig {
        path_roots: roots.iter().map(|p| p.to_path_buf()).collect(),
        ..ArgumentsConfig::default()
    };
    ArgumentGuard::new(&config).unwrap()
}

async fn run(g: &ArgumentGuard, method: &str, params: Value) -> Result<(), (String, String)> {
    let m =
        Message::from_value(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .unwrap();
    let p = Principal::anonymous();
    let target = Target {
        upstream: "files".into(),
        name: Some("read".into()),
        tool: None,
    };
    let mut call = Call::new(&m, Direction::ToUpstream, &p);
    call.target = Some(&target);
    g.check_request(&call).await
}

fn args(a: Value) -> Value {
    json!({"name": "files__read", "arguments": a})
}

#[tokio::test]
async fn paths_stay_inside_roots() {
    // Proves: API-1
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.txt"), "x").unwrap();
    let g = guard(&[dir.path()]);
    let inside = dir.path().join("ok.txt").to_string_lossy().into_owned();
    assert!(
        run(&g, "tools/call", args(json!({"path": inside})))
            .await
            .is_ok()
    );
    let (msg, _) = run(
        &g,
        "tools/call",
        args(json!({"path": format!("{}/../x", dir.path().display())})),
    )
    .await
    .unwrap_err();
    assert_eq!(
        msg,
        "argument `path` contains a parent-directory (..) component"
    );
    let (msg, _) = run(
        &g,
        "tools/call",
        args(json!({"opts": {"paths": ["ok.txt", "/etc/passwd"]}})),
    )
    .await
    .unwrap_err();
    assert_eq!(
        msg,
        "argument `opts.paths[1]` is outside the allowed directories"
    );
    // file: URIs of resources/read get the same treatment.
    let (msg, _) = run(&g, "resources/read", json!({"uri": "file:///etc/passwd"}))
        .await
        .unwrap_err();
    assert!(msg.contains("outside the allowed directories"), "{msg}");
}

#[tokio::test]
async fn ssrf_targets_are_refused() {
    let g = guard(&[]);
    for (url, what) in [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://127.0.0.1:8080/admin", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("gopher://192.168.0.1:25/", "private"),
        ("http://localhost:9/", "internal host"),
    ] {
        let (msg, _) = run(&g, "tools/call", args(json!({"url": url})))
            .await
            .unwrap_err();
        assert!(msg.contains(what), "{url}: {msg}");
    }
    // Found whatever the argument is called, and in resource URIs.
    assert!(
        run(
            &g,
            "tools/call",
            args(json!({"q": {"target": "http://127.0.0.1/"}}))
        )
        .await
        .is_err()
    );
    assert!(
        run(
            &g,
            "resources/read",
            json!({"uri": "http://169.254.169.254/"})
        )
        .await
        .is_err()
    );
    // Bare hosts under host-like argument names.
    let (msg, _) = run(&g, "tools/call", args(json!({"host": "127.0.0.1:22"})))
        .await
        .unwrap_err();
    assert!(msg.contains("loopback"), "{msg}");
    // Application URI schemes name no network host: nothing is resolved or refused.
    assert!(
        run(&g, "resources/read", json!({"uri": "greeting://localhost"}))
            .await
            .is_ok()
    );
    // Public literal addresses pass without DNS.
    assert!(
        run(
            &g,
            "tools/call",
            args(json!({"url": "https://93.184.215.14/"}))
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused() {
    // `localhost.` with a trailing dot is not caught by the internal-name list only if the
    // list missed it; use a name that resolves through the system resolver instead.
    let g = guard(&[]);
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let hostname = hostname.trim();
    // `ip6-localhost` and `localhost.localdomain` resolve through /etc/hosts on most systems.
    let mut refused = 0;
    for name in [
        "ip6-localhost",
        "ip6-loopback",
        "localhost.localdomain",
        hostname,
    ] {
        if name.is_empty() {
            continue;
        }
        let Ok(addrs) = tokio::net::lookup_host((name, 80)).await else {
            continue;
        };
        let addrs: Vec<_> = addrs.collect();
        if addrs.is_empty()
            || addrs
                .iter()
                .any(|a| crate::address::classify(a.ip()) == AddressClass::Public)
        {
            continue;
        }
        let (msg, detail) = run(
            &g,
            "tools/call",
            args(json!({"url": format!("http://{name}/")})),
        )
        .await
        .unwrap_err();
        assert!(
            msg.contains("(by DNS)") || msg.contains("internal host"),
            "{name}: {msg}"
        );
        assert!(detail.contains(name), "{detail}");
        refused += 1;
    }
    assert!(
        refused > 0,
        "no local name resolved to a non-public address on this host"
    );
}

#[tokio::test]
async fn allow_lists_and_length_rules() {
    let config = ArgumentsConfig {
        url_allow_hosts: vec!["*.example.com".into()],
        block_private_addresses: false,
        max_string_bytes: std::num::NonZeroUsize::new(64).unwrap(),
        rules: vec![warden_config::ArgumentRule {
            tool: "files/*".into(),
            argument: "mode".into(),
            max_length: Some(4),
            pattern: Some(regex::Regex::new("^(?:ro|rw)$").unwrap()),
        }],
        ..ArgumentsConfig::default()
    };
    let g = ArgumentGuard::new(&config).unwrap();
    assert!(
        run(
            &g,
            "tools/call",
            args(json!({"url": "https://api.example.com/x"}))
        )
        .await
        .is_ok()
    );
    let (msg, _) = run(&g, "tools/call", args(json!({"url": "https://evil.test/"})))
        .await
        .unwrap_err();
    assert!(msg.contains("not allowed"), "{msg}");
    let (msg, _) = run(&g, "tools/call", args(json!({"s": "x".repeat(65)})))
        .await
        .unwrap_err();
    assert!(msg.contains("longer than 64 bytes"), "{msg}");
    assert!(
        run(&g, "tools/call", args(json!({"mode": "ro"})))
            .await
            .is_ok()
    );
    let (msg, _) = run(&g, "tools/call", args(json!({"mode": "exec"})))
        .await
        .unwrap_err();
    assert!(
        msg.contains("longer than 4") || msg.contains("pattern"),
        "{msg}"
    );
    let (msg, _) = run(&g, "tools/call", args(json!({"mode": "wx"})))
        .await
        .unwrap_err();
    assert!(msg.contains("pattern"), "{msg}");
}

#[tokio::test]
async fn unresolvable_names_follow_the_configured_choice() {
    let lenient = guard(&[]);
    assert!(
        run(
            &lenient,
            "tools/call",
            args(json!({"url": "https://no-such-host.invalid/"}))
        )
        .await
        .is_ok()
    );
    let strict = ArgumentGuard::new(&ArgumentsConfig {
        deny_unresolvable_hosts: true,
        ..ArgumentsConfig::default()
    })
    .unwrap();
    let (msg, _) = run(
        &strict,
        "tools/call",
        args(json!({"url": "https://no-such-host.invalid/"})),
    )
    .await
    .unwrap_err();
    assert!(msg.contains("does not resolve"), "{msg}");
}

#[tokio::test]
async fn a_verdict_at_once_only_for_messages_without_arguments_to_check() {
    let g = guard(&[]);
    let p = Principal::anonymous();
    let bad = json!({"name": "files__read", "uri": "http://127.0.0.1/", "arguments": {"url": "http://127.0.0.1/"}});
    let message = |method: &str| {
        Message::from_value(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": bad}))
            .unwrap()
    };
    // The methods whose arguments or URI are checked wait for `check`, which refuses.
    for method in [
        "tools/call",
        "prompts/get",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
    ] {
        let m = message(method);
        let call = Call::new(&m, Direction::ToUpstream, &p);
        assert!(g.check_now(&call).is_none(), "{method}");
        assert!(
            matches!(g.check(&call).await, Ok(Verdict::Deny(_))),
            "{method}"
        );
    }
    // Anything else passes at once, and `check` agrees.
    let response = Message::from_value(json!({"jsonrpc": "2.0", "id": 1, "result": bad})).unwrap();
    let notification =
        Message::from_value(json!({"jsonrpc": "2.0", "method": "tools/call", "params": bad}))
            .unwrap();
    let others = [
        (message("completion/complete"), Direction::ToUpstream),
        (message("tools/call"), Direction::ToClient),
        (response, Direction::ToClient),
        (notification, Direction::ToUpstream),
    ];
    for (m, direction) in &others {
        let call = Call::new(m, *direction, &p);
        assert!(matches!(g.check_now(&call), Some(Ok(Verdict::Continue))));
        assert!(matches!(g.check(&call).await, Ok(Verdict::Continue)));
    }
}

#[tokio::test]
async fn arguments_naming_no_host_are_decided_at_once_as_check_decides() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.txt"), "x").unwrap();
    let g = guard(&[dir.path()]);
    let p = Principal::anonymous();
    let inside = dir.path().join("ok.txt").to_string_lossy().into_owned();
    let outside = format!("{}/../x", dir.path().display());
    let cases = [
        (json!({"message": "hello"}), true),
        (json!({"path": inside}), true),
        (json!({"path": outside}), false),
        (json!({"nested": [{"path": "/etc/passwd"}]}), false),
    ];
    for (arguments, allowed) in cases {
        let m = Message::from_value(json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": args(arguments.clone())
        }))
        .unwrap();
        let call = Call::new(&m, Direction::ToUpstream, &p);
        let now = g.check_now(&call);
        let later = g.check(&call).await;
        match allowed {
            true => {
                assert!(matches!(now, Some(Ok(Verdict::Continue))), "{arguments}");
                assert!(matches!(later, Ok(Verdict::Continue)), "{arguments}");
            }
            false => {
                let (Some(Ok(Verdict::Deny(a))), Ok(Verdict::Deny(b))) = (now, later) else {
                    panic!("{arguments}: not refused at once and later");
                };
                assert_eq!(a.message, b.message);
            }
        }
    }
    // A path check fails at once even when another argument names a host to look up.
    let m = Message::from_value(json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": args(json!({"url": "https://example.com/", "path": "/etc/passwd"}))
    }))
    .unwrap();
    let call = Call::new(&m, Direction::ToUpstream, &p);
    assert!(matches!(g.check_now(&call), Some(Ok(Verdict::Deny(_)))));
}

/// A completion lists what an argument could take, so its values are checked as the call's
/// own arguments would be: a path argument typed outside the roots (in `argument` or in the
/// context's resolved arguments), a host argument naming an internal address, and a resource
/// template whose expansion reads outside the roots are refused; values inside are not.
#[tokio::test]
async fn completion_values_are_checked_like_arguments() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    let g = guard(&[dir.path()]);
    let root = dir.path().display().to_string();
    let prompt = json!({"type": "ref/prompt", "name": "files__summarize"});
    let complete = |reference: &Value, name: &str, value: &str, context: Value| json!({"ref": reference, "argument": {"name": name, "value": value}, "context": {"arguments": context}});
    let inside = format!("{root}/docs/a");
    assert!(
        run(
            &g,
            "completion/complete",
            complete(&prompt, "path", &inside, json!({}))
        )
        .await
        .is_ok()
    );
    // An argument whose name says nothing is only length-checked.
    assert!(
        run(
            &g,
            "completion/complete",
            complete(&prompt, "style", "/etc/", json!({}))
        )
        .await
        .is_ok()
    );
    for (params, expected) in [
        (
            complete(&prompt, "path", "/etc/pa", json!({})),
            "argument `path` is outside the allowed directories",
        ),
        (
            complete(&prompt, "path", &format!("{root}/../"), json!({})),
            "argument `path` contains a parent-directory (..) component",
        ),
        (
            complete(&prompt, "style", "terse", json!({"path": "/etc/passwd"})),
            "argument `path` is outside the allowed directories",
        ),
        (
            complete(
                &json!({"type": "ref/resource", "uri": "file:///etc/{name}"}),
                "name",
                "pass",
                json!({}),
            ),
            "outside the allowed directories",
        ),
    ] {
        let (msg, _) = run(&g, "completion/complete", params.clone())
            .await
            .expect_err(&params.to_string());
        assert!(msg.contains(expected), "{params}: {msg}");
    }
    let template = json!({"type": "ref/resource", "uri": format!("file://{root}/docs/{{name}}")});
    assert!(
        run(
            &g,
            "completion/complete",
            complete(&template, "name", "a", json!({}))
        )
        .await
        .is_ok()
    );
    // Hosts too: completing a URL argument toward the metadata address is refused.
    let g = guard(&[]);
    let (msg, _) = run(
        &g,
        "completion/complete",
        complete(&prompt, "url", "http://169.254.169.254/lat", json!({})),
    )
    .await
    .unwrap_err();
    assert!(msg.contains("metadata address"), "{msg}");
}
