//! What the guards see of a request's target, and the response guards on aggregated lists.
//!
//! Request guards run before routing, so the session resolves here what a request acts on
//! (upstream, tool or prompt name at the upstream, and the tool's listed definition) and hands
//! it to the pipeline as a [`Target`], with a [`Permits`] holder that lives as long as the
//! exchange. Aggregated lists are answered by the gateway itself, so the response guards run
//! here, once per upstream on that upstream's own items, before names are exposed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use warden_guard::{Call, Direction, Outcome, Permits, Principal, Target};
use warden_proto::Field;
use warden_proto::fast_map::FastMap;
use warden_proto::{ErrorCode, Id, Message};

use crate::Session;
use crate::dispatch::{ClientEra, Item};
use crate::gateway::{Gateway, Routes, UpstreamState, error, request, response};

/// Least time between two listings triggered by calls to tools the catalog does not know:
/// bounds how much upstream traffic a client can cause by naming tools that do not exist.
pub(crate) const RELIST_INTERVAL: Duration = Duration::from_secs(1);

/// The tool objects of one `tools/list`, by the upstream's own tool name.
pub(crate) fn tool_definitions(items: &[Value]) -> FastMap<String, Arc<Value>> {
    items
        .iter()
        .filter_map(|t| {
            let name = t.field("name")?.as_str()?;
            Some((name.to_owned(), Arc::new(t.clone())))
        })
        .collect()
}

/// Whether `up`'s tool catalog may be refreshed now.
fn may_relist(up: &UpstreamState) -> bool {
    up.catalog.read().is_ok_and(|c| match c.tools_listed_at {
        None => true,
        Some(at) => at.elapsed() >= RELIST_INTERVAL,
    })
}

fn listed_tool(up: &UpstreamState, name: &str) -> Option<Arc<Value>> {
    up.catalog.read().ok()?.tool_defs.get(name).cloned()
}

impl Gateway {
    /// Runs the request-direction guards on a client request. On success returns the message
    /// to route and what the guards hold for the exchange; on refusal, the error for the client.
    pub(crate) async fn guard_request(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        principal: &Principal,
        message: Message,
        client: ClientEra,
    ) -> Result<(Message, Permits), Message> {
        let permits = Permits::default();
        if self.pipeline.is_passthrough(Direction::ToUpstream) {
            return Ok((message, permits));
        }
        let target = self
            .resolve_target(session, routes, principal, &message, client)
            .await;
        let outcome = self
            .pipeline
            .run(&Call {
                message: &message,
                direction: Direction::ToUpstream,
                principal,
                session: session.map(|s| s.id().as_str()),
                upstream: target.as_ref().map(|t| &*t.upstream),
                request_method: None,
                target: target.as_ref(),
                permits: Some(&permits),
            })
            .await;
        let id = message.id().map(Id::to_value).unwrap_or(Value::Null);
        match outcome {
            Outcome::Forward => Ok((message, permits)),
            Outcome::ForwardRewritten(m) => Ok((m, permits)),
            Outcome::Deny(d) => {
                tracing::info!(guard = d.guard, detail = %d.detail, "message denied");
                Err(Message::from_value(d.to_jsonrpc(&id))
                    .expect("a denial is a valid error response"))
            }
            Outcome::Hold(t) => Err(error(
                &id,
                ErrorCode::Denied,
                &format!("call held for approval (ticket {})", t.id),
            )),
        }
    }

    /// The upstream and its own name for the item the client calls `name`: in `run` the one
    /// upstream, under the name as sent; in `serve`, by the catalog.
    fn route_named(&self, name: &str, kind: Item) -> Option<(Arc<UpstreamState>, String)> {
        if self.opts.transparent {
            return self.upstreams.first().map(|u| (u.clone(), name.to_owned()));
        }
        self.route_name(name, kind)
    }

    /// The upstream a request naming resource `uri` is routed to: the only one, or the one
    /// [`Gateway::route_uri`] picks.
    async fn uri_target(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        uri: &str,
        client: ClientEra,
    ) -> Option<Target> {
        let up = match self.upstreams.as_slice() {
            [only] => only.clone(),
            _ => Box::pin(self.route_uri(session, routes, uri, client))
                .await
                .ok()?,
        };
        Some(Target {
            upstream: up.name.as_str().into(),
            name: None,
            tool: None,
        })
    }

    /// The upstream, name and (for `tools/call`) listed definition a request acts on. A call
    /// to a tool the catalog does not know lists the tools first (at most once per
    /// [`RELIST_INTERVAL`]), so a client cannot skip validation by never listing.
    async fn resolve_target(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        principal: &Principal,
        message: &Message,
        client: ClientEra,
    ) -> Option<Target> {
        let method = message.method()?;
        let kind = match method {
            "tools/call" => Item::Tool,
            "prompts/get" => Item::Prompt,
            "completion/complete" => {
                // Judged against the prompt or resource it completes (see the policy guard).
                let reference = message.params().and_then(|p| p.field("ref"))?;
                let field = |k: &str| reference.field(k).and_then(Value::as_str);
                return match field("type")? {
                    "ref/prompt" => {
                        let (up, original) = self.route_named(field("name")?, Item::Prompt)?;
                        Some(Target {
                            upstream: up.name.as_str().into(),
                            name: Some(original.into()),
                            tool: None,
                        })
                    }
                    "ref/resource" => {
                        self.uri_target(session, routes, field("uri")?, client)
                            .await
                    }
                    _ => None,
                };
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                // Judged against the upstream it will be routed to, so that rules scoped to
                // a server apply to its resources too.
                let uri = message
                    .params()
                    .and_then(|p| p.field("uri"))
                    .and_then(Value::as_str)?;
                return self.uri_target(session, routes, uri, client).await;
            }
            _ => {
                // Other requests name no item; with one upstream, everything goes there.
                return match self.upstreams.as_slice() {
                    [only] => Some(Target {
                        upstream: only.name.as_str().into(),
                        name: None,
                        tool: None,
                    }),
                    _ => None,
                };
            }
        };
        let name = message
            .params()
            .and_then(|p| p.field("name"))
            .and_then(Value::as_str)?;
        let mut routed = self.route_named(name, kind);
        let known = |r: &Option<(Arc<UpstreamState>, String)>| match r {
            Some((up, original)) => {
                !matches!(kind, Item::Tool) || listed_tool(up, original).is_some()
            }
            None => false,
        };
        if matches!(kind, Item::Tool) && !known(&routed) {
            let stale = match &routed {
                Some((up, _)) => may_relist(up),
                None => self.upstreams.iter().any(|u| may_relist(u)),
            };
            if stale {
                Box::pin(self.relist_tools(session, routes, principal, client)).await;
                routed = self.route_named(name, kind);
            }
        }
        let (up, original) = routed?;
        let tool = match kind {
            Item::Tool => listed_tool(&up, &original),
            Item::Prompt => None,
        };
        Some(Target {
            upstream: up.name.as_str().into(),
            name: Some(original.into()),
            tool,
        })
    }

    /// The gateway's own `tools/list` (refreshing the catalog), run through the response
    /// guards as a client's list is: a definition that changed is held (and a new one pinned)
    /// before the call that made the gateway look, not at the client's next list.
    async fn relist_tools(
        &self,
        session: Option<&Arc<Session>>,
        routes: &Arc<Routes>,
        principal: &Principal,
        client: ClientEra,
    ) {
        let list = request("tools/list", json!({}));
        let items = self.collect_list(session, routes, &list, client).await;
        let session = session.map(|s| s.id().as_str());
        let _ = self
            .guard_list(session, principal, "tools/list", "tools", items)
            .await;
    }

    /// Runs the response-direction guards on an aggregated list: per upstream, on that
    /// upstream's items under their own names, so that guards see what the upstream sent and
    /// which upstream sent it (the upstream each item was listed by, never one guessed from
    /// its name or URI). Returns the items kept, under their exposed names.
    pub(crate) async fn guard_list(
        &self,
        session: Option<&str>,
        principal: &Principal,
        method: &str,
        key: &str,
        listed: Vec<crate::dispatch::Listed>,
    ) -> Vec<Value> {
        if self.pipeline.is_passthrough(Direction::ToClient) {
            return listed.into_iter().flat_map(|(_, items)| items).collect();
        }
        let mut out = vec![];
        for (up, mut items) in listed {
            // Tools and prompts go to the guards under the upstream's own names.
            let mut exposed: HashMap<String, String> = HashMap::new();
            if matches!(key, "tools" | "prompts") {
                let Ok(catalog) = up.catalog.read() else {
                    continue;
                };
                let map = if key == "tools" {
                    &catalog.tools
                } else {
                    &catalog.prompts
                };
                items.retain_mut(|item| {
                    let Some(name) = item.field("name").and_then(Value::as_str) else {
                        return false;
                    };
                    let Some(original) = map.original(name).map(str::to_owned) else {
                        return false;
                    };
                    exposed.insert(original.clone(), name.to_owned());
                    if original != name
                        && let Some(obj) = item.as_object_mut()
                    {
                        obj.insert("name".into(), Value::String(original));
                    }
                    true
                });
            }
            let renamed = matches!(key, "tools" | "prompts");
            let message = response(&json!(0), json!({ key: items }));
            let outcome = self
                .pipeline
                .run(&Call {
                    message: &message,
                    direction: Direction::ToClient,
                    principal,
                    session,
                    upstream: Some(&up.name),
                    request_method: Some(method),
                    target: None,
                    permits: None,
                })
                .await;
            let kept = match outcome {
                Outcome::Forward => message,
                Outcome::ForwardRewritten(m) => m,
                Outcome::Deny(d) => {
                    tracing::info!(guard = d.guard, upstream = %up.name, detail = %d.detail, "list denied");
                    continue;
                }
                Outcome::Hold(_) => continue,
            };
            let Some(Value::Array(kept)) = kept.result().and_then(|r| r.get(key)).cloned() else {
                continue;
            };
            for mut item in kept {
                if renamed {
                    // Back to the name the client knows; an item the guards invented has none.
                    let original = item.field("name").and_then(Value::as_str);
                    let Some(name) = original.and_then(|o| exposed.get(o)).cloned() else {
                        continue;
                    };
                    if let Some(obj) = item.as_object_mut() {
                        obj.insert("name".into(), Value::String(name));
                    }
                }
                out.push(item);
            }
        }
        out
    }
}
