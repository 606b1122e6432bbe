//! Per-share schemes (PPS, FPPS): what one accepted share is worth. Pure: no I/O, no clock,
//! integers only.
//!
//! A share judged at difficulty d, on a job whose block needs network difficulty nd, is d/nd of
//! a block in expectation. The pool credits it that much of the base, less its fee:
//!
//! `credit = ⌊d × base × (10 000 − fee_bps) / (nd × 10 000)⌋`
//!
//! where the base is the template's subsidy for PPS and its whole reward (subsidy and fees) for
//! FPPS. Each share is floored on its own, so the pool never credits more than the expected
//! value; every input is recorded beside the credit (`share_credits`), so anyone can recompute it.

use ethnum::U256;

use crate::pool::split::{BPS, Scheme};

/// Why a share cannot be credited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    /// The share carries no network difficulty or base (a rejected share, or an event from a
    /// version before per-share schemes).
    #[error("the share does not say its job's {0}")]
    Unpriced(&'static str),
    /// Network difficulty 0 prices nothing.
    #[error("the share's network difficulty is 0")]
    ZeroDifficulty,
    /// The fee is the whole reward or more.
    #[error("fee_bps {0} must be below 10000")]
    Fee(u64),
    /// The credit does not fit a signed 64-bit amount.
    #[error("the credit overflows a 64-bit amount")]
    Overflow,
    /// The scheme pays by block, not by share.
    #[error("{0:?} does not pay per share")]
    NotPerShare(Scheme),
}

/// What a share of the job is priced on, as its event records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priced {
    /// The share's difficulty.
    pub difficulty: u64,
    /// The job's network difficulty.
    pub network_difficulty: Option<u64>,
    /// The template's whole reward.
    pub reward: Option<u64>,
    /// The template's subsidy.
    pub subsidy: Option<u64>,
}

/// The base a share is priced on under `scheme`: the subsidy (PPS) or the whole reward (FPPS).
pub fn base(scheme: Scheme, share: &Priced) -> Result<u64, CreditError> {
    match scheme {
        Scheme::Pps => share.subsidy.ok_or(CreditError::Unpriced("subsidy")),
        Scheme::Fpps => share.reward.ok_or(CreditError::Unpriced("reward")),
        Scheme::Pplns | Scheme::Solo => Err(CreditError::NotPerShare(scheme)),
    }
}

/// The credit of one share: `⌊d × base × (10 000 − fee_bps) / (nd × 10 000)⌋`.
pub fn credit(
    difficulty: u64,
    network_difficulty: u64,
    base: u64,
    fee_bps: u64,
) -> Result<u64, CreditError> {
    if network_difficulty == 0 {
        return Err(CreditError::ZeroDifficulty);
    }
    if fee_bps >= BPS {
        return Err(CreditError::Fee(fee_bps));
    }
    let numerator = U256::from(difficulty) * U256::from(base) * U256::from(BPS - fee_bps);
    let exact = numerator / (U256::from(network_difficulty) * U256::from(BPS));
    u64::try_from(exact)
        .ok()
        .filter(|c| i64::try_from(*c).is_ok())
        .ok_or(CreditError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The formula in plain 128-bit arithmetic, for inputs where it fits: the reference,
    /// written apart from the 256-bit one.
    fn exact_floor(d: u64, nd: u64, base: u64, bps: u64) -> Option<u128> {
        let num = u128::from(d)
            .checked_mul(u128::from(base))?
            .checked_mul(u128::from(10_000 - bps))?;
        Some(num / (u128::from(nd) * 10_000))
    }

    #[test]
    fn a_share_at_the_network_difficulty_is_a_whole_block_less_the_fee() {
        assert_eq!(
            credit(1_000, 1_000, 600_000_000_000, 100),
            Ok(594_000_000_000)
        );
        assert_eq!(credit(1, 3, 10, 0), Ok(3));
        assert_eq!(credit(1, 3, 10, 9_999), Ok(0));
        assert_eq!(credit(1, 0, 10, 0), Err(CreditError::ZeroDifficulty));
        assert_eq!(credit(1, 1, 10, 10_000), Err(CreditError::Fee(10_000)));
        assert_eq!(credit(u64::MAX, 1, u64::MAX, 0), Err(CreditError::Overflow));
    }

    #[test]
    fn pps_prices_on_the_subsidy_and_fpps_on_the_whole_reward() {
        let share = Priced {
            difficulty: 5,
            network_difficulty: Some(10),
            reward: Some(1_100),
            subsidy: Some(1_000),
        };
        assert_eq!(base(Scheme::Pps, &share), Ok(1_000));
        assert_eq!(base(Scheme::Fpps, &share), Ok(1_100));
        assert!(base(Scheme::Pplns, &share).is_err());
        let old = Priced {
            subsidy: None,
            ..share
        };
        assert_eq!(
            base(Scheme::Pps, &old),
            Err(CreditError::Unpriced("subsidy"))
        );
    }

    proptest! {
        /// The credit is the formula's floor, never more than the expected value, and less
        /// than one unit under it.
        #[test]
        fn the_credit_is_the_floor_of_the_expected_value(
            d in 1u64..1 << 40,
            nd in 1u64..1 << 40,
            base in 0u64..1 << 44,
            bps in 0u64..10_000,
        ) {
            let want = exact_floor(d, nd, base, bps).unwrap();
            match credit(d, nd, base, bps) {
                Ok(got) => {
                    prop_assert_eq!(u128::from(got), want);
                    let scaled = u128::from(got) * u128::from(nd) * 10_000;
                    let exact = u128::from(d) * u128::from(base) * u128::from(10_000 - bps);
                    prop_assert!(scaled <= exact);
                    prop_assert!(exact - scaled < u128::from(nd) * 10_000);
                }
                Err(e) => {
                    prop_assert_eq!(e, CreditError::Overflow);
                    prop_assert!(want > i64::MAX as u128);
                }
            }
        }
    }
}
