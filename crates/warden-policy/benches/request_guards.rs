//! Cost of the request guards on an authorised, schema-valid `tools/call` (the common case):
//! each guard alone, and the whole stack (rate limit, Cedar policy from a role table, schema
//! validation with a cached validator, argument constraints) as the pipeline runs it. Also the
//! policy's cut of a 20-tool `tools/list` result.
//!
//! `serve_stack/*` is the combined figure: the request guards exactly as `serve` assembles
//! them (`warden_policy::build` from a `warden.toml` text, installed into a pipeline, as
//! `mcp-warden`'s `commands/guards.rs` does; their stage order is the pipeline's), behind the
//! HTTP face's authenticator (a bearer JWT already validated once, so cached; JWKS fetched
//! from a real issuer on 127.0.0.1 beforehand). `serve_stack/tools_call_guarded` authenticates
//! and runs an authorised, rate-limited (three buckets and two concurrency caps, in a
//! `MemoryStore` through the store interface), schema-validated, argument-checked
//! `tools/call`; `serve_stack/tools_call_open` runs the same call through an empty pipeline
//! with no authentication, so the difference is what the guards add. The pinning and content
//! guards that `serve` also installs are benchmarked with their crates.
//!
//! `rate_limit_buckets/*` compares one rate-limit decision (three buckets) on the plain
//! in-memory table with the store path the gateway uses.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::num::{NonZeroU32, NonZeroUsize};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use warden_config::{ArgumentsConfig, RateLimitConfig, RateSpec, RoleConfig};
use warden_guard::{
    AuthMethod, Call, Direction, Guard, Outcome, Permits, Pipeline, Principal, Stage, Target,
};
use warden_policy::policy::compile_roles;
use warden_policy::{
    ArgumentGuard, MemoryBuckets, PolicyGuard, RateLimitGuard, SchemaGuard, SchemaLimits,
};
use warden_proto::Message;
use warden_store::MemoryStore;

/// Polls a future that never waits (no guard here needs I/O for this call).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("these guards decide without waiting"),
    }
}

fn tool_definition() -> Value {
    json!({
        "name": "search_issues",
        "description": "Search issues in a repository.",
        "annotations": {"readOnlyHint": true},
        "inputSchema": {
            "type": "object",
            "properties": {
                "owner": {"type": "string", "maxLength": 100},
                "repo": {"type": "string", "maxLength": 100},
                "query": {"type": "string", "maxLength": 1000},
                "state": {"type": "string", "enum": ["open", "closed", "all"]},
                "labels": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                "per_page": {"type": "integer", "minimum": 1, "maximum": 100}
            },
            "required": ["owner", "repo", "query"],
            "additionalProperties": false
        }
    })
}

fn roles() -> BTreeMap<String, RoleConfig> {
    let mut roles = BTreeMap::new();
    for (name, tools) in [
        (
            "viewer",
            vec!["github/get_*", "github/list_*", "github/search_*"],
        ),
        (
            "developer",
            vec!["github/*", "files/read_*", "files/list_*"],
        ),
        ("ops", vec!["k8s/get_*", "k8s/describe_*", "k8s/logs"]),
    ] {
        roles.insert(
            name.to_owned(),
            RoleConfig {
                tools: tools.into_iter().map(str::to_owned).collect(),
                resources: vec!["file:///srv/docs/*".into()],
                ..RoleConfig::default()
            },
        );
    }
    roles
}

fn generous() -> RateSpec {
    RateSpec {
        count: NonZeroU32::MAX,
        period: Duration::from_secs(1),
        burst: NonZeroU32::new(1_000_000).unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let message = Message::from_value(json!({
        "jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "github__search_issues", "arguments": {
            "owner": "mcp-warden", "repo": "mcp-warden", "query": "is:open label:security rate limit",
            "state": "open", "labels": ["security", "api"], "per_page": 30
        }}
    }))
    .unwrap();
    let principal = Principal::new("https://idp.example#alice", AuthMethod::Bearer)
        .with_roles(["developer", "viewer"])
        .with_scopes(["mcp:tools"]);
    let target = Target {
        upstream: "github".into(),
        name: Some("search_issues".into()),
        tool: Some(Arc::new(tool_definition())),
    };

    let policy = Arc::new(
        PolicyGuard::from_sources(&[("[policy.roles]".into(), compile_roles(&roles()))]).unwrap(),
    );
    let rate = Arc::new(RateLimitGuard::new(
        RateLimitConfig {
            per_principal: Some(generous()),
            per_tool: Some(generous()),
            global: Some(generous()),
            max_concurrent_per_principal: NonZeroUsize::new(64),
            max_concurrent_per_upstream: NonZeroUsize::new(256),
        },
        Arc::new(MemoryBuckets::default()),
    ));
    let schema = Arc::new(SchemaGuard::new(SchemaLimits {
        max_bytes: 256 * 1024,
        max_depth: 32,
    }));
    let arguments = Arc::new(ArgumentGuard::new(&ArgumentsConfig::default()).unwrap());

    let guards: [(&str, Stage, Arc<dyn Guard>); 4] = [
        ("rate_limit", Stage::RateLimit, rate),
        ("policy", Stage::Policy, policy.clone()),
        ("schema", Stage::Schema, schema),
        ("arguments", Stage::Schema, arguments),
    ];
    let run = |p: &Pipeline| {
        let permits = Permits::default();
        let call = Call {
            message: &message,
            direction: Direction::ToUpstream,
            principal: &principal,
            session: None,
            upstream: Some("github"),
            request_method: None,
            target: Some(&target),
            permits: Some(&permits),
        };
        let outcome = ready(p.run(black_box(&call)));
        assert!(matches!(outcome, Outcome::Forward), "{outcome:?}");
    };
    let mut group = c.benchmark_group("request_guards");
    for (name, stage, guard) in &guards {
        let p = Pipeline::passthrough().with(*stage, guard.clone());
        group.bench_function(*name, |b| b.iter(|| run(&p)));
    }
    let all = guards.iter().fold(Pipeline::passthrough(), |p, (_, s, g)| {
        p.with(*s, g.clone())
    });
    group.bench_function("tools_call_all", |b| b.iter(|| run(&all)));
    group.finish();

    // The policy's cut of a list result: 20 tools, half of them not granted.
    let tools: Vec<Value> = (0..20)
        .map(|i| {
            let name = if i % 2 == 0 {
                format!("search_{i}")
            } else {
                format!("delete_{i}")
            };
            json!({"name": name, "inputSchema": {"type": "object"}})
        })
        .collect();
    let list = Message::from_value(json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}))
        .unwrap();
    let viewer = Principal::new("bob", AuthMethod::ApiKey).with_roles(["viewer"]);
    let p = Pipeline::passthrough().with(Stage::Policy, policy);
    c.bench_function("request_guards/list_filter_20_tools", |b| {
        b.iter(|| {
            let mut call = Call::new(&list, Direction::ToClient, &viewer);
            call.upstream = Some("github");
            call.request_method = Some("tools/list");
            let outcome = ready(p.run(black_box(&call)));
            assert!(matches!(outcome, Outcome::ForwardRewritten(_)));
        })
    });
}

/// The combined request-guard stack of `serve`, authenticated, against no guards at all.
fn serve_stack(c: &mut Criterion) {
    use std::time::{SystemTime, UNIX_EPOCH};
    use warden_test::oauth::{Issuer, SigningKey};

    const RESOURCE: &str = "https://gw.example.com/mcp";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::es256("bench-1");
    let issuer = rt.block_on(Issuer::start(&[&key]));
    let text = format!(
        r#"
[auth]
resource = "{RESOURCE}"
issuer = "{issuer}"
jwks_uri = "{issuer}/jwks"
required_scopes = ["mcp:tools"]

[policy.roles.viewer]
tools = ["github/get_*", "github/list_*", "github/search_*"]
[policy.roles.developer]
tools = ["github/*", "files/read_*", "files/list_*"]
resources = ["file:///srv/docs/*"]
[policy.roles.ops]
tools = ["k8s/get_*", "k8s/describe_*", "k8s/logs"]

[rate_limit]
global = {{ rate = "1000000/s", burst = 1000000 }}
per_principal = {{ rate = "1000000/s", burst = 1000000 }}
per_tool = {{ rate = "1000000/s", burst = 1000000 }}
max_concurrent_per_principal = 64
max_concurrent_per_upstream = 256
"#,
        issuer = issuer.url
    );
    let config = warden_config::Config::parse(&text, "warden.toml").unwrap();
    let guards = warden_policy::build(&config, std::path::Path::new("."), None).unwrap();
    assert_eq!(
        guards.iter().map(|(_, g)| g.name()).collect::<Vec<_>>(),
        ["rate_limit", "policy", "schema", "arguments"],
        "the serve stack this bench claims to measure"
    );
    let guarded = warden_policy::install(Pipeline::passthrough(), guards);
    let open = Pipeline::passthrough();
    let auth = warden_auth::Authenticator::new(&config.auth, None, None).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = key.sign(&json!({"iss": issuer.url, "aud": RESOURCE, "sub": "alice",
        "exp": now + 3600, "scope": "mcp:tools", "roles": ["developer"]}));
    let header = format!("Bearer {token}");
    // First sight: fetches the JWKS and verifies the signature; later requests hit the cache.
    let principal = rt
        .block_on(auth.authenticate(&[header.as_bytes()], None))
        .unwrap();
    assert!(
        principal.roles.iter().any(|r| &**r == "developer"),
        "{principal:?}"
    );
    let message = Message::from_value(json!({
        "jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "github__search_issues", "arguments": {
            "owner": "mcp-warden", "repo": "mcp-warden", "query": "is:open label:security rate limit",
            "state": "open", "labels": ["security", "api"], "per_page": 30
        }}
    }))
    .unwrap();
    let target = Target {
        upstream: "github".into(),
        name: Some("search_issues".into()),
        tool: Some(Arc::new(tool_definition())),
    };
    let anonymous = Principal::anonymous();

    let mut group = c.benchmark_group("serve_stack");
    group.bench_function("tools_call_guarded", |b| {
        b.to_async(&rt).iter(|| async {
            let principal = auth
                .authenticate(&[black_box(header.as_bytes())], None)
                .await
                .unwrap();
            let permits = Permits::default();
            let call = Call {
                message: &message,
                direction: Direction::ToUpstream,
                principal: &principal,
                session: None,
                upstream: Some("github"),
                request_method: None,
                target: Some(&target),
                permits: Some(&permits),
            };
            let outcome = guarded.run(black_box(&call)).await;
            assert!(matches!(outcome, Outcome::Forward), "{outcome:?}");
        });
    });
    group.bench_function("tools_call_open", |b| {
        b.to_async(&rt).iter(|| async {
            let permits = Permits::default();
            let call = Call {
                message: &message,
                direction: Direction::ToUpstream,
                principal: &anonymous,
                session: None,
                upstream: Some("github"),
                request_method: None,
                target: Some(&target),
                permits: Some(&permits),
            };
            let outcome = open.run(black_box(&call)).await;
            assert!(matches!(outcome, Outcome::Forward), "{outcome:?}");
        });
    });
    group.finish();

    // One rate-limit decision with all three buckets: the plain table against the store path.
    let limits = RateLimitConfig {
        per_principal: Some(generous()),
        per_tool: Some(generous()),
        global: Some(generous()),
        max_concurrent_per_principal: None,
        max_concurrent_per_upstream: None,
    };
    let table = RateLimitGuard::new(limits.clone(), Arc::new(MemoryBuckets::default()));
    let store = RateLimitGuard::new(
        limits,
        Arc::new(warden_policy::StoreBuckets::local(Arc::new(
            MemoryStore::default(),
        ))),
    );
    let _enter = rt.enter();
    let mut group = c.benchmark_group("rate_limit_buckets");
    for (name, guard) in [("memory_table", table), ("memory_store", store)] {
        let p = Pipeline::passthrough().with(Stage::RateLimit, Arc::new(guard));
        group.bench_function(name, |b| {
            b.iter(|| {
                let call = Call {
                    message: &message,
                    direction: Direction::ToUpstream,
                    principal: &principal,
                    session: None,
                    upstream: Some("github"),
                    request_method: None,
                    target: Some(&target),
                    permits: None,
                };
                let outcome = ready(p.run(black_box(&call)));
                assert!(matches!(outcome, Outcome::Forward), "{outcome:?}");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench, serve_stack);
criterion_main!(benches);
