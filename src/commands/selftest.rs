//! `adit selftest`: checks a configured installation end to end and says what failed — the
//! table root (a small object written and removed), NATS (connected, streams and buckets in
//! place), the registry, every device it names and every grid or coin feed (each read once,
//! as the `adapters` role reads it, publishing nothing), every notification receiver (a test
//! message through each channel, recorded in `notifications` like any test; `--no-notify`
//! lists them instead) and the pool's node (`get_info`). One line per check; exits 1 when any
//! failed, so it can gate a deployment.

use std::time::Duration;

use anyhow::bail;

use crate::cli::SelftestArgs;
use crate::config::Config;
use crate::services;

/// How long the node may take to answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(15);

/// The checks' results, printed as they come.
#[derive(Default)]
struct Report {
    failed: Vec<String>,
    passed: usize,
}

impl Report {
    fn check(&mut self, what: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => {
                self.passed += 1;
                println!("ok    {what}: {detail}");
            }
            Err(reason) => {
                println!("FAIL  {what}: {reason}");
                self.failed.push(what.to_string());
            }
        }
    }

    fn note(&self, what: &str, detail: &str) {
        println!("skip  {what}: {detail}");
    }
}

/// Runs every check; an error only when some check failed.
pub(super) async fn run(config: &Config, args: &SelftestArgs) -> anyhow::Result<()> {
    let mut report = Report::default();
    let tables = match config.table_store() {
        Ok(store) => crate::health::writable(&store, "selftest")
            .await
            .map(|()| format!("{} takes a write", store.root())),
        Err(e) => Err(format!("{e:#}")),
    };
    report.check("tables", tables);
    match services::connect(config).await {
        Ok(services) => {
            report.check("nats", Ok("connected; streams and buckets in place".into()));
            checks_over_nats(config, args, &services, &mut report).await;
        }
        Err(e) => report.check("nats", Err(format!("{e:#}"))),
    }
    node(config, &mut report).await;
    println!(
        "{} passed, {} failed{}",
        report.passed,
        report.failed.len(),
        if report.failed.is_empty() {
            String::new()
        } else {
            format!(": {}", report.failed.join(", "))
        }
    );
    if !report.failed.is_empty() {
        bail!("selftest: {} check(s) failed", report.failed.len());
    }
    Ok(())
}

/// The registry, its devices and the receivers.
async fn checks_over_nats(
    config: &Config,
    args: &SelftestArgs,
    services: &services::Services,
    report: &mut Report,
) {
    let view = match services.registry.view().await {
        Ok(view) => {
            report.check(
                "registry",
                Ok(format!(
                    "{} sites, {} machines, {} sensors, {} meters",
                    view.sites().count(),
                    view.machines().count(),
                    view.sensors().count(),
                    view.meters().count()
                )),
            );
            Some(view)
        }
        Err(e) => {
            report.check("registry", Err(e.to_string()));
            None
        }
    };
    if let Some(view) = view {
        match adit_ingest::adapters::poll::probe::probe(
            &config.adapters,
            &config.egress,
            &view,
            services.publisher.clone(),
        )
        .await
        {
            Ok(probes) if probes.is_empty() => report.note("devices", "the registry names none"),
            Ok(probes) => {
                for p in probes {
                    report.check(&format!("device {}", p.device), p.outcome);
                }
            }
            Err(e) => report.check("devices", Err(e.to_string())),
        }
    }
    receivers(config, args, services, report).await;
}

/// A test message to every receiver (the file's and those managed over the API).
async fn receivers(
    config: &Config,
    args: &SelftestArgs,
    services: &services::Services,
    report: &mut Report,
) {
    let notifier = match adit_alerts::notify::Notifier::new(config.notify.clone(), &config.egress) {
        Ok(n) => match adit_alerts::notify::ManagedStore::open(&services.js).await {
            Ok(managed) => n.with_managed(managed),
            Err(_) => n,
        },
        Err(e) => return report.check("notify", Err(e.to_string())),
    };
    let effective = match notifier.effective().await {
        Ok(c) => c,
        Err(e) => return report.check("notify", Err(e.to_string())),
    };
    if effective.receivers.is_empty() {
        return report.note("receivers", "none configured");
    }
    for receiver in &effective.receivers {
        let what = format!("receiver {}", receiver.name);
        if args.no_notify {
            report.note(&what, "not sent (--no-notify)");
            continue;
        }
        let sent = notifier
            .send_test(&services.publisher, &receiver.name, "selftest")
            .await;
        let result = match sent {
            Ok(Some(attempts)) => {
                let failed: Vec<String> = attempts
                    .iter()
                    .filter(|a| a.status != "sent")
                    .map(|a| format!("{}: {}", a.channel, a.error.clone().unwrap_or_default()))
                    .collect();
                if failed.is_empty() {
                    let kinds: Vec<&str> = attempts.iter().map(|a| a.channel.as_str()).collect();
                    Ok(format!("test message sent ({})", kinds.join(", ")))
                } else {
                    Err(failed.join("; "))
                }
            }
            Ok(None) => Err("no such receiver".into()),
            Err(e) => Err(e.to_string()),
        };
        report.check(&what, result);
    }
}

/// The pool's node, when it is a real one.
async fn node(config: &Config, report: &mut Report) {
    if config.pool.node == "sim" {
        return report.note("node", "the pool's node is simulated (pool.node = \"sim\")");
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let result = match crate::roles::pool_node(&config.pool, &shutdown).await {
        Ok(node) => match tokio::time::timeout(NODE_TIMEOUT, node.get_info()).await {
            Ok(Ok(info)) => Ok(format!(
                "{} answers: height {}",
                config.pool.node, info.height
            )),
            Ok(Err(e)) => Err(format!("{}: {e}", config.pool.node)),
            Err(_) => Err(format!(
                "{} did not answer in {NODE_TIMEOUT:?}",
                config.pool.node
            )),
        },
        Err(e) => Err(format!("{e:#}")),
    };
    shutdown.cancel();
    report.check("node", result);
}
