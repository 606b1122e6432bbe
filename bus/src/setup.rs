//! Connecting to NATS and creating (or updating) adit's streams and KV buckets, idempotently.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use adit_config::{Checked, Invalid, check};
use adit_retry::{Backoff, Waits};
use adit_schemas::names;
use async_nats::ServerAddr;
use async_nats::jetstream::{self, stream};
use serde::Deserialize;

use crate::error::{BoxError, Error, Result};

/// Limits every stream is created with; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// How long messages are kept (0 = forever).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Bytes a stream may hold (-1 = unlimited).
    pub max_bytes: i64,
    /// Copies of each stream; more than 1 needs a NATS cluster.
    pub replicas: usize,
    /// How long a `Nats-Msg-Id` is remembered for dedupe.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: -1,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// How this process proves itself to a NATS server or cluster, and how it checks the server:
/// from `[nats]` (`credentials`, `ca`, `cert`, `key`). All optional: a URL's own
/// `user:password@` or `token@` is used when no credentials file is given.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsAuth {
    /// A `.creds` file (the user's JWT and NKey seed), as `nsc` writes it for an operator-mode
    /// cluster.
    pub credentials: Option<PathBuf>,
    /// PEM root certificates the servers' certificates must chain to (TLS is then required).
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for a cluster that verifies clients (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

impl NatsAuth {
    /// Checks the pairs and that every file named is there; the key is already full
    /// (`nats.cert`), so the caller adds no section.
    pub fn validate(&self) -> Checked {
        check(
            self.cert.is_some() == self.key.is_some(),
            "nats.cert",
            "must be given together with nats.key",
        )?;
        for (key, path) in [
            ("nats.credentials", &self.credentials),
            ("nats.ca", &self.ca),
            ("nats.cert", &self.cert),
            ("nats.key", &self.key),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(Invalid::new(
                    key,
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        Ok(())
    }
}

/// The servers of `url`: one NATS URL or a comma-separated list (`nats://n1:4222,n2:4222`),
/// each `nats://`, `tls://` or a bare `host:port`, credentials left out. An empty list or an
/// entry that does not parse is an error naming it.
pub fn server_addrs(url: &str) -> Result<Vec<ServerAddr>> {
    let plain = without_credentials(url);
    let mut out = Vec::new();
    for one in plain
        .split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
    {
        let addr = one.parse::<ServerAddr>().map_err(|e| Error::Connect {
            url: plain.clone(),
            source: format!("{one:?} is not a NATS server address: {e}").into(),
        })?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err(Error::Connect {
            url: plain,
            source: "no NATS server address given".into(),
        });
    }
    Ok(out)
}

/// Connects to NATS at `url` (one server or a comma-separated cluster), reconnecting across
/// every server it names or learns of, forever. Credentials in a URL
/// (`nats://user:password@host:port`, or `nats://token@host:port`, as the managed
/// nats-server's URL file holds them) are sent as such: the client itself ignores them there.
pub async fn connect(url: &str) -> Result<async_nats::Client> {
    connect_with(url, &NatsAuth::default()).await
}

/// [`connect`] with a credentials file and TLS from `auth`.
pub async fn connect_with(url: &str, auth: &NatsAuth) -> Result<async_nats::Client> {
    let servers = server_addrs(url)?;
    let failed = |source: BoxError| Error::Connect {
        url: without_credentials(url),
        source,
    };
    // async-nats builds its TLS config on the process's default crypto provider, and with
    // more than one compiled in there is none until one is installed: ring, as everywhere
    // else in adit. An `Err` only says one is installed already, which is all we need.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let mut options = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move { log_connection_event(&event) })
        .name("adit");
    match &auth.credentials {
        Some(path) => {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| failed(format!("nats.credentials {}: {e}", path.display()).into()))?;
        }
        None => options = with_url_credentials(options, url),
    }
    if let Some(ca) = &auth.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&auth.cert, &auth.key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    options
        .connect(servers)
        .await
        .map_err(|e| failed(Box::new(e)))
}

/// Closes `client`'s connection for good (every clone's): what it has queued is sent, its
/// subscriptions are drained, then it closes. True once closed; false if that took more than
/// `within`, or the client had lost its connection (or was closed already).
///
/// Called before a managed nats-server is stopped: a client still connected takes the
/// server's exit for a lost connection and retries, a warning each try, at every clean
/// shutdown. async-nats's `drain` returns once the drain is asked for, not done; a
/// subscription of the client's own ends when it is, so that is what is waited on.
pub async fn close(client: &async_nats::Client, within: Duration) -> bool {
    use futures::StreamExt;
    // A client that lost its connection cannot send what it holds: a drain would only wait
    // out `within` while it tries to reconnect. (One still making its first connection may be
    // about to send what it queued: that is waited for, within the bound.)
    if client.connection_state() == async_nats::connection::State::Disconnected {
        return false;
    }
    let Ok(mut witness) = client.subscribe(client.new_inbox()).await else {
        return false;
    };
    if client.drain().await.is_err() {
        return false;
    }
    tokio::time::timeout(within, witness.next()).await.is_ok()
}

/// Logs what happens to a NATS connection: a server that refuses the credentials or a
/// subject (`authorization violation`, `Permissions Violation for Publish to …`), a failed
/// (re)connect and its reason, a lost or regained connection. The client retries on its own,
/// so without this an operator with a wrong `.creds` file would see only timeouts.
fn log_connection_event(event: &async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Connected => tracing::info!("NATS connected"),
        Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
        Event::ServerError(error) => tracing::error!(%error, "NATS server refused a request"),
        Event::ClientError(error) => tracing::warn!(%error, "NATS could not connect; retrying"),
        Event::LameDuckMode => {
            tracing::warn!("NATS server is shutting down (lame duck mode); moving to another")
        }
        Event::SlowConsumer(sid) => {
            tracing::warn!(
                subscription = sid,
                "NATS dropped messages of a slow subscription"
            )
        }
        Event::Draining | Event::Closed => tracing::info!(%event, "NATS connection"),
    }
}

/// `options` with the first `user:password@` or `token@` found in `url`'s servers.
fn with_url_credentials(
    options: async_nats::ConnectOptions,
    url: &str,
) -> async_nats::ConnectOptions {
    let userinfo = url.split(',').find_map(|one| {
        let rest = one.split_once("://").map_or(one, |(_, rest)| rest);
        rest.rsplit_once('@').map(|(info, _)| info.to_string())
    });
    match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, password)) => {
                options.user_and_password(user.to_string(), password.to_string())
            }
            None => options.token(info),
        },
        None => options,
    }
}

/// `url` (one NATS URL or a comma-separated list) with any `user:password@` or `token@` left
/// out, for logs and errors: the managed nats-server's URL carries its password.
pub fn without_credentials(url: &str) -> String {
    url.split(',')
        .map(|one| match one.rsplit_once('@') {
            Some((before, host)) => match before.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://{host}"),
                None => host.to_string(),
            },
            None => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// How work that waits on the bus to recover (setup through a cluster's election, a pipeline
/// restarting from its last commit) waits between tries: 200 ms doubling to 10 s, with jitter.
pub const RECOVERY: Backoff =
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10)).with_jitter();

/// The waits of one loop that waits on the bus to recover ([`RECOVERY`]).
pub fn backoff() -> Waits {
    RECOVERY.waits()
}

/// How long one setup request may wait: a new stream at several replicas answers once its
/// group has elected a leader, which on a cluster takes seconds (more than the client's
/// default request timeout).
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `js` with [`SETUP_TIMEOUT`].
fn for_setup(js: &jetstream::Context) -> jetstream::Context {
    let mut js = js.clone();
    js.set_timeout(SETUP_TIMEOUT);
    js
}

/// How long the DLQ stream remembers a dead letter's id: an hour, at least the configured
/// window, at most the stream's age. A dead letter's id names its source stream and sequence,
/// and a batch's dead letters are filed before its epoch is recorded, so a pipeline that
/// crashes between the two files them again when it resumes; within this window they are
/// stored once, even when the whole deployment was down for most of an hour. The cost is the
/// server's memory for ids, which only real dead letters use.
pub const DLQ_DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);

/// The duplicate window of stream `name`.
fn duplicate_window(name: &str, settings: &StreamSettings) -> Duration {
    if name != names::STREAM_DLQ {
        return settings.duplicate_window;
    }
    let window = DLQ_DUPLICATE_WINDOW.max(settings.duplicate_window);
    if settings.max_age.is_zero() {
        window
    } else {
        window.min(settings.max_age)
    }
}

/// Creates every stream of DESIGN.md §3, or updates its limits to `settings`; all at once, so
/// a cluster elects their groups side by side.
pub async fn ensure_streams(js: &jetstream::Context, settings: &StreamSettings) -> Result<()> {
    let js = for_setup(js);
    let each = names::STREAMS.iter().map(|(name, subjects)| {
        let config = stream::Config {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            max_age: settings.max_age,
            max_bytes: settings.max_bytes,
            num_replicas: settings.replicas,
            duplicate_window: duplicate_window(name, settings),
            storage: stream::StorageType::File,
            allow_direct: true,
            ..Default::default()
        };
        let js = &js;
        async move { create_or_update(js, name, config).await }
    });
    futures::future::try_join_all(each).await?;
    Ok(())
}

/// Creates every KV bucket adit uses (registry, rules, channels, pipeline state) if missing,
/// all at once.
///
/// The bucket's backing stream is created directly with the KV conventions (`KV_<bucket>`,
/// subjects `$KV.<bucket>.>`, per-key history, roll-ups), which every nats-server since 2.6
/// understands; the client's own bucket-creation request needs a newer server.
pub async fn ensure_buckets(js: &jetstream::Context, replicas: usize) -> Result<()> {
    let each = names::KV_BUCKETS.iter().map(|bucket| {
        // A dashboard's revisions are its history: as many as NATS keeps per key.
        // A dashboard's revisions are its history: as many as NATS keeps per key. Anyone with
        // the operate role writes dashboards, so their bucket has a size: once full, a write is
        // refused (and nothing else grows on its account).
        let (history, max_bytes) = if *bucket == names::KV_DASHBOARDS {
            (64, Some(DASHBOARDS_MAX_BYTES))
        } else {
            (10, None)
        };
        ensure_bucket(js, bucket, history, None, max_bytes, replicas)
    });
    futures::future::try_join_all(each).await?;
    Ok(())
}

/// The most bytes the dashboards bucket holds, every revision counted.
pub const DASHBOARDS_MAX_BYTES: i64 = 256 * 1024 * 1024;

/// Creates KV bucket `bucket` (or updates its limits) keeping `history` values per key; with
/// `max_age`, a key not written for that long disappears (how leases expire); with
/// `max_bytes`, a write that would pass it is refused.
pub async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: &str,
    history: i64,
    max_age: Option<Duration>,
    max_bytes: Option<i64>,
    replicas: usize,
) -> Result<()> {
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history,
        max_age: max_age.unwrap_or_default(),
        max_bytes: max_bytes.unwrap_or(-1),
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        duplicate_window: max_age
            .unwrap_or(Duration::from_secs(120))
            .min(Duration::from_secs(120)),
        ..Default::default()
    };
    let js = &for_setup(js);
    create_or_update(js, bucket, config).await?;
    until_set_up(bucket, || async {
        js.get_key_value(bucket)
            .await
            .map_err(|e| (false, Box::new(e) as BoxError))
    })
    .await?;
    Ok(())
}

/// Creates or updates stream `config` (`name` in messages), through elections, and says when
/// the cluster keeps it at other replicas than asked.
async fn create_or_update(
    js: &jetstream::Context,
    name: &str,
    config: stream::Config,
) -> Result<()> {
    let replicas = config.num_replicas;
    let info = until_set_up(name, || {
        let config = config.clone();
        async move {
            js.create_or_update_stream(config)
                .await
                .map_err(|e| (is_permanent(&e), Box::new(e) as BoxError))
        }
    })
    .await?;
    if info.config.num_replicas != replicas {
        tracing::warn!(
            stream = %info.config.name,
            has = info.config.num_replicas,
            configured = replicas,
            "a stream's replicas differ from nats.streams.replicas; change it with `nats stream edit {} --replicas {replicas}` or set nats.streams.replicas to match",
            info.config.name
        );
    }
    Ok(())
}

/// Whether a stream request failed for a reason that waiting will not change: a name or
/// configuration the server refuses, replicas a single server cannot keep, JetStream off.
/// Timeouts, no leader, no peers for placement (a node down) pass by themselves.
fn is_permanent(error: &async_nats::jetstream::context::CreateStreamError) -> bool {
    use async_nats::jetstream::context::CreateStreamErrorKind as Kind;
    match error.kind() {
        Kind::EmptyStreamName | Kind::InvalidStreamName | Kind::DomainAndExternalSet => true,
        Kind::JetStream(e) => PERMANENT_CODES.contains(&e.error_code().0),
        _ => false,
    }
}

/// JetStream API error codes no retry cures: replicas > 1 on a server not in a cluster
/// (10074), a stream name taken with another configuration (10058), subjects overlapping
/// another stream's (10065), an invalid configuration (10052), JetStream not enabled (10076)
/// or not enabled for the account (10039).
const PERMANENT_CODES: [u64; 6] = [10074, 10058, 10065, 10052, 10076, 10039];

/// Runs `attempt` until it succeeds; an error it marks permanent is returned at once, any
/// other is logged and retried after [`backoff`] (a cluster electing a leader, a node down).
async fn until_set_up<T, F, Fut>(name: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, (bool, BoxError)>>,
{
    let mut delays = backoff();
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err((true, source)) => {
                return Err(Error::Setup {
                    name: name.to_string(),
                    source,
                });
            }
            Err((false, source)) => {
                let wait = delays.next_wait();
                tracing::warn!(name, error = %source, retry_in = ?wait, "setting up a stream or bucket; retrying (a NATS cluster may be electing)");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_log() {
        assert_eq!(
            without_credentials("nats://adit:s3cret@127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            without_credentials("tok@n1:4222,nats://u:p@n2:4222,nats://n3:4222"),
            "n1:4222,nats://n2:4222,nats://n3:4222"
        );
    }

    /// A cluster is a comma-separated list (the client took it as one address and failed on
    /// `invalid port number`); spaces and a trailing comma are forgiven, nonsense is named.
    #[test]
    fn a_list_of_servers_is_every_server() {
        let addrs =
            server_addrs("nats://u:p@127.0.0.1:4222, n2:4223,tls://n3.example:4224,").unwrap();
        let hosts: Vec<(String, u16)> = addrs
            .iter()
            .map(|a| (a.host().to_string(), a.port()))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("127.0.0.1".to_string(), 4222),
                ("n2".to_string(), 4223),
                ("n3.example".to_string(), 4224)
            ]
        );
        assert!(addrs[2].tls_required());
        let err = server_addrs("nats://n1:4222,nats://n2:port").unwrap_err();
        assert!(err.to_string().contains("\"nats://n2:port\""), "{err}");
        assert!(server_addrs(" , ").is_err());
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let auth = NatsAuth {
            cert: Some("/etc/hostname".into()),
            ..Default::default()
        };
        let err = auth.validate().unwrap_err();
        assert_eq!(err.key, "nats.cert");
        assert!(err.to_string().contains("together with nats.key"), "{err}");
        let auth = NatsAuth {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(
            auth.validate()
                .unwrap_err()
                .to_string()
                .starts_with("nats.ca: ")
        );
    }
}
