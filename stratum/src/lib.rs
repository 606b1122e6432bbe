//! adit's RandomX mining pool (DESIGN.md §6): XMRig's Stratum dialect over TCP or TLS, share
//! verification with RandomX off the async runtime, jobs cut from monerod's (or the simulated
//! chain's) templates, vardiff, per-IP limits and bans, block submission, and every share and
//! block published to the MINING stream. The protocol itself (codec, targets, RandomX, TLS, the
//! client) is `adit-protocol`'s. The pure layers (vardiff, blob, guard, jobs, session) do no I/O; the nodes' JSON-RPC is `adit-jsonrpc`'s; server, verify, node, simchain and pool build on them. It
//! never writes tables: the `shares` pipeline lands what it publishes.

// The protocol layer, under the names the pool's modules have always used.
use adit_protocol::{codec, randomx, target, tls};

mod bans;
mod blob;
mod chain;
mod connection;
#[cfg(test)]
mod credit;
mod error;
mod guard;
mod handlers;
mod hash_thread;
mod jobs;
pub mod maturity;
mod monerod;
mod node;
pub mod opensy;
mod pool;
mod server;
mod session;
mod simchain;
mod stats;
mod vardiff;
mod verify;

pub use adit_jsonrpc::{
    Admission, BreakerConfig, BreakerState, CallOutcome, RpcAuth, RpcConfig, admit_call,
    record_call,
};
pub use adit_protocol::{
    ALGO_MONERO, ALGO_OPENSY, Call, ClientOptions, ErrorObject, Id, Job, JobNotification,
    LineDecoder, LoginParams, LoginResult, PoolUrl, RandomXHasher, Request, Response,
    ServerMessage, SessionParams, SharedDataset, StatusResult, StratumClient, SubmitParams,
    TlsFiles, decode_target, encode_target, encode_target32, encode_target64, meets_difficulty,
    mine_pool, mine_until, parse_request, parse_server_message, to_line,
};
pub use adit_schemas::chain::Chain;
pub use bans::{Bans, sync as sync_bans};
pub use blob::{BlockTemplate, MinerBlob, block_id, cn_fast_hash, hashing_blob, tree_hash};
pub use chain::{BlockHeader, ChainTemplate, MoneroTemplate, NodeInfo, Template, Tip};
pub use connection::serve;
pub use error::{Error, Result};
pub use guard::{Guard, GuardConfig, Refusal};
pub use jobs::{BLOB_ID_BYTES, BlobId, JOBS_KEPT, JobFactory, JobRecord, RecentJobs, Work};
pub use monerod::MoneroRpc;
pub use node::{Node, watch_tip};
pub use pool::{PoolConfig, fetch_work, run as run_pool};
pub use server::{Pool, ServerConfig};
pub use session::{
    BlockFound, Candidate, Identity, Outcome, Reject, Session, SessionId, SubmitContext, Verdict,
    judge, parse_login,
};
pub use simchain::{SimChain, SimConfig};
pub use stats::PoolStats;
pub use vardiff::{Retarget, VardiffConfig, VardiffState, retarget};
pub use verify::{RandomXMode, Verifier};
