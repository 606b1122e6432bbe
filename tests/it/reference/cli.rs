//! The subcommands page, from clap's definition of the command line (`src/cli.rs`): every
//! command with its doc comment, usage and options (default, environment variable, meaning).

use std::fmt::Write;

use clap::CommandFactory;

/// `docs/src/reference/subcommands.md`.
pub(super) fn page() -> String {
    let mut root = adit::cli::Cli::command();
    root.build();
    let mut out = String::from(
        "# Subcommands\n\n\
         Generated from the command line's definition (`src/cli.rs`) by \
         `cargo nextest run --workspace -E 'test(/^reference::/)'`; do not edit by hand. \
         `adit help <command>` prints the same.\n\n\
         ## Global options\n\n\
         Every command takes these; each overrides the TOML file (see \
         [Configuration](config.md)). `ADIT_LOG` sets the log filter (`info`, `debug`…).\n\n",
    );
    options(&mut out, root.get_arguments().filter(|a| a.is_global_set()));
    commands(&mut out, &root, "adit");
    out
}

/// Each subcommand of `cmd`, depth first, under its full name.
fn commands(out: &mut String, cmd: &clap::Command, path: &str) {
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("{path} {}", sub.get_name());
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|s| s.to_string())
            .unwrap_or_default();
        let usage = sub.clone().bin_name(&name).render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ").trim();
        let _ = write!(
            out,
            "## `{name}`\n\n{}\n\n```text\n{usage}\n```\n\n",
            one_line(&about)
        );
        options(
            out,
            sub.get_arguments()
                .filter(|a| !a.is_global_set() && !is_builtin(a)),
        );
        commands(out, sub, &name);
    }
}

/// The options as a table, or nothing when there are none.
fn options<'a>(out: &mut String, args: impl Iterator<Item = &'a clap::Arg>) {
    let rows: Vec<String> = args
        .filter(|a| !is_builtin(a) && !a.is_hide_set())
        .map(|a| {
            let default = a
                .get_default_values()
                .iter()
                .map(|v| format!("`{}`", v.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(", ");
            let env = a
                .get_env()
                .map(|e| format!("`{}`", e.to_string_lossy()))
                .unwrap_or_default();
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| one_line(&h.to_string()))
                .unwrap_or_default();
            format!("| {} | {default} | {env} | {} |", flag(a), cell(&help))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str("| option | default | environment | meaning |\n| --- | --- | --- | --- |\n");
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    out.push('\n');
}

/// `--name VALUE`, `-c, --config CONFIG` or `<FILE>` for a positional argument.
fn flag(a: &clap::Arg) -> String {
    let value = || {
        a.get_value_names()
            .map(|names| {
                names
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| a.get_id().as_str().to_uppercase())
    };
    if a.is_positional() {
        return format!("`<{}>`", value());
    }
    let takes_value = a.get_action().takes_values();
    let mut name = String::new();
    if let Some(short) = a.get_short() {
        let _ = write!(name, "-{short}, ");
    }
    if let Some(long) = a.get_long() {
        let _ = write!(name, "--{long}");
    }
    if takes_value {
        let _ = write!(name, " {}", value());
    }
    let possible: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|p| !p.is_hide_set())
        .map(|p| p.get_name().to_string())
        .collect();
    if takes_value && !possible.is_empty() {
        let _ = write!(name, " ({})", possible.join("\\|"));
    }
    format!("`{name}`")
}

/// clap's own `--help` and `--version`.
fn is_builtin(a: &clap::Arg) -> bool {
    matches!(a.get_id().as_str(), "help" | "version")
}

/// A doc comment's lines joined into one paragraph.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text that can stand in a table cell: `|` escaped, and `<`, `>` outside code spans written
/// as entities (Markdown would read `<pipeline>` as an HTML tag).
pub(super) fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut code = false;
    for c in text.chars() {
        match c {
            '`' => {
                code = !code;
                out.push(c);
            }
            '|' => out.push_str("\\|"),
            '<' if !code => out.push_str("&lt;"),
            '>' if !code => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}
