//! `rhizomorph connect URL`: talk to a server by hand.
//!
//! Owns the interactive client: each line read from stdin is sent as one message (or, with
//! `--call`, as a call whose reply is printed with its round trip), and every message that
//! arrives is printed as it comes, one line each: channel, header fields, payload (text when
//! it is UTF-8, else hex). End of input closes the connection gracefully once the server has
//! been quiet for [`QUIET`] (answers to the last lines still arrive; at most [`LINGER`]). Never interprets
//! payloads beyond printing them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhizomorph::transport::tls;
use rhizomorph::{Channel, Config, Connection, Endpoint, Message, RoutingHeader};
use tokio::io::AsyncBufReadExt;

/// After the end of input, how long the server must be quiet before the connection closes.
pub const QUIET: Duration = Duration::from_millis(300);
/// After the end of input, the longest wait for the server to go quiet.
pub const LINGER: Duration = Duration::from_secs(5);

/// What `connect` does.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The server: `ws://`, `wss://` or `quic://`.
    pub url: String,
    /// SHA-256 fingerprint of the server's certificate to trust (what `serve --self-signed`
    /// prints), instead of the web PKI roots.
    pub pin: Option<String>,
    /// The channel lines are sent on.
    pub channel: Channel,
    /// Header fields of every message sent (`to: echo` when none is given).
    pub header: Vec<(String, String)>,
    /// Send each line as a call and print its reply.
    pub call: bool,
}

/// One received message as a line.
pub fn describe(m: &Message) -> String {
    let fields: Vec<String> = m
        .header
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}={}",
                String::from_utf8_lossy(&f.name),
                String::from_utf8_lossy(&f.value)
            )
        })
        .collect();
    let payload = match std::str::from_utf8(&m.payload) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("0x{}", rhizomorph_proto::hex::to_hex(&m.payload)),
    };
    let error = m
        .error
        .as_ref()
        .map(|e| format!(" (failed: {e})"))
        .unwrap_or_default();
    format!(
        "<- {} [{}] {payload}{error}",
        m.channel.name(),
        fields.join(" ")
    )
}

/// Connects and runs until stdin ends or the connection does. Errors are returned for the
/// caller to print (they name the URL and what to try).
pub async fn run(options: ConnectOptions) -> Result<(), rhizomorph::Error> {
    let mut config = Config::default();
    if let Some(fp) = &options.pin {
        config = config.with_client_tls(tls::client_tls_pinned(fp)?);
    }
    let conn = Endpoint::connect(&options.url, config).await?;
    eprintln!(
        "connected to {} ({} mode); each line is sent on {}{}; Ctrl-D to close",
        options.url,
        conn.mode().name(),
        options.channel.name(),
        if options.call { " as a call" } else { "" }
    );
    let mut header = RoutingHeader::new();
    for (name, value) in &options.header {
        header.push(name.clone(), value.clone());
    }
    if options.header.is_empty() {
        header.push("to", "echo");
    }
    let sender = conn.sender();
    let started = Instant::now();
    // Milliseconds since `started` of the last message received.
    let last = Arc::new(AtomicU64::new(0));
    let printer = tokio::spawn(print_incoming(conn, started, last.clone()));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if options.call {
            let start = Instant::now();
            match sender.call(options.channel, header.clone(), line).await {
                Ok(reply) => println!("{}  ({:.3} ms)", describe(&reply), ms(start)),
                Err(e) => println!("!! {e}"),
            }
        } else if let Err(e) = sender.send(options.channel, header.clone(), line).await {
            println!("!! {e}");
            break;
        }
    }
    // GOAWAY would refuse the server's answers to the last lines (wire.md §14.1.2): wait until
    // it has been quiet a moment first.
    let eof = Instant::now();
    loop {
        let since_last = started
            .elapsed()
            .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
        if (since_last >= QUIET && eof.elapsed() >= QUIET) || eof.elapsed() >= LINGER {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sender.close().await;
    let _ = printer.await;
    if let Some(reason) = sender.close_reason() {
        eprintln!("closed: {reason:?}");
    }
    Ok(())
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

async fn print_incoming(mut conn: Connection, started: Instant, last: Arc<AtomicU64>) {
    while let Some(m) = conn.recv().await {
        last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        println!("{}", describe(&m));
    }
}
