//! Errors of the backup crate: each names the stream, table, file or key it is about.

/// What can go wrong taking, verifying or restoring a backup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stream could not be snapshotted or restored.
    #[error("stream {stream}: {message}")]
    Stream {
        /// The stream.
        stream: String,
        /// What went wrong.
        message: String,
    },
    /// A table could not be read at a version.
    #[error("table {table}: {source}")]
    Table {
        /// The table.
        table: String,
        /// What deltalake said.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// Reading or writing an object failed.
    #[error("{path}: {source}")]
    Object {
        /// The object.
        path: String,
        /// What the object store said.
        #[source]
        source: object_store::Error,
    },
    /// The table root or the backup location is unusable.
    #[error(transparent)]
    Sinks(#[from] adit_sinks::Error),
    /// A folder of a backup (or its location) could not be created on this machine's disk.
    #[error("creating the folder {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is missing, unreadable or names something it may not.
    #[error("manifest {path}: {message}")]
    Manifest {
        /// Where it was read.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A file of the backup is not what the manifest says it is.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file, relative to the backup.
        path: String,
        /// How it differs.
        message: String,
    },
    /// The restore would overwrite something that holds data.
    #[error("restore refused: {0}")]
    Refused(String),
    /// A pipeline's epoch records and its tables cannot be made consistent.
    #[error("pipeline {instance}: {message}")]
    Records {
        /// The pipeline instance.
        instance: String,
        /// Why.
        message: String,
    },
    /// The config file could not be read or redacted.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Maps an object-store error on `path`.
pub(crate) fn object(
    path: &object_store::path::Path,
) -> impl Fn(object_store::Error) -> Error + '_ {
    move |source| Error::Object {
        path: path.to_string(),
        source,
    }
}
