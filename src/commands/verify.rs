//! `adit verify payout`: a miner's check of a block's payout from what the pool published
//! alone (issue 59). The window is read from the pool's public view (or a file saved from it),
//! checked by [`adit_pipelines::pool::proof::check`], and the verdict printed as JSON; the
//! command fails (exit 1) when anything differs.

use std::path::Path;

use anyhow::{Context, bail};
use futures::StreamExt;

use adit_pipelines::pool::proof;
use adit_schemas::window::PublishedWindow;

use crate::cli::{VerifyArgs, VerifyWhat};

/// Most bytes of a published window read (tens of millions of shares).
const MAX_VIEW_BYTES: usize = 1 << 30;

/// Runs the check asked for.
pub(super) async fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let VerifyWhat::Payout {
        url,
        file,
        pool,
        block,
        hash,
        miner,
        save,
        ca,
    } = &args.what;
    let body = match (file, url, block) {
        (Some(file), _, _) => {
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
        }
        (None, Some(url), Some(height)) => fetch(url, pool, *height, ca.as_deref()).await?,
        _ => bail!("give --url and --block, or --file"),
    };
    if let Some(save) = save {
        std::fs::write(save, &body).with_context(|| format!("writing {}", save.display()))?;
    }
    let windows: Vec<PublishedWindow> = match serde_json::from_slice(&body) {
        Ok(list) => list,
        // A file may hold one window rather than the view's list.
        Err(_) => vec![
            serde_json::from_slice(&body)
                .context("the window is not the JSON the pool's view publishes")?,
        ],
    };
    let chosen: Vec<&PublishedWindow> = windows
        .iter()
        .filter(|w| {
            hash.as_ref()
                .is_none_or(|h| w.header.hash.eq_ignore_ascii_case(h))
        })
        .collect();
    let window = match chosen.as_slice() {
        [one] => *one,
        [] => bail!(
            "no published window for that block{}",
            hash.as_ref()
                .map_or(String::new(), |h| format!(" with hash {h}"))
        ),
        many => bail!(
            "{} blocks were split at this height; choose one with --hash ({})",
            many.len(),
            many.iter()
                .map(|w| w.header.hash.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let check = proof::check(window, miner.as_deref());
    let report = serde_json::json!({
        "pool": window.header.pool,
        "height": window.header.height,
        "hash": window.header.hash,
        "reward": window.header.reward,
        "shares": window.shares.len(),
        "miners": window.miners.len(),
        "window_hash": window.window_hash,
        "check": check,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !check.equal {
        bail!(
            "NOT EQUAL: the published window does not give what the pool paid ({} difference{})",
            check.differences.len(),
            if check.differences.len() == 1 {
                ""
            } else {
                "s"
            }
        );
    }
    match &check.miner {
        Some(m) if m.published == 0 && m.recomputed == 0 => {
            eprintln!("equal: your login has no share in this block's window")
        }
        Some(m) => eprintln!(
            "equal: you were paid {} atomic units, as the window gives",
            m.published
        ),
        None => eprintln!("equal: every miner's payout is what the window gives"),
    }
    Ok(())
}

/// The pool's published windows of block `height`, read whole up to [`MAX_VIEW_BYTES`].
async fn fetch(url: &str, pool: &str, height: u64, ca: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        adit_schemas::names::is_token(pool),
        "--pool {pool:?}: a pool id is 1-64 of A-Z a-z 0-9 _ -"
    );
    let mut client = reqwest::Client::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading --ca {}", ca.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("--ca {} is not a PEM certificate", ca.display()))?;
        client = client.add_root_certificate(cert);
    }
    let at = format!(
        "{}/api/v1/public/pools/{pool}/blocks/{height}/window",
        url.trim_end_matches('/')
    );
    let response = client
        .build()?
        .get(&at)
        .send()
        .await
        .with_context(|| format!("asking {at}"))?;
    let status = response.status();
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.with_context(|| format!("reading {at}"))?;
        anyhow::ensure!(
            body.len() + chunk.len() <= MAX_VIEW_BYTES,
            "{at} answered more than {MAX_VIEW_BYTES} bytes"
        );
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<adit_schemas::api::ErrorBody>(&body)
            .map(|e| format!("{}: {}", e.error.code, e.error.message))
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(500).collect());
        bail!("{at}: {status}: {message}");
    }
    Ok(body)
}
