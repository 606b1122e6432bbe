//! The `adit` binary: parse the command line, run it, map failure to a non-zero exit code.

use clap::Parser;

/// mimalloc instead of glibc's malloc: the landing path allocates per event (decoded rows,
/// Arrow builders, NATS headers), and glibc's allocator took about a fifth of its CPU in the
/// ingest profile (issue 29). Built without transparent huge pages for its own memory (the
/// `no_thp` feature, see the workspace's Cargo.toml): each huge page it faulted in again after
/// giving memory back cost a 2 MiB zeroing, a quarter of a query's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = adit::cli::Cli::parse();
    match adit::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("adit: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
