//! Request/response in isolation: the bench's `rpc` load (every client has one 256-byte call
//! outstanding) for one implementation only, against the bench's echo servers, so a profile or
//! a system-call count (`strace -f -c`, `perf stat`) shows that implementation alone.
//!
//! Run: `cargo run --release --example rpc_probe -- rhizo-ws|rhizo-ws-matched|rhizo-ws-call|msgpack-ws|raw-tcp [CLIENTS] [SECONDS]`
use std::time::Duration;

use rhizomorph::{Config, Endpoint};
use rhizomorph_cli::bench::{raw_tcp, rpc, scenarios, ServerSide};
use rhizomorph_testkit::msgpack_ws as baseline;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).cloned().unwrap_or_else(|| "rhizo-ws".into());
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let d = Duration::from_secs_f64(seconds);
    let config = Config::default().with_env().unwrap();
    let servers = ServerSide::start(config.clone(), 1).unwrap();
    let m = match which.as_str() {
        "rhizo-ws" => {
            let url = format!("ws://{}/", servers.rhizomorph);
            rpc::run_rpc(&which, clients, d, |_| {
                let (url, config) = (url.clone(), config.clone());
                async move {
                    let c = Endpoint::connect(&url, config)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok(rpc::EchoPair(scenarios::RhizoTx::new(c.sender()), c))
                }
            })
            .await
        }
        "rhizo-ws-matched" => {
            let url = format!("ws://{}/", servers.rhizomorph);
            rpc::run_rpc(&which, clients, d, |_| {
                let (url, config) = (url.clone(), config.clone().with_exchanges(false));
                async move {
                    let c = Endpoint::connect(&url, config)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok(rpc::RhizoMatched::new(c))
                }
            })
            .await
        }
        "rhizo-ws-call-1conn" => {
            // CLIENTS calls in flight on one connection (the tarpc-64 shape without tarpc).
            let url = format!("ws://{}/", servers.rhizomorph);
            let c = Endpoint::connect(&url, config.clone()).await.unwrap();
            let sender = c.sender();
            let keep = std::sync::Arc::new(c);
            rpc::run_rpc(&which, clients, d, |_| {
                let (sender, keep) = (sender.clone(), keep.clone());
                async move { Ok(rpc::RhizoCallOn::new(sender, keep)) }
            })
            .await
        }
        "rhizo-ws-call" => {
            let url = format!("ws://{}/", servers.rhizomorph);
            rpc::run_rpc(&which, clients, d, |_| {
                let (url, config) = (url.clone(), config.clone());
                async move {
                    let c = Endpoint::connect(&url, config)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok(rpc::RhizoCall::new(c))
                }
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
        other => panic!("unknown implementation {other}: rhizo-ws, rhizo-ws-matched, rhizo-ws-call, msgpack-ws or raw-tcp"),
    }
    .unwrap();
    println!(
        "{which}: {} clients, {:.0} calls/s, p50 {:.3} ms, p95 {:.3} ms",
        clients, m.msgs_per_sec, m.p50_ms, m.p95_ms
    );
}
