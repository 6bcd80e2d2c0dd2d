//! Endpoints: connect to a server, or listen and accept clients.
//!
//! Owns the choice of transport from a URL scheme, and turning what a driver opened into the
//! [`Connection`] an application holds. Never holds a connection's state.

use crate::config::Config;
use crate::connection::Connection;
use crate::error::Error;
use crate::transport::quic::{self, ClientSocket, QuicListener};
use crate::transport::ws::{self, WsListener};

/// Opens client connections.
#[derive(Debug)]
pub struct Endpoint;

impl Endpoint {
    /// Connects to `url`: `ws://host:port/path` (loopback, or with
    /// `allow_plain_non_loopback`), `wss://host:port/path`, or `quic://host:port`.
    ///
    /// Each QUIC connection made here has its own UDP socket; to open many, share one with
    /// [`QuicClient`].
    pub async fn connect(url: &str, config: Config) -> Result<Connection, Error> {
        let opened = if url.starts_with("quic://") {
            quic::connect(url, &config).await?
        } else {
            ws::connect(url, &config).await?
        };
        Ok(opened.into())
    }
}

/// One UDP socket for many client connections.
///
/// [`Endpoint::connect`] gives each QUIC connection its own UDP endpoint (socket, buffers,
/// driver task: about 300 KiB); a client that opens many connections opens them through one
/// `QuicClient` instead (about 50 KiB each), and quinn tells them apart by connection id.
/// Connections outlive the `QuicClient` they were made with.
///
/// ```no_run
/// # async fn demo() -> Result<(), rhizomorph::Error> {
/// use rhizomorph::QuicClient;
/// let client = QuicClient::bind(rhizomorph::Config::default(), false)?;
/// let a = client.connect("quic://127.0.0.1:7879").await?;
/// let b = client.connect("quic://127.0.0.1:7879").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct QuicClient {
    socket: ClientSocket,
}

impl QuicClient {
    /// Binds a client UDP socket (IPv6 if `ipv6`, else IPv4) for connections made with
    /// `config`. Must be called within a tokio runtime, which drives the socket.
    pub fn bind(config: Config, ipv6: bool) -> Result<QuicClient, Error> {
        Ok(QuicClient {
            socket: ClientSocket::bind(config, ipv6)?,
        })
    }

    /// The local UDP address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }

    /// Connects to `url` (`quic://host:port`) over this client's socket.
    pub async fn connect(&self, url: &str) -> Result<Connection, Error> {
        Ok(self.socket.connect(url).await?.into())
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
            inner: ListenerKind::Ws(WsListener::bind(addr, with_shared_budget(config)).await?),
        })
    }

    /// Listens on UDP `addr` over QUIC (wire.md §17). The config must carry server TLS.
    pub fn bind_quic(addr: &str, config: Config) -> Result<Listener, Error> {
        Ok(Listener {
            inner: ListenerKind::Quic(QuicListener::bind(addr, with_shared_budget(config))?),
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
            ListenerKind::Ws(l) => {
                let opening = l.accept_raw().await?;
                Box::pin(async move { Ok(opening.await?.into()) })
            }
            ListenerKind::Quic(l) => {
                let opening = l.accept_raw().await?;
                Box::pin(async move { Ok(opening.await?.into()) })
            }
        })
    }
}

/// A listener's connections share one reassembly budget (wire.md §8.3.1), unless the config
/// already names one (several listeners sharing a budget).
fn with_shared_budget(mut config: Config) -> Config {
    if config.session.shared_reassembly.is_none() {
        let budget = crate::session::ReassemblyBudget::new(config.server_reassembly);
        config.session.shared_reassembly = Some(budget);
    }
    config
}
