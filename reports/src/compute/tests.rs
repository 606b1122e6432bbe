//! A site's day computed from its minutes: local days across clock changes, peaks and thresholds,
//! quality and gaps, curtailments judged by their deadline, violations clipped, the score.

use super::*;

fn t(h: i64, m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(0, 0).unwrap() + Duration::hours(h) + Duration::minutes(m)
}

#[test]
fn a_local_day_follows_the_clock_changes() {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let (a, b) = local_window("Europe/Oslo", d("2026-03-29")).unwrap();
    assert_eq!((b - a).num_hours(), 23);
    let (a, b) = local_window("Europe/Oslo", d("2026-10-25")).unwrap();
    assert_eq!((b - a).num_hours(), 25);
    let (a, b) = local_window("UTC", d("2026-11-21")).unwrap();
    assert_eq!(a.to_rfc3339(), "2026-11-21T00:00:00+00:00");
    assert_eq!((b - a).num_hours(), 24);
    assert!(local_window("Mars/Olympus", d("2026-11-21")).is_err());
}

#[test]
fn energy_peak_and_minutes_over_thresholds() {
    let limits = Limits {
        allocation_kw: 10.0,
        warning_pct: 80.0,
        critical_pct: 95.0,
        max_temp_c: 35.0,
    };
    let power = vec![
        Some(6000.0),
        Some(8500.0),
        None,
        Some(9600.0),
        Some(10_500.0),
    ];
    let e = energy_section(&limits, t(0, 0), 1440, &power);
    assert_eq!(e.minutes_over_warning, 3);
    assert_eq!(e.minutes_over_critical, 2);
    assert_eq!(e.minutes_over_allocation, 1);
    assert_eq!(e.peak_kw, Some(10.5));
    assert_eq!(e.peak_at, Some(t(0, 4)));
    assert_eq!(
        e.energy_kwh,
        round((6000.0 + 8500.0 + 9600.0 + 10_500.0) / 60_000.0, 3)
    );
    assert_eq!(e.allocation_kwh, 240.0);
}

#[test]
fn quality_counts_minutes_and_marks_gaps() {
    let power = vec![Some(1.0), None, None, Some(1.0), Some(1.0), None];
    let weak = vec![false, false, false, true, false, false];
    let q = quality(t(0, 0), Some(&power), Some(&weak), 6);
    assert_eq!((q.measured, q.estimated, q.missing), (2, 1, 3));
    assert_eq!(q.gaps, vec![(t(0, 1), t(0, 3)), (t(0, 5), t(0, 6))]);
    let none = quality(t(0, 0), None, None, 4);
    assert_eq!(none.missing, 4);
    assert_eq!(none.gaps, vec![(t(0, 0), t(0, 4))]);
}

#[test]
fn a_curtailment_is_met_when_the_target_is_reached_by_the_deadline() {
    let mut power = vec![Some(10_000.0); 60];
    for w in power.iter_mut().skip(12) {
        *w = Some(4_000.0);
    }
    let signal = |id: &str, curtail, at, deadline| Signal {
        event_id: id.into(),
        curtail,
        target_kw: Some(5.0),
        deadline: Some(deadline),
        at,
    };
    let signals = vec![
        signal("e1", true, t(0, 10), t(0, 15)),
        signal("e1", false, t(0, 30), t(0, 30)),
        signal("e2", true, t(0, 40), t(0, 41)),
    ];
    let commands = vec![t(0, 10), t(0, 11), t(0, 45)];
    let c = curtailments(&signals, t(0, 0), t(1, 0), Some(&power), &commands);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].target_reached_at, Some(t(0, 13)));
    assert_eq!(c[0].time_to_target_s, Some(180));
    assert!(c[0].met);
    assert_eq!(c[0].reduction_kw, Some(6.0));
    assert_eq!(c[0].commands_sent, 2);
    assert_eq!(c[0].ended_at, t(0, 30));
    // The evidence: the baseline is the ten minutes before the signal, and each minute of
    // the event says what it achieved.
    assert_eq!(c[0].baseline_kw, Some(10.0));
    assert_eq!(c[0].baseline_method, BASELINE_METHOD);
    assert_eq!(c[0].intervals.len(), 20);
    assert_eq!(c[0].intervals[0].start, t(0, 10));
    assert_eq!(c[0].intervals[0].load_kw, Some(10.0));
    assert_eq!(c[0].intervals[0].at_target, Some(false));
    assert_eq!(c[0].intervals[2].load_kw, Some(4.0));
    assert_eq!(c[0].intervals[2].reduction_kw, Some(6.0));
    assert_eq!(c[0].intervals[2].at_target, Some(true));
    let first_met = c[0]
        .intervals
        .iter()
        .position(|i| i.at_target == Some(true));
    assert_eq!(
        c[0].intervals[first_met.unwrap()].start + Duration::minutes(1),
        c[0].target_reached_at.unwrap(),
        "the first interval at the target ends when it was reached"
    );
    // Already under target at its signal: reached in its first minute, after a 1-min deadline.
    assert_eq!(c[1].target_reached_at, Some(t(0, 41)));
    assert!(c[1].met);
    assert_eq!(c[1].commands_sent, 1);
    assert_eq!(c[1].ended_at, t(1, 0));
}

#[test]
fn a_curtailment_signalled_before_midnight_is_judged_past_it() {
    // Day 0; the signal at 23:50 gives until 00:10; the load is under target from 00:05.
    let mut power = vec![Some(10_000.0); 24 * 60 + 30];
    for w in power.iter_mut().skip(24 * 60 + 5) {
        *w = Some(4_000.0);
    }
    let signal = |id: &str, curtail, at| Signal {
        event_id: id.into(),
        curtail,
        target_kw: Some(5.0),
        deadline: Some(t(24, 10)),
        at,
    };
    let (start, end) = (t(0, 0), t(24, 0));
    let mut signals = vec![
        signal("e1", true, t(23, 50)),
        signal("e1", false, t(24, 20)),
    ];
    assert_eq!(judged_until(&signals, start, end), t(24, 20));
    let commands = vec![t(23, 51), t(24, 1), t(24, 30)];
    let c = curtailments(&signals, start, end, Some(&power), &commands);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].target_reached_at, Some(t(24, 6)));
    assert!(c[0].met, "reached at 00:06, before the 00:10 deadline");
    assert_eq!(c[0].ended_at, t(24, 20));
    assert_eq!(c[0].lowest_kw, Some(4.0));
    assert_eq!(c[0].commands_sent, 2);
    // With no end signal, it is followed to its deadline.
    signals.pop();
    assert_eq!(judged_until(&signals, start, end), t(24, 10));
    let c = curtailments(&signals, start, end, Some(&power), &commands);
    assert!(c[0].met);
    assert_eq!(c[0].ended_at, t(24, 10));
    // The next day's signals are that day's events.
    signals.push(signal("e2", true, t(24, 30)));
    assert_eq!(
        curtailments(&signals, start, end, Some(&power), &commands).len(),
        1
    );
    assert_eq!(judged_until(&signals, start, end), t(24, 30));
}

#[test]
fn violations_are_clipped_to_the_day_with_their_worst_severity() {
    let row =
        |id: &str, event: &str, severity: &str, started: DateTime<Utc>, dur: f64| ViolationRowIn {
            id: id.into(),
            event: event.into(),
            subject: "site s1".into(),
            kind: "power_allocation".into(),
            severity: severity.into(),
            peak: Some(11.0),
            limit: Some(10.0),
            started_us: started.timestamp_micros(),
            duration_s: dur,
            ts_us: (started + Duration::seconds(dur as i64)).timestamp_micros(),
        };
    let rows = vec![
        row("a", "opened", "warning", t(23, 0), 0.0),
        row("a", "updated", "critical", t(23, 0), 600.0),
        row("a", "resolved", "critical", t(23, 0), 7200.0),
        row("b", "opened", "warning", t(30, 0), 0.0),
        row("c", "opened", "warning", t(20, 0), 0.0),
        row("c", "resolved", "warning", t(20, 0), 60.0),
    ];
    let v = violations(&rows, t(24, 0), t(48, 0));
    let ids: Vec<_> = v.list.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, vec!["a", "b"]);
    assert_eq!(v.list[0].severity, "critical");
    assert_eq!(v.list[0].duration_s, 3600);
    assert_eq!(v.list[1].ended, None);
    assert_eq!(v.list[1].duration_s, 18 * 3600);
    assert_eq!(v.by_kind.len(), 2);
}

#[test]
fn the_score_follows_its_formula() {
    let q = Quality {
        minutes: 100,
        measured: 80,
        estimated: 10,
        missing: 10,
        measured_share: 0.8,
        estimated_share: 0.1,
        missing_share: 0.1,
        gaps: Vec::new(),
    };
    let e = EnergySection {
        energy_kwh: 1.0,
        allocation_kwh: 1.0,
        used_pct: 100.0,
        peak_kw: None,
        peak_at: None,
        minutes_over_warning: 9,
        minutes_over_critical: 9,
        minutes_over_allocation: 9,
    };
    let s = score(Some(&e), Some(&[]), &q, None);
    assert_eq!(s.allocation, 45.0);
    assert_eq!(s.curtailment, 30.0);
    assert_eq!(s.data, 17.0);
    assert_eq!(s.value, 92.0);
    let nothing = score(None, None, &quality(t(0, 0), None, None, 10), None);
    assert_eq!(nothing.value, 30.0);
}
