//! CPU time per message: the process's user + system time across a row, divided by what the
//! row completed.
//!
//! Owns the note a row gets (the reading is `testkit::process`'s, of `/proc/<pid>/stat`).
//! Every in-process row runs its client and its server (the bench's echo servers) in this
//! process, so the figure is both sides' cost, comparable between rows of one run. Never counts other processes (the Python
//! rows' peers, a spawned `serve`): those rows get no note.

use std::io;
use std::time::Duration;

use super::measure::Measurement;

/// The note a row's CPU time gets: microseconds per message (a round trip for echo and rpc
/// rows), client and server together.
pub const CPU_NOTE: &str = "CPU us per message (both sides)";

/// The process's user + system time so far (10 ms ticks, `testkit::process`), or `None`
/// without `/proc`.
pub fn process_cpu() -> Option<Duration> {
    let pid = std::process::id();
    // testkit reads an unreadable `/proc` as 0 s: tell it from a process that used none yet.
    std::path::Path::new(&format!("/proc/{pid}/stat"))
        .exists()
        .then(|| Duration::from_secs_f64(rhizomorph_testkit::process::cpu_seconds_of(pid)))
}

/// Runs one row and notes its CPU time per message ([`CPU_NOTE`]).
pub async fn measured(
    row: impl std::future::Future<Output = io::Result<Measurement>>,
) -> io::Result<Measurement> {
    let before = process_cpu();
    let mut m = row.await?;
    note(&mut m, before);
    Ok(m)
}

/// The least CPU time a row must use for its figure to be noted: 20 ticks, so the 10 ms
/// resolution is within 5% (a shorter row, such as the report's 20 messages of 2 MB, gets no
/// note; run it with a larger `--scale`).
const LEAST_MEASURED: Duration = Duration::from_millis(200);

/// Notes on `m` the CPU time used since `before` per message it completed ([`CPU_NOTE`]), if
/// it used enough to measure (200 ms, 20 ticks).
pub fn note(m: &mut Measurement, before: Option<Duration>) {
    if let (Some(a), Some(b)) = (before, process_cpu()) {
        let used = b.saturating_sub(a);
        if used >= LEAST_MEASURED {
            let per = used.as_secs_f64() * 1e6 / (m.messages.max(1) as f64);
            m.notes.push((CPU_NOTE.into(), per));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = process_cpu().expect("Linux /proc");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let used = process_cpu().unwrap() - before;
        assert!(
            used >= Duration::from_millis(150),
            "{used:?} for 300 ms of spinning"
        );
    }
}
