//! adit-bus's integration tests, one module per subject, linked into one test binary so the
//! workspace links each crate's stack once (`cargo nextest run --workspace -E 'package(adit-bus) & binary(it)'`).

mod consumer;
mod hostile_headers;
mod lease;
mod setup;
