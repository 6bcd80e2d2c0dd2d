//! Request/response at many concurrent client connections (the load shape of the loop-sharding
//! note, `shared/seeds/004_*`): every client has one request outstanding, sends the next as soon
//! as the answer arrives, for a fixed time; the run reports requests per second and latency.
//!
//! Owns the [`RpcClient`] abstraction (one call = one round trip) and the driver. Every peer is
//! driven by the same loop, so the figures differ only by transport.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::measure::{Latencies, Measurement};
use super::scenarios::{EchoRx, EchoTx};

/// One client connection that makes calls.
pub trait RpcClient: Send + 'static {
    /// Sends `request` and returns the answer.
    fn call(&mut self, request: Bytes) -> impl Future<Output = io::Result<Bytes>> + Send;
}

/// An echo sender and receiver used as a client: a call is a send and the next receive.
pub struct EchoPair<T, R>(pub T, pub R);

impl<T: EchoTx, R: EchoRx + Send + 'static> RpcClient for EchoPair<T, R> {
    async fn call(&mut self, request: Bytes) -> io::Result<Bytes> {
        self.0.send(request).await?;
        self.1
            .recv()
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection ended"))
    }
}

/// A rhizomorph client that makes real calls ([`rhizomorph::Sender::call`]: the reply matched on
/// its `session`, wire.md §20.1), to compare with the hand-matched send-then-receive loop.
/// Clones of one (through [`RhizoCall::on`]) make many calls at once on one connection.
#[derive(Clone)]
pub struct RhizoCall {
    sender: rhizomorph::Sender,
    /// Keeps the connection's receiving side (the calls' replies need no reader).
    _conn: std::sync::Arc<rhizomorph::Connection>,
    header: rhizomorph::RoutingHeader,
}

impl RhizoCall {
    /// Calls over `conn` with the bench's echo header on `rpc`.
    pub fn new(conn: rhizomorph::Connection) -> RhizoCall {
        RhizoCall::on(std::sync::Arc::new(conn))
    }

    /// Calls over the shared `conn`.
    pub fn on(conn: std::sync::Arc<rhizomorph::Connection>) -> RhizoCall {
        RhizoCall {
            sender: conn.sender(),
            _conn: conn,
            header: super::scenarios::echo_header(),
        }
    }
}

impl RpcClient for RhizoCall {
    async fn call(&mut self, request: Bytes) -> io::Result<Bytes> {
        self.sender
            .call(rhizomorph::Channel::Rpc, self.header.clone(), request)
            .await
            .map(|m| m.payload)
            .map_err(io::Error::other)
    }
}

/// A rhizomorph client that matches replies by hand, as an application without
/// [`Sender::call`](rhizomorph::Sender::call) must: each request carries a fresh `session`
/// (wire.md §20.1), the reply is received from the connection and its `session` checked. The
/// cheapest matching there is (one call in flight needs no table), so `call()` is compared with
/// the least an application pays for matching, beside the unmatched echo loop.
pub struct RhizoMatched {
    sender: rhizomorph::Sender,
    conn: rhizomorph::Connection,
    header: rhizomorph::RoutingHeader,
    session: u64,
}

impl RhizoMatched {
    /// Matches by hand over `conn`, which must hand replies to its receiver
    /// ([`Config::with_exchanges(false)`](rhizomorph::Config::with_exchanges)).
    pub fn new(conn: rhizomorph::Connection) -> RhizoMatched {
        RhizoMatched {
            sender: conn.sender(),
            conn,
            header: super::scenarios::echo_header(),
            session: 0,
        }
    }
}

impl RpcClient for RhizoMatched {
    async fn call(&mut self, request: Bytes) -> io::Result<Bytes> {
        self.session += 1;
        let session = self.session.to_string();
        let mut header = self.header.clone();
        header.set("session", session.clone());
        self.sender
            .send(rhizomorph::Channel::Rpc, header, request)
            .await
            .map_err(io::Error::other)?;
        let reply = self
            .conn
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection ended"))?;
        match reply.header.get("session") {
            Some(s) if s[..] == *session.as_bytes() => Ok(reply.payload),
            other => Err(io::Error::other(format!(
                "reply for session {other:?}, expected {session}"
            ))),
        }
    }
}

/// Connects `clients` clients with `connect` (at most 32 handshakes at a time), then lets each
/// make 256-byte calls back to back for `duration`.
pub async fn run_rpc<C, F, Fut>(
    implementation: &str,
    clients: usize,
    duration: Duration,
    connect: F,
) -> io::Result<Measurement>
where
    C: RpcClient,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = io::Result<C>>,
{
    let mut conns = Vec::with_capacity(clients);
    for i in 0..clients {
        conns.push(connect(i).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let cpu = super::cpu::process_cpu();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (i, mut client) in conns.into_iter().enumerate() {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::default();
            let mut payload = vec![0x5au8; 256];
            payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let payload = Bytes::from(payload);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let answer = client.call(payload.clone()).await?;
                if answer.len() < 256 {
                    return Err(io::Error::other(format!(
                        "short answer: {} bytes",
                        answer.len()
                    )));
                }
                lat.record(t.elapsed());
            }
            Ok::<_, io::Error>((lat, client))
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Latencies::default();
    let mut keep = Vec::with_capacity(clients);
    for t in tasks {
        let (lat, client) = t.await.map_err(io::Error::other)??;
        all.merge(&lat);
        keep.push(client);
    }
    let elapsed = start.elapsed();
    let n = all.len();
    let mut m = all.into_measurement(
        &format!("rpc-{clients}"),
        &format!("{clients} clients"),
        implementation,
        n,
        n * 256,
        elapsed,
    );
    super::cpu::note(&mut m, cpu);
    drop(keep);
    Ok(m)
}
