//! What keeping dashboards can fail with, sorted so the API can answer each as its status.

/// Everything the dashboards' store and the shipped dashboards can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The bucket cannot be reached (a 503).
    #[error("the dashboards bucket: {0}")]
    Unavailable(String),
    /// A write over a revision someone else wrote, or a creation of an id that exists (a 409).
    #[error("{0}")]
    Conflict(String),
    /// The bucket is nearly full (a 429 until dashboards are deleted).
    #[error("{0}")]
    Full(String),
    /// A stored or shipped dashboard that does not parse or pass its checks (a 500).
    #[error("{0}")]
    Broken(String),
}

/// A result of the dashboards' store.
pub type Result<T> = std::result::Result<T, DashboardError>;
