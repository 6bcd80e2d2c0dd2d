//! The flush hook: how a sender writes the message it just queued on its own task, when the
//! transport can take it at once.
//!
//! Owns the one interface both drivers offer the face for that: the WebSocket driver's direct
//! writer (the batch, when the writer task is not busy with the socket) and the QUIC driver's
//! stream slots (the channel's stream, when no write is in flight on it). Never waits: what
//! cannot be written at once is left to the writer task, which the hook wakes.

use std::task::Context;

use super::shared::Shared;
use crate::frame::Channel;
use crate::session::Session;

/// Writes what a send just queued, on the sender's task, if the transport takes it at once
/// (one task switch less per request or reply, wire.md §16.4); otherwise wakes the writer task.
pub(crate) trait Flush<S = Session>: Send + Sync {
    /// A message was queued on `channel`. Writes what the session has for it now if the
    /// transport is idle, else (or for whatever is left) wakes the writer task. Returns at once:
    /// `cx` is only for polling the transport's readiness, never registered to wait.
    fn after_queue(&self, shared: &Shared<S>, channel: Channel, cx: &mut Context<'_>);

    /// A batch was received from the peer (the WebSocket writer allows one direct write per
    /// received batch, so a burst of one-way sends still leaves in batches).
    fn on_received(&self) {}
}
