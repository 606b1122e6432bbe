//! The book's reference pages (`docs/src/reference/`) are generated from the code, and this
//! test is the generator: it renders each page from what the code says (clap's command line,
//! the config types, the metrics adit describes, and a running adit's OpenAPI document and
//! table catalog), writes every page that differs and fails naming them. So CI fails when the
//! code and the book disagree, and the same run on a developer's machine leaves the pages to
//! commit (rust-analyzer's generated docs work so):
//!
//! ```text
//! cargo nextest run --workspace -E 'test(/^reference::/)'
//! ```

mod cli;
mod config;
mod metrics;
mod served;

use std::path::Path;

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_pages_are_what_the_code_says() {
    let mut pages = vec![
        ("subcommands.md", cli::page()),
        ("config.md", config::page()),
        ("metrics.md", metrics::page()),
    ];
    let (_nats, _dir, app) = common::start_app("pipelines,query", "").await;
    app.wait_http().await;
    pages.push(("http-api.md", served::http_api(&app).await));
    pages.push(("tables.md", served::tables(&app).await));
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/reference");
    let stale: Vec<&str> = pages
        .iter()
        .filter(|(name, text)| {
            let path = folder.join(name);
            let same = std::fs::read_to_string(&path).is_ok_and(|old| old == *text);
            if !same {
                std::fs::write(&path, text).unwrap();
            }
            !same
        })
        .map(|(name, _)| *name)
        .collect();
    assert!(
        stale.is_empty(),
        "the reference pages {stale:?} in docs/src/reference did not match the code and have \
         been rewritten: review and commit them"
    );
}
