use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

fn text(v: &Value) -> String {
    String::from_utf8(canonical_bytes(v)).unwrap()
}

#[test]
fn sorts_keys_at_every_depth_and_drops_whitespace() {
    let v: Value =
        serde_json::from_str(r#"{ "b": 1, "a": { "z": [3, {"y": 1, "x": 2}], "c": null } }"#)
            .unwrap();
    assert_eq!(text(&v), r#"{"a":{"c":null,"z":[3,{"x":2,"y":1}]},"b":1}"#);
}

#[test]
fn keys_sort_by_code_point_not_by_utf16() {
    // U+FF61 sorts before U+1F600 by code point (and by UTF-8 bytes), after it in UTF-16.
    let v = json!({"\u{1F600}": 1, "\u{FF61}": 2, "Z": 3, "a": 4});
    assert_eq!(text(&v), "{\"Z\":3,\"a\":4,\"\u{FF61}\":2,\"\u{1F600}\":1}");
}

#[test]
fn unicode_escapes_hash_like_the_decoded_text() {
    let escaped: Value =
        serde_json::from_str(r#"{"name":"\u0061dd","d":"caf\u00e9 \ud83d\ude00"}"#).unwrap();
    let plain: Value = serde_json::from_str("{\"name\":\"add\",\"d\":\"café 😀\"}").unwrap();
    assert_eq!(definition_hash(&escaped), definition_hash(&plain));
    assert_eq!(text(&plain), "{\"d\":\"café 😀\",\"name\":\"add\"}");
}

#[test]
fn control_characters_are_escaped_minimally() {
    let v = json!("a\"b\\c\n\t\u{1}\u{7f}\u{2028}");
    assert_eq!(text(&v), "\"a\\\"b\\\\c\\n\\t\\u0001\u{7f}\u{2028}\"");
}

#[test]
fn number_spelling_is_part_of_the_definition() {
    let one: Value = serde_json::from_str("1").unwrap();
    let one_float: Value = serde_json::from_str("1.0").unwrap();
    assert_eq!(text(&one), "1");
    assert_eq!(text(&one_float), "1.0");
    assert_ne!(definition_hash(&one), definition_hash(&one_float));
}

#[test]
fn hash_is_sha256_of_the_canonical_bytes() {
    // sha256("{}") computed independently.
    assert_eq!(
        definition_hash(&json!({})),
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
}

#[test]
fn pretty_form_is_sorted_and_indented() {
    let v = json!({"b": [1], "a": "x"});
    assert_eq!(pretty(&v), "{\n  \"a\": \"x\",\n  \"b\": [\n    1\n  ]\n}");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Rebuilds every object with its members in an order chosen by `seed`.
fn permute(v: &Value, seed: u64) -> Value {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            let n = members.len();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let j = usize::try_from(s >> 33).unwrap() % (i + 1);
                members.swap(i, j);
            }
            let mut out = Map::new();
            for (k, v) in members {
                out.insert(k.clone(), permute(v, seed.rotate_left(7) ^ 0x9e37));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| permute(i, seed)).collect()),
        other => other.clone(),
    }
}

/// Paths to every leaf of `v`, as (object key or array index) steps.
fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                path.push(k.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, step| match v {
        Value::Object(map) => map.get_mut(step).unwrap(),
        Value::Array(items) => &mut items[step.parse::<usize>().unwrap()],
        _ => unreachable!(),
    })
}

/// A value different from `v` (and of a different canonical text).
fn changed(v: &Value) -> Value {
    match v {
        Value::Null => json!(false),
        Value::Bool(b) => json!(!b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => json!(i.wrapping_add(1)),
            None => json!("not a number"),
        },
        Value::String(s) => json!(format!("{s}x")),
        Value::Array(_) => json!([null, null, null, null, null, null, null]),
        Value::Object(_) => json!({"\u{0}changed": true}),
    }
}

proptest! {
    #[test]
    fn hash_is_stable_under_key_permutation(v in json_value(), seed in any::<u64>()) {
        let p = permute(&v, seed);
        prop_assert_eq!(definition_hash(&v), definition_hash(&p));
        prop_assert_eq!(canonical_bytes(&v), canonical_bytes(&p));
    }

    #[test]
    fn hash_changes_with_any_leaf_value(v in json_value(), pick in any::<prop::sample::Index>()) {
        let mut paths = vec![];
        leaves(&v, &mut vec![], &mut paths);
        let path = pick.get(&paths).clone();
        let mut w = v.clone();
        let slot = at(&mut w, &path);
        *slot = changed(slot);
        prop_assert_ne!(definition_hash(&v), definition_hash(&w));
    }

    #[test]
    fn hash_changes_when_a_member_is_added_or_a_key_renamed(
        v in prop::collection::btree_map("[a-z]{1,4}", json_value(), 1..5),
        pick in any::<prop::sample::Index>(),
    ) {
        let v = Value::Object(v.into_iter().collect());
        let Value::Object(map) = &v else { unreachable!() };
        let keys: Vec<&String> = map.keys().collect();
        let key = pick.get(&keys);
        let mut renamed = map.clone();
        let moved = renamed.remove(key.as_str()).unwrap();
        renamed.insert(format!("{key}_"), moved);
        prop_assert_ne!(definition_hash(&v), definition_hash(&Value::Object(renamed)));
        let mut added = map.clone();
        added.insert("~extra".into(), Value::Null);
        prop_assert_ne!(definition_hash(&v), definition_hash(&Value::Object(added)));
    }

    #[test]
    fn canonical_bytes_parse_back_to_the_same_value(v in json_value()) {
        let bytes = canonical_bytes(&v);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(canonical_bytes(&back), bytes);
    }
}
