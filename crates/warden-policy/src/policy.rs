//! Authorization: Cedar policies evaluated on the parsed body of every request, and on list
//! results and server-initiated requests in the response direction.
//!
//! The entity model (also in `docs/authorization.md`):
//!
//! | Cedar                         | What                                                       |
//! |-------------------------------|------------------------------------------------------------|
//! | `Principal::"<subject>"`      | attrs `subject`, `method`, `roles`, `scopes`; parents `Role::"<r>"` for each role, plus the implicit `Role::"anonymous"`, `Role::"local"` or `Role::"authenticated"` |
//! | `Action::"<method>"`          | `tools/call`, `resources/read`, `prompts/get`, `tools/list`, ..., `sampling/createMessage`, `elicitation/create`, `roots/list`, or any other method as written |
//! | `Tool::"<server>/<tool>"`     | attrs `server`, `name`, `annotations` (`readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint`, with the MCP defaults); parent `Server::"<server>"` |
//! | `Prompt::"<server>/<prompt>"` | attrs `server`, `name`; parent `Server::"<server>"`        |
//! | `Resource::"<uri>"`           | attrs `uri`, `scheme`, `server` (`""` when unknown)         |
//! | `Server::"<server>"`          | resource of server-initiated requests                      |
//! | `Gateway::"gateway"`          | resource of list methods and every other method            |
//!
//! Context: `arguments` (the call's arguments as a record; `null`s dropped, numbers that are not
//! 64-bit integers as strings) and `listing` (true while filtering a list).
//!
//! Decisions fail closed: a request is allowed only when some `permit` applies, no `forbid`
//! applies, and no policy failed to evaluate (Cedar skips a policy that errors, which would turn
//! an erroring `forbid` into an allow). Tool annotations come from the upstream and may lie;
//! the role table uses them only to narrow what a tool pattern already grants.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    AuthorizationError, Authorizer, Context, Decision, Effect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicyId, PolicySet, Request, RestrictedExpression,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use warden_config::{IMPLICIT_ROLES, PolicyConfig, RoleConfig};
use warden_guard::{AuthMethod, Call, Denial, Direction, Guard, GuardError, Principal, Verdict};
use warden_proto::Field;
use warden_proto::{ErrorCode, Kind};

/// Methods that are session plumbing, not access to anything: never subject to policy.
const PLUMBING: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "logging/setLevel",
    "subscriptions/listen",
];

/// List methods, the result key of their items, and the action that governs each item.
const LISTS: &[(&str, &str, &str)] = &[
    ("tools/list", "tools", "tools/call"),
    ("prompts/list", "prompts", "prompts/get"),
    ("resources/list", "resources", "resources/read"),
    (
        "resources/templates/list",
        "resourceTemplates",
        "resources/read",
    ),
];

/// Decisions kept per guard when no policy reads `context` (then a decision is a pure function
/// of principal, action and resource, so the cache is exact); bounds memory.
const MAX_CACHED_DECISIONS: usize = 16 * 1024;

/// Server-initiated requests governed by policy (resource: the sending `Server`).
const SERVER_REQUESTS: &[&str] = &["sampling/createMessage", "elicitation/create", "roots/list"];

/// Server notifications that name something the principal may be refused, with the action
/// that governs them: a principal only hears about what it could use. Notifications that name
/// nothing (`notifications/message`, `notifications/progress`, `*/list_changed`, ...) pass.
const GOVERNED_NOTIFICATIONS: &[(&str, &str)] = &[
    // Names a resource URI: the principal must be allowed to read it.
    ("notifications/resources/updated", "resources/read"),
    // Completes a URL-mode elicitation: only for principals the server may elicit from.
    ("notifications/elicitation/complete", "elicitation/create"),
];

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy file could not be read.
    #[error("cannot read policy file `{path}`")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A policy file (or the compiled role table) is not valid Cedar.
    #[error("invalid Cedar in `{origin}`: {message}")]
    Parse {
        /// The file, or `[policy.roles]`.
        origin: String,
        /// Cedar's description.
        message: String,
    },
    /// Policy templates need linking, which the gateway does not do.
    #[error("`{origin}` contains a policy template; only static policies are supported")]
    Template {
        /// The file.
        origin: String,
    },
}

/// What the policy decided about one (principal, action, resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Some permit applies, no forbid applies, nothing failed.
    Allow,
    /// Denied; the detail (audit only) says why.
    Deny(String),
}

/// The resource of a request, before it becomes a Cedar entity.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// A tool of an upstream, with its listed definition when known.
    Tool {
        /// Upstream name.
        server: &'a str,
        /// Tool name at the upstream.
        name: &'a str,
        /// The listed tool object (for `annotations`).
        definition: Option<&'a Value>,
    },
    /// A prompt of an upstream.
    Prompt {
        /// Upstream name.
        server: &'a str,
        /// Prompt name at the upstream.
        name: &'a str,
    },
    /// A resource URI (or a resource template while listing).
    Uri {
        /// Upstream name, when known.
        server: Option<&'a str>,
        /// The URI.
        uri: &'a str,
    },
    /// An upstream as a whole (server-initiated requests).
    Server(&'a str),
    /// The gateway (lists and other methods).
    Gateway,
}

/// The `policy` guard.
pub struct PolicyGuard {
    policies: PolicySet,
    authorizer: Authorizer,
    /// Whether any policy mentions `context`: building the context costs a copy of the
    /// arguments, skipped when nothing reads it.
    uses_context: bool,
    /// Decisions by everything they depend on, used only when `!uses_context`.
    decisions: std::sync::RwLock<HashMap<String, Decided>>,
}

impl std::fmt::Debug for PolicyGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyGuard")
            .field("policies", &self.policies.policies().count())
            .finish_non_exhaustive()
    }
}

impl PolicyGuard {
    /// Stable name in audit records and `check`.
    pub const NAME: &'static str = "policy";
    /// Controls enforced.
    pub const CONTROLS: &'static [&'static str] =
        &["AUTH-1", "ISO-3", "DATA-3", "DATA-4", "RES-1", "RES-4"];

    /// Builds the guard from `[policy]`: the role table compiled to Cedar, plus every policy
    /// file (relative paths are taken from `base`). Reads the files.
    pub fn from_config(config: &PolicyConfig, base: &Path) -> Result<Self, PolicyError> {
        let mut sources = vec![("[policy.roles]".to_owned(), compile_roles(&config.roles))];
        for file in &config.files {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
                path: file.display().to_string(),
                source,
            })?;
            sources.push((file.display().to_string(), text));
        }
        Self::from_sources(&sources)
    }

    /// Builds the guard from Cedar texts, each named by its origin (for errors and policy ids).
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self, PolicyError> {
        let mut policies = PolicySet::new();
        for (origin, text) in sources {
            let set = PolicySet::from_str(text).map_err(|e| PolicyError::Parse {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
            if set.templates().next().is_some() {
                return Err(PolicyError::Template {
                    origin: origin.clone(),
                });
            }
            for (n, policy) in set.policies().enumerate() {
                let id = PolicyId::new(format!("{origin}#{n}"));
                policies
                    .add(policy.new_id(id))
                    .map_err(|e| PolicyError::Parse {
                        origin: origin.clone(),
                        message: e.to_string(),
                    })?;
            }
        }
        let uses_context = sources.iter().any(|(_, t)| t.contains("context"));
        Ok(Self {
            policies,
            authorizer: Authorizer::new(),
            uses_context,
            decisions: std::sync::RwLock::new(HashMap::new()),
        })
    }

    /// Decides one request. `arguments` becomes `context.arguments`.
    pub fn decide(
        &self,
        principal: &Principal,
        action: &str,
        resource: Resource<'_>,
        arguments: Option<&Value>,
        listing: bool,
    ) -> Decided {
        let key = (!self.uses_context).then(|| decision_key(principal, action, resource, listing));
        if let Some(key) = &key
            && let Some(hit) = self
                .decisions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
        {
            return hit.clone();
        }
        if let Resource::Uri { uri, .. } = resource
            && let Err(why) = canonical_uri(uri)
        {
            // Rules match URIs as text; the server resolves them. A spelling the two could
            // read differently (`..`, `//`, `%2e`, `FILE:`) never reaches the rules.
            return Decided::Deny(format!("resource URI refused: {why}"));
        }
        let decided = match self.evaluate(principal, action, resource, arguments, listing) {
            Ok(d) => d,
            Err(e) => Decided::Deny(format!("policy evaluation failed: {e}")),
        };
        if let Some(key) = key {
            let mut cache = self.decisions.write().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= MAX_CACHED_DECISIONS {
                cache.clear();
            }
            cache.insert(key, decided.clone());
        }
        decided
    }

    fn evaluate(
        &self,
        principal: &Principal,
        action: &str,
        resource: Resource<'_>,
        arguments: Option<&Value>,
        listing: bool,
    ) -> Result<Decided, String> {
        let p_uid = uid("Principal", &principal.subject)?;
        let (r_uid, r_entity) = resource_entity(resource)?;
        let principal_entity = principal_entity(p_uid.clone(), principal)?;
        let entities = Entities::from_entities([principal_entity, r_entity], None)
            .map_err(|e| e.to_string())?;
        let context = if self.uses_context {
            let mut pairs = vec![(
                "listing".to_owned(),
                RestrictedExpression::new_bool(listing),
            )];
            if let Some(args) = arguments.and_then(to_cedar) {
                pairs.push(("arguments".to_owned(), args));
            }
            Context::from_pairs(pairs).map_err(|e| e.to_string())?
        } else {
            Context::empty()
        };
        let request = Request::new(p_uid, uid("Action", action)?, r_uid, context, None)
            .map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &entities);
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
        let reasons: Vec<String> = diagnostics.reason().map(|id| id.to_string()).collect();
        if listing {
            // A permit that failed for want of arguments may permit the call with some: the
            // item stays listed, and the call itself is checked strictly. A forbid that failed
            // so lists nothing by itself: without a permit the item stays hidden.
            let permit_failed = diagnostics.errors().any(|e| {
                let AuthorizationError::PolicyEvaluationError(e) = e;
                self.policies
                    .policy(e.policy_id())
                    .is_some_and(|p| p.effect() == Effect::Permit)
            });
            return Ok(match response.decision() {
                Decision::Allow => Decided::Allow,
                Decision::Deny if permit_failed => Decided::Allow,
                Decision::Deny => Decided::Deny(deny_detail(&reasons)),
            });
        }
        if !errors.is_empty() {
            return Ok(Decided::Deny(format!(
                "policy evaluation errors (failing closed): {}",
                errors.join("; ")
            )));
        }
        Ok(match response.decision() {
            Decision::Allow => Decided::Allow,
            Decision::Deny => Decided::Deny(deny_detail(&reasons)),
        })
    }

    fn deny(&self, what: String, detail: String) -> Verdict {
        Verdict::Deny(Denial {
            guard: Self::NAME,
            code: ErrorCode::Denied,
            message: format!("{what} is not allowed"),
            detail,
            controls: Self::CONTROLS,
            retry_after: None,
        })
    }

    fn on_request(&self, call: &Call<'_>) -> Verdict {
        let message = call.message;
        let Some(method) = message.method() else {
            return Verdict::Continue;
        };
        if !message.is_request() || PLUMBING.contains(&method) {
            return Verdict::Continue;
        }
        let params = message.params();
        let str_param = |k: &str| params.and_then(|p| p.get(k)).and_then(Value::as_str);
        let arguments = params.and_then(|p| p.field("arguments"));
        let target = call.target;
        let (resource, what) = match method {
            "tools/call" | "prompts/get" => {
                let shown = str_param("name").unwrap_or("");
                let noun = if method == "tools/call" {
                    "tool"
                } else {
                    "prompt"
                };
                let what = format!("{noun} {shown:?}");
                let Some((server, Some(name))) = target.map(|t| (&*t.upstream, t.name.as_deref()))
                else {
                    return self.deny(what, "the gateway cannot resolve the named item".into());
                };
                let resource = match method {
                    "tools/call" => Resource::Tool {
                        server,
                        name,
                        definition: target.and_then(|t| t.tool.as_deref()),
                    },
                    _ => Resource::Prompt { server, name },
                };
                (resource, what)
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = str_param("uri").unwrap_or("");
                (
                    Resource::Uri {
                        server: call.upstream,
                        uri,
                    },
                    format!("resource {uri:?}"),
                )
            }
            "completion/complete" => {
                // Completing an argument of a prompt or resource reveals what it would take
                // (a path completion lists names): the caller must be allowed the item itself.
                if let Some(verdict) = self.completion_item(call, params) {
                    return verdict;
                }
                (Resource::Gateway, "completion".to_owned())
            }
            _ => (Resource::Gateway, format!("method {method:?}")),
        };
        match self.decide(call.principal, method, resource, arguments, false) {
            Decided::Allow => Verdict::Continue,
            Decided::Deny(detail) => self.deny(what, detail),
        }
    }

    /// The refusal of a `completion/complete` whose reference (a prompt, or a resource URI)
    /// the caller may not use as `prompts/get` or `resources/read`; `None` when it may.
    fn completion_item(&self, call: &Call<'_>, params: Option<&Value>) -> Option<Verdict> {
        let reference = params?.get("ref")?;
        let field = |k: &str| reference.get(k).and_then(Value::as_str);
        match field("type")? {
            "ref/prompt" => {
                let shown = field("name").unwrap_or("");
                let what = format!("completion of prompt {shown:?}");
                let Some((server, Some(name))) =
                    call.target.map(|t| (&*t.upstream, t.name.as_deref()))
                else {
                    return Some(
                        self.deny(what, "the gateway cannot resolve the named item".into()),
                    );
                };
                match self.decide(
                    call.principal,
                    "prompts/get",
                    Resource::Prompt { server, name },
                    None,
                    false,
                ) {
                    Decided::Allow => None,
                    Decided::Deny(detail) => Some(self.deny(what, detail)),
                }
            }
            "ref/resource" => {
                let uri = field("uri").unwrap_or("");
                let what = format!("completion of resource {uri:?}");
                // The template, and the URI the values make of it (the value typed so far and
                // the arguments the client already resolved): completing
                // `file:///srv/docs/{path}` with `../../etc/` lists what that URI would read.
                let mut values: Vec<(&str, &str)> = vec![];
                if let Some(Value::Object(context)) = params
                    .and_then(|p| p.get("context"))
                    .and_then(|c| c.get("arguments"))
                {
                    values.extend(
                        context
                            .iter()
                            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))),
                    );
                }
                if let Some((name, value)) = params
                    .and_then(|p| p.get("argument"))
                    .and_then(|a| Some((a.get("name")?.as_str()?, a.get("value")?.as_str()?)))
                {
                    values.push((name, value));
                }
                // A value is a piece of a path: it may not carry a query, a fragment or a
                // spelling a server reads another way (`x?/../../etc` would hide its `..` in
                // what the URI check takes for a query).
                // A query's value may hold `?` or `#`, never a traversal.
                let in_path = path_variables(uri);
                if let Some(why) = values
                    .iter()
                    .find_map(|(name, value)| canonical_value(value, in_path.contains(name)).err())
                {
                    return Some(self.deny(what, format!("completion value refused: {why}")));
                }
                let expanded = expand_template(uri, &values);
                let expanded = (expanded != uri).then_some(expanded);
                for uri in std::iter::once(uri).chain(expanded.as_deref()) {
                    let resource = Resource::Uri {
                        server: call.upstream,
                        uri,
                    };
                    if let Decided::Deny(detail) =
                        self.decide(call.principal, "resources/read", resource, None, false)
                    {
                        return Some(self.deny(what, detail));
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// A server notification on its way to the client: dropped (a denial, which the session
    /// drops and audits) when it names something the principal may not use. Fails closed: a
    /// governed notification without the field it must name is dropped too.
    fn on_notification(&self, call: &Call<'_>) -> Verdict {
        let method = call.message.method().unwrap_or("");
        let Some((_, action)) = GOVERNED_NOTIFICATIONS.iter().find(|(m, _)| *m == method) else {
            return Verdict::Continue;
        };
        let what = format!("notification {method:?}");
        let resource = match *action {
            "resources/read" => {
                let uri = call
                    .message
                    .params()
                    .and_then(|p| p.field("uri"))
                    .and_then(Value::as_str);
                let Some(uri) = uri else {
                    return self.deny(what, "the notification names no uri".into());
                };
                Resource::Uri {
                    server: call.upstream,
                    uri,
                }
            }
            _ => match call.upstream {
                Some(server) => Resource::Server(server),
                None => return self.deny(what, "no upstream".into()),
            },
        };
        match self.decide(call.principal, action, resource, None, false) {
            Decided::Allow => Verdict::Continue,
            Decided::Deny(detail) => self.deny(what, detail),
        }
    }

    /// A 2026-07-28 `input_required` result carries the server's requests of the client
    /// (`inputRequests`): each needs its action as a server request sent on its own would
    /// (`sampling`, `elicitation`, `roots` of the role). `Some` is the refusal of the result.
    fn on_input_requests(&self, call: &Call<'_>) -> Option<Verdict> {
        let result = call.message.result()?;
        if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
            return None;
        }
        let requests: Vec<&Value> = match result.get("inputRequests")? {
            Value::Object(m) => m.values().collect(),
            Value::Array(a) => a.iter().collect(),
            _ => return None,
        };
        for request in requests {
            let method = request.get("method").and_then(Value::as_str).unwrap_or("");
            if !SERVER_REQUESTS.contains(&method) {
                continue;
            }
            let what = format!("request {method:?}");
            let Some(server) = call.upstream else {
                return Some(self.deny(what, "no upstream".into()));
            };
            if let Decided::Deny(detail) = self.decide(
                call.principal,
                method,
                Resource::Server(server),
                None,
                false,
            ) {
                return Some(self.deny(what, detail));
            }
        }
        None
    }

    fn on_response(&self, call: &Call<'_>) -> Verdict {
        let message = call.message;
        if *message.kind() == Kind::Notification {
            return self.on_notification(call);
        }
        if message.is_request() {
            let method = message.method().unwrap_or("");
            if !SERVER_REQUESTS.contains(&method) {
                return Verdict::Continue;
            }
            let Some(server) = call.upstream else {
                return self.deny(format!("request {method:?}"), "no upstream".into());
            };
            return match self.decide(
                call.principal,
                method,
                Resource::Server(server),
                None,
                false,
            ) {
                Decided::Allow => Verdict::Continue,
                Decided::Deny(detail) => self.deny(format!("request {method:?}"), detail),
            };
        }
        if let Some(denied) = self.on_input_requests(call) {
            return denied;
        }
        let Some((_, key, action)) = call
            .request_method
            .and_then(|m| LISTS.iter().find(|(l, _, _)| *l == m))
        else {
            return Verdict::Continue;
        };
        let Some(items) = message
            .result()
            .and_then(|r| r.get(*key))
            .and_then(Value::as_array)
        else {
            return Verdict::Continue;
        };
        let kept: Vec<Value> = items
            .iter()
            .filter(|item| self.may_list(call, action, item))
            .cloned()
            .collect();
        if kept.len() == items.len() {
            return Verdict::Continue;
        }
        tracing::debug!(
            withheld = items.len() - kept.len(),
            "list items withheld by policy"
        );
        let mut value = message.value().clone();
        value["result"][*key] = Value::Array(kept);
        match message.rewrite(value) {
            Ok(m) => Verdict::Rewrite(m),
            Err(_) => self.deny(
                "list".into(),
                "the filtered list is not a valid response".into(),
            ),
        }
    }

    fn may_list(&self, call: &Call<'_>, action: &str, item: &Value) -> bool {
        let field = |k: &str| item.get(k).and_then(Value::as_str);
        let resource = match (action, call.upstream) {
            ("tools/call", Some(server)) => match field("name") {
                Some(name) => Resource::Tool {
                    server,
                    name,
                    definition: Some(item),
                },
                None => return false,
            },
            ("prompts/get", Some(server)) => match field("name") {
                Some(name) => Resource::Prompt { server, name },
                None => return false,
            },
            ("resources/read", server) => match field("uri").or_else(|| field("uriTemplate")) {
                Some(uri) => Resource::Uri { server, uri },
                None => return false,
            },
            _ => return false,
        };
        self.decide(call.principal, action, resource, None, true) == Decided::Allow
    }
}

impl PolicyGuard {
    fn verdict(&self, call: &Call<'_>) -> Verdict {
        match call.direction {
            Direction::ToUpstream => self.on_request(call),
            Direction::ToClient => self.on_response(call),
        }
    }
}

impl Guard for PolicyGuard {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn controls(&self) -> &'static [&'static str] {
        Self::CONTROLS
    }

    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        let verdict = self.verdict(call);
        async move { Ok(verdict) }.boxed()
    }
    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        Some(Ok(self.verdict(call)))
    }
}

/// Everything a context-free decision depends on, unambiguously joined (lengths prefix each
/// part, so no choice of names makes two different inputs collide).
fn decision_key(
    principal: &Principal,
    action: &str,
    resource: Resource<'_>,
    listing: bool,
) -> String {
    use std::fmt::Write;
    let mut key = String::with_capacity(128);
    let mut part = |s: &str| {
        let _ = write!(key, "{}:{s}|", s.len());
    };
    part(implicit_role(principal.method));
    part(&format!("{:?}", principal.method));
    part(&principal.subject);
    for r in principal.roles.iter() {
        part(r);
    }
    part("/roles");
    for s in principal.scopes.iter() {
        part(s);
    }
    part("/scopes");
    part(action);
    part(if listing { "listing" } else { "call" });
    match resource {
        Resource::Tool {
            server,
            name,
            definition,
        } => {
            part("tool");
            part(server);
            part(name);
            let hints = definition.and_then(|d| d.field("annotations"));
            for k in [
                "readOnlyHint",
                "destructiveHint",
                "idempotentHint",
                "openWorldHint",
            ] {
                let v = hints.and_then(|h| h.get(k)).and_then(Value::as_bool);
                part(match v {
                    None => "-",
                    Some(true) => "t",
                    Some(false) => "f",
                });
            }
        }
        Resource::Prompt { server, name } => {
            part("prompt");
            part(server);
            part(name);
        }
        Resource::Uri { server, uri } => {
            part("uri");
            part(server.unwrap_or("\u{0}none"));
            part(uri);
        }
        Resource::Server(server) => {
            part("server");
            part(server);
        }
        Resource::Gateway => part("gateway"),
    }
    key
}

fn deny_detail(reasons: &[String]) -> String {
    match reasons {
        [] => "no permit applies (default deny)".into(),
        ids => format!("forbidden by {}", ids.join(", ")),
    }
}

/// The entity types of the model, parsed once: parsing a name runs Cedar's parser, which
/// would dominate the cost of a decision if done per request.
static TYPES: std::sync::LazyLock<Vec<(&'static str, EntityTypeName)>> =
    std::sync::LazyLock::new(|| {
        [
            "Principal",
            "Role",
            "Action",
            "Tool",
            "Prompt",
            "Resource",
            "Server",
            "Gateway",
        ]
        .into_iter()
        .map(|t| {
            let name = EntityTypeName::from_str(t).expect("the model's type names are valid Cedar");
            (t, name)
        })
        .collect()
    });

fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    let ty = TYPES
        .iter()
        .find(|(n, _)| *n == ty)
        .map(|(_, t)| t.clone())
        .ok_or_else(|| format!("unknown entity type {ty}"))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

/// Checks that `uri` has one spelling only, so that a rule matching its text (`like
/// "file:///srv/docs/*"`, `forbid ... like "file:///srv/secret/*"`) judges what the server will
/// resolve: a lowercase scheme; an authority of one spelling ([`canonical_authority`]); a path
/// with no `.` or `..` segment, no empty segment (`//`), no backslash, and no percent-encoding
/// but of reserved or non-ASCII bytes (never of a letter, digit, `-._~`, `/` or `\`); for
/// `file:`, only `file:///...`. The query and fragment are not paths and are not checked.
pub fn canonical_uri(uri: &str) -> Result<(), &'static str> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err("no scheme");
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    {
        return Err("the scheme is not in lowercase");
    }
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            if scheme == "file" && !authority.is_empty() {
                return Err("a file URI names a host");
            }
            canonical_authority(scheme, authority)?;
            path
        }
        // `file:/srv/x` is `file:///srv/x`: one spelling, the one with the empty host.
        None if scheme == "file" => return Err("a file URI without `//`"),
        None => rest,
    };
    if path.contains('\\') {
        return Err("a backslash in the path");
    }
    // An encoded unreserved character (`%2e`, `%73`) is the same URI as the character itself
    // (RFC 3986 §6.2.2.2); an encoded slash or backslash is a separator to a lenient server.
    let bytes = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
            return Err("a malformed percent-encoding in the path");
        };
        if byte.is_ascii_alphanumeric() || b"-._~/\\".contains(&byte) {
            return Err("an encoded unreserved character, slash or backslash in the path");
        }
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("a dot segment in the path");
    }
    if path.contains("//") {
        return Err("an empty segment in the path");
    }
    Ok(())
}

/// One `{...}` expression of an RFC 6570 template: where it stands (the braces included), its
/// operator, and its variables' names (without a `*` or `:N` modifier).
struct Expression<'t> {
    span: std::ops::Range<usize>,
    operator: Option<char>,
    variables: Vec<&'t str>,
}

/// The expressions of `template`, in order; an unclosed `{` ends them.
fn expressions(template: &str) -> impl Iterator<Item = Expression<'_>> {
    let mut from = 0;
    std::iter::from_fn(move || {
        let open = from + template[from..].find('{')?;
        let close = open + template[open..].find('}')?;
        from = close + 1;
        let inner = &template[open + 1..close];
        let (operator, list) = match inner.chars().next() {
            Some(c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&')) => (Some(c), &inner[1..]),
            _ => (None, inner),
        };
        let variables = list
            .split(',')
            .map(|v| {
                let v = v.trim();
                v.split(':').next().unwrap_or(v).trim_end_matches('*')
            })
            .collect();
        Some(Expression {
            span: open..close + 1,
            operator,
            variables,
        })
    })
}

/// `template` with the variables `values` names expanded, as a server completing it would
/// read it (RFC 6570: `{name}`, `{+name}`, `{/a,b}`, `{name*}`, `{name:3}`, ...); expressions
/// naming none of them are left as they are.
pub(crate) fn expand_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut last = 0;
    for e in expressions(template) {
        out.push_str(&template[last..e.span.start]);
        last = e.span.end;
        let found: Vec<&str> = e
            .variables
            .iter()
            .filter_map(|v| values.iter().find(|(n, _)| n == v).map(|(_, value)| *value))
            .collect();
        if found.is_empty() {
            out.push_str(&template[e.span]);
            continue;
        }
        if let Some(c @ ('#' | '.' | '/' | ';' | '?' | '&')) = e.operator {
            out.push(c);
        }
        let separator = match e.operator {
            Some('.') => ".",
            Some('/') => "/",
            _ => ",",
        };
        out.push_str(&found.join(separator));
    }
    out.push_str(&template[last..]);
    out
}

/// The variables of `template` that stand in its path (not in an expression of the query or
/// fragment, `{?x}`, `{&x}`, `{#x}`, nor after a literal `?` or `#`).
fn path_variables(template: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut last = 0;
    for e in expressions(template) {
        if template[last..e.span.start].contains(['?', '#']) {
            break;
        }
        last = e.span.end;
        if !matches!(e.operator, Some('?' | '&' | '#')) {
            out.extend(e.variables);
        }
    }
    out
}

/// Checks a completion value for one spelling: what [`canonical_uri`] refuses in a path, and
/// no backslash or empty segment; in the path (`in_path`), no `?` or `#` either, which would
/// hide the rest of the value from the check.
fn canonical_value(value: &str, in_path: bool) -> Result<(), &'static str> {
    if value.contains('\\') || value.contains("//") {
        return Err("a backslash or an empty segment");
    }
    if in_path && value.contains(['?', '#']) {
        return Err("a query or fragment delimiter in a path");
    }
    canonical_uri(&format!("x:/{}", value.replace(['?', '#'], "_")))
}

/// Checks the authority of a URI for one spelling: no user information, a lowercase host
/// without percent-encoding or a trailing dot, and a port of decimal digits without leading
/// zeros that an `http`/`https`/`ws`/`wss` URI would not use anyway
/// (`https://example.com:443/` is `https://example.com/`).
fn canonical_authority(scheme: &str, authority: &str) -> Result<(), &'static str> {
    if authority.contains('@') {
        return Err("user information in the authority");
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal's colons are inside its brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.bytes().any(|b| b.is_ascii_uppercase()) || host.contains('%') {
        return Err("the host is not in lowercase or is percent-encoded");
    }
    if !host.is_ascii() || host.contains('\\') {
        // A URL parser maps full-width letters and ideographic dots to ASCII, and reads a
        // backslash as a slash: names must be ASCII (international ones in punycode).
        return Err("a host that is not plain ASCII");
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        // `[0:0::1]` is `[::1]`: only the address's own shortest spelling.
        match inner.parse::<std::net::Ipv6Addr>() {
            Ok(a) if a.to_string() == inner => {}
            _ => return Err("an IPv6 address not in its shortest form"),
        }
    } else if host.rsplit('.').next().is_some_and(|last| {
        !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x"))
    }) {
        // A name ending in a number is an IPv4 address to a URL parser (`127.1`, `0x7f000001`):
        // only the dotted-quad spelling.
        match host.parse::<std::net::Ipv4Addr>() {
            Ok(a) if a.to_string() == host => {}
            _ => return Err("an IPv4 address not in dotted-quad form"),
        }
    }
    if host.ends_with('.') {
        return Err("a trailing dot in the host");
    }
    if let Some(port) = port {
        let default = match scheme {
            "http" | "ws" => Some("80"),
            "https" | "wss" => Some("443"),
            _ => None,
        };
        if port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.starts_with('0')
            || default == Some(port)
        {
            return Err("a port spelled in more than one way");
        }
    }
    Ok(())
}

/// The role the gateway gives a principal for how it authenticated.
pub fn implicit_role(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Anonymous => "anonymous",
        AuthMethod::LocalProcess => "local",
        AuthMethod::Bearer | AuthMethod::ApiKey => "authenticated",
    }
}

fn principal_entity(p_uid: EntityUid, principal: &Principal) -> Result<Entity, String> {
    let strings = |items: &[std::sync::Arc<str>]| {
        RestrictedExpression::new_set(
            items
                .iter()
                .map(|s| RestrictedExpression::new_string(s.to_string())),
        )
    };
    // Roles from a token or key never carry an implicit role's name: a token claiming
    // `local` must not get what the local user gets.
    let roles: Vec<&str> = principal
        .roles
        .iter()
        .map(|r| &**r)
        .filter(|r| !IMPLICIT_ROLES.contains(r))
        .collect();
    let mut parents = HashSet::new();
    for r in roles
        .iter()
        .copied()
        .chain([implicit_role(principal.method)])
    {
        parents.insert(uid("Role", r)?);
    }
    let method = match principal.method {
        AuthMethod::Anonymous => "anonymous",
        AuthMethod::LocalProcess => "local",
        AuthMethod::Bearer => "bearer",
        AuthMethod::ApiKey => "api_key",
    };
    let attrs = HashMap::from([
        (
            "subject".to_owned(),
            RestrictedExpression::new_string(principal.subject.to_string()),
        ),
        (
            "method".to_owned(),
            RestrictedExpression::new_string(method.to_owned()),
        ),
        (
            "roles".to_owned(),
            RestrictedExpression::new_set(
                roles
                    .iter()
                    .map(|r| RestrictedExpression::new_string((*r).to_owned())),
            ),
        ),
        ("scopes".to_owned(), strings(&principal.scopes)),
    ]);
    Entity::new(p_uid, attrs, parents).map_err(|e| e.to_string())
}

fn resource_entity(resource: Resource<'_>) -> Result<(EntityUid, Entity), String> {
    let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
    let server_parent = |server: &str| -> Result<HashSet<EntityUid>, String> {
        Ok(HashSet::from([uid("Server", server)?]))
    };
    let (r_uid, attrs, parents) = match resource {
        Resource::Tool {
            server,
            name,
            definition,
        } => {
            let hints = definition.and_then(|d| d.field("annotations"));
            let hint = |k: &str, default: bool| {
                let v = hints
                    .and_then(|h| h.get(k))
                    .and_then(Value::as_bool)
                    .unwrap_or(default);
                (k.to_owned(), RestrictedExpression::new_bool(v))
            };
            // The MCP defaults: a tool is assumed to write, destructively, to an open world.
            let annotations = RestrictedExpression::new_record([
                hint("readOnlyHint", false),
                hint("destructiveHint", true),
                hint("idempotentHint", false),
                hint("openWorldHint", true),
            ])
            .map_err(|e| e.to_string())?;
            (
                uid("Tool", &format!("{server}/{name}"))?,
                HashMap::from([
                    ("server".to_owned(), s(server)),
                    ("name".to_owned(), s(name)),
                    ("annotations".to_owned(), annotations),
                ]),
                server_parent(server)?,
            )
        }
        Resource::Prompt { server, name } => (
            uid("Prompt", &format!("{server}/{name}"))?,
            HashMap::from([
                ("server".to_owned(), s(server)),
                ("name".to_owned(), s(name)),
            ]),
            server_parent(server)?,
        ),
        Resource::Uri { server, uri } => {
            let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or("");
            (
                uid("Resource", uri)?,
                HashMap::from([
                    ("uri".to_owned(), s(uri)),
                    ("scheme".to_owned(), s(&scheme.to_ascii_lowercase())),
                    ("server".to_owned(), s(server.unwrap_or(""))),
                ]),
                match server {
                    Some(server) => server_parent(server)?,
                    None => HashSet::new(),
                },
            )
        }
        Resource::Server(server) => (uid("Server", server)?, HashMap::new(), HashSet::new()),
        Resource::Gateway => (uid("Gateway", "gateway")?, HashMap::new(), HashSet::new()),
    };
    let entity = Entity::new(r_uid.clone(), attrs, parents).map_err(|e| e.to_string())?;
    Ok((r_uid, entity))
}

/// A JSON value as a Cedar value: objects become records, arrays sets, integers longs, other
/// numbers strings; `null` (which Cedar lacks) is dropped. Built programmatically, never
/// through Cedar's JSON syntax, so keys such as `__entity` stay plain data.
pub fn to_cedar(value: &Value) -> Option<RestrictedExpression> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => RestrictedExpression::new_set(items.iter().filter_map(to_cedar)),
        Value::Object(map) => RestrictedExpression::new_record(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), to_cedar(v)?))),
        )
        // Keys of a JSON object are unique, so the record cannot have duplicates.
        .ok()?,
    })
}

/// A Cedar string literal.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Cedar `like` pattern for a `*` glob: `*` stays a wildcard, everything else is literal.
fn like(glob: &str) -> String {
    let escaped: Vec<String> = glob
        .split('*')
        .map(|piece| {
            let lit = literal(piece);
            lit[1..lit.len() - 1].to_owned()
        })
        .collect();
    format!("\"{}\"", escaped.join("*"))
}

/// `<server>/<name>` glob -> a Cedar condition on `resource.server` and `resource.name`.
fn qualified_condition(pattern: &str) -> String {
    let (server, name) = pattern.split_once('/').unwrap_or(("*", pattern));
    format!(
        "resource.server like {} && resource.name like {}",
        like(server),
        like(name)
    )
}

/// Compiles the role table to Cedar. Every role may list (lists are filtered per item) and
/// use task and completion plumbing; each pattern becomes one `permit`.
pub fn compile_roles(roles: &BTreeMap<String, RoleConfig>) -> String {
    let mut out = String::new();
    for (role, r) in roles {
        let p = format!("principal in Role::{}", literal(role));
        out.push_str(&format!(
            "// role {role}\npermit({p}, action in [Action::\"tools/list\", Action::\"prompts/list\", Action::\"resources/list\", Action::\"resources/templates/list\", Action::\"completion/complete\", Action::\"tasks/get\", Action::\"tasks/result\", Action::\"tasks/cancel\", Action::\"tasks/list\"], resource);\n"
        ));
        for t in &r.tools {
            let read_only = if r.read_only_tools {
                " && resource.annotations.readOnlyHint"
            } else {
                ""
            };
            out.push_str(&format!(
                "permit({p}, action == Action::\"tools/call\", resource is Tool) when {{ {}{read_only} }};\n",
                qualified_condition(t)
            ));
        }
        for t in &r.prompts {
            out.push_str(&format!(
                "permit({p}, action == Action::\"prompts/get\", resource is Prompt) when {{ {} }};\n",
                qualified_condition(t)
            ));
        }
        for u in &r.resources {
            out.push_str(&format!(
                "permit({p}, action in [Action::\"resources/read\", Action::\"resources/subscribe\", Action::\"resources/unsubscribe\"], resource is Resource) when {{ resource.uri like {} }};\n",
                like(u)
            ));
        }
        for (granted, action) in [
            (r.sampling, "sampling/createMessage"),
            (r.elicitation, "elicitation/create"),
            (r.roots, "roots/list"),
        ] {
            if granted {
                out.push_str(&format!(
                    "permit({p}, action == Action::\"{action}\", resource is Server);\n"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
