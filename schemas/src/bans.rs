//! Stratum bans (issue 25): an IP address or network refused by every pool process, why, until
//! when and who set it. Kept in the KV bucket `adit_bans`, one key per network, so every pool
//! process applies them and they outlive a restart. Operators manage them over the API; the
//! pool writes its own bans for invalid shares there too (`by = "auto"`).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The most characters a ban's reason may have.
pub const MAX_REASON_CHARS: usize = 200;

/// Who the pool's own bans are by.
pub const AUTO: &str = "auto";

/// One ban.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ban {
    /// The network, canonical (`203.0.113.7/32`, `2001:db8::/32`).
    pub network: String,
    /// Why (shown to operators, never to the miner).
    pub reason: String,
    /// When it ends; none: until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    /// Who set it (the caller's name, or [`AUTO`]).
    pub by: String,
    /// When it was set.
    pub at: DateTime<Utc>,
}

/// The widest prefix one IPv6 holder is given (RFC 6177): every address of an IPv6 /64 costs
/// its holder nothing, so a /64 is the narrowest IPv6 network a ban or a per-address limit can
/// hold.
pub const IPV6_HOLDER_PREFIX: u8 = 64;

/// The network a peer at `ip` is counted as, by every per-address limit and ban: an IPv4
/// address (an IPv4-mapped IPv6 address is the IPv4 address it maps), or the IPv6 /64 it is in.
pub fn holder(ip: IpAddr) -> IpNet {
    holder_of_net(IpNet::from(ip))
}

/// The network a peer at `ip` is counted as, as one address (the network's first): what
/// per-address tables are keyed by.
pub fn holder_addr(ip: IpAddr) -> IpAddr {
    holder(ip).network()
}

/// `net` as enforced: host bits cleared, an IPv4-mapped network as IPv4, and an IPv6 network
/// narrower than a /64 widened to its /64.
pub fn holder_of_net(net: IpNet) -> IpNet {
    let net = net.trunc();
    match net {
        IpNet::V4(_) => net,
        IpNet::V6(v6) => {
            if let Some(v4) = v6.addr().to_ipv4_mapped()
                && v6.prefix_len() >= 96
            {
                return ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map(|n| IpNet::V4(n.trunc()))
                    .unwrap_or(net);
            }
            if v6.prefix_len() > IPV6_HOLDER_PREFIX {
                return ipnet::Ipv6Net::new(v6.addr(), IPV6_HOLDER_PREFIX)
                    .map(|n| IpNet::V6(n.trunc()))
                    .unwrap_or(net);
            }
            net
        }
    }
}

/// A network as typed by an operator (an address, or an address with a prefix length), as
/// enforced (see [`holder`]): `2001:db8::7` is `2001:db8::/64`, `::ffff:192.0.2.1` is
/// `192.0.2.1/32`.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    parse_exact(text).map(holder_of_net)
}

/// A network as written, host bits not yet cleared.
fn parse_exact(text: &str) -> Result<IpNet, String> {
    match text.parse::<IpNet>() {
        Ok(net) => Ok(net),
        Err(_) => text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!(
                "{text:?} is not an IP address or network (203.0.113.7, 10.0.0.0/8, 2001:db8::/32)"
            )
        }),
    }
}

/// The KV key of `net` (KV keys take no `:`; `/` and `.` are kept): `10.0.0.0/8` →
/// `10.0.0.0/8`, `2001:db8::/32` → `2001-db8--/32`.
pub fn key(net: &IpNet) -> String {
    net.to_string().replace(':', "-")
}

impl Ban {
    /// A ban of `net`.
    pub fn new(net: &IpNet, reason: &str, expires: Option<DateTime<Utc>>, by: &str) -> Self {
        Self {
            network: net.to_string(),
            reason: reason.to_string(),
            expires,
            by: by.to_string(),
            at: Utc::now(),
        }
    }

    /// Its network as enforced (see [`holder`]); an error names what is wrong with a record
    /// from outside. A record written before IPv6 bans were widened (`…/128`) still holds, as
    /// its /64.
    pub fn net(&self) -> Result<IpNet, String> {
        let written = parse_exact(&self.network)?;
        if written.trunc().to_string() != self.network {
            return Err(format!(
                "network {:?} is not canonical ({})",
                self.network,
                written.trunc()
            ));
        }
        Ok(holder_of_net(written))
    }

    /// Checks a ban from outside (an API body, a KV value): its network, a short plain reason,
    /// a plain `by`.
    pub fn validate(&self) -> Result<(), String> {
        self.net()?;
        if self.reason.chars().count() > MAX_REASON_CHARS {
            return Err(format!("reason: at most {MAX_REASON_CHARS} characters"));
        }
        if self.reason.chars().any(char::is_control) || self.by.chars().any(char::is_control) {
            return Err("reason and by must not hold control characters".into());
        }
        if self.by.is_empty() || self.by.len() > 128 {
            return Err("by: 1 to 128 bytes".into());
        }
        Ok(())
    }

    /// Whether it holds at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_none_or(|until| until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_read_canonical_and_keyed_for_kv() {
        let one = parse_network("203.0.113.7").unwrap();
        assert_eq!(one.to_string(), "203.0.113.7/32");
        let wide = parse_network("10.1.2.3/8").unwrap();
        assert_eq!(wide.to_string(), "10.0.0.0/8", "host bits cleared");
        assert!(wide.contains(&"10.200.0.1".parse::<IpAddr>().unwrap()));
        let v6 = parse_network("2001:db8::1/32").unwrap();
        assert_eq!(key(&v6), "2001-db8--/32");
        assert!(
            key(&v6)
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-/_=.".contains(c)),
            "a valid KV key"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "example.com",
            "1.2.3.4/8/8",
            "::/129",
            "1.2.3.4\n",
        ] {
            assert!(parse_network(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_ban_holds_where_an_address_is_free_to_change() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            parse_network("2001:db8:1:2:3:4:5:6").unwrap().to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            parse_network("2001:db8::/48").unwrap().to_string(),
            "2001:db8::/48",
            "wider than a /64 stays"
        );
        assert_eq!(
            parse_network("::ffff:192.0.2.9").unwrap().to_string(),
            "192.0.2.9/32"
        );
        assert_eq!(
            parse_network("::ffff:192.0.2.9/120").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(holder(ip("::ffff:192.0.2.9")), holder(ip("192.0.2.9")));
        assert_eq!(
            holder(ip("2001:db8:1:2::7")),
            holder(ip("2001:db8:1:2:ffff::1")),
            "one /64, one holder"
        );
        assert_ne!(holder(ip("2001:db8:1:2::7")), holder(ip("2001:db8:1:3::7")));
        assert_eq!(holder_addr(ip("2001:db8:1:2::7")), ip("2001:db8:1:2::"));
        let old = Ban {
            network: "2001:db8::7/128".into(),
            ..Ban::new(&holder(ip("192.0.2.1")), "old record", None, "ops")
        };
        assert_eq!(old.net().unwrap().to_string(), "2001:db8::/64");
    }

    #[test]
    fn a_ban_from_outside_is_checked() {
        let net = parse_network("192.0.2.0/24").unwrap();
        let ban = Ban::new(&net, "floods", None, "ops");
        assert!(ban.validate().is_ok());
        assert!(ban.is_active(Utc::now()));
        let over = Ban {
            reason: "x".repeat(201),
            ..ban.clone()
        };
        assert!(over.validate().is_err());
        let forged = Ban {
            reason: "ok\nFAKE LOG LINE".into(),
            ..ban.clone()
        };
        assert!(forged.validate().is_err());
        let odd = Ban {
            network: "192.0.2.9/24".into(),
            ..ban.clone()
        };
        assert!(odd.validate().is_err(), "not canonical");
        let past = Ban {
            expires: Some(Utc::now() - chrono::Duration::seconds(1)),
            ..ban
        };
        assert!(!past.is_active(Utc::now()));
    }
}
