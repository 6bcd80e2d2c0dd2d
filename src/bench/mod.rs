//! `rhizomorph bench`: end-to-end scenarios on loopback, rhizomorph next to its baselines in
//! the same run, printed as a table with ratios and optionally written as JSON.
//!
//! Owns the orchestration (servers, shaping proxies, progress bars, the report). Workloads are
//! in [`scenarios`]; the legacy baseline in [`baseline`]; the link model in [`shaper`].

pub mod baseline;
pub mod echo_server;
pub mod measure;
pub mod scenarios;
pub mod shaper;

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::endpoint::Listener;
pub use measure::Measurement;
use shaper::{LinkShape, Shaper};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Scenarios: `small`, `medium`, `large`, `mixed`, `hol`, `stall`, or `all`.
    pub scenarios: Vec<String>,
    /// Multiplies the message counts of the echo scenarios (1.0 = the report's counts).
    pub scale: f64,
    /// Messages in flight for the pipelined runs.
    pub in_flight: usize,
    /// How long the head-of-line scenario measures, per implementation.
    pub hol_duration: Duration,
    /// The shaped link for the head-of-line scenario.
    pub hol_link: LinkShape,
    /// How long the reader stalls in the `stall` scenario.
    pub stall: Duration,
    /// Bytes the `stall` scenario pushes.
    pub stall_bytes: u64,
    /// Show progress bars.
    pub progress: bool,
    /// Connection config for rhizomorph.
    pub config: Config,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            scenarios: vec!["all".into()],
            scale: 1.0,
            in_flight: 64,
            hol_duration: Duration::from_secs(4),
            hol_link: LinkShape::mbit(100.0, 64),
            stall: Duration::from_secs(2),
            stall_bytes: 256 << 20,
            progress: true,
            config: Config::default(),
        }
    }
}

impl BenchOptions {
    fn wants(&self, name: &str) -> bool {
        self.scenarios
            .iter()
            .any(|s| s == name || (s == "all" && name != "stall-long"))
    }
}

fn bar(options: &BenchOptions, len: u64, label: String) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>34} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label);
    pb
}

/// Runs the selected scenarios; returns every measurement.
/// The servers of a benchmark run, on their own thread and single-threaded runtime (as a
/// separate server process would be), so the client side and the server side each have a
/// core and only talk through sockets.
pub struct ServerSide {
    /// The rhizomorph echo server's address.
    pub rhizomorph: std::net::SocketAddr,
    /// The baseline echo server's address.
    pub baseline: std::net::SocketAddr,
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ServerSide {
    /// Starts both echo servers on a new thread.
    pub fn start(config: Config) -> io::Result<ServerSide> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return drop(tx.send(Err(e))),
                };
                rt.block_on(async move {
                    let started = async {
                        let listener = Listener::bind("127.0.0.1:0", config)
                            .await
                            .map_err(io::Error::other)?;
                        let rhizomorph = listener.local_addr()?;
                        tokio::spawn(echo_server::serve(listener));
                        let baseline = baseline::start_server().await?;
                        Ok::<_, io::Error>((
                            rhizomorph,
                            baseline,
                            tokio::runtime::Handle::current(),
                        ))
                    };
                    let _ = tx.send(started.await);
                    let _ = stop_rx.await;
                });
            })?;
        let (rhizomorph, baseline, handle) = rx.recv().map_err(io::Error::other)??;
        Ok(ServerSide {
            rhizomorph,
            baseline,
            handle,
            _stop: stop_tx,
        })
    }

    /// Starts a shaping proxy in front of `upstream`, on the server thread.
    pub async fn shaper(
        &self,
        upstream: std::net::SocketAddr,
        link: LinkShape,
    ) -> io::Result<Shaper> {
        self.handle
            .spawn(Shaper::start(upstream, link))
            .await
            .map_err(io::Error::other)?
    }
}

/// Runs the selected scenarios; returns every measurement. Servers run on their own thread
/// ([`ServerSide`]); the clients run on the caller's runtime.
pub async fn run(options: &BenchOptions) -> io::Result<Vec<Measurement>> {
    let servers = ServerSide::start(options.config.clone())?;
    let rhizo_addr = servers.rhizomorph;
    let url = format!("ws://{rhizo_addr}/");
    let base_addr = servers.baseline;
    let mut results = Vec::new();

    for scenario in scenarios::report_scenarios(options.scale) {
        if !options.wants(scenario.name) {
            continue;
        }
        for in_flight in [1, options.in_flight] {
            let len = scenario.sizes.len() as u64;
            let mode = if in_flight == 1 {
                "seq".to_string()
            } else {
                format!("x{in_flight}")
            };
            let pb = bar(options, len, format!("{} {mode} rhizomorph", scenario.name));
            let r = scenarios::echo_rhizomorph(&url, &options.config, &scenario, in_flight, &pb)
                .await?;
            pb.finish_and_clear();
            let pb = bar(options, len, format!("{} {mode} msgpack-ws", scenario.name));
            let b = scenarios::echo_baseline(base_addr, &scenario, in_flight, &pb).await?;
            pb.finish_and_clear();
            results.push(r);
            results.push(b);
        }
    }

    if options.wants("hol") {
        let shaped_rhizo = servers.shaper(rhizo_addr, options.hol_link).await?;
        let shaped_base = servers.shaper(base_addr, options.hol_link).await?;
        let pb = bar(options, 0, "hol rhizomorph (rpc round trips)".into());
        let url = format!("ws://{}/", shaped_rhizo.addr());
        results.push(
            scenarios::hol_rhizomorph(&url, &options.config, options.hol_duration, &pb).await?,
        );
        pb.finish_and_clear();
        let pb = bar(options, 0, "hol msgpack-ws (rpc round trips)".into());
        results.push(scenarios::hol_baseline(shaped_base.addr(), options.hol_duration, &pb).await?);
        pb.finish_and_clear();
    }

    if options.wants("stall") {
        let pb = bar(
            options,
            options.stall.as_millis() as u64,
            "stall rhizomorph (ms stalled)".into(),
        );
        results.push(
            scenarios::stall_rhizomorph(
                &url,
                &options.config,
                options.stall,
                options.stall_bytes,
                &pb,
            )
            .await?,
        );
        pb.finish_and_clear();
    }
    Ok(results)
}

/// Formats results as a table, with rhizomorph/baseline ratios per scenario.
pub fn render_table(results: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<16} {:<11} {:>9} {:>12} {:>10} {:>9} {:>9} {:>9}  vs msgpack-ws",
        "scenario", "mode", "impl", "messages", "msgs/s", "MB/s", "p50 ms", "p95 ms", "p99 ms",
    );
    for m in results {
        let ratio = results
            .iter()
            .find(|b| {
                b.implementation == "msgpack-ws" && b.scenario == m.scenario && b.mode == m.mode
            })
            .filter(|_| m.implementation == "rhizomorph")
            .map(|b| {
                if m.scenario == "hol" {
                    format!("p99 {:.1}x lower", b.p99_ms / m.p99_ms.max(1e-9))
                } else {
                    format!("{:.2}x msgs/s", m.msgs_per_sec / b.msgs_per_sec.max(1e-9))
                }
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<8} {:<16} {:<11} {:>9} {:>12.0} {:>10.1} {:>9.3} {:>9.3} {:>9.3}  {}",
            m.scenario,
            m.mode,
            m.implementation,
            m.messages,
            m.msgs_per_sec,
            m.mb_per_sec,
            m.p50_ms,
            m.p95_ms,
            m.p99_ms,
            ratio
        );
        for (k, v) in &m.notes {
            let _ = writeln!(out, "{:<8} {:<16} {:<11}   {k}: {v:.1}", "", "", "");
        }
    }
    out
}
