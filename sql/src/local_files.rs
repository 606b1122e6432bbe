//! Local table files whose byte ranges a scan reads on its own thread.
//!
//! object_store's `LocalFileSystem` hands every read to tokio's blocking pool and waits for it
//! to come back. A scan of landed tables asks for a few sets of byte ranges per file (the
//! filter's columns, then the output's), so a point lookup over a day's files made dozens of
//! such round trips, and on issue 29's landed bench the kernel's task switches were the
//! largest item of that query's profile. The SQL runtime is adit's own (no Stratum or
//! pipeline task waits behind its threads) and table files are local, mostly in the page
//! cache, so [`InlineFiles`] reads the ranges where the scan asks for them. Every other call
//! (listing, whole-object reads, writes) is `LocalFileSystem`'s own.

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The local file system, with byte ranges read in place (see the module's header).
#[derive(Debug, Default)]
pub(crate) struct InlineFiles {
    /// Paths, listings, whole-object reads and writes.
    files: LocalFileSystem,
}

impl fmt::Display for InlineFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InlineFiles({})", self.files)
    }
}

#[async_trait]
impl ObjectStore for InlineFiles {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.files.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.files.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.files.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path = self.files.path_to_filesystem(location)?;
        read_ranges(&path, location, ranges)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.files.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.files.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.files.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.files.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.files.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.files.rename_opts(from, to, options).await
    }
}

/// `ranges` of the file at `path` (the object `location`), each read whole. A range not
/// within the file (past its end, or reversed, as a damaged footer may ask for) is an error
/// before anything is allocated for it.
fn read_ranges(
    path: &std::path::Path,
    location: &Path,
    ranges: &[Range<u64>],
) -> Result<Vec<Bytes>> {
    use std::io::{Error, ErrorKind, Read, Seek, SeekFrom};
    let failed = |source: Error| match source.kind() {
        ErrorKind::NotFound => object_store::Error::NotFound {
            path: location.to_string(),
            source: Box::new(source),
        },
        _ => object_store::Error::Generic {
            store: "InlineFiles",
            source: format!("{location}: {source}").into(),
        },
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let size = file.metadata().map_err(failed)?.len();
    ranges
        .iter()
        .map(|range| {
            let outside = || {
                let reason = format!("bytes {range:?} are not within the file's {size}");
                failed(Error::new(ErrorKind::InvalidInput, reason))
            };
            if range.start > range.end || range.end > size {
                return Err(outside());
            }
            let len = usize::try_from(range.end - range.start).map_err(|_| outside())?;
            // Read into capacity the file's bytes fill, not a zeroed buffer: zeroing these
            // buffers was 6 % of a point lookup's CPU profile (issue 29's landed bench).
            let mut buf = Vec::with_capacity(len);
            (&file).seek(SeekFrom::Start(range.start)).map_err(failed)?;
            (&file)
                .take(range.end - range.start)
                .read_to_end(&mut buf)
                .map_err(failed)?;
            if buf.len() != len {
                return Err(failed(Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "bytes {range:?} ended after {} (the file shrank)",
                        buf.len()
                    ),
                )));
            }
            Ok(Bytes::from(buf))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ranges_are_the_files_bytes_and_a_range_past_the_end_is_an_error() -> anyhow::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let bytes: Vec<u8> = (0..10_000_u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("part.parquet"), &bytes)?;
        let store = InlineFiles::default();
        let location = Path::from_filesystem_path(dir.path().join("part.parquet"))?;

        let ranges = [0..10, 4_000..9_000, 9_999..10_000, 5..5];
        let read = store.get_ranges(&location, &ranges).await?;
        let expected = store.files.get_ranges(&location, &ranges).await?;
        assert_eq!(read, expected);
        for (range, got) in ranges.iter().zip(&read) {
            assert_eq!(&got[..], &bytes[range.start as usize..range.end as usize]);
        }

        let past = store.get_ranges(&location, &[0..1, 9_000..10_001]).await;
        assert!(past.is_err(), "{past:?}");
        let missing = Path::from_filesystem_path(dir.path())?.join("gone.parquet");
        let gone = store.get_ranges(&missing, &[0..1, 1..2]).await;
        assert!(
            matches!(gone, Err(object_store::Error::NotFound { .. })),
            "{gone:?}"
        );
        // Everything else is the file system's own.
        let listed: Vec<ObjectMeta> = futures::TryStreamExt::try_collect(
            store.list(Some(&Path::from_filesystem_path(dir.path())?)),
        )
        .await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size, 10_000);
        Ok(())
    }
}
