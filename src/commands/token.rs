//! `adit token new`: a fresh random token for its holder, and the config entry that lets it in
//! while keeping only its SHA-256 (whoever reads the config cannot use it).

use crate::cli::{TokenArgs, TokenWhat};

/// Prints a new token and its config entry.
pub(super) fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let TokenWhat::New { name, role, worker } = &args.what;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let role: adit_auth::Role = role.parse().map_err(anyhow::Error::msg)?;
    let entry = adit_auth::TokenConfig {
        name: name.clone(),
        token: None,
        sha256: Some(adit_auth::digest_hex(&secret)),
        role,
        worker: worker.clone(),
    };
    let section = if worker.is_some() {
        "cluster.rest"
    } else {
        "query"
    };
    // The same checks the config gets, so what is printed loads.
    adit_auth::Tokens::new(section, std::slice::from_ref(&entry), None)
        .map_err(anyhow::Error::msg)?;
    println!("# The token, for {name} alone (shown once: adit keeps only its digest):");
    println!("{secret}");
    println!();
    println!("# For adit's config file:");
    println!("[[{section}.tokens]]");
    println!("name = {}", toml_string(name));
    println!(
        "sha256 = \"{}\"",
        entry.sha256.as_deref().unwrap_or_default()
    );
    println!("role = \"{}\"", role.name());
    if let Some(worker) = worker {
        println!("worker = {}", toml_string(worker));
    }
    Ok(())
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}
