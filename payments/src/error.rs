//! Errors of the payer.

/// Why a payment step did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config value the payer cannot work with (its key is the full one, e.g.
    /// `payments.threshold`).
    #[error(transparent)]
    Config(#[from] adit_config::Invalid),
    /// The wallet or node could not be reached (or did not answer in time).
    #[error("{reason}")]
    Unreachable {
        /// Which, where, and the transport's error.
        reason: String,
    },
    /// The wallet or node answered with an error.
    #[error("the {service} refused {method}: {message} (code {code})")]
    Refused {
        /// `wallet` or `node`.
        service: &'static str,
        /// The RPC method.
        method: String,
        /// Its error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The wallet or node answered something the payer cannot read.
    #[error("the {service} answered {method} with something unexpected: {reason}")]
    Protocol {
        /// `wallet` or `node`.
        service: &'static str,
        /// The RPC method.
        method: String,
        /// What was wrong.
        reason: String,
    },
    /// The tables hold something the books cannot read.
    #[error("the payment books are inconsistent: {reason}")]
    Books {
        /// What was found.
        reason: String,
    },
    /// Reading balances failed.
    #[error("cannot read balances")]
    Sql(#[from] adit_sql::SqlError),
    /// Writing the `payments` table failed.
    #[error("cannot record payments")]
    Table(#[from] adit_sinks::Error),
    /// Encoding payment rows failed.
    #[error("cannot encode payment rows")]
    Encode(#[from] adit_schemas::Error),
    /// The hold on payments could not be written.
    #[error("cannot write the hold on payments: {0}")]
    Hold(String),
    /// The lease could not be taken or was lost.
    #[error("payments lease")]
    Lease(#[from] adit_bus::Error),
}

impl Error {
    /// Whether the next round may go better (the wallet or node was away or busy).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Refused { .. } | Self::Protocol { .. }
        )
    }
}

/// The payer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
