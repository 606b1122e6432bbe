//! What the controller remembers of a site between steps.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The site's modes (the schemas' [`SiteMode`], which the `decisions` table and an admin's
/// mode write spell).
pub use adit_schemas::control::SiteMode as Mode;

/// What the controller remembers of one machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MachineControl {
    /// Whether it is meant to be on.
    pub on: bool,
    /// When that last changed, µs.
    pub since_us: i64,
    /// The power target commanded, W (none: none set, or lifted to its nameplate power).
    #[serde(default)]
    pub target_w: Option<f64>,
    /// When the target last changed, µs.
    #[serde(default)]
    pub target_since_us: Option<i64>,
    /// Whether the controller has commanded it on or off; until then `on` is what it was seen
    /// doing. (A state written before this field counts as commanded, as it was then taken.)
    #[serde(default = "commanded_before")]
    pub commanded: bool,
}

/// [`MachineControl::commanded`] of a state written before the field.
fn commanded_before() -> bool {
    true
}

impl MachineControl {
    /// A machine first seen `on` (running) or not at `since_us`, never commanded, with no
    /// power target.
    pub(crate) fn new(on: bool, since_us: i64) -> Self {
        Self {
            on,
            since_us,
            target_w: None,
            target_since_us: None,
            commanded: false,
        }
    }

    /// Takes in that the machine runs now: one no command has reached, first seen before its
    /// first reading (or asleep by someone else's hand), is meant to be on once it runs. One
    /// the controller commanded keeps what it was told (a machine commanded off that still
    /// runs is one that ignored its command).
    pub(crate) fn seen(&mut self, running: bool) {
        if !self.commanded && running {
            self.on = true;
        }
    }
}

/// One site's controller state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteControl {
    /// The mode.
    pub mode: Mode,
    /// The previous step, µs.
    pub last_step_us: Option<i64>,
    /// The last shed, µs.
    pub last_shed_us: Option<i64>,
    /// When the emergency began, µs.
    pub emergency_since_us: Option<i64>,
    /// Whether the price is over the strike (with hysteresis).
    pub price_high: bool,
    /// The fan level commanded.
    pub fan_level: u8,
    /// Each machine's commanded state.
    pub machines: BTreeMap<String, MachineControl>,
    /// When the fan level last changed, µs.
    #[serde(default)]
    pub fan_changed_us: Option<i64>,
    /// Whether an operator held the site at the last step.
    #[serde(default)]
    pub held: bool,
    /// Machines whose breakeven the price is over (with hysteresis): kept asleep.
    #[serde(default)]
    pub unprofitable: BTreeSet<String>,
}

impl SiteControl {
    /// Records machine `id` as commanded `on` at `since_us` (its power target unchanged).
    pub(crate) fn command(&mut self, id: &str, on: bool, since_us: i64) {
        let c = self
            .machines
            .entry(id.to_string())
            .or_insert(MachineControl::new(on, since_us));
        c.on = on;
        c.since_us = since_us;
        c.commanded = true;
    }

    /// Records machine `id`'s power target as `target_w` at `at_us` (none: lifted).
    pub(crate) fn set_target(&mut self, id: &str, target_w: Option<f64>, at_us: i64) {
        if let Some(c) = self.machines.get_mut(id) {
            c.target_w = target_w;
            c.target_since_us = Some(at_us);
        }
    }
}
