//! Properties of redaction: idempotent, spans in bounds and on UTF-8 boundaries, planted
//! secrets always found, redacted JSON still valid JSON of the same shape.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use warden_detect::redact::{self, Redaction};

use crate::planted;

/// Text that mixes ASCII, punctuation secret scanners key on, and multi-byte characters.
fn noisy_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[ -~]{0,40}",
            "\\PC{0,12}",
            Just("password = ".to_owned()),
            Just("api_key: ".to_owned()),
            Just("-----BEGIN PRIVATE KEY-----\n".to_owned()),
            Just("eyJhbGciOiJIUzI1NiJ9.".to_owned()),
            Just("AKIA".to_owned()),
            Just("@example.com ".to_owned()),
            Just("4111 1111 ".to_owned()),
            Just("[REDACTED:".to_owned()),
            Just("\n".to_owned()),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn check_spans(text: &str, r: &Redaction) {
    let mut last_end = 0;
    for f in &r.findings {
        assert!(f.start < f.end, "empty span {f:?}");
        assert!(f.end <= text.len(), "span out of bounds {f:?}");
        assert!(
            text.is_char_boundary(f.start) && text.is_char_boundary(f.end),
            "span off a char boundary {f:?}"
        );
        assert!(f.start >= last_end, "spans overlap or are unsorted");
        last_end = f.end;
    }
}

fn planted_text(
    generator: usize,
    seed: u64,
    prefix: &str,
    suffix: &str,
) -> (String, std::ops::Range<usize>, &'static str) {
    let generators = planted::generators();
    let mut rng = StdRng::seed_from_u64(seed);
    let secret = generators[generator % generators.len()](&mut rng);
    let item = planted::plant(&mut rng, &secret);
    let start = prefix.len() + 1;
    let text = format!("{prefix}\n{}\n{suffix}", item.text);
    (
        text,
        start + item.span.start..start + item.span.end,
        item.format,
    )
}

proptest! {
    // 256 cases by default; raise with PROPTEST_CASES for a longer hunt.

    #[test]
    fn spans_are_in_bounds_and_on_char_boundaries(text in noisy_text()) {
        let r = redact::redact(&text);
        check_spans(&text, &r);
    }

    #[test]
    fn redaction_is_idempotent(text in noisy_text(), generator in 0usize..64, seed in any::<u64>()) {
        for text in [text.clone(), planted_text(generator, seed, &text, "").0] {
            let once = redact::redact(&text);
            let twice = redact::redact(&once.text);
            prop_assert_eq!(&twice.text, &once.text);
            prop_assert!(twice.findings.is_empty(), "second pass found {:?}", twice.findings);
        }
    }

    #[test]
    fn a_planted_secret_of_every_kind_is_found(
        generator in 0usize..64,
        seed in any::<u64>(),
        prefix in noisy_text(),
        suffix in noisy_text(),
    ) {
        let (text, span, format) = planted_text(generator, seed, &prefix, &suffix);
        let r = redact::redact(&text);
        check_spans(&text, &r);
        prop_assert!(
            r.findings.iter().any(|f| f.start < span.end && span.start < f.end),
            "{} not found in {:?}", format, text
        );
        // The planted value does not survive in the output.
        prop_assert!(!r.text.contains(&text[span]), "{} survived", format);
    }

    #[test]
    fn redacted_json_stays_valid_json_of_the_same_shape(value in json_value(), generator in 0usize..64, seed in any::<u64>()) {
        let (secret_text, _, _) = planted_text(generator, seed, "", "");
        let mut value = serde_json::json!({"content": [value, {"type": "text", "text": secret_text}], secret_text.clone(): 1});
        let original = value.clone();
        let found = redact::redact_json(&mut value);
        prop_assert!(!found.is_empty());
        let encoded = serde_json::to_string(&value).expect("serializes");
        let decoded: Value = serde_json::from_str(&encoded).expect("redacted JSON parses");
        prop_assert_eq!(&decoded, &value);
        prop_assert!(same_shape(&original, &value));
        // Idempotent on JSON too.
        let mut again = value.clone();
        prop_assert!(redact::redact_json(&mut again).is_empty());
        prop_assert_eq!(again, value);
    }

    /// Scanning the borrowed value finds exactly what redacting it in place replaces, with the
    /// same pointers, for both walkers and every class selection.
    #[test]
    fn scanning_finds_what_redaction_replaces(
        value in json_value(),
        generator in 0usize..64,
        seed in any::<u64>(),
        secrets in any::<bool>(),
        pii in any::<bool>(),
    ) {
        let (secret_text, _, _) = planted_text(generator, seed, "", "");
        let value = serde_json::json!({
            "content": [value, {"type": "text", "text": secret_text},
                        {"type": "image", "data": secret_text}],
            secret_text.clone(): {"password": "Tr0ub4dor&3x"},
        });
        let options = redact::RedactOptions { secrets, pii };
        let scanned = redact::scan_tool_result(&value, options);
        let mut rewritten = value.clone();
        prop_assert_eq!(&scanned, &redact::redact_tool_result(&mut rewritten, options));
        prop_assert_eq!(scanned.is_empty(), rewritten == value);
        let scanned = redact::scan_json_with(&value, options);
        let mut rewritten = value.clone();
        prop_assert_eq!(&scanned, &redact::redact_json_with(&mut rewritten, options));
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        noisy_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((noisy_text(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Same structure: same variants, same array lengths, same member counts, same scalars
/// (strings may differ).
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(_), Value::String(_)) => true,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_shape(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.values().zip(y.values()).all(|(p, q)| same_shape(p, q))
        }
        (p, q) => p == q,
    }
}
