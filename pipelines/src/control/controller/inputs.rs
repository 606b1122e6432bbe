//! What the controller is given: its rules, and what it knows of the site at one step.

use serde::{Deserialize, Serialize};

/// One minute, µs.
pub(super) const MINUTE_US: i64 = 60_000_000;

/// The site's controller settings (times in µs in the pure core; config converts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRules {
    /// Most load shed or added per minute, kW.
    pub ramp_kw_per_min: f64,
    /// A machine stays on at least this long before it may be shed, µs.
    pub min_on_us: i64,
    /// A machine stays off at least this long before it may be woken, µs.
    pub min_off_us: i64,
    /// No waking for this long after the last shed, µs.
    pub cooldown_us: i64,
    /// Headroom kept under the target when waking, kW.
    pub resume_margin_kw: f64,
    /// A machine commanded to sleep is not chosen again for this long, µs.
    pub command_timeout_us: i64,
    /// Price above which mining is not worth it, per MWh (none: prices are ignored).
    pub strike_price: Option<f64>,
    /// Consecutive price intervals needed to cross the strike, both ways.
    pub strike_intervals: usize,
    /// Load allowed while the price is over the strike, kW.
    pub price_target_kw: f64,
    /// Sleep the machines whose breakeven is under the price (rule `price_breakeven`).
    #[serde(default)]
    pub shed_unprofitable: bool,
    /// Upper temperature bound of each fan level 1..=8, °C, ascending (9 above the last).
    pub fan_bands_c: Vec<f64>,
    /// How far under a band's bound the temperature must fall to step a fan level down, °C.
    pub fan_hysteresis_c: f64,
    /// The fans step down only this long after their last change, µs.
    #[serde(default)]
    pub fan_dwell_us: i64,
    /// How far under the emergency limit the temperature must fall to lift the emergency, °C.
    pub emergency_clear_c: f64,
    /// Meter readings older than this are stale, µs.
    pub meter_stale_us: i64,
    /// Sensor readings older than this are stale, µs.
    pub sensor_stale_us: i64,
    /// A grid signal older than this, while a curtailment is active, is stale, µs.
    pub signal_stale_us: i64,
    /// Load to shed to in failsafe (none: hold the load as it is), kW.
    pub failsafe_target_kw: Option<f64>,
}

impl Default for ControlRules {
    fn default() -> Self {
        Self {
            ramp_kw_per_min: 100.0,
            min_on_us: 5 * MINUTE_US,
            min_off_us: 5 * MINUTE_US,
            cooldown_us: 10 * MINUTE_US,
            resume_margin_kw: 5.0,
            command_timeout_us: 2 * MINUTE_US,
            strike_price: None,
            strike_intervals: 2,
            price_target_kw: 0.0,
            shed_unprofitable: false,
            fan_bands_c: vec![20.0, 23.0, 25.0, 27.0, 29.0, 31.0, 33.0, 35.0],
            fan_hysteresis_c: 1.0,
            fan_dwell_us: 2 * MINUTE_US,
            emergency_clear_c: 3.0,
            meter_stale_us: 2 * MINUTE_US,
            sensor_stale_us: 2 * MINUTE_US,
            signal_stale_us: 30 * MINUTE_US,
            failsafe_target_kw: None,
        }
    }
}

/// A demand-response event in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridEvent {
    /// The utility's event id.
    pub event_id: String,
    /// Load to reach, kW.
    pub target_kw: f64,
    /// When it must be reached, µs.
    pub deadline_us: i64,
}

/// Share of its nameplate power under which a machine counts as not running (a sleeping
/// miner still draws a little for its control board and fans).
const RUNNING_SHARE: f64 = 0.05;

/// One machine as the controller sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineInput {
    /// Id.
    pub id: String,
    /// Measured power now, W (0 when asleep).
    pub power_w: f64,
    /// When that power was measured, µs (none: no fresh reading). A command is judged by the
    /// readings taken after it, not by the clock: see `expected_w`.
    #[serde(default)]
    pub power_us: Option<i64>,
    /// Nameplate power, W (what waking it adds).
    pub nominal_w: f64,
    /// Joules per terahash (higher: less efficient).
    pub efficiency_j_th: f64,
    /// Whether the controller may shed or wake it (an override can take it out of control).
    #[serde(default = "yes")]
    pub controllable: bool,
    /// The energy price above which it mines at a loss, per MWh (its strike where the
    /// operator set one); none when its earnings are unknown.
    #[serde(default)]
    pub breakeven_per_mwh: Option<f64>,
    /// The lowest power target its firmware takes, W: the controller lowers its target toward
    /// this before it sleeps any machine (none: it takes no target, and is only slept or woken).
    #[serde(default)]
    pub min_target_w: Option<f64>,
}

fn yes() -> bool {
    true
}

impl MachineInput {
    /// Whether it draws more than standby power.
    pub fn running(&self) -> bool {
        self.power_w > self.nominal_w * RUNNING_SHARE
    }

    /// The order machines are shed in: least profitable first (lowest breakeven; a machine
    /// whose earnings are unknown after those known), then least efficient, then by id.
    pub(super) fn shed_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        let breakeven = |m: &Self| m.breakeven_per_mwh.unwrap_or(f64::INFINITY);
        breakeven(a)
            .total_cmp(&breakeven(b))
            .then_with(|| b.efficiency_j_th.total_cmp(&a.efficiency_j_th))
            .then_with(|| a.id.cmp(&b.id))
    }

    /// The order machines are woken in: most profitable first (those of unknown earnings
    /// with them), then most efficient, then by id.
    pub(super) fn wake_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        let breakeven = |m: &Self| m.breakeven_per_mwh.unwrap_or(f64::INFINITY);
        breakeven(b)
            .total_cmp(&breakeven(a))
            .then_with(|| a.efficiency_j_th.total_cmp(&b.efficiency_j_th))
            .then_with(|| a.id.cmp(&b.id))
    }
}

/// What the controller knows at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// The site's allocation, kW.
    pub allocation_kw: f64,
    /// The site's emergency temperature, °C.
    pub emergency_temp_c: f64,
    /// The demand-response event in force, if any.
    pub grid: Option<GridEvent>,
    /// When the newest grid signal was received, µs.
    pub signal_us: Option<i64>,
    /// Prices of the last intervals, oldest first, per MWh.
    pub prices: Vec<f64>,
    /// Hottest site temperature, °C, and when the newest sensor reading was taken, µs.
    pub hottest_c: Option<f64>,
    /// When the newest sensor reading was taken, µs.
    pub sensors_us: Option<i64>,
    /// When the newest meter reading was taken, µs.
    pub meters_us: Option<i64>,
    /// The machines.
    pub machines: Vec<MachineInput>,
    /// Machines whose last command the actuator reported failed (they are not counted as
    /// about to change).
    #[serde(default)]
    pub failed: Vec<String>,
    /// An operator's load target, kW.
    #[serde(default)]
    pub forced_target_kw: Option<f64>,
    /// An operator holds the site: nothing is shed or woken.
    #[serde(default)]
    pub hold: bool,
    /// An operator's fan level.
    #[serde(default)]
    pub fan_pin: Option<u8>,
    /// The ids of the overrides in force (what shaped these inputs).
    #[serde(default)]
    pub overrides: Vec<String>,
}
