//! `bench --legacy`: the report's echo scenarios in legacy mode through a real hypha server
//! (started from the venv's `hypha` package), next to the native protocol in the same run.
//!
//! Owns the hypha server process, a rhizomorph legacy echo provider, the real hypha-rpc Python
//! provider (`tests/interop/hypha_peers.py`), and the caller's side of hypha-rpc's call format.
//! Never changes what it measures to suit it: calls are real hypha-rpc calls
//! (`services.echo-svc.echo`, compact promise), answered with `<session>.resolve`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::scenarios::{EchoRx, EchoTx};
use crate::config::Config;
use crate::connection::{Connection, Sender};
use crate::endpoint::Endpoint;
use crate::frame::Channel;
use crate::legacy::{msgpack, AuthInfo};
use crate::session::RoutingHeader;

/// The venv holding hypha and hypha-rpc: `$RHIZOMORPH_VENV`, else `.venv` in the crate.
pub fn venv_python() -> io::Result<PathBuf> {
    let venv = std::env::var_os("RHIZOMORPH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let python = venv.join("bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import hypha, hypha_rpc, msgpack, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(python)
    } else {
        Err(io::Error::other(format!(
            "--legacy needs hypha and hypha-rpc in {}: run scripts/test.sh (it creates the venv) \
             or set RHIZOMORPH_VENV",
            venv.display()
        )))
    }
}

/// A real hypha server on loopback, stopped when dropped.
pub struct HyphaServer {
    _child: Child,
    /// Its WebSocket URL (`ws://127.0.0.1:<port>/ws`).
    pub url: String,
}

impl HyphaServer {
    /// Starts `python -m hypha.server` on a free port (per-client rate limits raised: the
    /// default 200 msg/s is for the public internet) and waits until it accepts connections.
    pub async fn start(python: &Path) -> io::Result<HyphaServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(python)
            .args(["-m", "hypha.server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .env("HYPHA_WS_MSG_RATE_LIMIT", "1000000")
            .env("HYPHA_WS_MSG_BURST_LIMIT", "1000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                return Err(io::Error::other("the hypha server did not start in 120 s"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(HyphaServer {
            _child: child,
            url: format!("ws://127.0.0.1:{port}/ws"),
        })
    }
}

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

/// The real hypha-rpc provider (`tests/interop/hypha_peers.py provider`): returns the process
/// (stopped when dropped) and the provider's full id.
pub async fn start_python_provider(python: &Path, url: &str) -> io::Result<(Child, String)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/hypha_peers.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(["provider", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .map_err(|_| io::Error::other("the Python provider did not register in 60 s"))??
    .ok_or_else(|| io::Error::other("the Python provider exited"))?;
    let v: serde_json::Value = serde_json::from_str(&line).map_err(io::Error::other)?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| io::Error::other(format!("unexpected provider output {line}")))?
        .to_string();
    Ok((child, id))
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
