//! The receive side of one channel: reassembly (wire.md §8) and receive credit (§9.3).
//!
//! Owns the channel's header decoder, its message in progress, and the accounting of which
//! received bytes may be credited back. Single-frame messages are handed out as the received
//! `Bytes` (no copy). A chunked message is copied, chunk by chunk as it arrives, into one buffer
//! ([`Reassembly`]): while the next chunks are still on the wire, and while the chunk just read
//! is still in cache — not all at once when the last one arrives — and without keeping the
//! transport's read buffers alive meanwhile. That buffer starts at the message's length or the
//! channel's receive window, whichever is smaller (what the peer may make us hold anyway), and
//! doubles as chunks arrive, so no more than a window is ever allocated on a peer's word alone.
//! Never sends anything: it reports credit to return.

use bytes::Bytes;

use super::budget::Budgets;
use super::error::SessionError;
use super::Message;
use crate::frame::{Channel, Compression, MessageFrame, PayloadEncoding};
use crate::header::HeaderDecoder;
use crate::header::RoutingHeader;

/// Where the chunks of a message in progress collect (wire.md §8.3).
#[derive(Debug)]
enum Reassembly {
    /// Nothing yet.
    Empty,
    /// A message that arrived in one chunk: a view of the received bytes, not a copy.
    Whole(Bytes),
    /// The chunks so far, copied into one buffer as they arrive, so no received batch is kept
    /// alive by a message in progress (the transport reuses its read buffer).
    Buffer(Vec<u8>),
}

impl Reassembly {
    /// Adds the next chunk of a message of `message_len` bytes (the caller has checked that
    /// the chunks so far do not exceed it). The buffer starts at the message's length or
    /// `eager` (the channel's window), whichever is smaller, and doubles as needed, never past
    /// the message: what is allocated is at most a window, or twice what has arrived.
    fn push(&mut self, data: Bytes, message_len: u64, eager: u64) {
        let message_len = message_len as usize; // ≤ MAX_MESSAGE_SIZE (§5.3.2)
        match std::mem::replace(self, Reassembly::Empty) {
            Reassembly::Empty if data.len() == message_len => *self = Reassembly::Whole(data),
            Reassembly::Empty => {
                let first = message_len.min((eager as usize).max(data.len()));
                let mut buf = Vec::with_capacity(first);
                buf.extend_from_slice(&data);
                *self = Reassembly::Buffer(buf);
            }
            // Not reached (a chunk after a whole message exceeds Message Length, which the
            // caller refuses first); appended all the same.
            Reassembly::Whole(whole) => {
                let mut buf = Vec::with_capacity(message_len.max(whole.len() + data.len()));
                buf.extend_from_slice(&whole);
                buf.extend_from_slice(&data);
                *self = Reassembly::Buffer(buf);
            }
            Reassembly::Buffer(mut buf) => {
                let need = buf.len() + data.len();
                if need > buf.capacity() {
                    let target = (buf.capacity() * 2).min(message_len).max(need);
                    buf.reserve_exact(target - buf.len());
                }
                buf.extend_from_slice(&data);
                *self = Reassembly::Buffer(buf);
            }
        }
    }

    /// How many bytes of capacity [`push`](Self::push) of `data_len` more bytes would
    /// allocate (what the reassembly budget is charged, §8.3.1).
    fn growth(&self, data_len: usize, message_len: u64, eager: u64) -> u64 {
        let message_len = message_len as usize;
        let bytes = match self {
            Reassembly::Empty if data_len == message_len => 0,
            Reassembly::Empty => message_len.min((eager as usize).max(data_len)),
            Reassembly::Whole(whole) => message_len.max(whole.len() + data_len),
            Reassembly::Buffer(buf) => {
                let need = buf.len() + data_len;
                if need > buf.capacity() {
                    (buf.capacity() * 2).min(message_len).max(need) - buf.capacity()
                } else {
                    0
                }
            }
        };
        bytes as u64
    }

    /// The whole message, once every byte has arrived.
    fn finish(self) -> Bytes {
        match self {
            Reassembly::Empty => Bytes::new(),
            Reassembly::Whole(whole) => whole,
            Reassembly::Buffer(buf) => Bytes::from(buf),
        }
    }
}

#[derive(Debug)]
struct Partial {
    sequence: u64,
    header: RoutingHeader,
    encoding: PayloadEncoding,
    compression: Compression,
    message_len: u64,
    chunks: Reassembly,
    received: u64,
    /// Bytes of this message's frames not yet credited back.
    held: u64,
    /// Dropped on completion (refused after our GOAWAY, or rejected by us).
    discard: bool,
    /// Bytes reserved from the reassembly budgets for its buffer.
    reserved: u64,
}

/// Receive state of one channel.
#[derive(Debug)]
pub struct InChannel {
    channel: Channel,
    decoder: HeaderDecoder,
    /// The most a reassembly buffer starts at (our channel window).
    eager_alloc: u64,
    partial: Option<Partial>,
    /// Messages the peer has started on this channel: the next sequence number.
    started: u64,
    /// Bytes delivered in messages the application has not released yet.
    delivered_unreleased: u64,
    /// Messages delivered and not released yet (what a flood of small messages costs beyond
    /// their bytes, wire.md §9.6.1).
    delivered_messages: u64,
    /// Bytes that may be credited back now.
    creditable: u64,
    /// After our GOAWAY: messages at or above this sequence are dropped (§14.1.3).
    refuse_from: Option<u64>,
    /// What reassembly buffers are charged to (§8.3.1).
    budgets: Budgets,
    /// A message refused because it would exceed a reassembly budget: its sequence, for the
    /// session to tell the peer (CANCEL, §5.7.2).
    over_budget: Option<u64>,
    /// Bytes the application holds of messages from earlier connections of a resumed session:
    /// their release must not credit this connection's windows (§21.6), so that much of the
    /// next releases is swallowed.
    forgiven: u64,
    /// The charge of messages finished since the last ACK (§21.3): what the peer's replay
    /// buffer holds of ours.
    unacked_charge: u64,
}

impl Drop for InChannel {
    fn drop(&mut self) {
        // The connection's end frees what its messages in progress held.
        if let Some(p) = self.partial.as_mut() {
            self.budgets.release(std::mem::take(&mut p.reserved));
        }
    }
}

impl InChannel {
    /// A channel whose header table has `table_capacity` bytes and list limit `max_list`;
    /// reassembly buffers start at no more than `eager_alloc` bytes (the channel's receive
    /// window).
    pub(crate) fn new(
        channel: Channel,
        table_capacity: usize,
        max_list: u64,
        eager_alloc: u64,
        budgets: Budgets,
    ) -> Self {
        InChannel {
            channel,
            decoder: HeaderDecoder::new(table_capacity, max_list),
            eager_alloc,
            partial: None,
            started: 0,
            delivered_unreleased: 0,
            delivered_messages: 0,
            creditable: 0,
            refuse_from: None,
            budgets,
            over_budget: None,
            forgiven: 0,
            unacked_charge: 0,
        }
    }

    /// Messages of the peer's finished on this channel (§21.3): started, less the one in
    /// progress.
    pub(crate) fn finished(&self) -> u64 {
        self.started - u64::from(self.partial.is_some())
    }

    /// Takes the charge of the messages finished since the last call (an ACK was sent).
    pub(crate) fn take_unacked_charge(&mut self) -> u64 {
        std::mem::take(&mut self.unacked_charge)
    }

    /// The charge of the messages finished since the last ACK.
    pub(crate) fn unacked_charge(&self) -> u64 {
        self.unacked_charge
    }

    /// A new connection of a resumed session (§21.6): the message in progress is dropped (the
    /// peer sends it again), the header table starts empty, numbering continues at `started`
    /// (what we told the peer we finished), and what the application still holds from earlier
    /// connections will not credit this one.
    pub(crate) fn reattach(&mut self, started: u64, table_capacity: usize, max_list: u64) {
        if let Some(mut p) = self.partial.take() {
            self.budgets.release(std::mem::take(&mut p.reserved));
        }
        self.decoder = HeaderDecoder::new(table_capacity, max_list);
        self.started = started;
        self.creditable = 0;
        self.forgiven = self.delivered_unreleased;
        self.refuse_from = None;
        self.over_budget = None;
        self.unacked_charge = 0;
    }

    fn finish_charge(&mut self, message_len: u64, header: &RoutingHeader) {
        let meta = header.list_size() as u64 + super::QUEUED_MESSAGE_OVERHEAD;
        self.unacked_charge += message_len + meta;
    }

    /// The sequence of a message just refused for the reassembly budget, once.
    pub fn take_over_budget(&mut self) -> Option<u64> {
        self.over_budget.take()
    }

    /// Messages started by the peer (the GOAWAY accepted count, §14.1.1).
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Whether a message not being discarded is in progress.
    pub fn has_accepted_partial(&self) -> bool {
        self.partial.as_ref().is_some_and(|p| !p.discard)
    }

    /// Drops messages at or above `count` from now on (§14.1.3).
    pub fn refuse_from(&mut self, count: u64) {
        self.refuse_from = Some(count);
    }

    /// Takes the bytes that may be credited back now.
    pub fn take_creditable(&mut self) -> u64 {
        std::mem::take(&mut self.creditable)
    }

    /// Bytes received and not yet credited back (what this channel holds in memory at most).
    pub fn held_bytes(&self) -> u64 {
        self.delivered_unreleased + self.partial.as_ref().map_or(0, |p| p.held) + self.creditable
    }

    /// Handles one MESSAGE frame whose Frame Payload was `frame_len` bytes (already charged
    /// against the windows by the caller). Returns the message it completed, if any.
    pub fn on_frame(
        &mut self,
        frame: MessageFrame,
        frame_len: u64,
    ) -> Result<Option<Message>, SessionError> {
        let channel = self.channel;
        let mut partial = match (frame.start, self.partial.take()) {
            (Some(start), None) => {
                let sequence = self.started;
                self.started += 1;
                // The header block is always decoded, even for a message we will drop, so that
                // the table stays in step with the sender's (§6.3.3).
                let header = self.decoder.decode(start.header_block)?;
                Partial {
                    sequence,
                    header,
                    encoding: start.encoding,
                    compression: start.compression,
                    message_len: start.message_len,
                    chunks: Reassembly::Empty,
                    received: 0,
                    held: 0,
                    discard: self.refuse_from.is_some_and(|n| sequence >= n),
                    reserved: 0,
                }
            }
            (None, Some(p)) => p,
            // spec: wire.md §8.2 — FIRST while a message is in progress, or a continuation
            // without one, is a PROTOCOL_ERROR.
            (Some(_), Some(_)) => {
                return Err(SessionError::UnexpectedChunk {
                    channel,
                    what: "FIRST while a message is in progress",
                })
            }
            (None, None) => {
                return Err(SessionError::UnexpectedChunk {
                    channel,
                    what: "continuation with no message in progress",
                })
            }
        };
        // spec: wire.md §8.2 — the chunks add up to Message Length exactly.
        partial.received += frame.data.len() as u64;
        if partial.received > partial.message_len
            || (frame.last && partial.received != partial.message_len)
        {
            return Err(SessionError::ChunkLengthMismatch {
                channel,
                received: partial.received,
                message: partial.message_len,
                ending: if frame.last { " at LAST" } else { "" },
            });
        }
        if partial.discard {
            self.creditable += frame_len; // §9.4: discarded bytes are released at once
        } else {
            if !frame.data.is_empty() {
                let len = partial.message_len;
                let growth = partial
                    .chunks
                    .growth(frame.data.len(), len, self.eager_alloc);
                if growth > 0 && !self.budgets.try_reserve(growth) {
                    // spec: wire.md §8.3.1 — over a reassembly budget: this message is refused
                    // (CANCEL, LIMIT_EXCEEDED), its bytes freed and credited; nothing else is.
                    self.over_budget = Some(partial.sequence);
                    self.budgets.release(std::mem::take(&mut partial.reserved));
                    partial.discard = true;
                    partial.chunks = Reassembly::Empty;
                    self.creditable += std::mem::take(&mut partial.held) + frame_len;
                    if frame.last {
                        self.finish_charge(partial.message_len, &partial.header);
                    } else {
                        self.partial = Some(partial);
                    }
                    return Ok(None);
                }
                partial.reserved += growth;
                partial.chunks.push(frame.data, len, self.eager_alloc);
            }
            // spec: wire.md §9.3 — a chunk appended to reassembly is released at once if the
            // channel's previous message was taken; the last chunk is held until the
            // application releases the message.
            if !frame.last && self.delivered_unreleased == 0 {
                self.creditable += frame_len;
            } else {
                partial.held += frame_len;
            }
        }
        if !frame.last {
            self.partial = Some(partial);
            return Ok(None);
        }
        self.finish_charge(partial.message_len, &partial.header);
        if partial.discard {
            return Ok(None);
        }
        // Assembled: the buffer is the application's message now, no longer under reassembly.
        if partial.reserved > 0 {
            self.budgets.release(partial.reserved);
        }
        let payload = partial.chunks.finish();
        self.delivered_unreleased += partial.held;
        self.delivered_messages += 1;
        Ok(Some(Message {
            channel,
            sequence: partial.sequence,
            header: partial.header,
            encoding: partial.encoding,
            compression: partial.compression,
            still_compressed: partial.compression != Compression::None,
            payload,
            credit: partial.held,
            schema: None,
            error: None,
        }))
    }

    /// Messages delivered and not yet released.
    pub fn held_messages(&self) -> u64 {
        self.delivered_messages
    }

    /// The application is done with one delivered message of `bytes` (its credit, §9.3).
    pub fn release(&mut self, bytes: u64) {
        self.delivered_messages = self.delivered_messages.saturating_sub(1);
        let bytes = bytes.min(self.delivered_unreleased);
        self.delivered_unreleased -= bytes;
        // spec: wire.md §21.6 — bytes that arrived on an earlier connection credit nothing.
        let swallowed = bytes.min(self.forgiven);
        self.forgiven -= swallowed;
        self.creditable += bytes - swallowed;
        if self.delivered_unreleased == 0 {
            if let Some(p) = self.partial.as_mut() {
                // The previous message is taken: what the message in progress held is released.
                self.creditable += std::mem::take(&mut p.held);
            }
        }
    }

    /// The peer abandoned message `sequence` (CANCEL with ABORT, §5.7.1). Returns whether it
    /// was the message in progress.
    pub fn abort(&mut self, sequence: u64) -> bool {
        match self.partial.take() {
            Some(p) if p.sequence == sequence => {
                self.creditable += p.held;
                self.budgets.release(p.reserved);
                self.unacked_charge += super::replay::ABORT_MARKER_CHARGE;
                true
            }
            other => {
                self.partial = other;
                false
            }
        }
    }

    /// We reject the message in progress with `sequence` (§5.7.2): its bytes are released now
    /// and its remaining chunks will be dropped.
    pub fn reject(&mut self, sequence: u64) -> bool {
        match self.partial.as_mut() {
            Some(p) if p.sequence == sequence && !p.discard => {
                p.discard = true;
                p.chunks = Reassembly::Empty;
                self.budgets.release(std::mem::take(&mut p.reserved));
                self.creditable += std::mem::take(&mut p.held);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MessageStart;

    /// `len` pseudo-random bytes (xorshift64): the test kit's generator, which this crate
    /// cannot depend on.
    fn incompressible(len: usize, seed: u64) -> Bytes {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut b = Vec::with_capacity(len);
        while b.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.extend_from_slice(&x.to_be_bytes());
        }
        b.truncate(len);
        Bytes::from(b)
    }

    fn unlimited() -> Budgets {
        Budgets {
            connection: super::super::budget::ReassemblyBudget::new(u64::MAX),
            shared: None,
        }
    }

    fn frames(payload: &Bytes, chunk: usize) -> Vec<MessageFrame> {
        let n = payload.len().div_ceil(chunk).max(1);
        (0..n)
            .map(|i| MessageFrame {
                channel: Channel::Bulk,
                start: (i == 0).then(|| MessageStart {
                    message_len: payload.len() as u64,
                    encoding: PayloadEncoding::Raw,
                    compression: Compression::None,
                    header_block: Bytes::new(),
                }),
                last: i == n - 1,
                data: payload.slice(i * chunk..((i + 1) * chunk).min(payload.len())),
            })
            .collect()
    }

    fn allocated(ch: &InChannel) -> usize {
        match ch.partial.as_ref().map(|p| &p.chunks) {
            Some(Reassembly::Buffer(b)) => b.capacity(),
            _ => 0,
        }
    }

    fn buffered(ch: &InChannel) -> usize {
        match ch.partial.as_ref().map(|p| &p.chunks) {
            Some(Reassembly::Buffer(b)) => b.len(),
            _ => 0,
        }
    }

    #[test]
    fn reassembly_8_3_every_size_and_chunking_gives_the_message_back() {
        let eager = 64 * 1024;
        let data = incompressible(300_000, 5);
        for len in [
            0, 1, 999, 1000, 1001, 65_535, 65_536, 65_537, 131_072, 300_000,
        ] {
            for chunk in [1000, 16 * 1024, 100_000] {
                if len / chunk > 400 {
                    continue;
                }
                let payload = data.slice(..len);
                let mut ch = InChannel::new(Channel::Bulk, 4096, 1 << 16, eager, unlimited());
                let fs = frames(&payload, chunk);
                let count = fs.len();
                for (i, f) in fs.into_iter().enumerate() {
                    let got = ch.on_frame(f, 0).unwrap();
                    assert_eq!(got.is_some(), i == count - 1, "len {len} chunk {chunk}");
                    if let Some(m) = got {
                        assert_eq!(m.payload, payload, "len {len} chunk {chunk}");
                    }
                }
            }
        }
    }

    #[test]
    fn reassembly_8_3_a_message_over_the_window_grows_with_what_has_arrived() {
        let eager = 64 * 1024;
        let payload = incompressible(1 << 20, 9);
        let mut ch = InChannel::new(Channel::Bulk, 4096, 1 << 16, eager, unlimited());
        let mut received = 0;
        for f in frames(&payload, 16 * 1024) {
            received += f.data.len();
            let last = f.last;
            let m = ch.on_frame(f, 0).unwrap();
            if last {
                assert_eq!(m.unwrap().payload, payload);
            } else {
                assert_eq!(
                    buffered(&ch),
                    received,
                    "every chunk copied in as it arrives"
                );
                let cap = allocated(&ch);
                assert!(
                    cap <= (eager as usize).max(2 * received) && cap <= 1 << 20,
                    "{cap} bytes allocated for {received} received"
                );
            }
        }
        // Within the window: one buffer of the message's length from the first chunk on.
        let small = payload.slice(..40_000);
        let mut fs = frames(&small, 16 * 1024).into_iter();
        assert!(ch.on_frame(fs.next().unwrap(), 0).unwrap().is_none());
        assert_eq!(allocated(&ch), 40_000);
        let last = fs.map(|f| ch.on_frame(f, 0).unwrap()).last().flatten();
        assert_eq!(last.unwrap().payload, small);
    }

    #[test]
    fn reassembly_8_3_a_single_frame_message_is_a_view_of_the_received_bytes() {
        let payload = incompressible(100_000, 3);
        let mut ch = InChannel::new(Channel::Bulk, 4096, 1 << 16, 1 << 20, unlimited());
        let m = ch.on_frame(frames(&payload, 1 << 20).remove(0), 0);
        let m = m.unwrap().unwrap();
        assert_eq!(m.payload.as_ptr(), payload.as_ptr());
    }
}
