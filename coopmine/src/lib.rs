//! The cooperative mining cluster (DESIGN.md §7): a coordinator that mines upstream as one miner
//! and serves workers over gRPC with mutual TLS, giving each a slice of the nonce space.
//!
//! Not built yet: this crate holds its place in the workspace until its issue. It will depend on
//! `stratum` for the upstream client (`adit_stratum::StratumClient`) and RandomX hashing.
