//! What PostgreSQL clients expect besides adit's tables: `pg_catalog` (psql's `\dt`, JDBC's
//! metadata calls and Grafana's table list read it), PostgreSQL's functions on it, and
//! `version()` in PostgreSQL's words; and the reading of their SQL, which is PostgreSQL's
//! dialect with a few forms DataFusion plans differently rewritten (`datafusion-pg-catalog`).

use std::sync::{Arc, PoisonError, RwLock};

use adit_sql::syntax::{Dialect, TextLimits};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{CatalogProviderList, SchemaProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt;
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

/// The PostgreSQL version clients are told (the protocol and catalog adit speaks).
pub(super) const SERVER_VERSION: &str = "16.6";

/// The name DataFusion gives the one catalog (what `current_database()` answers).
const DATABASE: &str = "datafusion";

/// Adds `pg_catalog` and PostgreSQL's functions to a statement's session.
///
/// One `pg_catalog` serves every statement: it numbers tables and columns (OIDs) as it first
/// meets them and keeps the numbers, and clients look a table up by the OID an earlier
/// statement gave them (psql's `\d`). It reads the names and schemas of the tables from the
/// newest statement's session ([`Latest`]); statements differ only in the tables' versions.
pub(super) struct PgSession {
    /// The shared `pg_catalog`.
    schema: Arc<dyn SchemaProvider>,
    /// PostgreSQL's own catalog rows, decoded once.
    statics: Arc<PgCatalogStaticTables>,
    /// Where `schema` reads the tables.
    latest: Latest,
    /// What `version()` answers.
    version: String,
}

impl PgSession {
    pub(super) fn new() -> datafusion::error::Result<Self> {
        let latest = Latest::default();
        let statics = Arc::new(PgCatalogStaticTables::try_new()?);
        let schema = Arc::new(PgCatalogSchemaProvider::try_new(
            latest.clone(),
            statics.clone(),
            EmptyContextProvider,
        )?);
        Ok(Self {
            schema,
            statics,
            latest,
            version: format!(
                "PostgreSQL {SERVER_VERSION} (adit {}, DataFusion {})",
                env!("CARGO_PKG_VERSION"),
                datafusion::DATAFUSION_VERSION
            ),
        })
    }
}

impl adit_sql::SessionSetup for PgSession {
    fn functions(&self, base: SessionState) -> datafusion::error::Result<SessionState> {
        // PostgreSQL's OID type names (`::regclass`, `::regtype`) plan as integers.
        let base = SessionStateBuilder::new_from_existing(base)
            .with_type_planner(Arc::new(PgOidTypePlanner))
            .build();
        let ctx = SessionContext::new_with_state(base);
        for udf in functions() {
            ctx.register_udf(udf);
        }
        ctx.register_udtf("pg_get_keywords", self.statics.pg_get_keywords.clone());
        let version = ScalarValue::Utf8(Some(self.version.clone()));
        ctx.register_udf(create_udf(
            "version",
            vec![],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(move |_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(version.clone()))),
        ));
        // `generate_series(1, array_upper(…))` and the like take 32-bit bounds.
        CoerceIntArgsToBigInt::widen(&ctx);
        Ok(ctx.state())
    }

    fn tables(&self, state: &SessionState) -> datafusion::error::Result<()> {
        self.latest.set(state.catalog_list().clone());
        let Some(catalog) = state.catalog_list().catalog(DATABASE) else {
            return Err(DataFusionError::Configuration(format!(
                "no catalog {DATABASE} to add pg_catalog to"
            )));
        };
        catalog.register_schema("pg_catalog", self.schema.clone())?;
        Ok(())
    }
}

/// PostgreSQL's functions that clients' catalog queries call.
fn functions() -> Vec<ScalarUDF> {
    use datafusion_pg_catalog::pg_catalog as pg;
    let privilege = pg::has_privilege_udf::create_has_privilege_udf;
    vec![
        pg::create_current_database_udf(DATABASE),
        pg::create_current_schema_udf(),
        pg::create_current_schemas_udf(),
        pg::create_pg_get_userbyid_udf(),
        privilege("has_table_privilege"),
        privilege("has_schema_privilege"),
        privilege("has_database_privilege"),
        privilege("has_any_column_privilege"),
        pg::create_pg_table_is_visible(),
        pg::format_type::create_format_type_udf(),
        pg::create_session_user_udf(),
        pg::pg_get_expr_udf::create_pg_get_expr_udf(),
        pg::create_pg_get_partkeydef_udf(),
        pg::create_pg_relation_is_publishable_udf(),
        pg::create_pg_get_statisticsobjdef_columns_udf(),
        pg::create_pg_encoding_to_char_udf(),
        pg::create_pg_backend_pid_udf(),
        pg::create_pg_relation_size_udf(),
        pg::create_pg_total_relation_size_udf(),
        pg::create_pg_stat_get_numscans(),
        pg::create_pg_get_constraintdef(),
        pg::create_pg_get_partition_ancestors_udf(),
        pg::quote_ident_udf::create_quote_ident_udf(),
        pg::quote_ident_udf::create_parse_ident_udf(),
        pg::array_bounds_udf::create_array_upper_udf(),
        pg::array_bounds_udf::create_array_lower_udf(),
    ]
}

/// The catalog list of the newest statement's session: what the shared `pg_catalog` lists.
#[derive(Debug, Clone, Default)]
struct Latest(Arc<RwLock<Option<Arc<dyn CatalogProviderList>>>>);

impl Latest {
    fn set(&self, list: Arc<dyn CatalogProviderList>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(list);
    }

    fn get(&self) -> Option<Arc<dyn CatalogProviderList>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait::async_trait]
impl CatalogInfo for Latest {
    async fn catalog_names(&self) -> datafusion::error::Result<Vec<String>> {
        match self.get() {
            Some(list) => CatalogInfo::catalog_names(&list).await,
            None => Ok(Vec::new()),
        }
    }

    async fn schema_names(&self, catalog: &str) -> datafusion::error::Result<Option<Vec<String>>> {
        match self.get() {
            Some(list) => CatalogInfo::schema_names(&list, catalog).await,
            None => Ok(None),
        }
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> datafusion::error::Result<Option<Vec<String>>> {
        match self.get() {
            Some(list) => CatalogInfo::table_names(&list, catalog, schema).await,
            None => Ok(None),
        }
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> datafusion::error::Result<Option<SchemaRef>> {
        match self.get() {
            Some(list) => CatalogInfo::table_schema(&list, catalog, schema, table).await,
            None => Ok(None),
        }
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> datafusion::error::Result<Option<TableType>> {
        match self.get() {
            Some(list) => CatalogInfo::table_type(&list, catalog, schema, table).await,
            None => Ok(None),
        }
    }
}

/// Why a client's SQL was refused before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ParseError {
    /// Over a text limit (size or nesting).
    TooComplex(String),
    /// Not SQL that parses.
    Syntax(String),
}

/// Reads PostgreSQL clients' SQL into statements.
pub(super) struct PgParser {
    /// The rewriting parser (built once: it compiles its patterns).
    compat: PostgresCompatibilityParser,
}

impl PgParser {
    pub(super) fn new() -> Self {
        Self {
            compat: PostgresCompatibilityParser::new(),
        }
    }

    /// `sql`'s statements, rewritten for DataFusion, each turned by `each` into what leaves
    /// the parser. The text is first measured against `limits` (the rewrite walks the tree
    /// recursively, as planning does). Run it where the stack holds the deepest tree the limits
    /// allow (`SqlEngine::on_deep_stack`): all of it — measuring, rewriting, `each` (rendering)
    /// and dropping the trees — walks the tree, and no client's tree may reach a connection's
    /// stack (issue 56: a deep tree rendered and dropped on a 2 MiB stack aborted the process).
    pub(super) fn parse<T>(
        &self,
        sql: &str,
        limits: TextLimits,
        each: impl Fn(&Statement) -> T,
    ) -> Result<Vec<T>, ParseError> {
        adit_sql::syntax::parse_in(sql, limits, Dialect::Postgres).map_err(|e| match e {
            adit_sql::syntax::TextError::Parse(reason) => ParseError::Syntax(reason),
            too_big => ParseError::TooComplex(too_big.to_string()),
        })?;
        let statements: Vec<Statement> = self
            .compat
            .parse(sql)
            .map_err(|e| ParseError::Syntax(e.to_string()))?;
        Ok(statements.iter().map(&each).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_sql::SessionSetup;

    #[tokio::test]
    async fn psqls_table_list_plans_over_pg_catalog_and_version_speaks_postgres() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE shares (miner VARCHAR, difficulty BIGINT)")
            .await
            .unwrap();
        let ctx = with_pg(&PgSession::new().unwrap(), ctx);
        // What psql 15 sends for \dt, as the parser rewrites it.
        let dt = "SELECT n.nspname as \"Schema\", c.relname as \"Name\", \
            CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END as \"Type\", \
            pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\" \
            FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
            WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' \
            AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema' \
            AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2;";
        let parser = PgParser::new();
        let statements = parser
            .parse(dt, TextLimits::default(), Statement::to_string)
            .unwrap();
        let [rewritten] = statements.as_slice() else {
            panic!("one query: {statements:?}");
        };
        let batches = ctx.sql(rewritten).await.unwrap().collect().await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("shares"), "{text}");
        let version = ctx
            .sql("SELECT version()")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&version)
            .unwrap()
            .to_string();
        assert!(text.contains("PostgreSQL 16.6 (adit"), "{text}");
    }

    /// `ctx` with what `pg` adds to a statement's session, as the engine adds it.
    fn with_pg(pg: &PgSession, ctx: SessionContext) -> SessionContext {
        let state = pg.functions(ctx.state()).unwrap();
        pg.tables(&state).unwrap();
        SessionContext::new_with_state(state)
    }

    /// Rows of `sql` in a new session over a `shares` table, as text.
    async fn in_new_session(pg: &PgSession, sql: &str) -> String {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE shares (miner VARCHAR, difficulty BIGINT)")
            .await
            .unwrap();
        let ctx = with_pg(pg, ctx);
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn a_tables_oid_from_one_statement_finds_its_columns_in_the_next() {
        let pg = PgSession::new().unwrap();
        // psql's \d: the OID first, then the columns by that OID, each its own statement.
        let oid = in_new_session(
            &pg,
            "SELECT oid FROM pg_catalog.pg_class WHERE relname = 'shares'",
        )
        .await;
        let oid: u32 = oid
            .lines()
            .find_map(|l| l.trim_matches(|c| c == '|' || c == ' ').parse().ok())
            .unwrap_or_else(|| panic!("no oid in {oid}"));
        let columns = in_new_session(
            &pg,
            &format!(
                "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = {oid} AND attnum > 0"
            ),
        )
        .await;
        assert!(
            columns.contains("miner") && columns.contains("difficulty"),
            "{columns}"
        );
    }

    #[test]
    fn a_statement_past_the_text_limits_is_refused_before_the_rewrite() {
        let parser = PgParser::new();
        let deep = format!("SELECT {}1", "1+".repeat(5_000));
        let e = parser
            .parse(&deep, TextLimits::default(), Statement::to_string)
            .unwrap_err();
        assert!(matches!(e, ParseError::TooComplex(_)), "{e:?}");
        // A type nested in a loop of the parser (issue 56): measured like any other node.
        let e = parser
            .parse(
                &format!("SELECT NULL::int{}", "[]".repeat(5_000)),
                TextLimits::default(),
                Statement::to_string,
            )
            .unwrap_err();
        assert!(matches!(e, ParseError::TooComplex(_)), "{e:?}");
        let e = parser
            .parse("SELEC 1", TextLimits::default(), Statement::to_string)
            .unwrap_err();
        assert!(matches!(e, ParseError::Syntax(_)), "{e:?}");
        assert_eq!(
            parser
                .parse(
                    "SELECT 1; SELECT 2",
                    TextLimits::default(),
                    Statement::to_string
                )
                .unwrap()
                .len(),
            2
        );
    }
}
