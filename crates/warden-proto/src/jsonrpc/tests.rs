use super::*;
use crate::{Limits, decode};
use proptest::prelude::*;

fn msg(text: &str) -> Result<Message, DecodeError> {
    decode(Bytes::copy_from_slice(text.as_bytes()), &Limits::default())
}

#[test]
fn classifies_the_four_kinds() {
    assert_eq!(
        msg(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .unwrap()
            .kind(),
        &Kind::Request
    );
    assert_eq!(
        msg(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .unwrap()
            .kind(),
        &Kind::Notification
    );
    assert_eq!(
        msg(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#)
            .unwrap()
            .kind(),
        &Kind::Response
    );
    assert_eq!(
        msg(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#)
            .unwrap()
            .kind(),
        &Kind::Error
    );
}

#[test]
fn rejects_invalid_envelopes_with_invalid_request() {
    for bad in [
        r#"[]"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
        r#"42"#,
        r#"{"id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#,
        r#"{"jsonrpc":"2.0","result":{}}"#,
    ] {
        let err = msg(bad).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::InvalidRequest, "{bad}: {err}");
    }
}

#[test]
fn invalid_request_echoes_a_usable_id() {
    let err = msg(r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#).unwrap_err();
    assert_eq!(err.to_response()["id"], 7);
    let err = msg(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#).unwrap_err();
    assert_eq!(err.to_response()["id"], Value::Null);
}

#[test]
fn parse_errors_use_minus_32700() {
    let err = msg(r#"{"jsonrpc":"2.0","#).unwrap_err();
    assert_eq!(err.to_response()["error"]["code"], -32700);
}

#[test]
fn with_id_changes_only_the_id_bytes() {
    let text = r#"{ "jsonrpc":"2.0", "method":"tools/call","params":{"id":5,"x":1.50},"id" : "abc" , "z":[1]}"#;
    let m = msg(text).unwrap();
    let re = m.with_id(&Id::from(99));
    assert_eq!(
        std::str::from_utf8(re.bytes()).unwrap(),
        r#"{ "jsonrpc":"2.0", "method":"tools/call","params":{"id":5,"x":1.50},"id" : 99 , "z":[1]}"#
    );
    assert_eq!(re.id(), Some(&Id::from(99)));
    assert_eq!(re.value()["id"], 99);
    assert_eq!(re.value()["params"]["id"], 5);
}

#[test]
fn with_id_finds_an_escaped_id_key() {
    let m = msg(r#"{"jsonrpc":"2.0","\u0069d":1,"method":"ping"}"#).unwrap();
    let re = m.with_id(&Id::String("s".into()));
    assert_eq!(
        std::str::from_utf8(re.bytes()).unwrap(),
        r#"{"jsonrpc":"2.0","\u0069d":"s","method":"ping"}"#
    );
}

#[test]
fn ids_beyond_64_bits_keep_their_spelling() {
    // Found by fuzzing (docs/fuzzing.md, J2): two such ids must stay distinct.
    let a =
        msg(r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#).unwrap();
    let b =
        msg(r#"{"jsonrpc":"2.0","id":123456789012345678901234567891,"method":"ping"}"#).unwrap();
    assert_eq!(a.id().unwrap().to_json(), "123456789012345678901234567890");
    assert_ne!(a.id(), b.id());
}

#[test]
fn ids_keep_their_spelling() {
    let m = msg(r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"ping"}"#).unwrap();
    assert_eq!(m.id().unwrap().to_json(), "18446744073709551615");
    let m = msg(r#"{"jsonrpc":"2.0","id":"x\"y","method":"ping"}"#).unwrap();
    assert_eq!(m.id().unwrap().to_json(), r#""x\"y""#);
}

#[test]
fn numeric_ids_keep_their_spelling_however_decoded() {
    // Integers skip the look at the bytes (their text is canonical); the rest are read there.
    for text in [
        "0",
        "7",
        "-7",
        "-0",
        "-0.0",
        "1.0",
        "1e3",
        "1E3",
        "-1e-3",
        "100",
        "9223372036854775807",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
    ] {
        for bytes in [
            format!(r#"{{"jsonrpc":"2.0","id":{text},"method":"ping"}}"#),
            format!(r#"{{"method":"ping", "id" : {text} ,"jsonrpc":"2.0"}}"#),
            format!(r#"{{"jsonrpc":"2.0","id":{text},"result":{{}}}}"#),
        ] {
            let bytes = Bytes::from(bytes);
            let eager = decode(bytes.clone(), &Limits::default()).unwrap();
            let lazy = crate::decode_lazy(bytes, &Limits::default()).unwrap();
            for m in [&eager, &lazy] {
                assert_eq!(m.id().unwrap().to_json(), text, "{m:?}");
                let back = m.with_id(&Id::String("s".into())).with_id(m.id().unwrap());
                assert_eq!(back.bytes(), m.bytes());
            }
        }
    }
}

proptest! {
    #[test]
    fn into_with_id_equals_with_id(old in any::<i64>(), new in "[a-z0-9]{1,8}") {
        let m = msg(&format!(r#"{{"jsonrpc":"2.0","id":{old},"result":{{"x":[1,2]}}}}"#)).unwrap();
        let id = Id::String(new.as_str().into());
        let a = m.with_id(&id);
        let b = m.into_with_id(&id);
        prop_assert_eq!(a.bytes(), b.bytes());
        prop_assert_eq!(a.value(), b.value());
        prop_assert_eq!(a.id(), b.id());
    }

    #[test]
    fn with_id_round_trips(key in "[a-z]{1,6}".prop_filter("params already has an `id`", |k| k != "id"), val in "[a-z0-9 ]{0,12}", old in any::<i64>(), new in any::<u64>()) {
        let text = format!(r#"{{"jsonrpc":"2.0","params":{{"{key}":"{val}","id":[1,{{"id":2}}]}},"id":{old},"method":"m"}}"#);
        let m = msg(&text).unwrap();
        let re = m.with_id(&Id::from(new));
        let reparsed = msg(std::str::from_utf8(re.bytes()).unwrap()).unwrap();
        prop_assert_eq!(reparsed.value(), re.value());
        prop_assert_eq!(&reparsed.value()["params"], &m.value()["params"]);
        prop_assert_eq!(reparsed.id(), Some(&Id::from(new)));
    }
}

mod recovery {
    use super::super::{Recovered, recover_response_id};
    use crate::Id;
    use proptest::prelude::*;

    fn response(id: Option<Id>) -> Recovered {
        Recovered::Response(id)
    }

    #[test]
    fn reads_the_id_of_refused_responses() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":"deep","result":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(
            recover_response_id(deep.as_bytes()),
            response(Some(Id::String("deep".into())))
        );
        assert_eq!(
            recover_response_id(br#"{"jsonrpc":"2.0","id":3,"id":3,"result":{}}"#),
            response(Some(Id::from(3)))
        );
        // Truncated head of an over-long line.
        assert_eq!(
            recover_response_id(br#"{"id" : 1.0 , "result":{"pad":"xxxxxx"#),
            response(Some(Id::Number("1.0".into())))
        );
        // Id after the part that was cut: a response without a readable id.
        assert_eq!(
            recover_response_id(br#"{"jsonrpc":"2.0","result":{"pad":"xxxxxx"#),
            response(None)
        );
        assert_eq!(
            recover_response_id(
                br#"{"jsonrpc":"2.0","error":{"code":1,"message":"\xff"},"id":"\u0061"}"#
            ),
            response(Some(Id::String("a".into())))
        );
        // Escaped key spellings count.
        assert_eq!(
            recover_response_id(br#"{"\u0069d":4,"result":{}}"#),
            response(Some(Id::from(4)))
        );
    }

    #[test]
    fn ambiguous_or_unusable_ids_are_not_guessed() {
        assert_eq!(
            recover_response_id(br#"{"id":1,"id":2,"result":{}}"#),
            response(None)
        );
        assert_eq!(
            recover_response_id(br#"{"id":{"x":1},"result":{}}"#),
            response(None)
        );
        assert_eq!(
            recover_response_id(br#"{"id":null,"error":{}}"#),
            response(None)
        );
    }

    #[test]
    fn requests_notifications_and_text_are_not_responses() {
        for text in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{"#[..],
            br#"{"jsonrpc":"2.0","method":"deep","params":{"a":[[[[[[]]]]]]}}"#,
            br#"{"id":1,"result":{},"method":"x"}"#,
            br#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#,
            b"SECRET-CANARY this is not json",
            b"",
            b"\xff\xfe",
            br#"{"jsonrpc":"2.0","id":5}"#,
        ] {
            assert_eq!(recover_response_id(text), Recovered::Other, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = recover_response_id(&bytes);
        }

        #[test]
        fn never_panics_on_json_like_text(text in "[{}\\[\\]\":,a-z0-9\\\\ ]{0,200}") {
            let _ = recover_response_id(text.as_bytes());
        }
    }
}

#[test]
fn numeric_ids_read_back_as_the_parser_reads_them() {
    for text in [
        "0",
        "7",
        "-7",
        "-0",
        "1.0",
        "1e3",
        "18446744073709551615",
        "-9223372036854775808",
        "18446744073709551616",
    ] {
        let id = Id::Number(text.into());
        let parsed: Value = serde_json::from_str(text).unwrap();
        assert_eq!(id.to_value(), parsed, "{text}");
    }
}
