//! The JSON-RPC request id, on its own so the codec and the error type (which carries the id a
//! refusal answers) both use it without depending on each other.

use serde::{Deserialize, Serialize};

/// A JSON-RPC request id. XMRig numbers its requests; strings and `null` are valid JSON-RPC too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id, as XMRig sends.
    Number(i64),
    /// A string id.
    String(String),
    /// No id, or `null`.
    Null,
}
