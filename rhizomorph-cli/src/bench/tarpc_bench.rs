//! tarpc on rhizomorph against tarpc on its own TCP transport (`serde_transport` with
//! bincode, as tarpc's examples run it), same service, same run: calls per second at one
//! connection with one call in flight, one connection with 64, and 100 connections; and the
//! head-of-line shape, `status` p99 while an `upload` method saturates a shaped link.
//!
//! Owns the bench service ([`Bench`]), its servers (on the bench's server thread) and the
//! clients. Never changes what it measures to suit rhizomorph: both sides run tarpc's own
//! client and `BaseChannel`, with tarpc's defaults.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use rhizomorph::tarpc::{ClientTransport, ServerTransport};
use rhizomorph::{Channel, Config, Endpoint, Listener};
use serde_bytes::ByteBuf;
use tarpc::context;
use tarpc::server::{BaseChannel, Channel as _};
use tarpc::tokio_serde::formats::Bincode;

use super::measure::{Latencies, Measurement};
use super::rpc::{self, RpcClient};
use super::ServerSide;
use rhizomorph_testkit::payload;

/// The service both transports serve.
#[tarpc::service]
pub trait Bench {
    /// Returns its argument.
    async fn echo(data: ByteBuf) -> ByteBuf;
    /// A small call (the head-of-line probe).
    async fn status() -> u64;
    /// A big request: returns how many bytes arrived.
    async fn upload(data: ByteBuf) -> u64;
}

#[derive(Clone)]
struct BenchServer;

impl Bench for BenchServer {
    async fn echo(self, _: context::Context, data: ByteBuf) -> ByteBuf {
        data
    }
    async fn status(self, _: context::Context) -> u64 {
        1
    }
    async fn upload(self, _: context::Context, data: ByteBuf) -> u64 {
        data.len() as u64
    }
}

/// Serves one tarpc channel to completion, each request on a task of its own (tarpc's way).
async fn serve_channel<T>(channel: BaseChannel<BenchRequest, BenchResponse, T>)
where
    T: tarpc::Transport<tarpc::Response<BenchResponse>, tarpc::ClientMessage<BenchRequest>>
        + Send
        + 'static,
    T::Error: std::error::Error + Send + Sync + 'static,
{
    channel
        .execute(BenchServer.serve())
        .for_each(|f| async move {
            tokio::spawn(f);
        })
        .await;
}

/// The addresses of the three tarpc servers.
#[derive(Debug, Clone, Copy)]
pub struct TarpcServers {
    /// tarpc's own TCP transport.
    pub tcp: SocketAddr,
    /// rhizomorph over WebSocket.
    pub ws: SocketAddr,
    /// rhizomorph over QUIC.
    pub quic: SocketAddr,
}

/// Starts the servers on the bench's server thread.
pub async fn start(servers: &ServerSide, config: &Config) -> io::Result<TarpcServers> {
    let (config, quic_config) = (config.clone(), servers.quic_server.clone());
    servers
        .handle
        .spawn(async move {
            let mut tcp =
                tarpc::serde_transport::tcp::listen("127.0.0.1:0", Bincode::default).await?;
            tcp.config_mut().max_frame_length(64 << 20);
            let tcp_addr = tcp.local_addr();
            tokio::spawn(async move {
                while let Some(t) = tcp.next().await {
                    if let Ok(t) = t {
                        tokio::spawn(serve_channel(BaseChannel::with_defaults(t)));
                    }
                }
            });
            let ws = Listener::bind("127.0.0.1:0", config)
                .await
                .map_err(io::Error::other)?;
            let ws_addr = ws.local_addr()?;
            let quic = Listener::bind_quic("127.0.0.1:0", quic_config).map_err(io::Error::other)?;
            let quic_addr = quic.local_addr()?;
            for listener in [ws, quic] {
                tokio::spawn(async move {
                    while let Ok(conn) = listener.accept().await {
                        let t = ServerTransport::new(conn);
                        tokio::spawn(serve_channel(BaseChannel::with_defaults(t)));
                    }
                });
            }
            Ok(TarpcServers {
                tcp: tcp_addr,
                ws: ws_addr,
                quic: quic_addr,
            })
        })
        .await
        .map_err(io::Error::other)?
}

/// Which transport a tarpc client runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// tarpc's own TCP `serde_transport`, bincode.
    Tcp,
    /// rhizomorph over WebSocket.
    Ws,
    /// rhizomorph over QUIC.
    Quic,
}

impl Via {
    /// The row's implementation name.
    pub fn label(self) -> &'static str {
        match self {
            Via::Tcp => "tarpc-tcp",
            Via::Ws => "tarpc-rhizo-ws",
            Via::Quic => "tarpc-rhizo-quic",
        }
    }
}

/// A tarpc client to `addr` over `via`; uploads ride `bulk` on rhizomorph.
pub async fn connect(via: Via, addr: SocketAddr, quic_client: &Config) -> io::Result<BenchClient> {
    let config = tarpc::client::Config::default();
    Ok(match via {
        Via::Tcp => {
            let mut connect = tarpc::serde_transport::tcp::connect(addr, Bincode::default);
            connect.config_mut().max_frame_length(64 << 20);
            BenchClient::new(config, connect.await?).spawn()
        }
        Via::Ws | Via::Quic => {
            let (url, cfg) = match via {
                Via::Ws => (format!("ws://{addr}/"), Config::default()),
                _ => (format!("quic://{addr}/"), quic_client.clone()),
            };
            let conn = Endpoint::connect(&url, cfg)
                .await
                .map_err(io::Error::other)?;
            let transport =
                ClientTransport::new(conn.sender(), "bench").with_channels(|r| match r {
                    BenchRequest::Upload { .. } => Channel::Bulk,
                    _ => Channel::Rpc,
                });
            // The client transport holds a sender; the connection's receiver is not read
            // (replies are matched by the connection), so it is dropped here.
            drop(conn);
            BenchClient::new(config, transport).spawn()
        }
    })
}

/// One tarpc client making 256-byte echo calls (clones share a connection).
pub struct TarpcEcho(pub BenchClient);

impl RpcClient for TarpcEcho {
    async fn call(&mut self, request: Bytes) -> io::Result<Bytes> {
        let reply = self
            .0
            .echo(context::current(), ByteBuf::from(request.to_vec()))
            .await
            .map_err(io::Error::other)?;
        Ok(Bytes::from(reply.into_vec()))
    }
}

/// The three call shapes for one transport: `tarpc-seq` (one connection, one call in
/// flight), `tarpc-64` (one connection, 64 in flight), `tarpc-100` (100 connections, one each).
pub async fn run_calls(
    via: Via,
    addr: SocketAddr,
    quic_client: &Config,
    duration: Duration,
) -> io::Result<Vec<Measurement>> {
    let label = via.label();
    let mut out = Vec::new();
    let one = connect(via, addr, quic_client).await?;
    let c = one.clone();
    let mut m = rpc::run_rpc(label, 1, duration, |_| {
        let c = c.clone();
        async move { Ok(TarpcEcho(c)) }
    })
    .await?;
    (m.scenario, m.mode) = ("tarpc-seq".into(), "1 conn, 1 call".into());
    out.push(m);
    let mut m = rpc::run_rpc(label, 64, duration, |_| {
        let c = one.clone();
        async move { Ok(TarpcEcho(c)) }
    })
    .await?;
    (m.scenario, m.mode) = ("tarpc-64".into(), "1 conn, 64 calls".into());
    out.push(m);
    let mut m = rpc::run_rpc(label, 100, duration, |_| async {
        Ok(TarpcEcho(connect(via, addr, quic_client).await?))
    })
    .await?;
    (m.scenario, m.mode) = ("tarpc-100".into(), "100 conns".into());
    out.push(m);
    Ok(out)
}

/// `status` round trips for `duration` while two `upload`s of 1 MiB are always in flight on
/// the same client, through a shaped link at `addr`.
pub async fn run_hol(
    via: Via,
    addr: SocketAddr,
    quic_client: &Config,
    duration: Duration,
) -> io::Result<Measurement> {
    let client = connect(via, addr, quic_client).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut uploaders = Vec::new();
    for _ in 0..2 {
        let (client, stop) = (client.clone(), stop.clone());
        uploaders.push(tokio::spawn(async move {
            // Incompressible, so rhizomorph's compression does not shrink what the link carries.
            let chunk = ByteBuf::from(payload::incompressible(1 << 20, 7).to_vec());
            let mut bytes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut ctx = context::current();
                ctx.deadline = Instant::now() + Duration::from_secs(120);
                match client.upload(ctx, chunk.clone()).await {
                    Ok(n) => bytes += n,
                    Err(_) => break,
                }
            }
            bytes
        }));
    }
    // Let the uploads fill the link first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat = Latencies::default();
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < duration {
        let t0 = Instant::now();
        let mut ctx = context::current();
        ctx.deadline = Instant::now() + Duration::from_secs(60);
        client.status(ctx).await.map_err(io::Error::other)?;
        lat.record(t0.elapsed());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut uploaded = 0;
    for u in uploaders {
        uploaded += u.await.unwrap_or(0);
    }
    let mut m = lat.into_measurement(
        "tarpc-hol",
        "status under upload",
        via.label(),
        calls,
        uploaded,
        elapsed,
    );
    m.mb_per_sec = uploaded as f64 / (elapsed.as_secs_f64() + 0.5) / 1e6;
    Ok(m)
}
