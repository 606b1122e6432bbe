//! `adit control --once [--site S]`: one iteration of the curtailment controller now, for an
//! installation that runs it from cron (the old controller's `--cron`) rather than in the
//! pipelines role. It takes the controller's lease (refused, saying so, while a pipelines role
//! holds it), recovers its state and reads its inputs up to now, steps once with its clock
//! due, and commits the same `decisions` and `commands` rows, results and commands as the
//! running controller would, exactly once; it prints each decision as JSON, one per line.

use adit_pipelines::PipelineContext;
use adit_pipelines::control::curtailment::Curtailment;
use adit_pipelines::runtime::pipeline::Pipeline;
use adit_schemas::ValidationPolicy;
use anyhow::bail;

use crate::cli::ControlArgs;
use crate::config::Config;
use crate::services;

/// One iteration, printed.
pub(super) async fn run(config: &Config, args: &ControlArgs) -> anyhow::Result<()> {
    let pipeline = Curtailment::new(config.pipelines.curtailment.clone());
    let name = pipeline.spec().name;
    let partitions = config.pipelines.partitions.get(&name);
    match (partitions, &args.site) {
        (Some(sites), Some(site)) if !sites.contains(site) => {
            bail!("--site {site:?}: pipelines.partitions.{name} lists {sites:?}, not it")
        }
        (Some(sites), None) => bail!(
            "the controller runs one partition per site (pipelines.partitions.{name} = \
             {sites:?}): name one with --site"
        ),
        (None, Some(_)) => bail!(
            "--site: the controller is not partitioned by site (no pipelines.partitions.{name}), \
             so one iteration steps every site; leave --site out"
        ),
        _ => {}
    }
    let services = services::connect(config).await?;
    let store = config.table_store()?;
    let ctx = PipelineContext {
        js: services.js.clone(),
        publisher: services.publisher.clone(),
        store,
        config: config.pipelines.runtime(),
        policy: ValidationPolicy::default(),
        holder: adit_bus::lease::holder_name(),
        vitals: adit_supervise::Vitals::new(),
        progress: Default::default(),
    };
    let results =
        adit_pipelines::runtime::runner::run_once(&pipeline, &ctx, args.site.as_deref(), args.wait)
            .await?;
    let decisions: Vec<_> = results
        .iter()
        .filter(|r| r.subject.starts_with("results.decision."))
        .collect();
    for decision in &decisions {
        println!("{}", String::from_utf8_lossy(&decision.payload));
    }
    eprintln!(
        "{name}: one iteration, {} decision(s), {} other message(s) published{}",
        decisions.len(),
        results.len() - decisions.len(),
        if config.pipelines.curtailment.dry_run {
            " (dry run: no command sent)"
        } else {
            ""
        }
    );
    services.close().await;
    Ok(())
}
