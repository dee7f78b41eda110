//! Multi-round bridging: a legacy upstream's server-to-client requests (sampling,
//! elicitation, roots) for a 2026-07-28 client, which cannot receive requests.
//!
//! The gateway answers the client's `tools/call`, `resources/read` or `prompts/get` with an
//! `input_required` result carrying the upstream's request, and parks the still-open upstream
//! call under a `requestState` that is 128 random bits from the OS CSPRNG: unguessable, looked
//! up server-side (so it cannot be forged or altered), single-use (spent only by its own caller:
//! another caller presenting it is refused and leaves the call alone), bound to the principal, the
//! method and the tool/prompt name or URI of the original request, and expiring after
//! [`PARK_TTL`]. When the client retries with `inputResponses` and that `requestState`, the
//! gateway answers the upstream's pending request and streams the rest of the same upstream
//! call to the retry. The gateway's states start with this process's prefix
//! ([`state_prefix`]): one with the prefix that the gateway no longer holds (spent, expired,
//! pushed out) is refused, never sent on as a new call; one without it is an upstream's own and
//! the request is routed as usual (a 2026-07-28 upstream keeps its own multi-round state).

use std::collections::HashMap;
use std::sync::Arc;

use rand::RngCore;
use rand::TryRngCore;
use serde_json::{Value, json};
use tokio::time::{Duration, Instant};
use warden_guard::Principal;
use warden_proto::Field;
use warden_proto::mcp::Era;
use warden_proto::{ErrorCode, Id, Message};
use warden_upstream::{Connection, ResponseStream};

use crate::dispatch::ClientEra;
use crate::gateway::{Gateway, Routes, UpstreamState, error, response};
use crate::{Reply, ReplyStream, Session};

/// How long a parked upstream call waits for the client's retry. Bounds how long an abandoned
/// call holds upstream resources.
pub const PARK_TTL: Duration = Duration::from_secs(300);
/// Most parked calls at once; beyond it the oldest of the caller holding the most is dropped
/// (and cancelled upstream).
pub const MAX_PARKED: usize = 1024;
/// Most parked calls of one authenticated caller: beyond it that caller's oldest is dropped. A
/// parked call's reply has ended, so the concurrency limits no longer count it; this keeps one
/// caller from holding the upstream's calls open, or from pushing out other callers' parked
/// calls. (Unauthenticated clients are all one caller, `anonymous`: only [`MAX_PARKED`] holds
/// for them.)
pub const MAX_PARKED_PER_CALLER: usize = 64;
/// Which parked call (its key) gives way before `caller` parks one more, among `parked`
/// (key, caller, expiry): the caller's own oldest once it holds `per_caller`; else, once the
/// table holds `total`, the oldest of the caller holding the most (ties: any of them). `None`
/// while there is room.
pub(crate) fn to_evict<'a>(
    parked: &[(&'a str, &Principal, Instant)],
    caller: &Principal,
    total: usize,
    per_caller: usize,
) -> Option<&'a str> {
    let oldest_of = |who: &Principal| {
        parked
            .iter()
            .filter(|(_, p, _)| p.same_caller(who))
            .min_by_key(|(_, _, expires)| *expires)
            .map(|(k, _, _)| *k)
    };
    // Every unauthenticated client is the one `anonymous` caller: no share of its own to hold
    // it to (it would make all of them share one), only the table's size.
    let own = if caller.method == warden_guard::AuthMethod::Anonymous {
        0
    } else {
        parked
            .iter()
            .filter(|(_, p, _)| p.same_caller(caller))
            .count()
    };
    if own >= per_caller {
        return oldest_of(caller);
    }
    if parked.len() < total {
        return None;
    }
    // One pass: callers are subject and method.
    let mut counts: HashMap<(&str, warden_guard::AuthMethod), usize> = HashMap::new();
    for (_, p, _) in parked {
        *counts.entry((&*p.subject, p.method)).or_default() += 1;
    }
    let (subject, method) = counts.into_iter().max_by_key(|(_, n)| *n)?.0;
    oldest_of(&Principal::new(subject, method))
}

/// The key of the one input request the gateway sends per round.
pub const INPUT_KEY: &str = "upstream-request";

/// Everything needed to keep streaming one upstream call to a client.
pub(crate) struct Exchange {
    pub(crate) session: Option<Arc<Session>>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) up: Arc<UpstreamState>,
    pub(crate) conn: Connection,
    pub(crate) stream: ResponseStream,
    pub(crate) client: ClientEra,
    pub(crate) era: Era,
    pub(crate) method: String,
    /// `params.name` or `params.uri` of the original request: the retry must match it.
    pub(crate) name: Option<String>,
    /// The capabilities the client declared (per request, or in `initialize`).
    pub(crate) caps: Option<Value>,
    pub(crate) principal: Principal,
    /// For a 2026-07-28 client: the rank of the log level its request asked for
    /// (`_meta` `io.modelcontextprotocol/logLevel`); `None`, no log messages at all.
    pub(crate) log_level: Option<u8>,
}

/// An upstream call waiting for the client's input.
pub(crate) struct Parked {
    exchange: Exchange,
    /// The upstream's request the client must answer.
    request: Message,
    expires: Instant,
}

/// What is wrong with the multi-round fields of a 2026-07-28 request, if anything:
/// `inputResponses` must be an object whose values are result objects (keys the server does
/// not recognise are ignored, not refused), and `requestState` a string.
pub(crate) fn malformed_round(message: &Message) -> Option<&'static str> {
    let p = message.params()?;
    match (p.field("inputResponses"), p.field("requestState")) {
        (Some(Value::Object(r)), _) if r.values().any(|v| !v.is_object()) => {
            Some("every inputResponses value must be a result object")
        }
        (Some(r), _) if !r.is_object() => Some("inputResponses must be an object"),
        (_, Some(s)) if !s.is_string() => Some("requestState must be a string"),
        _ => None,
    }
}

/// What a request is about, as routing reads it: `params.uri` of a `resources/*` request,
/// `params.name` of any other. (Not whichever is present: a `resources/read` retry carrying
/// the parked call's URI as a `name` and another `uri` was judged and routed for that other URI,
/// yet matched the parked call.)
pub(crate) fn bound_name(message: &Message) -> Option<String> {
    let p = message.params()?;
    let key = match message.method() {
        Some(m) if m.starts_with("resources/") => "uri",
        _ => "name",
    };
    p.field(key).and_then(Value::as_str).map(str::to_owned)
}

/// Starts every `requestState` this process issues (`mw-` and 32 random bits of its own), so
/// that a retry carrying one it no longer holds (spent, expired, pushed out) is refused instead
/// of being taken for an upstream's own state and sent as a new call (which would run the tool
/// again). Per process: a gateway behind another one (whose states also start with `mw-`)
/// still tells its own from the upstream's.
pub fn state_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| format!("mw-{}-", random_hex(4)))
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
        rand::rng().fill_bytes(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_state() -> String {
    format!("{}{}", state_prefix(), random_hex(16))
}

const NOT_HELD: &str =
    "requestState is no longer held (spent, expired or dropped): send the request again without it";
const NOT_THIS_REQUEST: &str = "requestState does not belong to this request";

/// The `-32602` answer to a retry whose `requestState` cannot resume a call.
fn refused(message: &Message, text: &str) -> Reply {
    let idv = message.id().map(Id::to_value).unwrap_or(Value::Null);
    Reply::Stream(ReplyStream::single(error(
        &idv,
        ErrorCode::InvalidParams,
        text,
    )))
}

/// The client capability a server-to-client request needs.
fn capability_for(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

impl Gateway {
    /// The `input_required` result relaying the upstream's `request` to a 2026-07-28 client,
    /// with a fresh `requestState`; `None` when it cannot be relayed (the upstream is then
    /// answered with an error at once, never left waiting).
    pub(crate) async fn input_required(
        &self,
        ex: &Exchange,
        request: &Message,
        idv: &Value,
    ) -> Option<(String, Message)> {
        let method = request.method().unwrap_or("");
        let refusal = match capability_for(method) {
            None => Some("this request cannot be relayed to the client"),
            Some(_)
                if !matches!(
                    ex.method.as_str(),
                    "tools/call" | "resources/read" | "prompts/get"
                ) =>
            {
                Some(
                    "the client can answer requests only during tools/call, resources/read and prompts/get",
                )
            }
            Some(cap) if ex.caps.as_ref().is_none_or(|c| c.get(cap).is_none()) => {
                Some("the client did not declare this capability")
            }
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            let uid = request.id().map(Id::to_value).unwrap_or(Value::Null);
            let _ = ex
                .conn
                .respond(&error(&uid, ErrorCode::MethodNotFound, reason))
                .await;
            return None;
        }
        let state = random_state();
        let mut input = json!({ "method": method });
        if let Some(p) = request.params() {
            input["params"] = p.clone();
        }
        let result = json!({
            "resultType": "input_required",
            "inputRequests": { INPUT_KEY: input },
            "requestState": state,
        });
        Some((state, response(idv, result)))
    }

    /// Parks an upstream call until the client retries.
    pub(crate) fn park(&self, state: String, exchange: Exchange, request: Message) {
        let Ok(mut parked) = self.parked.lock() else {
            return;
        };
        let now = Instant::now();
        parked.retain(|_, p| p.expires > now);
        let entries: Vec<(&str, &Principal, Instant)> = parked
            .iter()
            .map(|(k, p)| (k.as_str(), &p.exchange.principal, p.expires))
            .collect();
        let evict = to_evict(
            &entries,
            &exchange.principal,
            MAX_PARKED,
            MAX_PARKED_PER_CALLER,
        )
        .map(str::to_owned);
        if let Some(key) = evict {
            parked.remove(&key);
        }
        parked.insert(
            state,
            Parked {
                exchange,
                request,
                expires: now + PARK_TTL,
            },
        );
    }

    /// Drops parked calls past their expiry (their upstream calls are cancelled).
    pub(crate) fn sweep_parked(&self) {
        if let Ok(mut parked) = self.parked.lock() {
            let now = Instant::now();
            parked.retain(|_, p| p.expires > now);
        }
    }

    /// Takes the call parked under `state` if `principal` parked it: `None` for a state the
    /// gateway does not know, `Err` for another caller's (left parked: whoever holds the state
    /// learns nothing and cannot end the call).
    fn take_parked(&self, state: &str, principal: &Principal) -> Option<Result<Parked, ()>> {
        let mut parked = self.parked.lock().ok()?;
        if !parked.get(state)?.exchange.principal.same_caller(principal) {
            return Some(Err(()));
        }
        parked.remove(state).map(Ok)
    }

    /// Ends the parked call `state` refers to when its caller's retry was refused: the
    /// upstream's pending request gets the refusal, and the call is dropped (cancelled
    /// upstream) rather than left waiting for its expiry. Another caller's state is left alone.
    pub(crate) async fn abandon_parked(
        &self,
        state: &str,
        principal: &Principal,
        refusal: &Message,
    ) {
        let Some(Ok(parked)) = self.take_parked(state, principal) else {
            return;
        };
        let upstream_id = parked.request.id().cloned();
        if let Some(id) = upstream_id {
            let answer = refusal.with_id(&id);
            if let Err(e) = parked.exchange.conn.respond(&answer).await {
                tracing::debug!(upstream = %parked.exchange.up.name, error = %e, "refusal for a parked call not delivered");
            }
        }
    }

    /// Resumes the parked call `state` refers to with the client's retry, if the gateway
    /// parked it; `None` leaves the request to normal routing.
    pub(crate) async fn resume(
        &self,
        message: &Message,
        principal: &Principal,
        method: &str,
    ) -> Option<Reply> {
        let state = message.params()?.field("requestState")?.as_str()?;
        let Some(taken) = self.take_parked(state, principal) else {
            if !state.starts_with(state_prefix()) {
                // Not the gateway's: an upstream's own state, forwarded with the request.
                return None;
            }
            return Some(refused(message, NOT_HELD));
        };
        let Ok(parked) = taken else {
            return Some(refused(message, NOT_THIS_REQUEST));
        };
        let id = message.id().cloned()?;
        let ex = &parked.exchange;
        // Single use: whatever happens next, this state is spent.
        // The retry names the item as the client sees it; the parked call, as the upstream
        // does: resolve the client's name the way routing would.
        let retried = match (method, bound_name(message)) {
            ("tools/call", Some(n)) if !self.opts.transparent => self
                .route_name(&n, crate::dispatch::Item::Tool)
                .filter(|(up, _)| up.index == ex.up.index)
                .map(|(_, original)| original),
            ("prompts/get", Some(n)) if !self.opts.transparent => self
                .route_name(&n, crate::dispatch::Item::Prompt)
                .filter(|(up, _)| up.index == ex.up.index)
                .map(|(_, original)| original),
            (_, n) => n,
        };
        if parked.expires <= Instant::now()
            || !ex.principal.same_caller(principal)
            || ex.method != method
            || ex.name != retried
        {
            return Some(refused(message, NOT_THIS_REQUEST));
        }
        let upstream_id = parked.request.id().map(Id::to_value).unwrap_or(Value::Null);
        let answer = match message
            .params()
            .and_then(|p| p.field("inputResponses"))
            .and_then(|r| r.get(INPUT_KEY))
        {
            Some(result) => response(&upstream_id, result.clone()),
            None => error(
                &upstream_id,
                ErrorCode::InvalidParams,
                "the client did not provide the requested input",
            ),
        };
        // The answer needs no guards of its own: the retry carrying it went through the
        // request guards (`secrets_in_answers` scans its `inputResponses`).
        if let Err(e) = ex.conn.respond(&answer).await {
            tracing::debug!(upstream = %ex.up.name, error = %e, "input for a parked call not delivered");
        }
        Some(self.spawn_pump(parked.exchange, id))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use warden_guard::AuthMethod;

    use super::*;

    fn who(n: u8) -> Principal {
        Principal::new(format!("caller-{n}"), AuthMethod::ApiKey)
    }

    #[test]
    fn a_request_is_bound_to_what_routing_reads() {
        let m = |v: serde_json::Value| Message::from_value(v).unwrap();
        let read = m(
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"resources/read",
            "params":{"uri":"mem://y","name":"mem://x"}}),
        );
        assert_eq!(bound_name(&read).as_deref(), Some("mem://y"));
        let call = m(
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
            "params":{"name":"a__echo","uri":"mem://x"}}),
        );
        assert_eq!(bound_name(&call).as_deref(), Some("a__echo"));
        let nameless = m(
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
            "params":{"uri":"mem://x"}}),
        );
        assert_eq!(bound_name(&nameless), None);
    }

    #[test]
    fn a_caller_at_its_share_gives_way_itself() {
        let t0 = Instant::now();
        let (a, b) = (who(0), who(1));
        let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let parked: Vec<(&str, &Principal, Instant)> = vec![
            (&keys[0], &b, t0),
            (&keys[1], &a, t0 + Duration::from_secs(1)),
            (&keys[2], &a, t0 + Duration::from_secs(2)),
        ];
        // a holds 2 of its 2: its own oldest goes, not b's older one.
        assert_eq!(to_evict(&parked, &a, 10, 2), Some("k1"));
        // b holds 1 of 2, and the table has room.
        assert_eq!(to_evict(&parked, &b, 10, 2), None);
        // A full table: the caller holding the most (a) gives way, even for b.
        assert_eq!(to_evict(&parked, &b, 3, 2), Some("k1"));
        // A newcomer at a full table too.
        assert_eq!(to_evict(&parked, &who(9), 3, 5), Some("k1"));
        // Unauthenticated clients are all `anonymous`: no share of their own, only the table.
        let anon = Principal::anonymous();
        let anons: Vec<(&str, &Principal, Instant)> =
            (0..3).map(|i| (keys[i].as_str(), &anon, t0)).collect();
        assert_eq!(to_evict(&anons, &anon, 10, 2), None);
    }

    proptest! {
        /// Whoever parks, what gives way is never another caller's while the caller is at its
        /// share, never anything while there is room, and otherwise a call of a caller holding
        /// the most; the table never grows past its size.
        #[test]
        fn eviction_is_fair(
            owners in prop::collection::vec(0u8..4, 0..40),
            caller in 0u8..5,
            total in 1usize..40,
            per_caller in 1usize..12,
        ) {
            let t0 = Instant::now();
            let people: Vec<Principal> = (0..5).map(who).collect();
            let keys: Vec<String> = (0..owners.len()).map(|i| format!("k{i}")).collect();
            let parked: Vec<(&str, &Principal, Instant)> = owners
                .iter()
                .enumerate()
                .map(|(i, o)| (keys[i].as_str(), &people[usize::from(*o)], t0 + Duration::from_secs(i as u64)))
                .collect();
            let me = &people[usize::from(caller)];
            let mine = parked.iter().filter(|(_, p, _)| p.same_caller(me)).count();
            let held = |p: &Principal| parked.iter().filter(|(_, q, _)| q.same_caller(p)).count();
            match to_evict(&parked, me, total, per_caller) {
                None => prop_assert!(mine < per_caller && parked.len() < total),
                Some(k) => {
                    let (_, owner, expires) = parked.iter().find(|(key, _, _)| *key == k).unwrap();
                    if mine >= per_caller {
                        prop_assert!(owner.same_caller(me), "another caller's call went");
                    } else {
                        prop_assert!(parked.len() >= total);
                        let most = parked.iter().map(|(_, p, _)| held(p)).max().unwrap();
                        prop_assert_eq!(held(owner), most);
                    }
                    // The oldest of its owner's.
                    prop_assert!(parked.iter().filter(|(_, p, _)| p.same_caller(owner)).all(|(_, _, e)| e >= expires));
                }
            }
        }
    }
}
