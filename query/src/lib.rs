//! adit's HTTP face.
//!
//! A read-only SQL API over every Delta table (`POST /api/v1/sql`, `GET /api/v1/sql?q=`) that
//! answers in JSON, NDJSON, CSV, Arrow IPC or Parquet with per-query time, memory and row
//! limits; REST views of the pool (stats, blocks, payments, miners, workers); an OpenAPI
//! document of every route; health, readiness and Prometheus metrics endpoints; bearer tokens
//! (static or JWT) with roles, HTTPS when a certificate is configured, a lockout of addresses that fail it, and an audit trail of every change.
//! Other crates' routes (HTTP ingest) are mounted here behind the role they need. The same SQL
//! is served to PostgreSQL clients (psql, JDBC tools, Grafana) over their wire protocol
//! ([`postgres`]) and to Arrow clients over Flight SQL ([`flight`]). It never writes a table.

pub mod admission;
pub mod alerts;
pub mod auth;
pub mod bans;
pub mod basics;
pub mod chain;
pub mod commands;
pub mod conns;
pub mod dashboard;
pub mod dashboards;
pub mod error;
pub mod flight;
pub mod format;
pub mod hub;
pub mod live;
pub mod lockout;
pub mod openapi;
pub mod origin;
pub mod overrides;
pub mod postgres;
mod publish;
pub mod receivers;
pub mod registry;
pub mod reports;
pub mod server;
pub mod state;
pub mod views;
pub mod violations;

pub use adit_sql::{Catalog, QueryEngine, SqlEngine, SqlLimits};
pub use auth::{JwtConfig, Role, TokenConfig, Tokens};
pub use error::{QueryError, Result};
pub use server::{QueryConfig, router, serve};
pub use state::AppState;
