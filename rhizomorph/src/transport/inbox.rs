//! The receiving side of a connection: one queue per channel, the pending calls and the open
//! transfers, filled by the driver and emptied by the application's receivers.
//!
//! Owns where a received message goes (wire.md §20): a reply to one of our calls goes to that
//! call, a cancellation is recorded for the request it names, a transfer's later parts go to
//! that transfer, and everything else to its channel's queue, which is taken in priority order
//! (`control` > `rpc` > `stream` > `bulk`, §7) by a connection's receiver, or by the receiver
//! a task took for that one channel. Bounded by flow control: only what the windows allow is
//! ever queued (the driver reads no further), and what nobody will read is handed back to have
//! its credit returned at once. Never waits, never takes the session's lock, never touches a
//! socket; the face polls it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use super::calls::{CallTable, Reply};
use tracing::debug;

use crate::exchange::{self, Exchange};
use crate::frame::Channel;
use crate::session::Message;

/// Cancellations remembered for requests not (yet) seen, or not watched: a cancellation may
/// arrive before its request (it may travel on another channel, §20.2). Oldest forgotten first.
const REMEMBERED_CANCELS: usize = 1024;

/// Incoming transfers open at once on one connection; the first part of one more is handed out
/// as an ordinary message (its later parts are dropped), so a peer cannot grow the table.
pub(crate) const MAX_OPEN_TRANSFERS: usize = 1024;

/// Requests whose replies a drain waits for (§20.1, §14.1.4); past it, a request is handed out
/// untracked (a drain does not wait for its reply), so a peer cannot grow the set.
pub(crate) const MAX_OWED_REPLIES: usize = 65_536;

/// Who a channel's messages go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// The connection's receiver (every channel no task took).
    Connection,
    /// A receiver a task took for this channel.
    Own,
    /// Nobody: its receiver was dropped. Messages are discarded and their credit returned.
    Gone,
}

/// A request or transfer as its sender names it: the `from` a router set (empty on a direct
/// connection) and its id.
pub(crate) type PeerKey = (Bytes, Bytes);

/// The hasher of the tables keyed by [`PeerKey`]s: the peer chooses those keys, so the hash is
/// seeded at random per table (no fixed collisions to flood with), yet a few times cheaper than
/// SipHash on keys this short (two per request: taking it and answering it).
type PeerHash = foldhash::quality::RandomState;

/// An incoming transfer's parts after the first (§20.3), waiting for the application.
#[derive(Debug, Default)]
struct TransferQueue {
    parts: VecDeque<Message>,
    /// The part number the next one must have.
    next_seq: u64,
    /// The last part arrived (or the transfer broke): nothing more will.
    ended: bool,
    /// The application dropped it: parts are discarded.
    dropped: bool,
    /// A part came out of order (the sender's bug): the transfer failed.
    broken: Option<String>,
    waker: Option<Waker>,
}

/// What [`Inbox::poll_part`] found.
pub(crate) enum Part {
    /// The next part.
    Next(Message),
    /// Nothing more: the last part was taken, or the connection ended before it came.
    End,
    /// The transfer broke (a part out of order).
    Broken(String),
}

#[derive(Default)]
struct State {
    queues: [VecDeque<Message>; 4],
    readers: [Option<Reader>; 4],
    /// The channel receiver's waker, per channel; `any` the connection receiver's.
    wakers: [Option<Waker>; 4],
    any: Option<Waker>,
    /// No more messages will arrive.
    closed: bool,
    /// Our calls waiting for a reply, by session id.
    calls: CallTable,
    /// The application started a graceful close: requests taken from now on, and those still
    /// owed, are counted by the session (its CLOSE waits for their replies).
    draining: bool,
    /// Cancellations received (§20.2), newest last, and a set of the same for lookup.
    cancelled: VecDeque<PeerKey>,
    cancelled_set: HashSet<PeerKey, PeerHash>,
    /// Tasks watching a request for its cancellation.
    cancel_watchers: HashMap<PeerKey, Vec<Waker>, PeerHash>,
    /// Cancellations recorded so far: `cancelled` holds the newest, numbered up to this
    /// (the feed [`Inbox::poll_cancellations`] reads).
    cancel_seq: u64,
    /// Readers of that feed waiting for the next one.
    cancel_feed: Vec<Waker>,
    /// Incoming transfers, by sender and stream id.
    transfers: HashMap<PeerKey, TransferQueue, PeerHash>,
    /// Our outgoing transfers the receiver cancelled (§20.4), until their sender sees it.
    transfers_cancelled: HashSet<u64>,
    /// Requests received and not yet answered: the session's drain waits for them.
    owed: HashSet<PeerKey, PeerHash>,
    /// The newest cluster inbox entry taken, by node and channel (wire.md §22.5).
    entries: super::redelivery::Taken,
}

/// Closes a connection's inbox when the driver's event delivery ends (its last task is done):
/// receivers see the end only after the driver wrote its last frame, as a closed channel would
/// tell them.
pub(crate) struct CloseOnDrop(pub(crate) std::sync::Arc<dyn super::handle::Handle>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.common().inbox.close();
    }
}

/// What became of a message handed to [`Inbox::push`].
#[must_use = "credit of a message nobody will read must be returned"]
pub(crate) enum Pushed {
    /// Queued for the application (its credit is returned when it is taken).
    Queued,
    /// A request, queued: the application owes its reply (`Session::owe_reply`).
    QueuedRequest,
    /// Nobody will take it as it is (a reply or cancellation was consumed, or its reader is
    /// gone): return `credit` on `channel` now.
    Release(Channel, u64),
    /// As `Release`, and a reply owed is no longer (its request was cancelled):
    /// `Session::reply_settled`.
    ReleaseSettled(Channel, u64),
}

/// The receiving side of one connection (see the module doc).
pub(crate) struct Inbox {
    state: Mutex<State>,
    /// Whether §20 messages are acted on (false for a router: it forwards them as they are).
    exchanges: AtomicBool,
    /// Whether a drain waits for the replies owed to requests (a server's: it answers them).
    track_owed: AtomicBool,
    /// Whether a message a cluster node delivers again is dropped (a client's, wire.md §22.5).
    drop_redelivered: AtomicBool,
    /// Pending calls, read without the lock: while none are pending, no header is examined
    /// for a reply.
    pending_calls: AtomicUsize,
    /// The next call id and transfer id this side hands out.
    next_id: AtomicU64,
    /// Wakes the connection's call timer: a first deadline was queued, or the inbox closed.
    pub(crate) call_timer: Notify,
    /// Whether the call timer task was started.
    pub(crate) call_timer_started: AtomicBool,
}

impl Inbox {
    /// An inbox; `exchanges`: act on §20 messages (see [`Config::exchanges`](crate::Config)).
    pub(crate) fn new(exchanges: bool) -> Inbox {
        Inbox {
            state: Mutex::new(State::default()),
            exchanges: AtomicBool::new(exchanges),
            track_owed: AtomicBool::new(false),
            drop_redelivered: AtomicBool::new(false),
            pending_calls: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            call_timer: Notify::new(),
            call_timer_started: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this crate; keep going with the
        // state as it is rather than poisoning every handle.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Server side: a drain waits for the replies owed to the requests received (§14.1.4).
    pub(crate) fn track_owed_replies(&self) {
        self.track_owed.store(true, Ordering::Release);
    }

    /// Client side: a message whose `rz-entry` a cluster node delivered before on this
    /// connection is dropped (wire.md §22.5), across its sessions.
    pub(crate) fn drop_redelivered(&self) {
        self.drop_redelivered.store(true, Ordering::Release);
    }

    /// From now on §20 messages are handed out as they are (a router forwards them).
    pub(crate) fn forward_exchanges(&self) {
        self.exchanges.store(false, Ordering::Release);
    }

    /// A fresh id for a call or a transfer of ours (unique on this connection).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands a received message to whoever takes it (see the module doc). Called by the
    /// driver, in arrival order.
    pub(crate) fn push(&self, m: Message) -> Pushed {
        let mut s = self.lock();
        let ch = m.channel.index();
        if self.drop_redelivered.load(Ordering::Relaxed) && !s.entries.first_time(&m) {
            // spec: wire.md §22.5 — a copy a cluster node took over and sent again.
            debug!(channel = %m.channel, "a redelivered cluster entry dropped");
            super::metrics::count_redelivered();
            return Pushed::Release(m.channel, m.credit);
        }
        let mut exchange = Exchange::Plain;
        let exchanges = self.exchanges.load(Ordering::Acquire);
        if exchanges || self.pending_calls.load(Ordering::Acquire) > 0 {
            // A header that breaks §20 is an ordinary message: it is the application's.
            exchange = exchange::classify(&m.header).unwrap_or(Exchange::Plain);
        }
        let m = match exchange {
            Exchange::Reply { session, .. } => {
                let (channel, credit) = (m.channel, m.credit);
                match s.calls.deliver(session, m) {
                    // The call takes it; its credit comes back now.
                    Ok(()) => return Pushed::Release(channel, credit),
                    Err(m) if exchanges => {
                        debug!(
                            session,
                            "reply to no pending call (late, or cancelled): dropped"
                        );
                        return Pushed::Release(m.channel, m.credit);
                    }
                    // A router's: forwarded as it is.
                    Err(m) => m,
                }
            }
            _ => m,
        };
        match exchange {
            Exchange::CancelCall { session } if exchanges => {
                let key = (from(&m), session);
                let settled = s.cancel_request(&key);
                return match settled {
                    true => Pushed::ReleaseSettled(m.channel, m.credit),
                    false => Pushed::Release(m.channel, m.credit),
                };
            }
            Exchange::CancelTransfer { stream } if exchanges => {
                s.transfers_cancelled.insert(stream);
                return Pushed::Release(m.channel, m.credit);
            }
            Exchange::Request { session } if exchanges => {
                let key = (from(&m), session);
                if s.cancelled_set.contains(&key) {
                    // Its cancellation overtook it (§20.2): nobody wants the answer.
                    return Pushed::Release(m.channel, m.credit);
                }
                if self.track_owed.load(Ordering::Acquire)
                    && s.readers[ch] != Some(Reader::Gone)
                    && s.owed.len() < MAX_OWED_REPLIES
                    && s.owed.insert(key)
                {
                    s.enqueue(m);
                    // Counted by the session only while it drains (see `start_draining`).
                    return match s.draining {
                        true => Pushed::QueuedRequest,
                        false => Pushed::Queued,
                    };
                }
            }
            Exchange::Part { stream, seq, end } if exchanges && seq > 0 => {
                return s.push_part((from(&m), stream), seq, end.is_some(), m);
            }
            Exchange::Part { stream, end, .. } if exchanges && end.is_none() => {
                if s.transfers.len() < MAX_OPEN_TRANSFERS {
                    s.transfers
                        .insert((from(&m), stream), TransferQueue::starting());
                } else {
                    debug!("too many open incoming transfers: a first part handed out alone");
                }
            }
            _ => {}
        }
        if s.readers[ch] == Some(Reader::Gone) {
            return Pushed::Release(m.channel, m.credit);
        }
        s.enqueue(m);
        Pushed::Queued
    }

    /// Request `key` was answered: true if a reply was owed for it (the session's drain may
    /// end: `Session::reply_settled`).
    pub(crate) fn settle(&self, key: &PeerKey) -> bool {
        let mut s = self.lock();
        s.owed.remove(key) && s.draining
    }

    /// A graceful close begins (called under the session's lock): returns the replies owed
    /// now, which the session counts; from now on each request taken and each reply settled
    /// is reported to it.
    pub(crate) fn start_draining(&self) -> u64 {
        let mut s = self.lock();
        if s.draining {
            return 0;
        }
        s.draining = true;
        s.owed.len() as u64
    }

    /// No more messages will arrive: receivers see the end once their queues are empty, calls
    /// and transfers fail.
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.calls.clear();
        self.pending_calls.store(0, Ordering::Release);
        self.call_timer.notify_one();
        wake(&mut s.any);
        s.wakers.iter_mut().for_each(wake);
        for t in s.transfers.values_mut() {
            t.ended = true;
            wake(&mut t.waker);
        }
        for (_, watchers) in s.cancel_watchers.drain() {
            watchers.into_iter().for_each(Waker::wake);
        }
        s.cancel_feed.drain(..).for_each(Waker::wake);
    }

    /// The next message on the channels the connection's receiver reads, highest priority
    /// first; `Ready(None)` once closed and empty.
    pub(crate) fn poll_any(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut s = self.lock();
        for ch in 0..4 {
            if s.readers[ch].is_none() || s.readers[ch] == Some(Reader::Connection) {
                if let Some(m) = s.queues[ch].pop_front() {
                    return Poll::Ready(Some(m));
                }
            }
        }
        if s.closed {
            return Poll::Ready(None);
        }
        set_waker(&mut s.any, cx);
        Poll::Pending
    }

    /// The next message on `channel` (taken by [`claim`](Self::claim)); `Ready(None)` once
    /// closed and empty.
    pub(crate) fn poll_channel(
        &self,
        channel: Channel,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Message>> {
        let mut s = self.lock();
        let ch = channel.index();
        if let Some(m) = s.queues[ch].pop_front() {
            return Poll::Ready(Some(m));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        set_waker(&mut s.wakers[ch], cx);
        Poll::Pending
    }

    /// Takes `channel` away from the connection's receiver for a receiver of its own (what is
    /// queued moves with it); false if a receiver already took it.
    pub(crate) fn claim(&self, channel: Channel) -> bool {
        let mut s = self.lock();
        let r = &mut s.readers[channel.index()];
        if r.is_some_and(|r| r != Reader::Connection) {
            return false;
        }
        *r = Some(Reader::Own);
        true
    }

    /// The reader of `channels` is gone: what is queued there is returned (to release its
    /// credit) and what arrives later is discarded.
    /// Also returns how many of them were requests whose replies were owed.
    pub(crate) fn abandon(&self, channels: &[Channel]) -> (Vec<Message>, u64) {
        let mut s = self.lock();
        let mut dropped = Vec::new();
        for &c in channels {
            s.readers[c.index()] = Some(Reader::Gone);
            dropped.extend(s.queues[c.index()].drain(..));
        }
        let mut settled = 0;
        for m in &dropped {
            if let Some(session) = m.header.get(exchange::SESSION) {
                settled += u64::from(s.owed.remove(&(from(m), session.clone())));
            }
        }
        if !s.draining {
            settled = 0;
        }
        (dropped, settled)
    }

    /// The channels the connection's receiver reads (those no task took).
    pub(crate) fn connection_channels(&self) -> Vec<Channel> {
        let s = self.lock();
        Channel::ALL
            .into_iter()
            .filter(|c| matches!(s.readers[c.index()], None | Some(Reader::Connection)))
            .collect()
    }

    // --- calls (§20.1, §20.2) ---

    /// Registers call `session`, with `deadline` if it uses the connection's default timeout
    /// (the call timer serves it: see `transport::calls`). False if the connection is over.
    pub(crate) fn register_call(&self, session: u64, deadline: Option<Instant>) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        if s.calls.register(session, deadline) {
            self.call_timer.notify_one();
        }
        self.pending_calls.store(s.calls.len(), Ordering::Release);
        true
    }

    /// Call `session`'s reply, timeout or end; else `cx` is registered.
    pub(crate) fn poll_reply(&self, session: u64, cx: &Context<'_>) -> Poll<Reply> {
        let mut s = self.lock();
        let r = s.calls.poll(session, cx);
        if r.is_ready() {
            self.pending_calls.store(s.calls.len(), Ordering::Release);
        }
        r
    }

    /// Call `session` is over (dropped or timed out): forgets it. True if it was still
    /// pending (no reply came).
    pub(crate) fn forget_call(&self, session: u64) -> bool {
        let mut s = self.lock();
        let pending = s.calls.forget(session);
        self.pending_calls.store(s.calls.len(), Ordering::Release);
        pending
    }

    /// Times out the default-timeout calls due at `now`; the next deadline, if any, and
    /// whether the connection is over (the timer then stops).
    pub(crate) fn expire_calls(&self, now: Instant) -> (Option<Instant>, bool) {
        let mut s = self.lock();
        (s.calls.expire(now), s.closed)
    }

    /// The next cancellation (§20.2) after `cursor` (advanced past it), oldest first: one
    /// feed for every request of the connection, for code that watches many at once.
    /// `Ready(None)` once the connection ended; a reader that fell more than the remembered
    /// cancellations behind skips the oldest.
    pub(crate) fn poll_cancellations(
        &self,
        cursor: &mut u64,
        cx: &mut Context<'_>,
    ) -> Poll<Option<PeerKey>> {
        let mut s = self.lock();
        let first = s.cancel_seq - s.cancelled.len() as u64;
        *cursor = (*cursor).max(first);
        if *cursor < s.cancel_seq {
            let key = s.cancelled[(*cursor - first) as usize].clone();
            *cursor += 1;
            return Poll::Ready(Some(key));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        if !s.cancel_feed.iter().any(|w| w.will_wake(cx.waker())) {
            s.cancel_feed.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Whether the request `key` was cancelled by its caller; else `cx` is woken when it is
    /// (or when the connection ends: then `Ready(false)`).
    pub(crate) fn poll_cancelled(&self, key: &PeerKey, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = self.lock();
        if s.cancelled_set.contains(key) {
            return Poll::Ready(true);
        }
        if s.closed {
            return Poll::Ready(false);
        }
        let watchers = s.cancel_watchers.entry(key.clone()).or_default();
        if !watchers.iter().any(|w| w.will_wake(cx.waker())) {
            watchers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// A watch on `key` ended (its future was dropped).
    pub(crate) fn unwatch(&self, key: &PeerKey) {
        self.lock().cancel_watchers.remove(key);
    }

    // --- transfers (§20.3, §20.4) ---

    /// Takes our transfer `stream`'s cancellation by its receiver, if one came.
    pub(crate) fn take_transfer_cancel(&self, stream: u64) -> bool {
        self.lock().transfers_cancelled.remove(&stream)
    }

    /// The next part of incoming transfer `key` after the first, or its end.
    pub(crate) fn poll_part(&self, key: &PeerKey, cx: &mut Context<'_>) -> Poll<Part> {
        let mut s = self.lock();
        let Some(t) = s.transfers.get_mut(key) else {
            return Poll::Ready(Part::End);
        };
        if let Some(m) = t.parts.pop_front() {
            return Poll::Ready(Part::Next(m));
        }
        if let Some(why) = t.broken.take() {
            return Poll::Ready(Part::Broken(why));
        }
        if t.ended {
            return Poll::Ready(Part::End);
        }
        set_waker(&mut t.waker, cx);
        Poll::Pending
    }

    /// The application is done with incoming transfer `key` (it ended, or was dropped): its
    /// queued parts are returned (to release their credit) and later ones are discarded until
    /// its last part. True if it had not ended (the sender should be told to stop).
    pub(crate) fn drop_transfer(&self, key: &PeerKey) -> (bool, Vec<Message>) {
        let mut s = self.lock();
        match s.transfers.get_mut(key) {
            Some(t) if !t.ended => {
                t.dropped = true;
                (true, t.parts.drain(..).collect())
            }
            Some(_) => {
                let t = s.transfers.remove(key).unwrap_or_default();
                (false, t.parts.into())
            }
            None => (false, Vec::new()),
        }
    }
}

impl TransferQueue {
    fn starting() -> TransferQueue {
        TransferQueue {
            next_seq: 1,
            ..TransferQueue::default()
        }
    }
}

impl State {
    /// Queues `m` for its reader and wakes it.
    fn enqueue(&mut self, m: Message) {
        let ch = m.channel.index();
        match self.readers[ch].unwrap_or(Reader::Connection) {
            Reader::Own => wake(&mut self.wakers[ch]),
            _ => wake(&mut self.any),
        }
        self.queues[ch].push_back(m);
    }

    /// A cancellation of request `key` arrived (§20.2): remembered and its watchers woken.
    /// True if a reply the session counts was owed for it (no longer: nobody waits for it).
    fn cancel_request(&mut self, key: &PeerKey) -> bool {
        if self.cancelled_set.insert(key.clone()) {
            self.cancel_seq += 1;
            self.cancel_feed.drain(..).for_each(Waker::wake);
            self.cancelled.push_back(key.clone());
            if self.cancelled.len() > REMEMBERED_CANCELS {
                if let Some(old) = self.cancelled.pop_front() {
                    self.cancelled_set.remove(&old);
                }
            }
        }
        if let Some(watchers) = self.cancel_watchers.remove(key) {
            watchers.into_iter().for_each(Waker::wake);
        }
        self.owed.remove(key) && self.draining
    }

    /// Part `seq` > 0 of transfer `key` (§20.3).
    fn push_part(&mut self, key: PeerKey, seq: u64, last: bool, m: Message) -> Pushed {
        let Some(t) = self.transfers.get_mut(&key) else {
            debug!(
                seq,
                "part of a transfer whose first part never came: dropped"
            );
            return Pushed::Release(m.channel, m.credit);
        };
        if t.ended {
            return Pushed::Release(m.channel, m.credit);
        }
        if seq != t.next_seq {
            // Parts of one transfer travel on one channel, in order (§20.3): a gap is the
            // sender's bug. The transfer fails; this and later parts are dropped.
            debug!(seq, expected = t.next_seq, "transfer part out of order");
            t.broken = Some(format!(
                "transfer part {seq} arrived where part {} was due (wire.md §20.3)",
                t.next_seq
            ));
            t.ended = true;
            wake(&mut t.waker);
            if t.dropped {
                self.transfers.remove(&key);
            }
            return Pushed::Release(m.channel, m.credit);
        }
        t.next_seq = seq + 1;
        t.ended |= last;
        if t.dropped {
            if t.ended {
                self.transfers.remove(&key);
            }
            return Pushed::Release(m.channel, m.credit);
        }
        wake(&mut t.waker);
        t.parts.push_back(m);
        Pushed::Queued
    }
}

/// The `from` a router set on `m`, or empty.
fn from(m: &Message) -> Bytes {
    m.header.get(exchange::FROM).cloned().unwrap_or_default()
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(w) = slot.take() {
        w.wake();
    }
}

fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}
