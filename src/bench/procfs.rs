//! What the benches read of a process from `/proc`: sizes (the KiB lines of `status` and
//! `meminfo`) and the CPU time it has used.

/// The value of line `key` of a `/proc` file that gives sizes in KiB (0 when unreadable).
pub(super) fn proc_kib(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// The CPU time (user and system) process `pid` (`"self"`: this one) has used so far, in
/// seconds; `None` when its `/proc/<pid>/stat` cannot be read.
pub(super) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses: the
    // fields are counted from after its last ')', where field 3 (the state) starts.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_cpu_time_grows_as_it_works() {
        // Works until its CPU time shows 50 ms more, however busy the machine is (a fixed
        // 100 ms of wall time got 30 ms of a core beside the test suite), or a minute passes.
        let before = cpu_seconds("self").expect("/proc/self/stat");
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        let mut after = before;
        while after < before + 0.05 && spin.elapsed() < std::time::Duration::from_secs(60) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = cpu_seconds("self").expect("/proc/self/stat");
        }
        assert!(after >= before + 0.05, "{before} → {after}");
        assert_eq!(cpu_seconds("0"), None);
        assert!(proc_kib("/proc/self/status", "VmRSS:") > 0);
    }
}
