//! The request guards as the binary builds them: `warden.toml` text -> [`warden_policy::build`]
//! -> a real [`Pipeline`], checking the stage order and what each refusal looks like. The
//! end-to-end deny paths through a real `mcp-warden serve` and upstream are in the
//! `mcp-warden` crate (`tests/it/request_guards.rs`).
#![allow(missing_docs)]
#![expect(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use serde_json::{Value, json};
use warden_config::Config;
use warden_guard::{AuthMethod, Call, Direction, Outcome, Permits, Pipeline, Principal, Target};
use warden_proto::Message;

fn pipeline(toml: &str) -> Pipeline {
    let config = Config::parse(toml, "warden.toml").unwrap();
    let guards = warden_policy::build(&config, std::path::Path::new("."), None).unwrap();
    warden_policy::install(Pipeline::passthrough(), guards)
}

async fn call(p: &Pipeline, who: &Principal, tool: &str, arguments: Value) -> Outcome {
    let message = Message::from_value(json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": format!("fx__{tool}"), "arguments": arguments}
    }))
    .unwrap();
    let target = Target {
        upstream: "fx".into(),
        name: Some(tool.into()),
        tool: Some(Arc::new(json!({
            "name": tool,
            "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        }))),
    };
    let permits = Permits::default();
    let mut c = Call::new(&message, Direction::ToUpstream, who);
    c.upstream = Some("fx");
    c.target = Some(&target);
    c.permits = Some(&permits);
    p.run(&c).await
}

fn denied_by(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Deny(d) => d.guard,
        other => panic!("expected a denial, got {other:?}"),
    }
}

const CONFIG: &str = r#"
[policy.roles.dev]
tools = ["fx/add"]

[rate_limit]
per_principal = { rate = "2/m", burst = 2 }
"#;

#[tokio::test]
async fn stages_run_in_pipeline_order() {
    let p = pipeline(CONFIG);
    let names: Vec<&str> = p.installed().map(|(_, g)| g.name()).collect();
    assert_eq!(names, ["rate_limit", "policy", "schema", "arguments"]);
    let dev = Principal::new("alice", AuthMethod::ApiKey).with_roles(["dev"]);
    let other = Principal::new("bob", AuthMethod::ApiKey);
    // Unauthorised and malformed: the policy answers, the caller learns nothing about the schema.
    assert_eq!(
        denied_by(&call(&p, &other, "add", json!({"n": "x"})).await),
        "policy"
    );
    // Authorised and malformed: the schema answers.
    assert_eq!(
        denied_by(&call(&p, &dev, "add", json!({"n": "x"})).await),
        "schema"
    );
    // Authorised and well-formed, but a metadata URL: the argument constraints answer.
    let ssrf = json!({"n": 1, "u": "http://169.254.169.254/"});
    assert_eq!(denied_by(&call(&p, &dev, "add", ssrf).await), "arguments");
    // Every request counted: the third is throttled before any other check runs.
    assert_eq!(
        denied_by(&call(&p, &dev, "add", json!({"n": 1})).await),
        "rate_limit"
    );
}

#[tokio::test]
async fn without_a_policy_everything_is_authorised_but_still_validated() {
    let p = pipeline("");
    let names: Vec<&str> = p.installed().map(|(_, g)| g.name()).collect();
    assert_eq!(names, ["schema", "arguments"]);
    let anyone = Principal::anonymous();
    assert!(matches!(
        call(&p, &anyone, "add", json!({"n": 1})).await,
        Outcome::Forward
    ));
    assert_eq!(
        denied_by(&call(&p, &anyone, "add", json!({})).await),
        "schema"
    );
}

#[tokio::test]
async fn a_denial_is_a_stable_jsonrpc_error_without_internals() {
    let p = pipeline(CONFIG);
    let other = Principal::new("bob", AuthMethod::ApiKey);
    let Outcome::Deny(d) = call(&p, &other, "add", json!({"n": 1})).await else {
        panic!("expected a denial");
    };
    let body = d.to_jsonrpc(&json!(1));
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": 1, "error": {
            "code": -31003, "message": "tool \"fx__add\" is not allowed", "data": {"guard": "policy"}
        }})
    );
    assert!(d.detail.contains("default deny"));
}
