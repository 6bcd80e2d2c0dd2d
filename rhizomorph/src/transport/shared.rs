//! State shared by a connection's handles and its driver's tasks, and the handle a driver gives
//! the face once a connection is open.
//!
//! Owns the session behind its lock, the wake-ups between senders, readers and the writer, the
//! connection's end ([`CloseReason`]) and what the peer's HELLO told us. Drivers create it; the
//! face ([`Connection`](crate::Connection), [`Sender`](crate::Sender)) waits on it and hands out
//! from it. Never imports the face, and never touches a socket: the drivers do.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Context;

use bytes::Bytes;
use tokio::sync::Notify;

use super::flush::Flush;
use super::handle::Handle;
use super::inbox::Inbox;
use crate::config::{CompressionPolicy, Config};
use crate::error::Error;
use crate::frame::{Channel, ErrorCode, Settings};
use crate::legacy::{ConnectionInfo, Identity};
use crate::session::Session;
use crate::signal::Signal;

/// How the connection talks: the native protocol, or legacy msgpack (hypha-rpc peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The rhizomorph wire protocol (`spec/wire.md`).
    Native,
    /// Legacy msgpack over WebSocket (`spec/legacy.md`): one message per WebSocket message,
    /// `msgpack(header) ++ msgpack payload`; no channels, compression or typed payloads.
    Legacy,
}

impl Mode {
    /// `"native"` or `"legacy"`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Legacy => "legacy",
        }
    }
}

/// An open connection as a driver hands it to the face: the handle over its shared state (its
/// inbox included), the peer's address and the mode.
pub(crate) struct Opened {
    pub(crate) handle: Arc<dyn Handle>,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) mode: Mode,
}

/// How the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A CLOSE frame (from either side).
    Closed {
        /// Its code.
        code: ErrorCode,
        /// Its reason.
        reason: String,
    },
    /// The transport ended without CLOSE (peer died, network failed).
    Lost(String),
}

impl CloseReason {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            CloseReason::Closed { code, reason } => Error::Closed {
                code: *code,
                reason: reason.clone(),
            },
            CloseReason::Lost(why) => Error::ConnectionLost(why.clone()),
        }
    }
}

/// What a connection's handles and driver tasks share whatever the mode: the connection's
/// end, the wake-ups, and what the peer told us in its handshake.
pub(crate) struct Common {
    /// Wakes the writer: something may be ready to send.
    pub(crate) wake_writer: Notify,
    /// Wakes senders waiting for send-buffer room, and anyone waiting for state changes.
    pub(crate) changed: Signal,
    pub(crate) send_buffer: u64,
    closed: Mutex<Option<CloseReason>>,
    /// Whether `closed` is set: read on every send and every received batch, without a lock.
    closed_flag: AtomicBool,
    /// The peer sent GOAWAY.
    pub(crate) peer_goaway: AtomicBool,
    /// Wakes readers waiting for the application to consume (a QUIC stream at its window,
    /// wire.md §17.5; a legacy reader at its receive window, legacy.md §L3.3).
    pub(crate) readable: Signal,
    /// This side sent CLOSE.
    pub(crate) closed_locally: AtomicBool,
    /// The peer's settings, once its HELLO arrived (the codecs it accepts, its limits).
    pub(crate) peer_settings: OnceLock<Settings>,
    /// The peer's HELLO token (server: the client's credential; client: the server's reply).
    pub(crate) peer_token: OnceLock<Bytes>,
    /// Legacy client: what the server's `connection_info` said (legacy.md §L4.2).
    pub(crate) legacy_info: OnceLock<ConnectionInfo>,
    /// Legacy server: who the client is, as the authentication hook decided.
    pub(crate) legacy_identity: OnceLock<Identity>,
    /// Our `MAX_MESSAGE_SIZE`: the decompression limit.
    pub(crate) max_message_size: u64,
    pub(crate) compression: CompressionPolicy,
    /// What was received, for the application's receivers and calls.
    pub(crate) inbox: Inbox,
    /// The default call timeout ([`Config::call_timeout`]).
    pub(crate) call_timeout: std::time::Duration,
    /// Which transport the driver's tasks serve: bumped when a resumable session loses its
    /// transport (wire.md §21.5), so the old tasks stop and a new transport's take over.
    generation: AtomicU64,
    /// The driver tasks of the current transport, aborted when it is replaced.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// What happened to a resumable session (detached, resumed, resume failed), for the
    /// application ([`Connection::next_session_event`](crate::Connection::next_session_event)).
    pub(crate) session_events: super::resume::SessionEvents,
}

/// State shared by the application's handles and the transport's driver tasks: the session
/// of either mode (`S`: the native [`Session`] or the legacy session) behind its lock, and the
/// [`Common`] part.
pub(crate) struct Shared<S = Session> {
    pub(crate) session: Mutex<S>,
    /// The driver's flush hook, for senders that write their own messages (set when the
    /// driver starts, replaced when a resumed session gets a new transport).
    pub(crate) flush: FlushSlot<S>,
    /// Who finds a detached session a new transport (a client's reconnect, a server's registry
    /// of detached sessions); none for connections that cannot be resumed.
    pub(crate) resumer: OnceLock<Arc<dyn super::resume::Resumer>>,
    common: Common,
}

/// The current flush hook ([`Flush`]), replaceable when a session moves to a new transport.
pub(crate) struct FlushSlot<S> {
    hook: std::sync::RwLock<Option<Arc<dyn Flush<S>>>>,
}

impl<S> FlushSlot<S> {
    fn new() -> Self {
        FlushSlot {
            hook: std::sync::RwLock::new(None),
        }
    }

    /// Runs `f` with the current hook, under the slot's read lock (no reference count is
    /// taken: this is on every send's path). `f` must not install a hook.
    pub(crate) fn with<R>(&self, f: impl FnOnce(Option<&Arc<dyn Flush<S>>>) -> R) -> R {
        f(self.hook.read().unwrap_or_else(|p| p.into_inner()).as_ref())
    }

    /// Installs the hook of a (new) transport.
    pub(crate) fn set(&self, hook: Arc<dyn Flush<S>>) {
        *self.hook.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }
}

impl<S> std::ops::Deref for Shared<S> {
    type Target = Common;

    fn deref(&self) -> &Common {
        &self.common
    }
}

impl<S> Shared<S> {
    /// Shared state for `session`; `max_message_size` is our decompression limit.
    pub(crate) fn with(session: S, config: &Config, max_message_size: u64) -> Arc<Shared<S>> {
        Arc::new(Shared {
            session: Mutex::new(session),
            flush: FlushSlot::new(),
            resumer: OnceLock::new(),
            common: Common {
                generation: AtomicU64::new(0),
                tasks: Mutex::new(Vec::new()),
                session_events: Default::default(),
                peer_settings: OnceLock::new(),
                peer_token: OnceLock::new(),
                legacy_info: OnceLock::new(),
                legacy_identity: OnceLock::new(),
                max_message_size,
                compression: config.compression,
                inbox: Inbox::new(config.exchanges),
                call_timeout: config.call_timeout,
                wake_writer: Notify::new(),
                changed: Signal::default(),
                send_buffer: config.send_buffer,
                closed: Mutex::new(None),
                closed_flag: AtomicBool::new(false),
                peer_goaway: AtomicBool::new(false),
                readable: Signal::default(),
                closed_locally: AtomicBool::new(false),
            },
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        // A panic while holding the lock would be a bug in this crate; keep going with the
        // state as it is rather than poisoning every handle.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a message was queued on `channel`: the driver's flush hook writes it on this task
    /// if the transport takes it at once; otherwise (or with no hook yet) the writer task is
    /// woken. Never waits.
    pub(crate) fn after_queue(&self, channel: Channel, cx: &mut Context<'_>) {
        self.flush.with(|hook| match hook {
            Some(flush) => flush.after_queue(self, channel, cx),
            None => self.wake_writer.notify_one(),
        })
    }
}

impl<S> Shared<S> {
    /// Waits until `may_read` holds on the session (checked now and after every consumption
    /// the application reports); false if the connection ended first. A reader calls it
    /// before each read, so the transport's flow control pushes back on the peer meanwhile.
    pub(crate) async fn wait_readable(&self, mut may_read: impl FnMut(&S) -> bool) -> bool {
        if may_read(&self.lock()) {
            return true;
        }
        self.readable
            .wait_for(|| {
                if self.is_closed() {
                    Some(false)
                } else {
                    may_read(&self.lock()).then_some(true)
                }
            })
            .await
    }
}

impl Shared {
    pub(crate) fn new(session: Session, config: &Config) -> Arc<Shared> {
        let max = session.local_settings().max_message_size;
        Shared::with(session, config, max)
    }
}

impl Common {
    /// The transport generation driver tasks serve (see `generation`).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The transport of `generation` is gone: its tasks are aborted and the next generation
    /// begins. False if `generation` was not the current one (someone else handled it).
    pub(crate) fn retire(&self, generation: u64) -> bool {
        if self
            .generation
            .compare_exchange(
                generation,
                generation + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        // A writer of the old generation waiting for a wake-up exits; one it swallowed is
        // passed on by it.
        self.wake_writer.notify_waiters();
        true
    }

    /// Records the driver tasks of the current transport (aborted when it is retired).
    pub(crate) fn track_tasks(&self, tasks: impl IntoIterator<Item = tokio::task::AbortHandle>) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tasks);
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the connection is over (cheaper than [`close_reason`](Self::close_reason):
    /// nothing cloned).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed_flag.load(Ordering::Acquire)
    }

    pub(crate) fn set_closed(&self, reason: CloseReason) {
        let mut c = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_none() {
            *c = Some(reason);
            self.closed_flag.store(true, Ordering::Release);
        }
        drop(c);
        self.changed.notify_waiters();
        self.readable.notify_waiters();
        self.session_events.wake();
        self.wake_writer.notify_one();
    }
}
