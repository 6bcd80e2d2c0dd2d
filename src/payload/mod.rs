//! Payloads (wire.md §11, §12): content-aware compression now; schema-cached rkyv payloads and
//! typed arrays build on it.
//!
//! Owns what happens to payload bytes between the application and a MESSAGE's chunks. Never
//! touches frames or routing headers.

pub mod compress;

pub use compress::{choose, compress, decompress, CompressionError, ContentHint};
