//! adit-coopmine's integration tests, one module per subject, linked into one test binary so the
//! workspace links each crate's stack once (`cargo nextest run --workspace -E 'package(adit-coopmine) & binary(it)'`).

mod common;
mod hostile_messages;
mod mtls;
mod rest_auth;
