//! The web dashboard in real headless Chromium (issue 12): `adit demo` runs on free ports, and
//! once SQL has hashrate and site energy rows, `tests/browser/dashboard.py` (Python Playwright
//! driving Debian's `chromium` over the DevTools protocol) loads every page, waits for a live
//! update, checks that the pool hashrate and a site's power shown are what SQL says, makes and
//! cancels overrides through the control page, screenshots each page, and fails on any console
//! error. scripts/setup.sh installs chromium and playwright; without them this test fails.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Demo;

async fn count(port: u16, table: &str) -> i64 {
    let Ok(r) = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/sql?format=json"))
        .body(format!("SELECT count(*) AS n FROM {table}"))
        .send()
        .await
    else {
        return 0;
    };
    if !r.status().is_success() {
        return 0; // the table is not written yet
    }
    let rows: Vec<serde_json::Value> = r.json().await.unwrap_or_default();
    rows.first().and_then(|r| r["n"].as_i64()).unwrap_or(0)
}

/// Runs the driver script with a deadline; its exit status and everything it printed.
fn run_script(url: &str, shots: &Path) -> (std::process::ExitStatus, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let output = std::fs::File::create(shots.with_extension("log")).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .args(["--url", url, "--out", shots.to_str().unwrap()])
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 (scripts/setup.sh installs it with playwright)");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let printed = std::fs::read_to_string(shots.with_extension("log")).unwrap_or_default();
    (status, printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_sql_says_in_headless_chromium() {
    let mut demo = Demo::start();
    let http = demo.http;

    // The pages have something to show once minutes of hashrate and energy are closed.
    let started = Instant::now();
    for table in ["hashrate_1m", "site_energy_1m"] {
        while count(http, table).await == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(360),
                "no {table} rows; log:\n{}",
                demo.log()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        eprintln!("{table} has rows after {:?}", started.elapsed());
    }

    let shots = match std::env::var_os("ADIT_DASHBOARD_SCREENSHOTS") {
        Some(d) => std::path::PathBuf::from(d),
        None => demo.dir().join("screenshots"),
    };
    std::fs::create_dir_all(&shots).unwrap();
    eprintln!("screenshots go to {}", shots.display());
    let url = format!("http://127.0.0.1:{http}");
    let (status, printed) = tokio::task::spawn_blocking(move || run_script(&url, &shots))
        .await
        .unwrap();
    eprintln!("--- tests/browser/dashboard.py ---\n{printed}--- end ---");

    let clean = demo.terminate();
    if !status.success() {
        // Keep the screenshots and the demo's log for whoever reads the failure.
        let kept = demo.keep();
        panic!(
            "the browser test failed ({status}); screenshots and logs kept in {}",
            kept.display()
        );
    }
    assert!(clean, "clean exit; log:\n{}", demo.log());
}
