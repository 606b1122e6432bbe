//! Bringing the outside world's data in, and the farm's commands out.
//!
//! Device adapters poll or subscribe to the farm's machines, meters, sensors and grid feeds;
//! HTTP push takes records from anyone holding a token; the simulator plays a whole farm; the
//! actuators carry curtailment commands to miners and PDUs. Everything here publishes through
//! `adit_bus`; it never writes tables or computes results: that is `sinks` and `pipelines`.

pub mod actuators;
pub mod adapters;
pub mod http;
pub mod simulate;
