//! Request/response in isolation: the bench's `rpc` load (every client has one 256-byte call
//! outstanding) for one implementation only, against the bench's echo servers, so a profile or
//! a system-call count (`strace -f -c`, `perf stat`) shows that implementation alone.
//!
//! Run: `cargo run --release --example rpc_probe -- rhizo-ws|rhizo-ws-resume|rhizo-ws-resume-off|rhizo-ws-matched|rhizo-ws-call|rhizo-ws-call-1conn|msgpack-ws|raw-tcp|tarpc-tcp|tarpc-ws|tarpc-tcp-1conn|tarpc-ws-1conn [CLIENTS] [SECONDS]`
use std::time::Duration;

use rhizomorph::Config;
use rhizomorph_cli::bench::{self, raw_tcp, rpc, scenarios, tarpc_bench, ServerSide};
use rhizomorph_testkit::msgpack_ws as baseline;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).cloned().unwrap_or_else(|| "rhizo-ws".into());
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let d = Duration::from_secs_f64(seconds);
    let mut config = Config::default().with_env().unwrap();
    // `-resume`: resumable sessions (wire.md §21) on both sides; `-resume-off`: the same
    // server, the client without (what `bench --scenario resume` compares).
    let resumable = config
        .clone()
        .with_resumption(2 << 20, Duration::from_secs(120));
    let server = match which.contains("-resume") {
        true => resumable.clone(),
        false => config.clone(),
    };
    if which == "rhizo-ws-resume" {
        config = resumable;
    }
    let servers = ServerSide::start(server, 1).unwrap();
    let url = format!("ws://{}/", servers.rhizomorph);
    let m = match which.as_str() {
        "rhizo-ws" | "rhizo-ws-resume" | "rhizo-ws-resume-off" => {
            rpc::run_rpc(&which, clients, d, |_| {
                bench::rhizo_rpc_client(&url, &config)
            })
            .await
        }
        "rhizo-ws-matched" => {
            rpc::run_rpc(&which, clients, d, |_| {
                bench::rhizo_matched_client(&url, &config)
            })
            .await
        }
        "rhizo-ws-call" => {
            rpc::run_rpc(&which, clients, d, |_| {
                bench::rhizo_call_client(&url, &config)
            })
            .await
        }
        "rhizo-ws-call-1conn" => {
            // CLIENTS calls in flight on one connection (the tarpc-64 shape without tarpc).
            let one = bench::rhizo_call_client(&url, &config).await.unwrap();
            rpc::run_rpc(&which, clients, d, |_| {
                let one = one.clone();
                async move { Ok(one) }
            })
            .await
        }
        "msgpack-ws" => {
            rpc::run_rpc(&which, clients, d, |_| async {
                let (sink, stream) = baseline::connect(servers.baseline).await?;
                Ok(rpc::EchoPair(scenarios::BaselineTx::new(sink), stream))
            })
            .await
        }
        "raw-tcp" => {
            rpc::run_rpc(&which, clients, d, |_| async {
                let (tx, rx) = raw_tcp::connect(servers.raw_tcp, raw_tcp::Kind::Echo).await?;
                Ok(rpc::EchoPair(tx, rx))
            })
            .await
        }
        "tarpc-tcp" | "tarpc-ws" | "tarpc-tcp-1conn" | "tarpc-ws-1conn" => {
            // tarpc's echo service over its own TCP transport or over rhizomorph: CLIENTS
            // connections with one call each, or (-1conn) CLIENTS calls on one connection.
            let tarpc = tarpc_bench::start(&servers, &config).await.unwrap();
            let (via, addr) = match which.starts_with("tarpc-tcp") {
                true => (tarpc_bench::Via::Tcp, tarpc.tcp),
                false => (tarpc_bench::Via::Ws, tarpc.ws),
            };
            let one = match which.ends_with("-1conn") {
                true => Some(tarpc_bench::connect(via, addr, &config).await.unwrap()),
                false => None,
            };
            rpc::run_rpc(&which, clients, d, |_| {
                let one = one.clone();
                let config = config.clone();
                async move {
                    let client = match one {
                        Some(c) => c,
                        None => tarpc_bench::connect(via, addr, &config).await?,
                    };
                    Ok(tarpc_bench::TarpcEcho(client))
                }
            })
            .await
        }
        other => panic!(
            "unknown implementation {other}: rhizo-ws, rhizo-ws-resume, rhizo-ws-resume-off, \
             rhizo-ws-matched, rhizo-ws-call, \
             rhizo-ws-call-1conn, msgpack-ws, raw-tcp, tarpc-tcp, tarpc-ws, tarpc-tcp-1conn \
             or tarpc-ws-1conn"
        ),
    }
    .unwrap();
    println!(
        "{which}: {} clients, {} calls, {:.0} calls/s, p50 {:.3} ms, p95 {:.3} ms",
        clients, m.messages, m.msgs_per_sec, m.p50_ms, m.p95_ms
    );
}
