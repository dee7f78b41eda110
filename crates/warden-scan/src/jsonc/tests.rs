use proptest::prelude::*;

use super::*;

#[test]
fn reads_comments_trailing_commas_and_spans() {
    let text = "// settings\n{\n  \"a\": [1, \"x\", ], /* c */\n  \"b\": {\"c\": true,},\n}\n";
    let n = parse(text).unwrap();
    let a = n.get("a").unwrap();
    assert_eq!(&text[a.span()], "[1, \"x\", ]");
    assert_eq!(
        n.get("b").unwrap().get("c").unwrap().to_value(),
        serde_json::json!(true)
    );
    assert_eq!(
        n.to_value(),
        serde_json::json!({"a": [1, "x"], "b": {"c": true}})
    );
}

#[test]
fn errors_name_line_and_column() {
    let e = parse("{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
    assert_eq!((e.line, e.column), (3, 3), "{e}");
    assert!(parse("{\"a\": tru}").is_err());
    assert!(parse("{\"a\": \"x").is_err());
    assert!(parse("/* open").is_err());
    assert!(parse("{} x").is_err());
    assert!(parse(&"[".repeat(MAX_DEPTH + 2)).is_err());
}

#[test]
fn decodes_escapes_in_keys_and_strings() {
    let n = parse(r#"{"k\u0065y": "a\"b\\c"}"#).unwrap();
    assert_eq!(n.get("key").unwrap().as_str(), Some("a\"b\\c"));
}

proptest! {
    /// Plain JSON reads the same as serde_json reads it, and every span is in bounds.
    #[test]
    fn agrees_with_serde_json(v in arb_json()) {
        let text = serde_json::to_string_pretty(&v).unwrap();
        let n = parse(&text).unwrap();
        prop_assert_eq!(n.to_value(), v);
        prop_assert_eq!(n.span(), 0..text.len());
    }

    /// Nothing panics on arbitrary input.
    #[test]
    fn never_panics(s in "\\PC{0,200}") {
        let _ = parse(&s);
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i32>().prop_map(|n| serde_json::json!(n)),
        "\\PC{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z\"\\\\]{0,6}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
