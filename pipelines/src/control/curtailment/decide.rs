//! Deciding in event time: a step's registry entries first, then its readings, signals and
//! overrides in (time, sequence) order, each site decided at every `eval_every` boundary they
//! cross with what was known then; a quiet site's clock moves on with processing time.

use adit_schemas::registry::{Machine, RegistryEntry};
use adit_schemas::time::span_micros;

use super::rows::{Produced, StepRecord, command_of, decision_row};
use super::site::{CurtailmentState, Item, apply_override, apply_signal};
use super::{Curtailment, gather, operator};
use crate::control::controller;
use crate::error::Result;

impl Curtailment {
    fn eval_us(&self) -> i64 {
        span_micros(self.config.eval_every)
    }

    /// One step's inputs: registry entries first, then readings and signals in time order.
    pub(super) fn observe(
        &self,
        state: &mut CurtailmentState,
        entries: &[&RegistryEntry],
        mut items: Vec<(i64, u64, Item)>,
        now_us: i64,
        caught_up: bool,
    ) -> Result<Produced> {
        for entry in entries {
            state.registry.apply(entry);
        }
        items.sort_by_key(|(ts, seq, _)| (*ts, *seq));
        let step = self.eval_us();
        let mut out = Produced::default();
        for (ts_us, _, item) in items {
            let site_id = item.site().to_string();
            if !state.sites.contains_key(&site_id) {
                let site = state.sites.entry(site_id.clone()).or_default();
                site.next_eval_us = ts_us - ts_us.rem_euclid(step) + step;
            }
            // Decide with what was known before this item, at every boundary it crosses.
            self.advance(state, &site_id, ts_us - 1, &mut out)?;
            let Some(site) = state.sites.get_mut(&site_id) else {
                continue;
            };
            match &item {
                Item::Reading(r) => site.devices.apply(ts_us, r),
                Item::Signal(g) => apply_signal(site, g, self.rules.strike_intervals),
                Item::Override(o) => apply_override(site, o),
            }
            site.event_us = site.event_us.max(ts_us);
            site.heard_now_us = now_us;
        }
        // Quiet sites: their clock moves on with processing time (less a step for late
        // readings, unless every input is known up to now).
        let clocks: Vec<(String, i64)> = state
            .sites
            .iter()
            .map(|(id, s)| {
                let clock = if caught_up {
                    now_us.max(s.event_us)
                } else {
                    s.event_us + (now_us - s.heard_now_us - step).max(0)
                };
                (id.clone(), clock)
            })
            .collect();
        for (site_id, clock) in clocks {
            self.advance(state, &site_id, clock, &mut out)?;
        }
        Ok(out)
    }

    /// Decides `site_id` at every boundary up to `until_us`.
    fn advance(
        &self,
        state: &mut CurtailmentState,
        site_id: &str,
        until_us: i64,
        out: &mut Produced,
    ) -> Result<()> {
        let step = self.eval_us();
        let Some(mut next) = state.sites.get(site_id).map(|s| s.next_eval_us) else {
            return Ok(());
        };
        // After a long gap, decide only the last hour of boundaries.
        if until_us - next > 360 * step {
            next = until_us - (until_us - next) % step - 360 * step;
        }
        while next <= until_us {
            self.decide(state, site_id, next, out)?;
            next += step;
        }
        if let Some(site) = state.sites.get_mut(site_id) {
            site.next_eval_us = next;
        }
        Ok(())
    }

    /// Decides `site_id` at `at_us`: the operators' commands heard since the last step first,
    /// then the controller's step.
    fn decide(
        &self,
        state: &mut CurtailmentState,
        site_id: &str,
        at_us: i64,
        out: &mut Produced,
    ) -> Result<()> {
        let Some(site) = state.sites.get_mut(site_id) else {
            return Ok(());
        };
        let view = &state.registry;
        let market = &state.market;
        let breakeven = |m: &Machine| market.breakeven(&self.config, view, m, at_us);
        if !site.operator.is_empty() {
            let load_kw = gather::inputs(&self.rules, view, site_id, site, at_us, &breakeven)
                .map_or(0.0, |i| {
                    i.machines.iter().map(|m| m.power_w).sum::<f64>() / 1000.0
                });
            operator::commands(site_id, site, load_kw, at_us, self.config.dry_run, out)?;
        }
        let Some(inputs) = gather::inputs(&self.rules, view, site_id, site, at_us, &breakeven)
        else {
            return Ok(());
        };
        let before = site.control.clone();
        let decisions = controller::step(&self.rules, &mut site.control, &inputs, at_us);
        if decisions.is_empty() {
            return Ok(());
        }
        let record = StepRecord {
            rules: self.rules.clone(),
            inputs,
        };
        let inputs_json = serde_json::to_string(&record).map_err(crate::Error::Encode)?;
        let state_json = serde_json::to_string(&before).map_err(crate::Error::Encode)?;
        for (i, d) in decisions.iter().enumerate() {
            let row = decision_row(
                site_id,
                at_us,
                i,
                d,
                self.config.dry_run,
                &inputs_json,
                &state_json,
            );
            if let Some(command) = command_of(&row, d) {
                site.failed.remove(&command.target);
                out.commands.push(command);
            }
            out.decisions.push(row);
        }
        Ok(())
    }
}
