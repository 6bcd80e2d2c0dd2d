//! The `rhizomorph` command-line tool.
//!
//! - `bench`: the main job — loopback scenarios for rhizomorph and its baselines, as a table.
//! - `serve`: an echo server (plain `ws://` on loopback, or `wss://` with a certificate).
//! - `connect`: talk to a server by hand (lines in, messages out).
//! - `inspect`: decode a hex frame dump into readable lines.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rhizomorph::frame::Settings;
use rhizomorph::transport::tls;
use rhizomorph::{Config, Listener};
use rhizomorph_cli::bench::{self, BenchOptions, BenchTransport};
use rhizomorph_cli::inspect;

/// Rhizomorph: many prioritized channels over one QUIC or WebSocket connection.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the loopback benchmark: the hypha-rpc report's scenarios, head-of-line blocking and
    /// a stalled reader, for rhizomorph and plain msgpack over WebSocket, in one run.
    Bench {
        /// Scenario to run (repeatable): small, medium, large, mixed, transfer, oneway, rpc, tarpc, fanout, idle,
        /// hol, stall, all; and hypha (unmodified hypha-rpc programs through hypha and through
        /// `rhizomorph serve`; needs the venv, not part of all); and resume (rpc-100 and oneway
        /// with resumable sessions off and on, wire.md §21; not part of all); and cluster (two
        /// hypha servers on one Redis next to two `serve --redis` nodes, and native clients
        /// across nodes; needs the venv and redis-server, not part of all); and scaling
        /// (`serve` pinned with taskset to 1..=cores cores, rpc-100 and 2 MB echoes, server
        /// and client CPU per call apart; not part of all).
        #[arg(long = "scenario", default_value = "all")]
        scenarios: Vec<String>,
        /// Multiply the echo scenarios' message counts (1 = the report's counts).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Messages in flight for the pipelined runs.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Rounds of the echo scenarios (every implementation once per round, in turn): the
        /// median round is reported, with each ratio's lowest and highest round.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Seconds the head-of-line scenario measures, per implementation.
        #[arg(long, default_value_t = 4.0)]
        hol_seconds: f64,
        /// Shaped link rate for the head-of-line scenario, Mbit/s.
        #[arg(long, default_value_t = 100.0)]
        hol_mbit: f64,
        /// Bottleneck queue of the shaped link, kB.
        #[arg(long, default_value_t = 64)]
        hol_queue_kb: usize,
        /// Datagram loss on the QUIC head-of-line link, percent.
        #[arg(long, default_value_t = 1.0)]
        hol_loss_percent: f64,
        /// Transport to measure: ws (against msgpack over WebSocket), quic (against bare
        /// quinn), or all.
        #[arg(long, default_value = "all", value_parser = ["ws", "quic", "all"])]
        transport: String,
        /// Seconds the reader stalls in the stall scenario.
        #[arg(long, default_value_t = 2.0)]
        stall_seconds: f64,
        /// MiB the stall scenario pushes.
        #[arg(long, default_value_t = 256)]
        stall_mib: u64,
        /// Write every figure as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Also run the echo scenarios in legacy mode through a real hypha server (started from
        /// the venv that scripts/test.sh creates, or $RHIZOMORPH_VENV): a rhizomorph legacy
        /// caller against a rhizomorph legacy provider and against the real hypha-rpc provider.
        #[arg(long)]
        legacy: bool,
        /// Seconds each request/response run (rpc-50/100/200) lasts.
        #[arg(long, default_value_t = 3.0)]
        rpc_seconds: f64,
        /// Client connection counts of the request/response runs (repeatable).
        #[arg(long = "rpc-clients", default_values_t = [50, 100, 200])]
        rpc_clients: Vec<usize>,
        /// Worker threads of the server runtime (1: one current-thread runtime; the client
        /// side always has one).
        #[arg(long, default_value_t = 1)]
        server_threads: usize,
        /// With --server-threads N > 1: N single-thread runtimes with one SO_REUSEPORT listener
        /// each (rhizomorph's WebSocket server), instead of one N-thread runtime.
        #[arg(long)]
        reuse_port: bool,
    },
    /// Run a router and echo server: messages whose `to` names a connected peer are forwarded
    /// with hypha's rules (legacy hypha-rpc clients and native peers alike), the rest come
    /// back on their channel. WebSocket clients without the rhizomorph subprotocol are served
    /// in legacy mode.
    Serve {
        /// Address to listen on (TCP for ws, UDP for quic).
        #[arg(long, default_value = "127.0.0.1:7878")]
        addr: String,
        /// ws (WebSocket, wss:// with a certificate) or quic (always TLS: needs --self-signed or
        /// --cert/--key).
        #[arg(long, default_value = "ws", value_parser = ["ws", "quic"])]
        transport: String,
        /// Use a freshly generated self-signed certificate (development only; prints its
        /// SHA-256 fingerprint for clients to pin).
        #[arg(long)]
        self_signed: bool,
        /// Serve with this PEM certificate chain (needs --key).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// PEM private key for --cert.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Allow plain ws:// on a non-loopback address (unencrypted).
        #[arg(long)]
        insecure_plain: bool,
        /// Resumable sessions (wire.md §21) for native clients that ask: a client's session
        /// whose transport dies is held this many seconds for it to resume (2 MiB replay buffer
        /// per channel). 0: off. In a cluster, a client that comes back to another node carries
        /// on there with its messages delivered once (cluster.md §C5.2).
        #[arg(long, default_value_t = 0.0)]
        resume_secs: f64,
        /// The workspace manager's limits (legacy.md §L6.6).
        #[command(flatten)]
        manager: ManagerArgs,
        /// Several nodes as one (spec/cluster.md).
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Worker threads: 0 (default) one per core; 1 a current-thread runtime (fewer
        /// wake-ups per routed message, but one flooding peer then delays the others more).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Decode frames from a hex dump (argument, `@file`, or `-` for stdin) into readable lines.
    ///
    /// With no input, encodes and decodes a sample conversation.
    /// Connect to a server and talk to it by hand: each line of stdin is sent as a message
    /// (`--call`: as a call, its reply printed with the round trip); what arrives is printed.
    Connect {
        /// `ws://host:port/`, `wss://host:port/` or `quic://host:port`.
        url: String,
        /// Trust the server certificate with this SHA-256 fingerprint (what `serve
        /// --self-signed` prints) instead of the web PKI roots.
        #[arg(long)]
        pin: Option<String>,
        /// The channel to send on: control, rpc, stream, bulk.
        #[arg(long, default_value = "rpc")]
        channel: String,
        /// A header field of every message, `name=value` (repeatable; default `to=echo`).
        #[arg(long = "header")]
        header: Vec<String>,
        /// Send each line as a call (wire.md §20.1) and print its reply.
        #[arg(long)]
        call: bool,
    },
    Inspect {
        /// Hex bytes (spaces allowed), or `@path` to read hex from a file, or `-` for stdin.
        input: Vec<String>,
        /// The receiver's MAX_FRAME_PAYLOAD (wire.md §3.3).
        #[arg(long, default_value_t = Settings::default().max_frame_payload)]
        max_frame_payload: u64,
        /// The receiver's MAX_MESSAGE_SIZE (wire.md §3.3).
        #[arg(long, default_value_t = Settings::default().max_message_size)]
        max_message_size: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                // tarpc warns when a client's connection ends under it, which is how every
                // tarpc bench row ends.
                .unwrap_or_else(|_| "warn,tarpc=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Connect {
            url,
            pin,
            channel,
            header,
            call,
        } => connect_cmd(url, pin, &channel, &header, call),
        Command::Inspect {
            input,
            max_frame_payload,
            max_message_size,
        } => inspect_cmd(&input, max_frame_payload, max_message_size),
        Command::Bench {
            scenarios,
            scale,
            in_flight,
            rounds,
            hol_seconds,
            hol_mbit,
            hol_queue_kb,
            hol_loss_percent,
            transport,
            stall_seconds,
            stall_mib,
            json,
            quiet,
            legacy,
            rpc_seconds,
            rpc_clients,
            server_threads,
            reuse_port,
        } => {
            let config = match Config::default().with_env() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = BenchOptions {
                scenarios,
                scale,
                in_flight: in_flight.max(1),
                rounds: rounds.max(1),
                hol_duration: Duration::from_secs_f64(hol_seconds),
                hol_link: rhizomorph_testkit::shaper::LinkShape::mbit(hol_mbit, hol_queue_kb),
                hol_loss: hol_loss_percent / 100.0,
                transports: match transport.as_str() {
                    "ws" => vec![BenchTransport::Ws],
                    "quic" => vec![BenchTransport::Quic],
                    _ => vec![BenchTransport::Ws, BenchTransport::Quic],
                },
                stall: Duration::from_secs_f64(stall_seconds),
                stall_bytes: stall_mib << 20,
                progress: !quiet,
                config,
                legacy,
                rpc_duration: Duration::from_secs_f64(rpc_seconds),
                rpc_clients,
                server_threads: server_threads.max(1),
                reuse_port,
            };
            // The clients on one thread, the servers on another (bench::ServerSide): two cores,
            // as a client process and a server process would use them.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            rt.block_on(bench_cmd(options, json))
        }
        Command::Serve {
            addr,
            transport,
            self_signed,
            cert,
            key,
            insecure_plain,
            resume_secs,
            manager,
            cluster,
            threads,
        } => server_runtime(threads).block_on(serve_cmd(
            addr,
            transport == "quic",
            self_signed,
            cert,
            key,
            insecure_plain,
            resume_secs,
            manager,
            cluster,
        )),
    }
}

/// `serve`'s runtime: one worker per core for 0, current-thread for 1, else `threads` workers.
fn server_runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut b = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b
    };
    b.enable_all().build().expect("a tokio runtime")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn bench_cmd(options: BenchOptions, json: Option<PathBuf>) -> ExitCode {
    println!(
        "rhizomorph bench: loopback, {} cores; baselines: msgpack-ws = one msgpack message per WebSocket frame (hypha-rpc style), bare-quinn = length-prefixed messages on one quinn stream",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let results = match bench::run(&options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", bench::render_table(&results));
    if let Some(path) = json {
        let doc = serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "results": results,
        });
        if let Err(e) = std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).unwrap_or_default(),
        ) {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

/// `serve`'s workspace-manager options.
#[derive(clap::Args, Debug)]
struct ManagerArgs {
    /// Route hypha-rpc connections without a workspace manager (calls to it are rejected).
    #[arg(long)]
    no_manager: bool,
    /// Services one client may register.
    #[arg(long, default_value_t = 256)]
    max_services_per_client: usize,
    /// Clients connected in one workspace.
    #[arg(long, default_value_t = 4096)]
    max_clients_per_workspace: usize,
    /// Largest call to the manager, in bytes (a service description included).
    #[arg(long, default_value_t = 256 * 1024)]
    max_manager_request: usize,
}

impl ManagerArgs {
    fn config(&self, public_base_url: String) -> rhizomorph::manager::ManagerConfig {
        let mut c = rhizomorph::manager::ManagerConfig {
            public_base_url,
            max_request_bytes: self.max_manager_request,
            ..Default::default()
        };
        c.limits.services_per_client = self.max_services_per_client;
        c.limits.clients_per_workspace = self.max_clients_per_workspace;
        c
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_cmd(
    addr: String,
    quic: bool,
    self_signed: bool,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    insecure_plain: bool,
    resume_secs: f64,
    manager: ManagerArgs,
    cluster: ClusterArgs,
) -> ExitCode {
    let mut config = match Config::default().with_env() {
        // A router forwards calls, cancellations and transfers (wire.md §20), never takes them.
        Ok(c) => c
            .allow_plain_non_loopback(insecure_plain)
            .with_exchanges(false),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if resume_secs > 0.0 {
        let hold = std::time::Duration::from_secs_f64(resume_secs.min(86_400.0));
        config = config.with_resumption(2 << 20, hold);
    }
    if self_signed {
        match tls::self_signed(&["localhost", "127.0.0.1"])
            .and_then(|(c, k, fp)| Ok((tls::server_tls(vec![c], k)?, fp)))
        {
            Ok((t, fp)) => {
                println!(
                    "self-signed certificate, SHA-256 fingerprint (pin it on clients):\n  {fp}"
                );
                config = config.with_server_tls(t);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else if let (Some(cert), Some(key)) = (cert, key) {
        match tls::load_pem(&cert, &key).and_then(|(c, k)| tls::server_tls(c, k)) {
            Ok(t) => config = config.with_server_tls(t),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if quic && config.server_tls.is_none() {
        eprintln!("error: QUIC always runs TLS: add --self-signed (development) or --cert/--key");
        return ExitCode::from(2);
    }
    let bound = if quic {
        Listener::bind_quic(&addr, config)
    } else {
        Listener::bind(&addr, config).await
    };
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "rhizomorph router + echo server listening on {}",
        listener.url()
    );
    let router = if manager.no_manager {
        rhizomorph::router::Router::new()
    } else if quic {
        // No legacy mode over QUIC (legacy.md §L1.3); native peers still use the manager.
        println!(
            "workspace manager */{} (native peers)",
            rhizomorph::manager::MANAGER_ID
        );
        rhizomorph::router::Router::with_manager(manager.config(listener.url()))
    } else {
        let http = listener.url().replacen("ws", "http", 1);
        let http = http.trim_end_matches('/').to_string();
        println!(
            "hypha-rpc clients: connect_to_server({{\"server_url\": \"{http}\"}}) \
             (WebSocket {}ws; workspace manager */{})",
            listener.url(),
            rhizomorph::manager::MANAGER_ID
        );
        rhizomorph::router::Router::with_manager(manager.config(http))
    };
    let router = match cluster.config() {
        None => router,
        Some(config) => match router.join_cluster(config).await {
            Ok(r) => {
                println!(
                    "cluster node {} (Redis {})",
                    r.node_id().unwrap_or_default(),
                    cluster.redis.as_deref().unwrap_or_default()
                );
                r
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    router.serve(listener).await;
    ExitCode::SUCCESS
}

/// `serve`'s cluster options (spec/cluster.md).
#[derive(clap::Args, Debug)]
struct ClusterArgs {
    /// Join the nodes that share this Redis (`redis://host:port`): clients on any node reach
    /// each other's, broadcasts reach every node.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// This node's id in the cluster (default: random). A node restarted with its old id
    /// takes its inbox over.
    #[arg(long, requires = "redis")]
    node_id: Option<String>,
    /// Seconds a node's lease lives unrenewed: a dead node's clients leave within 1–2 leases.
    #[arg(long, default_value_t = 3.0, requires = "redis")]
    lease_secs: f64,
    /// Entries a node's inbox keeps at most, read or not (the bound on Redis memory for a
    /// node that stopped reading; a live node trims its inbox to its lag).
    #[arg(long, default_value_t = 1_000_000, requires = "redis")]
    inbox_max_len: u64,
    /// Milliseconds an inbox keeps entries already handed to their clients: what another
    /// node sends again to a client that comes to it from this one if this one dies.
    #[arg(long, default_value_t = 2000, requires = "redis")]
    retention_ms: u64,
}

impl ClusterArgs {
    fn config(&self) -> Option<rhizomorph::cluster::ClusterConfig> {
        let mut c = rhizomorph::cluster::ClusterConfig::new(self.redis.clone()?)
            .with_lease(std::time::Duration::from_secs_f64(
                self.lease_secs.max(0.05),
            ))
            .with_inbox_max_len(self.inbox_max_len.max(1))
            .with_retention(std::time::Duration::from_millis(self.retention_ms));
        if let Some(id) = &self.node_id {
            c = c.with_node_id(id.clone());
        }
        Some(c)
    }
}

fn connect_cmd(
    url: String,
    pin: Option<String>,
    channel: &str,
    header: &[String],
    call: bool,
) -> ExitCode {
    let Some(channel) = rhizomorph::Channel::from_name(channel) else {
        eprintln!("error: unknown channel {channel:?}: control, rpc, stream or bulk");
        return ExitCode::from(2);
    };
    let mut fields = Vec::new();
    for h in header {
        match h.split_once('=') {
            Some((n, v)) if !n.is_empty() => fields.push((n.to_string(), v.to_string())),
            _ => {
                eprintln!("error: --header {h:?}: expected name=value");
                return ExitCode::from(2);
            }
        }
    }
    let options = rhizomorph_cli::connect::ConnectOptions {
        url,
        pin,
        channel,
        header: fields,
        call,
    };
    match runtime().block_on(rhizomorph_cli::connect::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect_cmd(input: &[String], max_frame_payload: u64, max_message_size: u64) -> ExitCode {
    let limits = Settings::default()
        .with_max_frame_payload(max_frame_payload)
        .with_max_message_size(max_message_size);
    let bytes = match read_input(input) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            let demo = inspect::demo_conversation();
            println!(
                "sample conversation ({} bytes):\n{}\n",
                demo.len(),
                rhizomorph_proto::hex::to_hex(&demo)
            );
            demo.to_vec()
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let lines = inspect::inspect(&bytes, limits);
    println!("  offset     len  frame");
    print!("{}", inspect::render(&lines));
    if lines
        .iter()
        .all(|l| matches!(l, inspect::InspectLine::Frame { .. }))
    {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn read_input(input: &[String]) -> Result<Option<Vec<u8>>, String> {
    let text = match input {
        [] => return Ok(None),
        [one] if one == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("stdin: {e}"))?;
            s
        }
        [one] if one.starts_with('@') => {
            std::fs::read_to_string(&one[1..]).map_err(|e| format!("{}: {e}", &one[1..]))?
        }
        words => words.join(" "),
    };
    rhizomorph_proto::hex::parse_hex(&text)
        .map(Some)
        .map_err(|e| e.to_string())
}
