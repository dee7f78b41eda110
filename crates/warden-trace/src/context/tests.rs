use proptest::prelude::*;

use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn parses_the_w3c_example() {
    let tp = TraceParent::parse(VALID).unwrap();
    assert_eq!(tp.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tp.parent_id.to_hex(), "00f067aa0ba902b7");
    assert_eq!(tp.flags, 1);
    assert!(tp.sampled());
    assert_eq!(tp.to_string(), VALID);
}

#[test]
fn rejects_every_malformed_variant() {
    let cases: &[(&str, TraceParentError)] = &[
        ("", TraceParentError::Length(0)),
        (&VALID[..54], TraceParentError::Length(54)),
        // A future version with extra fields is still refused: only version 00 is accepted.
        (
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ff",
            TraceParentError::Length(58),
        ),
        (
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            TraceParentError::Version,
        ),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            TraceParentError::Version,
        ),
        (
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            TraceParentError::Delimiter,
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            TraceParentError::Hex("trace-id"),
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            TraceParentError::Hex("trace-id"),
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            TraceParentError::Hex("parent-id"),
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0X",
            TraceParentError::Hex("trace-flags"),
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            TraceParentError::ZeroTraceId,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            TraceParentError::ZeroParentId,
        ),
        // A sign or space where a hex digit belongs ("+1" parses as hex in some libraries).
        (
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            TraceParentError::Hex("trace-id"),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(TraceParent::parse(text), Err(*want), "{text}");
    }
}

#[test]
fn multibyte_text_of_the_right_length_is_refused_without_panicking() {
    // 55 bytes with a 2-byte character straddling a field boundary.
    let text = format!(
        "00-{}é{}-00f067aa0ba902b7-01",
        "a".repeat(15),
        "b".repeat(15)
    );
    assert_eq!(text.len(), TRACEPARENT_LEN);
    assert!(TraceParent::parse(&text).is_err());
}

#[test]
fn span_context_propagates_its_own_span_and_sampling() {
    let ctx = SpanContext {
        trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        span_id: SpanId::from_hex("1111111111111111").unwrap(),
        parent: SpanId::from_hex("00f067aa0ba902b7"),
        sampled: false,
    };
    assert_eq!(
        ctx.traceparent().to_string(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-00"
    );
}

#[test]
fn sampler_follows_a_valid_parent_whatever_the_ratio() {
    let sampled = TraceParent::parse(VALID).unwrap();
    let unsampled = TraceParent {
        flags: 0,
        ..sampled
    };
    for ratio in [0.0, 0.5, 1.0] {
        let s = Sampler::ratio(ratio);
        assert!(s.sample(Some(&sampled), sampled.trace_id));
        assert!(!s.sample(Some(&unsampled), sampled.trace_id));
    }
}

#[test]
fn sampler_ratio_is_decided_by_the_low_bits_of_the_trace_id() {
    let low = |n: u64| {
        let mut b = [0x55; 16];
        b[8..].copy_from_slice(&n.to_be_bytes());
        TraceId::from_bytes(b).unwrap()
    };
    let half = Sampler::ratio(0.5);
    assert!(half.sample(None, low(0)));
    assert!(half.sample(None, low((1 << 55) - 1)));
    assert!(!half.sample(None, low(1 << 55)));
    // The top byte is ignored: only 56 bits count.
    assert!(half.sample(None, low(0xff00_0000_0000_0001)));
    assert!(Sampler::ratio(1.0).sample(None, low((1 << 56) - 1)));
    assert!(!Sampler::ratio(0.0).sample(None, low(0)));
    assert!(!Sampler::ratio(f64::NAN).sample(None, low(0)));
    assert!(Sampler::ratio(7.0).sample(None, low((1 << 56) - 1)));
}

#[test]
fn sampler_ratio_is_roughly_the_fraction_of_random_traces() {
    let s = Sampler::ratio(0.25);
    let n = 20_000;
    let kept = (0..n).filter(|_| s.sample(None, TraceId::random())).count();
    // 5 standard deviations around 5000 (sd ~61): a wrong threshold fails, chance does not.
    assert!((4_690..=5_310).contains(&kept), "{kept}");
}

proptest! {
    #[test]
    fn parse_never_panics(text in "\\PC{0,80}") {
        let _ = TraceParent::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_near_misses(
        text in "[0-9a-fA-F-]{53,57}",
    ) {
        if let Ok(tp) = TraceParent::parse(&text) {
            // Anything accepted is canonical: it prints back to exactly what was parsed.
            prop_assert_eq!(tp.to_string(), text);
        }
    }

    #[test]
    fn valid_headers_round_trip(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), flags in any::<u8>()) {
        prop_assume!(trace != [0; 16] && span != [0; 8]);
        let tp = TraceParent {
            trace_id: TraceId::from_bytes(trace).unwrap(),
            parent_id: SpanId::from_bytes(span).unwrap(),
            flags,
        };
        let text = tp.to_string();
        prop_assert_eq!(text.len(), TRACEPARENT_LEN);
        prop_assert_eq!(TraceParent::parse(&text), Ok(tp));
        // Uppercasing any hex letter makes it invalid.
        if let Some(i) = text[3..].find(|c: char| c.is_ascii_lowercase()) {
            let mut upper = text.clone();
            upper.replace_range(3 + i..4 + i, &text[3 + i..4 + i].to_ascii_uppercase());
            prop_assert!(TraceParent::parse(&upper).is_err());
        }
    }

    #[test]
    fn ids_round_trip_through_hex(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>()) {
        prop_assert_eq!(TraceId::from_bytes(trace).map(|t| TraceId::from_hex(&t.to_hex())), (trace != [0; 16]).then_some(TraceId::from_bytes(trace)));
        prop_assert_eq!(SpanId::from_bytes(span).map(|s| SpanId::from_hex(&s.to_hex())), (span != [0; 8]).then_some(SpanId::from_bytes(span)));
    }
}
