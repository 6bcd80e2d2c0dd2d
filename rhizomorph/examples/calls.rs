//! Request/response with calls (wire.md §20.1): a calculator server, a client making calls
//! concurrently, one that fails and one that times out (and is cancelled on the server).
//!
//! Run: `cargo run --release --example calls`

use std::time::Duration;

use rhizomorph::{Channel, Config, Endpoint, Error, Listener, RoutingHeader};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let listener = Listener::bind("127.0.0.1:0", Config::default()).await?;
    let url = listener.url();
    tokio::spawn(async move {
        while let Ok(mut conn) = listener.accept().await {
            let sender = conn.sender();
            tokio::spawn(async move {
                while let Some(request) = conn.recv().await {
                    let sender = sender.clone();
                    // Each call on a task of its own: a slow one holds up nothing.
                    tokio::spawn(async move {
                        let numbers: Vec<i64> = std::str::from_utf8(&request.payload)
                            .unwrap_or("")
                            .split(',')
                            .filter_map(|n| n.trim().parse().ok())
                            .collect();
                        match request.header.get_str("method") {
                            Some("add") => {
                                let sum: i64 = numbers.iter().sum();
                                let _ = sender.reply(&request, sum.to_string()).await;
                            }
                            Some("slow") => {
                                // Stop when the caller gives up (its Call was dropped).
                                if let Ok(cancelled) = sender.cancelled(&request) {
                                    if cancelled.await {
                                        println!("server: the slow call was cancelled");
                                    }
                                }
                            }
                            other => {
                                let reason = format!("no method {other:?}");
                                let _ = sender.reply_error(&request, &reason).await;
                            }
                        }
                    });
                }
            });
        }
    });

    let conn = Endpoint::connect(&url, Config::default()).await?;
    let sender = conn.sender();
    let calls = (1..=5).map(|i| {
        let sender = sender.clone();
        async move {
            let header = RoutingHeader::new().with("method", "add");
            let reply = sender
                .call(Channel::Rpc, header, format!("{i}, {i}"))
                .await?;
            Ok::<_, Error>(String::from_utf8_lossy(&reply.payload).into_owned())
        }
    });
    for sum in futures_util::future::join_all(calls).await {
        println!("client: add -> {}", sum?);
    }
    let failed = sender
        .call(
            Channel::Rpc,
            RoutingHeader::new().with("method", "mul"),
            "2, 3",
        )
        .await;
    println!("client: mul -> {failed:?}");
    let slow = sender
        .call(
            Channel::Rpc,
            RoutingHeader::new().with("method", "slow"),
            "",
        )
        .timeout(Duration::from_millis(200))
        .await;
    println!("client: slow -> {slow:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.close().await;
    Ok(())
}
