use serde_json::{Value, json};

use super::*;

fn schema(properties: Value) -> Value {
    json!({"type": "object", "properties": properties})
}

fn headers(found: &[ParamHeader]) -> Vec<(&str, Vec<&str>)> {
    found
        .iter()
        .map(|p| {
            (
                p.header.as_str(),
                p.path.iter().map(String::as_str).collect(),
            )
        })
        .collect()
}

#[test]
fn finds_top_level_and_nested_annotations() {
    let s = schema(json!({
        "region": {"type": "string", "x-mcp-header": "Region"},
        "priority": {"type": "integer", "x-mcp-header": "Priority"},
        "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
        "query": {"type": "string"},
        "target": {"type": "object", "properties": {
            "zone": {"type": "string", "x-mcp-header": "Zone"}
        }},
        // A standard header's name is fine: it becomes Mcp-Param-Method.
        "method_val": {"type": "string", "x-mcp-header": "Method"}
    }));
    let found = param_headers(&s).unwrap();
    let mut got = headers(&found);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("Method", vec!["method_val"]),
            ("Priority", vec!["priority"]),
            ("Region", vec!["region"]),
            ("Verbose", vec!["verbose"]),
            ("Zone", vec!["target", "zone"]),
        ]
    );
}

#[test]
fn a_schema_without_annotations_has_none() {
    assert!(
        param_headers(&schema(json!({"q": {"type": "string"}})))
            .unwrap()
            .is_empty()
    );
    assert!(
        param_headers(&json!({"type": "object"}))
            .unwrap()
            .is_empty()
    );
    assert!(param_headers(&json!(true)).unwrap().is_empty());
    // A property *named* x-mcp-header is not an annotation.
    let s = schema(json!({"x-mcp-header": {"type": "string"}}));
    assert!(param_headers(&s).unwrap().is_empty());
}

/// The invalid definitions of the SEP-2243 test-case table (as served by the conformance
/// suite's `http-invalid-tool-headers` scenario), plus the reachability rule of 2026-07-28.
#[test]
fn rejects_every_invalid_annotation_of_the_sep_2243_table() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "empty",
            schema(json!({"value": {"type": "string", "x-mcp-header": ""}})),
        ),
        (
            "not a string",
            schema(json!({"value": {"type": "string", "x-mcp-header": 7}})),
        ),
        (
            "object",
            schema(json!({"data": {"type": "object", "x-mcp-header": "Data"}})),
        ),
        (
            "array",
            schema(
                json!({"items": {"type": "array", "items": {"type": "string"}, "x-mcp-header": "Items"}}),
            ),
        ),
        (
            "null",
            schema(json!({"nil": {"type": "null", "x-mcp-header": "Nil"}})),
        ),
        (
            "number",
            schema(json!({"score": {"type": "number", "x-mcp-header": "Score"}})),
        ),
        (
            "no type",
            schema(json!({"value": {"x-mcp-header": "Value"}})),
        ),
        (
            "type list",
            schema(json!({"value": {"type": ["string", "null"], "x-mcp-header": "Value"}})),
        ),
        (
            "duplicate, same case",
            schema(json!({
                "field1": {"type": "string", "x-mcp-header": "Region"},
                "field2": {"type": "string", "x-mcp-header": "Region"}
            })),
        ),
        (
            "duplicate, different case",
            schema(json!({
                "field1": {"type": "string", "x-mcp-header": "MyField"},
                "field2": {"type": "string", "x-mcp-header": "myfield"}
            })),
        ),
        (
            "space",
            schema(json!({"value": {"type": "string", "x-mcp-header": "My Region"}})),
        ),
        (
            "colon",
            schema(json!({"value": {"type": "string", "x-mcp-header": "Region:Primary"}})),
        ),
        (
            "non-ascii",
            schema(json!({"value": {"type": "string", "x-mcp-header": "Région"}})),
        ),
        (
            "control character",
            schema(json!({"value": {"type": "string", "x-mcp-header": "Region\t1"}})),
        ),
        (
            "newline",
            schema(json!({"value": {"type": "string", "x-mcp-header": "Region\r\nX-Evil: 1"}})),
        ),
        (
            "on the root",
            json!({"type": "object", "x-mcp-header": "Root"}),
        ),
        (
            "under items",
            schema(json!({"list": {"type": "array", "items": {
                "type": "object", "properties": {"r": {"type": "string", "x-mcp-header": "R"}}
            }}})),
        ),
        (
            "under oneOf",
            json!({"type": "object", "oneOf": [{"properties": {
                "r": {"type": "string", "x-mcp-header": "R"}
            }}]}),
        ),
        (
            "under $defs",
            json!({"type": "object", "properties": {"r": {"$ref": "#/$defs/r"}},
                   "$defs": {"r": {"type": "string", "x-mcp-header": "R"}}}),
        ),
        (
            "under additionalProperties",
            json!({"type": "object", "additionalProperties": {"type": "string", "x-mcp-header": "R"}}),
        ),
        (
            "under if/then",
            json!({"type": "object", "if": {"properties": {"a": {"type": "string"}}},
                   "then": {"properties": {"r": {"type": "string", "x-mcp-header": "R"}}}}),
        ),
        (
            "properties below an unreachable keyword stay unreachable",
            json!({"type": "object", "not": {"properties": {"o": {"type": "object", "properties": {
                "r": {"type": "string", "x-mcp-header": "R"}
            }}}}}),
        ),
    ];
    for (what, s) in cases {
        assert!(param_headers(&s).is_err(), "{what} must be rejected");
    }
}

#[test]
fn names_the_fault() {
    let dup = schema(json!({
        "a": {"type": "string", "x-mcp-header": "Region"},
        "b": {"type": "string", "x-mcp-header": "REGION"}
    }));
    assert!(matches!(
        param_headers(&dup),
        Err(AnnotationError::Duplicate { .. })
    ));
    let number = schema(json!({"s": {"type": "number", "x-mcp-header": "Score"}}));
    assert_eq!(
        param_headers(&number).unwrap_err().to_string(),
        "x-mcp-header \"Score\" at `s` is on a property of type number"
    );
    let root = json!({"type": "object", "x-mcp-header": "Root"});
    assert_eq!(
        param_headers(&root).unwrap_err(),
        AnnotationError::Unreachable {
            path: "<root>".into()
        }
    );
}

/// `{key: inner}` without `json!`, whose interpolation re-serializes `inner` recursively.
fn wrap(key: &str, inner: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.to_owned(), inner);
    Value::Object(m)
}

#[test]
fn refuses_schemas_nested_beyond_the_limit() {
    let mut s = json!({"type": "string", "x-mcp-header": "Deep"});
    for _ in 0..200 {
        let mut o = wrap("properties", wrap("n", s));
        o["type"] = json!("object");
        s = o;
    }
    assert_eq!(param_headers(&s), Err(AnnotationError::TooDeep));
    let mut s = json!({"type": "string"});
    for _ in 0..10_000 {
        s = wrap("not", s);
    }
    assert_eq!(param_headers(&s), Err(AnnotationError::TooDeep));
    // Dropping a Value recurses too: unwind this one iteratively.
    let mut next = Some(s);
    while let Some(Value::Object(mut o)) = next.take() {
        next = o.remove("not");
    }
}

#[test]
fn tool_params_skip_tools_without_or_with_invalid_annotations() {
    let tools = vec![
        json!({"name": "annotated", "inputSchema": schema(json!({
            "region": {"type": "string", "x-mcp-header": "Region"}
        }))}),
        json!({"name": "plain", "inputSchema": schema(json!({"q": {"type": "string"}}))}),
        json!({"name": "invalid", "inputSchema": schema(json!({
            "score": {"type": "number", "x-mcp-header": "Score"}
        }))}),
        json!({"name": "no_schema"}),
        json!({"inputSchema": schema(json!({"r": {"type": "string", "x-mcp-header": "R"}}))}),
    ];
    let params = ToolParams::from_tools("up", &tools);
    let found = params.get("annotated").unwrap();
    assert_eq!(
        &*found,
        &[ParamHeader {
            header: "Region".into(),
            path: vec!["region".into()]
        }]
    );
    for name in ["plain", "invalid", "no_schema", "missing"] {
        assert!(params.get(name).is_none(), "{name}");
    }
}

#[test]
fn tokens_follow_rfc_9110() {
    for ok in ["Region", "x", "A1-b_c.d~e!#$%&'*+^`|"] {
        assert!(is_token(ok), "{ok}");
    }
    for bad in [
        "", "a b", "a:b", "a\tb", "é", "a/b", "a(b)", "a\"b", "a,b", "a;b", "a=b",
    ] {
        assert!(!is_token(bad), "{bad}");
    }
}

#[test]
fn mirrors_annotated_arguments_as_a_client_must() {
    let mapping = vec![
        ParamHeader {
            header: "Region".into(),
            path: vec!["region".into()],
        },
        ParamHeader {
            header: "Priority".into(),
            path: vec!["priority".into()],
        },
        ParamHeader {
            header: "Verbose".into(),
            path: vec!["opts".into(), "verbose".into()],
        },
        ParamHeader {
            header: "Note".into(),
            path: vec!["note".into()],
        },
        ParamHeader {
            header: "Missing".into(),
            path: vec!["absent".into()],
        },
    ];
    let args = json!({"region": "eu-west", "priority": 7, "opts": {"verbose": true}, "note": "café\n", "absent": null});
    let got: Vec<(String, String)> = mirror_headers(&mapping, Some(&args))
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(got[0], ("mcp-param-region".into(), "eu-west".into()));
    assert_eq!(got[1], ("mcp-param-priority".into(), "7".into()));
    assert_eq!(got[2], ("mcp-param-verbose".into(), "true".into()));
    assert_eq!(got[3].0, "mcp-param-note");
    assert!(
        got[3].1.starts_with("=?base64?"),
        "unsafe text is Base64-wrapped: {}",
        got[3].1
    );
    assert_eq!(got.len(), 4, "null and absent arguments get no header");
    assert!(mirror_headers(&mapping, None).is_empty());
}

#[test]
fn tools_with_invalid_annotations_are_recognised() {
    let bad = json!({"name": "t", "inputSchema": {"type": "object", "properties": {"a": {"type": "string", "x-mcp-header": "My Region"}}}});
    let good = json!({"name": "t", "inputSchema": {"type": "object", "properties": {"a": {"type": "string", "x-mcp-header": "Region"}}}});
    assert!(has_invalid_annotations(&bad));
    assert!(!has_invalid_annotations(&good));
    assert!(!has_invalid_annotations(&json!({"name": "no-schema"})));
}
