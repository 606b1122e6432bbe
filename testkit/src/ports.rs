//! Free loopback ports for the servers a test starts, handed out so that nothing else on the
//! machine can take one between the handing out and the server's bind.
//!
//! A port from `bind(127.0.0.1:0)` is in the kernel's ephemeral range, the range every outgoing
//! connection on the machine takes its source port from: with several tests running, another
//! test's HTTP request could take the port before the server (monerod, nats-server, adit) bound
//! it, and the server failed with "address in use" (seen: monerod's RPC port, four tests at a
//! time). So the ports come from below that range, where the kernel never hands one out on its
//! own, chosen at random, and each is reserved across the test processes running at once by a
//! lock on a file named after it, held until this process ends: two tests never get the same
//! port, and a port is free again once the test that had it is gone.

use std::fs::File;
use std::net::TcpListener;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

use rand::Rng;

/// The lowest port handed out: above the well-known and registered ports the machine's own
/// services use (PostgreSQL 5432, NATS 4222, Redis 6379…).
const LOWEST: u16 = 10_000;

/// The fewest ports the range below the ephemeral one must hold for it to be used.
const FEWEST: u16 = 4_096;

/// How many random ports are tried before giving up.
const TRIES: usize = 10_000;

/// The lock files this process holds: a port's reservation lasts as long as its file is open.
static HELD: Mutex<Vec<(u16, File)>> = Mutex::new(Vec::new());

/// A free TCP port on 127.0.0.1 that no running test process holds, never one this process
/// was given before (a test that asks for two ports, the demo's HTTP and Flight SQL ones, gets
/// two), and outside the kernel's ephemeral range. Falls back to a port the kernel picks where
/// the ephemeral range leaves too few below it.
pub fn free_port() -> u16 {
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(range) = below_ephemeral() else {
        return kernel_port(&held);
    };
    let dir = std::env::temp_dir().join("adit-test-ports");
    std::fs::create_dir_all(&dir).expect("a folder for the test ports' lock files");
    let mut rng = rand::rng();
    for _ in 0..TRIES {
        let port = rng.random_range(range.clone());
        if held.iter().any(|(p, _)| *p == port) {
            continue;
        }
        let Some(lock) = reserve(dir.join(port.to_string())) else {
            continue; // another test process holds it
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push((port, lock));
            return port;
        }
    }
    panic!("no free port in {range:?} after {TRIES} tries");
}

/// The lock on `path`, taken without waiting; `None` when another process holds it.
fn reserve(path: PathBuf) -> Option<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open the port lock file {}: {e}", path.display()));
    file.try_lock().ok().map(|()| file)
}

/// The ports from [`LOWEST`] up to the kernel's ephemeral range, when that holds at least
/// [`FEWEST`].
fn below_ephemeral() -> Option<Range<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let low: u16 = text.split_whitespace().next()?.parse().ok()?;
    (low >= LOWEST.saturating_add(FEWEST)).then_some(LOWEST..low)
}

/// A port the kernel picks, none of those `held`.
fn kernel_port(held: &[(u16, File)]) -> u16 {
    let mut refused = Vec::new();
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if !held.iter().any(|(p, _)| *p == port) {
            return port;
        }
        refused.push(listener);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let range = below_ephemeral();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "a port given twice: {ports:?}");
        for port in ports {
            if let Some(range) = &range {
                assert!(range.contains(&port), "{port} outside {range:?}");
            }
            TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
    }

    #[test]
    fn a_port_held_by_another_process_is_not_given() {
        // Another process's lock, as a second open file description's lock looks to this one.
        let dir = std::env::temp_dir().join("adit-test-ports");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let again = File::options()
            .write(true)
            .open(dir.join(port.to_string()))
            .unwrap();
        assert!(again.try_lock().is_err(), "the given port's file is locked");
    }
}
