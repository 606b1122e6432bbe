//! The metrics adit exports on `/metrics`, in one list: each is described (`# HELP`), and those
//! that only move when something happens — a block found, a payment, a notification, a failed
//! command — are registered at zero when the recorder is installed, so dashboards and alert
//! rules (`deploy/grafana`, `deploy/prometheus`) find every series from the start, whichever
//! roles the process runs (a zero is true of a role it does not run). A label whose values are a
//! fixed set starts with each value; one that names data (a pool, a miner, a receiver) is filled
//! in by the first event. `tests/it/monitoring.rs` checks that every metric the dashboards and
//! alert rules use is exported. The pipelines' metrics are registered by
//! `adit_pipelines::runtime::metrics::register`.

use metrics::{describe_counter, describe_gauge, describe_histogram};

use self::Start::{Unset, Zero, ZeroEach};
use self::Type::{Counter, Gauge, Histogram};

/// A metric's type.
enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// What a metric shows before its first update.
enum Start {
    /// Nothing: it is set as soon as its role runs (or is absent on purpose until it fails).
    Unset,
    /// Zero, without labels.
    Zero,
    /// Zero for each value of one label.
    ZeroEach(&'static str, &'static [&'static str]),
}

/// One exported metric.
struct Metric {
    name: &'static str,
    kind: Type,
    help: &'static str,
    start: Start,
}

const fn m(name: &'static str, kind: Type, start: Start, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        help,
        start,
    }
}

/// Every metric outside the pipelines, by the crate that reports it.
const METRICS: &[Metric] = &[
    // stratum: the pool.
    m(
        "adit_pool_hashrate",
        Gauge,
        Unset,
        "The pool's hashrate over the last window, H/s.",
    ),
    m(
        "adit_pool_miners_connected",
        Gauge,
        Zero,
        "Miners connected to the pool's Stratum port.",
    ),
    m(
        "adit_pool_shares_total",
        Counter,
        ZeroEach("result", &["accepted"]),
        "Shares submitted, by result (`accepted` or the rejection reason).",
    ),
    m(
        "adit_pool_accepted_difficulty_total",
        Counter,
        Zero,
        "Difficulty of the accepted shares, summed.",
    ),
    m(
        "adit_pool_blocks_found_total",
        Counter,
        Zero,
        "Shares that met the network difficulty.",
    ),
    m(
        "adit_pool_blocks_submitted_total",
        Counter,
        ZeroEach("status", &["accepted", "rejected", "unreachable"]),
        "Blocks submitted to the node, by its answer.",
    ),
    m(
        "adit_pool_blocks_pending",
        Gauge,
        Unset,
        "Found blocks not yet confirmed or orphaned.",
    ),
    m(
        "coopmine_workers_total",
        Gauge,
        Zero,
        "Cluster workers the coordinator knows, online or not.",
    ),
    m(
        "coopmine_workers_online",
        Gauge,
        Zero,
        "Cluster workers holding a nonce slice (registered and heartbeating).",
    ),
    m(
        "coopmine_hashrate_total",
        Gauge,
        Zero,
        "The cluster's hashrate measured from its workers' valid shares, H/s.",
    ),
    m(
        "coopmine_blocks_found",
        Gauge,
        Zero,
        "Blocks the pool found from shares the coordinator forwarded (followed on NATS where the pool is adit's).",
    ),
    m(
        "coopmine_shares_total",
        Counter,
        ZeroEach(
            "status",
            &[
                "valid",
                "invalid",
                "forwarded",
                "upstream_accepted",
                "upstream_rejected",
            ],
        ),
        "Shares cluster workers sent, by what became of them.",
    ),
    m(
        "coopmine_upstream_connected",
        Gauge,
        Zero,
        "1 while the coordinator is logged in to an upstream pool.",
    ),
    m(
        "coopmine_tls_refused_total",
        Counter,
        Zero,
        "Worker connections refused at the TLS handshake (no or a foreign certificate).",
    ),
    m(
        "coopmine_publish_failures_total",
        Counter,
        Zero,
        "Cluster shares the coordinator could not publish to NATS.",
    ),
    m(
        "adit_pool_verify_seconds",
        Histogram,
        Unset,
        "Time to verify one share with RandomX.",
    ),
    m(
        "adit_pool_events_lost_total",
        Counter,
        Zero,
        "Share or block events not recorded because the publisher had stopped.",
    ),
    m(
        "adit_rpc_errors_total",
        Counter,
        Zero,
        "Failed JSON-RPC calls to a node or wallet (the pool's and the payer's), by service, method and kind (unreachable, rejected, breaker_open, other).",
    ),
    m(
        "adit_pool_connections_refused_total",
        Counter,
        Zero,
        "Stratum connections refused, by reason.",
    ),
    m(
        "adit_pool_protocol_errors_total",
        Counter,
        Zero,
        "Stratum requests that were not understood, by kind.",
    ),
    m(
        "pool_total_hashrate",
        Gauge,
        Unset,
        "The pool's hashrate, H/s (seed tools' name).",
    ),
    m(
        "pool_shares_per_second",
        Gauge,
        Unset,
        "Accepted shares per second over the window.",
    ),
    m(
        "pool_uptime_seconds",
        Gauge,
        Unset,
        "Seconds since the pool started.",
    ),
    m(
        "pool_active_miners",
        Gauge,
        Zero,
        "Miners connected (seed tools' name).",
    ),
    m(
        "pool_blocks_found_total",
        Counter,
        Zero,
        "Blocks found (seed tools' name).",
    ),
    m(
        "miner_hashrate",
        Gauge,
        Unset,
        "A miner's hashrate over the window, H/s.",
    ),
    m(
        "miner_online",
        Gauge,
        Unset,
        "1 when a miner submitted a share within the window.",
    ),
    m(
        "miner_shares_submitted_total",
        Counter,
        Unset,
        "Shares a miner submitted.",
    ),
    m(
        "miner_shares_accepted_total",
        Counter,
        Unset,
        "Shares of a miner the pool accepted.",
    ),
    m(
        "miner_shares_rejected_total",
        Counter,
        Unset,
        "Shares of a miner the pool rejected.",
    ),
    // query: access.
    m(
        "adit_api_auth_failures_total",
        Counter,
        Zero,
        "Requests to the API with a missing or unknown token.",
    ),
    m(
        "adit_api_auth_bans_total",
        Counter,
        Zero,
        "Client addresses banned for failing to authenticate query.lockout.limit times.",
    ),
    m(
        "adit_audit_lost_total",
        Counter,
        Zero,
        "API actions whose audit entry could not be published (each also logged as an error).",
    ),
    // payments.
    m(
        "adit_payments_total",
        Counter,
        ZeroEach("status", &["created", "relayed", "confirmed", "failed"]),
        "Payment transactions recorded, by pool and status.",
    ),
    m(
        "adit_payments_paid_atomic_total",
        Counter,
        Zero,
        "Atomic units relayed to miners, by pool.",
    ),
    m(
        "adit_payments_held",
        Gauge,
        Zero,
        "1 while new payments are held after a restore (adit payments release lifts it).",
    ),
    m(
        "adit_payments_open",
        Gauge,
        Zero,
        "Payment transactions not yet confirmed, by pool.",
    ),
    m(
        "adit_payments_unpayable_miners",
        Gauge,
        Zero,
        "Miners over the threshold whose address cannot be paid, by pool.",
    ),
    m(
        "adit_payments_build_failures_total",
        Counter,
        Zero,
        "Payments the wallet could not build (not enough unlocked money…), by pool.",
    ),
    m(
        "adit_payments_reserve_owed",
        Gauge,
        Unset,
        "What the pools owed their miners at the last reserve proof, atomic units.",
    ),
    m(
        "adit_payments_reserve_proven",
        Gauge,
        Unset,
        "What the last reserve proof showed the wallet holds unspent, atomic units (0 when none could be made).",
    ),
    m(
        "adit_payments_reserve_short",
        Gauge,
        Zero,
        "1 while the last reserve proof failed or fell short of what is owed (the ReserveShort alert), else 0.",
    ),
    m(
        "adit_worker_notices_total",
        Counter,
        Unset,
        "Worker-down notices sent to miners, by status (sent, failed).",
    ),
    m(
        "adit_payments_blocks_unverified",
        Gauge,
        Zero,
        "Blocks confirmed on the bus that the node or the pool's wallet does not vouch for (not paid from), by pool.",
    ),
    m(
        "adit_payments_round_errors_total",
        Counter,
        Zero,
        "Payment rounds that failed.",
    ),
    // ingest: the bus.
    m(
        "adit_consumer_recreated_total",
        Counter,
        ZeroEach("reason", &["error", "gap", "stalled"]),
        "Durable consumers re-created after the last message handed out, by stream and reason: an error from the server (a leader moved, missed heartbeats), a gap in delivery, or stuck with messages waiting.",
    ),
    m(
        "adit_consumer_gaps_filled_total",
        Counter,
        Unset,
        "Gaps in a consumer's delivery (messages lost in flight) filled by reading the missing messages directly from a replica, by stream.",
    ),
    // ingest: adapters and actuators.
    m(
        "adit_actuator_commands_total",
        Counter,
        ZeroEach("status", &["acked", "failed", "expired"]),
        "Command attempts by actuator and outcome.",
    ),
    m(
        "adit_adapter_polls_total",
        Counter,
        Unset,
        "Device polls, by device kind and outcome.",
    ),
    m(
        "adit_adapter_stale_devices",
        Gauge,
        Unset,
        "Devices with no good reading for `stale_after`, by kind.",
    ),
    m(
        "adit_adapter_mqtt_messages_total",
        Counter,
        Unset,
        "MQTT messages read, by outcome.",
    ),
    // alerts and notifications.
    m(
        "adit_notifications_total",
        Counter,
        ZeroEach("status", &["sent", "failed"]),
        "Notifications, by receiver and outcome.",
    ),
    m(
        "adit_alerts_firing",
        Gauge,
        Unset,
        "Alerts firing, by group, rule (`alertname`) and severity.",
    ),
    m(
        "adit_alert_rule_errors_total",
        Counter,
        Unset,
        "Evaluations of an alert rule that failed (absent while none has).",
    ),
    // query and sql.
    m(
        "adit_query_requests_total",
        Counter,
        ZeroEach("status", &["ok"]),
        "SQL queries answered, by status (`ok` or the error's code).",
    ),
    m(
        "adit_query_seconds",
        Histogram,
        Zero,
        "Time to answer a SQL query.",
    ),
    m(
        "adit_sql_catalog_tables",
        Gauge,
        Unset,
        "Tables the SQL catalog holds.",
    ),
    m(
        "adit_sql_fresh_tails",
        Gauge,
        Zero,
        "Landing streams the query process follows for fresh reads (started by statements, stopped when idle).",
    ),
    m(
        "adit_sql_fresh_rows",
        Gauge,
        Zero,
        "Rows the fresh-read tails hold that their landings have not committed yet.",
    ),
    // the process and the host (health.rs); metrics-process describes the process_* series.
    m(
        "adit_part_up",
        Gauge,
        Unset,
        "1 while a part of the process is up, 0 while it is down (part: a task, disk:<volume>, tables, node, lag:<pipeline>), as /ready says.",
    ),
    m(
        "adit_disk_free_bytes",
        Gauge,
        Unset,
        "Free space of a volume adit writes (volume: tables, data), bytes.",
    ),
    m(
        "adit_disk_total_bytes",
        Gauge,
        Unset,
        "Size of a volume adit writes (volume: tables, data), bytes.",
    ),
    m(
        "adit_stream_messages",
        Gauge,
        Unset,
        "Messages held by a JetStream stream.",
    ),
    m(
        "adit_stream_bytes",
        Gauge,
        Unset,
        "Bytes held by a JetStream stream.",
    ),
    m(
        "adit_runtime_stalls_total",
        Counter,
        Zero,
        "Times the process's runtime ran nothing for a second or more (every task, NATS heartbeats and lease renewals among them, waited).",
    ),
    m(
        "adit_runtime_longest_stall_seconds",
        Gauge,
        Zero,
        "The longest the process's runtime has run nothing since it started, s.",
    ),
    // the host, beside the process (host.rs), under the pool-monitoring system's names.
    m(
        "pool_cpu_usage_percent",
        Gauge,
        Unset,
        "The host's CPU use over the last sample, all cores, percent.",
    ),
    m(
        "pool_memory_used_bytes",
        Gauge,
        Unset,
        "The host's memory in use, bytes.",
    ),
    m(
        "pool_memory_total_bytes",
        Gauge,
        Unset,
        "The host's memory, bytes.",
    ),
    m(
        "pool_load_average",
        Gauge,
        Unset,
        "The host's load average (window: 1m, 5m, 15m).",
    ),
    m(
        "pool_disk_used_bytes",
        Gauge,
        Unset,
        "Space used on each of the host's disks (mount), bytes.",
    ),
    m(
        "pool_disk_total_bytes",
        Gauge,
        Unset,
        "Size of each of the host's disks (mount), bytes.",
    ),
    m(
        "pool_network_received_bytes_total",
        Counter,
        Unset,
        "Bytes the host received on each interface (interface) since it booted.",
    ),
    m(
        "pool_network_transmitted_bytes_total",
        Counter,
        Unset,
        "Bytes the host sent on each interface (interface) since it booted.",
    ),
    // the registry, counted with the vital signs (health.rs).
    m(
        "adit_registry_records",
        Gauge,
        Unset,
        "Records the registry holds (kind: sites, pools, machines, sensors, meters).",
    ),
    // every HTTP route (adit_api::traffic).
    m(
        "adit_http_requests_total",
        Counter,
        Unset,
        "HTTP requests answered (route: the matched template or unmatched; method; status).",
    ),
    m(
        "adit_http_request_duration_seconds",
        Histogram,
        Unset,
        "Time to answer an HTTP request, to its first byte (route, method, status).",
    ),
    // the backup role (adit_backup::schedule).
    m(
        "adit_backup_last_success_seconds",
        Gauge,
        Unset,
        "When the backup role last took a backup, Unix seconds.",
    ),
    m(
        "adit_backup_failures_total",
        Counter,
        Zero,
        "Backups the backup role failed to take.",
    ),
    m(
        "adit_backup_bytes",
        Gauge,
        Unset,
        "Size of the last backup taken by the backup role, bytes.",
    ),
];

/// Describes every metric and starts at zero those that only move on an event. Called once,
/// after the recorder is installed.
pub fn register() {
    adit_pipelines::runtime::metrics::register();
    for metric in METRICS {
        let name = metric.name;
        match metric.kind {
            Counter => describe_counter!(name, metric.help),
            Gauge => describe_gauge!(name, metric.help),
            Histogram => describe_histogram!(name, metric.help),
        }
        let labels: Vec<Vec<(&'static str, &'static str)>> = match metric.start {
            Unset => continue,
            Zero => vec![Vec::new()],
            ZeroEach(key, values) => values.iter().map(|v| vec![(key, *v)]).collect(),
        };
        for labels in labels {
            match metric.kind {
                Counter => metrics::counter!(name, &labels).increment(0),
                Gauge => metrics::gauge!(name, &labels).increment(0.0),
                // Registered with no sample: its buckets, sum and count at zero.
                Histogram => drop(metrics::histogram!(name, &labels)),
            }
        }
    }
}
