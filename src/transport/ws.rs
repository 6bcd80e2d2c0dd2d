//! The framed WebSocket transport (wire.md §16): `ws://` over TCP, `wss://` over rustls.
//!
//! Owns the TCP/TLS/WebSocket handshakes, the `rhizomorph.v1` subprotocol check (§16.1, §3.4)
//! and the adaptation of WebSocket binary messages to the driver's batches. Never looks inside
//! a batch.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{future, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as ServerRequest, Response,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{Connector, WebSocketStream};
use tracing::{info_span, warn};

use crate::config::Config;
use crate::connection::{CloseReason, Connection, Mode, Shared};
use crate::error::Error;
use crate::session::Session;
use crate::transport::driver::{self, Dispatch};

/// The WebSocket subprotocol that selects rhizomorph (wire.md §3.1).
pub const SUBPROTOCOL: &str = "rhizomorph.v1";

fn ws_config(config: &Config) -> WebSocketConfig {
    // A WebSocket message is one batch (§16.2.2): allow the batch size we announce, plus slack.
    ws_config_up_to(
        config,
        config.session.settings.max_batch_size as usize + 1024,
    )
}

/// Legacy mode: one WebSocket message per message, up to our `MAX_MESSAGE_SIZE` (hypha accepts
/// 16 MiB, Python clients 1 MiB); no permessage-deflate (legacy.md §L2.1).
fn legacy_ws_config(config: &Config) -> WebSocketConfig {
    ws_config_up_to(
        config,
        config.session.settings.max_message_size as usize + 64 * 1024,
    )
}

fn ws_config_up_to(config: &Config, max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // Write each message at once: bytes queued here are out of the scheduler's reach (§16.4).
        .write_buffer_size(0)
        .read_buffer_size(config.ws_read_buffer)
}

/// A server learns the mode only during the upgrade: it reads with the larger of both limits.
fn server_ws_config(config: &Config) -> WebSocketConfig {
    if !config.legacy.serve {
        return ws_config(config);
    }
    let (native, legacy) = (ws_config(config), legacy_ws_config(config));
    if legacy.max_message_size > native.max_message_size {
        legacy
    } else {
        native
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
pub async fn connect(url: &str, config: &Config) -> Result<Connection, Error> {
    tokio::time::timeout(config.connect_timeout, connect_inner(url, config))
        .await
        .map_err(|_| Error::Timeout("connect"))?
}

async fn connect_inner(url: &str, config: &Config) -> Result<Connection, Error> {
    let bad = |reason: &str| Error::InvalidAddress {
        addr: url.to_string(),
        reason: reason.to_string(),
    };
    let (secure, rest) = if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else {
        return Err(bad("expected ws:// or wss://"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let addr_str = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:{}", if secure { 443 } else { 80 })
    };
    if !secure && !is_loopback(host) && !config.allow_plain_non_loopback {
        return Err(Error::PlainNotAllowed {
            addr: authority.to_string(),
        });
    }
    match upgrade(url, &addr_str, secure, true, config).await {
        Ok((ws, peer_addr)) => {
            let session = Session::client(config.session.clone(), std::time::Instant::now());
            crate::metrics::count_connection(Mode::Native);
            start(ws, session, config, peer_addr).await
        }
        // spec: wire.md §3.4.2 — fall back by default, visibly; `require_native` refuses.
        Err(Error::NotRhizomorph { addr }) if config.legacy.fallback => {
            warn!(
                peer = %addr,
                "server did not select rhizomorph.v1: falling back to legacy msgpack mode (wire.md §3.4.2)"
            );
            crate::metrics::count_fallback();
            let (ws, peer_addr) = upgrade(url, &addr_str, secure, false, config).await?;
            let conn = crate::transport::legacy::client(ws, config, peer_addr, url).await?;
            crate::metrics::count_connection(Mode::Legacy);
            Ok(conn)
        }
        Err(e) => Err(e),
    }
}

type ClientWs = WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// TCP, TLS and the WebSocket upgrade, offering `rhizomorph.v1` or (legacy) nothing.
async fn upgrade(
    url: &str,
    addr_str: &str,
    secure: bool,
    offer_native: bool,
    config: &Config,
) -> Result<(ClientWs, SocketAddr), Error> {
    let tcp = TcpStream::connect(addr_str).await?;
    tune_socket(&tcp, config)?;
    let peer_addr = tcp.peer_addr()?;

    let mut request: Request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
    if offer_native {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    let connector = if secure {
        let tls = match &config.client_tls {
            Some(t) => t.clone(),
            None => crate::transport::tls::client_tls_web_roots()?,
        };
        Some(Connector::Rustls(tls.config))
    } else {
        Some(Connector::Plain)
    };
    let ws_cfg = if offer_native {
        ws_config(config)
    } else {
        legacy_ws_config(config)
    };
    let handshake =
        tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(ws_cfg), connector);
    let (ws, response) = match handshake.await {
        Ok(r) => r,
        // spec: wire.md §3.4.2 — the server selected no subprotocol: not rhizomorph.
        Err(tokio_tungstenite::tungstenite::Error::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(_),
        )) => {
            return Err(Error::NotRhizomorph {
                addr: url.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    // spec: wire.md §3.4.2 — a server that selects no subprotocol is not rhizomorph.
    let selected = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if offer_native && selected != Some(SUBPROTOCOL) {
        return Err(Error::NotRhizomorph {
            addr: url.to_string(),
        });
    }
    Ok((ws, peer_addr))
}

/// Starts the driver over an upgraded WebSocket and waits for the HELLO exchange.
async fn start<S>(
    ws: WebSocketStream<S>,
    session: Session,
    config: &Config,
    peer_addr: SocketAddr,
) -> Result<Connection, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let role = session.role();
    let shared = Shared::new(session, config);
    let (tx, rx) = mpsc::unbounded_channel();
    let (connected_tx, connected_rx) = oneshot::channel();
    let dispatch = Dispatch {
        incoming: tx,
        authenticator: config.authenticator.clone(),
        peer_addr,
        connected: Some(connected_tx),
    };
    let (sink, stream) = ws.split();
    let reader = stream.filter_map(|m| {
        future::ready(match m {
            Ok(WsMessage::Binary(b)) => Some(Ok(b)),
            // spec: wire.md §3.4.3 — TEXT in native mode is a protocol error.
            Ok(WsMessage::Text(_)) => Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TEXT WebSocket message in native mode (wire.md §3.4.3)",
            ))),
            Ok(WsMessage::Close(_)) => Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "WebSocket closed",
            ))),
            Ok(_) => None,
            Err(e) => Some(Err(io::Error::other(e))),
        })
    });
    let writer = sink
        .with(|b: Bytes| {
            future::ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(
                WsMessage::Binary(b),
            ))
        })
        .sink_map_err(io::Error::other);
    let span = info_span!("connection", peer = %peer_addr, role = ?role, transport = "ws");
    driver::spawn(
        shared.clone(),
        Box::pin(reader),
        Box::pin(writer),
        dispatch,
        span,
    );
    let conn = Connection {
        link: crate::connection::Link::Native(shared),
        incoming: rx,
        peer_addr,
        mode: Mode::Native,
    };
    match connected_rx.await {
        Ok(Ok(())) => Ok(conn),
        Ok(Err(reason)) => Err(reason.to_error()),
        Err(_) => Err(CloseReason::Lost("driver ended during the handshake".into()).to_error()),
    }
}

/// Binds with `SO_REUSEPORT`: several listeners (one per runtime or core) on one port, the
/// kernel spreading connections among them.
async fn bind_reuse_port(addr: &str) -> Result<TcpListener, Error> {
    let sock_addr =
        tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| Error::InvalidAddress {
                addr: addr.to_string(),
                reason: "resolves to nothing".into(),
            })?;
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
pub struct WsListener {
    listener: TcpListener,
    config: Arc<Config>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
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
        Ok(WsListener {
            listener,
            config: Arc::new(config),
            acceptor,
        })
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
    ) -> io::Result<impl std::future::Future<Output = Result<Connection, Error>> + Send + 'static>
    {
        let (tcp, peer_addr) = self.listener.accept().await?;
        let config = self.config.clone();
        let acceptor = self.acceptor.clone();
        Ok(async move {
            tokio::time::timeout(
                config.connect_timeout,
                handshake(tcp, peer_addr, config, acceptor),
            )
            .await
            .map_err(|_| Error::Timeout("accept handshake"))?
        })
    }

    /// Accepts the next connection and completes its handshakes.
    pub async fn accept(&self) -> Result<Connection, Error> {
        self.accept_raw().await?.await
    }
}

async fn handshake(
    tcp: TcpStream,
    peer_addr: SocketAddr,
    config: Arc<Config>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> Result<Connection, Error> {
    tune_socket(&tcp, &config)?;
    let serve_legacy = config.legacy.serve;
    let legacy_only = config.legacy.only;
    let mut legacy = false;
    // The signature is tungstenite's callback type; its error is an HTTP response by design.
    #[allow(clippy::result_large_err)]
    let callback = |req: &ServerRequest, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == SUBPROTOCOL);
        if (!offered && serve_legacy) || legacy_only {
            // spec: wire.md §3.4.1 — served in legacy mode: no subprotocol selected, and no
            // permessage-deflate (legacy.md §L2.1; tungstenite never accepts it).
            legacy = true;
            return Ok(resp);
        }
        if !offered {
            // spec: wire.md §3.4.1 — a peer that does not offer rhizomorph.v1 is served in
            // legacy mode or refused; this listener refuses.
            let mut r = ErrorResponse::new(Some(
                "this endpoint speaks the rhizomorph.v1 WebSocket subprotocol only".into(),
            ));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return Err(r);
        }
        resp.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(resp)
    };
    match acceptor {
        Some(acceptor) => {
            let tls = acceptor
                .accept(tcp)
                .await
                .map_err(|e| Error::Tls(e.to_string()))?;
            let ws = tokio_tungstenite::accept_hdr_async_with_config(
                tls,
                callback,
                Some(server_ws_config(&config)),
            )
            .await?;
            serve(ws, legacy, &config, peer_addr).await
        }
        None => {
            let ws = tokio_tungstenite::accept_hdr_async_with_config(
                tcp,
                callback,
                Some(server_ws_config(&config)),
            )
            .await?;
            serve(ws, legacy, &config, peer_addr).await
        }
    }
}

/// Runs the native (HELLO) or legacy (auth JSON) handshake on an accepted WebSocket.
async fn serve<S>(
    ws: WebSocketStream<S>,
    legacy: bool,
    config: &Config,
    peer_addr: SocketAddr,
) -> Result<Connection, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if legacy {
        let conn = crate::transport::legacy::server(ws, config, peer_addr).await?;
        crate::metrics::count_connection(Mode::Legacy);
        return Ok(conn);
    }
    let session = Session::server(config.session.clone(), std::time::Instant::now());
    crate::metrics::count_connection(Mode::Native);
    start(ws, session, config, peer_addr).await
}
