//! `adit bench split`: the PPLNS split of one block over a full window, beside a baseline pass
//! over the same shares that only sums their difficulty (the least any split must do), and the
//! commitment to the window the split records (issue 59: SHA-256 over every share counted).

use std::time::{Duration, Instant};

use adit_pipelines::pool::pplns::commitment;
use adit_pipelines::pool::split::{Factor, SplitRules, Unfilled, WindowShare, split};
use adit_schemas::window::WindowHeader;
use anyhow::Context;

/// Splits a block over a window of `shares` shares from `miners` miners, `rounds` times, and
/// prints the time per block beside the baseline pass.
pub fn split_bench(shares: usize, miners: usize, rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        shares > 0 && miners > 0 && rounds > 0,
        "shares, miners and rounds must be at least 1"
    );
    let names: Vec<String> = (0..miners).map(|i| format!("miner-{i:06}")).collect();
    // Difficulties 1000..=5000 in a fixed pattern; the window is exactly their sum, so every
    // share counts and the last one fills it.
    let window: Vec<WindowShare> = (0..shares)
        .map(|i| WindowShare {
            seq: (shares - i) as u64,
            miner: (i % miners) as u32,
            difficulty: 1_000 + (i as u64 * 7_919) % 4_001,
        })
        .collect();
    let total: u64 = window.iter().map(|s| s.difficulty).sum();
    let rules = SplitRules {
        scheme: Default::default(),
        factor: Factor::parse("1").map_err(anyhow::Error::msg)?,
        fee_bps: 100,
        unfilled: Unfilled::Pool,
    };
    println!("PPLNS split: {shares} shares in the window, {miners} miners, {rounds} rounds");

    let header = WindowHeader {
        pool: "main".into(),
        height: 1,
        hash: "00".repeat(32),
        reward: 600_000_000_000,
        network_difficulty: total,
        factor: "1".into(),
        fee_bps: 100,
        unfilled: "pool".into(),
        scheme: "pplns".into(),
    };
    let mut baseline = Vec::with_capacity(rounds);
    let mut timed = Vec::with_capacity(rounds);
    let mut committed = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut sums = vec![0u128; miners];
        for s in &window {
            sums[s.miner as usize] += u128::from(s.difficulty);
        }
        std::hint::black_box(&sums);
        baseline.push(started.elapsed());

        let started = Instant::now();
        let result = split(
            600_000_000_000,
            total,
            &rules,
            window.iter().copied(),
            &names,
        )
        .context("split")?;
        timed.push(started.elapsed());
        let started = Instant::now();
        std::hint::black_box(commitment(&header, window.iter().copied(), &names));
        committed.push(started.elapsed());
        anyhow::ensure!(
            result.fee + result.paid + result.remainder == result.reward
                && result.payouts.len() == miners.min(shares),
            "the split did not balance"
        );
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (base, took) = (median(&mut baseline), median(&mut timed));
    let commit = median(&mut committed);
    println!(
        "  baseline (sum per miner): {:.2} ms\n  split per block:          {:.2} ms (median), {:.1}x the baseline (target < 50 ms)",
        base.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() / base.as_secs_f64().max(1e-9)
    );
    println!(
        "  commitment per block:     {:.2} ms (median), {:.1}x the split",
        commit.as_secs_f64() * 1e3,
        commit.as_secs_f64() / took.as_secs_f64().max(1e-9)
    );
    Ok(())
}
