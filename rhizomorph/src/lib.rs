//! Rhizomorph: a multiplexed binary-protocol transport for RPC systems.
//!
//! Many prioritized channels — `control` > `rpc` > `stream` > `bulk` — over one QUIC or
//! WebSocket connection, specified in `spec/wire.md`. This is the crate an RPC server links;
//! it is layered as the spec is, arrows running one way (face → transport → protocol):
//!
//! - [`Endpoint`], [`Listener`], [`Connection`], [`Sender`]: the async API — waiting for
//!   send-buffer room and handing out received messages, nothing else.
//! - [`transport`]: thin tokio drivers that pump a session over a socket — WebSocket
//!   (`transport::ws`, legacy mode beside it) and QUIC (`transport::quic`) — and the state they
//!   share with the face. They never import the face.
//! - [`config`], [`error`], [`router`] (the router behind `rhizomorph serve`).
//! - The protocol itself, sans-IO, is the `rhizomorph-proto` crate, re-exported here under the
//!   names it always had: [`frame`] (codec), [`header`] (routing headers and their tables),
//!   [`session`] (the multiplexing state machine), [`payload`] (rkyv, typed arrays,
//!   compression), [`websocket`] (RFC 6455), [`legacy`] (hypha-rpc's msgpack mode). Its
//!   `Cargo.toml` has no tokio, no quinn and no sockets: the compiler holds the arrow.
//!
//! ```no_run
//! use rhizomorph::{Channel, Config, Endpoint, RoutingHeader};
//! # async fn demo() -> Result<(), rhizomorph::Error> {
//! let mut conn = Endpoint::connect("ws://127.0.0.1:7878/", Config::default()).await?;
//! conn.send(Channel::Rpc, RoutingHeader::new().with("to", "echo"), "ping").await?;
//! let reply = conn.recv().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
#[cfg(feature = "redis")]
pub mod cluster;
pub mod config;
pub mod connection;
pub mod endpoint;
pub mod error;
mod link;
pub mod manager;
pub mod receiver;
pub mod router;
pub mod sender;
mod signal;
#[cfg(feature = "tarpc")]
pub mod tarpc;
pub mod tokens;
pub mod transfer;
pub mod transport;

/// Process-wide connection counters (per mode, legacy fallbacks, legacy pings).
pub use transport::metrics;
pub use transport::resume::SessionEvent;

// The sans-IO protocol (the `rhizomorph-proto` crate), under the names this crate always had.
/// rkyv, as rhizomorph uses it (the [`wire_type!`] macro derives through this path).
pub use rhizomorph_proto::rkyv;
pub use rhizomorph_proto::wire_type;
pub use rhizomorph_proto::{exchange, frame, header, legacy, payload, session, websocket};

pub use call::{Call, CancelCursor, Cancelled, ReplyTo, RequestKey};
pub use config::{AuthRequest, CompressionPolicy, Config};
pub use connection::{CloseReason, Connection, Message, Mode};
pub use endpoint::{Endpoint, Listener, QuicClient};
pub use error::{ConnectStage, Error};
pub use frame::{Channel, ErrorCode};
pub use header::RoutingHeader;
pub use receiver::ChannelReceiver;
pub use sender::{ChannelSink, Sender, Sending};
pub use session::OutgoingMessage;
pub use transfer::{IncomingTransfer, TransferReader, TRANSFER_PART_SIZE};

/// The README's examples, compiled and run as doc tests so they cannot go stale.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
