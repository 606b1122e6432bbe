//! Files and folders that only their owner may read (issue 56). A backup holds the config's
//! secrets (notification webhooks, tokens) and the payer's signed transactions and their keys,
//! so on this machine's disk every file it writes is created 0600 and every folder 0700, by the
//! call that creates it: no moment passes with one open to others, whatever the umask. A file
//! is written under a staging name beside its own and renamed into place once whole, as the
//! object store does, so nothing is seen half written.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// The mode of a file a backup writes: its owner reads and writes it, no one else.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;
/// The mode of a folder a backup creates: its owner alone lists, enters and changes it.
#[cfg(unix)]
const FOLDER_MODE: u32 = 0o700;

/// Creates `dir` and the folders missing above it, each 0700; those that exist are left as
/// they are.
pub(crate) fn create_folders(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, FOLDER_MODE);
    builder.create(dir)
}

/// Writes `bytes` to the file `path` (its folders created as by [`create_folders`]).
pub(crate) async fn write(path: PathBuf, bytes: &[u8]) -> io::Result<()> {
    let mut file = Staged::create(path).await?;
    file.put(bytes).await?;
    file.finish().await
}

/// A file being written, under its staging name until [`Staged::finish`].
pub(crate) struct Staged {
    /// The staging file, created 0600.
    file: tokio::fs::File,
    /// Its name, beside `path`.
    staged: PathBuf,
    /// Where the file goes once whole.
    path: PathBuf,
}

impl Staged {
    /// Starts the file `path`: its folders created 0700, its staging file 0600, new (a name
    /// taken by an earlier, interrupted write is skipped, never reused with its mode).
    pub(crate) async fn create(path: PathBuf) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            create_folders(parent)?;
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let staged = staging_name(&path, attempt);
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(FILE_MODE);
            match options.open(&staged).await {
                Ok(file) => return Ok(Self { file, staged, path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends `chunk`.
    pub(crate) async fn put(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk).await
    }

    /// Waits for the writes to complete and gives the file its own name.
    pub(crate) async fn finish(mut self) -> io::Result<()> {
        self.file.flush().await?;
        tokio::fs::rename(&self.staged, &self.path).await
    }
}

/// The staging name of `path` for the `attempt`th try: `<name>#partial-<attempt>`, which the
/// object store lists (so deleting an unfinished backup removes it) but no backup file takes.
fn staging_name(path: &Path, attempt: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!("#partial-{attempt}"));
    PathBuf::from(name)
}

/// An I/O error as the object store's kind, for callers that speak the store's errors.
pub(crate) fn store_error(source: io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "writer",
        source: Box::new(source),
    }
}
