//! A JSON-RPC error as the simulated node answers it, whichever part refuses.

/// A JSON-RPC error: code and message, as the real node answers them.
#[derive(Debug)]
pub(super) struct RpcFault(pub(super) i64, pub(super) String);
