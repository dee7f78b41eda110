//! Request, notification and response handling: where each client message goes.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use warden_guard::{Direction, Principal};
use warden_proto::Field;
use warden_proto::mcp::{self, Era};
use warden_proto::{ErrorCode, Id, Kind, Message};
use warden_upstream::{Connection, UpstreamError};

use crate::bridge::{self, ServerDescription};
use crate::gateway::{
    Answer, EraPreference, Gateway, HandshakeError, Inflight, MAX_LIST_ITEMS, MAX_LIST_PAGES,
    MAX_SUBSCRIPTIONS, Routes, UpstreamState, detect, error, exchange, pump_unsolicited,
    relayed_error, request, response, upstream_error,
};
use crate::guarded::RELIST_INTERVAL;
use crate::mrtr::Exchange;
use crate::naming::{self, NameMap};
use crate::params::ToolParams;
use crate::{AfterResponse, Reply, ReplyStream, Session};

/// The least verbose level the gateway sets on a connection callers share: `info` (rank 1).
const SHARED_LOG_FLOOR: u8 = 1;

/// The four aggregated list methods: (method, result key, capability).
const LISTS: &[(&str, &str, &str)] = &[
    ("tools/list", "tools", "tools"),
    ("prompts/list", "prompts", "prompts"),
    ("resources/list", "resources", "resources"),
    ("resources/templates/list", "resourceTemplates", "resources"),
];

/// Legacy methods removed in 2026-07-28 (changelog: lifecycle, ping, logging level, and
/// resource subscriptions replaced by `subscriptions/listen`).
const REMOVED_IN_MODERN: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// The string `params.<key>` of a request, or the error reply naming it.
fn required_param(message: &Message, key: &str, idv: &Value) -> Result<String, Reply> {
    message
        .params()
        .and_then(|p| p.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            single(error(
                idv,
                ErrorCode::InvalidParams,
                &format!("params.{key} is required"),
            ))
        })
}

fn single(m: Message) -> Reply {
    Reply::Stream(ReplyStream::single(m))
}

/// What the client is, for shaping answers.
#[derive(Clone, Copy)]
pub(crate) struct ClientEra {
    /// A stateless (2026-07-28) request.
    pub(crate) modern: bool,
}

fn params_of(msg: &Message) -> Map<String, Value> {
    msg.params()
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn with_params(msg: &Message, params: Map<String, Value>) -> Message {
    let mut v = msg.value().clone();
    v["params"] = Value::Object(params);
    msg.rewrite(v)
        .expect("a request with replaced params is still a request")
}

impl Gateway {
    pub(crate) async fn handle_request(
        &self,
        session: Option<&Arc<Session>>,
        routes: Arc<Routes>,
        principal: &Principal,
        message: Message,
    ) -> Reply {
        let id = message.id().cloned().expect("a request always has an id");
        let idv = id.to_value();
        if !Arc::ptr_eq(&routes, &self.stateless) && routes.take_early_cancel(&id) {
            // Cancelled by the client before it started: nothing reaches the upstream.
            return single(error(
                &idv,
                ErrorCode::InvalidRequest,
                "request cancelled by the client",
            ));
        }
        let method = message.method().unwrap_or("").to_owned();
        let client = ClientEra {
            modern: mcp::declared_version(&message).is_some()
                && !session.is_some_and(|s| s.is_initialized()),
        };
        // A retry of a call the gateway parked: if the guards refuse it, the parked call ends.
        let retry_state = if client.modern {
            message
                .params()
                .and_then(|p| p.field("requestState"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        } else {
            None
        };
        // Permits the request guards take (concurrency slots) live as long as the reply.
        let (message, held) = match self
            .guard_request(session, &routes, principal, message, client)
            .await
        {
            Ok(m) => m,
            Err(denial) => {
                if let Some(state) = retry_state {
                    Box::pin(self.abandon_parked(&state, principal, &denial)).await;
                }
                return single(denial);
            }
        };
        if client.modern && REMOVED_IN_MODERN.contains(&method.as_str()) {
            // Stateless clients must not use the legacy lifecycle; answered like any unknown
            // method (HTTP 404 on the Streamable HTTP face).
            return single(error(
                &idv,
                ErrorCode::MethodNotFound,
                &format!("method {method:?} does not exist in protocol revision 2026-07-28"),
            ));
        }
        if client.modern
            && let Some(problem) = crate::mrtr::malformed_round(&message)
        {
            // Checked here for every upstream: a legacy one would silently ignore them.
            return single(error(&idv, ErrorCode::InvalidParams, problem));
        }
        // Only a retry carries `requestState`: other requests skip the (boxed) lookup.
        if client.modern
            && message
                .params()
                .is_some_and(|p| p.field("requestState").is_some())
            && let Some(reply) = Box::pin(self.resume(&message, principal, &method)).await
        {
            // The retry of a call the gateway parked for this client's input.
            return reply.holding(held);
        }
        if self.opts.transparent {
            return self
                .transparent_request(session, principal, routes, message, client, &method)
                .await
                .holding(held);
        }
        if method.starts_with("tasks/")
            || (method == "tools/call"
                && message.params().is_some_and(|p| p.field("task").is_some()))
        {
            // An upstream shared by every caller keys tasks by ids it hands out to anyone:
            // `tasks/list` would show one caller's tasks to another, and `tasks/result` read
            // them. Until the gateway binds each task to its caller, `serve` offers none: no
            // call becomes a task, so no task id is one the gateway knows.
            // A method that takes a task id gets "no such task"; a removed or unknown one, "no
            // such method"; a task-augmented call, a refusal of its `task` parameter.
            let takes_a_task = matches!(method.as_str(), "tasks/get" | "tasks/cancel")
                || (method == "tasks/result" && !client.modern);
            let (code, text) = match (method.as_str(), takes_a_task) {
                ("tools/call", _) => (ErrorCode::InvalidParams, "task-augmented calls are not"),
                (_, true) => (ErrorCode::InvalidParams, "no such task: tasks are not"),
                _ => (ErrorCode::MethodNotFound, "tasks are not"),
            };
            let text = format!(
                "{text} offered through the gateway (a task is not yet bound to its caller)"
            );
            return single(error(&idv, code, &text));
        }
        let reply = match method.as_str() {
            // Boxed: rare methods whose futures would otherwise size every request's.
            "initialize" => Box::pin(self.answer_initialize(session, &message, &idv)).await,
            "server/discover" => {
                let d = Box::pin(self.aggregate_description(client)).await;
                single(response(&idv, d.to_discover_result()))
            }
            "ping" => single(response(&idv, json!({}))),
            "logging/setLevel" => {
                let level = match required_param(&message, "level", &idv) {
                    Ok(l) => l,
                    Err(reply) => return reply,
                };
                let Some(rank) = crate::session::log_level_rank(&level) else {
                    return single(error(
                        &idv,
                        ErrorCode::InvalidParams,
                        &format!("unknown log level {level:?}"),
                    ));
                };
                if let Some(s) = session {
                    s.set_log_level(rank);
                }
                Box::pin(self.broadcast_set_level(session, &routes, &message, rank)).await;
                single(response(&idv, json!({})))
            }
            m if LISTS.iter().any(|(l, _, _)| *l == m) => {
                self.aggregate_list(session, &routes, principal, &message, client)
                    .await
            }
            "tools/call" | "prompts/get" => {
                let kind = if method == "tools/call" {
                    Item::Tool
                } else {
                    Item::Prompt
                };
                let name = match required_param(&message, "name", &idv) {
                    Ok(n) => n,
                    Err(reply) => return reply,
                };
                let Some((up, original)) = self.route_name(&name, kind) else {
                    return single(error(
                        &idv,
                        ErrorCode::InvalidParams,
                        &format!("unknown {}: {name:?}", kind.noun()),
                    ));
                };
                // An unchanged name (`namespace = false`) keeps the original bytes.
                let out = if original == name {
                    message
                } else {
                    let mut params = params_of(&message);
                    params.insert("name".into(), Value::String(original));
                    with_params(&message, params)
                };
                self.forward(session, principal, routes, &up, out, id, client, method)
                    .await
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = match required_param(&message, "uri", &idv) {
                    Ok(u) => u,
                    Err(reply) => return reply,
                };
                match self.route_uri(session, &routes, &uri, client).await {
                    Ok(up) if method == "resources/read" || session.is_none() => {
                        self.forward(session, principal, routes, &up, message, id, client, method)
                            .await
                    }
                    Ok(up) => {
                        let request = (message, id, client, method);
                        Box::pin(self.subscription(session, principal, routes, &up, uri, request))
                            .await
                    }
                    Err(text) => single(error(&idv, ErrorCode::InvalidParams, &text)),
                }
            }
            "completion/complete" => {
                Box::pin(self.route_completion(session, principal, routes, message, id, client))
                    .await
            }
            _ => {
                // Not a method the gateway routes by itself: by a namespaced name if the
                // params carry one, to the only upstream if there is one.
                let by_name = message
                    .params()
                    .and_then(|p| p.field("name"))
                    .and_then(Value::as_str)
                    .and_then(naming::split)
                    .and_then(|(server, _)| self.upstream(server));
                let target = by_name
                    .or_else(|| (self.upstreams.len() == 1).then(|| self.upstreams[0].clone()));
                match target {
                    Some(up) => {
                        self.forward(session, principal, routes, &up, message, id, client, method)
                            .await
                    }
                    None => single(error(
                        &idv,
                        ErrorCode::MethodNotFound,
                        &format!("method {method:?} cannot be routed to one upstream"),
                    )),
                }
            }
        };
        reply.holding(held)
    }

    fn upstream(&self, name: &str) -> Option<Arc<UpstreamState>> {
        self.upstreams.iter().find(|u| u.name == name).cloned()
    }

    pub(crate) fn route_name(
        &self,
        exposed: &str,
        kind: Item,
    ) -> Option<(Arc<UpstreamState>, String)> {
        let map_of = |u: &UpstreamState, f: &dyn Fn(&NameMap) -> Option<String>| {
            let catalog = u.catalog.read().ok()?;
            f(match kind {
                Item::Tool => &catalog.tools,
                Item::Prompt => &catalog.prompts,
            })
        };
        // `<server>__<name>` of a namespaced upstream.
        if let Some((server, _)) = naming::split(exposed)
            && let Some(up) = self.upstream(server).filter(|u| u.namespace)
        {
            let original = map_of(&up, &|m| m.original(exposed).map(str::to_owned))?;
            return Some((up, original));
        }
        // A plain name: the one upstream that listed it; with none, the only plain upstream.
        let plain: Vec<&Arc<UpstreamState>> =
            self.upstreams.iter().filter(|u| !u.namespace).collect();
        let listed: Vec<&Arc<UpstreamState>> = plain
            .iter()
            .copied()
            .filter(|u| map_of(u, &|m| m.contains(exposed).then(String::new)).is_some())
            .collect();
        match (listed.as_slice(), plain.as_slice()) {
            ([one], _) => Some(((*one).clone(), exposed.to_owned())),
            ([], [only]) => Some(((*only).clone(), exposed.to_owned())),
            _ => None,
        }
    }

    pub(crate) async fn route_uri(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        uri: &str,
        client: ClientEra,
    ) -> Result<Arc<UpstreamState>, String> {
        let with_resources: Vec<Arc<UpstreamState>> = self
            .upstreams
            .iter()
            .filter(|u| {
                u.known_desc()
                    .is_some_and(|d| d.capabilities.field("resources").is_some())
            })
            .cloned()
            .collect();
        if with_resources.len() == 1 {
            return Ok(with_resources[0].clone());
        }
        for attempt in 0..2 {
            let mut exact = vec![];
            let mut by_template: Vec<(usize, Arc<UpstreamState>)> = vec![];
            for u in &with_resources {
                let Ok(c) = u.catalog.read() else { continue };
                if c.resources.contains(uri) {
                    exact.push(u.clone());
                }
                if let Some(len) = c
                    .templates
                    .iter()
                    .filter(|p| uri.starts_with(p.as_str()))
                    .map(String::len)
                    .max()
                {
                    by_template.push((len, u.clone()));
                }
            }
            if exact.len() == 1 {
                return Ok(exact.swap_remove(0));
            }
            if exact.len() > 1 {
                return Err(format!("resource {uri:?} is served by several upstreams"));
            }
            by_template.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
            match by_template.as_slice() {
                [(_, u)] => return Ok(u.clone()),
                [(a, u), (b, _), ..] if a > b => return Ok(u.clone()),
                [_, _, ..] => {
                    return Err(format!(
                        "resource {uri:?} matches templates of several upstreams"
                    ));
                }
                [] => {}
            }
            if attempt == 0 {
                // The catalogs may be stale or never filled: list once and retry, unless they
                // were listed for this less than a relist interval ago.
                let now = tokio::time::Instant::now();
                let mut due = false;
                for u in &with_resources {
                    if let Ok(mut c) = u.catalog.write()
                        && c.resources_listed_at
                            .is_none_or(|at| now.duration_since(at) >= RELIST_INTERVAL)
                    {
                        c.resources_listed_at = Some(now);
                        due = true;
                    }
                }
                if !due {
                    break;
                }
                for (method, _, _) in &LISTS[2..] {
                    let m = request(method, json!({}));
                    let _ = self.collect_list(session, routes, &m, client).await;
                }
            }
        }
        Err(format!("unknown resource {uri:?}"))
    }

    async fn route_completion(
        &self,
        session: Option<&Arc<Session>>,
        principal: &Principal,
        routes: Arc<Routes>,
        message: Message,
        id: Id,
        client: ClientEra,
    ) -> Reply {
        let idv = id.to_value();
        let mut params = params_of(&message);
        let reference = params.field("ref").cloned().unwrap_or(Value::Null);
        match reference.field("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference
                    .field("name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let Some((up, original)) = self.route_name(name, Item::Prompt) else {
                    return single(error(
                        &idv,
                        ErrorCode::InvalidParams,
                        &format!("unknown prompt: {name:?}"),
                    ));
                };
                params["ref"]["name"] = Value::String(original);
                let out = with_params(&message, params);
                self.forward(
                    session,
                    principal,
                    routes,
                    &up,
                    out,
                    id,
                    client,
                    "completion/complete".into(),
                )
                .await
            }
            Some("ref/resource") => {
                let uri = reference.field("uri").and_then(Value::as_str).unwrap_or("");
                match self.route_uri(session, &routes, uri, client).await {
                    Ok(up) => {
                        self.forward(
                            session,
                            principal,
                            routes,
                            &up,
                            message,
                            id,
                            client,
                            "completion/complete".into(),
                        )
                        .await
                    }
                    Err(text) => single(error(&idv, ErrorCode::InvalidParams, &text)),
                }
            }
            _ => single(error(
                &idv,
                ErrorCode::InvalidParams,
                "params.ref must be a prompt or resource reference",
            )),
        }
    }

    async fn answer_initialize(
        &self,
        session: Option<&Arc<Session>>,
        message: &Message,
        idv: &Value,
    ) -> Reply {
        let params = params_of(message);
        let requested = params.field("protocolVersion").and_then(Value::as_str);
        let d = self
            .aggregate_description(ClientEra { modern: false })
            .await;
        let result = d.to_initialize_result(requested);
        if let Some(s) = session {
            s.set_initialized(
                result["protocolVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                params.field("capabilities").cloned(),
                params.field("clientInfo").cloned(),
            );
        }
        single(response(idv, result))
    }

    /// The gateway's own description: the union of its upstreams' capabilities.
    /// The gateway's own description for a client of `client`'s era: the union of what its
    /// upstreams offer *to that client*. A feature the gateway cannot carry across eras is not
    /// announced: resource subscriptions, logging and list-change notifications need the
    /// upstream to speak the client's era (legacy: `resources/subscribe`, `logging/setLevel`,
    /// the GET stream; modern: `subscriptions/listen`, which the gateway forwards only when it
    /// fronts a single upstream).
    async fn aggregate_description(&self, client: ClientEra) -> ServerDescription {
        let client_era = if client.modern {
            Era::Modern
        } else {
            Era::Legacy
        };
        let mut caps = Map::new();
        let mut instructions = vec![];
        for u in &self.upstreams {
            let Ok(d) = u.describe().await else { continue };
            let native = u.era_for(&self.me, client_era).await.ok() == Some(client_era);
            let mut offered = if native && d.era != client_era {
                // A dual-era upstream: what its legacy handshake announced.
                u.legacy_capabilities()
                    .await
                    .unwrap_or_else(|| d.capabilities.clone())
            } else {
                d.capabilities.clone()
            };
            let subscriptions_routable = !client.modern || self.upstreams.len() == 1;
            if !native || !subscriptions_routable {
                withhold_era_bound_capabilities(&mut offered, native);
            }
            if let Some(c) = offered.as_object() {
                for (k, v) in c {
                    // `tasks` moved to an extension in 2026-07-28; a 2025 `tasks` capability
                    // must not be announced to a 2026 client.
                    // `serve` offers no tasks at all (see `handle_request`).
                    if k == "experimental"
                        || k == "extensions"
                        || (k == "tasks" && (client.modern || !self.opts.transparent))
                    {
                        continue;
                    }
                    let slot = caps.entry(k.clone()).or_insert_with(|| json!({}));
                    if let (Some(slot), Some(v)) = (slot.as_object_mut(), v.as_object()) {
                        for (sk, sv) in v {
                            if sv == &Value::Bool(true) || !slot.contains_key(sk) {
                                slot.insert(sk.clone(), sv.clone());
                            }
                        }
                    }
                }
            }
            if let Some(i) = d.instructions.as_deref().filter(|i| !i.trim().is_empty())
                && let Some(i) = self.guard_instructions(&u.name, i).await
            {
                instructions.push(format!("[{}] {}", u.name, i));
            }
        }
        ServerDescription {
            era: client_era,
            protocol_version: mcp::V_2025_11_25.into(),
            supported_versions: mcp::supported_versions().map(str::to_owned).collect(),
            capabilities: Value::Object(caps),
            server_info: json!({"name": "mcp-warden", "version": env!("CARGO_PKG_VERSION")}),
            instructions: (!instructions.is_empty()).then(|| instructions.join("\n\n")),
        }
    }

    /// An upstream's `instructions` as the response guards release them (pinning withholds
    /// changed ones until approved): run as the `instructions` of an `initialize` result, so
    /// the guards see which upstream sent them. `None` when withheld.
    async fn guard_instructions(&self, upstream: &str, text: &str) -> Option<String> {
        let message = response(&json!(0), json!({ "instructions": text }));
        let released = self
            .guard(
                message,
                Direction::ToClient,
                // Instructions are the server's, not an answer to one caller: the least
                // privileged principal.
                &Principal::anonymous(),
                Some(upstream),
                Some("initialize"),
            )
            .await
            .ok()?;
        let text = released.result()?.field("instructions")?.as_str()?;
        Some(text.to_owned())
    }

    /// `result` with its `instructions` as [`Gateway::guard_instructions`] releases them, and
    /// the server's self-description (`serverInfo`, in `_meta` for a `server/discover` result)
    /// as the response guards release it: its title and description are text a client shows,
    /// sanitized like any other (the name and version are kept).
    async fn with_guarded_instructions(&self, upstream: &str, mut result: Value) -> Value {
        let text = result
            .field("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let (Some(text), Some(obj)) = (text, result.as_object_mut()) {
            match self.guard_instructions(upstream, &text).await {
                Some(kept) => obj.insert("instructions".into(), Value::String(kept)),
                None => obj.remove("instructions"),
            };
        }
        for pointer in ["/serverInfo", "/_meta/io.modelcontextprotocol~1serverInfo"] {
            let Some(info) = result.pointer(pointer).cloned() else {
                continue;
            };
            let probe = response(&json!(0), json!({ "serverInfo": info }));
            let released = self
                .guard(
                    probe,
                    Direction::ToClient,
                    &Principal::anonymous(),
                    Some(upstream),
                    Some("initialize"),
                )
                .await
                .ok()
                .and_then(|m| m.result().and_then(|r| r.get("serverInfo")).cloned())
                // Refused: only what identifies the server.
                .unwrap_or_else(
                    || json!({"name": info.get("name"), "version": info.get("version")}),
                );
            if let Some(slot) = result.pointer_mut(pointer) {
                *slot = released;
            }
        }
        result
    }

    /// A session's `resources/subscribe` or `resources/unsubscribe` of `uri` on `up`.
    ///
    /// A subscription counts for the session once the upstream accepted it (at most
    /// [`MAX_SUBSCRIPTIONS`]). A shared (stdio) connection serves every session, so an
    /// unsubscription reaches it only when no other session is still subscribed (it would end
    /// that session's updates), and these requests are ordered per upstream: each is decided
    /// and forwarded while the upstream's `subscription_order` is held, until its answer passes.
    /// A per-session connection (a legacy HTTP upstream's) is the session's alone.
    async fn subscription(
        &self,
        session: Option<&Arc<Session>>,
        principal: &Principal,
        routes: Arc<Routes>,
        up: &Arc<UpstreamState>,
        uri: String,
        (message, id, client, method): (Message, Id, ClientEra, String),
    ) -> Reply {
        let idv = id.to_value();
        let shared = !up.is_http;
        let order = if shared {
            let lock = up.subscription_order.clone().lock_owned();
            match tokio::time::timeout(up.request_timeout, lock).await {
                Ok(held) => Some(held),
                Err(_) => {
                    return single(error(
                        &idv,
                        ErrorCode::UpstreamTimeout,
                        &format!(
                            "upstream {:?}: an earlier subscription request is still unanswered",
                            up.name
                        ),
                    ));
                }
            }
        } else {
            None
        };
        let key = (up.index, uri);
        if method == "resources/subscribe" {
            use std::sync::atomic::Ordering::SeqCst;
            // Checked and reserved under one lock; the reservation ends in `then`, however the
            // exchange ends.
            let full = routes.subscriptions.lock().map_or(true, |s| {
                let full = !s.contains(&key)
                    && s.len() + routes.subscribing.load(SeqCst) >= MAX_SUBSCRIPTIONS;
                if !full {
                    routes.subscribing.fetch_add(1, SeqCst);
                }
                full
            });
            if full {
                return single(error(
                    &idv,
                    ErrorCode::InvalidParams,
                    &format!("too many subscriptions: at most {MAX_SUBSCRIPTIONS} per session"),
                ));
            }
            let (held_by, gateway) = (routes.clone(), self.me.clone());
            let then = move |outcome: Option<bool>| {
                if let Ok(mut s) = held_by.subscriptions.lock() {
                    if outcome == Some(true) {
                        s.insert(key.clone());
                    }
                    held_by.subscribing.fetch_sub(1, SeqCst);
                }
                let Some(g) = gateway.upgrade() else { return };
                match outcome {
                    Some(true) => {
                        // The session ended while this was in flight: released like the rest.
                        if held_by.released.load(std::sync::atomic::Ordering::SeqCst) {
                            g.release_subscriptions(&held_by);
                        }
                    }
                    Some(false) => {}
                    // Ended unanswered (cancelled, or its session ended): the upstream may have
                    // subscribed all the same. Unless a session holds the URI, it is told not to.
                    None => {
                        if !held_by.is_subscribed(&key) {
                            g.unsubscribe_orphans(vec![key], &held_by);
                        }
                    }
                }
            };
            let after = AfterResponse {
                order,
                then: Some(Box::new(then)),
            };
            return self
                .forward(session, principal, routes, up, message, id, client, method)
                .await
                .after(after);
        }
        let was = routes
            .subscriptions
            .lock()
            .is_ok_and(|mut s| s.remove(&key));
        if shared && (!was || self.subscribed_elsewhere(up.index, &key.1, Some(&routes))) {
            return single(response(&idv, json!({})));
        }
        let after = AfterResponse { order, then: None };
        self.forward(session, principal, routes, up, message, id, client, method)
            .await
            .after(after)
    }

    /// Applies a client's `logging/setLevel` (`rank`: the level's) to the upstreams that log.
    /// A per-session connection gets it as it is. A shared connection logs for every caller, so
    /// it is set to the most verbose level any caller asked for, and never made less verbose
    /// by one of them: each session then gets only what it asked for
    /// ([`Session::wants_log`]), and no caller can silence or flood another's logs.
    async fn broadcast_set_level(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        message: &Message,
        rank: u8,
    ) {
        for u in &self.upstreams {
            let Ok(d) = u.describe().await else { continue };
            if !d.supports(Era::Legacy) || d.capabilities.field("logging").is_none() {
                continue;
            }
            let Ok((conn, Era::Legacy)) = self
                .conn_for(session, routes, u, ClientEra { modern: false })
                .await
            else {
                continue;
            };
            // A connection of this session's own (a per-session HTTP upstream session) gets
            // the level as asked; any other is shared by every legacy caller of the upstream.
            let own = routes
                .conns
                .lock()
                .await
                .get(&u.index)
                .is_some_and(|c| c.id() == conn.id());
            if self.opts.transparent || own {
                if let Err(e) = exchange(&conn, message.clone(), u.request_timeout).await {
                    tracing::debug!(upstream = %u.name, error = %e, "logging/setLevel not applied");
                }
                continue;
            }
            // Never less verbose than `info` on a shared connection: a caller asking for
            // `error` must not take other sessions' default logs away (its own session filters
            // what it gets).
            let rank = rank.min(SHARED_LOG_FLOOR);
            let mut set = u.shared_log_level.lock().await;
            // The level set on this very connection (a restarted upstream starts afresh; the
            // held clone keeps the connection's id from being reused meanwhile).
            let current = set
                .as_ref()
                .filter(|(c, _)| c.id() == conn.id())
                .map(|(_, r)| *r);
            if current.is_some_and(|r| r <= rank) {
                continue;
            }
            let level = crate::session::LOG_LEVELS[usize::from(rank)];
            let forwarded = request("logging/setLevel", json!({ "level": level }));
            match exchange(&conn, forwarded, u.request_timeout).await {
                Ok(Answer::Result(_)) => *set = Some((conn.clone(), rank)),
                Ok(Answer::Error(e)) => {
                    tracing::debug!(upstream = %u.name, error = %e, "logging/setLevel refused");
                }
                Err(e) => {
                    tracing::debug!(upstream = %u.name, error = %e, "logging/setLevel not applied");
                }
            }
        }
    }

    /// The connection to use for `up` on behalf of `session`, and the era to speak on it.
    ///
    /// The era is the client's own whenever the upstream supports it. Legacy traffic to an HTTP
    /// upstream from a legacy session goes over a per-session upstream session, initialized with
    /// the client's own capabilities and info, so server-to-client traffic is exact. Everything
    /// else uses the shared connection (initialized once by the gateway for legacy traffic).
    pub(crate) async fn conn_for(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        up: &Arc<UpstreamState>,
        client: ClientEra,
    ) -> Result<(Connection, Era), HandshakeError> {
        if self.opts.transparent {
            // The client's own handshake reached the upstream (or the gateway bridged it and
            // recorded the description): never start another one here.
            // Only the era is needed: no clone of the whole description per request.
            let era = up.known_era().unwrap_or(Era::Legacy);
            return Ok((up.conn(), era));
        }
        if up.life.is_down() {
            // Marked down by its supervisor: fail at once, and leave it out of lists.
            return Err(HandshakeError::Down {
                name: up.name.clone(),
            });
        }
        let client_era = if client.modern {
            Era::Modern
        } else {
            Era::Legacy
        };
        let era = up.era_for(&self.me, client_era).await?;
        if era == Era::Modern {
            return Ok((up.conn(), era));
        }
        let per_session = session.filter(|s| up.is_http && s.is_initialized());
        let Some(session) = per_session else {
            let conn = Box::pin(up.ensure_legacy(&self.me)).await?;
            return Ok((conn, Era::Legacy));
        };
        let mut conns = routes.conns.lock().await;
        if let Some(c) = conns.get(&up.index)
            && c.is_alive()
        {
            return Ok((c.clone(), Era::Legacy));
        }
        if routes.closed.load(std::sync::atomic::Ordering::SeqCst) {
            // The session ended while this request was on its way: no new upstream session
            // for it (nothing would close it).
            return Err(HandshakeError::Upstream(UpstreamError::Closed {
                name: up.name.clone(),
                reason: warden_upstream::CloseReason::ShutDown,
            }));
        }
        let conn = up
            .conn()
            .fork_http()
            .ok_or_else(|| HandshakeError::NotModern {
                name: up.name.clone(),
            })?;
        let caps = session.client_capabilities();
        let info = session.client_info();
        let d = Box::pin(detect(
            &up.name,
            &conn,
            EraPreference::Legacy,
            up.startup_timeout,
            caps.as_ref(),
            info.as_ref(),
        ))
        .await?;
        conn.set_protocol_version(&d.protocol_version);
        if let Some(rx) = conn.take_unsolicited() {
            tokio::spawn(pump_unsolicited(
                self.me.clone(),
                up.clone(),
                conn.clone(),
                Some((session.clone(), routes.clone())),
                rx,
            ));
        }
        conns.insert(up.index, conn.clone());
        Ok((conn, Era::Legacy))
    }

    /// Fetches every page of one list from every upstream that has the capability, and records
    /// names and URIs for routing. Returns the namespaced items of each upstream, with the
    /// upstream they came from (the guards judge each item as its own upstream's).
    pub(crate) async fn collect_list(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        message: &Message,
        client: ClientEra,
    ) -> Vec<Listed> {
        let method = message.method().unwrap_or("");
        let Some((_, key, cap)) = LISTS.iter().find(|(m, _, _)| *m == method).copied() else {
            return vec![];
        };
        let fetches = self.upstreams.iter().map(|u| async move {
            let d = u.describe().await.ok()?;
            d.capabilities.get(cap)?;
            let (conn, era) = self.conn_for(session, routes, u, client).await.ok()?;
            let mut items = vec![];
            let mut cursor: Option<Value> = None;
            // Every page of one list within one request timeout: an upstream that answers
            // slowly with endless cursors cannot hold every client's list for hours.
            let deadline = tokio::time::Instant::now() + u.request_timeout;
            for _ in 0..MAX_LIST_PAGES {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() || items.len() >= MAX_LIST_ITEMS {
                    tracing::warn!(upstream = %u.name, method, items = items.len(), "list paging stopped (request timeout or item limit); the pages received are used");
                    break;
                }
                let mut params = Map::new();
                if let Some(c) = cursor.take() {
                    params.insert("cursor".into(), c);
                }
                if era == Era::Modern {
                    bridge::add_modern_meta(
                        &mut params,
                        session.and_then(|s| s.client_capabilities()).as_ref(),
                        None,
                    );
                }
                match exchange(&conn, request(method, Value::Object(params)), left).await
                {
                    Ok(Answer::Result(r)) => {
                        if let Some(a) = r.get(key).and_then(Value::as_array) {
                            let room = MAX_LIST_ITEMS.saturating_sub(items.len());
                            items.extend(a.iter().take(room).cloned());
                        }
                        match r.field("nextCursor") {
                            Some(c) if !c.is_null() => cursor = Some(c.clone()),
                            _ => break,
                        }
                    }
                    Ok(Answer::Error(e)) => {
                        tracing::warn!(upstream = %u.name, method, error = %e, "list failed");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(upstream = %u.name, method, error = %e, "list failed");
                        break;
                    }
                }
            }
            Some((u.clone(), items))
        });
        let results = futures::future::join_all(fetches).await;
        let mut listed: Vec<Listed> = results
            .into_iter()
            .flatten()
            .map(|(u, items)| {
                let items = self.namespace_items(&u, key, items);
                (u, items)
            })
            .collect();
        if matches!(key, "tools" | "prompts") {
            withhold_duplicates(&mut listed, key);
        }
        listed
    }

    fn namespace_items(&self, u: &UpstreamState, key: &str, mut items: Vec<Value>) -> Vec<Value> {
        if key == "tools" {
            // HTTP clients must drop tools whose x-mcp-header annotations are invalid; the
            // gateway's clients are HTTP clients, so it withholds them itself.
            let before = items.len();
            items.retain(|t| !crate::params::has_invalid_annotations(t));
            if items.len() != before {
                tracing::warn!(upstream = %u.name, withheld = before - items.len(), "tools with invalid x-mcp-header annotations withheld from the list");
            }
        }
        if !u.namespace && matches!(key, "tools" | "prompts") {
            // (Resources and templates are routed by URI; their names are display names.)
            // A plain name shaped `<server>__<name>` of a namespaced upstream would be listed
            // with this upstream's definition while calls to it go to that upstream's item.
            let before = items.len();
            items.retain(|i| {
                i.field("name")
                    .and_then(Value::as_str)
                    .and_then(naming::split)
                    .is_none_or(|(server, _)| {
                        !self
                            .upstreams
                            .iter()
                            .any(|o| o.namespace && o.name == server)
                    })
            });
            if items.len() != before {
                tracing::warn!(upstream = %u.name, withheld = before - items.len(), list = key, "items named like another upstream's namespaced items withheld");
            }
        }
        let names: Vec<String> = items
            .iter()
            .map(|i| {
                i.field("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        let (map, exposed) =
            NameMap::build_with(&u.name, u.namespace, names.iter().map(String::as_str));
        let Ok(mut catalog) = u.catalog.write() else {
            return vec![];
        };
        match key {
            "tools" => {
                catalog.tools = map;
                catalog.tool_defs = crate::guarded::tool_definitions(&items);
                catalog.tools_listed_at = Some(tokio::time::Instant::now());
                // `items` still carry the upstream's own names here.
                catalog.tool_params = ToolParams::from_tools(&u.name, &items);
            }
            "prompts" => catalog.prompts = map,
            // Resources are addressed by URI; their names are display names, need not be
            // unique, and are passed through unchanged.
            "resources" => {
                catalog.resources = items
                    .iter()
                    .filter_map(|i| i.field("uri").and_then(Value::as_str).map(str::to_owned))
                    .collect();
                return items;
            }
            _ => {
                catalog.templates = items
                    .iter()
                    .filter_map(|i| i.field("uriTemplate").and_then(Value::as_str))
                    .map(|t| t.split('{').next().unwrap_or("").to_owned())
                    .filter(|p| !p.is_empty())
                    .collect();
                return items;
            }
        }
        items
            .iter_mut()
            .zip(exposed)
            .filter_map(|(item, name)| {
                let name = name?;
                if let Value::Object(o) = item {
                    o.insert("name".into(), Value::String(name));
                }
                Some(std::mem::take(item))
            })
            .collect()
    }

    async fn aggregate_list(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        principal: &Principal,
        message: &Message,
        client: ClientEra,
    ) -> Reply {
        let idv = message.id().map(Id::to_value).unwrap_or(Value::Null);
        let method = message.method().unwrap_or("").to_owned();
        if message
            .params()
            .and_then(|p| p.field("cursor"))
            .is_some_and(|c| !c.is_null())
        {
            // The gateway returns every item in one page and never issues cursors.
            return single(error(&idv, ErrorCode::InvalidParams, "invalid cursor"));
        }
        let key = LISTS
            .iter()
            .find(|(m, _, _)| *m == method)
            .map(|(_, k, _)| *k)
            .unwrap_or("items");
        let items = self.collect_list(session, routes, message, client).await;
        let items = self
            .guard_list(
                session.map(|s| s.id().as_str()),
                principal,
                &method,
                key,
                items,
            )
            .await;
        let mut result = json!({ key: items });
        if client.modern {
            bridge::complete_modern_result(&method, &mut result);
        }
        single(response(&idv, result))
    }

    /// Forwards one request to `up` and streams everything it answers back to the client.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per routing rule; a struct would only rename them"
    )]
    pub(crate) async fn forward(
        &self,
        session: Option<&Arc<Session>>,
        principal: &Principal,
        routes: Arc<Routes>,
        up: &Arc<UpstreamState>,
        message: Message,
        client_id: Id,
        client: ClientEra,
        method: String,
    ) -> Reply {
        let (conn, era) = match self.conn_for(session, &routes, up, client).await {
            Ok(c) => c,
            Err(e) => return single(upstream_error(&client_id.to_value(), &up.name, &e)),
        };
        // What the client declared, read before the request is adapted to the upstream's era.
        let caps = mcp::meta(&message)
            .and_then(|m| m.get(mcp::META_CLIENT_CAPABILITIES))
            .cloned()
            .or_else(|| session.and_then(|s| s.client_capabilities()));
        let name = crate::mrtr::bound_name(&message);
        // Read before a legacy upstream's adaptation strips it (a legacy client sets its level
        // per session instead).
        let log_level = client
            .modern
            .then(|| mcp::meta(&message)?.get(mcp::META_LOG_LEVEL)?.as_str())
            .flatten()
            .and_then(crate::session::log_level_rank);
        let mut message = message;
        if era == Era::Legacy && mcp::declared_version(&message).is_some() {
            // A modern client's request to a legacy upstream: the per-request protocol keys
            // mean nothing there and would make the transport announce the modern revision.
            let mut params = params_of(&message);
            bridge::strip_modern_meta(&mut params);
            message = with_params(&message, params);
        } else if era == Era::Modern && mcp::declared_version(&message).is_none() {
            // A legacy client's request to a modern upstream carries the per-request _meta
            // the client declared once in initialize.
            let mut params = params_of(&message);
            let caps = session.and_then(|s| s.client_capabilities());
            let info = session.and_then(|s| s.client_info());
            bridge::add_modern_meta(&mut params, caps.as_ref(), info.as_ref());
            message = with_params(&message, params);
        }
        // A 2026-07-28 HTTP upstream validates the Mcp-Param-* mirrors of annotated arguments.
        let mirrors = if up.is_http && era == Era::Modern && method == "tools/call" {
            let name = message
                .params()
                .and_then(|p| p.field("name"))
                .and_then(Value::as_str);
            let mapping = name.and_then(|n| up.catalog.read().ok()?.tool_params.get(n));
            match mapping {
                Some(m) => crate::params::mirror_headers(
                    &m,
                    message.params().and_then(|p| p.field("arguments")),
                ),
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let stream = match conn
            .request_with_headers(&message, up.request_timeout, mirrors)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                self.forget_broken(routes.as_ref(), up, &e).await;
                return single(upstream_error(&client_id.to_value(), &up.name, &e));
            }
        };
        let exchange = Exchange {
            session: session.cloned(),
            routes,
            up: up.clone(),
            conn,
            stream,
            client,
            era,
            method,
            name,
            caps,
            principal: principal.clone(),
            log_level,
        };
        self.spawn_pump(exchange, client_id)
    }

    /// Streams everything the upstream sends for one exchange to the client, until the
    /// response. A server-to-client request meant for a 2026-07-28 client (which cannot
    /// receive requests) ends the client's exchange with an `input_required` result instead,
    /// and the upstream call is parked until the client retries with its input.
    ///
    /// Nothing is spawned: the returned stream drives the exchange itself when the client's
    /// transport polls it (one task and one channel fewer per request). Dropping it before the
    /// response cancels the upstream call, as before.
    pub(crate) fn spawn_pump(&self, exchange: Exchange, client_id: Id) -> Reply {
        let token = CancellationToken::new();
        // Requests without a session share one `Routes`, and their ids are the clients' own:
        // they are not recorded for cancellation (a stateless client cancels by closing its
        // stream), so no caller can reach another's exchange through a guessed or colliding id.
        if !Arc::ptr_eq(&exchange.routes, &self.stateless)
            && let Ok(mut inflight) = exchange.routes.inflight.lock()
        {
            if exchange.routes.take_early_cancel(&client_id) {
                // The client cancelled it while it was on its way: the exchange ends at once
                // (the upstream is told, as for any cancellation).
                token.cancel();
            }
            inflight.insert(
                client_id.clone(),
                Inflight {
                    token: token.clone(),
                    conn: exchange.conn.id(),
                    upstream_id: exchange.stream.upstream_id().clone(),
                },
            );
        }
        let idv = client_id.to_value();
        Reply::Stream(ReplyStream::pump(Pump {
            ex: Some(exchange),
            client_id,
            idv,
            token,
            me: self.me.clone(),
        }))
    }

    /// Restores the client's id on the upstream's response and shapes it for the client's era.
    #[expect(
        clippy::too_many_arguments,
        reason = "every input is needed to shape the answer"
    )]
    async fn finish_response(
        &self,
        m: Message,
        client_id: &Id,
        client: ClientEra,
        upstream_era: Era,
        method: &str,
        session: Option<&Session>,
        principal: &Principal,
        upstream: &str,
    ) -> Message {
        let idv = client_id.to_value();
        let mut out = m.into_with_id(client_id);
        if out.kind() == &Kind::Response {
            if client.modern && upstream_era == Era::Legacy {
                let mut r = out.result().cloned().unwrap_or(Value::Null);
                bridge::complete_modern_result(method, &mut r);
                out = response(&idv, r);
            } else if !client.modern
                && upstream_era == Era::Modern
                && out
                    .result()
                    .and_then(|r| r.field("resultType"))
                    .and_then(Value::as_str)
                    == Some("input_required")
            {
                return error(
                    &idv,
                    ErrorCode::InternalError,
                    "the upstream needs more input from the user, which cannot be relayed to a client of this protocol revision",
                );
            }
        }
        match self
            .guard_in(
                session,
                out,
                Direction::ToClient,
                principal,
                Some(upstream),
                Some(method),
            )
            .await
        {
            Ok(m) => m,
            Err(denial) => denial.into_with_id(client_id),
        }
    }

    /// After a failed call: a session that expired upstream is re-established on next use.
    async fn forget_broken(&self, routes: &Routes, up: &UpstreamState, e: &UpstreamError) {
        if !matches!(
            e,
            UpstreamError::SessionExpired | UpstreamError::Closed { .. }
        ) {
            return;
        }
        let mut conns = routes.conns.lock().await;
        if let Some(conn) = conns.remove(&up.index) {
            drop(conns);
            // Shut down, not just forgotten: its reader task and its standalone stream end
            // with it (an expired session is not deleted again).
            conn.shutdown().await;
        } else if up.is_http && matches!(e, UpstreamError::SessionExpired) {
            up.set_desc(&mut *up.desc.lock().await, None);
        }
    }

    pub(crate) async fn handle_notification(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        principal: &Principal,
        message: Message,
    ) {
        let method = message.method().unwrap_or("").to_owned();
        if !method.starts_with("notifications/") {
            // A request method without an id (`tools/call` as a "notification") would reach
            // the upstream with the request guards judging a notification: policy, schema,
            // argument constraints and rate limits look at requests only, and a server built
            // on a plain JSON-RPC library executes notifications. Every client notification
            // MCP defines is `notifications/...`; nothing else is forwarded.
            tracing::warn!(method = %method, "a notification with a request's method was dropped");
            return;
        }
        if method == "notifications/cancelled" {
            // Cancel our exchange; the upstream connection tells the upstream, with its own id.
            let target = message
                .params()
                .and_then(|p| p.field("requestId"))
                .and_then(Id::from_value);
            if Arc::ptr_eq(routes, &self.stateless) {
                // No session: nothing of this caller's is recorded (see `spawn_pump`). The
                // 2026-07-28 HTTP transport defines no client notifications; closing the
                // stream is how a stateless client cancels.
                tracing::debug!("notifications/cancelled without a session; ignored");
                return;
            }
            if let Some(t) = target {
                let known = routes
                    .inflight
                    .lock()
                    .ok()
                    .and_then(|inflight| inflight.get(&t).map(|f| f.token.cancel()));
                if known.is_none() {
                    // Not recorded yet (read together with its request, or still on its way
                    // through the guards): cancelled as soon as it gets that far.
                    routes.note_early_cancel(t);
                }
            }
            return;
        }
        if !self.opts.transparent && !routes.may_notify() {
            tracing::debug!(method = %method, "client notifications past the session's budget; dropped");
            return;
        }
        let message = match self
            .guard_in(
                session.map(|s| &**s),
                message,
                Direction::ToUpstream,
                principal,
                None,
                None,
            )
            .await
        {
            Ok(m) => m,
            Err(_) => return,
        };
        if method == "notifications/initialized" {
            if self.opts.transparent
                && !routes
                    .bridged_to_modern
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                let _ = self.upstreams[0].conn().notify(&message).await;
            }
            // Namespaced: the gateway initialized each upstream itself.
            return;
        }
        for u in &self.upstreams {
            if self.opts.transparent {
                if let Err(e) = u.conn().notify(&message).await {
                    tracing::debug!(upstream = %u.name, error = %e, "notification not delivered");
                }
                continue;
            }
            // Client notifications exist only in the legacy era.
            let Ok((conn, Era::Legacy)) = self
                .conn_for(session, routes, u, ClientEra { modern: false })
                .await
            else {
                continue;
            };
            if let Err(e) = conn.notify(&message).await {
                tracing::debug!(upstream = %u.name, error = %e, "notification not delivered");
            }
        }
    }

    /// A client's answer to a server-initiated request: through the request-direction guards
    /// (they judge it by the method it answers), then to the upstream that asked, under the
    /// upstream's id. A refused answer reaches the upstream as the refusal.
    pub(crate) async fn handle_client_response(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        principal: &Principal,
        message: Message,
    ) {
        let Some(id) = message.id().cloned() else {
            return;
        };
        let pending = routes
            .server_requests
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&id));
        let Some(pending) = pending else {
            tracing::debug!(id = %id, "client response to an unknown request; dropped");
            return;
        };
        let out = match self
            .guard_in(
                session.map(|s| &**s),
                message,
                Direction::ToUpstream,
                principal,
                Some(&pending.upstream),
                Some(&pending.method),
            )
            .await
        {
            Ok(m) | Err(m) => m,
        };
        let out = if pending.upstream_id == id {
            out
        } else {
            out.into_with_id(&pending.upstream_id)
        };
        if let Err(e) = pending.conn.respond(&out).await {
            tracing::debug!(error = %e, "response to a server request not delivered");
        }
    }

    async fn transparent_request(
        &self,
        session: Option<&Arc<Session>>,
        principal: &Principal,
        routes: Arc<Routes>,
        message: Message,
        client: ClientEra,
        method: &str,
    ) -> Reply {
        let up = self.upstreams[0].clone();
        let id = message.id().cloned().expect("a request always has an id");
        let idv = id.to_value();
        if method == "initialize" {
            // Boxed, as are the other rare branches: their futures would size every request's.
            return Box::pin(self.transparent_initialize(session, &routes, &up, message, &idv))
                .await;
        }
        if client.modern && method == "server/discover" && up.known_desc().is_none() {
            // The client's own probe goes to the upstream, so a client that falls back to
            // `initialize` on an error behaves exactly as it would directly (and keeps
            // server-to-client requests, which stateless clients cannot receive).
            return match Box::pin(exchange(&up.conn(), message.clone(), up.startup_timeout)).await {
                Ok(Answer::Result(r)) => {
                    if let Some(d) = ServerDescription::from_discover(&r) {
                        up.set_desc(&mut *up.desc.lock().await, Some(d));
                    }
                    let r = Box::pin(self.with_guarded_instructions(&up.name, r)).await;
                    single(response(&idv, r))
                }
                Ok(Answer::Error(e)) => single(relayed_error(&idv, &e)),
                Err(e) => single(upstream_error(&idv, &up.name, &e)),
            };
        }
        if client.modern {
            // A modern request before any handshake (the client skipped `server/discover`):
            // learn the upstream's era once, with this client's declared capabilities, and
            // bridge if it is legacy.
            // Known after the first request: no handshake, no box, no copy of `_meta`.
            let desc = match up.known_desc() {
                Some(d) => Ok(d),
                None => {
                    let meta = mcp::meta(&message).cloned().unwrap_or_default();
                    Box::pin(up.describe_as(
                        meta.get(mcp::META_CLIENT_CAPABILITIES),
                        meta.get(mcp::META_CLIENT_INFO),
                    ))
                    .await
                }
            };
            let desc = match desc {
                Ok(d) => d,
                Err(e) => return single(upstream_error(&idv, &up.name, &e)),
            };
            if desc.era == Era::Legacy && method == "server/discover" {
                // The description the gateway learnt in its own handshake: its instructions
                // go through the pins as a relayed answer's would.
                let r =
                    Box::pin(self.with_guarded_instructions(&up.name, desc.to_discover_result()));
                return single(response(&idv, r.await));
            }
        } else if routes
            .bridged_to_modern
            .load(std::sync::atomic::Ordering::Relaxed)
            && method == "ping"
        {
            // Modern servers have no ping; the gateway answers for them.
            return single(response(&idv, json!({})));
        }
        self.forward(
            session,
            principal,
            routes,
            &up,
            message,
            id,
            client,
            method.to_owned(),
        )
        .await
    }

    async fn transparent_initialize(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        up: &Arc<UpstreamState>,
        message: Message,
        idv: &Value,
    ) -> Reply {
        let params = params_of(&message);
        let record = |version: &str| {
            if let Some(s) = session {
                s.set_initialized(
                    version.to_owned(),
                    params.field("capabilities").cloned(),
                    params.field("clientInfo").cloned(),
                );
            }
        };
        if up.era_pref != EraPreference::Modern {
            match exchange(
                &up.conn(),
                message.clone(),
                up.startup_timeout.max(up.request_timeout),
            )
            .await
            {
                Ok(Answer::Result(r)) => {
                    if let Some(d) = ServerDescription::from_initialize(&r) {
                        if up.is_http {
                            up.conn().set_protocol_version(&d.protocol_version);
                        }
                        record(&d.protocol_version);
                        up.set_desc(&mut *up.desc.lock().await, Some(d));
                    }
                    let r = self.with_guarded_instructions(&up.name, r).await;
                    return single(response(idv, r));
                }
                Ok(Answer::Error(e)) => {
                    // Maybe a modern-only server: bridge if server/discover works.
                    if let Some(reply) = self
                        .bridge_initialize(up, routes, &params, idv, &record)
                        .await
                    {
                        return reply;
                    }
                    let m = relayed_error(idv, &e);
                    return single(m);
                }
                Err(e) => return single(upstream_error(idv, &up.name, &e)),
            }
        }
        match self
            .bridge_initialize(up, routes, &params, idv, &record)
            .await
        {
            Some(reply) => reply,
            None => single(error(
                idv,
                ErrorCode::InternalError,
                "the upstream answered neither initialize nor server/discover",
            )),
        }
    }

    async fn bridge_initialize(
        &self,
        up: &Arc<UpstreamState>,
        routes: &Arc<Routes>,
        params: &Map<String, Value>,
        idv: &Value,
        record: &(dyn Fn(&str) + Send + Sync),
    ) -> Option<Reply> {
        let mut probe = bridge::discover_params();
        if let Some(c) = params.field("capabilities") {
            probe["_meta"][mcp::META_CLIENT_CAPABILITIES] = c.clone();
        }
        if let Some(i) = params.field("clientInfo") {
            probe["_meta"][mcp::META_CLIENT_INFO] = i.clone();
        }
        let Ok(Answer::Result(r)) = exchange(
            &up.conn(),
            request("server/discover", probe),
            up.startup_timeout,
        )
        .await
        else {
            return None;
        };
        let d = ServerDescription::from_discover(&r)?;
        let result =
            d.to_initialize_result(params.field("protocolVersion").and_then(Value::as_str));
        let result = self.with_guarded_instructions(&up.name, result).await;
        record(result["protocolVersion"].as_str().unwrap_or_default());
        routes
            .bridged_to_modern
            .store(true, std::sync::atomic::Ordering::Relaxed);
        up.set_desc(&mut *up.desc.lock().await, Some(d));
        Some(single(response(idv, result)))
    }
}

/// One exchange in progress, driven by the client's transport through [`ReplyStream::next`].
pub(crate) struct Pump {
    /// `None` once the exchange ended (answered, cancelled, or parked).
    ex: Option<Exchange>,
    client_id: Id,
    idv: Value,
    /// Cancelled by the client's `notifications/cancelled`.
    token: CancellationToken,
    me: std::sync::Weak<Gateway>,
}

impl Pump {
    /// The next message for the client; `None` after the response (or a cancellation).
    pub(crate) async fn next(&mut self) -> Option<Message> {
        loop {
            let ex = self.ex.as_mut()?;
            let item = tokio::select! {
                _ = self.token.cancelled() => {
                    self.finish(None);
                    return None;
                }
                item = ex.stream.next() => item,
            };
            let Some(gateway) = self.me.upgrade() else {
                self.finish(None);
                return None;
            };
            let up = ex.up.clone();
            let idv = &self.idv;
            let mut parked = None;
            let out = match item {
                None => Some(upstream_error(
                    idv,
                    &up.name,
                    &UpstreamError::Closed {
                        name: up.name.clone(),
                        reason: warden_upstream::CloseReason::StreamEnded,
                    },
                )),
                Some(Err(e)) => {
                    Box::pin(gateway.forget_broken(ex.routes.as_ref(), &up, &e)).await;
                    Some(match warden_upstream::refused_response_reason(&e) {
                        // The upstream did answer, with something the gateway will not pass.
                        Some(reason) => {
                            tracing::warn!(upstream = %up.name, reason, "upstream response refused");
                            error(
                                idv,
                                ErrorCode::UpstreamUnavailable,
                                &format!(
                                    "upstream `{}` answered, but the gateway {reason}",
                                    up.name
                                ),
                            )
                        }
                        None => upstream_error(idv, &up.name, &e),
                    })
                }
                Some(Ok(m)) if m.is_response() => Some(
                    gateway
                        .finish_response(
                            m,
                            &self.client_id,
                            ex.client,
                            ex.era,
                            &ex.method,
                            ex.session.as_deref(),
                            &ex.principal,
                            &up.name,
                        )
                        .await,
                ),
                Some(Ok(m))
                    if ex.client.modern
                        && m.method() == Some("notifications/message")
                        && !wants_log(ex.log_level, &m) =>
                {
                    // A 2026-07-28 client gets log messages only when its request asked for
                    // them, at or above the level it asked for (a legacy upstream was not
                    // told: its logs are at whatever level the shared connection has).
                    None
                }
                Some(Ok(m)) if m.is_request() && ex.client.modern => {
                    // The server's request goes through the response guards before it is
                    // relayed in a round, as `to_client` runs them for a legacy client: the
                    // policy (may this caller be asked for sampling, elicitation, roots?) and
                    // the content guards on what it shows the client.
                    let guarded = Box::pin(gateway.guard_in(
                        ex.session.as_deref(),
                        m,
                        Direction::ToClient,
                        &ex.principal,
                        Some(&up.name),
                        Some(&ex.method),
                    ))
                    .await;
                    match guarded {
                        // Boxed, as `to_client` below: rare, and large futures.
                        Ok(m) => match Box::pin(gateway.input_required(ex, &m, idv)).await {
                            Some((state, out)) => {
                                parked = Some((state, m));
                                Some(out)
                            }
                            None => None,
                        },
                        Err(denial) => {
                            // The upstream gets the refusal and goes on with the call.
                            let _ = Box::pin(ex.conn.respond(&denial)).await;
                            None
                        }
                    }
                }
                Some(Ok(m)) => match &ex.session {
                    Some(s) => {
                        Box::pin(gateway.to_client(
                            m,
                            s,
                            &ex.routes,
                            &ex.conn,
                            &up.name,
                            Some(&ex.method),
                        ))
                        .await
                    }
                    None if m.is_request() => {
                        // No session to remember it in, so no way to route the client's answer
                        // back: the upstream is told at once.
                        let id = m.id().map(Id::to_value).unwrap_or(Value::Null);
                        let refusal = error(
                            &id,
                            ErrorCode::MethodNotFound,
                            "no client session can receive this request",
                        );
                        let _ = Box::pin(ex.conn.respond(&refusal)).await;
                        None
                    }
                    None => gateway
                        .guard(
                            m,
                            Direction::ToClient,
                            &ex.principal,
                            Some(&up.name),
                            Some(&ex.method),
                        )
                        .await
                        .ok(),
                },
            };
            if out.as_ref().is_some_and(Message::is_response) {
                self.finish(parked);
            }
            if let Some(m) = out {
                return Some(m);
            }
        }
    }

    /// Ends the exchange: forgets it for cancellation and, when the upstream is waiting for
    /// the client's input, parks the call until the client retries.
    fn finish(&mut self, parked: Option<(String, Message)>) {
        let Some(ex) = self.ex.take() else { return };
        if let Ok(mut inflight) = ex.routes.inflight.lock() {
            inflight.remove(&self.client_id);
        }
        if let Some((state, request)) = parked
            && let Some(gateway) = self.me.upgrade()
        {
            gateway.park(state, ex, request);
        }
        // Otherwise `ex` drops here, and with it the upstream stream (which cancels the
        // upstream call if it had not answered).
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        // The client went away before the response: dropping the exchange cancels the call.
        self.finish(None);
    }
}

/// Whether a 2026-07-28 client that asked for `level` (a rank; `None`: nothing) gets `message`,
/// a `notifications/message`.
fn wants_log(level: Option<u8>, message: &Message) -> bool {
    let Some(wanted) = level else { return false };
    message
        .params()
        .and_then(|p| p.field("level"))
        .and_then(Value::as_str)
        .and_then(crate::session::log_level_rank)
        .is_some_and(|rank| rank >= wanted)
}

/// Removes the capabilities whose mechanism differs between eras (subscriptions, logging,
/// list-change notifications) from what an upstream offers; `logging` stays when the upstream
/// speaks the client's era (`native`).
fn withhold_era_bound_capabilities(caps: &mut Value, native: bool) {
    let Some(c) = caps.as_object_mut() else {
        return;
    };
    if !native {
        c.remove("logging");
    }
    for feature in ["tools", "prompts", "resources"] {
        if let Some(Value::Object(f)) = c.get_mut(feature) {
            f.remove("listChanged");
            f.remove("subscribe");
        }
    }
}

/// The items one upstream listed (under their exposed names), with that upstream.
pub(crate) type Listed = (Arc<UpstreamState>, Vec<Value>);

/// Removes every item whose exposed name appears more than once across the upstreams' lists
/// (two plain upstreams offering the same name): never "first wins".
fn withhold_duplicates(listed: &mut [Listed], key: &str) {
    let mut count: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for i in listed.iter().flat_map(|(_, items)| items) {
        if let Some(n) = i.field("name").and_then(Value::as_str) {
            *count.entry(n.to_owned()).or_default() += 1;
        }
    }
    for (_, items) in listed.iter_mut() {
        items.retain(|i| {
            let n = i.field("name").and_then(Value::as_str).unwrap_or("");
            let unique = count.get(n).is_none_or(|c| *c == 1);
            if !unique {
                tracing::error!(
                    name = n,
                    list = key,
                    "two upstreams expose the same name; withheld from the list"
                );
            }
            unique
        });
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Item {
    Tool,
    Prompt,
}

impl Item {
    fn noun(self) -> &'static str {
        match self {
            Item::Tool => "tool",
            Item::Prompt => "prompt",
        }
    }
}
