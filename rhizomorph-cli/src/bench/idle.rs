//! Idle connections: the memory a server spends per open connection that carries nothing.
//!
//! Owns the workload: a `rhizomorph serve` child process (its own file-descriptor budget and
//! its own RSS), N client connections opened from this process, and the RSS of both before and
//! after. The figure is (RSS after − RSS before) / N, for the server and for the client side.

use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::measure::{rss_bytes, Measurement};
use rhizomorph::config::Config;
use rhizomorph::endpoint::Endpoint;

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A `rhizomorph serve` child: its process, URL, and (QUIC) the client config pinning its
/// self-signed certificate.
struct ServeChild {
    child: Child,
    url: String,
    config: Config,
}

async fn start_serve(quic: bool, config: &Config) -> io::Result<ServeChild> {
    let exe: PathBuf = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--addr", "127.0.0.1:0"]);
    if quic {
        cmd.args(["--transport", "quic", "--self-signed"]);
    }
    let mut child = cmd
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut fingerprint = None;
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .map_err(|_| io::Error::other("serve did not start"))??
            .ok_or_else(|| io::Error::other("serve exited"))?;
        let t = line.trim();
        if t.len() == 95 && t.chars().filter(|&c| c == ':').count() == 31 {
            fingerprint = Some(t.to_string());
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    let config = match fingerprint {
        Some(fp) => config.clone().with_client_tls(
            rhizomorph::transport::tls::client_tls_pinned(&fp).map_err(io::Error::other)?,
        ),
        None => config.clone(),
    };
    // Drain its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(ServeChild { child, url, config })
}

/// Opens `n` idle connections to a fresh `rhizomorph serve` (`quic`: over QUIC) and reports
/// the RSS each costs the server (the figure) and this client process (a note).
pub async fn run_idle(
    implementation: &str,
    quic: bool,
    n: usize,
    config: &Config,
) -> io::Result<Measurement> {
    let serve = start_serve(quic, config).await?;
    let pid = serve
        .child
        .id()
        .ok_or_else(|| io::Error::other("serve has no pid"))?;
    // QUIC clients share one UDP socket (`QuicClient`), as a client opening thousands of
    // connections would; WebSocket connections are one TCP socket each anyway.
    let quic_client = if quic {
        Some(rhizomorph::QuicClient::bind(serve.config.clone(), false).map_err(io::Error::other)?)
    } else {
        None
    };
    let connect = |url: String, cfg: Config| {
        let quic_client = quic_client.clone();
        async move {
            match quic_client {
                Some(c) => c.connect(&url).await,
                None => Endpoint::connect(&url, cfg).await,
            }
        }
    };
    // One connection first, so that lazily allocated per-process state is not counted.
    let warm = connect(serve.url.clone(), serve.config.clone())
        .await
        .map_err(io::Error::other)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server_before = rss_of(pid).unwrap_or(0);
    let client_before = rss_bytes().unwrap_or(0);
    let start = std::time::Instant::now();
    let url = serve.url.clone();
    let cfg = serve.config.clone();
    let conns: Vec<_> = stream::iter(0..n)
        .map(|_| connect(url.clone(), cfg.clone()))
        .buffer_unordered(64)
        .collect()
        .await;
    let opened = start.elapsed();
    let mut conns = conns
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(io::Error::other)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_after = rss_of(pid).unwrap_or(0);
    let client_after = rss_bytes().unwrap_or(0);
    // They are alive: a round trip on a few of them.
    for conn in conns.iter_mut().step_by((n / 8).max(1)) {
        conn.send(
            rhizomorph::frame::Channel::Rpc,
            rhizomorph::header::RoutingHeader::new().with("to", "echo"),
            "ping",
        )
        .await
        .map_err(io::Error::other)?;
        tokio::time::timeout(Duration::from_secs(10), conn.recv())
            .await
            .map_err(|_| io::Error::other("an idle connection did not answer"))?
            .ok_or_else(|| io::Error::other("an idle connection ended"))?;
    }
    let per_conn = |after: u64, before: u64| after.saturating_sub(before) as f64 / n as f64;
    let mut m = Measurement {
        scenario: "idle".into(),
        mode: format!("{n} conns"),
        implementation: implementation.into(),
        messages: n as u64,
        bytes: 0,
        seconds: opened.as_secs_f64(),
        msgs_per_sec: n as f64 / opened.as_secs_f64().max(1e-9),
        mb_per_sec: 0.0,
        p50_ms: 0.0,
        p95_ms: 0.0,
        p99_ms: 0.0,
        notes: Vec::new(),
    };
    m.notes.push((
        "server KiB per connection".into(),
        per_conn(server_after, server_before) / 1024.0,
    ));
    m.notes.push((
        "client KiB per connection".into(),
        per_conn(client_after, client_before) / 1024.0,
    ));
    drop(conns);
    drop(warm);
    Ok(m)
}
