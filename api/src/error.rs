//! The API's errors and their one mapping to HTTP status and body.

use adit_schemas::api::ErrorBody;
use adit_sql::SqlError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything a query request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No bearer token, or one that is not valid here (a cluster worker's included).
    #[error("{0}")]
    Unauthorized(#[from] adit_auth::AuthError),
    /// The token's role is below what the route needs.
    #[error("this needs the {needed} role; the token has {has}")]
    Forbidden {
        /// Role the route needs.
        needed: &'static str,
        /// Role the token has.
        has: &'static str,
    },
    /// A field of the request body only a higher role may set or change.
    #[error("{field}: {why}; this needs the {needed} role, the token has {has}")]
    FieldForbidden {
        /// The field.
        field: String,
        /// Why it is kept to that role.
        why: &'static str,
        /// Role the field needs.
        needed: &'static str,
        /// Role the token has.
        has: &'static str,
    },
    /// The request itself is malformed (no SQL, unknown format…).
    #[error("{0}")]
    BadRequest(String),
    /// A field of the request body is refused.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// This client failed to authenticate too often and is banned for a while.
    #[error("too many failed authentications from this address; retry in {retry_after_s} s")]
    Banned {
        /// Seconds until the ban ends.
        retry_after_s: u64,
    },
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// A request that must be signed by an address's own wallet is not.
    #[error("{0}")]
    BadSignature(String),
    /// The change conflicts with the current state (stale revision, still referenced).
    #[error("{0}")]
    Conflict(String),
    /// Too many requests of this kind are open; the caller should retry later.
    #[error("{0}")]
    TooBusy(String),
    /// A service this needs (NATS) is not there or failing.
    #[error("{0}")]
    Unavailable(String),
    /// The statement was refused or stopped, or the tables could not be read.
    #[error(transparent)]
    Sql(#[from] adit_sql::SqlError),
    /// Something on our side failed (table storage, encoding).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<adit_sql::admission::Busy> for QueryError {
    fn from(busy: adit_sql::admission::Busy) -> Self {
        Self::TooBusy(busy.0)
    }
}

impl From<adit_web::DashboardError> for QueryError {
    fn from(e: adit_web::DashboardError) -> Self {
        use adit_web::DashboardError as D;
        match e {
            D::Unavailable(_) => Self::Unavailable(e.to_string()),
            D::Conflict(m) => Self::Conflict(m),
            D::Full(m) => Self::TooBusy(m),
            D::Broken(m) => Self::Internal(m),
        }
    }
}

/// Result with [`QueryError`].
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

impl QueryError {
    /// Status and stable code for this error.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden { .. } | Self::FieldForbidden { .. } => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::BadSignature(_) => (StatusCode::FORBIDDEN, "bad_signature"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::TooBusy(_) => (StatusCode::TOO_MANY_REQUESTS, "too_busy"),
            Self::Banned { .. } => (StatusCode::TOO_MANY_REQUESTS, "banned"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Sql(e) => sql_status(e),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// Status and stable code for a statement's failure.
fn sql_status(e: &SqlError) -> (StatusCode, &'static str) {
    match e {
        SqlError::Empty => (StatusCode::BAD_REQUEST, "bad_request"),
        SqlError::ReadOnly(_) => (StatusCode::FORBIDDEN, "read_only"),
        SqlError::InvalidSql(_) => (StatusCode::BAD_REQUEST, "invalid_sql"),
        SqlError::TooComplex(_) => (StatusCode::BAD_REQUEST, "statement_too_complex"),
        SqlError::Timeout { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "query_timeout"),
        SqlError::MemoryLimit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"),
        SqlError::RowLimit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "row_limit"),
        SqlError::Cluster(_) => (StatusCode::BAD_GATEWAY, "cluster_unavailable"),
        SqlError::Storage(_) | SqlError::Listing { .. } | SqlError::Engine(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        let mut body = ErrorBody::new(code, self.to_string());
        if let Self::InvalidField { field, .. } | Self::FieldForbidden { field, .. } = &self {
            body = body.with_field(field.clone());
        }
        let mut response = (status, Json(body)).into_response();
        if let Self::Banned { retry_after_s } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_s),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_crates_refusals_keep_their_status() {
        let busy = QueryError::from(adit_sql::admission::Busy("8 statements".into()));
        assert_eq!(
            busy.status_code(),
            (StatusCode::TOO_MANY_REQUESTS, "too_busy")
        );
        use adit_web::DashboardError as D;
        for (e, status) in [
            (
                D::Unavailable("down".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (D::Conflict("stale".into()), StatusCode::CONFLICT),
            (D::Full("full".into()), StatusCode::TOO_MANY_REQUESTS),
            (D::Broken("bad".into()), StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            assert_eq!(QueryError::from(e).status_code().0, status);
        }
    }
}
