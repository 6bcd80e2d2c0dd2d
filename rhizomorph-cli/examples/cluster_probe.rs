//! Cross-node calls in isolation: the native rows of `bench --scenario cluster` against
//! servers you started, so a profile (`perf record -p <serve pid>`) or `valgrind` of one node
//! shows the cluster path alone.
//!
//! Start Redis and two nodes first, e.g.
//! `redis-server --port 6390 --save '' &`,
//! `rhizomorph serve --addr 127.0.0.1:9001 --redis redis://127.0.0.1:6390 --node-id a &` and
//! the same with `9002` and `b`, then run:
//! `cargo run --release --example cluster_probe -- ws://127.0.0.1:9001/ ws://127.0.0.1:9002/ [IN_FLIGHT] [SECONDS] [PID...]`
//! (server CPU per call is that of the PIDs given).
use std::time::Duration;

use rhizomorph_cli::bench::cluster::native_calls;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(caller), Some(answerer)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: cluster_probe CALLER_URL ANSWERER_URL [IN_FLIGHT] [SECONDS] [PID...]");
        std::process::exit(2);
    };
    let in_flight: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let seconds: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let pids: Vec<u32> = args.iter().skip(5).filter_map(|s| s.parse().ok()).collect();
    let d = Duration::from_secs_f64(seconds);
    match native_calls("cross-node", caller, answerer, in_flight, d, &pids, None).await {
        Ok(m) => println!(
            "{} calls, {:.0} calls/s, p50 {:.3} ms, p99 {:.3} ms, {:?}",
            m.messages, m.msgs_per_sec, m.p50_ms, m.p99_ms, m.notes
        ),
        Err(e) => {
            eprintln!("cluster_probe: {e}");
            std::process::exit(1);
        }
    }
}
