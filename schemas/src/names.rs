//! Every stream, KV bucket, table and result subject name, in one place (an event kind's
//! subject is its row of the kind table, `events.rs`).

/// The stream of shares and blocks; one stream so its sequence orders both.
pub const STREAM_MINING: &str = "MINING";
/// The stream of readings from machines, meters, sensors and workers.
pub const STREAM_TELEMETRY: &str = "TELEMETRY";
/// The stream of demand-response events and prices.
pub const STREAM_GRID: &str = "GRID";
/// The stream of result rows for subscribers.
pub const STREAM_RESULTS: &str = "RESULTS";
/// The stream of commands to actuators.
pub const STREAM_CONTROL: &str = "CONTROL";
/// The stream of messages a consumer could not accept.
pub const STREAM_DLQ: &str = "DLQ";

/// All streams with the subjects each one captures.
pub const STREAMS: &[(&str, &[&str])] = &[
    (STREAM_MINING, &["mining.>"]),
    (STREAM_TELEMETRY, &["telemetry.>"]),
    (STREAM_GRID, &["grid.>"]),
    (STREAM_RESULTS, &["results.>"]),
    (STREAM_CONTROL, &["control.>"]),
    (STREAM_DLQ, &["dlq.>"]),
];

/// KV bucket holding sites, pools and machines.
pub const KV_REGISTRY: &str = "adit_registry";
/// The registry bucket's backing stream, read by pipelines like any other stream.
pub const STREAM_REGISTRY: &str = "KV_adit_registry";
/// KV bucket holding alert rules.
pub const KV_RULES: &str = "adit_rules";
/// KV bucket holding notification channels.
pub const KV_CHANNELS: &str = "adit_channels";
/// KV bucket holding the pipelines' leases (its max age is the lease TTL; created by the
/// pipelines runtime, not with the others).
pub const KV_LEASES: &str = "adit_leases";
/// KV bucket holding Stratum bans (`adit_schemas::bans`).
pub const KV_BANS: &str = "adit_bans";
/// KV bucket holding users' dashboards (`d.<id>`) and their public links (`link.<key>`).
pub const KV_DASHBOARDS: &str = "adit_dashboards";
/// All KV buckets adit creates.
pub const KV_BUCKETS: &[&str] = &[KV_REGISTRY, KV_RULES, KV_CHANNELS, KV_BANS, KV_DASHBOARDS];

/// Header carrying the schema version of a message.
pub const HEADER_SCHEMA_VERSION: &str = "Adit-Schema-Version";
/// Header carrying the reason a message was dead-lettered.
pub const HEADER_DLQ_REASON: &str = "Adit-Dlq-Reason";
/// Header carrying the subject a dead-lettered message was first published on.
pub const HEADER_DLQ_SUBJECT: &str = "Adit-Dlq-Subject";
/// Header carrying the stream sequence of a dead-lettered message.
pub const HEADER_DLQ_SEQUENCE: &str = "Adit-Dlq-Sequence";
/// Header carrying the event kind a record refused at HTTP ingest was posted as.
pub const HEADER_DLQ_KIND: &str = "Adit-Dlq-Kind";

/// Table of every energy reading.
pub const TABLE_ENERGY_READINGS: &str = "energy_readings";
/// Table of every sensor reading.
pub const TABLE_SENSOR_READINGS: &str = "sensor_readings";
/// Table of every miner status report.
pub const TABLE_MINER_STATUS: &str = "miner_status";
/// Table of every worker-reported hashrate sample.
pub const TABLE_HASHRATE_SAMPLES: &str = "hashrate_samples";
/// Table of every share cluster workers submitted to their coordinator.
pub const TABLE_CLUSTER_SHARES: &str = "cluster_shares";
/// Table of every change of a coordinator's upstream connection.
pub const TABLE_CLUSTER_UPSTREAM: &str = "cluster_upstream";
/// Table of every grid signal.
pub const TABLE_GRID_SIGNALS: &str = "grid_signals";
/// Table of every share.
pub const TABLE_SHARES: &str = "shares";
/// Table of every found block.
pub const TABLE_BLOCKS: &str = "blocks";
/// Table of the terms each pool mined on, one row per new height.
pub const TABLE_NETWORK: &str = "network";
/// Table of every coin price quoted.
pub const TABLE_COIN_PRICES: &str = "coin_prices";
/// Revenue, energy cost, margin and breakeven per machine per settlement interval.
pub const TABLE_MACHINE_PROFIT: &str = "machine_profit";
/// Energy per machine per minute.
pub const TABLE_MACHINE_ENERGY_1M: &str = "machine_energy_1m";
/// Energy per site per minute.
pub const TABLE_SITE_ENERGY_1M: &str = "site_energy_1m";
/// Effective hashrate per pool, miner and worker per minute.
pub const TABLE_HASHRATE_1M: &str = "hashrate_1m";
/// Effective hashrate per pool, miner and worker per hour.
pub const TABLE_HASHRATE_1H: &str = "hashrate_1h";
/// One row per paid block: its reward and how it was split.
pub const TABLE_BLOCK_REWARDS: &str = "block_rewards";
/// One row per miner per paid block.
pub const TABLE_PAYOUTS: &str = "payouts";
/// One row per share a per-share scheme (PPS, FPPS) credits.
pub const TABLE_SHARE_CREDITS: &str = "share_credits";
/// One row per destination of a payment transaction per status it went through.
pub const TABLE_PAYMENTS: &str = "payments";
/// One row per reserve proof the payer made.
pub const TABLE_RESERVE_PROOFS: &str = "reserve_proofs";

/// Columns no SQL reader sees, by table (issue 23): a created payment's signed transaction
/// and the wallet's metadata for it (its secret keys and ring members). Only the payer reads
/// them, through an engine of its own (`SqlEngine::with_secrets`).
pub const SECRET_COLUMNS: &[(&str, &str)] =
    &[(TABLE_PAYMENTS, "tx_blob"), (TABLE_PAYMENTS, "tx_metadata")];
/// Energy per settlement interval (machine, site, pool).
pub const TABLE_ENERGY_SETTLEMENT: &str = "energy_settlement";
/// Energy per hour (machine, site, pool).
pub const TABLE_ENERGY_1H: &str = "energy_1h";
/// Energy per day, the site's local day (machine, site, pool).
pub const TABLE_ENERGY_1D: &str = "energy_1d";
/// Anomalies: one row per opened, updated, resolved.
pub const TABLE_ANOMALIES: &str = "anomalies";
/// Violations: one row per opened, updated, resolved.
pub const TABLE_VIOLATIONS: &str = "violations";
/// Operators' notes on violations, as they arrived.
pub const TABLE_VIOLATION_NOTES: &str = "violation_notes";
/// The controller's decisions, each with its inputs.
pub const TABLE_DECISIONS: &str = "decisions";
/// Every attempt to notify a receiver.
pub const TABLE_NOTIFICATIONS: &str = "notifications";
/// Alerts: one row per change of state.
pub const TABLE_ALERTS: &str = "alerts";
/// Every action through the API with the operate or admin role: who, what, when, from where.
pub const TABLE_AUDIT: &str = "audit";
/// Custom metrics posted over HTTP ingest (`custom_*` names).
pub const TABLE_CUSTOM_METRICS: &str = "custom_metrics";
/// Time-boxed competitions between a pool's teams, as set over the API.
pub const TABLE_COMPETITIONS: &str = "competitions";
/// Inspections of sites and pools, as recorded over the API.
pub const TABLE_INSPECTIONS: &str = "inspections";
/// Operators' overrides of the controller, as made.
pub const TABLE_OVERRIDES: &str = "overrides";
/// Every command's life: sent, then each attempt acked or failed.
pub const TABLE_COMMANDS: &str = "commands";
/// Every registry change with the value before and after.
pub const TABLE_REGISTRY_CHANGES: &str = "registry_changes";
/// One compliance report per site and local day, in revisions.
pub const TABLE_COMPLIANCE_DAILY: &str = "compliance_daily";
/// Each minute of each curtailment event, per revision of its day's compliance report.
pub const TABLE_CURTAILMENT_EVIDENCE: &str = "curtailment_evidence";
/// Each pool's energy at a site's closed day and the site's score, per report revision.
pub const TABLE_COMPLIANCE_POOLS: &str = "compliance_pools";

/// Whether `subject` is `tokens` joined by dots.
pub(crate) fn is_joined(subject: &str, tokens: &[&str]) -> bool {
    let mut rest = subject;
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            match rest.strip_prefix('.') {
                Some(after) => rest = after,
                None => return false,
            }
        }
        match rest.strip_prefix(token) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Subject of a site's energy-per-minute results.
pub fn energy_result_subject(site: &str) -> String {
    format!("results.energy.{site}")
}
/// Subject of a pool's payout results.
pub fn payout_result_subject(pool: &str) -> String {
    format!("results.payout.{pool}")
}
/// Subject of a pool's payment results.
pub fn payment_result_subject(pool: &str) -> String {
    format!("results.payment.{pool}")
}
/// Subject of a site's anomalies.
pub fn anomaly_result_subject(site: &str) -> String {
    format!("results.anomaly.{site}")
}

/// Subject of a site's violations (`None`: a pool's, `results.violation.pools.<pool>`).
pub fn violation_result_subject(site: Option<&str>, subject: &str) -> String {
    match site {
        Some(site) => format!("results.violation.{site}"),
        None => format!("results.violation.pools.{subject}"),
    }
}

/// Subject of a site's controller decisions.
pub fn decision_result_subject(site: &str) -> String {
    format!("results.decision.{site}")
}

/// Whether `subject` matches the NATS subject filter `filter` (`*` one token, `>` the rest;
/// empty: a consumer's whole stream).
pub fn filter_matches(filter: &str, subject: &str) -> bool {
    if filter.is_empty() {
        return true;
    }
    let mut subject = subject.split('.');
    for token in filter.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (t, Some(s)) if t == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// Dead-letter subject for messages taken from `stream`.
pub fn dlq_subject(stream: &str) -> String {
    format!("dlq.{}", stream.to_ascii_lowercase())
}

/// Whether `name` may stand as one token of a subject (and a partition value): 1–64 of
/// `[A-Za-z0-9_-]`.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A dedupe id as it may travel in a `Nats-Msg-Id` header, whatever its parts held: every
/// control character and `%` become `%XX` (so two different ids stay different), everything
/// else is kept. Ids built from validated parts come out unchanged.
pub fn message_id(id: &str) -> std::borrow::Cow<'_, str> {
    escape(id, |c| c == '%' || c.is_control())
}

/// Most bytes of outside text a header carries ([`header_text`]); the rest is cut, so a
/// device's kilobytes of reply quoted in a refusal cannot push a message past NATS's size.
pub const MAX_HEADER_TEXT: usize = 1024;

/// Text from outside (a refusal's reason, a device's address) as a header value may hold it:
/// every control character (line breaks included) becomes `%XX`, the rest is kept, cut to
/// [`MAX_HEADER_TEXT`] bytes (ending in `…` when cut).
pub fn header_text(text: &str) -> std::borrow::Cow<'_, str> {
    let escaped = escape(text, char::is_control);
    if escaped.len() <= MAX_HEADER_TEXT {
        return escaped;
    }
    let mut end = MAX_HEADER_TEXT - '…'.len_utf8();
    while !escaped.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &escaped[..end]))
}

/// `text` with each character `needs` picks written as `%XX` per UTF-8 byte.
fn escape(text: &str, needs: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(&needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_built_from_tokens() {
        assert_eq!(dlq_subject(STREAM_TELEMETRY), "dlq.telemetry");
        assert!(is_token("rack-7_a"));
        assert!(!is_token("a.b"));
        assert!(!is_token("a b"));
        assert!(!is_token("*"));
        assert!(!is_token(""));
        assert!(!is_token(&"x".repeat(65)));
    }

    #[test]
    fn filters_match_like_nats() {
        assert!(filter_matches("results.>", "results.alert.critical"));
        assert!(!filter_matches("results.>", "results"));
        assert!(filter_matches("results.alert.*", "results.alert.critical"));
        assert!(!filter_matches(
            "results.alert.*",
            "results.alert.critical.x"
        ));
        assert!(!filter_matches("results.alert.*", "results.payout.p1"));
        assert!(filter_matches("mining.block.p1", "mining.block.p1"));
        assert!(!filter_matches("mining.block.p1", "mining.block.p2"));
        assert!(filter_matches("", "telemetry.energy.s1.m1"));
    }

    /// Issue 22: a job id holding `\r\n` reached a `Nats-Msg-Id` header and async-nats
    /// panicked in the pool's publisher.
    #[test]
    fn ids_and_header_texts_hold_no_line_break() {
        assert_eq!(message_id("share:p1:17:5f01:9"), "share:p1:17:5f01:9");
        assert_eq!(message_id("share:p1:1\r\n7"), "share:p1:1%0D%0A7");
        assert_eq!(message_id("a%0Db"), "a%250Db");
        assert_ne!(message_id("a\rb"), message_id("a%0Db"));
        assert_eq!(message_id("é\u{85}"), "é%C2%85");
        assert_eq!(header_text("bad\nline 50%"), "bad%0Aline 50%");
        let text = "é".repeat(5000);
        let long = header_text(&text);
        assert!(long.len() <= MAX_HEADER_TEXT && long.ends_with('…'));
    }
}
