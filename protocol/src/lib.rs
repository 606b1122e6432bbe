//! XMRig's Stratum dialect and what speaking it needs, shared by the pool (`stratum`) and the
//! cluster (`coopmine`): the codec (bytes ↔ typed messages, bounded lines), share targets, a
//! job blob's nonce, RandomX hashing, TLS (server, client, mutual, and HTTPS for adit's HTTP
//! servers), and a typed client over TCP or TLS. No pool logic: sessions, verification threads and the node live in `stratum`.

pub mod client;
pub mod codec;
mod error;
pub mod https;
mod id;
pub mod randomx;
pub mod target;
pub mod tls;
pub mod work;

pub use client::{
    ClientOptions, Connection, PoolUrl, StratumClient, connect, mine_pool, mine_until,
};
pub use codec::{
    ALGO_MONERO, ALGO_OPENSY, Call, ErrorObject, Id, Job, JobNotification, LineDecoder,
    LoginParams, LoginResult, Request, Response, ServerMessage, SessionParams, StatusResult,
    SubmitParams, parse_request, parse_server_message, to_line,
};
pub use error::{Error, Result};
pub use randomx::{RandomXHasher, SharedDataset, hash_with};
pub use target::{
    decode_target, encode_target, encode_target32, encode_target64, meets_difficulty,
};
pub use tls::TlsFiles;
pub use work::{job_nonce_offset, nonce_hex, nonce_offset, parse_nonce, put_nonce};
