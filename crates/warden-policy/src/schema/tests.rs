use serde_json::json;

use super::*;

fn guard() -> SchemaGuard {
    SchemaGuard::new(SchemaLimits {
        max_bytes: 4096,
        max_depth: 8,
    })
}

fn tool(schema: Value) -> Value {
    json!({"name": "t", "inputSchema": schema})
}

#[test]
fn accepts_valid_and_names_the_failing_field() {
    // Proves: API-1
    let g = guard();
    let t = tool(json!({
        "type": "object",
        "properties": {"path": {"type": "string"}, "n": {"type": "integer", "maximum": 5}},
        "required": ["path"],
        "additionalProperties": false
    }));
    assert!(g.validate(&t, Some(&json!({"path": "a", "n": 3}))).is_ok());
    let (msg, _) = g.validate(&t, Some(&json!({"path": 7}))).unwrap_err();
    assert!(msg.contains("argument `path`"), "{msg}");
    let (msg, _) = g
        .validate(&t, Some(&json!({"path": "a", "n": 9})))
        .unwrap_err();
    assert!(msg.contains("argument `n`"), "{msg}");
    let (msg, _) = g.validate(&t, None).unwrap_err();
    assert!(msg.contains("\"path\" is a required property"), "{msg}");
    let (msg, _) = g
        .validate(&t, Some(&json!({"path": "a", "extra": 1})))
        .unwrap_err();
    assert!(msg.contains("extra"), "{msg}");
    let (msg, _) = g.validate(&t, Some(&json!([1]))).unwrap_err();
    assert!(msg.contains("expected an object"), "{msg}");
}

#[test]
fn draft_07_and_2020_12_keywords() {
    let g = guard();
    // draft-07 tuple form: `items` as an array.
    let d7 = tool(json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}}
    }));
    assert!(g.validate(&d7, Some(&json!({"pair": ["a", 1]}))).is_ok());
    assert!(g.validate(&d7, Some(&json!({"pair": [1, "a"]}))).is_err());
    // 2020-12 tuple form: `prefixItems`.
    let d2020 = tool(json!({
        "type": "object",
        "properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}}
    }));
    assert!(g.validate(&d2020, Some(&json!({"pair": ["a", 1]}))).is_ok());
    assert!(
        g.validate(&d2020, Some(&json!({"pair": [1, "a"]})))
            .is_err()
    );
}

#[test]
fn remote_refs_are_never_fetched() {
    let g = guard();
    let t = tool(json!({
        "type": "object",
        "properties": {"x": {"$ref": "http://127.0.0.1:9/schema.json"}}
    }));
    let (msg, detail) = g.validate(&t, Some(&json!({"x": 1}))).unwrap_err();
    assert!(msg.contains("not accepted"), "{msg}");
    assert!(detail.contains("does not compile"), "{detail}");
}

#[test]
fn oversized_and_overdeep_schemas_are_refused() {
    let g = guard();
    let big = tool(json!({"type": "object", "description": "x".repeat(5000)}));
    assert!(
        g.validate(&big, Some(&json!({})))
            .unwrap_err()
            .1
            .contains("bytes")
    );
    let mut deep = json!({"type": "object"});
    for _ in 0..10 {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    assert!(
        g.validate(&tool(deep), Some(&json!({})))
            .unwrap_err()
            .1
            .contains("nests")
    );
}

#[test]
fn patterns_run_in_linear_time_engines() {
    let g = guard();
    // A catastrophic-backtracking pattern for backtracking engines; the regex crate refuses
    // look-around and backreferences and runs the rest in linear time.
    let t = tool(
        json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}),
    );
    let evil = format!("{}b", "a".repeat(4096));
    assert!(g.validate(&t, Some(&json!({"s": evil}))).is_err());
}

#[test]
fn validators_are_cached_by_schema_text() {
    let g = guard();
    let t = tool(json!({"type": "object"}));
    let a = g.validator(&t["inputSchema"]).unwrap();
    let b = g.validator(&t["inputSchema"]).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let other = g
        .validator(&json!({"type": "object", "required": ["x"]}))
        .unwrap();
    assert!(!Arc::ptr_eq(&a, &other));
}

#[test]
fn a_listed_definition_finds_its_validator_by_identity_and_only_while_alive() {
    let g = guard();
    let def = Arc::new(tool(json!({"type": "object", "required": ["x"]})));
    assert!(g.validate_listed(&def, Some(&json!({"x": 1}))).is_ok());
    assert!(g.validate_listed(&def, Some(&json!({}))).is_err());
    // A new definition (even at a reused address) is validated by its own schema.
    drop(def);
    let other = Arc::new(tool(json!({"type": "object"})));
    assert!(g.validate_listed(&other, Some(&json!({}))).is_ok());
}
