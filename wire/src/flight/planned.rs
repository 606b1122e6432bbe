//! Statements planned for a client's `GetFlightInfo`, kept for its `DoGet`, so a statement is
//! planned once, not once per call (a client always makes both). A prepared statement's plan
//! is kept the same way from its `CreatePreparedStatement` for the `GetFlightInfo` that runs it
//! (ADBC prepares every statement it executes, so each was planned twice).
//!
//! The ticket and the handle still carry the statement's SQL, so the cache is only a shortcut:
//! one whose plan is gone (expired, evicted, used, another server, another caller) is planned
//! again from its SQL, as before. A plan is taken out when run, is handed only to the caller it
//! was made for and only for the same SQL, and waits at most [`KEPT_FOR`] for its `DoGet`
//! ([`PREPARED_FOR`] for its `GetFlightInfo`); at most [`KEPT`] wait.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use adit_auth::Caller;
use adit_sql::Planned;
use arrow::datatypes::SchemaRef;

/// Plans kept at most; the oldest is dropped for a new one.
const KEPT: usize = 64;
/// How long a plan waits for its `DoGet`.
pub(super) const KEPT_FOR: Duration = Duration::from_secs(30);
/// How long a prepared statement's plan waits for the `GetFlightInfo` that runs it (a client
/// that prepares to execute at once, as ADBC does, asks within milliseconds; the PostgreSQL
/// port keeps a `Parse`'s plan as long): a later execution plans again, so it reads the tables
/// as they are when it asks.
pub(super) const PREPARED_FOR: Duration = Duration::from_secs(1);
/// What a planned ticket starts with: no SQL text starts with a NUL.
const MARK: &str = "\0plan:";

/// One plan waiting.
struct Entry {
    id: u64,
    until: Instant,
    caller: Caller,
    sql: String,
    planned: Planned,
}

impl Entry {
    /// Whether this is `caller`'s plan `id` of `sql`, still waiting.
    fn is(&self, caller: &Caller, id: u64, sql: &str, now: Instant) -> bool {
        self.id == id && self.caller == *caller && self.sql == sql && now < self.until
    }
}

/// The plans waiting for their `DoGet`.
#[derive(Default)]
pub(super) struct PlannedStatements {
    next: Mutex<(u64, VecDeque<Entry>)>,
}

/// The ticket that names plan `id` of `sql`.
pub(super) fn ticket(id: u64, sql: &str) -> Vec<u8> {
    format!("{MARK}{id}\0{sql}").into_bytes()
}

impl PlannedStatements {
    /// Keeps `planned` for `caller`'s `sql` for at most `life` from `now`; its number.
    pub(super) fn keep(
        &self,
        caller: &Caller,
        sql: String,
        planned: Planned,
        life: Duration,
        now: Instant,
    ) -> u64 {
        let mut guard = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, entries) = &mut *guard;
        *next += 1;
        let id = *next;
        entries.retain(|e| now < e.until);
        if entries.len() >= KEPT {
            entries.pop_front();
        }
        entries.push_back(Entry {
            id,
            until: now + life,
            caller: caller.clone(),
            sql,
            planned,
        });
        id
    }

    /// The schema of `caller`'s plan `id` of `sql` if it still waits at `now`, left to wait
    /// [`KEPT_FOR`] more for its `DoGet`.
    pub(super) fn renew(
        &self,
        caller: &Caller,
        id: u64,
        sql: &str,
        now: Instant,
    ) -> Option<SchemaRef> {
        let mut guard = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = guard.1.iter_mut().find(|e| e.is(caller, id, sql, now))?;
        entry.until = now + KEPT_FOR;
        Some(entry.planned.description.schema.clone())
    }

    /// The SQL a ticket carries, and its plan if one waits for this `caller` at `now` (taken
    /// out).
    pub(super) fn take(
        &self,
        caller: &Caller,
        ticket: &str,
        now: Instant,
    ) -> (String, Option<Planned>) {
        let Some((id, sql)) = ticket
            .strip_prefix(MARK)
            .and_then(|rest| rest.split_once('\0'))
            .and_then(|(id, sql)| Some((id.parse::<u64>().ok()?, sql)))
        else {
            return (ticket.to_string(), None);
        };
        let mut guard = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = &mut guard.1;
        let found = entries.iter().position(|e| e.is(caller, id, sql, now));
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
        let now = Instant::now();
        let (alice, bob) = (caller("alice"), caller("bob"));
        let planned = engine.plan("SELECT 1", StatementOptions::default()).await?;
        let id = plans.keep(&alice, "SELECT 1".into(), planned, KEPT_FOR, now);
        let first = String::from_utf8(ticket(id, "SELECT 1"))?;

        // Another caller, or the ticket's SQL changed: planned again from the ticket's SQL.
        let (sql, plan) = plans.take(&bob, &first, now);
        assert!(plan.is_none() && sql == "SELECT 1");
        let (sql, plan) = plans.take(&alice, &first.replace("SELECT 1", "SELECT 2"), now);
        assert!(plan.is_none() && sql == "SELECT 2");
        // Its caller gets it, once; a plain ticket is its SQL.
        assert!(plans.take(&alice, &first, now).1.is_some());
        assert!(plans.take(&alice, &first, now).1.is_none());
        assert_eq!(plans.take(&alice, "SELECT 3", now).0, "SELECT 3");

        // At most KEPT wait: the oldest goes first.
        let mut tickets = Vec::new();
        for i in 0..=KEPT {
            let sql = format!("SELECT {i}");
            let planned = engine.plan(&sql, StatementOptions::default()).await?;
            let id = plans.keep(&alice, sql.clone(), planned, KEPT_FOR, now);
            tickets.push(String::from_utf8(ticket(id, &sql))?);
        }
        assert!(plans.take(&alice, &tickets[0], now).1.is_none());
        assert!(plans.take(&alice, &tickets[KEPT], now).1.is_some());

        // A prepared statement's plan: renewed for its caller and SQL while it waits, then
        // taken by the ticket; once its short wait is over it is gone (the clock is the
        // caller's, so no test waits on it).
        let planned = engine.plan("SELECT 4", StatementOptions::default()).await?;
        let id = plans.keep(&alice, "SELECT 4".into(), planned, PREPARED_FOR, now);
        let soon = now + PREPARED_FOR / 2;
        assert!(plans.renew(&bob, id, "SELECT 4", soon).is_none());
        assert!(plans.renew(&alice, id, "SELECT 5", soon).is_none());
        let schema = plans.renew(&alice, id, "SELECT 4", soon).expect("waiting");
        assert_eq!(schema.fields().len(), 1);
        let ticket4 = String::from_utf8(ticket(id, "SELECT 4"))?;
        assert!(
            plans
                .take(&alice, &ticket4, now + 2 * PREPARED_FOR)
                .1
                .is_some(),
            "renewed for its DoGet"
        );
        let planned = engine.plan("SELECT 6", StatementOptions::default()).await?;
        let id = plans.keep(&alice, "SELECT 6".into(), planned, PREPARED_FOR, now);
        assert!(
            plans
                .renew(&alice, id, "SELECT 6", now + PREPARED_FOR)
                .is_none(),
            "expired"
        );
        Ok(())
    }
}
