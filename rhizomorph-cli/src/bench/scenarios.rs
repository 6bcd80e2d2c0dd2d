//! The benchmark workloads: echo scenarios from the hypha-rpc report, head-of-line blocking
//! under a bulk transfer, and a stalled reader — each run against rhizomorph and against the
//! plain msgpack-over-WebSocket baseline in the same process.
//!
//! Owns workload shapes and their drivers. Every payload carries its send time, so latency is
//! measured from the echo alone, without shared state between the sending and receiving tasks.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::ProgressBar;
use tokio::sync::Semaphore;

use super::measure::{rss_bytes, Latencies, Measurement};
use rhizomorph::config::Config;
use rhizomorph::connection::{Connection, Sender};
use rhizomorph::endpoint::Endpoint;
use rhizomorph::frame::Channel;
use rhizomorph::header::RoutingHeader;
use rhizomorph_testkit::msgpack_ws::{self, BaselineSink, BaselineStream};
use rhizomorph_testkit::payload::{stamp_of, stamped};

/// An echo scenario: message sizes, in order.
#[derive(Debug, Clone)]
pub struct EchoScenario {
    /// Name, as in the report.
    pub name: &'static str,
    /// Payload size of each message.
    pub sizes: Vec<usize>,
}

/// The four scenarios of the hypha-rpc batching report (`shared/seeds/002_*`).
pub fn report_scenarios(scale: f64) -> Vec<EchoScenario> {
    let n = |count: usize| ((count as f64 * scale).ceil() as usize).max(1);
    // The "dashboard" mix: status updates, metric arrays and metadata, repeated.
    let mix = [
        512,
        512,
        512,
        512,
        512,
        512,
        16 * 1024,
        16 * 1024,
        64 * 1024,
        256 * 1024,
    ];
    vec![
        EchoScenario {
            name: "small",
            sizes: vec![256; n(2000)],
        },
        EchoScenario {
            name: "medium",
            sizes: vec![20 * 1024; n(500)],
        },
        EchoScenario {
            name: "large",
            sizes: vec![2 << 20; n(20)],
        },
        EchoScenario {
            name: "mixed",
            sizes: (0..n(250)).map(|i| mix[i % mix.len()]).collect(),
        },
    ]
}

/// Sends echo payloads.
pub trait EchoTx: Send + 'static {
    /// Sends one payload.
    fn send(&mut self, payload: Bytes) -> impl Future<Output = io::Result<()>> + Send;
}

/// Receives echoed payloads.
pub trait EchoRx: Send {
    /// Receives one payload (`None`: connection over).
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;
}

/// Rhizomorph's sending half on one channel.
pub struct RhizoTx {
    sender: Sender,
    channel: Channel,
    header: RoutingHeader,
}

impl RhizoTx {
    /// Sends the bench's echo header on `rpc`.
    pub fn new(sender: Sender) -> Self {
        RhizoTx {
            sender,
            channel: Channel::Rpc,
            header: echo_header(),
        }
    }
}

impl EchoTx for RhizoTx {
    async fn send(&mut self, payload: Bytes) -> io::Result<()> {
        self.sender
            .send(self.channel, self.header.clone(), payload)
            .await
            .map(|_| ())
            .map_err(io::Error::other)
    }
}

impl EchoRx for Connection {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        Ok(Connection::recv(self).await.map(|m| m.payload))
    }
}

/// The baseline's sending half.
pub struct BaselineTx {
    sink: BaselineSink,
    session: u64,
}

impl BaselineTx {
    /// A sender on a baseline connection.
    pub fn new(sink: BaselineSink) -> Self {
        BaselineTx { sink, session: 0 }
    }
}

impl EchoTx for BaselineTx {
    async fn send(&mut self, payload: Bytes) -> io::Result<()> {
        self.session += 1;
        // A 22-character session id, as hypha-rpc uses.
        let id = format!("{:022}", self.session);
        msgpack_ws::send_payload(&mut self.sink, &id, &payload).await
    }
}

impl EchoRx for BaselineStream {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        Ok(msgpack_ws::recv_payload(self).await?.map(Bytes::from))
    }
}

/// Runs one echo scenario with `in_flight` messages outstanding; returns latencies and time.
pub async fn run_echo<T: EchoTx, R: EchoRx>(
    mut tx: T,
    rx: &mut R,
    sizes: &[usize],
    in_flight: usize,
    progress: &ProgressBar,
) -> io::Result<(Latencies, Duration)> {
    let epoch = Instant::now();
    let window = Arc::new(Semaphore::new(in_flight));
    let sizes_owned = sizes.to_vec();
    let w = window.clone();
    let sender = tokio::spawn(async move {
        for (i, &len) in sizes_owned.iter().enumerate() {
            w.acquire().await.map_err(io::Error::other)?.forget();
            tx.send(stamped(i as u64, epoch, len)).await?;
        }
        Ok::<_, io::Error>(tx)
    });
    let mut lat = Latencies::default();
    for _ in 0..sizes.len() {
        match rx.recv().await? {
            Some(p) => {
                if let Some(d) = stamp_of(&p, epoch) {
                    lat.record(d);
                }
                window.add_permits(1);
                progress.inc(1);
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection ended mid-scenario",
                ))
            }
        }
    }
    let elapsed = epoch.elapsed();
    sender.await.map_err(io::Error::other)??;
    Ok((lat, elapsed))
}

pub(crate) fn echo_header() -> RoutingHeader {
    RoutingHeader::new()
        .with("type", "method")
        .with("from", "ws-user-1/bench-client")
        .with("to", "ws-user-1/bench-echo")
        .with("method", "services.echo.echo")
}

/// Runs an echo scenario over rhizomorph at `url`.
pub async fn echo_rhizomorph(
    label: &str,
    url: &str,
    config: &Config,
    scenario: &EchoScenario,
    in_flight: usize,
    progress: &ProgressBar,
) -> io::Result<Measurement> {
    let mut conn = Endpoint::connect(url, config.clone())
        .await
        .map_err(io::Error::other)?;
    let tx = RhizoTx {
        sender: conn.sender(),
        channel: Channel::Rpc,
        header: echo_header(),
    };
    let (lat, elapsed) = run_echo(tx, &mut conn, &scenario.sizes, in_flight, progress).await?;
    let stats = conn.stats();
    conn.close().await;
    let mut m = lat.into_measurement(
        scenario.name,
        &mode(in_flight),
        label,
        n(scenario),
        bytes(scenario),
        elapsed,
    );
    let per_write = stats.frames_sent as f64 / stats.batches_sent.max(1) as f64;
    m.notes.push(("client frames per write".into(), per_write));
    Ok(m)
}

/// The measurement row of an echo scenario run by `implementation`.
pub fn echo_measurement(
    scenario: &EchoScenario,
    in_flight: usize,
    implementation: &str,
    lat: Latencies,
    elapsed: Duration,
) -> Measurement {
    lat.into_measurement(
        scenario.name,
        &mode(in_flight),
        implementation,
        n(scenario),
        bytes(scenario),
        elapsed,
    )
}

/// Runs an echo scenario over the baseline at `addr`.
pub async fn echo_baseline(
    addr: SocketAddr,
    scenario: &EchoScenario,
    in_flight: usize,
    progress: &ProgressBar,
) -> io::Result<Measurement> {
    let (sink, mut stream) = msgpack_ws::connect(addr).await?;
    let tx = BaselineTx { sink, session: 0 };
    let (lat, elapsed) = run_echo(tx, &mut stream, &scenario.sizes, in_flight, progress).await?;
    Ok(echo_measurement(
        scenario,
        in_flight,
        "msgpack-ws",
        lat,
        elapsed,
    ))
}

fn mode(in_flight: usize) -> String {
    if in_flight == 1 {
        "seq".into()
    } else {
        format!("{in_flight} in flight")
    }
}

fn n(s: &EchoScenario) -> u64 {
    s.sizes.len() as u64
}

fn bytes(s: &EchoScenario) -> u64 {
    s.sizes.iter().map(|&l| l.max(16) as u64).sum()
}

/// Head-of-line blocking: 256 B rpc round trips while 2 MB bulk messages saturate the link.
/// Runs for `duration`; returns the rpc latencies.
pub async fn hol_rhizomorph(
    label: &str,
    url: &str,
    config: &Config,
    duration: Duration,
    progress: &ProgressBar,
) -> io::Result<Measurement> {
    hol_rhizomorph_on(label, url, config, duration, Channel::Rpc, progress).await
}

/// [`hol_rhizomorph`] with the round trips on `rpc_channel`: `Channel::Bulk` puts them behind
/// the bulk messages on the same channel (one QUIC stream), the counterfactual that shows what
/// separate channels buy.
pub async fn hol_rhizomorph_on(
    label: &str,
    url: &str,
    config: &Config,
    duration: Duration,
    rpc_channel: Channel,
    progress: &ProgressBar,
) -> io::Result<Measurement> {
    let mut conn = Endpoint::connect(url, config.clone())
        .await
        .map_err(io::Error::other)?;
    let epoch = Instant::now();
    // The path's floor: rpc round trips on the idle shaped link.
    let mut idle = Latencies::default();
    for i in 0..50 {
        conn.send(rpc_channel, echo_header(), stamped(i, epoch, 256))
            .await
            .map_err(io::Error::other)?;
        let m = Connection::recv(&mut conn)
            .await
            .ok_or_else(|| io::Error::other("connection ended"))?;
        if let Some(d) = stamp_of(&m.payload, epoch) {
            idle.record(d);
        }
    }
    let bulk_sender = conn.sender();
    let sink = RoutingHeader::new().with("to", "sink");
    let bulk = tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            if bulk_sender
                .send(Channel::Bulk, sink.clone(), stamped(i, epoch, 2 << 20))
                .await
                .is_err()
            {
                return i;
            }
            i += 1;
        }
    });
    // Let the bulk transfer fill the path first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lat = Latencies::default();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < duration {
        conn.send(rpc_channel, echo_header(), stamped(i, epoch, 256))
            .await
            .map_err(io::Error::other)?;
        loop {
            let m = Connection::recv(&mut conn)
                .await
                .ok_or_else(|| io::Error::other("connection ended"))?;
            if m.channel == rpc_channel && m.header.get_str("to") != Some("sink") {
                if let Some(d) = stamp_of(&m.payload, epoch) {
                    lat.record(d);
                }
                break;
            }
        }
        progress.inc(1);
        i += 1;
    }
    let elapsed = start.elapsed();
    bulk.abort();
    let bulk_bytes = conn.stats().bytes_sent[Channel::Bulk.index()];
    conn.close_now(rhizomorph::frame::ErrorCode::NO_ERROR, "done");
    let mut m = lat.into_measurement("hol", "rpc under bulk", label, i, i * 256, elapsed);
    m.notes
        .push(("idle link rpc p50 ms".into(), idle.quantile_ms(0.5)));
    m.notes
        .push(("idle link rpc p99 ms".into(), idle.quantile_ms(0.99)));
    m.notes.push((
        "bulk MB/s".into(),
        bulk_bytes as f64 / epoch.elapsed().as_secs_f64() / 1e6,
    ));
    Ok(m)
}

/// The same head-of-line scenario over the baseline: rpc and bulk share one WebSocket.
pub async fn hol_baseline(
    addr: SocketAddr,
    duration: Duration,
    progress: &ProgressBar,
) -> io::Result<Measurement> {
    let (sink, mut stream) = msgpack_ws::connect(addr).await?;
    let sink = Arc::new(tokio::sync::Mutex::new(sink));
    let epoch = Instant::now();
    let bulk_sink = sink.clone();
    let bulk = tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            // Session "bulk": the server consumes it without echoing (as `to: sink` does).
            let p = stamped(i, epoch, 2 << 20);
            let r = msgpack_ws::send_payload(&mut *bulk_sink.lock().await, "bulk", &p).await;
            if r.is_err() {
                return;
            }
            i += 1;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lat = Latencies::default();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < duration {
        msgpack_ws::send_payload(&mut *sink.lock().await, "rpc", &stamped(i, epoch, 256)).await?;
        let p = msgpack_ws::recv_payload(&mut stream)
            .await?
            .ok_or_else(|| io::Error::other("connection ended"))?;
        if let Some(d) = stamp_of(&p, epoch) {
            lat.record(d);
        }
        progress.inc(1);
        i += 1;
    }
    let elapsed = start.elapsed();
    bulk.abort();
    Ok(lat.into_measurement("hol", "rpc under bulk", "msgpack-ws", i, i * 256, elapsed))
}

/// A stalled reader: the server stops reading for `stall` while the client tries to push
/// `total` bytes on bulk in 1 MiB messages. Reports the process RSS growth during the stall and
/// how much the sender got rid of, then the time to finish once the reader resumes.
pub async fn stall_rhizomorph(
    label: &str,
    url: &str,
    config: &Config,
    stall: Duration,
    total: u64,
    progress: &ProgressBar,
) -> io::Result<Measurement> {
    let conn = Endpoint::connect(url, config.clone())
        .await
        .map_err(io::Error::other)?;
    let rss_before = rss_bytes().unwrap_or(0);
    conn.send(
        Channel::Control,
        RoutingHeader::new().with("to", "stall"),
        stall.as_millis().to_string(),
    )
    .await
    .map_err(io::Error::other)?;
    let start = Instant::now();
    let sender = conn.sender();
    let sink = RoutingHeader::new().with("to", "sink");
    let chunk = stamped(0, start, 1 << 20);
    let push = tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < total {
            if sender
                .send(Channel::Bulk, sink.clone(), chunk.clone())
                .await
                .is_err()
            {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let mut peak_rss = rss_before;
    let mut queued_during_stall = 0u64;
    // The last sample well before the server wakes up (it started sleeping after `start`, but
    // by very little): a sample taken just after it would count what loopback carries in a few
    // milliseconds of reading — tens of MB — as sent during the stall.
    let until = stall.saturating_sub(Duration::from_millis(100));
    while start.elapsed() < until {
        tokio::time::sleep(Duration::from_millis(50).min(until - start.elapsed().min(until))).await;
        peak_rss = peak_rss.max(rss_bytes().unwrap_or(0));
        queued_during_stall = conn.stats().bytes_sent[Channel::Bulk.index()];
        progress.set_position((start.elapsed().as_millis() as u64).min(stall.as_millis() as u64));
    }
    let sent = push.await.map_err(io::Error::other)?;
    // Wait until the bulk stream has been handed to the wire.
    while conn.queued_bytes(Channel::Bulk) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    conn.close().await;
    let mut m = Latencies::default().into_measurement(
        "stall",
        "reader stalled",
        label,
        sent >> 20,
        sent,
        elapsed,
    );
    m.notes.push(("stall s".into(), stall.as_secs_f64()));
    m.notes.push((
        "sent during stall MB".into(),
        queued_during_stall as f64 / 1e6,
    ));
    m.notes.push((
        "RSS growth during stall MB".into(),
        peak_rss.saturating_sub(rss_before) as f64 / 1e6,
    ));
    Ok(m)
}
