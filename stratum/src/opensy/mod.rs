//! OpenSY (SYL), a Bitcoin Core fork whose proof of work is RandomX, as adit mines it
//! (issue 58; the protocol facts, each cited to the node's source, are in
//! `docs/src/pool/opensy-protocol.md`):
//! - [`node`]: the node as the pool uses it (work, submission, headers);
//! - [`network`]: mainnet, the test networks and regtest, and what tells them apart;
//! - [`pow`]: the RandomX key schedule and the header check the node makes;
//! - [`address`]: OpenSY addresses to the scripts they pay;
//! - [`rpc`]: the node's RPC (templates, `submitblock`'s BIP22 answer, headers, addresses);
//! - [`simnode`]: the simulated node, with the real one's RPC surface and block checks;
//! - [`template`]: `getblocktemplate`'s reply to per-job blocks (coinbase with the job's extra
//!   nonce, merkle root, the 80-byte header miners hash).

pub mod address;
pub mod network;
pub mod node;
pub mod pow;
pub mod rpc;
pub mod simnode;
pub mod template;

pub use address::{AddressError, script_for};
pub use network::Network;
pub use node::OpenSyNode;
pub use pow::{
    KEY_BLOCK_INTERVAL, PowRefusal, REGTEST_LIMIT_BITS, check, key_bytes, key_height, rpc_order,
    target,
};
pub use rpc::{ChainInfo, HeaderInfo, OpenSyRpc, Submitted};
pub use simnode::{SimNode, SimNodeConfig};
pub use template::{GbtReply, GbtTransaction, NONCE_OFFSET, OpenSyTemplate};
