//! Large messages in isolation: N sequential echoes of SIZE incompressible bytes (default 300 ×
//! 2 MiB) over rhizomorph's WebSocket transport or over the raw-TCP baseline, against the
//! bench's echo servers, with nothing else in the process (no payload stamping, no latency
//! histogram), to profile the transport alone (`perf record … large_probe ws`).
//!
//! `ws-harness` and `tcp-harness` run the same echoes through the bench's harness
//! (`bench::scenarios::run_echo`: a sender task, a fresh stamped payload per message) to show
//! what the harness itself costs.
//!
//! Run: `cargo run --release --example large_probe -- ws|ws-harness|tcp|tcp-harness [N] [SIZE]`
use std::time::Instant;

use rhizomorph::{Channel, Config, Endpoint, RoutingHeader};
use rhizomorph_cli::bench::ServerSide;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("ws");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let size: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2 << 20);
    let config = Config::default().with_env().unwrap();
    let servers = ServerSide::start(config.clone(), 1).unwrap();
    let payload = rhizomorph_testkit::payload::incompressible(size, 7);
    let t = Instant::now();
    match which {
        "ws-harness" => {
            // The same echoes through the bench's harness (sender task, stamped payloads).
            let mut c = Endpoint::connect(&format!("ws://{}/", servers.rhizomorph), config)
                .await
                .unwrap();
            let tx = rhizomorph_cli::bench::scenarios::RhizoTx::new(c.sender());
            let sizes = vec![size; n];
            let pb = indicatif::ProgressBar::hidden();
            rhizomorph_cli::bench::scenarios::run_echo(tx, &mut c, &sizes, 1, &pb)
                .await
                .unwrap();
        }
        "tcp-harness" => {
            let (tx, mut rx) = rhizomorph_cli::bench::raw_tcp::connect(
                servers.raw_tcp,
                rhizomorph_cli::bench::raw_tcp::Kind::Echo,
            )
            .await
            .unwrap();
            let sizes = vec![size; n];
            let pb = indicatif::ProgressBar::hidden();
            rhizomorph_cli::bench::scenarios::run_echo(tx, &mut rx, &sizes, 1, &pb)
                .await
                .unwrap();
        }
        "ws" => {
            let mut c = Endpoint::connect(&format!("ws://{}/", servers.rhizomorph), config)
                .await
                .unwrap();
            let h = RoutingHeader::new().with("to", "echo");
            for _ in 0..n {
                c.send(Channel::Rpc, h.clone(), payload.clone())
                    .await
                    .unwrap();
                let m = c.recv().await.unwrap();
                assert_eq!(m.payload.len(), size);
            }
        }
        _ => {
            let mut s = tokio::net::TcpStream::connect(servers.raw_tcp)
                .await
                .unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; size];
            for _ in 0..n {
                s.write_all(&(size as u32).to_be_bytes()).await.unwrap();
                s.write_all(&[0u8]).await.unwrap();
                s.write_all(&payload).await.unwrap();
                let mut len = [0u8; 5];
                s.read_exact(&mut len).await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
            }
        }
    }
    let el = t.elapsed();
    println!(
        "{which}: {n} x {size} B echo in {:?}: {:.1} MB/s each way, {:.3} ms/round trip",
        el,
        (n * size) as f64 / el.as_secs_f64() / 1e6,
        el.as_secs_f64() * 1e3 / n as f64
    );
}
