//! Backups of a whole adit: the JetStream streams and configuration buckets (server
//! snapshots, sequences and consumers kept), every Delta table at a version consistent with
//! the pipelines' epoch records (so a restore resumes each pipeline exactly once), the config
//! (secrets redacted unless asked) and a manifest with every file's SHA-256; read back by
//! `verify`, written back by `restore`.
//!
//! A backup is a folder on any object store (a local folder, `s3://…`):
//! `manifest.json`, `streams/<stream>.tar.s2`, `tables/<table>/…` (itself a table root that
//! SQL can read), `tables/_adit/…` and `config.toml`. On this machine's disk it is its
//! owner's alone: every file is created 0600 and every folder 0700 (issue 56).

pub mod error;
pub mod location;
pub mod manifest;
pub mod place;
mod private;
pub mod redact;
pub mod restore;
pub mod schedule;
pub mod streams;
pub mod tables;
pub mod take;
pub mod verify;

pub use error::{Error, Result};
pub use location::{Backup, Location};
pub use manifest::Manifest;
pub use place::Place;
pub use restore::{Restored, Target, restore};
pub use schedule::BackupConfig;
pub use take::{Source, new_id, stream_names, take};
pub use verify::{Verified, verify};
