use super::*;
use proptest::prelude::*;

fn lim() -> Limits {
    Limits::default()
}

#[test]
fn rejects_duplicate_keys_at_any_depth() {
    let err = parse_value(br#"{"name":"safe","name":"evil"}"#, &lim()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::DuplicateKey {
            key: "\"name\"".into()
        }
    );
    let err = parse_value(br#"{"a":{"b":[{"x":1,"x":1}]}}"#, &lim()).unwrap_err();
    assert!(matches!(err, DecodeError::DuplicateKey { .. }), "{err:?}");
}

#[test]
fn rejects_duplicate_keys_spelled_with_escapes() {
    // "\u006eame" decodes to "name": a first-wins server would see another value.
    let err = parse_value(br#"{"name":"a","\u006eame":"b"}"#, &lim()).unwrap_err();
    assert!(matches!(err, DecodeError::DuplicateKey { .. }), "{err:?}");
}

#[test]
fn rejects_invalid_utf8() {
    let err = parse_value(b"{\"a\":\"\xff\xfe\"}", &lim()).unwrap_err();
    assert!(matches!(err, DecodeError::Syntax { .. }), "{err:?}");
}

#[test]
fn rejects_lone_surrogate_escape() {
    let err = parse_value(br#"{"a":"\ud800"}"#, &lim()).unwrap_err();
    assert!(matches!(err, DecodeError::Syntax { .. }), "{err:?}");
}

#[test]
fn enforces_depth_limit_exactly() {
    let limits = Limits {
        max_depth: 3,
        ..lim()
    };
    assert!(parse_value(b"[[[1]]]", &limits).is_ok());
    assert_eq!(
        parse_value(b"[[[[1]]]]", &limits).unwrap_err(),
        DecodeError::TooDeep
    );
    assert_eq!(
        parse_value(br#"{"a":{"b":{"c":{}}}}"#, &limits).unwrap_err(),
        DecodeError::TooDeep
    );
}

#[test]
fn deep_nesting_far_beyond_limit_does_not_overflow_the_stack() {
    let mut deep = "[".repeat(1_000_000);
    deep.push_str(&"]".repeat(1_000_000));
    let err = parse_value(deep.as_bytes(), &lim()).unwrap_err();
    assert_eq!(err, DecodeError::TooDeep);
}

#[test]
fn enforces_size_limit_before_parsing() {
    let limits = Limits {
        max_message_bytes: 8,
        ..lim()
    };
    assert!(matches!(
        parse_value(b"\"123456789\"", &limits).unwrap_err(),
        DecodeError::TooLarge { size: 11, limit: 8 }
    ));
}

#[test]
fn rejects_trailing_garbage_and_truncation() {
    assert!(parse_value(br#"{"a":1} x"#, &lim()).is_err());
    assert!(parse_value(br#"{"a":1"#, &lim()).is_err());
    assert!(parse_value(b"", &lim()).is_err());
}

#[test]
fn keeps_key_order() {
    let v = parse_value(br#"{"z":1,"a":2,"m":3}"#, &lim()).unwrap();
    assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"z":1,"a":2,"m":3}"#);
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_value(&bytes, &lim());
    }

    #[test]
    fn agrees_with_serde_json_when_no_duplicates(v in arb_json()) {
        let text = serde_json::to_vec(&v).unwrap();
        let parsed = parse_value(&text, &Limits { max_depth: 1000, ..lim() }).unwrap();
        prop_assert_eq!(parsed, v);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z\\u{80}-\\u{10FFFF}\"\\\\]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
