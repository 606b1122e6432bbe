//! The command line: global options and one subcommand per role (clap derive; every flag also
//! reads an `ADIT_*` environment variable).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// adit: a crypto-mining operation end to end.
#[derive(Debug, Parser)]
#[command(name = "adit", version, about)]
pub struct Cli {
    /// Options every command shares.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command shares; each overrides the TOML file.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// TOML config file.
    #[arg(long, short, global = true, env = "ADIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder for local state: the managed nats-server's store and, by default, the tables.
    #[arg(long, global = true, env = "ADIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// NATS server or cluster URL; without one adit starts and supervises its own nats-server.
    #[arg(long, global = true, env = "ADIT_NATS_URL")]
    pub nats_url: Option<String>,
    /// Root of the Delta tables: a folder, or an object store URL (s3://bucket/prefix, gs://…, az://…).
    #[arg(long, global = true, env = "ADIT_TABLES")]
    pub tables: Option<String>,
    /// Address the HTTP API listens on.
    #[arg(long, global = true, env = "ADIT_LISTEN")]
    pub listen: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the whole system up on this machine with a simulated farm, and serve the API.
    Demo(DemoArgs),
    /// Run the chosen roles (default: pipelines and query) until Ctrl-C or SIGTERM.
    Run(RunArgs),
    /// Run the pipelines only.
    Pipelines,
    /// Run the HTTP API (SQL, health, metrics, ingest) only.
    Query,
    /// Run the Stratum mining pool (with the HTTP API for /metrics and /health).
    Pool(PoolArgs),
    /// Publish a simulated farm's readings.
    Simulate(SimulateArgs),
    /// Run SQL against a running adit and print the result.
    Sql(SqlArgs),
    /// Measure throughput and latency.
    Bench(BenchArgs),
    /// Recompute recorded results from their inputs and compare.
    Replay(ReplayArgs),
    /// Close one site's compliance day (or a range): write `compliance_daily` and the report
    /// files, as the nightly `compliance` role does, and print where they are.
    Compliance(ComplianceArgs),
    /// Run a cluster coordinator: mine upstream as one miner, serve workers over gRPC with
    /// mutual TLS (`[cluster]`).
    Coordinator(CoordinatorArgs),
    /// Run a cluster worker: hash for a coordinator (`[worker]`).
    Worker(WorkerArgs),
    /// Write the cluster's certificates: a CA, the coordinator's and one per worker.
    Certs(CertsArgs),
    /// Make API tokens.
    Token(TokenArgs),
    /// Back up the streams, the configuration buckets, every table (at one consistent
    /// version) and the config into a new folder under `--to`; `backup verify` reads one back.
    Backup(BackupArgs),
    /// Restore a backup into an empty NATS and table root (the ones this config names).
    Restore(RestoreArgs),
    /// Payments: lift the hold a restore puts on them.
    Payments(PaymentsArgs),
    /// Check what a pool publishes, from its public views alone (no token, no trust).
    Verify(VerifyArgs),
    /// Run the curtailment controller once now and exit (for cron, instead of the pipelines
    /// role): the same decision rows, results and commands as the running controller.
    Control(ControlArgs),
    /// Check a configured installation end to end: NATS and its streams, the table root, the
    /// registry, every device it names (read once), every notification receiver (a test
    /// message each) and the pool's node; print what failed and exit 1 if anything did.
    Selftest(SelftestArgs),
}

/// `adit control`.
#[derive(Debug, Clone, Args)]
pub struct ControlArgs {
    /// One control iteration now, then exit (the only mode: as a service the controller runs
    /// in the pipelines role).
    #[arg(long, required = true)]
    pub once: bool,
    /// The site, when the controller is partitioned by site (`[pipelines.partitions]
    /// curtailment = [...]`); unpartitioned, one iteration steps every site.
    #[arg(long)]
    pub site: Option<String>,
    /// How long to wait for the controller's lease and for its inputs to be read up to now.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// `adit selftest`.
#[derive(Debug, Clone, Args)]
pub struct SelftestArgs {
    /// Do not send the receivers a test message (they are listed, not checked).
    #[arg(long)]
    pub no_notify: bool,
}

/// `adit verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// What to check.
    #[command(subcommand)]
    pub what: VerifyWhat,
}

/// What `adit verify` checks.
#[derive(Debug, Clone, Subcommand)]
pub enum VerifyWhat {
    /// Recompute a block's split (PPLNS, or SOLO's finding share) from the window the pool
    /// published (its shares, rules and commitment) and say whether it equals what the pool paid: every miner's payout, and
    /// yours when `--miner` is given. Exits 0 when equal, 1 when not.
    Payout {
        /// The pool's API (`https://pool.example`); its public window view is read.
        #[arg(long, env = "ADIT_URL", required_unless_present = "file")]
        url: Option<String>,
        /// Read a window saved with `--save` instead of asking the pool.
        #[arg(long, conflicts_with = "url")]
        file: Option<PathBuf>,
        /// The pool id.
        #[arg(long, default_value = "main")]
        pool: String,
        /// The block's height.
        #[arg(long, required_unless_present = "file")]
        block: Option<u64>,
        /// The block's hash, when the pool split more than one block at that height.
        #[arg(long)]
        hash: Option<String>,
        /// Your login (wallet address): your own payout is checked and shown.
        #[arg(long)]
        miner: Option<String>,
        /// Write the window read to this file (to check again later, or to compare).
        #[arg(long)]
        save: Option<PathBuf>,
        /// Trust this CA certificate (PEM) for an `https://` pool whose certificate is its own.
        #[arg(long, env = "ADIT_CA")]
        ca: Option<PathBuf>,
    },
}

/// `adit backup`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// Check a backup instead of taking one.
    #[command(subcommand)]
    pub what: Option<BackupWhat>,
    /// Where: a folder or an object-store URL (`s3://bucket/prefix`); the backup is a new
    /// folder `adit-<UTC time>` under it (default `backup.to`).
    #[arg(long, env = "ADIT_BACKUP_TO")]
    pub to: Option<String>,
    /// Keep the config's secrets (tokens, passwords, keys) instead of redacting them.
    #[arg(long)]
    pub with_secrets: bool,
}

/// `adit backup` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum BackupWhat {
    /// Read a backup back: every file against its SHA-256, every table at its version.
    Verify {
        /// The backup's folder, or a location holding backups (its newest is checked).
        #[arg(long)]
        from: String,
    },
}

/// `adit restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup's folder, or a location holding backups (its newest is restored).
    #[arg(long)]
    pub from: String,
    /// Overwrite streams, tables and pipeline records that hold data (default: refuse).
    #[arg(long)]
    pub replace: bool,
}

/// `adit payments`.
#[derive(Debug, Clone, Args)]
pub struct PaymentsArgs {
    /// What to do.
    #[command(subcommand)]
    pub what: PaymentsWhat,
}

/// Payments subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum PaymentsWhat {
    /// Lift the hold `adit restore` puts on new payments, once the `payments` table agrees with
    /// the wallet's outgoing transfers (`get_transfers`): every transaction the wallet sent
    /// since the backup must be recorded in the table (or its miners would be paid again) or
    /// accepted here by id; otherwise the hold stays and each is listed.
    Release {
        /// A transaction the wallet sent that the table does not record, which you have
        /// checked was not a payment to miners (a sweep to cold storage, say); repeat for each.
        #[arg(long = "accept", value_name = "TXID")]
        accept: Vec<String>,
        /// Release without asking the wallet (a deployment that pays nothing, or a wallet
        /// reconciled by hand); said in the output.
        #[arg(long)]
        no_wallet: bool,
    },
}

/// `adit token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// What to make.
    #[command(subcommand)]
    pub what: TokenWhat,
}

/// Token subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenWhat {
    /// A new random token: printed once for its holder, with the config entry that keeps only
    /// its SHA-256.
    New {
        /// Who holds it (1 to 64 letters, digits, '-', '_', '.' or '@').
        #[arg(long)]
        name: String,
        /// Its role.
        #[arg(long, value_parser = ["read", "operate", "admin"], default_value = "read")]
        role: String,
        /// Make it a cluster worker's token for the coordinator's REST, seeing only this
        /// worker.
        #[arg(long)]
        worker: Option<String>,
    },
}

/// `adit coordinator`; each flag overrides `[cluster]`.
#[derive(Debug, Clone, Args)]
pub struct CoordinatorArgs {
    /// The cluster's id (`cluster.id`).
    #[arg(long, env = "ADIT_CLUSTER_ID")]
    pub cluster: Option<String>,
    /// Upstream pools in order of preference, stratum+tcp:// or stratum+ssl:// URLs
    /// (`cluster.pool.address`; repeat the flag or separate with commas).
    #[arg(long, env = "ADIT_CLUSTER_POOL", value_delimiter = ',')]
    pub pool: Vec<String>,
    /// The cluster's login at the pools (`cluster.pool.wallet`).
    #[arg(long, env = "ADIT_CLUSTER_WALLET")]
    pub wallet: Option<String>,
    /// gRPC listen address (`cluster.grpc.listen`).
    #[arg(long, env = "ADIT_CLUSTER_GRPC_LISTEN")]
    pub grpc_listen: Option<String>,
    /// REST listen address (`cluster.rest.listen`).
    #[arg(long, env = "ADIT_CLUSTER_REST_LISTEN")]
    pub rest_listen: Option<String>,
    /// Folder of `ca.pem`, `coordinator.pem` and `coordinator.key` from `adit certs`.
    #[arg(long, env = "ADIT_CLUSTER_CERTS")]
    pub certs: Option<PathBuf>,
}

/// `adit worker`; each flag overrides `[worker]`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The coordinator's gRPC address, host:port (`worker.coordinator`).
    #[arg(long, env = "ADIT_WORKER_COORDINATOR", conflicts_with = "pool")]
    pub coordinator: Option<String>,
    /// Mine a Stratum pool directly instead of a cluster (`stratum+tcp://host:port` or
    /// `stratum+ssl://…`), Monero's or OpenSY's jobs; needs --login.
    #[arg(long, env = "ADIT_WORKER_POOL", requires = "login")]
    pub pool: Option<String>,
    /// The login at the pool with --pool: `ADDRESS[+difficulty][.worker]`.
    #[arg(long, env = "ADIT_WORKER_LOGIN")]
    pub login: Option<String>,
    /// Hashing threads (`worker.threads`; 0: one per core).
    #[arg(long, env = "ADIT_WORKER_THREADS")]
    pub threads: Option<usize>,
    /// The worker's name; its certificate is `<certs>/<name>.pem` (`worker.name`).
    #[arg(long, env = "ADIT_WORKER_NAME")]
    pub name: Option<String>,
    /// Folder of `ca.pem` and the worker's certificate and key (`worker.certs`).
    #[arg(long, env = "ADIT_WORKER_CERTS")]
    pub certs: Option<PathBuf>,
    /// Light mode (256 MiB per process, slower) instead of fast (2 GiB dataset).
    #[arg(long)]
    pub light: bool,
    /// The name in the coordinator's certificate, when not the host of --coordinator.
    #[arg(long, env = "ADIT_WORKER_SERVER_NAME")]
    pub server_name: Option<String>,
}

/// `adit certs`.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Folder to write into (an existing CA there is reused).
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// Names and IPs the coordinator is reached by (repeat or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub server: Vec<String>,
    /// Worker names to make client certificates for (repeat or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub worker: Vec<String>,
    /// The cluster's id, named in the CA.
    #[arg(long, default_value = "cluster")]
    pub cluster: String,
}

/// `adit compliance`.
#[derive(Debug, Clone, Args)]
pub struct ComplianceArgs {
    /// The site.
    #[arg(long)]
    pub site: String,
    /// The site's local day (YYYY-MM-DD); with --to, the first day of the range.
    #[arg(long)]
    pub date: chrono::NaiveDate,
    /// The last day of a range (inclusive).
    #[arg(long)]
    pub to: Option<chrono::NaiveDate>,
}

/// `adit replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// What to replay.
    #[command(subcommand)]
    pub what: ReplayWhat,
}

/// What can be replayed.
#[derive(Debug, Clone, Subcommand)]
pub enum ReplayWhat {
    /// The curtailment controller's decisions of one site, read from the `decisions` table.
    Decisions(ReplayDecisionsArgs),
}

/// `adit replay decisions`.
#[derive(Debug, Clone, Args)]
pub struct ReplayDecisionsArgs {
    /// The site.
    #[arg(long)]
    pub site: String,
    /// From this time (RFC 3339, inclusive).
    #[arg(long)]
    pub from: chrono::DateTime<chrono::Utc>,
    /// To this time (RFC 3339, exclusive).
    #[arg(long)]
    pub to: chrono::DateTime<chrono::Utc>,
    /// Recompute with the rules of the config (`[pipelines.curtailment]`) rather than those
    /// recorded with each step: what the new rules would have decided from the same inputs.
    #[arg(long)]
    pub with_config_rules: bool,
}

/// `adit demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The chain the demo's pool mines on its simulated node.
    #[arg(long, value_enum)]
    pub chain: Option<ChainArg>,
}

/// A chain, as `--chain` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChainArg {
    /// Monero.
    Monero,
    /// OpenSY (SYL).
    Opensy,
}

impl From<ChainArg> for adit_stratum::Chain {
    fn from(c: ChainArg) -> Self {
        match c {
            ChainArg::Monero => adit_stratum::Chain::Monero,
            ChainArg::Opensy => adit_stratum::Chain::OpenSy,
        }
    }
}

/// The roles a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The pipelines.
    Pipelines,
    /// The HTTP API.
    Query,
    /// The farm simulator.
    Simulate,
    /// The Stratum mining pool.
    Pool,
    /// Pays confirmed balances through monero-wallet-rpc (`[payments]`).
    Payments,
    /// Polls the registry's devices and the grid feeds (`[adapters]`).
    Adapters,
    /// Carries out the controller's commands on the devices (`[actuators]`).
    Actuators,
    /// Evaluates the alert rules (`[alerts]`).
    Alerts,
    /// Sends notifications of alerts (`[notify]`).
    Notify,
    /// Closes each site's compliance day after its local midnight (`[compliance]`).
    Compliance,
    /// The cluster coordinator (`[cluster]`).
    Coordinator,
    /// Takes a backup every `backup.every` into `backup.to` (`[backup]`).
    Backup,
}

/// `adit pool`.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// The chain mined (`pool.chain`).
    #[arg(long, value_enum, env = "ADIT_POOL_CHAIN")]
    pub chain: Option<ChainArg>,
    /// `sim` for the chain's simulated node, or its node's RPC URL (monerod:
    /// http://127.0.0.1:18081; OpenSY regtest: http://127.0.0.1:19642).
    #[arg(long, env = "ADIT_POOL_NODE")]
    pub node: Option<String>,
    /// Wallet the block reward goes to.
    #[arg(long, env = "ADIT_POOL_WALLET")]
    pub wallet: Option<String>,
    /// Address miners connect to.
    #[arg(long, env = "ADIT_POOL_LISTEN")]
    pub stratum_listen: Option<String>,
}

/// `adit run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Roles to run, comma separated.
    #[arg(long, value_delimiter = ',', default_values = ["pipelines", "query"], env = "ADIT_ROLES")]
    pub roles: Vec<Role>,
}

/// `adit simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Seed of the random generator.
    #[arg(long, env = "ADIT_SIM_SEED")]
    pub seed: Option<u64>,
    /// Number of sites.
    #[arg(long, env = "ADIT_SIM_SITES")]
    pub sites: Option<usize>,
    /// Machines per site.
    #[arg(long, env = "ADIT_SIM_MACHINES")]
    pub machines: Option<usize>,
    /// Time between two readings of one device (e.g. 1s, 250ms).
    #[arg(long, env = "ADIT_SIM_INTERVAL", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// Events per second in total; sets the interval from the farm's size (overrides
    /// --interval).
    #[arg(long, env = "ADIT_SIM_RATE")]
    pub rate: Option<f64>,
    /// Stop after this many ticks (default: run until Ctrl-C).
    #[arg(long)]
    pub ticks: Option<u64>,
    /// Miners of a simulated pool beside the farm, each an accepted share per tick; its
    /// shares, blocks and payouts land in the pool's tables.
    #[arg(long, env = "ADIT_SIM_POOL_MINERS")]
    pub pool_miners: Option<usize>,
    /// The simulated pool finds a block every this many shares.
    #[arg(long, env = "ADIT_SIM_BLOCK_EVERY")]
    pub block_every: Option<u64>,
}

/// `adit sql`.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// The SQL.
    pub sql: String,
    /// Base URL of the API (default: `http://` followed by the `--listen` address).
    #[arg(long, env = "ADIT_URL")]
    pub url: Option<String>,
    /// Bearer token (a static token or a JWT).
    #[arg(long, env = "ADIT_TOKEN")]
    pub token: Option<String>,
    /// Trust this CA certificate (PEM) for an `https://` API whose certificate is your own.
    #[arg(long, env = "ADIT_CA")]
    pub ca: Option<PathBuf>,
    /// Output: table (default), csv, json, ndjson.
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// `adit bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub what: BenchWhat,
}

/// Benchmarks.
#[derive(Debug, Clone, Subcommand)]
pub enum BenchWhat {
    /// Events/s publish → committed table beside the raw JetStream consume rate, and p99
    /// publish → visible-in-SQL delay.
    Ingest {
        /// Events in the backlog phase.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Events per second in the latency phase.
        #[arg(long, default_value_t = 2_000)]
        rate: usize,
        /// Length of the latency phase.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        latency_for: Duration,
        /// Raw consumes and pipeline drains of the backlog, alternated; the median round's
        /// ratio is reported.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
        rounds: u16,
    },
    /// Shares verified per second through the TCP server beside the raw randomx-rs hash rate;
    /// then, at each count of idle logged-in connections, the memory one costs and the time
    /// honest shares take meanwhile.
    Pool {
        /// Verification threads (and raw hashing threads).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Submitting connections.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Shares per connection in each round.
        #[arg(long, default_value_t = 100)]
        shares: usize,
        /// Rounds of the throughput phase, alternated with raw hashing runs (the ratio is the
        /// median of the rounds').
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
        rounds: u16,
        /// The counts of idle logged-in connections held, rising (e.g. `0,10000,100000`).
        #[arg(long, value_delimiter = ',', default_value = "0,10000")]
        idle: Vec<usize>,
        /// Honest miners whose shares are timed at each idle count.
        #[arg(long, default_value_t = 4)]
        probes: usize,
        /// Shares each honest miner submits at each idle count.
        #[arg(long, default_value_t = 50)]
        probe_shares: usize,
        /// Processes of the server sharing the idle miners' port (SO_REUSEPORT), each under
        /// its own descriptor limit; memory is summed over them.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        servers: u16,
    },
    /// The cluster's hashrate as the upstream pool measures it and as the workers count it,
    /// beside the same workers hashing alone with the same threads.
    Cluster {
        /// Workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Threads per worker.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Seconds per measured phase.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        /// Share difficulty (upstream and internal).
        #[arg(long, default_value_t = 200)]
        difficulty: u64,
        /// Light mode instead of fast.
        #[arg(long)]
        light: bool,
    },
    /// Time to split one block's reward (PPLNS) over a full window, beside a plain pass over
    /// the same shares.
    Split {
        /// Shares in the window.
        #[arg(long, default_value_t = 1_000_000)]
        shares: usize,
        /// Miners the shares come from.
        #[arg(long, default_value_t = 1_000)]
        miners: usize,
        /// Blocks split (the median is reported).
        #[arg(long, default_value_t = 11)]
        rounds: usize,
    },
    /// (Used by `bench pool`.) Holds logged-in connections to `addr`: `open N` on standard
    /// input opens them until it holds N; it ends when standard input closes.
    #[command(hide = true)]
    IdleClients {
        /// Pool address.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Which of the client processes this is (its connections are `offset + j × stride`).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// How many client processes there are.
        #[arg(long, default_value_t = 1)]
        stride: usize,
    },
    /// (Used by `bench pool --servers`.) A pool server on `port` of 127.0.0.1 shared with the
    /// bench's own: `push K` on standard input pushes K new jobs; it ends when standard input
    /// closes.
    #[command(hide = true)]
    PoolServer {
        /// The shared port.
        #[arg(long)]
        port: u16,
        /// Verification threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Connections admitted.
        #[arg(long)]
        admit: usize,
    },
}
