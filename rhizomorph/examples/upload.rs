//! A streamed upload (wire.md §20.3) on `bulk` while rpc calls keep their latency: 1 GiB from
//! an `AsyncRead`, read by the server as an `AsyncRead`, in bounded memory on both sides.
//!
//! Run: `cargo run --release --example upload`

use std::time::{Duration, Instant};

use rhizomorph::{Channel, CompressionPolicy, Config, Endpoint, Error, Listener, RoutingHeader};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Compression off: the body is one repeated byte, which would compress to nothing.
    let config = Config::default().with_compression(CompressionPolicy::Off);
    let listener = Listener::bind("127.0.0.1:0", config.clone()).await?;
    let url = listener.url();
    tokio::spawn(async move {
        while let Ok(mut conn) = listener.accept().await {
            // Uploads get their own receiver and task; calls stay on the connection's loop.
            let Some(mut bulk) = conn.receiver(Channel::Bulk) else {
                return;
            };
            let notify = conn.sender();
            tokio::spawn(async move {
                while let Some(m) = bulk.recv().await {
                    let Ok(upload) = bulk.transfer(m) else {
                        continue;
                    };
                    let mut reader = upload.into_reader();
                    let n = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
                    let done = RoutingHeader::new().with("event", "uploaded");
                    let text = format!("{n:?}");
                    let _ = notify.send(Channel::Control, done, text).await;
                }
            });
            let sender = conn.sender();
            tokio::spawn(async move {
                while let Some(request) = conn.recv().await {
                    if request.header.get_str("event").is_none() {
                        let _ = sender.reply(&request, "ok").await;
                    }
                }
            });
        }
    });

    let mut conn = Endpoint::connect(&url, config).await?;
    let sender = conn.sender();
    let up = sender.clone();
    let start = Instant::now();
    let upload = tokio::spawn(async move {
        let body = tokio::io::repeat(0x5a).take(1 << 30);
        let header = RoutingHeader::new().with("to", "store");
        up.send_transfer(Channel::Bulk, header, body).await
    });
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    while !upload.is_finished() {
        let t = Instant::now();
        sender
            .call(
                Channel::Rpc,
                RoutingHeader::new().with("method", "status"),
                "",
            )
            .await?;
        slowest = slowest.max(t.elapsed());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = upload.await.expect("upload task")?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "uploaded {sent} bytes in {secs:.2} s ({:.0} MB/s); {calls} calls meanwhile, slowest {slowest:?}",
        sent as f64 / secs / 1e6
    );
    if let Some(done) = conn.recv().await {
        println!("server: {}", String::from_utf8_lossy(&done.payload));
    }
    conn.close().await;
    Ok(())
}
