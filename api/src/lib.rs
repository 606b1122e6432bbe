//! adit's HTTP API.
//!
//! A read-only SQL API over every Delta table (`POST /api/v1/sql`, `GET /api/v1/sql?q=`) that
//! answers in JSON, NDJSON, CSV, Arrow IPC or Parquet with per-query time, memory and row
//! limits; REST views of the pool, the farm, alerts, overrides, bans and dashboards
//! ([`routes`], a module per subject); an OpenAPI document of every route; health, readiness
//! and Prometheus metrics endpoints; bearer tokens (static or JWT) with roles, HTTPS when a
//! certificate is configured, a lockout of addresses that fail it, and an audit trail of every
//! change ([`auth`]). Other crates' routes (HTTP ingest) are mounted here behind the role they
//! need, and the web page (`adit_web`) beside them. The same engine serves PostgreSQL and
//! Flight SQL clients through `adit_wire`. It never writes a table.

pub mod auth;
pub mod chain;
pub mod error;
pub mod format;
pub mod hub;
pub mod openapi;
pub mod origin;
mod publish;
pub mod routes;
pub mod server;
pub mod state;
pub mod traffic;
pub mod view_sql;

pub use auth::{JwtConfig, Role, TokenConfig, Tokens};
pub use error::{QueryError, Result};
pub use server::{router, serve};
pub use state::AppState;
