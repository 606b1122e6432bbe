//! Checking a published PPLNS window ([`adit_schemas::window`]) from the view alone: the
//! commitment is recomputed from the published block, rules and shares and compared with the
//! one the split recorded; the split is run again over the published shares and compared,
//! miner by miner, with the published payouts. `adit verify payout` prints the [`Check`].
//!
//! The view names miners by id only, in the order the split pays them (by login). That order
//! is the pool's word: it moves any payout by less than one atomic unit (the cumulative floors
//! of [`crate::pool::split`]), and everything else is checked.

use adit_schemas::window::{PublishedWindow, miner_id, parse_miner_id, window_hash};
use serde::Serialize;

use crate::pool::split::{Factor, Scheme, SplitRules, Unfilled, WindowShare, split};

/// Most shares a published window may hold to be checked (a window of 2 × the network
/// difficulty at the lowest share difficulty a pool would set stays well under it).
pub const MAX_SHARES: usize = 20_000_000;

/// What checking a published window found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Whether everything checked agrees.
    pub equal: bool,
    /// The commitment recomputed from the view.
    pub computed_hash: String,
    /// What disagrees, in words (empty when `equal`).
    pub differences: Vec<String>,
    /// The miner asked about, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miner: Option<MinerCheck>,
}

/// One miner's payout, as published and as recomputed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinerCheck {
    /// Its id in the view.
    pub id: String,
    /// Its shares' difficulty in the window (the last share counts in part), ×the factor's
    /// denominator.
    pub weight: String,
    /// What the view says it was paid (0 when it is not in the view).
    pub published: u64,
    /// What the split of the published shares pays it.
    pub recomputed: u64,
}

/// Checks `view`; with `miner` (a login), also that miner's own payout.
pub fn check(view: &PublishedWindow, miner: Option<&str>) -> Check {
    let mut differences = Vec::new();
    let h = &view.header;
    let rules = match rules(view) {
        Ok(rules) => Some(rules),
        Err(why) => {
            differences.push(why);
            None
        }
    };
    let ids: Option<Vec<_>> = view.miners.iter().map(|id| parse_miner_id(id)).collect();
    let shares_ok = view.shares.len() <= MAX_SHARES
        && view
            .shares
            .iter()
            .all(|&[_, m, _]| usize::try_from(m).is_ok_and(|m| m < view.miners.len()));
    let computed_hash = match (&ids, shares_ok) {
        (Some(ids), true) => window_hash(
            h,
            view.shares
                .iter()
                .map(|&[seq, m, d]| (seq, ids[m as usize], d)),
        ),
        _ => {
            differences.push(format!(
                "the view is malformed: {} miners, {} shares (at most {MAX_SHARES}), every miner a 32-hex-character id and every share's miner an index among them",
                view.miners.len(),
                view.shares.len()
            ));
            String::new()
        }
    };
    if !computed_hash.is_empty() && computed_hash != view.window_hash {
        differences.push(format!(
            "the shares and rules published hash to {computed_hash}, the split recorded {}",
            view.window_hash
        ));
    }
    if view.payouts.len() != view.miners.len() {
        differences.push(format!(
            "{} payouts for {} miners",
            view.payouts.len(),
            view.miners.len()
        ));
    }
    let mut mine = miner.map(|m| MinerCheck {
        id: miner_id(&h.pool, m),
        weight: "0".into(),
        published: 0,
        recomputed: 0,
    });
    if let (Some(rules), Some(_), true) = (rules, &ids, shares_ok) {
        recompute(view, &rules, &mut differences, mine.as_mut());
    }
    Check {
        equal: differences.is_empty(),
        computed_hash,
        differences,
        miner: mine,
    }
}

/// The split rules the view states.
fn rules(view: &PublishedWindow) -> Result<SplitRules, String> {
    let h = &view.header;
    let factor = Factor::parse(&h.factor).map_err(|e| format!("factor: {e}"))?;
    let unfilled: Unfilled = h
        .unfilled
        .parse()
        .map_err(|_| format!("unfilled: {:?} is neither pool nor scale", h.unfilled))?;
    let scheme: Scheme = h
        .scheme
        .parse()
        .map_err(|_| format!("scheme: {:?} is not pplns, solo, pps or fpps", h.scheme))?;
    Ok(SplitRules {
        scheme,
        factor,
        fee_bps: h.fee_bps,
        unfilled,
    })
}

/// Runs the split again over the published shares and notes where it disagrees with the view.
fn recompute(
    view: &PublishedWindow,
    rules: &SplitRules,
    differences: &mut Vec<String>,
    mine: Option<&mut MinerCheck>,
) {
    let h = &view.header;
    // Names that sort in the published order, so the split pays in that order.
    let ranks: Vec<String> = (0..view.miners.len()).map(|i| format!("{i:020}")).collect();
    let walk = view
        .shares
        .iter()
        .map(|&[seq, miner, difficulty]| WindowShare {
            seq,
            miner: miner as u32,
            difficulty,
        });
    let split = match split(h.reward, h.network_difficulty, rules, walk, &ranks) {
        Ok(split) => split,
        Err(e) => {
            differences.push(format!("the published window cannot be split: {e}"));
            return;
        }
    };
    if split.shares != view.shares.len() as u64 {
        differences.push(format!(
            "the window fills after {} of the {} shares published",
            split.shares,
            view.shares.len()
        ));
    }
    for (what, recomputed, published) in [
        ("fee", split.fee, view.fee),
        ("paid", split.paid, view.paid),
        ("remainder", split.remainder, view.remainder),
    ] {
        if recomputed != published {
            differences.push(format!(
                "{what}: the split gives {recomputed}, the view says {published}"
            ));
        }
    }
    let mut recomputed = vec![(0u128, 0u64); view.miners.len()];
    for p in &split.payouts {
        // The rank names parse back to the index they were made from.
        if let Some(slot) = p
            .miner
            .parse::<usize>()
            .ok()
            .and_then(|i| recomputed.get_mut(i))
        {
            *slot = (p.weight, p.amount);
        }
    }
    for (i, (&(_, amount), id)) in recomputed.iter().zip(&view.miners).enumerate() {
        let published = view.payouts.get(i).copied().unwrap_or(0);
        if amount != published {
            differences.push(format!(
                "miner {id}: the split pays {amount}, the view says {published}"
            ));
        }
    }
    if let Some(mine) = mine
        && let Some(i) = view.miners.iter().position(|id| *id == mine.id)
    {
        mine.weight = recomputed[i].0.to_string();
        mine.recomputed = recomputed[i].1;
        mine.published = view.payouts.get(i).copied().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::window::{WindowHeader, miner_id_bytes};
    use proptest::prelude::*;

    /// A view as the pool publishes it, built the way the pipeline and the API build theirs:
    /// shares newest first over `logins`, the split over the logins, ids in login order.
    fn publish(
        shares: &[(u64, usize, u64)],
        logins: &[&str],
        factor: &str,
        scheme: Scheme,
    ) -> PublishedWindow {
        let header = WindowHeader {
            pool: "main".into(),
            height: 42,
            hash: "cd".repeat(32),
            reward: 600_000_000_007,
            network_difficulty: 1_000,
            factor: factor.into(),
            fee_bps: 150,
            unfilled: "pool".into(),
            scheme: <&str>::from(scheme).into(),
        };
        let rules = SplitRules {
            scheme,
            factor: Factor::parse(factor).unwrap(),
            fee_bps: 150,
            unfilled: Unfilled::Pool,
        };
        let walk = shares.iter().map(|&(seq, m, d)| WindowShare {
            seq,
            miner: m as u32,
            difficulty: d,
        });
        let s = split(
            header.reward,
            header.network_difficulty,
            &rules,
            walk,
            logins,
        )
        .unwrap();
        let counted = &shares[..s.shares as usize];
        let hash = window_hash(
            &header,
            counted
                .iter()
                .map(|&(seq, m, d)| (seq, miner_id_bytes("main", logins[m]), d)),
        );
        // Published: miners in login order, shares pointing at that order.
        let order: Vec<&str> = s.payouts.iter().map(|p| p.miner.as_str()).collect();
        let at = |m: usize| order.iter().position(|o| *o == logins[m]).unwrap() as u64;
        PublishedWindow {
            fee: s.fee,
            paid: s.paid,
            remainder: s.remainder,
            window_hash: hash,
            miners: order.iter().map(|m| miner_id("main", m)).collect(),
            payouts: s.payouts.iter().map(|p| p.amount).collect(),
            shares: counted.iter().map(|&(seq, m, d)| [seq, at(m), d]).collect(),
            header,
        }
    }

    const LOGINS: [&str; 4] = ["dave", "alice", "carol", "bob"];

    fn stream() -> impl Strategy<Value = Vec<(u64, usize, u64)>> {
        prop::collection::vec((0..LOGINS.len(), 1..700u64), 1..40).prop_map(|v| {
            let n = v.len() as u64;
            v.into_iter()
                .enumerate()
                .map(|(i, (m, d))| (n - i as u64, m, d))
                .collect()
        })
    }

    #[test]
    fn a_view_as_published_checks_equal_for_every_miner() {
        let shares = [(9, 0, 600), (8, 1, 500), (7, 3, 400), (6, 2, 900)];
        let view = publish(&shares, &LOGINS, "2", Scheme::Pplns);
        for login in LOGINS {
            let c = check(&view, Some(login));
            assert!(c.equal, "{login}: {c:?}");
            let m = c.miner.unwrap();
            assert_eq!(m.published, m.recomputed, "{login}");
        }
        // Carol's share crosses W = 2000 (600 + 500 + 400 = 1500, so 500 of her 900 count).
        let carol = check(&view, Some("carol")).miner.unwrap();
        assert_eq!(carol.weight, "500");
        assert!(carol.published > 0);
        let stranger = check(&view, Some("eve")).miner.unwrap();
        assert_eq!((stranger.published, stranger.recomputed), (0, 0));
    }

    #[test]
    fn solo_pays_the_finder_the_reward_less_the_fee_and_checks() {
        let shares = [(9, 2, 600), (8, 1, 500), (7, 3, 400)];
        let view = publish(&shares, &LOGINS, "2", Scheme::Solo);
        assert_eq!(
            view.shares,
            vec![[9, 0, 600]],
            "the window is the finding share"
        );
        let carol = check(&view, Some("carol"));
        assert!(carol.equal, "{carol:?}");
        let fee = 600_000_000_007 * 150 / 10_000;
        assert_eq!(carol.miner.unwrap().published, 600_000_000_007 - fee);
        assert_eq!(view.remainder, 0);
        let mut pplns = view;
        pplns.header.scheme = "pplns".into();
        assert!(!check(&pplns, None).equal, "the scheme is committed to");
    }

    proptest! {
        /// Any one published number changed, and the check says not equal.
        #[test]
        fn any_published_share_changed_is_seen(
            shares in stream(), which in any::<prop::sample::Index>(), field in 0..3usize,
            factor in prop::sample::select(vec!["1", "2", "0.5", "1.25"]),
            scheme in prop::sample::select(vec![Scheme::Pplns, Scheme::Solo]),
        ) {
            let view = publish(&shares, &LOGINS, factor, scheme);
            prop_assert!(check(&view, None).equal);
            let mut altered = view.clone();
            let i = which.index(altered.shares.len());
            let share = &mut altered.shares[i];
            match field {
                0 => share[0] += 1_000,
                1 if altered.miners.len() > 1 => share[1] = (share[1] + 1) % altered.miners.len() as u64,
                _ => share[2] += 1,
            }
            if altered.shares != view.shares {
                let c = check(&altered, None);
                prop_assert!(!c.equal, "{:?}", altered.shares);
            }
        }

        /// A changed payout, fee, rule or block field is seen too.
        #[test]
        fn any_published_figure_changed_is_seen(
            shares in stream(), what in 0..8usize,
            scheme in prop::sample::select(vec![Scheme::Pplns, Scheme::Solo]),
        ) {
            let mut view = publish(&shares, &LOGINS, "2", scheme);
            match what {
                0 => view.payouts[0] += 1,
                1 => view.fee -= 1,
                2 => view.header.reward += 1,
                3 => view.header.network_difficulty += 1,
                4 => view.header.fee_bps += 1,
                5 => view.header.unfilled = "scale".into(),
                6 => view.header.scheme = "pps".into(),
                _ => view.miners[0] = miner_id("main", "mallory"),
            }
            prop_assert!(!check(&view, None).equal);
        }
    }

    #[test]
    fn a_malformed_view_is_not_equal_and_does_not_panic() {
        let view = publish(&[(3, 0, 600), (2, 1, 900)], &LOGINS, "2", Scheme::Pplns);
        let mut bad = view.clone();
        bad.shares[0][1] = u64::MAX;
        assert!(!check(&bad, None).equal);
        let mut bad = view.clone();
        bad.miners[0] = "not hex".into();
        assert!(!check(&bad, None).equal);
        let mut bad = view.clone();
        bad.header.factor = "-1".into();
        assert!(!check(&bad, None).equal);
        let mut bad = view.clone();
        bad.header.network_difficulty = 0;
        assert!(!check(&bad, None).equal);
        let mut bad = view;
        bad.header.fee_bps = u64::MAX;
        assert!(!check(&bad, None).equal);
    }
}
