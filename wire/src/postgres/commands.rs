//! The session commands PostgreSQL clients send around their queries (`SET`, `SHOW`,
//! `BEGIN`/`COMMIT`/`ROLLBACK`, `DISCARD`, `DEALLOCATE`, `RESET`…), answered here as a
//! read-only PostgreSQL would, without reaching the engine. A `SET` changes nothing adit
//! enforces (limits are the server's); it is remembered so `SHOW` reads it back.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};

/// Most settings one connection may hold, so repeated `SET`s of new names cannot grow it.
const MAX_SETTINGS: usize = 256;
/// Longest value a `SET` may store, bytes.
const MAX_VALUE_BYTES: usize = 1024;

/// A session command and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    /// `SET name = value` (and `SET TIME ZONE`); `None`: a form with nothing to remember.
    Set(Option<(String, String)>),
    /// `SHOW name` (lower case, words joined by a space), or `SHOW ALL` as `all`.
    Show(String),
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// A command with nothing to do here, answered with its tag.
    Done(&'static str),
}

/// The session command `statement` is, if it is one.
pub(super) fn command(statement: &Statement) -> Option<Command> {
    Some(match statement {
        Statement::Set(set) => Command::Set(assignment(set)),
        Statement::ShowVariable { variable } => Command::Show(
            variable
                .iter()
                .map(|i| i.value.to_lowercase())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Statement::StartTransaction { .. } => Command::Begin,
        Statement::Commit { .. } => Command::Commit,
        Statement::Rollback { .. } => Command::Rollback,
        Statement::Discard { .. } => Command::Done("DISCARD ALL"),
        Statement::Deallocate { .. } => Command::Done("DEALLOCATE"),
        Statement::Reset(_) => Command::Done("RESET"),
        Statement::UNLISTEN { .. } => Command::Done("UNLISTEN"),
        Statement::Close { .. } => Command::Done("CLOSE CURSOR"),
        _ => return None,
    })
}

/// The name and value a `SET` assigns, when it is one assignment.
fn assignment(set: &Set) -> Option<(String, String)> {
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => Some((
            variable.to_string().to_lowercase(),
            values.iter().map(text).collect::<Vec<_>>().join(", "),
        )),
        Set::SetTimeZone { value, .. } => Some(("timezone".into(), text(value))),
        _ => None,
    }
}

/// An expression as a setting's text (a quoted string without its quotes).
fn text(expr: &Expr) -> String {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

/// What `SHOW` answers for a setting no `SET` changed.
fn default(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_version" => super::catalog::SERVER_VERSION,
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" | "time zone" => "UTC",
        "search_path" => "public",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "is_superuser" => "off",
        "transaction isolation level"
        | "transaction_isolation"
        | "default_transaction_isolation" => "read committed",
        "max_identifier_length" => "63",
        "lc_collate" | "lc_ctype" => "C",
        "extra_float_digits" => "1",
        "application_name" => "",
        _ => return None,
    })
}

/// Settings `SHOW ALL` lists besides those set.
const SHOWN: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "default_transaction_read_only",
    "extra_float_digits",
    "integer_datetimes",
    "intervalstyle",
    "is_superuser",
    "lc_collate",
    "max_identifier_length",
    "search_path",
    "server_encoding",
    "server_version",
    "server_version_num",
    "standard_conforming_strings",
    "timezone",
    "transaction_isolation",
    "transaction_read_only",
];

/// One connection's settings.
#[derive(Debug, Default)]
pub(super) struct Settings {
    set: BTreeMap<String, String>,
}

impl Settings {
    /// Remembers `name = value`; refused past the limits.
    pub(super) fn set(&mut self, name: String, value: String) -> Result<(), String> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "a setting's value may have at most {MAX_VALUE_BYTES} bytes"
            ));
        }
        if self.set.len() >= MAX_SETTINGS && !self.set.contains_key(&name) {
            return Err(format!("a session may set at most {MAX_SETTINGS} settings"));
        }
        self.set.insert(name, value);
        Ok(())
    }

    /// The value of `name`, or why there is none.
    pub(super) fn show(&self, name: &str) -> Result<String, String> {
        match self.set.get(name) {
            Some(value) => Ok(value.clone()),
            None => default(name)
                .map(str::to_string)
                .ok_or_else(|| format!("unrecognized configuration parameter \"{name}\"")),
        }
    }

    /// Every setting for `SHOW ALL`: (name, value), by name.
    pub(super) fn all(&self) -> Vec<(String, String)> {
        let mut all: BTreeMap<String, String> = SHOWN
            .iter()
            .filter_map(|n| default(n).map(|v| (n.to_string(), v.to_string())))
            .collect();
        all.extend(self.set.clone());
        all.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn one(sql: &str) -> Option<Command> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        command(&statements[0])
    }

    #[test]
    fn what_clients_send_on_connect_is_a_session_command() {
        assert_eq!(
            one("SET extra_float_digits = 3"),
            Some(Command::Set(Some((
                "extra_float_digits".into(),
                "3".into()
            ))))
        );
        assert_eq!(
            one("SET application_name = 'PostgreSQL JDBC Driver'"),
            Some(Command::Set(Some((
                "application_name".into(),
                "PostgreSQL JDBC Driver".into()
            ))))
        );
        assert_eq!(
            one("SET TIME ZONE 'Europe/Berlin'"),
            Some(Command::Set(Some((
                "timezone".into(),
                "Europe/Berlin".into()
            ))))
        );
        assert_eq!(
            one("SHOW TRANSACTION ISOLATION LEVEL"),
            Some(Command::Show("transaction isolation level".into()))
        );
        assert_eq!(one("BEGIN"), Some(Command::Begin));
        assert_eq!(one("START TRANSACTION READ ONLY"), Some(Command::Begin));
        assert_eq!(one("COMMIT"), Some(Command::Commit));
        assert_eq!(one("ROLLBACK"), Some(Command::Rollback));
        assert_eq!(one("DISCARD ALL"), Some(Command::Done("DISCARD ALL")));
        assert_eq!(one("SELECT 1"), None);
        assert_eq!(one("DELETE FROM shares"), None);
    }

    #[test]
    fn show_reads_back_what_was_set_and_refuses_what_is_unknown() {
        let mut settings = Settings::default();
        assert_eq!(settings.show("server_version").unwrap(), "16.6");
        assert_eq!(
            settings.show("transaction isolation level").unwrap(),
            "read committed"
        );
        settings.set("datestyle".into(), "ISO, DMY".into()).unwrap();
        assert_eq!(settings.show("datestyle").unwrap(), "ISO, DMY");
        assert!(
            settings
                .show("no_such_thing")
                .unwrap_err()
                .contains("no_such_thing")
        );
        assert!(
            settings
                .all()
                .contains(&("datestyle".into(), "ISO, DMY".into()))
        );
        for i in 0..MAX_SETTINGS - 1 {
            settings.set(format!("x{i}"), "1".into()).unwrap();
        }
        assert!(settings.set("one_more".into(), "1".into()).is_err());
        assert!(settings.set("x1".into(), "2".into()).is_ok());
        assert!(settings.set("datestyle".into(), "x".repeat(2000)).is_err());
    }
}
