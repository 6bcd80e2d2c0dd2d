//! Legacy msgpack mode (`spec/legacy.md`): what hypha-rpc peers and the hypha server speak.
//!
//! Owns, sans-IO, the legacy message codec ([`codec`]), the TEXT handshake and keepalive
//! messages ([`handshake`]), the connection's state machine ([`session`]: handshakes,
//! keepalive, memory bounds, timers) and hypha's routing rules ([`route`]), on top of a scanner for
//! msgpack that never allocates ([`msgpack`]). Never opens a socket (the WebSocket transport
//! drives it) and never decodes a payload.

pub mod codec;
pub mod handshake;
pub mod msgpack;
pub mod route;
pub mod session;

pub use codec::{
    check_payload, decode, encode_header, encode_message, EncodedMessage, LegacyLimits,
    LegacyMessage,
};
pub use handshake::{AuthInfo, ConnectionInfo, TextMessage};
pub use route::{normalize_to, rewrite, Identity, Routed, ENTRY_FIELD};
pub use session::{
    Initiator, LegacyClose, LegacyConfig, LegacyEvent, LegacySendError, LegacySession,
    LegacyTransmit, Side,
};

/// What can be wrong with a legacy message or handshake, with the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyError {
    /// The message ends inside a msgpack value.
    #[error("msgpack value truncated at byte {offset}")]
    Truncated {
        /// Where the missing bytes were expected.
        offset: usize,
    },
    /// 0xc1 (never used) or another byte msgpack does not define.
    #[error("invalid msgpack tag 0x{tag:02x} at byte {offset}")]
    InvalidTag {
        /// The tag.
        tag: u8,
        /// Where it is.
        offset: usize,
    },
    /// The first msgpack value (the header) is not a map.
    #[error("legacy header is not a msgpack map (tag 0x{tag:02x})")]
    HeaderNotAMap {
        /// Its tag.
        tag: u8,
    },
    /// A header key that is not a string.
    #[error("legacy header key at byte {offset} is not a string")]
    KeyNotAString {
        /// Where it is.
        offset: usize,
    },
    /// A str (key or value) that is not UTF-8.
    #[error("legacy header string at byte {offset} is not UTF-8")]
    NotUtf8 {
        /// Where it is.
        offset: usize,
    },
    /// A key that is empty, too long to be a field name, or ends in `#`.
    #[error("legacy header key of {len} bytes (1-254 bytes, not ending in '#')")]
    BadKey {
        /// Its length.
        len: usize,
    },
    /// More header entries than allowed.
    #[error("legacy header with {count} entries (at most {max})")]
    TooManyFields {
        /// Entries claimed.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// The header is larger than allowed.
    #[error("legacy header larger than {max} bytes")]
    HeaderTooLarge {
        /// The limit.
        max: usize,
    },
    /// A `name#` header field whose value is not exactly one msgpack value.
    #[error("header field {field:?} is not exactly one msgpack value")]
    NotOneValue {
        /// The field.
        field: String,
    },
    /// A payload with bytes after its msgpack value.
    #[error("legacy payload has {extra} bytes after its msgpack value")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A message with no `to` (or a `to` that is not a string): nowhere to route it.
    #[error("legacy message has no string `to`")]
    NoTarget,
    /// A TEXT message that is not the expected JSON.
    #[error("bad legacy JSON message: {0}")]
    BadJson(String),
    /// A TEXT message longer than allowed.
    #[error("legacy TEXT message of {len} bytes (at most {max})")]
    TextTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}
