//! The framed WebSocket transport (wire.md §16): `ws://` over TCP, `wss://` over rustls.
//!
//! Owns connecting and accepting: TCP, TLS, the WebSocket upgrade with the `rhizomorph.v1`
//! subprotocol check (§16.1, §3.4), and handing the upgraded stream to the native driver
//! (`driver.rs`) or to legacy mode (`transport::legacy`, from the same stream and the bytes
//! already read), both over rhizomorph's own RFC 6455 framing in `socket.rs`. Never looks
//! inside a batch.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tracing::{info_span, warn};

use crate::config::Config;
use crate::error::ConnectStage;
use crate::error::Error;
use crate::frame::ErrorCode;
use crate::session::Session;
use crate::transport::connect_error::{self, Progress};
use crate::transport::dispatch::{self, Opening, SharedDispatch};
use crate::transport::resume::{self, DetachedSessions, Resumer};
use crate::transport::shared::{CloseReason, Mode, Opened, Shared};
use crate::transport::url::{Scheme, ServerUrl};
use crate::websocket::Role;
use futures_util::StreamExt;
use socket::{Control, SplitIo, Verdict, WsReader, WsWriter};

pub(crate) mod driver;
pub(crate) mod socket;

/// The WebSocket subprotocol that selects rhizomorph (wire.md §3.1).
pub const SUBPROTOCOL: &str = "rhizomorph.v1";

/// The largest WebSocket message a native peer accepts: one batch (§16.2.2), plus slack.
fn native_max_message(config: &Config) -> usize {
    config.session.settings.max_batch_size as usize + 1024
}

fn tune_socket(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(lowat) = config.notsent_lowat {
        // spec: wire.md §16.4 — bound the bytes parked in the kernel where §7 cannot reorder them.
        socket2::SockRef::from(stream).set_tcp_notsent_lowat(lowat)?;
    }
    Ok(())
}

/// Connects to `url` (`ws://host:port/path` or `wss://…`), runs the WebSocket and HELLO
/// handshakes, and returns the open connection.
pub(crate) async fn connect(url: &str, config: &Config) -> Result<Opened, Error> {
    let session = Session::client(config.session.clone(), Instant::now());
    match transport(url, config, Attach::New(Box::new(session))).await? {
        Some(opened) => Ok(opened),
        None => Err(Error::SessionResumed), // not reached: a new session is always handed out
    }
}

/// What a new transport carries: a new session, or a detached one it resumes (wire.md §21.6).
enum Attach {
    New(Box<Session>),
    Resume(Arc<Shared>, SharedDispatch),
}

/// TCP, TLS, the upgrade and the HELLO exchange for `attach`, within the connect timeout.
async fn transport(url: &str, config: &Config, attach: Attach) -> Result<Option<Opened>, Error> {
    let progress = Progress::default();
    match tokio::time::timeout(
        config.connect_timeout,
        connect_inner(url, config, &progress, attach),
    )
    .await
    {
        Ok(r) => r.map_err(|e| connect_error::explain(url, &progress, e)),
        Err(_) => Err(connect_error::timed_out(
            url,
            &progress,
            config.connect_timeout,
        )),
    }
}

/// A client's resumer (wire.md §21.5.2): reconnects to the same URL with backoff until the
/// session resumes, is refused (it goes on as a new session) or its time limit passes.
struct Reconnect {
    url: String,
    config: Config,
}

impl Resumer for Reconnect {
    fn detached(&self, shared: Arc<Shared>, dispatch: SharedDispatch) {
        let (url, config) = (self.url.clone(), self.config.clone());
        let (s, d) = (shared.clone(), dispatch.clone());
        resume::reconnect(shared, dispatch, move || {
            let attach = Attach::Resume(s.clone(), d.clone());
            let (url, config) = (url.clone(), config.clone());
            // The new transport's tasks carry on (and report a loss).
            async move { transport(&url, &config, attach).await.map(|_| ()) }
        });
    }
}

async fn connect_inner(
    url: &str,
    config: &Config,
    progress: &Progress,
    attach: Attach,
) -> Result<Option<Opened>, Error> {
    let parsed = ServerUrl::parse(url)?;
    let secure = match parsed.scheme {
        Scheme::Ws => false,
        Scheme::Wss => true,
        Scheme::Quic => {
            return Err(Error::InvalidAddress {
                addr: url.to_string(),
                reason: "expected ws:// or wss://".into(),
            })
        }
    };
    if !secure && !parsed.is_loopback() && !config.allow_plain_non_loopback {
        return Err(Error::PlainNotAllowed {
            addr: parsed.authority.clone(),
        });
    }
    progress.at(ConnectStage::Tcp);
    let tcp = TcpStream::connect((parsed.host.as_str(), parsed.port)).await?;
    tune_socket(&tcp, config)?;
    let peer_addr = tcp.peer_addr()?;
    let target = Target {
        url,
        authority: &parsed.authority,
        path: &parsed.path,
        peer_addr,
    };
    if secure {
        let tls = super::client_tls(config)?;
        let name = rustls::pki_types::ServerName::try_from(parsed.host.clone()).map_err(|e| {
            Error::InvalidAddress {
                addr: url.to_string(),
                reason: format!("not a TLS server name: {e}"),
            }
        })?;
        progress.at(ConnectStage::Tls);
        let stream = tokio_rustls::TlsConnector::from(tls.config)
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Tls(e.to_string()))?;
        open(stream, target, config, progress, attach).await
    } else {
        open(tcp, target, config, progress, attach).await
    }
}

/// Where a client connects: the URL as given, its authority (the `Host` header), the request
/// path, and the address the TCP connection reached.
struct Target<'a> {
    url: &'a str,
    authority: &'a str,
    path: &'a str,
    peer_addr: SocketAddr,
}

/// The WebSocket upgrade offering `rhizomorph.v1`, then native mode, or legacy mode on the same
/// WebSocket if the server selected no subprotocol (wire.md §3.4.2).
async fn open<S: SplitIo>(
    mut stream: S,
    t: Target<'_>,
    config: &Config,
    progress: &Progress,
    attach: Attach,
) -> Result<Option<Opened>, Error> {
    progress.at(ConnectStage::Upgrade);
    let (response, tail) =
        socket::client_handshake(&mut stream, t.authority, t.path, &[SUBPROTOCOL]).await?;
    progress.at(ConnectStage::Hello);
    if response.protocol.as_deref() == Some(SUBPROTOCOL) {
        crate::transport::metrics::count_connection(Mode::Native);
        if let Attach::Resume(shared, dispatch) = attach {
            reattach(stream, tail, shared, dispatch, config, t.peer_addr);
            return Ok(None);
        }
        let Attach::New(session) = attach else {
            unreachable!("resume handled above")
        };
        let resumer: Option<Arc<dyn Resumer>> =
            (config.session.settings.resume_buffer > 0).then(|| {
                Arc::new(Reconnect {
                    url: t.url.to_string(),
                    config: config.clone(),
                }) as Arc<dyn Resumer>
            });
        let opened = start(
            stream,
            tail,
            Role::Client,
            *session,
            config,
            t.peer_addr,
            resumer,
        );
        return opened.await.map(Some);
    }
    if matches!(attach, Attach::Resume(..)) {
        // A server that now speaks legacy mode cannot resume a native session.
        return Err(Error::NotRhizomorph {
            addr: t.url.to_string(),
        });
    }
    // spec: wire.md §3.4.2 — the server selected no subprotocol: not rhizomorph. Fall back by
    // default, visibly, on this same WebSocket; `require_native` refuses.
    if !config.legacy.fallback {
        return Err(Error::NotRhizomorph {
            addr: t.url.to_string(),
        });
    }
    warn!(
        peer = %t.url,
        "server did not select rhizomorph.v1: falling back to legacy msgpack mode (wire.md §3.4.2)"
    );
    crate::transport::metrics::count_fallback();
    let conn = crate::transport::legacy::client(stream, tail, config, t.peer_addr, t.url).await?;
    crate::transport::metrics::count_connection(Mode::Legacy);
    Ok(Some(conn))
}

/// The WebSocket close status for how the session ended (wire.md §16.3).
fn close_status(reason: Option<CloseReason>) -> (u16, String) {
    match reason {
        Some(CloseReason::Closed { code, reason }) => {
            let status = match code {
                ErrorCode::NO_ERROR => 1000,
                ErrorCode::GOING_AWAY => 1001,
                ErrorCode::AUTH_FAILED => 1008,
                ErrorCode::MESSAGE_TOO_LARGE => 1009,
                ErrorCode::INTERNAL_ERROR => 1011,
                _ => 1002,
            };
            (status, reason)
        }
        Some(CloseReason::Lost(why)) => (1011, why),
        None => (1000, String::new()),
    }
}

/// The reader and writer over an upgraded WebSocket (`tail`: bytes read past the handshake),
/// for the connection whose shared state `cell` will name (set before the driver starts).
fn ws_io<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    role: Role,
    config: &Config,
    cell: &Arc<OnceLock<Weak<Shared>>>,
) -> (WsReader<S::Read>, WsWriter<S::Write>) {
    let (r, w) = stream.split_io();
    // Weak: the tasks own the connection's state, not the other way round.
    let control = Control::new(Arc::new({
        let cell = cell.clone();
        move || {
            if let Some(s) = cell.get().and_then(Weak::upgrade) {
                s.wake_writer.notify_one();
            }
        }
    }));
    let reader = WsReader::new(
        r,
        tail,
        role,
        native_max_message(config),
        config.ws_read_buffer,
        control.clone(),
    );
    let cell = cell.clone();
    let writer = WsWriter::new(
        w,
        role,
        control,
        Box::new(move || {
            close_status(
                cell.get()
                    .and_then(Weak::upgrade)
                    .and_then(|s| s.close_reason()),
            )
        }),
    );
    (reader, writer)
}

/// Client: a new transport for a detached session (wire.md §21.6): its driver tasks start
/// and the session sends its HELLO asking to resume.
fn reattach<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    shared: Arc<Shared>,
    dispatch: SharedDispatch,
    config: &Config,
    peer_addr: SocketAddr,
) {
    let cell = Arc::new(OnceLock::new());
    let _ = cell.set(Arc::downgrade(&shared));
    let (reader, writer) = ws_io(stream, tail, Role::Client, config, &cell);
    dispatch::with_session(&shared, &dispatch, |s| s.reconnect(Instant::now()));
    let span = info_span!("connection", peer = %peer_addr, role = "client", transport = "ws", resumed = true);
    driver::spawn(shared.clone(), reader, writer, dispatch, span);
    shared.wake_writer.notify_one();
}

/// Starts the driver over an upgraded WebSocket (`tail`: bytes read past the handshake) and
/// waits for the HELLO exchange.
async fn start<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    role: Role,
    session: Session,
    config: &Config,
    peer_addr: SocketAddr,
    resumer: Option<Arc<dyn Resumer>>,
) -> Result<Opened, Error> {
    let session_role = session.role();
    let opening = Opening::new(session, config, peer_addr);
    let shared = opening.shared.clone();
    if let Some(r) = resumer {
        let _ = shared.resumer.set(r);
    }
    let cell = Arc::new(OnceLock::new());
    let _ = cell.set(Arc::downgrade(&shared));
    let (reader, writer) = ws_io(stream, tail, role, config, &cell);
    let span = info_span!("connection", peer = %peer_addr, role = ?session_role, transport = "ws");
    driver::spawn(shared, reader, writer, opening.dispatch.clone(), span);
    opening.established().await
}

/// Server with resumption on: reads the client's HELLO before anything else. A resume request
/// for a session this listener holds, from the same identity, hands the new transport to that
/// session (`Err(SessionResumed)`: no new connection); anything else starts a new connection,
/// answering a refused resume with its reason (wire.md §21.6).
async fn start_resumable<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    config: &Config,
    peer_addr: SocketAddr,
    registry: &Arc<DetachedSessions>,
) -> Result<Opened, Error> {
    let mut session = Session::server(config.session.clone(), Instant::now());
    let cell: Arc<OnceLock<Weak<Shared>>> = Arc::new(OnceLock::new());
    let (mut reader, writer) = ws_io(stream, tail, Role::Server, config, &cell);
    let first = tokio::time::timeout(config.session.hello_timeout, reader.next()).await;
    let mut hello = None;
    if let Ok(Some(Ok(batch))) = first {
        session.handle_batch(Instant::now(), batch);
        while let Some(e) = session.poll_event() {
            if let crate::session::Event::HelloReceived { token, agent } = e {
                hello = Some(crate::config::AuthRequest {
                    token,
                    agent,
                    peer_addr,
                });
            }
        }
    } else if let Ok(Some(Err(e))) = first {
        return Err(e.into());
    }
    match resume::resume_requested(registry, &mut session, hello.as_ref(), config) {
        Ok((old, old_dispatch)) => {
            let _ = cell.set(Arc::downgrade(&old));
            let span = info_span!("connection", peer = %peer_addr, role = "server", transport = "ws", resumed = true);
            driver::spawn(old.clone(), reader, writer, old_dispatch, span);
            old.wake_writer.notify_one();
            Err(Error::SessionResumed)
        }
        Err(status) => {
            // A new connection: the HELLO already read is answered as the driver would have.
            let spawn = |shared: &Arc<Shared>, dispatch: &SharedDispatch| {
                let _ = cell.set(Arc::downgrade(shared));
                let span =
                    info_span!("connection", peer = %peer_addr, role = "server", transport = "ws");
                driver::spawn(shared.clone(), reader, writer, dispatch.clone(), span);
            };
            resume::accept_new(session, config, peer_addr, hello, status, registry, spawn).await
        }
    }
}

/// Binds with `SO_REUSEPORT`: several listeners (one per runtime or core) on one port, the
/// kernel spreading connections among them.
async fn bind_reuse_port(addr: &str) -> Result<TcpListener, Error> {
    let sock_addr = super::resolve_first(addr, addr).await?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(sock_addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&sock_addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// A WebSocket listener that accepts rhizomorph connections.
pub(crate) struct WsListener {
    listener: TcpListener,
    config: Arc<Config>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// The sessions clients may resume (wire.md §21), when resumption is on.
    registry: Option<Arc<DetachedSessions>>,
}

impl WsListener {
    /// Binds `addr`. Without TLS in `config`, a non-loopback address needs
    /// `allow_plain_non_loopback`.
    pub async fn bind(addr: &str, config: Config) -> Result<WsListener, Error> {
        let listener = if config.reuse_port {
            bind_reuse_port(addr).await?
        } else {
            TcpListener::bind(addr).await?
        };
        let local = listener.local_addr()?;
        if config.server_tls.is_none()
            && !local.ip().is_loopback()
            && !config.allow_plain_non_loopback
        {
            return Err(Error::PlainNotAllowed {
                addr: local.to_string(),
            });
        }
        let acceptor = config
            .server_tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let registry = (config.session.settings.resume_buffer > 0)
            .then(|| DetachedSessions::new(config.detached_cap));
        Ok(WsListener {
            listener,
            config: Arc::new(config),
            acceptor,
            registry,
        })
    }

    /// Detached sessions held for resumption, and the replay bytes they hold together.
    pub fn detached_sessions(&self) -> (usize, u64) {
        self.registry
            .as_ref()
            .map_or((0, 0), |r| r.detached_replay())
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether this listener speaks TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        self.acceptor.is_some()
    }

    /// Accepts the next TCP connection and returns a future that completes its handshakes
    /// (run it in its own task so one slow client does not hold up the others).
    pub async fn accept_raw(
        &self,
    ) -> io::Result<impl std::future::Future<Output = Result<Opened, Error>> + Send + 'static> {
        let (tcp, peer_addr) = self.listener.accept().await?;
        let config = self.config.clone();
        let acceptor = self.acceptor.clone();
        let registry = self.registry.clone();
        // One timer decides how a slow HELLO ends: the session's (wire.md §18: CLOSE with
        // TIMEOUT). This outer bound, for TLS and the upgrade, must not race it: when it fired
        // first the connection was dropped instead, and closed with NO_ERROR.
        let bound = config
            .connect_timeout
            .max(config.session.hello_timeout + std::time::Duration::from_secs(2));
        Ok(async move {
            tokio::time::timeout(bound, handshake(tcp, peer_addr, config, acceptor, registry))
                .await
                .map_err(|_| Error::Timeout("accept handshake"))?
        })
    }
}

async fn handshake(
    tcp: TcpStream,
    peer_addr: SocketAddr,
    config: Arc<Config>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    registry: Option<Arc<DetachedSessions>>,
) -> Result<Opened, Error> {
    tune_socket(&tcp, &config)?;
    match acceptor {
        Some(acceptor) => {
            let tls = acceptor
                .accept(tcp)
                .await
                .map_err(|e| Error::Tls(e.to_string()))?;
            accept_ws(tls, peer_addr, &config, registry).await
        }
        None => accept_ws(tcp, peer_addr, &config, registry).await,
    }
}

/// The WebSocket upgrade, then the native (HELLO) or legacy (auth JSON) handshake.
async fn accept_ws<S: SplitIo>(
    mut stream: S,
    peer_addr: SocketAddr,
    config: &Config,
    registry: Option<Arc<DetachedSessions>>,
) -> Result<Opened, Error> {
    let (serve_legacy, legacy_only) = (config.legacy.serve, config.legacy.only);
    let (_, protocol, tail) = socket::server_handshake(&mut stream, |req| {
        let offered = req.protocols.iter().any(|p| p == SUBPROTOCOL);
        if (!offered && serve_legacy) || legacy_only {
            // spec: wire.md §3.4.1 — served in legacy mode: no subprotocol selected, and no
            // permessage-deflate (legacy.md §L2.1; we never accept an extension).
            Verdict::Accept(None)
        } else if !offered {
            // spec: wire.md §3.4.1 — a peer that does not offer rhizomorph.v1 is served in
            // legacy mode or refused; this listener refuses.
            Verdict::Refuse(
                400,
                "this endpoint speaks the rhizomorph.v1 WebSocket subprotocol only".into(),
            )
        } else {
            Verdict::Accept(Some(SUBPROTOCOL))
        }
    })
    .await?;
    if protocol.is_none() {
        let conn = crate::transport::legacy::server(stream, tail, config, peer_addr).await?;
        crate::transport::metrics::count_connection(Mode::Legacy);
        return Ok(conn);
    }
    crate::transport::metrics::count_connection(Mode::Native);
    if let Some(registry) = &registry {
        return start_resumable(stream, tail, config, peer_addr, registry).await;
    }
    let session = Session::server(config.session.clone(), Instant::now());
    start(stream, tail, Role::Server, session, config, peer_addr, None).await
}
