//! Property tests of the publishing boundary (issue 22): whatever text an event's fields hold
//! (a miner's job id, a feed's event id, a device's address), the message built for JetStream
//! has valid headers (async-nats panicked on a line break), and different ids stay different.

use adit_bus::publish::Outgoing;
use adit_schemas::{AnyEvent, Share, names};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

/// Cases per property: `ADIT_FUZZ_CASES` for a long run (`scripts/fuzz.sh`), else CI's share.
use adit_testkit::fuzz_cases as cases;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2_000)))]

    #[test]
    fn every_event_message_builds(
        job_id in any::<String>(),
        nonce in any::<String>(),
        miner in any::<String>(),
        reason in any::<String>(),
        nanos in any::<i64>(),
    ) {
        let share = Share {
            pool: "p1".into(),
            miner,
            worker: "w".into(),
            job_id,
            nonce,
            difficulty: 1,
            height: 1,
            accepted: false,
            reason: Some(reason.clone()),
            ts: Utc.timestamp_nanos(nanos),
            network_difficulty: None,
            reward: None,
            subsidy: None,
            team: None,
        };
        let mut msg = Outgoing::event(&AnyEvent::Share(share));
        msg.headers.push((names::HEADER_DLQ_REASON, reason));
        prop_assert!(msg.build_message().is_ok());
    }

    #[test]
    fn escaped_ids_stay_distinct(a in any::<String>(), b in any::<String>()) {
        prop_assume!(a != b);
        prop_assert_ne!(names::message_id(&a), names::message_id(&b));
        prop_assert!(!names::message_id(&a).contains(['\r', '\n']));
        prop_assert!(!names::header_text(&b).contains(['\r', '\n']));
    }
}
