//! adit-ingest's integration tests, one module per subject, linked into one test binary so the
//! workspace links each crate's stack once (`cargo nextest run --workspace -E 'package(adit-ingest) & binary(it)'`).

mod adapters;
mod common;
mod feed_map;
mod hostile_openadr;
mod openadr_last;
mod sim_devices;
