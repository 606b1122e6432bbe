//! `adit backup`, `adit backup verify` and `adit restore`: a backup of the streams, buckets,
//! tables and config into a new folder, read back, or written back into an empty NATS and
//! table root. Each prints what it did as JSON. A restore holds new payments (the restored
//! `payments` table lacks what the wallet paid since the backup) until
//! `adit payments release`.

use adit_backup::{Location, Source, Target};
use adit_sinks::TableStore;
use anyhow::Context;

use crate::cli::{BackupArgs, BackupWhat, PaymentsArgs, PaymentsWhat, RestoreArgs};
use crate::config::Config;
use crate::services;

/// `adit backup [--to]` and `adit backup verify --from`.
pub(super) async fn backup(config: &Config, args: &BackupArgs) -> anyhow::Result<()> {
    if let Some(BackupWhat::Verify { from }) = &args.what {
        return verify(config, from).await;
    }
    let to = args
        .to
        .clone()
        .or_else(|| config.backup.to.clone())
        .context("where to? pass --to DIR|s3://bucket/prefix, or set backup.to")?;
    let tables = config.table_store()?;
    let location = Location::open(&to, config.backup.options.clone())?.encrypted_like(&tables);
    let backup = location.backup(&adit_backup::new_id())?;
    let services = services::connect(config).await?;
    let source = Source {
        client: &services.client,
        tables: &tables,
        config_file: config.file.as_deref(),
        with_secrets: args.with_secrets || config.backup.with_secrets,
    };
    let taken = adit_backup::take(&source, &backup.place).await;
    services.close().await;
    let manifest = taken.with_context(|| format!("backup into {}", backup.url))?;
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    let summary = serde_json::json!({
        "backup": backup.url,
        "taken_at": manifest.taken_at,
        "streams": manifest.streams.iter().map(|s| (s.name.clone(), s.messages)).collect::<std::collections::BTreeMap<_, _>>(),
        "tables": manifest.tables.iter().map(|t| (t.name.clone(), serde_json::json!({"version": t.version, "rows": t.rows}))).collect::<serde_json::Map<_, _>>(),
        "files": manifest.files.len(),
        "bytes": bytes,
        "config_redacted": manifest.config.as_ref().map(|c| c.redacted),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

async fn verify(config: &Config, from: &str) -> anyhow::Result<()> {
    let tables = config.table_store()?;
    let backup = Location::resolve(from, config.backup.options.clone(), &tables).await?;
    let (manifest, verified) = adit_backup::verify(&backup.place, &backup.tables)
        .await
        .with_context(|| format!("verifying {}", backup.url))?;
    let summary = serde_json::json!({
        "backup": backup.url,
        "taken_at": manifest.taken_at,
        "verified": verified,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// `adit restore --from [--replace]`.
pub(super) async fn restore(config: &Config, args: &RestoreArgs) -> anyhow::Result<()> {
    let tables = config.table_store()?;
    let backup = Location::resolve(&args.from, config.backup.options.clone(), &tables).await?;
    let (client, managed) = services::connect_bare(config).await?;
    // Payments are held before anything is written: a payer running now must not pay from a
    // table the restore is replacing.
    let earlier = adit_payments::hold::get(&tables).await?;
    adit_payments::hold::put(
        &tables,
        &format!(
            "restoring {}: held until the restore ends and is reconciled",
            backup.url
        ),
        None,
    )
    .await
    .context("holding payments before the restore")?;
    let target = Target {
        client: &client,
        tables: &tables,
        replace: args.replace,
        replicas: Some(config.nats.streams.replicas),
    };
    let restored = adit_backup::restore(&backup.place, &backup.tables, &target).await;
    services::close(&client, managed).await;
    if let Err(adit_backup::Error::Refused(_)) = &restored {
        // Refused before anything changed: the hold is as it was before.
        match &earlier {
            None => {
                adit_payments::hold::release(&tables).await?;
            }
            Some(hold) => {
                adit_payments::hold::put(&tables, &hold.reason, hold.taken_at).await?;
            }
        }
    }
    let (manifest, restored) = restored.with_context(|| format!("restoring {}", backup.url))?;
    let hold = adit_payments::hold::put(
        &tables,
        &format!(
            "restored {} (taken {}): payments made since then are not in the payments table",
            backup.url, manifest.taken_at
        ),
        Some(manifest.taken_at),
    )
    .await
    .context("holding payments after the restore")?;
    let summary = serde_json::json!({
        "restored": backup.url,
        "taken_at": manifest.taken_at,
        "into": { "tables": tables.root().to_string() },
        "streams": restored.streams.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "tables": restored.tables,
        "files": restored.files,
        "config": manifest.config.map(|c| format!("{}{} ({})", backup.url, c.file, if c.redacted { "secrets redacted" } else { "with secrets" })),
        "payments_held": hold.reason,
        "next": "reconcile the payments table with the wallet's transfers (get_transfers), then `adit payments release`",
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// `adit payments release`: lifts the hold a restore put on payments, once every transfer the
/// wallet sent since the backup is recorded in the `payments` table or accepted by id.
pub(super) async fn payments(config: &Config, args: &PaymentsArgs) -> anyhow::Result<()> {
    let tables = config.table_store()?;
    match &args.what {
        PaymentsWhat::Release { accept, no_wallet } => {
            let held = adit_payments::hold::get(&tables).await?;
            let reconciled = match (&held, no_wallet) {
                (None, _) => serde_json::json!("nothing held"),
                (Some(_), true) => serde_json::json!("not checked (--no-wallet)"),
                (Some(hold), false) => {
                    let found = reconcile(config, &tables, hold, accept).await?;
                    let shown = serde_json::to_value(&found)?;
                    if !found.clear() {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&serde_json::json!({
                                "released": false,
                                "reconciled": shown,
                                "next": "record each unrecorded transfer's payments in the payments table, or, where one paid no miner, pass --accept TXID",
                            }))?
                        );
                        anyhow::bail!(
                            "payments stay held: {} transfer(s) the wallet sent are not in the payments table{}",
                            found.unrecorded.len(),
                            if found.unknown_accepted.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    ", and the wallet sent none of {:?}",
                                    found.unknown_accepted
                                )
                            }
                        );
                    }
                    shown
                }
            };
            let released = adit_payments::hold::release(&tables).await?;
            let summary = serde_json::json!({
                "released": released,
                "was": held.map(|h| h.reason),
                "reconciled": reconciled,
                "tables": tables.root().to_string(),
            });
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
    }
    Ok(())
}

/// The wallet's transfers since the restored backup, against the `payments` table.
async fn reconcile(
    config: &Config,
    tables: &TableStore,
    hold: &adit_payments::hold::Hold,
    accept: &[String],
) -> anyhow::Result<adit_payments::reconcile::Reconciled> {
    let p = &config.payments;
    if p.chain == adit_schemas::chain::Chain::OpenSy {
        anyhow::bail!(
            "reconciling with an OpenSY wallet is not built yet: compare the wallet's `listtransactions` (category send) with the payments table by hand, then release with --no-wallet"
        );
    }
    let wallet = adit_payments::wallet::Wallet::new(
        &p.wallet_rpc,
        p.rpc_timeout,
        p.account_index,
        p.priority,
    )?;
    let sent = wallet.outgoing().await.with_context(|| {
        format!(
            "asking the wallet at {} for its transfers (payments.wallet_rpc); a deployment that pays nothing releases with --no-wallet",
            p.wallet_rpc
        )
    })?;
    let ledger = adit_payments::ledger::Ledger::open(tables, Default::default()).await?;
    let recorded = ledger.recorded().await?;
    let accept = accept.iter().cloned().collect();
    Ok(adit_payments::reconcile::reconcile(
        sent,
        &recorded,
        hold.taken_at,
        &accept,
    ))
}
