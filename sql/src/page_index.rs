//! Parquet readers whose footers are cached with their page indexes.
//!
//! DataFusion's cached reader keeps each file's footer between statements, but its scan first
//! asks for the footer without the page index, so the cache holds footers only; then, when a
//! filter can use the index, the scan reads the file's column and offset indexes from the file
//! again, every statement, and keeps them nowhere. On issue 29's landed bench that re-read
//! (and its allocation) was 7 % of a point lookup's CPU profile. [`IndexedFooters`] asks for
//! the page index with every footer, so the first statement over a file caches both and the
//! next ones find the index already there. Files without a page index are read as before.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::Result as ParquetResult;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStore;

/// Readers that share the footer cache and fetch the page index with each footer.
pub(crate) struct IndexedFooters {
    cached: CachedParquetFileReaderFactory,
}

impl IndexedFooters {
    /// Readers of `store`'s files, their footers and page indexes kept in `cache`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, cache: Arc<FileMetadataCache>) -> Self {
        Self {
            cached: CachedParquetFileReaderFactory::new(store, cache),
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
        let inner = self.cached.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )?;
        Ok(Box::new(IndexedReader { inner }))
    }
}

/// A cached reader whose footer requests always include the page index.
struct IndexedReader {
    inner: Box<dyn AsyncFileReader + Send>,
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
        async move { self.inner.get_metadata(Some(&indexed)).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::cache::default_cache::DefaultCache;
    use datafusion::parquet::arrow::ArrowWriter;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};

    /// A Parquet file of 10 000 numbers in `store`.
    async fn file(store: &InMemory, name: &str) -> anyhow::Result<ObjectMeta> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..10_000))],
        )?;
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema, None)?;
        writer.write(&batch)?;
        writer.close()?;
        let location = Path::from(name);
        store.put(&location, PutPayload::from(bytes)).await?;
        Ok(store.head(&location).await?)
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
}
