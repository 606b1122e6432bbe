//! adit's SQL over the wire protocols the tools people already use speak: PostgreSQL's
//! ([`postgres`]: psql, psycopg, JDBC tools, Grafana's PostgreSQL source) and Arrow Flight SQL
//! ([`flight`]: ADBC, pandas and Polars through it, Grafana's Flight SQL source).
//!
//! Both ports serve the same read-only engine (`adit_sql`) with the same limits, statement
//! slots per role (`adit_sql::admission`), tokens and lockout of addresses that fail to
//! authenticate (`adit_auth`) as the HTTP API; [`conns`] caps the connections each holds.

pub mod conns;
pub mod flight;
pub mod postgres;

#[cfg(test)]
pub(crate) mod testing;
