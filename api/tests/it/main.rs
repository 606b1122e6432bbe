//! adit-api's integration tests, one module per subject, linked into one test binary so the
//! workspace links each crate's stack once (`cargo nextest run --workspace -E 'package(adit-api) & binary(it)'`).

mod hostile_http;
