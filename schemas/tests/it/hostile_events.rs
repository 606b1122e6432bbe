//! Property tests of event decoding (issue 22): any payload, as bytes or as JSON of any shape,
//! is decoded or refused with a reason for every kind, never a panic; what is accepted has a
//! subject built from tokens and a dedupe id.

use adit_schemas::{EventKind, ValidationPolicy};
use chrono::Utc;
use proptest::prelude::*;

/// JSON values of any shape, with hostile strings and numbers at the leaves.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2026-11-23T12:00:00Z")),
        Just(serde_json::Value::from("a\r\nb")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("site".to_string()),
                    Just("machine".to_string()),
                    Just("ts".to_string()),
                    Just("pool".to_string()),
                    Just("job_id".to_string()),
                    Just("event_id".to_string()),
                    any::<String>()
                ],
                inner,
                0..10
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Cases per property: `ADIT_FUZZ_CASES` for a long run (`scripts/fuzz.sh`), else CI's share.
/// `adit_testkit::fuzz_cases` written again: the testkit depends on this crate.
fn cases(ci: u32) -> u32 {
    std::env::var("ADIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3_000)))]

    #[test]
    fn any_bytes_are_decoded_or_refused(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
        let policy = ValidationPolicy::default();
        for &kind in EventKind::ALL {
            let _ = kind.decode(&payload, &policy, Utc::now());
        }
    }

    #[test]
    fn any_json_is_decoded_or_refused(value in json()) {
        let policy = ValidationPolicy::default();
        let payload = value.to_string();
        for &kind in EventKind::ALL {
            match kind.decode(payload.as_bytes(), &policy, Utc::now()) {
                Ok(event) => {
                    let (subject, id, _) = event.to_message();
                    prop_assert!(!subject.contains([' ', '\r', '\n', '*', '>']), "{subject}");
                    prop_assert!(!id.is_empty());
                }
                Err(invalid) => prop_assert!(!invalid.to_string().is_empty()),
            }
        }
    }
}
