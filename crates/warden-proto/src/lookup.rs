//! Member lookup in small JSON objects without hashing.
//!
//! `serde_json::Map` (an `IndexMap` with `preserve_order`) hashes every key it is asked for
//! with SipHash: about 250 instructions per lookup, and the gateway asks for `params`, `name`,
//! `_meta`, `arguments`, ... a few dozen times per message. The objects of the MCP envelope
//! have a handful of members, which sit side by side in the map's entry vector; comparing
//! them in order is several times cheaper. Keys of a `Map` are unique, so the first key that
//! compares equal is the one `Map::get` would find: the result is the same, only the cost
//! differs (property-tested below).

use serde_json::{Map, Value};

/// Objects up to this many members are searched in order; larger ones through the hash index.
const LINEAR_MEMBERS: usize = 12;

/// The member `key` of `map`, as `map.get(key)`.
#[inline]
fn member<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() <= LINEAR_MEMBERS {
        map.iter().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        map.get(key)
    }
}

/// Member lookup as a method, for chains: `params.field("_meta")?.field("progressToken")`.
pub trait Field {
    /// The member `key` when this is an object, as `serde_json`'s `get(key)`.
    fn field(&self, key: &str) -> Option<&Value>;
}

impl Field for Value {
    #[inline]
    fn field(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(map) => member(map, key),
            _ => None,
        }
    }
}

impl Field for Map<String, Value> {
    #[inline]
    fn field(&self, key: &str) -> Option<&Value> {
        member(self, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> impl Strategy<Value = String> {
        // Few distinct keys so that lookups hit often, plus escapes and non-ASCII.
        prop_oneof![
            Just("name".to_owned()),
            Just("_meta".to_owned()),
            Just("n".to_owned()),
            Just("name ".to_owned()),
            Just("ñame".to_owned()),
            Just(String::new()),
            "[a-z_]{1,3}",
        ]
    }

    proptest! {
        #[test]
        fn member_is_map_get(entries in prop::collection::vec((keys(), any::<u8>()), 0..30), key in keys()) {
            let mut map = Map::new();
            for (k, v) in entries {
                map.insert(k, Value::from(v));
            }
            prop_assert_eq!(member(&map, &key), map.get(&key));
            let value = Value::Object(map.clone());
            prop_assert_eq!(value.field(&key), value.get(&key));
            prop_assert_eq!(map.field(&key), map.get(&key));
        }
    }

    #[test]
    fn non_objects_have_no_fields() {
        for v in [
            Value::Null,
            Value::from(1),
            Value::from("name"),
            serde_json::json!(["name"]),
        ] {
            assert_eq!(v.field("name"), None);
            assert_eq!(v.field("name"), v.get("name"));
        }
    }
}
