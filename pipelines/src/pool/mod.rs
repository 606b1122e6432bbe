//! The pool's pipelines: PPLNS payouts per block (`pplns`, over the pure window `split`) and
//! hashrate per miner, worker and pool (`hashrate`).

pub mod hashrate;
pub mod pplns;
pub mod split;
