//! Human-readable frame dumps: what `rhizomorph inspect` prints.
//!
//! Owns laying out a decoded dump (offsets, lengths, each frame's `Display` line, the error that
//! stopped decoding) and the demo conversation. Never decodes
//! with anything but the real [`FrameDecoder`], so what it shows is
//! what a receiver would see, errors included.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use rhizomorph::frame::{Frame, FrameDecoder, FrameError, FrameHeader, Settings};

/// One line of an inspection: a frame at an offset, or the error that stopped decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InspectLine {
    /// A frame decoded at `offset` spanning `len` bytes.
    Frame {
        /// Byte offset in the input.
        offset: usize,
        /// Encoded length.
        len: usize,
        /// The frame.
        frame: Frame,
    },
    /// Decoding failed at `offset`; nothing after it is read.
    Error {
        /// Byte offset of the failing frame.
        offset: usize,
        /// The error.
        error: FrameError,
    },
    /// The input ended inside a frame.
    Incomplete {
        /// Byte offset of the partial frame.
        offset: usize,
        /// Bytes present.
        have: usize,
    },
}

/// Decodes every frame in `bytes` with `limits`, stopping at the first error.
pub fn inspect(bytes: &[u8], limits: Settings) -> Vec<InspectLine> {
    // The newest wire version: ACK (1.1) is shown, not refused.
    let decoder = FrameDecoder::new(limits).with_version(rhizomorph::frame::WIRE_VERSION_1_1);
    let mut src = BytesMut::from(bytes);
    let mut offset = 0;
    let mut lines = Vec::new();
    while !src.is_empty() {
        let before = src.len();
        let len = match FrameHeader::parse_for(&src, &limits, rhizomorph::frame::WIRE_VERSION_1_1) {
            Ok(Some(h)) => h.frame_len(),
            _ => 0,
        };
        match decoder.decode(&mut src) {
            Ok(Some(frame)) => lines.push(InspectLine::Frame { offset, len, frame }),
            Ok(None) => {
                lines.push(InspectLine::Incomplete {
                    offset,
                    have: before,
                });
                break;
            }
            Err(error) => {
                lines.push(InspectLine::Error { offset, error });
                break;
            }
        }
        offset += before - src.len();
    }
    lines
}

/// Renders lines as the CLI prints them.
pub fn render(lines: &[InspectLine]) -> String {
    let mut out = String::new();
    for line in lines {
        let _ = match line {
            InspectLine::Frame { offset, len, frame } => {
                writeln!(out, "{offset:>8}  {len:>6}  {}", frame)
            }
            InspectLine::Error { offset, error } => {
                writeln!(out, "{offset:>8}       -  ERROR {} — {error}", error.code())
            }
            InspectLine::Incomplete { offset, have } => {
                writeln!(
                    out,
                    "{offset:>8}  {have:>6}  INCOMPLETE frame: need more bytes (wire.md §4.3.1)"
                )
            }
        };
    }
    out
}

/// A short sample conversation (client side) for `rhizomorph inspect` with no input: HELLO,
/// a schema binding, messages on every channel (one chunked), credit, ping and a graceful close.
pub fn demo_conversation() -> Bytes {
    use rhizomorph::frame::*;
    let mut wire = BytesMut::new();
    let frames = vec![
        Frame::Hello(Hello::new(
            &Settings::default().with_max_frame_payload(16_384),
            Bytes::from_static(b"secret-token"),
            concat!("rhizomorph/", env!("CARGO_PKG_VERSION")),
        )),
        Frame::Schema(SchemaFrame {
            channel: Channel::Rpc,
            schema_id: 0,
            layout_hash: 0x9e37_79b9_7f4a_7c15,
            name: "demo::Reading@1".into(),
        }),
        Frame::Message(MessageFrame::single(
            Channel::Rpc,
            PayloadEncoding::Raw,
            Bytes::from_static(&[0x80, 0x83]),
            Bytes::from_static(b"hello, rhizomorph"),
        )),
        Frame::Message(MessageFrame {
            channel: Channel::Bulk,
            start: Some(MessageStart {
                message_len: 40,
                encoding: PayloadEncoding::TypedArray,
                compression: Compression::None,
                header_block: Bytes::new(),
            }),
            last: false,
            data: Bytes::from(vec![0xab; 24]),
        }),
        Frame::Ping(Ping {
            opaque: 1_700_000_000_000_000,
        }),
        Frame::Message(MessageFrame {
            channel: Channel::Bulk,
            start: None,
            last: true,
            data: Bytes::from(vec![0xcd; 16]),
        }),
        Frame::Credit(Credit {
            target: CreditTarget::Connection,
            increment: 65_536,
        }),
        Frame::GoAway(GoAway {
            code: ErrorCode::NO_ERROR,
            accepted: [0, 1, 0, 0],
            reason: "demo done".into(),
        }),
        Frame::Close(Close::new(ErrorCode::NO_ERROR, "bye")),
    ];
    for frame in frames {
        // The demo frames are built within every limit above; encoding cannot fail.
        frame.encode(&mut wire).expect("demo frames are valid");
    }
    wire.freeze()
}
