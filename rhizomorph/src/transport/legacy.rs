//! The legacy WebSocket driver (`spec/legacy.md`): two tasks that move WebSocket messages
//! between the in-house RFC 6455 framing (`ws::socket`, as the native driver uses it) and the
//! sans-IO [`LegacySession`], and the handshakes' waits on either side.
//!
//! Owns the reader task (stops reading while the session's receive window is full, so TCP
//! pushes back on the peer), the writer task (writes what the session transmits as soon as the
//! socket takes it, runs its timers, and shuts the socket down once the session has ended, so
//! no legacy socket outlives its connection), the hand-out of the session's events, and the
//! authentication hook's call (with no lock held). Every rule (handshakes, keepalive, bounds,
//! timeouts) is the session's. Never decodes a payload.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use bytes::BytesMut;
use futures_util::future::poll_fn;
use futures_util::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{Config, LegacyAuthRequest};
use crate::error::Error;
use crate::frame::ErrorCode;
use crate::legacy::session::close_code;
use crate::legacy::{
    self, AuthInfo, Identity, Initiator, LegacyClose, LegacyConfig, LegacyEvent, LegacySession,
    LegacyTransmit, Side,
};
use crate::transport::inbox::{CloseOnDrop, Pushed};
use crate::transport::shared::{CloseReason, Mode, Opened, Shared};
use crate::transport::ws::socket::{Control, SplitIo, WsIn, WsReader, WsWriter};
use crate::websocket::{CloseFrame, OpCode, Role, WsEvent};

type LegacyShared = Shared<LegacySession>;

/// The session's limits and timers from the config (legacy.md §L3.3, §L4).
fn session_config(config: &Config, is_client: bool) -> LegacyConfig {
    let ping = config.legacy.ping_interval;
    LegacyConfig {
        send_buffer: (config.send_buffer as usize).clamp(64 * 1024, u32::MAX as usize),
        receive_window: (config.session.settings.initial_connection_window as usize).max(1 << 20),
        ping_interval: (is_client && !ping.is_zero()).then_some(ping),
        idle_timeout: config.legacy.idle_timeout,
        ..LegacyConfig::default()
    }
}

/// How the handshake ended, for the task that waits for it.
enum Handshake {
    /// Server: the client's authentication message.
    Authenticate(AuthInfo),
    /// Client: the server accepted us.
    Connected,
}

/// Delivers the session's events: messages to the application, the handshake's outcome to
/// whoever waits for it, the end to the shared state.
struct Dispatch {
    /// Ends the inbox once the driver's tasks (which hold this) are all done.
    _inbox: CloseOnDrop,
    /// Server: where reconnection tokens are issued (legacy.md §L4.4).
    tokens: crate::tokens::ReconnectionTokens,
    handshake: Option<oneshot::Sender<Result<Handshake, LegacyClose>>>,
}

type SharedDispatch = Arc<Mutex<Dispatch>>;

/// What the connection's end is to the face.
fn close_reason(c: &LegacyClose) -> CloseReason {
    match (c.initiator, c.code) {
        (Initiator::Local, Some(code)) => CloseReason::Closed {
            code: match code {
                close_code::NORMAL => ErrorCode::NO_ERROR,
                close_code::GOING_AWAY => ErrorCode::TIMEOUT,
                close_code::UNSUPPORTED_DATA | close_code::POLICY => ErrorCode::PROTOCOL_ERROR,
                _ => ErrorCode::INTERNAL_ERROR,
            },
            reason: c.reason.clone(),
        },
        (Initiator::Peer, Some(1000 | 1001)) => CloseReason::Closed {
            code: ErrorCode::NO_ERROR,
            reason: c.reason.clone(),
        },
        (Initiator::Peer, Some(code)) => {
            CloseReason::Lost(format!("WebSocket closed with {code}: {}", c.reason))
        }
        (Initiator::Peer, None) if c.refused => CloseReason::Lost(c.reason.clone()),
        (Initiator::Peer, None) => CloseReason::Lost(format!("WebSocket closed: {}", c.reason)),
        _ => CloseReason::Lost(c.reason.clone()),
    }
}

/// Runs `f` on the session, then hands out the events it produced; wakes the writer if the
/// session has something to send.
fn with_session<T>(
    shared: &LegacyShared,
    dispatch: &SharedDispatch,
    f: impl FnOnce(&mut LegacySession) -> T,
) -> T {
    let mut s = shared.lock();
    let pings = s.pings_received();
    let out = f(&mut s);
    let answered = s.pings_received() - pings;
    if answered > 0 {
        crate::transport::metrics::count_legacy_pings(answered);
    }
    if s.pending_events() > 0 {
        let mut d = dispatch.lock().unwrap_or_else(|p| p.into_inner());
        drain(&mut s, shared, &mut d);
    }
    let wake = s.wants_transmit() || s.is_closed();
    drop(s);
    if wake {
        shared.wake_writer.notify_one();
    }
    out
}

fn drain(s: &mut LegacySession, shared: &LegacyShared, d: &mut Dispatch) {
    while let Some(event) = s.poll_event() {
        match event {
            // Bounded by the receive window: the reader stops reading at it.
            LegacyEvent::Message(m) => {
                match shared.inbox.push(m) {
                    Pushed::Queued | Pushed::QueuedRequest => {}
                    // Nobody takes it (its receiver was dropped): keep the reader going.
                    Pushed::Release(_, credit) | Pushed::ReleaseSettled(_, credit) => {
                        s.release(credit)
                    }
                }
            }
            LegacyEvent::Authenticate(auth) => {
                if let Some(tx) = d.handshake.take() {
                    let _ = tx.send(Ok(Handshake::Authenticate(auth)));
                }
            }
            LegacyEvent::Connected(info) => {
                let _ = shared.legacy_info.set(*info);
                if let Some(tx) = d.handshake.take() {
                    let _ = tx.send(Ok(Handshake::Connected));
                }
            }
            // spec: legacy.md §L4.4 — a fresh token for the identity it was given.
            LegacyEvent::TokenRequested => {
                let token = match shared.legacy_identity.get() {
                    Some(id) => d.tokens.issue(id, Instant::now()),
                    None => random_token(),
                };
                s.send_reconnection_token(&token)
            }
            LegacyEvent::Malformed {
                error,
                len,
                suppressed,
            } => warn!(%error, len, suppressed, "dropped legacy messages that do not decode"),
            LegacyEvent::Closed(close) => {
                debug!(?close, "legacy connection ended");
                let reason = close_reason(&close);
                if let Some(tx) = d.handshake.take() {
                    let _ = tx.send(Err(close));
                }
                shared.set_closed(reason);
            }
        }
    }
}

/// Starts the driver's tasks for a legacy WebSocket: `tail` holds bytes read past the upgrade.
fn start<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    config: &Config,
    peer_addr: SocketAddr,
    side: Side,
) -> Started {
    let is_client = matches!(side, Side::Client { .. });
    let session = LegacySession::new(side, session_config(config, is_client), Instant::now());
    let max = config.session.settings.max_message_size;
    let shared = Shared::with(session, config, max);
    // hypha-rpc peers follow their own call protocol, not wire.md §20: their messages are
    // handed out as they are.
    shared.inbox.forward_exchanges();
    let (handshake_tx, handshake) = oneshot::channel();
    let dispatch = Arc::new(Mutex::new(Dispatch {
        _inbox: CloseOnDrop(shared.clone()),
        tokens: config.legacy.tokens.clone(),
        handshake: Some(handshake_tx),
    }));
    let role = if is_client {
        Role::Client
    } else {
        Role::Server
    };
    let (r, w) = stream.split_io();
    // The framing's own replies (a WebSocket pong, the close echo) wake our writer.
    let weak: Weak<LegacyShared> = Arc::downgrade(&shared);
    let control = Control::new(Arc::new(move || {
        if let Some(s) = weak.upgrade() {
            s.wake_writer.notify_one();
        }
    }));
    // spec: legacy.md §L2.3 — a message may be one MAX_MESSAGE_SIZE payload plus its header.
    let max_message = max as usize + 64 * 1024;
    let reader = WsReader::new(
        r,
        tail,
        role,
        max_message,
        config.ws_read_buffer,
        control.clone(),
    );
    let status = Arc::new(Mutex::new((close_code::NORMAL, String::new())));
    let close_status = status.clone();
    let writer = WsWriter::new(
        w,
        role,
        control,
        Box::new(move || status.lock().unwrap_or_else(|p| p.into_inner()).clone()),
    );
    let side = if is_client { "client" } else { "server" };
    let span =
        info_span!("connection", peer = %peer_addr, role = side, transport = "ws", mode = "legacy");
    tokio::spawn(read_loop(shared.clone(), reader, dispatch.clone()).instrument(span.clone()));
    tokio::spawn(
        write_loop(shared.clone(), writer, close_status, dispatch.clone()).instrument(span),
    );
    Started {
        shared,
        dispatch,
        handshake,
        peer_addr,
    }
}

/// A legacy connection whose tasks run, its handshake under way.
struct Started {
    shared: Arc<LegacyShared>,
    dispatch: SharedDispatch,
    handshake: oneshot::Receiver<Result<Handshake, LegacyClose>>,
    peer_addr: SocketAddr,
}

impl Started {
    /// Waits for the handshake's outcome (the session's timer bounds the wait).
    async fn handshake(&mut self) -> Result<Handshake, LegacyClose> {
        (&mut self.handshake).await.unwrap_or_else(|_| {
            Err(LegacyClose {
                initiator: Initiator::Transport,
                code: None,
                reason: "the legacy driver ended during the handshake".into(),
                refused: false,
            })
        })
    }

    fn opened(self) -> Opened {
        Opened {
            handle: self.shared,
            peer_addr: self.peer_addr,
            mode: Mode::Legacy,
        }
    }
}

/// Client side: we offered `rhizomorph.v1` and the server did not select it (wire.md §3.4.2).
/// Sends the auth JSON and waits for `connection_info` (legacy.md §L4.1, §L4.2).
pub(crate) async fn client<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    config: &Config,
    peer_addr: SocketAddr,
    url: &str,
) -> Result<Opened, Error> {
    let mut auth = config.legacy.auth.clone();
    if auth.client_id.is_none() {
        auth.client_id = Some(format!("rhizomorph-{:016x}", rand_u64()));
    }
    let mut started = start(stream, tail, config, peer_addr, Side::Client { auth });
    match started.handshake().await {
        Ok(_) => {}
        Err(close) if close.refused || close.initiator == Initiator::Peer => {
            return Err(Error::LegacyRefused {
                addr: url.to_string(),
                message: close.reason,
            })
        }
        Err(close) if close.initiator == Initiator::Local => {
            return Err(Error::Timeout("legacy connection_info"))
        }
        Err(close) => return Err(Error::ConnectionLost(close.reason)),
    }
    if let Some(info) = started.shared.legacy_info.get() {
        info!(
            peer = %peer_addr,
            workspace = %info.workspace,
            client_id = %info.client_id,
            mode = "legacy",
            "connected in legacy mode"
        );
    }
    Ok(started.opened())
}

/// Server side: a WebSocket client that did not offer `rhizomorph.v1` (wire.md §3.4.1). Waits
/// for its auth JSON (the session closes it after 5 s without one), asks the hook with no lock
/// held, and accepts (the session sends `connection_info` once the application is ready,
/// legacy.md §L4.2) or refuses (`error`, then close 1008).
pub(crate) async fn server<S: SplitIo>(
    stream: S,
    tail: BytesMut,
    config: &Config,
    peer_addr: SocketAddr,
) -> Result<Opened, Error> {
    let mut started = start(stream, tail, config, peer_addr, Side::Server);
    let auth = match started.handshake().await {
        Ok(Handshake::Authenticate(auth)) => auth,
        // A server's session never reports a client's handshake.
        Ok(Handshake::Connected) => {
            return Err(Error::ConnectionLost(
                "legacy handshake out of order".into(),
            ))
        }
        Err(close)
            if close.initiator == Initiator::Local && close.code == Some(close_code::POLICY) =>
        {
            return Err(Error::Timeout("legacy authentication message"))
        }
        Err(close) if close.initiator == Initiator::Local => {
            return Err(Error::LegacyRefused {
                addr: peer_addr.to_string(),
                message: close.reason,
            })
        }
        Err(close) => {
            return Err(Error::ConnectionLost(format!(
                "closed before authenticating: {}",
                close.reason
            )))
        }
    };
    let tokens = &config.legacy.tokens;
    let decision = match auth.reconnection_token.as_deref().filter(|t| !t.is_empty()) {
        // spec: legacy.md §L4.4 — a token issued here gives its identity back, once.
        Some(token) => tokens
            .redeem(
                token,
                auth.client_id.as_deref(),
                auth.workspace.as_deref(),
                Instant::now(),
            )
            .map_err(|e| e.to_string()),
        None => {
            let request = LegacyAuthRequest { auth, peer_addr };
            match &config.legacy.authenticator {
                Some(hook) => hook(&request),
                None => crate::config::default_legacy_auth(&request),
            }
        }
    };
    let shared = &started.shared;
    let dispatch = &started.dispatch;
    match decision {
        Ok(identity) => {
            let token = tokens.issue(&identity, Instant::now());
            let info = connection_info(
                &identity,
                &ws_base_url(peer_addr),
                &config.legacy.manager_id,
                &token,
                tokens.life(),
            );
            info!(
                peer = %peer_addr,
                id = %identity.full_id(),
                mode = "legacy",
                "legacy client connected"
            );
            let _ = shared.legacy_identity.set(identity);
            with_session(shared, dispatch, |s| s.accept(info));
            Ok(started.opened())
        }
        Err(message) => {
            warn!(peer = %peer_addr, %message, "legacy client refused");
            with_session(shared, dispatch, |s| s.refuse(&message));
            Err(Error::LegacyRefused {
                addr: peer_addr.to_string(),
                message,
            })
        }
    }
}

/// Reads WebSocket messages into the session while it wants them (legacy.md §L3.3: not past
/// the receive window), until the connection ends; then drops the read half.
async fn read_loop<R: AsyncRead + Unpin>(
    shared: Arc<LegacyShared>,
    mut reader: WsReader<R>,
    dispatch: SharedDispatch,
) {
    loop {
        // Not reading while the application holds a receive window: TCP pushes back.
        if !shared.wait_readable(LegacySession::wants_read).await || shared.lock().is_closed() {
            return;
        }
        let ended = shared.changed.wait_for(|| shared.is_closed().then_some(()));
        let next = tokio::select! {
            m = poll_fn(|cx| reader.poll_message(cx)) => m,
            () = ended => return,
        };
        let now = Instant::now();
        let done = with_session(&shared, &dispatch, |s| {
            match next {
                Some(Ok(WsIn::Binary(b))) => s.handle_message(now, WsEvent::Binary(b)),
                Some(Ok(WsIn::Text(t))) => s.handle_message(now, WsEvent::Text(t)),
                Some(Ok(WsIn::Closed { code, reason })) => {
                    s.handle_message(now, WsEvent::Close(CloseFrame { code, reason }))
                }
                // The framing queued its close (1009 for a message too big, 1002 otherwise).
                Some(Err(e)) => s.handle_transport_end(Some(e.to_string())),
                None => s.handle_transport_end(None),
            }
            s.is_closed()
        });
        if done {
            return;
        }
    }
}

/// Writes what the session transmits as soon as the socket takes it (flushing when nothing
/// more is ready), runs the session's timers, and once the session has ended writes the close
/// (the session's, or the framing's echo of the peer's) and shuts the socket down.
async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<LegacyShared>,
    mut ws: WsWriter<W>,
    close_status: Arc<Mutex<(u16, String)>>,
    dispatch: SharedDispatch,
) {
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    let timer = tokio::time::sleep_until(far());
    tokio::pin!(timer);
    let mut unflushed = false;
    loop {
        let notified = shared.wake_writer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Err(e) = poll_fn(|cx| Pin::new(&mut ws).poll_ready(cx)).await {
            with_session(&shared, &dispatch, |s| {
                s.handle_transport_end(Some(e.to_string()))
            });
            break;
        }
        let now = Instant::now();
        let (out, deadline, closed) = with_session(&shared, &dispatch, |s| {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            (s.poll_transmit(now), s.poll_timeout(), s.is_closed())
        });
        let written = match out {
            Some(LegacyTransmit::Binary(segments)) => {
                // Send-buffer room opened.
                shared.changed.notify_waiters();
                ws.start_message(OpCode::Binary, segments)
            }
            Some(LegacyTransmit::Text(text)) => ws.start_message(OpCode::Text, vec![text]),
            Some(LegacyTransmit::Close { code, reason }) => {
                *close_status.lock().unwrap_or_else(|p| p.into_inner()) = (code, reason);
                break;
            }
            None => {
                if unflushed {
                    unflushed = false;
                    if let Err(e) = poll_fn(|cx| Pin::new(&mut ws).poll_flush(cx)).await {
                        let e = e.to_string();
                        with_session(&shared, &dispatch, |s| s.handle_transport_end(Some(e)));
                        break;
                    }
                    continue;
                }
                if closed {
                    break;
                }
                timer
                    .as_mut()
                    .reset(deadline.map_or_else(far, tokio::time::Instant::from_std));
                tokio::select! {
                    () = &mut notified => {}
                    () = &mut timer => {}
                }
                continue;
            }
        };
        match written {
            Ok(()) => unflushed = true,
            Err(e) => {
                let e = e.to_string();
                with_session(&shared, &dispatch, |s| s.handle_transport_end(Some(e)));
                break;
            }
        }
    }
    // The close frame (ours, or the echo of the peer's the framing queued), then shutdown: the
    // socket is released here, however the connection ended.
    let shutdown = poll_fn(|cx| Pin::new(&mut ws).poll_close(cx));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), shutdown).await;
}

/// A random opaque reconnection token (legacy.md §L4.4).
fn random_token() -> String {
    format!("{:016x}{:016x}", rand_u64(), rand_u64())
}

fn ws_base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The `connection_info` reply, field for field as hypha sends it (legacy.md §L4.2).
pub fn connection_info(
    identity: &Identity,
    base_url: &str,
    manager_id: &str,
    reconnection_token: &str,
    token_life: std::time::Duration,
) -> String {
    let v = serde_json::json!({
        "type": "connection_info",
        "hypha_version": concat!("rhizomorph-", env!("CARGO_PKG_VERSION")),
        "public_base_url": base_url,
        "local_base_url": base_url,
        "manager_id": manager_id,
        "workspace": identity.workspace,
        "client_id": identity.client_id,
        "user": identity.user,
        "reconnection_token": reconnection_token,
        "reconnection_token_life_time": token_life.as_secs_f64(),
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
