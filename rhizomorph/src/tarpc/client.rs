//! The client half: a tarpc client transport whose every request is a rhizomorph call
//! ([`Sender::call`], wire.md §20.1).
//!
//! Owns [`ClientTransport`]: requests become calls on the channel the request chooses, with
//! tarpc's deadline as the call's timeout; tarpc's `Cancel` drops the call (CANCEL, §5.7, and
//! the §20.2 cancellation the server sees); replies come back as tarpc responses. Never reads
//! the connection's receive queue (replies are matched by the connection itself) and never
//! decodes anything but the reply bodies of its own calls.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::FuturesUnordered;
use futures_util::{Sink, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::{ClientMessage, RequestName, Response, ServerError};

use super::codec;
use super::TransportError;
use crate::call::Call;
use crate::connection::CloseReason;
use crate::error::Error;
use crate::frame::Channel;
use crate::header::RoutingHeader;
use crate::sender::Sender;

/// Method names kept as header values (past this many, each request allocates its own).
const MAX_METHOD_NAMES: usize = 64;

/// How long after tarpc's deadline a call gives up on its own.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// Which channel a request rides (and its response with it): `rpc` unless told otherwise.
pub type ChannelOf<Req> = fn(&Req) -> Channel;

/// One call in flight, tagged with tarpc's request id.
struct InFlight {
    id: u64,
    call: Call,
}

impl Future for InFlight {
    type Output = (u64, Result<crate::Message, Error>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id;
        Pin::new(&mut self.call).poll(cx).map(|r| (id, r))
    }
}

/// A tarpc client transport over a rhizomorph connection, for one service: a
/// `Sink<ClientMessage<Req>>` and a `Stream` of `Response<Resp>`, what
/// `tarpc::client::new(config, transport)` takes.
///
/// Each request is one rhizomorph message (`service`, `method`, `deadline`, `session`, and
/// `trace-id` when tarpc's trace id is not zero, in its header; the request body as bincode),
/// sent as a [`Call`]; its response is the call's reply. Any number of client transports (for
/// as many services) share one connection: each holds a [`Sender`].
///
/// A call that fails on the rhizomorph side (the connection ended, the deadline passed, the
/// reply did not decode) is answered with a tarpc `ServerError` for that request alone; the
/// stream ends once the connection has closed and no call is left.
///
/// # Cancel safety
///
/// Its poll methods keep their state across calls (tarpc's dispatch polls them); dropping the
/// transport drops every call in flight, which cancels each (see [`Call`]).
pub struct ClientTransport<Req, Resp> {
    sender: Sender,
    service: Bytes,
    to: Option<Bytes>,
    channel_of: ChannelOf<Req>,
    calls: FuturesUnordered<Abortable<InFlight>>,
    /// By tarpc's request id (tarpc's own counter: a fast hash is safe).
    aborts: HashMap<u64, AbortHandle, foldhash::fast::RandomState>,
    /// Responses made without a call (a request that could not be encoded).
    ready: VecDeque<Response<Resp>>,
    /// Method names seen, as header values.
    methods: Vec<(String, Bytes)>,
    deadline: codec::DeadlineText,
    closed: Option<Pin<Box<dyn Future<Output = CloseReason> + Send>>>,
    closing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ended: bool,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> std::fmt::Debug for ClientTransport<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTransport")
            .field("service", &self.service)
            .field("in_flight", &self.aborts.len())
            .finish()
    }
}

// Never pinned structurally: every poll method works through `get_mut`.
impl<Req, Resp> Unpin for ClientTransport<Req, Resp> {}

impl<Req, Resp> ClientTransport<Req, Resp> {
    /// A transport for `service` over the connection `sender` belongs to; requests ride `rpc`.
    pub fn new(sender: Sender, service: impl Into<Bytes>) -> Self {
        let closed = sender.clone();
        ClientTransport {
            sender,
            service: service.into(),
            to: None,
            channel_of: |_| Channel::Rpc,
            calls: FuturesUnordered::new(),
            aborts: HashMap::default(),
            ready: VecDeque::new(),
            methods: Vec::new(),
            deadline: codec::DeadlineText::default(),
            closed: Some(Box::pin(async move { closed.closed().await })),
            closing: None,
            ended: false,
            _types: PhantomData,
        }
    }

    /// Chooses each request's channel (and so its response's): e.g. an `upload` method on
    /// `bulk` so it never delays a `status` call on `rpc`.
    ///
    /// ```
    /// # use rhizomorph::{Channel, tarpc::ClientTransport};
    /// # #[derive(serde::Serialize)] enum StoreRequest { Status, Upload(Vec<u8>) }
    /// # fn demo(t: ClientTransport<StoreRequest, ()>) -> ClientTransport<StoreRequest, ()> {
    /// t.with_channels(|req| match req {
    ///     StoreRequest::Upload(_) => Channel::Bulk,
    ///     _ => Channel::Rpc,
    /// })
    /// # }
    /// ```
    pub fn with_channels(mut self, channel_of: ChannelOf<Req>) -> Self {
        self.channel_of = channel_of;
        self
    }

    /// Addresses every request `to` a peer (wire.md §6.2), for a server reached through a
    /// router (`rhizomorph serve`): e.g. `"ws-1/store"` for the client that registered as
    /// `store` in workspace `ws-1`. Without it, requests go to the peer at the other end.
    pub fn to(mut self, target: impl Into<Bytes>) -> Self {
        self.to = Some(target.into());
        self
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.aborts.len()
    }
}

/// A tarpc error for one request (`kind`, with `detail` saying what happened).
fn failed(kind: io::ErrorKind, detail: String) -> ServerError {
    ServerError::new(kind, detail)
}

impl<Req, Resp> ClientTransport<Req, Resp>
where
    Req: Serialize + RequestName,
    Resp: DeserializeOwned,
{
    fn start_call(&mut self, request: tarpc::Request<Req>) {
        let id = request.id;
        let body = match codec::encode(&request.message) {
            Ok(b) => b,
            Err(e) => {
                self.ready.push_back(Response {
                    request_id: id,
                    message: Err(failed(
                        io::ErrorKind::InvalidInput,
                        format!("the request did not encode: {e}"),
                    )),
                });
                return;
            }
        };
        let channel = (self.channel_of)(&request.message);
        let method = self.method_name(request.message.name());
        let mut header = RoutingHeader::new()
            .with(codec::SERVICE, self.service.clone())
            .with(codec::METHOD, method);
        if let Some(to) = &self.to {
            header.set("to", to.clone());
        }
        codec::put_context(&mut header, &request.context, &mut self.deadline);
        // tarpc enforces the deadline itself (`RpcError::DeadlineExceeded`, and a `Cancel`);
        // the call's own timeout is a backstop a little later, for a dispatch that stopped.
        let timeout = request
            .context
            .deadline
            .saturating_duration_since(Instant::now())
            + DEADLINE_GRACE;
        let call = self.sender.call(channel, header, body).timeout(timeout);
        let (abort, registration) = AbortHandle::new_pair();
        self.aborts.insert(id, abort);
        self.calls
            .push(Abortable::new(InFlight { id, call }, registration));
    }

    /// `name` as a header value, allocated once per method (a service has a handful).
    fn method_name(&mut self, name: &str) -> Bytes {
        if let Some((_, b)) = self.methods.iter().find(|(n, _)| n == name) {
            return b.clone();
        }
        let b = Bytes::copy_from_slice(name.as_bytes());
        if self.methods.len() < MAX_METHOD_NAMES {
            self.methods.push((name.to_string(), b.clone()));
        }
        b
    }

    fn response(id: u64, r: Result<crate::Message, Error>) -> Response<Resp> {
        let message = match r {
            Ok(m) => match codec::decode::<Result<Resp, ServerError>>(&m.payload) {
                Ok(body) => body,
                Err(e) => Err(failed(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the response to request {id} did not decode as {}: {e}",
                        std::any::type_name::<Resp>()
                    ),
                )),
            },
            Err(Error::CallTimedOut { after }) => Err(failed(
                io::ErrorKind::TimedOut,
                format!("no response within the request's deadline ({after:?})"),
            )),
            Err(Error::CallFailed { reason }) => Err(failed(io::ErrorKind::Other, reason)),
            Err(e) => Err(failed(
                io::ErrorKind::ConnectionAborted,
                format!("the rhizomorph connection failed: {e}"),
            )),
        };
        Response {
            request_id: id,
            message,
        }
    }
}

impl<Req, Resp> Sink<ClientMessage<Req>> for ClientTransport<Req, Resp>
where
    Req: Serialize + RequestName,
    Resp: DeserializeOwned,
{
    type Error = TransportError;

    /// Waits for room in the `rpc` channel's send buffer (credit-aware backpressure).
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sender
            .poll_ready(cx, Channel::Rpc)
            .map_err(TransportError::Connection)
    }

    fn start_send(self: Pin<&mut Self>, item: ClientMessage<Req>) -> Result<(), Self::Error> {
        let this = self.get_mut();
        match item {
            ClientMessage::Request(request) => this.start_call(request),
            ClientMessage::Cancel { request_id, .. } => {
                // Aborting drops the call at its next poll: CANCEL and the §20.2 notice.
                if let Some(abort) = this.aborts.remove(&request_id) {
                    abort.abort();
                }
            }
            // `ClientMessage` is non-exhaustive: a kind this adapter does not know is not sent.
            _ => {}
        }
        Ok(())
    }

    /// Calls are queued when polled (by the stream half, which tarpc polls all the time).
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// Closes the connection gracefully (GOAWAY; responses already on their way still arrive
    /// for calls that are not dropped).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        let sender = this.sender.clone();
        let closing = this
            .closing
            .get_or_insert_with(|| Box::pin(async move { sender.close().await }));
        closing.as_mut().poll(cx).map(Ok)
    }
}

impl<Req, Resp> Stream for ClientTransport<Req, Resp>
where
    Req: Serialize + RequestName,
    Resp: DeserializeOwned,
{
    type Item = Result<Response<Resp>, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(r) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(r)));
        }
        loop {
            match this.calls.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok((id, r)))) => {
                    if this.aborts.remove(&id).is_none() {
                        continue; // cancelled meanwhile: tarpc no longer waits for it
                    }
                    return Poll::Ready(Some(Ok(Self::response(id, r))));
                }
                Poll::Ready(Some(Err(_aborted))) => continue,
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if this.ended {
            return Poll::Ready(None);
        }
        // Nothing in flight: the stream ends with the connection.
        if this.calls.is_empty() {
            if let Some(closed) = this.closed.as_mut() {
                if closed.as_mut().poll(cx).is_ready() {
                    this.closed = None;
                    this.ended = true;
                    return Poll::Ready(None);
                }
            }
        }
        Poll::Pending
    }
}
