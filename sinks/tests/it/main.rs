//! adit-sinks's integration tests, one module per subject, linked into one test binary so the
//! workspace links each crate's stack once (`cargo nextest run --workspace -E 'package(adit-sinks) & binary(it)'`).

mod exactly_once;
mod s3;
mod tables;
