//! The `adit` binary: parse the command line, run it, map failure to a non-zero exit code.

use clap::Parser;

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
