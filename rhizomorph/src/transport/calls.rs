//! The pending calls of one connection (wire.md §20.1): a slot per call for its reply, and the
//! deadlines of the calls that use the connection's default timeout.
//!
//! Owns [`CallTable`], a plain data structure kept under the inbox's lock: the reply slot a
//! call polls (no channel allocated per call), and a FIFO of default-timeout deadlines that one
//! timer per connection serves (no runtime timer registered per call: calls made with the same
//! timeout expire in the order they were made). Never waits, never reads a clock: times come in.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::session::Message;

/// Hashes a call id (a counter) by Fibonacci multiplication: cheap, and spreads consecutive
/// ids over the table's control bits.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One pending call.
#[derive(Default)]
struct Slot {
    reply: Option<Message>,
    waker: Option<Waker>,
    timed_out: bool,
}

/// What a call's poll found.
pub(crate) enum Reply {
    /// The reply.
    Message(Message),
    /// Its deadline passed first.
    TimedOut,
    /// The call is not pending (the connection ended, or it was forgotten).
    Gone,
}

/// The pending calls (see the module doc).
#[derive(Default)]
pub(crate) struct CallTable {
    slots: HashMap<u64, Slot, BuildHasherDefault<IdHasher>>,
    /// Deadlines of default-timeout calls, oldest first; entries of calls that completed are
    /// dropped lazily (from the front, and by a compaction when most are stale).
    deadlines: VecDeque<(Instant, u64)>,
    /// The timer is sleeping until a deadline (the last [`expire`](Self::expire) returned
    /// one, or a registration woke it): a later deadline needs no wake-up, since the timer
    /// re-reads the queue when it wakes and deadlines only grow.
    timer_armed: bool,
}

impl CallTable {
    /// Calls pending.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Registers call `session`, with `deadline` if it uses the default timeout. True if the
    /// timer is idle and must be told (at most once until its next [`expire`](Self::expire)):
    /// a timer already sleeping wakes before this deadline anyway, so one call after another
    /// costs no wake-up.
    pub(crate) fn register(&mut self, session: u64, deadline: Option<Instant>) -> bool {
        self.slots.insert(session, Slot::default());
        let Some(at) = deadline else {
            return false;
        };
        self.drop_stale();
        self.deadlines.push_back((at, session));
        if self.deadlines.len() > 2 * self.slots.len() + 1024 {
            // A slow call at the front keeps completed ones behind it: compact, so the queue
            // stays within twice the pending calls.
            let slots = &self.slots;
            self.deadlines.retain(|(_, s)| slots.contains_key(s));
        }
        !std::mem::replace(&mut self.timer_armed, true)
    }

    /// The reply to `session` arrived: stored for its call, which is woken. Gives the message
    /// back if no such call is pending.
    // The message comes back whole when no call takes it (then it is forwarded or dropped):
    // boxing it would allocate per message.
    #[allow(clippy::result_large_err)]
    pub(crate) fn deliver(&mut self, session: u64, m: Message) -> Result<(), Message> {
        match self.slots.get_mut(&session) {
            Some(slot) if slot.reply.is_none() && !slot.timed_out => {
                slot.reply = Some(m);
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
                Ok(())
            }
            _ => Err(m),
        }
    }

    /// Call `session`'s reply, timeout or absence; else `cx` is registered.
    pub(crate) fn poll(&mut self, session: u64, cx: &Context<'_>) -> Poll<Reply> {
        let Some(slot) = self.slots.get_mut(&session) else {
            return Poll::Ready(Reply::Gone);
        };
        if let Some(m) = slot.reply.take() {
            self.slots.remove(&session);
            return Poll::Ready(Reply::Message(m));
        }
        if slot.timed_out {
            self.slots.remove(&session);
            return Poll::Ready(Reply::TimedOut);
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Forgets call `session`; true if it was pending with no reply yet.
    pub(crate) fn forget(&mut self, session: u64) -> bool {
        self.slots
            .remove(&session)
            .is_some_and(|s| s.reply.is_none() && !s.timed_out)
    }

    /// Marks every default-timeout call due at `now` timed out (waking it); returns the next
    /// deadline, if any.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Instant> {
        self.drop_stale();
        while let Some(&(at, session)) = self.deadlines.front() {
            if at > now {
                self.timer_armed = true;
                return Some(at);
            }
            self.deadlines.pop_front();
            if let Some(slot) = self.slots.get_mut(&session) {
                if slot.reply.is_none() {
                    slot.timed_out = true;
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            self.drop_stale();
        }
        self.timer_armed = false;
        None
    }

    /// The connection ended: every call still waiting is woken and finds itself gone; a call
    /// whose reply already arrived keeps it (the reply came before the end).
    pub(crate) fn clear(&mut self) {
        self.deadlines.clear();
        self.slots.retain(|_, slot| {
            if slot.reply.is_some() {
                return true;
            }
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
            false
        });
    }

    /// Drops front deadlines of calls no longer pending.
    fn drop_stale(&mut self) {
        while let Some(&(_, session)) = self.deadlines.front() {
            match self.slots.get(&session) {
                Some(s) if s.reply.is_none() && !s.timed_out => break,
                _ => {
                    self.deadlines.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cx() -> Context<'static> {
        Context::from_waker(futures_util::task::noop_waker_ref())
    }

    #[test]
    fn calls_expire_in_deadline_order_and_completed_ones_do_not_pile_up() {
        let mut t = CallTable::default();
        let t0 = Instant::now();
        let d = Duration::from_secs(30);
        assert!(t.register(1, Some(t0 + d)), "first deadline arms the timer");
        // A slow call at the front, then many that complete.
        for s in 2..100_000u64 {
            assert!(!t.register(s, Some(t0 + d)));
            assert!(t.forget(s));
        }
        assert!(
            t.deadlines.len() <= 2 * t.len() + 1025,
            "{} deadlines for {} pending",
            t.deadlines.len(),
            t.len()
        );
        assert_eq!(t.expire(t0), Some(t0 + d));
        assert_eq!(t.expire(t0 + d), None);
        assert!(matches!(t.poll(1, &cx()), Poll::Ready(Reply::TimedOut)));
        assert!(matches!(t.poll(1, &cx()), Poll::Ready(Reply::Gone)));
    }

    #[test]
    fn one_call_after_another_wakes_the_timer_once() {
        let mut t = CallTable::default();
        let t0 = Instant::now();
        let d = Duration::from_secs(30);
        let woken: usize = (1..1000u64)
            .map(|s| {
                let wake = t.register(s, Some(t0 + d));
                assert!(t.forget(s));
                usize::from(wake)
            })
            .sum();
        assert_eq!(woken, 1, "only the idle timer is told");
        // The timer wakes at the first deadline, finds nothing pending and goes idle: the
        // next call tells it again.
        assert_eq!(t.expire(t0 + d), None);
        assert!(t.register(1000, Some(t0 + d + d)));
        assert!(!t.register(1001, Some(t0 + d + d)));
        assert_eq!(t.expire(t0), Some(t0 + d + d));
        assert!(!t.register(1002, Some(t0 + d + d)), "armed again by expire");
    }

    #[test]
    fn a_reply_that_arrived_before_the_end_survives_it() {
        let mut t = CallTable::default();
        t.register(1, None);
        t.register(2, None);
        let m = Message::new(
            crate::frame::Channel::Rpc,
            Default::default(),
            bytes::Bytes::from_static(b"answer"),
        );
        assert!(t.deliver(1, m).is_ok());
        t.clear();
        assert!(
            matches!(t.poll(1, &cx()), Poll::Ready(Reply::Message(m)) if &m.payload[..] == b"answer")
        );
        assert!(matches!(t.poll(2, &cx()), Poll::Ready(Reply::Gone)));
    }
}
