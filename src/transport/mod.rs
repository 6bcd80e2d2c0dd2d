//! Transports: thin tokio drivers that pump a [`Session`](crate::session::Session) over a socket.
//!
//! Owns sockets, TLS and tasks. Never interprets frames: everything protocol-shaped is the
//! session's.

pub(crate) mod driver;
pub mod legacy;
pub mod quic;
pub mod tls;
pub mod ws;
pub(crate) mod ws_io;
