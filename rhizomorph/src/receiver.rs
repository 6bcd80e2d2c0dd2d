//! A receiver for one channel, taken from a connection by a task of its own.
//!
//! Owns [`ChannelReceiver`]: one channel's messages, in order, with that channel's credit, so
//! that a task doing slow work on (say) bulk messages holds up only bulk — rpc messages keep
//! flowing to whoever reads them (wire.md §7, §9). Never sends and never touches a socket.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::frame::Channel;
use crate::link::Link;
use crate::sender::Sender;
use crate::session::Message;
use crate::transfer::IncomingTransfer;

/// The messages of one channel ([`Connection::receiver`](crate::Connection::receiver)), as
/// `recv`, `poll_recv` or a `futures::Stream`.
///
/// A message's credit goes back to the peer when it is taken: a task that stops reading stops
/// the peer at this channel's window, and only on this channel. Dropping the receiver discards
/// what arrives on the channel from then on (its credit is returned at once); the connection
/// stays open while any of its handles lives.
///
/// ```no_run
/// # async fn demo(conn: rhizomorph::Connection) {
/// use rhizomorph::Channel;
/// let mut bulk = conn.receiver(Channel::Bulk).expect("bulk not taken yet");
/// tokio::spawn(async move {
///     while let Some(m) = bulk.recv().await {
///         // slow work here holds up bulk only
///         let _ = m.payload.len();
///     }
/// });
/// # }
/// ```
pub struct ChannelReceiver {
    link: Arc<Link>,
    channel: Channel,
}

impl std::fmt::Debug for ChannelReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelReceiver")
            .field("channel", &self.channel)
            .finish()
    }
}

impl ChannelReceiver {
    pub(crate) fn new(link: Arc<Link>, channel: Channel) -> ChannelReceiver {
        ChannelReceiver { link, channel }
    }

    /// The channel it receives.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// A sender on the same connection (e.g. to reply).
    pub fn sender(&self) -> Sender {
        Sender {
            link: self.link.clone(),
        }
    }

    /// The next message on the channel (decompressed, as
    /// [`Connection::recv`](crate::Connection::recv)); `None` when the connection is over and
    /// everything received was taken.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is taken only when the future completes with it.
    pub async fn recv(&mut self) -> Option<Message> {
        futures_util::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The poll face of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let taken = self.poll_recv_raw(cx);
        self.link.decompressed(taken)
    }

    /// Like [`poll_recv`](Self::poll_recv), the payload left as it arrived (see
    /// [`Connection::recv_raw`](crate::Connection::recv_raw)).
    pub fn poll_recv_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.link.mark_ready();
        let r = self
            .link
            .handle
            .common()
            .inbox
            .poll_channel(self.channel, cx);
        if let Poll::Ready(Some(m)) = &r {
            self.link.received(m);
        }
        r
    }

    /// The transfer `first` starts (see [`Connection::transfer`](crate::Connection::transfer)).
    // The message is handed back whole when it starts no transfer (the common case in a
    // receive loop): boxing it would allocate for every message.
    #[allow(clippy::result_large_err)]
    pub fn transfer(&self, first: Message) -> Result<IncomingTransfer, Message> {
        IncomingTransfer::open(&self.link, first)
    }
}

/// The channel's messages as [`ChannelReceiver::recv`] hands them out.
impl futures_util::Stream for ChannelReceiver {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        let (dropped, settled) = self.link.handle.common().inbox.abandon(&[self.channel]);
        self.link.abandoned(&dropped, settled);
    }
}
