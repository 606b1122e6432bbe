//! The process's limit on open files against the pool's admitted connections: every miner's
//! connection is a descriptor, so the soft limit is raised to what `[pool.server.limits]
//! max_connections` needs, and where the hard limit is lower the pool admits fewer. Otherwise a
//! crowd of connections (a botnet, a farm pointed at the pool) would take the last descriptors
//! and the landing could open no table file and NATS no socket: one stranger's flood would stop
//! the whole process.

/// Descriptors kept for everything but the miners (NATS, table files, query clients), at most.
pub const RESERVED: u64 = 1024;

/// What the limit allows the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Connections the pool may admit: the asked number, or fewer where the limit is lower.
    pub connections: usize,
    /// The soft limit on open files now.
    pub limit: u64,
}

/// Raises the soft limit on open files (within the hard limit) so `connections` miners fit
/// beside the descriptors the rest of the process needs, and says how many fit.
pub fn room_for(connections: usize) -> Room {
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        // No limit to read (not Linux-like): nothing to raise or to keep.
        return Room {
            connections,
            limit: u64::MAX,
        };
    };
    let want = (connections as u64).saturating_add(RESERVED);
    let target = want.min(hard);
    let limit = if soft < target && rlimit::Resource::NOFILE.set(target, hard).is_ok() {
        target
    } else {
        soft
    };
    Room {
        connections: fits(connections, limit),
        limit,
    }
}

/// Connections that fit under `limit` open files beside the reserve (half the limit where the
/// limit is small), at least one.
fn fits(connections: usize, limit: u64) -> usize {
    let reserved = RESERVED.min(limit / 2);
    let room = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    connections.min(room).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_admits_what_the_limit_leaves_beside_the_reserve() {
        assert_eq!(fits(10_000, 1_048_576), 10_000);
        assert_eq!(fits(100_000, 65_536), 65_536 - 1_024);
        assert_eq!(fits(10_000, 20_000), 10_000);
        assert_eq!(fits(100_000, 20_000), 18_976);
        assert_eq!(fits(10_000, 1_024), 512, "half of a small limit is kept");
        assert_eq!(fits(10_000, 0), 1);
    }

    #[test]
    fn the_soft_limit_is_raised_within_the_hard_one() {
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        let room = room_for(100);
        assert_eq!(room.connections, 100);
        assert!(room.limit >= (100 + RESERVED).min(hard), "{room:?}");
        let huge = room_for(usize::MAX / 2);
        assert!(huge.limit <= hard, "{huge:?}");
        assert!(
            (huge.connections as u64) < huge.limit,
            "the reserve is kept: {huge:?}"
        );
    }
}
