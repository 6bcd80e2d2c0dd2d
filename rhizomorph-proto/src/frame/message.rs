//! MESSAGE (wire.md §5.3): one chunk of one message, with the message's metadata on its first.
//!
//! Owns the MESSAGE layout, its flags and the per-frame checks (channel, sizes against the
//! receiver's limits, chunk length against Message Length). Chunk data and the header block come
//! out as views of the received bytes. Never decodes the header block (the session's header
//! table does) and never reassembles across frames (the session does, §8).

use bytes::{BufMut, Bytes, BytesMut};

use super::channel::Channel;
use super::content::{Compression, PayloadEncoding};
use super::error::{EncodeError, FrameError};
use super::reader::PayloadReader;
use super::schema::check_schema_id;
use super::settings::Settings;
use super::varint::{self, VARINT_MAX};
use super::writer;
use super::FrameType;

/// Metadata carried by a message's first frame (flag `FIRST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStart {
    /// Payload bytes of the whole message as sent (compressed, if it is).
    pub message_len: u64,
    /// How the payload is encoded.
    pub encoding: PayloadEncoding,
    /// How it is compressed, with the uncompressed length.
    pub compression: Compression,
    /// The encoded routing header (§6.4), undecoded.
    pub header_block: Bytes,
}

/// One MESSAGE frame (wire.md §5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFrame {
    /// The channel.
    pub channel: Channel,
    /// `Some` on the first frame of a message (flag `FIRST`).
    pub start: Option<MessageStart>,
    /// Flag `LAST`: this frame ends the message.
    pub last: bool,
    /// This frame's chunk of the payload.
    pub data: Bytes,
}

impl MessageFrame {
    /// Flag `FIRST`.
    pub const FLAG_FIRST: u8 = 0x01;
    /// Flag `LAST`.
    pub const FLAG_LAST: u8 = 0x02;

    /// A message that fits in one frame (`FIRST | LAST`), uncompressed.
    pub fn single(
        channel: Channel,
        encoding: PayloadEncoding,
        header_block: Bytes,
        data: Bytes,
    ) -> Self {
        MessageFrame {
            channel,
            start: Some(MessageStart {
                message_len: data.len() as u64,
                encoding,
                compression: Compression::None,
                header_block,
            }),
            last: true,
            data,
        }
    }

    /// The frame's flags byte.
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.start.is_some() {
            flags |= Self::FLAG_FIRST;
        }
        if self.last {
            flags |= Self::FLAG_LAST;
        }
        flags
    }

    pub(crate) fn load(
        flags: u8,
        payload: Bytes,
        limits: &Settings,
    ) -> Result<MessageFrame, FrameError> {
        let mut r = PayloadReader::new(FrameType::MESSAGE, payload);
        // spec: wire.md §5.3.1 — a Channel other than 0–3 is a PROTOCOL_ERROR.
        let channel = Channel::from_id(r.u8("channel")?)?;
        let start = if flags & Self::FLAG_FIRST != 0 {
            Some(load_start(&mut r, limits)?)
        } else {
            None
        };
        let last = flags & Self::FLAG_LAST != 0;
        let data = r.rest();
        if let Some(start) = &start {
            check_chunk(data.len() as u64, start.message_len, flags).map_err(
                |(chunk, message)| FrameError::ChunkLengthMismatch {
                    chunk,
                    message,
                    flags,
                },
            )?;
        }
        Ok(MessageFrame {
            channel,
            start,
            last,
            data,
        })
    }

    /// The Frame Payload length: what this frame charges against flow control (§5.3.7).
    pub fn payload_len(&self) -> u64 {
        self.metadata_len() + self.data.len() as u64
    }

    /// Bytes of the payload before Chunk Data: channel, and on a first frame the metadata.
    fn metadata_len(&self) -> u64 {
        let Some(start) = &self.start else { return 1 };
        let mut n = 1 + varint::encoded_len(start.message_len) + 1 + 1;
        if let PayloadEncoding::Rkyv { schema_id } = start.encoding {
            n += varint::encoded_len(schema_id);
        }
        if let Compression::Compressed {
            uncompressed_len, ..
        } = start.compression
        {
            n += varint::encoded_len(uncompressed_len);
        }
        n += varint::encoded_len(start.header_block.len() as u64) + start.header_block.len();
        n as u64
    }

    /// Bytes [`encode_head`](Self::encode_head) writes: where Chunk Data starts in the frame.
    pub fn head_len(&self) -> usize {
        let payload_len = self.payload_len();
        2 + varint::encoded_len(payload_len) + self.metadata_len() as usize
    }

    /// Whether the data of this frame is a whole payload that a receiver reads in place
    /// (a single-frame, uncompressed rkyv or typed-array message, wire.md §11.1).
    pub fn wants_alignment(&self) -> bool {
        self.last
            && self.start.as_ref().is_some_and(|s| {
                s.compression == Compression::None
                    && matches!(
                        s.encoding,
                        PayloadEncoding::Rkyv { .. } | PayloadEncoding::TypedArray
                    )
            })
    }

    /// Writes the frame header and every field up to (not including) Chunk Data.
    ///
    /// With [`MessageFrame::data`] written after it (or handed to a vectored write), this is
    /// the whole frame: the transport can send the payload without copying it.
    pub fn encode_head(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let payload_len = self.payload_len();
        if let Some(start) = &self.start {
            for (field, value) in [
                ("message_length", start.message_len),
                ("frame_length", payload_len),
            ] {
                if value > VARINT_MAX {
                    return Err(EncodeError::ValueTooLarge {
                        field,
                        value,
                        max: VARINT_MAX,
                    });
                }
            }
            check_chunk(self.data.len() as u64, start.message_len, self.flags())
                .map_err(|(chunk, message)| EncodeError::ChunkLengthMismatch { chunk, message })?;
        }
        dst.reserve(12 + self.metadata_len() as usize);
        dst.put_u8(FrameType::MESSAGE);
        dst.put_u8(self.flags());
        varint::write(dst, payload_len);
        dst.put_u8(self.channel.id());
        if let Some(start) = &self.start {
            varint::write(dst, start.message_len);
            dst.put_u8(start.encoding.tag());
            if let PayloadEncoding::Rkyv { schema_id } = start.encoding {
                writer::varint(dst, "schema_id", schema_id)?;
            }
            dst.put_u8(start.compression.tag());
            if let Compression::Compressed {
                uncompressed_len, ..
            } = start.compression
            {
                writer::varint(dst, "uncompressed_length", uncompressed_len)?;
            }
            varint::write(dst, start.header_block.len() as u64);
            dst.put_slice(&start.header_block);
        }
        Ok(())
    }

    /// Writes the whole frame.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_head(dst)?;
        dst.put_slice(&self.data);
        Ok(())
    }
}

/// spec: wire.md §5.3.6 — with FIRST|LAST the chunk is the whole message; with FIRST only it is
/// strictly shorter. Returns the offending `(chunk, message)` lengths.
fn check_chunk(chunk: u64, message: u64, flags: u8) -> Result<(), (u64, u64)> {
    let ok = if flags & MessageFrame::FLAG_LAST != 0 {
        chunk == message
    } else {
        chunk < message
    };
    if ok {
        Ok(())
    } else {
        Err((chunk, message))
    }
}

fn load_start(r: &mut PayloadReader, limits: &Settings) -> Result<MessageStart, FrameError> {
    let message_len = r.varint("message_length")?;
    // spec: wire.md §5.3.2 — Message Length over MAX_MESSAGE_SIZE is MESSAGE_TOO_LARGE.
    if message_len > limits.max_message_size {
        return Err(FrameError::MessageTooLarge {
            field: "message_length",
            len: message_len,
            max: limits.max_message_size,
        });
    }
    let encoding = match r.u8("encoding")? {
        0 => PayloadEncoding::Raw,
        1 => PayloadEncoding::Msgpack,
        2 => {
            let schema_id = r.varint("schema_id")?;
            check_schema_id(schema_id, limits)?;
            PayloadEncoding::Rkyv { schema_id }
        }
        3 => PayloadEncoding::TypedArray,
        // spec: wire.md §5.3.4 — an undefined Encoding is a PROTOCOL_ERROR.
        encoding => return Err(FrameError::UnknownEncoding { encoding }),
    };
    let compression = match Compression::parse_tag(r.u8("compression")?)? {
        None => Compression::None,
        Some((codec, shuffle)) => {
            // spec: wire.md §5.3.4 — a codec the receiver did not announce is COMPRESSION_ERROR.
            if !limits.accepts_codec(codec) {
                return Err(FrameError::CodecNotNegotiated { codec: codec as u8 });
            }
            let uncompressed_len = r.varint("uncompressed_length")?;
            // spec: wire.md §5.3.3, §12.3.1 — refuse a bomb from the declared size alone.
            if uncompressed_len > limits.max_message_size {
                return Err(FrameError::MessageTooLarge {
                    field: "uncompressed_length",
                    len: uncompressed_len,
                    max: limits.max_message_size,
                });
            }
            Compression::Compressed {
                codec,
                shuffle,
                uncompressed_len,
            }
        }
    };
    let header_len = r.varint("header_block_length")?;
    // spec: wire.md §5.3.5 — over MAX_HEADER_LIST_SIZE is HEADER_ERROR (checked before the
    // bytes left, so the bound is reported even when the frame is also short).
    if header_len > limits.max_header_list_size {
        return Err(FrameError::HeaderBlockTooLarge {
            len: header_len,
            max: limits.max_header_list_size,
        });
    }
    let header_block = r.bytes(header_len, "header_block")?;
    Ok(MessageStart {
        message_len,
        encoding,
        compression,
        header_block,
    })
}
