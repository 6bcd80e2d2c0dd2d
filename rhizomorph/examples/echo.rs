//! An echo server and a client in one process, over WebSocket on loopback.
//!
//! Run: `cargo run --release --example echo`
//!
//! The server answers every message on the channel it came in on, with the same routing header
//! and payload. The client sends one message per channel and a 4 MiB bulk message, and prints
//! what comes back.

use rhizomorph::{Channel, Config, Endpoint, Listener, RoutingHeader};

#[tokio::main]
async fn main() -> Result<(), rhizomorph::Error> {
    // Server: accept connections, echo every message.
    let listener = Listener::bind("127.0.0.1:0", Config::default()).await?;
    let url = listener.url();
    tokio::spawn(async move {
        while let Ok(handshake) = listener.accept_raw().await {
            tokio::spawn(async move {
                let Ok(mut conn) = handshake.await else {
                    return;
                };
                let sender = conn.sender();
                while let Some(msg) = conn.recv().await {
                    if sender
                        .send(msg.channel, msg.header, msg.payload)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });

    // Client.
    let mut conn = Endpoint::connect(&url, Config::default()).await?;
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("to", "echo")
        .with("method", "echo");
    for channel in Channel::ALL {
        conn.send(channel, header.clone(), format!("hello on {channel}"))
            .await?;
    }
    conn.send(Channel::Bulk, header.clone(), vec![7u8; 4 << 20])
        .await?;
    for _ in 0..5 {
        let msg = conn.recv().await.expect("an echo");
        println!(
            "{:>7}  seq {}  to={:?}  {} bytes",
            msg.channel.name(),
            msg.sequence,
            msg.header.get_str("to").unwrap_or("?"),
            msg.payload.len()
        );
    }
    let stats = conn.stats();
    println!(
        "frames sent {}, in {} writes",
        stats.frames_sent, stats.batches_sent
    );
    conn.close().await;
    Ok(())
}
