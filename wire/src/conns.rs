//! How many connections the PostgreSQL and Flight SQL ports hold: at most so many in all and
//! so many from one address (counted as its holder, `adit_schemas::bans::holder`: one IPv6
//! /64, an IPv4-mapped address as its IPv4 address), so one client, or one holder of many
//! addresses, cannot take every connection. A connection holds its [`ConnSlot`] until it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use adit_schemas::bans::holder_addr;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `total` connections are open.
    Full,
    /// Its address holds `per_address` already.
    PerAddress,
}

/// The connections open, in all and per address.
#[derive(Debug)]
pub struct ConnCaps {
    total: usize,
    per_address: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    all: usize,
    by_holder: HashMap<IpAddr, usize>,
}

/// One open connection's place; freed when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    caps: Arc<ConnCaps>,
    holder: IpAddr,
}

impl ConnCaps {
    /// At most `total` connections, `per_address` from one address.
    pub fn new(total: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_address,
            open: Mutex::default(),
        })
    }

    /// A place for a connection from `ip`, or why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refusal> {
        let holder = holder_addr(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.all >= self.total {
            return Err(Refusal::Full);
        }
        let mine = open.by_holder.entry(holder).or_default();
        if *mine >= self.per_address {
            return Err(Refusal::PerAddress);
        }
        *mine += 1;
        open.all += 1;
        Ok(ConnSlot {
            caps: self.clone(),
            holder,
        })
    }

    /// Connections open now, and addresses they come from.
    pub fn open(&self) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        (open.all, open.by_holder.len())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self
            .caps
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.all = open.all.saturating_sub(1);
        if let Some(mine) = open.by_holder.get_mut(&self.holder) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.by_holder.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_holder_and_in_all_and_free_on_drop() {
        let caps = ConnCaps::new(5, 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = caps.admit(ip("192.0.2.1")).unwrap();
        let b = caps.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            caps.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::PerAddress,
            "an IPv4-mapped address is its IPv4 address"
        );
        let c = caps.admit(ip("2001:db8::1")).unwrap();
        let d = caps.admit(ip("2001:db8::ffff:2")).unwrap();
        assert_eq!(
            caps.admit(ip("2001:db8::3")).unwrap_err(),
            Refusal::PerAddress,
            "one /64, one holder"
        );
        let e = caps.admit(ip("198.51.100.9")).unwrap();
        assert_eq!(caps.admit(ip("198.51.100.10")).unwrap_err(), Refusal::Full);
        drop(a);
        let f = caps.admit(ip("198.51.100.10")).unwrap();
        assert_eq!(caps.open(), (5, 4));
        drop((b, c, d, e, f));
        assert_eq!(caps.open(), (0, 0), "nothing left behind");
    }
}
