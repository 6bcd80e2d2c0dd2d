//! Human-readable frame dumps: what `rhizomorph inspect` prints.
//!
//! Owns turning hex text into bytes and frames into one readable line each. Never decodes
//! with anything but the real [`FrameDecoder`], so what it shows is
//! what a receiver would see, errors included.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use crate::frame::{
    Compression, Frame, FrameDecoder, FrameError, FrameHeader, PayloadEncoding, SettingId, Settings,
};

/// Why a hex dump could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// A character that is not a hex digit (whitespace, `:` and `,` are skipped).
    #[error("not a hex digit: {ch:?} at character {index}")]
    BadDigit {
        /// The character.
        ch: char,
        /// Its position.
        index: usize,
    },
    /// An odd number of hex digits.
    #[error("odd number of hex digits ({digits})")]
    OddLength {
        /// How many digits there were.
        digits: usize,
    },
}

/// Parses hex text such as `"02 03 0b 01…"`, skipping whitespace, `:`, `,` and a `0x` prefix
/// on each group.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let mut digits = Vec::with_capacity(text.len());
    for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == ':') {
        let word = word.strip_prefix("0x").unwrap_or(word);
        for ch in word.chars() {
            let index = digits.len();
            digits.push(ch.to_digit(16).ok_or(HexError::BadDigit { ch, index })? as u8);
        }
    }
    if digits.len() % 2 != 0 {
        return Err(HexError::OddLength {
            digits: digits.len(),
        });
    }
    Ok(digits.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// Formats bytes as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A short preview of payload bytes: quoted text when printable, hex otherwise, cut at 32 bytes.
pub fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 32;
    let shown = &bytes[..bytes.len().min(MAX)];
    let more = if bytes.len() > MAX { "…" } else { "" };
    if !shown.is_empty() && shown.iter().all(|b| (0x20..0x7f).contains(b)) {
        format!("{:?}{more}", String::from_utf8_lossy(shown))
    } else {
        format!("0x{}{more}", to_hex(shown))
    }
}

/// One readable line describing `frame`.
pub fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Padding { len } => format!("PADDING {len} bytes"),
        Frame::Hello(h) => {
            let versions: Vec<String> = h.versions.iter().map(|v| format!("{v:#06x}")).collect();
            let settings: Vec<String> = h
                .settings
                .iter()
                .map(|&(id, v)| match SettingId::from_id(id) {
                    Some(s) => format!("{}={v}", s.name()),
                    None => format!("unknown(0x{id:x})={v}"),
                })
                .collect();
            format!(
                "HELLO versions=[{}] settings=[{}] token={} agent={:?}",
                versions.join(","),
                settings.join(" "),
                if h.token.is_empty() { "none".into() } else { format!("{} bytes", h.token.len()) },
                h.agent
            )
        }
        Frame::Message(m) => {
            let mut line = format!(
                "MESSAGE {}{} channel={}",
                if m.start.is_some() { "FIRST" } else { "" },
                match (m.start.is_some(), m.last) {
                    (true, true) => "|LAST",
                    (false, true) => "LAST",
                    (false, false) => "CONT",
                    (true, false) => "",
                },
                m.channel
            );
            if let Some(s) = &m.start {
                let _ = write!(line, " message_len={} encoding={}", s.message_len, s.encoding.name());
                if let PayloadEncoding::Rkyv { schema_id } = s.encoding {
                    let _ = write!(line, "(schema {schema_id})");
                }
                match s.compression {
                    Compression::None => line.push_str(" compression=none"),
                    Compression::Compressed { codec, shuffle, uncompressed_len } => {
                        let _ = write!(
                            line,
                            " compression={}{} uncompressed_len={uncompressed_len}",
                            codec.name(),
                            match shuffle.element_size() {
                                1 => String::new(),
                                k => format!("+shuffle{k}"),
                            }
                        );
                    }
                }
                let _ = write!(line, " header_block=0x{}", to_hex(&s.header_block));
            }
            let _ = write!(line, " data[{}]={}", m.data.len(), preview(&m.data));
            line
        }
        Frame::Credit(c) => format!(
            "CREDIT target={} increment={}",
            match c.target {
                crate::frame::CreditTarget::Channel(ch) => ch.name(),
                crate::frame::CreditTarget::Connection => "connection",
            },
            c.increment
        ),
        Frame::Schema(s) => format!(
            "SCHEMA channel={} id={} layout_hash={:#018x} name={:?}",
            s.channel, s.schema_id, s.layout_hash, s.name
        ),
        Frame::Ping(p) => format!("PING opaque={:#018x}", p.opaque),
        Frame::Pong(p) => format!("PONG opaque={:#018x}", p.opaque),
        Frame::Cancel(c) => format!(
            "CANCEL{} channel={} sequence={} code={}",
            if c.abort { " ABORT" } else { "" },
            c.channel,
            c.sequence,
            c.code
        ),
        Frame::GoAway(g) => format!(
            "GOAWAY code={} accepted=[control {}, rpc {}, stream {}, bulk {}] reason={:?}",
            g.code, g.accepted[0], g.accepted[1], g.accepted[2], g.accepted[3], g.reason
        ),
        Frame::Close(c) => format!("CLOSE code={} reason={:?}", c.code, c.reason),
        Frame::Ignored { frame_type, flags, payload } => format!(
            "IGNORED type={frame_type:#04x} flags={flags:#04x} payload[{}] (unknown ignorable type, wire.md §4.2.2)",
            payload.len()
        ),
    }
}

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
    let decoder = FrameDecoder::new(limits);
    let mut src = BytesMut::from(bytes);
    let mut offset = 0;
    let mut lines = Vec::new();
    while !src.is_empty() {
        let before = src.len();
        let len = match FrameHeader::parse(&src, &limits) {
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
                writeln!(out, "{offset:>8}  {len:>6}  {}", describe(frame))
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
    use crate::frame::*;
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
