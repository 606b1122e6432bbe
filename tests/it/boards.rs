//! Dashboards people build and share, in real headless Chromium (issue 28): against `adit
//! demo` with tokens, `tests/browser/boards.py` opens the shipped Farm energy dashboard (no
//! Edit for an operator) and saves a private copy of it; creates a dashboard on the Dashboards page
//! with a `site` variable and three panels over energy_readings (one previewed in the panel
//! editor), makes it public and saves it; opens the public link in a fresh browser context
//! without a token and sees the panels drawn (the stat within what SQL says), while the
//! dashboard's own route, another dashboard and the SQL API answer 401 and a forged link 404;
//! then widens one panel and moves another with the mouse, edits a panel, and sees the
//! revision go up with the new layout and the old revision kept. Any console error
//! fails it. scripts/setup.sh installs chromium and playwright; without them this test fails.

use crate::common;

use std::time::{Duration, Instant};

use common::Demo;

/// The operator's token the script signs in with.
const TOKEN: &str = "boards-operator-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_is_built_shared_by_link_and_revised_in_chromium() {
    let mut demo = Demo::start_with(&format!(
        "[query]\ntokens = [{{ name = \"operator\", token = \"{TOKEN}\", role = \"operate\" }}]\n"
    ));
    let base = format!("http://127.0.0.1:{}", demo.http);
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let rows: Vec<serde_json::Value> = match client
            .post(format!("{base}/api/v1/sql?format=json"))
            .bearer_auth(TOKEN)
            .body("SELECT count(DISTINCT site) AS n FROM energy_readings")
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
            _ => Vec::new(),
        };
        if rows.first().and_then(|r| r["n"].as_i64()) == Some(2) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no energy rows; log:\n{}",
            demo.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shots = demo.dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let args = [
        "--url",
        &base,
        "--out",
        shots.to_str().unwrap(),
        "--token",
        TOKEN,
    ]
    .map(String::from);
    let log = shots.with_extension("log");
    let (status, printed) = tokio::task::spawn_blocking(move || {
        common::run_browser_script("boards.py", &args, &log, Duration::from_secs(600))
    })
    .await
    .unwrap();
    eprintln!("--- tests/browser/boards.py ---\n{printed}--- end ---");
    if !status.success() {
        let kept = demo.keep();
        panic!(
            "the browser test failed ({status}); screenshots and logs kept in {}",
            kept.display()
        );
    }
    assert!(demo.terminate(), "clean exit; log:\n{}", demo.log());
}
