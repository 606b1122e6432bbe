//! A violation's lifecycle, the pure part of the pipeline: a condition must hold for a while
//! before its violation opens, a row is added when it worsens, and it resolves once the
//! condition has been gone for a while. One open violation per [`Key`].

use std::collections::BTreeMap;

use adit_schemas::results::ViolationRow;
use adit_schemas::time::from_micros;
use serde::{Deserialize, Serialize};

use super::{Kind, Severity};

/// Which thing a violation is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// `site`, `pool`, `machine`, `sensor`, `meter`.
    pub scope: String,
    /// The site (empty for a pool).
    pub site: String,
    /// Id within the scope.
    pub subject: String,
    /// What about it.
    pub kind: Kind,
}

/// A condition found true at an evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// How bad.
    pub severity: Severity,
    /// The measure.
    pub value: Option<f64>,
    /// The limit crossed.
    pub limit: Option<f64>,
}

/// An open violation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Open {
    id: String,
    started_us: i64,
    pub(super) severity: Severity,
    peak: Option<f64>,
    reported_peak: Option<f64>,
    limit: Option<f64>,
}

/// One key's lifecycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Track {
    /// Since when the condition has held without its violation being open, and its worst.
    pending: Option<(i64, Severity, Option<f64>)>,
    /// The open violation.
    pub(super) open: Option<Open>,
    /// Since when the open violation's condition has been false.
    false_since: Option<i64>,
}

/// Every key's lifecycle: the pure part of the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    #[serde(with = "crate::serde_pairs")]
    pub(super) tracks: BTreeMap<Key, Track>,
}

/// Each kind a `kind` sensor reading `value` (none when stale) is checked for against the
impl Kind {
    /// Whether a lower value is the worse one (a cold reading).
    fn lower_is_worse(self) -> bool {
        self == Self::LowTemperature
    }
}

/// The worse of two values of a `kind` condition: the highest, or the lowest where lower is
/// worse.
pub(super) fn worse(kind: Kind, a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if kind.lower_is_worse() => Some(a.min(b)),
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Whether `peak` is worse enough than the `reported` one to add a row: by a tenth, and for a
/// lower-is-worse kind by a tenth or a whole unit (a degree), whichever is more.
fn worsened(kind: Kind, peak: f64, reported: f64) -> bool {
    if kind.lower_is_worse() {
        peak <= reported - (reported.abs() * 0.1).max(1.0)
    } else {
        peak.abs() >= reported.abs() * 1.1 && peak > reported
    }
}

impl Tracker {
    /// Feeds the evaluation of `key` at `at_us`: `Some` when its condition holds. `hold_us`:
    /// how long it must hold before opening; `clear_us`: how long it must be gone to resolve.
    pub fn evaluate(
        &mut self,
        key: &Key,
        condition: Option<Condition>,
        at_us: i64,
        hold_us: i64,
        clear_us: i64,
    ) -> Option<ViolationRow> {
        let track = self.tracks.entry(key.clone()).or_default();
        let row = match (condition, &mut track.open) {
            (Some(c), Some(open)) => {
                track.false_since = None;
                open.peak = worse(key.kind, open.peak, c.value);
                let rose = c.severity > open.severity;
                let grew = match (open.peak, open.reported_peak) {
                    (Some(p), Some(r)) => worsened(key.kind, p, r),
                    (Some(_), None) => true,
                    _ => false,
                };
                if rose || grew {
                    open.severity = open.severity.max(c.severity);
                    open.reported_peak = open.peak;
                    if rose {
                        open.limit = c.limit;
                    }
                    Some(row_of(key, open, "updated", c.value, at_us, at_us))
                } else {
                    None
                }
            }
            (Some(c), None) => {
                let (since, severity, peak) =
                    track.pending.get_or_insert((at_us, c.severity, c.value));
                *severity = (*severity).max(c.severity);
                *peak = worse(key.kind, *peak, c.value);
                if at_us - *since >= hold_us {
                    let open = Open {
                        id: format!(
                            "{}:{}:{}:{}:{}",
                            key.scope,
                            key.site,
                            key.subject,
                            key.kind.as_str(),
                            *since
                        ),
                        started_us: *since,
                        severity: *severity,
                        peak: *peak,
                        reported_peak: *peak,
                        limit: c.limit,
                    };
                    let row = row_of(key, &open, "opened", c.value, at_us, at_us);
                    track.pending = None;
                    track.open = Some(open);
                    Some(row)
                } else {
                    None
                }
            }
            (None, Some(open)) => {
                let since = *track.false_since.get_or_insert(at_us);
                if at_us - since >= clear_us {
                    let row = row_of(key, open, "resolved", None, at_us, since);
                    track.open = None;
                    track.false_since = None;
                    Some(row)
                } else {
                    None
                }
            }
            (None, None) => {
                track.pending = None;
                None
            }
        };
        if track.open.is_none() && track.pending.is_none() {
            self.tracks.remove(key);
        }
        row
    }

    /// Resolves the open violation `id` at `at_us` by hand; `None` if none is open by that id.
    pub fn resolve(&mut self, id: &str, at_us: i64, note: &str) -> Option<ViolationRow> {
        let key = self
            .tracks
            .iter()
            .find(|(_, t)| t.open.as_ref().is_some_and(|o| o.id == id))
            .map(|(k, _)| k.clone())?;
        let track = self.tracks.remove(&key)?;
        let open = track.open?;
        let mut row = row_of(&key, &open, "resolved", None, at_us, at_us);
        row.source = "manual".into();
        row.note = Some(note.to_string());
        Some(row)
    }

    /// Keys with an open violation.
    pub fn open_keys(&self) -> impl Iterator<Item = &Key> {
        self.tracks
            .iter()
            .filter(|(_, t)| t.open.is_some())
            .map(|(k, _)| k)
    }
}

pub(super) fn row_of(
    key: &Key,
    open: &Open,
    event: &str,
    value: Option<f64>,
    at_us: i64,
    until_us: i64,
) -> ViolationRow {
    ViolationRow {
        id: open.id.clone(),
        event: event.into(),
        site: (key.scope != "pool").then(|| key.site.clone()),
        scope: key.scope.clone(),
        subject: key.subject.clone(),
        kind: key.kind.as_str().into(),
        severity: open.severity.as_str().into(),
        value,
        limit: open.limit,
        peak: open.peak,
        started: from_micros(open.started_us),
        ts: from_micros(at_us),
        duration_s: (until_us - open.started_us).max(0) as f64 / 1e6,
        source: "pipeline".into(),
        note: None,
        date: from_micros(at_us).date_naive(),
    }
}
