//! Handing out what a session produced, and the scaffold every native driver opens with.
//!
//! Owns the delivery of session events to the application's side (messages into the
//! connection's queue, state into [`Shared`], the HELLO exchange's outcome to whoever waits
//! for it) and the one way a driver starts: shared state, dispatch, the handle the face gets,
//! and the wait for the HELLO exchange. Events are handed out right after the session lock that
//! produced them, in order; the user's authenticator runs after every lock is released, never
//! under one. Never touches a socket.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::session::SessionEvent;

use super::inbox::{CloseOnDrop, Pushed};
use super::shared::{CloseReason, Mode, Opened, Shared};
use crate::config::{AuthRequest, Authenticator, Config};
use crate::error::Error;
use crate::frame::ResumeStatus;
use crate::session::{Event, Initiator, Role, Session};

/// Delivers session events: messages to the application, state to the shared handle.
pub(crate) struct Dispatch {
    /// Ends the inbox once the driver's tasks (which hold this) are all done.
    _inbox: CloseOnDrop,
    authenticator: Option<Authenticator>,
    peer_addr: SocketAddr,
    connected: Option<oneshot::Sender<Result<(), CloseReason>>>,
}

/// The dispatch of one connection, shared by its driver tasks.
pub(crate) type SharedDispatch = Arc<Mutex<Dispatch>>;

fn lock(dispatch: &SharedDispatch) -> std::sync::MutexGuard<'_, Dispatch> {
    // A panic while holding the lock would be a bug in this crate; keep going with the state
    // as it is rather than poisoning every handle.
    dispatch.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dispatch {
    /// Hands out the session's events. A client's HELLO is returned instead, for
    /// [`authenticate`] to decide on once the locks are released.
    fn drain(&mut self, session: &mut Session, shared: &Shared) -> Option<AuthRequest> {
        let mut hello = None;
        while let Some(event) = session.poll_event() {
            match event {
                Event::Message(m) => {
                    // Bounded by flow control: only what the windows allow is ever queued there;
                    // what nobody takes (a reply a call consumed, a dropped receiver's) gives
                    // its credit back now, so the peer is not stuck.
                    match shared.inbox.push(m) {
                        Pushed::Queued => {}
                        Pushed::QueuedRequest => session.owe_replies(1),
                        Pushed::Release(channel, credit) => session.release(channel, credit),
                        Pushed::ReleaseSettled(channel, credit) => {
                            session.release(channel, credit);
                            session.reply_settled();
                        }
                    }
                }
                Event::HelloReceived { token, agent } => {
                    let _ = shared.peer_token.set(token.clone());
                    hello = Some(AuthRequest {
                        token,
                        agent,
                        peer_addr: self.peer_addr,
                    });
                }
                Event::Connected {
                    agent,
                    peer_settings,
                    token,
                    ..
                } => {
                    if session.role() == Role::Client {
                        let _ = shared.peer_token.set(token);
                    }
                    let _ = shared.peer_settings.set(peer_settings);
                    debug!(peer_agent = %agent, "connected");
                    if let Some(tx) = self.connected.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Event::GoAway { code, reason } => {
                    debug!(%code, %reason, "peer going away");
                    shared
                        .peer_goaway
                        .store(true, std::sync::atomic::Ordering::Release);
                    shared.changed.notify_waiters();
                }
                Event::Closed {
                    code,
                    reason,
                    initiator,
                } => {
                    debug!(%code, %reason, ?initiator, "closed");
                    if initiator == Initiator::Local {
                        shared
                            .closed_locally
                            .store(true, std::sync::atomic::Ordering::Release);
                    }
                    let r = CloseReason::Closed { code, reason };
                    if let Some(tx) = self.connected.take() {
                        let _ = tx.send(Err(r.clone()));
                    }
                    shared.set_closed(r);
                }
                Event::SendFailed { channel, id, code } => {
                    debug!(%channel, id, %code, "message not delivered");
                }
                Event::MessageAborted {
                    channel,
                    sequence,
                    code,
                } => {
                    debug!(%channel, sequence, %code, "peer aborted a message");
                }
                Event::MessageRefused {
                    channel,
                    sequence,
                    code,
                } => {
                    debug!(%channel, sequence, %code, "refused a message over the reassembly budget");
                }
                Event::Session(e) => {
                    if let SessionEvent::ResumeFailed { status, lost } = &e {
                        warn!(
                            status = status.name(),
                            lost = lost.len(),
                            "resume failed: messages may be lost (wire.md §21.6)"
                        );
                    } else {
                        debug!(event = ?e, "resumable session (wire.md §21)");
                    }
                    shared.session_events.push(e);
                }
                Event::SchemaBound(_) | Event::Rtt { .. } => {}
            }
        }
        hello
    }

    /// The transport ended (for `reason`) without the session seeing CLOSE.
    pub(crate) fn lost_with(&mut self, shared: &Shared, r: CloseReason) {
        if let Some(tx) = self.connected.take() {
            let _ = tx.send(Err(r.clone()));
        }
        shared.set_closed(r);
    }
}

/// The transport failed or ended (`why`) without the session seeing CLOSE.
pub(crate) fn lost(shared: &Shared, dispatch: &SharedDispatch, why: String) {
    lock(dispatch).lost_with(shared, CloseReason::Lost(why));
}

/// Like [`lost`], with the reason the transport gave.
pub(crate) fn lost_with(shared: &Shared, dispatch: &SharedDispatch, reason: CloseReason) {
    lock(dispatch).lost_with(shared, reason);
}

/// Runs `f` on the session, then hands out the events it produced.
pub(crate) fn with_session(
    shared: &Shared,
    dispatch: &SharedDispatch,
    f: impl FnOnce(&mut Session),
) {
    let hello = {
        let mut s = shared.lock();
        f(&mut s);
        drain_events(&mut s, shared, dispatch)
    };
    if let Some(request) = hello {
        authenticate(shared, dispatch, request);
    }
}

/// Hands out the events the session holds (the dispatch is locked only if there are some).
/// Returns a client's HELLO for [`authenticate`], to be called once the session is unlocked.
#[must_use = "a client's HELLO must be authenticated"]
pub(crate) fn drain_events(
    s: &mut Session,
    shared: &Shared,
    dispatch: &SharedDispatch,
) -> Option<AuthRequest> {
    if s.has_events() {
        lock(dispatch).drain(s, shared)
    } else {
        None
    }
}

/// Server: asks the config's authenticator about a client's HELLO (wire.md §3.2.7), with no
/// lock held, then accepts or rejects it and wakes the writer for the answer.
pub(crate) fn authenticate(shared: &Shared, dispatch: &SharedDispatch, request: AuthRequest) {
    authenticate_with(shared, dispatch, request, ResumeStatus::UnknownSession);
}

/// [`authenticate`], answering a refused resume request with `status` (wire.md §21.6).
pub(crate) fn authenticate_with(
    shared: &Shared,
    dispatch: &SharedDispatch,
    request: AuthRequest,
    status: ResumeStatus,
) {
    let authenticator = lock(dispatch).authenticator.clone();
    let decision = match authenticator {
        Some(auth) => auth(&request),
        None => Ok(Bytes::new()),
    };
    with_session(shared, dispatch, |s| match decision {
        Ok(reply) => s.accept_with(reply, status),
        Err((code, reason)) => s.reject(code, &reason),
    });
    shared.wake_writer.notify_one();
}

/// A native connection being opened: its shared state and dispatch for the driver's tasks,
/// and what the face's handle is made of once the HELLO exchange is over.
pub(crate) struct Opening {
    /// The session's shared state (give it to the driver's tasks).
    pub(crate) shared: Arc<Shared>,
    /// The event delivery (give it to the driver's tasks).
    pub(crate) dispatch: SharedDispatch,
    connected: oneshot::Receiver<Result<(), CloseReason>>,
    peer_addr: SocketAddr,
}

impl Opening {
    /// Shared state and dispatch for `session`, a connection to or from `peer_addr`.
    pub(crate) fn new(session: Session, config: &Config, peer_addr: SocketAddr) -> Opening {
        let server = session.role() == Role::Server;
        let shared = Shared::new(session, config);
        if server {
            // A server answers requests: its drain waits for the replies it owes (§14.1.4).
            shared.inbox.track_owed_replies();
        } else {
            // A cluster node may deliver an entry again after a takeover (wire.md §22.5).
            shared.inbox.drop_redelivered();
        }
        let (connected_tx, connected) = oneshot::channel();
        let dispatch = Arc::new(Mutex::new(Dispatch {
            _inbox: CloseOnDrop(shared.clone()),
            authenticator: config.authenticator.clone(),
            peer_addr,
            connected: Some(connected_tx),
        }));
        Opening {
            shared,
            dispatch,
            connected,
            peer_addr,
        }
    }

    /// Waits for the HELLO exchange (the driver's tasks run it) and returns the open handle,
    /// or why the connection ended first.
    /// Dropped before it returns (a connect timed out or was cancelled), the connection is
    /// closed: nobody could ever use or close it otherwise, and keepalive would hold it open.
    pub(crate) async fn established(self) -> Result<Opened, Error> {
        let mut abandoned = CloseIfAbandoned(Some(self.shared.clone()));
        let opened = Opened {
            handle: self.shared,
            peer_addr: self.peer_addr,
            mode: Mode::Native,
        };
        let r = self.connected.await;
        abandoned.0 = None;
        match r {
            Ok(Ok(())) => Ok(opened),
            Ok(Err(reason)) => Err(reason.to_error()),
            Err(_) => Err(CloseReason::Lost("driver ended during the handshake".into()).to_error()),
        }
    }
}

/// Closes a connection whose opening was abandoned (see [`Opening::established`]).
struct CloseIfAbandoned(Option<Arc<Shared>>);

impl Drop for CloseIfAbandoned {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            super::handle::Handle::close_now(
                &*shared,
                crate::frame::ErrorCode::NO_ERROR,
                "the connect was abandoned before the connection opened",
            );
        }
    }
}
