//! Payloads (wire.md §11, §12): schema-cached rkyv payloads, typed arrays and content-aware
//! compression.
//!
//! Owns what happens to payload bytes between the application and a MESSAGE's chunks
//! ([`pipeline`]: the send side's compression decision). Never touches frames or routing
//! headers.

pub mod compress;
pub mod pipeline;
pub mod schema;
pub mod typed_array;

pub use compress::{choose, compress, decompress, CompressionError, ContentHint};
pub use pipeline::{compress_for_send, CompressionPolicy};
pub use schema::{
    encode, layout_hash_of, ArchivedPayload, PayloadError, SchemaBinding, Serializer, WireType,
};
pub use typed_array::{DType, Element, TypedArray, TypedArrayError, TypedArrayView};
