//! One-way throughput: N messages of 256 B on one connection, none answered, then one echoed
//! marker; the clock stops when the marker comes back (everything before it has arrived: one
//! channel, one stream, in order).
//!
//! Owns the one-way workload for each peer that can consume messages: rhizomorph (`to: sink`),
//! raw TCP (kind 1) and msgpack over WebSocket (session `bulk`).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::measure::{Latencies, Measurement};
use super::raw_tcp;
use super::scenarios::EchoRx;
use rhizomorph::config::Config;
use rhizomorph::endpoint::Endpoint;
use rhizomorph::frame::Channel;
use rhizomorph::header::RoutingHeader;
use rhizomorph_testkit::msgpack_ws;

const SIZE: usize = 256;

fn row(implementation: &str, n: usize, elapsed: Duration) -> Measurement {
    let mut m = Latencies::default().into_measurement(
        "oneway",
        "256 B",
        implementation,
        n as u64,
        (n * SIZE) as u64,
        elapsed,
    );
    m.p50_ms = 0.0;
    m.p95_ms = 0.0;
    m.p99_ms = 0.0;
    m
}

/// Rhizomorph at `url`: `n` messages to `sink` on `rpc`, then one echo.
pub async fn rhizomorph(
    implementation: &str,
    url: &str,
    config: &Config,
    n: usize,
) -> io::Result<Measurement> {
    let mut conn = Endpoint::connect(url, config.clone())
        .await
        .map_err(io::Error::other)?;
    let sink = RoutingHeader::new().with("to", "sink");
    let payload = Bytes::from(vec![0x5au8; SIZE]);
    let start = Instant::now();
    for _ in 0..n {
        conn.send(Channel::Rpc, sink.clone(), payload.clone())
            .await
            .map_err(io::Error::other)?;
    }
    conn.send(
        Channel::Rpc,
        RoutingHeader::new().with("to", "echo"),
        payload,
    )
    .await
    .map_err(io::Error::other)?;
    conn.recv()
        .await
        .ok_or_else(|| io::Error::other("connection ended"))?;
    let elapsed = start.elapsed();
    conn.close().await;
    Ok(row(implementation, n, elapsed))
}

/// Raw TCP at `addr`: `n` one-way messages written through a 64 KiB buffer, then one echo.
pub async fn raw(addr: SocketAddr, n: usize) -> io::Result<Measurement> {
    let (mut tx, mut rx) = raw_tcp::connect(addr, raw_tcp::Kind::OneWay).await?;
    let payload = Bytes::from(vec![0x5au8; SIZE]);
    let start = Instant::now();
    for _ in 0..n {
        super::scenarios::EchoTx::send(&mut tx, payload.clone()).await?;
    }
    tx.send_kind(raw_tcp::Kind::Echo, &payload).await?;
    rx.recv()
        .await?
        .ok_or_else(|| io::Error::other("connection ended"))?;
    Ok(row("raw-tcp", n, start.elapsed()))
}

/// msgpack over WebSocket at `addr`: `n` one-way messages (fed, flushed once), then one echo.
pub async fn msgpack_ws(addr: SocketAddr, n: usize) -> io::Result<Measurement> {
    let (mut sink, mut stream) = msgpack_ws::connect(addr).await?;
    let payload = vec![0x5au8; SIZE];
    let start = Instant::now();
    for _ in 0..n {
        let m = msgpack_ws::encode_message("bulk", &payload);
        sink.feed(WsMessage::Binary(m))
            .await
            .map_err(io::Error::other)?;
    }
    msgpack_ws::send_payload(&mut sink, "0000000000000000000001", &payload).await?;
    stream
        .recv()
        .await?
        .ok_or_else(|| io::Error::other("connection ended"))?;
    Ok(row("msgpack-ws", n, start.elapsed()))
}
