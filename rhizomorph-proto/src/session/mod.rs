//! The sans-IO multiplexing session (wire.md §3, §7–§10, §13, §14, §17).
//!
//! A [`Session`] is one end of a connection as a value: received bytes go in, bytes to send
//! come out, and so do events; time is passed in (`Instant`s, a virtual clock in tests). It
//! owns the HELLO exchange, the four channels and their scheduling, chunking and reassembly,
//! flow-control credit, the header tables, keepalive, CANCEL, GOAWAY and CLOSE.
//!
//! It must never do I/O, spawn tasks, read the clock, or hold more than its windows and the
//! application's queued messages allow.
//!
//! # Driving a session
//!
//! Which methods go together depends on the [`Framing`] the driver chose in the
//! [`SessionConfig`]; a driver calls them in this order, every time something happens:
//!
//! | step | batched (WebSocket, §16; a byte stream) | per-channel streams (QUIC, §17) |
//! |---|---|---|
//! | 1. input | [`handle_batch`](Session::handle_batch) per transport message, or [`handle_bytes`](Session::handle_bytes) per read of a byte stream | [`handle_stream`](Session::handle_stream) per read of a channel's stream, while [`can_read`](Session::can_read) allows; [`handle_stream_end`](Session::handle_stream_end) at its FIN |
//! | 2. events | [`poll_event`](Session::poll_event) until `None`; a server answers [`Event::HelloReceived`] with [`accept`](Session::accept) or [`reject`](Session::reject); [`release`](Session::release) each message's credit once the application took it | the same |
//! | 3. output | [`poll_transmit`](Session::poll_transmit)`(now, `[`Target::Batch`]`, max)` until `None`, each [`Transmit`] one write in order | [`poll_transmit`](Session::poll_transmit)`(now, `[`Target::Stream`]`(channel), max)` per channel with [`has_channel_output`](Session::has_channel_output), each written to that channel's stream |
//! | 4. time | [`handle_timeout`](Session::handle_timeout) when [`poll_timeout`](Session::poll_timeout)'s instant has passed, then step 3 again | the same |
//! | 5. end | once [`is_closed`](Session::is_closed) and `poll_transmit` returns `None`, close the transport | the same |
//!
//! The application's calls — [`send`](Session::send), [`schema_id`](Session::schema_id),
//! [`cancel`](Session::cancel), [`goaway`](Session::goaway), [`close`](Session::close),
//! [`ping`](Session::ping) — may come between any two steps; each is followed by step 3
//! ([`wants_transmit`](Session::wants_transmit) says whether anything but queued messages is
//! waiting to leave).
//!
//! # Where each rule lives
//!
//! - `handshake.rs`: the HELLO exchange and its timeout (§3.2, §18).
//! - `flow.rs`: credit in both directions, and when it is worth a CREDIT frame (§9, §17.5).
//! - `streams.rs`: what only per-channel streams have (§17).
//! - `shutdown.rs`: CANCEL, GOAWAY and its drain, CLOSE (§5.7, §14).
//! - `schemas.rs`: Schema Id tables (§11.2).
//! - `transmit.rs` and `batch.rs`: what the next write carries and how it is encoded (§7, §10).
//! - `outgoing.rs`, `incoming.rs`: one channel's send queue and chunking (§8.1), and its
//!   reassembly and receive credit (§8.2, §9.3); `scheduler.rs`: which channel goes next (§7);
//!   `keepalive.rs`: PING and silence (§13); `message.rs`: the received [`Message`].

mod batch;
mod budget;
mod config;
mod error;
mod event;
mod flow;
mod handshake;
mod incoming;
mod keepalive;
mod message;
mod outgoing;
mod replay;
mod resume;
mod scheduler;
mod schemas;
mod shutdown;
mod streams;
mod transmit;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::{debug, trace, warn};

pub use budget::ReassemblyBudget;
pub use config::{Framing, Role, SessionConfig};
pub use error::{SendError, SessionError};
pub use event::{Event, Initiator, SessionEvent, SessionStats};
pub use keepalive::Keepalive;
pub use message::Message;
pub use outgoing::{message_charge, OutgoingMessage, QUEUED_MESSAGE_OVERHEAD};
pub use replay::{LostMessage, Replay, ABORT_MARKER_CHARGE};
pub use resume::Ticket;
pub use scheduler::ChannelScheduler;
pub use transmit::{Target, Transmit};

use crate::frame::{
    Channel, Compression, ErrorCode, Frame, FrameDecoder, Hello, MessageFrame, PayloadEncoding,
    Ping, Settings,
};
use flow::{FlowControl, FIRST_FRAME_METADATA};
use handshake::Handshake;
use incoming::InChannel;
use outgoing::OutChannel;
use resume::Resumption;
use schemas::SchemaTables;
use shutdown::Shutdown;
use streams::ChannelStreams;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the peer's HELLO (client: after sending its own).
    AwaitingHello,
    /// Server: the client's HELLO arrived; waiting for the application's decision.
    AwaitingAccept,
    /// Messages flow.
    Open,
    /// CLOSE queued: nothing but it leaves.
    Closing,
    /// Per-channel streams: the peer sent CLOSE with `NO_ERROR`; its channel streams are read
    /// to their end before the connection is over (wire.md §17.6).
    Finishing,
    /// A resumable session whose transport was lost (wire.md §21.5): waiting for a new one.
    Detached,
    /// CLOSE sent or received.
    Closed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::AwaitingHello => "awaiting HELLO",
            State::AwaitingAccept => "awaiting the application's accept",
            State::Open => "open",
            State::Closing => "closing",
            State::Finishing => "finishing the peer's streams",
            State::Detached => "detached",
            State::Closed => "closed",
        }
    }
}

/// One end of a rhizomorph connection, without I/O (see the module docs).
#[derive(Debug)]
pub struct Session {
    role: Role,
    state: State,
    config: SessionConfig,
    peer: Settings,
    decoder: FrameDecoder,
    /// Byte-stream input ([`handle_bytes`](Self::handle_bytes)): a partial frame.
    stream_buf: BytesMut,
    /// Frames that leave before any message queued after them (HELLO, CREDIT, SCHEMA and CANCEL
    /// with batched framing, PING, GOAWAY, CLOSE).
    control: VecDeque<Frame>,
    /// A PONG to send, coalesced (§13.3).
    pong: Option<u64>,
    outgoing: [OutChannel; 4],
    incoming: [InChannel; 4],
    scheduler: ChannelScheduler,
    flow: FlowControl,
    streams: ChannelStreams,
    handshake: Handshake,
    shutdown: Shutdown,
    schemas: SchemaTables,
    keepalive: Keepalive,
    resume: Resumption,
    now: Instant,
    events: VecDeque<Event>,
    stats: SessionStats,
}

impl Session {
    /// A client session: its HELLO is queued at once.
    pub fn client(config: SessionConfig, now: Instant) -> Session {
        let mut s = Session::new(Role::Client, config, now);
        let mut hello = Hello::new(
            &s.config.settings,
            s.config.token.clone(),
            s.config.agent.clone(),
        );
        hello.versions = s.offered_versions();
        s.control.push_back(Frame::Hello(hello));
        s
    }

    /// A client and a server session that have finished the HELLO exchange in memory (the
    /// server accepting), for tests, benchmarks and in-process pipes.
    pub fn connected_pair(
        client: SessionConfig,
        server: SessionConfig,
        now: Instant,
    ) -> (Session, Session) {
        let mut a = Session::client(client, now);
        let mut b = Session::server(server, now);
        while !(a.is_open() && b.is_open()) {
            let mut moved = false;
            while let Some(x) = a.poll_transmit(now, Target::Batch, usize::MAX) {
                b.handle_batch(now, x.into_bytes());
                moved = true;
            }
            while let Some(e) = b.poll_event() {
                if let Event::HelloReceived { .. } = e {
                    b.accept(Bytes::new());
                }
            }
            while let Some(x) = b.poll_transmit(now, Target::Batch, usize::MAX) {
                a.handle_batch(now, x.into_bytes());
                moved = true;
            }
            while a.poll_event().is_some() {}
            if !moved {
                break; // a failed handshake: the caller sees sessions that are not open
            }
        }
        (a, b)
    }

    /// A server session: it waits for the client's HELLO.
    pub fn server(config: SessionConfig, now: Instant) -> Session {
        Session::new(Role::Server, config, now)
    }

    fn new(role: Role, config: SessionConfig, now: Instant) -> Session {
        let local = config.settings;
        let table = local.header_table_size as usize;
        let list = local.max_header_list_size;
        // spec: wire.md §8.3.1 — the connection's own reassembly budget, and the shared one.
        let budgets = budget::Budgets {
            connection: ReassemblyBudget::new(config.max_reassembly),
            shared: config.shared_reassembly.clone(),
        };
        Session {
            role,
            state: State::AwaitingHello,
            peer: Settings::default(),
            decoder: FrameDecoder::new(local),
            stream_buf: BytesMut::new(),
            control: VecDeque::new(),
            pong: None,
            outgoing: Channel::ALL.map(OutChannel::new),
            incoming: Channel::ALL.map(|c| {
                let window = local.initial_channel_window;
                InChannel::new(c, table, list, window, budgets.clone())
            }),
            scheduler: ChannelScheduler::default(),
            flow: FlowControl::new(&local, config.framing),
            streams: ChannelStreams::default(),
            handshake: Handshake::new(now, config.hello_timeout),
            shutdown: Shutdown::default(),
            schemas: SchemaTables::default(),
            keepalive: Keepalive::new(now, config.keepalive_interval, config.keepalive_timeout),
            resume: Resumption::new(),
            now,
            events: VecDeque::new(),
            stats: SessionStats::default(),
            config,
        }
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the HELLO exchange has finished and the connection is not closing.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection is over (CLOSE sent or received): the driver closes the
    /// transport once [`poll_transmit`](Self::poll_transmit) returns `None`.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The peer's settings (defaults until its HELLO arrives).
    pub fn peer_settings(&self) -> &Settings {
        &self.peer
    }

    /// This side's settings.
    pub fn local_settings(&self) -> &Settings {
        &self.config.settings
    }

    /// Counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The smoothed RTT, once a PING has been answered.
    pub fn rtt(&self) -> Option<Duration> {
        self.keepalive.srtt()
    }

    /// Payload bytes queued on `channel` and not yet sent (the sender's buffered memory).
    pub fn queued_bytes(&self, channel: Channel) -> u64 {
        self.outgoing[channel.index()].queued_bytes()
    }

    /// What the messages queued on `channel` cost against a send buffer: unsent payload bytes
    /// plus each message's header and a fixed overhead (so empty messages are bounded too).
    pub fn queued_charge(&self, channel: Channel) -> u64 {
        self.outgoing[channel.index()].queued_charge()
    }

    /// Bytes received on `channel` and not yet credited back: what the receiver holds.
    pub fn held_bytes(&self, channel: Channel) -> u64 {
        self.incoming[channel.index()].held_bytes()
    }

    /// Messages received and not yet released by the application, on all channels.
    pub fn held_messages(&self) -> u64 {
        self.incoming.iter().map(InChannel::held_messages).sum()
    }

    /// Whether the driver should read more from a single-stream transport (WebSocket): false
    /// while the application holds `max_held_messages` unreleased messages (wire.md §9.6.1), so
    /// a flood of tiny messages, which the windows (counting bytes) barely charge, is bounded
    /// in count too; the transport then pushes back on the peer. Always true once closed (what
    /// remains is read to see the end).
    pub fn wants_read(&self) -> bool {
        self.is_closed() || self.held_messages() < self.config.max_held_messages
    }

    /// Whether events are waiting for [`poll_event`](Self::poll_event).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---------------------------------------------------------------- input

    /// Handles one transport message holding whole frames (a WebSocket binary message,
    /// wire.md §16.2.1). Payloads are handed out as slices of `batch` (no copy).
    pub fn handle_batch(&mut self, now: Instant, mut batch: Bytes) {
        self.now = now;
        if matches!(self.state, State::Closed | State::Detached) {
            return;
        }
        self.keepalive.on_receive(now);
        while !batch.is_empty() {
            let frame = match self.decoder.decode_bytes(&mut batch) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    let e = crate::frame::FrameError::FrameTruncated {
                        frame_type: batch.first().copied().unwrap_or_default(),
                        field: "batch",
                    };
                    return self.fail(e.into());
                }
                Err(e) => return self.fail(e.into()),
            };
            if let Err(e) = self.on_frame(frame) {
                return self.fail(e);
            }
            if self.state == State::Closed {
                return;
            }
        }
    }

    /// Handles bytes from a byte stream (partial frames are buffered, wire.md §4.3.1).
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.now = now;
        if matches!(self.state, State::Closed | State::Detached) {
            return;
        }
        self.keepalive.on_receive(now);
        self.stream_buf.extend_from_slice(bytes);
        loop {
            match self.decoder.decode(&mut self.stream_buf) {
                Ok(Some(frame)) => {
                    if let Err(e) = self.on_frame(frame) {
                        return self.fail(e);
                    }
                    if self.state == State::Closed {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => return self.fail(e.into()),
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), SessionError> {
        trace!(frame = %frame, "recv");
        if self.state == State::Open && self.resume.unconfirmed.is_some() {
            // spec: wire.md §21.7 — the client's first frame after our resumed HELLO: it has
            // the new token.
            self.confirm_token();
        }
        let state = self.state;
        let unexpected = |frame: &'static str| SessionError::UnexpectedFrame {
            frame,
            state: state.name(),
        };
        match (frame, state) {
            (Frame::Padding { .. }, _) => Ok(()),
            // spec: wire.md §3.2.5 — before the peer's HELLO only PADDING, HELLO and CLOSE;
            // an ignorable type is no exception (no limits are announced yet to skip it under).
            (Frame::Ignored { .. }, State::AwaitingHello | State::AwaitingAccept) => {
                Err(unexpected("an ignorable frame before HELLO"))
            }
            (Frame::Ignored { .. }, _) => Ok(()),
            (Frame::Close(c), _) if self.must_finish_streams(&c) => {
                // spec: wire.md §17.6 — frames the peer sent before CLOSE may still be on its
                // channel streams: read them to their end first.
                self.control.clear();
                self.streams.frames.iter_mut().for_each(VecDeque::clear);
                self.pong = None;
                self.fail_all_queued(ErrorCode::CANCELLED);
                self.state = State::Finishing;
                let deadline = self.now + self.config.keepalive_timeout;
                self.streams.peer_close = Some((c, deadline));
                Ok(())
            }
            (Frame::Close(c), _) => {
                self.state = State::Closed;
                self.fail_all_queued(ErrorCode::CANCELLED);
                self.events.push_back(Event::Closed {
                    code: c.code,
                    reason: c.reason,
                    initiator: Initiator::Peer,
                });
                Ok(())
            }
            (Frame::Hello(h), State::AwaitingHello) => self.on_hello(h),
            (Frame::Hello(_), _) => Err(unexpected("a second HELLO")),
            (_, State::AwaitingHello) => Err(unexpected("a frame before HELLO")),
            (_, State::AwaitingAccept) => Err(unexpected("a frame before the server's HELLO")),
            (Frame::Message(m), _) => self.on_message(m),
            (Frame::Credit(c), _) => self.flow.on_credit(c),
            (Frame::Schema(s), _) => {
                self.schemas.bind_inbound(&s);
                self.events.push_back(Event::SchemaBound(s));
                Ok(())
            }
            (Frame::Ping(p), _) => {
                self.pong = Some(p.opaque); // §13.3: only the newest is answered
                Ok(())
            }
            (Frame::Pong(p), _) => {
                if let Some(rtt) = self.keepalive.on_pong(self.now, p.opaque) {
                    self.events.push_back(Event::Rtt { rtt });
                }
                Ok(())
            }
            (Frame::Cancel(c), _) => {
                self.on_cancel(c);
                Ok(())
            }
            (Frame::GoAway(g), _) => self.on_goaway(g),
            (Frame::Ack(a), _) => self.on_ack(a),
        }
    }

    fn on_message(&mut self, m: MessageFrame) -> Result<(), SessionError> {
        let ch = m.channel.index();
        let len = m.payload_len();
        self.flow.charge_received(m.channel, len)?;
        self.stats.bytes_received[ch] += m.data.len() as u64;
        let delivered = self.incoming[ch].on_frame(m, len)?;
        if let Some(sequence) = self.incoming[ch].take_over_budget() {
            // spec: wire.md §8.3.1, §5.7.2 — refused alone: the peer stops sending it.
            let (channel, code) = (Channel::ALL[ch], ErrorCode::LIMIT_EXCEEDED);
            self.control.push_back(Frame::Cancel(crate::frame::Cancel {
                channel,
                sequence,
                code,
                abort: false,
            }));
            self.events.push_back(Event::MessageRefused {
                channel,
                sequence,
                code,
            });
        }
        if let Some(mut msg) = delivered {
            if let PayloadEncoding::Rkyv { schema_id } = msg.encoding {
                msg.schema = self.schemas.inbound(msg.channel, schema_id).map(Box::new);
                // spec: wire.md §11.2.4 — SCHEMA_ERROR for this message, not the connection.
                if msg.schema.is_none() {
                    msg.error = Some(Box::new(crate::payload::PayloadError::UnknownSchemaId {
                        schema_id,
                    }));
                }
            }
            self.stats.messages_received[ch] += 1;
            self.events.push_back(Event::Message(msg));
        }
        self.collect_credit(ch);
        self.maybe_finish_drain();
        Ok(())
    }

    /// What channel `ch`'s receiver can credit now goes to the flow control (§9.3).
    fn collect_credit(&mut self, ch: usize) {
        let n = self.incoming[ch].take_creditable();
        self.flow.released(Channel::ALL[ch], n);
    }

    // ---------------------------------------------------------------- application calls

    /// Queues `message` on `channel`; returns its id on that channel (enqueue order; the wire
    /// sequence number, §5.3.8, is assigned when it starts). It leaves as credit and the
    /// scheduler allow (§7, §9). Messages queued before the HELLO exchange finishes wait. A
    /// message with a [`schema`](OutgoingMessage::schema) is bound first (§11.2.1): its SCHEMA
    /// frame, if new, leaves before it.
    pub fn send(
        &mut self,
        channel: Channel,
        mut message: OutgoingMessage,
    ) -> Result<u64, SendError> {
        match self.state {
            State::Closing | State::Finishing | State::Closed => return Err(SendError::Closed),
            _ if self.shutdown.peer_goaway.is_some() => return Err(SendError::GoingAway),
            _ => {}
        }
        self.check_outgoing(&message)?;
        if let Some(binding) = message.schema.take() {
            let schema_id = self.schema_id(channel, &binding)?;
            message.encoding = PayloadEncoding::Rkyv { schema_id };
        }
        Ok(self.outgoing[channel.index()].push(message))
    }

    /// Messages queued before the peer's HELLO were checked against default settings; those
    /// the peer's own settings forbid fail now ([`Event::SendFailed`]), instead of breaking the
    /// connection when they arrive (§5.3.2, §5.3.5) or waiting for ever (§9.5.1).
    fn recheck_queued(&mut self) {
        for ch in Channel::ALL {
            let refused: Vec<(u64, ErrorCode)> = self.outgoing[ch.index()]
                .unstarted()
                .filter_map(|(id, m)| {
                    let e = self.check_outgoing(m).err()?;
                    Some((id, e.code()))
                })
                .collect();
            for (id, code) in refused {
                if self.outgoing[ch.index()].remove_unstarted(id) {
                    debug!(channel = %ch, id, %code, "queued message refused by the peer's settings");
                    self.events.push_back(Event::SendFailed {
                        channel: ch,
                        id,
                        code,
                    });
                }
            }
        }
    }

    fn check_outgoing(&self, m: &OutgoingMessage) -> Result<(), SendError> {
        let len = m.payload.len() as u64;
        // spec: wire.md §5.3.3, §12.3.1 — the receiver checks Uncompressed Length too: a
        // compressed message the peer would refuse is refused here, not by a broken connection.
        let whole = match m.compression {
            Compression::Compressed {
                uncompressed_len, ..
            } => len.max(uncompressed_len),
            Compression::None => len,
        };
        if whole > self.peer.max_message_size {
            let len = whole;
            return Err(SendError::MessageTooLarge {
                len,
                max: self.peer.max_message_size,
            });
        }
        if m.header.len() > crate::header::MAX_HEADER_FIELDS {
            return Err(SendError::TooManyHeaderFields {
                count: m.header.len(),
            });
        }
        if let Some(f) = m
            .header
            .fields()
            .iter()
            .find(|f| f.name.is_empty() || f.name.len() > crate::header::MAX_NAME_LEN)
        {
            return Err(SendError::BadHeaderName { len: f.name.len() });
        }
        // spec: wire.md §8.1 — the header block must fit the first frame; an encoded block is
        // never longer than the list size (§6.5), and the other metadata takes ≤ 40 bytes.
        let size = m.header.list_size() as u64;
        let max = self.peer.max_header_list_size.min(
            self.peer
                .max_frame_payload
                .saturating_sub(FIRST_FRAME_METADATA),
        );
        if size > max {
            return Err(SendError::HeaderTooLarge { size, max });
        }
        // spec: wire.md §9.5.1 — a first frame that needs more credit than the peer's windows
        // ever hold would wait forever: the sender learns it now.
        let needed = size + FIRST_FRAME_METADATA + u64::from(len > 0);
        let window = self.flow.window_ceiling(&self.peer);
        if needed > window {
            return Err(SendError::WindowTooSmall { needed, window });
        }
        if let Compression::Compressed { codec, .. } = m.compression {
            if !self.peer.accepts_codec(codec) {
                return Err(SendError::CodecNotAccepted {
                    codec: codec.name(),
                });
            }
        }
        Ok(())
    }

    /// The application is done with `bytes` of messages received on `channel` (their `credit`):
    /// the credit goes back to the peer (§9.3).
    pub fn release(&mut self, channel: Channel, bytes: u64) {
        self.incoming[channel.index()].release(bytes);
        self.collect_credit(channel.index());
    }

    // ---------------------------------------------------------------- time

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed | State::Closing => None,
            State::Detached => self.detached_deadline(),
            State::Finishing => self.streams.peer_close.as_ref().map(|(_, t)| *t),
            State::AwaitingHello | State::AwaitingAccept => Some(self.handshake.deadline),
            State::Open => Some(self.keepalive.next_deadline()),
        }
    }

    /// Advances timers: HELLO timeout, keepalive PING, dead peer (§13, §18).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match self.state {
            State::AwaitingHello if self.is_resuming() && now >= self.handshake.deadline => {
                self.resume_hello_timed_out();
            }
            State::AwaitingHello | State::AwaitingAccept => {
                if now >= self.handshake.deadline {
                    self.fail(SessionError::Timeout {
                        what: "HELLO exchange not finished",
                    });
                }
            }
            State::Open => {
                if self.keepalive.expired(now) && self.detach(now) {
                    // spec: wire.md §21.5 — a silent peer detaches a resumable session.
                } else if self.keepalive.expired(now) {
                    self.fail(SessionError::Timeout {
                        what: "peer silent past the keepalive timeout",
                    });
                } else if let Some(opaque) = self.keepalive.poll_ping(now) {
                    self.control.push_back(Frame::Ping(Ping { opaque }));
                }
            }
            State::Finishing => {
                if self
                    .streams
                    .peer_close
                    .as_ref()
                    .is_some_and(|(_, t)| now >= *t)
                {
                    warn!("the peer's streams did not end after its CLOSE; giving up on them");
                    self.finish_peer_close();
                }
            }
            State::Detached => {
                if self.detached_deadline().is_some_and(|t| now >= t) {
                    self.abandon(
                        crate::frame::ResumeStatus::Expired,
                        "not resumed within the resume timeout (wire.md §21.5)",
                    );
                }
            }
            State::Closing | State::Closed => {}
        }
    }

    /// Sends a PING now to measure the RTT (answered by [`Event::Rtt`]).
    pub fn ping(&mut self, now: Instant) {
        if self.state == State::Open {
            if let Some(opaque) = self.keepalive.force_ping(now) {
                self.control.push_back(Frame::Ping(Ping { opaque }));
            }
        }
    }
}
