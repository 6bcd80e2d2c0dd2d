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

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use crate::error::Error;
use crate::exchange::{self, Exchange};
use crate::frame::Channel;
use crate::header::RoutingHeader;
use crate::sender::Sender;
use crate::session::{Message, OutgoingMessage};
use crate::transport::calls::Reply;
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
    /// A timeout other than the connection's default has a timer of its own (the default one
    /// is served by the connection's call timer, see `transport::calls`).
    own_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The call is registered in the inbox (its reply is awaited).
    registered: bool,
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

    /// Stops the request and tells the peer (see the type's cancel safety); the call is no
    /// longer in the inbox.
    fn withdraw(&mut self) {
        let Some(id) = self.queued else {
            return;
        };
        // spec: wire.md §5.7.1 — dropped if not started, aborted if being sent.
        self.sender.handle().cancel(self.channel, id);
        // spec: wire.md §20.2 — and the peer told, in case it was sent: best effort, never
        // waiting (a full control buffer means the connection is in trouble anyway).
        let notice = OutgoingMessage::new(
            exchange::cancel_call(&self.header, self.session),
            Bytes::new(),
        );
        let _ = self.sender.try_send_message(Channel::Control, notice);
    }

    fn finish(&mut self, r: Result<Message, Error>) -> Poll<Result<Message, Error>> {
        self.done = true;
        Poll::Ready(r)
    }

    fn gone(&mut self) -> Poll<Result<Message, Error>> {
        let e = match self.sender.handle().common().close_reason() {
            Some(r) => r.to_error(),
            None => Error::ConnectionLost("the connection ended".into()),
        };
        self.finish(Err(e))
    }

    fn timed_out(&mut self) -> Poll<Result<Message, Error>> {
        self.withdraw();
        let after = self.timeout;
        self.finish(Err(Error::CallTimedOut { after }))
    }

    /// Registers the call: with the connection's call timer for the default timeout (started
    /// on the first call), with a timer of its own for another.
    fn register(&mut self) -> bool {
        let handle = &self.sender.link.handle;
        let common = handle.common();
        let deadline = if self.timeout == common.call_timeout {
            if !common.inbox.call_timer_started.swap(true, Ordering::AcqRel) {
                tokio::spawn(call_timer(handle.clone()));
            }
            Some(Instant::now() + self.timeout)
        } else {
            self.own_timer = Some(Box::pin(tokio::time::sleep(self.timeout)));
            None
        };
        self.registered = common.inbox.register_call(self.session, deadline);
        self.registered
    }
}

/// Serves the default-timeout deadlines of one connection's calls: sleeps until the earliest,
/// times out what is due, and waits for a first deadline when none is queued. Ends with the
/// connection. One per connection, started by its first call.
async fn call_timer(handle: std::sync::Arc<dyn crate::transport::handle::Handle>) {
    let inbox = &handle.common().inbox;
    loop {
        let (next, closed) = inbox.expire_calls(Instant::now());
        if closed {
            return;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = inbox.call_timer.notified() => {}
                }
            }
            None => inbox.call_timer.notified().await,
        }
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
        if !this.registered && !this.register() {
            return this.gone();
        }
        if this.request.is_some() {
            match this.sender.poll_queue(cx, this.channel, &mut this.request) {
                Poll::Ready(Ok(id)) => this.queued = Some(id),
                Poll::Ready(Err(e)) => {
                    this.sender
                        .handle()
                        .common()
                        .inbox
                        .forget_call(this.session);
                    return this.finish(Err(e));
                }
                Poll::Pending => {}
            }
        }
        let common = this.sender.handle().common();
        match common.inbox.poll_reply(this.session, cx) {
            Poll::Ready(Reply::Message(mut m)) => {
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
            Poll::Ready(Reply::TimedOut) => return this.timed_out(),
            Poll::Ready(Reply::Gone) => return this.gone(),
            Poll::Pending => {}
        }
        if let Some(t) = this.own_timer.as_mut() {
            if t.as_mut().poll(cx).is_ready() {
                common.inbox.forget_call(this.session);
                return this.timed_out();
            }
        }
        Poll::Pending
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done
            && self.registered
            && self
                .sender
                .handle()
                .common()
                .inbox
                .forget_call(self.session)
        {
            self.withdraw();
        }
    }
}

/// A request's identity among a connection's calls: its `from` and `session` (wire.md §20.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey(PeerKey);

/// How far a reader of [`Sender::poll_cancellations`] has got (start at `default()`).
#[derive(Debug, Default, Clone)]
pub struct CancelCursor(u64);

/// Where a request's reply goes: its channel, `from` and `session` ([`Sender::reply_to`]).
#[derive(Debug, Clone)]
pub struct ReplyTo {
    channel: Channel,
    header: RoutingHeader,
    key: PeerKey,
}

impl ReplyTo {
    /// The channel the request came on (the reply rides it too).
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The request's header.
    pub fn request_header(&self) -> &RoutingHeader {
        &self.header
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
            own_timer: None,
            registered: false,
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

    /// Where the reply to `request` goes, for code that answers later from a poll face (a
    /// `Sink` of responses): keep the [`ReplyTo`], build the reply with
    /// [`reply_message`](Self::reply_message), send it with [`poll_reply`](Self::poll_reply).
    /// [`Error::NotACall`] if `request` has no `session`.
    pub fn reply_to(&self, request: &Message) -> Result<ReplyTo, Error> {
        Ok(ReplyTo {
            channel: request.channel,
            header: request.header.clone(),
            key: request_key(request)?,
        })
    }

    /// The reply to `to` carrying `payload` (`type: reply`, the request's `session`, `status:
    /// ok`, wire.md §20.1), for [`poll_reply`](Self::poll_reply).
    pub fn reply_message(&self, to: &ReplyTo, payload: impl Into<Bytes>) -> OutgoingMessage {
        OutgoingMessage::new(exchange::reply(&to.header, None), payload)
    }

    /// The failure reply to `to` (`status: error`, `error: reason`), for
    /// [`poll_reply`](Self::poll_reply): the caller's [`Call`] resolves to
    /// [`Error::CallFailed`].
    pub fn reply_error_message(&self, to: &ReplyTo, reason: &str) -> OutgoingMessage {
        OutgoingMessage::new(exchange::reply(&to.header, Some(reason)), Bytes::new())
    }

    /// The poll face of [`reply`](Self::reply): queues the reply in `slot` on the request's
    /// channel if the send buffer has room (as [`poll_send`](Self::poll_send)); once it is
    /// queued (or failed) a draining connection no longer waits for it.
    pub fn poll_reply(
        &self,
        cx: &mut Context<'_>,
        to: &ReplyTo,
        slot: &mut Option<OutgoingMessage>,
    ) -> Poll<Result<u64, Error>> {
        let r = self.poll_send(cx, to.channel, slot);
        if r.is_ready() {
            self.settle(&to.key);
        }
        r
    }

    /// `request`'s identity among the connection's calls (its `from` and `session`), as
    /// [`poll_cancellations`](Self::poll_cancellations) reports it. [`Error::NotACall`] if it
    /// has no `session`.
    pub fn request_key(&self, request: &Message) -> Result<RequestKey, Error> {
        request_key(request).map(RequestKey)
    }

    /// The next request a caller cancelled (wire.md §20.2) after `cursor`, for code that
    /// watches all of a connection's requests at once (one feed instead of a
    /// [`cancelled`](Self::cancelled) future per request); `Ready(None)` once the connection
    /// ended. Cancellations of requests already answered come too: look the key up, ignore
    /// what is not pending. A reader more than 1,024 cancellations behind skips the oldest.
    pub fn poll_cancellations(
        &self,
        cx: &mut Context<'_>,
        cursor: &mut CancelCursor,
    ) -> Poll<Option<RequestKey>> {
        self.handle()
            .common()
            .inbox
            .poll_cancellations(&mut cursor.0, cx)
            .map(|k| k.map(RequestKey))
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
