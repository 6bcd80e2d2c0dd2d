//! What this process holds, read from `/proc/self` (Linux): resident memory and open file
//! descriptors, for tests that bound what a hostile peer can make a server hold.
//!
//! Owns nothing but the readings; never changes the process.

/// Resident set size in KiB (`VmRSS`), 0 where `/proc/self/status` cannot be read.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors (entries of `/proc/self/fd`), 0 where it cannot be read.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}
