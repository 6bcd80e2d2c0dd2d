//! The handle the face holds: one type for both modes, and the one place where they differ.
//!
//! Owns [`Handle`], what [`Connection`](crate::Connection) and [`Sender`](crate::Sender) call
//! (queue a message, give back a received message's credit, close, read counters), implemented
//! once for [`Shared`] over either session, and [`Core`], what each session (the native
//! [`Session`], the [`LegacySession`]) does for those calls. Never waits and never touches a
//! socket: waiting is the face's, writing the drivers'.

use std::task::Context;
use std::time::Duration;

use crate::error::Error;
use crate::frame::{Channel, Compression, ErrorCode, PayloadEncoding};
use crate::legacy::session::close_code;
use crate::legacy::{LegacySendError, LegacySession};
use crate::session::{Message, OutgoingMessage, Session, SessionStats};

use super::shared::{Common, Shared};

/// What the face asks of an open connection, whatever its mode.
pub(crate) trait Handle: Send + Sync {
    /// The state every mode shares (the end, the wake-ups, what the peer said).
    fn common(&self) -> &Common;

    /// The message as this mode sends it: compressed if the policy says so (native), or
    /// refused if the mode cannot carry it (legacy: no rkyv, typed arrays or compression).
    fn prepare(
        &self,
        message: OutgoingMessage,
        as_received: Option<Compression>,
    ) -> Result<OutgoingMessage, Error>;

    /// Queues `message` if the send buffer has room (taking it out of the option); `Ok(None)`
    /// if it has not (wait for [`Common::changed`] and try again).
    fn try_send(
        &self,
        channel: Channel,
        message: &mut Option<OutgoingMessage>,
    ) -> Result<Option<u64>, Error>;

    /// After a message was queued: write it on this task if the transport is idle, else wake
    /// the writer. Never waits.
    fn after_queue(&self, channel: Channel, cx: &mut Context<'_>);

    /// The application took `message`: its credit goes back (the peer or our reader may go
    /// on).
    fn received(&self, message: &Message);

    /// The application is ready for the peer (legacy server: `connection_info` may leave,
    /// legacy.md §L4.2). Nothing in native mode.
    fn mark_ready(&self);

    /// Cancels our message `id` on `channel` (native only: a legacy message leaves whole).
    fn cancel(&self, channel: Channel, id: u64);

    /// A reply the application owed was sent (or is no longer wanted): a drain may end.
    fn reply_settled(&self);

    /// Graceful close: what is queued leaves, then the close.
    fn close_gracefully(&self);

    /// Close with `code` and `reason`.
    fn close_now(&self, code: ErrorCode, reason: &str);

    /// Counters.
    fn stats(&self) -> SessionStats;

    /// The measured round trip, once known.
    fn rtt(&self) -> Option<Duration>;

    /// Payload bytes queued on `channel` and not yet sent.
    fn queued_bytes(&self, channel: Channel) -> u64;

    /// What `channel`'s queue charges against the send buffer (payload and per-message
    /// overhead).
    fn queued_charge(&self, channel: Channel) -> u64;
}

/// What a session does for the face's calls; [`Handle`] is implemented once over it.
pub(crate) trait Core: Send + Sized + 'static {
    /// See [`Handle::prepare`].
    fn prepare(
        shared: &Shared<Self>,
        message: OutgoingMessage,
        as_received: Option<Compression>,
    ) -> Result<OutgoingMessage, Error>;

    /// Queues `message` if `send_buffer` allows; `Ok(None)` if full.
    fn try_send(
        &mut self,
        channel: Channel,
        message: &mut Option<OutgoingMessage>,
        send_buffer: u64,
    ) -> Result<Option<u64>, Error>;

    /// Gives back `credit` for a message on `channel`; true if the writer has work from it.
    fn release(&mut self, channel: Channel, credit: u64) -> bool;

    /// See [`Handle::mark_ready`]; true if the writer has work from it.
    fn mark_ready(&mut self) -> bool;

    /// See [`Handle::cancel`].
    fn cancel(&mut self, channel: Channel, id: u64);

    /// See [`Handle::reply_settled`]; true if the writer has work from it.
    fn reply_settled(&mut self) -> bool;

    /// The application owes `n` replies a drain waits for.
    fn owe_replies(&mut self, n: u64);

    /// See [`Handle::close_gracefully`].
    fn close_gracefully(&mut self);

    /// See [`Handle::close_now`].
    fn close_now(&mut self, code: ErrorCode, reason: &str);

    /// See [`Handle::stats`].
    fn stats(&self) -> SessionStats;

    /// See [`Handle::rtt`].
    fn rtt(&self) -> Option<Duration>;

    /// See [`Handle::queued_bytes`].
    fn queued_bytes(&self, channel: Channel) -> u64;

    /// See [`Handle::queued_charge`].
    fn queued_charge(&self, channel: Channel) -> u64;
}

impl<S: Core> Handle for Shared<S> {
    fn common(&self) -> &Common {
        self
    }

    fn prepare(
        &self,
        message: OutgoingMessage,
        as_received: Option<Compression>,
    ) -> Result<OutgoingMessage, Error> {
        S::prepare(self, message, as_received)
    }

    fn try_send(
        &self,
        channel: Channel,
        message: &mut Option<OutgoingMessage>,
    ) -> Result<Option<u64>, Error> {
        self.lock().try_send(channel, message, self.send_buffer)
    }

    fn after_queue(&self, channel: Channel, cx: &mut Context<'_>) {
        Shared::after_queue(self, channel, cx)
    }

    fn received(&self, message: &Message) {
        let wake = self.lock().release(message.channel, message.credit);
        if wake {
            self.wake_writer.notify_one();
        }
        self.readable.notify_waiters();
    }

    fn mark_ready(&self) {
        if self.lock().mark_ready() {
            self.wake_writer.notify_one();
        }
    }

    fn cancel(&self, channel: Channel, id: u64) {
        self.lock().cancel(channel, id);
        self.wake_writer.notify_one();
    }

    fn reply_settled(&self) {
        if self.lock().reply_settled() {
            self.wake_writer.notify_one();
        }
    }

    fn close_gracefully(&self) {
        let mut s = self.lock();
        // The replies the application owes, counted under the session's lock so that none is
        // settled between the count and the drain's start.
        let owed = self.inbox.start_draining();
        s.owe_replies(owed);
        s.close_gracefully();
        drop(s);
        self.wake_writer.notify_one();
    }

    fn close_now(&self, code: ErrorCode, reason: &str) {
        self.lock().close_now(code, reason);
        self.wake_writer.notify_one();
    }

    fn stats(&self) -> SessionStats {
        self.lock().stats()
    }

    fn rtt(&self) -> Option<Duration> {
        self.lock().rtt()
    }

    fn queued_bytes(&self, channel: Channel) -> u64 {
        self.lock().queued_bytes(channel)
    }

    fn queued_charge(&self, channel: Channel) -> u64 {
        self.lock().queued_charge(channel)
    }
}

/// Native mode: the session's flow control, compression policy and shutdown (wire.md §9, §12,
/// §14).
impl Core for Session {
    fn prepare(
        shared: &Shared<Session>,
        mut message: OutgoingMessage,
        as_received: Option<Compression>,
    ) -> Result<OutgoingMessage, Error> {
        if let Compression::Compressed { codec, .. } = message.compression {
            // Still compressed as it arrived (a router's raw forward): sent as it is where the
            // peer accepts the codec, decompressed here where it does not (wire.md §6.1).
            let accepted = shared
                .peer_settings
                .get()
                .is_some_and(|p| p.accepts_codec(codec));
            if !accepted {
                decompress_for_peer(&mut message, shared.max_message_size)?;
            }
            return Ok(message);
        }
        // spec: wire.md §12.2 — compressed if the policy says so and the content looks worth
        // it; a forwarded message keeps its original sender's choice where the peer accepts it.
        if message.compression == Compression::None {
            if let Some((payload, compression)) = crate::payload::compress_for_send(
                &message.payload,
                message.encoding,
                shared.compression,
                shared.peer_settings.get(),
                as_received,
            ) {
                message.payload = payload;
                message.compression = compression;
            }
        }
        Ok(message)
    }

    fn try_send(
        &mut self,
        channel: Channel,
        message: &mut Option<OutgoingMessage>,
        send_buffer: u64,
    ) -> Result<Option<u64>, Error> {
        let Some(len) = message
            .as_ref()
            .map(|m| m.payload.len() as u64 + crate::session::message_charge(m))
        else {
            return Ok(None);
        };
        // Charged per message as well as per byte: a flood of empty messages to a peer that
        // grants no credit waits here like a large one (never an unbounded queue).
        let queued = self.queued_charge(channel);
        if queued != 0 && queued + len > send_buffer {
            return Ok(None);
        }
        let Some(m) = message.take() else {
            return Ok(None);
        };
        // A schema is bound under the same lock as the send: its SCHEMA frame leaves first.
        Ok(Some(self.send(channel, m)?))
    }

    fn release(&mut self, channel: Channel, credit: u64) -> bool {
        Session::release(self, channel, credit);
        self.credit_due()
    }

    fn mark_ready(&mut self) -> bool {
        false
    }

    fn cancel(&mut self, channel: Channel, id: u64) {
        Session::cancel(self, channel, id);
    }

    fn reply_settled(&mut self) -> bool {
        Session::reply_settled(self);
        self.wants_transmit()
    }

    fn owe_replies(&mut self, n: u64) {
        Session::owe_replies(self, n);
    }

    fn close_gracefully(&mut self) {
        self.goaway(ErrorCode::NO_ERROR, "closing");
    }

    fn close_now(&mut self, code: ErrorCode, reason: &str) {
        self.close(code, reason);
    }

    fn stats(&self) -> SessionStats {
        Session::stats(self).clone()
    }

    fn rtt(&self) -> Option<Duration> {
        Session::rtt(self)
    }

    fn queued_bytes(&self, channel: Channel) -> u64 {
        Session::queued_bytes(self, channel)
    }

    fn queued_charge(&self, channel: Channel) -> u64 {
        Session::queued_charge(self, channel)
    }
}

/// Legacy mode (legacy.md §L3): one channel on the wire, msgpack payloads only, a send buffer
/// instead of credit.
impl Core for LegacySession {
    fn prepare(
        shared: &Shared<LegacySession>,
        mut message: OutgoingMessage,
        _as_received: Option<Compression>,
    ) -> Result<OutgoingMessage, Error> {
        // A native message forwarded still compressed: legacy peers take none.
        decompress_for_peer(&mut message, shared.max_message_size)?;
        if message.schema.is_some() || matches!(message.encoding, PayloadEncoding::Rkyv { .. }) {
            return Err(Error::NativeOnly("rkyv payloads"));
        }
        if message.encoding == PayloadEncoding::TypedArray {
            return Err(Error::NativeOnly("typed arrays"));
        }
        Ok(message)
    }

    fn try_send(
        &mut self,
        _channel: Channel,
        message: &mut Option<OutgoingMessage>,
        _send_buffer: u64,
    ) -> Result<Option<u64>, Error> {
        let Some(m) = message.as_ref() else {
            return Ok(None);
        };
        // The payload is reference-counted: cloning it copies nothing.
        match self.send(&m.header, m.payload.clone()) {
            Ok(id) => {
                message.take();
                Ok(Some(id))
            }
            Err(LegacySendError::Full { .. }) => Ok(None),
            Err(LegacySendError::Closed) => Err(Error::Closed {
                code: ErrorCode::NO_ERROR,
                reason: "the legacy connection is closing".into(),
            }),
            Err(LegacySendError::Encode(e)) => Err(e.into()),
        }
    }

    fn release(&mut self, _channel: Channel, credit: u64) -> bool {
        LegacySession::release(self, credit);
        false
    }

    fn mark_ready(&mut self) -> bool {
        LegacySession::mark_ready(self);
        self.wants_transmit()
    }

    fn cancel(&mut self, _channel: Channel, _id: u64) {}

    fn reply_settled(&mut self) -> bool {
        false
    }

    fn owe_replies(&mut self, _n: u64) {}

    fn close_gracefully(&mut self) {
        self.close(close_code::NORMAL, "closing", true);
    }

    fn close_now(&mut self, code: ErrorCode, reason: &str) {
        let ws = match code {
            ErrorCode::NO_ERROR => close_code::NORMAL,
            // Refused (an identity already in use): what hypha closes a refused client with.
            ErrorCode::AUTH_FAILED => close_code::POLICY,
            _ => close_code::INTERNAL,
        };
        // What is queued still leaves first: a legacy message is never cut (legacy.md §L2.4).
        self.close(ws, reason, true);
    }

    fn stats(&self) -> SessionStats {
        LegacySession::stats(self).clone()
    }

    fn rtt(&self) -> Option<Duration> {
        LegacySession::rtt(self)
    }

    fn queued_bytes(&self, _channel: Channel) -> u64 {
        LegacySession::queued_bytes(self) as u64
    }

    fn queued_charge(&self, _channel: Channel) -> u64 {
        LegacySession::queued_bytes(self) as u64
    }
}

/// Decompresses a message's payload in place (within `max`, wire.md §12.3) for a peer that
/// does not take its codec. Nothing for an uncompressed one.
fn decompress_for_peer(message: &mut OutgoingMessage, max: u64) -> Result<(), Error> {
    if message.compression != Compression::None {
        let payload = crate::payload::decompress(&message.payload, message.compression, max)
            .map_err(crate::payload::PayloadError::from)?;
        message.payload = payload;
        message.compression = Compression::None;
    }
    Ok(())
}
