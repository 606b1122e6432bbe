//! PPLNS: how one block's reward is split over the shares that led to it. Pure: no I/O, no
//! clock, integers only.
//!
//! The window is W = factor × the block's network difficulty, in share difficulty. Walking back
//! from the share that found the block (included), each accepted share of the pool weighs its
//! difficulty; the share that crosses W counts only the part that fills W, older ones nothing.
//! The fee is ⌊R × fee_bps / 10 000⌋ and D = R − fee is split by weight with cumulative floors
//! over the miners in name order, so every payout is within one atomic unit of its exact share
//! and the payouts sum to exactly ⌊D × filled / W⌋ (D when the window is full, or when an
//! unfilled window is scaled to what it holds).
//!
//! The factor is an exact ratio num/den; weights are kept multiplied by den so W = difficulty ×
//! num is an integer, and products are taken in 256 bits, so no reward or difficulty a `u64`
//! can hold overflows.

use std::fmt;

use ethnum::U256;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Basis points in one whole.
pub const BPS: u64 = 10_000;
/// Most decimal places a factor may have.
const FACTOR_DECIMALS: u32 = 6;
/// Largest factor accepted: windows longer than this many network difficulties make no sense.
const FACTOR_MAX: u64 = 1_000;

/// An exact, positive window factor (`2.0`, `1.25`), held as num/den. Its `Debug` is the
/// decimal a config file writes (so the generated reference shows the default).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Factor {
    num: u64,
    den: u64,
}

impl Factor {
    /// The factor written as `text`: a decimal number above 0 and at most 1000, with at most
    /// six decimal places.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?}: {why}");
        let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if whole.is_empty() && frac.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad("not a decimal number like 2.0"));
        }
        let frac = frac.trim_end_matches('0');
        let decimals = u32::try_from(frac.len()).unwrap_or(u32::MAX);
        if decimals > FACTOR_DECIMALS {
            return Err(bad("at most six decimal places"));
        }
        let den = 10u64.pow(decimals);
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad("too large"))?
        };
        if whole > FACTOR_MAX {
            return Err(bad("must be at most 1000"));
        }
        let frac: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad("not a decimal number"))?
        };
        let num = whole * den + frac;
        if num == 0 {
            return Err(bad("must be more than 0"));
        }
        if num > FACTOR_MAX * den {
            return Err(bad("must be at most 1000"));
        }
        let g = gcd(num, den);
        Ok(Self {
            num: num / g,
            den: den / g,
        })
    }

    /// Numerator and denominator, in lowest terms.
    pub fn ratio(self) -> (u64, u64) {
        (self.num, self.den)
    }
}

impl Default for Factor {
    fn default() -> Self {
        Self { num: 2, den: 1 }
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.num / self.den;
        let mut rest = self.num % self.den;
        write!(f, "{whole}")?;
        if rest > 0 {
            f.write_str(".")?;
            while rest > 0 {
                rest *= 10;
                write!(f, "{}", rest / self.den)?;
                rest %= self.den;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Factor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Number(f64),
            Text(String),
        }
        // A float is read back through its shortest decimal form (2.0 → "2", 1.1 → "1.1"),
        // which is the number the operator wrote.
        let text = match Text::deserialize(d)? {
            Text::Number(n) if n.is_finite() && n > 0.0 => format!("{n}"),
            Text::Number(n) => {
                return Err(serde::de::Error::custom(format!(
                    "{n}: must be more than 0"
                )));
            }
            Text::Text(t) => t,
        };
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// What happens to the part of the reward an unfilled window (a young pool) does not cover.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Unfilled {
    /// Each miner gets D × weight / W; the rest stays with the pool.
    #[default]
    Pool,
    /// The window is scaled to what it holds: D is split by weight / filled.
    Scale,
}

/// How a block's reward is paid.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Scheme {
    /// Over the last N shares: the window W = factor × network difficulty.
    #[default]
    Pplns,
    /// The miner whose share found the block takes the reward less the fee; the window is
    /// that one share.
    Solo,
    /// Pay per share: each accepted share is credited its expected value on the template's
    /// subsidy, less the fee, from the pool's own balance ([`crate::pool::pps`]); the pool
    /// keeps its blocks.
    Pps,
    /// Full pay per share: as PPS, on the template's whole reward (subsidy and fees).
    Fpps,
}

impl Scheme {
    /// Whether shares are paid one by one as they come (PPS, FPPS) rather than by block.
    pub fn per_share(self) -> bool {
        matches!(self, Scheme::Pps | Scheme::Fpps)
    }
}

/// A pool's split rules; from config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitRules {
    /// How the reward is paid.
    pub scheme: Scheme,
    /// W = factor × network difficulty.
    pub factor: Factor,
    /// The pool's fee, basis points of the reward (below 10 000).
    pub fee_bps: u64,
    /// What an unfilled window does.
    pub unfilled: Unfilled,
}

/// One accepted share of the block's pool, as the walk sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShare {
    /// Its stream sequence.
    pub seq: u64,
    /// Its miner, as an index into the names passed to [`split`].
    pub miner: u32,
    /// The difficulty it was judged against.
    pub difficulty: u64,
}

/// One miner's part of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerPayout {
    /// The miner.
    pub miner: String,
    /// Its weight in the window (share difficulty × the factor's denominator).
    pub weight: u128,
    /// Atomic units earned.
    pub amount: u64,
}

/// A block's reward, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The block reward R.
    pub reward: u64,
    /// The pool's fee, ⌊R × fee_bps / 10 000⌋.
    pub fee: u64,
    /// Σ payouts.
    pub paid: u64,
    /// R − fee − paid: what an unfilled window leaves with the pool.
    pub remainder: u64,
    /// W × the factor's denominator.
    pub window: u128,
    /// The weight the window holds (≤ `window`), in the same unit.
    pub filled: u128,
    /// The factor's denominator: `window / scale` is W in share difficulty.
    pub scale: u64,
    /// Shares that count (the last may count in part).
    pub shares: u64,
    /// Sequence of the oldest share that counts.
    pub first_seq: Option<u64>,
    /// Sequence of the newest share that counts (the one that found the block).
    pub last_seq: Option<u64>,
    /// Every miner with weight, in name order.
    pub payouts: Vec<MinerPayout>,
}

/// Why a block cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A window over zero difficulty weighs nothing.
    #[error("the block has network difficulty 0, so its window is empty")]
    ZeroDifficulty,
    /// The fee is the whole reward or more.
    #[error("fee_bps {0} must be below 10000")]
    Fee(u64),
    /// A share names a miner outside the names given.
    #[error("share {seq} names miner #{miner}, not among the {known} known")]
    UnknownMiner {
        /// The share.
        seq: u64,
        /// Its miner index.
        miner: u32,
        /// How many names there are.
        known: usize,
    },
}

/// Splits `reward` of a block at `network_difficulty` over `shares` (the pool's accepted shares,
/// newest first, starting with the one that found the block), whose miners are indexes into
/// `miners`.
pub fn split<S: AsRef<str>>(
    reward: u64,
    network_difficulty: u64,
    rules: &SplitRules,
    shares: impl IntoIterator<Item = WindowShare>,
    miners: &[S],
) -> Result<Split, SplitError> {
    if network_difficulty == 0 {
        return Err(SplitError::ZeroDifficulty);
    }
    if rules.fee_bps >= BPS {
        return Err(SplitError::Fee(rules.fee_bps));
    }
    match rules.scheme {
        Scheme::Solo => return solo(reward, rules, shares, miners),
        Scheme::Pps | Scheme::Fpps => return Ok(kept(reward)),
        Scheme::Pplns => {}
    }
    let (num, den) = rules.factor.ratio();
    let window = u128::from(network_difficulty) * u128::from(num);
    let mut weights = vec![0u128; miners.len()];
    let mut remaining = window;
    let (mut count, mut first_seq, mut last_seq) = (0u64, None, None);
    for share in shares {
        if remaining == 0 {
            break;
        }
        let slot = weights
            .get_mut(share.miner as usize)
            .ok_or(SplitError::UnknownMiner {
                seq: share.seq,
                miner: share.miner,
                known: miners.len(),
            })?;
        let weight = (u128::from(share.difficulty) * u128::from(den)).min(remaining);
        *slot += weight;
        remaining -= weight;
        count += 1;
        first_seq = Some(share.seq);
        last_seq = last_seq.or(Some(share.seq));
    }
    let filled = window - remaining;

    let fee = mul_div(reward, u128::from(rules.fee_bps), u128::from(BPS));
    let distributable = reward - fee;
    let denominator = match rules.unfilled {
        Unfilled::Scale if filled > 0 => filled,
        _ => window,
    };
    let mut named: Vec<(&str, u128)> = weights
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0)
        .map(|(i, w)| (miners[i].as_ref(), *w))
        .collect();
    named.sort_unstable_by(|a, b| a.0.cmp(b.0));

    let mut payouts = Vec::with_capacity(named.len());
    let (mut cumulative, mut paid_so_far) = (0u128, 0u64);
    for (miner, weight) in named {
        cumulative += weight;
        let due = mul_div(distributable, cumulative, denominator);
        payouts.push(MinerPayout {
            miner: miner.to_string(),
            weight,
            amount: due - paid_so_far,
        });
        paid_so_far = due;
    }
    Ok(Split {
        reward,
        fee,
        paid: paid_so_far,
        remainder: distributable - paid_so_far,
        window,
        filled,
        scale: den,
        shares: count,
        first_seq,
        last_seq,
        payouts,
    })
}

/// SOLO: the first of `shares` (the one that found the block) takes the reward less the fee.
fn solo<S: AsRef<str>>(
    reward: u64,
    rules: &SplitRules,
    shares: impl IntoIterator<Item = WindowShare>,
    miners: &[S],
) -> Result<Split, SplitError> {
    let fee = mul_div(reward, u128::from(rules.fee_bps), u128::from(BPS));
    let finder = shares.into_iter().next();
    let payouts = match finder {
        Some(share) => {
            let miner = miners
                .get(share.miner as usize)
                .ok_or(SplitError::UnknownMiner {
                    seq: share.seq,
                    miner: share.miner,
                    known: miners.len(),
                })?;
            vec![MinerPayout {
                miner: miner.as_ref().to_string(),
                weight: u128::from(share.difficulty),
                amount: reward - fee,
            }]
        }
        None => Vec::new(),
    };
    let paid = payouts.first().map_or(0, |p| p.amount);
    let weight = finder.map_or(0, |s| u128::from(s.difficulty));
    Ok(Split {
        reward,
        fee,
        paid,
        remainder: reward - fee - paid,
        window: weight,
        filled: weight,
        scale: 1,
        shares: u64::from(finder.is_some()),
        first_seq: finder.map(|s| s.seq),
        last_seq: finder.map(|s| s.seq),
        payouts,
    })
}

/// A block of a per-share scheme: the pool paid its shares as they came, so it keeps the
/// block whole (no fee, nothing paid, no window).
fn kept(reward: u64) -> Split {
    Split {
        reward,
        fee: 0,
        paid: 0,
        remainder: reward,
        window: 0,
        filled: 0,
        scale: 1,
        shares: 0,
        first_seq: None,
        last_seq: None,
        payouts: Vec::new(),
    }
}

/// ⌊a × b / c⌋ for c > 0 and a result that fits in `u64` (b ≤ c), computed in 256 bits.
fn mul_div(a: u64, b: u128, c: u128) -> u64 {
    let exact = U256::from(a) * U256::from(b) / U256::from(c);
    u64::try_from(exact).expect("b ≤ c keeps the quotient within a u64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(factor: &str, fee_bps: u64, unfilled: Unfilled) -> SplitRules {
        SplitRules {
            scheme: Scheme::Pplns,
            factor: Factor::parse(factor).unwrap(),
            fee_bps,
            unfilled,
        }
    }

    fn share(seq: u64, miner: u32, difficulty: u64) -> WindowShare {
        WindowShare {
            seq,
            miner,
            difficulty,
        }
    }

    fn amounts(s: &Split) -> Vec<(&str, u64)> {
        s.payouts
            .iter()
            .map(|p| (p.miner.as_str(), p.amount))
            .collect()
    }

    fn balanced(s: &Split) {
        assert_eq!(s.fee + s.paid + s.remainder, s.reward, "{s:?}");
        assert_eq!(s.payouts.iter().map(|p| p.amount).sum::<u64>(), s.paid);
    }

    #[test]
    fn factors_are_exact_ratios() {
        assert_eq!(Factor::parse("2").unwrap().ratio(), (2, 1));
        assert_eq!(Factor::parse("2.0").unwrap().ratio(), (2, 1));
        assert_eq!(Factor::parse("1.25").unwrap().ratio(), (5, 4));
        assert_eq!(Factor::parse("0.000001").unwrap().ratio(), (1, 1_000_000));
        assert_eq!(Factor::parse("1.25").unwrap().to_string(), "1.25");
        for bad in ["0", "0.0", "-1", "abc", "1.0000001", "1001", "", ".", "1e3"] {
            assert!(Factor::parse(bad).is_err(), "{bad:?} accepted");
        }
        #[derive(Deserialize)]
        struct C {
            f: Factor,
        }
        let c: C = toml::from_str("f = 1.1").unwrap();
        assert_eq!(c.f.ratio(), (11, 10));
        assert!(toml::from_str::<C>("f = -2.0").is_err());
    }

    #[test]
    fn the_share_that_crosses_the_window_counts_in_part() {
        // W = 2 × 100 = 200; shares newest first: a 120, b 50, a 100 (only 30 counts), b 999.
        let shares = [
            share(9, 0, 120),
            share(7, 1, 50),
            share(5, 0, 100),
            share(3, 1, 999),
        ];
        let s = split(
            1_000,
            100,
            &rules("2", 0, Unfilled::Pool),
            shares,
            &["a", "b"],
        )
        .unwrap();
        assert_eq!(s.filled, 200);
        assert_eq!(s.shares, 3);
        assert_eq!((s.first_seq, s.last_seq), (Some(5), Some(9)));
        assert_eq!(amounts(&s), [("a", 750), ("b", 250)]);
        balanced(&s);
    }

    #[test]
    fn the_fee_is_taken_first_and_rounded_down() {
        let s = split(
            10_001,
            10,
            &rules("1", 150, Unfilled::Pool),
            [share(1, 0, 10)],
            &["a"],
        )
        .unwrap();
        assert_eq!(s.fee, 150); // ⌊10 001 × 150 / 10 000⌋
        assert_eq!(amounts(&s), [("a", 9_851)]);
        balanced(&s);
    }

    #[test]
    fn an_unfilled_window_keeps_the_rest_or_scales() {
        let shares = [share(2, 0, 30), share(1, 1, 10)];
        let pool = split(
            1_000,
            100,
            &rules("1", 0, Unfilled::Pool),
            shares,
            &["a", "b"],
        )
        .unwrap();
        assert_eq!(amounts(&pool), [("a", 300), ("b", 100)]);
        assert_eq!(pool.remainder, 600);
        balanced(&pool);
        let scaled = split(
            1_000,
            100,
            &rules("1", 0, Unfilled::Scale),
            shares,
            &["a", "b"],
        )
        .unwrap();
        assert_eq!(amounts(&scaled), [("a", 750), ("b", 250)]);
        assert_eq!(scaled.remainder, 0);
        balanced(&scaled);
        let empty = split(
            1_000,
            100,
            &rules("1", 100, Unfilled::Scale),
            [],
            &[] as &[&str],
        )
        .unwrap();
        assert!(empty.payouts.is_empty());
        assert_eq!((empty.fee, empty.remainder), (10, 990));
    }

    #[test]
    fn cumulative_floors_lose_nothing_and_favour_no_one() {
        // Three equal miners and 100 units: 33, 33, 34 in some order, summing to 100.
        let shares = [share(3, 0, 1), share(2, 1, 1), share(1, 2, 1)];
        let s = split(
            100,
            3,
            &rules("1", 0, Unfilled::Pool),
            shares,
            &["c", "b", "a"],
        )
        .unwrap();
        assert_eq!(s.paid, 100);
        assert_eq!(amounts(&s), [("a", 33), ("b", 33), ("c", 34)]);
        for p in &s.payouts {
            assert!(p.amount.abs_diff(100 / 3) <= 1);
        }
    }

    #[test]
    fn extremes_of_u64_do_not_overflow() {
        let big = i64::MAX as u64;
        let shares = [share(2, 0, big), share(1, 1, big)];
        let s = split(
            big,
            big,
            &rules("1000", 9_999, Unfilled::Pool),
            shares,
            &["a", "b"],
        )
        .unwrap();
        balanced(&s);
        assert_eq!(s.fee, (u128::from(big) * 9_999 / 10_000) as u64);
        let s = split(
            u64::MAX,
            u64::MAX,
            &rules("0.5", 0, Unfilled::Scale),
            shares,
            &["a", "b"],
        )
        .unwrap();
        balanced(&s);
        assert_eq!(s.paid, u64::MAX);
    }

    #[test]
    fn ten_thousand_miners_share_exactly() {
        let names: Vec<String> = (0..10_000).map(|i| format!("miner{i:05}")).collect();
        let shares: Vec<WindowShare> = (0..50_000u64)
            .rev()
            .map(|seq| share(seq, (seq % 10_000) as u32, 1 + seq % 7))
            .collect();
        let s = split(
            600_000_000_007,
            20_000,
            &rules("2", 100, Unfilled::Pool),
            shares,
            &names,
        )
        .unwrap();
        assert_eq!(s.filled, s.window);
        assert_eq!(s.paid, 600_000_000_007 - s.fee);
        balanced(&s);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let r = rules("2", 0, Unfilled::Pool);
        assert_eq!(
            split(1, 0, &r, [], &[] as &[&str]),
            Err(SplitError::ZeroDifficulty)
        );
        let fee = rules("2", 10_000, Unfilled::Pool);
        assert_eq!(
            split(1, 1, &fee, [], &[] as &[&str]),
            Err(SplitError::Fee(10_000))
        );
        assert!(matches!(
            split(1, 1, &r, [share(4, 3, 1)], &["a"]),
            Err(SplitError::UnknownMiner { seq: 4, .. })
        ));
    }

    mod against_a_plain_reading {
        //! The split checked against a second, plain implementation of the rules in the module
        //! header, on inputs small enough for naive `u128` arithmetic.
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        /// The rules read plainly: expected fee, each miner's exact weight, and the total due.
        fn reference(
            reward: u64,
            nd: u64,
            (num, den): (u64, u64),
            fee_bps: u64,
            unfilled: Unfilled,
            shares: &[(u32, u64)],
        ) -> (u64, HashMap<u32, u128>, u128, u128) {
            let fee = u128::from(reward) * u128::from(fee_bps) / 10_000;
            let window = u128::from(nd) * u128::from(num);
            let mut taken = 0u128;
            let mut weights = HashMap::new();
            for &(miner, difficulty) in shares {
                let want = u128::from(difficulty) * u128::from(den);
                let take = want.min(window - taken);
                if take == 0 {
                    break;
                }
                *weights.entry(miner).or_insert(0) += take;
                taken += take;
            }
            let denominator = if unfilled == Unfilled::Scale && taken > 0 {
                taken
            } else {
                window
            };
            (fee as u64, weights, taken, denominator)
        }

        proptest! {
            #[test]
            fn payouts_match_the_rules(
                reward in 0u64..(1 << 62),
                nd in 1u64..1_000_000,
                num in 1u64..50,
                den in prop::sample::select(vec![1u64, 2, 4, 10, 100]),
                fee_bps in 0u64..10_000,
                scale in any::<bool>(),
                shares in prop::collection::vec((0u32..6, 1u64..2_000_000), 0..200),
            ) {
                let unfilled = if scale { Unfilled::Scale } else { Unfilled::Pool };
                let g = gcd(num, den);
                let rules = SplitRules {
                    scheme: Scheme::Pplns,
                    factor: Factor { num: num / g, den: den / g },
                    fee_bps,
                    unfilled,
                };
                let names = ["f", "e", "d", "c", "b", "a"];
                let walk = shares.iter().enumerate().map(|(i, &(miner, difficulty))| WindowShare {
                    seq: 1_000 - i as u64,
                    miner,
                    difficulty,
                });
                let s = split(reward, nd, &rules, walk, &names).unwrap();
                let (fee, weights, filled, denominator) =
                    reference(reward, nd, (num / g, den / g), fee_bps, unfilled, &shares);
                let d = u128::from(reward - fee);
                prop_assert_eq!(s.fee, fee);
                prop_assert_eq!(s.filled, filled);
                prop_assert_eq!(u128::from(s.paid), d * filled / denominator);
                prop_assert_eq!(s.fee + s.paid + s.remainder, reward);
                prop_assert_eq!(s.payouts.len(), weights.len());
                for p in &s.payouts {
                    let index = names.iter().position(|n| *n == p.miner).unwrap() as u32;
                    prop_assert_eq!(p.weight, weights[&index]);
                    // Within one atomic unit of the exact share D × weight / denominator.
                    let exact_times_den = d * p.weight;
                    let paid_times_den = u128::from(p.amount) * denominator;
                    prop_assert!(paid_times_den.abs_diff(exact_times_den) < denominator,
                        "{} got {} of exact {}", p.miner, p.amount, exact_times_den as f64 / denominator as f64);
                }
                prop_assert_eq!(s.payouts.iter().map(|p| p.amount).sum::<u64>(), s.paid);
            }
        }
    }

    proptest::proptest! {
        /// SOLO against its rule alone: the finding share's miner gets R − ⌊R × fee_bps / 10 000⌋,
        /// whatever else the walk holds, and nothing is left over.
        #[test]
        fn solo_pays_the_finder_the_reward_less_the_fee(
            reward in 0..u64::MAX,
            fee_bps in 0..BPS,
            walk in proptest::collection::vec((0u32..4, 1u64..u64::MAX), 1..20),
        ) {
            let names = ["a", "b", "c", "d"];
            let shares = walk.iter().enumerate().map(|(i, &(m, d))| share(100 - i as u64, m, d));
            let rules = SplitRules { scheme: Scheme::Solo, ..rules("2", fee_bps, Unfilled::Pool) };
            let s = split(reward, 1, &rules, shares, &names).unwrap();
            let fee = (u128::from(reward) * u128::from(fee_bps) / u128::from(BPS)) as u64;
            proptest::prop_assert_eq!(amounts(&s), vec![(names[walk[0].0 as usize], reward - fee)]);
            proptest::prop_assert_eq!((s.fee, s.paid, s.remainder, s.shares), (fee, reward - fee, 0, 1));
            balanced(&s);
        }
    }
}
