//! One message as a Redis Streams entry between nodes (cluster.md §C4.6): the routing header, the
//! payload as it traveled (still compressed, never decoded) and what a receiving node needs to
//! forward it as if it had arrived on its own connection.
//!
//! Owns the entry's byte layout, both ways. Never decodes or decompresses a payload, and never
//! trusts a length it reads: every field is checked against the bytes present before it is
//! sliced, and a bad entry is an [`EntryError`] for that entry alone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::connection::Message;
use crate::frame::{Channel, Compression, PayloadEncoding};
use crate::header::{HeaderDecoder, HeaderEncoder, HeaderError};
use crate::payload::SchemaBinding;

/// The layout version this node writes and reads (cluster.md §C4.6).
pub const ENTRY_VERSION: u8 = 1;

/// Why an entry could not be read back into a message (it alone is dropped, cluster.md §C4.5).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// The entry ends before the field it needs.
    #[error("cluster entry truncated: {field} needs {needed} bytes, {left} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left in the entry.
        left: usize,
    },
    /// Written by a node of another layout version: upgrade the nodes to one version.
    #[error("cluster entry of layout version {0}; this node reads version {ENTRY_VERSION}")]
    Version(u8),
    /// A channel, encoding or compression byte no version of the wire spec defines.
    #[error("cluster entry has an undefined {field} byte {value:#04x}")]
    Undefined {
        /// Which byte.
        field: &'static str,
        /// Its value.
        value: u8,
    },
    /// The header block does not decode (wire.md §6.4).
    #[error("cluster entry's routing header does not decode: {0}")]
    Header(#[from] HeaderError),
}

/// Encodes `message` (its header already rewritten for its target) as an entry's bytes.
pub fn encode(message: &Message) -> Bytes {
    // Capacity 0: the block references no dynamic table, so it decodes on its own.
    let block = HeaderEncoder::new(0).encode_block(&message.header);
    let name_len = message.schema.as_ref().map_or(0, |s| s.name.len());
    let mut out = BytesMut::with_capacity(32 + name_len + block.len() + message.payload.len());
    out.put_u8(ENTRY_VERSION);
    out.put_u8(message.channel as u8);
    out.put_u8(message.encoding.tag());
    if let PayloadEncoding::Rkyv { schema_id } = message.encoding {
        out.put_u64(schema_id);
    }
    // A payload that was decompressed travels as it now is: uncompressed.
    let compression = match message.still_compressed {
        true => message.compression,
        false => Compression::None,
    };
    out.put_u8(compression.tag());
    if let Compression::Compressed {
        uncompressed_len, ..
    } = compression
    {
        out.put_u64(uncompressed_len);
    }
    match &message.schema {
        Some(s) => {
            // A name longer than u16 is cut short: wire.md §11.2 bounds it far below that.
            let name = &s.name.as_bytes()[..s.name.len().min(u16::MAX as usize)];
            out.put_u8(1);
            out.put_u64(s.layout_hash);
            out.put_u16(name.len() as u16);
            out.put_slice(name);
        }
        None => out.put_u8(0),
    }
    out.put_u32(block.len() as u32);
    out.put_slice(&block);
    out.put_slice(&message.payload);
    out.freeze()
}

/// Reads an entry's bytes back into a message, its header decoded within
/// `max_header_list_size` (our `MAX_HEADER_LIST_SIZE`); the payload is a view of `entry`.
pub fn decode(mut entry: Bytes, max_header_list_size: u64) -> Result<Message, EntryError> {
    let version = take(&mut entry, 1, "version")?.get_u8();
    if version != ENTRY_VERSION {
        return Err(EntryError::Version(version));
    }
    let channel_id = take(&mut entry, 1, "channel")?.get_u8();
    let channel = Channel::from_id(channel_id).map_err(|_| EntryError::Undefined {
        field: "channel",
        value: channel_id,
    })?;
    let encoding = match take(&mut entry, 1, "encoding")?.get_u8() {
        0 => PayloadEncoding::Raw,
        1 => PayloadEncoding::Msgpack,
        2 => PayloadEncoding::Rkyv {
            schema_id: take(&mut entry, 8, "schema id")?.get_u64(),
        },
        3 => PayloadEncoding::TypedArray,
        value => {
            return Err(EntryError::Undefined {
                field: "encoding",
                value,
            })
        }
    };
    let tag = take(&mut entry, 1, "compression")?.get_u8();
    let compression = match Compression::parse_tag(tag) {
        Ok(None) => Compression::None,
        Ok(Some((codec, shuffle))) => Compression::Compressed {
            codec,
            shuffle,
            uncompressed_len: take(&mut entry, 8, "uncompressed length")?.get_u64(),
        },
        Err(_) => {
            return Err(EntryError::Undefined {
                field: "compression",
                value: tag,
            })
        }
    };
    let schema = match take(&mut entry, 1, "schema flag")?.get_u8() {
        0 => None,
        1 => {
            let layout_hash = take(&mut entry, 8, "layout hash")?.get_u64();
            let len = take(&mut entry, 2, "schema name length")?.get_u16() as usize;
            let name = take(&mut entry, len, "schema name")?;
            Some(Box::new(SchemaBinding {
                name: String::from_utf8_lossy(&name).into_owned(),
                layout_hash,
            }))
        }
        value => {
            return Err(EntryError::Undefined {
                field: "schema flag",
                value,
            })
        }
    };
    let block_len = take(&mut entry, 4, "header length")?.get_u32() as usize;
    let block = take(&mut entry, block_len, "header block")?;
    let header = HeaderDecoder::new(0, max_header_list_size).decode(block)?;
    Ok(Message {
        channel,
        sequence: 0,
        header,
        payload: entry,
        encoding,
        still_compressed: compression != Compression::None,
        compression,
        schema,
        error: None,
        credit: 0,
    })
}

/// A message on `channel` with an empty header and payload, to fill in (a router's own
/// answer sent through the cluster).
pub fn empty_message(channel: Channel) -> Message {
    Message::new(channel, Default::default(), Bytes::new())
}

/// The next `n` bytes of `entry`, or `Truncated` naming `field`.
fn take(entry: &mut Bytes, n: usize, field: &'static str) -> Result<Bytes, EntryError> {
    if entry.len() < n {
        return Err(EntryError::Truncated {
            field,
            needed: n,
            left: entry.len(),
        });
    }
    Ok(entry.split_to(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Codec, Shuffle};
    use crate::header::RoutingHeader;

    fn message() -> Message {
        Message {
            channel: Channel::Stream,
            sequence: 9,
            header: RoutingHeader::new()
                .with("to", "ws-1/bob")
                .with("from", "ws-1/alice"),
            payload: Bytes::from_static(b"\x01\x02\x03 payload"),
            encoding: PayloadEncoding::Rkyv { schema_id: 7 },
            compression: Compression::Compressed {
                codec: Codec::Lz4,
                shuffle: Shuffle::None,
                uncompressed_len: 4096,
            },
            schema: Some(Box::new(SchemaBinding {
                name: "demo::Point".into(),
                layout_hash: 0xfeed_beef,
            })),
            error: None,
            still_compressed: true,
            credit: 0,
        }
    }

    #[test]
    fn round_trips_everything_a_forward_needs() {
        let m = message();
        let back = decode(encode(&m), 16 * 1024).unwrap();
        assert_eq!(back.channel, m.channel);
        assert_eq!(back.header, m.header);
        assert_eq!(back.payload, m.payload);
        assert_eq!(back.encoding, m.encoding);
        assert_eq!(back.compression, m.compression);
        assert_eq!(back.schema, m.schema);
        assert!(back.still_compressed);
    }

    #[test]
    fn a_decompressed_payload_travels_uncompressed() {
        let mut m = message();
        m.still_compressed = false;
        let back = decode(encode(&m), 16 * 1024).unwrap();
        assert_eq!(back.compression, Compression::None);
        assert!(!back.still_compressed);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let bytes = encode(&message());
        let payload_starts = bytes.len() - message().payload.len();
        for cut in 0..payload_starts {
            let e = decode(bytes.slice(..cut), 16 * 1024).unwrap_err();
            assert!(
                matches!(e, EntryError::Truncated { .. } | EntryError::Header(_)),
                "cut at {cut}: {e}"
            );
        }
    }

    #[test]
    fn undefined_bytes_and_versions_are_named() {
        let bytes = encode(&message()).to_vec();
        let mut v = bytes.clone();
        v[0] = 2;
        assert_eq!(decode(v.into(), 1024).unwrap_err(), EntryError::Version(2));
        let mut c = bytes.clone();
        c[1] = 9;
        assert_eq!(
            decode(c.into(), 1024).unwrap_err(),
            EntryError::Undefined {
                field: "channel",
                value: 9
            }
        );
        let mut e = bytes;
        e[2] = 7;
        assert_eq!(
            decode(e.into(), 1024).unwrap_err(),
            EntryError::Undefined {
                field: "encoding",
                value: 7
            }
        );
    }

    #[test]
    fn a_header_over_the_limit_is_refused() {
        let e = decode(encode(&message()), 8).unwrap_err();
        assert!(matches!(e, EntryError::Header(_)), "{e}");
    }
}
