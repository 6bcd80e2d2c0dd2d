//! `bench --scenario cluster` (issue 23): two servers sharing one real redis-server, clients
//! on different servers, in one run — unmodified hypha-rpc programs through two real hypha
//! instances (`hypha --redis-uri`), then through two `rhizomorph serve --redis` nodes; and
//! native clients across two nodes, on one node with `--redis`, and on one node without it.
//! Reports msgs/s, p50/p99, server CPU per call (both servers' `/proc/<pid>/stat`) and Redis
//! commands and round trips per call (`INFO stats`).
//!
//! Owns every process it starts (killed when dropped). Needs the venv and redis-server; not
//! part of `all`.

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhizomorph::{Channel, Config, Connection, Endpoint, RoutingHeader};
use rhizomorph_testkit::python::{venv_python, HyphaServer};
use rhizomorph_testkit::redis_server::RedisServer;

use super::hypha_apps::{add_ratios, run_against, serve, RedisCounters, Servers};
use super::measure::Measurement;

/// Rounds of the native rows.
const ROUNDS: usize = 3;

/// The hypha-rpc scenarios, across the two servers.
const SCENARIOS: &[&str] = &[
    "small-seq",
    "small-64",
    "spread-100",
    "spread-500",
    "spread-1000",
];

/// Everything, in one run.
pub async fn run(progress: impl Fn(&str)) -> io::Result<Vec<Measurement>> {
    let python = venv_python()?;
    let mut redis = RedisServer::start()?;
    progress("two hypha servers on Redis");
    let url = redis.url();
    let h1 = HyphaServer::start_with(&python, &["--redis-uri", &url]).await?;
    let h2 = HyphaServer::start_with(&python, &["--redis-uri", &url]).await?;
    let http = |s: &HyphaServer| s.url.trim_end_matches("/ws").replacen("ws", "http", 1);
    let pids = [h1.pid(), h2.pid()].into_iter().flatten().collect();
    let (p, c) = (http(&h1), http(&h2));
    let servers = Servers {
        provider_http: &p,
        caller_http: &c,
        pids,
        redis: Some(&redis),
    };
    let mut rows = run_against("hypha-py x2", &servers, SCENARIOS, &python, &progress).await?;
    drop((h1, h2));

    redis.restart()?;
    progress("two rhizomorph serve --redis nodes");
    let url = redis.url();
    let (n1, p1) = serve(&["--redis", &url, "--node-id", "bench-1"]).await?;
    let (n2, p2) = serve(&["--redis", &url, "--node-id", "bench-2"]).await?;
    let pids: Vec<u32> = [n1.id(), n2.id()].into_iter().flatten().collect();
    let (p, c) = (
        format!("http://127.0.0.1:{p1}"),
        format!("http://127.0.0.1:{p2}"),
    );
    let servers = Servers {
        provider_http: &p,
        caller_http: &c,
        pids: pids.clone(),
        redis: Some(&redis),
    };
    let mut ours = run_against("rhizo-serve x2", &servers, SCENARIOS, &python, &progress).await?;
    add_ratios(&rows, &mut ours);
    rows.extend(ours);

    // Native clients: calls answered by a client on the other node, on the same node, and on
    // a node without Redis.
    let (solo, p0) = serve(&[]).await?;
    let d = Duration::from_secs(3);
    let ws = |port: u16| format!("ws://127.0.0.1:{port}/");
    // Three rounds, each variant in turn, the median kept: the local rows differ by a few
    // percent, less than this machine's noise between runs.
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let mut rows_of_round = Vec::new();
        for (label, caller, answerer, pids) in [
            ("native cross-node", p1, p2, pids.clone()),
            ("native one node --redis", p1, p1, pids.clone()),
            ("native one node", p0, p0, solo.id().into_iter().collect()),
        ] {
            progress(&format!("{label}, round {}/{ROUNDS}", round + 1));
            for in_flight in [1, 100] {
                let (caller, answerer) = (ws(caller), ws(answerer));
                let row =
                    native_calls(label, &caller, &answerer, in_flight, d, &pids, Some(&redis))
                        .await?;
                rows_of_round.push(row);
            }
        }
        rounds.push(rows_of_round);
    }
    rows.extend(super::median_of_rounds(rounds));
    drop((n1, n2, solo));
    Ok(rows)
}

/// Calls from `ws-b/caller-<n>` on `caller_url` to `ws-b/answerer-<n>` on `answerer_url`,
/// which sends each back, `in_flight` at once, for `d`. Server CPU is that of `pids`; Redis
/// commands are counted when `redis` is given (`examples/cluster_probe` runs it alone).
pub async fn native_calls(
    label: &str,
    caller_url: &str,
    answerer_url: &str,
    in_flight: usize,
    d: Duration,
    pids: &[u32],
    redis: Option<&RedisServer>,
) -> io::Result<Measurement> {
    // Fresh ids per run: a node's directory never confuses one run's clients with another's.
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (me, them) = (format!("caller-{n}"), format!("answerer-{n}"));
    let connect = |url: &str, id: &str| {
        let cfg = Config::default().with_token(format!("ws-b/{id}"));
        let url = url.to_string();
        async move { Endpoint::connect(&url, cfg).await.map_err(io::Error::other) }
    };
    let mut answerer = connect(answerer_url, &them).await?;
    let mut caller: Connection = connect(caller_url, &me).await?;
    // The answerer: everything back to its sender.
    let echo = tokio::spawn(async move {
        while let Some(m) = answerer.recv().await {
            let to = m.header.get_str("from").unwrap_or_default().to_string();
            let header = RoutingHeader::new().with("to", to);
            if answerer
                .send(Channel::Rpc, header, m.payload)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let header = RoutingHeader::new().with("to", them.clone());
    // Until the directory knows the answerer, calls come back as echoes: wait for a real one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        caller
            .send(Channel::Rpc, header.clone(), Bytes::from_static(b"warm"))
            .await
            .map_err(io::Error::other)?;
        let m = tokio::time::timeout(Duration::from_secs(5), caller.recv())
            .await
            .map_err(|_| io::Error::other(format!("{label}: no answer in 5 s")))?
            .ok_or_else(|| io::Error::other("caller's connection closed"))?;
        if m.header.get_str("from") == Some(&format!("ws-b/{them}")) {
            break;
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "{label}: the answerer never registered"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let payload = Bytes::from(vec![b'x'; 256]);
    let cpu_now = || {
        pids.iter()
            .map(|p| rhizomorph_testkit::process::cpu_seconds_of(*p))
            .sum::<f64>()
    };
    let (cpu0, redis0) = (cpu_now(), RedisCounters::of(redis));
    let started = Instant::now();
    let mut sent_at = std::collections::VecDeque::new();
    let mut lat = Vec::new();
    while started.elapsed() < d || !sent_at.is_empty() {
        while sent_at.len() < in_flight && started.elapsed() < d {
            caller
                .send(Channel::Rpc, header.clone(), payload.clone())
                .await
                .map_err(io::Error::other)?;
            sent_at.push_back(Instant::now());
        }
        let m = tokio::time::timeout(Duration::from_secs(10), caller.recv())
            .await
            .map_err(|_| io::Error::other(format!("{label}: an answer took over 10 s")))?
            .ok_or_else(|| io::Error::other("caller's connection closed"))?;
        drop(m);
        if let Some(t) = sent_at.pop_front() {
            lat.push(t.elapsed());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu, redis_now) = (cpu_now() - cpu0, RedisCounters::of(redis));
    echo.abort();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    let calls = lat.len() as u64;
    Ok(Measurement {
        scenario: "cluster".into(),
        mode: format!("{in_flight} in flight"),
        implementation: label.to_string(),
        messages: calls,
        bytes: calls * 256,
        seconds,
        msgs_per_sec: calls as f64 / seconds,
        mb_per_sec: (calls * 256) as f64 / 1e6 / seconds,
        p50_ms: q(0.50),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        notes: [("server CPU µs/call".into(), cpu * 1e6 / calls.max(1) as f64)]
            .into_iter()
            .chain(
                redis
                    .map(|_| redis_now.notes_since(redis0, calls))
                    .into_iter()
                    .flatten(),
            )
            .collect(),
    })
}
