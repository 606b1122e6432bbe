//! A folder on an object store (a local folder, `s3://…`): where tables are read from and
//! where a backup is written, with streaming copies that count and hash what they move.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result, object};

/// A folder on an object store.
#[derive(Clone)]
pub struct Place {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place").field("root", &self.root).finish()
    }
}

/// What a copy or a write moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

impl Place {
    /// The folder `root` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path) -> Self {
        Self { store, root }
    }

    /// The root of `tables` (a table root, or a backup location opened as one).
    pub fn of(tables: &adit_sinks::TableStore) -> Result<Self> {
        let (store, root) = tables.object_store()?;
        Ok(Self::new(store, root))
    }

    /// The folder `rel` under this one.
    pub fn child(&self, rel: &str) -> Self {
        Self {
            store: self.store.clone(),
            root: self.path(rel),
        }
    }

    /// The full path of `rel` (slash-separated) under this folder.
    pub fn path(&self, rel: &str) -> Path {
        let rel = Path::from(rel);
        Path::from_iter(self.root.parts().chain(rel.parts()))
    }

    /// Every object under `rel` (recursively), as paths relative to this folder, sorted.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(object(&prefix))?;
        let mut found: Vec<String> = metas
            .iter()
            .filter_map(|m| {
                let parts = m.location.prefix_match(&self.root)?;
                Some(Path::from_iter(parts).to_string())
            })
            .collect();
        found.sort();
        Ok(found)
    }

    /// The folders directly under `rel`.
    pub async fn folders(&self, rel: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel);
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(object(&prefix))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reads `rel` whole (manifests, small records).
    pub async fn read(&self, rel: &str) -> Result<Bytes> {
        let path = self.path(rel);
        let got = self.store.get(&path).await.map_err(object(&path))?;
        got.bytes().await.map_err(object(&path))
    }

    /// Whether `rel` exists.
    pub async fn exists(&self, rel: &str) -> Result<bool> {
        let path = self.path(rel);
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(object(&path)(e)),
        }
    }

    /// Writes `bytes` to `rel` in one put.
    pub async fn write(&self, rel: &str, bytes: Vec<u8>) -> Result<Moved> {
        let path = self.path(rel);
        let moved = Moved {
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        };
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(object(&path))?;
        Ok(moved)
    }

    /// Copies `rel` of this folder to `to_rel` of `to`, streaming; `None` if `rel` is gone
    /// (deleted since it was listed).
    pub async fn copy_to(&self, rel: &str, to: &Place, to_rel: &str) -> Result<Option<Moved>> {
        let from = self.path(rel);
        let got = match self.store.get(&from).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(object(&from)(e)),
        };
        let mut chunks = got.into_stream();
        let mut writer = to.writer(to_rel);
        let mut hash = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(object(&from))?;
            hash.update(&chunk);
            bytes += chunk.len() as u64;
            writer.put(chunk).await.map_err(object(&writer.path))?;
        }
        writer.finish().await?;
        Ok(Some(Moved {
            bytes,
            sha256: hex::encode(hash.finalize()),
        }))
    }

    /// Reads `rel` through, returning its size and digest.
    pub async fn digest(&self, rel: &str) -> Result<Moved> {
        let path = self.path(rel);
        let got = self.store.get(&path).await.map_err(object(&path))?;
        let mut chunks = got.into_stream();
        let mut hash = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(object(&path))?;
            hash.update(&chunk);
            bytes += chunk.len() as u64;
        }
        Ok(Moved {
            bytes,
            sha256: hex::encode(hash.finalize()),
        })
    }

    /// The chunks of `rel`, as they are read.
    pub async fn chunks(
        &self,
        rel: &str,
    ) -> Result<impl futures::Stream<Item = Result<Bytes>> + use<>> {
        let path = self.path(rel);
        let got = self.store.get(&path).await.map_err(object(&path))?;
        let shown = path.to_string();
        Ok(got.into_stream().map(move |c| {
            c.map_err(|source| Error::Object {
                path: shown.clone(),
                source,
            })
        }))
    }

    /// A streaming writer of `rel` (multipart where the store has it).
    pub fn writer(&self, rel: &str) -> Writer {
        let path = self.path(rel);
        Writer {
            inner: BufWriter::new(self.store.clone(), path.clone()),
            path,
        }
    }

    /// Deletes every object under `rel`; how many.
    pub async fn delete_all(&self, rel: &str) -> Result<usize> {
        let prefix = self.path(rel);
        let locations = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .boxed();
        let deleted: Vec<Path> = self
            .store
            .delete_stream(locations)
            .try_collect()
            .await
            .map_err(object(&prefix))?;
        Ok(deleted.len())
    }
}

/// A file being written in parts.
pub struct Writer {
    inner: BufWriter,
    path: Path,
}

impl Writer {
    /// Appends `chunk`.
    pub async fn put(&mut self, chunk: Bytes) -> object_store::Result<()> {
        self.inner.put(chunk).await
    }

    /// Completes the file (nothing is visible before).
    pub async fn finish(mut self) -> Result<()> {
        self.inner.shutdown().await.map_err(|e| Error::Object {
            path: self.path.to_string(),
            source: object_store::Error::Generic {
                store: "writer",
                source: Box::new(e),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &std::path::Path) -> Place {
        let store = adit_sinks::TableStore::new(dir.to_str().unwrap(), Default::default()).unwrap();
        Place::of(&store).unwrap()
    }

    #[tokio::test]
    async fn a_copy_moves_the_bytes_and_says_what_it_moved() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (from, to) = (local(a.path()), local(b.path()));
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let written = from.write("t/x/data.bin", body.clone()).await.unwrap();
        let copied = from
            .copy_to("t/x/data.bin", &to.child("backup"), "t/x/data.bin")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(written, copied);
        assert_eq!(copied.bytes, 300_000);
        assert_eq!(to.read("backup/t/x/data.bin").await.unwrap(), body);
        assert_eq!(to.digest("backup/t/x/data.bin").await.unwrap(), written);
        assert_eq!(from.list("t").await.unwrap(), ["t/x/data.bin"]);
        assert_eq!(from.folders("t").await.unwrap(), ["x"]);
        assert!(from.copy_to("t/gone", &to, "gone").await.unwrap().is_none());
        assert_eq!(from.delete_all("t").await.unwrap(), 1);
        assert!(!from.exists("t/x/data.bin").await.unwrap());
    }
}
