//! The web dashboard in real headless Chromium (issue 12): `adit demo` runs on free ports, and
//! once SQL has hashrate and site energy rows, `tests/browser/dashboard.py` (Python Playwright
//! driving Debian's `chromium` over the DevTools protocol) loads every page, waits for a live
//! update, checks that the pool hashrate and a site's power shown are what SQL says, makes and
//! cancels overrides through the control page, screenshots each page, and fails on any console
//! error. The demo serves HTTPS with a certificate from `adit certs` and requires tokens, as a
//! farm's API would (issue 23): the page works with a token typed into its prompt. The Python
//! client verifies the certificate against the CA; Chromium is told to accept it.
//! scripts/setup.sh installs chromium and playwright; without them this test fails.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Demo;

/// The operator's token, typed into the dashboard's prompt.
const TOKEN: &str = "dashboard-operator-0123456789";

async fn count(client: &reqwest::Client, base: &str, table: &str) -> i64 {
    let Ok(r) = client
        .post(format!("{base}/api/v1/sql?format=json"))
        .bearer_auth(TOKEN)
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
fn run_script(url: &str, ca: &Path, shots: &Path) -> (std::process::ExitStatus, String) {
    let args = [
        "--url",
        url,
        "--out",
        shots.to_str().unwrap(),
        "--token",
        TOKEN,
        "--ca",
        ca.to_str().unwrap(),
    ]
    .map(String::from);
    common::run_browser_script(
        "dashboard.py",
        &args,
        &shots.with_extension("log"),
        Duration::from_secs(600),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_sql_says_in_headless_chromium() {
    let (certs, tls) = common::server_certs();
    // The demo closes a site's minute 10 s past its end (`adit::config::DEMO_DEFAULTS`; at
    // real devices' 2 minutes the first rows came after about 3): within a minute of the
    // start the pages have something to show.
    let mut demo = Demo::start_with(&format!(
        "[query]\n{tls}\n\
         tokens = [{{ name = \"operator\", token = \"{TOKEN}\", role = \"admin\" }}]\n"
    ));
    let base = format!("https://localhost:{}", demo.http);
    let ca = certs.path().join("ca.pem");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();

    // The pages have something to show once minutes of hashrate and energy are closed.
    let started = Instant::now();
    for table in ["hashrate_1m", "site_energy_1m"] {
        while count(&client, &base, table).await == 0 {
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
    let (status, printed) = tokio::task::spawn_blocking(move || run_script(&base, &ca, &shots))
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
