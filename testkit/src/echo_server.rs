//! The echo server behind `rhizomorph serve` and the benchmarks.
//!
//! Echoes every message on the channel it arrived on with the same header and payload (a call,
//! wire.md §20.1, gets a reply with the payload), except
//! messages addressed `to: sink` (dropped: a one-way transfer) and `to: stall` (the server
//! stops reading for the number of milliseconds in the payload: a slow reader). Never decodes
//! payloads.

use std::time::Duration;

use tracing::debug;

use futures_util::StreamExt;
use rhizomorph::Connection;
use rhizomorph::Listener;
use rhizomorph::RoutingHeader;

/// Accepts connections forever, serving each in its own task.
pub async fn serve(listener: Listener) {
    loop {
        match listener.accept_raw().await {
            Ok(handshake) => {
                tokio::spawn(async move {
                    match handshake.await {
                        Ok(conn) => serve_connection(conn).await,
                        Err(e) => debug!(error = %e, "handshake failed"),
                    }
                });
            }
            Err(e) => {
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Echoes on one connection until it ends.
pub async fn serve_connection(mut conn: Connection) {
    let sender = conn.sender();
    while let Some(msg) = conn.recv().await {
        // A transfer (wire.md §20.3) is read to its end on a task of its own; the sender is
        // told how many bytes arrived (`event: transfer-received`, the count as payload).
        let msg = match conn.transfer(msg) {
            Ok(transfer) => {
                let sender = sender.clone();
                tokio::spawn(async move {
                    let channel = transfer.channel();
                    let mut transfer = transfer;
                    let mut n = 0u64;
                    while let Some(Ok(chunk)) = transfer.next().await {
                        n += chunk.len() as u64;
                    }
                    let header = RoutingHeader::new()
                        .with("type", "event")
                        .with("event", "transfer-received");
                    let _ = sender.send(channel, header, n.to_string()).await;
                });
                continue;
            }
            Err(msg) => msg,
        };
        match msg.header.get_str("to") {
            Some("sink") => continue,
            Some("stall") => {
                let ms = std::str::from_utf8(&msg.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                continue;
            }
            _ => {}
        }
        // A call (wire.md §20.1) is answered with a reply carrying the payload; anything else
        // is echoed as it came.
        let answered = match rhizomorph::exchange::classify(&msg.header) {
            Ok(rhizomorph::exchange::Exchange::Request { .. }) => {
                sender.reply(&msg, msg.payload.clone()).await
            }
            _ => sender.forward(msg.channel, msg).await,
        };
        if answered.is_err() {
            break;
        }
    }
}
