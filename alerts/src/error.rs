//! Why the alerts crate failed.

use crate::rules::InvalidRule;

/// Errors of rules and their evaluation.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// A rule was refused.
    #[error("invalid rule: {0}")]
    Invalid(#[from] InvalidRule),
    /// The rules bucket could not be used.
    #[error("rules bucket: {0}")]
    Kv(String),
    /// The notification channels' HTTP client could not be made.
    #[error("notification client: {0}")]
    HttpClient(#[from] adit_egress::ClientError),
    /// A config value cannot work (it names the key).
    #[error(transparent)]
    Config(#[from] adit_config::Invalid),
    /// A rules file could not be read.
    #[error("rules file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A receiver or route given over the API cannot work (the message names the field).
    #[error("{0}")]
    Refused(String),
    /// A receiver or route given over the API conflicts with what is configured (a receiver
    /// of the config file, a route that names the receiver being removed).
    #[error("{0}")]
    Conflict(String),
    /// A statement over the tables failed.
    #[error("query: {0}")]
    Query(String),
    /// An alert could not be published.
    #[error("publishing an alert: {0}")]
    Publish(#[from] adit_bus::Error),
}

impl AlertsError {
    pub(crate) fn kv(e: impl std::fmt::Display) -> Self {
        Self::Kv(e.to_string())
    }
}

/// The crate's result.
pub type Result<T, E = AlertsError> = std::result::Result<T, E>;
