//! A dashboard as data: panels of SQL with a chart kind, units, thresholds and a place on a
//! 24-column grid; variables (such as `site`) whose values a query lists; a default time
//! range; who may see it. Everything a caller sends is checked here before it is stored, each
//! refusal naming the field: a panel's SQL must be one read-only query within the text limits,
//! names are plain, sizes are bounded.
//!
//! A panel's SQL reads its variables and the time range as placeholders (`$site`, `$from`,
//! `$to`), which the engine binds as values, never as text pasted into the statement.

use adit_auth::Role;
use adit_sql::syntax::TextLimits;
use serde::{Deserialize, Serialize};

/// Most panels on one dashboard.
const MAX_PANELS: usize = 50;
/// Most variables on one dashboard.
const MAX_VARIABLES: usize = 20;
/// Longest title, description, label or unit, characters.
const MAX_TEXT: usize = 2000;

/// A dashboard as its owner wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// Its title.
    pub title: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Who may see it.
    #[serde(default)]
    pub visibility: Visibility,
    /// The time range it opens on.
    #[serde(default)]
    pub time: TimeRange,
    /// Its variables, bound in every panel's SQL as `$name`.
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// Its panels.
    pub panels: Vec<Panel>,
}

/// Who may see a dashboard besides its owner and admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Visibility {
    /// No one else.
    #[default]
    Private,
    /// Callers holding `role` or a higher one.
    Shared {
        /// The least role that sees it.
        role: Role,
    },
    /// Anyone with its link, without a token: its panels and nothing else.
    Public,
}

/// A time range: `now`, `now-<n><s|m|h|d|w>`, or an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    /// Its start.
    pub from: String,
    /// Its end.
    pub to: String,
}

impl Default for TimeRange {
    fn default() -> Self {
        Self {
            from: "now-6h".into(),
            to: "now".into(),
        }
    }
}

/// A variable: its values are what `query` answers (first column), its value the viewer's
/// pick or `default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Its name, as `$name` in the panels' SQL.
    pub name: String,
    /// What the page shows beside it.
    #[serde(default)]
    pub label: String,
    /// SQL listing its values (first column).
    #[serde(default)]
    pub query: Option<String>,
    /// Its value until the viewer picks one.
    #[serde(default)]
    pub default: String,
}

/// How a panel draws its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelKind {
    /// Lines over time: a time column, then numbers (a text column splits series).
    Timeseries,
    /// Bars per category or time.
    Bar,
    /// One number, the first row's.
    Stat,
    /// The rows as they are.
    Table,
    /// One number on a dial from `min` to `max`.
    Gauge,
}

/// One panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// Its id within the dashboard.
    pub id: String,
    /// Its title.
    pub title: String,
    /// How it draws.
    pub kind: PanelKind,
    /// One read-only query; `$from`, `$to` and the variables are bound.
    pub sql: String,
    /// The unit of its numbers (`W`, `kWh`, `%`, `H/s`…).
    #[serde(default)]
    pub unit: String,
    /// Colours from a value upwards, lowest first.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// A gauge's range.
    #[serde(default)]
    pub min: Option<f64>,
    /// A gauge's range.
    #[serde(default)]
    pub max: Option<f64>,
    /// Its place on the grid.
    pub layout: Layout,
    /// Result subjects that change it (`results.energy.>`): the page runs it again on each.
    #[serde(default)]
    pub live: Option<String>,
}

/// A colour from a value upwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// From this value.
    pub value: f64,
    /// A colour name or `#rrggbb`.
    pub color: String,
}

/// A panel's place on a 24-column grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Column, 0–23.
    pub x: u32,
    /// Row.
    pub y: u32,
    /// Width in columns, 1–24.
    pub w: u32,
    /// Height in rows, 1–50.
    pub h: u32,
}

/// Why a dashboard is refused: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The field (`panels[2].sql`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

fn refused(field: impl Into<String>, reason: impl Into<String>) -> Refused {
    Refused {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Whether `name` is a plain id: 1–64 lower-case letters, digits, `-` and `_`, starting with a
/// letter or digit.
pub fn plain_id(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Names the panels' SQL binds besides the variables.
pub const TIME_NAMES: [&str; 2] = ["from", "to"];

impl Dashboard {
    /// Checks every field; `limits` are the engine's text limits, so a stored panel can run.
    pub fn validate(&self, limits: TextLimits) -> Result<(), Refused> {
        text("title", &self.title, true)?;
        text("description", &self.description, false)?;
        time("time.from", &self.time.from)?;
        time("time.to", &self.time.to)?;
        if self.variables.len() > MAX_VARIABLES {
            return Err(refused("variables", format!("at most {MAX_VARIABLES}")));
        }
        for (i, v) in self.variables.iter().enumerate() {
            let field = |f: &str| format!("variables[{i}].{f}");
            let plain = v
                .name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase())
                && v.name.len() <= 32
                && v.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !plain {
                return Err(refused(
                    field("name"),
                    "1-32 lower-case letters, digits and _, starting with a letter",
                ));
            }
            if TIME_NAMES.contains(&v.name.as_str()) {
                return Err(refused(field("name"), "from and to are the time range's"));
            }
            if self.variables[..i].iter().any(|o| o.name == v.name) {
                return Err(refused(field("name"), "two variables of that name"));
            }
            text(&field("label"), &v.label, false)?;
            text(&field("default"), &v.default, false)?;
            if let Some(query) = &v.query {
                adit_sql::syntax::check_query(query, limits)
                    .map_err(|e| refused(field("query"), e))?;
            }
        }
        if self.panels.is_empty() || self.panels.len() > MAX_PANELS {
            return Err(refused("panels", format!("1 to {MAX_PANELS} panels")));
        }
        for (i, p) in self.panels.iter().enumerate() {
            self.check_panel(i, p, limits)?;
        }
        Ok(())
    }

    fn check_panel(&self, i: usize, p: &Panel, limits: TextLimits) -> Result<(), Refused> {
        let field = |f: &str| format!("panels[{i}].{f}");
        if !plain_id(&p.id) {
            return Err(refused(
                field("id"),
                "1-64 lower-case letters, digits, - and _",
            ));
        }
        if self.panels[..i].iter().any(|o| o.id == p.id) {
            return Err(refused(field("id"), "two panels with that id"));
        }
        text(&field("title"), &p.title, true)?;
        if p.unit.chars().count() > 32 {
            return Err(refused(field("unit"), "at most 32 characters"));
        }
        adit_sql::syntax::check_query(&p.sql, limits).map_err(|e| refused(field("sql"), e))?;
        if p.thresholds.len() > 10 {
            return Err(refused(field("thresholds"), "at most 10"));
        }
        for (j, t) in p.thresholds.iter().enumerate() {
            if !t.value.is_finite() {
                return Err(refused(
                    format!("panels[{i}].thresholds[{j}].value"),
                    "a finite number",
                ));
            }
            if !color(&t.color) {
                return Err(refused(
                    format!("panels[{i}].thresholds[{j}].color"),
                    "a colour name (letters) or #rrggbb",
                ));
            }
        }
        if p.min.is_some_and(|m| !m.is_finite()) || p.max.is_some_and(|m| !m.is_finite()) {
            return Err(refused(field("min"), "min and max are finite numbers"));
        }
        let l = p.layout;
        if l.x > 23 || !(1..=24).contains(&l.w) || l.x + l.w > 24 || !(1..=50).contains(&l.h) {
            return Err(refused(
                field("layout"),
                "x 0-23, w 1-24 with x + w at most 24, h 1-50",
            ));
        }
        if l.y > 10_000 {
            return Err(refused(field("layout"), "y at most 10000"));
        }
        if let Some(live) = &p.live {
            let ok = live.starts_with("results.")
                && live.len() <= 128
                && live.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'*' | b'>')
                });
            if !ok {
                return Err(refused(
                    field("live"),
                    "a subject filter under results. (such as results.energy.>)",
                ));
            }
        }
        Ok(())
    }

    /// The panel `id`.
    pub fn panel(&self, id: &str) -> Option<&Panel> {
        self.panels.iter().find(|p| p.id == id)
    }
}

/// Checks a text field: at most [`MAX_TEXT`] characters, no control characters but newlines;
/// `required`: not blank.
fn text(field: &str, value: &str, required: bool) -> Result<(), Refused> {
    if required && value.trim().is_empty() {
        return Err(refused(field, "required"));
    }
    if value.chars().count() > MAX_TEXT {
        return Err(refused(field, format!("at most {MAX_TEXT} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(refused(field, "no control characters"));
    }
    Ok(())
}

/// Checks a time: `now`, `now-<n><unit>` or RFC 3339.
fn time(field: &str, value: &str) -> Result<(), Refused> {
    resolve(value, chrono::Utc::now())
        .map(|_| ())
        .ok_or_else(|| {
            refused(
                field,
                "now, now-<n><s|m|h|d|w> (now-6h) or an RFC 3339 time",
            )
        })
}

/// The instant `value` names at `now`.
pub fn resolve(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    if value == "now" {
        return Some(now);
    }
    if let Some(ago) = value.strip_prefix("now-") {
        let (n, unit) = ago.split_at(ago.len().checked_sub(1)?);
        let n: i64 = n.parse().ok().filter(|n| (0..=100_000).contains(n))?;
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return None,
        };
        return Some(now - chrono::Duration::seconds(n * seconds));
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Whether `c` is a colour the page can draw: a name of letters, or `#rrggbb`.
fn color(c: &str) -> bool {
    match c.strip_prefix('#') {
        Some(hex) => hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => (1..=32).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphabetic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(id: &str, sql: &str) -> Panel {
        Panel {
            id: id.into(),
            title: "Power".into(),
            kind: PanelKind::Timeseries,
            sql: sql.into(),
            unit: "W".into(),
            thresholds: vec![],
            min: None,
            max: None,
            layout: Layout {
                x: 0,
                y: 0,
                w: 12,
                h: 8,
            },
            live: Some("results.energy.>".into()),
        }
    }

    fn dashboard() -> Dashboard {
        Dashboard {
            title: "Site".into(),
            description: String::new(),
            visibility: Visibility::Private,
            time: TimeRange::default(),
            variables: vec![Variable {
                name: "site".into(),
                label: "Site".into(),
                query: Some("SELECT DISTINCT site FROM energy_readings".into()),
                default: "site-01".into(),
            }],
            panels: vec![panel(
                "power",
                "SELECT ts, power_w FROM energy_readings WHERE site = $site AND ts BETWEEN $from AND $to",
            )],
        }
    }

    #[test]
    fn a_good_dashboard_passes_and_each_bad_field_is_named() {
        let limits = TextLimits::default();
        assert_eq!(dashboard().validate(limits), Ok(()));
        let field = |d: Dashboard| d.validate(limits).unwrap_err().field;
        let mut d = dashboard();
        d.panels[0].sql = "DELETE FROM shares".into();
        assert_eq!(field(d), "panels[0].sql");
        let mut d = dashboard();
        d.panels.push(panel("power", "SELECT 1"));
        assert_eq!(field(d), "panels[1].id");
        let mut d = dashboard();
        d.panels[0].layout.x = 20;
        assert_eq!(field(d), "panels[0].layout");
        let mut d = dashboard();
        d.variables[0].name = "from".into();
        assert_eq!(field(d), "variables[0].name");
        let mut d = dashboard();
        d.variables[0].name = "Site; DROP".into();
        assert_eq!(field(d), "variables[0].name");
        let mut d = dashboard();
        d.time.from = "yesterday".into();
        assert_eq!(field(d), "time.from");
        let mut d = dashboard();
        d.panels[0].thresholds = vec![Threshold {
            value: 1.0,
            color: "red;background:url(x)".into(),
        }];
        assert_eq!(field(d), "panels[0].thresholds[0].color");
        let mut d = dashboard();
        d.panels[0].live = Some("control.>".into());
        assert_eq!(field(d), "panels[0].live");
        let mut d = dashboard();
        d.title = "\u{7}".into();
        assert_eq!(field(d), "title");
        let mut d = dashboard();
        d.panels.clear();
        assert_eq!(field(d), "panels");
    }

    #[test]
    fn times_resolve_relative_to_now_or_as_written() {
        let now = chrono::Utc::now();
        assert_eq!(resolve("now", now), Some(now));
        assert_eq!(
            resolve("now-6h", now),
            Some(now - chrono::Duration::hours(6))
        );
        assert_eq!(
            resolve("now-2w", now),
            Some(now - chrono::Duration::weeks(2))
        );
        assert!(resolve("now-", now).is_none());
        assert!(resolve("now-5y", now).is_none());
        assert!(resolve("now-99999999999h", now).is_none());
        assert!(resolve("2026-11-24T10:00:00Z", now).is_some());
        assert!(plain_id("site-power_1") && !plain_id("-x") && !plain_id("A") && !plain_id(""));
    }
}
