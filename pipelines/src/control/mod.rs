//! Curtailment: the pure controller (`controller`: state, inputs and time in, decisions and
//! commands out) and the pipeline that feeds it and records what it decided (`curtailment`).

pub mod controller;
pub mod curtailment;
