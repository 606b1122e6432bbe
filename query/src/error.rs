//! The query API's errors and their one mapping to HTTP status and body.

use adit_schemas::api::ErrorBody;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything a query request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No or unknown bearer token.
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// The token's role is below what the route needs.
    #[error("this needs the {needed} role; the token has {has}")]
    Forbidden {
        /// Role the route needs.
        needed: &'static str,
        /// Role the token has.
        has: &'static str,
    },
    /// The request itself is malformed (no SQL, unknown format…).
    #[error("{0}")]
    BadRequest(String),
    /// The statement would change something or read outside the tables.
    #[error("read-only API: {0}")]
    ReadOnly(String),
    /// The SQL does not parse or plan (syntax, unknown table or column…).
    #[error("{0}")]
    InvalidSql(String),
    /// The query ran longer than its time limit.
    #[error("query exceeded the time limit of {limit_ms} ms")]
    Timeout {
        /// The limit.
        limit_ms: u64,
    },
    /// The query needed more memory than its limit.
    #[error("query exceeded the memory limit of {limit_bytes} bytes: {detail}")]
    MemoryLimit {
        /// The limit.
        limit_bytes: usize,
        /// DataFusion's account.
        detail: String,
    },
    /// The result has more rows than the row limit.
    #[error("result exceeds the row limit of {limit} rows; add a LIMIT or aggregate")]
    RowLimit {
        /// The limit.
        limit: usize,
    },
    /// Something on our side failed (table storage, encoding).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`QueryError`].
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

impl QueryError {
    /// Status and stable code for this error.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::ReadOnly(_) => (StatusCode::FORBIDDEN, "read_only"),
            Self::InvalidSql(_) => (StatusCode::BAD_REQUEST, "invalid_sql"),
            Self::Timeout { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "query_timeout"),
            Self::MemoryLimit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"),
            Self::RowLimit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "row_limit"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        (status, Json(ErrorBody::new(code, self.to_string()))).into_response()
    }
}
