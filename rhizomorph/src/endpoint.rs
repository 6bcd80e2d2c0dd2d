//! Endpoints: connect to a server, or listen and accept clients.
//!
//! Owns the choice of transport from a URL scheme. Never holds a connection's state.

use crate::config::Config;
use crate::connection::Connection;
use crate::error::Error;
use crate::transport::quic::{self, QuicListener};
use crate::transport::ws::{self, WsListener};

/// Opens client connections.
#[derive(Debug)]
pub struct Endpoint;

impl Endpoint {
    /// Connects to `url`: `ws://host:port/path` (loopback, or with
    /// `allow_plain_non_loopback`), `wss://host:port/path`, or `quic://host:port`.
    ///
    /// Each QUIC connection made here has its own UDP socket; to open many, share one with
    /// [`QuicClient`](crate::transport::quic::QuicClient).
    pub async fn connect(url: &str, config: Config) -> Result<Connection, Error> {
        if url.starts_with("quic://") {
            quic::connect(url, &config).await
        } else {
            ws::connect(url, &config).await
        }
    }
}

/// Which transport a listener serves.
enum ListenerKind {
    Ws(WsListener),
    Quic(QuicListener),
}

/// Accepts server connections, over WebSocket or QUIC.
pub struct Listener {
    inner: ListenerKind,
}

impl Listener {
    /// Listens on `addr` (e.g. `127.0.0.1:7878`) over WebSocket; `wss://` if the config has
    /// server TLS.
    pub async fn bind(addr: &str, config: Config) -> Result<Listener, Error> {
        Ok(Listener {
            inner: ListenerKind::Ws(WsListener::bind(addr, config).await?),
        })
    }

    /// Listens on UDP `addr` over QUIC (wire.md §17). The config must carry server TLS.
    pub fn bind_quic(addr: &str, config: Config) -> Result<Listener, Error> {
        Ok(Listener {
            inner: ListenerKind::Quic(QuicListener::bind(addr, config)?),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match &self.inner {
            ListenerKind::Ws(l) => l.local_addr(),
            ListenerKind::Quic(l) => l.local_addr(),
        }
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        let scheme = match &self.inner {
            ListenerKind::Ws(l) if l.is_tls() => "wss",
            ListenerKind::Ws(_) => "ws",
            ListenerKind::Quic(_) => "quic",
        };
        match self.local_addr() {
            Ok(a) => format!("{scheme}://{a}/"),
            Err(_) => format!("{scheme}://?/"),
        }
    }

    /// Accepts the next connection (all handshakes, HELLO included).
    pub async fn accept(&self) -> Result<Connection, Error> {
        self.accept_raw().await?.await
    }

    /// Waits for the next client; the returned future completes its handshakes, so a server
    /// can run it in a task and go back to accepting.
    pub async fn accept_raw(
        &self,
    ) -> std::io::Result<
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Connection, Error>> + Send>>,
    > {
        Ok(match &self.inner {
            ListenerKind::Ws(l) => Box::pin(l.accept_raw().await?),
            ListenerKind::Quic(l) => Box::pin(l.accept_raw().await?),
        })
    }
}
