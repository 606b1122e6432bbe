//! The VEN's book of events: what the VTN has asked, kept by event id and modification
//! number, and what it asks of the site at a given time. Pure: the caller passes the time and
//! the site's measured power.
//!
//! - A distribute lists every event the VTN holds: an event missing from it is over
//!   (implicitly cancelled), one with a higher modification number replaces the one held, one
//!   with the same number changes nothing, and one with a lower number is stale and ignored.
//! - Each new event or modification gets one opt answer: in, unless the site's policy opts
//!   out or adit cannot act on its signals (say which, so the VTN and the log know).
//! - An interval asks from `lead` (or the event's ramp-up, if longer) before its start until
//!   its end; of everything asked at once, the lowest target wins, due at its interval's start.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::messages::{Interval, OadrEvent, Signal};

/// What the grid signals of OpenADR events have their event id start with.
pub const EVENT_PREFIX: &str = "oadr-";

/// How a site answers and reads events (from its `[[adapters.openadr]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Opt in to events adit can act on (else out of every event).
    pub opt_in: bool,
    /// Target kW for `SIMPLE` levels 1, 2 and 3.
    pub levels_kw: Vec<f64>,
    /// The site's capacity, kW, for `LOAD_CONTROL` capacity fractions.
    pub capacity_kw: Option<f64>,
    /// How long before an interval's start the site starts to shed.
    pub lead: Duration,
}

/// One event held, with what was decided about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// The event as last sent.
    pub event: OadrEvent,
    /// Opted in (acted on).
    pub opted_in: bool,
    /// The site's power when it arrived, kW (the baseline of `delta` signals).
    pub baseline_kw: Option<f64>,
}

/// What the book decided about one event of a distribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The event.
    pub event_id: String,
    /// The modification answered.
    pub modification: u32,
    /// Opt in (else out).
    pub opt_in: bool,
    /// Why, in words (for the log).
    pub why: String,
    /// Whether the VTN expects the answer.
    pub required: bool,
}

/// What the events ask of the site at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The grid signal's event id: the VTN's event, its modification and the interval.
    pub event_id: String,
    /// Target site load, kW.
    pub target_kw: f64,
    /// When the target must be met: the interval's start.
    pub deadline: DateTime<Utc>,
    /// When the interval ends.
    pub until: DateTime<Utc>,
}

/// Every event held, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Book {
    events: BTreeMap<String, Held>,
}

impl Book {
    /// The events held.
    pub fn held(&self) -> impl Iterator<Item = &Held> {
        self.events.values()
    }

    /// Takes a distribute listing every event the VTN holds now; returns an answer for each
    /// event that is new or modified.
    pub fn take(
        &mut self,
        events: Vec<OadrEvent>,
        policy: &Policy,
        site_kw: Option<f64>,
    ) -> Vec<Answer> {
        let listed: std::collections::BTreeSet<String> =
            events.iter().map(|e| e.id.clone()).collect();
        self.events.retain(|id, _| listed.contains(id));
        let mut answers = Vec::new();
        for event in events {
            if let Some(held) = self.events.get(&event.id)
                && held.event.modification >= event.modification
            {
                continue;
            }
            let (opt_in, why) = decide(&event, policy);
            answers.push(Answer {
                event_id: event.id.clone(),
                modification: event.modification,
                opt_in,
                why,
                required: event.response_required,
            });
            let baseline_kw = self
                .events
                .get(&event.id)
                .and_then(|h| h.baseline_kw)
                .or(site_kw);
            self.events.insert(
                event.id.clone(),
                Held {
                    event,
                    opted_in: opt_in,
                    baseline_kw,
                },
            );
        }
        answers
    }

    /// Forgets the events that ended before `now`.
    pub fn forget_ended(&mut self, now: DateTime<Utc>) {
        self.events.retain(|_, h| end_of(&h.event) > now);
    }

    /// What the events ask of the site at `now`, if anything.
    pub fn asks(&self, now: DateTime<Utc>, policy: &Policy) -> Option<Ask> {
        self.events
            .values()
            .filter(|h| h.opted_in && acts(&h.event))
            .flat_map(|h| {
                let lead = h.event.ramp_up.unwrap_or_default().max(policy.lead);
                let lead = chrono::Duration::from_std(lead).unwrap_or_default();
                h.event.signals.iter().flat_map(move |s| {
                    s.intervals.iter().enumerate().filter_map(move |(n, i)| {
                        let asking = now >= i.start - lead && now < i.end();
                        let target_kw = target(s, i, policy, h.baseline_kw)?;
                        asking.then(|| Ask {
                            event_id: format!(
                                "{EVENT_PREFIX}{}-m{}-i{n}",
                                h.event.id, h.event.modification
                            ),
                            target_kw,
                            deadline: i.start,
                            until: i.end(),
                        })
                    })
                })
            })
            .min_by(|a, b| {
                a.target_kw
                    .total_cmp(&b.target_kw)
                    .then(a.deadline.cmp(&b.deadline))
            })
    }
}

/// An event acted on: not a test, not cancelled or completed.
fn acts(e: &OadrEvent) -> bool {
    !e.test && !matches!(e.status.as_str(), "cancelled" | "completed")
}

fn end_of(e: &OadrEvent) -> DateTime<Utc> {
    let active = e.start + chrono::Duration::from_std(e.duration).unwrap_or_default();
    e.signals
        .iter()
        .flat_map(|s| s.intervals.iter().map(Interval::end))
        .fold(active, DateTime::max)
}

/// Opt in or out of `event`, and why.
fn decide(event: &OadrEvent, policy: &Policy) -> (bool, String) {
    if event.status == "cancelled" {
        return (true, "cancelled: the curtailment ends".into());
    }
    if !policy.opt_in {
        return (false, "the site's policy opts out of every event".into());
    }
    let unusable: Vec<String> = event
        .signals
        .iter()
        .filter(|s| {
            s.intervals
                .iter()
                .any(|i| i.value != 0.0 && target(s, i, policy, Some(0.0)).is_none())
        })
        .map(|s| format!("{}/{}", s.name, s.kind))
        .collect();
    if !unusable.is_empty() {
        return (
            false,
            format!("adit cannot act on the signal {}", unusable.join(", ")),
        );
    }
    if event.test {
        return (true, "a test event: answered, not acted on".into());
    }
    (true, "the site follows it".into())
}

/// The site load, kW, that one interval of a signal asks for; `None` for a signal adit
/// cannot act on, or a `SIMPLE` level 0 (normal operation).
fn target(s: &Signal, i: &Interval, policy: &Policy, baseline_kw: Option<f64>) -> Option<f64> {
    let kw = |v: f64| v * s.kw_per_unit.unwrap_or(1.0);
    let target = match (s.name.as_str(), s.kind.as_str()) {
        ("SIMPLE", "level") => {
            let level = i.value.round();
            if level < 1.0 {
                return None;
            }
            let n = (level as usize).min(policy.levels_kw.len());
            *policy.levels_kw.get(n.checked_sub(1)?)?
        }
        ("LOAD_DISPATCH", "setpoint") => kw(i.value),
        ("LOAD_DISPATCH", "delta") => baseline_kw? - kw(i.value).abs(),
        ("LOAD_CONTROL", "x-loadControlCapacity") => policy.capacity_kw? * i.value,
        _ => return None,
    };
    target.is_finite().then_some(target.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn policy() -> Policy {
        Policy {
            opt_in: true,
            levels_kw: vec![20.0, 10.0, 0.0],
            capacity_kw: Some(40.0),
            lead: Duration::from_secs(60),
        }
    }

    fn event(id: &str, modification: u32, name: &str, kind: &str, values: &[f64]) -> OadrEvent {
        let start = at(5 * M);
        let intervals = values
            .iter()
            .enumerate()
            .map(|(n, v)| Interval {
                start: start + chrono::Duration::seconds(n as i64 * 5 * M),
                duration: Duration::from_secs(300),
                value: *v,
            })
            .collect::<Vec<_>>();
        OadrEvent {
            id: id.into(),
            modification,
            status: "far".into(),
            test: false,
            start,
            duration: Duration::from_secs(300 * values.len() as u64),
            ramp_up: None,
            start_after: None,
            response_required: true,
            signals: vec![Signal {
                name: name.into(),
                kind: kind.into(),
                kw_per_unit: Some(1.0),
                intervals,
            }],
        }
    }

    #[test]
    fn an_interval_asks_from_its_lead_to_its_end_and_the_next_takes_over() {
        let mut book = Book::default();
        let answers = book.take(
            vec![event("e", 0, "LOAD_DISPATCH", "setpoint", &[15.0, 8.0])],
            &policy(),
            Some(30.0),
        );
        assert!(answers[0].opt_in && answers[0].required);
        assert_eq!(book.asks(at(0), &policy()), None, "five minutes ahead");
        let first = book.asks(at(4 * M), &policy()).unwrap();
        assert_eq!((first.target_kw, first.deadline), (15.0, at(5 * M)));
        assert_eq!(first.event_id, "oadr-e-m0-i0");
        // Inside the first interval the second, lower, is within its lead a minute before it.
        assert_eq!(book.asks(at(8 * M), &policy()).unwrap().target_kw, 15.0);
        let second = book.asks(at(9 * M), &policy()).unwrap();
        assert_eq!((second.target_kw, second.deadline), (8.0, at(10 * M)));
        assert_eq!(book.asks(at(15 * M), &policy()), None, "over");
        book.forget_ended(at(15 * M));
        assert_eq!(book.held().count(), 0);
    }

    #[test]
    fn a_modification_replaces_the_event_and_a_missing_event_is_over() {
        let mut book = Book::default();
        let p = policy();
        book.take(
            vec![event("e", 0, "LOAD_DISPATCH", "setpoint", &[15.0])],
            &p,
            None,
        );
        // The same modification again: no second answer.
        assert!(
            book.take(
                vec![event("e", 0, "LOAD_DISPATCH", "setpoint", &[15.0])],
                &p,
                None
            )
            .is_empty()
        );
        let answers = book.take(
            vec![event("e", 1, "LOAD_DISPATCH", "setpoint", &[5.0])],
            &p,
            None,
        );
        assert_eq!((answers.len(), answers[0].modification), (1, 1));
        assert_eq!(book.asks(at(5 * M), &p).unwrap().target_kw, 5.0);
        assert_eq!(book.asks(at(5 * M), &p).unwrap().event_id, "oadr-e-m1-i0");
        // A stale modification is ignored.
        assert!(
            book.take(
                vec![event("e", 0, "LOAD_DISPATCH", "setpoint", &[15.0])],
                &p,
                None
            )
            .is_empty()
        );
        assert_eq!(book.asks(at(5 * M), &p).unwrap().target_kw, 5.0);
        // Cancelled: answered, asks nothing.
        let mut cancelled = event("e", 2, "LOAD_DISPATCH", "setpoint", &[5.0]);
        cancelled.status = "cancelled".into();
        let answers = book.take(vec![cancelled], &p, None);
        assert!(answers[0].opt_in);
        assert_eq!(book.asks(at(5 * M), &p), None);
        // Gone from the distribute: forgotten.
        book.take(
            vec![event("f", 0, "LOAD_DISPATCH", "setpoint", &[9.0])],
            &p,
            None,
        );
        assert_eq!(book.held().count(), 1);
    }

    #[test]
    fn each_kind_of_signal_becomes_a_target_or_an_opt_out_that_says_why() {
        let p = policy();
        let cases = [
            ("SIMPLE", "level", 2.0, Some(10.0)),
            ("SIMPLE", "level", 3.0, Some(0.0)),
            ("LOAD_DISPATCH", "delta", 12.0, Some(18.0)),
            ("LOAD_CONTROL", "x-loadControlCapacity", 0.25, Some(10.0)),
            ("ELECTRICITY_PRICE", "price", 80.0, None),
        ];
        for (name, kind, value, want) in cases {
            let mut book = Book::default();
            let answers = book.take(vec![event("e", 0, name, kind, &[value])], &p, Some(30.0));
            assert_eq!(
                answers[0].opt_in,
                want.is_some(),
                "{name}/{kind}: {answers:?}"
            );
            assert_eq!(
                book.asks(at(5 * M), &p).map(|a| a.target_kw),
                want,
                "{name}"
            );
            if want.is_none() {
                assert!(answers[0].why.contains(name), "{}", answers[0].why);
            }
        }
        // Level 0 is normal operation: opted in, nothing asked.
        let mut book = Book::default();
        assert!(book.take(vec![event("e", 0, "SIMPLE", "level", &[0.0])], &p, None)[0].opt_in);
        assert_eq!(book.asks(at(5 * M), &p), None);
        // A site that opts out answers so and is asked nothing.
        let out = Policy {
            opt_in: false,
            ..policy()
        };
        let mut book = Book::default();
        let answers = book.take(vec![event("e", 0, "SIMPLE", "level", &[2.0])], &out, None);
        assert!(!answers[0].opt_in);
        assert_eq!(book.asks(at(5 * M), &out), None);
    }

    #[test]
    fn the_lowest_target_asked_wins_and_a_ramp_up_longer_than_the_lead_starts_earlier() {
        let p = policy();
        let mut book = Book::default();
        let mut early = event("a", 0, "LOAD_DISPATCH", "setpoint", &[12.0]);
        early.ramp_up = Some(Duration::from_secs(180));
        book.take(
            vec![early, event("b", 0, "LOAD_DISPATCH", "setpoint", &[6.0])],
            &p,
            None,
        );
        assert_eq!(book.asks(at(2 * M + 30), &p).unwrap().target_kw, 12.0);
        assert_eq!(book.asks(at(4 * M + 30), &p).unwrap().target_kw, 6.0);
        let mut test = event("t", 0, "LOAD_DISPATCH", "setpoint", &[1.0]);
        test.test = true;
        let mut book = Book::default();
        assert!(book.take(vec![test], &p, None)[0].opt_in);
        assert_eq!(
            book.asks(at(5 * M), &p),
            None,
            "a test event is not acted on"
        );
    }
}
