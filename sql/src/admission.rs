//! How many SQL statements run at once, per token role: each role has its own number of
//! slots; a statement waits for one at most `queue_wait`, then gets a 429. A flood of heavy
//! queries from read tokens cannot take the slots operators need, and the panels of public
//! dashboards (opened by anyone with the link, no token) have slots of their own, so they
//! cannot take a reader's either.

use std::sync::Arc;
use std::time::Duration;

use adit_config::{Checked, check};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use adit_auth::Role;

/// No slot came in time: the caller is told to try again later (a 429, PostgreSQL's 53000,
/// gRPC's resource exhausted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Busy(pub String);

/// Slots per role; from config (`[query.concurrency]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencyConfig {
    /// Statements of read tokens running at once.
    pub read: usize,
    /// Statements of operate tokens running at once.
    pub operate: usize,
    /// Statements of admin tokens (and of everyone when auth is off) running at once.
    pub admin: usize,
    /// Requests without a token running at once: public dashboards' panels (through their
    /// links), and the pool's published windows, reserve proofs and miners' signed requests.
    pub public: usize,
    /// Longest a statement waits for a slot before a 429.
    #[serde(with = "humantime_serde")]
    pub queue_wait: Duration,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            read: 8,
            operate: 8,
            admin: 8,
            public: 2,
            queue_wait: Duration::from_secs(5),
        }
    }
}

impl ConcurrencyConfig {
    /// Checks the values; the error names the full key (`query.concurrency.…`).
    pub fn validate(&self) -> Checked {
        for (name, n) in [
            ("read", self.read),
            ("operate", self.operate),
            ("admin", self.admin),
            ("public", self.public),
        ] {
            check(
                (1..=10_000).contains(&n),
                &format!("query.concurrency.{name}"),
                format!("must be 1 to 10000, not {n}"),
            )?;
        }
        check(
            self.queue_wait <= Duration::from_secs(600),
            "query.concurrency.queue_wait",
            format!("must be at most 10m, not {:?}", self.queue_wait),
        )
    }
}

/// The slots.
#[derive(Debug)]
pub struct Admission {
    read: Arc<Semaphore>,
    operate: Arc<Semaphore>,
    admin: Arc<Semaphore>,
    public: Arc<Semaphore>,
    config: ConcurrencyConfig,
}

/// Whose slots a statement takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A caller's, by the token's role.
    Role(Role),
    /// A caller without a token: a public dashboard's viewer, a miner checking the pool.
    Public,
}

impl From<Role> for Slot {
    fn from(role: Role) -> Self {
        Self::Role(role)
    }
}

impl Admission {
    /// Slots as configured.
    pub fn new(config: ConcurrencyConfig) -> Self {
        Self {
            read: Arc::new(Semaphore::new(config.read)),
            operate: Arc::new(Semaphore::new(config.operate)),
            admin: Arc::new(Semaphore::new(config.admin)),
            public: Arc::new(Semaphore::new(config.public)),
            config,
        }
    }

    /// A slot for a statement of `slot` (a role, or a public dashboard's viewer), held until
    /// the permit is dropped.
    pub async fn admit(&self, slot: impl Into<Slot>) -> Result<OwnedSemaphorePermit, Busy> {
        let (slots, n, whose) = match slot.into() {
            Slot::Role(Role::Read) => (&self.read, self.config.read, "of the read role"),
            Slot::Role(Role::Operate) => {
                (&self.operate, self.config.operate, "of the operate role")
            }
            Slot::Role(Role::Admin) => (&self.admin, self.config.admin, "of the admin role"),
            Slot::Public => (&self.public, self.config.public, "without a token"),
        };
        match tokio::time::timeout(self.config.queue_wait, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy(format!(
                "{n} statements {whose} are running and none ended within {:?}; try again later",
                self.config.queue_wait
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_role_waits_then_is_refused_while_others_run() {
        let admission = Admission::new(ConcurrencyConfig {
            read: 1,
            queue_wait: Duration::from_millis(50),
            ..ConcurrencyConfig::default()
        });
        let held = admission.admit(Role::Read).await.unwrap();
        let e = admission.admit(Role::Read).await.unwrap_err();
        assert!(e.0.contains("of the read role"), "{e}");
        assert!(admission.admit(Role::Operate).await.is_ok());
        let public = admission.admit(Slot::Public).await.unwrap();
        let _second = admission.admit(Slot::Public).await.unwrap();
        let e = admission.admit(Slot::Public).await.unwrap_err();
        assert!(e.to_string().contains("without a token"), "{e}");
        drop(public);
        drop(held);
        assert!(admission.admit(Role::Read).await.is_ok());
        assert!(ConcurrencyConfig::default().validate().is_ok());
        let bad = ConcurrencyConfig {
            read: 0,
            ..ConcurrencyConfig::default()
        };
        let e = bad.validate().unwrap_err();
        assert_eq!(e.key, "query.concurrency.read");
        assert_eq!(
            e.to_string(),
            "query.concurrency.read: must be 1 to 10000, not 0"
        );
    }
}
