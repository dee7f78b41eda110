use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderName, HeaderValue};
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn param(header: &str, path: &[&str]) -> ParamHeader {
    ParamHeader {
        header: header.to_owned(),
        path: path.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The annotations of the tests' tool.
fn annotated() -> Vec<ParamHeader> {
    vec![
        param("Region", &["region"]),
        param("Priority", &["priority"]),
        param("Verbose", &["verbose"]),
        param("Zone", &["target", "zone"]),
        param("Method", &["method_val"]),
    ]
}

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    h
}

fn run(pairs: &[(&str, &str)], arguments: Value) -> Result<(), ParamError> {
    let pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    check(&headers(&pairs), &annotated(), Some(&arguments))
}

fn missing(h: &str) -> Result<(), ParamError> {
    Err(ParamError::Missing {
        header: format!("Mcp-Param-{h}"),
    })
}

fn invalid(h: &str) -> Result<(), ParamError> {
    Err(ParamError::Invalid {
        header: format!("Mcp-Param-{h}"),
    })
}

fn mismatch(h: &str) -> Result<(), ParamError> {
    Err(ParamError::Mismatch {
        header: format!("Mcp-Param-{h}"),
    })
}

/// The client encoding of the specification ("Value Encoding"): plain when the value is
/// printable ASCII without surrounding whitespace and does not look like the sentinel.
fn encode(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim_matches([' ', '\t']) == value
        && !(value.starts_with("=?base64?") && value.ends_with("?="));
    if plain {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", STANDARD.encode(value))
    }
}

/// "Server Validation Edge Cases / Base64 Decoding" of the SEP-2243 test-case table, as the
/// conformance scenario `http-custom-header-server-validation` sends it.
#[test]
fn base64_decoding_table() {
    let hello = json!({"region": "Hello"});
    let ok = Ok(());
    let cases: Vec<(&str, &str, Value, Result<(), ParamError>)> = vec![
        (
            "valid base64",
            "=?base64?SGVsbG8=?=",
            hello.clone(),
            ok.clone(),
        ),
        (
            "invalid padding",
            "=?base64?SGVsbG8?=",
            hello.clone(),
            invalid("Region"),
        ),
        (
            "invalid characters",
            "=?base64?SGVs!!!bG8=?=",
            hello.clone(),
            invalid("Region"),
        ),
        (
            "url-safe alphabet",
            "=?base64?SGVs_G8=?=",
            hello.clone(),
            invalid("Region"),
        ),
        (
            "non-zero trailing bits",
            "=?base64?SGVsbG9=?=",
            hello.clone(),
            invalid("Region"),
        ),
        (
            "not utf-8",
            "=?base64?/w==?=",
            hello.clone(),
            invalid("Region"),
        ),
        (
            "missing prefix is literal",
            "SGVsbG8=",
            json!({"region": "SGVsbG8="}),
            ok.clone(),
        ),
        (
            "missing prefix, compared literally",
            "SGVsbG8=",
            hello.clone(),
            mismatch("Region"),
        ),
        (
            "missing suffix is literal",
            "=?base64?SGVsbG8=",
            json!({"region": "=?base64?SGVsbG8="}),
            ok.clone(),
        ),
        (
            "missing suffix, compared literally",
            "=?base64?SGVsbG8=",
            hello.clone(),
            mismatch("Region"),
        ),
        (
            "upper-case marker is literal",
            "=?BASE64?SGVsbG8=?=",
            json!({"region": "=?BASE64?SGVsbG8=?="}),
            ok.clone(),
        ),
        (
            "upper-case marker, compared literally",
            "=?BASE64?SGVsbG8=?=",
            hello.clone(),
            mismatch("Region"),
        ),
        (
            "empty payload",
            "=?base64??=",
            json!({"region": ""}),
            ok.clone(),
        ),
        (
            "non-ascii",
            "=?base64?SGVsbG8sIOS4lueVjA==?=",
            json!({"region": "Hello, 世界"}),
            ok.clone(),
        ),
        (
            "sentinel-looking value",
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=",
            json!({"region": "=?base64?literal?="}),
            ok.clone(),
        ),
    ];
    for (what, value, arguments, expected) in cases {
        assert_eq!(
            run(&[("Mcp-Param-Region", value)], arguments),
            expected,
            "{what}"
        );
    }
}

/// "Value Encoding Edge Cases" of the table: each encoded value is accepted for its argument.
#[test]
fn value_encoding_table() {
    let cases: Vec<(&str, &str, Value)> = vec![
        ("Region", "us-west1", json!({"region": "us-west1"})),
        (
            "Region",
            "=?base64?IHVzLXdlc3Qx?=",
            json!({"region": " us-west1"}),
        ),
        (
            "Region",
            "=?base64?dXMtd2VzdDEg?=",
            json!({"region": "us-west1 "}),
        ),
        (
            "Region",
            "=?base64?IHVzLXdlc3QxIA==?=",
            json!({"region": " us-west1 "}),
        ),
        ("Region", "us west 1", json!({"region": "us west 1"})),
        ("Verbose", "true", json!({"verbose": true})),
        ("Verbose", "false", json!({"verbose": false})),
        ("Priority", "42", json!({"priority": 42})),
        ("Priority", "-7", json!({"priority": -7})),
        (
            "Region",
            "=?base64?5pel5pys6Kqe?=",
            json!({"region": "日本語"}),
        ),
        (
            "Region",
            "=?base64?bGluZTEKbGluZTI=?=",
            json!({"region": "line1\nline2"}),
        ),
        (
            "Region",
            "=?base64?bGluZTENCmxpbmUy?=",
            json!({"region": "line1\r\nline2"}),
        ),
        (
            "Region",
            "=?base64?CWluZGVudGVk?=",
            json!({"region": "\tindented"}),
        ),
        ("Region", "", json!({"region": ""})),
        (
            "Method",
            "test-method",
            json!({"method_val": "test-method"}),
        ),
        ("Zone", "eu-1", json!({"target": {"zone": "eu-1"}})),
    ];
    for (header, value, arguments) in cases {
        let name = format!("Mcp-Param-{header}");
        assert_eq!(
            run(&[(name.as_str(), value)], arguments.clone()),
            Ok(()),
            "{name}: {value:?} for {arguments}"
        );
        assert_eq!(
            encode_argument(&arguments),
            value,
            "the test encoder agrees"
        );
    }
}

/// The one annotated argument of `arguments`, encoded as a client would.
fn encode_argument(arguments: &Value) -> String {
    let mut node = arguments;
    while let Value::Object(o) = node {
        node = o.values().next().unwrap();
    }
    match node {
        Value::String(s) => encode(s),
        other => other.to_string(),
    }
}

/// "Null and Missing Values" and "Missing Custom Header with Value in Body".
#[test]
fn null_absent_and_missing() {
    // Null or absent arguments expect no header.
    assert_eq!(run(&[], json!({})), Ok(()));
    assert_eq!(run(&[], json!({"region": null, "verbose": null})), Ok(()));
    assert_eq!(check(&HeaderMap::new(), &annotated(), None), Ok(()));
    assert_eq!(run(&[], json!({"target": "not an object"})), Ok(()));
    assert_eq!(run(&[], json!("not an object")), Ok(()));
    // A value in the body needs its header.
    assert_eq!(run(&[], json!({"region": "us-west1"})), missing("Region"));
    assert_eq!(run(&[], json!({"region": ""})), missing("Region"));
    assert_eq!(run(&[], json!({"priority": 0})), missing("Priority"));
    assert_eq!(run(&[], json!({"verbose": false})), missing("Verbose"));
    assert_eq!(run(&[], json!({"target": {"zone": "z"}})), missing("Zone"));
    // A header without a value in the body claims what the body does not say.
    assert_eq!(
        run(&[("Mcp-Param-Region", "us-west1")], json!({})),
        mismatch("Region")
    );
    assert_eq!(
        run(&[("Mcp-Param-Region", "null")], json!({"region": null})),
        mismatch("Region")
    );
    assert_eq!(
        check(&headers(&[("Mcp-Param-Region", b"x")]), &annotated(), None),
        mismatch("Region")
    );
    // Headers of names the tool does not declare are not this check's business.
    assert_eq!(
        run(&[("Mcp-Param-Other", "x")], json!({"other": "y"})),
        Ok(())
    );
    // The standard header Mcp-Method is not Mcp-Param-Method.
    assert_eq!(
        run(
            &[("Mcp-Method", "test-method")],
            json!({"method_val": "test-method"})
        ),
        missing("Method")
    );
}

#[test]
fn strings_compare_exactly_after_trimming_optional_whitespace() {
    let body = json!({"region": "us-west1"});
    assert_eq!(
        run(&[("Mcp-Param-Region", "  us-west1\t ")], body.clone()),
        Ok(())
    );
    assert_eq!(
        run(&[("Mcp-Param-Region", "us-east1")], body.clone()),
        mismatch("Region")
    );
    assert_eq!(
        run(&[("Mcp-Param-Region", "US-WEST1")], body.clone()),
        mismatch("Region")
    );
    assert_eq!(
        run(&[("Mcp-Param-Region", "us-west1x")], body),
        mismatch("Region")
    );
    // Surrounding whitespace of the value itself must travel as base64.
    let padded = json!({"region": " us-west1"});
    assert_eq!(
        run(&[("Mcp-Param-Region", " us-west1")], padded.clone()),
        mismatch("Region")
    );
    assert_eq!(
        run(
            &[("Mcp-Param-Region", "  =?base64?IHVzLXdlc3Qx?=  ")],
            padded
        ),
        Ok(())
    );
    // Interior tab is a valid field value, compared literally.
    assert_eq!(
        run(&[("Mcp-Param-Region", "a\tb")], json!({"region": "a\tb"})),
        Ok(())
    );
}

#[test]
fn header_names_are_case_insensitive() {
    let body = json!({"region": "us-west1"});
    for name in ["mcp-param-region", "MCP-PARAM-REGION", "Mcp-Param-rEgIoN"] {
        assert_eq!(run(&[(name, "us-west1")], body.clone()), Ok(()), "{name}");
    }
    let lower = vec![param("region", &["region"])];
    let h = headers(&[("MCP-PARAM-REGION", b"us-west1")]);
    assert_eq!(check(&h, &lower, Some(&body)), Ok(()));
}

#[test]
fn repeated_and_non_ascii_headers_are_invalid() {
    let body = json!({"region": "us-west1"});
    let twice = headers(&[
        ("Mcp-Param-Region", b"us-west1"),
        ("mcp-param-region", b"us-west1"),
    ]);
    assert_eq!(check(&twice, &annotated(), Some(&body)), invalid("Region"));
    let raw_utf8 = headers(&[("Mcp-Param-Region", "café".as_bytes())]);
    assert_eq!(
        check(&raw_utf8, &annotated(), Some(&json!({"region": "café"}))),
        invalid("Region")
    );
    // Control characters never get this far: hyper refuses them in a request head.
    assert!(HeaderValue::from_bytes(b"a\x01b").is_err());
}

#[test]
fn integers_compare_numerically() {
    let body = json!({"priority": 42});
    for ok in [
        "42",
        "42.0",
        "42.000",
        "042",
        "4.2e1",
        "4.2E+1",
        "420e-1",
        "=?base64?NDI=?=",
    ] {
        assert_eq!(
            run(&[("Mcp-Param-Priority", ok)], body.clone()),
            Ok(()),
            "{ok}"
        );
    }
    for bad in [
        "43",
        "+42",
        "42.1",
        "0x2A",
        "forty-two",
        "4 2",
        "42e",
        ".42e2",
        "NaN",
        "",
        "true",
    ] {
        assert_eq!(
            run(&[("Mcp-Param-Priority", bad)], body.clone()),
            mismatch("Priority"),
            "{bad:?}"
        );
    }
    assert_eq!(
        run(&[("Mcp-Param-Priority", "-0")], json!({"priority": 0})),
        Ok(())
    );
    assert_eq!(
        run(&[("Mcp-Param-Priority", "0")], json!({"priority": -0.0})),
        Ok(())
    );
    assert_eq!(
        run(&[("Mcp-Param-Priority", "42")], json!({"priority": 42.0})),
        Ok(())
    );
    assert_eq!(
        run(&[("Mcp-Param-Priority", "3.5")], json!({"priority": 3.5})),
        Ok(())
    );
    for ok in ["3.50", "35e-1", "83764441051187.13"] {
        let body = json!({"priority": ok.parse::<f64>().unwrap()});
        assert_eq!(run(&[("Mcp-Param-Priority", ok)], body), Ok(()), "{ok}");
    }
    for bad in ["3.6", "inf", "NaN", "+3.5", "3.5f"] {
        assert_eq!(
            run(&[("Mcp-Param-Priority", bad)], json!({"priority": 3.5})),
            mismatch("Priority"),
            "{bad}"
        );
    }
    assert_eq!(
        run(
            &[("Mcp-Param-Priority", "-9007199254740991")],
            json!({"priority": -9_007_199_254_740_991_i64})
        ),
        Ok(())
    );
    // Exact, not through f64: 2^53 + 1 is not 2^53.
    let big = json!({"priority": 9_007_199_254_740_993_u64});
    assert_eq!(
        run(&[("Mcp-Param-Priority", "9007199254740992")], big.clone()),
        mismatch("Priority")
    );
    // Beyond the safe range a JavaScript client sends no header; one that is sent must match.
    assert_eq!(run(&[], big.clone()), Ok(()));
    assert_eq!(
        run(&[("Mcp-Param-Priority", "9007199254740993")], big),
        Ok(())
    );
    assert_eq!(run(&[], json!({"priority": 1e300})), Ok(()));
    assert_eq!(run(&[], json!({"priority": u64::MAX})), Ok(()));
    assert_eq!(
        run(&[], json!({"priority": 9_007_199_254_740_991_i64})),
        missing("Priority")
    );
}

#[test]
fn booleans_are_lowercase_words() {
    assert_eq!(
        run(&[("Mcp-Param-Verbose", "true")], json!({"verbose": true})),
        Ok(())
    );
    assert_eq!(
        run(&[("Mcp-Param-Verbose", "false")], json!({"verbose": false})),
        Ok(())
    );
    for bad in ["True", "TRUE", "1", "yes", "false"] {
        assert_eq!(
            run(&[("Mcp-Param-Verbose", bad)], json!({"verbose": true})),
            mismatch("Verbose"),
            "{bad}"
        );
    }
    // A string argument "true" compares as a string.
    assert_eq!(
        run(&[("Mcp-Param-Verbose", "true")], json!({"verbose": "true"})),
        Ok(())
    );
}

#[test]
fn objects_and_arrays_cannot_be_mirrored() {
    for value in [json!({"a": 1}), json!([1, 2])] {
        assert_eq!(run(&[], json!({"region": value})), Ok(()));
        assert_eq!(
            run(
                &[("Mcp-Param-Region", &value.to_string())],
                json!({"region": value})
            ),
            mismatch("Region")
        );
    }
}

#[test]
fn reports_the_first_fault_in_declaration_order_and_never_the_value() {
    let result = run(
        &[("Mcp-Param-Priority", "1")],
        json!({"region": "secret-token-123", "priority": 2}),
    );
    assert_eq!(result, missing("Region"));
    let error = run(
        &[("Mcp-Param-Region", "secret-token-123")],
        json!({"region": "other"}),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Mcp-Param-Region header does not match the body"
    );
    assert_eq!(
        invalid("Region").unwrap_err().to_string(),
        "invalid Mcp-Param-Region header"
    );
    assert_eq!(
        missing("Region").unwrap_err().to_string(),
        "missing Mcp-Param-Region header"
    );
}

#[test]
fn a_header_name_that_is_no_token_fails_closed() {
    let odd = vec![param("Bad Name", &["region"])];
    assert_eq!(
        check(&HeaderMap::new(), &odd, Some(&json!({"region": "x"}))),
        Err(ParamError::Missing {
            header: "Mcp-Param-Bad Name".into()
        })
    );
}

#[test]
fn decimal_equality() {
    let equal = [
        ("0", "0.0"),
        ("0", "-0"),
        ("0", "0e5"),
        ("100", "1e2"),
        ("100", "1E+2"),
        ("0.001", "1e-3"),
        ("0.00100", "1.0e-3"),
        ("123.456", "123456e-3"),
        ("-5", "-5.0"),
        ("1e21", "1000000000000000000000"),
    ];
    for (a, b) in equal {
        assert!(decimal_eq(a, b), "{a} == {b}");
        assert!(decimal_eq(b, a), "{b} == {a}");
    }
    let different = [
        ("1", "-1"),
        ("1", "10"),
        ("0.1", "0.01"),
        ("1", "1e1000001"),
        ("1", ""),
        ("-", "0"),
        ("1.", "1"),
        (".1", "0.1"),
        ("1e", "1"),
        ("1e+", "1"),
        ("--1", "1"),
        ("1_000", "1000"),
        ("١", "1"),
    ];
    for (a, b) in different {
        assert!(!decimal_eq(a, b), "{a} != {b}");
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::String),
        "[ -~]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just(" ".to_owned()),
            Just("\t".to_owned()),
            Just("=?base64?x?=".to_owned())
        ]
        .prop_map(Value::String),
        (-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64).prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
    ]
}

/// A client's header value for a scalar argument.
fn client_value(v: &Value) -> String {
    match v {
        Value::String(s) => encode(s),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

proptest! {
    /// Whatever a conforming client encodes, the gateway accepts.
    #[test]
    fn encode_then_validate_round_trips(value in scalar(), nested in any::<bool>()) {
        let (p, arguments) = if nested {
            (param("Zone", &["target", "zone"]), json!({"target": {"zone": value}}))
        } else {
            (param("Region", &["region"]), json!({"region": value}))
        };
        let encoded = client_value(&value);
        let h = headers(&[(&format!("Mcp-Param-{}", p.header), encoded.as_bytes())]);
        prop_assert_eq!(check(&h, &[p], Some(&arguments)), Ok(()));
    }

    /// A header for one value never validates a different body value.
    #[test]
    fn a_different_body_value_is_refused(a in scalar(), b in scalar()) {
        prop_assume!(a != b);
        // 1 and "1", true and "true" have one header text each way; only same-type pairs.
        prop_assume!(std::mem::discriminant(&a) == std::mem::discriminant(&b));
        let h = headers(&[("Mcp-Param-Region", client_value(&a).as_bytes())]);
        let p = param("Region", &["region"]);
        let arguments = json!({"region": b});
        prop_assert!(check(&h, &[p], Some(&arguments)).is_err());
    }

    /// Nothing a client sends makes the check panic.
    #[test]
    fn arbitrary_header_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), value in scalar()) {
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            let mut h = HeaderMap::new();
            h.insert("mcp-param-region", v);
            let _ = check(&h, &[param("Region", &["region"])], Some(&json!({"region": value})));
        }
    }

    #[test]
    fn integers_equal_their_decimal_forms(n in any::<i64>(), zeros in 0usize..4, m in any::<i64>()) {
        let text = n.to_string();
        let padded = format!("{text}.{}", "0".repeat(zeros.max(1)));
        prop_assert!(decimal_eq(&text, &padded));
        prop_assert_eq!(decimal_eq(&text, &m.to_string()), n == m);
    }

    /// A float argument accepts any text of the same `f64` (shortest-text algorithms differ
    /// in the last digit), and no text of another one.
    #[test]
    fn float_bodies_compare_as_f64(f in any::<f64>().prop_filter("finite", |f| f.is_finite()), g in any::<f64>()) {
        let body = Value::from(f);
        prop_assume!(body.is_f64());
        let arguments = json!({"priority": body});
        for text in [f.to_string(), format!("{f:e}"), serde_json::Number::from_f64(f).unwrap().to_string()] {
            let h = headers(&[("Mcp-Param-Priority", text.as_bytes())]);
            prop_assert_eq!(check(&h, &annotated(), Some(&arguments)), Ok(()), "{}", text);
        }
        if g.is_finite() && g != f {
            let h = headers(&[("Mcp-Param-Priority", g.to_string().as_bytes())]);
            prop_assert!(check(&h, &annotated(), Some(&arguments)).is_err());
        }
    }
}
