//! The send side of one channel: the queue of messages and chunking (wire.md §8.1).
//!
//! Owns the channel's header encoder, its queue and sequence numbers, the cutting of the
//! front message into MESSAGE frames that fit the credit and the peer's frame size, and, in a
//! resumable session, the replay buffer of started messages the peer has not acknowledged
//! (wire.md §21.4). Never decides which channel goes next (the scheduler does), never keeps
//! credit (the session's flow control does) and never holds more than the messages the
//! application queued plus that buffer's bound.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::frame::{Channel, Compression, MessageFrame, MessageStart, PayloadEncoding};
use crate::header::HeaderEncoder;
use crate::header::RoutingHeader;
use crate::payload::SchemaBinding;

use super::replay::{LostMessage, Replay};

/// A message to send: routing header, payload and how the payload is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The routing header.
    pub header: RoutingHeader,
    /// The payload, as it goes on the wire (already compressed if `compression` says so).
    pub payload: Bytes,
    /// How the payload is encoded.
    pub encoding: PayloadEncoding,
    /// How the payload is compressed.
    pub compression: Compression,
    /// For an rkyv payload: the type it archives. [`Session::send`](super::Session::send)
    /// binds it on the channel (a SCHEMA frame the first time, wire.md §11.2.1) and sets
    /// `encoding` to the bound Schema Id.
    pub schema: Option<SchemaBinding>,
}

impl OutgoingMessage {
    /// A raw, uncompressed message.
    pub fn new(header: RoutingHeader, payload: impl Into<Bytes>) -> Self {
        OutgoingMessage {
            header,
            payload: payload.into(),
            encoding: PayloadEncoding::Raw,
            compression: Compression::None,
            schema: None,
        }
    }

    /// The same message with another payload encoding.
    pub fn with_encoding(mut self, encoding: PayloadEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The same message as an rkyv archive of the type `binding` names (see
    /// [`schema`](Self::schema)).
    pub fn with_schema(mut self, binding: SchemaBinding) -> Self {
        self.schema = Some(binding);
        self
    }
}

#[derive(Debug)]
struct Queued {
    /// The application's id for the message (enqueue order), for `cancel`.
    id: u64,
    /// The wire sequence number (wire.md §5.3.8), assigned when the first frame leaves.
    sequence: Option<u64>,
    message: OutgoingMessage,
    /// Encoded once, when the message reaches the front (table order = wire order).
    header_block: Option<Bytes>,
    /// The first frame's payload besides chunk data (its metadata and header block), computed
    /// with the header block.
    start_len: u64,
    /// Payload bytes already sent.
    offset: usize,
    /// The first frame (with the metadata) has left: the message has started.
    first_sent: bool,
    /// A replayed stand-in for a message this side aborted (§21.6): a FIRST frame of one
    /// announced byte and no data, then CANCEL with ABORT.
    abort_marker: bool,
    /// [`message_charge`] of the message, computed once.
    meta: u64,
}

/// The smallest chunk worth sending when credit is short (avoids a silly-window trickle), unless
/// the peer's windows can never hold that much beside the metadata (wire.md §9.5.1).
pub(crate) const MIN_CHUNK: u64 = 1024;

/// What a queued message costs in memory besides its payload: its place in the queue and its
/// header's allocations (charged on top of the header's list size).
pub const QUEUED_MESSAGE_OVERHEAD: u64 = 128;

/// The send-buffer charge of a message besides its payload bytes: its header and a fixed
/// overhead, so that messages with empty payloads are bounded too.
pub fn message_charge(m: &OutgoingMessage) -> u64 {
    m.header.list_size() as u64 + QUEUED_MESSAGE_OVERHEAD
}

/// Send state of one channel.
#[derive(Debug)]
pub struct OutChannel {
    channel: Channel,
    queue: VecDeque<Queued>,
    queued_bytes: u64,
    /// [`message_charge`] summed over the queued messages.
    queued_meta: u64,
    encoder: HeaderEncoder,
    next_id: u64,
    next_sequence: u64,
    /// Started messages the peer has not acknowledged (a resumable session, §21.4).
    replay: Replay,
    /// A replayed abort marker just left as a FIRST frame: the CANCEL with ABORT that must
    /// follow it on this channel (§21.6).
    abort_after: Option<u64>,
}

impl OutChannel {
    /// A channel with nothing queued (its credit is the session's [`FlowControl`](super::flow)).
    pub fn new(channel: Channel) -> Self {
        OutChannel {
            channel,
            queue: VecDeque::new(),
            queued_bytes: 0,
            queued_meta: 0,
            encoder: HeaderEncoder::new(0),
            next_id: 0,
            next_sequence: 0,
            replay: Replay::default(),
            abort_after: None,
        }
    }

    /// Keeps started messages for replay, up to `limit` bytes of charge (§21.4).
    pub(crate) fn enable_replay(&mut self, limit: u64) {
        self.replay.enable(limit);
    }

    /// The replay buffer (what it holds, what the peer acknowledged).
    pub(crate) fn replay(&self) -> &Replay {
        &self.replay
    }

    /// Messages started on this channel so far (the next sequence number, §5.3.8, §21.2).
    pub(crate) fn started(&self) -> u64 {
        self.next_sequence
    }

    /// The peer finished our messages below `received` (ACK, §21.3): they leave the replay
    /// buffer. `Err(started)` if it counts messages we never started.
    pub(crate) fn on_ack(&mut self, received: u64) -> Result<(), u64> {
        if received > self.next_sequence {
            return Err(self.next_sequence);
        }
        self.replay.acknowledge(received);
        Ok(())
    }

    /// A resumed connection (§21.6): the peer finished our messages below `received`; every
    /// later one is sent again, from the start, in order and with its sequence number, before
    /// anything queued. The header encoder starts empty (`configure` follows).
    /// `Err((acknowledged, started))` if `received` is outside what can be replayed.
    pub(crate) fn rewind(&mut self, received: u64) -> Result<(), (u64, u64)> {
        if received < self.replay.acknowledged() || received > self.next_sequence {
            return Err((self.replay.acknowledged(), self.next_sequence));
        }
        self.replay.acknowledge(received);
        self.unstart_front();
        self.forget_header_blocks();
        for entry in self.replay.drain().into_iter().rev() {
            let (message, abort_marker) = match entry.message {
                Some(m) => (m, false),
                None => (
                    OutgoingMessage::new(RoutingHeader::default(), Bytes::new()),
                    true,
                ),
            };
            let q = self.charged(entry.id, message, abort_marker);
            self.queue.push_front(q);
        }
        self.next_sequence = received;
        self.abort_after = None;
        Ok(())
    }

    /// A resume that failed (§21.6.5): every started message the peer has not acknowledged
    /// may be lost and leaves (returned, in order): those in the replay buffer and the one in
    /// progress. Messages never started stay, to go out on the new session, whose sequence
    /// numbers start at 0 — and so do those an earlier, successful resume queued again and
    /// that have not gone out since: that resume's count said the peer never finished them.
    /// Abort markers not yet sent leave unreported: the new session has nothing to abort.
    pub(crate) fn forget_started(&mut self) -> Vec<LostMessage> {
        let channel = self.channel;
        let lost_entry = |id, sequence, message| LostMessage {
            channel,
            id,
            sequence,
            message,
        };
        let mut lost: Vec<LostMessage> = self
            .replay
            .drain()
            .into_iter()
            .filter_map(|e| Some(lost_entry(e.id, e.sequence, e.message?)))
            .collect();
        for q in std::mem::take(&mut self.queue) {
            if q.sequence.is_none() && !q.abort_marker {
                self.queue.push_back(q); // not started: it goes out on the new session
                continue;
            }
            self.queued_bytes -= (q.message.payload.len() - q.offset) as u64;
            self.queued_meta -= q.meta;
            if let (Some(sequence), false) = (q.sequence, q.abort_marker) {
                lost.push(lost_entry(q.id, sequence, q.message));
            }
        }
        self.replay.reset();
        self.forget_header_blocks();
        self.next_sequence = 0;
        self.abort_after = None;
        lost
    }

    /// Header blocks encoded against the old connection's table are encoded again against the
    /// new one's (wire.md §6.3: tables are per connection).
    fn forget_header_blocks(&mut self) {
        for q in &mut self.queue {
            q.header_block = None;
        }
    }

    /// The message in progress goes back to unstarted (a new connection sends it again from
    /// its first byte); its charge leaves the replay buffer until it starts again.
    fn unstart_front(&mut self) {
        let Some(front) = self.queue.front_mut() else {
            return;
        };
        if !front.first_sent {
            return;
        }
        self.queued_bytes += front.offset as u64;
        front.offset = 0;
        front.first_sent = false;
        front.sequence = None;
        front.header_block = None;
        self.replay
            .unstart(front.meta + front.message.payload.len() as u64);
    }

    /// The sequence of a replayed abort marker whose FIRST frame just left: the caller sends
    /// CANCEL with ABORT for it right behind, on this channel (§21.6).
    pub(crate) fn take_abort_after(&mut self) -> Option<u64> {
        self.abort_after.take()
    }

    /// Applies the peer's header table capacity (its HELLO arrived).
    pub fn configure(&mut self, table_capacity: usize) {
        self.encoder = HeaderEncoder::new(table_capacity);
    }

    /// Queues a message; returns its id (enqueue order on this channel).
    pub fn push(&mut self, message: OutgoingMessage) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let q = self.charged(id, message, false);
        self.queue.push_back(q);
        id
    }

    /// `message` as an unstarted queue entry, its bytes and charge counted as queued.
    fn charged(&mut self, id: u64, message: OutgoingMessage, abort_marker: bool) -> Queued {
        let meta = message_charge(&message);
        self.queued_bytes += message.payload.len() as u64;
        self.queued_meta += meta;
        Queued {
            id,
            sequence: None,
            message,
            header_block: None,
            start_len: 0,
            offset: 0,
            first_sent: false,
            abort_marker,
            meta,
        }
    }

    /// Payload bytes queued and not yet sent.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    /// What the queued messages cost: their unsent payload bytes, and each one's header and
    /// fixed overhead ([`message_charge`]). What a send buffer bounds.
    pub fn queued_charge(&self) -> u64 {
        self.queued_bytes + self.queued_meta
    }

    /// Messages queued (unstarted, and the one in progress).
    pub fn queued_messages(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether [`next_frame`](Self::next_frame) may have a frame now, credit allowing: a
    /// message is queued and the replay buffer's limit lets its front start (§21.4.2).
    pub fn has_ready(&self) -> bool {
        !self.queue.is_empty() && self.may_start_front()
    }

    /// `(id, wire sequence)` of the message in progress (partly sent), if any.
    pub fn in_progress(&self) -> Option<(u64, u64)> {
        self.queue.front().and_then(|q| Some((q.id, q.sequence?)))
    }

    /// The id of the message whose wire sequence is `sequence`, if it is in progress.
    pub fn id_of_sequence(&self, sequence: u64) -> Option<u64> {
        self.in_progress()
            .filter(|&(_, s)| s == sequence)
            .map(|(id, _)| id)
    }

    /// The messages that have not started, with their ids, in queue order.
    pub fn unstarted(&self) -> impl Iterator<Item = (u64, &OutgoingMessage)> {
        self.queue
            .iter()
            .filter(|q| !q.started() && !q.abort_marker)
            .map(|q| (q.id, &q.message))
    }

    /// Removes every message that has not started; returns their ids. A started one stays
    /// (the caller aborts it with [`abort_front`](Self::abort_front)).
    pub fn drop_unstarted(&mut self) -> Vec<u64> {
        let mut dropped = Vec::new();
        let queued_bytes = &mut self.queued_bytes;
        let queued_meta = &mut self.queued_meta;
        self.queue.retain(|q| {
            if q.started() {
                return true;
            }
            *queued_bytes -= q.message.payload.len() as u64;
            *queued_meta -= q.meta;
            if !q.abort_marker {
                dropped.push(q.id); // a marker's message was reported when it was aborted
            }
            false
        });
        dropped
    }

    /// Removes the message `id` if it has not started. Returns whether it did.
    pub fn remove_unstarted(&mut self, id: u64) -> bool {
        // A replayed abort marker is never removed: its sequence number must reach the peer.
        let removable = |q: &Queued| q.id == id && !q.started() && !q.abort_marker;
        let Some(pos) = self.queue.iter().position(removable) else {
            return false;
        };
        if let Some(q) = self.queue.remove(pos) {
            self.queued_bytes -= q.message.payload.len() as u64;
            self.queued_meta -= q.meta;
        }
        true
    }

    /// Abandons the front message if it has started and is `id` (or any, with `None`);
    /// returns `(id, wire sequence)` (the caller sends CANCEL with ABORT, §5.7.1).
    pub fn abort_front(&mut self, id: Option<u64>) -> Option<(u64, u64)> {
        let (front_id, sequence) = self.in_progress()?;
        if id.is_some_and(|i| i != front_id) {
            return None;
        }
        let q = self.queue.pop_front()?;
        self.queued_bytes -= (q.message.payload.len() - q.offset) as u64;
        self.queued_meta -= q.meta;
        // spec: wire.md §21.4 — an aborted message stays in the replay buffer as a marker
        // (its sequence number), so a resumed connection can abort it again.
        let whole = q.meta + q.message.payload.len() as u64;
        self.replay.aborted(front_id, sequence, whole);
        Some((front_id, sequence))
    }

    /// Whether the front message can produce a frame with `available` bytes of credit, when
    /// the windows never hold more than `ceiling` (the smaller of the peer's initial windows).
    pub fn ready(&mut self, available: u64, ceiling: u64) -> bool {
        match self.frame_size_needed(ceiling) {
            Some(needed) => available >= needed,
            None => false,
        }
    }

    /// The smallest frame payload worth sending for the front message: the metadata and
    /// `MIN_CHUNK` bytes of data (or what is left) — or, when the windows can never hold that
    /// much (`ceiling`), the metadata and one byte (spec: wire.md §9.5.1). Not the ceiling
    /// itself: part of a window may stay held by messages the receiver's application has not
    /// released, so a sender waiting for a whole window could wait for ever.
    fn frame_size_needed(&mut self, ceiling: u64) -> Option<u64> {
        if !self.may_start_front() {
            return None;
        }
        let front = self.queue.front_mut()?;
        let encoder = &mut self.encoder;
        let meta = front.metadata_len(encoder);
        let remaining = (front.message.payload.len() - front.offset) as u64;
        let least = meta + remaining.min(1);
        let wanted = meta + remaining.min(MIN_CHUNK);
        Some(if wanted <= ceiling { wanted } else { least })
    }

    /// Cuts the next frame of the front message: at most `max_payload` bytes of frame payload
    /// and at most `chunk` bytes of data. Returns the frame; the caller charges the windows.
    pub fn next_frame(&mut self, max_payload: u64, chunk: u64) -> Option<MessageFrame> {
        if !self.may_start_front() {
            return None;
        }
        if self.queue.front().is_some_and(|q| q.abort_marker) {
            return self.next_abort_marker(max_payload);
        }
        let channel = self.channel;
        let front = self.queue.front_mut()?;
        let meta = front.metadata_len(&mut self.encoder);
        let remaining = front.message.payload.len() - front.offset;
        let room = max_payload.saturating_sub(meta).min(chunk) as usize;
        let take = remaining.min(room);
        if take == 0 && remaining > 0 {
            return None;
        }
        let data = front
            .message
            .payload
            .slice(front.offset..front.offset + take);
        let first = !front.first_sent;
        let start = first.then(|| MessageStart {
            message_len: front.message.payload.len() as u64,
            encoding: front.message.encoding,
            compression: front.message.compression,
            header_block: front.header_block.take().unwrap_or_default(),
        });
        if first {
            // spec: wire.md §5.3.8 — the n-th message started on the channel has sequence n.
            front.sequence = Some(self.next_sequence);
            self.next_sequence += 1;
            let whole = front.meta + front.message.payload.len() as u64;
            self.replay.start(whole);
        }
        front.offset += take;
        front.first_sent = true;
        let last = front.offset == front.message.payload.len();
        self.queued_bytes -= take as u64;
        if last {
            if let Some(q) = self.queue.pop_front() {
                self.queued_meta -= q.meta;
                let sequence = q.sequence.unwrap_or_default();
                let whole = q.meta + q.message.payload.len() as u64;
                self.replay.finished(q.id, sequence, q.message, whole);
            }
        }
        Some(MessageFrame {
            channel,
            start,
            last,
            data,
        })
    }
}

impl OutChannel {
    /// spec: wire.md §21.4 — a message starts only while the replay buffer has room for it,
    /// or holds at most a quarter of its limit (then the peer owes an ACK, §21.3).
    fn may_start_front(&self) -> bool {
        match self.queue.front() {
            Some(q) if !q.first_sent && !q.abort_marker => self
                .replay
                .may_start(q.meta + q.message.payload.len() as u64),
            _ => true,
        }
    }

    /// A replayed abort marker's FIRST frame: Message Length 1, raw, uncompressed, an empty
    /// header block, no Chunk Data (§21.6); the CANCEL with ABORT follows it.
    fn next_abort_marker(&mut self, max_payload: u64) -> Option<MessageFrame> {
        let frame = abort_marker_frame(self.channel);
        if frame.payload_len() > max_payload {
            return None;
        }
        let q = self.queue.pop_front()?;
        self.queued_meta -= q.meta;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.replay.aborted(q.id, sequence, 0);
        self.abort_after = Some(sequence);
        Some(frame)
    }
}

/// The FIRST frame of a replayed abort marker on `channel` (§21.6.3).
fn abort_marker_frame(channel: Channel) -> MessageFrame {
    MessageFrame {
        channel,
        start: Some(MessageStart {
            message_len: 1,
            encoding: PayloadEncoding::Raw,
            compression: Compression::None,
            header_block: Bytes::new(),
        }),
        last: false,
        data: Bytes::new(),
    }
}

impl Queued {
    fn started(&self) -> bool {
        self.first_sent
    }

    /// Frame payload bytes before the chunk data, encoding the header block on first use.
    fn metadata_len(&mut self, encoder: &mut HeaderEncoder) -> u64 {
        if self.started() {
            return 1;
        }
        if self.header_block.is_none() {
            let block = encoder.encode_block(&self.message.header);
            let probe = MessageFrame {
                channel: Channel::Control,
                start: Some(MessageStart {
                    message_len: self.message.payload.len() as u64,
                    encoding: self.message.encoding,
                    compression: self.message.compression,
                    header_block: block,
                }),
                last: false,
                data: Bytes::new(),
            };
            self.start_len = probe.payload_len();
            self.header_block = probe.start.map(|s| s.header_block);
        }
        self.start_len
    }
}

#[cfg(test)]
mod tests {
    use super::super::replay::ABORT_MARKER_CHARGE as ABORT_MARKER;
    use super::*;

    fn message(len: usize) -> OutgoingMessage {
        OutgoingMessage::new(RoutingHeader::new().with("to", "calc"), vec![7u8; len])
    }

    /// What the queue must report: (payload bytes unsent, charge, messages).
    fn state(ch: &OutChannel) -> (u64, u64, usize) {
        (ch.queued_bytes(), ch.queued_charge(), ch.queued_messages())
    }

    // spec: wire.md §9.6.1 — the send buffer's bound is on what the queue reports, so every
    // way a message leaves it (sent, aborted, removed, dropped) must give back exactly what it
    // charged, or a sender ends up blocked (over-counted) or unbounded (under-counted).
    #[test]
    fn the_queue_gives_back_what_each_message_charged_whichever_way_it_leaves() {
        let mut ch = OutChannel::new(Channel::Rpc);
        let meta = message_charge(&message(0));
        let ids: Vec<u64> = [3000, 500, 700, 900, 1100]
            .into_iter()
            .map(|len| ch.push(message(len)))
            .collect();
        let total: u64 = 3000 + 500 + 700 + 900 + 1100;
        assert_eq!(state(&ch), (total, total + 5 * meta, 5));

        // The first message starts: its sent data leaves the count, its charge stays.
        let first = ch.next_frame(1100, 1 << 20).expect("a first frame");
        let sent = first.data.len() as u64;
        assert!(sent > 0 && sent < 3000, "{sent}");
        assert_eq!(state(&ch), (total - sent, total - sent + 5 * meta, 5));
        assert_eq!(
            ch.unstarted().map(|(id, _)| id).collect::<Vec<_>>(),
            ids[1..],
            "a started message is not unstarted"
        );

        // Aborted in the middle: its unsent rest and its charge go.
        assert_eq!(ch.abort_front(None).map(|(id, _)| id), Some(ids[0]));
        let left = total - 3000;
        assert_eq!(state(&ch), (left, left + 4 * meta, 4));

        // Removed before it started.
        assert!(ch.remove_unstarted(ids[2]));
        assert!(!ch.remove_unstarted(ids[2]), "removed once");
        let left = left - 700;
        assert_eq!(state(&ch), (left, left + 3 * meta, 3));

        // Sent whole, in frames.
        while ch.queued_messages() > 2 {
            ch.next_frame(300, 1 << 20)
                .expect("a frame of the message in front");
        }
        let left = left - 500;
        assert_eq!(state(&ch), (left, left + 2 * meta, 2));

        // The rest dropped unstarted.
        assert_eq!(ch.drop_unstarted(), vec![ids[3], ids[4]]);
        assert_eq!(state(&ch), (0, 0, 0));
        assert!(ch.is_idle());
    }

    /// Sends the front message whole (frames of at most 300 bytes); returns its sequence.
    fn send_whole(ch: &mut OutChannel) -> u64 {
        let before = ch.queued_messages();
        let mut sequence = None;
        while ch.queued_messages() == before {
            let frame = ch.next_frame(300, 1 << 20).expect("a frame");
            sequence = sequence.or(ch.in_progress().map(|(_, s)| s));
            if frame.last {
                break;
            }
        }
        sequence.unwrap_or(ch.started() - 1)
    }

    // spec: wire.md §21.6.3 — a resume sends again, in order and with their sequence numbers,
    // every message from the peer's count on, the one in progress from its first byte, an
    // aborted one as a marker followed by CANCEL; §21.6.4 — a count outside what can be
    // replayed is refused; §21.6.5 — a refused resume gives back every started message not
    // acknowledged, those sent again since an earlier resume included.
    #[test]
    fn a_rewind_replays_in_order_and_a_refusal_gives_back_what_was_started() {
        let mut ch = OutChannel::new(Channel::Rpc);
        ch.enable_replay(1 << 20);
        let meta = message_charge(&message(0));
        let ids: Vec<u64> = [400, 500, 600, 700, 800, 900]
            .into_iter()
            .map(|len| ch.push(message(len)))
            .collect();
        assert_eq!(send_whole(&mut ch), 0);
        ch.next_frame(300, 1 << 20).expect("message 1 starts");
        assert_eq!(ch.abort_front(Some(ids[2])), None, "only the front aborts");
        assert_eq!(ch.abort_front(Some(ids[1])), Some((ids[1], 1)));
        assert_eq!(send_whole(&mut ch), 2);
        ch.next_frame(300, 1 << 20).expect("message 3 starts");
        assert_eq!(ch.in_progress(), Some((ids[3], 3)));
        assert_eq!(ch.started(), 4);
        let held = (400 + meta) + ABORT_MARKER + (600 + meta) + (700 + meta);
        assert_eq!(ch.replay().charge(), held);
        ch.on_ack(1).expect("an ACK of message 0");
        assert_eq!(ch.replay().charge(), held - 400 - meta);

        // Counts outside [acknowledged, started] cannot be replayed.
        assert_eq!(ch.rewind(0), Err((1, 4)));
        assert_eq!(ch.rewind(5), Err((1, 4)));

        // The peer finished message 0 only: the marker, 2 and 3 (whole) go again, then 4, 5.
        ch.rewind(1).expect("a count the buffer can replay");
        assert_eq!(ch.started(), 1);
        assert_eq!(
            ch.replay().charge(),
            0,
            "nothing is out on the new connection yet"
        );
        let unsent = 600 + 700 + 800 + 900;
        let marker_charge = QUEUED_MESSAGE_OVERHEAD; // an empty header, no payload
        assert_eq!(state(&ch), (unsent, unsent + 4 * meta + marker_charge, 5));
        assert_eq!(
            ch.unstarted().map(|(id, _)| id).collect::<Vec<_>>(),
            ids[2..],
            "a marker is not a message the application could cancel"
        );
        assert!(!ch.ready(0, 1 << 20) && ch.ready(10, 1 << 20));
        let marker = ch.next_frame(300, 1 << 20).expect("the abort marker");
        let start = marker.start.as_ref().expect("a FIRST frame");
        assert_eq!(
            (start.message_len, marker.last, marker.data.len()),
            (1, false, 0)
        );
        assert!(start.header_block.is_empty());
        assert_eq!(
            ch.take_abort_after(),
            Some(1),
            "CANCEL with ABORT follows, sequence 1"
        );
        assert_eq!(ch.take_abort_after(), None);
        assert_eq!(send_whole(&mut ch), 2);
        let first = ch.next_frame(300, 1 << 20).expect("message 3 again");
        assert_eq!(
            first.start.map(|s| s.message_len),
            Some(700),
            "from its first byte"
        );
        assert_eq!(ch.in_progress(), Some((ids[3], 3)));

        // That connection is lost too, and the next resume is refused: 2 (out again) and 3
        // (in progress again) may have reached the peer; 4 and 5 never started, and stay.
        let lost = ch.forget_started();
        let lost: Vec<(u64, u64, usize)> = lost
            .iter()
            .map(|l| (l.id, l.sequence, l.message.payload.len()))
            .collect();
        assert_eq!(lost, vec![(ids[2], 2, 600), (ids[3], 3, 700)]);
        assert_eq!(ch.started(), 0, "the new session numbers from 0");
        assert_eq!(ch.replay().charge(), 0);
        assert_eq!(ch.replay().acknowledged(), 0);
        assert_eq!(state(&ch), (1700, 1700 + 2 * meta, 2));
        assert_eq!(
            send_whole(&mut ch),
            0,
            "message 4 is the new session's first"
        );
    }

    // spec: wire.md §21.4 — a message starts only while the replay buffer has room for it, or
    // holds at most a quarter of its limit (so one larger than the limit can still go); an
    // ACK makes room. Sized so the limit binds before any window would.
    #[test]
    fn the_replay_limit_holds_a_message_back_until_an_ack_makes_room() {
        let mut ch = OutChannel::new(Channel::Stream);
        ch.enable_replay(4_000);
        let meta = message_charge(&message(0));
        for len in [1_500, 1_500, 1_500, 10_000] {
            ch.push(message(len));
        }
        assert_eq!(send_whole(&mut ch), 0, "an empty buffer takes anything");
        assert_eq!(ch.replay().charge(), 1_500 + meta);
        // Over a quarter held, and room for this one: it starts.
        assert!(ch.ready(1 << 20, 1 << 20));
        assert_eq!(send_whole(&mut ch), 1);
        // 2 x (1,500 + meta) held; a third would pass 4,000.
        assert!(!ch.ready(1 << 20, 1 << 20));
        assert!(
            ch.next_frame(1 << 20, 1 << 20).is_none(),
            "held back, not dropped"
        );
        assert_eq!(ch.queued_messages(), 2);
        ch.on_ack(1).expect("message 0 finished");
        assert!(ch.ready(1 << 20, 1 << 20), "the ACK made room");
        assert_eq!(send_whole(&mut ch), 2);
        // 10,000 bytes never fit 4,000; they go once at most a quarter is held.
        assert!(!ch.ready(1 << 20, 1 << 20));
        ch.on_ack(3).expect("messages 1 and 2 finished");
        assert_eq!(ch.replay().charge(), 0);
        assert!(ch.ready(1 << 20, 1 << 20));
        assert_eq!(send_whole(&mut ch), 3);
        assert!(
            ch.replay().charge() > 4_000,
            "one message past the limit is held whole"
        );
    }

    // spec: wire.md §21.6.3 — a replayed abort marker's FIRST frame goes out when the frame
    // size allows exactly its length, not one byte less.
    #[test]
    fn an_abort_marker_fits_a_frame_of_exactly_its_length() {
        let mut ch = OutChannel::new(Channel::Bulk);
        ch.enable_replay(1 << 20);
        let id = ch.push(message(5_000));
        ch.next_frame(1_100, 1 << 20).expect("the message starts");
        assert_eq!(ch.abort_front(Some(id)), Some((id, 0)));
        ch.rewind(0).expect("nothing acknowledged");
        let expected = abort_marker_frame(Channel::Bulk); // its shape: the rewind test
        let exact = expected.payload_len();
        assert!(ch.next_frame(exact - 1, 1 << 20).is_none());
        assert_eq!(ch.next_frame(exact, 1 << 20), Some(expected));
        assert_eq!(ch.take_abort_after(), Some(0));
    }
}
