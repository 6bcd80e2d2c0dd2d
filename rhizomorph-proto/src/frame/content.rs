//! What a message's payload is: its encoding (wire.md §11.1) and compression (§12.1).
//!
//! Owns the Encoding and Compression bytes of a MESSAGE's first frame. Never touches payload
//! bytes: compressing and validating payloads is `payload`'s job, not the codec's.

use super::error::FrameError;

/// How the payload is encoded (wire.md §11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadEncoding {
    /// Bytes the application interprets.
    Raw,
    /// One msgpack object.
    Msgpack,
    /// An rkyv archive of the type bound to `schema_id` on this channel (§11.2).
    Rkyv {
        /// The per-channel schema id (§5.5).
        schema_id: u64,
    },
    /// A typed array (§11.4).
    TypedArray,
}

impl PayloadEncoding {
    /// The Encoding byte.
    pub fn tag(self) -> u8 {
        match self {
            PayloadEncoding::Raw => 0,
            PayloadEncoding::Msgpack => 1,
            PayloadEncoding::Rkyv { .. } => 2,
            PayloadEncoding::TypedArray => 3,
        }
    }

    /// Short name for display and vectors.
    pub fn name(self) -> &'static str {
        match self {
            PayloadEncoding::Raw => "raw",
            PayloadEncoding::Msgpack => "msgpack",
            PayloadEncoding::Rkyv { .. } => "rkyv",
            PayloadEncoding::TypedArray => "typed-array",
        }
    }
}

/// A compression codec (wire.md §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// LZ4 block format.
    Lz4 = 1,
    /// Snappy raw format.
    Snappy = 2,
}

impl Codec {
    /// The codec's bit in the `COMPRESSION` setting (§3.3).
    pub fn setting_bit(self) -> u64 {
        1 << (self as u8 - 1)
    }

    /// Short name for display and vectors.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Lz4 => "lz4",
            Codec::Snappy => "snappy",
        }
    }
}

/// The byte-shuffle filter applied before the codec (wire.md §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Shuffle {
    /// No shuffle.
    None = 0,
    /// Element size 2.
    Bytes2 = 1,
    /// Element size 4.
    Bytes4 = 2,
    /// Element size 8.
    Bytes8 = 3,
}

impl Shuffle {
    /// The element size in bytes (1 for no shuffle).
    pub fn element_size(self) -> usize {
        match self {
            Shuffle::None => 1,
            Shuffle::Bytes2 => 2,
            Shuffle::Bytes4 => 4,
            Shuffle::Bytes8 => 8,
        }
    }
}

/// The Compression field of a MESSAGE's first frame, with its Uncompressed Length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// The payload travels as is.
    None,
    /// The payload was shuffled (optionally) and compressed.
    Compressed {
        /// The codec.
        codec: Codec,
        /// The shuffle applied before the codec.
        shuffle: Shuffle,
        /// The payload's size before compression (§5.3.3).
        uncompressed_len: u64,
    },
}

impl Compression {
    /// The Compression byte: `Shuffle << 4 | Codec`.
    pub fn tag(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Compressed { codec, shuffle, .. } => (shuffle as u8) << 4 | codec as u8,
        }
    }

    /// Splits a Compression byte into codec and shuffle. spec: wire.md §12.1 — undefined values
    /// and a shuffle without a codec are `UnknownCompression`. `None` means no codec.
    pub fn parse_tag(tag: u8) -> Result<Option<(Codec, Shuffle)>, FrameError> {
        let unknown = FrameError::UnknownCompression { compression: tag };
        let shuffle = match tag >> 4 {
            0 => Shuffle::None,
            1 => Shuffle::Bytes2,
            2 => Shuffle::Bytes4,
            3 => Shuffle::Bytes8,
            _ => return Err(unknown),
        };
        match (tag & 0x0f, shuffle) {
            (0, Shuffle::None) => Ok(None),
            (1, s) => Ok(Some((Codec::Lz4, s))),
            (2, s) => Ok(Some((Codec::Snappy, s))),
            _ => Err(unknown),
        }
    }
}
