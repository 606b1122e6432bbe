//! The book's shell sessions are tests (issue 63): every ```` ```console ```` block in
//! `README.md` and `docs/src` is run, in order, against one `adit demo`, and what each command
//! prints must match what the page shows, so a renamed flag, column or route breaks this test
//! rather than a reader.
//!
//! A block is a session as a terminal shows it: `$ command` (a line ending in `\` goes on),
//! then its output. In the output, a line `...` stands for any number of lines and `[..]` for
//! any text within a line (trycmd's notation). The demo's data grows as it runs, so a command
//! whose output does not match yet is run again until it does or its time is up; a command
//! must exit 0, and one that exits 2 (a usage error) fails at once. `127.0.0.1:8080` in a
//! command is the demo's address, `adit` is the binary under test, and its data folder is the
//! demo's (as for a reader who runs the commands where they started the demo). While writing
//! a page, `ADIT_BOOK_PAGES=query/sql-http` runs only the pages whose path holds that text.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{self, Demo};

/// How long one command may take to print what the page shows (the demo's first complete
/// minute, its first block and payout come within this).
const PATIENCE: Duration = Duration::from_secs(240);

/// One `$ command` and the output the page shows for it.
#[derive(Debug)]
struct Step {
    file: PathBuf,
    line: usize,
    command: String,
    expected: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_shell_sessions_run_against_a_demo() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    files.extend(markdown(&root.join("docs/src")));
    // `ADIT_BOOK_PAGES=query/sql-http` runs only the pages whose path holds that text.
    let only = std::env::var("ADIT_BOOK_PAGES").ok();
    files.retain(|f| {
        only.as_ref()
            .is_none_or(|o| f.to_string_lossy().contains(o.as_str()))
    });
    let steps: Vec<Step> = files.iter().flat_map(|f| sessions(f)).collect();
    assert!(
        steps.len() >= if only.is_some() { 1 } else { 20 },
        "the book's console sessions: {} steps found",
        steps.len()
    );
    let demo = Demo::start();
    let bin = PathBuf::from(common::adit_binary());
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let address = format!("127.0.0.1:{}", demo.http);
    let work = tempfile::tempdir().unwrap();
    for step in &steps {
        let command = step.command.replace("127.0.0.1:8080", &address);
        let started = Instant::now();
        loop {
            let out = tokio::process::Command::new("bash")
                .args(["-c", &command])
                .current_dir(work.path())
                .env("PATH", &path)
                .env("ADIT_LISTEN", &address)
                // Run from the demo's folder, a command reads the tables it writes.
                .env("ADIT_DATA_DIR", demo.dir().join("data"))
                .env_remove("ADIT_CONFIG")
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let lines: Vec<&str> = stdout.lines().collect();
            if out.status.success() && matches(&step.expected, &lines) {
                break;
            }
            // A usage error (exit 2: a flag or subcommand the binary does not know) will not
            // go away by waiting for the demo's data.
            let usage_error = out.status.code() == Some(2);
            assert!(
                started.elapsed() < PATIENCE && !usage_error,
                "{}:{}: `{}` exited {} and printed\n{stdout}\n(stderr: {})\nwhere the page shows\n{}\n\
                 demo log:\n{}",
                step.file.strip_prefix(root).unwrap_or(&step.file).display(),
                step.line,
                step.command,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                step.expected.join("\n"),
                tail(&demo.log(), 40),
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    eprintln!("{} book commands ran as their pages show", steps.len());
}

/// Every Markdown file under `dir`, in name order.
fn markdown(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(markdown(&path));
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    out
}

/// The steps of `file`'s console blocks, in order.
fn sessions(file: &Path) -> Vec<Step> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut steps: Vec<Step> = Vec::new();
    let mut inside = false;
    let mut open = false;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if !inside {
            inside = trimmed == "```console";
            continue;
        }
        if trimmed == "```" {
            inside = false;
            open = false;
            continue;
        }
        if open {
            let step = steps.last_mut().unwrap();
            step.command.push('\n');
            step.command.push_str(trimmed);
            open = trimmed.ends_with('\\');
        } else if let Some(command) = trimmed.strip_prefix("$ ") {
            steps.push(Step {
                file: file.to_path_buf(),
                line: number + 1,
                command: command.to_string(),
                expected: Vec::new(),
            });
            open = command.ends_with('\\');
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(trimmed.to_string());
        }
    }
    steps
}

/// Whether `actual` is what `expected` shows: `...` lines match any lines, `[..]` any text
/// within a line; trailing spaces do not count.
fn matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.iter().all(|l| l.trim().is_empty()),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual.split_first().is_some_and(|(line, more)| {
            line_matches(first, line.trim_end()) && matches(rest, more)
        }),
    }
}

/// One line against its pattern, `[..]` matching any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn the_session_notation_matches_as_trycmd_does() {
    let pattern = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
    assert!(matches(
        &pattern("a [..] c\n...\nz"),
        &["a b c", "x", "y", "z"]
    ));
    assert!(matches(&pattern("...\nz"), &["z"]));
    assert!(!matches(&pattern("a [..] c"), &["a b d"]));
    assert!(!matches(&pattern("a"), &["a", "b"]), "unshown lines fail");
    assert!(line_matches("[..]", "anything"));
    assert!(line_matches("x[..]y[..]", "x1y2"));
    assert!(!line_matches("x[..]y", "x1y2"));
}
