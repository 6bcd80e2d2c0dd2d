//! One channel's replay buffer in a resumable session (wire.md §21.4): the messages this side
//! started and the peer has not acknowledged, so that a new connection can send them again.
//!
//! Owns the entries (a message, or a marker for one this side aborted), what they are charged,
//! and the rule that decides whether the next message may start. Never sends anything and
//! never drops an entry the peer has not acknowledged: a full buffer holds the sender back
//! (backpressure), it does not forget.

use std::collections::VecDeque;

use super::outgoing::{OutgoingMessage, QUEUED_MESSAGE_OVERHEAD};
use crate::frame::Channel;

/// What an aborted message costs in the buffer: its marker (§21.4).
pub const ABORT_MARKER_CHARGE: u64 = QUEUED_MESSAGE_OVERHEAD;

/// A message that was started and not acknowledged when a resume failed (wire.md §21.6): it
/// may or may not have reached the peer's application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostMessage {
    /// Its channel.
    pub channel: Channel,
    /// The id [`Session::send`](super::Session::send) returned for it.
    pub id: u64,
    /// Its sequence number in the old session (§21.2).
    pub sequence: u64,
    /// The message itself (header and payload, as queued), for the application to resend or
    /// report.
    pub message: OutgoingMessage,
}

/// One started, unacknowledged message.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) sequence: u64,
    /// `None`: this side aborted it; only its sequence number is replayed.
    pub(crate) message: Option<OutgoingMessage>,
}

/// The replay buffer of one channel (see the module docs).
#[derive(Debug, Default)]
pub struct Replay {
    /// Off (`limit == 0`) unless the session is resumable.
    limit: u64,
    /// Finished (fully sent) messages and abort markers, in sequence order.
    entries: VecDeque<(Entry, u64)>,
    /// The charge of `entries` plus that of the message in progress.
    charge: u64,
    /// The peer finished our messages below this (its last ACK or resume count).
    acknowledged: u64,
}

impl Replay {
    /// Keeps messages, up to `limit` bytes of charge (our `RESUME_BUFFER`).
    pub(crate) fn enable(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Whether messages are kept.
    pub fn is_enabled(&self) -> bool {
        self.limit > 0
    }

    /// What the buffer holds: payload bytes plus each message's header and fixed overhead
    /// (`message_charge`), the message in progress included.
    pub fn charge(&self) -> u64 {
        self.charge
    }

    /// Messages (and markers) held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The peer's cumulative acknowledgement.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// spec: wire.md §21.4 — a message of charge `charge` may start if it fits the limit, or
    /// if what is held is at most a quarter of it (so one message larger than the limit can
    /// go, and a sender held back has always sent enough to be owed an ACK, §21.3).
    pub(crate) fn may_start(&self, charge: u64) -> bool {
        !self.is_enabled()
            || self.charge <= self.limit / 4
            || self.charge.saturating_add(charge) <= self.limit
    }

    /// A message of charge `charge` started.
    pub(crate) fn start(&mut self, charge: u64) {
        if self.is_enabled() {
            self.charge += charge;
        }
    }

    /// The message in progress goes back to unstarted (charge `charge`).
    pub(crate) fn unstart(&mut self, charge: u64) {
        if self.is_enabled() {
            self.charge = self.charge.saturating_sub(charge);
        }
    }

    /// The message `id`, sequence `sequence`, charged `charge` when it started, was fully
    /// sent: it is kept until acknowledged.
    pub(crate) fn finished(
        &mut self,
        id: u64,
        sequence: u64,
        message: OutgoingMessage,
        charge: u64,
    ) {
        if !self.is_enabled() {
            return;
        }
        let entry = Entry {
            id,
            sequence,
            message: Some(message),
        };
        self.entries.push_back((entry, charge));
    }

    /// The message `id`, sequence `sequence`, charged `charge` when it started, was aborted:
    /// a marker replaces it.
    pub(crate) fn aborted(&mut self, id: u64, sequence: u64, charge: u64) {
        if !self.is_enabled() {
            return;
        }
        self.charge = self.charge.saturating_sub(charge) + ABORT_MARKER_CHARGE;
        let entry = Entry {
            id,
            sequence,
            message: None,
        };
        self.entries.push_back((entry, ABORT_MARKER_CHARGE));
    }

    /// The peer finished every message below `received`: those entries are dropped.
    pub(crate) fn acknowledge(&mut self, received: u64) {
        if received <= self.acknowledged {
            return;
        }
        self.acknowledged = received;
        while let Some((e, charge)) = self.entries.front() {
            if e.sequence >= received {
                break;
            }
            self.charge = self.charge.saturating_sub(*charge);
            self.entries.pop_front();
        }
    }

    /// Takes every entry (to replay them, or to report them lost); what they were charged
    /// leaves with them.
    pub(crate) fn drain(&mut self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.entries.len());
        for (e, charge) in self.entries.drain(..) {
            self.charge = self.charge.saturating_sub(charge);
            out.push(e);
        }
        out
    }

    /// A new session: nothing held, nothing acknowledged.
    pub(crate) fn reset(&mut self) {
        self.entries.clear();
        self.charge = 0;
        self.acknowledged = 0;
    }
}
