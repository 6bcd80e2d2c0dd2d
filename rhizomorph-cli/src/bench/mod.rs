//! `rhizomorph bench`: end-to-end scenarios on loopback, rhizomorph next to its baselines in
//! the same run, printed as a table with ratios and optionally written as JSON.
//!
//! Owns the orchestration (servers, shaping proxies, progress bars, the report). Workloads are
//! in [`scenarios`]; the msgpack-ws baseline peer and the link model are the test kit's
//! (`rhizomorph_testkit::msgpack_ws`, `rhizomorph_testkit::shaper`).

pub mod bare_quinn;
pub mod cluster;
pub mod cpu;
pub mod fanout;
pub mod h2_grpc;
pub mod hypha_apps;
pub mod idle;
pub mod legacy;
pub mod measure;
pub mod oneway;
pub mod raw_tcp;
pub mod resume;
pub mod rpc;
pub mod scaling;
pub mod scenarios;
pub mod tarpc_bench;
pub mod tonic_grpc;
pub mod transfer;

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub use measure::Measurement;
use rhizomorph::config::Config;
use rhizomorph::endpoint::Listener;
use rhizomorph_testkit::shaper::{LinkShape, Shaper};
use rhizomorph_testkit::{echo_server, msgpack_ws, udp_shaper};

/// A transport to benchmark, with its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchTransport {
    /// Rhizomorph over WebSocket, against plain msgpack over WebSocket.
    Ws,
    /// Rhizomorph over QUIC, against bare quinn (one stream, same TLS).
    Quic,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Scenarios: `small`, `medium`, `large`, `mixed`, `hol`, `stall`, or `all`.
    pub scenarios: Vec<String>,
    /// Multiplies the message counts of the echo scenarios (1.0 = the report's counts).
    pub scale: f64,
    /// Messages in flight for the pipelined runs.
    pub in_flight: usize,
    /// Rounds of the echo scenarios: each round runs every implementation once, in turn; the
    /// median round (by throughput) is reported, with the spread of the per-round ratios.
    pub rounds: usize,
    /// How long the head-of-line scenario measures, per implementation.
    pub hol_duration: Duration,
    /// The shaped link for the head-of-line scenario.
    pub hol_link: LinkShape,
    /// How long the reader stalls in the `stall` scenario.
    pub stall: Duration,
    /// Bytes the `stall` scenario pushes.
    pub stall_bytes: u64,
    /// Datagram loss on the QUIC head-of-line link (0.0 – 1.0).
    pub hol_loss: f64,
    /// Transports to measure.
    pub transports: Vec<BenchTransport>,
    /// Show progress bars.
    pub progress: bool,
    /// Connection config for rhizomorph.
    pub config: Config,
    /// Also run the echo scenarios in legacy mode through a real hypha server (needs the venv
    /// with hypha and hypha-rpc).
    pub legacy: bool,
    /// How long each request/response run lasts.
    pub rpc_duration: Duration,
    /// Client connection counts of the request/response runs.
    pub rpc_clients: Vec<usize>,
    /// Server runtime worker threads (1: one current-thread runtime).
    pub server_threads: usize,
    /// With `server_threads` > 1: one current-thread runtime per thread, each with its own
    /// `SO_REUSEPORT` listener for the rhizomorph WebSocket server, instead of one
    /// multi-thread runtime.
    pub reuse_port: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            scenarios: vec!["all".into()],
            scale: 1.0,
            in_flight: 64,
            rounds: 1,
            hol_duration: Duration::from_secs(4),
            hol_link: LinkShape::mbit(100.0, 64),
            stall: Duration::from_secs(2),
            stall_bytes: 256 << 20,
            hol_loss: 0.01,
            transports: vec![BenchTransport::Ws, BenchTransport::Quic],
            progress: true,
            config: Config::default(),
            legacy: false,
            rpc_duration: Duration::from_secs(3),
            rpc_clients: vec![50, 100, 200],
            server_threads: 1,
            reuse_port: false,
        }
    }
}

impl BenchOptions {
    fn wants(&self, name: &str) -> bool {
        self.scenarios.iter().any(|s| {
            s == name
                || (s == "all"
                    && !matches!(
                        name,
                        "stall-long" | "hypha" | "resume" | "cluster" | "scaling"
                    ))
        })
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

/// The servers of a benchmark run, on their own thread and single-threaded runtime (as a
/// separate server process would be), so the client side and the server side each have a
/// core and only talk through sockets.
pub struct ServerSide {
    /// The rhizomorph WebSocket echo server's address.
    pub rhizomorph: std::net::SocketAddr,
    /// The rhizomorph QUIC echo server's address.
    pub rhizomorph_quic: std::net::SocketAddr,
    /// The msgpack-over-WebSocket baseline echo server's address.
    pub baseline: std::net::SocketAddr,
    /// The bare-quinn baseline echo server's address.
    pub bare_quinn: std::net::SocketAddr,
    /// The raw TCP (length-prefixed) echo server's address.
    pub raw_tcp: std::net::SocketAddr,
    /// The h2 (gRPC-style) echo server's address.
    pub h2: std::net::SocketAddr,
    /// The rhizomorph router (`rhizomorph serve`) over WebSocket.
    pub router: std::net::SocketAddr,
    /// The rhizomorph router over QUIC.
    pub router_quic: std::net::SocketAddr,
    /// Client config that trusts the servers' self-signed certificate (pinned).
    pub quic_client: Config,
    /// Server config with that certificate, for QUIC servers started later.
    quic_server: Config,
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ServerSide {
    /// Starts the echo servers on a new thread: rhizomorph over WebSocket and over QUIC (with a
    /// fresh self-signed certificate), the routers, and the baselines. `threads` is the
    /// server runtime's worker threads (1: a current-thread runtime).
    pub fn start(config: Config, threads: usize) -> io::Result<ServerSide> {
        Self::start_with(config, threads, false)
    }

    /// [`start`](Self::start), or with `reuse_port`: `threads` current-thread runtimes, each
    /// running the rhizomorph WebSocket echo server on its own `SO_REUSEPORT` listener of one
    /// port (the other servers stay on the first).
    pub fn start_with(config: Config, threads: usize, reuse_port: bool) -> io::Result<ServerSide> {
        let shards = if reuse_port { threads.max(1) } else { 1 };
        let threads = if reuse_port { 1 } else { threads };
        let config = config.with_reuse_port(reuse_port);
        let shard_config = config.clone();
        let (cert, key, fingerprint) =
            rhizomorph::transport::tls::self_signed(&["localhost"]).map_err(io::Error::other)?;
        let server_tls =
            rhizomorph::transport::tls::server_tls(vec![cert], key).map_err(io::Error::other)?;
        let client_tls = rhizomorph::transport::tls::client_tls_pinned(&fingerprint)
            .map_err(io::Error::other)?;
        let quic_server = config.clone().with_server_tls(server_tls);
        let quic_server_kept = quic_server.clone();
        let quic_client = config.clone().with_client_tls(client_tls);
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                let built = if threads <= 1 {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                } else {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(threads)
                        .enable_all()
                        .build()
                };
                let rt = match built {
                    Ok(rt) => rt,
                    Err(e) => return drop(tx.send(Err(e))),
                };
                rt.block_on(async move {
                    let started = async {
                        let listener = Listener::bind("127.0.0.1:0", config.clone())
                            .await
                            .map_err(io::Error::other)?;
                        let rhizomorph = listener.local_addr()?;
                        tokio::spawn(echo_server::serve(listener));
                        let quic = Listener::bind_quic("127.0.0.1:0", quic_server.clone())
                            .map_err(io::Error::other)?;
                        let rhizomorph_quic = quic.local_addr()?;
                        tokio::spawn(echo_server::serve(quic));
                        let baseline = msgpack_ws::start_server().await?;
                        let (bare, bare_endpoint) = bare_quinn::start_server(&quic_server)?;
                        let raw = raw_tcp::start_server().await?;
                        let h2 = h2_grpc::start_server().await?;
                        let router = Listener::bind("127.0.0.1:0", config.clone())
                            .await
                            .map_err(io::Error::other)?;
                        let router_addr = router.local_addr()?;
                        tokio::spawn(rhizomorph::router::Router::new().serve(router));
                        let router_q = Listener::bind_quic("127.0.0.1:0", quic_server.clone())
                            .map_err(io::Error::other)?;
                        let router_quic = router_q.local_addr()?;
                        tokio::spawn(rhizomorph::router::Router::new().serve(router_q));
                        Ok::<_, io::Error>((
                            (
                                rhizomorph,
                                rhizomorph_quic,
                                baseline,
                                bare,
                                raw,
                                h2,
                                router_addr,
                                router_quic,
                            ),
                            bare_endpoint,
                            tokio::runtime::Handle::current(),
                        ))
                    };
                    match started.await {
                        Ok((addrs, bare_endpoint, handle)) => {
                            let _ = tx.send(Ok((addrs, handle)));
                            let _ = stop_rx.await;
                            drop(bare_endpoint);
                        }
                        Err(e) => drop(tx.send(Err(e))),
                    }
                });
            })?;
        let (
            (rhizomorph, rhizomorph_quic, baseline, bare_quinn, raw_tcp, h2, router, router_quic),
            handle,
        ) = rx.recv().map_err(io::Error::other)??;
        for shard in 1..shards {
            let config = shard_config.clone();
            std::thread::Builder::new()
                .name(format!("bench-server-{shard}"))
                .spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        if let Ok(l) = Listener::bind(&rhizomorph.to_string(), config).await {
                            echo_server::serve(l).await;
                        }
                    });
                })?;
        }
        Ok(ServerSide {
            rhizomorph,
            rhizomorph_quic,
            baseline,
            bare_quinn,
            raw_tcp,
            h2,
            router,
            router_quic,
            quic_client,
            quic_server: quic_server_kept,
            handle,
            _stop: stop_tx,
        })
    }

    /// Starts a shaping TCP proxy in front of `upstream`, on the server thread.
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

    /// Starts a shaping, lossy UDP relay in front of `upstream`, on the server thread.
    pub async fn udp_shaper(
        &self,
        upstream: std::net::SocketAddr,
        link: LinkShape,
        loss: f64,
    ) -> io::Result<udp_shaper::UdpShaper> {
        self.handle
            .spawn(udp_shaper::UdpShaper::start(upstream, link, loss))
            .await
            .map_err(io::Error::other)?
    }
}

/// Runs the selected scenarios; returns every measurement. Servers run on their own thread
/// ([`ServerSide`]); the clients run on the caller's runtime.
pub async fn run(options: &BenchOptions) -> io::Result<Vec<Measurement>> {
    let servers = ServerSide::start_with(
        options.config.clone(),
        options.server_threads,
        options.reuse_port,
    )?;
    let ws_url = format!("ws://{}/", servers.rhizomorph);
    let quic_url = format!("quic://{}/", servers.rhizomorph_quic);
    let quic_config = &servers.quic_client;
    let ws = options.transports.contains(&BenchTransport::Ws);
    let quic = options.transports.contains(&BenchTransport::Quic);
    let mut results = Vec::new();

    let mut echo_rounds = Vec::new();
    for _ in 0..options.rounds.max(1) {
        echo_rounds.push(run_echo_round(options, &servers, &ws_url, &quic_url, quic_config).await?);
    }
    results.extend(median_of_rounds(echo_rounds));

    if options.legacy {
        run_legacy(options, &servers, &mut results).await?;
    }

    if options.wants("resume") {
        results.extend(resume::run(options).await?);
    }

    if options.wants("transfer") {
        let total = ((1024.0 * options.scale) as u64).max(16) << 20;
        let pb = bar(options, 0, "transfer (1 GiB one way)".into());
        let mode = format!("{} MiB one way", total >> 20);
        let mut runs = Vec::new();
        if ws {
            runs.push((
                "rhizo-ws",
                "rhizo-ws-xfer",
                ws_url.as_str(),
                &options.config,
            ));
        }
        if quic {
            runs.push((
                "rhizo-quic",
                "rhizo-quic-xfer",
                quic_url.as_str(),
                quic_config,
            ));
        }
        for (whole, streamed, url, config) in runs {
            let mut m = transfer::messages(whole, url, config, total).await?;
            m.mode = mode.clone();
            results.push(m);
            let mut m = transfer::streamed(streamed, url, config, total).await?;
            m.mode = mode.clone();
            results.push(m);
        }
        pb.finish_and_clear();
    }

    if options.wants("oneway") {
        let n = ((200_000.0 * options.scale) as usize).max(1000);
        let pb = bar(options, 0, "oneway (256 B, one connection)".into());
        if ws {
            let rhizo = oneway::rhizomorph("rhizo-ws", &ws_url, &options.config, n);
            results.push(cpu::measured(rhizo).await?);
            results.push(cpu::measured(oneway::msgpack_ws(servers.baseline, n)).await?);
            results.push(cpu::measured(oneway::raw(servers.raw_tcp, n)).await?);
        }
        if quic {
            let rhizo = oneway::rhizomorph("rhizo-quic", &quic_url, quic_config, n);
            results.push(cpu::measured(rhizo).await?);
        }
        pb.finish_and_clear();
    }

    if options.wants("rpc") {
        // The baselines gRPC and tarpc users run (WebSocket rows only), on the server thread
        // as the others are.
        let (tonic_addr, tarpc) = if ws {
            let tonic = tonic_grpc::start(&servers).await?;
            (
                Some(tonic),
                Some(tarpc_bench::start(&servers, &options.config).await?),
            )
        } else {
            (None, None)
        };
        for &clients in &options.rpc_clients {
            let d = options.rpc_duration;
            let pb = bar(options, 0, format!("rpc {clients} clients"));
            if ws {
                let (url, cfg) = (&ws_url, &options.config);
                results.push(
                    rpc::run_rpc("rhizo-ws", clients, d, |_| rhizo_rpc_client(url, cfg)).await?,
                );
                results.push(
                    rpc::run_rpc("rhizo-ws-matched", clients, d, |_| {
                        rhizo_matched_client(url, cfg)
                    })
                    .await?,
                );
                results.push(
                    rpc::run_rpc("rhizo-ws-call", clients, d, |_| rhizo_call_client(url, cfg))
                        .await?,
                );
                results.push(
                    rpc::run_rpc("msgpack-ws", clients, d, |_| async {
                        let (sink, stream) = msgpack_ws::connect(servers.baseline).await?;
                        Ok(rpc::EchoPair(scenarios::BaselineTx::new(sink), stream))
                    })
                    .await?,
                );
                results.push(
                    rpc::run_rpc("raw-tcp", clients, d, |_| async {
                        let (tx, rx) =
                            raw_tcp::connect(servers.raw_tcp, raw_tcp::Kind::Echo).await?;
                        Ok(rpc::EchoPair(tx, rx))
                    })
                    .await?,
                );
                results.push(
                    rpc::run_rpc("h2-grpc", clients, d, |_| h2_grpc::connect(servers.h2)).await?,
                );
                if let (Some(tonic), Some(tarpc)) = (tonic_addr, tarpc) {
                    results.push(
                        rpc::run_rpc("tonic", clients, d, |_| tonic_grpc::connect(tonic)).await?,
                    );
                    results.push(
                        rpc::run_rpc("tarpc-tcp", clients, d, |_| async {
                            let via = tarpc_bench::Via::Tcp;
                            Ok(tarpc_bench::TarpcEcho(
                                tarpc_bench::connect(via, tarpc.tcp, quic_config).await?,
                            ))
                        })
                        .await?,
                    );
                }
            }
            if quic {
                let (url, cfg) = (&quic_url, quic_config);
                results.push(
                    rpc::run_rpc("rhizo-quic", clients, d, |_| rhizo_rpc_client(url, cfg)).await?,
                );
                results.push(
                    rpc::run_rpc("rhizo-quic-matched", clients, d, |_| {
                        rhizo_matched_client(url, cfg)
                    })
                    .await?,
                );
                results.push(
                    rpc::run_rpc("rhizo-quic-call", clients, d, |_| {
                        rhizo_call_client(url, cfg)
                    })
                    .await?,
                );
                results.push(
                    rpc::run_rpc("bare-quinn", clients, d, |_| async {
                        let (tx, rx) = bare_quinn::connect(servers.bare_quinn, quic_config).await?;
                        Ok(rpc::EchoPair(tx, rx))
                    })
                    .await?,
                );
            }
            pb.finish_and_clear();
        }
    }

    if options.wants("hypha") {
        // Unmodified hypha-rpc programs through hypha and through `rhizomorph serve` (needs
        // the venv; not part of `all`).
        let pb = bar(options, 0, "hypha-rpc programs".into());
        let rows = hypha_apps::run(|s| pb.set_message(s.to_string())).await?;
        pb.finish_and_clear();
        results.extend(rows);
    }

    if options.wants("cluster") {
        // Two servers on one Redis: hypha x2, rhizomorph serve --redis x2, native clients
        // (needs the venv and redis-server; not part of `all`).
        let pb = bar(options, 0, "cluster".into());
        let rows = cluster::run(|s| pb.set_message(s.to_string())).await?;
        pb.finish_and_clear();
        results.extend(rows);
    }

    if options.wants("scaling") {
        // `serve` pinned to 1..=cores cores, the clients on the rest (needs taskset; not part
        // of `all`).
        let pb = bar(options, 0, "scaling".into());
        let rows = scaling::run(&options.config, options.rpc_duration, &pb).await?;
        pb.finish_and_clear();
        results.extend(rows);
    }

    if options.wants("tarpc") {
        let t = tarpc_bench::start(&servers, &options.config).await?;
        let d = options.rpc_duration;
        let mut vias = vec![(tarpc_bench::Via::Tcp, t.tcp)];
        if ws {
            vias.push((tarpc_bench::Via::Ws, t.ws));
        }
        if quic {
            vias.push((tarpc_bench::Via::Quic, t.quic));
        }
        for &(via, addr) in &vias {
            let pb = bar(options, 0, format!("tarpc calls, {}", via.label()));
            results.extend(tarpc_bench::run_calls(via, addr, quic_config, d).await?);
            pb.finish_and_clear();
        }
        // The head-of-line shape on equal links: the TCP shaper for both TCP transports, the
        // same rate and queue without loss for QUIC.
        for &(via, addr) in &vias {
            let pb = bar(options, 0, format!("tarpc hol, {}", via.label()));
            // Each shaper lives until its row is measured.
            let (_tcp_link, _udp_link, shaped) = match via {
                tarpc_bench::Via::Quic => {
                    let s = servers.udp_shaper(addr, options.hol_link, 0.0).await?;
                    let a = s.addr();
                    (None, Some(s), a)
                }
                _ => {
                    let s = servers.shaper(addr, options.hol_link).await?;
                    let a = s.addr();
                    (Some(s), None, a)
                }
            };
            results
                .push(tarpc_bench::run_hol(via, shaped, quic_config, options.hol_duration).await?);
            pb.finish_and_clear();
        }
    }

    if options.wants("fanout") {
        let messages = ((1000.0 * options.scale) as usize).max(20);
        let pb = bar(options, 0, "fanout 1 to 100".into());
        if ws {
            let url = format!("ws://{}/", servers.router);
            results
                .push(fanout::run_fanout("rhizo-ws", &url, &options.config, 100, messages).await?);
        }
        if quic {
            let url = format!("quic://{}/", servers.router_quic);
            results.push(fanout::run_fanout("rhizo-quic", &url, quic_config, 100, messages).await?);
        }
        pb.finish_and_clear();
    }

    if options.wants("hol") {
        let link = options.hol_link;
        if ws {
            let shaped_rhizo = servers.shaper(servers.rhizomorph, link).await?;
            let shaped_base = servers.shaper(servers.baseline, link).await?;
            let pb = bar(options, 0, "hol rhizo-ws (rpc round trips)".into());
            let url = format!("ws://{}/", shaped_rhizo.addr());
            let d = options.hol_duration;
            results
                .push(scenarios::hol_rhizomorph("rhizo-ws", &url, &options.config, d, &pb).await?);
            pb.finish_and_clear();
            let pb = bar(options, 0, "hol msgpack-ws (rpc round trips)".into());
            results.push(scenarios::hol_baseline(shaped_base.addr(), d, &pb).await?);
            pb.finish_and_clear();
        }
        if quic {
            let shaped = servers
                .udp_shaper(servers.rhizomorph_quic, link, options.hol_loss)
                .await?;
            let pb = bar(options, 0, "hol rhizo-quic (rpc round trips)".into());
            let url = format!("quic://{}/", shaped.addr());
            let d = options.hol_duration;
            let mut m = scenarios::hol_rhizomorph("rhizo-quic", &url, quic_config, d, &pb).await?;
            m.notes
                .push(("link loss %".into(), options.hol_loss * 100.0));
            results.push(m);
            pb.finish_and_clear();
            // The counterfactual: the same round trips on the bulk channel, i.e. one stream.
            let shaped = servers
                .udp_shaper(servers.rhizomorph_quic, link, options.hol_loss)
                .await?;
            let pb = bar(options, 0, "hol quic-1-stream (rpc round trips)".into());
            let url = format!("quic://{}/", shaped.addr());
            let one_stream = scenarios::hol_rhizomorph_on(
                "quic-1-stream",
                &url,
                quic_config,
                d,
                rhizomorph::frame::Channel::Bulk,
                &pb,
            )
            .await?;
            results.push(one_stream);
            pb.finish_and_clear();
        }
    }

    if options.wants("stall") {
        let mut targets = Vec::new();
        if ws {
            targets.push(("rhizo-ws", ws_url.clone(), options.config.clone()));
        }
        if quic {
            targets.push(("rhizo-quic", quic_url.clone(), quic_config.clone()));
        }
        for (label, url, config) in targets {
            let pb = bar(
                options,
                options.stall.as_millis() as u64,
                format!("stall {label} (ms stalled)"),
            );
            results.push(
                scenarios::stall_rhizomorph(
                    label,
                    &url,
                    &config,
                    options.stall,
                    options.stall_bytes,
                    &pb,
                )
                .await?,
            );
            pb.finish_and_clear();
        }
    }
    // Last: tearing down 10,000 connections keeps the machine busy for a moment, which would
    // show in the latencies of whatever ran next.
    if options.wants("idle") {
        for count in [1000usize, 10_000] {
            let n = ((count as f64 * options.scale) as usize).max(10);
            let pb = bar(options, 0, format!("idle {n} connections"));
            if ws {
                results.push(idle::run_idle("rhizo-ws", false, n, &options.config).await?);
            }
            if quic {
                results.push(idle::run_idle("rhizo-quic", true, n, &options.config).await?);
            }
            pb.finish_and_clear();
        }
    }

    add_physical_limit_notes(&mut results);
    Ok(results)
}

/// One round of the echo scenarios: every implementation once, in turn.
async fn run_echo_round(
    options: &BenchOptions,
    servers: &ServerSide,
    ws_url: &str,
    quic_url: &str,
    quic_config: &Config,
) -> io::Result<Vec<Measurement>> {
    let ws = options.transports.contains(&BenchTransport::Ws);
    let quic = options.transports.contains(&BenchTransport::Quic);
    let mut round = Vec::new();
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
            let label = |who: &str| format!("{} {mode} {who}", scenario.name);
            if ws {
                let pb = bar(options, len, label("rhizo-ws"));
                let r = cpu::measured(scenarios::echo_rhizomorph(
                    "rhizo-ws",
                    ws_url,
                    &options.config,
                    &scenario,
                    in_flight,
                    &pb,
                ))
                .await?;
                pb.finish_and_clear();
                let pb = bar(options, len, label("msgpack-ws"));
                let b = scenarios::echo_baseline(servers.baseline, &scenario, in_flight, &pb);
                let b = cpu::measured(b).await?;
                pb.finish_and_clear();
                let pb = bar(options, len, label("raw-tcp"));
                let before = cpu::process_cpu();
                let (tx, mut rx) = raw_tcp::connect(servers.raw_tcp, raw_tcp::Kind::Echo).await?;
                let (lat, elapsed) =
                    scenarios::run_echo(tx, &mut rx, &scenario.sizes, in_flight, &pb).await?;
                let mut t =
                    scenarios::echo_measurement(&scenario, in_flight, "raw-tcp", lat, elapsed);
                cpu::note(&mut t, before);
                pb.finish_and_clear();
                round.push(r);
                round.push(b);
                round.push(t);
            }
            if quic {
                let pb = bar(options, len, label("rhizo-quic"));
                let r = scenarios::echo_rhizomorph(
                    "rhizo-quic",
                    quic_url,
                    quic_config,
                    &scenario,
                    in_flight,
                    &pb,
                )
                .await?;
                pb.finish_and_clear();
                let pb = bar(options, len, label("bare-quinn"));
                let (tx, mut rx) = bare_quinn::connect(servers.bare_quinn, quic_config).await?;
                let (lat, elapsed) =
                    scenarios::run_echo(tx, &mut rx, &scenario.sizes, in_flight, &pb).await?;
                pb.finish_and_clear();
                round.push(r);
                round.push(scenarios::echo_measurement(
                    &scenario,
                    in_flight,
                    "bare-quinn",
                    lat,
                    elapsed,
                ));
            }
        }
    }

    Ok(round)
}

/// What each rhizomorph row is compared with, per round.
fn round_baselines(implementation: &str) -> &'static [&'static str] {
    match implementation {
        "rhizo-ws" => &["msgpack-ws", "raw-tcp"],
        "rhizo-quic" => &["bare-quinn"],
        "rhizo-ws-resume" => &["rhizo-ws"],
        "rhizo-quic-resume" => &["rhizo-quic"],
        "native one node --redis" => &["native one node"],
        _ => &[],
    }
}

/// Keeps, per (scenario, mode, implementation), the round with the median throughput; with
/// more than one round, notes each rhizomorph row's per-round ratios to its baselines (lowest
/// and highest), so a noisy machine shows as a spread rather than as one lucky or unlucky run.
pub(super) fn median_of_rounds(rounds: Vec<Vec<Measurement>>) -> Vec<Measurement> {
    let n = rounds.len();
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    let key = |m: &Measurement| (m.scenario.clone(), m.mode.clone(), m.implementation.clone());
    let order: Vec<_> = first.iter().map(key).collect();
    let rate = |round: &[Measurement], k: &(String, String, String), imp: &str| {
        round
            .iter()
            .find(|m| m.scenario == k.0 && m.mode == k.1 && m.implementation == imp)
            .map(|m| m.msgs_per_sec)
    };
    let mut out = Vec::new();
    for k in order {
        let mut runs: Vec<&Measurement> = rounds
            .iter()
            .filter_map(|r| r.iter().find(|m| key(m) == k))
            .collect();
        runs.sort_by(|a, b| a.msgs_per_sec.total_cmp(&b.msgs_per_sec));
        let Some(median) = runs.get(runs.len() / 2) else {
            continue;
        };
        let mut m = (*median).clone();
        if n > 1 && !round_baselines(&k.2).is_empty() {
            m.notes.push(("rounds".into(), n as f64));
            for base in round_baselines(&k.2) {
                let ratios: Vec<f64> = rounds
                    .iter()
                    .filter_map(|r| Some(rate(r, &k, &k.2)? / rate(r, &k, base)?.max(1e-9)))
                    .collect();
                if ratios.is_empty() {
                    continue;
                }
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(0.0, f64::max);
                m.notes.push((format!("x {base} per round, lowest"), lo));
                m.notes.push((format!("x {base} per round, highest"), hi));
            }
        }
        out.push(m);
    }
    out
}

/// Adds to each rhizomorph row its ratio to the physical limit of its transport in the same
/// run (raw TCP for WebSocket, bare quinn for QUIC), where that row exists, and to each
/// `*-call` row its ratio to the same transport's `*-matched` row.
fn add_physical_limit_notes(results: &mut [Measurement]) {
    let cpu_of = |m: &Measurement| {
        m.notes
            .iter()
            .find(|(k, _)| k == cpu::CPU_NOTE)
            .map(|(_, v)| *v)
    };
    let limits: Vec<(String, String, String, f64, Option<f64>)> = results
        .iter()
        .filter(|m| m.implementation == "raw-tcp" || m.implementation == "bare-quinn")
        .map(|m| {
            (
                m.implementation.clone(),
                m.scenario.clone(),
                m.mode.clone(),
                m.msgs_per_sec,
                cpu_of(m),
            )
        })
        .collect();
    let matched: Vec<(String, String, f64)> = results
        .iter()
        .filter(|m| m.implementation.ends_with("-matched"))
        .map(|m| (m.implementation.clone(), m.scenario.clone(), m.msgs_per_sec))
        .collect();
    let rates: Vec<(String, String, f64)> = results
        .iter()
        .map(|m| (m.implementation.clone(), m.scenario.clone(), m.msgs_per_sec))
        .collect();
    for m in results.iter_mut() {
        // The rpc rows against tarpc's own TCP transport too (the table's column is tonic).
        if matches!(m.implementation.as_str(), "rhizo-ws" | "rhizo-quic")
            && m.scenario.starts_with("rpc")
        {
            if let Some((_, _, rate)) = rates
                .iter()
                .find(|(i, s, _)| i == "tarpc-tcp" && *s == m.scenario)
            {
                m.notes
                    .push(("x tarpc-tcp".into(), m.msgs_per_sec / rate.max(1e-9)));
            }
        }
        // `call()` against matching by hand over the same transport.
        if let Some(t) = m.implementation.strip_suffix("-call") {
            let by_hand = format!("{t}-matched");
            if let Some((_, _, rate)) = matched
                .iter()
                .find(|(i, s, _)| *i == by_hand && *s == m.scenario)
            {
                m.notes
                    .push((format!("x {by_hand}"), m.msgs_per_sec / rate.max(1e-9)));
            }
        }
        let limit = match m.implementation.as_str() {
            "rhizo-ws" => "raw-tcp",
            "rhizo-quic" if m.scenario.starts_with("rpc") => "bare-quinn",
            _ => continue,
        };
        if let Some((_, _, _, rate, limit_cpu)) = limits
            .iter()
            .find(|(i, s, md, _, _)| i == limit && *s == m.scenario && *md == m.mode)
        {
            m.notes.push((
                format!("x {limit} (physical limit)"),
                m.msgs_per_sec / rate.max(1e-9),
            ));
            if let (Some(own), Some(theirs)) = (cpu_of(m), *limit_cpu) {
                m.notes
                    .push((format!("CPU per message x {limit}"), own / theirs.max(1e-9)));
            }
        }
    }
}

/// The echo scenarios in legacy mode through a real hypha server: a rhizomorph legacy caller
/// calls `services.echo-svc.echo` on a rhizomorph legacy provider (`rhizo-legacy`) and on the
/// real hypha-rpc Python provider (`hypha-rpc-py`; not for 2 MB messages, which hypha-rpc
/// splits through RPC calls and Python clients cannot receive whole).
async fn run_legacy(
    options: &BenchOptions,
    servers: &ServerSide,
    results: &mut Vec<Measurement>,
) -> io::Result<()> {
    let python = rhizomorph_testkit::python::venv_python()?;
    let hypha = rhizomorph_testkit::python::HyphaServer::start(&python).await?;
    let url = hypha.url.clone();
    let config = options.config.clone();
    // The providers answer on the server thread, as the echo servers do.
    let rust_provider = servers
        .handle
        .spawn(async move { legacy::start_rust_provider(&url, &config).await })
        .await
        .map_err(io::Error::other)??;
    let (_python_provider, python_id) =
        rhizomorph_testkit::python::start_python_provider(&python, &hypha.url).await?;
    for scenario in scenarios::report_scenarios(options.scale) {
        if !options.wants(scenario.name) {
            continue;
        }
        for in_flight in [1, options.in_flight] {
            let mode = if in_flight == 1 {
                "seq".to_string()
            } else {
                format!("x{in_flight}")
            };
            let mut targets = vec![("rhizo-legacy", rust_provider.clone())];
            if scenario.name != "large" {
                targets.push(("hypha-rpc-py", python_id.clone()));
            }
            for (label, to) in targets {
                let pb = bar(
                    options,
                    scenario.sizes.len() as u64,
                    format!("{} {mode} {label}", scenario.name),
                );
                let mut caller = legacy::connect_caller(&hypha.url, &options.config).await?;
                let tx = legacy::LegacyCallTx {
                    sender: caller.sender(),
                    to,
                    calls: 0,
                };
                let (lat, elapsed) = scenarios::run_echo(
                    tx,
                    &mut legacy::LegacyCallRx(&mut caller),
                    &scenario.sizes,
                    in_flight,
                    &pb,
                )
                .await?;
                pb.finish_and_clear();
                caller.close().await;
                let mut m = scenarios::echo_measurement(&scenario, in_flight, label, lat, elapsed);
                if label == "rhizo-legacy" {
                    if let Some(native) = results.iter().find(|r| {
                        r.implementation == "rhizo-ws"
                            && r.scenario == m.scenario
                            && r.mode == m.mode
                    }) {
                        m.notes.push((
                            "native rhizo-ws is this many times faster".into(),
                            native.msgs_per_sec / m.msgs_per_sec.max(1e-9),
                        ));
                    }
                }
                results.push(m);
            }
        }
    }
    Ok(())
}

/// A rhizomorph request/response client on `rpc` (for [`rpc::run_rpc`]).
pub async fn rhizo_rpc_client(
    url: &str,
    config: &Config,
) -> io::Result<rpc::EchoPair<scenarios::RhizoTx, rhizomorph::connection::Connection>> {
    let conn = rhizomorph::endpoint::Endpoint::connect(url, config.clone())
        .await
        .map_err(io::Error::other)?;
    Ok(rpc::EchoPair(scenarios::RhizoTx::new(conn.sender()), conn))
}

/// A client making real calls (`Sender::call`, replies matched by session).
pub async fn rhizo_call_client(url: &str, config: &Config) -> io::Result<rpc::RhizoCall> {
    let conn = rhizomorph::endpoint::Endpoint::connect(url, config.clone())
        .await
        .map_err(io::Error::other)?;
    Ok(rpc::RhizoCall::new(conn))
}

/// A client matching replies by hand (`session` set and checked; replies handed to its
/// receiver).
pub async fn rhizo_matched_client(url: &str, config: &Config) -> io::Result<rpc::RhizoMatched> {
    let conn = rhizomorph::endpoint::Endpoint::connect(url, config.clone().with_exchanges(false))
        .await
        .map_err(io::Error::other)?;
    Ok(rpc::RhizoMatched::new(conn))
}

/// The baseline a rhizomorph row is compared with.
fn baseline_of(implementation: &str, scenario: &str) -> Option<&'static str> {
    match (implementation, scenario) {
        ("rhizo-legacy", _) => Some("hypha-rpc-py"),
        // tarpc on rhizomorph against tarpc on its own TCP transport, same service.
        ("tarpc-rhizo-ws" | "tarpc-rhizo-quic", _) => Some("tarpc-tcp"),
        // Calls through `Sender::call` against the hand-matched loop over the same transport.
        ("rhizo-ws-call" | "rhizo-ws-matched", _) => Some("rhizo-ws"),
        // A streamed transfer against the same bytes as 2 MiB messages.
        ("rhizo-ws-xfer", _) => Some("rhizo-ws"),
        // Resumable sessions against the same rows without them (wire.md §21).
        ("rhizo-ws-resume", _) => Some("rhizo-ws"),
        ("rhizo-quic-resume", _) => Some("rhizo-quic"),
        ("rhizo-quic-xfer", _) => Some("rhizo-quic"),
        ("rhizo-quic-call" | "rhizo-quic-matched", _) => Some("rhizo-quic"),
        // What gRPC users run (real tonic); tarpc-tcp is a note on the same rows.
        ("rhizo-ws" | "rhizo-quic", s) if s.starts_with("rpc") => Some("tonic"),
        ("rhizo-quic", "oneway") => Some("raw-tcp"),
        ("rhizo-ws", _) => Some("msgpack-ws"),
        ("rhizo-quic", "hol") => Some("quic-1-stream"),
        ("rhizo-quic", _) => Some("bare-quinn"),
        _ => None,
    }
}

/// Formats results as a table, with rhizomorph/baseline ratios per scenario.
pub fn render_table(results: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<16} {:<11} {:>9} {:>12} {:>10} {:>9} {:>9} {:>9}  ratio (vs baseline)",
        "scenario", "mode", "impl", "messages", "msgs/s", "MB/s", "p50 ms", "p95 ms", "p99 ms",
    );
    for m in results {
        let base = baseline_of(&m.implementation, &m.scenario);
        let ratio = results
            .iter()
            .find(|b| {
                Some(b.implementation.as_str()) == base
                    && b.scenario == m.scenario
                    && b.mode == m.mode
            })
            .map(|b| {
                if m.scenario == "hol" || m.scenario == "tarpc-hol" {
                    format!(
                        "p99 {:.1}x lower than {}",
                        b.p99_ms / m.p99_ms.max(1e-9),
                        b.implementation
                    )
                } else if m.scenario == "transfer" {
                    format!(
                        "{:.2}x {} MB/s",
                        m.mb_per_sec / b.mb_per_sec.max(1e-9),
                        b.implementation
                    )
                } else {
                    format!(
                        "{:.2}x {}",
                        m.msgs_per_sec / b.msgs_per_sec.max(1e-9),
                        b.implementation
                    )
                }
            })
            .or_else(|| {
                // Over QUIC the head-of-line check is against the same link without bulk.
                let idle = m.notes.iter().find(|(k, _)| k == "idle link rpc p99 ms")?.1;
                (m.scenario == "hol")
                    .then(|| format!("p99 {:.2}x the idle link's", m.p99_ms / idle.max(1e-9)))
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
            let _ = writeln!(out, "{:<8} {:<16} {:<11}   {k}: {v:.2}", "", "", "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(implementation: &str, rate: f64) -> Measurement {
        Measurement {
            scenario: "large".into(),
            mode: "seq".into(),
            implementation: implementation.into(),
            messages: 20,
            bytes: 0,
            seconds: 1.0,
            msgs_per_sec: rate,
            mb_per_sec: 0.0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            notes: Vec::new(),
        }
    }

    #[test]
    fn the_median_round_is_kept_with_the_spread_of_its_ratios() {
        let rounds = vec![
            vec![row("rhizo-quic", 80.0), row("bare-quinn", 100.0)],
            vec![row("rhizo-quic", 50.0), row("bare-quinn", 100.0)],
            vec![row("rhizo-quic", 90.0), row("bare-quinn", 75.0)],
        ];
        let out = median_of_rounds(rounds);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].msgs_per_sec, 80.0);
        assert_eq!(out[1].msgs_per_sec, 100.0);
        let note = |name: &str| {
            out[0]
                .notes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
        };
        assert_eq!(note("rounds"), Some(3.0));
        assert_eq!(note("x bare-quinn per round, lowest"), Some(0.5));
        assert_eq!(note("x bare-quinn per round, highest"), Some(1.2));
        assert!(out[1].notes.is_empty(), "baselines get no ratio notes");
        // One round: the row as measured, no notes.
        let one = median_of_rounds(vec![vec![row("rhizo-ws", 7.0)]]);
        assert!(one[0].notes.is_empty());
    }
}
