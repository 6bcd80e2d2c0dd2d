//! What the session tells the application and its driver: events, who closed, and counters.
//!
//! Owns the event and statistics types. Never decides anything: the session pushes events as
//! the spec's rules fire, in the order they fire.

use std::time::Duration;

use bytes::Bytes;

use super::replay::LostMessage;
use super::Message;
use crate::frame::{Channel, ErrorCode, ResumeStatus, SchemaFrame, Settings};

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
    /// Server only: the client's HELLO arrived; call [`Session::accept`](super::Session::accept) or [`Session::reject`](super::Session::reject).
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
        /// The peer's HELLO token: on a server the client's credential (what
        /// [`Event::HelloReceived`] carried), on a client the server's reply token.
        token: Bytes,
        /// The peer's agent string.
        agent: String,
    },
    /// A message arrived whole. Call [`Session::release`](super::Session::release) with its `credit` when done.
    Message(Message),
    /// The peer abandoned a message it was sending us (§5.7.1).
    MessageAborted {
        /// Channel.
        channel: Channel,
        /// Its sequence number.
        sequence: u64,
        /// The peer's reason.
        code: ErrorCode,
    },
    /// We refused a message the peer was sending, alone: it would exceed a reassembly budget
    /// (wire.md §8.3.1). The peer was told with CANCEL; nothing of it is delivered.
    MessageRefused {
        /// Channel.
        channel: Channel,
        /// Its sequence number.
        sequence: u64,
        /// Why (`LIMIT_EXCEEDED`).
        code: ErrorCode,
    },
    /// A message we queued will not be delivered (refused by GOAWAY, cancelled, closed).
    SendFailed {
        /// Channel.
        channel: Channel,
        /// The id [`Session::send`](super::Session::send) returned for it.
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
    /// Something happened to a resumable session (wire.md §21): detached, resumed, or resume
    /// failed (with what may be lost).
    Session(SessionEvent),
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

/// What happened to a resumable session (wire.md §21), as the session reports it and as an
/// application hears it (`rhizomorph::Connection::next_session_event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The transport was lost without CLOSE (wire.md §21.5): the session waits for a new one
    /// (a client is reconnecting; the driver closes the old one). Sends queue meanwhile, up to
    /// the send buffer.
    Detached,
    /// A new transport resumed the session (wire.md §21.6): nothing was lost.
    Resumed {
        /// Per channel, the messages of ours the peer had finished (replay starts there).
        received: [u64; 4],
        /// Per channel, how many of our started messages are sent again.
        replayed: [u64; 4],
    },
    /// Resumption failed (wire.md §21.6): refused by the server (it restarted, the session
    /// expired, …) or the detached session's time limit passed. `lost` holds every message
    /// this side started and the peer never acknowledged: each may or may not have reached the
    /// peer's application (resend what must arrive). After a refusal the connection goes on as
    /// a new session; after the time limit it is closed.
    ResumeFailed {
        /// Why.
        status: ResumeStatus,
        /// The messages that may be lost, per channel in order.
        lost: Vec<LostMessage>,
    },
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
