//! Each curtailment event's evidence on the report's page: the baseline and how it was taken,
//! what the utility asked and by when, a chart of the load achieved per minute against the
//! target and the baseline, and the minutes themselves (the `curtailment_evidence` rows).

use maud::{Markup, html};

use super::{duration, fixed, local, opt};
use crate::model::{ComplianceReport, Curtailment};
use crate::svg::{Chart, Line, Rule};

/// The evidence of every event of the day (nothing when there was none).
pub(super) fn events(r: &ComplianceReport) -> Markup {
    let events = r.curtailments.as_deref().unwrap_or_default();
    html! {
        @for (i, e) in events.iter().enumerate() {
            (event(r, i, e))
        }
    }
}

fn event(r: &ComplianceReport, i: usize, e: &Curtailment) -> Markup {
    let loads: Vec<Option<f64>> = e.intervals.iter().map(|m| m.load_kw).collect();
    let mut rules = vec![Rule {
        label: "target",
        color: "#b00",
        value: e.target_kw,
    }];
    if let Some(b) = e.baseline_kw {
        rules.push(Rule {
            label: "baseline",
            color: "#666",
            value: b,
        });
    }
    let n = e.intervals.len().max(1) as f64;
    let step = (e.intervals.len() / 6).max(1);
    let chart = Chart {
        title: "Load achieved per minute",
        unit: "kW",
        lines: vec![Line {
            label: "site power",
            color: "#1f5fa8",
            values: &loads,
        }],
        rules,
        ticks: e
            .intervals
            .iter()
            .enumerate()
            .step_by(step)
            .map(|(k, m)| (k as f64 / n, local(r, m.start)))
            .collect(),
    };
    html! {
        section class="evidence" id=(format!("evidence-{i}")) data-event=(e.event_id) data-met=(e.met) {
            h3 { "Evidence: event " (e.event_id) }
            table {
                tr { td { "baseline" } td class="n" id=(format!("evidence-{i}-baseline")) { (opt(e.baseline_kw, 3)) " kW" } }
                tr { td { "baseline method" } td class="muted" { (e.baseline_method) } }
                tr { td { "target" } td class="n" { (fixed(e.target_kw, 3)) " kW" } }
                tr { td { "signal" } td class="n" { (local(r, e.signal_at)) } }
                tr { td { "deadline" } td class="n" { (local(r, e.deadline)) } }
                tr {
                    td { "target reached" }
                    td class="n" { (e.target_reached_at.map_or("not reached".into(), |t| local(r, t))) }
                }
                tr { td { "time to target" } td class="n" { (e.time_to_target_s.map_or("—".into(), duration)) } }
                tr {
                    td { "met by the deadline" }
                    td class=(if e.met { "n ok" } else { "n bad" }) id=(format!("evidence-{i}-met")) {
                        (if e.met { "yes" } else { "no" })
                    }
                }
            }
            (chart.render())
            table class="intervals" {
                tr { th { "minute" } th class="n" { "load kW" } th class="n" { "reduction kW" } th { "at target" } }
                @for m in &e.intervals {
                    tr class="interval" {
                        td { (local(r, m.start)) }
                        td class="n" { (opt(m.load_kw, 3)) }
                        td class="n" { (opt(m.reduction_kw, 3)) }
                        td { (match m.at_target { Some(true) => "yes", Some(false) => "no", None => "—" }) }
                    }
                }
            }
        }
    }
}
