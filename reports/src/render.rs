//! A report as a person reads it: a self-contained, printable HTML page with server-drawn SVG
//! charts, and CSV (one figure per line: section, item, field, value). Both are pure functions
//! of the report, so the same report always renders to the same bytes.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::model::{ComplianceReport, Curtailment, ViolationItem};
use crate::svg::{Chart, Line, Rule, esc};

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
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.places$}"))
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
.score{font-size:40px;font-weight:bold}.bad{color:#b00}.ok{color:#070}\
@media print{body{margin:0;max-width:none}h2{break-after:avoid}table,svg{break-inside:avoid}}";

/// The report as a self-contained HTML page.
pub fn html(r: &ComplianceReport) -> String {
    let mut h = String::new();
    let title = format!("Compliance report — {} — {}", r.site, r.date);
    h.push_str(&format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    ));
    let status = match r.revision {
        Some(n) => format!("revision {n}"),
        None => "provisional: not yet closed by the nightly run".to_string(),
    };
    h.push_str(&format!(
        "<h1>{}</h1><p class=\"muted\">Site {}{} · local day {} ({}) · {} to {} UTC · {}</p>",
        esc(&title),
        esc(&r.site),
        if r.site_name.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(&r.site_name))
        },
        r.date,
        esc(&r.timezone),
        r.window_start.format("%Y-%m-%d %H:%M"),
        r.window_end.format("%Y-%m-%d %H:%M"),
        status
    ));
    summary(&mut h, r);
    energy(&mut h, r);
    temperature(&mut h, r);
    violations(&mut h, r);
    curtailments(&mut h, r);
    quality(&mut h, r);
    h.push_str(&format!(
        "<h2>How the score is computed</h2><p>{}</p><table><tr><th>part</th><th class=\"n\">points</th></tr>\
         <tr><td>allocation (of 50)</td><td class=\"n\" id=\"score-allocation\">{:.2}</td></tr>\
         <tr><td>curtailment (of 30)</td><td class=\"n\" id=\"score-curtailment\">{:.2}</td></tr>\
         <tr><td>data (of 20)</td><td class=\"n\" id=\"score-data\">{:.2}</td></tr>\
         <tr><td>penalty</td><td class=\"n\" id=\"score-penalty\">−{:.2}</td></tr></table>",
        esc(&r.score.formula),
        r.score.allocation,
        r.score.curtailment,
        r.score.data,
        r.score.penalty
    ));
    h.push_str("</body></html>\n");
    h
}

fn summary(h: &mut String, r: &ComplianceReport) {
    h.push_str(&format!(
        "<h2>Summary</h2><p><span class=\"score\" id=\"score\">{:.1}</span> / 100 compliance score</p>",
        r.score.value
    ));
    h.push_str(&format!(
        "<table><tr><th>allocation</th><td class=\"n\">{:.1} kW</td><th>warning / critical</th><td class=\"n\">{:.0} % / {:.0} %</td></tr></table>",
        r.limits.allocation_kw, r.limits.warning_pct, r.limits.critical_pct
    ));
}

fn energy(h: &mut String, r: &ComplianceReport) {
    h.push_str("<h2>Energy against allocation</h2>");
    let Some(e) = &r.energy else {
        h.push_str(
            "<p class=\"nodata\">No data: no energy has been recorded for any site yet.</p>",
        );
        return;
    };
    h.push_str(&format!(
        "<table>\
         <tr><td>energy used</td><td class=\"n\" id=\"energy-kwh\">{:.3} kWh</td></tr>\
         <tr><td>energy allowed by the allocation</td><td class=\"n\" id=\"allocation-kwh\">{:.3} kWh</td></tr>\
         <tr><td>used of allowed</td><td class=\"n\">{:.2} %</td></tr>\
         <tr><td>peak power (minute mean)</td><td class=\"n\" id=\"peak-kw\">{} kW at {}</td></tr>\
         <tr><td>hours over warning ({:.0} %)</td><td class=\"n\" id=\"hours-warning\">{}</td></tr>\
         <tr><td>hours over critical ({:.0} %)</td><td class=\"n\" id=\"hours-critical\">{}</td></tr>\
         <tr><td>hours over allocation</td><td class=\"n\" id=\"hours-allocation\">{}</td></tr></table>",
        e.energy_kwh,
        e.allocation_kwh,
        e.used_pct,
        opt(e.peak_kw, 3),
        e.peak_at.map_or("—".into(), |t| local(r, t)),
        r.limits.warning_pct,
        hours(e.minutes_over_warning),
        r.limits.critical_pct,
        hours(e.minutes_over_critical),
        hours(e.minutes_over_allocation),
    ));
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
    h.push_str(&chart.render());
    if !r.pools.is_empty() {
        h.push_str("<table><tr><th>pool</th><th class=\"n\">machines</th><th class=\"n\">energy, kWh</th></tr>");
        for p in &r.pools {
            h.push_str(&format!(
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.3}</td></tr>",
                esc(&p.pool),
                p.machines,
                p.energy_kwh
            ));
        }
        h.push_str("</table>");
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

fn temperature(h: &mut String, r: &ComplianceReport) {
    h.push_str("<h2>Temperature</h2>");
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
    h.push_str(&chart.render());
}

fn violations(h: &mut String, r: &ComplianceReport) {
    h.push_str("<h2>Violations</h2>");
    let Some(v) = &r.violations else {
        h.push_str("<p class=\"nodata\">No data: no violation has ever been recorded.</p>");
        return;
    };
    if v.list.is_empty() {
        h.push_str("<p class=\"ok\" id=\"violations-none\">None during the day.</p>");
        return;
    }
    h.push_str("<table id=\"violations-by-kind\"><tr><th>kind</th><th>severity</th><th class=\"n\">count</th><th class=\"n\">time in the day</th></tr>");
    for g in &v.by_kind {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&g.kind),
            esc(&g.severity),
            g.count,
            duration(g.duration_s)
        ));
    }
    h.push_str("</table><table id=\"violations\"><tr><th>kind</th><th>severity</th><th>subject</th><th>from</th><th>to</th><th class=\"n\">duration</th><th class=\"n\">peak / limit</th></tr>");
    for item in &v.list {
        h.push_str(&violation_row(r, item));
    }
    h.push_str("</table>");
}

fn violation_row(r: &ComplianceReport, v: &ViolationItem) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{} / {}</td></tr>",
        esc(&v.kind),
        esc(&v.severity),
        esc(&v.subject),
        local(r, v.started),
        v.ended.map_or("still open".into(), |t| local(r, t)),
        duration(v.duration_s),
        opt(v.peak, 2),
        opt(v.limit, 2)
    )
}

fn curtailments(h: &mut String, r: &ComplianceReport) {
    h.push_str("<h2>Curtailment events</h2>");
    let Some(c) = &r.curtailments else {
        h.push_str("<p class=\"nodata\">No data: no grid signal has ever been received.</p>");
        return;
    };
    if c.is_empty() {
        h.push_str("<p id=\"curtailments-none\">No curtailment was asked for during the day.</p>");
        return;
    }
    h.push_str("<table id=\"curtailments\"><tr><th>event</th><th>signal</th><th class=\"n\">target kW</th><th>deadline</th><th class=\"n\">before → lowest kW</th><th class=\"n\">commands</th><th>reached</th><th class=\"n\">time to target</th><th>met</th></tr>");
    for e in c {
        h.push_str(&curtailment_row(r, e));
    }
    h.push_str("</table>");
}

fn curtailment_row(r: &ComplianceReport, e: &Curtailment) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td class=\"n\">{:.1}</td><td>{}</td><td class=\"n\">{} → {}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"{}\">{}</td></tr>",
        esc(&e.event_id),
        local(r, e.signal_at),
        e.target_kw,
        local(r, e.deadline),
        opt(e.load_before_kw, 1),
        opt(e.lowest_kw, 1),
        e.commands_sent,
        e.target_reached_at
            .map_or("not reached".into(), |t| local(r, t)),
        e.time_to_target_s.map_or("—".into(), duration),
        if e.met { "ok" } else { "bad" },
        if e.met { "yes" } else { "no" }
    )
}

fn quality(h: &mut String, r: &ComplianceReport) {
    let q = &r.quality;
    h.push_str(&format!(
        "<h2>Data quality</h2><table>\
         <tr><td>minutes in the day</td><td class=\"n\">{}</td></tr>\
         <tr><td>measured</td><td class=\"n\" id=\"minutes-measured\">{} ({:.2} %)</td></tr>\
         <tr><td>estimated or partly covered</td><td class=\"n\" id=\"minutes-estimated\">{} ({:.2} %)</td></tr>\
         <tr><td>missing</td><td class=\"n\" id=\"minutes-missing\">{} ({:.2} %)</td></tr></table>",
        q.minutes,
        q.measured,
        100.0 * q.measured_share,
        q.estimated,
        100.0 * q.estimated_share,
        q.missing,
        100.0 * q.missing_share
    ));
    if !q.gaps.is_empty() {
        h.push_str("<p>Gaps (no figure):</p><table id=\"gaps\"><tr><th>from</th><th>to</th><th class=\"n\">minutes</th></tr>");
        for (a, b) in &q.gaps {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                local(r, *a),
                local(r, *b),
                (*b - *a).num_minutes()
            ));
        }
        h.push_str("</table>");
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
