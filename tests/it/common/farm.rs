//! The simulated farm under the controller, for the control tests: the config of a site of
//! simulated miners read by the adapters and commanded by the actuators with fast timings, and
//! what a test reads back from SQL (the site's power, a machine's, the controller's modes).

use std::time::Duration;

use super::{App, NatsServer, eventually, publisher};

/// The roles that run the farm and its controller.
pub const FARM_ROLES: &str = "pipelines,query,simulate,adapters,actuators";

/// One site of simulated miners (and one sensor) with every timing short: the config's
/// standard part, plus what a test adds to `[adapters]`, to `[pipelines.curtailment]` and
/// after it all (`extra`: more tables, such as `[[adapters.grid]]`).
#[derive(Debug, Clone, Copy)]
pub struct Farm<'a> {
    /// Miners at the site.
    pub machines: usize,
    /// How long a simulated miner takes to obey a command.
    pub command_lag: &'a str,
    /// The adapters' poll timings.
    pub polling: &'a str,
    /// More `[adapters]` keys.
    pub adapters: &'a str,
    /// More `[pipelines.curtailment]` keys.
    pub curtailment: &'a str,
    /// More tables.
    pub extra: &'a str,
}

impl Default for Farm<'_> {
    fn default() -> Self {
        Self {
            machines: 4,
            command_lag: "1s",
            polling: "interval = \"1s\"\ntimeout = \"500ms\"\nstale_after = \"5s\"\nmax_backoff = \"2s\"\n",
            adapters: "",
            curtailment: "",
            extra: "",
        }
    }
}

impl Farm<'_> {
    /// The config.
    pub fn config(&self) -> String {
        let Self {
            machines,
            command_lag,
            polling,
            adapters,
            curtailment,
            extra,
        } = self;
        format!(
            "[simulate]\nsites = 1\nmachines_per_site = {machines}\nsensors_per_site = 1\ninterval = \"500ms\"\ngrid_every = 0\ncommand_lag = \"{command_lag}\"\n\
             [adapters]\n{polling}registry_refresh = \"1s\"\n{adapters}\
             [pipelines.curtailment]\neval_every = \"1s\"\nramp_kw_per_min = 600.0\nmin_on = \"0s\"\nmin_off = \"0s\"\ncooldown = \"5s\"\n\
             command_timeout = \"10s\"\nmeter_stale = \"10s\"\nsensor_stale = \"10s\"\n{curtailment}\
             [actuators]\ntimeout = \"1s\"\nretry_after = \"200ms\"\n{extra}"
        )
    }
}

/// The site's power as the adapters last read it, kW.
pub async fn site_kw(app: &App, site: &str) -> Option<f64> {
    let sql = format!(
        "SELECT machine, first_value(power_w ORDER BY ts DESC) AS w FROM energy_readings \
         WHERE site = '{site}' GROUP BY machine"
    );
    let rows = app.try_rows(&sql).await?;
    (!rows.is_empty()).then(|| rows.iter().filter_map(|r| r["w"].as_f64()).sum::<f64>() / 1000.0)
}

/// Whether the controller of `site` has gone into (`"to"`) or out of (`"from"`) its failsafe.
pub async fn failsafe(app: &App, site: &str, from_or_to: &str) -> bool {
    let sql = format!(
        "SELECT count(*) AS n FROM decisions WHERE site = '{site}' AND {from_or_to}_mode = 'failsafe'"
    );
    app.rows(&sql).await[0]["n"].as_i64() > Some(0)
}

/// Waits until the energy and curtailment pipelines have committed every registry change
/// (their consumers of the bucket's stream hold nothing pending or unacknowledged, and acks
/// follow commits): nothing a test does next can reach them before the change.
pub async fn registry_committed(nats: &NatsServer) {
    let (_, js) = publisher(nats).await;
    let stream = js.get_stream("KV_adit_registry").await.unwrap();
    eventually(
        Duration::from_secs(60),
        "the registry change committed",
        || {
            let stream = stream.clone();
            async move {
                let mut done = true;
                for name in ["adit-energy-registry", "adit-curtailment-registry"] {
                    done &= match stream
                        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(name)
                        .await
                    {
                        Ok(mut c) => c
                            .info()
                            .await
                            .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0),
                        Err(_) => false,
                    };
                }
                done
            }
        },
    )
    .await;
}
