//! adit's alerting: rule groups in Prometheus's shape whose expressions are SQL over adit's
//! tables ([`rules`]), kept in the `adit_rules` KV bucket ([`store`]), evaluated with the
//! same pending → firing → resolved state machine as Prometheus ([`machine`], pure), by the
//! `alerts` role ([`evaluate`]), which publishes every transition on
//! `results.alert.<severity>`; and the `notify` role ([`notify`]), which groups, silences and
//! sends them (webhook, Telegram, email, SMS) and records every attempt. It never writes
//! tables (the `alerts` and `notifications` pipelines land them).

pub mod error;
pub mod evaluate;
pub mod machine;
pub mod notify;
pub mod rules;
pub mod store;

pub use error::{AlertsError, Result};
pub use evaluate::{AlertsConfig, run};
pub use rules::{Rule, RuleFile, RuleGroup};
pub use store::RuleStore;
