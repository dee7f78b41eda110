//! Session-layer tests against real upstream processes (a small Python MCP server of a chosen
//! era that records every message it receives), without any network face.
#![allow(missing_docs, unreachable_pub)]
#![expect(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use warden_guard::{Pipeline, Principal};
use warden_proto::{Limits, Message, decode};
use warden_session::{
    EraPreference, Face, Gateway, GatewayOptions, Handler, Reply, Session, Transport, UpstreamDef,
};
use warden_upstream::StdioSpec;

mod lifecycle;

const WAIT: Duration = Duration::from_secs(30);

fn fixture() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/era_server.py")
        .display()
        .to_string()
}

struct Upstream {
    name: &'static str,
    era: &'static str,
    namespace: bool,
}

fn def(u: &Upstream, dir: &Path) -> UpstreamDef {
    let mut spec = StdioSpec::new(u.name, "python3");
    spec.args = vec![
        fixture(),
        u.era.into(),
        dir.join(format!("{}.jsonl", u.name)).display().to_string(),
    ];
    UpstreamDef {
        name: u.name.into(),
        transport: Transport::Stdio(spec),
        era: EraPreference::Auto,
        request_timeout: WAIT,
        startup_timeout: WAIT,
        namespace: u.namespace,
        lifecycle: Default::default(),
    }
}

struct Fixture {
    gateway: Arc<Gateway>,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(upstreams: &[Upstream], transparent: bool) -> Fixture {
        Self::start_with(
            upstreams,
            GatewayOptions {
                transparent,
                ..GatewayOptions::default()
            },
        )
        .await
    }

    async fn start_with(upstreams: &[Upstream], opts: GatewayOptions) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let defs = upstreams.iter().map(|u| def(u, dir.path())).collect();
        let gateway = Gateway::start(defs, Pipeline::passthrough(), opts)
            .await
            .unwrap();
        Fixture { gateway, dir }
    }

    /// Every message upstream `name` received, in order.
    /// An HTTP session of `principal`, initialized (2025-11-25) by a client that offers roots.
    async fn session_with_roots(&self, principal: &Principal) -> Arc<Session> {
        let s = self
            .gateway
            .open_session(principal.clone(), Face::Http)
            .await
            .unwrap();
        let init = self
            .call(
                Some(&s),
                principal,
                json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"t","version":"1"}}}),
            )
            .await;
        assert!(init.get("result").is_some(), "{init}");
        s
    }

    fn received(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// [`Fixture::received`] once `done` holds for it (the upstream records what it reads
    /// asynchronously), or as it stands after [`WAIT`].
    async fn wait_received(&self, name: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.received(name);
            if done(&got) || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn received_methods(&self, name: &str) -> Vec<String> {
        self.received(name)
            .iter()
            .filter_map(|m| m["method"].as_str().map(str::to_owned))
            .collect()
    }

    /// Every message of the reply to `msg`, in order, until its stream ends (with or without
    /// a response).
    async fn exchange(
        &self,
        session: Option<&Arc<Session>>,
        principal: &Principal,
        msg: Value,
    ) -> Vec<Value> {
        let reply =
            tokio::time::timeout(WAIT, self.gateway.handle(session, principal, message(msg)))
                .await
                .unwrap();
        let Reply::Stream(mut stream) = reply else {
            panic!("a request must get a reply stream")
        };
        let mut got = vec![];
        while let Some(m) = tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
            got.push(m.into_value());
        }
        got
    }

    async fn call(
        &self,
        session: Option<&Arc<Session>>,
        principal: &Principal,
        msg: Value,
    ) -> Value {
        let m = message(msg);
        let reply = tokio::time::timeout(WAIT, self.gateway.handle(session, principal, m))
            .await
            .unwrap();
        let Reply::Stream(mut stream) = reply else {
            panic!("a request must get a reply stream")
        };
        loop {
            let m = tokio::time::timeout(WAIT, stream.next())
                .await
                .unwrap()
                .expect("a response");
            if m.is_response() {
                return m.into_value();
            }
        }
    }

    async fn legacy_session(&self) -> Arc<Session> {
        let s = self
            .gateway
            .open_session(Principal::anonymous(), Face::Http)
            .await
            .unwrap();
        let r = self
            .call(
                Some(&s),
                &Principal::anonymous(),
                json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
            )
            .await;
        assert!(r.get("result").is_some(), "{r}");
        s
    }

    async fn stop(self) {
        self.gateway.shutdown().await;
    }
}

impl Fixture {
    /// One era-fixture upstream `name` run as `era` with `delay` seconds (see the fixture's
    /// usage) and `request_timeout`, behind a passthrough gateway.
    async fn one_slow(name: &str, era: &str, delay: &str, request_timeout: Duration) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = StdioSpec::new(name, "python3");
        spec.args = vec![
            fixture(),
            era.into(),
            dir.path()
                .join(format!("{name}.jsonl"))
                .display()
                .to_string(),
            delay.into(),
        ];
        let up = UpstreamDef {
            name: name.into(),
            transport: Transport::Stdio(spec),
            era: EraPreference::Auto,
            request_timeout,
            startup_timeout: WAIT,
            namespace: true,
            lifecycle: Default::default(),
        };
        let gateway = Gateway::start(vec![up], Pipeline::passthrough(), GatewayOptions::default())
            .await
            .unwrap();
        Fixture { gateway, dir }
    }
}

/// A guard refusing the messages `refuses` picks, as `name` with `message`: for tests of
/// which messages the guards see and what follows a refusal.
struct Refusing {
    name: &'static str,
    message: &'static str,
    refuses: fn(&warden_guard::Call<'_>) -> bool,
}

impl warden_guard::Guard for Refusing {
    fn name(&self) -> &'static str {
        self.name
    }

    fn controls(&self) -> &'static [&'static str] {
        &[]
    }

    fn check<'a>(
        &'a self,
        call: &'a warden_guard::Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<warden_guard::Verdict, warden_guard::GuardError>>
    {
        let verdict = if (self.refuses)(call) {
            warden_guard::Verdict::Deny(warden_guard::Denial {
                guard: self.name,
                code: warden_proto::ErrorCode::Denied,
                message: self.message.into(),
                detail: String::new(),
                controls: &[],
                retry_after: None,
            })
        } else {
            warden_guard::Verdict::Continue
        };
        Box::pin(async move { Ok(verdict) })
    }
}

impl Fixture {
    /// [`Fixture::start`] (not transparent) with a [`Refusing`] guard in the policy stage.
    async fn refusing(upstreams: &[Upstream], guard: Refusing) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let defs = upstreams.iter().map(|u| def(u, dir.path())).collect();
        let pipeline = Pipeline::passthrough().with(warden_guard::Stage::Policy, Arc::new(guard));
        let gateway = Gateway::start(defs, pipeline, GatewayOptions::default())
            .await
            .unwrap();
        Fixture { gateway, dir }
    }
}

fn message(v: Value) -> Message {
    decode(Bytes::from(v.to_string()), &Limits::default()).unwrap()
}

fn modern(method: &str, id: i64, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

const A: Upstream = Upstream {
    name: "a",
    era: "legacy",
    namespace: true,
};
const B: Upstream = Upstream {
    name: "b",
    era: "modern",
    namespace: true,
};

/// A server request that arrives while the gateway's own request (here the listing it makes for
/// a client's `tools/list`) is the only one in flight is answered for the upstream (no client
/// can take it), not swallowed: the upstream waiting for it would otherwise never answer.
#[tokio::test]
async fn a_server_request_during_the_gateways_own_exchange_is_answered() {
    let asks = Upstream {
        name: "a",
        era: "legacy-asks",
        namespace: true,
    };
    let f = Fixture::start(&[asks], false).await;
    let s = f.legacy_session().await;
    let list = f
        .call(
            Some(&s),
            s.principal(),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{list}"
    );
    let answered = f
        .received("a")
        .into_iter()
        .find(|m| m["id"] == "r1" && m.get("method").is_none());
    let answered = answered.expect("the roots request was answered");
    assert_eq!(answered["error"]["code"], -32601, "{answered}");
    f.stop().await;
}

/// An upstream's cancellation of its own request reaches the client under the id the client
/// knows that request by; one naming a request the client was never sent is dropped.
#[tokio::test]
async fn a_servers_cancellation_of_its_request_names_the_clients_id() {
    let f = Fixture::start(&[A], false).await;
    let s = f
        .gateway
        .open_session(Principal::anonymous(), Face::Http)
        .await
        .unwrap();
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}});
    assert!(f.call(Some(&s), s.principal(), init).await["result"].is_object());
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__withdraw","arguments":{}}});
    let got = f.exchange(Some(&s), s.principal(), call).await;
    let methods: Vec<&str> = got
        .iter()
        .map(|m| m["method"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        methods,
        ["sampling/createMessage", "notifications/cancelled", ""],
        "{got:?}"
    );
    let asked = &got[0]["id"];
    assert_ne!(asked, "w1", "the client sees the gateway's id");
    assert_eq!(got[1]["params"]["requestId"], *asked, "{got:?}");
    assert_eq!(got[1]["params"]["reason"], "changed my mind");

    // Withdrawn later, with no request in flight (here right after another session's call):
    // to the session it was sent to, not to another.
    let other = f.legacy_session().await;
    let mut others = other.take_unsolicited().unwrap();
    let mut mine = s.take_unsolicited().unwrap();
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a__ask_only","arguments":{}}});
    let asked = f.exchange(Some(&s), s.principal(), call).await.remove(0);
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    // Withdrawn while another session's call is the one in flight (the upstream's message
    // goes to that call's stream): still to the session the request was sent to.
    let during = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a__withdraw_during","arguments":{}}});
    for v in f.exchange(Some(&other), other.principal(), during).await {
        assert!(v["result"].is_object(), "the other session got {v}");
    }
    let withdrawn = tokio::time::timeout(WAIT, mine.recv())
        .await
        .unwrap()
        .unwrap()
        .into_value();
    assert_eq!(
        withdrawn["method"], "notifications/cancelled",
        "{withdrawn}"
    );
    assert_eq!(withdrawn["params"]["requestId"], asked["id"], "{withdrawn}");
    assert!(others.try_recv().is_err(), "another session got it");

    // Withdrawn with no request in flight at all: the same.
    let call = json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a__ask_only","arguments":{}}});
    let asked = f.exchange(Some(&s), s.principal(), call).await.remove(0);
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    let after = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"a__withdraw_asked","arguments":{}}});
    assert!(f.call(Some(&other), other.principal(), after).await["result"].is_object());
    let withdrawn = tokio::time::timeout(WAIT, mine.recv())
        .await
        .unwrap()
        .unwrap()
        .into_value();
    assert_eq!(withdrawn["params"]["requestId"], asked["id"], "{withdrawn}");
    assert!(others.try_recv().is_err(), "another session got it");
    f.stop().await;
}

/// A cancellation that arrives before its request was recorded (the two read together) still
/// cancels it: the request is refused without reaching the upstream. It is remembered only
/// briefly, so an id reused later runs normally.
#[tokio::test]
async fn a_cancellation_ahead_of_its_request_cancels_it() {
    let f = Fixture::start(&[A], false).await;
    let s = f.legacy_session().await;
    let cancel =
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}});
    let _ = f
        .gateway
        .handle(Some(&s), s.principal(), message(cancel))
        .await;
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a__echo","arguments":{}}});
    let r = f.call(Some(&s), s.principal(), call.clone()).await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    let calls = || {
        f.received("a")
            .iter()
            .filter(|m| m["method"] == "tools/call")
            .count()
    };
    assert_eq!(calls(), 0, "the cancelled call reached the upstream");
    tokio::time::sleep(warden_session::gateway::EARLY_CANCEL_TTL + Duration::from_millis(100))
        .await;
    let r = f.call(Some(&s), s.principal(), call).await;
    assert!(r["result"].is_object(), "{r}");
    f.stop().await;
}

/// A request of a session that ended after the face found it (a DELETE racing it) is answered
/// "session not found": it does not fall back to the routes stateless callers share.
#[tokio::test]
async fn a_request_of_an_ended_session_is_not_served_on_shared_routes() {
    let f = Fixture::start(&[A], false).await;
    let s = f.legacy_session().await;
    f.gateway.end_session(&s).await;
    let r = f
        .call(
            Some(&s),
            s.principal(),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert_eq!(r["error"]["message"], "session not found", "{r}");
    f.stop().await;
}

/// A 2026-07-28 client gets log messages only when its request asked for them
/// (`_meta` logLevel), at or above that level, also from a legacy upstream (which is not told).
#[tokio::test]
async fn a_modern_client_gets_only_the_logs_its_request_asked_for() {
    let f = Fixture::start(&[A], false).await;
    let anon = Principal::anonymous();
    let logs = async |level: Option<&str>, id: i64| {
        let mut call = modern("tools/call", id, json!({"name": "a__log", "arguments": {}}));
        if let Some(level) = level {
            call["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!(level);
        }
        let mut got = vec![];
        for v in f.exchange(None, &anon, call).await {
            if v["method"] == "notifications/message" {
                got.push(v["params"]["data"].as_str().unwrap().to_owned());
            } else {
                assert!(v["result"].is_object(), "{v}");
            }
        }
        got
    };
    assert!(logs(None, 1).await.is_empty(), "logs nobody asked for");
    assert_eq!(logs(Some("warning"), 2).await, ["at warning", "at error"]);
    f.stop().await;
}

/// A plain upstream's item named like a namespaced upstream's (`a__echo`) is withheld: it would
/// be listed with its own definition while calls to that name go to the other upstream's item.
#[tokio::test]
async fn a_plain_name_shaped_like_another_upstreams_item_is_withheld() {
    let shadow = Upstream {
        name: "shadow",
        era: "legacy",
        namespace: false,
    };
    let f = Fixture::start(&[A, shadow], false).await;
    let s = f.legacy_session().await;
    let list = f
        .call(
            Some(&s),
            s.principal(),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
    let echoes: Vec<&Value> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "a__echo")
        .collect();
    assert_eq!(echoes.len(), 1, "{list}");
    assert_eq!(
        echoes[0]["description"], "echo",
        "the namespaced upstream's own"
    );
    // A resource's name is a display name: one shaped so is still listed (it is routed by URI).
    let resources = f
        .call(
            Some(&s),
            s.principal(),
            json!({"jsonrpc":"2.0","id":2,"method":"resources/list"}),
        )
        .await;
    assert!(
        resources["result"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["uri"] == "mem://shadow-res"),
        "{resources}"
    );
    f.stop().await;
}

/// Each item of an aggregated list is judged as its own upstream's, never as that of another
/// upstream listing the same URI: a guard refusing one upstream's resources leaves none of
/// them in the list.
#[tokio::test]
async fn list_items_are_judged_as_the_upstream_that_listed_them() {
    const C: Upstream = Upstream {
        name: "c",
        era: "legacy",
        namespace: true,
    };
    let f = Fixture::refusing(
        &[A, C],
        Refusing {
            name: "not-c",
            message: "upstream c's resources are refused",
            refuses: |call| {
                call.direction == warden_guard::Direction::ToClient
                    && call.request_method == Some("resources/list")
                    && call.upstream == Some("c")
            },
        },
    )
    .await;
    let s = f.legacy_session().await;
    let list = f
        .call(
            Some(&s),
            s.principal(),
            json!({"jsonrpc":"2.0","id":1,"method":"resources/list"}),
        )
        .await;
    let mut uris: Vec<&str> = list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    uris.sort_unstable();
    assert_eq!(uris, ["mem://a", "mem://only-a"], "{list}");
    f.stop().await;
}

#[tokio::test]
async fn aggregates_every_page_of_every_upstream_under_namespaced_names() {
    let f = Fixture::start(&[A, B], false).await;
    let s = f.legacy_session().await;
    let list = f
        .call(
            Some(&s),
            s.principal(),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
    assert_eq!(
        tool_names(&list),
        [
            "a__echo",
            "a__files_read",
            "a__page2",
            "b__echo",
            "b__files_read",
            "b__page2"
        ],
        "both pages of both upstreams, dotted names adjusted to the portable set"
    );
    // The upstream saw a cursor for the second page.
    assert!(
        f.received("a")
            .iter()
            .any(|m| m["params"]["cursor"] == "p2")
    );
    f.stop().await;
}

#[tokio::test]
async fn calls_route_by_prefix_with_the_original_name_and_the_clients_id() {
    let f = Fixture::start(&[A, B], false).await;
    let s = f.legacy_session().await;
    f.call(
        Some(&s),
        s.principal(),
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    let r = f
        .call(
            Some(&s),
            s.principal(),
            json!({"jsonrpc":"2.0","id":"client-7","method":"tools/call","params":{"name":"a__files_read","arguments":{"x":1}}}),
        )
        .await;
    assert_eq!(r["id"], "client-7");
    let seen: Value =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen["name"], "files.read",
        "the upstream gets its own name back"
    );
    assert_eq!(seen["arguments"], json!({"x": 1}));
    assert!(!f.received_methods("b").contains(&"tools/call".to_owned()));
    f.stop().await;
}

#[tokio::test]
async fn unknown_tools_are_refused_and_never_forwarded() {
    let f = Fixture::start(&[A, B], false).await;
    let s = f.legacy_session().await;
    for name in ["zz__echo", "echo", "", "a_echo"] {
        let r = f
            .call(
                Some(&s),
                s.principal(),
                json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name}}),
            )
            .await;
        assert_eq!(r["error"]["code"], -32602, "{name}: {r}");
    }
    for up in ["a", "b"] {
        assert!(
            !f.received_methods(up).contains(&"tools/call".to_owned()),
            "{up} saw a call"
        );
    }
    f.stop().await;
}

#[tokio::test]
async fn a_cursor_the_gateway_never_issued_is_invalid() {
    let f = Fixture::start(&[A], false).await;
    let s = f.legacy_session().await;
    let r = f
        .call(
            Some(&s),
            s.principal(),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"p2"}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32602);
    f.stop().await;
}

#[tokio::test]
async fn a_session_refuses_another_principal_and_forwards_nothing() {
    let f = Fixture::start(&[A], false).await;
    let s = f.legacy_session().await;
    let before = f.received("a").len();
    let intruder = Principal::new("mallory", warden_guard::AuthMethod::Anonymous);
    let r = f
        .call(
            Some(&s),
            &intruder,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__echo"}}),
        )
        .await;
    assert!(r.get("error").is_some(), "{r}");
    assert_eq!(f.received("a").len(), before, "the upstream saw nothing");
    f.stop().await;
}

/// Presenting another caller's session id is a miss with no side effect: it neither keeps the
/// session alive (the owner's idle expiry still runs) nor makes a replica adopt the session
/// (which would take a slot of its table).
#[tokio::test]
async fn another_callers_lookup_neither_refreshes_nor_adopts_a_session() {
    let store: warden_store::DynStore = Arc::new(warden_store::MemoryStore::default());
    let opts = |max_sessions| GatewayOptions {
        session_store: store.clone(),
        session_idle: Duration::from_millis(400),
        max_sessions,
        ..GatewayOptions::default()
    };
    let one = Fixture::start_with(&[A], opts(16)).await;
    let two = Fixture::start_with(&[A], opts(1)).await;
    let s = one.legacy_session().await;
    let id = s.id().as_str().to_owned();
    let intruder = Principal::new("mallory", warden_guard::AuthMethod::Anonymous);

    // Another replica: not found, and not adopted (its one slot stays free).
    assert!(
        two.gateway
            .find_session(&id, &intruder)
            .await
            .unwrap()
            .is_none()
    );
    let own = two
        .gateway
        .open_session(Principal::anonymous(), Face::Http)
        .await
        .expect("the intruder's lookup took no slot");
    two.gateway.end_session(&own).await;

    // The owning replica: the intruder's lookups, every 50 ms for 0.8 s, do not keep the
    // session alive past its 0.4 s idle limit.
    let until = tokio::time::Instant::now() + Duration::from_millis(800);
    while tokio::time::Instant::now() < until {
        assert!(
            one.gateway
                .find_session(&id, &intruder)
                .await
                .unwrap()
                .is_none()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        one.gateway
            .find_session(&id, &Principal::anonymous())
            .await
            .unwrap()
            .is_none(),
        "idle past the limit although another caller kept presenting its id"
    );
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn the_session_table_is_bounded() {
    let f = Fixture::start_with(
        &[A],
        GatewayOptions {
            max_sessions: 2,
            ..GatewayOptions::default()
        },
    )
    .await;
    let _a = f
        .gateway
        .open_session(Principal::anonymous(), Face::Http)
        .await
        .unwrap();
    let _b = f
        .gateway
        .open_session(Principal::anonymous(), Face::Http)
        .await
        .unwrap();
    assert!(
        f.gateway
            .open_session(Principal::anonymous(), Face::Http)
            .await
            .is_err()
    );
    f.stop().await;
}

/// Two gateway replicas sharing one session store: a session opened on one is served by the
/// other, with its principal and negotiated version; ended on one, it is gone on both.
#[tokio::test]
async fn replicas_share_sessions_through_the_store() {
    let store: warden_store::DynStore = Arc::new(warden_store::MemoryStore::default());
    let opts = || GatewayOptions {
        session_store: store.clone(),
        ..GatewayOptions::default()
    };
    let one = Fixture::start_with(&[A], opts()).await;
    let two = Fixture::start_with(&[A], opts()).await;
    let s = one.legacy_session().await;
    let id = s.id().as_str().to_owned();

    let there = two
        .gateway
        .find_session(&id, &Principal::anonymous())
        .await
        .unwrap()
        .expect("found on the other replica");
    assert!(there.principal().same_caller(&Principal::anonymous()));
    assert_eq!(there.protocol_version().as_deref(), Some("2025-11-25"));
    assert!(there.is_initialized(), "no second initialize needed");
    let r = two
        .call(
            Some(&there),
            &Principal::anonymous(),
            json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"a__echo","arguments":{"text":"hi"}}}),
        )
        .await;
    assert!(r.get("result").is_some(), "{r}");
    assert_eq!(
        two.received_methods("a")
            .iter()
            .filter(|m| *m == "tools/call")
            .count(),
        1,
        "the call went to the second replica's upstream"
    );

    two.gateway.end_session(&there).await;
    assert!(
        one.gateway
            .find_session(&id, &Principal::anonymous())
            .await
            .unwrap()
            .is_none(),
        "ended everywhere"
    );
    assert!(s.is_ended(), "the first replica dropped its copy");
    assert!(
        store
            .get(warden_store::Namespace::SESSION, &id)
            .await
            .unwrap()
            .is_none(),
        "no record left behind"
    );
    one.stop().await;
    two.stop().await;
}

/// A session id is only ever looked up in the store in its canonical form.
#[tokio::test]
async fn malformed_session_ids_are_unknown_without_a_store_lookup() {
    let store: warden_store::DynStore = Arc::new(warden_store::MemoryStore::default());
    // A record planted under a key no real session id can have must stay unreachable.
    store
        .put(
            warden_store::Namespace::SESSION,
            "../x",
            Bytes::from_static(b"{}"),
            None,
        )
        .await
        .unwrap();
    let f = Fixture::start_with(
        &[A],
        GatewayOptions {
            session_store: store.clone(),
            ..GatewayOptions::default()
        },
    )
    .await;
    for bad in ["../x", "", "ABC", &"0".repeat(64)] {
        assert!(
            f.gateway
                .find_session(bad, &Principal::anonymous())
                .await
                .unwrap()
                .is_none(),
            "{bad}"
        );
    }
    f.stop().await;
}

#[tokio::test]
async fn ended_and_idle_sessions_are_not_found() {
    let f = Fixture::start_with(
        &[A],
        GatewayOptions {
            session_idle: Duration::from_millis(50),
            ..GatewayOptions::default()
        },
    )
    .await;
    let s = f.legacy_session().await;
    let id = s.id().as_str().to_owned();
    assert!(
        f.gateway
            .find_session(&id, &Principal::anonymous())
            .await
            .unwrap()
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        f.gateway
            .find_session(&id, &Principal::anonymous())
            .await
            .unwrap()
            .is_none(),
        "idle past the limit"
    );
    let t = f
        .gateway
        .open_session(Principal::anonymous(), Face::Http)
        .await
        .unwrap();
    let tid = t.id().as_str().to_owned();
    f.gateway.end_session(&t).await;
    assert!(
        f.gateway
            .find_session(&tid, &Principal::anonymous())
            .await
            .unwrap()
            .is_none(),
        "ended"
    );
    assert!(
        f.gateway
            .find_session("not-a-session", &Principal::anonymous())
            .await
            .unwrap()
            .is_none()
    );
    f.stop().await;
}

#[tokio::test]
async fn a_modern_client_reaches_a_legacy_upstream_with_modern_results() {
    let f = Fixture::start(&[A], false).await;
    let anon = Principal::anonymous();
    let d = f
        .call(None, &anon, modern("server/discover", 1, json!({})))
        .await;
    assert_eq!(d["result"]["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(d["result"]["resultType"], "complete");
    let list = f
        .call(None, &anon, modern("tools/list", 2, json!({})))
        .await;
    assert_eq!(list["result"]["resultType"], "complete");
    assert_eq!(list["result"]["cacheScope"], "private");
    assert_eq!(list["result"]["ttlMs"], 0);
    let r = f
        .call(
            None,
            &anon,
            modern("tools/call", 3, json!({"name":"a__echo","arguments":{}})),
        )
        .await;
    assert_eq!(r["result"]["resultType"], "complete");
    // The legacy upstream was initialized by the gateway, once.
    let methods = f.received_methods("a");
    assert_eq!(
        methods.iter().filter(|m| *m == "initialize").count(),
        1,
        "{methods:?}"
    );
    f.stop().await;
}

#[tokio::test]
async fn a_legacy_client_reaches_a_modern_upstream_with_per_request_meta() {
    let f = Fixture::start(&[B], false).await;
    let s = f.legacy_session().await;
    let r = f
        .call(Some(&s), s.principal(), json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b__echo","arguments":{},"_meta":{"vendor/x":1}}}))
        .await;
    let seen: Value =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen["meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert_eq!(
        seen["meta"]["io.modelcontextprotocol/clientInfo"]["name"], "t",
        "the client's own info"
    );
    assert_eq!(seen["meta"]["vendor/x"], 1, "vendor _meta keys survive");
    // A legacy client makes the gateway try initialize once (a DiscoverResult cannot tell
    // whether a server is dual-era); the modern-only server refuses it and is bridged.
    let inits = f
        .received_methods("b")
        .iter()
        .filter(|m| *m == "initialize")
        .count();
    assert!(inits <= 1, "initialize tried {inits} times");
    let call = f
        .received("b")
        .into_iter()
        .find(|m| m["method"] == "tools/call")
        .unwrap();
    assert_eq!(call["params"]["name"], "echo");
    f.stop().await;
}

async fn set_level(f: &Fixture, s: &Arc<Session>, id: i64, level: &str) -> Value {
    let msg = json!({"jsonrpc":"2.0","id":id,"method":"logging/setLevel","params":{"level":level}});
    f.call(Some(s), s.principal(), msg).await
}

/// The `data` of the log messages a call's reply stream carries before its response.
async fn logs_of_call(f: &Fixture, s: &Arc<Session>, id: i64) -> Vec<String> {
    logs_of_call_as(f, s, s.principal(), id).await
}

async fn logs_of_call_as(
    f: &Fixture,
    s: &Arc<Session>,
    principal: &Principal,
    id: i64,
) -> Vec<String> {
    let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"a__log"}});
    let reply = tokio::time::timeout(WAIT, f.gateway.handle(Some(s), principal, message(call)))
        .await
        .unwrap();
    let Reply::Stream(mut stream) = reply else {
        panic!("a request must get a reply stream")
    };
    let mut logs = vec![];
    loop {
        let m = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .expect("a response");
        if m.is_response() {
            assert!(m.result().is_some(), "{:?}", m.into_value());
            return logs;
        }
        let v = m.into_value();
        assert_eq!(v["method"], "notifications/message", "{v}");
        logs.push(v["params"]["data"].as_str().unwrap().to_owned());
    }
}

/// On an upstream connection shared by every session, `logging/setLevel` is per session: the
/// upstream is set to the most verbose level any session asked for, never less verbose than
/// `info` (one caller must not take the others' default logs away), and each session gets only
/// the log messages at or above its own level.
#[tokio::test]
async fn log_levels_are_per_session_on_a_shared_upstream() {
    let f = Fixture::start(&[A], false).await;
    let (quiet, loud, unset) = (
        f.legacy_session().await,
        f.legacy_session().await,
        f.legacy_session().await,
    );
    assert!(set_level(&f, &quiet, 1, "warning").await["result"].is_object());
    assert!(set_level(&f, &loud, 2, "debug").await["result"].is_object());
    // Less verbose than the upstream's level: recorded for the session, not forwarded.
    assert!(set_level(&f, &loud, 3, "info").await["result"].is_object());
    let bad = set_level(&f, &unset, 4, "verbose").await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let forwarded: Vec<Value> = f
        .received("a")
        .into_iter()
        .filter(|m| m["method"] == "logging/setLevel")
        .map(|m| m["params"]["level"].clone())
        .collect();
    // A shared connection is never set less verbose than `info`: "warning" went as "info".
    assert_eq!(forwarded, vec![json!("info"), json!("debug")]);

    assert_eq!(
        logs_of_call(&f, &quiet, 10).await,
        ["at warning", "at error"]
    );
    assert_eq!(
        logs_of_call(&f, &loud, 11).await,
        ["at info", "at warning", "at error"]
    );
    assert_eq!(
        logs_of_call(&f, &unset, 12).await,
        ["at debug", "at info", "at warning", "at error"],
        "a session that asked for no level gets what the upstream sends"
    );
    f.stop().await;
}

/// Resource subscriptions on an upstream connection shared by every session: an update no
/// request can claim goes to the sessions subscribed to its URI (not to every session); one
/// session's unsubscription (or end) reaches the upstream only when no other session is still
/// subscribed; an unsubscription of what the session never subscribed to is not forwarded.
#[tokio::test]
async fn subscriptions_are_per_session_on_a_shared_upstream() {
    let f = Fixture::start(&[A], false).await;
    let (one, two, other) = (
        f.legacy_session().await,
        f.legacy_session().await,
        f.legacy_session().await,
    );
    let mut queues: Vec<_> = [&one, &two, &other]
        .iter()
        .map(|s| s.take_unsolicited().unwrap())
        .collect();
    let ask = |s: &Arc<Session>, id: i64, method: &str, uri: &str| {
        let msg = json!({"jsonrpc":"2.0","id":id,"method":method,"params":{"uri":uri}});
        (s.clone(), msg)
    };
    for (i, (s, msg)) in [
        ask(&one, 1, "resources/subscribe", "mem://a"),
        ask(&two, 2, "resources/subscribe", "mem://a"),
        ask(&one, 3, "resources/subscribe", "mem://items/7"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = f.call(Some(&s), s.principal(), msg).await;
        assert!(r["result"].is_object(), "{i}: {r}");
    }

    // An update sent after the call's answer, so no request can claim it.
    let touch = json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a__touch","arguments":{"uri":"mem://a"}}});
    assert!(f.call(Some(&other), other.principal(), touch).await["result"].is_object());
    for (i, q) in queues.iter_mut().enumerate().take(2) {
        let m = tokio::time::timeout(WAIT, q.recv()).await.unwrap().unwrap();
        let v = m.into_value();
        assert_eq!(v["method"], "notifications/resources/updated", "{i}: {v}");
        assert_eq!(v["params"]["uri"], "mem://a");
    }
    // The third session is not subscribed: nothing reaches it (the others got theirs by now).
    assert!(
        queues[2].try_recv().is_err(),
        "an unsubscribed session got the update"
    );

    let unsubscriptions = || {
        f.received("a")
            .into_iter()
            .filter(|m| m["method"] == "resources/unsubscribe")
            .map(|m| m["params"]["uri"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    for (s, msg) in [
        // Never subscribed: not forwarded, it would end the others' updates.
        ask(&other, 5, "resources/unsubscribe", "mem://a"),
        // The second session is still subscribed: not forwarded.
        ask(&one, 6, "resources/unsubscribe", "mem://a"),
    ] {
        let r = f.call(Some(&s), s.principal(), msg).await;
        assert!(r["result"].is_object(), "{r}");
    }
    assert!(unsubscriptions().is_empty(), "{:?}", unsubscriptions());
    let r = f
        .call(
            Some(&two),
            two.principal(),
            ask(&two, 7, "resources/unsubscribe", "mem://a").1,
        )
        .await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(
        unsubscriptions(),
        ["mem://a"],
        "the last subscriber's goes through"
    );

    // A session that ends takes its subscriptions with it.
    f.gateway.end_session(&one).await;
    let got = f
        .wait_received("a", |got| {
            got.iter().any(|m| {
                m["method"] == "resources/unsubscribe" && m["params"]["uri"] == "mem://items/7"
            })
        })
        .await;
    assert!(
        got.iter().any(
            |m| m["method"] == "resources/unsubscribe" && m["params"]["uri"] == "mem://items/7"
        ),
        "{got:?}"
    );
    f.stop().await;
}

/// Traffic toward a session is judged for its caller as of the latest request: a refreshed
/// token with fewer roles stops what only the dropped role may receive (and a token with the
/// role again brings it back).
#[tokio::test]
async fn server_traffic_follows_the_roles_of_the_callers_latest_token() {
    let f = Fixture::refusing(
        &[A],
        Refusing {
            name: "ops-only",
            message: "log messages are for ops",
            refuses: |call| {
                call.direction == warden_guard::Direction::ToClient
                    && call.message.method() == Some("notifications/message")
                    && !call.principal.has_role("ops")
            },
        },
    )
    .await;
    let with_ops = Principal::new("carol", warden_guard::AuthMethod::Bearer).with_roles(["ops"]);
    let without = Principal::new("carol", warden_guard::AuthMethod::Bearer);
    let s = f
        .gateway
        .open_session(with_ops.clone(), Face::Http)
        .await
        .unwrap();
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    assert!(f.call(Some(&s), &with_ops, init).await["result"].is_object());
    assert_eq!(logs_of_call_as(&f, &s, &with_ops, 1).await.len(), 4);
    assert!(
        logs_of_call_as(&f, &s, &without, 2).await.is_empty(),
        "the session kept the role of the token that opened it"
    );
    assert_eq!(s.current_principal(), without);
    assert_eq!(logs_of_call_as(&f, &s, &with_ops, 3).await.len(), 4);
    // Another caller's request changes nothing (and is refused).
    let mallory = Principal::new("mallory", warden_guard::AuthMethod::Bearer);
    let r = f
        .call(
            Some(&s),
            &mallory,
            json!({"jsonrpc":"2.0","id":4,"method":"ping"}),
        )
        .await;
    assert!(r["error"].is_object(), "{r}");
    assert_eq!(s.current_principal(), with_ops);
    f.stop().await;
}

/// Client notifications go to every upstream and no policy or rate limit judges them: a session
/// forwards at most a burst of 64, then 32 a second; the rest are dropped.
#[tokio::test]
async fn a_flood_of_client_notifications_is_cut_to_the_sessions_budget() {
    let f = Fixture::start(&[A], false).await;
    let s = f.legacy_session().await;
    let anon = Principal::anonymous();
    let started = tokio::time::Instant::now();
    for _ in 0..300 {
        let n = json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed"});
        assert!(matches!(
            f.gateway.handle(Some(&s), &anon, message(n)).await,
            Reply::Accepted
        ));
    }
    let took = started.elapsed().as_secs_f64();
    // A request after them: the upstream reads in order, so by its answer it has seen
    // whatever was forwarded before it.
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__echo","arguments":{}}});
    assert!(f.call(Some(&s), &anon, ping).await["result"].is_object());
    let forwarded = f
        .received_methods("a")
        .iter()
        .filter(|m| *m == "notifications/roots/list_changed")
        .count();
    let most = 64 + (took * 32.0).ceil() as usize;
    assert!(
        (64..=most).contains(&forwarded),
        "{forwarded} of 300 forwarded in {took:.3} s"
    );
    f.stop().await;
}

/// Strips control characters from the `serverInfo` of `initialize` results: stands in for the
/// sanitizer, to see what the session hands the response guards.
struct ScrubServerInfo;

impl warden_guard::Guard for ScrubServerInfo {
    fn name(&self) -> &'static str {
        "scrub"
    }

    fn controls(&self) -> &'static [&'static str] {
        &[]
    }

    fn check<'a>(
        &'a self,
        call: &'a warden_guard::Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<warden_guard::Verdict, warden_guard::GuardError>>
    {
        let mut v = call.message.value().clone();
        let verdict = match v.pointer_mut("/result/serverInfo/title") {
            Some(Value::String(t))
                if call.request_method == Some("initialize") && t.chars().any(char::is_control) =>
            {
                *t = t.chars().filter(|c| !c.is_control()).collect();
                warden_guard::Verdict::rewrite("scrub", v)
            }
            _ => Ok(warden_guard::Verdict::Continue),
        };
        Box::pin(async move { verdict })
    }
}

/// The `initialize` result a `run` client gets from the era fixture, with `guard` in the
/// sanitize stage.
async fn transparent_initialize(guard: Arc<dyn warden_guard::Guard>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::passthrough().with(warden_guard::Stage::Sanitize, guard);
    let gateway = Gateway::start(
        vec![def(&A, dir.path())],
        pipeline,
        GatewayOptions {
            transparent: true,
            ..GatewayOptions::default()
        },
    )
    .await
    .unwrap();
    let f = Fixture { gateway, dir };
    let s = f
        .gateway
        .open_session(Principal::local(), Face::Stdio)
        .await
        .unwrap();
    let r = f
        .call(
            Some(&s),
            &Principal::local(),
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
        )
        .await;
    f.stop().await;
    r
}

/// In `run` the upstream's own `initialize` result reaches the client: its `serverInfo` (a
/// title and description a client displays) goes through the response guards, not only its
/// `instructions`; refused, only what identifies the server is kept.
#[tokio::test]
async fn a_transparent_initialize_hands_server_info_to_the_guards() {
    let r = transparent_initialize(Arc::new(ScrubServerInfo)).await;
    let info = &r["result"]["serverInfo"];
    assert_eq!(info["title"], "Era]0;owned server", "{r}");
    assert_eq!(info["name"], "era-legacy");
    assert_eq!(r["result"]["instructions"], "era server");

    let r = transparent_initialize(Arc::new(Refusing {
        name: "no_server_info",
        message: "server info refused",
        refuses: |call| {
            call.message
                .result()
                .is_some_and(|r| r.get("serverInfo").is_some())
        },
    }))
    .await;
    assert_eq!(
        r["result"]["serverInfo"],
        json!({"name": "era-legacy", "version": "1"}),
        "{r}"
    );
    assert_eq!(r["result"]["instructions"], "era server");
}

/// A session holds at most 1,024 subscriptions: the next is refused (and not forwarded), a URI
/// it already holds is still accepted.
#[tokio::test]
async fn a_sessions_subscriptions_are_capped() {
    let f = Fixture::start(&[A], false).await;
    let s = f.legacy_session().await;
    let subscribe = |id: usize, uri: String| json!({"jsonrpc":"2.0","id":id,"method":"resources/subscribe","params":{"uri":uri}});
    for i in 0..warden_session::gateway::MAX_SUBSCRIPTIONS {
        let r = f
            .call(
                Some(&s),
                s.principal(),
                subscribe(i, format!("mem://items/{i}")),
            )
            .await;
        assert!(r["result"].is_object(), "{i}: {r}");
    }
    let forwarded = || {
        f.received_methods("a")
            .iter()
            .filter(|m| *m == "resources/subscribe")
            .count()
    };
    let before = forwarded();
    let over = f
        .call(
            Some(&s),
            s.principal(),
            subscribe(5000, "mem://items/x".into()),
        )
        .await;
    assert_eq!(over["error"]["code"], -32602, "{over}");
    assert_eq!(forwarded(), before, "the refused one was not forwarded");
    let again = f
        .call(
            Some(&s),
            s.principal(),
            subscribe(5001, "mem://items/3".into()),
        )
        .await;
    assert!(again["result"].is_object(), "{again}");
    f.stop().await;
}

/// The cap holds for subscriptions in flight together on different upstreams (each its own
/// lock): one past the cap is refused at once while the other is still unanswered. One the
/// upstream refused holds no slot.
#[tokio::test]
async fn concurrent_subscriptions_on_two_upstreams_cannot_pass_the_cap_together() {
    const C: Upstream = Upstream {
        name: "c",
        era: "legacy",
        namespace: true,
    };
    let f = Fixture::start(&[A, C], false).await;
    let s = f.legacy_session().await;
    let subscribe = |id: usize, uri: String| json!({"jsonrpc":"2.0","id":id,"method":"resources/subscribe","params":{"uri":uri}});
    for i in 0..warden_session::gateway::MAX_SUBSCRIPTIONS - 1 {
        let r = f
            .call(
                Some(&s),
                s.principal(),
                subscribe(i, format!("mem://a/{i}")),
            )
            .await;
        assert!(r["result"].is_object(), "{i}: {r}");
    }
    // One the upstream refuses gives its reservation back.
    let refused = f
        .call(
            Some(&s),
            s.principal(),
            subscribe(4999, "mem://a/refused-1".into()),
        )
        .await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    // One slot left; each of these is answered a second later by its upstream.
    let (on_a, on_c) = tokio::join!(
        f.call(
            Some(&s),
            s.principal(),
            subscribe(5000, "mem://a/slow".into())
        ),
        f.call(
            Some(&s),
            s.principal(),
            subscribe(5001, "mem://c/slow".into())
        ),
    );
    let accepted = [&on_a, &on_c]
        .iter()
        .filter(|r| r["result"].is_object())
        .count();
    assert_eq!(accepted, 1, "{on_a} {on_c}");
    let refused = if on_a["result"].is_object() {
        &on_c
    } else {
        &on_a
    };
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    f.stop().await;
}

/// A subscription counts for its session only once the upstream accepted it: an update of a URI
/// whose subscription was refused reaches nobody.
#[tokio::test]
async fn a_refused_subscription_does_not_count() {
    let f = Fixture::start(&[A], false).await;
    let (one, other) = (f.legacy_session().await, f.legacy_session().await);
    let mut queue = one.take_unsolicited().unwrap();
    let subscribe = |id: i64, uri: &str| json!({"jsonrpc":"2.0","id":id,"method":"resources/subscribe","params":{"uri":uri}});
    let touch = |id: i64, uri: &str| json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"a__touch","arguments":{"uri":uri}}});
    let r = f
        .call(
            Some(&one),
            one.principal(),
            subscribe(1, "mem://items/refused-1"),
        )
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r = f
        .call(Some(&one), one.principal(), subscribe(2, "mem://items/ok"))
        .await;
    assert!(r["result"].is_object(), "{r}");
    // Updates sent after each call's answer, so no request can claim them; the upstream sends
    // them in this order, so the first to arrive tells whether the refused URI counted.
    for (id, uri) in [(3, "mem://items/refused-1"), (4, "mem://items/ok")] {
        let r = f
            .call(Some(&other), other.principal(), touch(id, uri))
            .await;
        assert!(r["result"].is_object(), "{r}");
    }
    let first = tokio::time::timeout(WAIT, queue.recv())
        .await
        .unwrap()
        .unwrap()
        .into_value();
    assert_eq!(first["params"]["uri"], "mem://items/ok", "{first}");
    f.stop().await;
}

/// Subscriptions and unsubscriptions on a shared connection are ordered: a session's
/// unsubscription sent while another session's subscription of the same URI is still in flight
/// is decided after that one is answered, so it is not forwarded (the upstream stays subscribed
/// for the session that now holds the URI).
#[tokio::test]
async fn subscriptions_on_a_shared_upstream_are_ordered() {
    let f = Fixture::start(&[A], false).await;
    let (one, two) = (f.legacy_session().await, f.legacy_session().await);
    let uri = "mem://items/slow-1";
    let msg = |id: i64, method: &str| json!({"jsonrpc":"2.0","id":id,"method":method,"params":{"uri":uri}});
    let r = f
        .call(Some(&two), two.principal(), msg(1, "resources/subscribe"))
        .await;
    assert!(r["result"].is_object(), "{r}");
    let subscribed = f.call(Some(&one), one.principal(), msg(2, "resources/subscribe"));
    let unsubscribed = async {
        // Sent once the upstream has the other subscription (it answers a second later).
        let seen = |got: &[Value]| {
            got.iter()
                .filter(|m| m["method"] == "resources/subscribe" && m["params"]["uri"] == uri)
                .count()
                == 2
        };
        assert!(seen(&f.wait_received("a", seen).await));
        f.call(Some(&two), two.principal(), msg(3, "resources/unsubscribe"))
            .await
    };
    let (a, b) = tokio::join!(subscribed, unsubscribed);
    assert!(a["result"].is_object(), "{a}");
    assert!(b["result"].is_object(), "{b}");
    let told: Vec<Value> = f
        .received("a")
        .into_iter()
        .filter(|m| m["method"] == "resources/unsubscribe")
        .collect();
    assert!(told.is_empty(), "{told:?}");
    f.stop().await;
}

/// A session that ends while its subscription is in flight (which ends that exchange
/// unanswered) still leaves the upstream unsubscribed: it may have subscribed all the same.
#[tokio::test]
async fn a_subscription_in_flight_when_its_session_ends_is_released() {
    let f = Fixture::start(&[A], false).await;
    let one = f.legacy_session().await;
    let uri = "mem://items/slow-2";
    let sub = json!({"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":uri}});
    let subscribed = async { f.exchange(Some(&one), one.principal(), sub).await.pop() };
    let ended = async {
        let seen = |got: &[Value]| {
            got.iter()
                .any(|m| m["method"] == "resources/subscribe" && m["params"]["uri"] == uri)
        };
        assert!(seen(&f.wait_received("a", seen).await));
        f.gateway.end_session(&one).await;
    };
    let (last, ()) = tokio::join!(subscribed, ended);
    assert!(
        last.as_ref().is_none_or(|m| m.get("result").is_none()),
        "the exchange was to end with the session: {last:?}"
    );
    let told = |m: &Value| m["method"] == "resources/unsubscribe" && m["params"]["uri"] == uri;
    let got = f.wait_received("a", |got| got.iter().any(told)).await;
    assert!(got.iter().any(told), "{got:?}");
    f.stop().await;
}

/// A session that expires takes its subscriptions with it too, when the expiry is found by the
/// next session opened (not only by the sweep or a lookup).
#[tokio::test]
async fn an_expired_session_found_on_open_releases_its_subscriptions() {
    let f = Fixture::start_with(
        &[A],
        GatewayOptions {
            session_idle: Duration::from_millis(100),
            ..GatewayOptions::default()
        },
    )
    .await;
    let s = f.legacy_session().await;
    let sub =
        json!({"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"mem://a"}});
    assert!(f.call(Some(&s), s.principal(), sub).await["result"].is_object());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let _next = f
        .gateway
        .open_session(Principal::anonymous(), Face::Http)
        .await
        .unwrap();
    let told =
        |m: &Value| m["method"] == "resources/unsubscribe" && m["params"]["uri"] == "mem://a";
    let got = f.wait_received("a", |got| got.iter().any(told)).await;
    assert!(got.iter().any(told), "{got:?}");
    f.stop().await;
}

#[tokio::test]
async fn removed_methods_are_unknown_to_modern_clients() {
    let f = Fixture::start(&[A], false).await;
    let anon = Principal::anonymous();
    for (i, m) in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
    ]
    .iter()
    .enumerate()
    {
        let r = f
            .call(
                None,
                &anon,
                modern(m, i as i64, json!({"uri":"mem://a","level":"info"})),
            )
            .await;
        assert_eq!(r["error"]["code"], -32601, "{m}: {r}");
    }
    f.stop().await;
}

#[tokio::test]
async fn a_resource_two_upstreams_serve_is_refused_not_guessed() {
    let f = Fixture::start(&[A, B], false).await;
    let s = f.legacy_session().await;
    for (id, uri) in [(1, "mem://a"), (2, "mem://items/7")] {
        let r = f
            .call(
                Some(&s),
                s.principal(),
                json!({"jsonrpc":"2.0","id":id,"method":"resources/read","params":{"uri":uri}}),
            )
            .await;
        assert_eq!(r["error"]["code"], -32602, "{uri}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("several"),
            "{r}"
        );
    }
    for up in ["a", "b"] {
        assert!(
            !f.received_methods(up)
                .contains(&"resources/read".to_owned()),
            "{up} was asked"
        );
    }
    f.stop().await;
}

/// A URI no catalog knows makes the gateway list the upstreams' resources again, but at most
/// once per relist interval: made-up URIs cannot make every upstream list everything on each
/// request.
#[tokio::test]
async fn unknown_uris_relist_resources_at_most_once_per_interval() {
    let f = Fixture::start(&[A, B], false).await;
    let s = f.legacy_session().await;
    let lists = |up: &str| {
        f.received_methods(up)
            .iter()
            .filter(|m| *m == "resources/list")
            .count()
    };
    let before = [lists("a"), lists("b")];
    let started = tokio::time::Instant::now();
    for id in 0..20 {
        let uri = format!("nope://made-up/{id}");
        let r = f
            .call(
                Some(&s),
                s.principal(),
                json!({"jsonrpc":"2.0","id":id,"method":"resources/read","params":{"uri":uri}}),
            )
            .await;
        assert_eq!(r["error"]["code"], -32602, "{r}");
    }
    let allowed = 1 + started.elapsed().as_secs() as usize;
    for (up, before) in ["a", "b"].into_iter().zip(before) {
        let n = lists(up) - before;
        assert!(
            (1..=allowed).contains(&n),
            "{up} listed {n} times for 20 unknown URIs"
        );
    }
    f.stop().await;
}

#[tokio::test]
async fn a_resource_template_routes_reads_to_its_upstream() {
    let f = Fixture::start(&[A], false).await;
    let s = f.legacy_session().await;
    let r = f
        .call(
            Some(&s),
            s.principal(),
            json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"mem://items/7"}}),
        )
        .await;
    assert_eq!(r["result"]["contents"][0]["uri"], "mem://items/7");
    assert_eq!(r["result"]["contents"][0]["text"], "legacy");
    f.stop().await;
}

#[tokio::test]
async fn transparent_mode_bridges_a_legacy_client_to_a_modern_only_upstream() {
    let f = Fixture::start(&[B], true).await;
    let s = f
        .gateway
        .open_session(Principal::local(), Face::Stdio)
        .await
        .unwrap();
    let p = Principal::local();
    let init = f
        .call(Some(&s), &p, json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":{}},"clientInfo":{"name":"desk","version":"9"}}}))
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "era-modern");
    let r = f
        .call(Some(&s), &p, json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}))
        .await;
    let seen: Value =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen["name"], "echo",
        "names are unchanged in transparent mode"
    );
    assert_eq!(
        seen["meta"]["io.modelcontextprotocol/clientCapabilities"],
        json!({"roots":{}})
    );
    let ping = f
        .call(
            Some(&s),
            &p,
            json!({"jsonrpc":"2.0","id":3,"method":"ping"}),
        )
        .await;
    assert_eq!(
        ping["result"],
        json!({}),
        "the gateway answers ping for a modern upstream"
    );
    f.stop().await;
}

#[tokio::test]
async fn transparent_mode_forwards_the_clients_own_initialize() {
    let f = Fixture::start(&[A], true).await;
    let s = f
        .gateway
        .open_session(Principal::local(), Face::Stdio)
        .await
        .unwrap();
    let p = Principal::local();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"x-vendor":{}},"clientInfo":{"name":"desk","version":"9"},"futureField":true}});
    let r = f.call(Some(&s), &p, init.clone()).await;
    assert_eq!(r["result"]["protocolVersion"], "2025-06-18");
    let got = &f.received("a")[0];
    assert_eq!(
        got["params"], init["params"],
        "unknown fields and capabilities reach the upstream unchanged"
    );
    f.stop().await;
}

/// A client's retry of `a__ask` (with sampling declared) carrying `state` and `answer` (the
/// `inputResponses`).
fn retry(id: i64, state: &str, answer: &Value) -> Value {
    ask(
        id,
        json!({"sampling": {}}),
        json!({"requestState": state, "inputResponses": answer}),
    )
}

fn ask(id: i64, caps: Value, extra: Value) -> Value {
    let mut params = json!({"name": "a__ask", "arguments": {}});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
    });
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

#[tokio::test]
async fn a_stateless_client_answers_a_legacy_upstreams_request_in_rounds() {
    let f = Fixture::start(&[A], false).await;
    let anon = Principal::anonymous();
    let first = f
        .call(None, &anon, ask(1, json!({"sampling": {}}), json!({})))
        .await;
    let r = &first["result"];
    assert_eq!(r["resultType"], "input_required", "{first}");
    let input = &r["inputRequests"]["upstream-request"];
    assert_eq!(input["method"], "sampling/createMessage");
    assert_eq!(input["params"]["maxTokens"], 5);
    let state = r["requestState"].as_str().unwrap().to_owned();
    let bits = state
        .strip_prefix(warden_session::mrtr::state_prefix())
        .expect("the gateway's own prefix");
    assert_eq!(bits.len(), 32, "128 random bits");
    let retry = ask(
        2,
        json!({"sampling": {}}),
        json!({"requestState": state, "inputResponses": {"upstream-request": {"role": "assistant", "model": "m", "content": {"type": "text", "text": "sampled"}}}}),
    );
    let done = f.call(None, &anon, retry).await;
    assert_eq!(done["id"], 2);
    let text = done["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("sampled"),
        "the upstream got the client's input: {done}"
    );
    assert_eq!(
        f.received_methods("a")
            .iter()
            .filter(|m| *m == "tools/call")
            .count(),
        1,
        "one upstream call served both rounds"
    );
    f.stop().await;
}

#[tokio::test]
async fn a_request_state_is_single_use_and_bound_to_principal_and_tool() {
    let f = Fixture::start(&[A], false).await;
    let anon = Principal::anonymous();
    let mallory = Principal::new("mallory", warden_guard::AuthMethod::Anonymous);
    let state_of = |v: &Value| v["result"]["requestState"].as_str().unwrap().to_owned();
    let answer = json!({"upstream-request": {"role": "assistant", "model": "m", "content": {"type": "text", "text": "x"}}});

    // Another principal presenting the state is refused; the call stays its caller's.
    let first = f
        .call(None, &anon, ask(1, json!({"sampling": {}}), json!({})))
        .await;
    let state = state_of(&first);
    let stolen = f.call(None, &mallory, retry(2, &state, &answer)).await;
    assert_eq!(stolen["error"]["code"], -32602, "{stolen}");
    let own = f.call(None, &anon, retry(3, &state, &answer)).await;
    assert_eq!(own["result"]["resultType"], "complete", "{own}");
    // Spent: the same state again is refused, not sent as a new call (which would run the
    // tool again).
    let calls = || {
        f.received_methods("a")
            .iter()
            .filter(|m| *m == "tools/call")
            .count()
    };
    let before = calls();
    let late = f.call(None, &anon, retry(5, &state, &answer)).await;
    assert_eq!(late["error"]["code"], -32602, "{late}");
    assert!(
        late["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer held"),
        "{late}"
    );
    assert_eq!(calls(), before, "the tool was not called again");
    // A state without the gateway's prefix is an upstream's own: the request goes on to the
    // upstream as a call (here a legacy one, which asks again).
    let foreign = f
        .call(None, &anon, retry(7, "upstream-own-state", &answer))
        .await;
    assert_eq!(
        foreign["result"]["resultType"], "input_required",
        "{foreign}"
    );
    assert_eq!(calls(), before + 1, "forwarded as a call");
    // (Finished, so that it is not in flight when the next call asks for input.)
    let done = f
        .call(None, &anon, retry(8, &state_of(&foreign), &answer))
        .await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let fresh = f
        .call(None, &anon, ask(6, json!({"sampling": {}}), json!({})))
        .await;

    // The state of one tool cannot complete another.
    let other = json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a__echo","arguments":{},"requestState":state_of(&fresh),"inputResponses":answer,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}}});
    let r = f.call(None, &anon, other).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    f.stop().await;
}

#[tokio::test]
async fn without_the_capability_the_upstream_is_refused_not_left_waiting() {
    let f = Fixture::start(&[A], false).await;
    let r = f
        .call(None, &Principal::anonymous(), ask(1, json!({}), json!({})))
        .await;
    // The fixture reports what came back for its sampling request: an error, at once.
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("-32601"), "{r}");
    f.stop().await;
}

#[tokio::test]
async fn malformed_multi_round_fields_are_refused_before_any_upstream() {
    let f = Fixture::start(&[A], false).await;
    let anon = Principal::anonymous();
    for extra in [
        json!({"inputResponses": 7}),
        json!({"inputResponses": null}),
        json!({"requestState": 5}),
    ] {
        let r = f
            .call(None, &anon, ask(1, json!({"sampling": {}}), extra.clone()))
            .await;
        assert_eq!(r["error"]["code"], -32602, "{extra}: {r}");
    }
    assert!(!f.received_methods("a").contains(&"tools/call".to_owned()));
    f.stop().await;
}

/// A guard with a fixed verdict for `tools/call` requests, for the gateway's deny paths.
struct Refuse {
    hold: bool,
}

impl warden_guard::Guard for Refuse {
    fn name(&self) -> &'static str {
        "refuse"
    }
    fn controls(&self) -> &'static [&'static str] {
        &["TEST-1"]
    }
    fn check<'a>(
        &'a self,
        call: &'a warden_guard::Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<warden_guard::Verdict, warden_guard::GuardError>>
    {
        use futures::FutureExt;
        let verdict = if call.message.method() != Some("tools/call") {
            warden_guard::Verdict::Continue
        } else if self.hold {
            warden_guard::Verdict::Hold(warden_guard::ApprovalTicket { id: "t-1".into() })
        } else {
            warden_guard::Verdict::Deny(warden_guard::Denial {
                guard: "refuse",
                code: warden_proto::ErrorCode::Denied,
                message: "request refused by policy".into(),
                detail: "secret audit detail".into(),
                controls: &["TEST-1"],
                retry_after: None,
            })
        };
        async move { Ok(verdict) }.boxed()
    }
}

#[tokio::test]
async fn a_denied_or_held_call_never_reaches_the_upstream() {
    for hold in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let pipeline =
            Pipeline::passthrough().with(warden_guard::Stage::Policy, Arc::new(Refuse { hold }));
        let gateway = Gateway::start(
            vec![def(&A, dir.path())],
            pipeline,
            GatewayOptions::default(),
        )
        .await
        .unwrap();
        let f = Fixture { gateway, dir };
        let s = f.legacy_session().await;
        let r = f
            .call(
                Some(&s),
                s.principal(),
                json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"a__echo","arguments":{}}}),
            )
            .await;
        assert_eq!(r["id"], "c1");
        assert_eq!(
            r["error"]["code"],
            warden_proto::ErrorCode::Denied.code(),
            "{r}"
        );
        assert!(
            !r.to_string().contains("secret audit detail"),
            "audit detail stays out: {r}"
        );
        assert!(
            !f.received_methods("a").contains(&"tools/call".to_owned()),
            "hold={hold}: the upstream saw the call"
        );
        // Everything else still flows.
        let list = f
            .call(
                Some(&s),
                s.principal(),
                json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
            )
            .await;
        assert!(list.get("result").is_some(), "{list}");
        f.stop().await;
    }
}

/// A modern server that was still starting when the `server/discover` probe gave up: the
/// gateway falls back to `initialize` (as the specification says for a timeout), the server
/// then answers the late probe and refuses `initialize` with a modern error, and the gateway
/// takes that as the modern era instead of failing the upstream.
#[tokio::test]
async fn a_modern_server_slower_than_the_probe_is_still_detected_as_modern() {
    // Longer than the probe waits (5 s at most), shorter than the start-up timeout.
    let f = Fixture::one_slow("late", "modern-late", "5.5", WAIT).await;
    // Start-up itself recovered: the second ask happened before any client request (a
    // failed start-up handshake would only be retried when a request arrives).
    let methods: Vec<String> = f
        .received_methods("late")
        .into_iter()
        .filter(|m| !m.starts_with("notifications/"))
        .collect();
    assert_eq!(
        methods,
        ["server/discover", "initialize", "server/discover"],
        "probe, fallback, then the second ask after the modern refusal"
    );
    let p = Principal::local();
    let list = f.call(None, &p, modern("tools/list", 1, json!({}))).await;
    assert!(
        tool_names(&list).contains(&"late__echo".to_owned()),
        "the late modern upstream is served: {list}"
    );
    f.stop().await;
}

/// A server that sends requests its client never answers cannot grow the session's table of
/// waiting requests without bound: at the cap the oldest is answered for the client with an
/// error, and the newest still reach the client and route its answers back.
#[tokio::test]
async fn unanswered_server_requests_are_capped_per_session() {
    let f = Fixture::start(&[A], false).await;
    let anon = Principal::anonymous();
    let s = f.session_with_roots(&anon).await;
    let over = 3;
    let count = warden_session::MAX_SERVER_REQUESTS + over;
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__flood","arguments":{"count":count}}});
    let Reply::Stream(mut stream) = f.gateway.handle(Some(&s), &anon, message(call)).await else {
        panic!("a request must get a reply stream")
    };
    let mut forwarded = vec![];
    loop {
        let m = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .expect("a message");
        if m.is_response() {
            assert_eq!(
                m.value()["result"]["content"][0]["text"],
                format!("sent {count}")
            );
            break;
        }
        assert_eq!(m.method(), Some("roots/list"));
        forwarded.push(m.id().unwrap().clone());
    }
    assert_eq!(forwarded.len(), count, "every request reached the client");

    // The newest is still waiting: the client's answer reaches the upstream under its id.
    let last = forwarded.last().unwrap().to_value();
    let answer = json!({"jsonrpc":"2.0","id":last,"result":{"roots":[]}});
    assert!(matches!(
        f.gateway.handle(Some(&s), &anon, message(answer)).await,
        Reply::Accepted
    ));
    let answered = |v: &Value| v["id"].as_str().map(str::to_owned);
    let is_response = |m: &Value| m.get("method").is_none();
    let responses: Vec<Value> = f
        .wait_received("a", |got| {
            got.iter().filter(|m| is_response(m)).count() > over
        })
        .await
        .into_iter()
        .filter(is_response)
        .collect();
    let ids: Vec<Option<String>> = responses.iter().map(answered).collect();
    let mut expected: Vec<Option<String>> = (1..=over).map(|i| Some(format!("f{i}"))).collect();
    expected.push(Some(format!("f{count}")));
    assert_eq!(
        ids, expected,
        "the oldest were refused, the newest answered: {responses:?}"
    );
    for r in &responses[..over] {
        assert_eq!(r["error"]["code"], -32603, "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("has not answered"),
            "{r}"
        );
    }
    assert_eq!(responses[over]["result"]["roots"], json!([]));
    f.stop().await;
}

/// Requests without a session share the gateway's routing state, and their ids are the callers'
/// own: neither a `notifications/cancelled` from another caller nor another caller's request
/// with the same id may end a call.
#[tokio::test]
async fn a_stateless_caller_cannot_cancel_anothers_call() {
    let f = Fixture::start(&[B], false).await;
    let alice = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
    let mallory = Principal::new("mallory", warden_guard::AuthMethod::ApiKey);
    let slow = modern(
        "tools/call",
        1,
        json!({"name": "b__sleep", "arguments": {"seconds": 1.5}}),
    );
    let interfere = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 1, "reason": "guessed"}});
        let reply = f.gateway.handle(None, &mallory, message(cancel)).await;
        assert!(matches!(reply, Reply::Accepted));
        // Mallory's own call with the same id, answered while Alice's still runs.
        let own = modern("tools/call", 1, json!({"name": "b__echo", "arguments": {}}));
        f.call(None, &mallory, own).await
    };
    let (done, own) = tokio::join!(f.call(None, &alice, slow), interfere);
    assert_eq!(
        done["result"]["content"][0]["text"], "slept",
        "Alice's call ran to its end: {done}"
    );
    assert!(own["result"].is_object(), "{own}");
    f.stop().await;
}

/// A legacy session's own connection to an HTTP upstream (and the task reading what that
/// upstream sends on its own) ends with the session: before, the task held the connection,
/// whose channel therefore never closed, and with it the session and its routing state.
#[tokio::test]
async fn a_legacy_sessions_upstream_connection_ends_with_it() {
    use tokio::io::AsyncBufReadExt as _;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../warden-upstream/tests/fixtures/http_server.py");
    let mut child = tokio::process::Command::new("python3")
        .arg("-u")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/mcp")).unwrap();
    let def = UpstreamDef {
        name: "h".into(),
        transport: warden_session::Transport::Http(warden_upstream::HttpSpec::new("h", url)),
        era: EraPreference::Legacy,
        request_timeout: WAIT,
        startup_timeout: WAIT,
        namespace: true,
        lifecycle: Default::default(),
    };
    let gateway = Gateway::start(
        vec![def],
        Pipeline::passthrough(),
        GatewayOptions::default(),
    )
    .await
    .unwrap();
    let f = Fixture {
        gateway,
        dir: tempfile::tempdir().unwrap(),
    };
    let anon = Principal::anonymous();
    let s = f.legacy_session().await;
    // A method the gateway does not route itself goes to the only upstream, on the session's
    // own upstream session.
    let r = f
        .call(
            Some(&s),
            &anon,
            json!({"jsonrpc":"2.0","id":1,"method":"echo","params":{}}),
        )
        .await;
    assert_eq!(r["result"]["method"], "echo", "{r}");
    let weak = Arc::downgrade(&s);
    f.gateway.end_session(&s).await;
    drop(s);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while weak.upgrade().is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        weak.upgrade().is_none(),
        "the ended session is still held (by its upstream connection's reader)"
    );
    f.stop().await;
}

/// The pages of one aggregated list share one request timeout: an upstream that answers
/// slowly with cursors for ever is cut off after it, and the pages received are used.
#[tokio::test]
async fn endless_slow_paging_ends_within_one_request_timeout() {
    let f = Fixture::one_slow(
        "slow",
        "legacy-endless",
        "0.25",
        Duration::from_millis(1200),
    )
    .await;
    let s = f.legacy_session().await;
    let started = tokio::time::Instant::now();
    let list = f
        .call(
            Some(&s),
            &Principal::anonymous(),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}),
        )
        .await;
    let took = started.elapsed();
    // 100 pages at 0.25 s would be 25 s.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let names = tool_names(&list);
    assert!(
        (2..=6).contains(&names.len()),
        "the pages received within the timeout: {names:?}"
    );
    assert_eq!(names[0], "slow__t1");
    f.stop().await;
}

/// An aggregated list keeps at most 10,000 items of one upstream: an upstream answering pages
/// of 1,500 tools with cursors for ever, at once, gets 10,000 of them listed (not the 150,000
/// of the 100-page limit), in the upstream's order.
#[tokio::test]
async fn an_upstreams_list_is_cut_at_ten_thousand_items() {
    let f = Fixture::one_slow("huge", "legacy-huge", "0", Duration::from_secs(60)).await;
    let s = f.legacy_session().await;
    let list = f
        .call(
            Some(&s),
            &Principal::anonymous(),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}),
        )
        .await;
    let names = tool_names(&list);
    assert_eq!(names.len(), 10_000, "{}", names.len());
    assert_eq!(names[0], "huge__t1_0");
    assert_eq!(names[1_500], "huge__t2_0");
    assert_eq!(names[9_999], "huge__t7_999", "the seventh page, cut short");
    let pages = f
        .received_methods("huge")
        .iter()
        .filter(|m| *m == "tools/list")
        .count();
    assert_eq!(pages, 7, "no page asked for past the limit");
    f.stop().await;
}

/// A request method sent without an id is not a notification the gateway forwards: the
/// request guards judge notifications differently (policy, schema and rate limits look at
/// requests), so a `tools/call` shaped as a notification would reach the upstream unjudged.
#[tokio::test]
async fn a_request_method_without_an_id_is_not_forwarded() {
    for transparent in [true, false] {
        let f = Fixture::start(&[A], transparent).await;
        let anon = Principal::anonymous();
        let s = f.legacy_session().await;
        let name = if transparent { "echo" } else { "a__echo" };
        let sneaky = json!({"jsonrpc":"2.0","method":"tools/call","params":{"name":name,"arguments":{"x":1}}});
        assert!(matches!(
            f.gateway.handle(Some(&s), &anon, message(sneaky)).await,
            Reply::Accepted
        ));
        let fine = json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed"});
        assert!(matches!(
            f.gateway.handle(Some(&s), &anon, message(fine)).await,
            Reply::Accepted
        ));
        // A request after both: the upstream reads in order, so by its answer it has seen
        // whatever was forwarded before it.
        let call = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":name,"arguments":{"y":2}}});
        let r = f.call(Some(&s), &anon, call).await;
        assert!(r["result"].is_object(), "{r}");
        let methods = f.received_methods("a");
        let calls: Vec<Value> = f
            .received("a")
            .into_iter()
            .filter(|m| m["method"] == "tools/call")
            .map(|m| m["params"]["arguments"].clone())
            .collect();
        assert_eq!(
            calls,
            vec![json!({"y": 2})],
            "transparent={transparent}: {methods:?}"
        );
        assert!(
            methods.contains(&"notifications/roots/list_changed".to_owned()),
            "transparent={transparent}: a real notification still goes through: {methods:?}"
        );
        f.stop().await;
    }
}

/// A server request that cannot be tied to a request (stdio, several in flight) goes to a
/// session only when that session owns every request in flight on the connection: here one
/// of them is a stateless caller's, so the legacy session that is also busy must not get it.
#[tokio::test]
async fn an_unattributable_server_request_never_reaches_another_callers_session() {
    let f = Fixture::start(&[A], false).await;
    let mallory = Principal::new("mallory", warden_guard::AuthMethod::ApiKey);
    let s = f
        .gateway
        .open_session(mallory.clone(), Face::Http)
        .await
        .unwrap();
    let init = f
        .call(
            Some(&s),
            &mallory,
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}),
        )
        .await;
    assert!(init.get("result").is_some(), "{init}");
    let mut unsolicited = s.take_unsolicited().expect("the session's queue");
    // Mallory's own call asks her for sampling (the only request in flight: tied to it), and
    // she never answers, so it stays in flight.
    let ask = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__ask","arguments":{}}});
    let Reply::Stream(mut mine) = f.gateway.handle(Some(&s), &mallory, message(ask)).await else {
        panic!("a reply stream")
    };
    let first = tokio::time::timeout(WAIT, mine.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.method(), Some("sampling/createMessage"));

    // Alice, stateless, calls the same tool: two requests in flight now.
    let alice = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
    let done = f
        .call(
            None,
            &alice,
            modern("tools/call", 7, json!({"name": "a__ask", "arguments": {}})),
        )
        .await;
    let text = done["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.contains("no client session can receive this request"),
        "the upstream was told nobody can answer: {done}"
    );
    assert!(
        unsolicited.try_recv().is_err(),
        "Alice's sampling request must not reach Mallory's session"
    );
    drop(mine);
    f.stop().await;
}

/// A legacy upstream's request relayed to a 2026-07-28 client in rounds goes through the
/// response guards first, as it does for a legacy client: a refused one never reaches the
/// client, and the upstream gets the refusal.
#[tokio::test]
async fn a_bridged_server_request_goes_through_the_response_guards() {
    let f = Fixture::refusing(
        &[A],
        Refusing {
            name: "no_sampling",
            message: "sampling is not allowed",
            refuses: |call| {
                call.direction == warden_guard::Direction::ToClient
                    && call.message.method() == Some("sampling/createMessage")
            },
        },
    )
    .await;
    let anon = Principal::anonymous();
    let r = f
        .call(None, &anon, ask(1, json!({"sampling": {}}), json!({})))
        .await;
    assert_ne!(r["result"]["resultType"], "input_required", "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.contains("sampling is not allowed"),
        "the upstream got the refusal: {r}"
    );
    f.stop().await;
}

/// `serve` offers no tasks: an upstream shared by every caller hands task ids to anyone, so
/// `tasks/list` and `tasks/result` would cross callers. Refused before any upstream sees them.
#[tokio::test]
async fn tasks_are_refused_by_the_aggregating_gateway() {
    let f = Fixture::start(&[A], false).await;
    let anon = Principal::anonymous();
    let s = f.legacy_session().await;
    for (i, (method, params)) in [
        ("tasks/list", json!({})),
        ("tasks/result", json!({"taskId": "t-1", "name": "a__echo"})),
        (
            "tools/call",
            json!({"name": "a__echo", "arguments": {}, "task": {"ttl": 60000}}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let r = f
            .call(
                Some(&s),
                &anon,
                json!({"jsonrpc":"2.0","id":i,"method":method,"params":params}),
            )
            .await;
        // No task exists through the gateway: an unknown task for the methods that take one,
        // a refused augmentation for the call, no such method otherwise.
        let expected = if method == "tasks/list" {
            -32601
        } else {
            -32602
        };
        assert_eq!(r["error"]["code"], expected, "{method}: {r}");
    }
    let seen = f.received_methods("a");
    assert!(
        !seen
            .iter()
            .any(|m| m.starts_with("tasks/") || m == "tools/call"),
        "{seen:?}"
    );
    f.stop().await;
}

/// A parked call is spent only by its own caller, and a refused retry ends it at once: the
/// upstream's pending request gets the refusal instead of waiting for the park to expire.
#[tokio::test]
async fn a_parked_call_is_spent_by_its_caller_and_ended_by_a_refused_retry() {
    let f = Fixture::refusing(
        &[A],
        Refusing {
            name: "no_answers",
            message: "answers refused",
            refuses: |call| {
                call.direction == warden_guard::Direction::ToUpstream
                    && call
                        .message
                        .params()
                        .is_some_and(|p| p.get("inputResponses").is_some())
            },
        },
    )
    .await;
    let alice = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
    let mallory = Principal::new("mallory", warden_guard::AuthMethod::ApiKey);
    let first = f
        .call(None, &alice, ask(1, json!({"sampling": {}}), json!({})))
        .await;
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let answer = json!({"upstream-request": {"role": "assistant", "model": "m", "content": {"type": "text", "text": "x"}}});
    // Mallory holds the state (say it leaked): refused, and Alice's call is still parked.
    let theirs = f
        .call(
            None,
            &mallory,
            ask(2, json!({"sampling": {}}), json!({"requestState": state})),
        )
        .await;
    assert_eq!(theirs["error"]["code"], -32602, "{theirs}");
    // Alice's retry is refused by a guard: the parked call ends, the upstream is told.
    let retry = f.call(None, &alice, retry(3, &state, &answer)).await;
    assert_eq!(retry["error"]["data"]["guard"], "no_answers", "{retry}");
    let told = |m: &Value| m["id"] == "s1" && m["error"]["message"] == "answers refused";
    let got = f.wait_received("a", |got| got.iter().any(told)).await;
    assert!(got.iter().any(told), "{got:?}");
    f.stop().await;
}

/// With several upstreams, a resource read is judged against the upstream it is routed to,
/// so rules scoped to a server apply to its resources (before, the guards saw no upstream).
#[tokio::test]
async fn a_resource_read_is_judged_against_its_upstream() {
    let f = Fixture::refusing(
        &[A, B],
        Refusing {
            name: "not_from_b",
            message: "not from b",
            refuses: |call| {
                call.direction == warden_guard::Direction::ToUpstream
                    && call.message.method() == Some("resources/read")
                    && call.upstream == Some("b")
            },
        },
    )
    .await;
    let s = f.legacy_session().await;
    let read = |id: i64, uri: &str| json!({"jsonrpc":"2.0","id":id,"method":"resources/read","params":{"uri":uri}});
    let from_b = f
        .call(Some(&s), s.principal(), read(1, "mem://only-b"))
        .await;
    assert_eq!(from_b["error"]["data"]["guard"], "not_from_b", "{from_b}");
    let from_a = f
        .call(Some(&s), s.principal(), read(2, "mem://only-a"))
        .await;
    assert_eq!(
        from_a["result"]["contents"][0]["uri"], "mem://only-a",
        "{from_a}"
    );
    assert!(
        !f.received_methods("b")
            .contains(&"resources/read".to_owned()),
        "b was never asked"
    );
    f.stop().await;
}

/// A completion is judged against the prompt it completes: the guards see it resolved as a
/// `prompts/get` would be (upstream and name at the upstream).
#[tokio::test]
async fn a_completion_is_judged_against_its_prompt() {
    let f = Fixture::refusing(
        &[A],
        Refusing {
            name: "no_greet",
            message: "not greet",
            refuses: |call| {
                call.message.method() == Some("completion/complete")
                    && call.upstream == Some("a")
                    && call.target.and_then(|t| t.name.as_deref()) == Some("greet")
            },
        },
    )
    .await;
    let s = f.legacy_session().await;
    let complete = json!({"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{
        "ref":{"type":"ref/prompt","name":"a__greet"},"argument":{"name":"n","value":"x"}}});
    let r = f.call(Some(&s), s.principal(), complete).await;
    assert_eq!(r["error"]["data"]["guard"], "no_greet", "{r}");
    assert!(
        !f.received_methods("a")
            .contains(&"completion/complete".to_owned())
    );
    f.stop().await;
}

/// A server request with no call in flight goes to the client's unsolicited queue (`run`'s
/// one client); when the client does not read it and the queue is full, the upstream is answered at once (`-32603`)
/// instead of waiting for an answer that cannot come.
#[tokio::test]
async fn a_server_request_past_a_full_unsolicited_queue_is_refused_to_the_upstream() {
    // `run`'s gateway: one client, which gets every unsolicited message.
    let f = Fixture::start(&[A], true).await;
    let anon = Principal::anonymous();
    let s = f.session_with_roots(&anon).await;
    let uri = "mem://items/full";
    // Nobody reads the session's unsolicited messages: the updates fill its queue.
    for n in 0..warden_session::UNSOLICITED_QUEUE + 4 {
        let touch = json!({"jsonrpc":"2.0","id":2 + n,"method":"tools/call","params":{"name":"touch","arguments":{"uri":uri}}});
        assert!(f.call(Some(&s), &anon, touch).await["result"].is_object());
    }
    let later = json!({"jsonrpc":"2.0","id":9000,"method":"tools/call","params":{"name":"ask_later","arguments":{}}});
    assert!(f.call(Some(&s), &anon, later).await["result"].is_object());
    let refused = |m: &Value| m["id"] == "late1" && m.get("method").is_none();
    let got = f.wait_received("a", |got| got.iter().any(refused)).await;
    let answer = got.into_iter().find(refused).unwrap();
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not reading")),
        "{answer}"
    );
    f.stop().await;
}
