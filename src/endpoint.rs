//! Endpoints: connect to a server, or listen and accept clients.
//!
//! Owns the choice of transport from a URL scheme. Never holds a connection's state.

use crate::config::Config;
use crate::connection::Connection;
use crate::error::Error;
use crate::transport::ws::{self, WsListener};

/// Opens client connections.
#[derive(Debug)]
pub struct Endpoint;

impl Endpoint {
    /// Connects to `url`: `ws://host:port/path` (loopback, or with
    /// `allow_plain_non_loopback`) or `wss://host:port/path`.
    pub async fn connect(url: &str, config: Config) -> Result<Connection, Error> {
        ws::connect(url, &config).await
    }
}

/// Accepts server connections.
pub struct Listener {
    inner: WsListener,
}

impl Listener {
    /// Listens on `addr` (e.g. `127.0.0.1:7878`) over WebSocket; `wss://` if the config has
    /// server TLS.
    pub async fn bind(addr: &str, config: Config) -> Result<Listener, Error> {
        Ok(Listener {
            inner: WsListener::bind(addr, config).await?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        let scheme = if self.inner.is_tls() { "wss" } else { "ws" };
        match self.local_addr() {
            Ok(a) => format!("{scheme}://{a}/"),
            Err(_) => format!("{scheme}://?/"),
        }
    }

    /// Accepts the next connection (TCP, TLS, WebSocket and HELLO handshakes).
    pub async fn accept(&self) -> Result<Connection, Error> {
        self.inner.accept().await
    }

    /// Accepts the next TCP connection; the returned future completes its handshakes, so a
    /// server can run it in a task and go back to accepting.
    pub async fn accept_raw(
        &self,
    ) -> std::io::Result<
        impl std::future::Future<Output = Result<Connection, Error>> + Send + 'static,
    > {
        self.inner.accept_raw().await
    }
}
