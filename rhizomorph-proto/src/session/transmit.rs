//! The transmit path (wire.md §7, §10, §17.3): what the next transport write carries.
//!
//! Owns [`Session::poll_transmit`], the one way bytes leave a session, for either framing:
//! control frames first (a PONG, CREDIT that is due, HELLO, SCHEMA, CANCEL, GOAWAY, CLOSE),
//! then MESSAGE frames as the scheduler picks them within the credit, cut to the peer's frame
//! size, up to the batch limit. Never waits for more to send (§10.2: nothing is held back for a
//! timer) and never writes anything itself: the driver hands the [`Transmit`] to its transport.

use std::time::Instant;

use bytes::Bytes;

use super::batch::{Batch, ALIGN};
use super::{Event, Initiator, OutChannel, Session, State};
use crate::frame::{Channel, Frame, MessageFrame, Ping, Settings};

/// Where the bytes of a [`Session::poll_transmit`] go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The next batch of the one ordered sequence of batches that carries every frame
    /// ([`Framing::Batched`](super::Framing::Batched): a WebSocket binary message, §16.2.1, or
    /// the next bytes of a byte stream).
    Batch,
    /// The next bytes of this side's stream for one channel
    /// ([`Framing::PerChannelStreams`](super::Framing::PerChannelStreams), §17.3): the control
    /// stream carries HELLO, PING/PONG, GOAWAY, CLOSE, CANCEL without ABORT and control-channel
    /// messages; each other stream its channel's MESSAGE, SCHEMA and CANCEL-with-ABORT frames.
    /// The transport, not the session, prioritizes the streams.
    Stream(Channel),
}

/// The bytes of one transport write, as segments to write in order (`writev`): with
/// [`SessionConfig::vectored`](super::SessionConfig::vectored) (the default) chunk payloads of
/// 2 KiB or more are views of the message being sent, not copies, and the rest is encoded into
/// one buffer; without it, everything is in one buffer. Concatenated, the segments are the
/// batch's bytes exactly.
#[derive(Debug)]
pub struct Transmit {
    segments: Vec<Bytes>,
    len: usize,
}

impl Transmit {
    fn new(batch: Batch) -> Self {
        let len = batch.len();
        Transmit {
            segments: batch.into_segments(),
            len,
        }
    }

    /// Bytes in the write.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the write is empty (never, for one `poll_transmit` returned).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments, to write in order.
    pub fn into_segments(self) -> Vec<Bytes> {
        self.segments
    }

    /// The write as one buffer: free when it is one segment (always, without
    /// [`SessionConfig::vectored`](super::SessionConfig::vectored)), a copy otherwise.
    pub fn into_bytes(mut self) -> Bytes {
        if self.segments.len() == 1 {
            return self.segments.pop().unwrap_or_default();
        }
        let mut out = Vec::with_capacity(self.len);
        for s in &self.segments {
            out.extend_from_slice(s);
        }
        Bytes::from(out)
    }
}

impl Session {
    /// The next write for `target`, at most `max_batch` bytes (and at most the batch limit,
    /// [`batch_limit`](Self::batch_limit)), or `None` if nothing is ready.
    ///
    /// spec: wire.md §10 — everything ready now leaves in one write; nothing waits for more. A
    /// driver that sees its transport back up asks for less (a congested link wants small
    /// writes, so that a higher channel's frame never waits behind a large batch already handed
    /// to the socket); `usize::MAX` takes what the limits allow.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        target: Target,
        max_batch: usize,
    ) -> Option<Transmit> {
        let batch = match target {
            Target::Batch => self.transmit(now, max_batch),
            Target::Stream(channel) => self.transmit_channel(now, channel, max_batch),
        }?;
        Some(Transmit::new(batch))
    }

    /// Whether frames other than queued messages wait to be sent (a PONG, CREDIT due, a
    /// control frame, a SCHEMA or CANCEL on a channel stream): after handling input, the
    /// driver needs to write only if this is true (messages are queued by `send`).
    pub fn wants_transmit(&self) -> bool {
        self.pong.is_some()
            || !self.control.is_empty()
            || self.streams.frames.iter().any(|f| !f.is_empty())
            || self.credit_due()
            || self.ack_due()
    }

    /// Whether a CREDIT frame must be sent even if nothing else is (so the driver knows a
    /// release needs a write). Smaller amounts wait for a batch that leaves anyway (§9.5).
    pub fn credit_due(&self) -> bool {
        self.flow.credit_due()
    }

    pub(super) fn transmit(&mut self, now: Instant, max_batch: usize) -> Option<Batch> {
        self.now = now;
        if matches!(self.state, State::Closed | State::Detached) {
            return None;
        }
        let limit = self.batch_limit(max_batch);
        let mut batch =
            Batch::with_capacity(self.batch_capacity(None, limit), self.config.vectored);
        // Frames other than CREDIT that this batch will carry (a message may still be held
        // back by the peer's credit; the batch then carries only CREDIT, which is harmless).
        let carries = self.pong.is_some()
            || !self.control.is_empty()
            || self.outgoing.iter().any(|o| !o.is_idle());
        let before = self.control.len();
        self.flow.queue_credit(carries, &mut self.control);
        // spec: wire.md §21.3 — ACKs ride along with CREDIT; alone only when due.
        self.queue_acks(self.control.len() > before, carries);
        if !self.encode_control(&mut batch, limit) {
            self.encode_messages(&mut batch, limit, None);
        }
        self.finish_batch(batch)
    }

    pub(super) fn transmit_channel(
        &mut self,
        now: Instant,
        channel: Channel,
        max_batch: usize,
    ) -> Option<Batch> {
        self.now = now;
        if matches!(self.state, State::Closed | State::Detached) {
            return None;
        }
        let limit = self.batch_limit(max_batch);
        let mut batch = Batch::with_capacity(
            self.batch_capacity(Some(channel), limit),
            self.config.vectored,
        );
        let closed = if channel == Channel::Control {
            self.queue_acks(false, self.pong.is_some() || !self.control.is_empty());
            self.encode_control(&mut batch, limit)
        } else {
            let frames = &mut self.streams.frames[channel.index()];
            while batch.len() < limit {
                let Some(frame) = frames.pop_front() else {
                    break;
                };
                batch.push(&frame);
            }
            false
        };
        if !closed {
            self.encode_messages(&mut batch, limit, Some(channel));
        }
        self.finish_batch(batch)
    }

    /// A guess at the batch's size, so that encoding does not reallocate as it grows: what is
    /// queued (on `channel`, or on all), plus room for frame metadata, within `limit`.
    pub(super) fn batch_capacity(&self, channel: Option<Channel>, limit: usize) -> usize {
        let queued: u64 = match channel {
            Some(ch) => self.outgoing[ch.index()].queued_bytes(),
            None => self.outgoing.iter().map(OutChannel::queued_bytes).sum(),
        };
        (queued as usize).saturating_add(256).min(limit)
    }

    /// The batch size [`poll_transmit`](Self::poll_transmit) would use under a caller's `max_batch`: that, capped by
    /// our `max_batch` and the peer's `MAX_BATCH_SIZE`.
    pub fn batch_limit(&self, max_batch: usize) -> usize {
        self.config
            .max_batch
            .min(self.peer.max_batch_size as usize)
            .min(max_batch.max(1))
    }

    /// Encodes queued control frames (a PONG first) while the batch has room. Returns whether
    /// CLOSE was encoded: it is the last frame, and the session is then closed.
    pub(super) fn encode_control(&mut self, batch: &mut Batch, limit: usize) -> bool {
        if let Some(opaque) = self.pong.take() {
            self.control.push_back(Frame::Pong(Ping { opaque }));
        }
        while batch.len() < limit {
            let Some(frame) = self.control.pop_front() else {
                break;
            };
            batch.push(&frame);
            if let Frame::Close(c) = frame {
                self.state = State::Closed;
                self.events.push_back(Event::Closed {
                    code: c.code,
                    reason: c.reason,
                    initiator: Initiator::Local,
                });
                return true;
            }
        }
        false
    }

    /// Encodes MESSAGE frames as the scheduler picks them (or of `only` that channel) while the
    /// batch has room.
    pub(super) fn encode_messages(
        &mut self,
        batch: &mut Batch,
        limit: usize,
        only: Option<Channel>,
    ) {
        if self.state != State::Open {
            return;
        }
        // At least two batches of what is queued, so both ends work in parallel (the cap's
        // reason, config.rs), but a long queue — a one-way stream — leaves in large batches:
        // fewer system calls per message.
        let queued: usize = self.outgoing.iter().map(|c| c.queued_messages()).sum();
        let max_frames = self.config.max_batch_frames.max(queued / 2);
        let mut message_frames = 0;
        while batch.len() < limit && message_frames < max_frames {
            let room = limit - batch.len();
            let frame = match only {
                None => self.next_message_frame(room),
                Some(ch) => self.take_message_frame(ch, Self::payload_room(&self.peer, room)),
            };
            let Some(frame) = frame else {
                break;
            };
            message_frames += 1;
            if frame.wants_alignment() {
                // spec: wire.md §11.1 — Chunk Data at a multiple of 16 from the batch start
                // (a PADDING frame takes at least 3 bytes: type, flags, length).
                let data_start = batch.len() + frame.head_len();
                let pad = (ALIGN - data_start % ALIGN) % ALIGN;
                if pad != 0 {
                    let total = if pad < 3 { pad + ALIGN } else { pad };
                    batch.push(&Frame::Padding { len: total - 3 });
                }
            }
            let ch = frame.channel.index();
            self.stats.bytes_sent[ch] += frame.data.len() as u64;
            if frame.last {
                self.stats.messages_sent[ch] += 1;
            }
            let channel = frame.channel;
            batch.push(&Frame::Message(frame));
            if let Some(sequence) = self.outgoing[ch].take_abort_after() {
                // spec: wire.md §21.6 — a replayed abort: its CANCEL follows its FIRST frame at
                // once, on the same channel (the same stream over QUIC), before anything else.
                batch.push(&Frame::Cancel(crate::frame::Cancel {
                    channel,
                    sequence,
                    code: crate::frame::ErrorCode::CANCELLED,
                    abort: true,
                }));
            }
        }
    }

    pub(super) fn finish_batch(&mut self, batch: Batch) -> Option<Batch> {
        self.maybe_finish_drain();
        if batch.is_empty() {
            return None;
        }
        self.stats.frames_sent += batch.frames;
        self.stats.batches_sent += 1;
        Some(batch)
    }

    /// The largest chunk payload that fits `room` bytes of batch with its frame overhead.
    pub(super) fn payload_room(peer: &Settings, room: usize) -> u64 {
        peer.max_frame_payload.min(room.saturating_sub(10) as u64)
    }

    pub(super) fn next_message_frame(&mut self, room: usize) -> Option<MessageFrame> {
        let max_payload = Self::payload_room(&self.peer, room);
        // spec: wire.md §8.1, §9.5.1 — the smallest frame worth waiting for is also bounded by
        // the peer's MAX_FRAME_PAYLOAD: a message whose metadata and first KiB do not fit one
        // frame is cut to it (before, it waited for a frame the peer would never accept).
        let ceiling = self
            .flow
            .window_ceiling(&self.peer)
            .min(self.peer.max_frame_payload);
        let mut ready = [false; 4];
        for ch in Channel::ALL {
            let i = ch.index();
            let available = self.flow.available(ch, max_payload);
            ready[i] = self.outgoing[i].ready(available, ceiling);
            if !ready[i] && !self.outgoing[i].is_idle() {
                self.stats.credit_stalls += 1;
            }
        }
        let ch = self.scheduler.pick(ready)?;
        self.take_message_frame(ch, max_payload)
    }

    /// The next frame of `ch`'s queue within the credit and `max_payload`, charged to the
    /// windows.
    pub(super) fn take_message_frame(
        &mut self,
        ch: Channel,
        max_payload: u64,
    ) -> Option<MessageFrame> {
        let i = ch.index();
        let available = self.flow.available(ch, max_payload);
        let frame = self.outgoing[i].next_frame(available, self.config.chunk_size)?;
        self.flow.spend(ch, frame.payload_len());
        Some(frame)
    }
}
