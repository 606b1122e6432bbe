//! What the pipeline keeps of each site between steps, and how each thing it hears there (a
//! reading, a grid signal, an override, an actuator's outcome) changes it.

use std::collections::{BTreeMap, BTreeSet};

use adit_schemas::control::{CommandOutcome, FANS_TARGET, OutcomeStatus};
use adit_schemas::overrides::{Override, OverrideKind};
use adit_schemas::registry::RegistryView;
use adit_schemas::{GridSignal, GridSignalKind};
use serde::{Deserialize, Serialize};

use super::market::Market;
use crate::control::controller::{GridEvent, SiteControl};
use crate::farm::readings::{Reading, SiteDevices};

/// One site as the pipeline follows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct SiteState {
    /// Newest event time heard at the site.
    pub(super) event_us: i64,
    /// Processing time it was heard.
    pub(super) heard_now_us: i64,
    /// Next decision boundary.
    pub(super) next_eval_us: i64,
    /// What its devices said.
    pub(super) devices: SiteDevices,
    /// The demand-response event in force.
    pub(super) grid: Option<GridEvent>,
    /// When the newest grid signal was issued.
    pub(super) signal_us: Option<i64>,
    /// The last prices, oldest first.
    pub(super) prices: Vec<f64>,
    /// The controller.
    pub(super) control: SiteControl,
    /// Machines whose latest command an actuator reported failed.
    #[serde(default)]
    pub(super) failed: BTreeSet<String>,
    /// Operators' overrides not yet expired or cancelled, by id.
    #[serde(default)]
    pub(super) overrides: BTreeMap<String, Override>,
    /// Operators' commands heard since the last step, carried out at the next.
    #[serde(default)]
    pub(super) operator: Vec<Override>,
}

/// The whole pipeline state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CurtailmentState {
    pub(super) registry: RegistryView,
    pub(super) sites: BTreeMap<String, SiteState>,
    /// The pools' terms and the coins' prices.
    #[serde(default)]
    pub(super) market: Market,
}

/// Something that happened at a site, in time order.
pub(super) enum Item {
    Reading(Reading),
    Signal(GridSignal),
    Override(Override),
}

impl Item {
    pub(super) fn site(&self) -> &str {
        match self {
            Self::Reading(r) => r.site(),
            Self::Signal(g) => &g.site,
            Self::Override(o) => &o.site,
        }
    }
}

/// Takes in an override: a cancel ends the one it names, an operator's command or a mode
/// write waits for the next step (a `sleep` is also kept, holding its machine, until it expires or is woken), any
/// other is kept until it expires.
pub(super) fn apply_override(site: &mut SiteState, o: &Override) {
    match (o.kind, &o.cancels) {
        (OverrideKind::Cancel, Some(id)) => {
            site.overrides.remove(id);
        }
        (kind, _) if kind.is_once() => {
            if kind == OverrideKind::Sleep {
                site.overrides.insert(o.id.clone(), o.clone());
            }
            site.operator.push(o.clone());
        }
        _ => {
            site.overrides.insert(o.id.clone(), o.clone());
        }
    }
}

/// Takes in an actuator's report: a machine whose command failed is not counted as about to
/// change until an attempt succeeds or a new command is decided for it.
pub(super) fn apply_outcome(state: &mut CurtailmentState, o: &CommandOutcome) {
    if o.target == FANS_TARGET {
        return;
    }
    let site = state.sites.entry(o.site.clone()).or_default();
    match o.status {
        OutcomeStatus::Failed => {
            site.failed.insert(o.target.clone());
        }
        OutcomeStatus::Acked => {
            site.failed.remove(&o.target);
        }
    }
}

/// Takes in a grid signal: a curtail event starts (or replaces the one in force), a normal
/// ends it, a price joins the last `keep` prices.
pub(super) fn apply_signal(site: &mut SiteState, g: &GridSignal, keep: usize) {
    site.signal_us = Some(g.ts.timestamp_micros());
    match (g.kind, g.target_kw, g.deadline) {
        (GridSignalKind::Curtail, Some(target_kw), Some(deadline)) => {
            site.grid = Some(GridEvent {
                event_id: g.event_id.clone(),
                target_kw,
                deadline_us: deadline.timestamp_micros(),
            });
        }
        (GridSignalKind::Normal, ..) => site.grid = None,
        (GridSignalKind::Price, ..) => {
            if let Some(p) = g.price_per_mwh {
                site.prices.push(p);
                let excess = site.prices.len().saturating_sub(keep.max(1));
                site.prices.drain(..excess);
            }
        }
        _ => {} // validation refuses a curtail without its figures
    }
}
