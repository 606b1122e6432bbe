//! `adit sql`: send SQL to a running adit's API and print the answer as a table (or pass CSV,
//! JSON or NDJSON through).

use anyhow::{Context, bail};
use arrow::ipc::reader::StreamReader;

use crate::cli::SqlArgs;
use crate::config::Config;

/// Runs the query and prints the result.
pub(super) async fn run(config: &Config, args: &SqlArgs) -> anyhow::Result<()> {
    let base = args.url.clone().unwrap_or_else(|| config.query.local_url());
    let wire = match args.format.as_str() {
        "table" => "arrow",
        f @ ("csv" | "json" | "ndjson") => f,
        other => bail!("--format {other:?}: use table, csv, json or ndjson"),
    };
    let mut client = reqwest::Client::builder();
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading --ca {}", ca.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("--ca {} is not a PEM certificate", ca.display()))?;
        client = client.add_root_certificate(cert);
    }
    let mut request = client
        .build()?
        .post(format!(
            "{}/api/v1/sql?format={wire}",
            base.trim_end_matches('/')
        ))
        .header("content-type", "text/plain")
        .body(args.sql.clone());
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("connecting to {base}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        let message = serde_json::from_slice::<adit_schemas::api::ErrorBody>(&body)
            .map(|e| format!("{}: {}", e.error.code, e.error.message))
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        bail!("{status}: {message}");
    }
    if wire != "arrow" {
        print!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let reader = StreamReader::try_new(std::io::Cursor::new(body), None)?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    println!("({rows} row{})", if rows == 1 { "" } else { "s" });
    Ok(())
}
