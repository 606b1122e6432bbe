//! What can be said of SQL before any table is known: that it parses, and that it is one
//! read-only query (for SQL stored to run later, such as an alert rule's `expr`).

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `Ok` when `sql` is exactly one query (`SELECT`, `WITH … SELECT`, `VALUES`); else why not.
pub fn check_query(sql: &str) -> Result<(), String> {
    let statements =
        Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| format!("does not parse: {e}"))?;
    match statements.as_slice() {
        [Statement::Query(_)] => Ok(()),
        [] => Err("is empty".into()),
        [_] => Err("is not a read-only query (only SELECT, WITH and VALUES)".into()),
        _ => Err("must be one statement".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_read_only_query_passes() {
        assert!(
            check_query("SELECT site, max(value) AS value FROM sensor_readings GROUP BY site")
                .is_ok()
        );
        assert!(check_query("WITH x AS (SELECT 1) SELECT * FROM x").is_ok());
        assert!(
            check_query("SELEC 1")
                .unwrap_err()
                .contains("does not parse")
        );
        assert!(
            check_query("DELETE FROM shares")
                .unwrap_err()
                .contains("read-only")
        );
        assert!(
            check_query("SELECT 1; SELECT 2")
                .unwrap_err()
                .contains("one statement")
        );
        assert!(check_query("  ").is_err());
    }
}
