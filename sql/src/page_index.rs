//! Parquet readers whose footers are cached with their page indexes.
//!
//! DataFusion's cached reader keeps each file's footer between statements, but its scan first
//! asks for the footer without the page index, so the cache holds footers only; then, when a
//! filter can use the index, the scan reads the file's column and offset indexes from the file
//! again, every statement, and keeps them nowhere. On issue 29's landed bench that re-read
//! (and its allocation) was 7 % of a point lookup's CPU profile. [`IndexedFooters`] asks for
//! the page index with every footer, so the first statement over a file caches both and the
//! next ones find the index already there. Files without a page index are read as before.
//!
//! A footer that carries a run summary (`adit_sinks::summary`, 1.7 MB of base64 on a 1 M-row
//! file of a 10 000-machine farm) is kept without it: Arrow copies every footer entry into the
//! schema of each file it opens, three times per opening in DataFusion's scan, which made
//! opening a file with a summary twice as slow for every statement (issue 62: one machine's last
//! 100 readings). The summary goes to its own cache entry ([`Summary`], decoded on first use by
//! `summaries.rs`), and the footer keeps the key with no value, so that a reader knows the file
//! has one ([`run_summary`] reads the footer again when its entry has been evicted).

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use adit_sinks::summary::{self, SUMMARY_KEY};
use arrow::array::RecordBatch;
use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, CachedParquetMetaData, ParquetFileReaderFactory,
};
use datafusion::execution::cache::cache_manager::{
    CachedFileMetadataEntry, FileMetadata, FileMetadataCache,
};
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::Result as ParquetResult;
use datafusion::parquet::file::metadata::{
    FileMetaData, KeyValue, PageIndexPolicy, ParquetMetaData, ParquetMetaDataBuilder,
};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

/// Readers that share the footer cache and fetch the page index with each footer.
pub(crate) struct IndexedFooters {
    cached: CachedParquetFileReaderFactory,
    cache: Arc<FileMetadataCache>,
}

impl IndexedFooters {
    /// Readers of `store`'s files, their footers and page indexes kept in `cache`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, cache: Arc<FileMetadataCache>) -> Self {
        Self {
            cached: CachedParquetFileReaderFactory::new(store, Arc::clone(&cache)),
            cache,
        }
    }
}

impl fmt::Debug for IndexedFooters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexedFooters")
    }
}

impl ParquetFileReaderFactory for IndexedFooters {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let meta = partitioned_file.object_meta.clone();
        let inner = self.cached.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )?;
        Ok(Box::new(IndexedReader {
            inner,
            cache: Arc::clone(&self.cache),
            meta,
        }))
    }
}

/// A cached reader whose footer requests always include the page index, and whose footers are
/// kept with their run summary apart.
struct IndexedReader {
    inner: Box<dyn AsyncFileReader + Send>,
    /// The footer cache (the inner reader's).
    cache: Arc<FileMetadataCache>,
    /// The file read.
    meta: ObjectMeta,
}

impl AsyncFileReader for IndexedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        let indexed = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move {
            // A footer kept without its summary is given as it is: DataFusion's reader would
            // read the file's footer again, whole, for a page index it does not have.
            if let Some(kept) = kept_apart(&self.cache, &self.meta) {
                return Ok(kept);
            }
            let metadata = self.inner.get_metadata(Some(&indexed)).await?;
            Ok(apart(&self.cache, &self.meta, metadata))
        }
        .boxed()
    }
}

/// `metadata` as kept: a footer just read that carries a run summary is put back in the cache
/// without it (the key kept, with no value), the summary in its own entry; any other footer is
/// returned as it is.
fn apart(
    cache: &Arc<FileMetadataCache>,
    meta: &ObjectMeta,
    metadata: Arc<ParquetMetaData>,
) -> Arc<ParquetMetaData> {
    let Some(Some(text)) = summary_entry(&metadata) else {
        return metadata;
    };
    put_summary(cache, meta, text.to_string());
    let kept = Arc::new(without_summary(&metadata));
    cache.put(
        &meta.location,
        CachedFileMetadataEntry::new(
            meta.clone(),
            Arc::new(CachedParquetMetaData::new(Arc::clone(&kept))),
        ),
    );
    kept
}

/// `meta`'s footer in `cache` when it is one kept without its summary.
fn kept_apart(cache: &Arc<FileMetadataCache>, meta: &ObjectMeta) -> Option<Arc<ParquetMetaData>> {
    let entry = cache.get(&meta.location)?;
    let footer = entry
        .file_metadata
        .as_any()
        .downcast_ref::<CachedParquetMetaData>()?
        .parquet_metadata();
    (entry.is_valid_for(meta) && summary_entry(footer) == Some(None)).then(|| Arc::clone(footer))
}

/// The footer's run summary entry: `None` when it has none, `Some(None)` when it was kept apart.
fn summary_entry(metadata: &ParquetMetaData) -> Option<Option<&str>> {
    metadata
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|e| e.key == SUMMARY_KEY)
        .map(|e| e.value.as_deref())
}

/// `metadata` with its run summary's value left out (its key kept, with no value: Arrow leaves
/// such an entry out of a schema).
fn without_summary(metadata: &ParquetMetaData) -> ParquetMetaData {
    let file = metadata.file_metadata();
    let entries = file.key_value_metadata().map(|entries| {
        entries
            .iter()
            .map(|e| match e.key == SUMMARY_KEY {
                true => KeyValue::new(e.key.clone(), None),
                false => e.clone(),
            })
            .collect()
    });
    let file = FileMetaData::new(
        file.version(),
        file.num_rows(),
        file.created_by().map(str::to_string),
        entries,
        file.schema_descr_ptr(),
        file.column_orders().cloned(),
    );
    ParquetMetaDataBuilder::new(file)
        .set_row_groups(metadata.row_groups().to_vec())
        .set_column_index(metadata.column_index().cloned())
        .set_offset_index(metadata.offset_index().cloned())
        .build()
}

/// The cache key of `location`'s run summary: beside its footer's, under a name no Delta file
/// has.
pub(crate) fn summary_key(location: &Path) -> Path {
    Path::from(format!("{location}#{SUMMARY_KEY}"))
}

/// Keeps `text`, `meta`'s run summary, in `cache`; the summary kept.
fn put_summary(cache: &Arc<FileMetadataCache>, meta: &ObjectMeta, text: String) -> Arc<Summary> {
    let summary = Arc::new(Summary::new(text));
    cache.put(
        &summary_key(&meta.location),
        CachedFileMetadataEntry::new(meta.clone(), Arc::clone(&summary) as Arc<dyn FileMetadata>),
    );
    summary
}

/// A file's run summary as its footer held it, decoded (and checked) on first use.
pub(crate) struct Summary {
    text: String,
    decoded: OnceLock<Option<RecordBatch>>,
}

impl Summary {
    pub(crate) fn new(text: String) -> Self {
        Self {
            text,
            decoded: OnceLock::new(),
        }
    }

    /// The runs, or `None` when the summary cannot be read (logged once; the file is then
    /// scanned).
    pub(crate) fn runs(&self, location: &Path) -> Option<RecordBatch> {
        self.decoded
            .get_or_init(|| match summary::decode(&self.text) {
                Ok(runs) => Some(runs),
                Err(e) => {
                    tracing::warn!(file = %location, error = %e, "a file's run summary cannot be read; the file is scanned");
                    None
                }
            })
            .clone()
    }
}

impl FileMetadata for Summary {
    fn as_any(&self) -> &dyn Any {
        self
    }

    /// The text and about as much again once decoded (fixed when the entry is made, as the
    /// cache's accounting needs).
    fn memory_size(&self) -> usize {
        size_of::<Self>() + 2 * self.text.len()
    }

    fn extra_info(&self) -> datafusion::common::HashMap<String, String> {
        datafusion::common::HashMap::new()
    }
}

/// The run summary of `file` (whose footer, as [`IndexedFooters`] keeps it, is `metadata`), or
/// `None` when it has none or one that cannot be read: from the cache, or, when its entry has
/// been evicted, from its footer read again.
pub(crate) async fn run_summary(
    store: &Arc<dyn ObjectStore>,
    cache: &Arc<FileMetadataCache>,
    file: &PartitionedFile,
    metadata: &ParquetMetaData,
) -> datafusion::common::Result<Option<RecordBatch>> {
    let meta = &file.object_meta;
    match summary_entry(metadata) {
        None => return Ok(None),
        // A footer read by another reader, with its summary still in it.
        Some(Some(text)) => {
            return Ok(put_summary(cache, meta, text.to_string()).runs(&meta.location));
        }
        Some(None) => {}
    }
    if let Some(entry) = cache.get(&summary_key(&meta.location))
        && entry.is_valid_for(meta)
        && let Some(summary) = entry.file_metadata.as_any().downcast_ref::<Summary>()
    {
        return Ok(summary.runs(&meta.location));
    }
    let fresh = DFParquetMetadata::new(store.as_ref(), meta)
        .with_page_index_policy(Some(PageIndexPolicy::Skip))
        .fetch_metadata()
        .await?;
    Ok(match summary_entry(&fresh) {
        Some(Some(text)) => put_summary(cache, meta, text.to_string()).runs(&meta.location),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::cache::default_cache::DefaultCache;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};

    /// A Parquet file of 10 000 numbers in `store`.
    async fn file(store: &InMemory, name: &str) -> anyhow::Result<ObjectMeta> {
        file_with(store, name, None).await
    }

    /// A Parquet file of 10 000 numbers (`k`, in runs of 100, and `v`) in `store`, with
    /// `entry` in its footer.
    async fn file_with(
        store: &InMemory,
        name: &str,
        entry: Option<(String, String)>,
    ) -> anyhow::Result<ObjectMeta> {
        let batch = numbers();
        let properties = WriterProperties::builder()
            .set_key_value_metadata(entry.map(|(k, v)| vec![KeyValue::new(k, v)]))
            .build();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties))?;
        writer.write(&batch)?;
        writer.close()?;
        let location = Path::from(name);
        store.put(&location, PutPayload::from(bytes)).await?;
        Ok(store.head(&location).await?)
    }

    fn numbers() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values((0..10_000).map(|i| i / 100))),
                Arc::new(Int64Array::from_iter_values(0..10_000)),
            ],
        )
        .expect("a batch")
    }

    /// The footer a reader of `readers` gives when asked as DataFusion's scan asks (without
    /// the page index).
    async fn footer(
        readers: &dyn ParquetFileReaderFactory,
        meta: &ObjectMeta,
    ) -> anyhow::Result<Arc<ParquetMetaData>> {
        let mut reader = readers.create_reader(
            0,
            PartitionedFile::from(meta.clone()),
            None,
            &ExecutionPlanMetricsSet::new(),
        )?;
        let footer_only = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip);
        Ok(reader.get_metadata(Some(&footer_only)).await?)
    }

    fn indexed(metadata: &Arc<ParquetMetaData>) -> bool {
        metadata.column_index().is_some() && metadata.offset_index().is_some()
    }

    #[tokio::test]
    async fn the_page_index_is_read_with_the_footer_and_then_comes_from_the_cache()
    -> anyhow::Result<()> {
        let store = Arc::new(InMemory::new());
        let ours = file(&store, "t/ours.parquet").await?;
        let theirs = file(&store, "t/theirs.parquet").await?;
        let cache: Arc<FileMetadataCache> = Arc::new(DefaultCache::new(1 << 20));

        let readers = IndexedFooters::new(store.clone(), cache.clone());
        assert!(indexed(&footer(&readers, &ours).await?));
        // The file gone, the next statement's reader still has footer and index: the cache's.
        store.delete(&ours.location).await?;
        assert!(indexed(&footer(&readers, &ours).await?));

        // DataFusion's own cached reader, asked the same way, caches the footer alone (so its
        // scan reads the index from the file every statement): the reason for this module.
        let plain = CachedParquetFileReaderFactory::new(store.clone(), cache);
        assert!(!indexed(&footer(&plain, &theirs).await?));
        assert!(!indexed(&footer(&plain, &theirs).await?));
        Ok(())
    }

    #[tokio::test]
    async fn a_footer_is_kept_without_its_summary_which_is_kept_apart() -> anyhow::Result<()> {
        let store = Arc::new(InMemory::new());
        let entry = summary::footer_entry(&numbers(), &["k".to_string()]).expect("a summary");
        let meta = file_with(&store, "t/summed.parquet", Some(entry)).await?;
        let cache: Arc<FileMetadataCache> = Arc::new(DefaultCache::new(64 << 20));
        let readers = IndexedFooters::new(store.clone(), cache.clone());

        // The footer given and kept has the summary's key without its text, and Arrow's schema
        // of the file (what a scan copies at every opening) none of it.
        let kept = footer(&readers, &meta).await?;
        assert!(indexed(&kept));
        assert_eq!(summary_entry(&kept), Some(None));
        let schema = datafusion::parquet::arrow::parquet_to_arrow_schema(
            kept.file_metadata().schema_descr(),
            kept.file_metadata().key_value_metadata(),
        )?;
        assert!(schema.metadata().keys().all(|k| k != SUMMARY_KEY));
        assert_eq!(summary_entry(&*footer(&readers, &meta).await?), Some(None));

        // The summary comes from its own entry, decoded: 100 runs of 100 rows.
        let part = PartitionedFile::from(meta.clone());
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let runs = run_summary(&dyn_store, &cache, &part, &kept)
            .await?
            .expect("runs");
        assert_eq!(runs.num_rows(), 100);
        // Its entry evicted, it is read from the file again.
        cache.remove(&summary_key(&meta.location));
        let again = run_summary(&dyn_store, &cache, &part, &kept)
            .await?
            .expect("runs");
        assert_eq!(again, runs);
        // A file without one has none, and is not read again for it.
        let plain = file(&store, "t/plain.parquet").await?;
        let footer_of_plain = footer(&readers, &plain).await?;
        store.delete(&plain.location).await?;
        let part = PartitionedFile::from(plain);
        assert!(
            run_summary(&dyn_store, &cache, &part, &footer_of_plain)
                .await?
                .is_none()
        );
        Ok(())
    }
}
