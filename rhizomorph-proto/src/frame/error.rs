//! Error codes (wire.md §15) and the codec's errors.
//!
//! Owns the mapping from each rule the codec enforces to the spec's error code. Every variant
//! names the rule it broke and carries the offending value, so a CLOSE reason or a log line says
//! exactly what the peer sent. Never holds borrowed input, so errors outlive the buffer.

use std::fmt;

/// A wire error code (wire.md §15), as carried by CANCEL, GOAWAY and CLOSE.
///
/// Unknown codes are kept with their value (§15: handled as `INTERNAL_ERROR`, reported as is).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u64);

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr,)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: ErrorCode = ErrorCode($value);)*

            /// The code's name in the spec, or `None` for a code this version does not define.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// Looks a code up by its spec name (as the test vectors write it).
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                match name {
                    $(stringify!($name) => Some(ErrorCode($value)),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// Graceful close.
    NO_ERROR = 0x00,
    /// A rule of the spec was broken (generic).
    PROTOCOL_ERROR = 0x01,
    /// The peer failed for its own reasons.
    INTERNAL_ERROR = 0x02,
    /// Credit exceeded or overflowed (§9).
    FLOW_CONTROL_ERROR = 0x03,
    /// A frame over `MAX_FRAME_PAYLOAD`, or a fixed-size frame of the wrong size.
    FRAME_SIZE_ERROR = 0x04,
    /// Message Length or Uncompressed Length over `MAX_MESSAGE_SIZE`.
    MESSAGE_TOO_LARGE = 0x05,
    /// A header block could not be decoded (§6).
    HEADER_ERROR = 0x06,
    /// Decompression failed or exceeded its declared size (§12).
    COMPRESSION_ERROR = 0x07,
    /// Unknown or mismatched schema (§11.2).
    SCHEMA_ERROR = 0x08,
    /// No common version (§3.2).
    VERSION_MISMATCH = 0x09,
    /// The token was refused (§3.2.7).
    AUTH_FAILED = 0x0a,
    /// The message was cancelled.
    CANCELLED = 0x0b,
    /// Not processed; safe to retry (§14.1).
    REFUSED = 0x0c,
    /// Keepalive expired (§13).
    TIMEOUT = 0x0d,
    /// A count or size over a limit of §18.
    LIMIT_EXCEEDED = 0x0e,
    /// Malformed bytes: non-minimal varint, truncated or overlong payload, invalid UTF-8.
    ENCODING_ERROR = 0x0f,
    /// An unknown critical frame type (§4.2.1).
    UNKNOWN_FRAME_TYPE = 0x10,
    /// A payload failed validation.
    PAYLOAD_ERROR = 0x11,
    /// The peer is shutting down (§14.1).
    GOING_AWAY = 0x12,
    /// QUIC only, as the application close code of a connection given up by a resumable
    /// session that did not end (§17.6.5): a lost transport, not a CLOSE. Never in a frame.
    TRANSPORT_ABANDONED = 0x13,
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ErrorCode(0x{:x})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A frame could not be decoded: the rule broken, with the offending value.
///
/// Each variant maps to one wire error code through [`FrameError::code`]; all of them are
/// connection errors (wire.md §14.2.2) except where the session decides otherwise.
///
/// Variant fields are the offending values, named for what they hold (`len`, `max`, `field`…).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// wire.md §4.1.1: Length over the receiver's limit, detected before the payload is read.
    #[error(
        "FrameTooLarge: frame type 0x{frame_type:02x} length {len} > max {max} (wire.md §4.1.1)"
    )]
    FrameTooLarge { frame_type: u8, len: u64, max: u64 },
    /// wire.md §2.2.2: a varint used more bytes than its value needs.
    #[error("NonMinimalVarint: value {value} encoded in {len} bytes (wire.md §2.2.2)")]
    NonMinimalVarint { value: u64, len: usize },
    /// wire.md §4.1.2: the payload ended before a field it requires.
    #[error("FrameTruncated: frame type 0x{frame_type:02x} ends inside field `{field}` (wire.md §4.1.2)")]
    FrameTruncated { frame_type: u8, field: &'static str },
    /// wire.md §4.1.2: bytes left over after the frame's last field.
    #[error("TrailingBytes: frame type 0x{frame_type:02x} has {extra} bytes after its last field (wire.md §4.1.2)")]
    TrailingBytes { frame_type: u8, extra: usize },
    /// wire.md §2.3: a text field is not UTF-8.
    #[error("InvalidUtf8: field `{field}` is not valid UTF-8 (wire.md §2.3)")]
    InvalidUtf8 { field: &'static str },
    /// wire.md §4.2.1: a critical frame type this version does not define.
    #[error("UnknownFrameType: critical frame type 0x{frame_type:02x} (wire.md §4.2.1)")]
    UnknownFrameType { frame_type: u8 },
    /// wire.md §5.3.1 / §5.4: a channel id outside 0–3 (or 0xFF for CREDIT).
    #[error("UnknownChannel: channel {channel} (wire.md §5.3.1)")]
    UnknownChannel { channel: u8 },
    /// wire.md §5.3.4: an Encoding value this version does not define.
    #[error("UnknownEncoding: encoding 0x{encoding:02x} (wire.md §5.3.4)")]
    UnknownEncoding { encoding: u8 },
    /// wire.md §5.3.4, §12.1: a Compression value this version does not define.
    #[error("UnknownCompression: compression 0x{compression:02x} (wire.md §12.1)")]
    UnknownCompression { compression: u8 },
    /// wire.md §5.3.4: a codec the receiver did not announce in `COMPRESSION`.
    #[error("CodecNotNegotiated: codec {codec} was not announced (wire.md §5.3.4)")]
    CodecNotNegotiated { codec: u8 },
    /// wire.md §5.3.2, §5.3.3: a message (or its uncompressed size) over `MAX_MESSAGE_SIZE`.
    #[error("MessageTooLarge: `{field}` {len} > max {max} (wire.md §5.3.2)")]
    MessageTooLarge {
        field: &'static str,
        len: u64,
        max: u64,
    },
    /// wire.md §5.3.5: a header block over `MAX_HEADER_LIST_SIZE`.
    #[error("HeaderBlockTooLarge: header block {len} bytes > max {max} (wire.md §5.3.5)")]
    HeaderBlockTooLarge { len: u64, max: u64 },
    /// wire.md §5.3.6: a chunk's length does not fit the declared Message Length.
    #[error("ChunkLengthMismatch: chunk of {chunk} bytes in a frame flagged {flags:#04x}, message length {message} (wire.md §5.3.6)")]
    ChunkLengthMismatch { chunk: u64, message: u64, flags: u8 },
    /// wire.md §18: a count or length outside the range the spec allows.
    #[error("FieldOutOfRange: `{field}` is {value}, allowed {min}..={max} (wire.md §18)")]
    FieldOutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// wire.md §5.4: a CREDIT of zero bytes.
    #[error("ZeroCreditIncrement: CREDIT for target {target} grants 0 bytes (wire.md §5.4)")]
    ZeroCreditIncrement { target: u8 },
    /// wire.md §5.4, §9.7: a CREDIT increment over 2^32 − 1.
    #[error("CreditTooLarge: increment {increment} > max 4294967295 (wire.md §9.7)")]
    CreditTooLarge { increment: u64 },
    /// wire.md §5.6: a fixed-size frame (PING, PONG) of the wrong size.
    #[error("BadFixedLength: frame type 0x{frame_type:02x} has length {len}, must be {expected} (wire.md §5.6)")]
    BadFixedLength {
        frame_type: u8,
        len: u64,
        expected: u64,
    },
    /// wire.md §3.3.1: a setting id given twice in one HELLO.
    #[error("DuplicateSetting: setting 0x{id:x} appears twice (wire.md §3.3.1)")]
    DuplicateSetting { id: u64 },
    /// wire.md §3.3.2: a known setting outside its allowed range.
    #[error(
        "SettingOutOfRange: setting 0x{id:x} = {value}, allowed {min}..={max} (wire.md §3.3.2)"
    )]
    SettingOutOfRange {
        id: u64,
        value: u64,
        min: u64,
        max: u64,
    },
}

impl FrameError {
    /// The wire error code (wire.md §15) a CLOSE for this error carries.
    pub fn code(&self) -> ErrorCode {
        use FrameError::*;
        match self {
            FrameTooLarge { .. } | BadFixedLength { .. } => ErrorCode::FRAME_SIZE_ERROR,
            NonMinimalVarint { .. }
            | FrameTruncated { .. }
            | TrailingBytes { .. }
            | InvalidUtf8 { .. } => ErrorCode::ENCODING_ERROR,
            UnknownFrameType { .. } => ErrorCode::UNKNOWN_FRAME_TYPE,
            UnknownChannel { .. }
            | UnknownEncoding { .. }
            | UnknownCompression { .. }
            | ChunkLengthMismatch { .. }
            | ZeroCreditIncrement { .. }
            | DuplicateSetting { .. }
            | SettingOutOfRange { .. } => ErrorCode::PROTOCOL_ERROR,
            CodecNotNegotiated { .. } => ErrorCode::COMPRESSION_ERROR,
            MessageTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            HeaderBlockTooLarge { .. } => ErrorCode::HEADER_ERROR,
            FieldOutOfRange { .. } => ErrorCode::LIMIT_EXCEEDED,
            CreditTooLarge { .. } => ErrorCode::FLOW_CONTROL_ERROR,
        }
    }

    /// The variant's name, as the test vectors' `kind` field writes it.
    pub fn kind(&self) -> &'static str {
        use FrameError::*;
        match self {
            FrameTooLarge { .. } => "FrameTooLarge",
            NonMinimalVarint { .. } => "NonMinimalVarint",
            FrameTruncated { .. } => "FrameTruncated",
            TrailingBytes { .. } => "TrailingBytes",
            InvalidUtf8 { .. } => "InvalidUtf8",
            UnknownFrameType { .. } => "UnknownFrameType",
            UnknownChannel { .. } => "UnknownChannel",
            UnknownEncoding { .. } => "UnknownEncoding",
            UnknownCompression { .. } => "UnknownCompression",
            CodecNotNegotiated { .. } => "CodecNotNegotiated",
            MessageTooLarge { .. } => "MessageTooLarge",
            HeaderBlockTooLarge { .. } => "HeaderBlockTooLarge",
            ChunkLengthMismatch { .. } => "ChunkLengthMismatch",
            FieldOutOfRange { .. } => "FieldOutOfRange",
            ZeroCreditIncrement { .. } => "ZeroCreditIncrement",
            CreditTooLarge { .. } => "CreditTooLarge",
            BadFixedLength { .. } => "BadFixedLength",
            DuplicateSetting { .. } => "DuplicateSetting",
            SettingOutOfRange { .. } => "SettingOutOfRange",
        }
    }
}

/// A frame could not be encoded because a value does not fit the wire format.
///
/// Encoding fails instead of writing a frame the spec forbids (which the peer would reject).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A value over the varint maximum (wire.md §2.2.1) or the field's own bound.
    #[error("field `{field}` is {value}, max {max}")]
    ValueTooLarge {
        field: &'static str,
        value: u64,
        max: u64,
    },
    /// A string or list longer than its field allows (wire.md §18).
    #[error("field `{field}` has length {len}, allowed {min}..={max}")]
    LengthOutOfRange {
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    },
    /// wire.md §5.3.6: the chunk does not fit the message length the frame declares.
    #[error("chunk of {chunk} bytes does not fit message length {message} with these flags")]
    ChunkLengthMismatch { chunk: u64, message: u64 },
}
