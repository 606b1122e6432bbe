//! adit's RandomX mining pool (DESIGN.md §6): XMRig's Stratum dialect over TCP or TLS, share
//! verification with RandomX off the async runtime, jobs cut from monerod's (or the simulated
//! chain's) templates, vardiff, per-IP limits and bans, block submission, and every share and
//! block published to the MINING stream. The pure layers (codec, target, vardiff, blob, breaker,
//! guard, jobs, session) do no I/O; server, verify, node, simchain and pool build on them. It
//! never writes tables: the `shares` pipeline lands what it publishes.

mod blob;
mod breaker;
mod client;
mod codec;
mod error;
mod guard;
mod jobs;
pub mod maturity;
mod node;
mod pool;
mod randomx;
mod server;
mod session;
mod simchain;
mod stats;
mod target;
mod tls;
mod vardiff;
mod verify;

pub use blob::{BlockTemplate, MinerBlob, block_id, cn_fast_hash, hashing_blob, tree_hash};
pub use breaker::{Admission, BreakerConfig, BreakerState, CallOutcome, admit_call, record_call};
pub use client::{StratumClient, mine_until};
pub use codec::{
    Call, ErrorObject, Id, Job, JobNotification, LineDecoder, LoginParams, LoginResult, Request,
    Response, ServerMessage, SessionParams, StatusResult, SubmitParams, parse_request,
    parse_server_message, to_line,
};
pub use error::{Error, Result};
pub use guard::{Guard, GuardConfig, Refusal};
pub use jobs::{JobFactory, JobRecord, RecentJobs, Work};
pub use node::{BlockHeader, MoneroRpc, Node, NodeInfo, RpcConfig, Template, Tip, watch_tip};
pub use pool::{PoolConfig, fetch_work, run as run_pool};
pub use randomx::{RandomXHasher, SharedDataset};
pub use server::{BlockFound, Pool, ServerConfig, serve};
pub use session::{Candidate, Identity, Reject, Session, Verdict, judge, parse_login};
pub use simchain::{SimChain, SimConfig};
pub use stats::PoolStats;
pub use target::{
    decode_target, encode_target, encode_target32, encode_target64, meets_difficulty,
};
pub use tls::TlsFiles;
pub use vardiff::{Retarget, VardiffConfig, VardiffState, retarget};
pub use verify::{RandomXMode, Verifier};
