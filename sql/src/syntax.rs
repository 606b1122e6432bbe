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
//!
//! Depth is measured twice. The expressions and queries a user writes are counted against
//! `max_expression_depth` (the limit a user meets and is told about). And every node of the
//! tree, whatever production built it — a type nested by `int[][]…` in a loop, the query inside
//! `COPY (…)`, joins, window specs, CTEs, anything a later parser adds — is counted by
//! [`tree_depth_over`] on the tree's derived `Debug` form, whose brackets nest exactly as its
//! nodes do (issue 56: `NULL::int[][]…[]` passed the first count and overflowed a stack). That
//! count needs no list of productions, so no production can be forgotten.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, DFParserBuilder, Statement as DfStatement};
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
/// Deepest nesting of keyword constructs (`CAST(`, `ARRAY[`, `EXTRACT(`, `CASE … END`, any keyword
/// opening a bracket) the parser is given. sqlparser parses a keyword's construct and, when
/// that fails anywhere inside, parses it again as a function call of that name: each level
/// doubles the work, so a 2 KB statement with 24 nested `CAST(` and an error at its core held
/// a thread for minutes (issue 56; 12 levels cost 33 ms in a debug build, 16 levels 0.5 s).
pub const MAX_KEYWORD_NESTING: usize = 12;
/// A statement's tree may nest this many times `max_expression_depth` levels of its `Debug`
/// form (one written expression or type is one to three such levels, a subquery about six).
const TREE_LEVELS_PER_DEPTH: usize = 4;

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
    /// Keyword constructs nested deeper than the parser can afford ([`MAX_KEYWORD_NESTING`]).
    #[error(
        "the statement nests keyword constructs (CAST, ARRAY, CASE, EXTRACT…, and calls of functions whose names are SQL keywords, such as abs or coalesce) more than {limit} deep; the parser's work doubles with each level"
    )]
    TooNested {
        /// The limit.
        limit: usize,
    },
    /// Its common table expressions would be copied into too big a plan
    /// ([`crate::plan_size`]).
    #[error(
        "the statement's common table expressions would be copied into a plan of {weight} parts (at most {limit}); reference each CTE fewer times"
    )]
    TooLarge {
        /// Its weight (`u64::MAX`: more than can be counted).
        weight: u64,
        /// The limit.
        limit: u64,
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
    match nesting_over(dialect, sql)? {
        None => {}
        Some(Nested::Keywords) => {
            return Err(TextError::TooNested {
                limit: MAX_KEYWORD_NESTING,
            });
        }
        Some(Nested::Brackets) => {
            return Err(TextError::Parse(format!(
                "brackets nest more than {PARSER_RECURSION} deep"
            )));
        }
    }
    let statements = DFParserBuilder::new(sql)
        .with_dialect(dialect)
        .with_recursion_limit(PARSER_RECURSION)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| TextError::Parse(first_line(&e.to_string())))?;
    for statement in &statements {
        if depth_over(statement, limits.max_depth)
            || tree_depth_over(statement, limits.max_depth * TREE_LEVELS_PER_DEPTH)
        {
            return Err(TextError::TooDeep {
                limit: limits.max_depth,
            });
        }
        let weight = crate::plan_size::copied_size(statement);
        if weight > crate::plan_size::MAX_PLAN_NODES {
            return Err(TextError::TooLarge {
                weight,
                limit: crate::plan_size::MAX_PLAN_NODES,
            });
        }
    }
    Ok(statements)
}

/// Why a statement's tokens nest too deep for the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nested {
    /// Keyword constructs past [`MAX_KEYWORD_NESTING`].
    Keywords,
    /// Brackets of any kind past [`PARSER_RECURSION`]: the parser would refuse them itself,
    /// except where it recurses without counting (types in angle brackets, `ARRAY<ARRAY<…>>`,
    /// recursed on past any stack).
    Brackets,
}

/// How `sql`'s tokens nest, counted in one pass before anything is parsed: a frame is a
/// bracket (`(`, `[`, or `<` after `ARRAY`, `STRUCT` or `MAP`) or a `CASE` (closed by `END`);
/// a frame opened right after a keyword, and every `CASE`, is a keyword construct
/// ([`MAX_KEYWORD_NESTING`]). `None` when both are within their limits.
fn nesting_over(
    dialect: &dyn datafusion::sql::sqlparser::dialect::Dialect,
    sql: &str,
) -> Result<Option<Nested>, TextError> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize()
        .map_err(|e| TextError::Parse(first_line(&e.to_string())))?;
    // Each open frame: whether it is a keyword construct.
    let mut frames: Vec<bool> = Vec::new();
    let mut keywords = 0;
    let mut previous: Option<Keyword> = None;
    for token in tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))) {
        let after_keyword = previous.is_some_and(|k| k != Keyword::NoKeyword);
        let opens = match token {
            Token::LParen | Token::LBracket => Some(after_keyword),
            Token::Lt => matches!(
                previous,
                Some(Keyword::ARRAY | Keyword::STRUCT | Keyword::MAP)
            )
            .then_some(true),
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::CASE => Some(true),
            _ => None,
        };
        let closes = match token {
            Token::RParen | Token::RBracket | Token::Gt => 1,
            Token::ShiftRight => 2,
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::END => 1,
            _ => 0,
        };
        if let Some(keyword) = opens {
            frames.push(keyword);
            keywords += usize::from(keyword);
            if keywords > MAX_KEYWORD_NESTING {
                return Ok(Some(Nested::Keywords));
            }
            if frames.len() > PARSER_RECURSION {
                return Ok(Some(Nested::Brackets));
            }
        } else {
            for _ in 0..closes {
                if let Some(keyword) = frames.pop() {
                    keywords -= usize::from(keyword);
                }
            }
        }
        previous = match token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
            _ => None,
        };
    }
    Ok(None)
}

/// Whether any node of `tree` lies more than `max` levels deep, counted on its derived `Debug`
/// form: each struct, tuple, list or map opens a bracket around its children, so the deepest
/// bracket is the deepest node. Brackets inside string and character literals are skipped.
/// Formatting stops at the first level past `max`, so the walk itself recurses no deeper than
/// that.
pub fn tree_depth_over(tree: &impl std::fmt::Debug, max: usize) -> bool {
    use std::fmt::Write;
    let mut nesting = Nesting {
        max,
        depth: 0,
        literal: None,
        escaped: false,
    };
    write!(nesting, "{tree:?}").is_err()
}

/// A sink for `Debug` output that only tracks how deep its brackets nest.
struct Nesting {
    /// The deepest allowed.
    max: usize,
    /// Brackets open now.
    depth: usize,
    /// The quote of the string (`"`) or character (`'`) literal being written, if any.
    literal: Option<u8>,
    /// Whether the last byte inside a literal was an unescaped backslash.
    escaped: bool,
}

impl std::fmt::Write for Nesting {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for b in s.bytes() {
            match (self.literal, b) {
                (Some(_), _) if self.escaped => self.escaped = false,
                (Some(_), b'\\') => self.escaped = true,
                (Some(quote), b) if b == quote => self.literal = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => self.literal = Some(b),
                (None, b'(' | b'[' | b'{') => {
                    self.depth += 1;
                    if self.depth > self.max {
                        return Err(std::fmt::Error);
                    }
                }
                (None, b')' | b']' | b'}') => self.depth = self.depth.saturating_sub(1),
                (None, _) => {}
            }
        }
        Ok(())
    }
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
        DfStatement::CopyTo(copy) => {
            if let CopyToSource::Query(query) = &copy.source {
                let _ = query.visit(&mut depth);
            }
        }
        // Anything else is refused as not read-only; every node of it is still measured by
        // `tree_depth_over`.
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
        // Issue 56: a type nested in a loop of the parser, and COPY's query, are measured like
        // every other node; keyword constructs are bounded before the parser, whose work
        // doubles with each (24 nested CASTs with an error inside took minutes).
        let types = |n: usize| format!("SELECT NULL::int{}", "[]".repeat(n));
        assert!(parse(&types(20), limits).is_ok());
        assert!(matches!(
            parse(&types(1_000), limits),
            Err(TextError::TooDeep { .. })
        ));
        let copy = format!("COPY (SELECT 1{}) TO 'x'", " + 1".repeat(250));
        assert!(matches!(
            parse(&copy, limits),
            Err(TextError::TooDeep { .. })
        ));
        let casts = |n: usize, core: &str| {
            format!("SELECT {}{core}{}", "CAST(".repeat(n), " AS INT)".repeat(n))
        };
        assert!(parse(&casts(MAX_KEYWORD_NESTING, "1"), limits).is_ok());
        // Refused before the parser: the error at the core would have cost minutes in it.
        for core in ["1", "1 +"] {
            let err = parse(&casts(48, core), limits).unwrap_err();
            assert_eq!(
                err,
                TextError::TooNested {
                    limit: MAX_KEYWORD_NESTING
                }
            );
        }
        // Types in angle brackets, which the parser recursed on without counting.
        let angles = format!(
            "SELECT CAST(NULL AS {}INT{})",
            "ARRAY<".repeat(30_000),
            ">".repeat(30_000)
        );
        assert!(matches!(
            parse(&angles, limits),
            Err(TextError::TooNested { .. })
        ));
        let parens = format!("SELECT {}1{}", "(".repeat(30_000), ")".repeat(30_000));
        assert!(matches!(parse(&parens, limits), Err(TextError::Parse(_))));
        let angles = format!(
            "SELECT CAST(NULL AS {}INT{})",
            "ARRAY<".repeat(6),
            ">".repeat(6)
        );
        assert!(parse(&angles, limits).is_ok(), "{angles}");
        let arrays = format!("SELECT {}1{}", "ARRAY[".repeat(30), "]".repeat(30));
        assert!(matches!(
            parse(&arrays, limits),
            Err(TextError::TooNested { .. })
        ));
        // Brackets that no keyword opens are not counted: the parser bounds them itself.
        let calls = format!("SELECT {}1{}", "round((".repeat(20), "))".repeat(20));
        assert!(parse(&calls, limits).is_ok());
        // Brackets inside literals and quoted names are not brackets.
        let quoted = format!(
            "SELECT '{}' AS \"{}\"",
            "CAST(".repeat(100),
            "ARRAY[".repeat(100)
        );
        assert!(parse(&quoted, limits).is_ok());
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
