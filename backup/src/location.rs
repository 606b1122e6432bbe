//! Where backups go: a folder or an object-store URL, under which each backup is a folder
//! `adit-<UTC time>` holding a manifest once it is complete.

use std::collections::HashMap;

use adit_sinks::TableStore;

use crate::error::{Error, Result};
use crate::manifest::MANIFEST;
use crate::place::Place;

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
    /// The location `url_or_dir` with object-store `options` (credentials, endpoint…).
    pub fn open(url_or_dir: &str, options: HashMap<String, String>) -> Result<Self> {
        Ok(Self {
            root: TableStore::new(url_or_dir, options.clone())?,
            options,
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
        Ok(Backup {
            id: id.to_string(),
            place: Place::of(&self.root)?.child(id),
            tables: TableStore::new(&format!("{url}tables/"), self.options.clone())?,
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

    /// The location itself when it is a backup, else its newest complete backup.
    pub async fn resolve(url_or_dir: &str, options: HashMap<String, String>) -> Result<Backup> {
        let location = Self::open(url_or_dir, options.clone())?;
        if Place::of(&location.root)?.exists(MANIFEST).await? {
            let url = location.root.root().to_string();
            return Ok(Backup {
                id: url
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string(),
                place: Place::of(&location.root)?,
                tables: TableStore::new(&format!("{url}tables/"), options)?,
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
