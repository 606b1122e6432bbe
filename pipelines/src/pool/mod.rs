//! The pool's pipelines: payouts per block (`pplns`, over the pure window `split`) and per
//! share (PPS and FPPS credits, priced by `pps`), checking a block's published window
//! (`proof`), and hashrate per miner, worker and pool (`hashrate`).

pub mod hashrate;
pub mod pplns;
pub mod pps;
pub mod proof;
pub mod split;
