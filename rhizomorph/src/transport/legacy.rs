//! The legacy WebSocket driver (`spec/legacy.md`): one binary WebSocket message per message,
//! TEXT JSON for the handshake and keepalive, as hypha-rpc peers and the hypha server speak.
//!
//! Owns the legacy handshakes on an upgraded WebSocket (client: send the auth JSON, wait for
//! `connection_info`; server: read it, ask the hook, reply), the reader and writer tasks, the
//! keepalive pings, and the memory bounds legacy mode has instead of flow control: a sender
//! waits while its send buffer is full, and the reader stops reading (TCP then stops the peer)
//! while the application holds a receive window's worth of unread messages. The WebSocket
//! framing is the native driver's (`ws::socket`: sized reads, `writev`, pings, close). Never
//! decodes a payload.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::future::poll_fn;
use futures_util::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{Config, LegacyAuthRequest};
use crate::error::Error;
use crate::frame::{Channel, Compression, ErrorCode, PayloadEncoding};
use crate::header::RoutingHeader;
use crate::legacy::{self, AuthInfo, ConnectionInfo, Identity, LegacyLimits, TextMessage};
use crate::session::{Message, SessionStats};
use crate::transport::shared::{CloseReason, Link, Mode, Opened};
use crate::transport::ws::socket::{Control, SplitIo, WsIn, WsReader, WsWriter};
use crate::websocket::{OpCode, Role};

/// Bytes of unread received messages before the reader stops reading.
fn receive_window(config: &Config) -> usize {
    (config.session.settings.initial_connection_window as usize).max(1 << 20)
}

/// What the writer task writes.
enum Out {
    /// One legacy message (one BINARY frame written from its segments), holding its
    /// send-buffer permit.
    Message(Vec<Bytes>, Option<OwnedSemaphorePermit>),
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
        // spec: legacy.md §L2.4 — a large payload is written after the header (`writev`), not
        // copied behind it.
        let frames = match encoded.tail {
            Some(tail) => vec![Bytes::from(encoded.head), tail],
            None => vec![Bytes::from(encoded.head)],
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

/// The reading half of a legacy WebSocket: the in-house RFC 6455 framing (`ws::socket`), as
/// the native driver uses it, with TEXT messages and the peer's close handed out.
struct LegacyReader<R> {
    reader: WsReader<R>,
}

impl<R: AsyncRead + Unpin> LegacyReader<R> {
    /// The next message from the peer (cancel-safe).
    async fn next(&mut self) -> Option<std::io::Result<WsIn>> {
        poll_fn(|cx| self.reader.poll_message(cx)).await
    }
}

/// The writing half: messages, TEXT, and the close frame with its status.
struct LegacyWriter<W> {
    writer: WsWriter<W>,
    /// Set before the writer closes: the status its close frame carries.
    close_status: Arc<Mutex<(u16, String)>>,
    /// The reader queued a reply (a pong, a close echo): the writer should run.
    wake: Arc<Notify>,
}

impl<W: AsyncWrite + Unpin> LegacyWriter<W> {
    /// Writes one message (and any control reply the reader queued), flushed if `flush`.
    async fn write(
        &mut self,
        opcode: OpCode,
        body: Vec<Bytes>,
        flush: bool,
    ) -> std::io::Result<()> {
        poll_fn(|cx| Pin::new(&mut self.writer).poll_ready(cx)).await?;
        self.writer.start_message(opcode, body)?;
        if flush {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Writes what is started and any control replies, and flushes the stream.
    async fn flush(&mut self) -> std::io::Result<()> {
        poll_fn(|cx| Pin::new(&mut self.writer).poll_flush(cx)).await
    }

    async fn text(&mut self, text: String) -> std::io::Result<()> {
        self.write(OpCode::Text, vec![Bytes::from(text)], true)
            .await
    }

    /// Sends a close frame with `code` and `reason`, then shuts the stream down.
    async fn close(&mut self, code: u16, reason: String) -> std::io::Result<()> {
        *self.close_status.lock().unwrap_or_else(|p| p.into_inner()) = (code, reason);
        poll_fn(|cx| Pin::new(&mut self.writer).poll_close(cx)).await
    }
}

/// The halves of an upgraded `stream` for the `role` end; `tail`: bytes read past the upgrade.
/// A message may be one `MAX_MESSAGE_SIZE` payload plus its header (legacy.md §L3.3).
fn halves<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    role: Role,
    config: &Config,
) -> (LegacyReader<S::Read>, LegacyWriter<S::Write>) {
    let (r, w) = stream.split_io();
    let wake = Arc::new(Notify::new());
    let control = Control::new(Arc::new({
        let wake = wake.clone();
        move || wake.notify_one()
    }));
    let max = config.session.settings.max_message_size as usize + 64 * 1024;
    let reader = WsReader::new(r, tail, role, max, config.ws_read_buffer, control.clone());
    let close_status = Arc::new(Mutex::new((1000, String::new())));
    let status = close_status.clone();
    let writer = WsWriter::new(
        w,
        role,
        control,
        Box::new(move || status.lock().unwrap_or_else(|p| p.into_inner()).clone()),
    );
    (
        LegacyReader { reader },
        LegacyWriter {
            writer,
            close_status,
            wake,
        },
    )
}

/// A TEXT message's text (the decoder checked it is UTF-8).
fn text_of(t: &Bytes) -> Result<&str, legacy::LegacyError> {
    std::str::from_utf8(t).map_err(|e| legacy::LegacyError::BadJson(e.to_string()))
}

/// Client side: we offered `rhizomorph.v1` and the server did not select it (wire.md §3.4.2).
/// Sends the auth JSON and waits for `connection_info` (binary messages before it are skipped,
/// as hypha-rpc does).
pub(crate) async fn client<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    config: &Config,
    peer_addr: SocketAddr,
    url: &str,
) -> Result<Opened, Error> {
    let (mut rx, mut ws) = halves(stream, tail, Role::Client, config);
    let mut auth = config.legacy.auth.clone();
    if auth.client_id.is_none() {
        auth.client_id = Some(format!("rhizomorph-{:016x}", rand_u64()));
    }
    ws.text(auth.to_text()).await?;
    let info = loop {
        match rx.next().await {
            Some(Ok(WsIn::Text(t))) => match TextMessage::parse(text_of(&t)?)? {
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
            Some(Ok(WsIn::Binary(_))) => continue,
            Some(Ok(WsIn::Closed { reason, .. })) => {
                return Err(Error::LegacyRefused {
                    addr: url.to_string(),
                    message: reason,
                })
            }
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
    Ok(start((rx, ws), config, peer_addr, Some(info), None, true))
}

/// Server side: a WebSocket client that did not offer `rhizomorph.v1` (wire.md §3.4.1). Reads
/// its auth JSON (within 5 s, as hypha), asks the hook, replies `connection_info` or `error`.
pub(crate) async fn server<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    config: &Config,
    peer_addr: SocketAddr,
) -> Result<Opened, Error> {
    let (mut rx, mut ws) = halves(stream, tail, Role::Server, config);
    let first = tokio::time::timeout(Duration::from_secs(5), rx.next())
        .await
        .map_err(|_| Error::Timeout("legacy authentication message"))?;
    let auth = match first {
        Some(Ok(WsIn::Text(t))) => match text_of(&t).and_then(AuthInfo::parse) {
            Ok(a) => a,
            Err(e) => {
                // hypha: 1003 for JSON it cannot read.
                let _ = ws.close(1003, e.to_string()).await;
                return Err(e.into());
            }
        },
        Some(Ok(WsIn::Binary(b))) => {
            let _ = ws
                .close(1003, "expected the authentication JSON".into())
                .await;
            return Err(Error::LegacyRefused {
                addr: peer_addr.to_string(),
                message: format!("first message was not TEXT: {}", b.len()),
            });
        }
        Some(Ok(WsIn::Closed { .. })) => {
            return Err(Error::ConnectionLost("closed before authenticating".into()))
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
            let _ = ws.text(TextMessage::Error(message.clone()).to_text()).await;
            let _ = ws.close(1008, message.clone()).await;
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
    let conn = start((rx, ws), config, peer_addr, None, Some(identity), false);
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

fn start<R, W>(
    (reader, writer): (LegacyReader<R>, LegacyWriter<W>),
    config: &Config,
    peer_addr: SocketAddr,
    info: Option<ConnectionInfo>,
    identity: Option<Identity>,
    is_client: bool,
) -> Opened
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
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
    let role = if is_client { "client" } else { "server" };
    let span = info_span!("connection", peer = %peer_addr, role, transport = "ws", mode = "legacy");
    tokio::spawn(write_loop(link.clone(), writer, out_rx).instrument(span.clone()));
    tokio::spawn(read_loop(link.clone(), reader, tx, window, is_client).instrument(span.clone()));
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

async fn write_loop<W: AsyncWrite + Unpin>(
    link: Arc<LegacyLink>,
    mut ws: LegacyWriter<W>,
    mut rx: mpsc::UnboundedReceiver<Out>,
) {
    if !link.ready.load(Ordering::Acquire) {
        tokio::select! {
            _ = link.ready_notify.notified() => {}
            _ = link.closed() => {}
        }
    }
    let wake = ws.wake.clone();
    loop {
        let out = tokio::select! {
            out = rx.recv() => match out {
                Some(out) => out,
                None => return,
            },
            // A pong or a close echo the reader queued.
            _ = wake.notified() => {
                if let Err(e) = ws.flush().await {
                    debug!(error = %e, "legacy write failed");
                    link.set_closed(CloseReason::Lost(e.to_string()));
                    return;
                }
                continue;
            }
        };
        let result = match out {
            Out::Message(segments, permit) => {
                // Flushed only when nothing else is waiting.
                let r = ws.write(OpCode::Binary, segments, rx.is_empty()).await;
                drop(permit);
                r
            }
            Out::Text(t) => ws.text(t).await,
            Out::Close(code, reason) => {
                let _ = ws.close(code, reason.clone()).await;
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

async fn read_loop<R: AsyncRead + Unpin>(
    link: Arc<LegacyLink>,
    mut stream: LegacyReader<R>,
    incoming: mpsc::UnboundedSender<Message>,
    window: usize,
    is_client: bool,
) {
    let mut sequence = 0u64;
    let reason = loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = link.closed() => return,
        };
        match msg {
            Some(Ok(WsIn::Binary(bytes))) => {
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
            Some(Ok(WsIn::Text(t))) => {
                if !is_client && t.len() > legacy::handshake::MAX_CONTROL_TEXT {
                    warn!(
                        len = t.len(),
                        "ignoring a long TEXT message (as hypha does)"
                    );
                    continue;
                }
                match text_of(&t).and_then(TextMessage::parse) {
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
            Some(Ok(WsIn::Closed { code, reason })) => {
                let code = code.unwrap_or(1005);
                break if code == 1000 || code == 1001 {
                    CloseReason::Closed {
                        code: ErrorCode::NO_ERROR,
                        reason,
                    }
                } else {
                    CloseReason::Lost(format!("WebSocket closed with {code}: {reason}"))
                };
            }
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
