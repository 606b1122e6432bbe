//! Bringing the outside world's data in.
//!
//! Device adapters poll or subscribe to the farm's machines, meters, sensors and grid feeds;
//! HTTP push takes records from anyone holding a token; the simulator plays a whole farm, its
//! HTTP devices being each device family's fake, which answers from the
//! readings in `fake.rs`. The
//! protocols are `adit_devices`, the commands out `adit_actuators`. Everything here publishes through
//! `adit_bus`; it never writes tables or computes results: that is `sinks` and `pipelines`.

pub mod adapters;
mod fake;
pub mod http;
pub mod simulate;
