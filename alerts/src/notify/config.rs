//! `[notify]`: the receivers (webhook, Telegram, email over SMTP, SMS through a Twilio-shaped
//! gateway), the route tree in Alertmanager's shape (matchers, `group_by`, `group_wait`,
//! `group_interval`, `repeat_interval`), retries, and the heartbeat — checked after every
//! override, each message naming its key.

use std::collections::BTreeMap;
use std::time::Duration;

use adit_config::{Checked, Invalid, check};
use serde::{Deserialize, Serialize};

/// Where notifications go. (Unknown fields are refused by [`Channel`], which sees every field
/// but `name`, `channels` and `fallback`.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receiver {
    /// Its name (what routes name).
    pub name: String,
    /// How it is reached.
    #[serde(flatten)]
    pub channel: Channel,
    /// More channels it is reached through as well: a notification goes out on each, and
    /// the receiver has it when one of them took it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Channel>,
    /// Where a critical notification goes when every attempt here failed.
    #[serde(default)]
    pub fallback: Option<String>,
}

impl Receiver {
    /// Every channel it is reached through: its own, then `channels`.
    pub fn all_channels(&self) -> impl Iterator<Item = &Channel> {
        std::iter::once(&self.channel).chain(&self.channels)
    }

    /// Its channels' kinds, `+`-joined (`telegram+sms`), as notification records name them.
    pub fn kinds(&self) -> String {
        self.all_channels()
            .map(Channel::kind)
            .collect::<Vec<_>>()
            .join("+")
    }

    /// It as an API shows it: tokens, passwords and URL paths (which may hold a token)
    /// replaced by `…`.
    pub fn redacted(&self) -> Self {
        Self {
            channel: self.channel.redacted(),
            channels: self.channels.iter().map(Channel::redacted).collect(),
            ..self.clone()
        }
    }
}

/// A channel and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Channel {
    /// `POST <url>` with the notification as JSON.
    Webhook {
        /// The URL.
        url: String,
    },
    /// Telegram's Bot API `sendMessage`.
    Telegram {
        /// The API's base URL (`https://api.telegram.org`; a local server in tests).
        #[serde(default = "telegram_api")]
        api_url: String,
        /// The bot's token.
        bot_token: String,
        /// The chat to write to.
        chat_id: String,
    },
    /// Email over SMTP (STARTTLS when `starttls`).
    Email {
        /// SMTP host.
        smtp_host: String,
        /// SMTP port.
        #[serde(default = "smtp_port")]
        smtp_port: u16,
        /// Upgrade the connection with STARTTLS (required for credentials).
        #[serde(default)]
        starttls: bool,
        /// User name, if the server wants one.
        #[serde(default)]
        username: Option<String>,
        /// Password.
        #[serde(default)]
        password: Option<String>,
        /// Sender address.
        from: String,
        /// Recipients.
        to: Vec<String>,
    },
    /// SMS through an HTTP gateway in Twilio's shape: `POST
    /// <api_url>/2010-04-01/Accounts/<account_sid>/Messages.json` with `To`, `From`, `Body`.
    Sms {
        /// The gateway's base URL (`https://api.twilio.com`).
        #[serde(default = "twilio_api")]
        api_url: String,
        /// Account id (the basic-auth user).
        account_sid: String,
        /// Auth token (the basic-auth password).
        auth_token: String,
        /// Sender number.
        from: String,
        /// Recipient numbers.
        to: Vec<String>,
    },
}

fn telegram_api() -> String {
    "https://api.telegram.org".into()
}
fn twilio_api() -> String {
    "https://api.twilio.com".into()
}
fn smtp_port() -> u16 {
    587
}

impl Channel {
    /// It without its secrets: see [`Receiver::redacted`].
    pub fn redacted(&self) -> Self {
        let hidden = || "…".to_string();
        match self.clone() {
            Self::Webhook { url } => Self::Webhook {
                url: adit_egress::redact(&url),
            },
            Self::Telegram {
                api_url, chat_id, ..
            } => Self::Telegram {
                api_url,
                bot_token: hidden(),
                chat_id,
            },
            Self::Email {
                smtp_host,
                smtp_port,
                starttls,
                username,
                password,
                from,
                to,
            } => Self::Email {
                smtp_host,
                smtp_port,
                starttls,
                username,
                password: password.map(|_| hidden()),
                from,
                to,
            },
            Self::Sms {
                api_url,
                account_sid,
                from,
                to,
                ..
            } => Self::Sms {
                api_url,
                account_sid,
                auth_token: hidden(),
                from,
                to,
            },
        }
    }

    /// Checks its values; keys are relative to it (the caller puts them
    /// [`under`](Invalid::under) its place, `notify.receivers[0]`).
    pub fn validate(&self) -> Checked {
        let url = |field: &str, u: &str| match reqwest::Url::parse(u) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
            _ => Err(Invalid::new(field, format!("{u:?} is not an http(s) URL"))),
        };
        match self {
            Self::Webhook { url: u } => url("url", u),
            Self::Telegram { api_url, .. } => url("api_url", api_url),
            Self::Sms { api_url, to, .. } => {
                url("api_url", api_url)?;
                check(!to.is_empty(), "to", "at least one number")
            }
            Self::Email { to, from, .. } => {
                check(!to.is_empty(), "to", "at least one address")?;
                let addresses = to.iter().map(|a| ("to", a));
                for (field, a) in addresses.chain(std::iter::once(("from", from))) {
                    a.parse::<lettre::Address>().map_err(|e| {
                        Invalid::new(field, format!("{a:?} is not an address: {e}"))
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Its kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Telegram { .. } => "telegram",
            Self::Email { .. } => "email",
            Self::Sms { .. } => "sms",
        }
    }
}

/// A branch of the route tree: alerts whose labels carry every matcher go to `receiver`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubRoute {
    /// label → value, all required.
    pub matchers: BTreeMap<String, String>,
    /// The receiver.
    pub receiver: String,
    /// Whether an alert this branch takes is also matched against the branches after it
    /// (Alertmanager's `continue`): how a critical alert reaches several receivers.
    #[serde(rename = "continue", default)]
    pub continue_matching: bool,
}

/// The route: the matching branches (the first, and the ones after it while each says
/// `continue`), else the default receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    /// The default receiver.
    pub receiver: String,
    /// Labels whose values make a group (one notification per group).
    pub group_by: Vec<String>,
    /// How long a new group waits for more alerts before its first notification.
    #[serde(with = "humantime_serde")]
    pub group_wait: Duration,
    /// How long a group waits after a notification before telling of changes.
    #[serde(with = "humantime_serde")]
    pub group_interval: Duration,
    /// How often a group still firing is told again.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// Branches, in order: the first match wins unless it says `continue`.
    pub routes: Vec<SubRoute>,
}

impl Default for Route {
    fn default() -> Self {
        Self {
            receiver: String::new(),
            group_by: vec!["alertname".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            routes: Vec::new(),
        }
    }
}

/// The hourly "still alive" message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Where it goes.
    pub receiver: String,
    /// How often.
    #[serde(with = "humantime_serde", default = "hourly")]
    pub every: Duration,
}

fn hourly() -> Duration {
    Duration::from_secs(3600)
}

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The receivers.
    pub receivers: Vec<Receiver>,
    /// The route tree.
    pub route: Route,
    /// Attempts per receiver before it counts as failed.
    pub attempts: u32,
    /// Wait before the second attempt; doubling.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// One attempt's time limit.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The heartbeat, if any.
    pub heartbeat: Option<Heartbeat>,
    /// How often silences are read again.
    #[serde(with = "humantime_serde")]
    pub reload: Duration,
    /// Worker-down notices to miners (`[notify.workers]`).
    pub workers: WorkerNotices,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            receivers: Vec::new(),
            route: Route::default(),
            attempts: 3,
            retry_after: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            heartbeat: None,
            reload: Duration::from_secs(5),
            workers: Default::default(),
        }
    }
}

impl NotifyConfig {
    /// The receiver named `name`.
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }

    /// Checks every value; the key is already full (`notify.attempts`), so the caller adds no
    /// section.
    pub fn validate(&self) -> Checked {
        self.workers.validate()?;
        if let Some(mail) = &self.workers.mail {
            check(
                self.receiver(mail)
                    .is_some_and(|r| r.all_channels().any(|c| c.kind() == "email")),
                "notify.workers.mail",
                format!("no receiver named {mail:?} with an email channel"),
            )?;
        }
        let known = |key: &str, name: &str| {
            check(
                self.receiver(name).is_some(),
                key,
                format!("no receiver named {name:?}"),
            )
        };
        for (i, r) in self.receivers.iter().enumerate() {
            let key = format!("notify.receivers[{i}]");
            check(
                adit_schemas::names::is_token(&r.name),
                &format!("{key}.name"),
                "must be 1-64 of A-Z a-z 0-9 _ -",
            )?;
            check(
                self.receivers.iter().filter(|o| o.name == r.name).count() <= 1,
                &format!("{key}.name"),
                format!("{:?} appears twice", r.name),
            )?;
            if let Some(f) = &r.fallback {
                known(&format!("{key}.fallback"), f)?;
            }
            r.channel.validate().map_err(|e| e.under(&key))?;
            for (j, c) in r.channels.iter().enumerate() {
                c.validate()
                    .map_err(|e| e.under(&format!("{key}.channels[{j}]")))?;
            }
        }
        if !self.receivers.is_empty() {
            known("notify.route.receiver", &self.route.receiver)?;
            for (i, s) in self.route.routes.iter().enumerate() {
                known(&format!("notify.route.routes[{i}].receiver"), &s.receiver)?;
            }
        }
        if let Some(h) = &self.heartbeat {
            known("notify.heartbeat.receiver", &h.receiver)?;
            check(
                h.every >= Duration::from_secs(1),
                "notify.heartbeat.every",
                "must be at least 1s",
            )?;
        }
        check(
            (1..=20).contains(&self.attempts),
            "notify.attempts",
            "must be from 1 to 20",
        )?;
        check(
            self.timeout >= Duration::from_millis(10) && self.timeout <= Duration::from_secs(300),
            "notify.timeout",
            "must be from 10ms to 5m",
        )?;
        check(
            self.route.repeat_interval >= Duration::from_secs(1)
                && self.route.group_interval >= Duration::from_millis(100),
            "notify.route",
            "repeat_interval must be at least 1s, group_interval 100ms",
        )?;
        check(
            self.reload >= Duration::from_millis(100),
            "notify.reload",
            "must be at least 100ms",
        )
    }
}

/// The factors a miner may choose.
pub const FACTORS: std::ops::RangeInclusive<u32> = 3..=100;

/// `[notify.workers]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerNotices {
    /// Whether the `notify` role checks miners' workers.
    pub enabled: bool,
    /// The receiver whose email channel's server and sender carry miners' notices (each goes
    /// to the miner's own address); without one, only webhooks are sent.
    pub mail: Option<String>,
    /// How often the workers are checked.
    #[serde(with = "humantime_serde")]
    pub check_every: Duration,
    /// Silence, in expected share intervals, after which a worker is down, for a miner that
    /// chose none (3 to 100).
    pub factor: u32,
    /// The shortest silence that is ever down.
    #[serde(with = "humantime_serde")]
    pub min_silence: Duration,
    /// Fewest shares in the lookback for a worker's rate to be judged.
    pub min_shares: u32,
    /// How far back a worker's shares are read.
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
}

impl Default for WorkerNotices {
    fn default() -> Self {
        Self {
            enabled: false,
            mail: None,
            check_every: Duration::from_secs(60),
            factor: 10,
            min_silence: Duration::from_secs(600),
            min_shares: 5,
            lookback: Duration::from_secs(24 * 3600),
        }
    }
}

impl WorkerNotices {
    /// Refuses values the checks cannot work with, naming the key.
    pub fn validate(&self) -> Checked {
        check(
            FACTORS.contains(&self.factor),
            "notify.workers.factor",
            "must be 3 to 100",
        )?;
        check(
            self.check_every >= Duration::from_secs(1),
            "notify.workers.check_every",
            "must be at least 1s",
        )?;
        check(
            self.min_shares >= 2,
            "notify.workers.min_shares",
            "must be at least 2 (an interval needs two shares)",
        )?;
        check(
            (Duration::from_secs(60)..=Duration::from_secs(30 * 86_400)).contains(&self.lookback),
            "notify.workers.lookback",
            "must be 1m to 30d",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_read_from_toml_and_typos_are_refused() {
        let ok: NotifyConfig = toml::from_str(
            "receivers = [{ name = \"hook\", kind = \"webhook\", url = \"http://x/h\" }]\n\
             [route]\nreceiver = \"hook\"\n",
        )
        .unwrap();
        assert_eq!(ok.receivers[0].channel.kind(), "webhook");
        assert!(ok.validate().is_ok());
        let typo = toml::from_str::<NotifyConfig>(
            "receivers = [{ name = \"hook\", kind = \"webhook\", uri = \"http://x/h\" }]\n",
        );
        assert!(typo.is_err());
        let unrouted = NotifyConfig {
            route: Route {
                receiver: "nobody".into(),
                ..ok.route.clone()
            },
            ..ok
        };
        let err = unrouted.validate().unwrap_err();
        assert_eq!(err.key, "notify.route.receiver", "{err}");
        assert!(err.to_string().contains("\"nobody\""), "{err}");
    }

    #[test]
    fn a_channel_is_named_by_its_place() {
        let email = |to: &str| Channel::Email {
            smtp_host: "mail.example".into(),
            smtp_port: 587,
            starttls: true,
            username: None,
            password: None,
            from: "adit@example.com".into(),
            to: vec![to.into()],
        };
        let config = NotifyConfig {
            receivers: vec![Receiver {
                name: "mail".into(),
                channel: email("ops@example.com"),
                channels: vec![email("not an address")],
                fallback: None,
            }],
            route: Route {
                receiver: "mail".into(),
                ..Route::default()
            },
            ..NotifyConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "notify.receivers[0].channels[0].to", "{err}");
        assert!(
            err.reason
                .starts_with("\"not an address\" is not an address"),
            "{err}"
        );
    }
}
