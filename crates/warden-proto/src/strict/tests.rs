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

/// `decode` and `decode_lazy` must accept and refuse exactly the same input, with the same
/// error, kind, id and method, and the lazily parsed value must be the eager one.
fn assert_same_decode(bytes: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    let eager = decode(bytes::Bytes::copy_from_slice(bytes), limits);
    let lazy = decode_lazy(bytes::Bytes::copy_from_slice(bytes), limits);
    match (eager, lazy) {
        (Ok(e), Ok(l)) => {
            prop_assert!(!l.is_parsed());
            prop_assert_eq!(e.kind(), l.kind());
            prop_assert_eq!(e.id(), l.id());
            prop_assert_eq!(e.method(), l.method());
            prop_assert!(!l.is_parsed(), "kind, id and method need no parse");
            prop_assert_eq!(e.value(), l.value());
            prop_assert_eq!(e.bytes(), l.bytes());
        }
        (Err(e), Err(l)) => prop_assert_eq!(e, l),
        (e, l) => prop_assert!(false, "eager {:?} but lazy {:?}", e, l),
    }
    Ok(())
}

#[test]
fn lazy_decode_refuses_what_decode_refuses() {
    let cases: &[&[u8]] = &[
        br#"{"jsonrpc":"2.0","id":1,"result":{"a":1,"a":2}}"#,
        br#"{"jsonrpc":"2.0","id":1,"result":{"a":1,"\u0061":2}}"#,
        br#"{"jsonrpc":"2.0","id":1,"id":2,"result":{}}"#,
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"\xff\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"\xff\":1}}",
        br#"{"jsonrpc":"2.0","id":1,"result":"\ud800"}"#,
        br#"{"jsonrpc":"2.0","id":1,"result":1e999}"#,
        br#"{"jsonrpc":"2.0","id":1,"result":{}} x"#,
        br#"{"jsonrpc":"2.0","id":1,"result":{}"#,
        br#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#,
        br#""text""#,
        br#"{"jsonrpc":"1.0","id":1,"result":{}}"#,
        br#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
        br#"{"jsonrpc":"2.0","id":[1],"method":"x"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"x","params":null}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"x","result":1}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}"#,
        br#"{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}"#,
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m"}}"#,
        br#"{"jsonrpc":"2.0"}"#,
        br#"{"jsonrpc":"2.0","id":1.0,"result":{}}"#,
        br#"{"jsonrpc":"2.0","id":18446744073709551615,"result":{}}"#,
        br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x"}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
    ];
    for case in cases {
        assert_same_decode(case, &lim()).unwrap();
    }
    // Depth: the limit itself passes, one more is refused, in both.
    for depth in [63, 64, 65] {
        let mut text = String::from(r#"{"jsonrpc":"2.0","id":1,"result":"#);
        text.push_str(&"[".repeat(depth - 1));
        text.push_str(&"]".repeat(depth - 1));
        text.push('}');
        assert_same_decode(text.as_bytes(), &lim()).unwrap();
    }
    // Size.
    let small = Limits {
        max_message_bytes: 10,
        ..lim()
    };
    assert_same_decode(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, &small).unwrap();
}

#[test]
fn lazy_decode_checks_duplicates_beyond_the_linear_scan() {
    let mut text = String::from(r#"{"jsonrpc":"2.0","id":1,"result":{"#);
    for i in 0..40 {
        text.push_str(&format!(r#""k{i}":{i},"#));
    }
    text.push_str(r#""k3":0}}"#);
    let err = decode_lazy(bytes::Bytes::from(text), &lim()).unwrap_err();
    assert!(matches!(err, DecodeError::DuplicateKey { .. }), "{err:?}");
}

proptest! {
    #[test]
    fn lazy_decode_agrees_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        assert_same_decode(&bytes, &lim())?;
    }

    #[test]
    fn lazy_decode_agrees_on_messages(
        v in arb_json(),
        id in prop_oneof![Just(json_id(1)), Just(Value::from("x")), Just(Value::Null)],
        member in prop_oneof![Just("result"), Just("params"), Just("error"), Just("method")],
        depth in 1usize..8,
    ) {
        let mut m = serde_json::Map::new();
        m.insert("jsonrpc".into(), Value::from("2.0"));
        m.insert("id".into(), id);
        m.insert(member.into(), v.clone());
        if member == "params" {
            m.insert("method".into(), Value::from("tools/call"));
        }
        let text = serde_json::to_vec(&Value::Object(m)).unwrap();
        assert_same_decode(&text, &Limits { max_depth: depth, ..lim() })?;
        assert_same_decode(&text, &lim())?;
    }
}

fn json_id(n: u64) -> Value {
    Value::from(n)
}

/// Bytes a mutation writes: JSON's structural characters, escapes, digits and number signs,
/// whitespace (valid and not), control characters and non-ASCII (valid and not).
const MUTATION_BYTES: &[u8] =
    b"\"\\{}[],:0123456789eE.+-tfnlu \t\n\r\x0c\x00\x1f\x7f\xc3\xa9\xed\xa0\x80\xff/bx";

fn mutate(text: &mut Vec<u8>, edits: &[(usize, u8, u8)]) {
    for &(at, op, b) in edits {
        let b = MUTATION_BYTES[usize::from(b) % MUTATION_BYTES.len()];
        let at = if text.is_empty() { 0 } else { at % text.len() };
        match op % 3 {
            0 if !text.is_empty() => text[at] = b,
            1 => text.insert(at, b),
            _ if !text.is_empty() => {
                text.remove(at);
            }
            _ => text.push(b),
        }
    }
}

fn message_text(v: Value, member: &str) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("id".into(), json_id(7));
    if member == "params" {
        m.insert("method".into(), Value::from("tools/call"));
    }
    m.insert(member.into(), v);
    serde_json::to_vec(&Value::Object(m)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Nearly valid messages are where the byte-level skim and the serde path could disagree:
    /// the skim must never accept what the serde path refuses (nor refuse what it accepts).
    #[test]
    fn lazy_decode_agrees_on_mutated_messages(
        v in arb_json(),
        member in prop_oneof![Just("result"), Just("params"), Just("error")],
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
        depth in prop_oneof![Just(3usize), Just(64)],
    ) {
        let mut text = message_text(v, member);
        mutate(&mut text, &edits);
        assert_same_decode(&text, &Limits { max_depth: depth, ..lim() })?;
    }

    /// The skim vouches for every valid message it can judge (keys without escapes): the fast
    /// path is taken, not just correct when declined.
    #[test]
    fn the_skim_accepts_valid_messages(v in arb_json(), depth in 1usize..8) {
        let text = message_text(v, "result");
        let valid = parse_value(&text, &Limits { max_depth: depth, ..lim() }).is_ok();
        prop_assert_eq!(super::skim::skim(&text, depth).is_some(), valid);
    }
}

#[test]
fn lazy_decode_agrees_on_numbers_escapes_and_whitespace() {
    let values: &[&str] = &[
        "0",
        "-0",
        "01",
        "-01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "1E-2",
        "1.5e3",
        "0.0",
        "123456789012345678",
        "1234567890123456789",
        "12345678901234567890",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "1e308",
        "1e309",
        "-1e309",
        "1e-400",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "17976931348623159000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "true",
        "tru",
        "truee",
        "nul",
        "null ",
        "falsе",
        r#""a\"b""#,
        r#""\/\b\f\n\r\t""#,
        r#""\u0041""#,
        r#""\u00""#,
        r#""\uZZZZ""#,
        r#""\x""#,
        r#""\ud83d\ude00""#,
        r#""\ud83d""#,
        r#""\ude00""#,
        r#""\ud83dx""#,
        "\"\u{7f}\"",
        "\"tab\there\"",
        "\"nl\nhere\"",
        "\"\u{0}\"",
        "\"é\"",
        "\"\u{10FFFF}\"",
        "[1,2]",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{}",
        "{,}",
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{"a":1 "b":2}"#,
        r#"{1:2}"#,
        "[\t1\r\n]",
        "[\x0c1]",
        "[1]\x0c",
    ];
    // Integers too long for a u64 are floats to serde_json; beyond f64's range, refused.
    let long = [
        format!("1{}", "0".repeat(307)),
        format!("1{}", "0".repeat(308)),
        format!("-1{}", "0".repeat(400)),
    ];
    for v in values
        .iter()
        .copied()
        .chain(long.iter().map(String::as_str))
    {
        for member in [
            "result", "params", "id", "error", "jsonrpc", "method", "other",
        ] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"m","{member}":{v}}}"#);
            assert_same_decode(text.as_bytes(), &lim()).unwrap();
        }
    }
    let whole: &[&[u8]] = &[
        b"",
        b" ",
        b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"method\":\"m\"}",
        b" \t\r\n{\"jsonrpc\":\"2.0\",\"method\":\"m\"} \n",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"m\"}{}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"m\"}\x00",
        br#"{"jsonrpc":"2.0","method":"m","a":1,"\u0061":2}"#,
        br#"{"jsonrpc":"2.0","method":"m","\u0061":1,"a":2}"#,
        br#"{"json\u0072pc":"2.0","method":"m"}"#,
        br#"{"jsonrpc":"2.0","method":"m","jsonrpc":"2.0"}"#,
    ];
    for text in whole {
        assert_same_decode(text, &lim()).unwrap();
    }
}

#[test]
fn lazy_decode_agrees_at_serde_jsons_own_recursion_limit() {
    let deep = Limits {
        max_depth: 200,
        ..lim()
    };
    for depth in 120..=132 {
        let mut text = String::from(r#"{"jsonrpc":"2.0","id":1,"result":"#);
        text.push_str(&"[".repeat(depth - 1));
        text.push_str(&"]".repeat(depth - 1));
        text.push('}');
        assert_same_decode(text.as_bytes(), &deep).unwrap();
        assert_same_decode(text.as_bytes(), &lim()).unwrap();
    }
}

#[test]
fn duplicate_keys_beyond_the_skims_linear_scan_are_refused() {
    for n in [7, 8, 9, 15, 16, 17, 40] {
        let mut text = String::from(r#"{"jsonrpc":"2.0","id":1,"result":{"#);
        for i in 0..n {
            text.push_str(&format!(r#""k{i}":{i},"#));
        }
        text.push_str(r#""k0":0}}"#);
        assert_same_decode(text.as_bytes(), &lim()).unwrap();
        let err = decode_lazy(bytes::Bytes::from(text), &lim()).unwrap_err();
        assert!(matches!(err, DecodeError::DuplicateKey { .. }), "{err:?}");
    }
}
