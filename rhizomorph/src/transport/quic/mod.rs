//! The QUIC transport (wire.md §17): quinn 0.11 over rustls with the `ring` provider.
//!
//! Owns the QUIC endpoint and handshake (ALPN `rhzm/1`), the mapping of channels onto
//! unidirectional streams (one per channel and direction, opened with a channel-id preamble),
//! their send priorities, QUIC's flow-control windows, and the close handshake. QUIC does what
//! the WebSocket mapping needs the session for: stream flow control replaces CREDIT (§17.5)
//! and each stream is retransmitted independently, so a lost bulk packet never holds an rpc
//! reply. Never interprets frames: the session does.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tracing::{debug, info_span, warn, Instrument};

use crate::config::{ClientTls, Config, ServerTls};
use crate::error::ConnectStage;
use crate::error::Error;
use crate::frame::{Channel, ErrorCode};
use crate::session::{Framing, Session, Target, Transmit};
use crate::transport::connect_error::{self, Progress};
use crate::transport::dispatch::{self, with_session, Opening, SharedDispatch};
use crate::transport::flush::Flush;
use crate::transport::shared::{CloseReason, Opened, Shared};
use crate::transport::url::{Scheme, ServerUrl};

/// Most bytes handed to quinn per stream write: what the sender holds beyond QUIC's windows
/// (quinn keeps a write until the stream's flow control lets it out, wire.md §17.5). quinn
/// interleaves streams by priority per packet, so a larger write would not delay a
/// higher channel, only hold more memory.
const STREAM_WRITE: usize = 64 * 1024;
/// The ALPN protocol id that selects rhizomorph over QUIC (wire.md §3.1, §17.1).
pub const ALPN: &[u8] = b"rhzm/1";

/// Send priorities of the channel streams, control highest (wire.md §17.4).
const PRIORITY: [i32; 4] = [3, 2, 1, 0];

/// Most received segments handed to the session under one lock (QUIC delivers a stream as
/// packet-sized segments; taking them one by one would cost a lock and a wake-up each).
const READ_SEGMENTS: usize = 64;

/// QUIC transport parameters from the rhizomorph settings (wire.md §17.5): the receive
/// windows are the announced `INITIAL_*_WINDOW`s, and a peer may open exactly the four channel
/// streams (§17.2.3: no bidirectional streams). Public so that a bare-quinn comparison (the
/// bench's `bare-quinn` baseline) runs with exactly the windows rhizomorph runs with.
pub fn transport_config(config: &Config) -> quinn::TransportConfig {
    let s = &config.session.settings;
    let varint = |v: u64| VarInt::from_u64(v).unwrap_or(VarInt::MAX);
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(varint(s.initial_channel_window))
        .receive_window(varint(s.initial_connection_window))
        .send_window(s.initial_connection_window)
        .max_concurrent_uni_streams(4u32.into())
        .max_concurrent_bidi_streams(0u32.into())
        // The session's keepalive (PING, §13) detects a silent peer; QUIC's idle timeout is a
        // backstop just beyond it.
        .max_idle_timeout(
            quinn::IdleTimeout::try_from(config.session.keepalive_timeout + Duration::from_secs(5))
                .ok(),
        );
    t
}

fn quic_config_error(e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("TLS configuration unusable for QUIC: {e}"))
}

/// A quinn client config from our client TLS, offering only `alpn`.
pub fn quinn_client_config(
    tls: &ClientTls,
    alpn: &[u8],
    transport: quinn::TransportConfig,
) -> Result<quinn::ClientConfig, Error> {
    let mut rustls_config = (*tls.config).clone();
    rustls_config.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(Arc::new(rustls_config)).map_err(quic_config_error)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport));
    Ok(client)
}

/// A quinn server config from our server TLS, accepting only `alpn`.
pub fn quinn_server_config(
    tls: &ServerTls,
    alpn: &[u8],
    transport: quinn::TransportConfig,
) -> Result<quinn::ServerConfig, Error> {
    let mut rustls_config = (*tls.config).clone();
    rustls_config.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicServerConfig::try_from(Arc::new(rustls_config)).map_err(quic_config_error)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// A client: its own UDP endpoint, connected to `url` (`quic://host:port`).
pub(crate) async fn connect(url: &str, config: &Config) -> Result<Opened, Error> {
    let progress = Progress::default();
    with_progress(
        url,
        config,
        &progress,
        connect_inner(url, config, &progress),
    )
    .await
}

/// Runs a connect attempt under the config's timeout, explaining its failure.
async fn with_progress(
    url: &str,
    config: &Config,
    progress: &Progress,
    attempt: impl std::future::Future<Output = Result<Opened, Error>>,
) -> Result<Opened, Error> {
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(r) => r.map_err(|e| connect_error::explain(url, progress, e)),
        Err(_) => Err(connect_error::timed_out(
            url,
            progress,
            config.connect_timeout,
        )),
    }
}

async fn resolve(url: &str) -> Result<(String, SocketAddr), Error> {
    let parsed = ServerUrl::parse(url)?;
    if parsed.scheme != Scheme::Quic {
        return Err(Error::InvalidAddress {
            addr: url.to_string(),
            reason: "expected quic://".into(),
        });
    }
    let addr = super::resolve_first((parsed.host.as_str(), parsed.port), url).await?;
    Ok((parsed.host, addr))
}

/// A UDP endpoint for client connections of this address family.
fn client_endpoint(ipv6: bool) -> Result<quinn::Endpoint, Error> {
    let bind: SocketAddr = if ipv6 {
        "[::]:0".parse().expect("a valid address")
    } else {
        "0.0.0.0:0".parse().expect("a valid address")
    };
    endpoint_on(bind, None)
}

/// Socket buffer bytes a QUIC endpoint asks for: a burst of handshakes (a thousand clients'
/// Initial packets at once, 1.2 MB) fits, where the system default (~208 KiB) drops most of
/// it and leaves those clients to retransmit after seconds of backoff. The kernel caps it at
/// `net.core.rmem_max` / `wmem_max`.
const UDP_BUFFER: usize = 4 << 20;

/// A quinn endpoint on a UDP socket bound to `addr` with [`UDP_BUFFER`]-sized buffers; a
/// server if `server` is given.
fn endpoint_on(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, Error> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack where the system allows it, as quinn's own bind does.
        let _ = socket.set_only_v6(false);
    }
    // Best effort: a smaller buffer works, it only drops more of a burst.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.bind(&addr.into())?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| Error::Quic("no async runtime found for the QUIC endpoint".into()))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        runtime,
    )?)
}

/// The QUIC handshake to `addr` over `endpoint`, then the HELLO exchange. `own_endpoint`: the
/// connection owns the endpoint and lets it go idle when it ends.
async fn connect_over(
    endpoint: &quinn::Endpoint,
    own_endpoint: bool,
    host: &str,
    addr: SocketAddr,
    config: &Config,
    progress: &Progress,
) -> Result<Opened, Error> {
    let tls = super::client_tls(config)?;
    let client_config = quinn_client_config(&tls, ALPN, transport_config(config))?;
    progress.at(ConnectStage::Quic);
    let connecting = endpoint
        .connect_with(client_config, addr, host)
        .map_err(|e| Error::Quic(e.to_string()))?;
    let conn = connecting.await.map_err(handshake_error)?;
    progress.at(ConnectStage::Hello);
    let session = Session::client(session_config(config), Instant::now());
    start(
        conn,
        own_endpoint.then(|| endpoint.clone()),
        session,
        config,
    )
    .await
}

async fn connect_inner(url: &str, config: &Config, progress: &Progress) -> Result<Opened, Error> {
    let (host, addr) = resolve(url).await?;
    let endpoint = client_endpoint(addr.is_ipv6())?;
    connect_over(&endpoint, true, &host, addr, config, progress).await
}

/// One UDP socket for many client connections (the transport under
/// [`QuicClient`](crate::QuicClient)).
#[derive(Clone)]
pub(crate) struct ClientSocket {
    endpoint: quinn::Endpoint,
    config: Arc<Config>,
    ipv6: bool,
}

impl ClientSocket {
    /// Binds a client UDP socket (IPv6 if `ipv6`, else IPv4) for connections made with
    /// `config`. Must be called within a tokio runtime, which drives the socket.
    pub(crate) fn bind(config: Config, ipv6: bool) -> Result<ClientSocket, Error> {
        Ok(ClientSocket {
            endpoint: client_endpoint(ipv6)?,
            config: Arc::new(config),
            ipv6,
        })
    }

    /// The local UDP address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Connects to `url` (`quic://host:port`) over this client's socket.
    pub(crate) async fn connect(&self, url: &str) -> Result<Opened, Error> {
        let config = &self.config;
        let progress = Progress::default();
        with_progress(url, config, &progress, async {
            let (host, addr) = resolve(url).await?;
            if addr.is_ipv6() != self.ipv6 {
                return Err(Error::InvalidAddress {
                    addr: url.to_string(),
                    reason: "address family differs from this QuicClient's socket".into(),
                });
            }
            connect_over(&self.endpoint, false, &host, addr, config, &progress).await
        })
        .await
    }
}

/// A failed QUIC handshake: certificate and ALPN problems are TLS errors (with rustls' reason).
fn handshake_error(e: ConnectionError) -> Error {
    match &e {
        // QUIC carries TLS alerts as the crypto error codes 0x100 – 0x1FF (RFC 9001 §4.8).
        ConnectionError::TransportError(t) if is_crypto(t.code) => Error::Tls(e.to_string()),
        ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
            Error::Tls(e.to_string())
        }
        _ => Error::Quic(e.to_string()),
    }
}

fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

fn session_config(config: &Config) -> crate::session::SessionConfig {
    let mut session = config
        .session
        .clone()
        .with_framing(Framing::PerChannelStreams);
    // Resumption (wire.md §21) is not driven over QUIC yet: its HELLO neither asks for nor
    // grants a resumable session, so a lost QUIC connection ends as in 1.0.
    session.settings.resume_buffer = 0;
    session
}

/// Accepts QUIC connections on one UDP socket.
pub(crate) struct QuicListener {
    endpoint: quinn::Endpoint,
    config: Arc<Config>,
}

impl QuicListener {
    /// Binds `addr`. QUIC always runs TLS: the config must carry server TLS (a certificate).
    pub fn bind(addr: &str, config: Config) -> Result<QuicListener, Error> {
        let addr: SocketAddr = addr.parse().map_err(|e| Error::InvalidAddress {
            addr: addr.to_string(),
            reason: format!("{e}"),
        })?;
        let tls = config.server_tls.as_ref().ok_or_else(|| {
            Error::Tls(
                "QUIC needs a server certificate: set Config::with_server_tls \
                 (or `serve --self-signed` / `--cert --key`)"
                    .into(),
            )
        })?;
        let server_config = quinn_server_config(tls, ALPN, transport_config(&config))?;
        let endpoint = endpoint_on(addr, Some(server_config))?;
        Ok(QuicListener {
            endpoint,
            config: Arc::new(config),
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Waits for the next client; the returned future completes the QUIC and HELLO handshakes.
    pub async fn accept_raw(
        &self,
    ) -> io::Result<impl std::future::Future<Output = Result<Opened, Error>> + Send + 'static> {
        let incoming = self.endpoint.accept().await.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "the QUIC endpoint is closed")
        })?;
        let config = self.config.clone();
        Ok(async move {
            let handshake = async {
                let conn = incoming.await.map_err(handshake_error)?;
                let session = Session::server(session_config(&config), Instant::now());
                start(conn, None, session, &config).await
            };
            // The session's HELLO timeout decides (CLOSE with TIMEOUT, wire.md §18); this
            // outer bound must not race it (see the WebSocket listener).
            let bound = config
                .connect_timeout
                .max(config.session.hello_timeout + Duration::from_secs(2));
            tokio::time::timeout(bound, handshake)
                .await
                .map_err(|_| Error::Timeout("accept handshake"))?
        })
    }
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        self.endpoint.close(VarInt::from_u32(0), b"listener closed");
    }
}

async fn start(
    conn: quinn::Connection,
    endpoint: Option<quinn::Endpoint>,
    session: Session,
    config: &Config,
) -> Result<Opened, Error> {
    let peer_addr = conn.remote_address();
    let role = session.role();
    let opening = Opening::new(session, config, peer_addr);
    let (shared, dispatch) = (opening.shared.clone(), opening.dispatch.clone());
    let span = info_span!("connection", peer = %peer_addr, role = ?role, transport = "quic");
    let linger = config.session.keepalive_timeout;
    let (handoff_tx, handoff_rx) = mpsc::unbounded_channel();
    let slots = Arc::new(StreamSlots {
        conn: conn.clone(),
        slots: Default::default(),
        handoff: handoff_tx,
    });
    shared.flush.set(slots.clone());
    tokio::spawn(
        accept_streams(conn.clone(), shared.clone(), dispatch.clone()).instrument(span.clone()),
    );
    tokio::spawn(watch(conn.clone(), shared.clone(), dispatch.clone()).instrument(span.clone()));
    let writer = write_loop(
        conn,
        endpoint,
        shared.clone(),
        dispatch,
        slots,
        handoff_rx,
        linger,
    );
    tokio::spawn(writer.instrument(span));
    opening.established().await
}

/// Waits for the QUIC connection to end and reports why, if the session had not ended first.
async fn watch(conn: quinn::Connection, shared: Arc<Shared>, dispatch: SharedDispatch) {
    let e = conn.closed().await;

    let reason = match e {
        // spec: wire.md §17.6 — the application close code is the CLOSE's code.
        ConnectionError::ApplicationClosed(a) => CloseReason::Closed {
            code: ErrorCode(a.error_code.into_inner()),
            reason: String::from_utf8_lossy(&a.reason).into_owned(),
        },
        ConnectionError::LocallyClosed => CloseReason::Lost("closed locally".into()),
        ConnectionError::TimedOut => CloseReason::Lost("QUIC idle timeout: peer silent".into()),
        other => CloseReason::Lost(other.to_string()),
    };
    dispatch::lost_with(&shared, &dispatch, reason);
}

/// Accepts the peer's channel streams (wire.md §17.2) and spawns a reader for each.
///
/// spec: wire.md §17.2.6 — preambles are read concurrently: a stream whose channel id never
/// comes holds only itself, never the streams opened after it (QUIC opens lower stream ids
/// implicitly, so a peer that writes on its second stream hands us the silent first one first).
/// At most four are open at once (§17.2.3), so the pending set is bounded by the transport.
async fn accept_streams(conn: quinn::Connection, shared: Arc<Shared>, dispatch: SharedDispatch) {
    let mut seen = [false; 4];
    let mut preambles = FuturesUnordered::new();
    loop {
        let (channel, recv) = tokio::select! {
            accepted = conn.accept_uni() => {
                let Ok(mut recv) = accepted else {
                    return; // the connection ended; `watch` reports why
                };
                preambles.push(async move {
                    let channel = read_preamble(&mut recv).await;
                    (channel, recv)
                });
                continue;
            }
            Some(read) = preambles.next(), if !preambles.is_empty() => read,
        };
        let channel = match channel {
            Ok(c) => c,
            Err(why) => return protocol_error(&shared, &dispatch, why),
        };
        if std::mem::replace(&mut seen[channel.index()], true) {
            // spec: wire.md §17.2.3 — a second stream for a channel.
            return protocol_error(&shared, &dispatch, "a second stream for one channel");
        }
        let task = read_loop(channel, recv, shared.clone(), dispatch.clone());
        tokio::spawn(task.instrument(tracing::Span::current()));
    }
}

/// spec: wire.md §17.2.1 — a stream starts with its channel id as a varint (0 – 3, so one byte).
async fn read_preamble(recv: &mut RecvStream) -> Result<Channel, &'static str> {
    let mut byte = [0u8; 1];
    recv.read_exact(&mut byte)
        .await
        .map_err(|_| "a stream that ended before its channel id")?;
    // A one-byte varint has its top two bits clear; a longer encoding of 0 – 3 is not minimal.
    Channel::from_id(byte[0]).map_err(|_| "a stream with a channel id over 3")
}

fn protocol_error(shared: &Shared, dispatch: &SharedDispatch, why: &'static str) {
    warn!(why, "QUIC stream rule broken (wire.md §17.2.3, §17.6.4)");
    with_session(shared, dispatch, |s| {
        s.close(ErrorCode::PROTOCOL_ERROR, &format!("{why} (wire.md §17)"))
    });
    shared.wake_writer.notify_one();
}

/// Feeds one peer stream into the session while the session has room for it (§17.5).
async fn read_loop(
    channel: Channel,
    mut recv: RecvStream,
    shared: Arc<Shared>,
    dispatch: SharedDispatch,
) {
    let mut segments = vec![Bytes::new(); READ_SEGMENTS];
    loop {
        // Read only while the session holds less than its window: QUIC's flow control then
        // stops the peer at exactly the window the application has not consumed.
        if !shared.wait_readable(|s| s.can_read(channel)).await {
            return;
        }
        match recv.read_chunks(&mut segments).await {
            Ok(Some(n)) => {
                let mut was_open = false;
                with_session(&shared, &dispatch, |s| {
                    was_open = s.is_open();
                    let now = Instant::now();
                    for seg in &mut segments[..n] {
                        s.handle_stream(now, channel, std::mem::take(seg));
                    }
                });
                // After the events were handled (an accepted HELLO queues ours). The writer
                // also runs the timers: opening moves the deadline from the HELLO timeout to
                // the keepalive.
                let wake = {
                    let s = shared.lock();
                    s.wants_transmit() || s.is_closed() || (s.is_open() && !was_open)
                };
                if wake {
                    shared.wake_writer.notify_one();
                }
            }
            Ok(None) => {
                with_session(&shared, &dispatch, |s| {
                    s.handle_stream_end(Instant::now(), channel)
                });
                shared.wake_writer.notify_one();
                return;
            }
            Err(quinn::ReadError::Reset(code)) => {
                // spec: wire.md §17.6.4 — messages are cancelled with CANCEL, never by a reset.
                debug!(%channel, %code, "peer reset a channel stream");
                return protocol_error(&shared, &dispatch, "a channel stream reset by the peer");
            }
            Err(e) => {
                debug!(%channel, error = %e, "stream read ended");
                return; // the connection ended: `watch` reports why
            }
        }
    }
}

type WriteResult = Result<(), String>;

/// A write in progress, owning its stream's slot until it completes.
type WriteFuture = Pin<Box<dyn Future<Output = WriteResult> + Send>>;

/// This side's four send streams, shared by the writer task and the application's senders.
///
/// A slot's lock is held for exactly one write in flight on that stream: whoever holds it
/// writes, others leave their frames queued in the session. A sender that queued a message
/// writes it itself when the slot is free and the write completes at once (no task switch);
/// a write that has to wait for QUIC is handed to the writer task, never awaited by the sender
/// (a flow-controlled bulk stream must not block a task that also sends rpc).
pub(crate) struct StreamSlots {
    conn: quinn::Connection,
    slots: [Arc<tokio::sync::Mutex<Option<SendStream>>>; 4],
    handoff: mpsc::UnboundedSender<WriteFuture>,
}

impl Flush for StreamSlots {
    /// After a message was queued on `channel`: writes what the session has for that stream,
    /// if its slot is free; otherwise the slot's holder or the writer will. Control-channel
    /// messages share the control stream with the session's own frames: the writer sends them.
    fn after_queue(&self, shared: &Shared, channel: Channel, cx: &mut std::task::Context<'_>) {
        if channel == Channel::Control {
            shared.wake_writer.notify_one();
            return;
        }
        let i = channel.index();
        loop {
            let Ok(guard) = self.slots[i].clone().try_lock_owned() else {
                // The holder re-checks the session after it releases the slot.
                return;
            };
            let bytes = shared
                .lock()
                .poll_transmit(Instant::now(), Target::Stream(channel), STREAM_WRITE)
                .map(Transmit::into_segments);
            let Some(bytes) = bytes else {
                drop(guard);
                // Something queued between our poll and the release is ours to write.
                if shared.lock().has_channel_output(channel) {
                    continue;
                }
                return;
            };
            shared.changed.notify_waiters(); // send-buffer room opened
            let mut write: WriteFuture =
                Box::pin(write_one(self.conn.clone(), channel, guard, bytes));
            match write.as_mut().poll(cx) {
                std::task::Poll::Ready(Ok(())) => continue,
                std::task::Poll::Ready(Err(e)) => {
                    debug!(error = %e, "stream write failed");
                    shared.wake_writer.notify_one();
                    return;
                }
                std::task::Poll::Pending => {
                    let _ = self.handoff.send(write);
                    shared.wake_writer.notify_one();
                    return;
                }
            }
        }
    }
}

/// Writes `segments` to this side's stream for `channel` (its slot locked), opening it first if
/// needed. The slot is released when the write completes.
async fn write_one(
    conn: quinn::Connection,
    channel: Channel,
    mut slot: tokio::sync::OwnedMutexGuard<Option<SendStream>>,
    mut segments: Vec<Bytes>,
) -> WriteResult {
    if slot.is_none() {
        *slot = Some(open_stream(&conn, channel).await?);
    }
    let stream = slot.as_mut().ok_or("stream not opened")?;
    // quinn keeps the segments as they are: large payloads are never copied on our side.
    stream
        .write_all_chunks(&mut segments)
        .await
        .map_err(|e| e.to_string())
}

/// spec: wire.md §17.2.1, §17.4 — a unidirectional stream with the channel id first and the
/// channel's priority.
async fn open_stream(conn: &quinn::Connection, channel: Channel) -> Result<SendStream, String> {
    let mut s = conn.open_uni().await.map_err(|e| e.to_string())?;
    let _ = s.set_priority(PRIORITY[channel.index()]);
    s.write_chunk(Bytes::from(vec![channel as u8]))
        .await
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Moves the session's output onto the streams, runs the session's timers, and completes the
/// writes senders handed over. Each stream has at most one write in flight (its slot), so a
/// stream that QUIC's flow control holds back never delays another (§17.4); the session is
/// asked for a stream's next bytes only once its previous write is accepted.
async fn write_loop(
    conn: quinn::Connection,
    endpoint: Option<quinn::Endpoint>,
    shared: Arc<Shared>,
    dispatch: SharedDispatch,
    slots: Arc<StreamSlots>,
    mut handoff: mpsc::UnboundedReceiver<WriteFuture>,
    linger: Duration,
) {
    let mut in_flight: FuturesUnordered<WriteFuture> = FuturesUnordered::new();
    let mut failed = None;
    loop {
        let notified = shared.wake_writer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut deadline = None;
        let mut closed = false;
        let mut took = false;
        with_session(&shared, &dispatch, |s| {
            let now = Instant::now();
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            for ch in Channel::ALL {
                let Ok(guard) = slots.slots[ch.index()].clone().try_lock_owned() else {
                    continue; // a write is in flight on this stream
                };
                if let Some(b) = s
                    .poll_transmit(now, Target::Stream(ch), STREAM_WRITE)
                    .map(Transmit::into_segments)
                {
                    took = true;
                    in_flight.push(Box::pin(write_one(conn.clone(), ch, guard, b)));
                }
            }
            deadline = s.poll_timeout();
            closed = s.is_closed();
        });
        if took {
            shared.changed.notify_waiters(); // send-buffer room opened
        }

        if in_flight.is_empty() && (closed || shared.is_closed()) {
            break;
        }
        tokio::select! {
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = done {
                    failed = Some(e);
                    break;
                }
            }
            Some(write) = handoff.recv() => in_flight.push(write),
            _ = &mut notified => {
                // Let the tasks that are ready now (a receiver answering a batch of requests)
                // queue what they have: one write then carries all of it.
                tokio::task::yield_now().await;
            }
            _ = sleep_until(deadline) => {}
        }
    }
    if let Some(e) = failed {
        debug!(error = %e, "stream write failed");
        if !shared.lock().is_closed() {
            let reason = CloseReason::Lost(format!("QUIC write failed: {e}"));
            dispatch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .lost_with(&shared, reason);
        }
    }
    // Writes handed over since the last round complete before the close handshake.
    drop(handoff);
    let _ = tokio::time::timeout(linger, async {
        while let Some(r) = in_flight.next().await {
            let _ = r;
        }
    })
    .await;
    finish(conn, endpoint, &shared, &slots, linger).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// The close handshake (wire.md §17.6). The side that sent CLOSE finishes all its streams
/// (opening any it never used, so the peer knows nothing more is coming) and lets the peer,
/// which reads them to their end, close the QUIC connection; it closes it itself after
/// `linger`. The side that received CLOSE closes the QUIC connection with its code at once.
async fn finish(
    conn: quinn::Connection,
    endpoint: Option<quinn::Endpoint>,
    shared: &Shared,
    slots: &StreamSlots,
    linger: Duration,
) {
    let reason = shared.close_reason();
    let (code, text) = match &reason {
        Some(CloseReason::Closed { code, reason }) => (*code, reason.clone()),
        Some(CloseReason::Lost(why)) => (ErrorCode::INTERNAL_ERROR, why.clone()),
        None => (ErrorCode::NO_ERROR, String::new()),
    };
    let graceful_local = shared.closed_locally.load(Ordering::Acquire)
        && code == ErrorCode::NO_ERROR
        && matches!(reason, Some(CloseReason::Closed { .. }));
    if graceful_local {
        for ch in Channel::ALL {
            let Ok(mut slot) = tokio::time::timeout(linger, slots.slots[ch.index()].lock()).await
            else {
                continue;
            };
            if slot.is_none() {
                *slot = open_stream(&conn, ch).await.ok();
            }
            if let Some(s) = slot.as_mut() {
                let _ = s.finish();
            }
        }
        let _ = tokio::time::timeout(linger, conn.closed()).await;
    }
    let code = VarInt::from_u64(code.0).unwrap_or(VarInt::from_u32(0x01));
    let text = &text.as_bytes()[..text.len().min(256)];
    conn.close(code, text);
    if let Some(endpoint) = endpoint {
        // A client's endpoint is its own: wait (briefly) for the CONNECTION_CLOSE to leave.
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
}
