//! The pipeline's settings (`[pipelines.curtailment]`), their checks, and the controller's rules
//! they make.

use std::collections::BTreeMap;
use std::time::Duration;

use adit_config::{Checked, check};
use adit_schemas::time::span_micros;
use serde::Deserialize;

use crate::control::controller::ControlRules;

/// Curtailment pipeline settings (`[pipelines.curtailment]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurtailmentConfig {
    /// Decide and record, send no commands.
    pub dry_run: bool,
    /// How often (event time) each site is decided.
    #[serde(with = "humantime_serde")]
    pub eval_every: Duration,
    /// How often the state goes into the epoch record.
    #[serde(with = "humantime_serde")]
    pub snapshot_every: Duration,
    /// Most load shed or added per minute, kW.
    pub ramp_kw_per_min: f64,
    /// A machine stays on at least this long before it may be shed.
    #[serde(with = "humantime_serde")]
    pub min_on: Duration,
    /// A machine stays off at least this long before it may be woken.
    #[serde(with = "humantime_serde")]
    pub min_off: Duration,
    /// No waking for this long after the last shed.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Headroom kept under the target when waking, kW.
    pub resume_margin_kw: f64,
    /// A machine commanded to sleep whose power did not drop is passed over this long.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Price above which mining stops being worth it, per MWh (unset: prices are ignored).
    pub strike_price: Option<f64>,
    /// Consecutive price intervals needed to cross the strike, both ways.
    pub strike_intervals: usize,
    /// Load allowed while the price is over the strike, kW.
    pub price_target_kw: f64,
    /// Sleep each machine whose breakeven is under the site's energy price for
    /// `strike_intervals` consecutive prices, least profitable first; wake it once as many
    /// prices are at or under it. A machine's breakeven is its customer's strike, else its
    /// model's, else what its nameplate hashrate earns at its pool's terms and coin price per
    /// MWh of its nameplate power.
    pub shed_unprofitable: bool,
    /// Strike prices per machine model, per MWh.
    pub strike_by_model: BTreeMap<String, f64>,
    /// Strike prices per hosting customer, per MWh (over the model's).
    pub strike_by_customer: BTreeMap<String, f64>,
    /// A coin price or a pool's terms older than this prices nothing: the machines it would
    /// price have no breakeven (a dead feed neither sleeps nor keeps asleep what it priced).
    #[serde(with = "humantime_serde")]
    pub market_stale: Duration,
    /// Upper bound of fan levels 1..=8, °C, ascending (9 above the last).
    pub fan_bands_c: Vec<f64>,
    /// How far under a band's bound the temperature must fall to step the fans down, °C.
    pub fan_hysteresis_c: f64,
    /// The fans step down only this long after their last change.
    #[serde(with = "humantime_serde")]
    pub fan_dwell: Duration,
    /// How far under the emergency limit the temperature must fall to lift an emergency, °C.
    pub emergency_clear_c: f64,
    /// The site's newest power figure older than this: failsafe.
    #[serde(with = "humantime_serde")]
    pub meter_stale: Duration,
    /// A temperature sensor's latest reading older than this: failsafe.
    #[serde(with = "humantime_serde")]
    pub sensor_stale: Duration,
    /// While a curtailment is in force, no grid signal for this long: failsafe (unset: the
    /// feed only speaks on change, so silence says nothing).
    #[serde(with = "humantime_serde")]
    pub signal_stale: Option<Duration>,
    /// Load to shed to in failsafe, kW (unset: hold the load as it is).
    pub failsafe_target_kw: Option<f64>,
}

impl Default for CurtailmentConfig {
    fn default() -> Self {
        let rules = ControlRules::default();
        let d = |us: i64| Duration::from_micros(us as u64);
        Self {
            dry_run: false,
            eval_every: Duration::from_secs(10),
            snapshot_every: Duration::from_secs(10),
            ramp_kw_per_min: rules.ramp_kw_per_min,
            min_on: d(rules.min_on_us),
            min_off: d(rules.min_off_us),
            cooldown: d(rules.cooldown_us),
            resume_margin_kw: rules.resume_margin_kw,
            command_timeout: d(rules.command_timeout_us),
            strike_price: rules.strike_price,
            strike_intervals: rules.strike_intervals,
            price_target_kw: rules.price_target_kw,
            shed_unprofitable: rules.shed_unprofitable,
            strike_by_model: BTreeMap::new(),
            strike_by_customer: BTreeMap::new(),
            market_stale: Duration::from_secs(3600),
            fan_bands_c: rules.fan_bands_c,
            fan_hysteresis_c: rules.fan_hysteresis_c,
            fan_dwell: d(rules.fan_dwell_us),
            emergency_clear_c: rules.emergency_clear_c,
            meter_stale: d(rules.meter_stale_us),
            sensor_stale: d(rules.sensor_stale_us),
            signal_stale: None,
            failsafe_target_kw: rules.failsafe_target_kw,
        }
    }
}

impl CurtailmentConfig {
    /// The pure core's rules.
    pub fn rules(&self) -> ControlRules {
        ControlRules {
            ramp_kw_per_min: self.ramp_kw_per_min,
            min_on_us: span_micros(self.min_on),
            min_off_us: span_micros(self.min_off),
            cooldown_us: span_micros(self.cooldown),
            resume_margin_kw: self.resume_margin_kw,
            command_timeout_us: span_micros(self.command_timeout),
            strike_price: self.strike_price,
            strike_intervals: self.strike_intervals,
            price_target_kw: self.price_target_kw,
            shed_unprofitable: self.shed_unprofitable,
            fan_bands_c: self.fan_bands_c.clone(),
            fan_hysteresis_c: self.fan_hysteresis_c,
            fan_dwell_us: span_micros(self.fan_dwell),
            emergency_clear_c: self.emergency_clear_c,
            meter_stale_us: span_micros(self.meter_stale),
            sensor_stale_us: span_micros(self.sensor_stale),
            signal_stale_us: self.signal_stale.map_or(i64::MAX, span_micros),
            failsafe_target_kw: self.failsafe_target_kw,
        }
    }

    /// Checks the values, naming the key.
    pub fn validate(&self) -> Checked {
        let key = |k: &str| format!("pipelines.curtailment.{k}");
        let finite_non_negative = |v: f64| v.is_finite() && v >= 0.0;
        check(
            (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&self.eval_every),
            &key("eval_every"),
            "must be from 100ms to 10m",
        )?;
        check(
            self.ramp_kw_per_min.is_finite() && self.ramp_kw_per_min > 0.0,
            &key("ramp_kw_per_min"),
            "must be more than 0",
        )?;
        for (k, v) in [
            ("resume_margin_kw", self.resume_margin_kw),
            ("price_target_kw", self.price_target_kw),
            ("fan_hysteresis_c", self.fan_hysteresis_c),
            ("emergency_clear_c", self.emergency_clear_c),
        ] {
            check(
                finite_non_negative(v),
                &key(k),
                "must be a number, 0 or more",
            )?;
        }
        check(
            self.failsafe_target_kw.is_none_or(finite_non_negative),
            &key("failsafe_target_kw"),
            "must be a number, 0 or more",
        )?;
        check(
            self.strike_price.is_none_or(f64::is_finite),
            &key("strike_price"),
            "must be a number",
        )?;
        for (k, strikes) in [
            ("strike_by_model", &self.strike_by_model),
            ("strike_by_customer", &self.strike_by_customer),
        ] {
            for (name, price) in strikes {
                check(
                    price.is_finite(),
                    &format!("{}.{name:?}", key(k)),
                    "must be a number",
                )?;
            }
        }
        check(
            (1..=96).contains(&self.strike_intervals),
            &key("strike_intervals"),
            "must be from 1 to 96",
        )?;
        check(
            self.fan_bands_c.len() == 8
                && self.fan_bands_c.windows(2).all(|w| w[0] < w[1])
                && self.fan_bands_c.iter().all(|v| v.is_finite()),
            &key("fan_bands_c"),
            "must be 8 ascending temperatures (upper bounds of levels 1 to 8)",
        )?;
        let week = Duration::from_secs(7 * 24 * 3600);
        for (k, d) in [
            ("min_on", self.min_on),
            ("min_off", self.min_off),
            ("cooldown", self.cooldown),
            ("command_timeout", self.command_timeout),
            ("fan_dwell", self.fan_dwell),
            ("meter_stale", self.meter_stale),
            ("sensor_stale", self.sensor_stale),
            ("signal_stale", self.signal_stale.unwrap_or_default()),
            ("market_stale", self.market_stale),
        ] {
            check(d <= week, &key(k), "must be at most 7 days")?;
        }
        for (k, d) in [
            ("meter_stale", self.meter_stale),
            ("sensor_stale", self.sensor_stale),
        ] {
            check(d >= self.eval_every, &key(k), "must be at least eval_every")?;
        }
        Ok(())
    }
}
