//! Many tarpc services on one rhizomorph connection: calls are handed to the service their
//! `service` header names, each service with a tarpc server channel of its own.
//!
//! Owns [`Services`] and the demultiplexer its transports share: whichever transport is polled
//! reads the connection and queues what it reads for the service it names (at most
//! [`SERVICE_QUEUE`] messages each; a full queue stops reading until its service catches up, so
//! memory stays bounded). A call for a service nobody serves is answered with an error at once.
//! Never decodes a payload.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_util::task::ArcWake;

use bytes::Bytes;
use tracing::debug;

use super::codec;
use super::server::ServerTransport;
use crate::connection::{Connection, Message};
use crate::sender::Sender;

/// Messages a service's queue holds before reading the connection waits for it.
pub const SERVICE_QUEUE: usize = 256;

/// The parked services' wakers. The connection is polled with a waker that wakes them all
/// (any of them may be the one to read next: a service whose task has stopped polling must not
/// hold up the others). Its lock is a leaf: never held while taking another.
#[derive(Default)]
struct Parked {
    wakers: Mutex<HashMap<Bytes, Waker>>,
}

impl Parked {
    fn park(&self, name: &Bytes, waker: &Waker) {
        let mut w = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        match w.get(name) {
            Some(old) if old.will_wake(waker) => {}
            _ => {
                w.insert(name.clone(), waker.clone());
            }
        }
    }

    fn wake_service(&self, name: &Bytes) {
        let waker = self
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn wake_all(&self) {
        let wakers: Vec<Waker> = self
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl ArcWake for Parked {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.wake_all();
    }
}

struct Demux {
    conn: Connection,
    queues: HashMap<Bytes, VecDeque<Message>>,
    /// Read from the connection for a service whose queue was full.
    held: Option<(Bytes, Message)>,
    ended: bool,
    parked: Arc<Parked>,
    /// Wakes every parked service: what the connection is polled with.
    reader: Waker,
}

/// The services of one connection (see the module doc). Cheap to clone.
///
/// ```no_run
/// # #[tarpc::service] trait Calc { async fn add(a: i32, b: i32) -> i32; }
/// # #[tarpc::service] trait Clock { async fn now() -> u64; }
/// # async fn demo(conn: rhizomorph::Connection) {
/// use rhizomorph::tarpc::Services;
/// let services = Services::new(conn);
/// let calc = services.serve::<CalcRequest, CalcResponse>("calc");
/// let clock = services.serve::<ClockRequest, ClockResponse>("clock");
/// // Each is a transport for its own `tarpc::server::BaseChannel`.
/// # drop((calc, clock)); }
/// ```
#[derive(Clone)]
pub struct Services {
    sender: Sender,
    shared: Arc<Mutex<Demux>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .lock()
            .queues
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        f.debug_struct("Services")
            .field("services", &names)
            .finish()
    }
}

impl Services {
    /// Takes the connection's receiving side; its calls go to the services registered with
    /// [`serve`](Self::serve).
    pub fn new(conn: Connection) -> Services {
        let parked = Arc::new(Parked::default());
        Services {
            sender: conn.sender(),
            shared: Arc::new(Mutex::new(Demux {
                conn,
                queues: HashMap::new(),
                held: None,
                ended: false,
                reader: futures_util::task::waker(parked.clone()),
                parked,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Demux> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A tarpc server transport for the calls whose `service` header is `name`. Registering
    /// a name twice hands the queue to the newer transport.
    pub fn serve<Req, Resp>(&self, name: impl Into<Bytes>) -> ServerTransport<Req, Resp> {
        let name = name.into();
        self.lock().queues.entry(name.clone()).or_default();
        let member = Member {
            shared: self.shared.clone(),
            name,
        };
        ServerTransport::for_service(self.sender.clone(), member)
    }
}

/// One service's share of the connection.
pub(crate) struct Member {
    shared: Arc<Mutex<Demux>>,
    name: Bytes,
}

impl Member {
    /// The next call for this service, reading the connection for everyone as needed.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut guard = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let d = &mut *guard;
        // Parked first: a wake-up between the checks below and returning is not lost.
        d.parked.park(&self.name, cx.waker());
        loop {
            if let Some(m) = d.queues.get_mut(&self.name).and_then(VecDeque::pop_front) {
                if d.held.is_some() {
                    d.parked.wake_all(); // room for what held reading up
                }
                return Poll::Ready(Some(m));
            }
            if let Some((name, m)) = d.held.take() {
                match d.queues.get_mut(&name) {
                    Some(q) if q.len() < SERVICE_QUEUE => {
                        q.push_back(m);
                        if name != self.name {
                            d.parked.wake_service(&name);
                        }
                        continue;
                    }
                    // That service is behind: wait for it to take some (it wakes us).
                    Some(_) => {
                        d.held = Some((name, m));
                        return Poll::Pending;
                    }
                    // Its service went away meanwhile.
                    None => {
                        refuse_unknown(&d.conn.sender(), &m, &name);
                        continue;
                    }
                }
            }
            if d.ended {
                return Poll::Ready(None);
            }
            let reader = d.reader.clone();
            match d.conn.poll_recv(&mut Context::from_waker(&reader)) {
                Poll::Ready(Some(m)) => {
                    let name = m.header.get(codec::SERVICE).cloned().unwrap_or_default();
                    if d.queues.contains_key(&name) {
                        d.held = Some((name, m));
                    } else {
                        refuse_unknown(&d.conn.sender(), &m, &name);
                    }
                }
                Poll::Ready(None) => {
                    d.ended = true;
                    d.parked.wake_all();
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut d = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        d.queues.remove(&self.name);
        d.parked
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
        // Whoever else waits may have relied on this one reading the connection.
        d.parked.wake_all();
    }
}

/// A call for a service nobody serves: answered with an error now (dropped if the send
/// buffer is full; the caller then waits for its deadline).
fn refuse_unknown(sender: &Sender, m: &Message, name: &Bytes) {
    let Ok(to) = sender.reply_to(m) else {
        return; // a one-way message: nobody to tell
    };
    let reason = format!(
        "no tarpc service {:?} on this connection",
        String::from_utf8_lossy(name)
    );
    let mut slot = Some(sender.reply_error_message(&to, &reason));
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    if sender.poll_reply(&mut cx, &to, &mut slot).is_pending() {
        debug!(%reason, "send buffer full: refusal dropped");
    }
}
