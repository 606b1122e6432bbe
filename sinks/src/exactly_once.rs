//! A Delta table written exactly once from a stream: each commit carries the data and, in the
//! same Delta transaction, the writer's position `(app_id, version = highest stream sequence)`.
//!
//! **Invariant**: a row with stream sequence `s` is in the table iff a commit with version ≥ `s`
//! holds it; the version is read back on open, so a restarted writer resumes after it and a
//! replayed batch at or below it is skipped instead of written twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use adit_config::{Checked, check};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use serde::Deserialize;

use crate::compact::{self, compact_sorted, sorted_for_scans, writer_properties};
use crate::error::{Error, Result};
use crate::store::TableStore;

/// When to compact and vacuum; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maintenance {
    /// Look for files to compact after this many commits (0 = never).
    pub optimize_every_commits: u64,
    /// A partition's files of one size tier are merged once this many are there (see
    /// [`crate::compact`]): lower keeps fewer files for readers, higher rewrites rows fewer
    /// times. 2 to 64.
    pub compact_fanout: usize,
    /// Files no longer referenced are deleted once older than this (also each table's
    /// `delta.deletedFileRetentionDuration`: how long its log keeps their removal).
    #[serde(with = "humantime_serde")]
    pub vacuum_retention: Duration,
    /// How long each table's log keeps a commit once a newer checkpoint stands (its
    /// `delta.logRetentionDuration`): the history that Delta time travel reaches. Every commit
    /// is a file under `_delta_log/`, and a local root lists that whole folder each time a
    /// reader brings a table up to date; Delta's own default of 30 days would hold millions of
    /// files for a table landed twice a second.
    #[serde(with = "humantime_serde")]
    pub log_retention: Duration,
    /// How long each table keeps its rows, by table name (rows whose `date` is older are
    /// deleted by the table's writer, at most hourly); a table not listed keeps them.
    #[serde(with = "retention_map")]
    pub retention: BTreeMap<String, Duration>,
}

/// Energy tables keep two years by default (what regulators usually ask for).
pub const ENERGY_TABLES: [&str; 6] = [
    "energy_readings",
    "machine_energy_1m",
    "site_energy_1m",
    "energy_settlement",
    "energy_1h",
    "energy_1d",
];

impl Default for Maintenance {
    fn default() -> Self {
        let two_years = Duration::from_secs(730 * 24 * 3600);
        Self {
            optimize_every_commits: 10,
            compact_fanout: 4,
            vacuum_retention: Duration::from_secs(7 * 24 * 3600),
            log_retention: DEFAULT_LOG_RETENTION,
            retention: ENERGY_TABLES
                .iter()
                .map(|t| (t.to_string(), two_years))
                .collect(),
        }
    }
}

/// The default [`Maintenance::log_retention`].
pub const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(6 * 3600);

/// The shortest [`Maintenance::log_retention`]: twice the hour for which the query catalog
/// takes a missing next commit file as "nothing newer" before it lists the log again.
pub const MIN_LOG_RETENTION: Duration = Duration::from_secs(2 * 3600);

/// A table → duration map with humantime values (`energy_readings = "730d"`).
mod retention_map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(table, text)| {
                humantime::parse_duration(&text)
                    .map(|d| (table.clone(), d))
                    .map_err(|e| {
                        serde::de::Error::custom(format!("retention of {table}: {text:?}: {e}"))
                    })
            })
            .collect()
    }
}

impl Maintenance {
    /// Checks the values; the key is relative to the section that holds `Maintenance` (the
    /// caller puts it [`adit_config::Invalid::under`] its own key).
    pub fn validate(&self) -> Checked {
        check(
            (2..=64).contains(&self.compact_fanout),
            "compact_fanout",
            format!("must be 2 to 64, not {}", self.compact_fanout),
        )?;
        check(
            self.vacuum_retention >= Duration::from_secs(3600),
            "vacuum_retention",
            format!(
                "must be at least 1h (readers may still be reading files it deletes), not {:?}",
                self.vacuum_retention
            ),
        )?;
        check(
            self.log_retention >= MIN_LOG_RETENTION,
            "log_retention",
            format!(
                "must be at least 2h (readers take a commit file missing within the hour as \
                 nothing newer), not {:?}",
                self.log_retention
            ),
        )?;
        check(
            self.log_retention <= Duration::from_secs(100 * 365 * 24 * 3600),
            "log_retention",
            "must be at most 100 years",
        )?;
        for (table, keep) in &self.retention {
            let key = format!("retention.{table}");
            check(
                *keep >= Duration::from_secs(24 * 3600),
                &key,
                format!("must be at least 1d (rows are kept by date), not {keep:?}"),
            )?;
            check(
                *keep <= Duration::from_secs(100 * 365 * 24 * 3600),
                &key,
                "must be at most 100 years",
            )?;
        }
        Ok(())
    }
}

/// One output table of one writer (pipeline).
pub struct ExactlyOnceTable {
    /// Table name.
    name: String,
    /// The open table (its state follows our own commits).
    table: DeltaTable,
    /// The writer's application id in the Delta log.
    app_id: String,
    /// The last committed stream sequence (0 = nothing yet).
    committed: u64,
    /// Commits since the last compaction.
    since_optimize: u64,
    /// Compaction and vacuum settings.
    maintenance: Maintenance,
    /// The table's Arrow schema.
    schema: SchemaRef,
    /// When rows past retention were last deleted.
    retention_checked: Option<std::time::Instant>,
    /// When unreferenced files were last deleted.
    vacuumed: Option<std::time::Instant>,
    /// The compaction running beside the writer, if one is ([`ExactlyOnceTable::maintain_if_due`]).
    compacting: Option<tokio::task::JoinHandle<Result<Option<DeltaTable>>>>,
}

/// Adds to a table written by an older adit the columns this version writes that it lacks
/// (issue 25: upgrades). A column added in a release is nullable, so the rows already there
/// read it as null; a missing column that may not be null cannot be given to existing rows and
/// is left to [`ExactlyOnceTable::check_schema`] to refuse.
async fn evolve(table: DeltaTable, name: &str, schema: &SchemaRef) -> Result<DeltaTable> {
    let delta_err = |source: deltalake::DeltaTableError| Error::Delta {
        table: name.to_string(),
        source: Box::new(source),
    };
    let snapshot = table.snapshot().map_err(delta_err)?;
    let found = snapshot.schema();
    let found: Vec<&str> = found.fields().map(|f| f.name().as_str()).collect();
    let added: Vec<arrow::datatypes::FieldRef> = schema
        .fields()
        .iter()
        .filter(|f| f.is_nullable() && !found.contains(&f.name().as_str()))
        .cloned()
        .collect();
    if added.is_empty() {
        return Ok(table);
    }
    let names: Vec<String> = added.iter().map(|f| f.name().clone()).collect();
    let kernel: deltalake::kernel::StructType = (&arrow::datatypes::Schema::new(added))
        .try_into_kernel()
        .map_err(|e| delta_err(e.into()))?;
    let fields: Vec<deltalake::kernel::StructField> = kernel.fields().cloned().collect();
    let table = table
        .add_columns()
        .with_fields(fields)
        .await
        .map_err(delta_err)?;
    tracing::info!(table = name, columns = %names.join(", "), "table evolved: added the columns this version writes");
    Ok(table)
}

/// The log properties adit keeps on the tables it writes, as Delta spells them.
fn log_properties(maintenance: &Maintenance) -> HashMap<String, String> {
    let interval = |d: Duration| format!("interval {} seconds", d.as_secs());
    HashMap::from([
        (
            "delta.logRetentionDuration".to_string(),
            interval(maintenance.log_retention),
        ),
        (
            "delta.deletedFileRetentionDuration".to_string(),
            interval(maintenance.vacuum_retention),
        ),
        // Delta cleans expired commits after every commit by default, listing the whole log
        // each time; the writer cleans them hourly instead ([`ExactlyOnceTable::maintain_if_due`]).
        (
            "delta.enableExpiredLogCleanup".to_string(),
            "false".to_string(),
        ),
    ])
}

/// Sets on `table` the log properties of `maintenance` it does not hold yet (one written by an
/// older adit, or a changed config): one commit, only then.
async fn keep_log_properties(
    table: DeltaTable,
    name: &str,
    maintenance: &Maintenance,
) -> Result<DeltaTable> {
    let delta_err = |source: deltalake::DeltaTableError| Error::Delta {
        table: name.to_string(),
        source: Box::new(source),
    };
    let snapshot = table.snapshot().map_err(delta_err)?;
    let held = snapshot.table_config();
    // Whole seconds, as they are written: a config with a fraction would otherwise differ
    // from the table at every open.
    let secs = |d: Duration| Some(Duration::from_secs(d.as_secs()));
    let holds = |key: &str| match key {
        "delta.logRetentionDuration" => {
            held.log_retention_duration == secs(maintenance.log_retention)
        }
        "delta.deletedFileRetentionDuration" => {
            held.deleted_file_retention_duration == secs(maintenance.vacuum_retention)
        }
        _ => held.enable_expired_log_cleanup == Some(false),
    };
    let mut missing = log_properties(maintenance);
    missing.retain(|key, _| !holds(key));
    if missing.is_empty() {
        return Ok(table);
    }
    let mut set: Vec<String> = missing.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    set.sort();
    let table = table
        .set_tbl_properties()
        .with_properties(missing)
        .await
        .map_err(delta_err)?;
    tracing::info!(table = name, properties = %set.join(", "), "table log properties set");
    Ok(table)
}

impl ExactlyOnceTable {
    /// Opens (creating if needed) table `name` for writer `app_id` and reads its position.
    pub async fn open(
        store: &TableStore,
        name: &str,
        schema: &SchemaRef,
        partitions: &[&str],
        app_id: &str,
        maintenance: Maintenance,
    ) -> Result<Self> {
        let table = store
            .open_or_create_with(name, schema, partitions, log_properties(&maintenance))
            .await?;
        let table = evolve(table, name, schema).await?;
        let table = keep_log_properties(table, name, &maintenance).await?;
        let mut this = Self {
            name: name.to_string(),
            table,
            app_id: app_id.to_string(),
            committed: 0,
            since_optimize: 0,
            maintenance,
            schema: schema.clone(),
            retention_checked: None,
            vacuumed: None,
            compacting: None,
        };
        this.check_schema()?;
        this.committed = this.read_position().await?;
        Ok(this)
    }

    /// A table written by an older adit without a column this one needs, and that [`evolve`]
    /// could not add (it may not be null), would fail on every commit: say so once, at open,
    /// with what differs.
    fn check_schema(&self) -> Result<()> {
        let snapshot = self.table.snapshot().map_err(self.delta_err())?;
        let found = snapshot.schema();
        let found: Vec<&str> = found.fields().map(|f| f.name().as_str()).collect();
        let missing: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|name| !found.contains(name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::SchemaMismatch {
            table: self.name.clone(),
            missing: missing.join(", "),
        })
    }

    /// Maps a commit error, telling a lost race for our own application id (another writer
    /// took over this pipeline) from other failures.
    fn commit_err(&self, source: deltalake::DeltaTableError) -> Error {
        use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
        if let deltalake::DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction),
        } = &source
        {
            return Error::Fenced {
                table: self.name.clone(),
                app_id: self.app_id.clone(),
            };
        }
        (self.delta_err())(source)
    }

    fn delta_err(&self) -> impl Fn(deltalake::DeltaTableError) -> Error + '_ {
        move |source| Error::Delta {
            table: self.name.clone(),
            source: Box::new(source),
        }
    }

    async fn read_position(&self) -> Result<u64> {
        let state = self.table.snapshot().map_err(self.delta_err())?;
        let version = state
            .transaction_version(self.table.log_store().as_ref(), &self.app_id)
            .await
            .map_err(self.delta_err())?;
        Ok(version.map_or(0, |v| v.max(0) as u64))
    }

    /// Table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last stream sequence committed to this table by this writer (0 = none).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The open table.
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    /// Appends `batches` and records position `version` in one Delta commit. A `version` at or
    /// below the committed one is a replay and is skipped. Empty batches still move the
    /// position, so a quiet table does not hold its writer back on restart.
    pub async fn commit(&mut self, batches: Vec<RecordBatch>, version: u64) -> Result<bool> {
        if version <= self.committed {
            return Ok(false);
        }
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        // Each commit's file sorted as compaction sorts: a scan for one machine prunes the
        // newest files too, and compaction merges sorted runs instead of sorting from scratch.
        let mut batches = sorted_for_scans(batches)
            .map_err(|e| self.delta_err()(deltalake::DeltaTableError::from(e)))?;
        if batches.is_empty() {
            // The write needs an input even when only the position moves.
            batches.push(RecordBatch::new_empty(self.schema.clone()));
        }
        let txn = Transaction::new(&self.app_id, i64::try_from(version).unwrap_or(i64::MAX));
        let properties = CommitProperties::default().with_application_transaction(txn);
        let partitions = self
            .table
            .snapshot()
            .map_err(self.delta_err())?
            .metadata()
            .partition_columns()
            .to_vec();
        // One sorted batch gets its run summary (split by partition, each file's runs are
        // among it, and a reader takes the rows of its file's partition values).
        let file_properties = match batches.as_slice() {
            [rows] => compact::file_properties(&self.schema, rows, &partitions),
            _ => writer_properties(&self.schema),
        };
        let table = self.table.clone();
        self.table = table
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(partitions)
            .with_writer_properties(file_properties)
            .with_commit_properties(properties)
            .await
            .map_err(|e| self.commit_err(e))?;
        self.committed = version;
        self.since_optimize += 1;
        Ok(true)
    }

    /// Starts compacting small files (size-tiered and sorted, [`compact_sorted`]) when due,
    /// deletes unreferenced ones past retention (at most hourly: it lists the whole table) and
    /// rows past retention. Called by the writer between batches.
    ///
    /// The compaction runs on a thread of its own beside the writer, which keeps committing:
    /// a 50 000-row landing would otherwise stop for the length of a merge (hundreds of
    /// milliseconds) every `optimize_every_commits` commits. The two commit side by side
    /// safely: the writer's appends read no file, and the compaction changes no data
    /// (`dataChange: false`, no `txn` action), so Delta's conflict check lets each through
    /// over the other without touching the writer's fencing, and the compaction commits only
    /// while every file it replaces is still live ([`compact_sorted`]). One compaction at a
    /// time; a failed one is this call's error once it has ended.
    pub async fn maintain_if_due(&mut self) -> Result<()> {
        if self.compacting.as_ref().is_some_and(|c| c.is_finished()) {
            self.finish_compaction().await?;
        }
        let every = self.maintenance.optimize_every_commits;
        if every > 0 && self.since_optimize >= every && self.compacting.is_none() {
            self.since_optimize = 0;
            self.compacting = Some(spawn_compaction(
                self.name.clone(),
                self.table.clone(),
                self.schema.clone(),
                self.maintenance.compact_fanout,
            ));
        }
        if hourly_due(&mut self.vacuumed) {
            let retention = chrono::Duration::from_std(self.maintenance.vacuum_retention)
                .unwrap_or(chrono::Duration::days(7));
            let (table, vacuumed) = self
                .table
                .clone()
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                .await
                .map_err(self.delta_err())?;
            tracing::info!(table = %self.name, files_deleted = vacuumed.files_deleted.len(), "vacuumed");
            self.table = table;
            self.clean_log().await?;
        }
        self.apply_retention(chrono::Utc::now()).await
    }

    /// Waits for the running compaction, if any, to end: its error, or `Ok` with its files in
    /// [`Self::table`] (a writer commit after it took them in already; else its table is newer).
    pub async fn finish_compaction(&mut self) -> Result<()> {
        let Some(running) = self.compacting.take() else {
            return Ok(());
        };
        let compacted = running.await.map_err(|e| Error::Compact {
            table: self.name.clone(),
            reason: format!("the compaction thread ended without an answer: {e}"),
        })??;
        if let Some(table) = compacted
            && table.version() > self.table.version()
        {
            self.table = table;
        }
        Ok(())
    }

    /// Deletes the log's commits older than its retention that a checkpoint stands after, then
    /// reads the log again (the table's snapshot may name a file just deleted).
    async fn clean_log(&mut self) -> Result<()> {
        let cleaned = deltalake::protocol::checkpoints::cleanup_metadata(&self.table, None)
            .await
            .map_err(self.delta_err())?;
        if cleaned > 0 {
            let mut table = self.table.clone();
            table.load().await.map_err(self.delta_err())?;
            self.table = table;
            tracing::info!(table = %self.name, files_deleted = cleaned, "expired log commits cleaned");
        }
        Ok(())
    }

    /// Deletes rows whose `date` is older than the table's retention (at most hourly).
    pub async fn apply_retention(&mut self, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let Some(keep) = self.maintenance.retention.get(&self.name).copied() else {
            return Ok(());
        };
        if self.schema.field_with_name("date").is_err() || !hourly_due(&mut self.retention_checked)
        {
            return Ok(());
        }
        let cutoff =
            (now - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX)).date_naive();
        let table = self.table.clone();
        let (table, metrics) = table
            .delete()
            .with_predicate(format!("date < '{cutoff}'"))
            .await
            .map_err(self.delta_err())?;
        if metrics.num_removed_files > 0 {
            tracing::info!(
                table = %self.name,
                %cutoff,
                files_removed = metrics.num_removed_files,
                "rows past retention deleted"
            );
        }
        self.table = table;
        Ok(())
    }
}

/// Compacts `table` ([`compact_sorted`]) on a blocking thread, so that its sorting and
/// Parquet encoding take no worker thread from the tasks that read the bus and land batches.
fn spawn_compaction(
    name: String,
    table: DeltaTable,
    schema: SchemaRef,
    fanout: usize,
) -> tokio::task::JoinHandle<Result<Option<DeltaTable>>> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let done = runtime.block_on(compact_sorted(&name, &table, &schema, fanout))?;
        Ok(done.map(|(table, done)| {
            tracing::info!(
                table = %name,
                files_added = done.files_added,
                files_removed = done.files_removed,
                rows = done.rows,
                "compacted, sorted by the filter columns"
            );
            table
        }))
    })
}

/// Whether an hourly task last run at `last` is due; if so, marks it run now.
fn hourly_due(last: &mut Option<std::time::Instant>) -> bool {
    let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
    if due {
        *last = Some(std::time::Instant::now());
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_maintenance_value_is_named_by_its_key() {
        assert_eq!(Maintenance::default().validate(), Ok(()));
        let fanout = Maintenance {
            compact_fanout: 1,
            ..Maintenance::default()
        };
        assert_eq!(
            fanout.validate().unwrap_err().to_string(),
            "compact_fanout: must be 2 to 64, not 1"
        );
        let mut short = Maintenance::default();
        short
            .retention
            .insert("energy_1h".into(), Duration::from_secs(60));
        assert_eq!(short.validate().unwrap_err().key, "retention.energy_1h");
        let short_log = Maintenance {
            log_retention: Duration::from_secs(3600),
            ..Maintenance::default()
        };
        assert_eq!(short_log.validate().unwrap_err().key, "log_retention");
    }
}
