//! The host's figures beside the process's (`process_*`, from `metrics-process`): CPU, memory,
//! load, disks and network of the whole machine, under the pool-monitoring system's `pool_*`
//! names, sampled with the other vital signs (`crate::health`). Disks and interfaces are
//! labelled by mount point and interface name, at most [`MAX_LABELLED`] of each, leaving out
//! pseudo file systems and the loopback interface, so the series stay few on a busy host.

use std::collections::BTreeSet;

use sysinfo::{Disks, Networks, System};

/// Most disks and most interfaces reported (the first, in name order).
pub const MAX_LABELLED: usize = 16;

/// File systems that hold no data of their own.
const PSEUDO_FILE_SYSTEMS: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "overlay",
    "squashfs",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "nsfs",
    "fuse.lxcfs",
];

/// What is kept between samples (CPU usage is measured between two refreshes).
pub struct Host {
    system: System,
    disks: Disks,
    networks: Networks,
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    /// Reads the lists of disks and interfaces once.
    pub fn new() -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        Self {
            system,
            disks: Disks::new_with_refreshed_list(),
            networks: Networks::new_with_refreshed_list(),
        }
    }

    /// Reads the host's figures and sets their gauges.
    pub fn sample(&mut self) {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        metrics::gauge!("pool_cpu_usage_percent").set(f64::from(self.system.global_cpu_usage()));
        metrics::gauge!("pool_memory_used_bytes").set(self.system.used_memory() as f64);
        metrics::gauge!("pool_memory_total_bytes").set(self.system.total_memory() as f64);
        let load = System::load_average();
        for (window, value) in [("1m", load.one), ("5m", load.five), ("15m", load.fifteen)] {
            metrics::gauge!("pool_load_average", "window" => window).set(value);
        }
        self.disks.refresh(true);
        let mut mounts = BTreeSet::new();
        for disk in self.disks.list() {
            let fs = disk.file_system().to_string_lossy();
            if PSEUDO_FILE_SYSTEMS.contains(&fs.as_ref()) || mounts.len() >= MAX_LABELLED {
                continue;
            }
            let mount = disk.mount_point().to_string_lossy().into_owned();
            if !mounts.insert(mount.clone()) {
                continue;
            }
            let total = disk.total_space();
            let used = total.saturating_sub(disk.available_space());
            metrics::gauge!("pool_disk_used_bytes", "mount" => mount.clone()).set(used as f64);
            metrics::gauge!("pool_disk_total_bytes", "mount" => mount).set(total as f64);
        }
        self.networks.refresh(true);
        let mut interfaces: Vec<_> = self
            .networks
            .list()
            .iter()
            .filter(|(name, _)| name.as_str() != "lo")
            .collect();
        interfaces.sort_by(|a, b| a.0.cmp(b.0));
        for (name, data) in interfaces.into_iter().take(MAX_LABELLED) {
            metrics::counter!("pool_network_received_bytes_total", "interface" => name.clone())
                .absolute(data.total_received());
            metrics::counter!("pool_network_transmitted_bytes_total", "interface" => name.clone())
                .absolute(data.total_transmitted());
        }
    }
}
