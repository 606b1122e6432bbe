//! Every Delta table under the table root, kept open and brought up to date incrementally.
//!
//! A query used to re-open every table's log (a second or more on a busy machine); the catalog
//! instead holds each table's snapshot and, at most once per refresh interval, lists the root
//! for new tables and reads only the commits each known table gained since. A query takes a
//! copy of the snapshots (cheap: the file lists are shared), so one refresh serves every
//! query that waits on it and a running query never sees a table change under it. A query
//! waits only on the tables it reads ([`Catalog::snapshot_of`]): a statement over one table
//! of a root of thirty paid for reading the logs of all thirty (3 ms of a 5 ms point lookup
//! after an idle moment, issue 29).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adit_sinks::{FreshRows, MemoryTables, TableStore};
use deltalake::DeltaTable;
use futures::future::try_join_all;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tokio::sync::Mutex;

use crate::error::{Result, SqlError};

/// The catalog of every table under one table root.
pub struct Catalog {
    /// Where the tables are.
    store: TableStore,
    /// How stale a snapshot (and the list of tables) may be before it is refreshed.
    refresh: Duration,
    /// The tables known so far, and when the root was last listed.
    inner: Mutex<Inner>,
    /// Rows the tables' writers hold but have not committed, shown after each snapshot.
    fresh: Option<Arc<dyn FreshRows>>,
    /// Tables held in memory only (the last values), beside the committed ones.
    memory: Option<Arc<dyn MemoryTables>>,
}

#[derive(Default)]
struct Inner {
    /// When the root was last listed for tables.
    listed: Option<Instant>,
    /// Each known table and when its log was last checked.
    tables: BTreeMap<String, Entry>,
}

struct Entry {
    table: DeltaTable,
    /// When the snapshot was last known to be the newest.
    checked: Instant,
    /// When the log was last read (not only its next commit looked for).
    read: Instant,
}

/// How long a table's log may go unread while its next commit is looked for instead: well
/// within any log retention, so the next commit's file of a snapshot this old was not cleaned
/// away with newer ones standing (a table no statement read for longer is read in full).
const TRUST_NEXT_COMMIT: Duration = Duration::from_secs(3600);

/// What a query takes from the catalog.
pub struct Tables {
    /// Every table under the root, sorted.
    pub names: Vec<String>,
    /// The snapshots of the tables asked for, by name.
    pub snapshots: Vec<(String, DeltaTable)>,
}

impl Catalog {
    /// A catalog over `store` whose snapshots are at most `refresh` old when a query starts
    /// (zero: checked for every query).
    pub fn new(store: TableStore, refresh: Duration) -> Self {
        Self {
            store,
            refresh,
            inner: Mutex::new(Inner::default()),
            fresh: None,
            memory: None,
        }
    }

    /// The same catalog, with the tables `memory` holds beside the committed ones.
    pub fn with_memory(self, memory: Arc<dyn MemoryTables>) -> Self {
        Self {
            memory: Some(memory),
            ..self
        }
    }

    /// The tables held in memory only, if any.
    pub fn memory(&self) -> Option<&Arc<dyn MemoryTables>> {
        self.memory.as_ref()
    }

    /// The same catalog, whose tables also show what `fresh` holds after their snapshots.
    pub fn with_fresh(self, fresh: Arc<dyn FreshRows>) -> Self {
        Self {
            fresh: Some(fresh),
            ..self
        }
    }

    /// Where the rows not committed yet come from, if fresh reads are on.
    pub fn fresh(&self) -> Option<&Arc<dyn FreshRows>> {
        self.fresh.as_ref()
    }

    /// The table store it reads.
    pub fn store(&self) -> &TableStore {
        &self.store
    }

    /// Every table with a snapshot no older than the refresh interval, by name.
    pub async fn snapshot(&self) -> Result<Vec<(String, DeltaTable)>> {
        Ok(self.snapshot_of(None).await?.snapshots)
    }

    /// The names of every table under the root (listed at most once per refresh interval;
    /// no table's log is read).
    pub async fn names(&self) -> Result<Vec<String>> {
        Ok(self.snapshot_of(Some(&HashSet::new())).await?.names)
    }

    /// Whether table `name` exists and has column `column`: a table written by an older
    /// version lacks a column its newer writer adds when it next opens it, and a reader may
    /// get there first.
    pub async fn has_column(&self, name: &str, column: &str) -> Result<bool> {
        let only = HashSet::from([name.to_string()]);
        let tables = self.snapshot_of(Some(&only)).await?;
        Ok(tables.snapshots.iter().any(|(_, table)| {
            table
                .snapshot()
                .is_ok_and(|s| s.schema().fields().any(|f| f.name() == column))
        }))
    }

    /// The tables named in `only` (every table when `None`) with snapshots no older than the
    /// refresh interval, and the names of every table under the root; a name in `only` that
    /// is no table is left out. Only those tables' logs are read.
    pub async fn snapshot_of(&self, only: Option<&HashSet<String>>) -> Result<Tables> {
        let wanted = |name: &String| only.is_none_or(|only| only.contains(name));
        let mut inner = self.inner.lock().await;
        let now = Instant::now();
        let due = |at: Instant| now.saturating_duration_since(at) >= self.refresh;
        if inner.listed.is_none_or(due) {
            let names = self.list().await?;
            inner.tables.retain(|name, _| names.contains(name));
            for name in names {
                if inner.tables.contains_key(&name) {
                    continue;
                }
                if let Some(table) = self.store.open(&name).await? {
                    let entry = Entry {
                        table,
                        checked: now,
                        read: now,
                    };
                    inner.tables.insert(name, entry);
                }
            }
            inner.listed = Some(now);
        }
        let stale = inner
            .tables
            .iter_mut()
            .filter(|(name, entry)| wanted(name) && due(entry.checked))
            .map(|(name, entry)| async move {
                let trusted = now.saturating_duration_since(entry.read) < TRUST_NEXT_COMMIT;
                if !trusted || has_next_commit(&entry.table).await {
                    entry
                        .table
                        .update_incremental(None)
                        .await
                        .map_err(|source| adit_sinks::Error::Delta {
                            table: name.clone(),
                            source: Box::new(source),
                        })?;
                    entry.read = now;
                }
                entry.checked = now;
                Ok::<_, SqlError>(())
            });
        try_join_all(stale).await?;
        metrics::gauge!("adit_sql_catalog_tables").set(inner.tables.len() as f64);
        Ok(Tables {
            names: inner.tables.keys().cloned().collect(),
            snapshots: inner
                .tables
                .iter()
                .filter(|(name, _)| wanted(name))
                .map(|(name, entry)| (name.clone(), entry.table.clone()))
                .collect(),
        })
    }

    /// The names of the folders under the root that may be tables (not adit's own `_adit`
    /// folder or hidden ones), sorted.
    async fn list(&self) -> Result<Vec<String>> {
        let (objects, root) = self.store.object_store()?;
        let listing = objects
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|source| SqlError::Listing {
                root: self.store.root().to_string(),
                source,
            })?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename().map(str::to_string))
            .filter(|name| !name.starts_with(['_', '.']))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Whether `table`'s log may hold a commit after its snapshot: the next version's commit file
/// exists, or that cannot be told (then the log is read and says). Commits are created once
/// each, in order, and only files older than the log's retention are cleaned away, so when
/// the next of a recent snapshot is missing there is no newer one ([`TRUST_NEXT_COMMIT`]):
/// one `HEAD` instead of listing the log (a millisecond a query for a table of a few hundred
/// commits, and the log grows with every commit until its retention).
async fn has_next_commit(table: &DeltaTable) -> bool {
    let Some(version) = table.version() else {
        return true;
    };
    let next = Path::from(format!("_delta_log/{:020}.json", version + 1));
    !matches!(
        table.object_store().head(&next).await,
        Err(object_store::Error::NotFound { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::events::EventKind;
    use std::collections::HashMap;

    #[tokio::test]
    async fn a_column_is_known_only_once_the_table_has_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = TableStore::new(dir.path().to_str().unwrap(), HashMap::new())?;
        let catalog = Catalog::new(store.clone(), Duration::ZERO);
        assert!(!catalog.has_column("energy", "power_w").await?, "no table");
        let kind = EventKind::Energy;
        store
            .open_or_create(kind.table(), &kind.table_schema(), &["date"])
            .await?;
        let column = kind.table_schema().field(1).name().clone();
        assert!(catalog.has_column(kind.table(), &column).await?);
        assert!(!catalog.has_column(kind.table(), "proof").await?);
        Ok(())
    }

    #[tokio::test]
    async fn new_tables_and_new_commits_appear_after_the_refresh_interval() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = TableStore::new(dir.path().to_str().unwrap(), HashMap::new())?;
        std::fs::create_dir_all(dir.path().join("_adit/pipelines"))?;
        std::fs::create_dir_all(dir.path().join("not_a_table"))?;
        // One catalog that never refreshes within the test, one that checks every query.
        let cached = Catalog::new(store.clone(), Duration::from_secs(3600));
        let fresh = Catalog::new(store.clone(), Duration::ZERO);
        assert!(cached.snapshot().await?.is_empty());
        assert!(
            fresh.snapshot().await?.is_empty(),
            "only Delta tables count"
        );

        let kind = EventKind::Energy;
        store
            .open_or_create(kind.table(), &kind.table_schema(), &["date"])
            .await?;
        assert!(
            cached.snapshot().await?.is_empty(),
            "within the interval the listing is reused"
        );
        let tables = fresh.snapshot().await?;
        let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [kind.table()]);
        let first = tables[0].1.version();

        let mut writer = store.open(kind.table()).await?.expect("created");
        let batch = arrow::array::RecordBatch::new_empty(kind.table_schema());
        writer = writer
            .write(vec![batch])
            .with_partition_columns(["date"])
            .await?;
        assert!(writer.version() > first);
        assert!(
            has_next_commit(&tables[0].1).await,
            "the snapshot taken before the write sees the next commit's file"
        );
        assert!(!has_next_commit(&writer).await, "none after the newest");
        let other = HashSet::from(["other".to_string()]);
        let only_other = fresh.snapshot_of(Some(&other)).await?;
        assert!(only_other.snapshots.is_empty(), "a name that is no table");
        assert_eq!(only_other.names, [kind.table()]);
        assert_eq!(fresh.names().await?, [kind.table()]);
        assert_eq!(
            fresh.inner.lock().await.tables[kind.table()]
                .table
                .version(),
            first,
            "a table not asked for is not brought up to date"
        );
        assert_eq!(
            fresh.snapshot().await?[0].1.version(),
            writer.version(),
            "the new commit is read incrementally"
        );
        Ok(())
    }
}
