//! SCHEMA (wire.md §5.5): binds a per-channel schema id to a type name and layout hash.
//!
//! Owns the SCHEMA layout and its bounds. Never resolves the binding to a Rust type: the
//! payload module's schema cache does (§11.2).

use bytes::{BufMut, Bytes, BytesMut};

use super::channel::Channel;
use super::error::{EncodeError, FrameError};
use super::reader::PayloadReader;
use super::settings::Settings;
use super::writer;
use super::FrameType;

/// Binds `schema_id` on `channel` (sender's direction) to a type (wire.md §5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFrame {
    /// The channel the binding belongs to.
    pub channel: Channel,
    /// The id later MESSAGE frames refer to.
    pub schema_id: u64,
    /// The type's 64-bit layout hash (§11.2.2).
    pub layout_hash: u64,
    /// The type's name, 1 – 255 bytes of UTF-8.
    pub name: String,
}

impl SchemaFrame {
    /// Longest schema name (wire.md §5.5).
    pub const MAX_NAME: u64 = 255;

    pub(crate) fn load(payload: Bytes, limits: &Settings) -> Result<SchemaFrame, FrameError> {
        let mut r = PayloadReader::new(FrameType::SCHEMA, payload);
        let channel = Channel::from_id(r.u8("channel")?)?;
        let schema_id = r.varint("schema_id")?;
        check_schema_id(schema_id, limits)?;
        let layout_hash = r.u64("layout_hash")?;
        let name = r.text("name", 1, Self::MAX_NAME)?;
        r.finish()?;
        Ok(SchemaFrame {
            channel,
            schema_id,
            layout_hash,
            name,
        })
    }

    pub(crate) fn encode_payload(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        dst.put_u8(self.channel.id());
        writer::varint(dst, "schema_id", self.schema_id)?;
        dst.put_u64(self.layout_hash);
        writer::string(
            dst,
            "name",
            self.name.as_bytes(),
            1,
            Self::MAX_NAME as usize,
        )
    }
}

/// spec: wire.md §5.5 — a Schema Id at or over the receiver's `SCHEMA_CACHE_SIZE` is
/// `LIMIT_EXCEEDED`. With a cache size of 0 no id is valid.
pub(crate) fn check_schema_id(schema_id: u64, limits: &Settings) -> Result<(), FrameError> {
    if schema_id >= limits.schema_cache_size {
        return Err(FrameError::FieldOutOfRange {
            field: "schema_id",
            value: schema_id,
            min: 0,
            max: limits.schema_cache_size.saturating_sub(1),
        });
    }
    Ok(())
}
