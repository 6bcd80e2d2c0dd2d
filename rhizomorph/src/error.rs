//! The crate's public error type for the async API.
//!
//! Owns what a user of `Endpoint`/`Connection` can see go wrong, each with the offending value.
//! Protocol-level causes keep their wire error code. Never wraps errors in `Box<dyn Error>`.

use crate::frame::ErrorCode;
use crate::session::SendError;

/// An error from the async API (connecting, accepting, sending).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket or TLS I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed (handshake or framing).
    #[error("WebSocket error: {0}")]
    WebSocket(String),
    /// The WebSocket opening handshake failed or was refused (RFC 6455 §4).
    #[error(transparent)]
    Handshake(#[from] crate::websocket::HandshakeError),
    /// The QUIC layer failed (endpoint, handshake or connection).
    #[error("QUIC error: {0}")]
    Quic(String),
    /// TLS configuration or handshake failed.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The URL or address cannot be used.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        addr: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Plain (unencrypted) WebSocket to or on a non-loopback address without opting in.
    #[error("refusing plain ws:// for non-loopback address {addr}: use wss:// (TLS), or allow it explicitly with Config::allow_plain_non_loopback (wire.md §18)")]
    PlainNotAllowed {
        /// The address.
        addr: String,
    },
    /// The peer does not speak rhizomorph (it did not select the `rhizomorph.v1` subprotocol).
    #[error("peer at {addr} did not select the rhizomorph.v1 subprotocol (wire.md §3.4.2)")]
    NotRhizomorph {
        /// The address.
        addr: String,
    },
    /// The connection was closed, by either side, with this code and reason.
    #[error("connection closed: {code} {reason:?}")]
    Closed {
        /// The CLOSE code (`NO_ERROR` for a graceful close).
        code: ErrorCode,
        /// The reason.
        reason: String,
    },
    /// The transport ended without a CLOSE (the peer died or the network failed).
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The message could not be queued.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The payload could not be encoded (wire.md §11).
    #[error(transparent)]
    Payload(#[from] crate::payload::PayloadError),
    /// A legacy (hypha) server refused us, or a legacy client sent something other than its
    /// authentication message first (legacy.md §L4).
    #[error("legacy peer at {addr} refused the connection: {message}")]
    LegacyRefused {
        /// The address.
        addr: String,
        /// What it said.
        message: String,
    },
    /// A legacy message or handshake message is malformed, or cannot be sent in legacy mode.
    #[error(transparent)]
    Legacy(#[from] crate::legacy::LegacyError),
    /// The operation needs the native protocol and the connection is in legacy mode.
    #[error("{0} needs the native protocol; this connection is in legacy (msgpack) mode")]
    NativeOnly(&'static str),
    /// The send buffer is full: a `try_` send that would have waited (send again later, or use
    /// the waiting variant).
    #[error("the send buffer is full (a waiting send would wait here)")]
    WouldBlock,
    /// [`Sender::poll_send`](crate::Sender::poll_send) was given an empty slot, or a
    /// [`Sending`](crate::Sending) was polled again after it resolved.
    #[error(
        "poll_send was called with no message in its slot (or a send polled after it resolved)"
    )]
    EmptySlot,
    /// A reply or cancellation watch for a message that is not a call (it has no `session`,
    /// wire.md §20.1).
    #[error("the message is not a call: it has no `session` field (wire.md §20.1)")]
    NotACall,
    /// A call's reply said it failed (`status: error`, wire.md §20.1).
    #[error("the call failed at the peer: {reason}")]
    CallFailed {
        /// The reply's `error` text.
        reason: String,
    },
    /// No reply came within the call's timeout; the call was cancelled (wire.md §20.2).
    #[error("no reply within {after:?}: the call was cancelled (raise it with Call::timeout or Config::call_timeout)")]
    CallTimedOut {
        /// The timeout.
        after: std::time::Duration,
    },
    /// A transfer's sender gave up on it (its last part said `status: error`, wire.md §20.3),
    /// or it broke (a part out of order).
    #[error("the transfer failed: {reason}")]
    TransferFailed {
        /// Why, as the sender said it.
        reason: String,
    },
    /// The receiver of our transfer asked us to stop (wire.md §20.4).
    #[error("the receiver cancelled the transfer after {sent} bytes")]
    TransferCancelled {
        /// Payload bytes sent before the cancellation was seen.
        sent: u64,
    },
    /// The listener was shut down ([`Listener::shutdown`](crate::Listener::shutdown)) or
    /// dropped: no more connections.
    #[error("the listener is shut down: it accepts no more connections")]
    ListenerShutDown,
    /// Not a failure: the handshake resumed a detached session (wire.md §21.6), which carries
    /// on over the new transport; no new connection is handed out. Only
    /// [`Listener::accept_raw`](crate::Listener::accept_raw) sees it.
    #[error("the connection resumed an existing session (wire.md §21.6): no new connection")]
    SessionResumed,
    /// Connecting failed: where it was going, how far it got, what went wrong and, for the
    /// usual mix-ups (TLS against plain, nothing listening, an untrusted certificate), what to
    /// try.
    #[error("connecting to {url}: {stage} failed: {cause}{}", .hint.as_ref().map(|h| format!(" — {h}")).unwrap_or_default())]
    ConnectFailed {
        /// The URL given.
        url: String,
        /// How far the attempt got.
        stage: ConnectStage,
        /// The cause, as the layer that failed gave it (`Io`, `Tls`, `Quic`, `Handshake`, …):
        /// match on it for the kind of failure.
        #[source]
        cause: Box<Error>,
        /// What to try, where the usual cause is known.
        hint: Option<String>,
    },
    /// Connecting did not finish within `Config::connect_timeout`.
    #[error("connecting to {url}: no answer in {after:?} while {stage}{}", .hint.as_ref().map(|h| format!(" — {h}")).unwrap_or_default())]
    ConnectTimedOut {
        /// The URL given.
        url: String,
        /// The stage the attempt was in.
        stage: ConnectStage,
        /// The timeout.
        after: std::time::Duration,
        /// What to check.
        hint: Option<String>,
    },
    /// The operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

/// How far a connect attempt got ([`Error::ConnectFailed`], [`Error::ConnectTimedOut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnectStage {
    /// Resolving the host name.
    Resolve = 0,
    /// Opening the TCP connection.
    Tcp = 1,
    /// The TLS handshake (`wss://`).
    Tls = 2,
    /// The WebSocket upgrade (HTTP).
    Upgrade = 3,
    /// The QUIC handshake (TLS included).
    Quic = 4,
    /// The HELLO exchange (wire.md §3.2), or legacy mode's handshake.
    Hello = 5,
}

impl ConnectStage {
    pub(crate) fn from_u8(v: u8) -> ConnectStage {
        match v {
            1 => ConnectStage::Tcp,
            2 => ConnectStage::Tls,
            3 => ConnectStage::Upgrade,
            4 => ConnectStage::Quic,
            5 => ConnectStage::Hello,
            _ => ConnectStage::Resolve,
        }
    }
}

impl std::fmt::Display for ConnectStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectStage::Resolve => "resolving the host",
            ConnectStage::Tcp => "opening TCP",
            ConnectStage::Tls => "the TLS handshake",
            ConnectStage::Upgrade => "the WebSocket upgrade",
            ConnectStage::Quic => "the QUIC handshake",
            ConnectStage::Hello => "the HELLO exchange",
        })
    }
}
