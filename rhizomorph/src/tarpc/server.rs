//! The server half: a tarpc server transport fed by a rhizomorph connection (or by one service
//! of it, [`Services`](super::Services)), answering each request with a reply (wire.md §20.1).
//!
//! Owns [`ServerTransport`]: received calls become tarpc requests with their context; a
//! caller's cancellation (§20.2) becomes tarpc's `Cancel`; tarpc's responses become replies on
//! the request's channel. A request whose body does not decode is answered with an error on
//! that call alone. Never blocks: replies wait in one slot for send-buffer room.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::{Sink, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::{ClientMessage, Response, ServerError};
use tracing::debug;

use super::codec;
use super::services::Member;
use super::TransportError;
use crate::call::{CancelCursor, ReplyTo, RequestKey};
use crate::connection::Connection;
use crate::sender::Sender;
use crate::session::OutgoingMessage;

/// Refusals (requests that did not decode) waiting for room; past this many, a refusal is
/// dropped and that caller waits for its deadline instead.
const MAX_REFUSALS: usize = 64;

/// Where requests come from: a whole connection, or one service's share of it.
enum Source {
    Connection(Connection),
    Service(Member),
}

impl Source {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<crate::Message>> {
        match self {
            Source::Connection(c) => c.poll_recv(cx),
            Source::Service(m) => m.poll_recv(cx),
        }
    }
}

/// Requests a transport tracks at once; past this many, a new one is refused alone
/// (tarpc keeps each in flight until it answers, so a peer must not grow this without bound).
pub const MAX_PENDING: usize = 16_384;

/// Past how many received requests the pending ones are checked for deadlines tarpc let pass
/// (it drops such a request without a response).
const SWEEP_EVERY: u64 = 1024;

/// The hasher of the pending tables: their keys come from the peer (its sessions) or count
/// its requests, so the hash is seeded at random per table, yet cheaper than SipHash on keys
/// this short (each request is inserted and removed in both).
type KeyHash = foldhash::quality::RandomState;

/// A request tarpc has not answered yet.
struct Pending {
    to: ReplyTo,
    key: RequestKey,
    deadline: Instant,
}

/// A tarpc server transport over a rhizomorph connection: a `Stream` of
/// `ClientMessage<Req>` and a `Sink<Response<Resp>>`, what `tarpc::server::BaseChannel`
/// takes.
///
/// Request ids are this transport's own (a router may hand one connection calls from many
/// callers, whose `session`s can collide). tarpc's deadline arrives with each request; when a
/// caller drops its call, tarpc sees `Cancel` for it.
///
/// # Cancel safety
///
/// Its poll methods keep their state across calls; dropping it drops the replies not yet
/// queued (their callers see their deadlines pass).
pub struct ServerTransport<Req, Resp> {
    sender: Sender,
    source: Source,
    next_id: u64,
    received: u64,
    pending: HashMap<u64, Pending, KeyHash>,
    /// tarpc's id of each pending request, by its rhizomorph identity.
    ids: HashMap<RequestKey, u64, KeyHash>,
    /// Where this transport is in the connection's feed of cancellations.
    cancels: CancelCursor,
    /// The context each request's is made from (see `codec::context_of`).
    template: tarpc::context::Context,
    /// The reply tarpc handed over last, until the send buffer takes it.
    sending: Option<(ReplyTo, Option<OutgoingMessage>)>,
    refusals: VecDeque<(ReplyTo, Option<OutgoingMessage>)>,
    closing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> std::fmt::Debug for ServerTransport<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTransport")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<Req, Resp> ServerTransport<Req, Resp> {
    /// Serves every call that arrives on `conn` (one service per connection; for several,
    /// see [`Services`](super::Services)).
    pub fn new(conn: Connection) -> Self {
        let sender = conn.sender();
        Self::from_source(sender, Source::Connection(conn))
    }

    pub(crate) fn for_service(sender: Sender, member: Member) -> Self {
        Self::from_source(sender, Source::Service(member))
    }

    fn from_source(sender: Sender, source: Source) -> Self {
        ServerTransport {
            sender,
            source,
            next_id: 1,
            received: 0,
            pending: HashMap::default(),
            ids: HashMap::default(),
            cancels: CancelCursor::default(),
            template: tarpc::context::current(),
            sending: None,
            refusals: VecDeque::new(),
            closing: None,
            _types: PhantomData,
        }
    }

    /// Requests received and not answered yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queues the reply in the slot, if there is room: `Ready(Ok)` once the slot is empty.
    fn poll_sending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        if let Some((to, slot)) = self.sending.as_mut() {
            match self.sender.poll_reply(cx, to, slot) {
                Poll::Ready(Ok(_)) => self.sending = None,
                Poll::Ready(Err(e)) => {
                    self.sending = None;
                    return Poll::Ready(Err(TransportError::Connection(e)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Queues what refusals fit.
    fn poll_refusals(&mut self, cx: &mut Context<'_>) {
        while let Some((to, slot)) = self.refusals.front_mut() {
            match self.sender.poll_reply(cx, to, slot) {
                Poll::Ready(_) => {
                    self.refusals.pop_front();
                }
                Poll::Pending => return,
            }
        }
    }

    /// tarpc drops a request whose deadline passed without a response: its entry goes, and
    /// its caller is told (which also lets a draining connection stop waiting for it).
    fn sweep_expired(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline < now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                self.ids.remove(&p.key);
                let e = ServerError::new(
                    io::ErrorKind::TimedOut,
                    "the request's deadline passed on the server".into(),
                );
                self.refuse(p.to, e);
            }
        }
    }

    fn refuse(&mut self, to: ReplyTo, error: ServerError) {
        if self.refusals.len() >= MAX_REFUSALS {
            debug!("refusals queue full: a refusal dropped (its caller times out)");
            return;
        }
        let body: Result<(), ServerError> = Err(error);
        if let Ok(payload) = codec::encode(&body) {
            let reply = self.sender.reply_message(&to, payload);
            self.refusals.push_back((to, Some(reply)));
        }
    }
}

impl<Req, Resp> Stream for ServerTransport<Req, Resp>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    type Item = Result<ClientMessage<Req>, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.poll_refusals(cx);
        // spec: wire.md §20.2 — a caller gave up: tarpc stops the handler.
        while let Poll::Ready(Some(key)) = this.sender.poll_cancellations(cx, &mut this.cancels) {
            if let Some(id) = this.ids.remove(&key) {
                this.pending.remove(&id);
                return Poll::Ready(Some(Ok(ClientMessage::Cancel {
                    trace_context: Default::default(),
                    request_id: id,
                })));
            }
        }
        loop {
            let m = match this.source.poll_recv(cx) {
                Poll::Ready(Some(m)) => m,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let Ok(to) = this.sender.reply_to(&m) else {
                debug!("a one-way message on a tarpc connection: dropped");
                continue;
            };
            let message = match codec::decode::<Req>(&m.payload) {
                Ok(message) => message,
                Err(e) => {
                    let detail = format!(
                        "the request did not decode as {}: {e}",
                        std::any::type_name::<Req>()
                    );
                    this.refuse(to, ServerError::new(io::ErrorKind::InvalidData, detail));
                    this.poll_refusals(cx);
                    continue;
                }
            };
            // Requests received, refused ones included: the sweep runs however full we are.
            this.received += 1;
            if this.received % SWEEP_EVERY == 0 {
                this.sweep_expired();
            }
            if this.pending.len() >= MAX_PENDING {
                let detail = format!("over {MAX_PENDING} requests pending on this connection");
                this.refuse(to, ServerError::new(io::ErrorKind::Other, detail));
                this.poll_refusals(cx);
                continue;
            }
            let id = this.next_id;
            this.next_id += 1;
            let context = codec::context_of(&m.header, &this.template);
            if let Ok(key) = this.sender.request_key(&m) {
                this.ids.insert(key.clone(), id);
                let deadline = context.deadline;
                this.pending.insert(id, Pending { to, key, deadline });
            }
            return Poll::Ready(Some(Ok(ClientMessage::Request(tarpc::Request {
                context,
                id,
                message,
            }))));
        }
    }
}

impl<Req, Resp> Sink<Response<Resp>> for ServerTransport<Req, Resp>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    type Error = TransportError;

    /// Waits until the previous reply was taken by the send buffer (credit-aware).
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_sending(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Response<Resp>) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let Some(Pending { to, key, .. }) = this.pending.remove(&item.request_id) else {
            return Ok(()); // cancelled by its caller, or expired: nobody waits for it
        };
        this.ids.remove(&key);
        let payload = codec::encode(&item.message).or_else(|e| {
            let failed: Result<(), ServerError> = Err(ServerError::new(
                io::ErrorKind::Other,
                format!("the response did not encode: {e}"),
            ));
            codec::encode(&failed)
        });
        match payload {
            Ok(payload) => {
                let reply = this.sender.reply_message(&to, payload);
                this.sending = Some((to, Some(reply)));
            }
            Err(e) => debug!(error = %e, "a response that cannot be encoded at all: dropped"),
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        this.poll_refusals(cx);
        this.poll_sending(cx)
    }

    /// Sends what is left, then closes the connection gracefully (GOAWAY: calls already
    /// answered reach their callers).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        if this.poll_sending(cx)?.is_pending() {
            return Poll::Pending;
        }
        let sender = this.sender.clone();
        let closing = this
            .closing
            .get_or_insert_with(|| Box::pin(async move { sender.close().await }));
        closing.as_mut().poll(cx).map(Ok)
    }
}
