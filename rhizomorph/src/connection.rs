//! The public connection API: send on a channel, receive messages, close.
//!
//! Owns the application's side of a connection: waiting for send-buffer room (backpressure),
//! handing out received messages and releasing their credit when the application takes them
//! (wire.md §9.3), and the connection's visible state. Never touches a socket and never knows
//! which transport it runs on: the drivers do, and hand it an open handle over the shared
//! session ([`transport`](crate::transport)).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::CompressionPolicy;
use crate::error::Error;
use crate::frame::{Channel, Compression, ErrorCode, PayloadEncoding};
use crate::header::RoutingHeader;
use crate::payload::{
    ArchivedPayload, ContentHint, Element, PayloadError, SchemaBinding, TypedArray, TypedArrayView,
    WireType,
};
use crate::session::{OutgoingMessage, SessionStats};
use crate::transport::shared::{Link, Opened, Shared};

pub use crate::transport::shared::{CloseReason, Mode};

/// A received message: routing header and payload, readable without decoding the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it arrived on.
    pub channel: Channel,
    /// Its sequence number on the channel (wire.md §5.3.8).
    pub sequence: u64,
    /// The routing header.
    pub header: RoutingHeader,
    /// The payload (a view of the received bytes when it arrived in one frame).
    pub payload: Bytes,
    /// How the payload is encoded.
    pub encoding: PayloadEncoding,
    /// How the payload was compressed on the wire (`payload` is decompressed).
    pub compression: Compression,
    /// For an rkyv payload: the sender's schema binding (wire.md §11.2).
    pub schema: Option<SchemaBinding>,
    /// The payload could not be decompressed (wire.md §12.3.4): `payload` is empty.
    pub error: Option<PayloadError>,
}

impl Message {
    /// The rkyv archive of a `T` in the payload, validated (bytecheck) and read in place
    /// (wire.md §11.3). Fails with `SchemaMismatch` if the sender bound another type or
    /// layout, `UnknownSchemaId` if it bound nothing.
    pub fn archived<T>(&self) -> Result<ArchivedPayload<T>, PayloadError>
    where
        T: WireType + rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<crate::payload::schema::Validator<'a>>,
    {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let PayloadEncoding::Rkyv { schema_id } = self.encoding else {
            return Err(PayloadError::NotRkyv {
                encoding: self.encoding.name(),
            });
        };
        ArchivedPayload::new(self.payload.clone(), schema_id, self.schema.as_ref())
    }

    /// The payload as a typed array (wire.md §11.4), viewed in place.
    pub fn typed_array(&self) -> Result<TypedArrayView, PayloadError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        TypedArrayView::parse(self.payload.clone())
    }
}

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
    link: Link,
    incoming: mpsc::UnboundedReceiver<crate::session::IncomingMessage>,
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
    link: Link,
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
        if matches!(self.link, Link::Legacy(_)) {
            return Err(Error::NativeOnly("send_typed (rkyv payloads)"));
        }
        let archive = crate::payload::encode(value)?;
        let message = OutgoingMessage::new(header, Bytes::from_owner(archive));
        self.send_inner(channel, message, Some(SchemaBinding::of::<T>()), None)
            .await
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
        if let Some(e) = message.error {
            return Err(e.into());
        }
        let schema = match message.encoding {
            PayloadEncoding::Rkyv { schema_id } => Some(
                message
                    .schema
                    .ok_or(PayloadError::UnknownSchemaId { schema_id })?,
            ),
            _ => None,
        };
        let out =
            OutgoingMessage::new(message.header, message.payload).with_encoding(message.encoding);
        self.send_inner(channel, out, schema, Some(message.compression))
            .await
    }

    /// Sends a typed array (wire.md §11.4) of `data` with shape `dims` (empty: one dimension).
    pub async fn send_array<T: Element>(
        &self,
        channel: Channel,
        header: RoutingHeader,
        data: &[T],
        dims: &[u64],
    ) -> Result<u64, Error> {
        if matches!(self.link, Link::Legacy(_)) {
            return Err(Error::NativeOnly("send_array (typed arrays)"));
        }
        let payload = TypedArray::encode(data, dims)?;
        let message =
            OutgoingMessage::new(header, payload).with_encoding(PayloadEncoding::TypedArray);
        self.send_message(channel, message).await
    }

    /// Like [`send`](Self::send) with full control of encoding and compression. A message
    /// whose compression is `None` is compressed here if the config's policy says so.
    ///
    /// In legacy mode the channel is not on the wire (one WebSocket message per message), the
    /// payload must be empty or one msgpack value, and it must be uncompressed.
    pub async fn send_message(
        &self,
        channel: Channel,
        message: OutgoingMessage,
    ) -> Result<u64, Error> {
        self.send_inner(channel, message, None, None).await
    }

    /// `as_received`: forwarding a message that arrived with this compression (see
    /// [`forward`](Self::forward)); `None`: the config's policy decides.
    async fn send_inner(
        &self,
        channel: Channel,
        message: OutgoingMessage,
        schema: Option<SchemaBinding>,
        as_received: Option<Compression>,
    ) -> Result<u64, Error> {
        let shared = match &self.link {
            Link::Native(shared) => shared,
            Link::Legacy(link) => {
                if schema.is_some() || matches!(message.encoding, PayloadEncoding::Rkyv { .. }) {
                    return Err(Error::NativeOnly("rkyv payloads"));
                }
                if message.compression != Compression::None {
                    return Err(Error::NativeOnly("compressed payloads"));
                }
                let _ = channel;
                return link.send(&message.header, message.payload).await;
            }
        };
        let message = Self::maybe_compress(shared, message, as_received);
        let mut message = Some(message);
        // Fast path: room in the send buffer (no waiter registration needed).
        if shared.is_closed() {
            if let Some(reason) = shared.close_reason() {
                return Err(reason.to_error());
            }
        }
        if let Some(id) = Self::try_queue(shared, channel, &mut message, schema.as_ref())? {
            shared.after_queue(channel).await;
            return Ok(id);
        }
        let id = shared
            .changed
            .wait_for(|| {
                if let Some(reason) = shared.close_reason() {
                    return Some(Err(reason.to_error()));
                }
                Self::try_queue(shared, channel, &mut message, schema.as_ref()).transpose()
            })
            .await?;
        shared.after_queue(channel).await;
        Ok(id)
    }
}

impl Sender {
    /// Queues `message` if the channel's send buffer has room; takes it out of the option
    /// when it does.
    fn try_queue(
        shared: &Shared,
        channel: Channel,
        message: &mut Option<OutgoingMessage>,
        schema: Option<&SchemaBinding>,
    ) -> Result<Option<u64>, Error> {
        let Some(len) = message.as_ref().map(|m| m.payload.len() as u64) else {
            return Ok(None);
        };
        let mut s = shared.lock();
        let queued = s.queued_bytes(channel);
        if queued != 0 && queued + len > shared.send_buffer {
            return Ok(None);
        }
        let Some(mut m) = message.take() else {
            return Ok(None);
        };
        if let Some(binding) = schema {
            // Under the same lock as the send: the SCHEMA frame is queued ahead of it.
            let schema_id = s.schema_id(channel, binding)?;
            m.encoding = PayloadEncoding::Rkyv { schema_id };
        }
        let id = s.send(channel, m)?;
        drop(s);
        Ok(Some(id))
    }

    /// Compresses the payload if the policy says so and the content looks worth it (§12.2).
    /// A forwarded message (`as_received`) keeps its original sender's choice where the peer
    /// accepts it.
    fn maybe_compress(
        shared: &Shared,
        mut message: OutgoingMessage,
        as_received: Option<Compression>,
    ) -> OutgoingMessage {
        if shared.compression == CompressionPolicy::Off
            || message.compression != Compression::None
            || message.payload.len() < crate::payload::compress::MIN_COMPRESS
            || as_received == Some(Compression::None)
        {
            return message;
        }
        let Some(peer) = shared.peer_settings.get() else {
            return message;
        };
        if let Some(Compression::Compressed { codec, shuffle, .. }) = as_received {
            if peer.accepts_codec(codec) {
                let choice = Some((codec, shuffle));
                (message.payload, message.compression) =
                    crate::payload::compress(&message.payload, choice);
                return message;
            }
        }
        let hint = match message.encoding {
            PayloadEncoding::TypedArray => message
                .payload
                .first()
                .and_then(|&t| crate::payload::DType::from_tag(t))
                .map_or(ContentHint::Unknown, |d| ContentHint::NumericArray {
                    element_size: d.size(),
                }),
            _ => ContentHint::Unknown,
        };
        let choice = crate::payload::choose(&message.payload, hint, peer);
        let (payload, compression) = crate::payload::compress(&message.payload, choice);
        message.payload = payload;
        message.compression = compression;
        message
    }
}

impl From<Opened> for Connection {
    fn from(o: Opened) -> Connection {
        Connection {
            link: o.link,
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
            link: self.link.clone(),
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
        if let Link::Legacy(link) = &self.link {
            link.mark_ready();
        }
        let m = self.incoming.recv().await?;
        let shared = match &self.link {
            Link::Native(shared) => shared,
            Link::Legacy(link) => {
                link.release(m.credit);
                return Some(Message {
                    channel: m.channel,
                    sequence: m.sequence,
                    header: m.header,
                    payload: m.payload,
                    encoding: m.encoding,
                    compression: m.compression,
                    schema: None,
                    error: None,
                });
            }
        };
        let credit_due = {
            let mut s = shared.lock();
            s.release(m.channel, m.credit);
            s.credit_due()
        };
        if credit_due {
            shared.wake_writer.notify_one();
        }
        shared.readable.notify_waiters();
        // spec: wire.md §12.3 — decompressed within our MAX_MESSAGE_SIZE; a failure concerns
        // this message only and is reported with it.
        let (payload, error) =
            match crate::payload::decompress(&m.payload, m.compression, shared.max_message_size) {
                Ok(p) => (p, None),
                Err(e) => (Bytes::new(), Some(PayloadError::from(e))),
            };
        Some(Message {
            channel: m.channel,
            sequence: m.sequence,
            header: m.header,
            payload,
            encoding: m.encoding,
            compression: m.compression,
            schema: m.schema,
            error,
        })
    }

    /// Cancels our message `id` (as `send` returned it) on `channel` (wire.md §5.7.1): dropped
    /// if it has not started, aborted mid-transfer if it has, nothing if it has been sent.
    /// Legacy mode cannot cancel (a message leaves whole): nothing happens.
    pub fn cancel(&self, channel: Channel, id: u64) {
        if let Link::Native(shared) = &self.link {
            shared.lock().cancel(channel, id);
            shared.wake_writer.notify_one();
        }
    }

    /// Graceful shutdown (wire.md §14.1): GOAWAY, finish what is in flight, then CLOSE. Waits
    /// up to 10 s for the drain, then closes. Legacy mode: what is queued is written, then a
    /// WebSocket close (1000).
    pub async fn close(&self) {
        match &self.link {
            Link::Native(shared) => {
                shared.lock().goaway(ErrorCode::NO_ERROR, "closing");
                shared.wake_writer.notify_one();
            }
            Link::Legacy(link) => link.close(ErrorCode::NO_ERROR, "closing"),
        }
        if tokio::time::timeout(Duration::from_secs(10), self.closed())
            .await
            .is_err()
        {
            self.close_now(ErrorCode::NO_ERROR, "drain timed out");
        }
    }

    /// Closes at once with `code` (wire.md §14.2): queued messages fail.
    pub fn close_now(&self, code: ErrorCode, reason: &str) {
        match &self.link {
            Link::Native(shared) => {
                shared.lock().close(code, reason);
                shared.wake_writer.notify_one();
            }
            Link::Legacy(link) => link.close(code, reason),
        }
    }

    /// Waits until the connection is over and returns why.
    pub async fn closed(&self) -> CloseReason {
        let shared = match &self.link {
            Link::Native(shared) => shared,
            Link::Legacy(link) => return link.closed().await,
        };
        shared.changed.wait_for(|| shared.close_reason()).await
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match &self.link {
            Link::Native(shared) => shared.close_reason(),
            Link::Legacy(link) => link.close_reason(),
        }
    }

    /// Whether the peer has sent GOAWAY (no new messages may be sent). Never in legacy mode.
    pub fn peer_going_away(&self) -> bool {
        match &self.link {
            Link::Native(shared) => shared
                .peer_goaway
                .load(std::sync::atomic::Ordering::Acquire),
            Link::Legacy(_) => false,
        }
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
        if let Link::Legacy(link) = &self.link {
            link.mark_ready();
        }
    }

    /// Legacy client: the server's `connection_info` (our workspace and client id, the
    /// manager's id, the user). `None` in native mode and on the server side.
    pub fn legacy_info(&self) -> Option<&crate::legacy::ConnectionInfo> {
        match &self.link {
            Link::Legacy(link) => link.info.as_ref(),
            Link::Native(_) => None,
        }
    }

    /// Legacy server: who the client is, as the authentication hook decided.
    pub fn legacy_identity(&self) -> Option<&crate::legacy::Identity> {
        match &self.link {
            Link::Legacy(link) => link.identity.as_ref(),
            Link::Native(_) => None,
        }
    }

    /// Native mode: the peer's HELLO token (wire.md §3.2.7) — on a server the client's
    /// credential, on a client the server's reply. `None` in legacy mode.
    pub fn peer_token(&self) -> Option<Bytes> {
        match &self.link {
            Link::Native(shared) => shared.peer_token.get().cloned(),
            Link::Legacy(_) => None,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Counters: bytes and messages per channel, frames, batches, credit stalls. Legacy mode
    /// counts messages and bytes (on `rpc`) only.
    pub fn stats(&self) -> SessionStats {
        match &self.link {
            Link::Native(shared) => shared.lock().stats().clone(),
            Link::Legacy(link) => link.stats(),
        }
    }

    /// The smoothed round-trip time measured by PING (wire.md §13.2), once known. Legacy
    /// client: the last `ping`/`pong` round trip.
    pub fn rtt(&self) -> Option<Duration> {
        match &self.link {
            Link::Native(shared) => shared.lock().rtt(),
            Link::Legacy(link) => link.rtt(),
        }
    }

    /// Payload bytes queued on `channel` and not yet sent (legacy mode: on all channels).
    pub fn queued_bytes(&self, channel: Channel) -> u64 {
        match &self.link {
            Link::Native(shared) => shared.lock().queued_bytes(channel),
            Link::Legacy(link) => link.queued_bytes(),
        }
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
