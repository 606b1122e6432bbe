//! The Grafana and Prometheus assets under `deploy/` (issue 12): `promtool` accepts the scrape
//! config and the alert rules, and its unit tests of the rules pass (each rule of the
//! Prometheus-only `process` group fires on the series that should raise it); the alert rules
//! are adit's default rules (same names, groups, severities and `for`, or listed as left out),
//! besides that group; and every metric a dashboard or an alert rule uses is one that
//! `adit demo` exports on `/metrics`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use adit_alerts::RuleFile;
use common::Demo;

const SCRAPE_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const ALERT_RULES: &str = "deploy/prometheus/alerts.yml";
const ALERT_RULE_TESTS: &str = "deploy/prometheus/alerts_test.yml";
/// The group of rules over the process's vital signs, which only `/metrics` carries.
const PROMETHEUS_ONLY: &str = "process";
const DASHBOARDS: &[&str] = &[
    "deploy/grafana/pool-overview.json",
    "deploy/grafana/farm-energy.json",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Runs `promtool` in the repository; fails (never skips) when it is not installed.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool could not be run ({e}); scripts/setup.sh installs it (Debian's \
                 `prometheus` package)"
            )
        });
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_alert_rules() {
    promtool(&["check", "config", SCRAPE_CONFIG]);
    promtool(&["check", "rules", ALERT_RULES]);
    promtool(&["test", "rules", ALERT_RULE_TESTS]);
}

/// Grafana's variables replaced by values Prometheus accepts.
fn without_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range_s", "3600")
        .replace("$__range", "1h")
        .replace("$site", ".*")
}

#[test]
fn promtool_parses_every_dashboard_query() {
    // Each panel query as a recording rule, so promtool's PromQL parser checks it.
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for &file in DASHBOARDS {
        let dashboard: serde_json::Value =
            serde_json::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut exprs = Vec::new();
        dashboard_exprs(&dashboard, &mut exprs);
        for (i, expr) in exprs.iter().enumerate() {
            if expr.starts_with("label_values(") {
                continue; // a Grafana variable query, not PromQL
            }
            let expr = serde_json::to_string(&without_grafana_variables(expr)).unwrap();
            rules.push_str(&format!(
                "      - record: dashboard:{}:{i}\n        expr: {expr}\n",
                file.trim_start_matches("deploy/grafana/")
                    .trim_end_matches(".json")
                    .replace('-', "_")
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboards.yml");
    std::fs::write(&path, rules).unwrap();
    promtool(&["check", "rules", path.to_str().unwrap()]);
}

#[test]
fn the_prometheus_alert_rules_are_the_default_rules() {
    let defaults = RuleFile::from_yaml(&read("rules/default.yml"), Default::default())
        .expect("rules/default.yml");
    let text = read(ALERT_RULES);
    // The same rule-group shape as adit's rules (unknown fields are refused), PromQL for SQL.
    let promql: RuleFile = serde_saphyr::from_str(&text).expect(ALERT_RULES);
    let by_name = |file: &RuleFile| -> BTreeMap<String, (String, adit_alerts::Rule)> {
        file.groups
            .iter()
            .flat_map(|g| {
                g.rules
                    .iter()
                    .map(|r| (r.alert.clone(), (g.name.clone(), r.clone())))
            })
            .collect()
    };
    let (defaults, promql) = (by_name(&defaults), by_name(&promql));
    let for_ = |r: &adit_alerts::Rule| adit_alerts::rules::duration(r.for_.as_deref()).unwrap();
    for (name, (group, rule)) in &promql {
        if group == PROMETHEUS_ONLY {
            assert!(
                !defaults.contains_key(name),
                "{name} is in the Prometheus-only group but is a default rule"
            );
            assert!(
                read(ALERT_RULE_TESTS).contains(&format!("alertname: {name}")),
                "{ALERT_RULE_TESTS}: no test of {name}"
            );
            continue;
        }
        let Some((default_group, default)) = defaults.get(name) else {
            panic!("{ALERT_RULES}: {name} is not one of rules/default.yml's rules");
        };
        assert_eq!(group, default_group, "{ALERT_RULES}: {name}'s group");
        assert_eq!(
            rule.severity(),
            default.severity(),
            "{ALERT_RULES}: {name}'s severity"
        );
        assert_eq!(for_(rule), for_(default), "{ALERT_RULES}: {name}'s `for`");
    }
    for name in defaults.keys() {
        assert!(
            promql.contains_key(name) || text.contains(&format!("#   - {name}: ")),
            "{ALERT_RULES}: the default rule {name} is neither expressed nor listed as left out"
        );
    }
}

/// Aggregation operators, which may be followed by `by (…)` before their parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a list of labels in parentheses.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Other keywords and literals.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "offset", "bool", "inf", "nan", "atan2",
];

/// The index just past the closing `close` of the bracket opened at `chars[start]`, skipping
/// quoted strings inside.
fn past(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() && chars[i] != close {
        if matches!(chars[i], '"' | '\'' | '`') {
            i = past_string(chars, i);
        } else {
            i += 1;
        }
    }
    i + 1
}

fn past_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names a PromQL expression (or a Grafana `label_values(metric, label)`) reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let expr = expr.trim();
    let expr = match expr
        .strip_prefix("label_values(")
        .and_then(|a| a.strip_suffix(')'))
    {
        Some(args) => match args.rsplit_once(',') {
            Some((metric, _)) => metric,
            None => return BTreeSet::new(),
        },
        None => expr,
    };
    let chars: Vec<char> = expr.chars().collect();
    let next_char = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        (i, chars.get(i).copied())
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = past_string(&chars, i);
        } else if c == '{' {
            i = past(&chars, i, '}');
        } else if c == '[' {
            i = past(&chars, i, ']');
        } else if c == '$' {
            // A Grafana variable: `$__rate_interval`, `${DS_PROMETHEUS}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = past(&chars, i, '}');
            }
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers and durations: 0.95, 1e12, 10m.
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let (after, next) = next_char(i);
            if LABEL_LISTS.contains(&word.as_str()) {
                if next == Some('(') {
                    i = past(&chars, after, ')');
                }
            } else if next == Some('(')
                || AGGREGATIONS.contains(&word.as_str())
                || KEYWORDS.contains(&word.as_str())
            {
                // A function, an aggregation or a keyword.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (le, pipeline) (rate(adit_a_bucket{x="}", y=~"$site"}[$__rate_interval])))"#
        ),
        ["adit_a_bucket"]
    );
    assert_eq!(
        names(
            "sum without (result) (increase(b_total[10m])) == 0 and on(site) group_left(z) c offset 1h > bool 1e3"
        ),
        ["b_total", "c"]
    );
    assert_eq!(
        names("count_over_time((d > e)[$__range:1m]) * $__range_s / 3600"),
        ["d", "e"]
    );
    assert_eq!(names("label_values(f, site)"), ["f"]);
    assert_eq!(names("topk(10, g) / sum(h) by (i)"), ["g", "h"]);
}

/// Every PromQL expression of a dashboard: its panels' `expr` and its variables' `definition`.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// Each metric the dashboards and alert rules use, with the files using it.
fn metrics_used() -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut used: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    let mut note = |file: &'static str, exprs: Vec<String>| {
        assert!(!exprs.is_empty(), "{file}: no PromQL expression found");
        for expr in exprs {
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{file}: no metric in {expr:?}");
            for name in names {
                used.entry(name).or_default().insert(file);
            }
        }
    };
    for &file in DASHBOARDS {
        let dashboard: serde_json::Value =
            serde_json::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(dashboard["schemaVersion"], 39, "{file}");
        let mut exprs = Vec::new();
        dashboard_exprs(&dashboard, &mut exprs);
        note(file, exprs);
    }
    let rules: RuleFile = serde_saphyr::from_str(&read(ALERT_RULES)).expect(ALERT_RULES);
    let exprs = rules
        .groups
        .iter()
        .flat_map(|g| g.rules.iter().map(|r| r.expr.clone()))
        .collect();
    note(ALERT_RULES, exprs);
    used
}

/// The metric names in a Prometheus text exposition: every sample's name and every `# TYPE`.
fn exported(text: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut samples = BTreeSet::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                types.insert(name.to_string(), kind.trim().to_string());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_string());
        }
    }
    (samples, types)
}

/// The used metrics `/metrics` does not export (a histogram's or summary's `_bucket`, `_sum`
/// and `_count` count as its own name).
fn missing(
    used: &BTreeMap<String, BTreeSet<&'static str>>,
    text: &str,
) -> BTreeMap<String, BTreeSet<&'static str>> {
    let (samples, types) = exported(text);
    used.iter()
        .filter(|(name, _)| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| {
                    matches!(
                        types.get(*b).map(String::as_str),
                        Some("histogram" | "summary")
                    )
                });
            !samples.contains(*name) && !types.contains_key(*name) && base.is_none()
        })
        .map(|(n, f)| (n.clone(), f.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_alert_rules_use_is_exported_by_the_demo() {
    let used = metrics_used();
    for name in [
        "adit_pool_hashrate",
        "adit_site_power_watts",
        "adit_site_allocation_watts",
        "adit_sensor_temperature_celsius",
        "adit_payments_total",
        "adit_notifications_total",
    ] {
        assert!(used.contains_key(name), "no dashboard uses {name}");
    }
    let mut demo = Demo::start();
    let http = demo.http;
    let url = format!("http://127.0.0.1:{http}/metrics");
    let started = Instant::now();
    let mut serving: Option<Instant> = None;
    let text = loop {
        let text = match reqwest::get(&url).await {
            Ok(r) if r.status().is_success() => r.text().await.ok(),
            _ => None,
        };
        if let Some(text) = text {
            let since = *serving.get_or_insert_with(Instant::now);
            let gone = missing(&used, &text);
            if gone.is_empty() {
                break text;
            }
            if since.elapsed() > Duration::from_secs(90) {
                let list: Vec<String> = gone
                    .iter()
                    .map(|(name, files)| {
                        let files: Vec<&str> = files.iter().copied().collect();
                        format!("  {name} (used in {})", files.join(", "))
                    })
                    .collect();
                panic!(
                    "metrics used by the dashboards or alert rules that adit demo's /metrics does \
                     not export after 90 s:\n{}\n/metrics:\n{text}",
                    list.join("\n")
                );
            }
        } else {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "adit demo did not serve /metrics; log:\n{}",
                demo.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "all {} metrics exported {:?} after start",
        used.len(),
        started.elapsed()
    );
    // The farm's figures are real numbers, not only registered names.
    let (samples, _) = exported(&text);
    assert!(samples.contains("adit_site_power_watts"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("adit_site_allocation_watts{") && !l.ends_with(" 0")),
        "a site's allocation is exported: {text}"
    );
    assert!(
        demo.terminate(),
        "clean exit on SIGTERM; log:\n{}",
        demo.log()
    );
}
