//! The one list of pipelines and their config (`[pipelines]`). Adding a pipeline is adding it
//! here; the runtime runs the list it is given and never names one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use adit_config::{Checked, Invalid, check};
use adit_schemas::names;
use adit_sinks::Maintenance;
use serde::Deserialize;

use crate::control::curtailment::{Curtailment, CurtailmentConfig};
use crate::farm::anomalies::Anomalies;
use crate::farm::detector::DetectConfig;
use crate::farm::energy::{Energy, EnergyConfig};
use crate::farm::registry_log::RegistryLog;
use crate::farm::violations::{Violations, ViolationsConfig};
use crate::landing::Landing;
use crate::pool::hashrate::{Hashrate, HashrateConfig};
use crate::pool::pplns::{Pplns, PplnsConfig};
use crate::runtime::context::RuntimeConfig;
use crate::runtime::runnable::Runnable;

/// Pipeline settings; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelinesConfig {
    /// A batch closes at this many messages...
    pub batch_max_rows: usize,
    /// ...or this long after its first message.
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// A pipeline instance's lease lives this long without renewal; a standby takes over
    /// within about this long after its holder dies.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// An instance whose oldest uncommitted message was stored longer ago than this is
    /// stalled: `/ready` answers 503 naming it (`lag:<instance>`) until it catches up.
    #[serde(with = "humantime_serde")]
    pub max_lag: Duration,
    /// Pipelines run as one instance per listed key (a site or pool), each with its own
    /// position and lease: `telemetry = ["site-01", "site-02"]`. Only the keys listed are read.
    pub partitions: BTreeMap<String, Vec<String>>,
    /// Table compaction and vacuum.
    pub maintenance: Maintenance,
    /// The energy pipeline.
    pub energy: EnergyConfig,
    /// PPLNS payouts.
    pub pplns: PplnsConfig,
    /// Effective hashrate tables.
    pub hashrate: HashrateConfig,
    /// Violations of the registry's limits.
    pub violations: ViolationsConfig,
    /// Anomaly detection.
    pub anomalies: DetectConfig,
    /// The curtailment and cooling controller.
    pub curtailment: CurtailmentConfig,
}

impl Default for PipelinesConfig {
    fn default() -> Self {
        // The runtime's defaults are its own ([`RuntimeConfig::default`]).
        let RuntimeConfig {
            batch_max_rows,
            batch_max_wait,
            lease_ttl,
            max_lag,
            partitions,
            maintenance,
        } = RuntimeConfig::default();
        Self {
            batch_max_rows,
            batch_max_wait,
            lease_ttl,
            max_lag,
            partitions,
            maintenance,
            energy: EnergyConfig::default(),
            pplns: PplnsConfig::default(),
            hashrate: HashrateConfig::default(),
            violations: ViolationsConfig::default(),
            anomalies: DetectConfig::default(),
            curtailment: CurtailmentConfig::default(),
        }
    }
}

impl PipelinesConfig {
    /// Every value checked, after all overrides; the first problem found, naming its key.
    /// The runtime's part of it.
    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            batch_max_rows: self.batch_max_rows,
            batch_max_wait: self.batch_max_wait,
            lease_ttl: self.lease_ttl,
            max_lag: self.max_lag,
            partitions: self.partitions.clone(),
            maintenance: self.maintenance.clone(),
        }
    }

    /// Every value checked, after all overrides; the first problem found, naming its key.
    pub fn validate(&self) -> Checked {
        self.runtime().validate()?;
        self.pplns.validate()?;
        self.hashrate.validate()?;
        self.violations.validate()?;
        self.anomalies.validate()?;
        self.curtailment.validate()?;
        let pipelines = all(self);
        let known: Vec<String> = pipelines.iter().map(|p| p.name()).collect();
        for (pipeline, keys) in &self.partitions {
            let key = format!("pipelines.partitions.{pipeline}");
            check(
                known.contains(pipeline),
                &key,
                format!("no such pipeline (pipelines: {})", known.join(", ")),
            )?;
            let spec = pipelines
                .iter()
                .find(|p| &p.name() == pipeline)
                .map(|p| p.spec());
            if let Some(input) = spec
                .iter()
                .flat_map(|s| s.inputs.iter())
                .find(|i| i.partitioned.is_none())
            {
                return Err(Invalid::new(
                    key,
                    format!("its input {} cannot be partitioned", input.name),
                ));
            }
            check(
                !keys.is_empty(),
                &key,
                "list at least one partition key, or remove the entry",
            )?;
            for k in keys {
                check(
                    names::is_token(k),
                    &key,
                    format!("{k:?} is not a subject token (1–64 of A-Z a-z 0-9 _ -)"),
                )?;
            }
            let mut sorted = keys.clone();
            sorted.sort();
            sorted.dedup();
            check(sorted.len() == keys.len(), &key, "lists a key twice")?;
        }
        self.energy.validate()
    }
}

/// Every pipeline, configured.
pub fn all(config: &PipelinesConfig) -> Vec<Arc<dyn Runnable>> {
    let landings = Landing::all()
        .into_iter()
        .map(|l| Arc::new(l) as Arc<dyn Runnable>);
    let others: [Arc<dyn Runnable>; 7] = [
        Arc::new(Energy::new(config.energy.clone(), config.pplns.clone())),
        Arc::new(Pplns::new(config.pplns.clone())),
        Arc::new(Hashrate::new(config.hashrate.clone())),
        Arc::new(RegistryLog),
        Arc::new(Violations::new(config.violations.clone())),
        Arc::new(Anomalies::new(config.anomalies.clone())),
        Arc::new(Curtailment::new(config.curtailment.clone())),
    ];
    landings.chain(others).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::pipeline::StreamInput;
    use adit_schemas::{EventKind, Land};

    /// Whether every subject matching the filter `inner` also matches `outer` (NATS filters;
    /// empty: the whole stream).
    fn covers(outer: &str, inner: &str) -> bool {
        if outer.is_empty() {
            return true;
        }
        if inner.is_empty() {
            return false;
        }
        let (outer, inner): (Vec<&str>, Vec<&str>) =
            (outer.split('.').collect(), inner.split('.').collect());
        for i in 0.. {
            match (outer.get(i).copied(), inner.get(i).copied()) {
                (Some(">"), Some(_)) | (None, None) => return true,
                (Some("*"), Some(token)) if token != ">" => {}
                (Some(a), Some(b)) if a == b => {}
                _ => return false,
            }
        }
        unreachable!()
    }

    /// Whether some subject matches both filters.
    fn overlap(a: &str, b: &str) -> bool {
        if a.is_empty() || b.is_empty() {
            return true;
        }
        let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
        for i in 0.. {
            match (a.get(i).copied(), b.get(i).copied()) {
                (Some(">"), Some(_)) | (Some(_), Some(">")) | (None, None) => return true,
                (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
                _ => return false,
            }
        }
        unreachable!()
    }

    #[test]
    fn subject_filters_cover_and_overlap_as_nats_matches_them() {
        assert!(covers("", "telemetry.energy.>"));
        assert!(covers("telemetry.>", "telemetry.energy.>"));
        assert!(covers("mining.*.p1", "mining.share.p1"));
        assert!(!covers("mining.share.>", "mining.>"));
        assert!(!covers("mining.*", "mining.>"));
        assert!(overlap("results.alert.>", "results.*.x"));
        assert!(!overlap("results.alert.>", "results.notification.>"));
        assert!(!overlap("control.audit.x", "control.audit"));
    }

    /// Every input that skips its refused messages reads only subjects an owner files, and no
    /// two owners file the same subject: each bad message becomes exactly one dead letter.
    #[test]
    fn each_subject_read_has_exactly_one_dead_letter_owner() {
        let inputs: Vec<(String, StreamInput)> = all(&PipelinesConfig::default())
            .into_iter()
            .flat_map(|p| {
                let spec = p.spec();
                spec.inputs.into_iter().map(move |i| (spec.name.clone(), i))
            })
            .collect();
        let owners: Vec<&(String, StreamInput)> =
            inputs.iter().filter(|(_, i)| i.dead_letters).collect();
        for (pipeline, input) in &inputs {
            let owned_by: Vec<&String> = owners
                .iter()
                .filter(|(_, o)| o.stream == input.stream && covers(&o.subject, &input.subject))
                .map(|(p, _)| p)
                .collect();
            assert!(
                !owned_by.is_empty(),
                "{pipeline}'s input {} ({} {:?}) has no owner to file its dead letters",
                input.name,
                input.stream,
                input.subject
            );
        }
        for (i, (a, x)) in owners.iter().enumerate() {
            for (b, y) in &owners[i + 1..] {
                assert!(
                    x.stream != y.stream || !overlap(&x.subject, &y.subject),
                    "{a} and {b} both file dead letters of {} {:?} / {:?}",
                    x.stream,
                    x.subject,
                    y.subject
                );
            }
        }
    }

    /// A new kind of any stream gets a table and a dead-letter owner or this fails: every
    /// kind's table is written by some pipeline, and some pipeline that files dead letters
    /// reads all of the kind's subjects. Commands (`control.<site>.<target>`) are the
    /// actuators' to refuse and file (`actuators::dead_letter`), not a pipeline's.
    #[test]
    fn every_kind_has_a_table_and_a_dead_letter_owner() {
        let specs: Vec<_> = all(&PipelinesConfig::default())
            .into_iter()
            .map(|p| p.spec())
            .collect();
        for &kind in EventKind::ALL {
            assert!(
                specs
                    .iter()
                    .any(|s| s.outputs.iter().any(|o| o.name == kind.table())),
                "{kind:?}: no pipeline writes its table {}",
                kind.table()
            );
            // A stream landed whole refuses what it does not land: only such kinds on it.
            if kind.land() == Land::Stream {
                assert!(
                    EventKind::on_stream(kind.stream())
                        .iter()
                        .all(|k| k.land() == Land::Stream),
                    "{kind:?}: its stream {} carries a kind the stream's landing would refuse",
                    kind.stream()
                );
            }
            if kind == EventKind::Command {
                continue;
            }
            let subjects = format!("{}.>", kind.subject_prefix());
            assert!(
                specs.iter().flat_map(|s| &s.inputs).any(|i| i.dead_letters
                    && i.stream == kind.stream()
                    && covers(&i.subject, &subjects)),
                "{kind:?}: no pipeline files the dead letters of {subjects}"
            );
        }
    }
}
