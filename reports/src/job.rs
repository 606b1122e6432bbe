//! The compliance job: closes each site's local day once, after its local midnight, into
//! `compliance_daily` and a reports folder.
//!
//! **Exactly once per site and day**: the table is the record of what is done. Closing a day
//! computes its report and compares it with the day's latest stored revision: none stored →
//! revision 1; different (a late reading changed the day) → the next revision, the old ones
//! kept; the same → nothing. So a rerun after a crash neither skips a day (it is not in the
//! table yet) nor doubles one (it is, with the same figures). Closed days are checked again
//! for late data for `recheck_days`. Run one compliance process per table root.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adit_bus::registry::Registry;
use adit_config::{Checked, check};
use adit_schemas::compliance::{ComplianceDay, CompliancePool, CurtailmentEvidence};
use adit_schemas::names::{
    TABLE_COMPLIANCE_DAILY, TABLE_COMPLIANCE_POOLS, TABLE_CURTAILMENT_EVIDENCE,
    TABLE_SITE_ENERGY_1M,
};
use adit_schemas::registry::{Machine, RegistryView, Site};
use adit_sinks::{ExactlyOnceTable, Maintenance, TableStore};
use adit_sql::{Catalog, Params, SqlEngine, SqlLimits};
use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::compute::{compute, local_today, local_window};
use crate::error::{Error, Result};
use crate::model::ComplianceReport;
use crate::render::{Format, render};

/// The compliance job's settings; from config (`[compliance]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceConfig {
    /// How long after a site's local midnight the day before is closed (room for late
    /// readings and the energy pipeline's last minutes).
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// How many closed days are checked again for late data (a change adds a revision).
    pub recheck_days: u32,
    /// How often the job looks at the clock.
    #[serde(with = "humantime_serde")]
    pub check_every: Duration,
    /// Where rendered reports are written (default: `<data dir>/reports`).
    pub reports_dir: Option<String>,
    /// A PDF of each report through a headless browser: `auto` (Chromium when installed),
    /// `off`, or the browser's path.
    pub pdf: String,
}

impl Default for ComplianceConfig {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(30 * 60),
            recheck_days: 7,
            check_every: Duration::from_secs(60),
            reports_dir: None,
            pdf: "auto".into(),
        }
    }
}

impl ComplianceConfig {
    /// Checks the values; the key is already full (`compliance.after`), so the caller adds no
    /// section.
    pub fn validate(&self) -> Checked {
        check(
            self.after <= Duration::from_secs(24 * 3600),
            "compliance.after",
            format!("must be at most 24h, not {:?}", self.after),
        )?;
        check(
            (1..=366).contains(&self.recheck_days),
            "compliance.recheck_days",
            format!("must be 1 to 366, not {}", self.recheck_days),
        )?;
        check(
            self.check_every >= Duration::from_secs(1)
                && self.check_every <= Duration::from_secs(3600),
            "compliance.check_every",
            format!("must be between 1s and 1h, not {:?}", self.check_every),
        )?;
        check(
            !self.pdf.trim().is_empty(),
            "compliance.pdf",
            "must be auto, off or a browser's path",
        )
    }
}

/// What closing a day did.
#[derive(Debug, Clone)]
pub struct Closed {
    /// The revision now current.
    pub revision: i64,
    /// A new revision was written (false: the stored one already said the same).
    pub written: bool,
    /// The report, with its revision.
    pub report: ComplianceReport,
    /// The files written (only when `written`).
    pub files: Vec<PathBuf>,
}

/// The latest (or the given) stored revision of `site`'s day `date`, if any.
pub async fn stored(
    engine: &SqlEngine,
    site: &str,
    date: NaiveDate,
    revision: Option<i64>,
) -> Result<Option<ComplianceReport>> {
    Ok(stored_text(engine, site, date, revision)
        .await?
        .map(|(report, _)| report))
}

/// [`stored`], with the report's JSON as it was written (what a new report is compared with:
/// text, so no float is parsed back).
async fn stored_text(
    engine: &SqlEngine,
    site: &str,
    date: NaiveDate,
    revision: Option<i64>,
) -> Result<Option<(ComplianceReport, String)>> {
    if !table_exists(engine, TABLE_COMPLIANCE_DAILY).await? {
        return Ok(None);
    }
    let mut params = Params::new();
    let site = params.text(site);
    let which = revision.map_or(String::new(), |n| {
        format!(" AND revision = {}", params.int(n))
    });
    let sql = format!(
        "SELECT revision, report FROM {TABLE_COMPLIANCE_DAILY} WHERE site = {site} AND date = DATE '{date}'{which} \
         ORDER BY revision DESC LIMIT 1"
    );
    let batches = engine
        .query_with(&sql, params.into_options())
        .await?
        .batches;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let n = first_i64(batch, "revision")?;
    let report = batch
        .column_by_name("report")
        .ok_or_else(|| Error::Encode("no report column".into()))?;
    let report = cast(report, &DataType::Utf8).map_err(|e| Error::Encode(e.to_string()))?;
    let text = report.as_string::<i32>().value(0).to_string();
    let mut report: ComplianceReport = serde_json::from_str(&text)
        .map_err(|e| Error::Encode(format!("stored report of {site} {date}: {e}")))?;
    report.revision = Some(n);
    Ok(Some((report, text)))
}

/// Whether `table` has been written yet.
async fn table_exists(engine: &SqlEngine, table: &str) -> Result<bool> {
    Ok(engine
        .catalog()
        .snapshot()
        .await?
        .iter()
        .any(|(name, _)| name == table))
}

fn first_i64(batch: &RecordBatch, name: &str) -> Result<i64> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| Error::Encode(format!("no column {name}")))?;
    let col = cast(col, &DataType::Int64).map_err(|e| Error::Encode(e.to_string()))?;
    Ok(col.as_primitive::<Int64Type>().value(0))
}

/// The job: one engine over the tables, the report table's writer, the registry.
pub struct ComplianceJob {
    engine: SqlEngine,
    table: ExactlyOnceTable,
    evidence: ExactlyOnceTable,
    pools: ExactlyOnceTable,
    registry: Option<Registry>,
    config: ComplianceConfig,
    reports_dir: PathBuf,
}

impl ComplianceJob {
    /// Opens the report table under `store`; rendered files go to `reports_dir`.
    pub async fn open(
        store: TableStore,
        registry: Option<Registry>,
        config: ComplianceConfig,
        reports_dir: PathBuf,
    ) -> Result<Self> {
        let table = ExactlyOnceTable::open(
            &store,
            TABLE_COMPLIANCE_DAILY,
            &ComplianceDay::schema(),
            &["date"],
            "compliance",
            Maintenance::default(),
        )
        .await?;
        let evidence = ExactlyOnceTable::open(
            &store,
            TABLE_CURTAILMENT_EVIDENCE,
            &CurtailmentEvidence::schema(),
            &["date"],
            "compliance-evidence",
            Maintenance::default(),
        )
        .await?;
        let pools = ExactlyOnceTable::open(
            &store,
            TABLE_COMPLIANCE_POOLS,
            &CompliancePool::schema(),
            &["date"],
            "compliance-pools",
            Maintenance::default(),
        )
        .await?;
        Ok(Self {
            // No snapshot may lag: a day just written must be seen by the next comparison.
            engine: SqlEngine::new(
                Arc::new(Catalog::new(store, Duration::ZERO)),
                SqlLimits::default(),
            ),
            table,
            evidence,
            pools,
            registry,
            config,
            reports_dir,
        })
    }

    /// The engine it reads with.
    pub fn engine(&self) -> &SqlEngine {
        &self.engine
    }

    /// The registry now.
    pub async fn registry_view(&self) -> Result<RegistryView> {
        match &self.registry {
            Some(r) => r.view().await.map_err(|e| Error::Registry(e.to_string())),
            None => Err(Error::Registry("no registry (NATS) configured".into())),
        }
    }

    /// Closes `site`'s day `date` as described in the module header.
    pub async fn close_day(
        &mut self,
        site: &Site,
        machines: &[Machine],
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Closed> {
        let today = local_today(&site.timezone, now)?;
        if date >= today {
            return Err(Error::Invalid(format!(
                "{date} is not over yet at {} (local day {today})",
                site.id
            )));
        }
        let report = compute(&self.engine, site, machines, date).await?;
        let text = serde_json::to_string(&report).map_err(|e| Error::Encode(e.to_string()))?;
        let previous = stored_text(&self.engine, &site.id, date, None).await?;
        if let Some((prev, prev_text)) = &previous
            && *prev_text == text
        {
            // The same figures: nothing new, but the files are written if a crash after the
            // table's commit left them missing.
            let files = if self.files_missing(prev) {
                self.write_files(prev).await?
            } else {
                Vec::new()
            };
            return Ok(Closed {
                revision: prev.revision.unwrap_or(1),
                written: false,
                report: prev.clone(),
                files,
            });
        }
        let revision = previous.and_then(|(p, _)| p.revision).unwrap_or(0) + 1;
        self.write_evidence(&report, revision).await?;
        self.write_pools(&report, revision).await?;
        let row = row_of(&report, revision, now)?;
        let batch = adit_schemas::to_batch("compliance_daily", ComplianceDay::schema(), &[row])
            .map_err(|e| Error::Encode(e.to_string()))?;
        let version = self.table.committed() + 1;
        self.table.commit(vec![batch], version).await?;
        let mut report = report;
        report.revision = Some(revision);
        let files = self.write_files(&report).await?;
        metrics::counter!("adit_compliance_reports_total", "site" => site.id.clone()).increment(1);
        metrics::gauge!("adit_compliance_score", "site" => site.id.clone()).set(report.score.value);
        tracing::info!(site = %site.id, %date, revision, score = report.score.value, "compliance day closed");
        Ok(Closed {
            revision,
            written: true,
            report,
            files,
        })
    }

    /// Writes the report's curtailment evidence as `revision`, unless a run that crashed
    /// before the day's row already did (see [`crate::evidence`]).
    async fn write_evidence(&mut self, report: &ComplianceReport, revision: i64) -> Result<()> {
        let rows = crate::evidence::rows(report, revision);
        if rows.is_empty()
            || crate::evidence::written(
                &self.engine,
                TABLE_CURTAILMENT_EVIDENCE,
                &report.site,
                report.date,
                revision,
            )
            .await?
        {
            return Ok(());
        }
        let batch = adit_schemas::to_batch(
            TABLE_CURTAILMENT_EVIDENCE,
            CurtailmentEvidence::schema(),
            &rows,
        )
        .map_err(|e| Error::Encode(e.to_string()))?;
        let version = self.evidence.committed() + 1;
        self.evidence.commit(vec![batch], version).await?;
        Ok(())
    }

    /// Writes each pool's part of the report as `revision` (`compliance_pools`), unless a run
    /// that crashed before the day's row already did.
    async fn write_pools(&mut self, report: &ComplianceReport, revision: i64) -> Result<()> {
        let rows = crate::evidence::pool_rows(report, revision);
        if rows.is_empty()
            || crate::evidence::written(
                &self.engine,
                TABLE_COMPLIANCE_POOLS,
                &report.site,
                report.date,
                revision,
            )
            .await?
        {
            return Ok(());
        }
        let batch = adit_schemas::to_batch(TABLE_COMPLIANCE_POOLS, CompliancePool::schema(), &rows)
            .map_err(|e| Error::Encode(e.to_string()))?;
        let version = self.pools.committed() + 1;
        self.pools.commit(vec![batch], version).await?;
        Ok(())
    }

    /// Whether a stored revision's files are not all there.
    fn files_missing(&self, report: &ComplianceReport) -> bool {
        let dir = self
            .reports_dir
            .join(&report.site)
            .join(report.date.to_string());
        let stem = format!("compliance-r{}", report.revision.unwrap_or(0));
        [Format::Html, Format::Csv, Format::Json]
            .iter()
            .any(|f| !dir.join(format!("{stem}.{}", f.extension())).is_file())
    }

    /// Writes the report's HTML, CSV, JSON (and PDF when a browser is there) under
    /// `<reports_dir>/<site>/<date>/`.
    async fn write_files(&self, report: &ComplianceReport) -> Result<Vec<PathBuf>> {
        let dir = self
            .reports_dir
            .join(&report.site)
            .join(report.date.to_string());
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io { path, source }
        };
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let stem = format!("compliance-r{}", report.revision.unwrap_or(0));
        let mut files = Vec::new();
        for format in [Format::Html, Format::Csv, Format::Json] {
            let path = dir.join(format!("{stem}.{}", format.extension()));
            let tmp = path.with_extension("tmp");
            tokio::fs::write(&tmp, render(report, format)?)
                .await
                .map_err(io(&tmp))?;
            tokio::fs::rename(&tmp, &path).await.map_err(io(&path))?;
            files.push(path);
        }
        if let Some(browser) = pdf_browser(&self.config.pdf) {
            let html = dir.join(format!("{stem}.html"));
            let pdf = dir.join(format!("{stem}.pdf"));
            match print_pdf(&browser, &html, &pdf).await {
                Ok(()) => files.push(pdf),
                Err(reason) => {
                    tracing::warn!(browser = %browser.display(), %reason, "no PDF of the compliance report")
                }
            }
        }
        Ok(files)
    }

    /// Runs nightly until cancelled: closes each site's day before once its local midnight is
    /// `after` past, and rechecks the `recheck_days` before it hourly.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        let mut last_recheck: Option<Instant> = None;
        loop {
            let recheck = last_recheck.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
            match self.tick(Utc::now(), recheck).await {
                Ok(()) if recheck => last_recheck = Some(Instant::now()),
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "compliance run failed; trying again"),
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.config.check_every) => {}
            }
        }
    }

    /// One look at the clock: every site's due days.
    pub async fn tick(&mut self, now: DateTime<Utc>, recheck: bool) -> Result<()> {
        let view = self.registry_view().await?;
        let machines: Vec<Machine> = view.machines().cloned().collect();
        let sites: Vec<Site> = view.sites().cloned().collect();
        for site in &sites {
            let Some(first) = self.first_data(&site.id).await? else {
                continue;
            };
            for date in self.due_days(site, now, recheck)? {
                let (_, end) = local_window(&site.timezone, date)?;
                if end <= first {
                    continue;
                }
                if !recheck && stored(&self.engine, &site.id, date, None).await?.is_some() {
                    continue;
                }
                if let Err(e) = self.close_day(site, &machines, date, now).await {
                    tracing::warn!(site = %site.id, %date, error = %e, "compliance day not closed");
                }
            }
        }
        Ok(())
    }

    /// The days of `site` to close now: the last finished day once `after` has passed since
    /// its end, and on a recheck the `recheck_days − 1` before it.
    fn due_days(&self, site: &Site, now: DateTime<Utc>, recheck: bool) -> Result<Vec<NaiveDate>> {
        let today = local_today(&site.timezone, now)?;
        let (midnight, _) = local_window(&site.timezone, today)?;
        let after = chrono::Duration::from_std(self.config.after).unwrap_or_default();
        let back = if now >= midnight + after { 1 } else { 2 };
        let Some(last) = today.checked_sub_days(chrono::Days::new(back)) else {
            return Ok(Vec::new());
        };
        let span = if recheck { self.config.recheck_days } else { 1 };
        Ok((0..span)
            .rev()
            .filter_map(|k| last.checked_sub_days(chrono::Days::new(u64::from(k))))
            .collect())
    }

    /// When the site's first energy minute is (none: nothing to report yet).
    async fn first_data(&self, site: &str) -> Result<Option<DateTime<Utc>>> {
        if !table_exists(&self.engine, TABLE_SITE_ENERGY_1M).await? {
            return Ok(None);
        }
        let mut params = Params::new();
        let sql = format!(
            "SELECT CAST(min(minute) AS BIGINT) AS first FROM {TABLE_SITE_ENERGY_1M} WHERE site = {}",
            params.text(site)
        );
        let batches = self
            .engine
            .query_with(&sql, params.into_options())
            .await?
            .batches;
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            return Ok(None);
        };
        if batch.column(0).is_null(0) {
            return Ok(None);
        }
        Ok(DateTime::from_timestamp_micros(first_i64(batch, "first")?))
    }
}

/// The table row of `report` as revision `revision`.
fn row_of(report: &ComplianceReport, revision: i64, now: DateTime<Utc>) -> Result<ComplianceDay> {
    let json = serde_json::to_string(report).map_err(|e| Error::Encode(e.to_string()))?;
    let e = report.energy.as_ref();
    let c = report.curtailments.as_deref().unwrap_or_default();
    let hours = |m: i64| crate::model::round(m as f64 / 60.0, 4);
    Ok(ComplianceDay {
        site: report.site.clone(),
        revision,
        computed_at: now,
        energy_kwh: e.map_or(0.0, |e| e.energy_kwh),
        allocation_kwh: e.map_or(0.0, |e| e.allocation_kwh),
        peak_kw: e.and_then(|e| e.peak_kw),
        peak_at: e.and_then(|e| e.peak_at),
        hours_over_warning: hours(e.map_or(0, |e| e.minutes_over_warning)),
        hours_over_critical: hours(e.map_or(0, |e| e.minutes_over_critical)),
        hours_over_allocation: hours(e.map_or(0, |e| e.minutes_over_allocation)),
        violations: report
            .violations
            .as_ref()
            .map_or(0, |v| v.list.len() as i64),
        curtailments: c.len() as i64,
        curtailments_met: c.iter().filter(|c| c.met).count() as i64,
        measured_share: report.quality.measured_share,
        estimated_share: report.quality.estimated_share,
        missing_share: report.quality.missing_share,
        score: report.score.value,
        report: json,
        date: report.date,
    })
}

/// The browser to print PDFs with, per the `pdf` setting.
fn pdf_browser(setting: &str) -> Option<PathBuf> {
    match setting {
        "off" => None,
        "auto" => ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|name| which(name)),
        path => Some(PathBuf::from(path)),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Prints `html` to `pdf` with a headless browser, within a minute.
async fn print_pdf(browser: &Path, html: &Path, pdf: &Path) -> std::result::Result<(), String> {
    let html = std::fs::canonicalize(html).map_err(|e| e.to_string())?;
    let run = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| "the browser took over 60 s".to_string())?
        .map_err(|e| e.to_string())?;
    if out.status.success() && pdf.is_file() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_checked() {
        assert!(ComplianceConfig::default().validate().is_ok());
        let bad = |f: fn(&mut ComplianceConfig)| {
            let mut c = ComplianceConfig::default();
            f(&mut c);
            c.validate().unwrap_err().key
        };
        assert_eq!(bad(|c| c.recheck_days = 0), "compliance.recheck_days");
        assert_eq!(
            bad(|c| c.check_every = Duration::ZERO),
            "compliance.check_every"
        );
        assert_eq!(
            bad(|c| c.after = Duration::from_secs(90_000)),
            "compliance.after"
        );
        assert_eq!(bad(|c| c.pdf = " ".into()), "compliance.pdf");
    }

    #[test]
    fn pdf_off_means_none() {
        assert_eq!(pdf_browser("off"), None);
        assert_eq!(
            pdf_browser("/opt/x/chrome"),
            Some(PathBuf::from("/opt/x/chrome"))
        );
    }
}
