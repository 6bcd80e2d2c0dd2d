//! Routing headers (wire.md §6): the header a router reads, and its compression.
//!
//! Owns the header as the application sees it ([`RoutingHeader`], [`routing`]) and the per-channel
//! header tables that encode and decode it ([`HeaderEncoder`], [`HeaderDecoder`], [`table`]).
//! Sits beside [`frame`](crate::frame), below the session, so the legacy codec and a router use
//! headers without the session. Never reads or writes frames itself: a MESSAGE frame carries
//! the header block these produce.

mod arena;
pub mod routing;
mod static_table;
pub mod table;

pub use routing::{HeaderField, RoutingHeader};
pub use table::{
    HeaderDecoder, HeaderEncoder, HeaderError, MAX_HEADER_FIELDS, MAX_NAME_LEN, STATIC_TABLE,
};
