//! A complete tarpc service over rhizomorph: `status` (a small call on `rpc`), `tail` (a
//! long poll for new log lines on `stream`: the streaming-ish method) and `upload` (a big
//! request on `bulk`), server and client in one process. `status` calls keep answering while
//! an upload is on its way: the upload rides a lower-priority channel.
//!
//! Run: `cargo run --release -p rhizomorph --features tarpc --example tarpc_store`
//!
//! Moving an existing tarpc service over changes only the lines that open transports:
//! `serde_transport::tcp::listen` becomes a [`Listener`] whose connections go through
//! [`ServerTransport::new`], and `serde_transport::tcp::connect` becomes
//! [`Endpoint::connect`] plus [`ClientTransport::new`]. The service trait, its
//! implementation, `BaseChannel` and the generated client stay as they are.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rhizomorph::tarpc::{ClientTransport, ServerTransport};
use rhizomorph::{Channel, Config, Endpoint, Listener};
use serde_bytes::ByteBuf;
use tarpc::context;
use tarpc::server::{BaseChannel, Channel as _};

#[tarpc::service]
trait Store {
    /// How many bytes were stored so far.
    async fn status() -> u64;
    /// Log lines after the first `since`, waiting up to a second for one to appear.
    async fn tail(since: usize) -> Vec<String>;
    /// Stores `data`; returns its length.
    async fn upload(data: ByteBuf) -> u64;
}

#[derive(Clone, Default)]
struct StoreServer {
    log: Arc<Mutex<Vec<String>>>,
    stored: Arc<Mutex<u64>>,
}

impl Store for StoreServer {
    async fn status(self, _: context::Context) -> u64 {
        *self.stored.lock().unwrap()
    }

    async fn tail(self, _: context::Context, since: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let lines: Vec<String> = self
                .log
                .lock()
                .unwrap()
                .iter()
                .skip(since)
                .cloned()
                .collect();
            if !lines.is_empty() || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn upload(self, _: context::Context, data: ByteBuf) -> u64 {
        let n = data.len() as u64;
        *self.stored.lock().unwrap() += n;
        self.log.lock().unwrap().push(format!("stored {n} bytes"));
        n
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Server: every connection is one tarpc channel (for several services on one connection,
    // see `rhizomorph::tarpc::Services`).
    let listener = Listener::bind("127.0.0.1:0", Config::default()).await?;
    let url = listener.url();
    let server = StoreServer::default();
    tokio::spawn(async move {
        while let Ok(conn) = listener.accept().await {
            let channel = BaseChannel::with_defaults(ServerTransport::new(conn));
            tokio::spawn(
                channel
                    .execute(server.clone().serve())
                    .for_each(|f| async move {
                        tokio::spawn(f);
                    }),
            );
        }
    });

    // Client: each method picks its channel.
    let conn = Endpoint::connect(&url, Config::default()).await?;
    let transport = ClientTransport::new(conn.sender(), "store").with_channels(|req| match req {
        StoreRequest::Upload { .. } => Channel::Bulk,
        StoreRequest::Tail { .. } => Channel::Stream,
        StoreRequest::Status { .. } => Channel::Rpc,
    });
    let client = StoreClient::new(tarpc::client::Config::default(), transport).spawn();
    println!("connected to {url}");

    let tail = tokio::spawn({
        let client = client.clone();
        async move {
            let mut seen = 0;
            while seen < 4 {
                let lines = client
                    .tail(context::current(), seen)
                    .await
                    .unwrap_or_default();
                for line in &lines {
                    println!("  tail: {line}");
                }
                seen += lines.len();
            }
        }
    });
    let uploader = tokio::spawn({
        let client = client.clone();
        async move {
            for _ in 0..4 {
                let data = ByteBuf::from(vec![42u8; 16 << 20]);
                client.upload(context::current(), data).await.unwrap();
            }
        }
    });
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    while !uploader.is_finished() {
        let t0 = Instant::now();
        client.status(context::current()).await?;
        slowest = slowest.max(t0.elapsed());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    uploader.await?;
    tail.await?;
    println!(
        "64 MiB uploaded on bulk; {calls} status calls meanwhile, the slowest {slowest:?}; \
         stored: {} bytes",
        client.status(context::current()).await?
    );
    Ok(())
}
