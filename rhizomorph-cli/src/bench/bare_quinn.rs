//! The bare-quinn baseline: what an application gets from quinn alone — one bidirectional
//! stream, length-prefixed messages (u32 little-endian length, then the bytes), echoed back.
//!
//! Same TLS (rustls, ring), same certificate and the same QUIC windows as rhizomorph's QUIC
//! transport, so the ratio between the two is rhizomorph's own cost. Never multiplexes,
//! prioritizes or frames anything else.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};

use super::scenarios::{EchoRx, EchoTx};
use rhizomorph::config::Config;
use rhizomorph::transport::quic::{quinn_client_config, quinn_server_config};

/// ALPN of the bare echo protocol (not rhizomorph's).
const ALPN: &[u8] = b"bare-echo";

fn transport(config: &Config) -> quinn::TransportConfig {
    let mut t = rhizomorph::transport::quic::transport_config(config);
    t.max_concurrent_bidi_streams(1u32.into());
    t
}

/// Starts a bare echo server on 127.0.0.1 with the config's server TLS; returns its address.
pub fn start_server(config: &Config) -> io::Result<(SocketAddr, quinn::Endpoint)> {
    let tls = config
        .server_tls
        .as_ref()
        .ok_or_else(|| io::Error::other("the bare-quinn baseline needs server TLS"))?;
    let server = quinn_server_config(tls, ALPN, transport(config)).map_err(io::Error::other)?;
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().expect("literal"))?;
    let addr = endpoint.local_addr()?;
    let accept = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(echo_stream(send, recv));
                }
            });
        }
    });
    Ok((addr, endpoint))
}

async fn echo_stream(mut send: SendStream, mut recv: RecvStream) {
    while let Ok(Some(payload)) = read_message(&mut recv).await {
        if write_message(&mut send, payload).await.is_err() {
            return;
        }
    }
}

async fn read_message(recv: &mut RecvStream) -> io::Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(io::Error::other(e)),
    }
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    recv.read_exact(&mut buf).await.map_err(io::Error::other)?;
    Ok(Some(Bytes::from(buf)))
}

async fn write_message(send: &mut SendStream, payload: Bytes) -> io::Result<()> {
    let len = Bytes::copy_from_slice(&(payload.len() as u32).to_le_bytes());
    send.write_all_chunks(&mut [len, payload])
        .await
        .map_err(io::Error::other)
}

/// The sending half of a bare-quinn client.
pub struct BareTx {
    send: SendStream,
    _conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl EchoTx for BareTx {
    async fn send(&mut self, payload: Bytes) -> io::Result<()> {
        write_message(&mut self.send, payload).await
    }
}

/// The receiving half of a bare-quinn client.
pub struct BareRx {
    recv: RecvStream,
}

impl EchoRx for BareRx {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        read_message(&mut self.recv).await
    }
}

/// Connects to a bare echo server with the config's client TLS; opens the one stream.
pub async fn connect(addr: SocketAddr, config: &Config) -> io::Result<(BareTx, BareRx)> {
    let tls = config
        .client_tls
        .as_ref()
        .ok_or_else(|| io::Error::other("the bare-quinn baseline needs client TLS"))?;
    let client = quinn_client_config(tls, ALPN, transport(config)).map_err(io::Error::other)?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("literal"))?;
    let conn = endpoint
        .connect_with(client, addr, "localhost")
        .map_err(io::Error::other)?
        .await
        .map_err(io::Error::other)?;
    let (send, recv) = conn.open_bi().await.map_err(io::Error::other)?;
    Ok((
        BareTx {
            send,
            _conn: conn,
            _endpoint: endpoint,
        },
        BareRx { recv },
    ))
}
