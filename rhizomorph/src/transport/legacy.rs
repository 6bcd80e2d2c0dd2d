//! The legacy WebSocket driver (`spec/legacy.md`): one binary WebSocket message per message,
//! TEXT JSON for the handshake and keepalive, as hypha-rpc peers and the hypha server speak.
//!
//! Owns the legacy handshakes on an upgraded WebSocket (client: send the auth JSON, wait for
//! `connection_info`; server: read it, ask the hook, reply), the reader and writer tasks, the
//! keepalive pings, and the memory bounds legacy mode has instead of flow control: a sender
//! waits while its send buffer is full, and the reader stops reading (TCP then stops the peer)
//! while the application holds a receive window's worth of unread messages. Never decodes a
//! payload.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{Config, LegacyAuthRequest};
use crate::error::Error;
use crate::frame::{Channel, Compression, ErrorCode, PayloadEncoding};
use crate::header::RoutingHeader;
use crate::legacy::{self, AuthInfo, ConnectionInfo, Identity, LegacyLimits, TextMessage};
use crate::session::{Message, SessionStats};
use crate::transport::shared::{CloseReason, Link, Mode, Opened};

/// Bytes of unread received messages before the reader stops reading.
fn receive_window(config: &Config) -> usize {
    (config.session.settings.initial_connection_window as usize).max(1 << 20)
}

/// What the writer task writes.
enum Out {
    /// One legacy message (one or two WebSocket frames), holding its send-buffer permit.
    Message(Vec<WsMessage>, Option<OwnedSemaphorePermit>),
    /// A TEXT control message.
    Text(String),
    /// A WebSocket close.
    Close(u16, String),
}

/// The legacy side of a connection, shared by its handles and driver tasks.
pub(crate) struct LegacyLink {
    out: mpsc::UnboundedSender<Out>,
    send_budget: Arc<Semaphore>,
    send_budget_total: usize,
    recv_budget: Arc<Semaphore>,
    closed: Mutex<Option<CloseReason>>,
    changed: Notify,
    stats: Mutex<SessionStats>,
    next_id: AtomicU64,
    rtt: Mutex<Option<Duration>>,
    ping_sent: Mutex<Option<Instant>>,
    limits: LegacyLimits,
    /// Server: the application is ready; the writer may send `connection_info` and what
    /// follows it. Clients start ready.
    ready: std::sync::atomic::AtomicBool,
    ready_notify: Notify,
    /// Client: what the server said about us.
    pub(crate) info: Option<ConnectionInfo>,
    /// Server: who the client is.
    pub(crate) identity: Option<Identity>,
}

impl LegacyLink {
    /// Sends one message: `msgpack(header) ++ payload`, the payload checked to be one msgpack
    /// value (what a legacy peer unpacks as `extra`) and not copied when it is large.
    pub(crate) async fn send(&self, header: &RoutingHeader, payload: Bytes) -> Result<u64, Error> {
        if let Some(r) = self.close_reason() {
            return Err(r.to_error());
        }
        self.mark_ready();
        let encoded = legacy::encode_message(header, payload, &self.limits)?;
        let len = encoded.len();
        // spec: legacy.md §L3.3 — a large payload is a second fragment, not copied.
        let frames = match encoded.tail {
            Some(tail) => vec![
                WsMessage::Frame(Frame::message(
                    encoded.head,
                    OpCode::Data(Data::Binary),
                    false,
                )),
                WsMessage::Frame(Frame::message(tail, OpCode::Data(Data::Continue), true)),
            ],
            None => vec![WsMessage::Binary(Bytes::from(encoded.head))],
        };
        // Never ask for more than the whole budget: a large message waits for an empty buffer.
        let want = len.clamp(1, self.send_budget_total) as u32;
        let permit = self
            .send_budget
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| self.lost())?;
        if let Some(r) = self.close_reason() {
            return Err(r.to_error());
        }
        self.out
            .send(Out::Message(frames, Some(permit)))
            .map_err(|_| self.lost())?;
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.bytes_sent[Channel::Rpc.index()] += len as u64;
        s.messages_sent[Channel::Rpc.index()] += 1;
        drop(s);
        Ok(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn lost(&self) -> Error {
        self.close_reason()
            .unwrap_or_else(|| CloseReason::Lost("legacy writer ended".into()))
            .to_error()
    }

    /// The application is ready for the peer: lets the writer start (server side: sends
    /// `connection_info`). Idempotent.
    pub(crate) fn mark_ready(&self) {
        // A load first: `recv` calls this every time, and a swap is a write.
        if !self.ready.load(Ordering::Acquire) && !self.ready.swap(true, Ordering::AcqRel) {
            // A stored permit: the writer cannot miss it.
            self.ready_notify.notify_one();
        }
    }

    /// The application took a message of `bytes`: the reader may read that much more.
    pub(crate) fn release(&self, bytes: u64) {
        self.recv_budget.add_permits(bytes as usize);
    }

    /// Closes with a WebSocket close frame (`1000` for `NO_ERROR`, `1011` otherwise).
    pub(crate) fn close(&self, code: ErrorCode, reason: &str) {
        let ws_code = if code == ErrorCode::NO_ERROR {
            1000
        } else {
            1011
        };
        // The writer must run to send the close, even if the application never got going.
        self.mark_ready();
        let _ = self.out.send(Out::Close(ws_code, reason.to_string()));
    }

    pub(crate) fn set_closed(&self, reason: CloseReason) {
        let mut c = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_none() {
            *c = Some(reason);
        }
        drop(c);
        self.send_budget.close();
        self.changed.notify_waiters();
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) async fn closed(&self) -> CloseReason {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.close_reason() {
                return r;
            }
            notified.await;
        }
    }

    pub(crate) fn stats(&self) -> SessionStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        *self.rtt.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn queued_bytes(&self) -> u64 {
        (self.send_budget_total
            - self
                .send_budget
                .available_permits()
                .min(self.send_budget_total)) as u64
    }
}

fn ws_close(code: u16, reason: String) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

/// Client side: we offered `rhizomorph.v1` and the server did not select it (wire.md §3.4.2).
/// Sends the auth JSON and waits for `connection_info` (binary messages before it are skipped,
/// as hypha-rpc does).
pub(crate) async fn client<S>(
    mut ws: WebSocketStream<S>,
    config: &Config,
    peer_addr: SocketAddr,
    url: &str,
) -> Result<Opened, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut auth = config.legacy.auth.clone();
    if auth.client_id.is_none() {
        auth.client_id = Some(format!("rhizomorph-{:016x}", rand_u64()));
    }
    ws.send(WsMessage::Text(auth.to_text().into())).await?;
    let info = loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(t))) => match TextMessage::parse(&t)? {
                TextMessage::ConnectionInfo(info) => break *info,
                TextMessage::Error(message) => {
                    return Err(Error::LegacyRefused {
                        addr: url.to_string(),
                        message,
                    })
                }
                other => {
                    return Err(Error::LegacyRefused {
                        addr: url.to_string(),
                        message: format!("unexpected first message {other:?}"),
                    })
                }
            },
            Some(Ok(WsMessage::Binary(_) | WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            Some(Ok(WsMessage::Close(c))) => {
                return Err(Error::LegacyRefused {
                    addr: url.to_string(),
                    message: c.map(|c| c.reason.to_string()).unwrap_or_default(),
                })
            }
            Some(Ok(WsMessage::Frame(_))) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(Error::ConnectionLost(
                    "closed during the legacy handshake".into(),
                ))
            }
        }
    };
    info!(
        peer = %peer_addr,
        workspace = %info.workspace,
        client_id = %info.client_id,
        mode = "legacy",
        "connected in legacy mode"
    );
    Ok(start(ws, config, peer_addr, Some(info), None, true))
}

/// Server side: a WebSocket client that did not offer `rhizomorph.v1` (wire.md §3.4.1). Reads
/// its auth JSON (within 5 s, as hypha), asks the hook, replies `connection_info` or `error`.
pub(crate) async fn server<S>(
    mut ws: WebSocketStream<S>,
    config: &Config,
    peer_addr: SocketAddr,
) -> Result<Opened, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .map_err(|_| Error::Timeout("legacy authentication message"))?;
    let auth = match first {
        Some(Ok(WsMessage::Text(t))) => match AuthInfo::parse(&t) {
            Ok(a) => a,
            Err(e) => {
                // hypha: 1003 for JSON it cannot read.
                let _ = ws.send(ws_close(1003, e.to_string())).await;
                return Err(e.into());
            }
        },
        Some(Ok(other)) => {
            let _ = ws
                .send(ws_close(1003, "expected the authentication JSON".into()))
                .await;
            return Err(Error::LegacyRefused {
                addr: peer_addr.to_string(),
                message: format!("first message was not TEXT: {}", other.len()),
            });
        }
        Some(Err(e)) => return Err(e.into()),
        None => return Err(Error::ConnectionLost("closed before authenticating".into())),
    };
    let request = LegacyAuthRequest { auth, peer_addr };
    let decision = match &config.legacy.authenticator {
        Some(hook) => hook(&request),
        None => crate::config::default_legacy_auth(&request),
    };
    let identity = match decision {
        Ok(id) => id,
        Err(message) => {
            warn!(peer = %peer_addr, %message, "legacy client refused");
            let _ = ws
                .send(WsMessage::Text(
                    TextMessage::Error(message.clone()).to_text().into(),
                ))
                .await;
            let _ = ws.send(ws_close(1008, message.clone())).await;
            return Err(Error::LegacyRefused {
                addr: peer_addr.to_string(),
                message,
            });
        }
    };
    // spec: legacy.md §L4.2 — `connection_info` goes out when the application is ready (its
    // first `recv`, `send` or `Connection::ready`), so that a router has registered the peer
    // before the peer learns it is connected (hypha registers it first too).
    let info = connection_info(&identity, &ws_base_url(peer_addr));
    info!(
        peer = %peer_addr,
        id = %identity.full_id(),
        mode = "legacy",
        "legacy client connected"
    );
    let conn = start(ws, config, peer_addr, None, Some(identity), false);
    if let Link::Legacy(link) = &conn.link {
        let _ = link.out.send(Out::Text(info));
    }
    Ok(conn)
}

fn ws_base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The id under which a rhizomorph router answers as hypha's workspace manager would
/// (it has none: messages to it are rejected like messages to any absent peer).
pub const MANAGER_ID: &str = "rhizomorph-router";

/// The `connection_info` reply, field for field as hypha sends it (legacy.md §L4.2).
pub fn connection_info(identity: &Identity, base_url: &str) -> String {
    let v = serde_json::json!({
        "type": "connection_info",
        "hypha_version": concat!("rhizomorph-", env!("CARGO_PKG_VERSION")),
        "public_base_url": base_url,
        "local_base_url": base_url,
        "manager_id": MANAGER_ID,
        "workspace": identity.workspace,
        "client_id": identity.client_id,
        "user": identity.user,
        "reconnection_token": format!("{:016x}{:016x}", rand_u64(), rand_u64()),
        "reconnection_token_life_time": 172800.0,
    });
    legacy::handshake::python_json(&v)
}

/// A random u64 from the OS-seeded hasher (ids and opaque tokens, not secrets).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn start<S>(
    ws: WebSocketStream<S>,
    config: &Config,
    peer_addr: SocketAddr,
    info: Option<ConnectionInfo>,
    identity: Option<Identity>,
    is_client: bool,
) -> Opened
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let send_budget_total = (config.send_buffer as usize).clamp(64 * 1024, u32::MAX as usize);
    let window = receive_window(config);
    let link = Arc::new(LegacyLink {
        out: out_tx,
        send_budget: Arc::new(Semaphore::new(send_budget_total)),
        send_budget_total,
        recv_budget: Arc::new(Semaphore::new(window)),
        closed: Mutex::new(None),
        changed: Notify::new(),
        stats: Mutex::new(SessionStats::default()),
        next_id: AtomicU64::new(0),
        rtt: Mutex::new(None),
        ping_sent: Mutex::new(None),
        limits: LegacyLimits::default(),
        ready: std::sync::atomic::AtomicBool::new(is_client),
        ready_notify: Notify::new(),
        info,
        identity,
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let (sink, stream) = ws.split();
    let role = if is_client { "client" } else { "server" };
    let span = info_span!("connection", peer = %peer_addr, role, transport = "ws", mode = "legacy");
    tokio::spawn(write_loop(link.clone(), sink, out_rx).instrument(span.clone()));
    tokio::spawn(read_loop(link.clone(), stream, tx, window, is_client).instrument(span.clone()));
    if is_client && !config.legacy.ping_interval.is_zero() {
        tokio::spawn(ping_loop(link.clone(), config.legacy.ping_interval).instrument(span));
    }
    Opened {
        link: Link::Legacy(link),
        incoming: rx,
        peer_addr,
        mode: Mode::Legacy,
    }
}

async fn write_loop<S>(
    link: Arc<LegacyLink>,
    mut sink: SplitSink<WebSocketStream<S>, WsMessage>,
    mut rx: mpsc::UnboundedReceiver<Out>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !link.ready.load(Ordering::Acquire) {
        tokio::select! {
            _ = link.ready_notify.notified() => {}
            _ = link.closed() => {}
        }
    }
    while let Some(out) = rx.recv().await {
        let result = match out {
            Out::Message(frames, permit) => {
                let mut r = Ok(());
                let n = frames.len();
                for (i, f) in frames.into_iter().enumerate() {
                    // Flush once per message, and only when nothing else is waiting.
                    r = if i + 1 == n && rx.is_empty() {
                        sink.send(f).await
                    } else {
                        sink.feed(f).await
                    };
                    if r.is_err() {
                        break;
                    }
                }
                drop(permit);
                r
            }
            Out::Text(t) => sink.send(WsMessage::Text(t.into())).await,
            Out::Close(code, reason) => {
                let _ = sink.send(ws_close(code, reason.clone())).await;
                let _ = sink.close().await;
                link.set_closed(CloseReason::Closed {
                    code: if code == 1000 {
                        ErrorCode::NO_ERROR
                    } else {
                        ErrorCode::INTERNAL_ERROR
                    },
                    reason,
                });
                return;
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "legacy write failed");
            link.set_closed(CloseReason::Lost(e.to_string()));
            return;
        }
    }
}

async fn read_loop<S>(
    link: Arc<LegacyLink>,
    mut stream: SplitStream<WebSocketStream<S>>,
    incoming: mpsc::UnboundedSender<Message>,
    window: usize,
    is_client: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut sequence = 0u64;
    let reason = loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = link.closed() => return,
        };
        match msg {
            Some(Ok(WsMessage::Binary(bytes))) => {
                let len = bytes.len();
                let m = match legacy::decode(bytes, &link.limits) {
                    Ok(m) => m,
                    Err(e) => {
                        // One bad message is the sender's bug; hypha logs and goes on.
                        warn!(error = %e, len, "dropping a legacy message that does not decode");
                        continue;
                    }
                };
                // Bounded memory without flow control: wait (not reading, so TCP pushes back)
                // while the application holds a window of unread messages.
                let want = len.clamp(1, window) as u32;
                match link.recv_budget.acquire_many(want).await {
                    Ok(p) => p.forget(),
                    Err(_) => return,
                }
                {
                    let mut s = link.stats.lock().unwrap_or_else(|p| p.into_inner());
                    s.bytes_received[Channel::Rpc.index()] += len as u64;
                    s.messages_received[Channel::Rpc.index()] += 1;
                }
                let message = Message {
                    channel: Channel::Rpc,
                    sequence,
                    header: m.header,
                    encoding: PayloadEncoding::Msgpack,
                    compression: Compression::None,
                    payload: m.payload,
                    credit: u64::from(want),
                    schema: None,
                    error: None,
                };
                sequence += 1;
                if incoming.send(message).is_err() {
                    link.release(u64::from(want));
                }
            }
            Some(Ok(WsMessage::Text(t))) => {
                if !is_client && t.len() > legacy::handshake::MAX_CONTROL_TEXT {
                    warn!(
                        len = t.len(),
                        "ignoring a long TEXT message (as hypha does)"
                    );
                    continue;
                }
                match TextMessage::parse(&t) {
                    Ok(TextMessage::Ping) if !is_client => {
                        crate::transport::metrics::count_legacy_ping();
                        let _ = link.out.send(Out::Text(TextMessage::Pong.to_text()));
                    }
                    Ok(TextMessage::RefreshToken) if !is_client => {
                        let token = format!("{:016x}{:016x}", rand_u64(), rand_u64());
                        let _ = link
                            .out
                            .send(Out::Text(TextMessage::ReconnectionToken(token).to_text()));
                    }
                    Ok(TextMessage::Pong) if is_client => {
                        if let Some(sent) = link
                            .ping_sent
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .take()
                        {
                            *link.rtt.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(sent.elapsed());
                        }
                    }
                    Ok(TextMessage::ReconnectionToken(_)) if is_client => {}
                    Ok(other) => debug!(message = ?other, "legacy TEXT message ignored"),
                    Err(e) => debug!(error = %e, "legacy TEXT message that does not parse"),
                }
            }
            Some(Ok(WsMessage::Close(c))) => {
                let (code, reason) = c.map_or((1005, String::new()), |c| {
                    (u16::from(c.code), c.reason.to_string())
                });
                break if code == 1000 || code == 1001 {
                    CloseReason::Closed {
                        code: ErrorCode::NO_ERROR,
                        reason,
                    }
                } else {
                    CloseReason::Lost(format!("WebSocket closed with {code}: {reason}"))
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break CloseReason::Lost(e.to_string()),
            None => break CloseReason::Lost("WebSocket ended".into()),
        }
    };
    debug!(?reason, "legacy connection ended");
    link.set_closed(reason);
}

async fn ping_loop(link: Arc<LegacyLink>, interval: Duration) {
    let mut wait = Duration::from_secs(2).min(interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = link.closed() => return,
        }
        *link.ping_sent.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if link
            .out
            .send(Out::Text(TextMessage::Ping.to_text()))
            .is_err()
        {
            return;
        }
        wait = interval;
    }
}
