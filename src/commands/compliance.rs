//! `adit compliance --site S --date D [--to D2]`: closes a site's local days as the nightly
//! `compliance` role does (a new revision only when the figures changed) and prints each
//! day's revision, score and files.

use adit_bus::registry::Registry;
use adit_reports::ComplianceJob;
use anyhow::{Context, bail};
use chrono::Utc;

use crate::cli::ComplianceArgs;
use crate::config::Config;
use crate::services;

/// Longest range one command closes.
const MAX_DAYS: i64 = 366;

/// Closes each day of the range and prints what it did.
pub(super) async fn run(config: &Config, args: &ComplianceArgs) -> anyhow::Result<()> {
    let to = args.to.unwrap_or(args.date);
    let days = (to - args.date).num_days() + 1;
    if !(1..=MAX_DAYS).contains(&days) {
        bail!("--to must be on or after --date, at most {MAX_DAYS} days later");
    }
    let services = services::connect(config).await?;
    let store = config.table_store()?;
    let registry = Registry::open(services.js.clone()).await?;
    let mut job = ComplianceJob::open(
        store,
        Some(registry),
        config.compliance.clone(),
        config.reports_dir(),
    )
    .await?;
    let view = job.registry_view().await?;
    let Some(site) = view.site(&args.site).cloned() else {
        bail!("unknown site {:?}: it is not in the registry", args.site);
    };
    let machines: Vec<_> = view.machines().cloned().collect();
    for date in args.date.iter_days().take(days as usize) {
        let closed = job
            .close_day(&site, &machines, date, Utc::now())
            .await
            .with_context(|| format!("closing {} {date}", site.id))?;
        println!(
            "{} {date}: revision {}{} · score {:.1}",
            site.id,
            closed.revision,
            if closed.written {
                " (new)"
            } else {
                " (unchanged)"
            },
            closed.report.score.value
        );
        for file in &closed.files {
            println!("  {}", file.display());
        }
    }
    services.close().await;
    Ok(())
}
