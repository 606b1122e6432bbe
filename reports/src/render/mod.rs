//! A report as a person reads it: a self-contained, printable HTML page with server-drawn SVG
//! charts, and CSV (one figure per line: section, item, field, value). Both are pure functions
//! of the report, so the same report always renders to the same bytes.

mod evidence;

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::error::{Error, Result};
use adit_schemas::Inspection;

use crate::model::{ComplianceReport, Curtailment, ViolationItem};
use crate::svg::{Chart, Line, Rule};

/// The formats a report renders to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A printable page.
    Html,
    /// One figure per line.
    Csv,
    /// The report itself.
    Json,
}

impl Format {
    /// The format named `name`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "html" => Ok(Self::Html),
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            other => Err(Error::Invalid(format!(
                "unknown format {other:?}; use html, csv or json"
            ))),
        }
    }

    /// Its file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Html => "html",
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Html => "text/html; charset=utf-8",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
        }
    }
}

/// `report` in `format`.
pub fn render(report: &ComplianceReport, format: Format) -> Result<Vec<u8>> {
    match format {
        Format::Html => Ok(html(report).into_bytes()),
        Format::Csv => csv(report),
        Format::Json => serde_json::to_vec_pretty(report).map_err(|e| Error::Encode(e.to_string())),
    }
}

/// The site-local time of `t` (`HH:MM`), or with the date when it is not on the report's day.
fn local(report: &ComplianceReport, t: DateTime<Utc>) -> String {
    match report.timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => {
            let l = t.with_timezone(&tz);
            if l.date_naive() == report.date {
                l.format("%H:%M").to_string()
            } else {
                l.format("%Y-%m-%d %H:%M").to_string()
            }
        }
        Err(_) => t.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

fn opt(v: Option<f64>, places: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| fixed(v, places))
}

fn hours(minutes: i64) -> String {
    format!("{:.2}", minutes as f64 / 60.0)
}

fn duration(seconds: i64) -> String {
    format!(
        "{}h {:02}m {:02}s",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111;max-width:820px;margin:24px auto;padding:0 16px;line-height:1.4}\
h1{font-size:22px;margin:0}h2{font-size:16px;border-bottom:1px solid #ccc;padding-bottom:2px;margin-top:28px}\
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eee}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#666}.nodata{color:#666;font-style:italic}\
.score{font-size:40px;font-weight:bold}h3{font-size:14px;margin-top:20px}\
.evidence{margin-top:12px}table.intervals{font-size:12px}.bad{color:#b00}.ok{color:#070}\
td.findings{white-space:pre-wrap}\
@media print{body{margin:0;max-width:none}h2{break-after:avoid}table,svg{break-inside:avoid}}";

/// The report as a self-contained HTML page. Built with maud, which escapes every value by
/// construction; only the charts (SVG markup maud built too) go in as they are.
pub fn html(r: &ComplianceReport) -> String {
    let title = format!("Compliance report — {} — {}", r.site, r.date);
    let status = match r.revision {
        Some(n) => format!("revision {n}"),
        None => "provisional: not yet closed by the nightly run".to_string(),
    };
    let site_name = if r.site_name.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.site_name)
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                // Self-contained: no request for a favicon either.
                link rel="icon" href="data:,";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                p class="muted" {
                    "Site " (r.site) (site_name) " · local day " (r.date) " (" (r.timezone) ") · "
                    (r.window_start.format("%Y-%m-%d %H:%M")) " to "
                    (r.window_end.format("%Y-%m-%d %H:%M")) " UTC · " (status)
                }
                (summary(r))
                (energy(r))
                (temperature(r))
                (violations(r))
                (curtailments(r))
                (evidence::events(r))
                (inspections(r))
                (quality(r))
                h2 { "How the score is computed" }
                p { (r.score.formula) }
                table {
                    tr { th { "part" } th class="n" { "points" } }
                    tr { td { "allocation (of 50)" } td class="n" id="score-allocation" { (fixed(r.score.allocation, 2)) } }
                    tr { td { "curtailment (of 30)" } td class="n" id="score-curtailment" { (fixed(r.score.curtailment, 2)) } }
                    tr { td { "data (of 20)" } td class="n" id="score-data" { (fixed(r.score.data, 2)) } }
                    tr { td { "penalty" } td class="n" id="score-penalty" { "−" (fixed(r.score.penalty, 2)) } }
                }
            }
        }
    };
    page.into_string() + "\n"
}

/// `v` with `places` decimals.
fn fixed(v: f64, places: usize) -> String {
    format!("{v:.places$}")
}

fn summary(r: &ComplianceReport) -> Markup {
    html! {
        h2 { "Summary" }
        p { span class="score" id="score" { (fixed(r.score.value, 1)) } " / 100 compliance score" }
        table {
            tr {
                th { "allocation" }
                td class="n" { (fixed(r.limits.allocation_kw, 1)) " kW" }
                th { "warning / critical" }
                td class="n" { (fixed(r.limits.warning_pct, 0)) " % / " (fixed(r.limits.critical_pct, 0)) " %" }
            }
        }
    }
}

fn energy(r: &ComplianceReport) -> Markup {
    let Some(e) = &r.energy else {
        return html! {
            h2 { "Energy against allocation" }
            p class="nodata" { "No data: no energy has been recorded for any site yet." }
        };
    };
    let warn = r.limits.allocation_kw * r.limits.warning_pct / 100.0;
    let chart = Chart {
        title: "Power against allocation",
        unit: "kW",
        lines: vec![Line {
            label: "site power",
            color: "#1f5fa8",
            values: &r.series.power_kw,
        }],
        rules: vec![
            Rule {
                label: "allocation",
                color: "#b00",
                value: r.limits.allocation_kw,
            },
            Rule {
                label: "warning",
                color: "#c80",
                value: warn,
            },
        ],
        ticks: ticks(r),
    };
    html! {
        h2 { "Energy against allocation" }
        table {
            tr { td { "energy used" } td class="n" id="energy-kwh" { (fixed(e.energy_kwh, 3)) " kWh" } }
            tr { td { "energy allowed by the allocation" } td class="n" id="allocation-kwh" { (fixed(e.allocation_kwh, 3)) " kWh" } }
            tr { td { "used of allowed" } td class="n" { (fixed(e.used_pct, 2)) " %" } }
            tr {
                td { "peak power (minute mean)" }
                td class="n" id="peak-kw" { (opt(e.peak_kw, 3)) " kW at " (e.peak_at.map_or("—".into(), |t| local(r, t))) }
            }
            tr { td { "hours over warning (" (fixed(r.limits.warning_pct, 0)) " %)" } td class="n" id="hours-warning" { (hours(e.minutes_over_warning)) } }
            tr { td { "hours over critical (" (fixed(r.limits.critical_pct, 0)) " %)" } td class="n" id="hours-critical" { (hours(e.minutes_over_critical)) } }
            tr { td { "hours over allocation" } td class="n" id="hours-allocation" { (hours(e.minutes_over_allocation)) } }
        }
        (chart.render())
        @if !r.pools.is_empty() {
            table {
                tr { th { "pool" } th class="n" { "machines" } th class="n" { "energy, kWh" } }
                @for p in &r.pools {
                    tr { td { (p.pool) } td class="n" { (p.machines) } td class="n" { (fixed(p.energy_kwh, 3)) } }
                }
            }
        }
    }
}

/// Tick labels every 3 hours of local time.
fn ticks(r: &ComplianceReport) -> Vec<(f64, String)> {
    let total = (r.window_end - r.window_start).num_minutes().max(1) as f64;
    (0..=8)
        .map(|i| {
            let t = r.window_start + chrono::Duration::hours(3 * i);
            (
                (t - r.window_start).num_minutes() as f64 / total,
                local(r, t),
            )
        })
        .filter(|(f, _)| *f <= 1.0)
        .collect()
}

fn temperature(r: &ComplianceReport) -> Markup {
    let chart = Chart {
        title: "Highest temperature over the site's sensors (5 min)",
        unit: "°C",
        lines: vec![Line {
            label: "temperature",
            color: "#a33",
            values: &r.series.temperature_c,
        }],
        rules: if r.series.temperature_c.iter().any(Option::is_some) {
            vec![Rule {
                label: "limit",
                color: "#b00",
                value: r.limits.max_temp_c,
            }]
        } else {
            Vec::new()
        },
        ticks: ticks(r),
    };
    html! {
        h2 { "Temperature" }
        (chart.render())
    }
}

fn violations(r: &ComplianceReport) -> Markup {
    html! {
        h2 { "Violations" }
        @match &r.violations {
            None => p class="nodata" { "No data: no violation has ever been recorded." },
            Some(v) if v.list.is_empty() => p class="ok" id="violations-none" { "None during the day." },
            Some(v) => {
                table id="violations-by-kind" {
                    tr { th { "kind" } th { "severity" } th class="n" { "count" } th class="n" { "time in the day" } }
                    @for g in &v.by_kind {
                        tr { td { (g.kind) } td { (g.severity) } td class="n" { (g.count) } td class="n" { (duration(g.duration_s)) } }
                    }
                }
                table id="violations" {
                    tr {
                        th { "kind" } th { "severity" } th { "subject" } th { "from" } th { "to" }
                        th class="n" { "duration" } th class="n" { "peak / limit" }
                    }
                    @for item in &v.list { (violation_row(r, item)) }
                }
            }
        }
    }
}

fn violation_row(r: &ComplianceReport, v: &ViolationItem) -> Markup {
    html! {
        tr {
            td { (v.kind) }
            td { (v.severity) }
            td { (v.subject) }
            td { (local(r, v.started)) }
            td { (v.ended.map_or("still open".into(), |t| local(r, t))) }
            td class="n" { (duration(v.duration_s)) }
            td class="n" { (opt(v.peak, 2)) " / " (opt(v.limit, 2)) }
        }
    }
}

fn curtailments(r: &ComplianceReport) -> Markup {
    html! {
        h2 { "Curtailment events" }
        @match &r.curtailments {
            None => p class="nodata" { "No data: no grid signal has ever been received." },
            Some(c) if c.is_empty() => p id="curtailments-none" { "No curtailment was asked for during the day." },
            Some(c) => table id="curtailments" {
                tr {
                    th { "event" } th { "signal" } th class="n" { "target kW" } th { "deadline" }
                    th class="n" { "before → lowest kW" } th class="n" { "commands" } th { "reached" }
                    th class="n" { "time to target" } th { "met" }
                }
                @for e in c { (curtailment_row(r, e)) }
            },
        }
    }
}

fn curtailment_row(r: &ComplianceReport, e: &Curtailment) -> Markup {
    html! {
        tr {
            td { (e.event_id) }
            td { (local(r, e.signal_at)) }
            td class="n" { (fixed(e.target_kw, 1)) }
            td { (local(r, e.deadline)) }
            td class="n" { (opt(e.load_before_kw, 1)) " → " (opt(e.lowest_kw, 1)) }
            td class="n" { (e.commands_sent) }
            td { (e.target_reached_at.map_or("not reached".into(), |t| local(r, t))) }
            td class="n" { (e.time_to_target_s.map_or("—".into(), duration)) }
            td class=(if e.met { "ok" } else { "bad" }) { (if e.met { "yes" } else { "no" }) }
        }
    }
}

fn inspections(r: &ComplianceReport) -> Markup {
    html! {
        h2 { "Inspections" }
        @if r.inspections.is_empty() {
            p id="inspections-none" { "No inspection of the site or its pools during the day." }
        } @else {
            table id="inspections" {
                tr {
                    th { "when" } th { "of" } th { "inspector" } th { "outcome" } th { "findings" }
                    th { "recorded by" }
                }
                @for i in &r.inspections { (inspection_row(r, i)) }
            }
        }
    }
}

fn inspection_row(r: &ComplianceReport, i: &Inspection) -> Markup {
    let class = match i.outcome.as_str() {
        "pass" => "ok",
        "fail" => "bad",
        _ => "",
    };
    html! {
        tr {
            td { (local(r, i.inspected_at)) }
            td { (i.scope) " " (i.target) }
            td { (i.inspector) }
            td class=(class) { (i.outcome) }
            td class="findings" { (i.findings) }
            td { (i.recorded_by) }
        }
    }
}

fn quality(r: &ComplianceReport) -> Markup {
    let q = &r.quality;
    html! {
        h2 { "Data quality" }
        table {
            tr { td { "minutes in the day" } td class="n" { (q.minutes) } }
            tr { td { "measured" } td class="n" id="minutes-measured" { (q.measured) " (" (fixed(100.0 * q.measured_share, 2)) " %)" } }
            tr { td { "estimated or partly covered" } td class="n" id="minutes-estimated" { (q.estimated) " (" (fixed(100.0 * q.estimated_share, 2)) " %)" } }
            tr { td { "missing" } td class="n" id="minutes-missing" { (q.missing) " (" (fixed(100.0 * q.missing_share, 2)) " %)" } }
        }
        @if !q.gaps.is_empty() {
            p { "Gaps (no figure):" }
            table id="gaps" {
                tr { th { "from" } th { "to" } th class="n" { "minutes" } }
                @for (a, b) in &q.gaps {
                    tr { td { (local(r, *a)) } td { (local(r, *b)) } td class="n" { ((*b - *a).num_minutes()) } }
                }
            }
        }
    }
}

/// The report as CSV: `section,item,field,value`, one figure per line.
pub fn csv(r: &ComplianceReport) -> Result<Vec<u8>> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let mut put = |section: &str, item: &str, field: &str, value: String| {
        w.write_record([section, item, field, value.as_str()])
            .map_err(|e| Error::Encode(e.to_string()))
    };
    put("section", "item", "field", "value".into())?;
    let ts = |t: DateTime<Utc>| t.to_rfc3339();
    let o = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    put("report", "", "site", r.site.clone())?;
    put("report", "", "date", r.date.to_string())?;
    put("report", "", "timezone", r.timezone.clone())?;
    put("report", "", "window_start", ts(r.window_start))?;
    put("report", "", "window_end", ts(r.window_end))?;
    put(
        "report",
        "",
        "revision",
        r.revision.map_or("provisional".into(), |n| n.to_string()),
    )?;
    put(
        "limits",
        "",
        "allocation_kw",
        r.limits.allocation_kw.to_string(),
    )?;
    put(
        "limits",
        "",
        "warning_pct",
        r.limits.warning_pct.to_string(),
    )?;
    put(
        "limits",
        "",
        "critical_pct",
        r.limits.critical_pct.to_string(),
    )?;
    match &r.energy {
        None => put("energy", "", "status", "no data".into())?,
        Some(e) => {
            put("energy", "", "energy_kwh", e.energy_kwh.to_string())?;
            put("energy", "", "allocation_kwh", e.allocation_kwh.to_string())?;
            put("energy", "", "used_pct", e.used_pct.to_string())?;
            put("energy", "", "peak_kw", o(e.peak_kw))?;
            put("energy", "", "peak_at", e.peak_at.map_or(String::new(), ts))?;
            put(
                "energy",
                "",
                "minutes_over_warning",
                e.minutes_over_warning.to_string(),
            )?;
            put(
                "energy",
                "",
                "minutes_over_critical",
                e.minutes_over_critical.to_string(),
            )?;
            put(
                "energy",
                "",
                "minutes_over_allocation",
                e.minutes_over_allocation.to_string(),
            )?;
        }
    }
    for p in &r.pools {
        put("pool", &p.pool, "machines", p.machines.to_string())?;
        put("pool", &p.pool, "energy_kwh", p.energy_kwh.to_string())?;
    }
    for i in &r.inspections {
        put("inspection", &i.id, "scope", i.scope.clone())?;
        put("inspection", &i.id, "target", i.target.clone())?;
        put("inspection", &i.id, "inspector", i.inspector.clone())?;
        put("inspection", &i.id, "inspected_at", ts(i.inspected_at))?;
        put("inspection", &i.id, "outcome", i.outcome.clone())?;
        put("inspection", &i.id, "findings", i.findings.clone())?;
        put("inspection", &i.id, "recorded_by", i.recorded_by.clone())?;
    }
    match &r.violations {
        None => put("violations", "", "status", "no data".into())?,
        Some(v) => {
            put("violations", "", "count", v.list.len().to_string())?;
            for g in &v.by_kind {
                let item = format!("{}/{}", g.kind, g.severity);
                put("violations_by_kind", &item, "count", g.count.to_string())?;
                put(
                    "violations_by_kind",
                    &item,
                    "duration_s",
                    g.duration_s.to_string(),
                )?;
            }
            for v in &v.list {
                put("violation", &v.id, "kind", v.kind.clone())?;
                put("violation", &v.id, "severity", v.severity.clone())?;
                put("violation", &v.id, "subject", v.subject.clone())?;
                put("violation", &v.id, "started", ts(v.started))?;
                put(
                    "violation",
                    &v.id,
                    "ended",
                    v.ended.map_or(String::new(), ts),
                )?;
                put("violation", &v.id, "duration_s", v.duration_s.to_string())?;
                put("violation", &v.id, "peak", o(v.peak))?;
                put("violation", &v.id, "limit", o(v.limit))?;
            }
        }
    }
    match &r.curtailments {
        None => put("curtailments", "", "status", "no data".into())?,
        Some(c) => {
            put("curtailments", "", "count", c.len().to_string())?;
            for e in c {
                let id = e.event_id.as_str();
                put("curtailment", id, "signal_at", ts(e.signal_at))?;
                put("curtailment", id, "target_kw", e.target_kw.to_string())?;
                put("curtailment", id, "deadline", ts(e.deadline))?;
                put("curtailment", id, "ended_at", ts(e.ended_at))?;
                put("curtailment", id, "load_before_kw", o(e.load_before_kw))?;
                put("curtailment", id, "lowest_kw", o(e.lowest_kw))?;
                put("curtailment", id, "reduction_kw", o(e.reduction_kw))?;
                put(
                    "curtailment",
                    id,
                    "commands_sent",
                    e.commands_sent.to_string(),
                )?;
                put(
                    "curtailment",
                    id,
                    "target_reached_at",
                    e.target_reached_at.map_or(String::new(), ts),
                )?;
                put(
                    "curtailment",
                    id,
                    "time_to_target_s",
                    e.time_to_target_s.map_or(String::new(), |s| s.to_string()),
                )?;
                put("curtailment", id, "met", e.met.to_string())?;
                put("curtailment", id, "baseline_kw", o(e.baseline_kw))?;
                put(
                    "curtailment",
                    id,
                    "baseline_method",
                    e.baseline_method.clone(),
                )?;
                for m in &e.intervals {
                    let item = format!("{id}@{}", ts(m.start));
                    put("evidence", &item, "load_kw", o(m.load_kw))?;
                    put("evidence", &item, "reduction_kw", o(m.reduction_kw))?;
                }
            }
        }
    }
    let q = &r.quality;
    put("quality", "", "minutes", q.minutes.to_string())?;
    put("quality", "", "measured", q.measured.to_string())?;
    put("quality", "", "estimated", q.estimated.to_string())?;
    put("quality", "", "missing", q.missing.to_string())?;
    for (a, b) in &q.gaps {
        put("gap", &ts(*a), "until", ts(*b))?;
    }
    put("score", "", "value", r.score.value.to_string())?;
    put("score", "", "allocation", r.score.allocation.to_string())?;
    put("score", "", "curtailment", r.score.curtailment.to_string())?;
    put("score", "", "data", r.score.data.to_string())?;
    put("score", "", "penalty", r.score.penalty.to_string())?;
    put("score", "", "formula", r.score.formula.clone())?;
    w.into_inner().map_err(|e| Error::Encode(e.to_string()))
}
