//! Property tests of the SQL engine (issue 22): generated statements go through the real
//! `SqlEngine` with tight limits, over an empty table root and a `VALUES` relation:
//! expression trees over literals (huge and negative numbers, NaN and infinities, strings up
//! to 100 000 characters, NULL, arrays, times, intervals) and the relation's columns, joined
//! by operators, CASE, casts to every kind of type and calls of real scalar functions with
//! zero to four random arguments; chains and nests up to 300 deep; UNION chains up to 300
//! long; and token soup.
//!
//! Issue 56 adds statements from a grammar (`adit_testkit::sql_grammar`): every production
//! nested at depths up to 30 000, and random mixtures.
//!
//! Each statement is answered: rows, or a refusal that is the caller's fault (invalid, too
//! complex, not read-only, over the memory, time or row limit). Never `SqlError::Engine`,
//! which the API answers with a 500 and which is also how a panic while planning or running
//! comes back (the statement's task on the engine's runtime), never a crash of the process
//! (a stack overflow aborts it), and the process stays within memory.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use adit_sql::{Catalog, QueryResult, SqlEngine, SqlError, SqlLimits};
use proptest::prelude::*;

/// The relation the expressions read: each column's type with its edge values and NULL.
const RELATION: &str = "(VALUES \
    (1, 'a', 1.5, [1, 2, 3], TIMESTAMP '2026-11-23T12:00:00'), \
    (-9223372036854775807, '', CAST('NaN' AS DOUBLE), [4], NULL), \
    (NULL, NULL, NULL, NULL, TIMESTAMP '1970-01-01T00:00:00')) AS t(i, s, f, l, ts)";

/// The engine, made once per test process over an empty table root of its own.
fn engine() -> &'static SqlEngine {
    static ENGINE: OnceLock<SqlEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let store = adit_testkit::empty_tables(env!("CARGO_TARGET_TMPDIR"), "hostile-sql-");
        let limits = SqlLimits {
            max_value_bytes: 1 << 20,
            memory_bytes: 64 << 20,
            total_memory_bytes: 128 << 20,
            timeout: Duration::from_secs(30),
            threads: 2,
            ..SqlLimits::default()
        };
        assert_eq!(limits.validate(), Ok(()));
        SqlEngine::new(Arc::new(Catalog::new(store, Duration::ZERO)), limits)
    })
}

/// Runs `sql` on the engine from a runtime of the case's own (the statement itself runs on
/// the engine's runtime).
fn run(sql: &str) -> Result<QueryResult, SqlError> {
    let engine = engine();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(engine.query(sql))
}

/// `text` cut to its first 2000 characters, for messages.
fn clip(text: &str) -> String {
    adit_testkit::clip(text, 2000)
}

/// `sql` is answered with rows or with a refusal that is the caller's fault.
fn answered(sql: &str) -> Result<(), TestCaseError> {
    match run(sql) {
        Ok(_)
        | Err(
            SqlError::Empty
            | SqlError::ReadOnly(_)
            | SqlError::TooComplex(_)
            | SqlError::InvalidSql(_)
            | SqlError::Timeout { .. }
            | SqlError::MemoryLimit { .. }
            | SqlError::RowLimit { .. },
        ) => Ok(()),
        // Storage and Listing cannot come from an empty root, Cluster not from a local
        // engine; Engine is a DataFusion failure that is not the statement's (a panic, an
        // internal error): each is a 500 the caller could cause at will.
        Err(other) => Err(TestCaseError::fail(format!(
            "{}\nfailed on our side: {other}",
            clip(sql)
        ))),
    }
}

/// `text` as a SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `x` as a SQL literal: its shortest exact form, or a cast for NaN and the infinities.
fn float(x: f64) -> String {
    if x.is_nan() {
        "CAST('NaN' AS DOUBLE)".into()
    } else if x.is_infinite() {
        format!("CAST('{}inf' AS DOUBLE)", if x < 0.0 { "-" } else { "" })
    } else {
        format!("{x:?}")
    }
}

const COLUMNS: &[&str] = &["i", "s", "f", "l", "ts", "t.i", "t.s", "t.l"];

/// Literals at the edges, and arguments functions read as options (units, patterns, formats).
const CONSTANTS: &[&str] = &[
    "NULL",
    "TRUE",
    "FALSE",
    "''",
    "0",
    "-1",
    "255",
    "65536",
    "1000000",
    "100000000",
    "2147483647",
    "-2147483648",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999999999999999",
    "1e308",
    "1e309",
    "-0.0",
    "5e-324",
    "0.1",
    "'NaN'::double",
    "'inf'::double",
    "'-Infinity'::double",
    "DATE '2026-11-23'",
    "DATE '9999-12-31'",
    "TIMESTAMP '2026-11-23T12:00:00'",
    "TIMESTAMP '1677-09-21T00:12:44'",
    "INTERVAL '1 day'",
    "INTERVAL '-9223372036854775807 microseconds'",
    "INTERVAL '2147483647 months'",
    "now()",
    "X'00ff'",
    "[]",
    "[1, 2, 3]",
    "['a', NULL]",
    "[[1], [2, 3]]",
    "'%'",
    "'_%'",
    "'.*'",
    "'('",
    "'(a+)+$'",
    "'(?i)A'",
    "'\\'",
    "'day'",
    "'microsecond'",
    "'millennium'",
    "'YYYY-MM-DD'",
    "'%Y-%m-%d %H:%M:%S%.9f'",
    "'hex'",
    "'base64'",
    "'sha256'",
    "'md5'",
    "'Europe/Oslo'",
    "'Not/AZone'",
    "'g'",
    "'i'",
    "'Int64'",
    "'Utf8View'",
    "'List(Int64)'",
    "'Dictionary(Int32, Utf8)'",
];

const BINARY: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "||",
    "AND",
    "OR",
    "=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "LIKE",
    "NOT LIKE",
    "ILIKE",
    "SIMILAR TO",
    "IS DISTINCT FROM",
    "&",
    "|",
    "#",
    "<<",
    ">>",
    "~",
    "~*",
    "!~",
    "@>",
    "<@",
];

const TYPES: &[&str] = &[
    "INT",
    "BIGINT",
    "SMALLINT",
    "TINYINT",
    "INT UNSIGNED",
    "BIGINT UNSIGNED",
    "DOUBLE",
    "FLOAT",
    "REAL",
    "DECIMAL(38, 10)",
    "DECIMAL(76, 0)",
    "DECIMAL(3, 2)",
    "DECIMAL(0, 0)",
    "VARCHAR",
    "TEXT",
    "CHAR",
    "BOOLEAN",
    "DATE",
    "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE",
    "TIME",
    "INTERVAL",
    "BYTEA",
    "BINARY",
    "INT[]",
    "VARCHAR[]",
    "DOUBLE[]",
];

/// Real scalar functions of the session (DataFusion's string, unicode, regex, math, crypto,
/// datetime and nested expressions), the value-building ones among them; aggregates are
/// left out.
const FUNCTIONS: &[&str] = &[
    "abs",
    "acos",
    "ascii",
    "atan2",
    "bit_length",
    "btrim",
    "ceil",
    "character_length",
    "chr",
    "coalesce",
    "concat",
    "concat_ws",
    "cos",
    "cot",
    "date_bin",
    "date_part",
    "date_trunc",
    "decode",
    "digest",
    "encode",
    "ends_with",
    "exp",
    "factorial",
    "floor",
    "from_unixtime",
    "gcd",
    "greatest",
    "initcap",
    "isnan",
    "iszero",
    "lcm",
    "least",
    "left",
    "length",
    "levenshtein",
    "ln",
    "log",
    "log10",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "md5",
    "nanvl",
    "nullif",
    "nvl",
    "octet_length",
    "overlay",
    "power",
    "radians",
    "random",
    "regexp_count",
    "regexp_like",
    "regexp_match",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "rpad",
    "rtrim",
    "sha224",
    "sha256",
    "sha512",
    "signum",
    "split_part",
    "sqrt",
    "starts_with",
    "strpos",
    "substr",
    "substr_index",
    "to_char",
    "to_date",
    "to_hex",
    "to_local_time",
    "to_timestamp",
    "to_timestamp_micros",
    "to_unixtime",
    "translate",
    "trunc",
    "upper",
    "uuid",
    "arrow_cast",
    "arrow_typeof",
    "get_field",
    "named_struct",
    "struct",
    "make_map",
    "make_array",
    "array_append",
    "array_concat",
    "array_distinct",
    "array_element",
    "array_has",
    "array_intersect",
    "array_length",
    "array_position",
    "array_remove",
    "array_repeat",
    "array_resize",
    "array_slice",
    "array_sort",
    "array_to_string",
    "array_union",
    "cardinality",
    "flatten",
    "generate_series",
    "range",
    "string_to_array",
    "unnest",
];

/// A literal or a column; `long` allows strings up to 100 000 characters.
fn leaf(long: bool) -> BoxedStrategy<String> {
    let short = prop_oneof![
        3 => any::<i64>().prop_map(|n| n.to_string()),
        2 => any::<f64>().prop_map(float),
        3 => any::<String>().prop_map(|s| quote(&s)),
        4 => prop::sample::select(COLUMNS).prop_map(String::from),
        5 => prop::sample::select(CONSTANTS).prop_map(String::from),
    ];
    if long {
        prop_oneof![
            16 => short,
            1 => (0usize..100_000, any::<char>())
                .prop_map(|(n, c)| quote(&c.to_string().repeat(n))),
        ]
        .boxed()
    } else {
        short.boxed()
    }
}

/// Expression trees over [`leaf`]s.
fn expr() -> BoxedStrategy<String> {
    leaf(true)
        .prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                4 => (inner.clone(), prop::sample::select(BINARY), inner.clone())
                    .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
                // Spaced: `-` then `-1` must not open a `--` comment.
                1 => (prop::sample::select(vec!["-", "+", "NOT", "~"]), inner.clone())
                    .prop_map(|(op, x)| format!("({op} {x})")),
                1 => (
                    inner.clone(),
                    prop::sample::select(vec!["IS NULL", "IS NOT TRUE", "IS UNKNOWN"]),
                )
                    .prop_map(|(x, op)| format!("({x} {op})")),
                4 => (
                    prop::sample::select(FUNCTIONS),
                    prop::collection::vec(inner.clone(), 0..=4),
                )
                    .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
                1 => (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(c, a, b)| format!("CASE WHEN {c} THEN {a} ELSE {b} END")),
                1 => (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(x, a, b)| format!("CASE {x} WHEN {a} THEN {b} END")),
                2 => (inner.clone(), prop::sample::select(TYPES), any::<bool>()).prop_map(
                    |(x, ty, try_cast)| {
                        let cast = if try_cast { "TRY_CAST" } else { "CAST" };
                        format!("{cast}({x} AS {ty})")
                    }
                ),
                1 => (inner.clone(), prop::sample::select(TYPES))
                    .prop_map(|(x, ty)| format!("({x})::{ty}")),
                1 => prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|xs| format!("[{}]", xs.join(", "))),
                1 => (inner.clone(), prop::collection::vec(inner.clone(), 1..4))
                    .prop_map(|(x, xs)| format!("({x} IN ({}))", xs.join(", "))),
                1 => (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(x, a, b)| format!("({x} BETWEEN {a} AND {b})")),
                1 => (inner.clone(), inner.clone()).prop_map(|(x, i)| format!("({x})[{i}]")),
                1 => inner.prop_map(|x| format!("(SELECT {x})")),
            ]
        })
        .boxed()
}

/// A statement around two expressions.
fn statement() -> impl Strategy<Value = String> {
    (expr(), expr(), 0u8..6).prop_map(|(a, b, shape)| match shape {
        0 | 1 => format!("SELECT {a} AS x FROM {RELATION}"),
        2 => format!("SELECT {a} AS x FROM {RELATION} WHERE {b}"),
        3 => format!("SELECT {a} AS x, {b} AS y FROM {RELATION} ORDER BY y LIMIT 2"),
        4 => format!("SELECT count({a}) AS n, max({b}) AS m FROM {RELATION} GROUP BY s"),
        _ => format!("SELECT {a} AS x"),
    })
}

/// Nests and chains: `f(f(…x…))` (the parser recurses, up to its limit) and `x op x op …`
/// (parsed in a loop, into a tree as deep as the chain is long).
fn deep() -> impl Strategy<Value = String> {
    const NESTS: &[(&str, &str)] = &[
        ("abs(", ")"),
        ("(", ")"),
        ("-(", ")"),
        ("NOT (", ")"),
        ("[", "]"),
        ("CAST(", " AS VARCHAR)"),
        ("coalesce(", ", NULL)"),
        ("CASE WHEN TRUE THEN ", " END"),
        ("(SELECT ", ")"),
        ("concat(s, ", ")"),
        ("upper(", ")"),
        ("array_concat(l, ", ")"),
        ("make_array(", ")"),
        ("repeat(", ", 2)"),
    ];
    const CHAINS: &[&str] = &[" + ", " || ", " AND ", " OR ", " * ", " = ", " || s || "];
    prop_oneof![
        (1usize..=300, prop::sample::select(NESTS), leaf(false)).prop_map(
            |(n, (open, close), seed)| format!(
                "SELECT {}{seed}{} AS x FROM {RELATION}",
                open.repeat(n),
                close.repeat(n)
            )
        ),
        (1usize..=300, prop::sample::select(CHAINS), leaf(false)).prop_map(|(n, op, seed)| {
            let chain = vec![seed; n + 1].join(op);
            format!("SELECT {chain} AS x FROM {RELATION}")
        }),
    ]
}

/// `SELECT x UNION … ` chains of up to 300 members of mixed types.
fn unions() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(leaf(false), 1..300),
        prop::sample::select(vec!["UNION ALL", "UNION", "INTERSECT", "EXCEPT"]),
        any::<bool>(),
    )
        .prop_map(|(members, op, from)| {
            let from = if from {
                format!(" FROM {RELATION}")
            } else {
                String::new()
            };
            members
                .iter()
                .map(|x| format!("SELECT {x} AS x{from}"))
                .collect::<Vec<_>>()
                .join(&format!(" {op} "))
        })
}

/// SQL's words and signs in any order, with literals and the relation among them.
fn soup() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP",
        "BY",
        "ORDER",
        "HAVING",
        "LIMIT",
        "OFFSET",
        "UNION",
        "ALL",
        "WITH",
        "RECURSIVE",
        "AS",
        "JOIN",
        "LEFT",
        "CROSS",
        "ON",
        "USING",
        "(",
        ")",
        ",",
        "*",
        ";",
        "VALUES",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "CAST",
        "TRY_CAST",
        "::",
        "[",
        "]",
        ".",
        "t",
        "i",
        "s",
        "l",
        "x",
        "DISTINCT",
        "EXPLAIN",
        "ANALYZE",
        "VERBOSE",
        "SHOW",
        "SET",
        "DESCRIBE",
        "CREATE",
        "EXTERNAL",
        "TABLE",
        "VIEW",
        "DROP",
        "COPY",
        "TO",
        "INSERT",
        "INTO",
        "DELETE",
        "UPDATE",
        "PREPARE",
        "EXECUTE",
        "LATERAL",
        "UNNEST",
        "OVER",
        "PARTITION",
        "ROWS",
        "RANGE",
        "BETWEEN",
        "PRECEDING",
        "FOLLOWING",
        "range",
        "generate_series",
        "information_schema.tables",
        "information_schema.df_settings",
        "+",
        "-",
        "/",
        "=",
        "<",
        ">",
        "NOT",
        "NULL",
        "IS",
        "IN",
        "EXISTS",
        "ANY",
        "ROLLUP",
        "CUBE",
        "GROUPING",
        "SETS",
        "QUALIFY",
        "FILTER",
        "WITHIN",
        "ARRAY",
        "STRUCT",
        "MAP",
        "row_number()",
        "count(*)",
        "sum",
        "avg",
        "string_agg",
        "first_value",
    ];
    prop::collection::vec(
        prop_oneof![
            5 => prop::sample::select(TOKENS).prop_map(String::from),
            2 => leaf(false),
            1 => Just(RELATION.to_string()),
        ],
        0..40,
    )
    .prop_map(|tokens| tokens.join(" "))
}

/// Arguments at the edges for [`every_function`]: what the hostile run against the release
/// binary sends (`scripts/hostile.py`), control characters included.
const EXTREME: &[&str] = &[
    "repeat('x', 100000)",
    "2147483647",
    "-9223372036854775808",
    "9223372036854775807",
    "1e308",
    "'NaN'",
    "NULL",
    "[repeat('y', 100000), repeat('y', 100000)]",
    "[]",
    "TIMESTAMP '2262-04-11T23:47:16'",
    "INTERVAL '1000000 years'",
    "'\r\n\x00\x1b[31m\x7f\u{85}\u{2028}'",
    "s",
    "l",
];

/// Every scalar function the session has, read from the session itself, so a function a
/// later DataFusion adds is called too (the list in [`FUNCTIONS`] is for the nested
/// expressions, where most names must be real).
fn session_functions() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let result = run(
            "SELECT DISTINCT routine_name FROM information_schema.routines \
             WHERE function_type = 'SCALAR' ORDER BY 1",
        )
        .expect("the session's functions");
        let names: Vec<String> = result
            .batches
            .iter()
            .flat_map(|b| {
                let column = arrow::array::AsArray::as_string_opt::<i32>(b.column(0))
                    .map(|a| a.iter().flatten().map(String::from).collect::<Vec<_>>())
                    .or_else(|| {
                        arrow::array::AsArray::as_string_view_opt(b.column(0))
                            .map(|a| a.iter().flatten().map(String::from).collect())
                    });
                column.unwrap_or_default()
            })
            .collect();
        assert!(
            names.len() > 100,
            "the session lists its functions: {names:?}"
        );
        names
    })
}

/// A call of any function of the session with zero to four [`EXTREME`] arguments.
fn every_function() -> impl Strategy<Value = String> {
    (
        0..session_functions().len(),
        prop::collection::vec(prop::sample::select(EXTREME), 0..=4),
    )
        .prop_map(|(i, args)| {
            format!(
                "SELECT \"{}\"({}) AS x FROM {RELATION}",
                session_functions()[i],
                args.join(", ")
            )
        })
}

/// Cases per property: `ADIT_FUZZ_CASES` for a long run (`scripts/fuzz.sh`), else CI's share.
use adit_testkit::fuzz_cases as cases;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(60)))]

    #[test]
    fn generated_expressions_are_answered(sql in statement()) {
        answered(&sql)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(20)))]

    #[test]
    fn deep_nests_and_chains_are_answered(sql in deep()) {
        answered(&sql)?;
    }

    #[test]
    fn long_set_operations_are_answered(sql in unions()) {
        answered(&sql)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(200)))]

    #[test]
    fn every_function_takes_extreme_arguments(sql in every_function()) {
        answered(&sql)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(40)))]

    #[test]
    fn token_soup_is_answered(sql in soup()) {
        answered(&sql)?;
    }
}

/// `sql` is answered, refused or failed, but nothing panicked while planning or running it (a
/// panic in the statement's task comes back as `SqlError::Engine` naming it); a stack overflow
/// would abort this test's process.
fn survived(sql: &str) -> Result<(), TestCaseError> {
    let started = std::time::Instant::now();
    let result = run(sql);
    if started.elapsed() > Duration::from_secs(2) {
        eprintln!("slow ({:?}): {}", started.elapsed(), clip(sql));
    }
    match result {
        Err(SqlError::Engine(e)) if e.to_string().contains("panic") => {
            Err(TestCaseError::fail(format!(
                "{}
panicked: {e}",
                clip(sql)
            )))
        }
        _ => Ok(()),
    }
}

/// Issue 56: every production of the grammar (`adit_testkit::sql_grammar`) nested 1 to 30 000
/// deep, round its cycle, its other slots random: types nested by `[]`, `COPY (…)`'s query,
/// joins, `LATERAL`, CTEs, window specs, set operations, casts, aggregates' `ORDER BY` and
/// `FILTER`… Each statement is refused or answered, and none crashes the process.
#[test]
fn every_production_nested_at_any_depth_is_survived() {
    use adit_testkit::sql_grammar::{GRAMMAR, Generator};
    let mut generator = Generator::new(56);
    let nestable = Generator::nestable();
    assert!(nestable.len() > 50, "{} productions nest", nestable.len());
    for &p in &nestable {
        for times in [1, 4, 40, 400, 4_000, 30_000] {
            let sql = generator.nested(p, times).expect("a nestable production");
            if let Err(e) = survived(&sql) {
                panic!("production {:?} x{times}: {e}", GRAMMAR[p].1);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(12)))]

    /// Random mixtures of the grammar's productions, and one production nested a random depth.
    #[test]
    fn grammar_statements_are_survived(seed in any::<u64>(), depth in 1usize..5, times in 1usize..3_000) {
        let mut generator = adit_testkit::sql_grammar::Generator::new(seed);
        survived(&generator.random(depth))?;
        let nestable = adit_testkit::sql_grammar::Generator::nestable();
        let p = nestable[(seed % nestable.len() as u64) as usize];
        survived(&generator.nested(p, times).expect("a nestable production"))?;
    }
}

/// The relation the properties read is itself read, so their statements are planned over
/// real columns and not all refused for naming none; and a refusal of each kind is told
/// apart.
#[test]
fn the_relation_is_read_and_refusals_are_told_apart() {
    let rows: usize = run(&format!("SELECT i, s, f, l, ts FROM {RELATION}"))
        .expect("the relation")
        .batches
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 3);
    assert!(matches!(
        run("SELECT no_such_column FROM (VALUES (1)) t(a)"),
        Err(SqlError::InvalidSql(_))
    ));
    assert!(matches!(
        run(&format!("SELECT 1{}", " + 1".repeat(300))),
        Err(SqlError::TooComplex(_))
    ));
    let bomb = run("SELECT repeat('x', 100000000)")
        .err()
        .map(|e| e.to_string());
    assert!(
        bomb.as_deref()
            .is_some_and(|e| e.contains("max_value_bytes")),
        "{bomb:?}"
    );
    assert!(matches!(run("DROP TABLE t"), Err(SqlError::ReadOnly(_))));
}

/// What the hostile run against the release binary found (a 500 each, one of them a panic
/// inside `rpad`): the statement's fault, answered as such.
#[test]
fn calls_the_hostile_run_found_are_the_callers_fault() {
    for sql in [
        "SELECT rpad('x', -9223372036854775808, NULL)",
        "SELECT lpad('x', -9223372036854775808, NULL)",
        "SELECT regexp_replace('a', '\r\n\x00\x1b[31m\x7f\u{85}\u{2028}', 'b')",
        "SELECT array_resize([1, 2], -9223372036854775808)",
        "SELECT array_resize([1, 2], -9223372036854775808, 7)",
    ] {
        match run(sql) {
            Ok(_) | Err(SqlError::InvalidSql(_) | SqlError::MemoryLimit { .. }) => {}
            Err(other) => panic!("{sql}: {other:?}"),
        }
    }
}
