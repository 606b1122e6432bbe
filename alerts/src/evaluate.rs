//! The `alerts` role: evaluates every rule group at its interval — runs each rule's SQL over
//! the tables, turns the rows into series, steps [`crate::machine::evaluate`] — and publishes
//! each transition on `results.alert.<severity>` (landed in `alerts` by the `alerts`
//! pipeline). Groups are re-read from the bucket every `reload`, so a rule changed over the
//! API applies without a restart. At start the alerts still pending or firing are read back
//! from the `alerts` table, so a restart neither repeats nor forgets them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use adit_bus::Publisher;
use adit_schemas::alerts::AlertEvent;
use adit_schemas::{AnyEvent, EventKind};
use adit_sql::SqlEngine;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::error::{AlertsError, Result};
use crate::machine::{self, Labels, Phase, Tracked};
use crate::rules::{Rule, RuleFile, RuleGroup};
use crate::store::RuleStore;

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// A rules file (Prometheus's shape) loaded into the bucket at start; its groups replace
    /// those of the same names.
    pub rules_file: Option<PathBuf>,
    /// Load the shipped rules (`rules/default.yml`, built into the binary) at start; `adit
    /// demo` does.
    pub default_rules: bool,
    /// How often the rule groups are read again from the bucket.
    #[serde(with = "humantime_serde")]
    pub reload: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            rules_file: None,
            default_rules: false,
            reload: Duration::from_secs(10),
        }
    }
}

impl AlertsConfig {
    /// Checks every value; the key is already full (`alerts.reload`), so the caller adds no
    /// section.
    pub fn validate(&self) -> adit_config::Checked {
        adit_config::check(
            (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.reload),
            "alerts.reload",
            "must be from 100ms to 1h",
        )
    }
}

/// The shipped rules (`rules/default.yml`).
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.yml");

/// A stable fingerprint of a series' labels (FNV-1a over their JSON), so an alert keeps its
/// id across restarts and versions.
pub fn fingerprint(labels: &Labels) -> String {
    let text = serde_json::to_string(labels).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The series a rule's result rows are: every column but `value` is a label (as text), the
/// rule's labels and `alertname` on top; `value` (if numeric) is the value.
pub fn series_of(
    rule: &Rule,
    batches: &[RecordBatch],
) -> std::result::Result<BTreeMap<Labels, Option<f64>>, String> {
    let mut out = BTreeMap::new();
    for batch in batches {
        let schema = batch.schema();
        let mut columns = Vec::new();
        let mut value = None;
        for (i, field) in schema.fields().iter().enumerate() {
            if field.name() == "value" {
                let v = cast(batch.column(i), &DataType::Float64)
                    .map_err(|e| format!("value column: {e}"))?;
                value = Some(v);
            } else {
                let c = cast(batch.column(i), &DataType::Utf8)
                    .map_err(|e| format!("column {}: {e}", field.name()))?;
                columns.push((field.name().clone(), c));
            }
        }
        for row in 0..batch.num_rows() {
            let mut labels: Labels = columns
                .iter()
                .filter(|(_, c)| c.is_valid(row))
                .map(|(name, c)| (name.clone(), c.as_string::<i32>().value(row).to_string()))
                .collect();
            labels.extend(rule.labels.clone());
            labels.insert("alertname".into(), rule.alert.clone());
            let v = value
                .as_ref()
                .map(|v| v.as_primitive::<Float64Type>())
                .filter(|v| v.is_valid(row))
                .map(|v| v.value(row));
            out.insert(labels, v);
        }
    }
    Ok(out)
}

/// What the evaluator keeps.
#[derive(Default)]
struct Evaluator {
    /// Tracked alerts per (group, rule).
    tracked: BTreeMap<(String, String), BTreeMap<Labels, Tracked>>,
    /// When each group is next due.
    due: BTreeMap<String, DateTime<Utc>>,
    /// The last error of each rule (logged once until it changes).
    errors: BTreeMap<(String, String), String>,
}

/// Runs the role until `shutdown`.
pub async fn run(
    config: AlertsConfig,
    store: RuleStore,
    engine: Arc<SqlEngine>,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> Result<()> {
    config.validate()?;
    if config.default_rules {
        let n = store
            .load(&RuleFile::from_yaml(DEFAULT_RULES, store.limits())?)
            .await?;
        tracing::info!(groups = n, "shipped alert rules loaded");
    }
    if let Some(path) = &config.rules_file {
        let text = std::fs::read_to_string(path).map_err(|source| AlertsError::File {
            path: path.display().to_string(),
            source,
        })?;
        let n = store
            .load(&RuleFile::from_yaml(&text, store.limits())?)
            .await?;
        tracing::info!(path = %path.display(), groups = n, "alert rules loaded");
    }
    let mut ev = Evaluator {
        tracked: restore(&engine).await,
        ..Default::default()
    };
    let mut groups: Vec<RuleGroup> = Vec::new();
    let mut next_reload = Utc::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // Operators' resolutions (from the API) end an alert here too: if its condition still
    // holds, it starts again as pending.
    let mut manual = publisher
        .jetstream()
        .client()
        .subscribe(EventKind::Alert.filter(None))
        .await
        .map_err(AlertsError::kv)?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            Some(m) = futures::StreamExt::next(&mut manual) => {
                if let Ok(e) = serde_json::from_slice::<AlertEvent>(&m.payload)
                    && e.by.is_some()
                    && e.state == "resolved"
                {
                    ev.forget(&e);
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        if now >= next_reload {
            match store.groups().await {
                Ok(g) => groups = g,
                Err(e) => tracing::warn!(error = %e, "alert rules unreadable; keeping the last"),
            }
            next_reload = now + chrono::Duration::from_std(config.reload).unwrap_or_default();
        }
        for group in &groups {
            let due = *ev.due.entry(group.name.clone()).or_insert(now);
            if due > now {
                continue;
            }
            let every = chrono::Duration::from_std(group.every()).unwrap_or_default();
            ev.due.insert(group.name.clone(), now + every);
            for rule in &group.rules {
                for event in ev.evaluate(&engine, group, rule, now).await {
                    publisher.publish(&AnyEvent::Alert(event)).await?;
                }
            }
        }
    }
}

impl Evaluator {
    /// Drops the alert an operator resolved.
    fn forget(&mut self, e: &AlertEvent) {
        let Ok(labels) = serde_json::from_str::<Labels>(&e.labels) else {
            return;
        };
        if let Some(tracked) = self.tracked.get_mut(&(e.group.clone(), e.rule.clone())) {
            tracked.remove(&labels);
        }
    }

    /// One rule at `now`: the transitions as events.
    async fn evaluate(
        &mut self,
        engine: &SqlEngine,
        group: &RuleGroup,
        rule: &Rule,
        now: DateTime<Utc>,
    ) -> Vec<AlertEvent> {
        let key = (group.name.clone(), rule.alert.clone());
        let alerting = match engine.query(&rule.expr).await {
            Ok(result) => series_of(rule, &result.batches),
            Err(adit_sql::SqlError::InvalidSql(message)) if message.contains("not found") => {
                Ok(BTreeMap::new()) // a table not written yet: nothing alerts
            }
            Err(e) => Err(e.to_string()),
        };
        let alerting = match alerting {
            Ok(a) => {
                self.errors.remove(&key);
                a
            }
            Err(reason) => {
                metrics::counter!("adit_alert_rule_errors_total", "group" => group.name.clone(), "rule" => rule.alert.clone()).increment(1);
                if self.errors.get(&key) != Some(&reason) {
                    tracing::warn!(group = %group.name, rule = %rule.alert, %reason, "alert rule failed");
                    self.errors.insert(key, reason);
                }
                return Vec::new(); // keep its alerts as they are until it evaluates again
            }
        };
        let tracked = self.tracked.entry(key).or_default();
        let transitions =
            machine::evaluate(tracked, &alerting, rule.hold(), rule.keep_firing(), now);
        let firing = tracked
            .values()
            .filter(|t| t.phase == Phase::Firing)
            .count();
        metrics::gauge!("adit_alerts_firing", "group" => group.name.clone(), "alertname" => rule.alert.clone(), "severity" => rule.severity().to_string())
            .set(firing as f64);
        transitions
            .into_iter()
            .map(|t| AlertEvent {
                id: format!("{}/{}/{}", group.name, rule.alert, fingerprint(&t.labels)),
                group: group.name.clone(),
                rule: rule.alert.clone(),
                state: t.state.into(),
                severity: rule.severity().into(),
                labels: serde_json::to_string(&t.labels).unwrap_or_default(),
                annotations: serde_json::to_string(&rule.annotations).unwrap_or_default(),
                value: t.value,
                active_at: t.active_at,
                ts: now,
                by: None,
                note: None,
            })
            .collect()
    }
}

/// The alerts still pending or firing, from the `alerts` table (empty when it is not there).
async fn restore(engine: &SqlEngine) -> BTreeMap<(String, String), BTreeMap<Labels, Tracked>> {
    let sql = "SELECT \"group\", rule, state, labels, value, \
               CAST(active_at AS BIGINT) AS active_us FROM ( \
                 SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts DESC, \
                   CASE state WHEN 'resolved' THEN 2 WHEN 'firing' THEN 1 ELSE 0 END DESC) AS rn \
                 FROM alerts) WHERE rn = 1 AND state <> 'resolved'";
    let mut out: BTreeMap<(String, String), BTreeMap<Labels, Tracked>> = BTreeMap::new();
    let batches = match engine.query(sql).await {
        Ok(r) => r.batches,
        Err(e) => {
            tracing::debug!(error = %e, "no alerts to restore");
            return out;
        }
    };
    let now = Utc::now();
    for batch in &batches {
        let text = |i: usize| cast(batch.column(i), &DataType::Utf8).ok();
        let (Some(group), Some(rule), Some(state), Some(labels)) =
            (text(0), text(1), text(2), text(3))
        else {
            continue;
        };
        let value = cast(batch.column(4), &DataType::Float64).ok();
        let active = cast(batch.column(5), &DataType::Int64).ok();
        for row in 0..batch.num_rows() {
            let Ok(l) = serde_json::from_str::<Labels>(labels.as_string::<i32>().value(row)) else {
                continue;
            };
            let active_at = active
                .as_ref()
                .and_then(|a| {
                    DateTime::from_timestamp_micros(
                        a.as_primitive::<arrow::datatypes::Int64Type>().value(row),
                    )
                })
                .unwrap_or(now);
            let phase = if state.as_string::<i32>().value(row) == "firing" {
                Phase::Firing
            } else {
                Phase::Pending
            };
            let v = value
                .as_ref()
                .map(|v| v.as_primitive::<Float64Type>())
                .filter(|v| v.is_valid(row))
                .map(|v| v.value(row));
            out.entry((
                group.as_string::<i32>().value(row).to_string(),
                rule.as_string::<i32>().value(row).to_string(),
            ))
            .or_default()
            .insert(
                l,
                Tracked {
                    phase,
                    active_at,
                    last_seen: now,
                    value: v,
                },
            );
        }
    }
    let n: usize = out.values().map(BTreeMap::len).sum();
    if n > 0 {
        tracing::info!(alerts = n, "pending and firing alerts restored");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn rows_become_series_with_the_rules_labels() {
        let rule = Rule {
            alert: "HighTemperature".into(),
            expr: "SELECT 1".into(),
            for_: None,
            keep_firing_for: None,
            labels: BTreeMap::from([("severity".into(), "critical".into())]),
            annotations: BTreeMap::new(),
        };
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("site", DataType::Utf8, true),
                Field::new("value", DataType::Float64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![Some("s1"), Some("s2")])),
                Arc::new(Float64Array::from(vec![Some(41.0), None])),
            ],
        )
        .unwrap();
        let series = series_of(&rule, &[batch]).unwrap();
        assert_eq!(series.len(), 2);
        let (labels, value) = series.iter().next().unwrap();
        assert_eq!(labels["site"], "s1");
        assert_eq!(labels["severity"], "critical");
        assert_eq!(labels["alertname"], "HighTemperature");
        assert_eq!(*value, Some(41.0));
        assert_eq!(fingerprint(labels), fingerprint(&labels.clone()));
        assert_ne!(
            fingerprint(labels),
            fingerprint(series.keys().nth(1).unwrap())
        );
    }
}
