//! The QUIC driver: the tokio tasks that move one QUIC connection's streams in and out of a
//! session (wire.md §17), one connection at a time for a resumable session (§21).
//!
//! Owns, per QUIC connection (a *transport* of the session, one generation of its shared
//! state): accepting the peer's channel streams and reading them while the session has room
//! (§17.5), this side's four send streams and their writes (§17.4), the session's timers, the
//! close handshake (§17.6), and noticing the connection's end. Every task checks, under the
//! session's lock, that its transport is still the session's current one: once a resumable
//! session moved on (detached, or resumed over another connection), the old connection's
//! tasks touch nothing and the connection is closed with `TRANSPORT_ABANDONED` (§17.6.5).
//! Never interprets frames: the session does.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use quinn::{ConnectionError, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tracing::{debug, warn, Instrument};

use crate::config::Config;
use crate::error::Error;
use crate::frame::{Channel, ErrorCode};
use crate::session::{Session, Target, Transmit};
use crate::transport::dispatch::{self, with_session, Opening, SharedDispatch};
use crate::transport::flush::Flush;
use crate::transport::resume::{self, Resumer};
use crate::transport::shared::{CloseReason, Opened, Shared};

/// Most bytes handed to quinn per stream write: what the sender holds beyond QUIC's windows
/// (quinn keeps a write until the stream's flow control lets it out, wire.md §17.5). quinn
/// interleaves streams by priority per packet, so a larger write would not delay a
/// higher channel, only hold more memory.
const STREAM_WRITE: usize = 64 * 1024;

/// Send priorities of the channel streams, control highest (wire.md §17.4).
const PRIORITY: [i32; 4] = [3, 2, 1, 0];

/// Most received segments handed to the session under one lock (QUIC delivers a stream as
/// packet-sized segments; taking them one by one would cost a lock and a wake-up each).
const READ_SEGMENTS: usize = 64;

/// One QUIC connection for a session, before its tasks start.
pub(super) struct Transport {
    pub(super) conn: quinn::Connection,
    /// A client's own endpoint, left to go idle when the session ends (none for a server or
    /// a shared client socket).
    pub(super) endpoint: Option<quinn::Endpoint>,
    /// How long the close handshake may take (the keepalive timeout, §17.6.1).
    pub(super) linger: Duration,
    /// The peer's stream already accepted (a server reads the client's control stream and
    /// its HELLO before it knows which session the connection belongs to).
    pub(super) first: Option<(Channel, RecvStream)>,
}

/// Closes its QUIC connection with `TRANSPORT_ABANDONED` (wire.md §17.6.5) when the last task
/// of the transport lets go of it: the session moved on without ending (or its tasks were
/// aborted). quinn would otherwise close a connection whose handles are all dropped with code
/// 0, which the peer would take for CLOSE `NO_ERROR` (§17.6.3). After the close handshake
/// ([`finish`]) closed it with the session's code, this close does nothing.
struct Abandon(quinn::Connection);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.close(
            VarInt::from_u32(ErrorCode::TRANSPORT_ABANDONED.0 as u32),
            b"",
        );
    }
}

/// A new session over `t`: shared state, the driver's tasks, then the HELLO exchange.
/// `resumer` finds a resumable client session a new connection if this one is lost.
pub(super) async fn start(
    t: Transport,
    session: Session,
    config: &Config,
    resumer: Option<Arc<dyn Resumer>>,
) -> Result<Opened, Error> {
    let opening = Opening::new(session, config, t.conn.remote_address());
    if let Some(r) = resumer {
        let _ = opening.shared.resumer.set(r);
    }
    spawn(t, opening.shared.clone(), opening.dispatch.clone(), false);
    opening.established().await
}

/// Starts the tasks of transport `t` for the session of `shared`, serving its current
/// generation. `resumed`: a detached session carries on over `t` (it shows in the span).
pub(super) fn spawn(t: Transport, shared: Arc<Shared>, dispatch: SharedDispatch, resumed: bool) {
    let generation = shared.generation();
    let role = shared.lock().role();
    let span = tracing::info_span!(
        "connection",
        peer = %t.conn.remote_address(),
        role = ?role,
        transport = "quic",
        resumed
    );
    let abandon = Arc::new(Abandon(t.conn.clone()));
    let (handoff_tx, handoff_rx) = mpsc::unbounded_channel();
    let slots = Arc::new(StreamSlots {
        conn: t.conn.clone(),
        slots: Default::default(),
        handoff: handoff_tx,
        generation,
    });
    shared.flush.set(slots.clone());
    let accept = accept_streams(
        abandon.clone(),
        t.first,
        shared.clone(),
        dispatch.clone(),
        generation,
    );
    let watch = watch(t.conn.clone(), shared.clone(), dispatch.clone(), generation);
    let writer = write_loop(
        abandon,
        t.endpoint,
        shared.clone(),
        dispatch,
        slots,
        handoff_rx,
        t.linger,
        generation,
    );
    let tasks = [
        tokio::spawn(accept.instrument(span.clone())),
        tokio::spawn(watch.instrument(span.clone())),
        tokio::spawn(writer.instrument(span)),
    ];
    shared.track_tasks(tasks.iter().map(|t| t.abort_handle()));
    shared.wake_writer.notify_one();
}

/// Waits for the QUIC connection to end and reports why, if the session had not ended first
/// and this is still its transport. A lost connection detaches a resumable session
/// (wire.md §21.5.1); a closed one (§17.6.3) ends it.
async fn watch(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    dispatch: SharedDispatch,
    generation: u64,
) {
    let e = conn.closed().await;
    if shared.generation() != generation {
        return; // the session moved on to another connection
    }
    let reason = match e {
        // spec: wire.md §17.6.5 — a transport the peer gave up, its session not ended.
        ConnectionError::ApplicationClosed(a)
            if a.error_code.into_inner() == ErrorCode::TRANSPORT_ABANDONED.0 =>
        {
            CloseReason::Lost("the peer abandoned this QUIC connection (wire.md §17.6.5)".into())
        }
        // spec: wire.md §17.6.3 — the application close code is the CLOSE's code.
        ConnectionError::ApplicationClosed(a) => CloseReason::Closed {
            code: ErrorCode(a.error_code.into_inner()),
            reason: String::from_utf8_lossy(&a.reason).into_owned(),
        },
        ConnectionError::LocallyClosed => CloseReason::Lost("closed locally".into()),
        ConnectionError::TimedOut => CloseReason::Lost("QUIC idle timeout: peer silent".into()),
        other => CloseReason::Lost(other.to_string()),
    };
    match reason {
        CloseReason::Lost(why) => resume::transport_lost(&shared, &dispatch, generation, why),
        closed => dispatch::lost_with(&shared, &dispatch, closed),
    }
}

/// Accepts the peer's channel streams (wire.md §17.2) and spawns a reader for each.
///
/// spec: wire.md §17.2.6 — preambles are read concurrently: a stream whose channel id never
/// comes holds only itself, never the streams opened after it (QUIC opens lower stream ids
/// implicitly, so a peer that writes on its second stream hands us the silent first one first).
/// At most four are open at once (§17.2.3), so the pending set is bounded by the transport.
async fn accept_streams(
    abandon: Arc<Abandon>,
    first: Option<(Channel, RecvStream)>,
    shared: Arc<Shared>,
    dispatch: SharedDispatch,
    generation: u64,
) {
    let conn = abandon.0.clone();
    let mut seen = [false; 4];
    let mut preambles = FuturesUnordered::new();
    let mut first = first.map(|(channel, recv)| (Ok(channel), recv));
    loop {
        let (channel, recv) = match first.take() {
            Some(accepted) => accepted,
            None => tokio::select! {
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
            },
        };
        if shared.generation() != generation {
            return; // the session moved on to another connection
        }
        let channel = match channel {
            Ok(c) => c,
            Err(why) => return protocol_error(&shared, &dispatch, why),
        };
        if std::mem::replace(&mut seen[channel.index()], true) {
            // spec: wire.md §17.2.3 — a second stream for a channel.
            return protocol_error(&shared, &dispatch, "a second stream for one channel");
        }
        let task = read_loop(
            channel,
            recv,
            abandon.clone(),
            shared.clone(),
            dispatch.clone(),
            generation,
        );
        let task = tokio::spawn(task.instrument(tracing::Span::current()));
        shared.track_tasks([task.abort_handle()]);
    }
}

/// spec: wire.md §17.2.1 — a stream starts with its channel id as a varint (0 – 3, so one byte).
pub(super) async fn read_preamble(recv: &mut RecvStream) -> Result<Channel, &'static str> {
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
///
/// Holds the transport (`_abandon`) while it reads; stops once the session moved on to
/// another connection (checked under the lock that a resume takes, so no byte of an old
/// connection reaches the session after it resumed elsewhere).
async fn read_loop(
    channel: Channel,
    mut recv: RecvStream,
    _abandon: Arc<Abandon>,
    shared: Arc<Shared>,
    dispatch: SharedDispatch,
    generation: u64,
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
                let (mut was_open, mut retired) = (false, false);
                with_session(&shared, &dispatch, |s| {
                    if shared.generation() != generation {
                        retired = true;
                        return;
                    }
                    was_open = s.is_open();
                    let now = Instant::now();
                    for seg in &mut segments[..n] {
                        s.handle_stream(now, channel, std::mem::take(seg));
                    }
                });
                if retired {
                    return;
                }
                // After the events were handled (an accepted HELLO queues ours). The writer
                // also runs the timers: opening moves the deadline from the HELLO timeout to
                // the keepalive.
                // An ACK that made room in a replay buffer (wire.md §21.4.2) lets queued
                // messages start.
                let wake = {
                    let s = shared.lock();
                    s.wants_transmit()
                        || s.is_closed()
                        || (s.is_open() && !was_open)
                        || (s.is_resumable()
                            && Channel::ALL.iter().any(|&c| s.has_channel_output(c)))
                };
                if wake {
                    shared.wake_writer.notify_one();
                }
            }
            Ok(None) => {
                with_session(&shared, &dispatch, |s| {
                    if shared.generation() == generation {
                        s.handle_stream_end(Instant::now(), channel)
                    }
                });
                shared.wake_writer.notify_one();
                return;
            }
            Err(quinn::ReadError::Reset(code)) => {
                // spec: wire.md §17.6.4 — messages are cancelled with CANCEL, never by a reset.
                debug!(%channel, %code, "peer reset a channel stream");
                if shared.generation() != generation {
                    return;
                }
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
    /// The transport generation these streams belong to: once the session moved on they take
    /// nothing from it (what they took would be lost with the old connection).
    generation: u64,
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
            let bytes = {
                let mut s = shared.lock();
                if shared.generation() != self.generation {
                    return;
                }
                s.poll_transmit(Instant::now(), Target::Stream(channel), STREAM_WRITE)
                    .map(Transmit::into_segments)
            };
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
#[allow(clippy::too_many_arguments)]
async fn write_loop(
    abandon: Arc<Abandon>,
    endpoint: Option<quinn::Endpoint>,
    shared: Arc<Shared>,
    dispatch: SharedDispatch,
    slots: Arc<StreamSlots>,
    mut handoff: mpsc::UnboundedReceiver<WriteFuture>,
    linger: Duration,
    generation: u64,
) {
    let conn = abandon.0.clone();
    let mut in_flight: FuturesUnordered<WriteFuture> = FuturesUnordered::new();
    let mut failed = None;
    loop {
        let notified = shared.wake_writer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut deadline = None;
        let mut closed = false;
        let mut took = false;
        let (mut retired, mut detached) = (false, false);
        with_session(&shared, &dispatch, |s| {
            if shared.generation() != generation {
                retired = true;
                return;
            }
            let now = Instant::now();
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now); // a silent peer may detach a resumable session
            }
            if s.is_detached() {
                detached = true;
                return;
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
        if detached {
            // The session detached itself (keepalive, wire.md §21.5.1): this connection is
            // given up (`Abandon`) and the resumer finds another.
            resume::hand_over(&shared, &dispatch, generation);
        }
        if retired || detached {
            // A wake-up meant for the next transport's writer is passed on.
            shared.wake_writer.notify_one();
            return;
        }
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
        let why = format!("QUIC write failed: {e}");
        resume::transport_lost(&shared, &dispatch, generation, why);
        if shared.generation() != generation {
            return; // detached: the resumer finds another connection
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
