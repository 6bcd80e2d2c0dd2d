//! The frame codec: bytes ⇄ frames (wire.md §4, §5).
//!
//! Pure functions over `bytes`: [`FrameDecoder`] reads frames from a buffer that may hold part
//! of a frame, one frame, or many; [`Frame::encode`] writes one into a caller's buffer. Every
//! length read from the wire is checked against the receiver's [`Settings`] before anything is
//! allocated or awaited, and payload fields are `Bytes` views of the input.
//!
//! This module must never do I/O, know about sockets or tokio, keep connection state (which
//! frames are allowed when, windows, header tables: that is `session`), or panic on input.

mod ack;
mod cancel;
mod channel;
mod content;
mod credit;
mod display;
mod error;
mod goaway;
mod hello;
mod message;
mod ping;
mod reader;
mod schema;
mod settings;
pub mod varint;
mod writer;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use ack::Ack;
pub use cancel::Cancel;
pub use channel::{Channel, CreditTarget};
pub use content::{Codec, Compression, PayloadEncoding, Shuffle};
pub use credit::{Credit, MAX_WINDOW};
pub use error::{EncodeError, ErrorCode, FrameError};
pub use goaway::{Close, GoAway, MAX_REASON};
pub use hello::{
    Hello, ResumeRequest, ResumeStatus, SessionTicket, SESSION_ID_LEN, WIRE_VERSION_1_0,
    WIRE_VERSION_1_1,
};
pub use message::{MessageFrame, MessageStart};
pub use ping::Ping;
pub use schema::SchemaFrame;
pub use settings::{SettingId, Settings, HELLO_MAX_PAYLOAD};

use varint::VarIntError;

/// Frame type bytes (wire.md §4.2).
#[derive(Debug)]
pub struct FrameType;

impl FrameType {
    /// PADDING (§5.1).
    pub const PADDING: u8 = 0x00;
    /// HELLO (§5.2).
    pub const HELLO: u8 = 0x01;
    /// MESSAGE (§5.3).
    pub const MESSAGE: u8 = 0x02;
    /// CREDIT (§5.4).
    pub const CREDIT: u8 = 0x03;
    /// SCHEMA (§5.5).
    pub const SCHEMA: u8 = 0x04;
    /// PING (§5.6).
    pub const PING: u8 = 0x05;
    /// PONG (§5.6).
    pub const PONG: u8 = 0x06;
    /// CANCEL (§5.7).
    pub const CANCEL: u8 = 0x07;
    /// GOAWAY (§5.8).
    pub const GOAWAY: u8 = 0x08;
    /// CLOSE (§5.9).
    pub const CLOSE: u8 = 0x09;
    /// ACK (§5.10; wire version 1.1 only: under 1.0 it is an unknown critical type).
    pub const ACK: u8 = 0x0A;
    /// The first ignorable type (§4.2.2): 0x80–0xFF are skipped when unknown.
    pub const FIRST_IGNORABLE: u8 = 0x80;

    /// Whether version 1.0 defines `t`.
    pub fn is_known(t: u8) -> bool {
        t <= Self::CLOSE
    }

    /// Whether wire version `version` defines `t` (1.1 adds ACK, wire.md §21).
    pub fn is_known_in(t: u8, version: u64) -> bool {
        t <= Self::CLOSE || (t == Self::ACK && version >= WIRE_VERSION_1_1)
    }

    /// The spec name of a known type.
    pub fn name(t: u8) -> &'static str {
        match t {
            Self::PADDING => "PADDING",
            Self::HELLO => "HELLO",
            Self::MESSAGE => "MESSAGE",
            Self::CREDIT => "CREDIT",
            Self::SCHEMA => "SCHEMA",
            Self::PING => "PING",
            Self::PONG => "PONG",
            Self::CANCEL => "CANCEL",
            Self::GOAWAY => "GOAWAY",
            Self::CLOSE => "CLOSE",
            Self::ACK => "ACK",
            t if t >= Self::FIRST_IGNORABLE => "UNKNOWN_IGNORABLE",
            _ => "UNKNOWN_CRITICAL",
        }
    }
}

/// The common frame header: Type, Flags, Length (wire.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The Type byte.
    pub frame_type: u8,
    /// The Flags byte.
    pub flags: u8,
    /// Length of the Frame Payload, already checked against the limit.
    pub payload_len: usize,
    /// Bytes the header itself occupies (3 to 10).
    pub header_len: usize,
}

impl FrameHeader {
    /// Reads a frame header from the start of `src`, checking Length against `limits`.
    ///
    /// `Ok(None)` means `src` ends inside the header: wait for more bytes (§4.3.1). The Length
    /// check happens as soon as the Length field is complete, before the payload arrives.
    pub fn parse(src: &[u8], limits: &Settings) -> Result<Option<FrameHeader>, FrameError> {
        Self::parse_for(src, limits, WIRE_VERSION_1_0)
    }

    /// [`parse`](Self::parse) for a connection speaking wire version `version` (which frame
    /// types are known depends on it, §19).
    pub fn parse_for(
        src: &[u8],
        limits: &Settings,
        version: u64,
    ) -> Result<Option<FrameHeader>, FrameError> {
        let (Some(&frame_type), Some(&flags)) = (src.first(), src.get(1)) else {
            return Ok(None);
        };
        // spec: wire.md §4.2.1 — an unknown critical type is a connection error.
        if !FrameType::is_known_in(frame_type, version) && frame_type < FrameType::FIRST_IGNORABLE {
            return Err(FrameError::UnknownFrameType { frame_type });
        }
        let rest = src.get(2..).unwrap_or_default();
        let (len, len_bytes) = match varint::read(rest) {
            Ok(v) => v,
            Err(VarIntError::Incomplete { .. }) => return Ok(None),
            Err(VarIntError::NonMinimal { value, len }) => {
                return Err(FrameError::NonMinimalVarint { value, len })
            }
        };
        // spec: wire.md §4.1.1, §3.2.8 — Length over MAX_FRAME_PAYLOAD (8 KiB for HELLO) is
        // FRAME_SIZE_ERROR, before the payload is read.
        let max = if frame_type == FrameType::HELLO {
            HELLO_MAX_PAYLOAD
        } else {
            limits.max_frame_payload
        };
        if len > max {
            return Err(FrameError::FrameTooLarge {
                frame_type,
                len,
                max,
            });
        }
        Ok(Some(FrameHeader {
            frame_type,
            flags,
            // `len <= max <= 2^24` here, so this fits in usize on every supported target.
            payload_len: len as usize,
            header_len: 2 + len_bytes,
        }))
    }

    /// Header plus payload length.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// One decoded frame (wire.md §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// PADDING (§5.1): `len` ignored bytes.
    Padding {
        /// Payload length.
        len: usize,
    },
    /// HELLO (§5.2).
    Hello(Hello),
    /// MESSAGE (§5.3).
    Message(MessageFrame),
    /// CREDIT (§5.4).
    Credit(Credit),
    /// SCHEMA (§5.5).
    Schema(SchemaFrame),
    /// PING (§5.6).
    Ping(Ping),
    /// PONG (§5.6).
    Pong(Ping),
    /// CANCEL (§5.7).
    Cancel(Cancel),
    /// GOAWAY (§5.8).
    GoAway(GoAway),
    /// CLOSE (§5.9).
    Close(Close),
    /// ACK (§5.10, version 1.1).
    Ack(Ack),
    /// An unknown ignorable frame (§4.2.2): the receiver skips it; kept for inspection.
    Ignored {
        /// Its type (0x80–0xFF).
        frame_type: u8,
        /// Its flags.
        flags: u8,
        /// Its payload.
        payload: Bytes,
    },
}

impl Frame {
    /// Decodes one frame's payload, given its already-checked header.
    pub fn load(
        header: FrameHeader,
        payload: Bytes,
        limits: &Settings,
    ) -> Result<Frame, FrameError> {
        Ok(match header.frame_type {
            FrameType::PADDING => Frame::Padding { len: payload.len() },
            FrameType::HELLO => Frame::Hello(Hello::load(header.flags, payload)?),
            FrameType::MESSAGE => {
                Frame::Message(MessageFrame::load(header.flags, payload, limits)?)
            }
            FrameType::CREDIT => Frame::Credit(Credit::load(payload)?),
            FrameType::SCHEMA => Frame::Schema(SchemaFrame::load(payload, limits)?),
            FrameType::PING => Frame::Ping(Ping::load(FrameType::PING, payload)?),
            FrameType::PONG => Frame::Pong(Ping::load(FrameType::PONG, payload)?),
            FrameType::CANCEL => Frame::Cancel(Cancel::load(header.flags, payload)?),
            FrameType::GOAWAY => Frame::GoAway(GoAway::load(payload)?),
            FrameType::CLOSE => Frame::Close(Close::load(payload)?),
            FrameType::ACK => Frame::Ack(Ack::load(payload)?),
            frame_type if frame_type >= FrameType::FIRST_IGNORABLE => Frame::Ignored {
                frame_type,
                flags: header.flags,
                payload,
            },
            frame_type => return Err(FrameError::UnknownFrameType { frame_type }),
        })
    }

    /// The frame's Type byte.
    pub fn frame_type(&self) -> u8 {
        match self {
            Frame::Padding { .. } => FrameType::PADDING,
            Frame::Hello(_) => FrameType::HELLO,
            Frame::Message(_) => FrameType::MESSAGE,
            Frame::Credit(_) => FrameType::CREDIT,
            Frame::Schema(_) => FrameType::SCHEMA,
            Frame::Ping(_) => FrameType::PING,
            Frame::Pong(_) => FrameType::PONG,
            Frame::Cancel(_) => FrameType::CANCEL,
            Frame::GoAway(_) => FrameType::GOAWAY,
            Frame::Close(_) => FrameType::CLOSE,
            Frame::Ack(_) => FrameType::ACK,
            Frame::Ignored { frame_type, .. } => *frame_type,
        }
    }

    /// Appends the encoded frame to `dst`.
    ///
    /// Fails, writing nothing, when a value does not fit the wire format (a frame the peer
    /// would have to reject is never written).
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if let Frame::Message(m) = self {
            return m.encode(dst);
        }
        let mut payload = BytesMut::new();
        let flags = match self {
            Frame::Padding { len } => {
                payload.put_bytes(0, *len);
                0
            }
            Frame::Hello(h) => {
                h.encode_payload(&mut payload)?;
                h.flags()
            }
            Frame::Credit(c) => {
                c.encode_payload(&mut payload)?;
                0
            }
            Frame::Schema(s) => {
                s.encode_payload(&mut payload)?;
                0
            }
            Frame::Ping(p) | Frame::Pong(p) => {
                p.encode_payload(&mut payload);
                0
            }
            Frame::Cancel(c) => {
                c.encode_payload(&mut payload)?;
                c.flags()
            }
            Frame::GoAway(g) => {
                g.encode_payload(&mut payload)?;
                0
            }
            Frame::Close(c) => {
                c.encode_payload(&mut payload)?;
                0
            }
            Frame::Ack(a) => {
                a.encode_payload(&mut payload)?;
                0
            }
            Frame::Ignored {
                flags, payload: p, ..
            } => {
                payload.put_slice(p);
                *flags
            }
            Frame::Message(_) => unreachable!("handled above"),
        };
        dst.reserve(10 + payload.len());
        dst.put_u8(self.frame_type());
        dst.put_u8(flags);
        varint::write(dst, payload.len() as u64);
        dst.put_slice(&payload);
        Ok(())
    }
}

/// Reads frames from received bytes, enforcing the receiver's own settings (wire.md §4.3).
///
/// ```
/// use bytes::BytesMut;
/// use rhizomorph_proto::frame::{Frame, FrameDecoder, Ping, Settings};
///
/// let mut wire = BytesMut::new();
/// Frame::Ping(Ping { opaque: 7 }).encode(&mut wire).unwrap();
/// let decoder = FrameDecoder::new(Settings::default());
///
/// let mut partial = wire.split_to(5);            // half a frame: nothing happens
/// assert_eq!(decoder.decode(&mut partial).unwrap(), None);
/// assert_eq!(partial.len(), 5);                 // and nothing was consumed
///
/// partial.unsplit(wire);                        // the rest arrives
/// assert_eq!(decoder.decode(&mut partial).unwrap(), Some(Frame::Ping(Ping { opaque: 7 })));
/// assert!(partial.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: Settings,
    /// The wire version whose frame types are known (1.0 until a HELLO negotiates more).
    version: u64,
}

impl FrameDecoder {
    /// A decoder enforcing `limits` (the receiver's own announced settings), for wire version
    /// 1.0 (ACK, type 0x0A, is then an unknown critical type).
    pub fn new(limits: Settings) -> Self {
        FrameDecoder {
            limits,
            version: WIRE_VERSION_1_0,
        }
    }

    /// The same decoder for wire version `version` (1.1 knows ACK, wire.md §21).
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Switches to wire version `version` (once the HELLO exchange chose it).
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Settings {
        &self.limits
    }

    /// Decodes one frame from the front of `src`, removing its bytes.
    ///
    /// `Ok(None)`: `src` holds only part of a frame; nothing was consumed. On `Err` the
    /// connection is broken (wire.md §14.2.2) and `src` must not be read further.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(header) = FrameHeader::parse_for(src, &self.limits, self.version)? else {
            return Ok(None);
        };
        if src.len() < header.frame_len() {
            // spec: wire.md §4.3.1 — wait, consume nothing; the buffer can grow at most to the
            // checked frame length.
            src.reserve(header.frame_len() - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(header.frame_len()).freeze();
        frame.advance(header.header_len);
        Frame::load(header, frame, &self.limits).map(Some)
    }

    /// Like [`decode`](Self::decode) over an immutable buffer, such as one WebSocket message
    /// holding a batch of frames (§16.2).
    pub fn decode_bytes(&self, src: &mut Bytes) -> Result<Option<Frame>, FrameError> {
        let Some(header) = FrameHeader::parse_for(src, &self.limits, self.version)? else {
            return Ok(None);
        };
        if src.len() < header.frame_len() {
            return Ok(None);
        }
        let mut frame = src.split_to(header.frame_len());
        frame.advance(header.header_len);
        Frame::load(header, frame, &self.limits).map(Some)
    }

    /// Decodes every frame of one WebSocket message (wire.md §16.2.1): a message that ends
    /// inside a frame is `FrameTruncated`.
    pub fn decode_batch(&self, mut message: Bytes) -> Result<Vec<Frame>, FrameError> {
        let mut frames = Vec::new();
        while !message.is_empty() {
            match self.decode_bytes(&mut message)? {
                Some(frame) => frames.push(frame),
                None => {
                    return Err(FrameError::FrameTruncated {
                        frame_type: message.first().copied().unwrap_or_default(),
                        field: "batch",
                    })
                }
            }
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_hex(hex: &str) -> Result<Option<Frame>, FrameError> {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        FrameDecoder::new(Settings::default()).decode(&mut BytesMut::from(&bytes[..]))
    }

    // spec: wire.md §4.1.1 — a 4 GiB Length is refused from the header alone, before any payload.
    #[test]
    fn frame_4_1_1_rejects_4gib_length_without_payload() {
        let err = decode_hex("0200c000000100000000").unwrap_err();
        assert_eq!(
            err,
            FrameError::FrameTooLarge {
                frame_type: 2,
                len: 1 << 32,
                max: 65_536
            }
        );
        assert_eq!(err.code(), ErrorCode::FRAME_SIZE_ERROR);
    }

    // spec: wire.md §2.2.1 — nine or more 0xFF bytes are one 8-byte varint of 2^62 − 1, over
    // every limit: an error, not a loop and not an allocation.
    #[test]
    fn frame_2_2_1_nine_byte_varint_length_is_an_error() {
        let err = decode_hex("0200ffffffffffffffffff").unwrap_err();
        assert_eq!(err.code(), ErrorCode::FRAME_SIZE_ERROR);
    }

    #[test]
    fn frame_4_3_1_partial_header_consumes_nothing() {
        let mut buf = BytesMut::from(&[0x02u8, 0x03, 0x40][..]);
        assert_eq!(
            FrameDecoder::new(Settings::default()).decode(&mut buf),
            Ok(None)
        );
        assert_eq!(buf.len(), 3);
    }
}
