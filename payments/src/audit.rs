//! The payer's own check of the blocks it pays from: a `confirmed` block event on the bus is a
//! claim, and money leaves the wallet only for blocks the node and the wallet vouch for. A
//! block's payouts count when the node shows the block on its main chain at least
//! `block_confirmations` deep, and the pool's wallet received its coinbase, no less than the
//! payouts of the block share between them.
//!
//! [`judge`] is pure; [`Verdict::Refused`] carries the reason logged and counted
//! (`adit_payments_blocks_unverified{pool}`). A refused block is asked about again next round
//! (the node may have been behind); a block found good is not asked again.

use crate::daemon::BlockSeen;

/// A block whose payouts the ledger counts, as the tables tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Its hash.
    pub hash: String,
    /// The height the pool recorded.
    pub height: u64,
    /// Σ of its payouts, atomic units.
    pub payouts: i64,
}

/// Whether a block's payouts may be paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The node and the wallet vouch for it.
    Good,
    /// Not (yet): why.
    Refused(String),
}

/// The verdict on `claimed`, given what the node says of its hash (`None`: it does not know
/// it) and what the pool's wallet received from its coinbase (`None`: nothing).
pub fn judge(
    claimed: &Claimed,
    seen: Option<&BlockSeen>,
    received: Option<u64>,
    block_confirmations: u64,
) -> Verdict {
    let refused = |why: String| Verdict::Refused(why);
    let Some(seen) = seen else {
        return refused("the node does not know this block".into());
    };
    if seen.orphan {
        return refused("the node holds this block off its main chain".into());
    }
    if seen.height != claimed.height {
        return refused(format!(
            "the node has this block at height {}, the pool recorded {}",
            seen.height, claimed.height
        ));
    }
    if seen.depth < block_confirmations {
        return refused(format!(
            "{} blocks deep on the node, {block_confirmations} needed",
            seen.depth
        ));
    }
    let Some(received) = received else {
        return refused("the pool's wallet holds nothing of this block's coinbase".into());
    };
    let payable = received.min(seen.reward);
    if claimed.payouts < 0 || claimed.payouts as u64 > payable {
        return refused(format!(
            "its payouts total {}, more than the {payable} its coinbase paid the pool",
            claimed.payouts
        ));
    }
    Verdict::Good
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(payouts: i64) -> Claimed {
        Claimed {
            hash: "ab".repeat(32),
            height: 100,
            payouts,
        }
    }

    fn seen(depth: u64, orphan: bool) -> BlockSeen {
        BlockSeen {
            height: 100,
            depth,
            orphan,
            reward: 600,
            miner_tx_hash: "cd".repeat(32),
        }
    }

    fn refused(v: Verdict) -> String {
        match v {
            Verdict::Refused(why) => why,
            Verdict::Good => panic!("expected a refusal"),
        }
    }

    #[test]
    fn a_block_is_paid_only_when_node_and_wallet_vouch_for_it() {
        let deep = seen(60, false);
        assert_eq!(
            judge(&claimed(594), Some(&deep), Some(600), 60),
            Verdict::Good
        );
        assert_eq!(
            judge(&claimed(600), Some(&deep), Some(600), 60),
            Verdict::Good
        );
        assert!(refused(judge(&claimed(1), None, None, 60)).contains("does not know"));
        assert!(
            refused(judge(&claimed(1), Some(&seen(90, true)), Some(600), 60))
                .contains("off its main chain")
        );
        assert!(
            refused(judge(&claimed(1), Some(&seen(59, false)), Some(600), 60))
                .contains("59 blocks deep")
        );
        assert!(
            refused(judge(&claimed(1), Some(&deep), None, 60)).contains("wallet holds nothing")
        );
        let moved = BlockSeen {
            height: 7,
            ..deep.clone()
        };
        assert!(refused(judge(&claimed(1), Some(&moved), Some(600), 60)).contains("height 7"));
    }

    #[test]
    fn payouts_above_what_the_pool_received_are_refused() {
        let deep = seen(60, false);
        // The wallet received less than the header's reward (a share of the coinbase paid
        // elsewhere): the smaller bounds the payouts.
        assert!(
            refused(judge(&claimed(501), Some(&deep), Some(500), 60)).contains("more than the 500")
        );
        assert!(
            refused(judge(&claimed(601), Some(&deep), Some(10_000), 60))
                .contains("more than the 600")
        );
        assert!(refused(judge(&claimed(-1), Some(&deep), Some(600), 60)).contains("-1"));
        // 594 XMR claimed for a real block of 0.6 XMR: refused.
        assert!(matches!(
            judge(&claimed(594_000_000_000_000), Some(&deep), Some(600), 60),
            Verdict::Refused(_)
        ));
    }
}
