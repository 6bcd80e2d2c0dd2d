//! The driver: two tokio tasks per connection that move bytes between a message transport
//! (a stream of received batches, and a sink for batches given as segments to write in order,
//! `Session::poll_transmit` with `Target::Batch`) and the shared session.
//!
//! The reader task feeds received batches into the session and hands out events; the writer
//! task sends what the session produces, as soon as it is ready (no timer, wire.md §10.2), and
//! runs the session's timers. A sender whose message finds the transport idle writes the batch
//! itself ([`DirectSink`], the WebSocket flush hook): one task switch less per request or
//! reply (wire.md §16.4). Reading
//! never waits for writing, so two peers that both send a lot cannot deadlock. Never decodes
//! anything itself.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Sink, Stream, StreamExt};
use tracing::Instrument;

use crate::frame::Channel;
use crate::session::{Session, Target, Transmit};
use crate::transport::dispatch::{self, drain_events, with_session, SharedDispatch};
use crate::transport::flush::Flush;
use crate::transport::resume;
use crate::transport::shared::Shared;

/// Spawns the reader and writer tasks for one connection, over the transport of the
/// session's current generation (a resumed session's new transport gets new tasks; the old
/// ones were retired, wire.md §21.5).
pub(crate) fn spawn<R, W>(
    shared: Arc<Shared>,
    reader: R,
    writer: W,
    dispatch: SharedDispatch,
    span: tracing::Span,
) where
    R: Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
    W: Sink<Vec<Bytes>, Error = io::Error> + Send + Unpin + 'static,
{
    let generation = shared.generation();
    let slot = Arc::new(std::sync::Mutex::new(SinkSlot {
        sink: writer,
        unflushed: false,
        limit: START_BATCH,
        writer_waiting: false,
    }));
    shared.flush.set(Arc::new(DirectSink {
        slot: slot.clone(),
        armed: true.into(),
        generation,
    }));
    let read = read_loop(shared.clone(), reader, dispatch.clone(), generation);
    let write = write_loop(shared.clone(), slot, dispatch, generation);
    let tasks = if span.is_disabled() {
        // No subscriber wants the span: entering it on every poll would cost for nothing.
        [tokio::spawn(read), tokio::spawn(write)]
    } else {
        [
            tokio::spawn(read.instrument(span.clone())),
            tokio::spawn(write.instrument(span)),
        ]
    };
    shared.track_tasks(tasks.iter().map(|t| t.abort_handle()));
}

/// Whether the writer has something to do: frames to send, queued messages, a close.
fn has_output(s: &Session) -> bool {
    s.wants_transmit()
        || !s.is_open()
        || crate::frame::Channel::ALL
            .iter()
            .any(|&c| s.queued_bytes(c) > 0)
}

async fn read_loop<R>(shared: Arc<Shared>, mut reader: R, dispatch: SharedDispatch, generation: u64)
where
    R: Stream<Item = io::Result<Bytes>> + Unpin,
{
    loop {
        // spec: wire.md §9.6.1 — not reading while the application holds its most unreleased
        // messages: the transport pushes back on the peer.
        if !shared.wait_readable(Session::wants_read).await {
            return;
        }
        match reader.next().await {
            Some(Ok(batch)) => {
                // Wake the writer only if the batch (and the events it produced, such as an
                // accepted HELLO) gave it something to do: a PONG, a CREDIT to return, queued
                // messages that credit may have unblocked, a close. An idle wake-up per
                // received batch costs a task switch. One lock for all of it.
                let (wake, hello) = {
                    let mut s = shared.lock();
                    // Checked under the lock that a resume takes (wire.md §21.6): bytes of a
                    // retired transport never reach the session of its successor.
                    if shared.generation() != generation {
                        return;
                    }
                    s.handle_batch(Instant::now(), batch);
                    let hello = drain_events(&mut s, &shared, &dispatch);
                    (has_output(&s), hello)
                };
                if let Some(request) = hello {
                    // The authenticator runs with no lock held; its answer wakes the writer.
                    dispatch::authenticate(&shared, &dispatch, request);
                }
                if wake {
                    shared.wake_writer.notify_one();
                }
                shared.flush.with(|hook| {
                    if let Some(f) = hook {
                        f.on_received();
                    }
                });
                if shared.is_closed() {
                    return;
                }
            }
            Some(Err(e)) => {
                let closed = shared.lock().is_closed();
                if !closed {
                    resume::transport_lost(&shared, &dispatch, generation, e.to_string());
                }
                return;
            }
            None => {
                let closed = shared.lock().is_closed();
                if !closed {
                    let why = "the transport ended without CLOSE".to_string();
                    resume::transport_lost(&shared, &dispatch, generation, why);
                }
                return;
            }
        }
    }
}

/// Batch limit while the transport is backed up (the previous write had to wait).
const CONGESTED_BATCH: usize = 16 * 1024;

/// The first batch after the link was idle or backed up; batches double from here, up to the
/// session's `max_batch`, while each one fills its limit and the transport takes it without
/// making us wait.
const START_BATCH: usize = 64 * 1024;

/// How long a frame that becomes ready may wait behind the batch being written, at the rate
/// the transport drains batches: what decides whether a wait means a slow link.
const HOL_BUDGET: std::time::Duration = std::time::Duration::from_millis(1);

/// The batch limit of the writer: small while the link is slow (frames that become ready
/// meanwhile, such as an rpc reply behind a bulk transfer, are scheduled ahead of what sits
/// below the scheduler), growing while the transport keeps up (fewer system calls per byte).
///
/// A link is slow when the transport makes us wait and, at the rate it took the last batch, the
/// next one would take longer than [`HOL_BUDGET`] to drain: a 100 Mbit/s link drains 12.5 KB
/// per millisecond (16 KiB batches), loopback to a busy reader gigabytes per second (a wait
/// there means the reader is busy, not that a larger batch would delay anything).
#[derive(Debug)]
struct BatchLimit {
    /// The link was found slow since we last ran out of frames.
    congested: bool,
    /// The limit while it is not.
    growing: usize,
}

impl BatchLimit {
    fn new() -> BatchLimit {
        BatchLimit {
            congested: false,
            growing: START_BATCH,
        }
    }

    fn get(&self) -> usize {
        if self.congested {
            CONGESTED_BATCH
        } else {
            self.growing
        }
    }

    /// The transport made us wait before the next batch; the last batch, of `last_len` bytes,
    /// was handed to it `took` ago.
    fn waited(&mut self, last_len: usize, took: std::time::Duration) {
        // Bytes the link drains within the budget, at the rate it took the last batch. Becoming
        // writable again means the kernel's unsent bytes fell below TCP_NOTSENT_LOWAT (16 KiB):
        // after a small batch (a CREDIT, a PONG) at least that much had drained.
        let drained = last_len.max(CONGESTED_BATCH) as f64;
        let budget = drained * HOL_BUDGET.as_secs_f64() / took.as_secs_f64().max(1e-9);
        if budget < self.get() as f64 {
            self.congested = true;
            self.growing = START_BATCH;
        }
    }

    /// A batch of `len` bytes left under the limit `limit`; the session allows at most
    /// `ceiling` (its `max_batch` and the peer's `MAX_BATCH_SIZE`).
    fn sent(&mut self, len: usize, limit: usize, ceiling: usize) {
        if !self.congested && len >= limit - limit / 8 {
            self.growing = self.growing.saturating_mul(2).min(ceiling.max(START_BATCH));
        }
    }

    /// Nothing left to send: the next burst starts small again.
    fn idle(&mut self) {
        self.congested = false;
        self.growing = START_BATCH;
    }
}

/// The transport's sink, shared by the writer task and the senders that write their own
/// batch when it is idle ([`DirectSink`]). Locked only between awaits, never across one.
pub(crate) struct SinkSlot<W> {
    sink: W,
    /// Batches were handed to the sink since it was last flushed.
    unflushed: bool,
    /// The writer's current batch limit ([`BatchLimit`]), which a direct write keeps to.
    limit: usize,
    /// The writer task waits for the sink (it registered its waker with the transport): a
    /// direct write would replace that registration, so it leaves the sink alone.
    writer_waiting: bool,
}

type SharedSink<W> = Arc<std::sync::Mutex<SinkSlot<W>>>;

fn lock_slot<W>(slot: &SharedSink<W>) -> std::sync::MutexGuard<'_, SinkSlot<W>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// The WebSocket flush hook: lets a sender write the batch it just queued itself, on its own
/// task, when the sink is idle: a request or a reply then leaves without waking the writer task
/// (one task switch less per message). Anything it cannot finish — the sink busy or backed up,
/// output left over, events to deliver — is left to the writer task, which it wakes.
///
/// At most one direct write per batch received: a request or a reply goes out at once, while
/// a burst of sends (a one-way stream) is left to the writer task, which sends what piled up
/// in one batch instead of one system call per message.
pub(crate) struct DirectSink<W> {
    slot: SharedSink<W>,
    /// A direct write is allowed (none since the last batch received).
    armed: std::sync::atomic::AtomicBool,
    /// The transport generation this sink belongs to: once retired it takes nothing from the
    /// session (what it took would be lost with the old socket).
    generation: u64,
}

impl<W> DirectSink<W>
where
    W: Sink<Vec<Bytes>, Error = io::Error> + Unpin,
{
    /// One batch, if the sink takes it at once; true if the writer task has nothing left to
    /// do. The batch is taken from the session under the sink's lock, so batches reach the
    /// sink in the order the session produced them, whoever writes them.
    fn try_write(&self, shared: &Shared, cx: &mut std::task::Context<'_>) -> bool {
        use std::pin::Pin;
        use std::task::Poll;
        let Ok(mut slot) = self.slot.try_lock() else {
            return false; // the writer task is at it
        };
        let slot = &mut *slot;
        if slot.writer_waiting {
            return false;
        }
        // Idle only: a sink still writing an earlier batch means the link is the bottleneck,
        // and the writer task's scheduling (§16.4) decides what goes next.
        if !matches!(Pin::new(&mut slot.sink).poll_ready(cx), Poll::Ready(Ok(()))) {
            return false;
        }
        let (batch, more) = {
            let mut s = shared.lock();
            if shared.generation() != self.generation {
                return false;
            }
            let b = s
                .poll_transmit(Instant::now(), Target::Batch, slot.limit)
                .map(Transmit::into_segments);
            (b, has_output(&s) || s.has_events())
        };
        let Some(batch) = batch else {
            return !more;
        };
        shared.changed.notify_waiters(); // send-buffer room may have opened
        if Pin::new(&mut slot.sink).start_send(batch).is_err() {
            return false; // the writer task finds the error on its next poll
        }
        slot.unflushed = true;
        if !matches!(Pin::new(&mut slot.sink).poll_flush(cx), Poll::Ready(Ok(()))) {
            return false;
        }
        slot.unflushed = false;
        !more
    }
}

impl<W> Flush for DirectSink<W>
where
    W: Sink<Vec<Bytes>, Error = io::Error> + Unpin + Send,
{
    /// Writes what the session has to send now (whatever the channel: one ordered stream of
    /// batches) if the sink is idle and no direct write happened since the last batch was
    /// received; wakes the writer task for whatever is left.
    fn after_queue(&self, shared: &Shared, _channel: Channel, cx: &mut std::task::Context<'_>) {
        if !self.armed.swap(false, std::sync::atomic::Ordering::Relaxed)
            || !self.try_write(shared, cx)
        {
            shared.wake_writer.notify_one();
        }
    }

    fn on_received(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What one turn of the writer found.
enum Turn {
    /// A batch went to the sink.
    Sent,
    /// Nothing to send; the session's next deadline, and whether it is closed.
    Idle {
        deadline: Option<Instant>,
        closed: bool,
    },
    /// This transport is done: retired (a resumed session moved on), or the session detached
    /// itself.
    Retired { detached: bool },
}

async fn write_loop<W>(
    shared: Arc<Shared>,
    slot: SharedSink<W>,
    dispatch: SharedDispatch,
    generation: u64,
) where
    W: Sink<Vec<Bytes>, Error = io::Error> + Unpin,
{
    use std::pin::Pin;
    let lost = |e: io::Error| resume::transport_lost(&shared, &dispatch, generation, e.to_string());
    let mut batch_limit = BatchLimit::new();
    // The last batch handed to the transport: its size and when.
    let mut last_batch = (0usize, Instant::now());
    // One timer for the session's deadlines, moved only when the deadline changes (a new
    // timer per idle period costs a timer-wheel insertion and removal per message).
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    let timer = tokio::time::sleep_until(far());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        let notified = shared.wake_writer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Take a batch from the session only once the transport can accept it, so frames that
        // become ready meanwhile (an rpc reply behind a bulk transfer) are still scheduled
        // first (wire.md §7.5, §16.4). If we had to wait, the link may be the bottleneck:
        // small batches keep what sits below the scheduler short.
        let mut waited = false;
        let turn = futures_util::future::poll_fn(|cx| {
            let mut guard = lock_slot(&slot);
            let g = &mut *guard;
            let ready = Pin::new(&mut g.sink).poll_ready(cx);
            g.writer_waiting = ready.is_pending();
            match ready {
                std::task::Poll::Pending => {
                    waited = true;
                    return std::task::Poll::Pending;
                }
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Ready(Ok(())) => {}
            }
            if std::mem::take(&mut waited) {
                batch_limit.waited(last_batch.0, last_batch.1.elapsed());
            }
            let limit = batch_limit.get();
            let mut batch = None;
            let (mut deadline, mut closed) = (None, false);
            let (mut capped, mut ceiling) = (limit, limit);
            let (mut retired, mut detached) = (false, false);
            let now = Instant::now();
            with_session(&shared, &dispatch, |s| {
                if shared.generation() != generation {
                    retired = true;
                    return;
                }
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now); // a silent peer may detach a resumable session
                }
                detached = s.is_detached();
                capped = s.batch_limit(limit);
                ceiling = s.batch_limit(usize::MAX);
                batch = s
                    .poll_transmit(now, Target::Batch, limit)
                    .map(Transmit::into_segments);
                deadline = s.poll_timeout();
                closed = s.is_closed();
            });
            if retired || detached {
                return std::task::Poll::Ready(Ok(Turn::Retired { detached }));
            }
            let Some(b) = batch else {
                batch_limit.idle();
                g.limit = batch_limit.get();
                return std::task::Poll::Ready(Ok(Turn::Idle { deadline, closed }));
            };
            let len = b.iter().map(Bytes::len).sum();
            batch_limit.sent(len, capped, ceiling);
            g.limit = batch_limit.get();
            last_batch = (len, now);
            shared.changed.notify_waiters(); // send-buffer room may have opened
            Pin::new(&mut g.sink).start_send(b)?;
            g.unflushed = true;
            std::task::Poll::Ready(Ok(Turn::Sent))
        })
        .await;
        let (deadline, closed) = match turn {
            Err(e) => return lost(e),
            Ok(Turn::Sent) => continue,
            Ok(Turn::Retired { detached }) => {
                if detached {
                    // The session detached itself (keepalive, wire.md §21.5.1): drop this
                    // transport and let the resumer find another.
                    resume::hand_over(&shared, &dispatch, generation);
                }
                // A wake-up meant for the next transport's writer is passed on.
                shared.wake_writer.notify_one();
                return;
            }
            Ok(Turn::Idle { deadline, closed }) => (deadline, closed),
        };
        // Flush what this task or a direct writer left unflushed. No need to ask the session
        // again afterwards: `notified` was enabled before it was asked, so anything queued
        // since has woken it, and the wait below returns at once.
        let flushed = futures_util::future::poll_fn(|cx| {
            let mut g = lock_slot(&slot);
            if !g.unflushed {
                return std::task::Poll::Ready(Ok(()));
            }
            let r = Pin::new(&mut g.sink).poll_flush(cx);
            g.writer_waiting = r.is_pending();
            if matches!(r, std::task::Poll::Ready(Ok(()))) {
                g.unflushed = false;
            }
            r
        })
        .await;
        if let Err(e) = flushed {
            return lost(e);
        }
        if closed || shared.is_closed() {
            let _ = futures_util::future::poll_fn(|cx| {
                let mut g = lock_slot(&slot);
                // Closing: no more direct writes.
                g.writer_waiting = true;
                Pin::new(&mut g.sink).poll_close(cx)
            })
            .await;
            return;
        }
        if deadline != armed {
            armed = deadline;
            timer
                .as_mut()
                .reset(deadline.map_or_else(far, tokio::time::Instant::from_std));
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = &mut timer => armed = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn batches_grow_while_the_transport_keeps_up_and_shrink_when_it_does_not() {
        let ceiling = 256 * 1024;
        let mut b = BatchLimit::new();
        assert_eq!(b.get(), START_BATCH);
        // Full batches taken without waiting: 64 → 128 → 256 KiB, and no further.
        for want in [128 * 1024, 256 * 1024, 256 * 1024] {
            let limit = b.get();
            b.sent(limit, limit, ceiling);
            assert_eq!(b.get(), want);
        }
        // A batch that did not fill its limit (what was ready fit): no growth.
        b.idle();
        b.sent(1000, START_BATCH, ceiling);
        assert_eq!(b.get(), START_BATCH);
        // The transport made us wait, but drained 64 KiB in 10 µs (6.5 GB/s, a busy reader on
        // loopback): the next 128 KiB would drain well within the budget.
        b.sent(START_BATCH, START_BATCH, ceiling);
        assert_eq!(b.get(), 2 * START_BATCH);
        b.waited(START_BATCH, Duration::from_micros(10));
        assert_eq!(b.get(), 2 * START_BATCH);
        // 64 KiB in 5 ms (100 Mbit/s): small batches until the sender runs dry.
        b.waited(START_BATCH, Duration::from_millis(5));
        assert_eq!(b.get(), CONGESTED_BATCH);
        b.sent(CONGESTED_BATCH, CONGESTED_BATCH, ceiling);
        b.waited(CONGESTED_BATCH, Duration::from_micros(1));
        assert_eq!(b.get(), CONGESTED_BATCH, "congestion lasts until idle");
        // A wait after a 22-byte CREDIT on loopback is not a slow link.
        b.idle();
        b.waited(22, Duration::from_micros(20));
        assert_eq!(b.get(), START_BATCH);
        b.idle();
        assert_eq!(b.get(), START_BATCH);
        // A ceiling below the start (a peer's small MAX_BATCH_SIZE) never shrinks the start.
        b.sent(START_BATCH, START_BATCH, 16 * 1024);
        assert_eq!(b.get(), START_BATCH);
    }
}
