//! Calls: a request that waits for its reply, matched on the `session` field (wire.md §20.1),
//! and the answering side's replies and cancellation watch (§20.2).
//!
//! Owns [`Call`] (the caller's future: queue the request, wait for the reply or the timeout,
//! cancel on drop), the reply helpers on [`Sender`], and [`Cancelled`] (a request's
//! cancellation, seen by whoever answers it). The pending-call table is the inbox's
//! (`transport::inbox`): a reply is matched the moment it arrives, whoever else reads the
//! connection. Never touches a socket.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::exchange::{self, Exchange};
use crate::frame::Channel;
use crate::header::RoutingHeader;
use crate::sender::Sender;
use crate::session::{Message, OutgoingMessage};
use crate::transport::inbox::PeerKey;

/// A call in flight ([`Sender::call`]): a future of its reply.
///
/// Resolves to the reply message (payload decompressed), [`Error::CallFailed`] if the peer
/// answered with an error, [`Error::CallTimedOut`] after its timeout, or the connection's
/// error if it ended first.
///
/// # Cancel safety
///
/// Dropping it cancels the call: a request still queued is dropped, one being sent is aborted
/// (CANCEL, wire.md §5.7.1), and one already sent is followed by a cancellation on `control`
/// (§20.2) that the peer's [`Sender::cancelled`] sees; a reply that comes later is discarded.
#[must_use = "a call does nothing unless awaited; dropping it cancels it"]
pub struct Call {
    sender: Sender,
    channel: Channel,
    session: u64,
    /// The request's header (where a cancellation goes).
    header: RoutingHeader,
    /// The prepared request, until it is queued.
    request: Option<OutgoingMessage>,
    /// Why the request could not be prepared (returned at the first poll).
    error: Option<Error>,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    reply: Option<oneshot::Receiver<Message>>,
    /// The request's id on its channel, once queued.
    queued: Option<u64>,
    done: bool,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("channel", &self.channel)
            .field("session", &self.session)
            .field("queued", &self.queued)
            .field("done", &self.done)
            .finish()
    }
}

impl Call {
    /// Waits at most `timeout` for the reply instead of the config's
    /// [`call_timeout`](crate::Config::call_timeout). Counted from the first poll.
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = timeout;
        self
    }

    /// The call's `session` id (unique among this connection's calls).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Gives up on the call (see the type's cancel safety): forgets it, stops the request,
    /// tells the peer if the request left.
    fn cancel(&mut self) {
        let handle = self.sender.handle();
        if !handle.common().inbox.forget_call(self.session) {
            return;
        }
        if let Some(id) = self.queued {
            // spec: wire.md §5.7.1 — dropped if not started, aborted if being sent.
            handle.cancel(self.channel, id);
            // spec: wire.md §20.2 — and the peer told, in case it was sent: best effort, never
            // waiting (a full control buffer means the connection is in trouble anyway).
            let notice = OutgoingMessage::new(
                exchange::cancel_call(&self.header, self.session),
                Bytes::new(),
            );
            let _ = self.sender.try_send_message(Channel::Control, notice);
        }
    }

    fn finish(&mut self, r: Result<Message, Error>) -> Poll<Result<Message, Error>> {
        self.done = true;
        Poll::Ready(r)
    }
}

impl Future for Call {
    type Output = Result<Message, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(Error::Timeout("a call polled after it completed")));
        }
        if let Some(e) = this.error.take() {
            return this.finish(Err(e));
        }
        let common = this.sender.handle().common();
        if this.reply.is_none() {
            match common.inbox.register_call(this.session) {
                Some(rx) => this.reply = Some(rx),
                None => {
                    let e = match common.close_reason() {
                        Some(r) => r.to_error(),
                        None => Error::ConnectionLost("the connection is over".into()),
                    };
                    return this.finish(Err(e));
                }
            }
            this.deadline = Some(Box::pin(tokio::time::sleep(this.timeout)));
        }
        if this.request.is_some() {
            match this.sender.poll_queue(cx, this.channel, &mut this.request) {
                Poll::Ready(Ok(id)) => this.queued = Some(id),
                Poll::Ready(Err(e)) => {
                    common.inbox.forget_call(this.session);
                    return this.finish(Err(e));
                }
                Poll::Pending => {}
            }
        }
        if let Some(rx) = this.reply.as_mut() {
            match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(mut m)) => {
                    m.decompress(common.max_message_size);
                    let failed = match exchange::classify(&m.header) {
                        Ok(Exchange::Reply { error, .. }) => error,
                        _ => None,
                    };
                    return this.finish(match failed {
                        Some(reason) => Err(Error::CallFailed { reason }),
                        None => Ok(m),
                    });
                }
                Poll::Ready(Err(_)) => {
                    // The slot was dropped: the connection ended.
                    let e = match common.close_reason() {
                        Some(r) => r.to_error(),
                        None => Error::ConnectionLost("the connection ended".into()),
                    };
                    return this.finish(Err(e));
                }
                Poll::Pending => {}
            }
        }
        if let Some(d) = this.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                this.cancel();
                let after = this.timeout;
                return this.finish(Err(Error::CallTimedOut { after }));
            }
        }
        Poll::Pending
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done && self.reply.is_some() {
            self.cancel();
        }
    }
}

/// Whether a request was cancelled by its caller ([`Sender::cancelled`]): resolves to `true`
/// when the caller's cancellation arrives (wire.md §20.2), `false` if the connection ends
/// first.
///
/// # Cancel safety
///
/// Cancel-safe: it only waits; dropping it stops watching.
#[must_use = "a cancellation watch does nothing unless polled"]
pub struct Cancelled {
    sender: Sender,
    key: PeerKey,
}

impl std::fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancelled")
            .field("session", &self.key.1)
            .finish()
    }
}

impl Future for Cancelled {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        self.sender
            .handle()
            .common()
            .inbox
            .poll_cancelled(&self.key, cx)
    }
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        self.sender.handle().common().inbox.unwatch(&self.key);
    }
}

/// The request key of `request` (its `from` and `session`), or why it is not a call.
fn request_key(request: &Message) -> Result<PeerKey, Error> {
    let session = request
        .header
        .get(exchange::SESSION)
        .ok_or(Error::NotACall)?;
    let from = request
        .header
        .get(exchange::FROM)
        .cloned()
        .unwrap_or_default();
    Ok((from, session.clone()))
}

impl Sender {
    /// Calls: sends `payload` on `channel` as a request (wire.md §20.1: `session` set to a
    /// fresh id) and resolves to the reply. Waits at most the config's
    /// [`call_timeout`](crate::Config::call_timeout) ([`Call::timeout`] changes it). Notifications
    /// (no reply wanted) stay plain [`send`](Self::send)s.
    ///
    /// ```no_run
    /// # async fn demo(sender: rhizomorph::Sender) -> Result<(), rhizomorph::Error> {
    /// use rhizomorph::{Channel, RoutingHeader};
    /// use std::time::Duration;
    /// let header = RoutingHeader::new().with("method", "add");
    /// let reply = sender
    ///     .call(Channel::Rpc, header, "[1, 2]")
    ///     .timeout(Duration::from_secs(2))
    ///     .await?;
    /// println!("{:?}", reply.payload);
    /// # Ok(()) }
    /// ```
    pub fn call(&self, channel: Channel, header: RoutingHeader, payload: impl Into<Bytes>) -> Call {
        self.call_message(channel, OutgoingMessage::new(header, payload))
    }

    /// Like [`call`](Self::call) with full control of the request's encoding and compression.
    pub fn call_message(&self, channel: Channel, mut request: OutgoingMessage) -> Call {
        let common = self.handle().common();
        let session = common.inbox.next_id();
        request.header = exchange::request(request.header, session);
        let header = request.header.clone();
        let (request, error) = match self.handle().prepare(request, None) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e)),
        };
        Call {
            sender: self.clone(),
            channel,
            session,
            header,
            request,
            error,
            timeout: common.call_timeout,
            deadline: None,
            reply: None,
            queued: None,
            done: false,
        }
    }

    /// Answers `request` (a message with a `session`, wire.md §20.1) with `payload`, on the
    /// channel it came on. [`Error::NotACall`] if it has no `session`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`send`](Self::send).
    pub async fn reply(&self, request: &Message, payload: impl Into<Bytes>) -> Result<u64, Error> {
        let key = request_key(request)?;
        let header = exchange::reply(&request.header, None);
        let sent = self.send(request.channel, header, payload).await;
        self.settle(&key);
        sent
    }

    /// The reply to `key` is queued (or failed): a drain no longer waits for it.
    fn settle(&self, key: &PeerKey) {
        if self.handle().common().inbox.settle(key) {
            self.handle().reply_settled();
        }
    }

    /// Answers `request` with a failure (`status: error`, `error: reason`): the caller's
    /// [`Call`] resolves to [`Error::CallFailed`] with `reason`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`send`](Self::send).
    pub async fn reply_error(&self, request: &Message, reason: &str) -> Result<u64, Error> {
        let key = request_key(request)?;
        let header = exchange::reply(&request.header, Some(reason));
        let sent = self.send(request.channel, header, Bytes::new()).await;
        self.settle(&key);
        sent
    }

    /// Resolves when the caller of `request` gives up on it (its [`Call`] was dropped or timed
    /// out, wire.md §20.2): a server stops work nobody waits for. [`Error::NotACall`] if it has
    /// no `session`.
    pub fn cancelled(&self, request: &Message) -> Result<Cancelled, Error> {
        Ok(Cancelled {
            sender: self.clone(),
            key: request_key(request)?,
        })
    }

    /// Queues `message` on `channel` if the send buffer has room now, never waiting
    /// ([`Error::WouldBlock`] if it has not).
    pub fn try_send_message(
        &self,
        channel: Channel,
        message: OutgoingMessage,
    ) -> Result<u64, Error> {
        let handle = self.handle();
        let mut out = Some(handle.prepare(message, None)?);
        if let Some(reason) = handle.common().close_reason() {
            return Err(reason.to_error());
        }
        let id = handle
            .try_send(channel, &mut out)?
            .ok_or(Error::WouldBlock)?;
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        handle.after_queue(channel, &mut cx);
        Ok(id)
    }
}
