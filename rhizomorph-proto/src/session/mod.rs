//! The sans-IO multiplexing session (wire.md §3, §7–§10, §13, §14).
//!
//! A [`Session`] is one end of a connection as a value: received bytes go in
//! ([`Session::handle_batch`], [`Session::handle_bytes`]), bytes to send come out
//! ([`Session::poll_transmit`]), and so do events ([`Session::poll_event`]); time is passed in
//! (`Instant`s, a virtual clock in tests). It owns the HELLO exchange, the four channels and
//! their scheduling, chunking and reassembly, flow-control credit, the header tables,
//! keepalive, CANCEL, GOAWAY and CLOSE.
//!
//! It must never do I/O, spawn tasks, read the clock, or hold more than its windows and the
//! application's queued messages allow.

mod error;
mod incoming;
mod keepalive;
mod outgoing;
mod scheduler;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::{debug, trace, warn};

pub use error::{SendError, SessionError};
pub use incoming::IncomingMessage;
pub use keepalive::Keepalive;
pub use outgoing::OutgoingMessage;
pub use scheduler::ChannelScheduler;

use crate::frame::{
    Cancel, Channel, Close, Compression, Credit, CreditTarget, ErrorCode, Frame, FrameDecoder,
    GoAway, Hello, MessageFrame, PayloadEncoding, Ping, SchemaFrame, Settings, MAX_WINDOW,
    WIRE_VERSION_1_0,
};
use incoming::InChannel;
use outgoing::OutChannel;

/// Which side of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opened the connection; speaks first (wire.md §3.2.1).
    Client,
    /// Accepted it; answers the client's HELLO.
    Server,
}

/// How frames map onto the transport (wire.md §16, §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// One ordered sequence of batches carries every frame (WebSocket, §16): the session
    /// schedules the channels and runs CREDIT flow control (§7, §9).
    #[default]
    Batched,
    /// One ordered byte stream per channel (QUIC, §17): [`Session::poll_transmit_channel`] and
    /// [`Session::handle_stream`]. The transport prioritizes the streams and runs flow control
    /// (§17.4, §17.5); CREDIT frames are neither sent nor accepted.
    PerChannelStreams,
}

/// Session configuration: local settings and local policy. Build with the `with_*` methods.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// What this side accepts (announced in HELLO, enforced on receive).
    pub settings: Settings,
    /// Largest chunk of payload per MESSAGE frame this side sends (also bounded by the peer's
    /// `MAX_FRAME_PAYLOAD`). Smaller chunks let higher channels through sooner (§7.5).
    pub chunk_size: u64,
    /// Largest batch [`Session::poll_transmit`] returns (also bounded by the peer's
    /// `MAX_BATCH_SIZE`). 64 KiB by default: a driver that hands every batch to its transport
    /// as it comes delays a higher channel's frame by at most that. A driver that watches its
    /// transport can allow more and ask for less: rhizomorph's WebSocket driver
    /// (`Config::default()` sets 256 KiB here) starts each burst at 64 KiB, uses 16 KiB while
    /// the transport makes it wait, and grows towards this while it does not.
    pub max_batch: usize,
    /// Most MESSAGE frames in one batch. A batch is work handed to the peer at once; capping
    /// it keeps several batches in flight, so both ends work in parallel instead of taking
    /// turns (measured with `rhizomorph bench --scenario small`: 256 B messages, 64 in flight,
    /// 32 frames per batch gave ~1.5x the round trips of uncapped batches). Large chunks hit
    /// `max_batch` first.
    pub max_batch_frames: usize,
    /// PING after this much silence (§13.1).
    pub keepalive_interval: Duration,
    /// Give up after this much silence (§13.1).
    pub keepalive_timeout: Duration,
    /// Give up if the HELLO exchange has not finished by then (§18).
    pub hello_timeout: Duration,
    /// The client's auth token (§3.2.7).
    pub token: Bytes,
    /// The agent string sent in HELLO.
    pub agent: String,
    /// How frames map onto the transport (set by the transport's driver).
    pub framing: Framing,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            settings: Settings::default(),
            chunk_size: 16 * 1024,
            max_batch: 64 * 1024,
            max_batch_frames: 32,
            keepalive_interval: Duration::from_secs(15),
            keepalive_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            token: Bytes::new(),
            agent: concat!("rhizomorph/", env!("CARGO_PKG_VERSION")).to_string(),
            framing: Framing::Batched,
        }
    }
}

impl SessionConfig {
    /// Returns the config with these local settings.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }
    /// Returns the config with this chunk size.
    pub fn with_chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }
    /// Returns the config with this batch size.
    pub fn with_max_batch(mut self, bytes: usize) -> Self {
        self.max_batch = bytes.max(1);
        self
    }
    /// Returns the config with this auth token.
    pub fn with_token(mut self, token: impl Into<Bytes>) -> Self {
        self.token = token.into();
        self
    }
    /// Returns the config with these keepalive timings.
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
        self
    }
    /// Returns the config with this framing.
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }
}

/// Over QUIC the session's own credit never runs out: QUIC's stream windows stop the sender
/// instead (wire.md §17.5). 2^62 bytes is beyond any connection's lifetime.
const UNLIMITED_WINDOW: u64 = 1 << 62;

/// The most a first MESSAGE frame carries besides its header block and data (wire.md §8.1).
const FIRST_FRAME_METADATA: u64 = 40;

/// What a receiver's window must hold beyond `MAX_HEADER_LIST_SIZE` for a sender to make
/// progress (wire.md §9.5): a first frame's other metadata and 1 KiB of data, rounded up.
const PROGRESS_MARGIN: u64 = 1088;
const _: () = assert!(PROGRESS_MARGIN >= FIRST_FRAME_METADATA + outgoing::MIN_CHUNK);

/// Who ended the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// This side sent CLOSE (or detected an error).
    Local,
    /// The peer sent CLOSE.
    Peer,
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Server only: the client's HELLO arrived; call [`Session::accept`] or [`Session::reject`].
    HelloReceived {
        /// The client's auth token.
        token: Bytes,
        /// The client's agent string.
        agent: String,
    },
    /// The HELLO exchange finished: messages flow.
    Connected {
        /// The negotiated wire version.
        version: u64,
        /// The peer's settings.
        peer_settings: Settings,
        /// The peer's HELLO token (server: its reply token; client side sees the server's).
        token: Bytes,
        /// The peer's agent.
        agent: String,
    },
    /// A message arrived whole. Call [`Session::release`] with its `credit` when done.
    Message(IncomingMessage),
    /// The peer abandoned a message it was sending us (§5.7.1).
    MessageAborted {
        /// Channel.
        channel: Channel,
        /// Its sequence number.
        sequence: u64,
        /// The peer's reason.
        code: ErrorCode,
    },
    /// A message we queued will not be delivered (refused by GOAWAY, cancelled, closed).
    SendFailed {
        /// Channel.
        channel: Channel,
        /// The id [`Session::send`] returned for it.
        id: u64,
        /// Why.
        code: ErrorCode,
    },
    /// A SCHEMA binding arrived for a channel (§11.2).
    SchemaBound(SchemaFrame),
    /// A PONG answered our PING.
    Rtt {
        /// The measured round trip.
        rtt: Duration,
    },
    /// The peer is draining (§14.1): no new messages from us.
    GoAway {
        /// Its code.
        code: ErrorCode,
        /// Its reason.
        reason: String,
    },
    /// The connection is over. Nothing more will be sent or received.
    Closed {
        /// The CLOSE code.
        code: ErrorCode,
        /// The CLOSE reason.
        reason: String,
        /// Who closed.
        initiator: Initiator,
    },
}

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
            State::Closed => "closed",
        }
    }
}

/// Counters a user can read (bytes per channel, batching, stalls).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// MESSAGE payload bytes sent, per channel.
    pub bytes_sent: [u64; 4],
    /// MESSAGE payload bytes received, per channel.
    pub bytes_received: [u64; 4],
    /// Messages sent, per channel.
    pub messages_sent: [u64; 4],
    /// Messages received, per channel.
    pub messages_received: [u64; 4],
    /// Frames sent.
    pub frames_sent: u64,
    /// Batches (transport writes) sent.
    pub batches_sent: u64,
    /// Times a channel had data queued but no credit when a batch was built.
    pub credit_stalls: u64,
}

/// Where in-place payloads start in a batch (wire.md §11.1).
const ALIGN: usize = 16;

/// Frames encoded for one transport write.
#[derive(Default)]
struct Batch {
    /// Encoded bytes not yet moved to `segments`.
    buf: BytesMut,
    /// What `buf` reserves when the first frame arrives (a poll that finds nothing to send
    /// allocates nothing).
    capacity: usize,
    /// Vectored batches: what precedes `buf`, in order (encoded heads and payload views).
    segments: Vec<Bytes>,
    segments_len: usize,
    /// Whether large chunk payloads stay views of the message instead of being copied.
    vectored: bool,
    frames: u64,
}

/// Chunk payloads at least this long stay views of their message in a vectored batch (a
/// shorter one is cheaper to copy than to give its own I/O segment).
const VECTORED_MIN: usize = 2048;

impl Batch {
    /// A batch expected to hold `bytes`. A vectored one holds heads and small frames only (large
    /// payloads stay where they are), so it reserves at most 4 KiB.
    fn with_capacity(bytes: usize, vectored: bool) -> Self {
        let bytes = if vectored { bytes.min(4096) } else { bytes };
        Batch {
            buf: BytesMut::new(),
            capacity: bytes,
            segments: Vec::new(),
            segments_len: 0,
            vectored,
            frames: 0,
        }
    }

    /// Bytes in the batch so far.
    fn len(&self) -> usize {
        self.segments_len + self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_segment(&mut self, b: Bytes) {
        self.segments_len += b.len();
        self.segments.push(b);
    }

    /// The batch as segments to write in order (one, unless vectored).
    fn into_segments(mut self) -> Vec<Bytes> {
        if !self.buf.is_empty() {
            // Taken, not split: a buffer never split becomes `Bytes` without a new allocation.
            let rest = std::mem::take(&mut self.buf).freeze();
            self.push_segment(rest);
        }
        self.segments
    }

    fn push(&mut self, frame: &Frame) {
        trace!(frame = %frame, "send");
        if self.frames == 0 {
            self.buf.reserve(self.capacity);
        }
        if let Frame::Message(m) = frame {
            if self.vectored && m.data.len() >= VECTORED_MIN {
                // The head is encoded here; the payload is the message's own bytes.
                match m.encode_head(&mut self.buf) {
                    Ok(()) => {
                        let head = self.buf.split().freeze();
                        self.push_segment(head);
                        self.push_segment(m.data.clone());
                    }
                    Err(e) => warn!(error = %e, "dropping a frame that does not encode"),
                }
                self.frames += 1;
                return;
            }
        }
        // Only frames this session built are queued; they are within every bound.
        if let Err(e) = frame.encode(&mut self.buf) {
            warn!(error = %e, "dropping a frame that does not encode");
        }
        self.frames += 1;
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
    stream_buf: BytesMut,
    /// Per-channel streams only: received bytes per channel stream, not yet decoded.
    channel_bufs: [BytesMut; 4],
    /// Per-channel streams only: SCHEMA and CANCEL-with-ABORT frames that travel on their
    /// channel's stream (§17.3).
    channel_frames: [VecDeque<Frame>; 4],
    control: VecDeque<Frame>,
    /// A PONG to send, coalesced (§13.3).
    pong: Option<u64>,
    outgoing: [OutChannel; 4],
    incoming: [InChannel; 4],
    scheduler: ChannelScheduler,
    /// Credit the peer granted on the connection (§9.1).
    send_window: u64,
    /// Credit we granted the peer on the connection, left.
    recv_window: u64,
    /// Per channel, credit we granted, left.
    recv_channel_window: [u64; 4],
    /// Connection bytes creditable now.
    conn_creditable: u64,
    /// Per channel, bytes creditable now.
    pending_channel_credit: [u64; 4],
    keepalive: Keepalive,
    created: Instant,
    now: Instant,
    events: VecDeque<Event>,
    /// We sent GOAWAY: drain, then CLOSE.
    draining: bool,
    /// The peer's GOAWAY accepted counts.
    peer_goaway: Option<[u64; 4]>,
    /// Per channel, the peer's schema bindings by id (§11.2); ids are below our
    /// `SCHEMA_CACHE_SIZE` (checked by the decoder), which bounds each table.
    schemas_in: [std::collections::HashMap<u64, crate::payload::SchemaBinding>; 4],
    /// Per channel, our bindings: (name, layout hash) to id; ids are never reused.
    schemas_out: [std::collections::HashMap<(String, u64), u64>; 4],
    /// Per-channel streams: which of the peer's streams have ended (FIN), §17.6.
    peer_stream_ended: [bool; 4],
    /// Per-channel streams: the peer's CLOSE while its streams finish, with the deadline.
    peer_close: Option<(Close, Instant)>,
    /// Server: the client's HELLO token and agent, until the application accepts.
    client_hello: Option<(Bytes, String)>,
    stats: SessionStats,
}

impl Session {
    /// A client session: its HELLO is queued at once.
    pub fn client(config: SessionConfig, now: Instant) -> Session {
        let mut s = Session::new(Role::Client, config, now);
        let hello = Hello::new(
            &s.config.settings,
            s.config.token.clone(),
            s.config.agent.clone(),
        );
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
            while let Some(x) = a.poll_transmit(now) {
                b.handle_batch(now, x);
                moved = true;
            }
            while let Some(e) = b.poll_event() {
                if let Event::HelloReceived { .. } = e {
                    b.accept(Bytes::new());
                }
            }
            while let Some(x) = b.poll_transmit(now) {
                a.handle_batch(now, x);
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
        Session {
            role,
            state: State::AwaitingHello,
            peer: Settings::default(),
            decoder: FrameDecoder::new(local),
            stream_buf: BytesMut::new(),
            channel_bufs: Default::default(),
            channel_frames: Default::default(),
            control: VecDeque::new(),
            pong: None,
            outgoing: Channel::ALL.map(OutChannel::new),
            incoming: Channel::ALL
                .map(|c| InChannel::new(c, table, list, local.initial_channel_window)),
            scheduler: ChannelScheduler::default(),
            send_window: 0,
            recv_window: local.initial_connection_window,
            recv_channel_window: [local.initial_channel_window; 4],
            conn_creditable: 0,
            pending_channel_credit: [0; 4],
            keepalive: Keepalive::new(now, config.keepalive_interval, config.keepalive_timeout),
            created: now,
            now,
            events: VecDeque::new(),
            draining: false,
            peer_goaway: None,
            schemas_in: Default::default(),
            schemas_out: Default::default(),
            peer_stream_ended: [false; 4],
            peer_close: None,
            client_hello: None,
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

    /// Bytes received on `channel` and not yet credited back: what the receiver holds.
    pub fn held_bytes(&self, channel: Channel) -> u64 {
        self.incoming[channel.index()].held_bytes()
    }

    /// Whether frames other than queued messages wait to be sent (a PONG, CREDIT due, a
    /// control frame, a SCHEMA or CANCEL on a channel stream): after handling input, the
    /// driver needs to write only if this is true (messages are queued by `send`).
    pub fn wants_transmit(&self) -> bool {
        self.pong.is_some()
            || !self.control.is_empty()
            || self.channel_frames.iter().any(|f| !f.is_empty())
            || self.credit_due()
    }

    /// Per-channel streams: whether [`poll_transmit_channel`](Self::poll_transmit_channel)
    /// would return bytes for `channel` now.
    pub fn has_channel_output(&self, channel: Channel) -> bool {
        let i = channel.index();
        if self.state == State::Closed {
            return false;
        }
        !self.channel_frames[i].is_empty()
            || (channel == Channel::Control && (self.pong.is_some() || !self.control.is_empty()))
            // With per-channel streams the session's credit never runs out (§17.5).
            || (self.state == State::Open && !self.outgoing[i].is_idle())
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
        if self.state == State::Closed {
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
        if self.state == State::Closed {
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

    /// Per-channel streams (wire.md §17.2): handles bytes received on the peer's stream for
    /// `channel`, after the stream's channel-id preamble. Whole frames are decoded straight
    /// from `bytes` (payloads stay slices of it); a partial frame waits for more. Channel
    /// streams wait for the HELLO exchange, since QUIC may deliver them before the control
    /// stream. The driver reads a stream only while [`can_read`](Self::can_read) allows.
    pub fn handle_stream(&mut self, now: Instant, channel: Channel, mut bytes: Bytes) {
        self.now = now;
        if self.state == State::Closed {
            return;
        }
        self.keepalive.on_receive(now);
        let i = channel.index();
        if let Err(e) = self.check_stream_timing(channel) {
            return self.fail(e);
        }
        let was_open = self.state == State::Open;
        if self.channel_bufs[i].is_empty() && self.stream_decodable(channel) {
            loop {
                match self.decoder.decode_bytes(&mut bytes) {
                    Ok(Some(frame)) => {
                        if !self.on_stream_frame(channel, frame) {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return self.fail(e.into()),
                }
            }
        }
        if !bytes.is_empty() {
            self.channel_bufs[i].extend_from_slice(&bytes);
            self.decode_stream(channel);
        }
        if !was_open && self.state == State::Open {
            // The HELLO exchange just finished: frames that arrived early on other streams.
            for ch in [Channel::Rpc, Channel::Stream, Channel::Bulk] {
                self.decode_stream(ch);
            }
        }
    }

    /// Per-channel streams: whether the driver should read more of the peer's stream for
    /// `channel`. The session holds at most the local windows (bytes received and not yet
    /// released, plus undecoded bytes) and one read beyond; while the driver does not read,
    /// QUIC's flow control stops the peer (§17.5).
    pub fn can_read(&self, channel: Channel) -> bool {
        let s = &self.config.settings;
        let held = |i: usize| self.incoming[i].held_bytes() + self.channel_bufs[i].len() as u64;
        held(channel.index()) < s.initial_channel_window
            && (0..4).map(held).sum::<u64>() < s.initial_connection_window
    }

    /// Per-channel streams: the peer's stream for `channel` ended (FIN). Once all of them have
    /// after a graceful CLOSE, the connection is over (§17.6).
    pub fn handle_stream_end(&mut self, now: Instant, channel: Channel) {
        self.now = now;
        self.peer_stream_ended[channel.index()] = true;
        if self.state == State::Finishing && self.peer_stream_ended.iter().all(|&e| e) {
            self.finish_peer_close();
        }
    }

    fn must_finish_streams(&self, close: &Close) -> bool {
        self.config.framing == Framing::PerChannelStreams
            && close.code == ErrorCode::NO_ERROR
            && self.state == State::Open
            && !self.peer_stream_ended.iter().all(|&e| e)
    }

    fn finish_peer_close(&mut self) {
        if let Some((c, _)) = self.peer_close.take() {
            self.state = State::Closed;
            self.events.push_back(Event::Closed {
                code: c.code,
                reason: c.reason,
                initiator: Initiator::Peer,
            });
        }
    }

    fn stream_decodable(&self, stream: Channel) -> bool {
        // spec: wire.md §17.2.2 — HELLO comes first on the control stream; frames on other
        // streams are read once the exchange is over.
        stream == Channel::Control
            || matches!(self.state, State::Open | State::Closing | State::Finishing)
    }

    fn check_stream_timing(&self, stream: Channel) -> Result<(), SessionError> {
        // A client opens channel streams only after the server's HELLO (§17.2.2); a server
        // that has not sent it yet cannot be receiving them.
        let early = self.role == Role::Server
            && stream != Channel::Control
            && matches!(self.state, State::AwaitingHello | State::AwaitingAccept);
        if early {
            return Err(SessionError::UnexpectedFrame {
                frame: "a channel stream",
                state: self.state.name(),
            });
        }
        Ok(())
    }

    fn decode_stream(&mut self, stream: Channel) {
        if !self.stream_decodable(stream) {
            return;
        }
        loop {
            match self.decoder.decode(&mut self.channel_bufs[stream.index()]) {
                Ok(Some(frame)) => {
                    if !self.on_stream_frame(stream, frame) {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => return self.fail(e.into()),
            }
        }
    }

    /// Handles one frame from `stream`; false when the connection ended.
    fn on_stream_frame(&mut self, stream: Channel, frame: Frame) -> bool {
        let r = Self::check_stream(stream, &frame).and_then(|()| self.on_frame(frame));
        if let Err(e) = r {
            self.fail(e);
            return false;
        }
        self.state != State::Closed
    }

    /// spec: wire.md §17.3 — MESSAGE, SCHEMA and CANCEL-with-ABORT travel on their channel's
    /// stream; every other frame on the control stream; CREDIT nowhere.
    fn check_stream(stream: Channel, frame: &Frame) -> Result<(), SessionError> {
        let home = match frame {
            Frame::Padding { .. } | Frame::Ignored { .. } => return Ok(()),
            Frame::Credit(_) => None,
            Frame::Message(m) => Some(m.channel),
            Frame::Schema(s) => Some(s.channel),
            Frame::Cancel(c) if c.abort => Some(c.channel),
            _ => Some(Channel::Control),
        };
        if home == Some(stream) {
            Ok(())
        } else {
            Err(SessionError::WrongStream {
                frame: crate::frame::FrameType::name(frame.frame_type()),
                stream,
            })
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), SessionError> {
        trace!(frame = %frame, "recv");
        let state = self.state;
        let unexpected = |frame: &'static str| SessionError::UnexpectedFrame {
            frame,
            state: state.name(),
        };
        match (frame, state) {
            (Frame::Padding { .. } | Frame::Ignored { .. }, _) => Ok(()),
            (Frame::Close(c), _) if self.must_finish_streams(&c) => {
                // spec: wire.md §17.6 — frames the peer sent before CLOSE may still be on its
                // channel streams: read them to their end first.
                self.control.clear();
                self.channel_frames.iter_mut().for_each(VecDeque::clear);
                self.pong = None;
                self.fail_all_queued(ErrorCode::CANCELLED);
                self.state = State::Finishing;
                let deadline = self.now + self.config.keepalive_timeout;
                self.peer_close = Some((c, deadline));
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
            (Frame::Credit(c), _) => self.on_credit(c),
            (Frame::Schema(s), _) => {
                // spec: wire.md §11.2.4 — rebinding an id replaces the binding.
                self.schemas_in[s.channel.index()].insert(s.schema_id, (&s).into());
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
        }
    }

    fn on_hello(&mut self, hello: Hello) -> Result<(), SessionError> {
        // Settings were validated by the decoder; resolving cannot fail here.
        let peer = hello.resolved_settings()?;
        let supported = vec![WIRE_VERSION_1_0];
        match self.role {
            Role::Server => {
                // spec: wire.md §3.2.2 — pick the highest version both support.
                if !hello.versions.contains(&WIRE_VERSION_1_0) {
                    return Err(SessionError::VersionMismatch {
                        offered: hello.versions,
                        supported,
                    });
                }
                self.peer = peer;
                self.state = State::AwaitingAccept;
                self.events.push_back(Event::HelloReceived {
                    token: hello.token,
                    agent: hello.agent,
                });
            }
            Role::Client => {
                // spec: wire.md §3.2.3 — exactly one version, one we offered.
                if hello.versions != supported {
                    return Err(SessionError::VersionMismatch {
                        offered: hello.versions,
                        supported,
                    });
                }
                self.peer = peer;
                self.open(hello.token, hello.agent);
            }
        }
        Ok(())
    }

    fn open(&mut self, token: Bytes, agent: String) {
        self.state = State::Open;
        let (conn, channel) = match self.config.framing {
            Framing::Batched => (
                self.peer.initial_connection_window,
                self.peer.initial_channel_window,
            ),
            Framing::PerChannelStreams => (UNLIMITED_WINDOW, UNLIMITED_WINDOW),
        };
        self.send_window = conn;
        for out in &mut self.outgoing {
            out.configure(channel, self.peer.header_table_size as usize);
        }
        self.recheck_queued();
        debug!(role = ?self.role, peer_agent = %agent, "connected");
        self.events.push_back(Event::Connected {
            version: WIRE_VERSION_1_0,
            peer_settings: self.peer,
            token,
            agent,
        });
    }

    /// Server: accepts the client (after [`Event::HelloReceived`]) and sends its HELLO with
    /// `token` (empty, or e.g. a reconnection token).
    pub fn accept(&mut self, token: Bytes) {
        if self.state != State::AwaitingAccept {
            return;
        }
        let mut hello = Hello::new(&self.config.settings, token, self.config.agent.clone());
        hello.versions = vec![WIRE_VERSION_1_0];
        self.control.push_back(Frame::Hello(hello));
        let (token, agent) = self.client_hello.take().unwrap_or_default();
        self.open(token, agent);
    }

    /// Server: refuses the client (e.g. `AUTH_FAILED`, §3.2.7).
    pub fn reject(&mut self, code: ErrorCode, reason: &str) {
        self.close(code, reason);
    }

    fn on_message(&mut self, m: MessageFrame) -> Result<(), SessionError> {
        let ch = m.channel.index();
        let len = m.payload_len();
        if self.config.framing == Framing::Batched {
            self.charge_windows(m.channel, len)?;
        }
        self.stats.bytes_received[ch] += m.data.len() as u64;
        if let Some(mut msg) = self.incoming[ch].on_frame(m, len)? {
            if let PayloadEncoding::Rkyv { schema_id } = msg.encoding {
                msg.schema = self.schemas_in[ch].get(&schema_id).cloned();
            }
            self.stats.messages_received[ch] += 1;
            self.events.push_back(Event::Message(msg));
        }
        self.collect_credit(ch);
        self.maybe_finish_drain();
        Ok(())
    }

    /// spec: wire.md §9.2 — more than the window allows is FLOW_CONTROL_ERROR.
    fn charge_windows(&mut self, channel: Channel, len: u64) -> Result<(), SessionError> {
        let ch = channel.index();
        if len > self.recv_channel_window[ch] {
            return Err(SessionError::WindowExceeded {
                target: channel.name(),
                len,
                window: self.recv_channel_window[ch],
            });
        }
        if len > self.recv_window {
            return Err(SessionError::WindowExceeded {
                target: "connection",
                len,
                window: self.recv_window,
            });
        }
        self.recv_channel_window[ch] -= len;
        self.recv_window -= len;
        Ok(())
    }

    fn on_credit(&mut self, c: Credit) -> Result<(), SessionError> {
        if self.config.framing == Framing::PerChannelStreams {
            // spec: wire.md §17.5 — QUIC's flow control replaces CREDIT.
            return Err(SessionError::WrongStream {
                frame: "CREDIT",
                stream: Channel::Control,
            });
        }
        let (window, target) = match c.target {
            CreditTarget::Connection => (&mut self.send_window, "connection"),
            CreditTarget::Channel(ch) => (&mut self.outgoing[ch.index()].window, ch.name()),
        };
        // spec: wire.md §9.7 — a window over 2^32 − 1 is FLOW_CONTROL_ERROR.
        if *window + c.increment > MAX_WINDOW {
            return Err(SessionError::WindowOverflow {
                target,
                window: *window,
                increment: c.increment,
            });
        }
        *window += c.increment;
        Ok(())
    }

    fn on_cancel(&mut self, c: Cancel) {
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

    fn on_goaway(&mut self, g: GoAway) -> Result<(), SessionError> {
        if let Some(prev) = self.peer_goaway {
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
        self.peer_goaway = Some(g.accepted);
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

    // ---------------------------------------------------------------- application calls

    /// Queues `message` on `channel`; returns its id on that channel (enqueue order; the wire
    /// sequence number, §5.3.8, is assigned when it starts). It leaves as credit and the
    /// scheduler allow (§7, §9). Messages queued before the HELLO exchange finishes wait.
    pub fn send(&mut self, channel: Channel, message: OutgoingMessage) -> Result<u64, SendError> {
        match self.state {
            State::Closing | State::Finishing | State::Closed => return Err(SendError::Closed),
            _ if self.peer_goaway.is_some() => return Err(SendError::GoingAway),
            _ => {}
        }
        self.check_outgoing(&message)?;
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
        if len > self.peer.max_message_size {
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
        let window = self.window_ceiling();
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

    /// The Schema Id for `binding` on `channel` (§11.2.1): the one bound before, or a new one
    /// whose SCHEMA frame is queued now, ahead of any message sent after this call.
    pub fn schema_id(
        &mut self,
        channel: Channel,
        binding: &crate::payload::SchemaBinding,
    ) -> Result<u64, SendError> {
        let table = &mut self.schemas_out[channel.index()];
        if let Some(&id) = table.get(&(binding.name.clone(), binding.layout_hash)) {
            return Ok(id);
        }
        let id = table.len() as u64;
        let max = self.peer.schema_cache_size;
        if id >= max {
            return Err(SendError::SchemaCacheFull { max });
        }
        table.insert((binding.name.clone(), binding.layout_hash), id);
        self.bind_schema(SchemaFrame {
            channel,
            schema_id: id,
            layout_hash: binding.layout_hash,
            name: binding.name.clone(),
        });
        Ok(id)
    }

    /// Queues a SCHEMA binding on `channel` (§11.2); it leaves before any later message.
    pub fn bind_schema(&mut self, schema: SchemaFrame) {
        self.queue_on_channel(schema.channel, Frame::Schema(schema));
    }

    /// Queues a frame that is ordered with `channel`'s messages (SCHEMA, CANCEL with ABORT):
    /// on that channel's stream with per-channel streams (§17.3), with the control frames
    /// otherwise (they leave before any later message).
    fn queue_on_channel(&mut self, channel: Channel, frame: Frame) {
        match self.config.framing {
            Framing::PerChannelStreams if channel != Channel::Control => {
                self.channel_frames[channel.index()].push_back(frame)
            }
            _ => self.control.push_back(frame),
        }
    }

    /// The application is done with `bytes` of messages received on `channel` (their `credit`):
    /// the credit goes back to the peer (§9.3).
    pub fn release(&mut self, channel: Channel, bytes: u64) {
        self.incoming[channel.index()].release(bytes);
        self.collect_credit(channel.index());
    }

    /// Cancels our message `id` (as [`send`](Self::send) returned it) on `channel` (§5.7.1):
    /// dropped if not started, aborted if in progress, nothing if already sent.
    pub fn cancel(&mut self, channel: Channel, id: u64) {
        self.cancel_outgoing(channel, id, ErrorCode::CANCELLED);
    }

    fn cancel_outgoing(&mut self, channel: Channel, id: u64, code: ErrorCode) {
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
        if self.state != State::Open || self.draining {
            return;
        }
        self.draining = true;
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
        self.control.clear();
        for frames in &mut self.channel_frames {
            frames.clear();
        }
        self.pong = None;
        self.control
            .push_back(Frame::Close(Close::new(code, reason)));
        self.state = State::Closing;
        self.fail_all_queued(ErrorCode::CANCELLED);
    }

    fn fail(&mut self, e: SessionError) {
        warn!(error = %e, code = %e.code(), "connection error");
        self.close(e.code(), &e.to_string());
    }

    fn fail_all_queued(&mut self, code: ErrorCode) {
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

    fn maybe_finish_drain(&mut self) {
        // spec: wire.md §14.1.4 — CLOSE once nothing is left to send and no accepted message
        // is incomplete.
        if self.draining
            && self.state == State::Open
            && self.outgoing.iter().all(OutChannel::is_idle)
            && !self.incoming.iter().any(InChannel::has_accepted_partial)
        {
            self.close(ErrorCode::NO_ERROR, "drained");
        }
    }

    fn collect_credit(&mut self, ch: usize) {
        let n = self.incoming[ch].take_creditable();
        if n == 0 || self.config.framing == Framing::PerChannelStreams {
            return; // over QUIC, reading the stream is the credit (§17.5)
        }
        self.pending_channel_credit[ch] += n;
        self.conn_creditable += n;
    }

    // ---------------------------------------------------------------- output

    /// The next batch of frames to send, at most the batch size, or `None` if nothing is ready.
    ///
    /// spec: wire.md §10 — everything ready now leaves in one write; nothing waits for more.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        self.poll_transmit_limited(now, usize::MAX)
    }

    /// Like [`poll_transmit`](Self::poll_transmit) with a smaller batch limit, for a driver that
    /// sees its transport back up (a congested link wants small writes, so that a higher
    /// channel's frame never waits behind a large batch already handed to the socket).
    pub fn poll_transmit_limited(&mut self, now: Instant, max_batch: usize) -> Option<Bytes> {
        let batch = self.transmit(now, max_batch, false)?;
        Some(batch.buf.freeze())
    }

    /// Like [`poll_transmit_limited`](Self::poll_transmit_limited), as segments to write in
    /// order (`writev`): chunk payloads of 2 KiB or more are views of the message being sent,
    /// not copies. The concatenated segments are exactly the bytes `poll_transmit_limited`
    /// would return.
    pub fn poll_transmit_vectored(&mut self, now: Instant, max_batch: usize) -> Option<Vec<Bytes>> {
        Some(self.transmit(now, max_batch, true)?.into_segments())
    }

    fn transmit(&mut self, now: Instant, max_batch: usize, vectored: bool) -> Option<Batch> {
        self.now = now;
        if self.state == State::Closed {
            return None;
        }
        let limit = self.batch_limit(max_batch);
        let mut batch = Batch::with_capacity(self.batch_capacity(None, limit), vectored);
        // Frames other than CREDIT that this batch will carry (a message may still be held
        // back by the peer's credit; the batch then carries only CREDIT, which is harmless).
        let carries = self.pong.is_some()
            || !self.control.is_empty()
            || self.outgoing.iter().any(|o| !o.is_idle());
        self.queue_credit(carries);
        if !self.encode_control(&mut batch, limit) {
            self.encode_messages(&mut batch, limit, None);
        }
        self.finish_batch(batch)
    }

    /// Per-channel streams (wire.md §17.3): the next bytes for this side's stream of
    /// `channel`, at most `max_batch` (and the batch size), or `None` if nothing is ready.
    ///
    /// The control stream carries HELLO, PING/PONG, GOAWAY, CLOSE, CANCEL without ABORT and
    /// control-channel messages; each other stream its channel's MESSAGE, SCHEMA and
    /// CANCEL-with-ABORT frames. The transport, not the session, prioritizes the streams.
    pub fn poll_transmit_channel(
        &mut self,
        now: Instant,
        channel: Channel,
        max_batch: usize,
    ) -> Option<Bytes> {
        let batch = self.transmit_channel(now, channel, max_batch, false)?;
        Some(batch.buf.freeze())
    }

    /// [`poll_transmit_channel`](Self::poll_transmit_channel) as segments, as
    /// [`poll_transmit_vectored`](Self::poll_transmit_vectored) gives them.
    pub fn poll_transmit_channel_vectored(
        &mut self,
        now: Instant,
        channel: Channel,
        max_batch: usize,
    ) -> Option<Vec<Bytes>> {
        Some(
            self.transmit_channel(now, channel, max_batch, true)?
                .into_segments(),
        )
    }

    fn transmit_channel(
        &mut self,
        now: Instant,
        channel: Channel,
        max_batch: usize,
        vectored: bool,
    ) -> Option<Batch> {
        self.now = now;
        if self.state == State::Closed {
            return None;
        }
        let limit = self.batch_limit(max_batch);
        let mut batch = Batch::with_capacity(self.batch_capacity(Some(channel), limit), vectored);
        let closed = if channel == Channel::Control {
            self.encode_control(&mut batch, limit)
        } else {
            let frames = &mut self.channel_frames[channel.index()];
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
    fn batch_capacity(&self, channel: Option<Channel>, limit: usize) -> usize {
        let queued: u64 = match channel {
            Some(ch) => self.outgoing[ch.index()].queued_bytes(),
            None => self.outgoing.iter().map(OutChannel::queued_bytes).sum(),
        };
        (queued as usize).saturating_add(256).min(limit)
    }

    /// The batch size `poll_transmit_*` would use under a caller's `max_batch`: that, capped by
    /// our `max_batch` and the peer's `MAX_BATCH_SIZE`.
    pub fn batch_limit(&self, max_batch: usize) -> usize {
        self.config
            .max_batch
            .min(self.peer.max_batch_size as usize)
            .min(max_batch.max(1))
    }

    /// Encodes queued control frames (a PONG first) while the batch has room. Returns whether
    /// CLOSE was encoded: it is the last frame, and the session is then closed.
    fn encode_control(&mut self, batch: &mut Batch, limit: usize) -> bool {
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
    fn encode_messages(&mut self, batch: &mut Batch, limit: usize, only: Option<Channel>) {
        if self.state != State::Open {
            return;
        }
        let mut message_frames = 0;
        while batch.len() < limit && message_frames < self.config.max_batch_frames {
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
            batch.push(&Frame::Message(frame));
        }
    }

    fn finish_batch(&mut self, batch: Batch) -> Option<Batch> {
        self.maybe_finish_drain();
        if batch.is_empty() {
            return None;
        }
        self.stats.frames_sent += batch.frames;
        self.stats.batches_sent += 1;
        Some(batch)
    }

    /// The largest chunk payload that fits `room` bytes of batch with its frame overhead.
    fn payload_room(peer: &Settings, room: usize) -> u64 {
        peer.max_frame_payload.min(room.saturating_sub(10) as u64)
    }

    fn next_message_frame(&mut self, room: usize) -> Option<MessageFrame> {
        let max_payload = Self::payload_room(&self.peer, room);
        let ceiling = self.window_ceiling();
        let mut ready = [false; 4];
        for ch in Channel::ALL {
            let i = ch.index();
            let available = self
                .send_window
                .min(self.outgoing[i].window)
                .min(max_payload);
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
    fn take_message_frame(&mut self, ch: Channel, max_payload: u64) -> Option<MessageFrame> {
        let i = ch.index();
        let available = self
            .send_window
            .min(self.outgoing[i].window)
            .min(max_payload);
        let frame = self.outgoing[i].next_frame(available, self.config.chunk_size)?;
        let len = frame.payload_len();
        self.send_window -= len;
        self.outgoing[i].window -= len;
        Some(frame)
    }

    /// spec: wire.md §9.5 — whether `pending` releasable bytes are worth a CREDIT frame. On
    /// their own (`carried` false): a quarter of the initial window, or any amount once the
    /// window is below a quarter or below `floor` (what one frame may need to make progress,
    /// §9.5.1). In a batch that leaves anyway (`carried`): from 16 KiB, if that is less.
    fn credit_worth(pending: u64, window: u64, initial: u64, floor: u64, carried: bool) -> bool {
        let quarter = (initial / 4).max(1);
        let enough = if carried {
            quarter.min(16 * 1024)
        } else {
            quarter
        };
        pending > 0 && (pending >= enough || window < quarter.max(floor))
    }

    /// The window below which any released credit is urgent (§9.5): a first frame carries at
    /// most `MAX_HEADER_LIST_SIZE` of header block and 40 bytes of other metadata (§8.1), and
    /// a sender may wait for 1 KiB of data beside them.
    fn credit_floor(&self) -> u64 {
        self.config
            .settings
            .max_header_list_size
            .saturating_add(PROGRESS_MARGIN)
    }

    /// The most credit the peer's windows ever hold for one channel: the smaller of its initial
    /// channel and connection windows (§9.1); unlimited where QUIC's windows replace them.
    fn window_ceiling(&self) -> u64 {
        match self.config.framing {
            Framing::PerChannelStreams => UNLIMITED_WINDOW,
            Framing::Batched => self
                .peer
                .initial_channel_window
                .min(self.peer.initial_connection_window),
        }
    }

    /// Whether a CREDIT frame must be sent even if nothing else is (so the driver knows a
    /// release needs a write). Smaller amounts wait for a batch that leaves anyway (§9.5).
    pub fn credit_due(&self) -> bool {
        let s = &self.config.settings;
        let floor = self.credit_floor();
        (0..4).any(|i| {
            Self::credit_worth(
                self.pending_channel_credit[i],
                self.recv_channel_window[i],
                s.initial_channel_window,
                floor,
                false,
            )
        }) || Self::credit_worth(
            self.conn_creditable,
            self.recv_window,
            s.initial_connection_window,
            floor,
            false,
        )
    }

    /// Queues the CREDIT frames due: urgent credit always, smaller amounts only if the batch
    /// being built `carries` other frames or urgent credit (§9.5).
    fn queue_credit(&mut self, carries: bool) {
        let carries = carries || self.credit_due();
        let floor = self.credit_floor();
        let worth =
            |pending, window, initial| Self::credit_worth(pending, window, initial, floor, carries);
        let initial_ch = self.config.settings.initial_channel_window;
        for ch in Channel::ALL {
            let i = ch.index();
            let pending = self.pending_channel_credit[i];
            if worth(pending, self.recv_channel_window[i], initial_ch) {
                self.pending_channel_credit[i] = 0;
                self.recv_channel_window[i] += pending;
                self.control.push_back(Frame::Credit(Credit {
                    target: CreditTarget::Channel(ch),
                    increment: pending,
                }));
            }
        }
        let initial_conn = self.config.settings.initial_connection_window;
        let pending = self.conn_creditable;
        if worth(pending, self.recv_window, initial_conn) {
            self.conn_creditable = 0;
            self.recv_window += pending;
            self.control.push_back(Frame::Credit(Credit {
                target: CreditTarget::Connection,
                increment: pending,
            }));
        }
    }

    // ---------------------------------------------------------------- time

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed | State::Closing => None,
            State::Finishing => self.peer_close.as_ref().map(|(_, t)| *t),
            State::AwaitingHello | State::AwaitingAccept => {
                Some(self.created + self.config.hello_timeout)
            }
            State::Open => Some(self.keepalive.next_deadline()),
        }
    }

    /// Advances timers: HELLO timeout, keepalive PING, dead peer (§13, §18).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match self.state {
            State::AwaitingHello | State::AwaitingAccept => {
                if now >= self.created + self.config.hello_timeout {
                    self.fail(SessionError::Timeout {
                        what: "HELLO exchange not finished",
                    });
                }
            }
            State::Open => {
                if self.keepalive.expired(now) {
                    self.fail(SessionError::Timeout {
                        what: "peer silent past the keepalive timeout",
                    });
                } else if let Some(opaque) = self.keepalive.poll_ping(now) {
                    self.control.push_back(Frame::Ping(Ping { opaque }));
                }
            }
            State::Finishing => {
                if self.peer_close.as_ref().is_some_and(|(_, t)| now >= *t) {
                    warn!("the peer's streams did not end after its CLOSE; giving up on them");
                    self.finish_peer_close();
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
