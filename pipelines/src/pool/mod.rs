//! The pool's pipelines: PPLNS payouts per block (`pplns`, over the pure window `split`),
//! checking a block's published window (`proof`), and hashrate per miner, worker and pool
//! (`hashrate`).

pub mod hashrate;
pub mod pplns;
pub mod proof;
pub mod split;
