//! What every view shares: SQL run with its parameters bound and answered as JSON rows, the
//! tables that exist (a view of a table not created yet reads as empty), and the query
//! strings a view accepts (one count, or paging), anything else refused with a reason.

use std::collections::{BTreeMap, BTreeSet};

use adit_sql::Params;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;

use crate::error::{QueryError, Result};
use crate::format::json_rows;
use crate::state::AppState;

/// Most rows a list view returns.
const MAX_LIMIT: usize = 500;

/// Runs `sql`, its `$n` placeholders bound to `params`, and returns its rows as JSON objects.
/// Text from a caller reaches a statement only through `params`, never spliced in.
pub(crate) async fn rows(
    state: &AppState,
    sql: &str,
    params: &Params,
) -> Result<Vec<Map<String, Value>>> {
    let result = state
        .engine
        .query_with(sql, params.clone().into_options())
        .await?;
    json_rows(&result.batches)
}

/// The first row's `key`, when there is one.
pub(crate) async fn one(state: &AppState, sql: &str, params: &Params, key: &str) -> Result<Value> {
    Ok(rows(state, sql, params)
        .await?
        .first()
        .and_then(|r| r.get(key).cloned())
        .unwrap_or(Value::Null))
}

/// Names of the tables that exist (no table's log is read for them).
pub(crate) async fn tables(state: &AppState) -> Result<BTreeSet<String>> {
    Ok(state.engine.catalog().names().await?.into_iter().collect())
}

/// The one parameter `key` a view's query string may carry: a whole number from 1 to `max`,
/// `default` when absent; any other parameter is refused, naming the one to use.
pub(crate) fn only_count(
    query: &BTreeMap<String, String>,
    key: &str,
    default: i64,
    max: i64,
) -> Result<i64> {
    let mut count = default;
    for (name, value) in query {
        if name != key {
            return Err(QueryError::BadRequest(format!(
                "unknown parameter {name:?}; use {key}"
            )));
        }
        count = value
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                QueryError::BadRequest(format!(
                    "{key} must be a whole number from 1 to {max}, not {value:?}"
                ))
            })?;
    }
    Ok(count)
}

pub(crate) fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}

pub(crate) fn float(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Paging of a list view.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct Page {
    /// Rows to return (default 50, at most 500).
    limit: Option<usize>,
    /// Rows to skip.
    offset: Option<usize>,
}

impl Page {
    /// Reads `limit` and `offset` from the query string, refusing anything else with a reason
    /// in the API's error shape.
    pub(crate) fn parse(query: &BTreeMap<String, String>) -> Result<Self> {
        let mut page = Page::default();
        for (key, value) in query {
            let n = value.parse::<usize>().map_err(|_| {
                QueryError::BadRequest(format!("{key} must be a whole number, not {value:?}"))
            })?;
            match key.as_str() {
                "limit" => page.limit = Some(n),
                "offset" => page.offset = Some(n),
                other => {
                    return Err(QueryError::BadRequest(format!(
                        "unknown parameter {other:?}; use limit and offset"
                    )));
                }
            }
        }
        Ok(page)
    }

    pub(crate) fn sql(&self) -> String {
        format!(
            "LIMIT {} OFFSET {}",
            self.limit.unwrap_or(50).min(MAX_LIMIT),
            self.offset.unwrap_or(0)
        )
    }
}
