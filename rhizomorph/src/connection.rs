//! The public connection API: send on a channel, receive messages, close.
//!
//! Owns the application's side of a connection: waiting for send-buffer room (backpressure),
//! handing out received messages and releasing their credit when the application takes them
//! (wire.md §9.3), and the connection's visible state. Never touches a socket and never knows
//! which transport it runs on: the drivers do, and hand it an open handle over the shared
//! session ([`transport`](crate::transport)).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::Error;
use crate::frame::{Channel, Compression, ErrorCode, PayloadEncoding};
use crate::header::RoutingHeader;
use crate::payload::{Element, PayloadError, SchemaBinding, TypedArray, WireType};
use crate::session::{OutgoingMessage, SessionStats};
use crate::transport::handle::Handle;
use crate::transport::shared::Opened;

pub use crate::session::Message;
pub use crate::transport::shared::{CloseReason, Mode};

/// One rhizomorph connection. Cloneable senders come from [`Connection::sender`]; the
/// connection itself receives.
///
/// ```no_run
/// # async fn demo() -> Result<(), rhizomorph::Error> {
/// use rhizomorph::{Channel, Config, Endpoint, RoutingHeader};
/// let mut conn = Endpoint::connect("ws://127.0.0.1:7878/", Config::default()).await?;
/// let header = RoutingHeader::new().with("to", "echo");
/// conn.send(Channel::Rpc, header, "hello").await?;
/// let reply = conn.recv().await.expect("a reply");
/// println!("{:?}", reply.payload);
/// conn.close().await;
/// # Ok(()) }
/// ```
pub struct Connection {
    handle: Arc<dyn Handle>,
    incoming: mpsc::UnboundedReceiver<Message>,
    peer_addr: SocketAddr,
    mode: Mode,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer_addr", &self.peer_addr)
            .field("mode", &self.mode)
            .finish()
    }
}

/// A cloneable handle that sends on a connection (e.g. one per task).
#[derive(Clone)]
pub struct Sender {
    handle: Arc<dyn Handle>,
}

impl Sender {
    /// Queues a message on `channel`, waiting while the channel's send buffer is full
    /// (backpressure: the peer's credit, wire.md §9.2). Returns its id on the channel
    /// (for [`Connection::cancel`]).
    pub async fn send(
        &self,
        channel: Channel,
        header: RoutingHeader,
        payload: impl Into<Bytes>,
    ) -> Result<u64, Error> {
        self.send_message(channel, OutgoingMessage::new(header, payload))
            .await
    }

    /// Sends `value` as a schema-cached rkyv payload (wire.md §11.2): the first message of a
    /// type on a channel binds its Schema Id, later ones carry only the id.
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
    pub async fn forward(&self, channel: Channel, message: Message) -> Result<u64, Error> {
        let (out, compression) = Self::forwardable(message)?;
        self.send_inner(channel, out, Some(compression)).await
    }

    /// Like [`forward`](Self::forward), but never waits: [`Error::WouldBlock`] if the send
    /// buffer is full (a router skips a slow receiver of a broadcast with it, wire.md §6.1.2).
    pub fn try_forward(&self, channel: Channel, message: Message) -> Result<u64, Error> {
        let (out, compression) = Self::forwardable(message)?;
        let handle = &*self.handle;
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
            return Err(e.into());
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
            out = out.with_schema(binding);
        }
        Ok((out, message.compression))
    }

    /// Why the connection ended, if it has (the same as [`Connection::close_reason`]).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.handle.common().close_reason()
    }

    /// Sends a typed array (wire.md §11.4) of `data` with shape `dims` (empty: one dimension).
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
    pub async fn send_message(
        &self,
        channel: Channel,
        message: OutgoingMessage,
    ) -> Result<u64, Error> {
        self.send_inner(channel, message, None).await
    }

    /// `as_received`: forwarding a message that arrived with this compression (see
    /// [`forward`](Self::forward)); `None`: the config's policy decides.
    async fn send_inner(
        &self,
        channel: Channel,
        message: OutgoingMessage,
        as_received: Option<Compression>,
    ) -> Result<u64, Error> {
        let handle = &*self.handle;
        let message = handle.prepare(message, as_received)?;
        let mut message = Some(message);
        let common = handle.common();
        // Fast path: room in the send buffer (no waiter registration needed).
        if common.is_closed() {
            if let Some(reason) = common.close_reason() {
                return Err(reason.to_error());
            }
        }
        let id = match handle.try_send(channel, &mut message)? {
            Some(id) => id,
            None => {
                common
                    .changed
                    .wait_for(|| {
                        if let Some(reason) = common.close_reason() {
                            return Some(Err(reason.to_error()));
                        }
                        handle.try_send(channel, &mut message).transpose()
                    })
                    .await?
            }
        };
        futures_util::future::poll_fn(|cx| {
            handle.after_queue(channel, cx);
            std::task::Poll::Ready(())
        })
        .await;
        Ok(id)
    }
}

impl From<Opened> for Connection {
    fn from(o: Opened) -> Connection {
        Connection {
            handle: o.handle,
            incoming: o.incoming,
            peer_addr: o.peer_addr,
            mode: o.mode,
        }
    }
}

impl Connection {
    /// A cloneable sender for this connection.
    pub fn sender(&self) -> Sender {
        Sender {
            handle: self.handle.clone(),
        }
    }

    /// Queues a message on `channel` (see [`Sender::send`]).
    pub async fn send(
        &self,
        channel: Channel,
        header: RoutingHeader,
        payload: impl Into<Bytes>,
    ) -> Result<u64, Error> {
        self.sender().send(channel, header, payload).await
    }

    /// Queues a message with full control of encoding and compression.
    pub async fn send_message(
        &self,
        channel: Channel,
        message: OutgoingMessage,
    ) -> Result<u64, Error> {
        self.sender().send_message(channel, message).await
    }

    /// The next message, or `None` when the connection is over ([`close_reason`] says why).
    ///
    /// Taking a message returns its flow-control credit to the peer (wire.md §9.3): a
    /// connection whose application stops calling `recv` stops its peer at the windows.
    ///
    /// [`close_reason`]: Connection::close_reason
    pub async fn recv(&mut self) -> Option<Message> {
        let mut m = self.recv_raw().await?;
        // spec: wire.md §12.3 — decompressed within our MAX_MESSAGE_SIZE; a failure concerns
        // this message only and is reported with it (§6.1.1).
        m.decompress(self.handle.common().max_message_size);
        Some(m)
    }

    /// Like [`recv`](Self::recv), but the payload is left as it arrived, still compressed if
    /// [`Message::compression`] says so: what a router uses (wire.md §6.1: it forwards without
    /// decompressing, so a peer's compressed messages, bombs within the limits included, cost
    /// it no decompression work). [`Message::decompress`] decompresses it later, if wanted.
    pub async fn recv_raw(&mut self) -> Option<Message> {
        self.handle.mark_ready();
        let m = self.incoming.recv().await?;
        self.handle.received(&m);
        Some(m)
    }

    /// Cancels our message `id` (as `send` returned it) on `channel` (wire.md §5.7.1): dropped
    /// if it has not started, aborted mid-transfer if it has, nothing if it has been sent.
    /// Legacy mode cannot cancel (a message leaves whole): nothing happens.
    pub fn cancel(&self, channel: Channel, id: u64) {
        self.handle.cancel(channel, id);
    }

    /// Graceful shutdown (wire.md §14.1): GOAWAY, finish what is in flight, then CLOSE. Waits
    /// up to 10 s for the drain, then closes. Legacy mode: what is queued is written, then a
    /// WebSocket close (1000).
    pub async fn close(&self) {
        self.handle.close_gracefully();
        if tokio::time::timeout(Duration::from_secs(10), self.closed())
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
        self.handle.close_now(code, reason);
    }

    /// Waits until the connection is over and returns why.
    pub async fn closed(&self) -> CloseReason {
        let common = self.handle.common();
        common.changed.wait_for(|| common.close_reason()).await
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.handle.common().close_reason()
    }

    /// Whether the peer has sent GOAWAY (no new messages may be sent). Never in legacy mode.
    pub fn peer_going_away(&self) -> bool {
        self.handle
            .common()
            .peer_goaway
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Native or legacy (wire.md §3.4).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Legacy server: tells the client it is connected (sends `connection_info`, legacy.md
    /// §L4.2) if the first `recv` or `send` has not done so yet. A router registers the peer
    /// first, so that nothing addressed to it arrives before it can be routed. Nothing in native
    /// mode or on a client.
    pub fn ready(&self) {
        self.handle.mark_ready();
    }

    /// Legacy client: the server's `connection_info` (our workspace and client id, the
    /// manager's id, the user). `None` in native mode and on the server side.
    pub fn legacy_info(&self) -> Option<&crate::legacy::ConnectionInfo> {
        self.handle.common().legacy_info.get()
    }

    /// Legacy server: who the client is, as the authentication hook decided.
    pub fn legacy_identity(&self) -> Option<&crate::legacy::Identity> {
        self.handle.common().legacy_identity.get()
    }

    /// Native mode: the peer's HELLO token (wire.md §3.2.7) — on a server the client's
    /// credential, on a client the server's reply. `None` in legacy mode.
    pub fn peer_token(&self) -> Option<Bytes> {
        self.handle.common().peer_token.get().cloned()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Counters: bytes and messages per channel, frames, batches, credit stalls. Legacy mode
    /// counts messages and bytes (on `rpc`) only.
    pub fn stats(&self) -> SessionStats {
        self.handle.stats()
    }

    /// The smoothed round-trip time measured by PING (wire.md §13.2), once known. Legacy
    /// client: the last `ping`/`pong` round trip.
    pub fn rtt(&self) -> Option<Duration> {
        self.handle.rtt()
    }

    /// Payload bytes queued on `channel` and not yet sent (legacy mode: on all channels).
    pub fn queued_bytes(&self, channel: Channel) -> u64 {
        self.handle.queued_bytes(channel)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropping the receiving half ends the connection: nobody can take messages any more.
        if self.close_reason().is_none() {
            self.close_now(ErrorCode::NO_ERROR, "connection dropped");
        }
    }
}
