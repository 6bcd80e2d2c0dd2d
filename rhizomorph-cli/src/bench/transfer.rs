//! Streamed transfers against whole messages: one body sent as a transfer (wire.md §20.3,
//! `Sender::send_transfer` from an `AsyncRead`) and the same bytes as back-to-back 2 MiB
//! messages, one way on `bulk`, on one connection each.
//!
//! Owns the two workloads. Compression is off for both: the bodies are one repeated byte, which
//! would otherwise compress to nothing and measure the codec, not the transport. The clock stops when the server says it has everything: for the
//! messages, one echoed marker on `bulk` behind them (one channel, in order); for the transfer,
//! the echo server's `transfer-received` event after its last part.

use std::io;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::measure::{Latencies, Measurement};
use rhizomorph::{Channel, Config, Endpoint, RoutingHeader};

/// Size of each whole message in the message row: the 2 MB-message bulk rate.
const MESSAGE: usize = 2 << 20;

fn uncompressed(config: &Config) -> Config {
    config
        .clone()
        .with_compression(rhizomorph::CompressionPolicy::Off)
}

fn row(mode: &str, implementation: &str, messages: u64, bytes: u64, secs: f64) -> Measurement {
    let mut m = Latencies::default().into_measurement(
        "transfer",
        mode,
        implementation,
        messages,
        bytes,
        std::time::Duration::from_secs_f64(secs),
    );
    m.p50_ms = 0.0;
    m.p95_ms = 0.0;
    m.p99_ms = 0.0;
    m
}

/// `total` bytes as 2 MiB messages to `sink` on `bulk`, then one marker echoed on `bulk`.
pub async fn messages(
    implementation: &str,
    url: &str,
    config: &Config,
    total: u64,
) -> io::Result<Measurement> {
    let mut conn = Endpoint::connect(url, uncompressed(config))
        .await
        .map_err(io::Error::other)?;
    let sink = RoutingHeader::new().with("to", "sink");
    let payload = Bytes::from(vec![0x5au8; MESSAGE]);
    let n = total.div_ceil(MESSAGE as u64);
    let start = Instant::now();
    for _ in 0..n {
        conn.send(Channel::Bulk, sink.clone(), payload.clone())
            .await
            .map_err(io::Error::other)?;
    }
    conn.send(
        Channel::Bulk,
        RoutingHeader::new().with("to", "echo"),
        "done",
    )
    .await
    .map_err(io::Error::other)?;
    conn.recv()
        .await
        .ok_or_else(|| io::Error::other("connection ended"))?;
    let secs = start.elapsed().as_secs_f64();
    conn.close().await;
    Ok(row(
        "2 MiB messages",
        implementation,
        n,
        n * MESSAGE as u64,
        secs,
    ))
}

/// `total` bytes as one transfer on `bulk` (parts of `TRANSFER_PART_SIZE`), read from an
/// `AsyncRead`, until the server reports the last part.
pub async fn streamed(
    implementation: &str,
    url: &str,
    config: &Config,
    total: u64,
) -> io::Result<Measurement> {
    let mut conn = Endpoint::connect(url, uncompressed(config))
        .await
        .map_err(io::Error::other)?;
    let header = RoutingHeader::new().with("to", "sink");
    let start = Instant::now();
    let body = tokio::io::repeat(0x5a).take(total);
    let sent = conn
        .sender()
        .send_transfer(Channel::Bulk, header, body)
        .await
        .map_err(io::Error::other)?;
    let done = conn
        .recv()
        .await
        .ok_or_else(|| io::Error::other("connection ended"))?;
    let secs = start.elapsed().as_secs_f64();
    let received: u64 = std::str::from_utf8(&done.payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if received != sent {
        return Err(io::Error::other(format!(
            "the server received {received} of {sent} bytes"
        )));
    }
    conn.close().await;
    let parts = sent.div_ceil(rhizomorph::TRANSFER_PART_SIZE as u64);
    Ok(row("streamed", implementation, parts, sent, secs))
}
