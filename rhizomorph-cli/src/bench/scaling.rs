//! `bench --scenario scaling` (issue 24): what a server does per core. A `rhizomorph serve`
//! process (router + echo, `--threads N`) is pinned with `taskset` to cores `0..N`, this
//! process — the clients — to the cores left (all of them when none is left, said in the row),
//! and each N runs rpc at 100 connections and 2 MB echoes 64 in flight. Rows give calls/s
//! (or MB/s) and the CPU each side spent per call from `/proc/<pid>/stat`, server and client
//! apart, so the server's CPU per call is read without the clients' share.
//!
//! Owns the server process (killed when dropped) and this process's CPU affinity for the
//! scenario's duration (given back to every core after). Needs `taskset` (util-linux); not
//! part of `all`.

use std::io;
use std::time::Duration;

use indicatif::ProgressBar;
use rhizomorph::Config;
use rhizomorph_testkit::process::cpu_seconds_of;

use super::hypha_apps::serve;
use super::measure::Measurement;
use super::{cpu, rhizo_rpc_client, rpc, scenarios};

/// Connections of the rpc rows.
const CONNECTIONS: usize = 100;
/// 2 MB echoes per large row.
const LARGE_ECHOES: usize = 200;
/// 2 MB echoes in flight at once.
const LARGE_IN_FLIGHT: usize = 64;

/// Pins every thread of `pid` to `cpus` (a taskset list such as `0-1`).
fn pin(pid: u32, cpus: &str) -> io::Result<()> {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "taskset -a -p -c {cpus} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `a-b` (or `a`) for cores `range`.
fn cpu_list(range: std::ops::Range<usize>) -> String {
    if range.len() == 1 {
        range.start.to_string()
    } else {
        format!("{}-{}", range.start, range.end - 1)
    }
}

/// Replaces a row's in-process CPU note with the two processes' own figures.
fn note_cpu(m: &mut Measurement, server_cpu: f64, client_cpu: f64, cores: usize, shared: bool) {
    m.notes.retain(|(k, _)| k != cpu::CPU_NOTE);
    let per = |s: f64| s * 1e6 / m.messages.max(1) as f64;
    m.notes.push(("server cores".into(), cores as f64));
    m.notes
        .push(("server CPU us per message".into(), per(server_cpu)));
    m.notes
        .push(("client CPU us per message".into(), per(client_cpu)));
    if shared {
        m.notes
            .push(("client shares the server's cores (1 = yes)".into(), 1.0));
    }
}

/// Runs N = 1 .. the machine's cores; returns one rpc and one large row per N.
pub async fn run(
    config: &Config,
    rpc_duration: Duration,
    progress: &ProgressBar,
) -> io::Result<Vec<Measurement>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let me = std::process::id();
    let mut rows = Vec::new();
    let result = async {
        for n in 1..=cores {
            let threads = n.to_string();
            let (child, port) = serve(&["--threads", &threads]).await?;
            let server = child.id().ok_or_else(|| io::Error::other("serve exited"))?;
            pin(server, &cpu_list(0..n))?;
            let shared = n == cores;
            pin(me, &cpu_list(if shared { 0..cores } else { n..cores }))?;
            let url = format!("ws://127.0.0.1:{port}");
            let label = format!("serve-{n}core");

            progress.set_message(format!("scaling: rpc, server on {n} core(s)"));
            let (s0, c0) = (cpu_seconds_of(server), cpu_seconds_of(me));
            let mut m = rpc::run_rpc(&label, CONNECTIONS, rpc_duration, |_| {
                rhizo_rpc_client(&url, config)
            })
            .await?;
            m.scenario = format!("scale-rpc-{CONNECTIONS}");
            let (s1, c1) = (cpu_seconds_of(server), cpu_seconds_of(me));
            note_cpu(&mut m, s1 - s0, c1 - c0, n, shared);
            rows.push(m);

            progress.set_message(format!("scaling: 2 MB echoes, server on {n} core(s)"));
            let large = scenarios::EchoScenario {
                name: "scale-large",
                sizes: vec![2 << 20; LARGE_ECHOES],
            };
            let (s0, c0) = (cpu_seconds_of(server), cpu_seconds_of(me));
            let mut m = scenarios::echo_rhizomorph(
                &label,
                &url,
                config,
                &large,
                LARGE_IN_FLIGHT,
                &ProgressBar::hidden(),
            )
            .await?;
            let (s1, c1) = (cpu_seconds_of(server), cpu_seconds_of(me));
            note_cpu(&mut m, s1 - s0, c1 - c0, n, shared);
            rows.push(m);
            drop(child);
        }
        Ok::<_, io::Error>(())
    }
    .await;
    // The rest of the bench runs on every core again, whatever happened.
    let restored = pin(me, &cpu_list(0..cores));
    result?;
    restored?;
    Ok(rows)
}
