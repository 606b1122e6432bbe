//! adit-devices's integration tests, one module per subject, linked into one test binary so the
//! workspace links each crate's stack once (`cargo nextest run --workspace -E 'package(adit-devices) & binary(it)'`).

mod hostile_devices;
mod mqtt;
mod topic_maps;
