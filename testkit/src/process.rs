//! What a process holds, read from `/proc` (Linux): resident memory and open file
//! descriptors, for tests that bound what a hostile peer can make a server hold — this
//! process's, or a server's started as a child.
//!
//! Owns nothing but the readings; never changes the process.

/// This process's resident set size in KiB (`VmRSS`), 0 where it cannot be read.
pub fn rss_kib() -> u64 {
    rss_kib_of("self")
}

/// This process's open file descriptors, 0 where they cannot be read.
pub fn open_fds() -> usize {
    open_fds_of("self")
}

/// The resident set size in KiB of process `pid` (a number, or `self`).
pub fn rss_kib_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The open file descriptors of process `pid` (a number, or `self`).
pub fn open_fds_of(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/<pid>/stat`; 0 where it
/// cannot be read. Assumes the usual 100 clock ticks per second (`getconf CLK_TCK`).
pub fn cpu_seconds_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}
