//! A folder on an object store (a local folder, `s3://…`): where tables are read from and
//! where a backup is written, with streaming copies that count and hash what they move. A
//! backup's folder is private: on this machine's disk, what is written under it is its
//! owner's alone from its creation (`private.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result, object};
use crate::private;

/// A folder on an object store.
#[derive(Clone)]
pub struct Place {
    /// The store holding it.
    store: Arc<dyn ObjectStore>,
    /// Its path in the store.
    root: Path,
    /// Whether the store is this machine's disk (a `file:` root), where an object's path is a
    /// file's.
    local: bool,
    /// Whether what is written under it must be its owner's alone (a backup's folder).
    private: bool,
    /// The key its objects are encrypted with, when they are: a private file written around
    /// the store is sealed with it as the store would seal it.
    key: Option<adit_sinks::AtRestKey>,
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
        Self {
            store,
            root,
            local: false,
            private: false,
            key: None,
        }
    }

    /// The root of `tables` (a table root, or a backup location opened as one).
    pub fn of(tables: &adit_sinks::TableStore) -> Result<Self> {
        let (store, root) = tables.object_store()?;
        Ok(Self {
            local: tables.root().scheme() == "file",
            key: tables.key().cloned(),
            ..Self::new(store, root)
        })
    }

    /// This folder as a backup's: on this machine's disk, every file written under it is
    /// created 0600 and every folder 0700 (issue 56); an object store's own access rules
    /// apply elsewhere.
    pub fn private(self) -> Self {
        Self {
            private: true,
            ..self
        }
    }

    /// The folder `rel` under this one.
    pub fn child(&self, rel: &str) -> Self {
        Self {
            root: self.path(rel),
            ..self.clone()
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
        match self.private_path(rel)? {
            Some(file) => {
                let stored = match &self.key {
                    Some(key) => adit_sinks::at_rest::seal(key, &bytes).map_err(object(&path))?,
                    None => bytes,
                };
                private::write(file, &stored).await.map_err(io(&path))?;
            }
            None => {
                self.store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(object(&path))?;
            }
        }
        Ok(moved)
    }

    /// Creates the folder `rel` ahead of whoever writes there next (a table store) when this
    /// folder is private and on this machine's disk, so that it is created 0700; elsewhere
    /// there is nothing to do.
    pub fn create_folder(&self, rel: &str) -> Result<()> {
        match self.private_path(rel)? {
            Some(dir) => private::create_folders(&dir).map_err(|source| Error::Folder {
                path: dir.display().to_string(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Where `rel` is on this machine's disk when this folder is private and local (as the
    /// store itself maps it); `None` when the store writes it.
    fn private_path(&self, rel: &str) -> Result<Option<PathBuf>> {
        if !(self.private && self.local) {
            return Ok(None);
        }
        let path = self.path(rel);
        let file = LocalFileSystem::new()
            .path_to_filesystem(&path)
            .map_err(object(&path))?;
        Ok(Some(file))
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
        let mut writer = to.writer(to_rel).await?;
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

    /// A streaming writer of `rel` (multipart where the store has it; a file created 0600
    /// where this folder is private and local).
    pub async fn writer(&self, rel: &str) -> Result<Writer> {
        let path = self.path(rel);
        let to = match self.private_path(rel)? {
            Some(file) => {
                let staged = private::Staged::create(file).await.map_err(io(&path))?;
                match &self.key {
                    Some(key) => To::Sealed(staged, key.clone(), Vec::new()),
                    None => To::Private(staged),
                }
            }
            None => To::Store(BufWriter::new(self.store.clone(), path.clone())),
        };
        Ok(Writer { to, path })
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
    /// Where the parts go.
    to: To,
    /// The file's path in the store, for errors.
    path: Path,
}

/// Where a [`Writer`]'s parts go.
enum To {
    /// The object store.
    Store(BufWriter),
    /// A private file on this machine's disk.
    Private(private::Staged),
    /// A private file of an encrypted place: its parts gathered, sealed whole at the end.
    Sealed(private::Staged, adit_sinks::AtRestKey, Vec<u8>),
}

impl Writer {
    /// Appends `chunk`.
    pub async fn put(&mut self, chunk: Bytes) -> object_store::Result<()> {
        match &mut self.to {
            To::Store(inner) => inner.put(chunk).await,
            To::Private(file) => file.put(&chunk).await.map_err(private::store_error),
            To::Sealed(_, _, parts) => {
                parts.extend_from_slice(&chunk);
                Ok(())
            }
        }
    }

    /// Completes the file (nothing is visible before).
    pub async fn finish(self) -> Result<()> {
        let done = match self.to {
            To::Store(mut inner) => inner.shutdown().await,
            To::Private(file) => file.finish().await,
            To::Sealed(mut file, key, parts) => {
                let sealed =
                    adit_sinks::at_rest::seal(&key, &parts).map_err(|e| Error::Object {
                        path: self.path.to_string(),
                        source: e,
                    })?;
                match file.put(&sealed).await {
                    Ok(()) => file.finish().await,
                    Err(e) => Err(e),
                }
            }
        };
        done.map_err(io(&self.path))
    }
}

/// Maps an I/O error on `path` (a private file, or the store's writer).
fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Object {
        path: path.to_string(),
        source: private::store_error(e),
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
