//! Session errors: connection-level rule violations beyond a single frame's layout.
//!
//! Owns the mapping of each session rule (ordering, flow control, negotiation) to its wire
//! error code. Every variant carries the offending values. Never carries borrowed data.

use crate::frame::{Channel, ErrorCode, FrameError};

use crate::header::HeaderError;

/// A connection error detected by the session (wire.md §14.2.2): the session sends CLOSE with
/// [`SessionError::code`] and this error's text as the reason.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A frame broke a layout or limit rule (wire.md §4, §5).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A header block could not be decoded (wire.md §6).
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// wire.md §3.2.5: a frame not allowed in the current state (before HELLO, second HELLO…).
    #[error("UnexpectedFrame: {frame} while {state} (wire.md §3.2.5)")]
    UnexpectedFrame {
        frame: &'static str,
        state: &'static str,
    },
    /// wire.md §3.2.3, §3.2.4: no version in common, or a server answer the client did not offer.
    #[error("VersionMismatch: offered {offered:x?}, supported {supported:x?} (wire.md §3.2)")]
    VersionMismatch {
        offered: Vec<u64>,
        supported: Vec<u64>,
    },
    /// wire.md §8.2: a chunk without a message in progress, or a FIRST while one is.
    #[error("UnexpectedChunk: {what} on channel {channel} (wire.md §8.2)")]
    UnexpectedChunk {
        channel: Channel,
        what: &'static str,
    },
    /// wire.md §8.2: chunks that do not add up to Message Length.
    #[error("ChunkLengthMismatch: channel {channel} received {received} of a {message}-byte message{ending} (wire.md §8.2)")]
    ChunkLengthMismatch {
        channel: Channel,
        received: u64,
        message: u64,
        ending: &'static str,
    },
    /// wire.md §9.2.3: more MESSAGE bytes than the window allows.
    #[error(
        "WindowExceeded: {len}-byte frame on {target} with {window} bytes of credit (wire.md §9.2)"
    )]
    WindowExceeded {
        target: &'static str,
        len: u64,
        window: u64,
    },
    /// wire.md §9.7: a CREDIT that makes a window exceed 2^32 − 1.
    #[error("WindowOverflow: {target} window {window} + {increment} > 4294967295 (wire.md §9.7)")]
    WindowOverflow {
        target: &'static str,
        window: u64,
        increment: u64,
    },
    /// wire.md §14.1.5: a second GOAWAY raised an accepted count.
    #[error("GoAwayRaised: channel {channel} accepted count raised from {previous} to {new} (wire.md §14.1.5)")]
    GoAwayRaised {
        channel: Channel,
        previous: u64,
        new: u64,
    },
    /// wire.md §17.2.3, §17.3, §17.5: over QUIC, a frame on a stream that must not carry it
    /// (a MESSAGE for another channel, CREDIT at all, a second stream for a channel).
    #[error("WrongStream: {frame} on the {stream} stream (wire.md §17.3)")]
    WrongStream {
        frame: &'static str,
        stream: Channel,
    },
    /// wire.md §21.3: an ACK that lowers a count, or counts messages never started.
    #[error("AckOutOfRange: ACK of {received} on channel {channel}, acknowledged {acknowledged}, started {started} (wire.md §21.3)")]
    AckOutOfRange {
        channel: Channel,
        received: u64,
        acknowledged: u64,
        started: u64,
    },
    /// wire.md §21.6: a resume answer whose counts this side cannot replay from.
    #[error("ResumeInconsistent: the peer finished {received} on channel {channel}, replayable {acknowledged}..={started} (wire.md §21.6)")]
    ResumeInconsistent {
        channel: Channel,
        received: u64,
        acknowledged: u64,
        started: u64,
    },
    /// wire.md §13.1, §18: the peer went silent, or the HELLO exchange took too long.
    #[error("Timeout: {what} (wire.md §13.1)")]
    Timeout { what: &'static str },
}

impl SessionError {
    /// The wire error code the CLOSE carries.
    pub fn code(&self) -> ErrorCode {
        use SessionError::*;
        match self {
            Frame(e) => e.code(),
            Header(e) => e.code(),
            UnexpectedFrame { .. }
            | UnexpectedChunk { .. }
            | ChunkLengthMismatch { .. }
            | GoAwayRaised { .. }
            | AckOutOfRange { .. }
            | ResumeInconsistent { .. }
            | WrongStream { .. } => ErrorCode::PROTOCOL_ERROR,
            VersionMismatch { .. } => ErrorCode::VERSION_MISMATCH,
            WindowExceeded { .. } | WindowOverflow { .. } => ErrorCode::FLOW_CONTROL_ERROR,
            Timeout { .. } => ErrorCode::TIMEOUT,
        }
    }
}

/// Why a message could not be queued for sending.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection is closed (or closing).
    #[error("connection closed")]
    Closed,
    /// The peer sent GOAWAY: no new messages (wire.md §14.1.2).
    #[error("peer is going away: no new messages (wire.md §14.1.2)")]
    GoingAway,
    /// The message is larger than the peer's `MAX_MESSAGE_SIZE`.
    #[error("message of {len} bytes exceeds the peer's MAX_MESSAGE_SIZE {max}")]
    MessageTooLarge { len: u64, max: u64 },
    /// The routing header is larger than the peer accepts or than fits in one frame.
    #[error("routing header of {size} bytes exceeds the limit {max} (wire.md §6.5, §8.1)")]
    HeaderTooLarge { size: u64, max: u64 },
    /// A header name that is empty or over 255 bytes (wire.md §6.4.5).
    #[error("header name of {len} bytes, allowed 1..=255 (wire.md §6.4.5)")]
    BadHeaderName { len: usize },
    /// More than 64 header fields (wire.md §6.5).
    #[error("{count} header fields, at most 64 (wire.md §6.5)")]
    TooManyHeaderFields { count: usize },
    /// Every Schema Id the peer allows on this channel is bound (wire.md §11.2.1; ids are not
    /// reused, so a message is never read with a replaced binding).
    #[error("all {max} schema ids of the channel are bound (the peer's SCHEMA_CACHE_SIZE, wire.md §11.2)")]
    SchemaCacheFull { max: u64 },
    /// The message's first frame needs more credit than the peer's windows ever hold (the
    /// smaller of its `INITIAL_CHANNEL_WINDOW` and `INITIAL_CONNECTION_WINDOW`): it could
    /// never be sent (wire.md §9.5.1).
    #[error("the first frame needs {needed} bytes of credit, the peer's windows hold {window} (wire.md §9.5.1)")]
    WindowTooSmall { needed: u64, window: u64 },
    /// A compression codec the peer did not announce (wire.md §5.3.4).
    #[error("the peer does not accept codec {codec} (wire.md §5.3.4)")]
    CodecNotAccepted { codec: &'static str },
}

impl SendError {
    /// The error code an [`Event::SendFailed`](crate::session::Event::SendFailed) reports
    /// for a message refused for this reason after it was queued.
    pub fn code(&self) -> ErrorCode {
        match self {
            SendError::Closed => ErrorCode::CANCELLED,
            SendError::GoingAway => ErrorCode::REFUSED,
            SendError::MessageTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            SendError::HeaderTooLarge { .. }
            | SendError::BadHeaderName { .. }
            | SendError::TooManyHeaderFields { .. } => ErrorCode::HEADER_ERROR,
            SendError::SchemaCacheFull { .. } => ErrorCode::SCHEMA_ERROR,
            SendError::WindowTooSmall { .. } => ErrorCode::FLOW_CONTROL_ERROR,
            SendError::CodecNotAccepted { .. } => ErrorCode::COMPRESSION_ERROR,
        }
    }
}
