use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;
use warden_guard::{Principal, Target};
use warden_proto::Message;

use super::*;

fn role(tools: &[&str]) -> RoleConfig {
    RoleConfig {
        tools: tools.iter().map(|s| (*s).into()).collect(),
        ..RoleConfig::default()
    }
}

fn guard(roles: &[(&str, RoleConfig)], extra: &str) -> PolicyGuard {
    let roles: BTreeMap<String, RoleConfig> = roles
        .iter()
        .map(|(n, r)| ((*n).into(), r.clone()))
        .collect();
    PolicyGuard::from_sources(&[
        ("[policy.roles]".into(), compile_roles(&roles)),
        ("extra.cedar".into(), extra.into()),
    ])
    .unwrap()
}

fn tool<'a>(server: &'a str, name: &'a str, def: Option<&'a Value>) -> Resource<'a> {
    Resource::Tool {
        server,
        name,
        definition: def,
    }
}

fn msg(v: Value) -> Message {
    Message::from_value(v).unwrap()
}

#[test]
fn role_table_grants_listed_tools_only() {
    // Proves: ISO-3
    let g = guard(&[("dev", role(&["files/read_*"]))], "");
    let dev = Principal::new("alice", AuthMethod::Bearer).with_roles(["dev"]);
    let other = Principal::new("bob", AuthMethod::Bearer).with_roles(["ops"]);
    assert_eq!(
        g.decide(
            &dev,
            "tools/call",
            tool("files", "read_file", None),
            None,
            false
        ),
        Decided::Allow
    );
    assert!(matches!(
        g.decide(
            &dev,
            "tools/call",
            tool("files", "write_file", None),
            None,
            false
        ),
        Decided::Deny(_)
    ));
    assert!(matches!(
        g.decide(
            &dev,
            "tools/call",
            tool("other", "read_file", None),
            None,
            false
        ),
        Decided::Deny(_)
    ));
    assert!(matches!(
        g.decide(
            &other,
            "tools/call",
            tool("files", "read_file", None),
            None,
            false
        ),
        Decided::Deny(_)
    ));
}

#[test]
fn anything_unlisted_is_denied_once_a_policy_exists() {
    let g = guard(&[("dev", role(&["*/*"]))], "");
    let dev = Principal::new("alice", AuthMethod::Bearer).with_roles(["dev"]);
    assert!(matches!(
        g.decide(&dev, "some/new-method", Resource::Gateway, None, false),
        Decided::Deny(d) if d.contains("default deny")
    ));
    assert!(matches!(
        g.decide(
            &dev,
            "sampling/createMessage",
            Resource::Server("files"),
            None,
            false
        ),
        Decided::Deny(_)
    ));
}

#[test]
fn implicit_roles_come_from_the_method_not_from_claims() {
    let g = guard(&[("local", role(&["*/*"]))], "");
    assert_eq!(
        g.decide(
            &Principal::local(),
            "tools/call",
            tool("a", "b", None),
            None,
            false
        ),
        Decided::Allow
    );
    // A bearer token claiming the `local` role does not get the local user's rights.
    let liar = Principal::new("x", AuthMethod::Bearer).with_roles(["local"]);
    assert!(matches!(
        g.decide(&liar, "tools/call", tool("a", "b", None), None, false),
        Decided::Deny(_)
    ));
}

#[test]
fn read_only_narrowing_uses_annotations_with_safe_defaults() {
    let mut r = role(&["*/*"]);
    r.read_only_tools = true;
    let g = guard(&[("viewer", r)], "");
    let p = Principal::new("v", AuthMethod::ApiKey).with_roles(["viewer"]);
    let ro = json!({"name": "t", "annotations": {"readOnlyHint": true}});
    let unannotated = json!({"name": "t"});
    assert_eq!(
        g.decide(&p, "tools/call", tool("s", "t", Some(&ro)), None, false),
        Decided::Allow
    );
    assert!(matches!(
        g.decide(
            &p,
            "tools/call",
            tool("s", "t", Some(&unannotated)),
            None,
            false
        ),
        Decided::Deny(_)
    ));
    assert!(matches!(
        g.decide(&p, "tools/call", tool("s", "t", None), None, false),
        Decided::Deny(_)
    ));
}

#[test]
fn conditions_over_arguments_and_fail_closed_errors() {
    let g = guard(
        &[("dev", role(&["files/*"]))],
        r#"forbid(principal, action == Action::"tools/call", resource is Tool)
             when { context.arguments.path like "/etc/*" };"#,
    );
    let p = Principal::new("alice", AuthMethod::Bearer).with_roles(["dev"]);
    let ok = json!({"path": "/srv/a"});
    let bad = json!({"path": "/etc/passwd"});
    let missing = json!({"other": 1});
    assert_eq!(
        g.decide(
            &p,
            "tools/call",
            tool("files", "read", None),
            Some(&ok),
            false
        ),
        Decided::Allow
    );
    assert!(
        matches!(g.decide(&p, "tools/call", tool("files", "read", None), Some(&bad), false), Decided::Deny(d) if d.contains("forbidden by extra.cedar#0"))
    );
    // The forbid errors on a missing attribute: Cedar would skip it and allow; the guard denies.
    assert!(
        matches!(g.decide(&p, "tools/call", tool("files", "read", None), Some(&missing), false), Decided::Deny(d) if d.contains("failing closed"))
    );
}

#[test]
fn entity_syntax_in_arguments_stays_data() {
    let g = guard(
        &[],
        r#"permit(principal, action == Action::"tools/call", resource)
             when { context.arguments.owner == principal };"#,
    );
    let p = Principal::new("alice", AuthMethod::Bearer);
    let forged = json!({"owner": {"__entity": {"type": "Principal", "id": "alice"}}});
    assert!(matches!(
        g.decide(&p, "tools/call", tool("s", "t", None), Some(&forged), false),
        Decided::Deny(_)
    ));
}

#[test]
fn resources_and_prompts_by_pattern() {
    let r = RoleConfig {
        resources: vec!["file:///srv/docs/*".into()],
        prompts: vec!["*/summarise".into()],
        sampling: true,
        ..RoleConfig::default()
    };
    let g = guard(&[("reader", r)], "");
    let p = Principal::new("r", AuthMethod::ApiKey).with_roles(["reader"]);
    let uri = |u| Resource::Uri {
        server: None,
        uri: u,
    };
    assert_eq!(
        g.decide(
            &p,
            "resources/read",
            uri("file:///srv/docs/a.md"),
            None,
            false
        ),
        Decided::Allow
    );
    assert!(matches!(
        g.decide(&p, "resources/read", uri("file:///etc/passwd"), None, false),
        Decided::Deny(_)
    ));
    assert_eq!(
        g.decide(
            &p,
            "prompts/get",
            Resource::Prompt {
                server: "x",
                name: "summarise"
            },
            None,
            false
        ),
        Decided::Allow
    );
    assert_eq!(
        g.decide(
            &p,
            "sampling/createMessage",
            Resource::Server("x"),
            None,
            false
        ),
        Decided::Allow
    );
    assert!(matches!(
        g.decide(&p, "elicitation/create", Resource::Server("x"), None, false),
        Decided::Deny(_)
    ));
}

/// Completing a prompt's or a resource's argument reveals what it would take (a path
/// completion lists names): allowed only for what the caller may get or read.
#[tokio::test]
async fn completion_needs_the_item_it_completes() {
    let r = RoleConfig {
        resources: vec!["file:///srv/docs/*".into()],
        prompts: vec!["*/summarise".into()],
        ..RoleConfig::default()
    };
    let g = guard(&[("reader", r)], "");
    let p = Principal::new("r", AuthMethod::ApiKey).with_roles(["reader"]);
    let complete = |reference: Value| {
        msg(
            json!({"jsonrpc": "2.0", "id": 1, "method": "completion/complete",
            "params": {"ref": reference, "argument": {"name": "path", "value": "/"}}}),
        )
    };
    let prompt = |name: &str| Target {
        upstream: "x".into(),
        name: Some(name.into()),
        tool: None,
    };
    let verdict = |m: &Message, target: Option<&Target>| {
        let mut call = Call::new(m, Direction::ToUpstream, &p);
        call.target = target;
        call.upstream = target.map(|t| &*t.upstream);
        g.verdict(&call)
    };
    let allowed = complete(json!({"type": "ref/prompt", "name": "x__summarise"}));
    assert!(matches!(
        verdict(&allowed, Some(&prompt("summarise"))),
        Verdict::Continue
    ));
    let other = complete(json!({"type": "ref/prompt", "name": "x__secrets"}));
    let Verdict::Deny(d) = verdict(&other, Some(&prompt("secrets"))) else {
        panic!("a prompt the caller may not get")
    };
    assert_eq!(
        d.message,
        "completion of prompt \"x__secrets\" is not allowed"
    );
    assert!(
        matches!(verdict(&other, None), Verdict::Deny(_)),
        "unresolved"
    );
    let docs = complete(json!({"type": "ref/resource", "uri": "file:///srv/docs/{name}"}));
    assert!(matches!(verdict(&docs, None), Verdict::Continue));
    let etc = complete(json!({"type": "ref/resource", "uri": "file:///etc/{name}"}));
    assert!(matches!(verdict(&etc, None), Verdict::Deny(_)));
    // The value typed so far is judged inside the template: completing a path with `../`
    // would list what the grant does not cover.
    for (template, value, context, allowed) in [
        ("file:///srv/docs/{path}", "guide/", json!({}), true),
        ("file:///srv/docs/{path}", "../../etc/", json!({}), false),
        (
            "file:///srv/docs/{+path}",
            "a/../../../etc/",
            json!({}),
            false,
        ),
        ("file:///srv/docs/x{/path*}", "..", json!({}), false),
        ("file:///srv/docs/{path}", "%2e%2e/", json!({}), false),
        // A query or fragment would hide the rest from the URI check.
        (
            "file:///srv/docs/{path}",
            "x?/../../../etc/",
            json!({}),
            false,
        ),
        (
            "file:///srv/docs/{path}",
            "#/../../../etc/",
            json!({}),
            false,
        ),
        (
            "file:///srv/docs/list{?path}",
            "../../etc",
            json!({}),
            false,
        ),
        // The other variables, from the arguments the client already resolved.
        (
            "file:///srv/docs/{dir}/{path}",
            "a",
            json!({"dir": "../.."}),
            false,
        ),
        (
            "file:///srv/docs/{dir}/{path}",
            "a",
            json!({"dir": "guides"}),
            true,
        ),
        ("file:///srv/docs/{dir,path}", "../../etc", json!({}), false),
        ("file:///srv/docs/{path:99}", "../../etc", json!({}), false),
        // A query's value may ask a question; it may still not traverse.
        (
            "file:///srv/docs/find{?path}",
            "what is this?",
            json!({}),
            true,
        ),
    ] {
        let m = msg(
            json!({"jsonrpc": "2.0", "id": 1, "method": "completion/complete",
            "params": {"ref": {"type": "ref/resource", "uri": template},
                       "argument": {"name": "path", "value": value},
                       "context": {"arguments": context}}}),
        );
        assert_eq!(
            matches!(verdict(&m, None), Verdict::Continue),
            allowed,
            "{template} with {value:?}"
        );
    }
}

proptest! {
    /// Any template, name and value: no panic, and a template without the variable is left
    /// as it is.
    #[test]
    fn template_expansion_is_total(template in ".{0,40}", name in "[a-z{}+/*,:]{1,6}", value in ".{0,12}") {
        let out = expand_template(&template, &[(name.as_str(), value.as_str())]);
        if !template.contains(name.as_str()) {
            prop_assert_eq!(out, template);
        }
    }
}

#[test]
fn templates_expand_the_completed_variable_only() {
    let one = |t: &str, name: &str, value: &str| expand_template(t, &[(name, value)]);
    assert_eq!(
        one("file:///srv/{dir}/{path}", "path", "a/b"),
        "file:///srv/{dir}/a/b"
    );
    assert_eq!(one("repo://{+path}", "path", "x/y"), "repo://x/y");
    assert_eq!(one("file:///srv{/path*}", "path", "a"), "file:///srv/a");
    assert_eq!(one("x://{path", "path", "a"), "x://{path");
    assert_eq!(one("x://a", "path", "b"), "x://a");
    assert_eq!(one("x://{path:3}", "path", "abcdef"), "x://abcdef");
    assert_eq!(
        expand_template("x://{/dir,path}", &[("dir", "d"), ("path", "p")]),
        "x:///d/p"
    );
}

#[tokio::test]
async fn request_denial_names_what_without_internals() {
    // Proves: DATA-4
    let g = guard(&[("dev", role(&["files/read"]))], "");
    let p = Principal::new("alice", AuthMethod::Bearer).with_roles(["dev"]);
    let m = msg(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "files__write"}}),
    );
    let target = Target {
        upstream: "files".into(),
        name: Some("write".into()),
        tool: None,
    };
    let mut call = Call::new(&m, Direction::ToUpstream, &p);
    call.target = Some(&target);
    let Ok(Verdict::Deny(d)) = g.check(&call).await else {
        panic!("expected a denial");
    };
    assert_eq!(d.message, "tool \"files__write\" is not allowed");
    assert!(!d.message.contains("Role"));
    assert!(d.detail.contains("default deny"));
    // Plumbing passes without a permit.
    let ping = msg(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    assert!(matches!(
        g.check(&Call::new(&ping, Direction::ToUpstream, &p)).await,
        Ok(Verdict::Continue)
    ));
}

#[tokio::test]
async fn lists_are_cut_to_what_the_principal_may_use() {
    let g = guard(&[("dev", role(&["files/read_*"]))], "");
    let p = Principal::new("alice", AuthMethod::Bearer).with_roles(["dev"]);
    let m = msg(json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
        {"name": "read_file", "inputSchema": {"type": "object"}},
        {"name": "write_file", "inputSchema": {"type": "object"}},
    ]}}));
    let mut call = Call::new(&m, Direction::ToClient, &p);
    call.upstream = Some("files");
    call.request_method = Some("tools/list");
    let Ok(Verdict::Rewrite(out)) = g.check(&call).await else {
        panic!("expected a rewrite");
    };
    let names: Vec<&str> = out.result().unwrap()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["read_file"]);
}

#[test]
fn a_policy_conditioned_on_arguments_keeps_the_tool_listed() {
    let g = guard(
        &[],
        r#"permit(principal, action == Action::"tools/call", resource is Tool)
             when { context.arguments.path like "/srv/*" };"#,
    );
    let p = Principal::anonymous();
    assert_eq!(
        g.decide(&p, "tools/call", tool("s", "t", None), None, true),
        Decided::Allow
    );
    assert!(matches!(
        g.decide(&p, "tools/call", tool("s", "t", None), None, false),
        Decided::Deny(_)
    ));
}

/// A forbid that errors while listing (it reads arguments a list has none of) does not list a
/// tool no permit grants: only a permit that failed so keeps an item listed.
#[test]
fn a_forbid_conditioned_on_arguments_lists_nothing_by_itself() {
    let g = guard(
        &[("dev", role(&["github/*"]))],
        r#"forbid(principal, action == Action::"tools/call", resource is Tool)
             when { resource.server == "k8s" && context.arguments.namespace like "prod*" };"#,
    );
    let p = Principal::new("alice", AuthMethod::Bearer).with_roles(["dev"]);
    assert_eq!(
        g.decide(&p, "tools/call", tool("github", "issues", None), None, true),
        Decided::Allow
    );
    assert!(matches!(
        g.decide(
            &p,
            "tools/call",
            tool("k8s", "delete_pod", None),
            None,
            true
        ),
        Decided::Deny(_)
    ));
}

#[test]
fn only_canonical_resource_uris_are_judged() {
    for ok in [
        "file:///srv/docs/a.md",
        "file:///srv/docs/dir/",
        "mem://a",
        "mem://items/7",
        "test://static/resource/1",
        "https://example.com/a/b?next=../x#..",
        "urn:isbn:0451450523",
        "file:///srv/docs/a%20b.md",
        "file:///srv/docs/%C3%A9t%C3%A9",
        "ui://widget/{id}",
        "https://example.com:8443/a",
        "http://[::1]:8080/a",
        "https://[::1]/a",
        "http://127.0.0.1:8080/a",
        "https://xn--bcher-kva.example/a",
        "https://v2.api.example.com/a",
    ] {
        assert_eq!(canonical_uri(ok), Ok(()), "{ok}");
    }
    for bad in [
        "file:///srv/docs/../../etc/shadow",
        "file:///srv/docs/..",
        "file:///srv/./secret/x",
        "file:///srv//secret/x",
        "file://localhost/srv/secret/x",
        "FILE:///srv/secret/x",
        "File:///srv/secret/x",
        "repo://org/public/../private/x",
        "repo:org/public/../private",
        "file:///srv/docs/%2e%2e/%2E%2E/etc/shadow",
        "file:///srv/docs/..%2Fx",
        "file:///srv/docs%5c..%5cx",
        "file:///srv/docs/%73ecret",
        "file:///srv/docs/%zz",
        "file:///srv/docs/a%2",
        "file:///srv\\docs",
        "no-scheme",
        ":empty",
        "file:/srv/secret/key",
        "https://EXAMPLE.com/secret/x",
        "https://example.com:443/secret/x",
        "http://example.com:80/x",
        "https://user@example.com/secret/x",
        "https://example.com./secret/x",
        "https://ex%61mple.com/secret/x",
        "https://example.com:/x",
        "https://example.com:0443/x",
        "repo://o:%2e/x",
        "https://internal.example.com\\secret",
        "https://internal.example.com\\..\\x",
        "https://internal\u{3002}example\u{3002}com/s",
        "https://\u{ff29}nternal.example.com/s",
        "http://127.1/",
        "http://0x7f000001/",
        "http://[0:0::1]/",
        "http://[::FFFF:1]/",
        "repo://v:H/x",
    ] {
        assert!(canonical_uri(bad).is_err(), "{bad}");
    }
    let reader = RoleConfig {
        resources: vec!["file:///srv/docs/*".into()],
        ..RoleConfig::default()
    };
    let g = guard(
        &[("reader", reader)],
        r#"forbid(principal, action, resource is Resource)
             when { resource.uri like "file:///srv/docs/secret/*" };"#,
    );
    let p = Principal::new("r", AuthMethod::ApiKey).with_roles(["reader"]);
    let read = |uri: &str| {
        g.decide(
            &p,
            "resources/read",
            Resource::Uri {
                server: Some("fs"),
                uri,
            },
            None,
            false,
        )
    };
    assert_eq!(read("file:///srv/docs/a.md"), Decided::Allow);
    for bad in [
        // Out of the grant by resolution, inside it by text.
        "file:///srv/docs/../../etc/shadow",
        // Inside the forbid by resolution, outside it by text.
        "file:///srv/docs//secret/plan",
        "file:///srv/docs/x/../secret/plan",
        "file:///srv/docs/%73ecret/plan",
    ] {
        assert!(matches!(read(bad), Decided::Deny(_)), "{bad}");
    }
}

/// RFC 3986 `remove_dot_segments` after decoding `%2e`, `%2f` and collapsing empty segments:
/// how a lenient server might resolve a path.
fn resolved(path: &str) -> String {
    let decoded = path
        .replace("%2e", ".")
        .replace("%2E", ".")
        .replace("%2f", "/")
        .replace("%2F", "/");
    let mut out: Vec<&str> = vec![];
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

proptest! {
    /// Whatever segments a path is made of, a URI under a prefix that passes the check resolves
    /// under that prefix: the text a rule matches is where a server goes.
    #[test]
    fn an_accepted_uri_resolves_where_its_text_says(
        segments in prop::collection::vec(
            prop::sample::select(&["a", "b", "..", ".", "", "%2e%2e", "%2E", "x%2fy", "%2F", "c.d", "..."][..]),
            0..8,
        )
    ) {
        let path = format!("/srv/docs/{}", segments.join("/"));
        let uri = format!("file://{path}");
        if canonical_uri(&uri).is_ok() {
            let to = resolved(&path);
            prop_assert!(to.starts_with("/srv/docs"), "{} -> {}", uri, to);
            prop_assert_eq!(to.trim_end_matches('/'), path.trim_end_matches('/'));
        }
    }
}

#[test]
fn rejects_templates_and_bad_cedar() {
    assert!(matches!(
        PolicyGuard::from_sources(&[(
            "t.cedar".into(),
            "permit(principal == ?principal, action, resource);".into()
        )]),
        Err(PolicyError::Template { .. })
    ));
    assert!(matches!(
        PolicyGuard::from_sources(&[("bad.cedar".into(), "permit(".into())]),
        Err(PolicyError::Parse { origin, .. }) if origin == "bad.cedar"
    ));
}

proptest! {
    // A role-table pattern behaves exactly like the glob matcher, whatever characters the
    // pattern and name contain (quotes, backslashes, Cedar syntax): the compiled Cedar never
    // breaks out of its string literal.
    #[test]
    fn compiled_patterns_match_like_globs(
        pattern in "[a-z\"\\\\*()_;]{0,8}",
        name in "[a-z\"\\\\()_;]{0,8}",
    ) {
        let g = guard(&[("r", role(&[&format!("s/{pattern}")]))], "");
        let p = Principal::new("u", AuthMethod::ApiKey).with_roles(["r"]);
        let allowed = g.decide(&p, "tools/call", tool("s", &name, None), None, false) == Decided::Allow;
        prop_assert_eq!(allowed, crate::glob::Glob::new(&pattern).matches(&name));
    }

    // Any JSON arguments convert to a Cedar context without panicking, and a policy reading
    // them still decides.
    #[test]
    fn arbitrary_arguments_never_panic(args in arb_json()) {
        let g = guard(&[], r#"permit(principal, action, resource) when { context.arguments.x == 1 };"#);
        let _ = g.decide(&Principal::anonymous(), "tools/call", tool("s", "t", None), Some(&args), false);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z_]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("(x|__entity|__extn|[a-z]{1,3})", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn arc_str_principal_subject_with_quotes_is_data() {
    let g = guard(&[("dev", role(&["*/*"]))], "");
    let p = Principal::new(Arc::<str>::from("\" || true || \""), AuthMethod::Bearer)
        .with_roles(["dev"]);
    assert_eq!(
        g.decide(&p, "tools/call", tool("s", "t", None), None, false),
        Decided::Allow
    );
    let q = Principal::new(Arc::<str>::from("\" || true || \""), AuthMethod::Bearer);
    assert!(matches!(
        g.decide(&q, "tools/call", tool("s", "t", None), None, false),
        Decided::Deny(_)
    ));
}

proptest! {
    // Whatever characters a pattern holds (controls, NUL, quotes, Unicode), the compiled role
    // table parses and matches like the glob.
    #[test]
    fn any_pattern_compiles_to_valid_cedar(pattern in "(.|[\\x00-\\x1f\\x7f\"\\\\*])*", name in ".{0,6}") {
        let g = guard(&[("r", role(&[&format!("s/{pattern}")]))], "");
        let p = Principal::new("u", AuthMethod::ApiKey).with_roles(["r"]);
        let allowed = g.decide(&p, "tools/call", tool("s", &name, None), None, false) == Decided::Allow;
        prop_assert_eq!(allowed, crate::glob::Glob::new(&pattern).matches(&name));
    }
}

#[test]
fn cached_decisions_follow_roles_scopes_and_annotations() {
    let mut ro = role(&["s/*"]);
    ro.read_only_tools = true;
    let g = guard(&[("dev", role(&["s/*"])), ("viewer", ro)], "");
    let dev = Principal::new("alice", AuthMethod::Bearer).with_roles(["dev"]);
    let viewer = Principal::new("alice", AuthMethod::Bearer).with_roles(["viewer"]);
    let writes = json!({"name": "t", "annotations": {"readOnlyHint": false}});
    let reads = json!({"name": "t", "annotations": {"readOnlyHint": true}});
    for _ in 0..2 {
        // Same subject, a refreshed token with fewer roles: decided anew, not from the cache.
        assert_eq!(
            g.decide(
                &dev,
                "tools/call",
                tool("s", "t", Some(&writes)),
                None,
                false
            ),
            Decided::Allow
        );
        assert!(matches!(
            g.decide(
                &viewer,
                "tools/call",
                tool("s", "t", Some(&writes)),
                None,
                false
            ),
            Decided::Deny(_)
        ));
        assert_eq!(
            g.decide(
                &viewer,
                "tools/call",
                tool("s", "t", Some(&reads)),
                None,
                false
            ),
            Decided::Allow
        );
    }
}

/// The verdict on `message` from upstream `up` to `p`'s client.
async fn to_client(g: &PolicyGuard, p: &Principal, up: Option<&str>, message: Value) -> Verdict {
    let m = msg(message);
    let mut call = Call::new(&m, Direction::ToClient, p);
    call.upstream = up;
    g.check(&call).await.unwrap()
}

#[tokio::test]
async fn resource_updates_reach_only_principals_that_may_read_the_uri() {
    // Proves: AUTH-1, DATA-3 (a notification names a resource only to those who may read it)
    let reader = RoleConfig {
        resources: vec!["docs://public/*".into()],
        ..RoleConfig::default()
    };
    let g = guard(&[("reader", reader)], "");
    let p = Principal::new("r", AuthMethod::ApiKey).with_roles(["reader"]);
    let stranger = Principal::new("s", AuthMethod::ApiKey).with_roles(["other"]);
    let updated = |uri: &str| json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}});
    assert!(matches!(
        to_client(&g, &p, Some("docs"), updated("docs://public/a")).await,
        Verdict::Continue
    ));
    let Verdict::Deny(d) = to_client(&g, &p, Some("docs"), updated("docs://secret/a")).await else {
        panic!("an update about an unreadable uri must be dropped");
    };
    assert_eq!(d.guard, PolicyGuard::NAME);
    assert!(!d.message.contains("secret"), "{}", d.message);
    assert!(matches!(
        to_client(&g, &stranger, Some("docs"), updated("docs://public/a")).await,
        Verdict::Deny(_)
    ));
    // Malformed (no uri): dropped, not passed.
    assert!(matches!(
        to_client(
            &g,
            &p,
            Some("docs"),
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {}})
        )
        .await,
        Verdict::Deny(_)
    ));
    // Notifications that name nothing pass to everyone.
    for method in [
        "notifications/message",
        "notifications/tools/list_changed",
        "notifications/resources/list_changed",
    ] {
        assert!(matches!(
            to_client(
                &g,
                &stranger,
                Some("docs"),
                json!({"jsonrpc": "2.0", "method": method, "params": {"level": "info", "data": "x"}})
            )
            .await,
            Verdict::Continue
        ));
    }
}

#[tokio::test]
async fn elicitation_completion_follows_the_elicitation_permission() {
    let g = guard(
        &[(
            "asker",
            RoleConfig {
                elicitation: true,
                ..RoleConfig::default()
            },
        )],
        "",
    );
    let asker = Principal::new("a", AuthMethod::ApiKey).with_roles(["asker"]);
    let other = Principal::new("b", AuthMethod::ApiKey);
    let complete = json!({"jsonrpc": "2.0", "method": "notifications/elicitation/complete",
        "params": {"elicitationId": "e-1"}});
    assert!(matches!(
        to_client(&g, &asker, Some("x"), complete.clone()).await,
        Verdict::Continue
    ));
    assert!(matches!(
        to_client(&g, &other, Some("x"), complete.clone()).await,
        Verdict::Deny(_)
    ));
    // Without a known upstream there is nothing to authorise against: dropped.
    assert!(matches!(
        to_client(&g, &asker, None, complete).await,
        Verdict::Deny(_)
    ));
}

/// A 2026-07-28 upstream asks for input inside its result (`input_required`): each request it
/// carries needs its action, as the same request sent on its own would.
#[tokio::test]
async fn requests_inside_an_input_required_result_need_their_action() {
    let g = guard(
        &[(
            "sampler",
            RoleConfig {
                sampling: true,
                ..RoleConfig::default()
            },
        )],
        "",
    );
    let sampler = Principal::new("a", AuthMethod::ApiKey).with_roles(["sampler"]);
    let other = Principal::new("b", AuthMethod::ApiKey);
    let asking = |requests: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required",
            "inputRequests": requests, "requestState": "s"}})
    };
    let sample = json!({"r1": {"method": "sampling/createMessage", "params": {}}});
    assert!(matches!(
        to_client(&g, &sampler, Some("x"), asking(sample.clone())).await,
        Verdict::Continue
    ));
    for (who, requests) in [
        (&other, sample),
        (
            &sampler,
            json!({"r1": {"method": "sampling/createMessage"}, "r2": {"method": "roots/list"}}),
        ),
        (&sampler, json!([{"method": "elicitation/create"}])),
    ] {
        assert!(
            matches!(
                to_client(&g, who, Some("x"), asking(requests.clone())).await,
                Verdict::Deny(_)
            ),
            "{requests} for {}",
            who.subject
        );
    }
    // Without a known upstream there is nothing to authorise against.
    assert!(matches!(
        to_client(
            &g,
            &sampler,
            None,
            asking(json!({"r1": {"method": "sampling/createMessage"}}))
        )
        .await,
        Verdict::Deny(_)
    ));
}

#[tokio::test]
async fn server_requests_need_their_action() {
    // Proves: AUTH-1 (sampling and elicitation from an upstream are authorised per principal)
    let g = guard(
        &[(
            "sampler",
            RoleConfig {
                sampling: true,
                ..RoleConfig::default()
            },
        )],
        "",
    );
    let sampler = Principal::new("a", AuthMethod::ApiKey).with_roles(["sampler"]);
    let other = Principal::new("b", AuthMethod::ApiKey);
    let request =
        |method: &str| json!({"jsonrpc": "2.0", "id": "warden-1", "method": method, "params": {}});
    assert!(matches!(
        to_client(&g, &sampler, Some("x"), request("sampling/createMessage")).await,
        Verdict::Continue
    ));
    for (who, method) in [
        (&other, "sampling/createMessage"),
        (&sampler, "elicitation/create"),
        (&other, "elicitation/create"),
        (&other, "roots/list"),
    ] {
        assert!(
            matches!(
                to_client(&g, who, Some("x"), request(method)).await,
                Verdict::Deny(_)
            ),
            "{method} for {}",
            who.subject
        );
    }
}
