//! The rhizomorph protocol, sans-IO: everything `spec/wire.md` and `spec/legacy.md` define, as
//! values that take bytes and return bytes and events.
//!
//! This crate has no tokio, no sockets, no TLS and no clock reads in its dependencies or its
//! code: time is passed in as `Instant`s, so every state machine runs in tests on a virtual
//! clock and under a fuzzer. The `rhizomorph` crate drives it over WebSocket and QUIC.
//!
//! The rooms, from the bottom up (arrows run one way: session → header → frame):
//!
//! - [`frame`]: the frame codec (wire.md §2, §4, §5): bytes ⇄ frames, checked against the
//!   negotiated limits; one file per frame type.
//! - [`header`]: routing headers and their per-channel compression tables (§6).
//! - [`payload`]: schema-cached rkyv payloads, typed arrays, compression (§11, §12).
//! - [`session`]: one end of a native connection (§3, §7–§10, §13, §14, §17).
//! - [`websocket`]: the RFC 6455 handshake and frame codec (§16).
//! - [`legacy`]: hypha-rpc's msgpack codec, handshake and routing rules (`spec/legacy.md`).
//! - [`hex`]: hex text ⇄ bytes, as the vectors and `rhizomorph inspect` write them.
//!
//! ```
//! use std::time::Instant;
//! use rhizomorph_proto::frame::Channel;
//! use rhizomorph_proto::header::RoutingHeader;
//! use rhizomorph_proto::session::{Event, OutgoingMessage, Session, SessionConfig, Target};
//!
//! let now = Instant::now();
//! let (mut client, mut server) = Session::connected_pair(SessionConfig::default(), SessionConfig::default(), now);
//! client.send(Channel::Rpc, OutgoingMessage::new(RoutingHeader::new().with("to", "echo"), "hi")).unwrap();
//! while let Some(write) = client.poll_transmit(now, Target::Batch, usize::MAX) {
//!     server.handle_batch(now, write.into_bytes());
//! }
//! assert!(matches!(server.poll_event(), Some(Event::Message(m)) if &m.payload[..] == b"hi"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod exchange;
pub mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod hex;
pub mod legacy;
pub mod payload;
pub mod session;
pub mod websocket;

/// rkyv, as rhizomorph uses it (the [`wire_type!`] macro derives through this path).
pub use rkyv;
