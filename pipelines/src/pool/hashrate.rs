//! Effective hashrate from accepted shares: Σ share difficulty / window length, per pool, miner
//! and worker, in 1-minute (`hashrate_1m`) and 1-hour (`hashrate_1h`) tables. Per miner or per
//! pool is a `GROUP BY` over the same rows.
//!
//! Windows are in event time (the share's `ts`, stamped by the pool server). Each pool has a
//! watermark ([`crate::watermark`]): its newest share time less `grace`, never past processing
//! time less `grace`. A minute closes when the watermark passes its end; when a pool has been
//! silent for `idle` (processing time), its open minutes older than `idle` close too, so the
//! last minute before miners leave is written. An hour closes with its last minute. A share for
//! a closed minute is late: counted, kept in `shares`, never used to rewrite a written row.

use adit_config::{Checked, check};
use adit_schemas::time::span_micros;
use std::collections::BTreeMap;
use std::time::Duration;

use adit_schemas::names;
use adit_schemas::results::{HashrateHour, HashrateMinute};
use adit_schemas::{AnyEvent, EventKind, to_batch};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, StepInput, StepOutput, StreamInput,
};
use crate::runtime::timer::Timer;
use crate::watermark::{Arrival, WatermarkConfig, Watermarks};

const MINUTE_US: i64 = 60_000_000;
const HOUR_US: i64 = 60 * MINUTE_US;

/// Hashrate settings; from config (`[pipelines.hashrate]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashrateConfig {
    /// Allowed lateness of a share behind its pool's newest.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// A pool silent this long has its open minutes closed.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// Minutes are closed at least this often.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
}

impl Default for HashrateConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            tick: Duration::from_secs(5),
        }
    }
}

impl HashrateConfig {
    /// Refuses values that cannot work, naming the key.
    pub fn validate(&self) -> Checked {
        check(
            !self.tick.is_zero(),
            "pipelines.hashrate.tick",
            "must be more than 0",
        )?;
        check(
            self.idle >= Duration::from_secs(60),
            "pipelines.hashrate.idle",
            "must be at least 1m",
        )?;
        check(
            self.grace < self.idle,
            "pipelines.hashrate.grace",
            "must be below pipelines.hashrate.idle",
        )
    }

    fn watermark(&self) -> WatermarkConfig {
        WatermarkConfig::new(self.grace, self.idle)
    }
}

/// Shares and summed difficulty of one worker in one window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Tally {
    shares: u64,
    difficulty: u128,
}

/// (pool, window start µs, miner, worker) → tally.
type Windows = BTreeMap<(String, i64, String, String), Tally>;

/// What survives a restart.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HashrateState {
    marks: Watermarks,
    /// When each pool last sent a share (processing time, µs).
    last_seen: BTreeMap<String, i64>,
    #[serde(with = "crate::serde_pairs")]
    minutes: Windows,
    #[serde(with = "crate::serde_pairs")]
    hours: Windows,
}

impl HashrateState {
    /// Whether `pool` has an open minute starting at `start`.
    fn open(&self, pool: &str, start: i64) -> bool {
        self.minutes
            .keys()
            .any(|(p, m, _, _)| p == pool && *m == start)
    }
}

/// The hashrate pipeline.
pub struct Hashrate {
    config: HashrateConfig,
}

impl Hashrate {
    /// The pipeline with `config`.
    pub fn new(config: HashrateConfig) -> Self {
        Self { config }
    }

    /// Takes one share; returns whether it was late.
    fn take(&self, state: &mut HashrateState, share: &adit_schemas::Share, now_us: i64) -> bool {
        let ts = share.ts.timestamp_micros();
        let arrival = state.marks.observe(&share.pool, &share.pool, ts, now_us);
        state.last_seen.insert(share.pool.clone(), now_us);
        let minute = ts.div_euclid(MINUTE_US) * MINUTE_US;
        let open = state.open(&share.pool, minute);
        let closed = state
            .marks
            .mark(&share.pool)
            .is_some_and(|m| minute + MINUTE_US <= m);
        if arrival == Arrival::Late && (closed && !open) {
            return true;
        }
        let key = (
            share.pool.clone(),
            minute,
            share.miner.clone(),
            share.worker.clone(),
        );
        let tally = state.minutes.entry(key).or_default();
        tally.shares += 1;
        tally.difficulty += u128::from(share.difficulty);
        false
    }

    /// Closes the minutes (and hours) each pool's watermark has passed.
    fn close(
        &self,
        state: &mut HashrateState,
        now_us: i64,
    ) -> (Vec<HashrateMinute>, Vec<HashrateHour>) {
        let idle_us = span_micros(self.config.idle);
        let pools: Vec<String> = state.marks.groups().map(str::to_string).collect();
        let mut limit = BTreeMap::new();
        for pool in pools {
            let mark = state
                .marks
                .advance(&pool, self.config.watermark(), now_us)
                .unwrap_or(i64::MIN);
            let silent = state
                .last_seen
                .get(&pool)
                .is_some_and(|seen| now_us.saturating_sub(*seen) >= idle_us);
            let bound = if silent {
                mark.max(now_us - idle_us)
            } else {
                mark
            };
            limit.insert(pool, bound);
        }
        let due = |w: &Windows, span: i64| -> Vec<(String, i64, String, String)> {
            w.keys()
                .filter(|(pool, start, _, _)| limit.get(pool).is_some_and(|l| start + span <= *l))
                .cloned()
                .collect()
        };
        let mut minutes = Vec::new();
        for key in due(&state.minutes, MINUTE_US) {
            let Some(tally) = state.minutes.remove(&key) else {
                continue;
            };
            let (pool, start, miner, worker) = key;
            let hour = start.div_euclid(HOUR_US) * HOUR_US;
            let into_hour = state
                .hours
                .entry((pool.clone(), hour, miner.clone(), worker.clone()))
                .or_default();
            into_hour.shares += tally.shares;
            into_hour.difficulty += tally.difficulty;
            minutes.push(HashrateMinute {
                pool,
                miner,
                worker,
                minute: at(start),
                shares: tally.shares as i64,
                difficulty: tally.difficulty as f64,
                hashrate_hs: tally.difficulty as f64 / 60.0,
                date: at(start).date_naive(),
            });
        }
        let mut hours = Vec::new();
        for key in due(&state.hours, HOUR_US) {
            let (pool, start, _, _) = &key;
            let open_minute = state
                .minutes
                .keys()
                .any(|(p, m, _, _)| p == pool && m.div_euclid(HOUR_US) * HOUR_US == *start);
            if open_minute {
                continue;
            }
            let Some(tally) = state.hours.remove(&key) else {
                continue;
            };
            let (pool, start, miner, worker) = key;
            hours.push(HashrateHour {
                pool,
                miner,
                worker,
                hour: at(start),
                shares: tally.shares as i64,
                difficulty: tally.difficulty as f64,
                hashrate_hs: tally.difficulty as f64 / 3600.0,
                date: at(start).date_naive(),
            });
        }
        (minutes, hours)
    }
}

fn at(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

impl Pipeline for Hashrate {
    type State = HashrateState;

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: "hashrate".into(),
            inputs: vec![StreamInput::of("shares", EventKind::Share)],
            outputs: vec![
                OutputTable::dated(names::TABLE_HASHRATE_1M, HashrateMinute::schema()),
                OutputTable::dated(names::TABLE_HASHRATE_1H, HashrateHour::schema()),
            ],
            timers: vec![Timer::Every {
                name: "close".into(),
                period: self.config.tick,
            }],
            snapshot_every: Duration::from_secs(10),
        }
    }

    async fn step(&self, state: &mut HashrateState, input: StepInput) -> Result<StepOutput> {
        let now_us = input.now.timestamp_micros();
        let mut out = StepOutput::default();
        for decoded in &input.inputs {
            for (_, event) in decoded.of(EventKind::Share) {
                if let AnyEvent::Share(share) = event
                    && share.accepted
                    && self.take(state, share, now_us)
                {
                    out.late += 1;
                }
            }
        }
        let (minutes, hours) = self.close(state, now_us);
        if !minutes.is_empty() {
            out.rows(
                names::TABLE_HASHRATE_1M,
                to_batch(names::TABLE_HASHRATE_1M, HashrateMinute::schema(), &minutes)?,
            );
        }
        if !hours.is_empty() {
            out.rows(
                names::TABLE_HASHRATE_1H,
                to_batch(names::TABLE_HASHRATE_1H, HashrateHour::schema(), &hours)?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_bus::DecodedBatch;
    use adit_schemas::Share;

    fn share(pool: &str, worker: &str, difficulty: u64, ts: DateTime<Utc>) -> (u64, AnyEvent) {
        (
            0,
            AnyEvent::Share(Share {
                pool: pool.into(),
                miner: "m".into(),
                worker: worker.into(),
                job_id: "j".into(),
                nonce: "00".into(),
                difficulty,
                height: 1,
                accepted: true,
                reason: None,
                ts,
                network_difficulty: None,
                reward: None,
                subsidy: None,
                team: None,
            }),
        )
    }

    fn input(now: DateTime<Utc>, shares: Vec<(u64, AnyEvent)>) -> StepInput {
        StepInput {
            now,
            ticks: vec![],
            inputs: vec![DecodedBatch {
                lo: 0,
                hi: 0,
                rows: BTreeMap::from([(EventKind::Share, shares)]),
                rejected: vec![],
            }],
        }
    }

    fn t(minute: i64, second: i64) -> DateTime<Utc> {
        at(1_800_000_000_000_000 + minute * MINUTE_US + second * 1_000_000)
    }

    #[tokio::test]
    async fn minutes_close_behind_the_watermark_and_late_shares_do_not_reopen_them() {
        let p = Hashrate::new(HashrateConfig::default());
        let mut state = HashrateState::default();
        let out = p
            .step(
                &mut state,
                input(
                    t(0, 30),
                    vec![
                        share("p", "a", 600, t(0, 1)),
                        share("p", "b", 300, t(0, 2)),
                        share("p", "a", 1_200, t(0, 30)),
                    ],
                ),
            )
            .await
            .unwrap();
        assert!(out.tables.is_empty(), "minute 0 is still open");
        // A share at 1:11 moves the watermark (grace 10 s) past the end of minute 0.
        let out = p
            .step(
                &mut state,
                input(t(1, 11), vec![share("p", "a", 60, t(1, 11))]),
            )
            .await
            .unwrap();
        let (_, batch) = &out.tables[0];
        assert_eq!(batch.num_rows(), 2, "workers a and b in minute 0");
        let late = p
            .step(
                &mut state,
                input(t(1, 12), vec![share("p", "b", 60, t(0, 59))]),
            )
            .await
            .unwrap();
        assert_eq!(late.late, 1);
        assert!(!state.open("p", t(0, 0).timestamp_micros()));
        // The state survives its snapshot (JSON) and goes on the same.
        let json = serde_json::to_vec(&state).unwrap();
        let mut back: HashrateState = serde_json::from_slice(&json).unwrap();
        assert!(back.open("p", t(1, 0).timestamp_micros()));
        let out = p
            .step(
                &mut back,
                input(t(2, 30), vec![share("p", "a", 60, t(2, 30))]),
            )
            .await
            .unwrap();
        assert_eq!(out.tables[0].1.num_rows(), 1, "minute 1: a");
    }

    #[tokio::test]
    async fn a_silent_pool_has_its_last_minute_and_hour_written() {
        let p = Hashrate::new(HashrateConfig::default());
        let mut state = HashrateState::default();
        p.step(
            &mut state,
            input(t(59, 0), vec![share("p", "a", 6_000, t(59, 0))]),
        )
        .await
        .unwrap();
        let out = p.step(&mut state, input(t(62, 0), vec![])).await.unwrap();
        let tables: Vec<&str> = out.tables.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(tables, [names::TABLE_HASHRATE_1M, names::TABLE_HASHRATE_1H]);
        let hour = &out.tables[1].1;
        let rate = hour
            .column_by_name("hashrate_hs")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap()
            .value(0);
        assert!((rate - 6_000.0 / 3_600.0).abs() < 1e-9);
    }
}
