//! Request/response in isolation: the bench's `rpc` load (every client has one 256-byte call
//! outstanding) for one implementation only, against the bench's echo servers, so a profile or
//! a system-call count (`strace -f -c`, `perf stat`) shows that implementation alone.
//!
//! Run: `cargo run --release --example rpc_probe -- rhizo-ws|rhizo-ws-matched|rhizo-ws-call|rhizo-ws-call-1conn|msgpack-ws|raw-tcp [CLIENTS] [SECONDS]`
use std::time::Duration;

use rhizomorph::Config;
use rhizomorph_cli::bench::{self, raw_tcp, rpc, scenarios, ServerSide};
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
    let url = format!("ws://{}/", servers.rhizomorph);
    let m = match which.as_str() {
        "rhizo-ws" => {
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
        other => panic!(
            "unknown implementation {other}: rhizo-ws, rhizo-ws-matched, rhizo-ws-call, \
             rhizo-ws-call-1conn, msgpack-ws or raw-tcp"
        ),
    }
    .unwrap();
    println!(
        "{which}: {} clients, {} calls, {:.0} calls/s, p50 {:.3} ms, p95 {:.3} ms",
        clients, m.messages, m.msgs_per_sec, m.p50_ms, m.p95_ms
    );
}
