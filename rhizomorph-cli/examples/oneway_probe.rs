//! One-way throughput in isolation: the bench's `oneway` load (N messages of 256 B on one
//! connection, then one echoed marker) for one implementation only, against the bench's
//! servers, so an instruction count (`valgrind --tool=callgrind`, repeatable on a shared
//! machine) or a profile shows that implementation alone. The difference between two runs
//! with different N, divided by the difference in N, is the cost of one message, client and
//! server together.
//!
//! Run: `cargo run --release --example oneway_probe -- rhizo-ws|msgpack-ws|raw-tcp [N]`
use rhizomorph::Config;
use rhizomorph_cli::bench::{oneway, ServerSide};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).cloned().unwrap_or_else(|| "rhizo-ws".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let config = Config::default().with_env().unwrap();
    let servers = ServerSide::start(config.clone(), 1).unwrap();
    let url = format!("ws://{}/", servers.rhizomorph);
    let m = match which.as_str() {
        "rhizo-ws" => oneway::rhizomorph(&which, &url, &config, n).await,
        "msgpack-ws" => oneway::msgpack_ws(servers.baseline, n).await,
        "raw-tcp" => oneway::raw(servers.raw_tcp, n).await,
        other => panic!("unknown implementation {other}"),
    }
    .unwrap();
    println!(
        "{which}: {n} messages in {:.3} s, {:.0} msgs/s",
        m.seconds, m.msgs_per_sec
    );
}
