//! The one source of truth for the shape of every record adit moves.
//!
//! This crate defines the events that arrive on JetStream (shares, blocks, energy and sensor
//! readings, miner status, hashrate samples, grid signals) and the result rows the pipelines
//! write, as serde types with their Arrow schemas; the validation that says why a record is
//! refused; and every stream, subject and table name. It does no I/O.

pub mod alerts;
pub mod api;
pub mod arrow_rows;
pub mod audit;
pub mod bans;
pub mod chain;
pub mod competition;
pub mod compliance;
pub mod control;
pub mod custom_metric;
pub mod error;
pub mod events;
pub mod inspection;
pub mod market;
pub mod names;
pub mod overrides;
pub mod record;
pub mod registry;
pub mod results;
pub mod time;
pub mod validate;
pub mod window;

pub use arrow_rows::{stamped_batch, to_batch};
pub use audit::AuditEntry;
pub use competition::Competition;
pub use control::{Command, CommandAction, CommandOutcome, OutcomeStatus};
pub use custom_metric::CustomMetric;
pub use error::{Error, Result};
pub use events::{
    AnyEvent, Block, BlockStatus, ClusterShare, ClusterUpstream, EnergyReading, EnergySource,
    Event, EventKind, GridSignal, GridSignalKind, HashrateSample, Kinded, Land, MinerState,
    MinerStatus, NoteAction, Push, SensorKind, SensorReading, Share, ViolationNote,
};
pub use inspection::Inspection;
pub use market::{CoinPrice, NetworkState};
pub use overrides::{Override, OverrideKind};
pub use validate::{Invalid, ValidationPolicy};

/// Version of the wire format; travels in the `Adit-Schema-Version` header of every message.
pub const SCHEMA_VERSION: u32 = 1;

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::registry::RecordKind;
    use super::results::PaymentStatus;
    use super::{CommandAction, EnergySource, OverrideKind};

    /// Each enum's name in tables and ids (strum) is its name on the wire (serde).
    fn same_names<T: IntoEnumIterator + serde::Serialize + Into<&'static str>>() {
        for v in T::iter() {
            let wire = serde_json::to_value(&v).unwrap();
            let name: &'static str = v.into();
            assert_eq!(wire, serde_json::Value::from(name));
        }
    }

    #[test]
    fn table_names_are_wire_names() {
        same_names::<CommandAction>();
        same_names::<EnergySource>();
        same_names::<OverrideKind>();
        same_names::<PaymentStatus>();
        same_names::<RecordKind>();
    }
}
