//! `bench --legacy`: the report's echo scenarios in legacy mode through a real hypha server
//! (started from the venv's `hypha` package), next to the native protocol in the same run.
//!
//! Owns the hypha server process, a rhizomorph legacy echo provider, the real hypha-rpc Python
//! provider (`tests/interop/hypha_peers.py`), and the caller's side of hypha-rpc's call format.
//! Never changes what it measures to suit it: calls are real hypha-rpc calls
//! (`services.echo-svc.echo`, compact promise), answered with `<session>.resolve`.

use std::io;

use bytes::Bytes;

use super::scenarios::{EchoRx, EchoTx};
use rhizomorph::config::Config;
use rhizomorph::connection::{Connection, Sender};
use rhizomorph::endpoint::Endpoint;
use rhizomorph::frame::Channel;
use rhizomorph::header::RoutingHeader;
use rhizomorph::legacy::{msgpack, AuthInfo};

fn legacy_config(config: &Config, client_id: &str) -> Config {
    config.clone().with_legacy_auth(AuthInfo {
        client_id: Some(client_id.into()),
        ..AuthInfo::default()
    })
}

/// Connects a rhizomorph echo provider in legacy mode: every call is answered with
/// `<session>.resolve` carrying the call's own `extra` bytes (`{"args": [x], …}`: the resolve
/// callback's arguments are the call's). Returns its full id.
pub async fn start_rust_provider(url: &str, config: &Config) -> io::Result<String> {
    let mut conn = Endpoint::connect(url, legacy_config(config, "rhizo-provider"))
        .await
        .map_err(io::Error::other)?;
    let id = conn
        .legacy_info()
        .map(|i| i.full_id())
        .ok_or_else(|| io::Error::other("the hypha server did not answer in legacy mode"))?;
    tokio::spawn(async move {
        let sender = conn.sender();
        while let Some(m) = conn.recv().await {
            let (Some(from), Some(session)) =
                (m.header.get_str("from"), m.header.get_str("session"))
            else {
                continue;
            };
            let header = RoutingHeader::new()
                .with("type", "method")
                .with("to", from.to_string())
                .with("method", format!("{session}.resolve"));
            if sender.send(Channel::Rpc, header, m.payload).await.is_err() {
                break;
            }
        }
    });
    Ok(id)
}

/// A caller connection in legacy mode.
pub async fn connect_caller(url: &str, config: &Config) -> io::Result<Connection> {
    Endpoint::connect(url, legacy_config(config, "rhizo-caller"))
        .await
        .map_err(io::Error::other)
}

/// The caller's sending half: each payload is one hypha-rpc call of
/// `services.echo-svc.echo(payload)` with a compact promise.
pub struct LegacyCallTx {
    /// The caller's sender.
    pub sender: Sender,
    /// The provider's full id.
    pub to: String,
    /// Calls made so far (session ids).
    pub calls: u64,
}

impl EchoTx for LegacyCallTx {
    async fn send(&mut self, payload: Bytes) -> io::Result<()> {
        self.calls += 1;
        let header = RoutingHeader::new()
            .with("type", "method")
            .with("to", self.to.clone())
            .with("method", "services.echo-svc.echo")
            .with("session", format!("{:022}", self.calls));
        // {"args": [bin], "promise": "*", "t": 15.0}
        let mut extra = Vec::with_capacity(payload.len() + 32);
        msgpack::write_map_len(&mut extra, 3);
        msgpack::write_str(&mut extra, b"args");
        extra.push(0x91);
        msgpack::write_bin(&mut extra, &payload);
        msgpack::write_str(&mut extra, b"promise");
        msgpack::write_str(&mut extra, b"*");
        msgpack::write_str(&mut extra, b"t");
        extra.push(0xcb);
        extra.extend_from_slice(&15.0f64.to_be_bytes());
        self.sender
            .send(Channel::Rpc, header, extra)
            .await
            .map(|_| ())
            .map_err(io::Error::other)
    }
}

/// The first argument of a `.resolve` (`{"args": [bin, …], …}`), as a view of the payload.
pub fn first_bin_arg(payload: &Bytes) -> Option<Bytes> {
    let buf = &payload[..];
    let mut pos = 0;
    let entries = msgpack::read_map_len(buf, &mut pos).ok()?;
    for _ in 0..entries {
        let key = msgpack::read_str(buf, &mut pos).ok()??;
        if key == b"args" {
            msgpack::read_array_len(buf, &mut pos).ok()??;
            let bin = msgpack::read_bin(buf, &mut pos).ok()??;
            return Some(payload.slice_ref(bin));
        }
        pos = msgpack::skip_value(buf, pos).ok()?;
    }
    None
}

/// The caller's receiving half: the echoed payload out of each `.resolve`.
pub struct LegacyCallRx<'a>(pub &'a mut Connection);

impl EchoRx for LegacyCallRx<'_> {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let Some(m) = self.0.recv().await else {
                return Ok(None);
            };
            let method = m.header.get_str("method").unwrap_or("");
            if method.ends_with(".resolve") {
                return first_bin_arg(&m.payload)
                    .map(Some)
                    .ok_or_else(|| io::Error::other("a .resolve without a bin argument"));
            }
            if method.ends_with(".reject") {
                return Err(io::Error::other(format!(
                    "call rejected: {:?}",
                    String::from_utf8_lossy(&m.payload)
                )));
            }
            // Heartbeats and other traffic are not answers.
        }
    }
}
