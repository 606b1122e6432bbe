//! What can be said of SQL before any table is known: that it is within the text limits, that
//! it parses, and that it is one read-only query (for SQL stored to run later, such as an alert
//! rule's `expr`).
//!
//! The text limits exist because planning walks a statement's tree recursively: `1+1+…+1` with
//! a few hundred terms parses (the parser builds such chains in a loop) into a tree deep enough
//! to overflow a thread's stack while it is planned, which aborts the whole process (issue 22).
//! So every statement is parsed here first, its size and depth measured (stopping the walk as
//! soon as the limit is passed), and only then handed to the planner. Deep trees are also
//! dropped recursively: [`on_big_stack`] runs the whole check on a thread whose stack holds
//! everything the size limit allows.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::{GenericDialect, PostgreSqlDialect};

/// Stack of a thread that checks or plans SQL: enough for a tree as deep as
/// [`MAX_STATEMENT_BYTES_CEILING`] allows (`1+1+…`, half a million levels) to be dropped,
/// which Rust does recursively (256 MiB of address space, only touched as deep trees need it;
/// a test drops the deepest tree the ceiling allows in a debug build).
pub const STACK_BYTES: usize = 256 * 1024 * 1024;
/// The most `query.limits.max_statement_bytes` may be set to.
pub const MAX_STATEMENT_BYTES_CEILING: usize = 1024 * 1024;
/// The most `query.limits.max_expression_depth` may be set to.
pub const MAX_DEPTH_CEILING: usize = 2048;
/// How deep the parser itself may recurse (parentheses, nested calls): DataFusion's default.
const PARSER_RECURSION: usize = 50;

/// Limits on a statement's text, checked before it is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimits {
    /// Most bytes a statement may have (`query.limits.max_statement_bytes`).
    pub max_bytes: usize,
    /// Deepest nesting of expressions, subqueries and set operations
    /// (`query.limits.max_expression_depth`).
    pub max_depth: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024,
            max_depth: 128,
        }
    }
}

/// Why a statement's text was refused before planning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Longer than the limit.
    #[error(
        "the statement is {bytes} bytes, over the limit of {limit} (query.limits.max_statement_bytes)"
    )]
    TooLong {
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Nested deeper than the limit.
    #[error(
        "the statement nests expressions, subqueries or set operations more than {limit} deep (query.limits.max_expression_depth); split long chains such as a+b+c+… or x=1 OR x=2 OR … (use IN)"
    )]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// It does not parse.
    #[error("does not parse: {0}")]
    Parse(String),
}

/// The SQL dialect a statement is read in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// sqlparser's generic dialect: the HTTP API, rules and reports.
    #[default]
    Generic,
    /// PostgreSQL's: statements from PostgreSQL clients.
    Postgres,
}

/// Parses `sql` and measures it against `limits`; returns its statements.
pub fn parse(sql: &str, limits: TextLimits) -> Result<VecDeque<DfStatement>, TextError> {
    parse_in(sql, limits, Dialect::Generic)
}

/// [`parse`] in `dialect`.
pub fn parse_in(
    sql: &str,
    limits: TextLimits,
    dialect: Dialect,
) -> Result<VecDeque<DfStatement>, TextError> {
    if sql.len() > limits.max_bytes {
        return Err(TextError::TooLong {
            bytes: sql.len(),
            limit: limits.max_bytes,
        });
    }
    let dialect: &dyn datafusion::sql::sqlparser::dialect::Dialect = match dialect {
        Dialect::Generic => &GenericDialect {},
        Dialect::Postgres => &PostgreSqlDialect {},
    };
    let statements = DFParserBuilder::new(sql)
        .with_dialect(dialect)
        .with_recursion_limit(PARSER_RECURSION)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| TextError::Parse(first_line(&e.to_string())))?;
    for statement in &statements {
        if depth_over(statement, limits.max_depth) {
            return Err(TextError::TooDeep {
                limit: limits.max_depth,
            });
        }
    }
    Ok(statements)
}

/// Whether `statement` nests deeper than `max` (the walk stops once it knows).
fn depth_over(statement: &DfStatement, max: usize) -> bool {
    let mut depth = Depth {
        now: 0,
        max,
        over: false,
    };
    match statement {
        DfStatement::Statement(s) => {
            let _ = s.visit(&mut depth);
        }
        DfStatement::Explain(e) => return depth_over(&e.statement, max),
        // Anything else is refused as not read-only; it nests no user expression worth
        // walking, and the read-only check comes before planning.
        _ => {}
    }
    depth.over
}

/// The visitor measuring nesting: each expression and each query is one level, and a query's
/// chain of set operations (`… UNION … UNION …`, built in a loop like `a+b+…`) counts as
/// deep as it is long.
struct Depth {
    /// Levels open now.
    now: usize,
    /// The limit.
    max: usize,
    /// Whether the limit was passed.
    over: bool,
}

impl Depth {
    fn enter(&mut self, levels: usize) -> ControlFlow<()> {
        self.now += levels;
        if self.now > self.max {
            self.over = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.enter(1 + set_operations(&query.body))
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.now -= 1 + set_operations(&query.body);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.enter(1)
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
}

/// How long the chain of set operations on the left of `body` is (counted without recursion).
fn set_operations(body: &SetExpr) -> usize {
    let mut n = 0;
    let mut at = body;
    while let SetExpr::SetOperation { left, .. } = at {
        n += 1;
        at = left;
    }
    n
}

/// `Ok` when `sql` is exactly one query (`SELECT`, `WITH … SELECT`, `VALUES`) within `limits`;
/// else why not. Runs on a thread of its own with a big stack ([`on_big_stack`]), so the
/// caller's stack size does not matter.
pub fn check_query(sql: &str, limits: TextLimits) -> Result<(), String> {
    on_big_stack(|| {
        let statements = parse(sql, limits).map_err(|e| e.to_string())?;
        match statements.iter().collect::<Vec<_>>().as_slice() {
            [DfStatement::Statement(s)] if matches!(**s, Statement::Query(_)) => Ok(()),
            [] => Err("is empty".into()),
            [_] => Err("is not a read-only query (only SELECT, WITH and VALUES)".into()),
            _ => Err("must be one statement".into()),
        }
    })
    .unwrap_or_else(|| Err("could not be checked: no thread for it".into()))
}

/// Runs `f` on a scoped thread with a [`STACK_BYTES`] stack; `None` if no thread could be made
/// or `f` panicked.
pub fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("adit-sql-check".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, f)
            .ok()?
            .join()
            .ok()
    })
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Result<(), String> {
        check_query(sql, TextLimits::default())
    }

    #[test]
    fn only_one_read_only_query_passes() {
        assert!(
            check("SELECT site, max(value) AS value FROM sensor_readings GROUP BY site").is_ok()
        );
        assert!(check("WITH x AS (SELECT 1) SELECT * FROM x").is_ok());
        assert!(check("SELEC 1").unwrap_err().contains("does not parse"));
        assert!(
            check("DELETE FROM shares")
                .unwrap_err()
                .contains("read-only")
        );
        assert!(
            check("SELECT 1; SELECT 2")
                .unwrap_err()
                .contains("one statement")
        );
        assert!(check("  ").is_err());
    }

    /// Issue 22: `select 1+1+…+1` with 250 terms overflowed a planning thread's stack.
    #[test]
    fn long_chains_are_refused_naming_the_limit_and_short_ones_pass() {
        let chain = |n: usize, op: &str| format!("SELECT 1{}", format!(" {op} 1").repeat(n));
        let limits = TextLimits::default();
        assert!(parse(&chain(100, "+"), limits).is_ok());
        for op in ["+", "||", "OR", "AND", "=", "::int IS NULL AND"] {
            let err = parse(&chain(250, op), limits).unwrap_err();
            assert_eq!(err, TextError::TooDeep { limit: 128 }, "{op}");
            assert!(err.to_string().contains("max_expression_depth"));
        }
        let unions = format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(200));
        assert!(matches!(
            parse(&unions, limits),
            Err(TextError::TooDeep { .. })
        ));
        let subqueries = "SELECT (SELECT (SELECT (SELECT 1)))";
        assert!(parse(subqueries, limits).is_ok());
        assert!(matches!(
            parse(
                subqueries,
                TextLimits {
                    max_depth: 3,
                    ..limits
                }
            ),
            Err(TextError::TooDeep { .. })
        ));
        // Parentheses are bounded by the parser itself.
        let parens = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
        assert!(matches!(parse(&parens, limits), Err(TextError::Parse(_))));
    }

    #[test]
    fn long_statements_are_refused_and_the_longest_chain_is_measured_safely() {
        let limits = TextLimits {
            max_bytes: MAX_STATEMENT_BYTES_CEILING,
            max_depth: MAX_DEPTH_CEILING,
        };
        // The deepest tree the largest allowed statement can hold: parsed, measured and
        // dropped on the big stack.
        let sql = format!(
            "SELECT 1{}",
            "+1".repeat(MAX_STATEMENT_BYTES_CEILING / 2 - 8)
        );
        let got = on_big_stack(|| parse(&sql, limits).map(|_| ())).unwrap();
        assert_eq!(
            got,
            Err(TextError::TooDeep {
                limit: MAX_DEPTH_CEILING
            })
        );
        let over = "x".repeat(MAX_STATEMENT_BYTES_CEILING + 1);
        assert!(matches!(
            parse(&over, limits),
            Err(TextError::TooLong { .. })
        ));
        assert!(
            check_query(&format!("SELECT 1{}", "+1".repeat(200_000)), limits)
                .unwrap_err()
                .contains("nests")
        );
    }
}
