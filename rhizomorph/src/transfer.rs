//! Streamed transfers: a body of any size sent as a sequence of parts (wire.md §20.3), read by
//! the receiver as a stream, with the channel's priority, credit and cancel rules.
//!
//! Owns the sending loop ([`Sender::send_transfer`], [`Sender::send_transfer_stream`]: read a
//! part, queue it, wait for send-buffer room, read the next — never the whole body) and
//! [`IncomingTransfer`] (the receiver's `Stream` of part payloads, and its `AsyncRead` face).
//! The parts' queue is the inbox's (`transport::inbox`). Never touches a socket.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::error::Error;
use crate::exchange::{self, Exchange};
use crate::frame::Channel;
use crate::header::RoutingHeader;
use crate::link::Link;
use crate::sender::Sender;
use crate::session::Message;
use crate::session::OutgoingMessage;
use crate::transport::inbox::{Part, PeerKey};

/// Payload bytes per part a transfer sends from an `AsyncRead`: large enough that the per-part
/// header costs nothing, small enough that two in flight (the one being sent and the one being
/// read) stay a small bound. Chunking below it is the session's (wire.md §8).
pub const TRANSFER_PART_SIZE: usize = 1 << 20;

impl Sender {
    /// Sends everything `body` yields on `channel` as one transfer (wire.md §20.3): parts of
    /// [`TRANSFER_PART_SIZE`] bytes, each carrying `header` plus the transfer's `stream-id`
    /// and `seq`, then a last part (`status: ok`). Memory stays at about two parts whatever the
    /// size: a part is read only when the one before found room in the send buffer, which the
    /// peer's credit drains. Returns the payload bytes sent.
    ///
    /// A read error ends the transfer with `status: error` (the receiver sees
    /// [`Error::TransferFailed`]) and is returned; the receiver dropping its
    /// [`IncomingTransfer`] stops it with [`Error::TransferCancelled`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropped midway, the receiver sees the transfer end without its last
    /// part only when the connection ends. Cancel with a select that then sends nothing more
    /// on the transfer, or let the receiver cancel it.
    pub async fn send_transfer<R>(
        &self,
        channel: Channel,
        header: RoutingHeader,
        mut body: R,
    ) -> Result<u64, Error>
    where
        R: AsyncRead + Unpin,
    {
        let parts = futures_util::stream::unfold(Some(&mut body), |reader| async move {
            let reader = reader?;
            let mut buf = BytesMut::with_capacity(TRANSFER_PART_SIZE);
            while buf.len() < TRANSFER_PART_SIZE {
                match reader.read_buf(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Some((Err(e), None)),
                }
            }
            if buf.is_empty() {
                return None;
            }
            let more = buf.len() == TRANSFER_PART_SIZE;
            Some((Ok(buf.freeze()), more.then_some(reader)))
        });
        self.send_transfer_stream(channel, header, parts).await
    }

    /// Like [`send_transfer`](Self::send_transfer), one part per item of `body` (each a whole
    /// message: chunks of at most the peer's `MAX_MESSAGE_SIZE`; empty items are skipped).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe, as [`send_transfer`](Self::send_transfer).
    pub async fn send_transfer_stream<S>(
        &self,
        channel: Channel,
        header: RoutingHeader,
        body: S,
    ) -> Result<u64, Error>
    where
        S: Stream<Item = std::io::Result<Bytes>>,
    {
        let inbox = &self.handle().common().inbox;
        let stream = inbox.next_id();
        let mut body = std::pin::pin!(body);
        let (mut seq, mut sent) = (0u64, 0u64);
        let end: Result<(), Error> = loop {
            if inbox.take_transfer_cancel(stream) {
                // spec: wire.md §20.4 — stop, and end the transfer so its state is freed.
                let part = exchange::part(
                    &header,
                    stream,
                    seq,
                    Some(Some("cancelled by the receiver")),
                );
                let _ = self.send(channel, part, Bytes::new()).await;
                return Err(Error::TransferCancelled { sent });
            }
            match body.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    let len = chunk.len() as u64;
                    self.send(channel, exchange::part(&header, stream, seq, None), chunk)
                        .await?;
                    seq += 1;
                    sent += len;
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Ok(()),
            }
        };
        let reason = end.as_ref().err().map(ToString::to_string);
        let last = exchange::part(&header, stream, seq, Some(reason.as_deref()));
        self.send(channel, last, Bytes::new()).await?;
        end.map(|()| sent)
    }
}

/// Where an incoming transfer is.
#[derive(Debug)]
enum State {
    /// More parts follow.
    Open,
    /// Over: the last part was taken (or the transfer failed and its error was returned).
    Done,
}

/// An incoming transfer ([`Connection::transfer`](crate::Connection::transfer)): a
/// `futures::Stream` of its parts' payloads, in order, ending after the last part;
/// [`into_reader`](Self::into_reader) reads it as an `AsyncRead`.
///
/// Each part's credit goes back to the peer when the stream yields it, so a transfer of any
/// size costs at most the channel's window here, and a reader that stops stops the sender.
/// An error item ends it: [`Error::TransferFailed`] if the sender gave up or a part was out of
/// order, the connection's error if it ended first. Dropping it before its end cancels the
/// transfer (wire.md §20.4): later parts are discarded and the sender is told to stop.
pub struct IncomingTransfer {
    link: Arc<Link>,
    key: PeerKey,
    header: RoutingHeader,
    channel: Channel,
    /// The first part's payload, until yielded.
    first: Option<Bytes>,
    /// The first part was also the last (or failed).
    first_ends: Option<Option<String>>,
    /// The inbox holds a queue for later parts.
    tracked: bool,
    state: State,
    received: u64,
}

impl std::fmt::Debug for IncomingTransfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingTransfer")
            .field("channel", &self.channel)
            .field("stream_id", &self.key.1)
            .field("received", &self.received)
            .field("state", &self.state)
            .finish()
    }
}

impl IncomingTransfer {
    // The message is handed back whole when it starts no transfer (the common case in a
    // receive loop): boxing it would allocate for every message.
    #[allow(clippy::result_large_err)]
    pub(crate) fn open(link: &Arc<Link>, mut first: Message) -> Result<IncomingTransfer, Message> {
        // A part has a `stream-id` (wire.md §20.3): most messages are not one, and say so in
        // one field lookup.
        if first.header.get(exchange::STREAM_ID).is_none() {
            return Err(first);
        }
        let Ok(Exchange::Part {
            stream,
            seq: 0,
            end,
        }) = exchange::classify(&first.header)
        else {
            return Err(first);
        };
        first.decompress(link.max_message_size());
        let from = first
            .header
            .get(exchange::FROM)
            .cloned()
            .unwrap_or_default();
        let first_ends = match first.error.take() {
            Some(e) => Some(Some(e.to_string())),
            None => end,
        };
        Ok(IncomingTransfer {
            tracked: first_ends.is_none(),
            key: (from, stream),
            link: link.clone(),
            header: first.header,
            channel: first.channel,
            first: Some(first.payload),
            first_ends,
            state: State::Open,
            received: 0,
        })
    }

    /// The first part's header (the application's fields, plus `stream-id` and `seq`).
    pub fn header(&self) -> &RoutingHeader {
        &self.header
    }

    /// The channel it arrives on.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Payload bytes yielded so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The transfer as an `AsyncRead` (an error item becomes an `io::Error` of kind `Other`
    /// wrapping it).
    pub fn into_reader(self) -> TransferReader {
        TransferReader {
            transfer: self,
            chunk: Bytes::new(),
        }
    }

    /// Ends the stream with `r` (an error, or the end).
    fn end(&mut self, r: Option<Result<Bytes, Error>>) -> Poll<Option<Result<Bytes, Error>>> {
        self.state = State::Done;
        Poll::Ready(r)
    }

    /// A part's payload as the stream yields it (`None` for an empty one).
    fn yielded(&mut self, payload: Bytes) -> Option<Poll<Option<Result<Bytes, Error>>>> {
        if payload.is_empty() {
            return None;
        }
        self.received += payload.len() as u64;
        Some(Poll::Ready(Some(Ok(payload))))
    }
}

impl Stream for IncomingTransfer {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(payload) = this.first.take() {
            if let Some(p) = this.yielded(payload) {
                return p;
            }
        }
        if matches!(this.state, State::Done) {
            return Poll::Ready(None);
        }
        match this.first_ends.take() {
            Some(None) => return this.end(None),
            Some(Some(reason)) => return this.end(Some(Err(Error::TransferFailed { reason }))),
            None => {}
        }
        loop {
            let common = this.link.handle.common();
            let part = match common.inbox.poll_part(&this.key, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(p) => p,
            };
            match part {
                Part::Next(mut m) => {
                    this.link.received(&m);
                    m.decompress(common.max_message_size);
                    if let Some(e) = m.error.take() {
                        let reason = format!("a part failed: {e}");
                        return this.end(Some(Err(Error::TransferFailed { reason })));
                    }
                    let end = match exchange::classify(&m.header) {
                        Ok(Exchange::Part { end, .. }) => end,
                        _ => None,
                    };
                    match end {
                        None => {
                            if let Some(p) = this.yielded(m.payload) {
                                return p;
                            }
                        }
                        Some(None) => {
                            // The last part: its payload (if any), then the end.
                            this.state = State::Done;
                            if let Some(p) = this.yielded(m.payload) {
                                return p;
                            }
                            return Poll::Ready(None);
                        }
                        Some(Some(reason)) => {
                            return this.end(Some(Err(Error::TransferFailed { reason })));
                        }
                    }
                }
                Part::Broken(reason) => {
                    return this.end(Some(Err(Error::TransferFailed { reason })));
                }
                Part::End => {
                    let e = match common.close_reason() {
                        Some(r) => r.to_error(),
                        None => Error::TransferFailed {
                            reason: format!(
                                "not tracked: more than {} transfers were open at once on the connection",
                                crate::transport::inbox::MAX_OPEN_TRANSFERS
                            ),
                        },
                    };
                    return this.end(Some(Err(e)));
                }
            }
        }
    }
}

impl Drop for IncomingTransfer {
    fn drop(&mut self) {
        if !self.tracked {
            return;
        }
        let (open, parts) = self.link.handle.common().inbox.drop_transfer(&self.key);
        for m in &parts {
            self.link.received(m);
        }
        if open && matches!(self.state, State::Open) {
            // spec: wire.md §20.4 — ask the sender to stop; best effort, never waiting.
            let sender = Sender {
                link: self.link.clone(),
            };
            let notice =
                OutgoingMessage::new(exchange::cancel_transfer(&self.header), Bytes::new());
            let _ = sender.try_send_message(Channel::Control, notice);
        }
    }
}

/// An [`IncomingTransfer`] as an `AsyncRead` ([`IncomingTransfer::into_reader`]).
#[derive(Debug)]
pub struct TransferReader {
    transfer: IncomingTransfer,
    chunk: Bytes,
}

impl AsyncRead for TransferReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.chunk.is_empty() {
            match Pin::new(&mut this.transfer).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Ready(Some(Ok(b))) => this.chunk = b,
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk.split_to(n));
        Poll::Ready(Ok(()))
    }
}
