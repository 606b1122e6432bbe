//! adit-payments's integration tests, one module per subject, linked into one test binary so the
//! workspace links each crate's stack once (`cargo nextest run --workspace -E 'package(adit-payments) & binary(it)'`).

mod ledger;
mod opensy;
