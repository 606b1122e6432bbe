//! The chains adit mines and pays on, by the name config and records use.

/// A chain: what the pool mines and what the payer pays in.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    serde::Serialize
)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Monero (XMR): monerod, monero-wallet-rpc, or the simulated Monero chain.
    #[default]
    Monero,
    /// OpenSY (SYL): its node and the node's wallet, or the simulated OpenSY node.
    OpenSy,
}

impl Chain {
    /// Its name in config (`monero`, `opensy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Monero => "monero",
            Chain::OpenSy => "opensy",
        }
    }
}
