//! The egress policy (issue 23): which addresses each purpose of outbound request may reach.
//! Whoever may add a device, a fan relay or a webhook chooses where adit connects; without a
//! policy that is anywhere adit can reach, including its own NATS, monerod, the wallet RPC on
//! loopback and a cloud's metadata service.
//!
//! A purpose's rules are a list of entries: `public` (globally routable addresses), `private`
//! (RFC 1918, carrier-grade NAT, IPv6 unique local), `loopback` (127/8, ::1 and the unspecified
//! address, which reaches the host itself), `any`, a network (`10.20.0.0/16`, `fd00::/8`), an
//! address, or a host name (`hooks.slack.com`, `*.example.com`), which is allowed whatever it
//! resolves to (the operator trusts that name). Link-local addresses (169.254/16, the metadata
//! service's) are only reached through an explicit network.
//!
//! The check is made on the addresses a name resolves to, at connect time, on every request:
//! [`Guard::client`] gives reqwest a resolver that drops the addresses the rules refuse (so a
//! name that rebinds to 127.0.0.1 is refused then) and follows no redirect; [`Guard::check`]
//! refuses a URL whose host is an address the rules refuse (reqwest resolves no address);
//! [`Guard::resolve`] is the same for plain TCP (cgminer, SMTP).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use adit_config::{Checked, Invalid};
use ipnet::IpNet;
use serde::Deserialize;

/// What an outbound request is for: each purpose has its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Farm devices: miners, PDUs, meters, fan relays, actuator webhooks.
    Devices,
    /// The utility's and the market's feeds (grid signals, prices).
    Feeds,
    /// Notification channels: webhooks, Telegram, SMS, SMTP.
    Notify,
}

impl Purpose {
    /// Its config key under `[egress]`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Devices => "devices",
            Self::Feeds => "feeds",
            Self::Notify => "notify",
        }
    }
}

/// `[egress]`: the rules of each purpose.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Farm devices: by default the farm's private networks.
    pub devices: Vec<String>,
    /// Grid feeds: by default the public internet.
    pub feeds: Vec<String>,
    /// Notification channels: by default the public internet.
    pub notify: Vec<String>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            devices: vec!["private".into()],
            feeds: vec!["public".into()],
            notify: vec!["public".into()],
        }
    }
}

impl EgressConfig {
    /// The guard of `purpose`, or why its rules do not parse (naming the key).
    pub fn guard(&self, purpose: Purpose) -> Result<Guard, Invalid> {
        let rules = self.rules(purpose)?;
        Ok(Guard {
            purpose,
            rules: Arc::new(rules),
        })
    }

    /// The one way a part of adit makes its client for `purpose`: under the purpose's guard,
    /// following no redirect, with the user agent `adit-<agent>/<version>` and, where given,
    /// `timeout` on connecting and on each whole request.
    pub fn outbound(
        &self,
        purpose: Purpose,
        agent: &str,
        timeout: Option<Duration>,
    ) -> Result<Outbound, ClientError> {
        let guard = self.guard(purpose)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(format!("adit-{agent}/{}", env!("CARGO_PKG_VERSION")));
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout).connect_timeout(timeout);
        }
        Outbound::new(guard, builder).map_err(ClientError::Build)
    }

    /// Checks every purpose's rules; the key is the full one (`egress.devices`), so the caller
    /// adds no prefix.
    pub fn validate(&self) -> Checked {
        for purpose in [Purpose::Devices, Purpose::Feeds, Purpose::Notify] {
            self.rules(purpose)?;
        }
        Ok(())
    }

    /// The rules of `purpose`, parsed, or why not under its full key.
    fn rules(&self, purpose: Purpose) -> Result<Rules, Invalid> {
        let entries = match purpose {
            Purpose::Devices => &self.devices,
            Purpose::Feeds => &self.feeds,
            Purpose::Notify => &self.notify,
        };
        Rules::parse(entries).map_err(|e| Invalid::new(format!("egress.{}", purpose.key()), e))
    }
}

/// One purpose's allowed destinations, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    public: bool,
    private: bool,
    loopback: bool,
    nets: Vec<IpNet>,
    /// Exact host names, lowercase.
    hosts: Vec<String>,
    /// `*.suffix` names: the suffix with its leading dot, lowercase.
    suffixes: Vec<String>,
    /// The entries as written, for messages.
    written: String,
}

impl Rules {
    /// Parses a purpose's entries.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut rules = Self {
            written: entries.join(", "),
            ..Self::default()
        };
        for entry in entries {
            let e = entry.trim().to_ascii_lowercase();
            match e.as_str() {
                "public" => rules.public = true,
                "private" => rules.private = true,
                "loopback" => rules.loopback = true,
                "any" => {
                    rules.public = true;
                    rules.private = true;
                    rules.loopback = true;
                    rules.nets.push("0.0.0.0/0".parse().expect("a network"));
                    rules.nets.push("::/0".parse().expect("a network"));
                }
                _ => {
                    if let Ok(net) = e.parse::<IpNet>() {
                        rules.nets.push(net);
                    } else if let Ok(ip) = e.parse::<IpAddr>() {
                        rules.nets.push(IpNet::from(ip));
                    } else if let Some(suffix) = e.strip_prefix("*.") {
                        check_name(suffix, entry)?;
                        rules.suffixes.push(format!(".{suffix}"));
                    } else {
                        check_name(&e, entry)?;
                        rules.hosts.push(e);
                    }
                }
            }
        }
        Ok(rules)
    }

    /// Whether the host name `host` is allowed by name (whatever it resolves to).
    pub fn allows_name(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s))
    }

    /// Whether the address `ip` may be reached.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.nets.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        match class(ip) {
            Class::Loopback => self.loopback,
            Class::Private => self.private,
            Class::Public => self.public,
            Class::Other => false,
        }
    }
}

/// A host name entry: letters, digits, `-` and `.`, at most 253 characters.
fn check_name(name: &str, entry: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{entry:?} is not public, private, loopback, any, a network, an address or a host name"
        ))
    }
}

/// What kind of address an IP is, for the named rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// This host: loopback and the unspecified address.
    Loopback,
    /// A site's own networks.
    Private,
    /// Globally routable.
    Public,
    /// Link-local, multicast, broadcast, documentation, reserved: only an explicit network.
    Other,
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn class(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => class_v4(v4),
        IpAddr::V6(v6) => class_v6(v6),
    }
}

fn class_v4(ip: Ipv4Addr) -> Class {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() || ip.is_unspecified() || a == 0 {
        Class::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Class::Private
    } else if ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a >= 240
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..20).contains(&b))
    {
        Class::Other
    } else {
        Class::Public
    }
}

fn class_v6(ip: Ipv6Addr) -> Class {
    let [first, second, ..] = ip.segments();
    let global = first & 0xe000 == 0x2000; // 2000::/3
    // Inside it: 2001::/23 (Teredo, benchmarking, ORCHID…), 2001:db8::/32 (documentation)
    // and 2002::/16 (6to4, which can carry any IPv4 address) are not reached by name.
    let special = (first == 0x2001 && (second < 0x0200 || second == 0x0db8)) || first == 0x2002;
    if ip.is_loopback() || ip.is_unspecified() {
        Class::Loopback
    } else if first & 0xfe00 == 0xfc00 {
        Class::Private
    } else if global && !special {
        Class::Public
    } else {
        Class::Other
    }
}

/// An outbound request the policy refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The purpose whose rules refused it.
    pub purpose: Purpose,
    /// The host as written (never a URL's path or query).
    pub host: String,
    /// The addresses it resolved to, all refused (empty for an address host).
    pub addresses: Vec<IpAddr>,
    /// The rules, as written.
    pub rules: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the egress policy does not let {} reach {}",
            self.purpose.key(),
            self.host
        )?;
        if !self.addresses.is_empty() {
            let list: Vec<String> = self.addresses.iter().map(IpAddr::to_string).collect();
            write!(f, " (resolved to {})", list.join(", "))?;
        }
        write!(f, "; egress.{} allows [{}]", self.purpose.key(), self.rules)
    }
}

impl std::error::Error for Refused {}

/// A purpose's rules, applied to its requests.
#[derive(Debug, Clone)]
pub struct Guard {
    purpose: Purpose,
    rules: Arc<Rules>,
}

impl Guard {
    /// A guard that lets `purpose` reach whatever `rules` allow.
    pub fn new(purpose: Purpose, rules: Rules) -> Self {
        Self {
            purpose,
            rules: Arc::new(rules),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    fn refused(&self, host: &str, addresses: Vec<IpAddr>) -> Refused {
        Refused {
            purpose: self.purpose,
            host: host.chars().take(253).collect(),
            addresses,
            rules: self.rules.written.clone(),
        }
    }

    /// `builder` with this guard's resolver and no redirects: every name the client connects
    /// to is resolved, and its addresses checked, at the moment of the connection.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder
            .dns_resolver(Arc::new(self.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
    }

    /// Refuses `url` when its host is an address the rules refuse (a name is checked when it
    /// is resolved). Call it before each request of a client from [`Guard::client`].
    pub fn check(&self, url: &url::Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(&ip.to_string(), IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(self.refused("(no host)", Vec::new())),
        }
    }

    fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        if self.rules.allows_ip(ip) {
            Ok(())
        } else {
            Err(self.refused(host, Vec::new()))
        }
    }

    /// The addresses of `host`:`port` this purpose may connect to; refused when there is
    /// none. An address host is checked as it is; a name allowed by name is not filtered.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_ip(bare, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(ResolveError::Lookup)?
            .collect();
        if self.rules.allows_name(bare) {
            return Ok(found);
        }
        let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = found
            .into_iter()
            .partition(|a| self.rules.allows_ip(a.ip()));
        if allowed.is_empty() {
            let addresses = refused.iter().map(SocketAddr::ip).collect();
            return Err(self.refused(bare, addresses).into());
        }
        Ok(allowed)
    }
}

/// Why a purpose's client could not be made ([`EgressConfig::outbound`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The purpose's rules do not parse.
    #[error(transparent)]
    Rules(#[from] Invalid),
    /// The HTTP client could not be built (its TLS roots could not be loaded).
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Why the guard gave no address or connection.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The policy refused every address.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The name did not resolve.
    #[error("cannot resolve: {0}")]
    Lookup(#[source] std::io::Error),
    /// Not a `host:port` or an http(s) URL.
    #[error("{0}")]
    BadAddress(String),
    /// No allowed address accepted the connection.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
}

impl Guard {
    /// Connects over TCP to `addr` (`host:port`, `[v6]:port`) at an address this purpose may
    /// reach.
    pub async fn connect(&self, addr: &str) -> Result<tokio::net::TcpStream, ResolveError> {
        let bad = || ResolveError::BadAddress(format!("{addr:?} is not host:port"));
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let addrs = self.resolve(host, port).await?;
        tokio::net::TcpStream::connect(&addrs[..])
            .await
            .map_err(ResolveError::Connect)
    }

    /// `text` as an http(s) URL this purpose may request (an address host is checked now, a
    /// name when the client resolves it).
    pub fn url(&self, text: &str) -> Result<url::Url, ResolveError> {
        let url = url::Url::parse(text)
            .map_err(|e| ResolveError::BadAddress(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ResolveError::BadAddress(format!(
                "{} is not http or https",
                url.scheme()
            )));
        }
        self.check(&url)?;
        Ok(url)
    }
}

/// An HTTP client bound to a purpose's guard: the client resolves through the guard, and
/// [`Outbound::url`] checks each URL before it is requested.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The purpose's guard.
    pub guard: Guard,
    /// The client, resolving through the guard and following no redirect.
    pub http: reqwest::Client,
}

impl Outbound {
    /// A client from `builder` (timeouts, user agent) under `guard`.
    pub fn new(guard: Guard, builder: reqwest::ClientBuilder) -> reqwest::Result<Self> {
        let http = guard.client(builder).build()?;
        Ok(Self { guard, http })
    }

    /// `text` as a URL this purpose may request: see [`Guard::url`].
    pub fn url(&self, text: &str) -> Result<url::Url, ResolveError> {
        self.guard.url(text)
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = guard.resolve(&host, 0).await.map_err(Box::new)?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(entries: &[&str]) -> Rules {
        Rules::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_named_classes_hold_what_they_say() {
        let private = rules(&["private"]);
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.10",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert!(private.allows_ip(ip(a)), "{a}");
        }
        for a in [
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "169.254.169.254",
            "8.8.8.8",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            assert!(!private.allows_ip(ip(a)), "{a}");
        }
        let public = rules(&["public"]);
        for a in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(public.allows_ip(ip(a)), "{a}");
        }
        for a in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fd12::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "2002:7f00:1::1",
            "2001::1",
            "198.18.0.1",
            "192.0.2.1",
            "2001:db8::1",
        ] {
            assert!(!public.allows_ip(ip(a)), "{a}");
        }
        let lo = rules(&["loopback"]);
        for a in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(lo.allows_ip(ip(a)), "{a}");
        }
        assert!(!rules(&[]).allows_ip(ip("8.8.8.8")), "no rule, no address");
    }

    #[test]
    fn networks_addresses_and_names_are_allowed_as_written() {
        let r = rules(&[
            "10.20.0.0/16",
            "169.254.169.254",
            "Hooks.Slack.com",
            "*.example.org",
        ]);
        assert!(r.allows_ip(ip("10.20.5.5")));
        assert!(!r.allows_ip(ip("10.21.0.1")));
        assert!(r.allows_ip(ip("169.254.169.254")));
        assert!(r.allows_name("hooks.slack.com"));
        assert!(r.allows_name("HOOKS.SLACK.COM."));
        assert!(r.allows_name("a.b.example.org"));
        assert!(
            !r.allows_name("example.org"),
            "*.x allows the names under x only"
        );
        assert!(!r.allows_name("evilexample.org"));
        assert!(!r.allows_name("slack.com"));
        let any = rules(&["any"]);
        assert!(any.allows_ip(ip("169.254.169.254")) && any.allows_ip(ip("::1")));
    }

    #[test]
    fn a_bad_entry_is_refused_with_its_key() {
        let config = EgressConfig {
            devices: vec!["10.0.0.0/33".into()],
            ..EgressConfig::default()
        };
        let e = config.validate().unwrap_err();
        assert_eq!(e.key, "egress.devices", "{e}");
        let guard = config.guard(Purpose::Devices).err().map(|e| e.to_string());
        let guard = guard.unwrap_or_default();
        assert!(guard.starts_with("egress.devices: "), "{guard}");
        for bad in ["", "a b", "http://x", "*.", "x/y"] {
            assert!(Rules::parse(&[bad.to_string()]).is_err(), "{bad:?}");
        }
        assert!(EgressConfig::default().validate().is_ok());
    }

    #[tokio::test]
    async fn a_name_is_checked_on_the_addresses_it_resolves_to() {
        let devices = EgressConfig::default().guard(Purpose::Devices).unwrap();
        // `localhost` resolves to loopback, which the default device rules refuse.
        let e = devices.resolve("localhost", 80).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("does not let devices reach localhost"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1") || text.contains("::1"), "{text}");
        assert!(devices.resolve("127.0.0.1", 80).await.is_err());
        assert!(devices.resolve("[::1]", 80).await.is_err());
        assert!(devices.resolve("10.0.0.7", 4028).await.is_ok());
        let by_name = Guard::new(Purpose::Devices, rules(&["localhost"]));
        assert!(by_name.resolve("localhost", 80).await.is_ok());
    }

    #[tokio::test]
    async fn a_client_reaches_no_refused_address_by_name_or_by_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = vec![0u8; 4096];
                let mut read = 0;
                while !request[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut request[read..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                }
                let reply =
                    b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecret";
                s.write_all(reply).await.expect("the test server answers");
            }
        });
        let notify = EgressConfig::default().guard(Purpose::Notify).unwrap();
        let http = notify.client(reqwest::Client::builder()).build().unwrap();
        let by_name: url::Url = format!("http://localhost:{port}/hook").parse().unwrap();
        notify
            .check(&by_name)
            .expect("a name is checked when resolved");
        let e = crate::describe(http.get(by_name).send().await.unwrap_err());
        assert!(
            e.contains("does not let notify reach localhost (resolved to 127.0.0.1"),
            "{e}"
        );
        assert!(!e.contains("/hook"), "the URL is left out: {e}");
        let by_address: url::Url = format!("http://127.0.0.1:{port}/hook").parse().unwrap();
        let e = notify.check(&by_address).unwrap_err();
        assert_eq!(e.host, "127.0.0.1");
        // The same client, with loopback allowed, reaches it.
        let lo = Guard::new(Purpose::Notify, rules(&["loopback"]));
        let http = lo.client(reqwest::Client::builder()).build().unwrap();
        let url: url::Url = format!("http://localhost:{port}/hook").parse().unwrap();
        lo.check(&url).unwrap();
        assert_eq!(
            http.get(url).send().await.unwrap().text().await.unwrap(),
            "secret"
        );
    }
}
