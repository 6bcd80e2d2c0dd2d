//! Cancellation and shutdown (wire.md §5.7, §14): CANCEL both ways, GOAWAY and its drain,
//! CLOSE, and failing what was queued.
//!
//! Owns whether this side is draining and the peer's GOAWAY counts. Never sends a frame out of
//! order: CANCEL with ABORT rides its channel (§17.3), CLOSE is the last frame (§14.2).

use super::{Event, InChannel, OutChannel, Session, SessionError, State};
use crate::frame::{Cancel, Channel, Close, ErrorCode, Frame, GoAway};
use tracing::warn;

/// The shutdown state of a session.
#[derive(Debug, Default)]
pub(super) struct Shutdown {
    /// We sent GOAWAY: drain, then CLOSE (§14.1).
    pub(super) draining: bool,
    /// The peer's GOAWAY accepted counts, once it sent one (§14.1.2).
    pub(super) peer_goaway: Option<[u64; 4]>,
    /// Replies the application still owes (requests it took and has not answered, §20.1):
    /// while any are owed, a drain does not end in CLOSE (§14.1.4: it has more to send).
    pub(super) owed_replies: u64,
}

impl Session {
    pub(super) fn on_cancel(&mut self, c: Cancel) {
        let ch = c.channel.index();
        if c.abort {
            // spec: wire.md §5.7.1 — discard what was reassembled and release its credit.
            if self.incoming[ch].abort(c.sequence) {
                self.events.push_back(Event::MessageAborted {
                    channel: c.channel,
                    sequence: c.sequence,
                    code: c.code,
                });
                self.collect_credit(ch);
            }
        } else {
            // spec: wire.md §5.7.2 — stop sending our message, ABORT it if started; a sequence
            // that is finished (or not started) is ignored.
            if let Some(id) = self.outgoing[ch].id_of_sequence(c.sequence) {
                self.cancel_outgoing(c.channel, id, c.code);
            }
        }
    }

    pub(super) fn on_goaway(&mut self, g: GoAway) -> Result<(), SessionError> {
        if let Some(prev) = self.shutdown.peer_goaway {
            for (i, (&p, &n)) in prev.iter().zip(&g.accepted).enumerate() {
                if n > p {
                    return Err(SessionError::GoAwayRaised {
                        channel: Channel::ALL[i],
                        previous: p,
                        new: n,
                    });
                }
            }
        }
        self.shutdown.peer_goaway = Some(g.accepted);
        // spec: wire.md §14.1.2 — messages at or above the accepted count were not processed.
        for ch in Channel::ALL {
            let from = g.accepted[ch.index()];
            let out = &mut self.outgoing[ch.index()];
            if let Some((id, sequence)) = out.in_progress().filter(|&(_, s)| s >= from) {
                out.abort_front(Some(id));
                let cancel = Frame::Cancel(Cancel {
                    channel: ch,
                    sequence,
                    code: ErrorCode::REFUSED,
                    abort: true,
                });
                self.queue_on_channel(ch, cancel);
                self.events.push_back(Event::SendFailed {
                    channel: ch,
                    id,
                    code: ErrorCode::REFUSED,
                });
            }
            // Messages not started yet would get sequence numbers at or above the count.
            for id in self.outgoing[ch.index()].drop_unstarted() {
                self.events.push_back(Event::SendFailed {
                    channel: ch,
                    id,
                    code: ErrorCode::REFUSED,
                });
            }
        }
        self.events.push_back(Event::GoAway {
            code: g.code,
            reason: g.reason,
        });
        Ok(())
    }

    /// Cancels our message `id` (as [`send`](Self::send) returned it) on `channel` (§5.7.1):
    /// dropped if not started, aborted if in progress, nothing if already sent.
    pub fn cancel(&mut self, channel: Channel, id: u64) {
        self.cancel_outgoing(channel, id, ErrorCode::CANCELLED);
    }

    pub(super) fn cancel_outgoing(&mut self, channel: Channel, id: u64, code: ErrorCode) {
        let out = &mut self.outgoing[channel.index()];
        if out.remove_unstarted(id) {
            self.events
                .push_back(Event::SendFailed { channel, id, code });
        } else if let Some((id, sequence)) = out.abort_front(Some(id)) {
            let cancel = Frame::Cancel(Cancel {
                channel,
                sequence,
                code,
                abort: true,
            });
            self.queue_on_channel(channel, cancel);
            self.events
                .push_back(Event::SendFailed { channel, id, code });
        }
    }

    /// Refuses the peer's message `sequence` on `channel` that is still arriving (§5.7.2).
    pub fn reject_incoming(&mut self, channel: Channel, sequence: u64, code: ErrorCode) {
        if self.incoming[channel.index()].reject(sequence) {
            self.control.push_back(Frame::Cancel(Cancel {
                channel,
                sequence,
                code,
                abort: false,
            }));
            self.collect_credit(channel.index());
        }
    }

    /// Starts a graceful shutdown (§14.1): GOAWAY now, CLOSE when our queued messages have left
    /// and accepted incoming messages are complete.
    pub fn goaway(&mut self, code: ErrorCode, reason: &str) {
        if self.state == State::Detached || self.is_resuming() {
            // Nothing to drain over: a detached session that is told to stop ends now
            // (wire.md §21.1.4), or nobody would ever close it.
            return self.close(code, reason);
        }
        if self.state != State::Open || self.shutdown.draining {
            return;
        }
        self.shutdown.draining = true;
        let accepted = Channel::ALL.map(|c| self.incoming[c.index()].started());
        for (i, inc) in self.incoming.iter_mut().enumerate() {
            inc.refuse_from(accepted[i]);
        }
        let reason = Close::new(code, reason).reason;
        self.control.push_back(Frame::GoAway(GoAway {
            code,
            accepted,
            reason,
        }));
        self.maybe_finish_drain();
    }

    /// Closes now with `code` (§14.2): CLOSE is the last frame; queued messages fail.
    pub fn close(&mut self, code: ErrorCode, reason: &str) {
        if matches!(
            self.state,
            State::Closing | State::Finishing | State::Closed
        ) {
            return;
        }
        if self.state == State::Detached || self.is_resuming() {
            // No transport to send CLOSE on: the session ends here (wire.md §21.1.4), and what
            // it held for replay may be lost (§21.6.5).
            self.end_detached(crate::frame::ResumeStatus::UnknownSession, code, reason);
            return;
        }
        self.control.clear();
        for frames in &mut self.streams.frames {
            frames.clear();
        }
        self.pong = None;
        self.control
            .push_back(Frame::Close(Close::new(code, reason)));
        self.state = State::Closing;
        self.fail_all_queued(ErrorCode::CANCELLED);
    }

    pub(super) fn fail(&mut self, e: SessionError) {
        warn!(error = %e, code = %e.code(), "connection error");
        self.close(e.code(), &e.to_string());
    }

    pub(super) fn fail_all_queued(&mut self, code: ErrorCode) {
        for ch in Channel::ALL {
            for id in self.outgoing[ch.index()].drop_unstarted() {
                self.events.push_back(Event::SendFailed {
                    channel: ch,
                    id,
                    code,
                });
            }
            if let Some((id, _)) = self.outgoing[ch.index()].abort_front(None) {
                self.events.push_back(Event::SendFailed {
                    channel: ch,
                    id,
                    code,
                });
            }
        }
    }

    /// The application owes `n` more replies (requests it took, §20.1): a drain waits for the
    /// answers (§14.1.3, §14.1.4).
    pub fn owe_replies(&mut self, n: u64) {
        self.shutdown.owed_replies += n;
    }

    /// The application answered (or gave up on) a request it took: a drain may end.
    pub fn reply_settled(&mut self) {
        self.shutdown.owed_replies = self.shutdown.owed_replies.saturating_sub(1);
        self.maybe_finish_drain();
    }

    pub(super) fn maybe_finish_drain(&mut self) {
        // spec: wire.md §14.1.4 — CLOSE once nothing is left to send and no accepted message
        // is incomplete.
        if self.shutdown.draining
            && self.state == State::Open
            && self.shutdown.owed_replies == 0
            && self.outgoing.iter().all(OutChannel::is_idle)
            && !self.incoming.iter().any(InChannel::has_accepted_partial)
        {
            self.close(ErrorCode::NO_ERROR, "drained");
        }
    }
}
