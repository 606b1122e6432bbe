//! adit-protocol's integration tests, one module per subject, linked into one test binary so the
//! workspace links each crate's stack once (`cargo nextest run --workspace -E 'package(adit-protocol) & binary(it)'`).

mod hostile_lines;
mod tls_rotation;
