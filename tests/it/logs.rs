//! Where the log goes (issue 25), on the real binary: with `[log]` set to JSON in a file, every
//! line of the file is one JSON object an operator's log shipper can read, the file survives a
//! SIGTERM with its last lines written, and standard error — a file here, not a terminal —
//! carries no colour codes.

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_log_file_and_no_colour_codes_off_a_terminal() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut app = App::start(
        &nats.url(),
        dir.path(),
        "query",
        &format!(
            "[log]\nformat = \"json\"\nfile = \"{}/adit.log\"\nrotation = \"never\"\n",
            logs.display()
        ),
    );
    app.wait_http().await;
    assert!(app.terminate(), "clean exit; log:\n{}", app.log());

    let stderr = app.log();
    assert!(!stderr.is_empty(), "nothing on standard error");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a log that is not a terminal:\n{stderr}"
    );
    let file = std::fs::read_to_string(logs.join("adit.log")).unwrap();
    let lines: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let listening = lines
        .iter()
        .find(|l| l["message"] == "HTTP API listening")
        .unwrap_or_else(|| panic!("no start line in the file:\n{file}"));
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["listen"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(listening["timestamp"].is_string());
    // The last line before exit reached the file.
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("shutting down"))),
        "the shutdown lines are missing:\n{file}"
    );
    // Standard error had the same lines.
    assert_eq!(stderr.lines().count(), lines.len(), "{stderr}\n---\n{file}");
}
