//! The pages read from a running adit: the HTTP API from the OpenAPI document it serves
//! (`/api/v1/openapi.json`, made by utoipa from the route handlers), and the tables with their
//! columns as its SQL catalog lists them (`/api/v1/tables`), each described by its name's doc
//! comment in `schemas/src/names.rs`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::cli::cell;
use crate::common::{self, App};

/// `docs/src/reference/http-api.md`.
pub(super) async fn http_api(app: &App) -> String {
    let doc: Value = get(app, "/api/v1/openapi.json").await;
    let mut out = String::from(
        "# HTTP API\n\n\
         Generated from the OpenAPI document adit serves at `/api/v1/openapi.json` (made from \
         the route handlers) by `cargo nextest run --workspace -E 'test(/^reference::/)'`; do not \
         edit by hand. A route marked *token* needs `Authorization: Bearer <token>` once \
         `[query] tokens` are set, with the role the route asks for (see \
         [Security](../operate/security.md)).\n\n",
    );
    let mut by_tag: BTreeMap<String, Vec<(String, String, &Value)>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
            by_tag
                .entry(tag)
                .or_default()
                .push((path.clone(), method.to_uppercase(), op));
        }
    }
    let tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or_default().to_string();
            (
                name,
                t["description"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (tag, description) in &tags {
        let Some(ops) = by_tag.remove(tag) else {
            continue;
        };
        let _ = write!(out, "## {description}\n\n");
        for (path, method, op) in ops {
            operation(&mut out, &path, &method, op);
        }
    }
    for (tag, ops) in by_tag {
        let _ = write!(out, "## {tag}\n\n");
        for (path, method, op) in ops {
            operation(&mut out, &path, &method, op);
        }
    }
    out
}

/// One route: what it does, its parameters, body and answers.
fn operation(out: &mut String, path: &str, method: &str, op: &Value) {
    let token = if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
        " (token)"
    } else {
        ""
    };
    let _ = write!(out, "### `{method} {path}`{token}\n\n");
    for key in ["summary", "description"] {
        if let Some(text) = op[key].as_str() {
            let _ = write!(out, "{}\n\n", cell(text.trim()));
        }
    }
    let params: Vec<String> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "| `{}` | {} | {} | {} |",
                p["name"].as_str().unwrap_or_default(),
                p["in"].as_str().unwrap_or_default(),
                if p["required"] == true { "yes" } else { "no" },
                cell(&one_line(p["description"].as_str().unwrap_or_default()))
            )
        })
        .collect();
    if !params.is_empty() {
        out.push_str("| parameter | in | required | meaning |\n| --- | --- | --- | --- |\n");
        for row in params {
            let _ = writeln!(out, "{row}");
        }
        out.push('\n');
    }
    if let Some(body) = op["requestBody"]["content"].as_object() {
        let types: Vec<String> = body.keys().map(|k| format!("`{k}`")).collect();
        let _ = write!(out, "Body: {}.\n\n", types.join(", "));
    }
    let answers: Vec<String> = op["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(status, r)| {
            let text = one_line(r["description"].as_str().unwrap_or_default());
            if text.is_empty() {
                format!("`{status}`")
            } else {
                format!("`{status}` {text}")
            }
        })
        .collect();
    if !answers.is_empty() {
        let _ = write!(out, "Answers: {}.\n\n", cell(&answers.join("; ")));
    }
}

/// `path`'s JSON, read with the reader's token.
async fn get<T: serde::de::DeserializeOwned>(app: &App, path: &str) -> T {
    app.get_json(path, common::READ_TOKEN).await
}

/// `docs/src/reference/tables.md`.
pub(super) async fn tables(app: &App) -> String {
    let listed = settled_tables(app).await;
    let described = table_docs();
    let mut out = String::from(
        "# Tables and columns\n\n\
         Generated from a running adit's SQL catalog (`/api/v1/tables`, the same as \
         `information_schema.columns` and psql's `\\d`), each table described by its name's \
         doc comment in `schemas/src/names.rs`, by `cargo nextest run --workspace -E \
         'test(/^reference::/)'`; do not edit by hand. Every table is a Delta table under the table \
         root, partitioned by `date` where it has one.\n\n",
    );
    for (table, columns) in &listed {
        let _ = write!(out, "## `{table}`\n\n");
        if let Some(doc) = described.get(table) {
            let _ = write!(out, "{}\n\n", cell(doc));
        } else if let Some((kept, of)) = table
            .split_once('_')
            .filter(|(k, _)| *k == "latest" || *k == "recent")
        {
            let _ = write!(
                out,
                "The {} of `{of}` per key, held in memory by the query process as the rows \
                 arrive (see [The latest values](../query/sql-http.md#the-latest-values)).\n\n",
                if kept == "latest" {
                    "newest row"
                } else {
                    "newest `query.latest.keep` rows"
                }
            );
        }
        out.push_str("| column | type |\n| --- | --- |\n");
        for column in columns {
            let _ = writeln!(
                out,
                "| `{}` | `{}` |",
                column["name"].as_str().unwrap_or_default(),
                column["type"].as_str().unwrap_or_default()
            );
        }
        out.push('\n');
    }
    let others: Vec<String> = described
        .iter()
        .filter(|(name, _)| !listed.contains_key(*name))
        .map(|(name, doc)| format!("- `{name}`: {doc}"))
        .collect();
    if !others.is_empty() {
        out.push_str(
            "## Made by other roles\n\n\
             These appear once the role that writes them first runs (the pool, payments, the \
             cluster, the compliance job…); their columns are listed then by `/api/v1/tables`.\n\n",
        );
        out.push_str(&others.join("\n"));
        out.push('\n');
    }
    out
}

/// The tables once the pipelines are up (`/ready`) and two listings a second apart agree:
/// each pipeline creates its tables as it starts.
async fn settled_tables(app: &App) -> BTreeMap<String, Vec<Value>> {
    common::eventually(Duration::from_secs(60), "/ready", || async {
        reqwest::get(format!("{}/ready", app.url()))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let mut last: BTreeMap<String, Vec<Value>> = get(app, "/api/v1/tables").await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = get(app, "/api/v1/tables").await;
        if now == last {
            return now;
        }
        last = now;
    }
}

/// `TABLE_*` constants' values and doc comments, from `schemas/src/names.rs`.
fn table_docs() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/src/names.rs");
    let file = syn::parse_file(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for item in file.items {
        let syn::Item::Const(c) = item else { continue };
        if !c.ident.to_string().starts_with("TABLE_") {
            continue;
        }
        let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(name),
            ..
        }) = *c.expr
        else {
            continue;
        };
        out.insert(name.value(), super::config::doc(&c.attrs));
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
