//! The public connection API: receive messages, take a channel for a task of its own, reach
//! the connection's state.
//!
//! Owns the application's receiving side of a connection — handing out received messages in
//! priority order and releasing their credit when the application takes them (wire.md §9.3) —
//! and the connection's visible state; the handles' shared link (whose end closes the
//! connection) is `link.rs`'s.
//! Sending is [`Sender`]'s (every send method here delegates to it). Never touches a socket
//! and never knows which transport it runs on: the drivers do, and hand it an open handle over
//! the shared session ([`transport`](crate::transport)).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use crate::frame::{Channel, ErrorCode};
use crate::header::RoutingHeader;
use crate::link::Link;
use crate::receiver::ChannelReceiver;
/// The sending half (its own module, [`sender`](crate::sender); here too, where it always was).
pub use crate::sender::Sender;
use crate::session::{OutgoingMessage, SessionStats};
use crate::transfer::IncomingTransfer;
use crate::transport::handle::Handle;
use crate::transport::shared::Opened;

pub use crate::session::Message;
pub use crate::transport::shared::{CloseReason, Mode};

/// One rhizomorph connection: it receives, and reaches everything else (senders, channel
/// receivers, state).
///
/// Received messages come out highest priority first (`control` > `rpc` > `stream` > `bulk`,
/// wire.md §7): [`recv`](Self::recv), [`poll_recv`](Self::poll_recv), or the connection as a
/// `futures::Stream`. A task that does slow work on one channel's messages takes that channel
/// with [`receiver`](Self::receiver), so that the others keep flowing to whoever reads them:
/// each channel has its own queue and its own credit.
///
/// Dropping the `Connection` stops receiving on the channels it read (what arrives there is
/// discarded and its credit returned); the connection stays open while a [`Sender`] or
/// [`ChannelReceiver`] of it lives, and closes gracefully when the last handle goes.
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
    link: Arc<Link>,
    /// The sender every send method here uses.
    sender: Sender,
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

impl From<Opened> for Connection {
    fn from(o: Opened) -> Connection {
        let link = Link::new(o.handle);
        Connection {
            sender: Sender { link: link.clone() },
            link,
            peer_addr: o.peer_addr,
            mode: o.mode,
        }
    }
}

impl Connection {
    fn handle(&self) -> &dyn Handle {
        &*self.link.handle
    }

    /// The handle under this connection (a listener's drain list holds it).
    pub(crate) fn handle_arc(&self) -> Arc<dyn Handle> {
        self.link.handle.clone()
    }

    /// A cloneable sender for this connection.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Queues a message on `channel` (see [`Sender::send`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`Sender::send`].
    pub fn send(
        &self,
        channel: Channel,
        header: RoutingHeader,
        payload: impl Into<Bytes>,
    ) -> crate::sender::Sending<'_> {
        self.sender.send(channel, header, payload)
    }

    /// Queues a message with full control of encoding and compression (see
    /// [`Sender::send_message`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`Sender::send`].
    pub fn send_message(
        &self,
        channel: Channel,
        message: OutgoingMessage,
    ) -> crate::sender::Sending<'_> {
        self.sender.send_message(channel, message)
    }

    /// The next message on the channels this connection reads (all but those taken with
    /// [`receiver`](Self::receiver)), highest priority first; `None` when the connection is
    /// over and everything received was taken ([`close_reason`] says why). The payload is
    /// decompressed (a failure is the message's [`error`](Message::error), wire.md §6.1.1).
    ///
    /// Taking a message returns its flow-control credit to the peer (wire.md §9.3): a
    /// connection whose application stops calling `recv` stops its peer at the windows. Work
    /// done between two calls holds up every channel this connection reads: move slow work
    /// to a task with its own [`receiver`](Self::receiver).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is taken only when the future completes with it.
    ///
    /// [`close_reason`]: Connection::close_reason
    pub async fn recv(&mut self) -> Option<Message> {
        futures_util::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Like [`recv`](Self::recv), but the payload is left as it arrived, still compressed if
    /// [`Message::compression`] says so: what a router uses (wire.md §6.1: it forwards without
    /// decompressing, so a peer's compressed messages, bombs within the limits included, cost
    /// it no decompression work). [`Message::decompress`] decompresses it later, if wanted.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`recv`](Self::recv).
    pub async fn recv_raw(&mut self) -> Option<Message> {
        futures_util::future::poll_fn(|cx| self.poll_recv_raw(cx)).await
    }

    /// The poll face of [`recv`](Self::recv): `Ready(Some)` with the next message,
    /// `Ready(None)` at the end, or `Pending` with `cx` registered for the next arrival.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let taken = self.poll_recv_raw(cx);
        self.link.decompressed(taken)
    }

    /// The poll face of [`recv_raw`](Self::recv_raw).
    pub fn poll_recv_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.link.mark_ready();
        let r = self.handle().common().inbox.poll_any(cx);
        if let Poll::Ready(Some(m)) = &r {
            self.link.received(m);
        }
        r
    }

    /// Takes `channel` for a receiver of its own (e.g. for a task that does slow work on bulk
    /// messages): from now on this connection's `recv` no longer sees that channel, and what
    /// was queued there moves to the receiver. `None` if a receiver already took it.
    pub fn receiver(&self, channel: Channel) -> Option<ChannelReceiver> {
        self.handle()
            .common()
            .inbox
            .claim(channel)
            .then(|| ChannelReceiver::new(self.link.clone(), channel))
    }

    /// The transfer that `first` starts (wire.md §20.3: it carries `stream-id` and `seq` 0),
    /// as a stream of its parts' payloads; `Err(first)` if it starts none. Its later parts
    /// never come out of `recv`: they wait for the transfer, bounded by the channel's window.
    /// Take a transfer's first message this way (or drop the transfer), or its later parts
    /// hold the channel's credit.
    // The message is handed back whole when it starts no transfer (the common case in a
    // receive loop): boxing it would allocate for every message.
    #[allow(clippy::result_large_err)]
    pub fn transfer(&self, first: Message) -> Result<IncomingTransfer, Message> {
        IncomingTransfer::open(&self.link, first)
    }

    /// Hands calls, cancellations and transfer parts (wire.md §20) out as plain messages from
    /// now on, as a router needs (it forwards them to whom they name). Set
    /// [`Config::exchanges`](crate::Config::exchanges) to `false` on the listener to have it from
    /// the first message.
    pub fn forward_exchanges(&self) {
        self.handle().common().inbox.forward_exchanges();
    }

    /// Cancels our message `id` (as `send` returned it) on `channel` (see
    /// [`Sender::cancel`]).
    pub fn cancel(&self, channel: Channel, id: u64) {
        self.sender.cancel(channel, id);
    }

    /// Graceful shutdown (see [`Sender::close`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`Sender::close`].
    pub async fn close(&self) {
        self.sender.close().await
    }

    /// Closes at once with `code` (see [`Sender::close_now`]).
    pub fn close_now(&self, code: ErrorCode, reason: &str) {
        self.sender.close_now(code, reason);
    }

    /// Waits until the connection is over and returns why.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits.
    pub async fn closed(&self) -> CloseReason {
        self.sender.closed().await
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.handle().common().close_reason()
    }

    /// The next thing that happened to a resumable session (wire.md §21): its transport was
    /// lost (`Detached`), a new one resumed it with nothing lost (`Resumed`), or resumption
    /// failed and `ResumeFailed` lists every message of ours that may be lost. `None` once the
    /// connection is over and nothing is left to report. A connection that is not resumable
    /// ([`Config::with_resumption`](crate::Config::with_resumption) off on either side) reports
    /// nothing.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an event is taken only when it is returned.
    pub async fn next_session_event(&self) -> Option<crate::SessionEvent> {
        self.sender.next_session_event().await
    }

    /// Whether the peer has sent GOAWAY (no new messages may be sent). Never in legacy mode.
    pub fn peer_going_away(&self) -> bool {
        self.sender.peer_going_away()
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
        self.link.mark_ready();
    }

    /// Legacy client: the server's `connection_info` (our workspace and client id, the
    /// manager's id, the user). `None` in native mode and on the server side.
    pub fn legacy_info(&self) -> Option<&crate::legacy::ConnectionInfo> {
        self.handle().common().legacy_info.get()
    }

    /// Legacy server: who the client is, as the authentication hook decided.
    pub fn legacy_identity(&self) -> Option<&crate::legacy::Identity> {
        self.handle().common().legacy_identity.get()
    }

    /// Native mode: the peer's HELLO token (wire.md §3.2.7) — on a server the client's
    /// credential, on a client the server's reply. `None` in legacy mode.
    pub fn peer_token(&self) -> Option<Bytes> {
        self.handle().common().peer_token.get().cloned()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Counters: bytes and messages per channel, frames, batches, credit stalls. Legacy mode
    /// counts messages and bytes (on `rpc`) only.
    pub fn stats(&self) -> SessionStats {
        self.handle().stats()
    }

    /// The smoothed round-trip time measured by PING (wire.md §13.2), once known. Legacy
    /// client: the last `ping`/`pong` round trip.
    pub fn rtt(&self) -> Option<Duration> {
        self.handle().rtt()
    }

    /// Payload bytes queued on `channel` and not yet sent (legacy mode: on all channels).
    pub fn queued_bytes(&self, channel: Channel) -> u64 {
        self.handle().queued_bytes(channel)
    }
}

/// Messages as [`Connection::recv`] hands them out (decompressed, priority order).
impl futures_util::Stream for Connection {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Nobody takes this receiver's messages any more: what is queued gives its credit back
        // and later arrivals are discarded (the link closes the connection once every handle
        // is gone).
        let inbox = &self.handle().common().inbox;
        let (dropped, settled) = inbox.abandon(&inbox.connection_channels());
        self.link.abandoned(&dropped, settled);
    }
}
