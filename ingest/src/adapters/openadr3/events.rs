//! What OpenADR 3.1 events ask of a site at a time. Pure: the caller passes the events the
//! VTN lists now, the time and the site's policy, and gets what the 2.0b VEN's book gives
//! ([`Ask`]), so one controller path serves both protocols.
//!
//! - An interval's period is its own, else the event's shifted by the interval's place
//!   (intervals without a period follow each other, each as long as the event's duration).
//! - `IMPORT_CAPACITY_LIMIT` asks the site to draw at most its value (in the descriptor's units:
//!   `KW` by default, or `W`/`MW`); `SIMPLE` levels 1–3 ask the site's `levels_kw`; level 0 and
//!   other payloads (`PRICE` among them) ask no curtailment.
//! - An interval asks from `lead` before its start until its end; of everything asked at once,
//!   the lowest target wins, due at its interval's start. An interval without a duration asks
//!   until the event is no longer listed.
//! - `PRICE` is the site's energy price while its interval is in force ([`price`]), per MWh:
//!   the descriptor's units say per what (`KWH` by default, as OpenADR's prices are).
//!
//! 3.1 has no opt-in or opt-out answers: a site whose policy opts out is asked nothing.

use chrono::{DateTime, Duration, Utc};

use super::wire::{Event, EventInterval, IntervalPeriod, MAX_DURATION_S, duration_s, is_id};
use crate::adapters::openadr::book::{Ask, EVENT_PREFIX, Policy};

/// One interval's period, when it can be told: its start and, when it has one, its end.
/// Checked arithmetic throughout: a period no clock can hold is no period.
fn period_of(
    event: &Event,
    place: usize,
    interval: &EventInterval,
) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    // Some(None): no duration; None: one that does not parse.
    let span = |p: &IntervalPeriod| -> Option<Option<Duration>> {
        match p.duration.as_deref() {
            None => Some(None),
            Some(text) => duration_s(text).map(|s| Some(Duration::seconds(s))),
        }
    };
    let end = |start: DateTime<Utc>, length: Duration| start.checked_add_signed(length);
    if let Some(own) = &interval.interval_period {
        return match span(own)? {
            Some(length) => Some((own.start, Some(end(own.start, length)?))),
            None => Some((own.start, None)),
        };
    }
    let whole = event.interval_period.as_ref()?;
    match span(whole)? {
        Some(length) => {
            let offset = length.checked_mul(i32::try_from(place).ok()?)?;
            let start = whole.start.checked_add_signed(offset)?;
            Some((start, Some(end(start, length)?)))
        }
        // No duration: one open interval (only the first can be told).
        None => (place == 0).then_some((whole.start, None)),
    }
}

/// What one unit of a `payload_type` value is worth, by the units its descriptor states
/// (`table`: upper-case units and their worth; the first entry is the default when none is
/// stated); `None` for units adit cannot read.
fn per_unit(event: &Event, payload_type: &str, table: &[(&str, f64)]) -> Option<f64> {
    let units = event
        .payload_descriptors
        .iter()
        .flatten()
        .find(|d| d.payload_type == payload_type)
        .and_then(|d| d.units.as_deref());
    match units {
        None => table.first().map(|(_, worth)| *worth),
        Some(u) => table
            .iter()
            .find(|(name, _)| u.eq_ignore_ascii_case(name))
            .map(|(_, worth)| *worth),
    }
}

/// kW per unit of an `IMPORT_CAPACITY_LIMIT` value.
const CAPACITY_UNITS: &[(&str, f64)] = &[("KW", 1.0), ("W", 0.001), ("MW", 1_000.0)];
/// MWh a `PRICE` value is per.
const PRICE_UNITS: &[(&str, f64)] = &[("KWH", 0.001), ("MWH", 1.0)];

/// The target, kW, one interval asks of the site, if any.
fn target(event: &Event, interval: &EventInterval, policy: &Policy) -> Option<f64> {
    let asked = interval.payloads.iter().filter_map(|p| {
        let value = p.values.first()?.as_f64()?;
        let kw = match p.kind.as_str() {
            "IMPORT_CAPACITY_LIMIT" => value * per_unit(event, p.kind.as_str(), CAPACITY_UNITS)?,
            "SIMPLE" => {
                let level = value.round();
                if level < 1.0 {
                    return None;
                }
                let n = (level as usize).min(policy.levels_kw.len());
                *policy.levels_kw.get(n.checked_sub(1)?)?
            }
            _ => return None,
        };
        kw.is_finite().then_some(kw.max(0.0))
    });
    asked.reduce(f64::min)
}

/// The energy price in force at a time, from a `PRICE` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// The grid signal's event id: the VTN's event and the interval.
    pub event_id: String,
    /// Currency units per MWh.
    pub per_mwh: f64,
}

/// One interval of an event, with its period when it can be told.
struct Timed<'a> {
    event: &'a Event,
    interval: &'a EventInterval,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
}

impl Timed<'_> {
    /// The grid signal's event id: the VTN's event and the interval.
    fn signal_id(&self) -> String {
        format!("{EVENT_PREFIX}{}-i{}", self.event.id, self.interval.id)
    }
}

/// Every interval of `events` (with a usable id) whose period can be told.
fn timed(events: &[Event]) -> impl Iterator<Item = Timed<'_>> {
    events.iter().filter(|e| is_id(&e.id)).flat_map(|event| {
        event
            .intervals
            .iter()
            .enumerate()
            .filter_map(move |(place, interval)| {
                let (start, end) = period_of(event, place, interval)?;
                Some(Timed {
                    event,
                    interval,
                    start,
                    end,
                })
            })
    })
}

/// The price in force at `now` (no lead: a price counts in its interval), of the most
/// important event (lowest priority number) that has one.
pub fn price(events: &[Event], now: DateTime<Utc>) -> Option<Price> {
    timed(events)
        .filter_map(|t| {
            let in_force = now >= t.start && t.end.is_none_or(|end| now < end);
            let value = t
                .interval
                .payloads
                .iter()
                .find(|p| p.kind == "PRICE")?
                .values
                .first()?
                .as_f64()?;
            let per_mwh = value / per_unit(t.event, "PRICE", PRICE_UNITS)?;
            (in_force && per_mwh.is_finite()).then(|| {
                let id = t.signal_id();
                (
                    t.event.priority.unwrap_or(u32::MAX),
                    Price {
                        event_id: id,
                        per_mwh,
                    },
                )
            })
        })
        .min_by_key(|(priority, _)| *priority)
        .map(|(_, price)| price)
}

/// What `events` ask of the site at `now`: the lowest target of the intervals asking then.
pub fn asks(events: &[Event], now: DateTime<Utc>, policy: &Policy) -> Option<Ask> {
    if !policy.opt_in {
        return None;
    }
    let lead = Duration::from_std(policy.lead).unwrap_or_default();
    let open_end = now + Duration::seconds(MAX_DURATION_S);
    timed(events)
        .filter_map(|t| {
            let until = t.end.unwrap_or(open_end);
            let from = t.start.checked_sub_signed(lead).unwrap_or(t.start);
            let asking = now >= from && now < until;
            let target_kw = target(t.event, t.interval, policy)?;
            asking.then(|| Ask {
                event_id: t.signal_id(),
                target_kw,
                deadline: t.start,
                until,
            })
        })
        .min_by(|a, b| {
            a.target_kw
                .total_cmp(&b.target_kw)
                .then(a.deadline.cmp(&b.deadline))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::openadr3::wire::{Payload, PayloadDescriptor};
    use proptest::prelude::*;

    const M: i64 = 60;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn policy() -> Policy {
        Policy {
            opt_in: true,
            levels_kw: vec![20.0, 10.0, 0.0],
            capacity_kw: None,
            lead: std::time::Duration::from_secs(60),
        }
    }

    fn payload(kind: &str, value: f64) -> Payload {
        Payload {
            kind: kind.into(),
            values: vec![serde_json::json!(value)],
        }
    }

    /// An event of intervals of `kind` with `values`, 10 minutes each from minute 5.
    fn event(id: &str, kind: &str, values: &[f64], units: Option<&str>) -> Event {
        Event {
            id: id.into(),
            program_id: "p".into(),
            event_name: None,
            priority: Some(0),
            modification_date_time: None,
            interval_period: Some(IntervalPeriod {
                start: at(5 * M),
                duration: Some("PT10M".into()),
            }),
            payload_descriptors: units.map(|u| {
                vec![PayloadDescriptor {
                    payload_type: kind.into(),
                    units: Some(u.into()),
                    currency: None,
                }]
            }),
            intervals: values
                .iter()
                .enumerate()
                .map(|(i, v)| EventInterval {
                    id: i as i64,
                    interval_period: None,
                    payloads: vec![payload(kind, *v)],
                })
                .collect(),
        }
    }

    #[test]
    fn a_capacity_limit_asks_its_value_from_the_lead_to_its_end() {
        let events = [event("e1", "IMPORT_CAPACITY_LIMIT", &[5.0, 8.0], None)];
        let p = policy();
        assert_eq!(asks(&events, at(3 * M), &p), None, "before the lead");
        let first = asks(&events, at(4 * M), &p).unwrap();
        assert_eq!(
            (first.target_kw, first.deadline, first.until),
            (5.0, at(5 * M), at(15 * M))
        );
        assert_eq!(first.event_id, "oadr-e1-i0");
        // The second interval follows the first: both ask from 14:00, the lower wins.
        assert_eq!(asks(&events, at(14 * M + 30), &p).unwrap().target_kw, 5.0);
        let second = asks(&events, at(15 * M), &p).unwrap();
        assert_eq!((second.target_kw, second.until), (8.0, at(25 * M)));
        assert_eq!(asks(&events, at(25 * M), &p), None, "after the end");
    }

    #[test]
    fn units_levels_and_policy_are_read_as_the_site_says() {
        let p = policy();
        let w = [event("w", "IMPORT_CAPACITY_LIMIT", &[7_500.0], Some("W"))];
        assert_eq!(asks(&w, at(6 * M), &p).unwrap().target_kw, 7.5);
        let unknown = [event("u", "IMPORT_CAPACITY_LIMIT", &[7.0], Some("AMPS"))];
        assert_eq!(
            asks(&unknown, at(6 * M), &p),
            None,
            "units adit cannot read"
        );
        let simple = [event("s", "SIMPLE", &[2.0], None)];
        assert_eq!(asks(&simple, at(6 * M), &p).unwrap().target_kw, 10.0);
        let zero = [event("z", "SIMPLE", &[0.0], None)];
        assert_eq!(asks(&zero, at(6 * M), &p), None, "level 0 asks nothing");
        let price = [event("pr", "PRICE", &[0.31], None)];
        assert_eq!(
            asks(&price, at(6 * M), &p),
            None,
            "a price is no curtailment"
        );
        let out = Policy {
            opt_in: false,
            ..policy()
        };
        assert_eq!(asks(&w, at(6 * M), &out), None, "a site that opts out");
    }

    #[test]
    fn an_interval_s_own_period_wins_and_an_open_one_lasts() {
        let mut e = event("own", "IMPORT_CAPACITY_LIMIT", &[3.0], None);
        e.intervals[0].interval_period = Some(IntervalPeriod {
            start: at(30 * M),
            duration: None,
        });
        let events = [e];
        assert_eq!(asks(&events, at(10 * M), &policy()), None);
        let ask = asks(&events, at(40 * M), &policy()).unwrap();
        assert_eq!((ask.target_kw, ask.deadline), (3.0, at(30 * M)));
    }

    #[test]
    fn a_price_counts_in_its_interval_per_mwh() {
        let kwh = [event("pr", "PRICE", &[0.31, 0.12], None)];
        assert_eq!(price(&kwh, at(4 * M)), None, "no lead for a price");
        let first = price(&kwh, at(5 * M)).unwrap();
        assert_eq!(first.event_id, "oadr-pr-i0");
        assert!((first.per_mwh - 310.0).abs() < 1e-9);
        assert!((price(&kwh, at(15 * M)).unwrap().per_mwh - 120.0).abs() < 1e-9);
        assert_eq!(price(&kwh, at(25 * M)), None);
        let mwh = [event("m", "PRICE", &[45.0], Some("MWH"))];
        assert_eq!(price(&mwh, at(6 * M)).unwrap().per_mwh, 45.0);
        let odd = [event("o", "PRICE", &[45.0], Some("THERM"))];
        assert_eq!(price(&odd, at(6 * M)), None, "units adit cannot read");
        let mut urgent = event("u", "PRICE", &[0.5], None);
        urgent.priority = Some(0);
        let mut routine = event("r", "PRICE", &[0.1], None);
        routine.priority = Some(5);
        assert_eq!(
            price(&[routine, urgent], at(6 * M)).unwrap().event_id,
            "oadr-u-i0",
            "the most important event's price"
        );
    }

    proptest! {
        /// Any event, however malformed, is read or skipped without a panic, and what is
        /// asked is a finite target of 0 or more.
        #[test]
        fn any_event_is_read_or_skipped(
            kind in prop::sample::select(vec!["IMPORT_CAPACITY_LIMIT", "SIMPLE", "PRICE", "X"]),
            value in prop::num::f64::ANY,
            duration in "[PTYMDHS0-9.]{0,12}",
            place in 0usize..5,
            offset in -100_000i64..100_000,
        ) {
            let mut e = event("any", kind, &vec![value; place + 1], None);
            e.interval_period.as_mut().unwrap().duration = Some(duration);
            if let Some(ask) = asks(&[e], at(offset), &policy()) {
                prop_assert!(ask.target_kw.is_finite() && ask.target_kw >= 0.0);
                prop_assert!(ask.until > ask.deadline - Duration::seconds(1));
            }
        }
    }
}
