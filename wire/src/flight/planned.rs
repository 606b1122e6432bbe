//! Statements planned for a client's `GetFlightInfo`, kept for its `DoGet`, so a statement is
//! planned once, not once per call (a client always makes both).
//!
//! The ticket still carries the statement's SQL, so the cache is only a shortcut: a ticket
//! whose plan is gone (expired, evicted, another server, another caller) is planned again from
//! its SQL, as before. A plan is taken out when used, is handed only to the caller it was made
//! for and only for the same SQL, and lives at most [`KEPT_FOR`]; at most [`KEPT`] wait.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use adit_auth::Caller;
use adit_sql::Planned;

/// Plans kept at most; the oldest is dropped for a new one.
const KEPT: usize = 64;
/// How long a plan waits for its `DoGet`.
const KEPT_FOR: Duration = Duration::from_secs(30);
/// What a planned ticket starts with: no SQL text starts with a NUL.
const MARK: &str = "\0plan:";

/// One plan waiting.
struct Entry {
    id: u64,
    made: Instant,
    caller: Caller,
    sql: String,
    planned: Planned,
}

/// The plans waiting for their `DoGet`.
#[derive(Default)]
pub(super) struct PlannedStatements {
    next: Mutex<(u64, VecDeque<Entry>)>,
}

impl PlannedStatements {
    /// Keeps `planned` for `caller`'s `sql`; the ticket that names it.
    pub(super) fn keep(&self, caller: &Caller, sql: String, planned: Planned) -> Vec<u8> {
        let mut guard = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, entries) = &mut *guard;
        *next += 1;
        let id = *next;
        let ticket = format!("{MARK}{id}\0{sql}").into_bytes();
        entries.retain(|e| e.made.elapsed() < KEPT_FOR);
        if entries.len() >= KEPT {
            entries.pop_front();
        }
        entries.push_back(Entry {
            id,
            made: Instant::now(),
            caller: caller.clone(),
            sql,
            planned,
        });
        ticket
    }

    /// The SQL a ticket carries, and its plan if one waits for this `caller` (taken out).
    pub(super) fn take(&self, caller: &Caller, ticket: &str) -> (String, Option<Planned>) {
        let Some((id, sql)) = ticket
            .strip_prefix(MARK)
            .and_then(|rest| rest.split_once('\0'))
            .and_then(|(id, sql)| Some((id.parse::<u64>().ok()?, sql)))
        else {
            return (ticket.to_string(), None);
        };
        let mut guard = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = &mut guard.1;
        let found = entries.iter().position(|e| {
            e.id == id && e.caller == *caller && e.sql == sql && e.made.elapsed() < KEPT_FOR
        });
        (
            sql.to_string(),
            found
                .and_then(|i| entries.remove(i))
                .map(|entry| entry.planned),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use adit_auth::Role;
    use adit_sql::{Catalog, SqlEngine, SqlLimits, StatementOptions};

    fn caller(name: &str) -> Caller {
        Caller {
            name: name.into(),
            role: Role::Read,
            worker: None,
        }
    }

    #[tokio::test]
    async fn a_plan_goes_once_to_its_own_caller_for_its_own_sql() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = adit_sinks::TableStore::new(dir.path().to_str().unwrap(), Default::default())?;
        let engine = SqlEngine::new(
            Arc::new(Catalog::new(store, Duration::ZERO)),
            SqlLimits::default(),
        );
        let plans = PlannedStatements::default();
        let (alice, bob) = (caller("alice"), caller("bob"));
        let planned = engine.plan("SELECT 1", StatementOptions::default()).await?;
        let ticket = String::from_utf8(plans.keep(&alice, "SELECT 1".into(), planned))?;

        // Another caller, or the ticket's SQL changed: planned again from the ticket's SQL.
        let (sql, plan) = plans.take(&bob, &ticket);
        assert!(plan.is_none() && sql == "SELECT 1");
        let (sql, plan) = plans.take(&alice, &ticket.replace("SELECT 1", "SELECT 2"));
        assert!(plan.is_none() && sql == "SELECT 2");
        // Its caller gets it, once; a plain ticket is its SQL.
        assert!(plans.take(&alice, &ticket).1.is_some());
        assert!(plans.take(&alice, &ticket).1.is_none());
        assert_eq!(plans.take(&alice, "SELECT 3").0, "SELECT 3");

        // At most KEPT wait: the oldest goes first.
        let mut tickets = Vec::new();
        for i in 0..=KEPT {
            let sql = format!("SELECT {i}");
            let planned = engine.plan(&sql, StatementOptions::default()).await?;
            tickets.push(String::from_utf8(plans.keep(&alice, sql, planned))?);
        }
        assert!(plans.take(&alice, &tickets[0]).1.is_none());
        assert!(plans.take(&alice, &tickets[KEPT]).1.is_some());
        Ok(())
    }
}
