//! Where backups go: a folder or an object-store URL, under which each backup is a folder
//! `adit-<UTC time>` holding a manifest once it is complete. On this machine's disk the
//! location and each backup are their owner's alone (folders 0700, files 0600, issue 56).

use std::collections::HashMap;
use std::path::PathBuf;

use adit_sinks::TableStore;

use crate::error::{Error, Result};
use crate::manifest::MANIFEST;
use crate::place::Place;
use crate::private;

/// A location holding backups.
#[derive(Debug, Clone)]
pub struct Location {
    root: TableStore,
    options: HashMap<String, String>,
}

/// One backup of a location.
#[derive(Debug, Clone)]
pub struct Backup {
    /// Its folder name.
    pub id: String,
    /// Its folder.
    pub place: Place,
    /// Its `tables/` folder, readable as a table root.
    pub tables: TableStore,
    /// Its URL, for messages.
    pub url: String,
}

impl Location {
    /// The location `url_or_dir` with object-store `options` (credentials, endpoint…); a
    /// local folder that does not exist yet is created 0700.
    pub fn open(url_or_dir: &str, options: HashMap<String, String>) -> Result<Self> {
        if let Some(dir) = local_folder(url_or_dir) {
            private::create_folders(&dir).map_err(|source| Error::Folder {
                path: dir.display().to_string(),
                source,
            })?;
        }
        Ok(Self {
            root: TableStore::new(url_or_dir, options.clone())?,
            options,
        })
    }

    /// The same location, written and read with the key `tables` are encrypted with, if any: a
    /// backup of encrypted tables is sealed with their key (the manifest, the records and every
    /// table file alike), and read back with it.
    pub fn encrypted_like(self, tables: &TableStore) -> Self {
        match tables.key() {
            Some(key) => Self {
                root: self.root.encrypted(key.clone()),
                ..self
            },
            None => self,
        }
    }

    /// A table root at `url` with this location's options and key.
    fn tables_at(&self, url: &str) -> Result<TableStore> {
        let store = TableStore::new(url, self.options.clone())?;
        Ok(match self.root.key() {
            Some(key) => store.encrypted(key.clone()),
            None => store,
        })
    }

    /// The backup named `id` (which may not exist yet).
    pub fn backup(&self, id: &str) -> Result<Backup> {
        if !adit_schemas::names::is_token(id) {
            return Err(Error::Manifest {
                path: id.to_string(),
                message: "not a backup's folder name".into(),
            });
        }
        let url = format!("{}{id}/", self.root.root());
        let place = Place::of(&self.root)?.child(id).private();
        // Made here, 0700, before the table store would make it with the default mode.
        place.create_folder("tables")?;
        Ok(Backup {
            id: id.to_string(),
            place,
            tables: self.tables_at(&format!("{url}tables/"))?,
            url,
        })
    }

    /// The complete backups (those with a manifest), oldest first.
    pub async fn backups(&self) -> Result<Vec<String>> {
        let root = Place::of(&self.root)?;
        let mut found = Vec::new();
        for id in root.folders("").await? {
            if adit_schemas::names::is_token(&id)
                && root.exists(&format!("{id}/{MANIFEST}")).await?
            {
                found.push(id);
            }
        }
        Ok(found)
    }

    /// Folders that look like backups but hold no manifest (interrupted ones).
    pub async fn unfinished(&self) -> Result<Vec<String>> {
        let root = Place::of(&self.root)?;
        let mut found = Vec::new();
        for id in root.folders("").await? {
            if id.starts_with("adit-") && !root.exists(&format!("{id}/{MANIFEST}")).await? {
                found.push(id);
            }
        }
        Ok(found)
    }

    /// The location itself when it is a backup, else its newest complete backup; read with
    /// the key `tables` are encrypted with, if any.
    pub async fn resolve(
        url_or_dir: &str,
        options: HashMap<String, String>,
        tables: &TableStore,
    ) -> Result<Backup> {
        let location = Self::open(url_or_dir, options)?.encrypted_like(tables);
        if Place::of(&location.root)?.exists(MANIFEST).await? {
            let url = location.root.root().to_string();
            return Ok(Backup {
                id: url
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string(),
                place: Place::of(&location.root)?.private(),
                tables: location.tables_at(&format!("{url}tables/"))?,
                url,
            });
        }
        let newest = location
            .backups()
            .await?
            .pop()
            .ok_or_else(|| Error::Manifest {
                path: url_or_dir.to_string(),
                message: "neither a backup nor a folder holding one".into(),
            })?;
        location.backup(&newest)
    }

    /// Deletes backup `id` whole.
    pub async fn delete(&self, id: &str) -> Result<usize> {
        Place::of(&self.root)?.delete_all(id).await
    }
}

/// The folder `url_or_dir` names on this machine's disk, read as the table store reads it (a
/// `file:` URL or a path); `None` for an object store.
fn local_folder(url_or_dir: &str) -> Option<PathBuf> {
    match url::Url::parse(url_or_dir) {
        Ok(url) if url.scheme().len() > 1 => match url.scheme() {
            "file" => url.to_file_path().ok(),
            _ => None,
        },
        _ => Some(PathBuf::from(url_or_dir)),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// `dir` and everything under it whose mode lets group or others in, with the mode.
    fn open_to_others(dir: &std::path::Path) -> Vec<String> {
        let mut open = Vec::new();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        if mode & 0o077 != 0 {
            open.push(format!("{} {mode:o}", dir.display()));
        }
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            if path.is_dir() {
                open.extend(open_to_others(&path));
            } else if mode & 0o077 != 0 {
                open.push(format!("{} {mode:o}", path.display()));
            }
        }
        open
    }

    /// Issue 56: the location, the backup's folders and every file written into it (in one
    /// put, streamed, copied from a table root) are created for their owner alone, and read
    /// back through the store as any backup is.
    #[tokio::test]
    async fn what_a_backup_writes_is_its_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let log = "t/_delta_log/00000000000000000000.json";
        let source = Place::of(&TableStore::new(&at("tables"), HashMap::new()).unwrap()).unwrap();
        source.write(log, b"{}".to_vec()).await.unwrap();

        let location = Location::open(&at("backups"), HashMap::new()).unwrap();
        let backup = location.backup("adit-test").unwrap();
        let place = &backup.place;
        let secrets = b"[notify]\nwebhook = \"https://hooks.example/T0/secret\"\n";
        place.write("config.toml", secrets.to_vec()).await.unwrap();
        let mut writer = place.writer("streams/PAYMENTS.tar.s2").await.unwrap();
        let keys = bytes::Bytes::from_static(b"tx keys");
        writer.put(keys).await.unwrap();
        writer.finish().await.unwrap();
        let copied = source.copy_to(log, &place.child("tables"), log).await;
        assert!(copied.unwrap().is_some());
        place.write(MANIFEST, b"{}".to_vec()).await.unwrap();

        let open = open_to_others(&dir.path().join("backups"));
        assert!(open.is_empty(), "open to group or others: {open:?}");
        assert_eq!(location.backups().await.unwrap(), ["adit-test"]);
        assert_eq!(
            place.list("").await.unwrap(),
            [
                "config.toml".to_string(),
                MANIFEST.to_string(),
                "streams/PAYMENTS.tar.s2".to_string(),
                format!("tables/{log}"),
            ]
        );
        let streamed = place.read("streams/PAYMENTS.tar.s2").await.unwrap();
        assert_eq!(&streamed[..], b"tx keys");
    }
}
