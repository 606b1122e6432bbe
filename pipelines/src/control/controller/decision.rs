//! What a step decides and why (`Decision`), and what it found before acting (`Made`).

use serde::{Deserialize, Serialize};

use super::state::Mode;

/// What a decision does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Only the mode changed.
    Mode,
    /// Put a machine to sleep.
    Sleep {
        /// The machine.
        machine: String,
    },
    /// Wake a machine.
    Wake {
        /// The machine.
        machine: String,
    },
    /// Set a machine's power target (its nameplate power lifts it).
    PowerTarget {
        /// The machine.
        machine: String,
        /// The target, whole watts.
        watts: f64,
    },
    /// Set the site's fans.
    FanLevel {
        /// 1..=9.
        level: u8,
    },
}

/// Why a decision was made: the rule in force (module docs, in order), or what else acted.
/// Its name is the `rule` column of `decisions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// 1: an input older than its limit.
    StaleInputs,
    /// 2: the hottest sensor at or over the emergency limit.
    EmergencyTemperature,
    /// 3: an operator's forced load target.
    OverrideTarget,
    /// 4: an active demand-response event.
    GridCurtail,
    /// 5: the price over the strike.
    PriceStrike,
    /// 6: the price over some machines' breakeven: those sleep, least profitable first.
    PriceBreakeven,
    /// 7: otherwise, the allocation.
    AllocationCap,
    /// Machines woken once no limit binds.
    Resume,
    /// The fans, by the temperature bands.
    FanBand,
    /// The fans, pinned by an operator.
    OverrideFan,
    /// An operator's hold began.
    OverrideHold,
}

impl Rule {
    /// Its name, as recorded.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One decision with the rule that fired and what it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The mode before.
    pub from: Mode,
    /// The mode after.
    pub to: Mode,
    /// The rule that decided.
    pub rule: Rule,
    /// What to do.
    pub action: Action,
    /// The load target, kW.
    pub target_kw: Option<f64>,
    /// The measured load, kW.
    pub load_kw: f64,
}

/// What one step found before acting: the rule in force with its mode and target, the mode it
/// leaves, the load it saw and expects, and how much load the ramp lets it move.
#[derive(Clone, Copy)]
pub(super) struct Made {
    pub(super) rule: Rule,
    pub(super) mode: Mode,
    pub(super) from: Mode,
    pub(super) target_kw: Option<f64>,
    pub(super) load_kw: f64,
    pub(super) expected_kw: f64,
    pub(super) allowance_kw: f64,
}

impl Made {
    pub(super) fn decision(&self, to: Mode, action: Action, rule: Rule) -> Decision {
        Decision {
            from: self.from,
            to,
            rule,
            action,
            target_kw: self.target_kw,
            load_kw: self.load_kw,
        }
    }
}
