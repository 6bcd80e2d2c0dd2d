//! Sending on a connection, and controlling it from any task.
//!
//! Owns [`Sender`] (queue a message on a channel, waiting for send-buffer room; forward a
//! received one; its poll face), [`ChannelSink`] (a `futures::Sink` of messages on one
//! channel), and the lifecycle calls every handle shares (close, cancel, wait for the end).
//! Never touches a socket and never knows the transport: the handle does
//! ([`transport`](crate::transport)).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::error::Error;
use crate::frame::{Channel, Compression, ErrorCode, PayloadEncoding};
use crate::header::RoutingHeader;
use crate::link::{Link, DRAIN_DEADLINE};
use crate::payload::{Element, PayloadError, SchemaBinding, TypedArray, WireType};
use crate::session::{Message, OutgoingMessage};
use crate::transport::handle::Handle;
use crate::transport::shared::CloseReason;

/// A cloneable handle that sends on a connection (e.g. one per task), and closes it, cancels
/// on it and waits for its end from any task.
///
/// Cheap to clone (a reference count). The connection stays open while its
/// [`Connection`](crate::Connection), any of its senders or any of its
/// [`ChannelReceiver`](crate::ChannelReceiver)s lives; when the last is dropped it closes
/// gracefully (GOAWAY, what is in flight finishes, CLOSE; at most 10 s, wire.md §14.1).
#[derive(Clone)]
pub struct Sender {
    pub(crate) link: Arc<Link>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.close_reason())
            .finish()
    }
}

impl Sender {
    /// Queues a message on `channel`, waiting while the channel's send buffer is full
    /// (backpressure: the peer's credit, wire.md §9.2). Returns its id on the channel
    /// (for [`Sender::cancel`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropped before it returns, the message was either not queued at all or
    /// queued whole (it is then sent; its id is lost, so it cannot be cancelled).
    pub fn send(
        &self,
        channel: Channel,
        header: RoutingHeader,
        payload: impl Into<Bytes>,
    ) -> Sending<'_> {
        self.send_message(channel, OutgoingMessage::new(header, payload))
    }

    /// Sends `value` as a schema-cached rkyv payload (wire.md §11.2): the first message of a
    /// type on a channel binds its Schema Id, later ones carry only the id.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`send`](Self::send).
    pub async fn send_typed<T>(
        &self,
        channel: Channel,
        header: RoutingHeader,
        value: &T,
    ) -> Result<u64, Error>
    where
        T: WireType + for<'a> rkyv::Serialize<crate::payload::Serializer<'a>>,
    {
        let archive = crate::payload::encode(value)?;
        let message = OutgoingMessage::new(header, Bytes::from_owner(archive))
            .with_schema(SchemaBinding::of::<T>());
        self.send_inner(channel, message, None).await
    }

    /// Sends a received message on: same header, payload bytes (not decoded, not copied) and
    /// encoding. An rkyv payload is bound on this connection to the schema its sender bound
    /// (ids are per connection, §11.2), so a router forwards typed messages without knowing
    /// their types. A message whose payload failed to decompress is refused.
    ///
    /// Compression follows the original sender's choice (§12.2), not this connection's policy:
    /// a message that arrived uncompressed leaves uncompressed (its sender judged it not worth
    /// it; judging again would cost a router a compression attempt per message), one that
    /// arrived compressed is compressed again with the same codec and shuffle when the peer
    /// accepts the codec.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`send`](Self::send).
    pub async fn forward(&self, channel: Channel, message: Message) -> Result<u64, Error> {
        let (out, compression) = Self::forwardable(message)?;
        self.send_inner(channel, out, Some(compression)).await
    }

    /// Like [`forward`](Self::forward), but never waits: [`Error::WouldBlock`] if the send
    /// buffer is full (a router skips a slow receiver of a broadcast with it, wire.md §6.1.2).
    pub fn try_forward(&self, channel: Channel, message: Message) -> Result<u64, Error> {
        let (out, compression) = Self::forwardable(message)?;
        let handle = self.handle();
        let mut out = Some(handle.prepare(out, Some(compression))?);
        if let Some(reason) = handle.common().close_reason() {
            return Err(reason.to_error());
        }
        let id = handle
            .try_send(channel, &mut out)?
            .ok_or(Error::WouldBlock)?;
        // The flush hook only polls the transport's readiness and never waits: what the
        // transport does not take at once is left to the writer task, which it wakes.
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        handle.after_queue(channel, &mut cx);
        Ok(id)
    }

    /// A received message as it is sent on: header, payload and encoding as received (still
    /// compressed, if it came from [`Connection::recv_raw`]), an rkyv payload bound to the
    /// schema its sender bound; one that failed is refused.
    fn forwardable(message: Message) -> Result<(OutgoingMessage, Compression), Error> {
        if let Some(e) = message.error {
            return Err((*e).into());
        }
        let mut out =
            OutgoingMessage::new(message.header, message.payload).with_encoding(message.encoding);
        if message.still_compressed {
            // As it traveled (a router's raw receive): forwarded without decompressing.
            out.compression = message.compression;
        }
        if let PayloadEncoding::Rkyv { schema_id } = message.encoding {
            let binding = message
                .schema
                .ok_or(PayloadError::UnknownSchemaId { schema_id })?;
            out = out.with_schema(*binding);
        }
        Ok((out, message.compression))
    }

    /// Why the connection ended, if it has (the same as [`Connection::close_reason`](crate::Connection::close_reason)).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.handle().common().close_reason()
    }

    pub(crate) fn handle(&self) -> &dyn Handle {
        &*self.link.handle
    }

    /// The poll face of [`send_message`](Self::send_message), for code that implements
    /// futures by hand: queues the message in `slot` on `channel` if the send buffer has room
    /// (taking it out of the slot and returning its id), else registers `cx` to be woken when
    /// room may have opened and returns `Pending` with the message still in the slot. The
    /// config's compression policy runs on each attempt; [`ChannelSink`] runs it once.
    pub fn poll_send(
        &self,
        cx: &mut Context<'_>,
        channel: Channel,
        slot: &mut Option<OutgoingMessage>,
    ) -> Poll<Result<u64, Error>> {
        let Some(m) = slot.take() else {
            return Poll::Ready(Err(Error::EmptySlot));
        };
        let mut prepared = Some(match self.handle().prepare(m, None) {
            Ok(m) => m,
            Err(e) => return Poll::Ready(Err(e)),
        });
        let r = self.poll_queue(cx, channel, &mut prepared);
        if r.is_pending() {
            *slot = prepared;
        }
        r
    }

    /// Queues the already prepared message in `slot`, or registers `cx` for room.
    pub(crate) fn poll_queue(
        &self,
        cx: &mut Context<'_>,
        channel: Channel,
        slot: &mut Option<OutgoingMessage>,
    ) -> Poll<Result<u64, Error>> {
        let handle = self.handle();
        let common = handle.common();
        let r = common.changed.poll_for(cx, || {
            if let Some(reason) = common.close_reason() {
                return Some(Err(reason.to_error()));
            }
            handle.try_send(channel, slot).transpose()
        });
        if let Poll::Ready(Ok(_)) = r {
            handle.after_queue(channel, cx);
        }
        r
    }

    /// Whether `channel`'s send buffer has room now (a send would not wait, unless the
    /// message is larger than the room). Registers `cx` to be woken when it may have.
    pub fn poll_ready(&self, cx: &mut Context<'_>, channel: Channel) -> Poll<Result<(), Error>> {
        let handle = self.handle();
        let common = handle.common();
        common.changed.poll_for(cx, || {
            if let Some(reason) = common.close_reason() {
                return Some(Err(reason.to_error()));
            }
            (handle.queued_charge(channel) < common.send_buffer).then_some(Ok(()))
        })
    }

    /// A `futures::Sink` of messages on `channel` through this sender (see [`ChannelSink`]).
    pub fn sink(&self, channel: Channel) -> ChannelSink {
        ChannelSink {
            sender: self.clone(),
            channel,
            pending: None,
        }
    }

    /// Cancels our message `id` (as a send returned it) on `channel` (wire.md §5.7.1):
    /// dropped if it has not started, aborted mid-transfer if it has, nothing if it has been
    /// sent. Legacy mode cannot cancel (a message leaves whole): nothing happens.
    pub fn cancel(&self, channel: Channel, id: u64) {
        self.handle().cancel(channel, id);
    }

    /// Graceful shutdown (wire.md §14.1): GOAWAY, finish what is in flight, then CLOSE. Waits
    /// up to 10 s for the drain, then closes. Legacy mode: what is queued is written, then a
    /// WebSocket close (1000).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the close has begun when the first poll returns; dropping the future
    /// only stops waiting for it (and the 10 s fallback with it).
    pub async fn close(&self) {
        self.handle().close_gracefully();
        if tokio::time::timeout(DRAIN_DEADLINE, self.closed())
            .await
            .is_err()
        {
            self.close_now(ErrorCode::NO_ERROR, "drain timed out");
        }
    }

    /// Closes at once with `code` (wire.md §14.2): queued messages fail. Legacy mode: what is
    /// queued is written first (a legacy message is never cut), then a WebSocket close (1000
    /// for `NO_ERROR`, 1011 otherwise).
    pub fn close_now(&self, code: ErrorCode, reason: &str) {
        self.handle().close_now(code, reason);
    }

    /// Waits until the connection is over and returns why.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits.
    pub async fn closed(&self) -> CloseReason {
        let common = self.handle().common();
        common.changed.wait_for(|| common.close_reason()).await
    }

    /// The next event of a resumable session (see
    /// [`Connection::next_session_event`](crate::Connection::next_session_event)): any handle
    /// of the connection may wait for them; each event goes to one waiter.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an event is taken only when it is returned.
    pub async fn next_session_event(&self) -> Option<crate::SessionEvent> {
        let common = self.handle().common();
        common.session_events.next(|| common.is_closed()).await
    }

    /// Whether the peer has sent GOAWAY (no new messages may be sent). Never in legacy mode.
    pub fn peer_going_away(&self) -> bool {
        self.handle()
            .common()
            .peer_goaway
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Payload bytes queued on `channel` and not yet sent (legacy mode: on all channels).
    pub fn queued_bytes(&self, channel: Channel) -> u64 {
        self.handle().queued_bytes(channel)
    }

    /// Sends a typed array (wire.md §11.4) of `data` with shape `dims` (empty: one dimension).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`send`](Self::send).
    pub async fn send_array<T: Element>(
        &self,
        channel: Channel,
        header: RoutingHeader,
        data: &[T],
        dims: &[u64],
    ) -> Result<u64, Error> {
        let payload = TypedArray::encode(data, dims)?;
        let message =
            OutgoingMessage::new(header, payload).with_encoding(PayloadEncoding::TypedArray);
        self.send_message(channel, message).await
    }

    /// Like [`send`](Self::send) with full control of encoding and compression. A message
    /// whose compression is `None` is compressed here if the config's policy says so.
    ///
    /// In legacy mode the channel is not on the wire (one WebSocket message per message), the
    /// payload must be empty or one msgpack value, and a compressed one is decompressed first
    /// (legacy peers take no compression).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`send`](Self::send).
    pub fn send_message(&self, channel: Channel, message: OutgoingMessage) -> Sending<'_> {
        self.send_inner(channel, message, None)
    }

    /// `as_received`: forwarding a message that arrived with this compression (see
    /// [`forward`](Self::forward)); `None`: the config's policy decides.
    pub(crate) fn send_inner(
        &self,
        channel: Channel,
        message: OutgoingMessage,
        as_received: Option<Compression>,
    ) -> Sending<'_> {
        Sending {
            sender: self,
            channel,
            message: Some(message),
            unprepared: Some(as_received),
        }
    }
}

/// The future of a send ([`Sender::send`], [`Sender::send_message`],
/// [`Connection::send`](crate::Connection::send)): resolves to the message's id on its channel
/// once it is queued, or to the error that kept it from being queued.
///
/// A plain struct rather than an `async fn`'s state machine: a send that finds room (the
/// common case) is one poll, and awaiting it moves a few words, not a nest of futures (issue
/// 24: the nest cost a tenth of a one-way message's instructions).
///
/// # Cancel safety
///
/// Cancel-safe: dropped before it resolves, the message was not queued (a send queues it and
/// resolves in the same poll).
#[must_use = "a send does nothing unless awaited"]
pub struct Sending<'a> {
    sender: &'a Sender,
    channel: Channel,
    /// The message until it is queued.
    message: Option<OutgoingMessage>,
    /// `Some(as_received)` until the config's compression policy has run on the message (it
    /// runs once, on the first poll).
    unprepared: Option<Option<Compression>>,
}

impl std::fmt::Debug for Sending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sending")
            .field("channel", &self.channel)
            .field("queued", &self.message.is_none())
            .finish()
    }
}

impl std::future::Future for Sending<'_> {
    type Output = Result<u64, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(as_received) = this.unprepared.take() {
            let Some(message) = this.message.take() else {
                return Poll::Ready(Err(Error::EmptySlot));
            };
            match this.sender.handle().prepare(message, as_received) {
                Ok(m) => this.message = Some(m),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        // Polled again after it resolved.
        if this.message.is_none() {
            return Poll::Ready(Err(Error::EmptySlot));
        }
        this.sender.poll_queue(cx, this.channel, &mut this.message)
    }
}

/// A `futures::Sink` of messages on one channel ([`Sender::sink`]).
///
/// Credit-aware: `poll_ready` is `Pending` while the message before has not found room in the
/// channel's send buffer (the peer's credit, wire.md §9.2); it holds at most that one message.
/// `poll_flush` is ready once every message given to it was queued on the connection (the
/// driver writes it without further help); `poll_close` flushes and leaves the connection
/// open (close it with [`Sender::close`]).
pub struct ChannelSink {
    sender: Sender,
    channel: Channel,
    /// A prepared message that has not found room yet.
    pending: Option<OutgoingMessage>,
}

impl std::fmt::Debug for ChannelSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSink")
            .field("channel", &self.channel)
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

impl ChannelSink {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.pending.is_none() {
            return Poll::Ready(Ok(()));
        }
        self.sender
            .poll_queue(cx, self.channel, &mut self.pending)
            .map_ok(|_| ())
    }
}

impl futures_util::Sink<OutgoingMessage> for ChannelSink {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_pending(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: OutgoingMessage) -> Result<(), Error> {
        let prepared = self.sender.handle().prepare(item, None)?;
        self.pending = Some(prepared);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_pending(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_pending(cx)
    }
}

impl futures_util::Sink<(RoutingHeader, Bytes)> for ChannelSink {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        futures_util::Sink::<OutgoingMessage>::poll_ready(self, cx)
    }

    fn start_send(
        self: Pin<&mut Self>,
        (header, payload): (RoutingHeader, Bytes),
    ) -> Result<(), Error> {
        futures_util::Sink::<OutgoingMessage>::start_send(
            self,
            OutgoingMessage::new(header, payload),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        futures_util::Sink::<OutgoingMessage>::poll_flush(self, cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        futures_util::Sink::<OutgoingMessage>::poll_close(self, cx)
    }
}
