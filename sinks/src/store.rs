//! The table root: where every Delta table lives, on a local folder or any object store.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, Path};
use url::Url;

use crate::at_rest::{AtRestKey, EncryptedStore};
use crate::error::{Error, Result};

/// The root under which every table is a folder named after the table.
#[derive(Debug, Clone)]
pub struct TableStore {
    /// Root URL, always ending in `/`.
    root: Url,
    /// Options for the object store (credentials, endpoint, region…).
    options: HashMap<String, String>,
    /// The key every object is encrypted with, when the tables are encrypted at rest.
    key: Option<AtRestKey>,
}

/// Object stores for the cloud schemes, built by `object_store` itself from the URL and options.
struct CloudStores;

impl ObjectStoreFactory for CloudStores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = object_store::parse_url_opts(url, &config.raw)?;
        Ok((Arc::new(store), path))
    }
}

impl LogStoreFactory for CloudStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Teaches deltalake the s3, gs and az schemes through `object_store`'s own backends. On S3,
/// concurrent writers need `aws_conditional_put = "etag"` in the options (adit has one writer
/// per table, so it works without).
fn register_cloud_schemes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"] {
            let url = Url::parse(&format!("{scheme}://")).expect("scheme url");
            object_store_factories().insert(url.clone(), Arc::new(CloudStores));
            logstore_factories().insert(url, Arc::new(CloudStores));
        }
    });
}

impl TableStore {
    /// A store rooted at `root`: a URL (`s3://bucket/prefix`, `file:///data/tables`) or a local
    /// path, which is created if missing.
    pub fn new(root: &str, options: HashMap<String, String>) -> Result<Self> {
        register_cloud_schemes();
        let err = |message: String| Error::Root {
            root: root.to_string(),
            message,
        };
        let mut url = match Url::parse(root) {
            Ok(url) if url.scheme().len() > 1 => url,
            _ => {
                std::fs::create_dir_all(root).map_err(|e| err(e.to_string()))?;
                let abs = std::fs::canonicalize(root).map_err(|e| err(e.to_string()))?;
                Url::from_directory_path(&abs).map_err(|()| err("not an absolute path".into()))?
            }
        };
        if url.scheme() == "file" {
            std::fs::create_dir_all(url.path()).map_err(|e| err(e.to_string()))?;
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(Self {
            root: url,
            options,
            key: None,
        })
    }

    /// The same root, every object under it encrypted with `key` ([`crate::at_rest`]).
    pub fn encrypted(self, key: AtRestKey) -> Self {
        Self {
            key: Some(key),
            ..self
        }
    }

    /// The key the tables are encrypted with, if they are.
    pub fn key(&self) -> Option<&AtRestKey> {
        self.key.as_ref()
    }

    /// The store `url` is in (at its root), encrypted when the tables are, and the path of
    /// `url` in it.
    fn store_of(
        &self,
        url: &Url,
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path)> {
        let (store, path) =
            object_store::parse_url_opts(url, &self.options).map_err(|e| Error::Root {
                root: self.root.to_string(),
                message: e.to_string(),
            })?;
        let store: Arc<dyn object_store::ObjectStore> = Arc::from(store);
        Ok(match &self.key {
            Some(key) => (Arc::new(EncryptedStore::new(store, key.clone())), path),
            None => (store, path),
        })
    }

    /// The root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The object store under the root and the root's path in it (for what adit keeps beside
    /// the tables, like the pipelines' epoch records).
    pub fn object_store(
        &self,
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path)> {
        self.store_of(&self.root)
    }

    /// The path of `_adit/<parts…>` under the root, and the store holding it.
    fn beside(
        &self,
        parts: &[&str],
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path)> {
        let (store, root) = self.object_store()?;
        let path = parts
            .iter()
            .fold(root.join("_adit"), |p, part| p.join(part.to_string()));
        Ok((store, path))
    }

    fn failed(&self, what: &str, path: &object_store::path::Path, e: object_store::Error) -> Error {
        Error::Root {
            root: self.root.to_string(),
            message: format!("cannot {what} {path}: {e}"),
        }
    }

    /// Writes `bytes` as `_adit/<parts…>` beside the tables (what adit keeps there besides
    /// the pipelines' records: a hold on payments, a health probe).
    pub async fn put_beside(&self, parts: &[&str], bytes: Vec<u8>) -> Result<()> {
        use object_store::ObjectStoreExt;
        let (store, path) = self.beside(parts)?;
        store
            .put(&path, object_store::PutPayload::from(bytes))
            .await
            .map_err(|e| self.failed("write", &path, e))?;
        Ok(())
    }

    /// Reads `_adit/<parts…>`; `None` when it is not there.
    pub async fn get_beside(&self, parts: &[&str]) -> Result<Option<Vec<u8>>> {
        use object_store::ObjectStoreExt;
        let (store, path) = self.beside(parts)?;
        match store.get(&path).await {
            Ok(got) => Ok(Some(
                got.bytes()
                    .await
                    .map_err(|e| self.failed("read", &path, e))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("read", &path, e)),
        }
    }

    /// Removes `_adit/<parts…>`; whether it was there.
    pub async fn delete_beside(&self, parts: &[&str]) -> Result<bool> {
        use object_store::ObjectStoreExt;
        if self.get_beside(parts).await?.is_none() {
            return Ok(false);
        }
        let (store, path) = self.beside(parts)?;
        store
            .delete(&path)
            .await
            .map_err(|e| self.failed("remove", &path, e))?;
        Ok(true)
    }

    /// Writes and removes a small object `_adit/health/<name>` under the root: whether the
    /// tables can be written now (a full, read-only, unmounted or unreachable store says no).
    pub async fn probe_write(&self, name: &str) -> Result<()> {
        self.put_beside(&["health", name], b"ok".to_vec()).await?;
        self.delete_beside(&["health", name]).await?;
        Ok(())
    }

    /// The URL of table `name`.
    pub fn table_url(&self, name: &str) -> Url {
        self.root
            .join(&format!("{name}/"))
            .expect("table name is a path segment")
    }

    fn delta_err(name: &str) -> impl Fn(deltalake::DeltaTableError) -> Error + '_ {
        move |source| Error::Delta {
            table: name.to_string(),
            source: Box::new(source),
        }
    }

    /// Opens table `name`, creating it with `schema` and `partitions` if it does not exist.
    pub async fn open_or_create(
        &self,
        name: &str,
        schema: &SchemaRef,
        partitions: &[&str],
    ) -> Result<DeltaTable> {
        self.open_or_create_with(name, schema, partitions, HashMap::new())
            .await
    }

    /// Opens table `name`, creating it with `schema`, `partitions` and table `properties`
    /// (Delta's `delta.…` keys) if it does not exist.
    pub async fn open_or_create_with(
        &self,
        name: &str,
        schema: &SchemaRef,
        partitions: &[&str],
        properties: HashMap<String, String>,
    ) -> Result<DeltaTable> {
        let url = self.table_url(name);
        if url.scheme() == "file" {
            std::fs::create_dir_all(url.path()).map_err(|e| Error::Root {
                root: url.to_string(),
                message: e.to_string(),
            })?;
        }
        let mut table = self.unloaded(name, url)?;
        if table
            .verify_deltatable_existence()
            .await
            .map_err(Self::delta_err(name))?
        {
            table.load().await.map_err(Self::delta_err(name))?;
            return Ok(table);
        }
        let kernel: StructType = schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| Error::Delta {
                table: name.to_string(),
                source: Box::new(e.into()),
            })?;
        table
            .create()
            .with_table_name(name)
            .with_columns(kernel.fields().cloned())
            .with_partition_columns(partitions.iter().map(|p| p.to_string()))
            .with_configuration(properties.into_iter().map(|(k, v)| (k, Some(v))))
            .with_save_mode(deltalake::protocol::SaveMode::Ignore)
            .await
            .map_err(Self::delta_err(name))
    }

    /// Opens table `name` at its latest version, or `None` if it does not exist yet.
    pub async fn open(&self, name: &str) -> Result<Option<DeltaTable>> {
        let url = self.table_url(name);
        if url.scheme() == "file" && !std::path::Path::new(url.path()).join("_delta_log").exists() {
            return Ok(None);
        }
        let mut table = self.unloaded(name, url)?;
        if !table
            .verify_deltatable_existence()
            .await
            .map_err(Self::delta_err(name))?
        {
            return Ok(None);
        }
        table.load().await.map_err(Self::delta_err(name))?;
        Ok(Some(table))
    }

    /// A handle on table `name` at `url` whose log has not been read (reading the log of a
    /// table that does not exist yet makes the kernel log errors). Encrypted tables are read
    /// and written through the encrypting store, log and data alike.
    fn unloaded(&self, name: &str, url: Url) -> Result<DeltaTable> {
        let mut builder = deltalake::DeltaTableBuilder::from_url(url.clone())
            .map_err(Self::delta_err(name))?
            .with_storage_options(self.options.clone());
        if self.key.is_some() {
            let (store, _) = self.store_of(&url)?;
            builder = builder.with_storage_backend(store, url);
        }
        builder.build().map_err(Self::delta_err(name))
    }
}

impl TableStore {
    /// Registers the latest version of table `name` with `ctx` under that name; returns false
    /// when the table does not exist yet.
    pub async fn register(
        &self,
        ctx: &deltalake::datafusion::prelude::SessionContext,
        name: &str,
    ) -> Result<bool> {
        let Some(table) = self.open(name).await? else {
            return Ok(false);
        };
        let delta = Self::delta_err(name);
        table
            .update_datafusion_session(&ctx.state())
            .map_err(&delta)?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| delta(deltalake::DeltaTableError::from(e)))?;
        ctx.register_table(name, provider)
            .map_err(|e| delta(deltalake::DeltaTableError::from(e)))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_urls_with_a_trailing_slash() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            TableStore::new(dir.path().join("t").to_str().unwrap(), HashMap::new()).unwrap();
        assert_eq!(store.root().scheme(), "file");
        assert!(store.table_url("energy").as_str().ends_with("/t/energy/"));
        let s3 = TableStore::new("s3://bucket/prefix", HashMap::new()).unwrap();
        assert_eq!(s3.table_url("x").as_str(), "s3://bucket/prefix/x/");
    }
}
