//! The farm's pipelines: readings per machine and site (`readings`), energy per minute
//! (`energy`) and per tariff period (`energy_periods`), each machine's profit per settlement
//! interval (`profit`), compliance violations (`violations`),
//! anomalies (`anomalies`, over the pure `detector`) and the registry's change log
//! (`registry_log`).

pub mod anomalies;
pub mod detector;
pub mod energy;
pub mod energy_periods;
pub mod profit;
pub mod readings;
pub mod registry_log;
pub mod violations;
