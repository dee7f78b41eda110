//! Model-based test: random operation sequences give the same results on each backend as on a
//! plain `HashMap` model with an explicit clock.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::Backend;
use crate::{Limits, Namespace, StoreError, parse_counter};

const NAMESPACES: [Namespace; 2] = [Namespace::SESSION, Namespace::PIN];
/// Four keys, two sharing a prefix, so `list` prefixes and the entry limit both matter.
const KEYS: [&str; 4] = ["a", "ab", "b", "c"];
const PREFIXES: [&str; 3] = ["", "a", "b"];
/// Small enough that `Full` happens, with four keys per namespace.
const MAX_ENTRIES: usize = 3;
const VALUES: [&[u8]; 6] = [b"", b"0", b"1", b"-7", b"x", b"+1"];

#[derive(Debug, Clone)]
enum Expected {
    /// Whatever the model holds now, so that swaps succeed often.
    Current,
    Absent,
    Value(&'static [u8]),
}

#[derive(Debug, Clone)]
enum Op {
    Get(usize, usize),
    Put(usize, usize, &'static [u8], Option<u64>),
    PutIfAbsent(usize, usize, &'static [u8], Option<u64>),
    Cas(usize, usize, Expected, Option<&'static [u8]>, Option<u64>),
    Delete(usize, usize),
    List(usize, &'static str, usize),
    Touch(usize, usize, u64),
    Incr(usize, usize, i64, Option<u64>),
    Advance(u64),
    Reopen,
}

/// What an operation returned, comparable across model and store.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Value(Option<Bytes>),
    Done,
    Bool(bool),
    Keys(Vec<String>),
    Int(i64),
    Error(&'static str),
}

fn error_kind(err: &StoreError) -> &'static str {
    match err {
        StoreError::Full { .. } => "full",
        StoreError::NotACounter { .. } => "not a counter",
        StoreError::Overflow { .. } => "overflow",
        other => panic!("unexpected error: {other:?}"),
    }
}

fn op_strategy(with_reopen: bool) -> BoxedStrategy<Op> {
    let ns = 0..NAMESPACES.len();
    let key = 0..KEYS.len();
    let value = prop::sample::select(VALUES.to_vec());
    let ttl = prop::option::of(1..40u64);
    let expected = prop_oneof![
        Just(Expected::Current),
        Just(Expected::Absent),
        value.clone().prop_map(Expected::Value),
    ];
    let delta = prop_oneof![8 => -3..4i64, 1 => Just(i64::MAX), 1 => Just(i64::MIN)];
    let ops = prop_oneof![
        3 => (ns.clone(), key.clone()).prop_map(|(n, k)| Op::Get(n, k)),
        3 => (ns.clone(), key.clone(), value.clone(), ttl.clone())
            .prop_map(|(n, k, v, t)| Op::Put(n, k, v, t)),
        2 => (ns.clone(), key.clone(), value.clone(), ttl.clone())
            .prop_map(|(n, k, v, t)| Op::PutIfAbsent(n, k, v, t)),
        3 => (ns.clone(), key.clone(), expected, prop::option::of(value), ttl.clone())
            .prop_map(|(n, k, e, v, t)| Op::Cas(n, k, e, v, t)),
        2 => (ns.clone(), key.clone()).prop_map(|(n, k)| Op::Delete(n, k)),
        1 => (ns.clone(), prop::sample::select(PREFIXES.to_vec()), 0..4usize)
            .prop_map(|(n, p, l)| Op::List(n, p, l)),
        1 => (ns.clone(), key.clone(), 1..40u64).prop_map(|(n, k, t)| Op::Touch(n, k, t)),
        2 => (ns, key, delta, ttl).prop_map(|(n, k, d, t)| Op::Incr(n, k, d, t)),
        2 => (0..30u64).prop_map(Op::Advance),
    ];
    if with_reopen {
        prop_oneof![20 => ops, 1 => Just(Op::Reopen)].boxed()
    } else {
        ops.boxed()
    }
}

#[derive(Debug, Clone)]
struct ModelEntry {
    value: Bytes,
    expires_at: Option<u64>,
}

/// The specification: a map, a clock in milliseconds, and the semantics of [`crate::Store`].
#[derive(Debug, Default)]
struct Model {
    now: u64,
    map: HashMap<(usize, &'static str), ModelEntry>,
}

impl Model {
    fn live(&self, ns: usize, key: &'static str) -> Option<&ModelEntry> {
        self.map
            .get(&(ns, key))
            .filter(|e| e.expires_at.is_none_or(|at| self.now < at))
    }

    fn live_count(&self, ns: usize) -> usize {
        KEYS.iter().filter(|k| self.live(ns, k).is_some()).count()
    }

    /// Writes `key`, or reports `full` if it is new and the namespace is at its limit.
    fn write(&mut self, ns: usize, key: &'static str, value: Bytes, ttl: Option<u64>) -> bool {
        if self.live(ns, key).is_none() && self.live_count(ns) >= MAX_ENTRIES {
            return false;
        }
        let expires_at = ttl.map(|t| self.now + t);
        self.map.insert((ns, key), ModelEntry { value, expires_at });
        true
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        const FULL: Outcome = Outcome::Error("full");
        match *op {
            Op::Get(ns, k) => Outcome::Value(self.live(ns, KEYS[k]).map(|e| e.value.clone())),
            Op::Put(ns, k, v, ttl) => {
                if self.write(ns, KEYS[k], Bytes::from_static(v), ttl) {
                    Outcome::Done
                } else {
                    FULL
                }
            }
            Op::PutIfAbsent(ns, k, v, ttl) => {
                if self.live(ns, KEYS[k]).is_some() {
                    Outcome::Bool(false)
                } else if self.write(ns, KEYS[k], Bytes::from_static(v), ttl) {
                    Outcome::Bool(true)
                } else {
                    FULL
                }
            }
            Op::Cas(ns, k, ref expected, new, ttl) => {
                let current = self.live(ns, KEYS[k]).map(|e| e.value.clone());
                let matches = match expected {
                    Expected::Current => true,
                    Expected::Absent => current.is_none(),
                    Expected::Value(v) => current.as_deref() == Some(*v),
                };
                if !matches {
                    return Outcome::Bool(false);
                }
                match new {
                    None => {
                        self.map.remove(&(ns, KEYS[k]));
                        Outcome::Bool(true)
                    }
                    Some(v) if self.write(ns, KEYS[k], Bytes::from_static(v), ttl) => {
                        Outcome::Bool(true)
                    }
                    Some(_) => FULL,
                }
            }
            Op::Delete(ns, k) => {
                let existed = self.live(ns, KEYS[k]).is_some();
                self.map.remove(&(ns, KEYS[k]));
                Outcome::Bool(existed)
            }
            Op::List(ns, prefix, limit) => {
                let mut keys: Vec<String> = KEYS
                    .iter()
                    .filter(|k| k.starts_with(prefix) && self.live(ns, k).is_some())
                    .map(ToString::to_string)
                    .collect();
                keys.sort();
                keys.truncate(limit);
                Outcome::Keys(keys)
            }
            Op::Touch(ns, k, ttl) => {
                let now = self.now;
                if self.live(ns, KEYS[k]).is_none() {
                    return Outcome::Bool(false);
                }
                if let Some(entry) = self.map.get_mut(&(ns, KEYS[k])) {
                    entry.expires_at = Some(now + ttl);
                }
                Outcome::Bool(true)
            }
            Op::Incr(ns, k, delta, ttl) => {
                let current = self.live(ns, KEYS[k]).cloned();
                let value = match &current {
                    None => 0,
                    Some(entry) => match parse_counter(&entry.value) {
                        Some(value) => value,
                        None => return Outcome::Error("not a counter"),
                    },
                };
                let Some(next) = value.checked_add(delta) else {
                    return Outcome::Error("overflow");
                };
                let expires_at = current
                    .and_then(|e| e.expires_at)
                    .or(ttl.map(|t| self.now + t));
                let bytes = Bytes::from(next.to_string());
                if !self.write(ns, KEYS[k], bytes, None) {
                    return FULL;
                }
                if let Some(entry) = self.map.get_mut(&(ns, KEYS[k])) {
                    entry.expires_at = expires_at;
                }
                Outcome::Int(next)
            }
            Op::Advance(ms) => {
                self.now += ms;
                Outcome::Done
            }
            Op::Reopen => Outcome::Done,
        }
    }
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

fn outcome<T>(result: Result<T, StoreError>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match result {
        Ok(value) => ok(value),
        Err(err) => Outcome::Error(error_kind(&err)),
    }
}

async fn run(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let limits = Limits::default().with_max_entries(MAX_ENTRIES);
    let mut h = backend.open(limits).await;
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let want = model.apply(op);
        let store = &*h.store;
        let got = match *op {
            Op::Get(ns, k) => outcome(store.get(NAMESPACES[ns], KEYS[k]).await, Outcome::Value),
            Op::Put(ns, k, v, t) => outcome(
                store
                    .put(NAMESPACES[ns], KEYS[k], Bytes::from_static(v), ttl(t))
                    .await,
                |()| Outcome::Done,
            ),
            Op::PutIfAbsent(ns, k, v, t) => outcome(
                store
                    .put_if_absent(NAMESPACES[ns], KEYS[k], Bytes::from_static(v), ttl(t))
                    .await,
                Outcome::Bool,
            ),
            Op::Cas(ns, k, ref expected, new, t) => {
                // `Current` was resolved against the model before it applied the op, so read
                // the store's current value: equal by induction, or the test fails earlier.
                let current = store.get(NAMESPACES[ns], KEYS[k]).await.unwrap();
                let expected = match expected {
                    Expected::Current => current.as_deref(),
                    Expected::Absent => None,
                    Expected::Value(v) => Some(*v),
                };
                outcome(
                    store
                        .compare_and_swap(
                            NAMESPACES[ns],
                            KEYS[k],
                            expected,
                            new.map(Bytes::from_static),
                            ttl(t),
                        )
                        .await,
                    Outcome::Bool,
                )
            }
            Op::Delete(ns, k) => {
                outcome(store.delete(NAMESPACES[ns], KEYS[k]).await, Outcome::Bool)
            }
            Op::List(ns, prefix, limit) => outcome(
                store.list(NAMESPACES[ns], prefix, limit).await,
                Outcome::Keys,
            ),
            Op::Touch(ns, k, t) => outcome(
                store
                    .touch(NAMESPACES[ns], KEYS[k], Duration::from_millis(t))
                    .await,
                Outcome::Bool,
            ),
            Op::Incr(ns, k, delta, t) => outcome(
                store.incr(NAMESPACES[ns], KEYS[k], delta, ttl(t)).await,
                Outcome::Int,
            ),
            Op::Advance(ms) => {
                h.advance(Duration::from_millis(ms)).await;
                Outcome::Done
            }
            Op::Reopen => {
                h.reopen().await;
                Outcome::Done
            }
        };
        prop_assert_eq!(&got, &want, "step {}: {:?}", step, op);
    }
    // Finally, every key agrees.
    for (ns, namespace) in NAMESPACES.iter().enumerate() {
        for key in KEYS {
            let want = model.live(ns, key).map(|e| e.value.clone());
            prop_assert_eq!(h.store.get(*namespace, key).await.unwrap(), want, "{}", key);
        }
    }
    Ok(())
}

fn block_on(test: impl Future<Output = Result<(), TestCaseError>>) -> Result<(), TestCaseError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(test)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn memory_store_matches_model(ops in prop::collection::vec(op_strategy(false), 1..80)) {
        block_on(run(Backend::Memory, ops))?;
    }
}

proptest! {
    // Each write is an fsync; fewer cases keep this test to a few seconds.
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn file_store_matches_model(ops in prop::collection::vec(op_strategy(true), 1..80)) {
        block_on(run(Backend::File, ops))?;
    }
}
