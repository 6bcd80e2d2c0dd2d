//! RFC 6455 WebSocket, sans-IO: the opening handshake and the frame codec that the WebSocket
//! transport drives (wire.md §16).
//!
//! Owns WebSocket's own bytes — HTTP upgrade heads, frame headers, masking — and its rules.
//! Rhizomorph frames its batches itself because the general-purpose crates copy every message
//! at least twice on the way through (into a write buffer, out of a zeroed read buffer); here a
//! batch leaves as a header plus the batch (`writev`), and a received message is a view of the
//! bytes the socket read, unmasked in place. Never touches a socket: `transport::ws::socket` does.

pub mod frame;
pub mod handshake;

pub use frame::{
    apply_mask, CloseFrame, Decoded, FrameHead, OpCode, Role, WsDecoder, WsEncoder, WsEvent,
    WsFrameError,
};
pub use handshake::{HandshakeError, UpgradeRequest, UpgradeResponse};
