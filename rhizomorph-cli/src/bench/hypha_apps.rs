//! `bench --scenario hypha`: the same unmodified hypha-rpc programs
//! (`rhizomorph/tests/interop/hypha_bench.py`, a provider and a caller) through the real hypha
//! server and through `rhizomorph serve` (this binary, as a child process with its workspace
//! manager), in one run: the reference's echo scenarios plus 100 and 500 calls at once over
//! 10 clients. Reports msgs/s, p50/p99 and each server's CPU per routed call, read from
//! `/proc/<pid>/stat` around each scenario.
//!
//! Owns the two server processes and the Python ones (all killed when dropped). Needs the venv
//! `scripts/test.sh` makes; not part of `all`.

use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rhizomorph_testkit::process::cpu_seconds_of;
use rhizomorph_testkit::python::{repo_root, venv_python, HyphaServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::measure::Measurement;

/// The scenarios, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "small-seq",
    "small-64",
    "medium-seq",
    "medium-64",
    "large-seq",
    "mixed-seq",
    "spread-100",
    "spread-500",
];

fn script() -> std::path::PathBuf {
    repo_root().join("rhizomorph/tests/interop/hypha_bench.py")
}

/// Runs every scenario through hypha (`hypha-py`), then through `rhizomorph serve`
/// (`rhizo-serve`), and adds the ratios to the rhizomorph rows.
pub async fn run(progress: impl Fn(&str)) -> io::Result<Vec<Measurement>> {
    let python = venv_python()?;
    progress("hypha server (Python)");
    let hypha = HyphaServer::start(&python).await?;
    let http = hypha.url.trim_end_matches("/ws").replacen("ws", "http", 1);
    let pid = hypha
        .pid()
        .ok_or_else(|| io::Error::other("hypha exited"))?;
    let servers = Servers {
        provider_http: &http,
        caller_http: &http,
        pids: vec![pid],
        redis: None,
    };
    let mut rows = run_against("hypha-py", &servers, SCENARIOS, &python, &progress).await?;
    drop(hypha);

    progress("rhizomorph serve");
    let (mut serve, port) = serve(&[]).await?;
    let pid = serve.id().ok_or_else(|| io::Error::other("serve exited"))?;
    let http = format!("http://127.0.0.1:{port}");
    let servers = Servers {
        provider_http: &http,
        caller_http: &http,
        pids: vec![pid],
        redis: None,
    };
    let mut ours = run_against("rhizo-serve", &servers, SCENARIOS, &python, &progress).await?;
    let _ = serve.kill().await;
    add_ratios(&rows, &mut ours);
    rows.extend(ours);
    Ok(rows)
}

/// Adds to each of `ours` its throughput and server CPU next to the `base` row of its mode.
pub(super) fn add_ratios(base: &[Measurement], ours: &mut [Measurement]) {
    let rows = base;
    for m in ours.iter_mut() {
        let Some(base) = rows.iter().find(|b| b.mode == m.mode) else {
            continue;
        };
        m.notes.push((
            "x hypha-py".into(),
            m.msgs_per_sec / base.msgs_per_sec.max(1e-9),
        ));
        let cpu = |r: &Measurement| r.notes.iter().find(|n| n.0 == CPU_NOTE).map(|n| n.1);
        if let (Some(a), Some(b)) = (cpu(m), cpu(base)) {
            m.notes
                .push(("server CPU / hypha's".into(), a / b.max(1e-9)));
        }
    }
}

const CPU_NOTE: &str = "server CPU µs/call";

/// Where the two programs connect, whose CPU counts, and the Redis whose commands count.
pub(super) struct Servers<'a> {
    /// hypha-rpc's `server_url` for the provider.
    pub provider_http: &'a str,
    /// hypha-rpc's `server_url` for the caller.
    pub caller_http: &'a str,
    /// The server processes (their CPU is summed).
    pub pids: Vec<u32>,
    /// A Redis behind them (its commands and round trips per call are reported).
    pub redis: Option<&'a rhizomorph_testkit::redis_server::RedisServer>,
}

/// What a Redis has done so far, from `INFO stats` (zeros without one): the bench reports the
/// change per call.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RedisCounters {
    /// `total_commands_processed`.
    pub commands: f64,
    /// `total_reads_processed`: socket reads with data, one per pipeline a client sent when
    /// nothing else waits, so its change per call is the servers' round trips to Redis.
    pub reads: f64,
}

impl RedisCounters {
    /// `redis`'s counters now.
    pub fn of(redis: Option<&rhizomorph_testkit::redis_server::RedisServer>) -> RedisCounters {
        let Some(info) = redis.and_then(|r| r.command(&["INFO", "stats"]).ok()) else {
            return RedisCounters::default();
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        RedisCounters {
            commands: field("total_commands_processed"),
            reads: field("total_reads_processed"),
        }
    }

    /// The notes for `calls` calls since `start`.
    pub fn notes_since(&self, start: RedisCounters, calls: u64) -> Vec<(String, f64)> {
        let per_call = |d: f64| d / calls.max(1) as f64;
        vec![
            (
                "Redis cmds/call".into(),
                per_call(self.commands - start.commands),
            ),
            (
                "Redis round trips/call".into(),
                per_call(self.reads - start.reads),
            ),
        ]
    }
}

/// A `rhizomorph serve` child (this binary) on a free port, with `extra` arguments.
pub(super) async fn serve(extra: &[&str]) -> io::Result<(Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(std::env::current_exe()?)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    wait_for_port(port).await?;
    Ok((child, port))
}

async fn wait_for_port(port: u16) -> io::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(io::Error::other("rhizomorph serve did not start in 10 s"))
}

pub(super) fn python_role(python: &Path, args: &[&str]) -> io::Result<Child> {
    Command::new(python)
        .arg(script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// The provider and the caller against `servers` (their CPU is sampled around each
/// scenario).
pub(super) async fn run_against(
    label: &str,
    servers: &Servers<'_>,
    scenarios: &[&str],
    python: &Path,
    progress: &impl Fn(&str),
) -> io::Result<Vec<Measurement>> {
    let cpu_now = || servers.pids.iter().map(|p| cpu_seconds_of(*p)).sum::<f64>();
    let mut provider = python_role(python, &["provider", servers.provider_http])?;
    let mut lines = BufReader::new(provider.stdout.take().expect("piped")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .map_err(|_| io::Error::other(format!("{label}: the provider did not register in 60 s")))??
        .ok_or_else(|| io::Error::other(format!("{label}: the provider exited")))?;
    let v: serde_json::Value = serde_json::from_str(&ready).map_err(io::Error::other)?;
    let id = v["ready"].as_str().unwrap_or_default().to_string();
    let mut args = vec!["caller", servers.caller_http, &id];
    args.extend(scenarios);
    let mut caller = python_role(python, &args)?;
    let mut out = BufReader::new(caller.stdout.take().expect("piped")).lines();
    let mut rows = Vec::new();
    let (mut cpu_start, mut redis_start) = (0.0, RedisCounters::default());
    while rows.len() < scenarios.len() {
        let line = tokio::time::timeout(Duration::from_secs(600), out.next_line())
            .await
            .map_err(|_| io::Error::other(format!("{label}: a scenario took over 600 s")))??
            .ok_or_else(|| io::Error::other(format!("{label}: the caller exited early")))?;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(name) = v["start"].as_str() {
            progress(&format!("{label}: {name}"));
            cpu_start = cpu_now();
            redis_start = RedisCounters::of(servers.redis);
            continue;
        }
        let Some(name) = v["result"].as_str() else {
            continue;
        };
        let cpu = cpu_now() - cpu_start;
        let redis_now = RedisCounters::of(servers.redis);
        let messages = v["messages"].as_u64().unwrap_or(0);
        let bytes = v["bytes"].as_u64().unwrap_or(0);
        let seconds = v["seconds"].as_f64().unwrap_or(0.0).max(1e-9);
        rows.push(Measurement {
            scenario: "hypha".into(),
            mode: name.to_string(),
            implementation: label.to_string(),
            messages,
            bytes,
            seconds,
            msgs_per_sec: messages as f64 / seconds,
            mb_per_sec: bytes as f64 / 1e6 / seconds,
            p50_ms: v["p50_ms"].as_f64().unwrap_or(0.0),
            p95_ms: v["p95_ms"].as_f64().unwrap_or(0.0),
            p99_ms: v["p99_ms"].as_f64().unwrap_or(0.0),
            notes: match servers.redis {
                None => vec![(CPU_NOTE.into(), cpu * 1e6 / messages.max(1) as f64)],
                Some(_) => {
                    let mut notes = vec![(CPU_NOTE.into(), cpu * 1e6 / messages.max(1) as f64)];
                    notes.extend(redis_now.notes_since(redis_start, messages));
                    notes
                }
            },
        });
    }
    drop(provider);
    Ok(rows)
}
