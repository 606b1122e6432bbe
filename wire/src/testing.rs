//! What the ports' unit tests share: an engine over an empty table root.

use std::sync::Arc;
use std::time::Duration;

use adit_sql::SqlEngine;

/// An engine over the empty table root `dir`.
pub(crate) fn engine(dir: &std::path::Path) -> Arc<SqlEngine> {
    let root = dir.to_str().expect("a UTF-8 path");
    let store = adit_sinks::TableStore::new(root, Default::default()).expect("a table root");
    Arc::new(SqlEngine::new(
        Arc::new(adit_sql::Catalog::new(store, Duration::ZERO)),
        adit_sql::SqlLimits::default(),
    ))
}
