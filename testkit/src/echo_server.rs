//! The echo server behind `rhizomorph serve` and the benchmarks.
//!
//! Echoes every message on the channel it arrived on with the same header and payload, except
//! messages addressed `to: sink` (dropped: a one-way transfer) and `to: stall` (the server
//! stops reading for the number of milliseconds in the payload: a slow reader). Never decodes
//! payloads.

use std::time::Duration;

use tracing::debug;

use rhizomorph::Connection;
use rhizomorph::Listener;

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
        if sender.forward(msg.channel, msg).await.is_err() {
            break;
        }
    }
}
