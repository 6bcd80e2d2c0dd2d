//! Endpoints: connect to a server, or listen and accept clients.
//!
//! Owns the choice of transport from a URL scheme, and turning what a driver opened into the
//! [`Connection`] an application holds. Never holds a connection's state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::debug;

use crate::config::Config;
use crate::connection::Connection;
use crate::error::Error;
use crate::transport::handle::Handle;
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
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropped before it returns, the half-made connection is closed (nothing was
    /// handed out, nothing is left running).
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
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`Endpoint::connect`].
    pub async fn connect(&self, url: &str) -> Result<Connection, Error> {
        Ok(self.socket.connect(url).await?.into())
    }
}

/// Which transport a listener serves.
enum ListenerKind {
    Ws(WsListener),
    Quic(QuicListener),
}

impl ListenerKind {
    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            ListenerKind::Ws(l) => l.local_addr(),
            ListenerKind::Quic(l) => l.local_addr(),
        }
    }

    /// Waits for the next client; the future completes its handshakes.
    async fn next(&self) -> std::io::Result<Handshake> {
        Ok(match self {
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

/// A client's handshakes, as [`Listener::accept_raw`] hands them out.
pub type Handshake =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Connection, Error>> + Send>>;

/// What a listener's acceptor task and its handles share.
struct ListenerShared {
    kind: ListenerKind,
    /// Handshakes running at once ([`Config::max_concurrent_handshakes`]).
    handshakes: Arc<tokio::sync::Semaphore>,
    backlog: usize,
    /// Every connection this listener handed out (or holds for `accept`), to drain on shutdown.
    /// Weak: being listed keeps nothing alive (the shared state holds the socket's write half).
    live: Mutex<Vec<Weak<dyn Handle>>>,
    /// Set by [`Listener::shutdown`]: no handshake starts any more.
    shutting_down: tokio_util::sync::CancellationToken,
    /// Handshakes that failed (TLS, upgrade, HELLO, authentication, timeout).
    failed: AtomicU64,
}

impl ListenerShared {
    /// Remembers `conn` for the drain; forgets connections that ended (amortized: when the
    /// list doubled since the last sweep).
    fn register(&self, conn: &Connection) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.len() >= 64 && live.len().is_power_of_two() {
            live.retain(|h| h.upgrade().is_some_and(|h| !h.common().is_closed()));
        }
        live.push(Arc::downgrade(&conn.handle_arc()));
    }
}

/// How a [`Listener::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections that drained (GOAWAY, what was in flight finished, CLOSE) within the
    /// deadline.
    pub drained: usize,
    /// Connections closed at the deadline with work still in flight.
    pub forced: usize,
}

/// Accepts server connections, over WebSocket or QUIC.
///
/// Handshakes (TLS, WebSocket upgrade, HELLO) run concurrently in tasks of their own, at most
/// [`Config::max_concurrent_handshakes`] at once, each bounded by `connect_timeout`; `accept`
/// hands out connections whose handshakes are done, in the order they finished. A slow or
/// hostile client therefore never holds up the next.
///
/// ```no_run
/// # async fn demo() -> Result<(), rhizomorph::Error> {
/// use rhizomorph::{Config, Listener};
/// let listener = Listener::bind("127.0.0.1:7878", Config::default()).await?;
/// while let Ok(mut conn) = listener.accept().await {
///     tokio::spawn(async move {
///         while let Some(m) = conn.recv().await {
///             let _ = conn.send(m.channel, m.header, m.payload).await;
///         }
///     });
/// }
/// # Ok(()) }
/// ```
pub struct Listener {
    shared: Arc<ListenerShared>,
    /// Finished handshakes, started lazily by the first `accept`.
    accepted: tokio::sync::Mutex<Option<mpsc::Receiver<Connection>>>,
    scheme: &'static str,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("url", &self.url())
            .finish()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The acceptor task stops (and with it the handshakes it would start).
        self.shared.shutting_down.cancel();
    }
}

impl Listener {
    fn new(kind: ListenerKind, config: &Config) -> Listener {
        let scheme = match &kind {
            ListenerKind::Ws(l) if l.is_tls() => "wss",
            ListenerKind::Ws(_) => "ws",
            ListenerKind::Quic(_) => "quic",
        };
        Listener {
            shared: Arc::new(ListenerShared {
                kind,
                handshakes: Arc::new(tokio::sync::Semaphore::new(
                    config.max_concurrent_handshakes.max(1),
                )),
                backlog: config.accept_backlog.max(1),
                live: Mutex::new(Vec::new()),
                shutting_down: tokio_util::sync::CancellationToken::new(),
                failed: AtomicU64::new(0),
            }),
            accepted: tokio::sync::Mutex::new(None),
            scheme,
        }
    }

    /// Listens on `addr` (e.g. `127.0.0.1:7878`) over WebSocket; `wss://` if the config has
    /// server TLS.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the socket is bound only when it returns.
    pub async fn bind(addr: &str, config: Config) -> Result<Listener, Error> {
        let config = with_shared_budget(config);
        let kind = ListenerKind::Ws(WsListener::bind(addr, config.clone()).await?);
        Ok(Listener::new(kind, &config))
    }

    /// Listens on UDP `addr` over QUIC (wire.md §17). The config must carry server TLS.
    pub fn bind_quic(addr: &str, config: Config) -> Result<Listener, Error> {
        let config = with_shared_budget(config);
        let kind = ListenerKind::Quic(QuicListener::bind(addr, config.clone())?);
        Ok(Listener::new(kind, &config))
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.shared.kind.local_addr()
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        match self.local_addr() {
            Ok(a) => format!("{}://{a}/", self.scheme),
            Err(_) => format!("{}://?/", self.scheme),
        }
    }

    /// Detached resumable sessions this listener holds (wire.md §21.5), and the replay bytes
    /// they hold together (bounded by [`Config::detached_cap`]).
    pub fn detached_sessions(&self) -> (usize, u64) {
        match &self.shared.kind {
            ListenerKind::Ws(l) => l.detached_sessions(),
            ListenerKind::Quic(l) => l.detached_sessions(),
        }
    }

    /// Handshakes that failed so far (TLS, upgrade, HELLO, authentication, timeout); each is
    /// logged at `debug` with its cause.
    pub fn failed_handshakes(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// The next connection whose handshakes are done (see the type's doc). A client whose
    /// handshake fails is logged and counted ([`failed_handshakes`](Self::failed_handshakes)),
    /// never returned: `accept` errs only once the listener is shut down
    /// ([`Error::ListenerShutDown`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a connection is taken only when the future completes with it; dropped
    /// earlier, it stays for the next `accept`.
    pub async fn accept(&self) -> Result<Connection, Error> {
        let mut accepted = self.accepted.lock().await;
        if accepted.is_none() {
            *accepted = Some(self.start_acceptor());
        }
        let rx = accepted.as_mut().ok_or(Error::ListenerShutDown)?;
        tokio::select! {
            biased;
            conn = rx.recv() => conn.ok_or(Error::ListenerShutDown),
            () = self.shared.shutting_down.cancelled() => Err(Error::ListenerShutDown),
        }
    }

    /// Starts the task that accepts clients and runs their handshakes.
    fn start_acceptor(&self) -> mpsc::Receiver<Connection> {
        let (tx, rx) = mpsc::channel(self.shared.backlog);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    () = shared.shutting_down.cancelled() => return,
                    p = shared.handshakes.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let next = tokio::select! {
                    () = shared.shutting_down.cancelled() => return,
                    n = shared.kind.next() => n,
                };
                let handshake = match next {
                    Ok(h) => h,
                    Err(e) => {
                        // Out of descriptors, or a transient socket error: back off a little.
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let (shared, tx) = (shared.clone(), tx.clone());
                tokio::spawn(async move {
                    let r = handshake.await;
                    drop(permit);
                    match r {
                        Ok(conn) => {
                            shared.register(&conn);
                            if shared.shutting_down.is_cancelled() {
                                conn.handle_arc().close_gracefully();
                            }
                            // A full backlog waits here (its handshake slot is free already).
                            let _ = tx.send(conn).await;
                        }
                        // A resumed session carries on over the new transport (wire.md §21.6).
                        Err(Error::SessionResumed) => debug!("a detached session resumed"),
                        Err(e) => {
                            shared.failed.fetch_add(1, Ordering::Relaxed);
                            debug!(error = %e, "handshake failed");
                        }
                    }
                });
            }
        });
        rx
    }

    /// Waits for the next client and returns the future of its handshakes, for a server that
    /// runs them itself. Bypasses `accept`'s concurrency limit and connection tracking
    /// (`shutdown` does not see these connections); do not mix the two on one listener.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a client is taken only when it returns; its handshake runs only when the
    /// returned future is polled (dropping that future drops the client).
    pub async fn accept_raw(&self) -> std::io::Result<Handshake> {
        self.shared.kind.next().await
    }

    /// Graceful shutdown: stops accepting (no handshake starts; `accept` returns
    /// [`Error::ListenerShutDown`]), sends GOAWAY on every connection `accept` handed out or
    /// holds (wire.md §14.1: the peer starts nothing new; what was in flight finishes, replies
    /// owed included), and waits until each has closed — at most `deadline`, after which the
    /// rest are closed at once. The socket itself closes when the `Listener` is dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the shutdown has begun at the first poll; dropping the future stops
    /// waiting for the drain and skips closing the stragglers at the deadline.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.shared.shutting_down.cancel();
        let live: Vec<Weak<dyn Handle>> =
            std::mem::take(&mut *self.shared.live.lock().unwrap_or_else(|p| p.into_inner()));
        let live: Vec<Arc<dyn Handle>> = live
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|h| !h.common().is_closed())
            .collect();
        for h in &live {
            h.close_gracefully();
        }
        let all = futures_util::future::join_all(live.iter().map(|h| {
            let common = h.common();
            common.changed.wait_for(|| common.close_reason())
        }));
        let _ = tokio::time::timeout(deadline, all).await;
        let mut report = ShutdownReport {
            drained: 0,
            forced: 0,
        };
        for h in &live {
            if h.common().is_closed() {
                report.drained += 1;
            } else {
                h.close_now(
                    crate::frame::ErrorCode::NO_ERROR,
                    "server shutdown deadline",
                );
                report.forced += 1;
            }
        }
        report
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
