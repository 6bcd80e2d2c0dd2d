//! Resumable sessions in the drivers (wire.md §21): what a driver does when a resumable
//! session loses its transport, the server's registry of sessions that may be resumed, and the
//! events the application hears.
//!
//! Owns the hand-over between transports: retiring the old transport's tasks, asking the
//! session's resumer for a new one (a client reconnects, a server waits in its registry), the
//! server's lookup of a session by id with its identity check, the time limit and the total cap
//! of detached sessions. Never decides what is replayed or acknowledged (the session does) and
//! never logs a resume token.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::dispatch::{self, Dispatch, Opening, SharedDispatch};
use super::shared::{Opened, Shared};
use crate::config::{AuthRequest, Config};
use crate::frame::{ResumeStatus, SESSION_ID_LEN};
use crate::session::{Session, Ticket};
use crate::signal::Signal;

pub use crate::session::SessionEvent;

/// The most events kept for an application that does not read them (older ones are dropped;
/// a `ResumeFailed` is never dropped for a `Detached`).
const MAX_EVENTS: usize = 64;

/// A connection's session events, waiting for the application.
#[derive(Default)]
pub(crate) struct SessionEvents {
    queue: Mutex<VecDeque<SessionEvent>>,
    signal: Signal,
}

impl SessionEvents {
    pub(crate) fn push(&self, event: SessionEvent) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_EVENTS {
            // Drop the oldest event that carries no messages.
            match q
                .iter()
                .position(|e| !matches!(e, SessionEvent::ResumeFailed { .. }))
            {
                Some(i) => {
                    q.remove(i);
                }
                None => {
                    q.pop_front();
                }
            }
        }
        q.push_back(event);
        drop(q);
        self.signal.notify_waiters();
    }

    /// The next event; `None` once `closed` says the connection is over and none is left.
    pub(crate) async fn next(&self, closed: impl Fn() -> bool) -> Option<SessionEvent> {
        self.signal
            .wait_for(|| {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                match q.pop_front() {
                    Some(e) => Some(Some(e)),
                    None if closed() => Some(None),
                    None => None,
                }
            })
            .await
    }

    /// Wakes waiters (the connection ended).
    pub(crate) fn wake(&self) {
        self.signal.notify_waiters();
    }
}

/// Finds a detached session a new transport: a client reconnects, a server keeps it for a
/// client's resume request.
pub(crate) trait Resumer: Send + Sync {
    /// The session of `shared` is detached (its old transport's tasks are retired).
    fn detached(&self, shared: Arc<Shared>, dispatch: SharedDispatch);
}

/// First and longest pause between a client's reconnect attempts (wire.md §21.5.2).
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// A client's reconnect loop (wire.md §21.5.2), whatever the transport: `attempt` opens a new
/// transport and hands the detached session to it (its tasks carry on from there, and report
/// the next loss). Retried with exponential backoff (100 ms doubling to 2 s, with jitter)
/// until an attempt succeeds, the application closes the session, or the session's resume
/// timeout passes — then the application is told what may be lost (`EXPIRED`).
pub(crate) fn reconnect<F, Fut>(shared: Arc<Shared>, dispatch: SharedDispatch, mut attempt: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), crate::Error>> + Send,
{
    tokio::spawn(async move {
        let give_up = {
            let s = shared.lock();
            s.resume_deadline()
                .unwrap_or_else(|| Instant::now() + s.resume_timeout())
        };
        let mut pause = RECONNECT_FIRST;
        loop {
            // The application may have closed the detached session meanwhile: its events
            // (`Closed`) are handed out here, with no transport to do it.
            let mut over = false;
            dispatch::with_session(&shared, &dispatch, |s| over = s.is_closed());
            if over || shared.is_closed() {
                return;
            }
            match attempt().await {
                Ok(()) => return,
                Err(e) => debug!(error = %e, "reconnect failed; retrying"),
            }
            if Instant::now() >= give_up {
                dispatch::with_session(&shared, &dispatch, |s| {
                    s.abandon(
                        ResumeStatus::Expired,
                        "could not reconnect within the resume timeout (wire.md §21.5.3)",
                    )
                });
                return;
            }
            // Jitter: a fleet of clients cut at once does not reconnect in step.
            let jitter = pause.mul_f64(rand::random::<f64>() * 0.5);
            tokio::time::sleep(pause.mul_f64(0.75) + jitter).await;
            pause = (pause * 2).min(RECONNECT_MAX);
        }
    });
}

/// The transport of `generation` ended (`why`) without CLOSE. A resumable session detaches and
/// its resumer takes over; any other ends as before ([`dispatch::lost`]).
pub(crate) fn transport_lost(
    shared: &Arc<Shared>,
    dispatch: &SharedDispatch,
    generation: u64,
    why: String,
) {
    if shared.generation() != generation {
        return; // an old transport's task, already replaced
    }
    let mut keep = false;
    dispatch::with_session(shared, dispatch, |s| {
        // Already detached (its keepalive did it, wire.md §21.5.1) or still resuming: the
        // same hand-over.
        keep = shared.resumer.get().is_some()
            && (s.detach(Instant::now()) || s.is_detached() || s.is_resuming());
    });
    if keep {
        debug!(reason = %why, "transport lost; the session waits to be resumed (wire.md §21.5)");
        hand_over(shared, dispatch, generation);
    } else if !shared.lock().is_closed() {
        dispatch::lost(shared, dispatch, why);
    }
}

/// The session is detached (by a lost transport or its own keepalive): retire the transport of
/// `generation` and let the resumer find a new one.
pub(crate) fn hand_over(shared: &Arc<Shared>, dispatch: &SharedDispatch, generation: u64) {
    if !shared.retire(generation) {
        return;
    }
    if let Some(resumer) = shared.resumer.get() {
        resumer.detached(shared.clone(), dispatch.clone());
    }
}

/// What a detached session is charged against the cap beyond the messages it holds: its
/// state (windows, header tables, queues), so a flood of clients that connect and vanish
/// cannot park sessions without bound (256 MiB / 16 KiB = 16,384 at most).
const DETACHED_SESSION_OVERHEAD: u64 = 16 * 1024;

/// A server's sessions that a client may resume, by session id: attached ones weakly (a
/// client that saw its transport die before we did resumes them, wire.md §21.5.4), detached
/// ones held, within a time limit and a total cap on what they hold for replay.
pub(crate) struct DetachedSessions {
    sessions: Mutex<Registry>,
    cap: u64,
    /// Itself, for the timers of its detached sessions.
    me: Weak<DetachedSessions>,
}

#[derive(Default)]
struct Registry {
    held: HashMap<[u8; SESSION_ID_LEN], Held>,
    /// What detached sessions are charged together (against the cap).
    detached_bytes: u64,
    /// Of that, their replay buffers.
    detached_replay: u64,
    /// How many are detached.
    detached: usize,
}

impl Registry {
    /// Puts `held` under `id`; what a detached session it replaces was charged is released.
    fn put(&mut self, id: [u8; SESSION_ID_LEN], held: Held) {
        if let Held::Detached { charge, replay, .. } = &held {
            self.detached_bytes += charge;
            self.detached_replay += replay;
            self.detached += 1;
        }
        let old = self.held.insert(id, held);
        self.release(old);
    }

    fn release(&mut self, old: Option<Held>) {
        if let Some(Held::Detached { charge, replay, .. }) = old {
            self.detached_bytes -= charge;
            self.detached_replay -= replay;
            self.detached -= 1;
        }
    }
}

enum Held {
    Attached(Weak<Shared>, Weak<Mutex<Dispatch>>),
    Detached {
        shared: Arc<Shared>,
        dispatch: SharedDispatch,
        /// Its charge against the cap.
        charge: u64,
        /// Of which its replay buffers.
        replay: u64,
    },
}

impl DetachedSessions {
    /// A registry whose detached sessions hold at most `cap` replay bytes together.
    pub(crate) fn new(cap: u64) -> Arc<DetachedSessions> {
        Arc::new_cyclic(|me| DetachedSessions {
            sessions: Mutex::new(Registry::default()),
            cap,
            me: me.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new resumable session was accepted.
    pub(crate) fn attached(self: &Arc<Self>, shared: &Arc<Shared>, dispatch: &SharedDispatch) {
        let Some(id) = shared.lock().ticket().map(|t| t.session_id) else {
            return;
        };
        let _ = shared.resumer.set(self.clone());
        let mut r = self.lock();
        if r.held.len() >= 64 && r.held.len().is_power_of_two() {
            // Forget sessions that ended.
            r.held.retain(|_, h| match h {
                Held::Attached(w, _) => w.upgrade().is_some_and(|s| !s.is_closed()),
                Held::Detached { .. } => true,
            });
        }
        r.put(
            id,
            Held::Attached(Arc::downgrade(shared), Arc::downgrade(dispatch)),
        );
    }

    /// Detached sessions, and the replay bytes they hold together.
    pub(crate) fn detached_replay(&self) -> (usize, u64) {
        let r = self.lock();
        (r.detached, r.detached_replay)
    }

    /// Detached sessions, and what they are charged together against the cap.
    #[cfg(test)]
    pub(crate) fn detached_totals(&self) -> (usize, u64) {
        let r = self.lock();
        (r.detached, r.detached_bytes)
    }

    /// The session a resume request names, with its dispatch, if this server holds it.
    pub(crate) fn find(&self, id: &[u8; SESSION_ID_LEN]) -> Option<(Arc<Shared>, SharedDispatch)> {
        let r = self.lock();
        match r.held.get(id)? {
            Held::Attached(s, d) => Some((s.upgrade()?, d.upgrade()?)),
            Held::Detached {
                shared, dispatch, ..
            } => Some((shared.clone(), dispatch.clone())),
        }
    }

    /// The session `id` resumed on a new transport: held weakly again.
    pub(crate) fn resumed(
        &self,
        id: [u8; SESSION_ID_LEN],
        shared: &Arc<Shared>,
        dispatch: &SharedDispatch,
    ) {
        self.lock().put(
            id,
            Held::Attached(Arc::downgrade(shared), Arc::downgrade(dispatch)),
        );
    }

    fn forget(&self, id: &[u8; SESSION_ID_LEN], shared: &Arc<Shared>) {
        let mut r = self.lock();
        let same = match r.held.get(id) {
            Some(Held::Detached { shared: s, .. }) => Arc::ptr_eq(s, shared),
            Some(Held::Attached(w, _)) => w.upgrade().is_some_and(|s| Arc::ptr_eq(&s, shared)),
            None => false,
        };
        if same {
            let old = r.held.remove(id);
            r.release(old);
        }
    }
}

impl Resumer for DetachedSessions {
    fn detached(&self, shared: Arc<Shared>, dispatch: SharedDispatch) {
        let (id, charge, replay, timeout) = {
            let s = shared.lock();
            let Some(t) = s.ticket() else { return };
            // What it holds: its replay buffers, what its application had queued, and the
            // session itself — so sessions that hold no message are bounded in number too.
            let queued: u64 = crate::frame::Channel::ALL
                .iter()
                .map(|&c| s.queued_charge(c))
                .sum();
            let replay = s.replay_charge();
            let charge = replay + queued + DETACHED_SESSION_OVERHEAD;
            (t.session_id, charge, replay, s.resume_timeout())
        };
        // spec: wire.md §21.5.3 — held within the total cap, else discarded now.
        let over = {
            let mut r = self.lock();
            let over = r.detached_bytes + charge > self.cap;
            if !over {
                let held = Held::Detached {
                    shared: shared.clone(),
                    dispatch: dispatch.clone(),
                    charge,
                    replay,
                };
                r.put(id, held);
            }
            over
        };
        if over {
            warn!(
                charge,
                cap = self.cap,
                "detached sessions over their cap: session discarded (wire.md §21.5.3)"
            );
            self.forget(&id, &shared);
            dispatch::with_session(&shared, &dispatch, |s| {
                s.abandon(
                    ResumeStatus::Overflow,
                    "detached sessions over the server's cap (wire.md §21.5.3)",
                )
            });
            return;
        }
        // spec: wire.md §21.5.3 — the time limit: the session's own deadline decides.
        let generation = shared.generation();
        let this = DetachedTimer {
            shared,
            dispatch,
            id,
            registry: self.me.clone(),
        };
        tokio::spawn(async move {
            tokio::time::sleep(timeout + std::time::Duration::from_millis(5)).await;
            this.expire(generation);
        });
    }
}

/// Ends a detached session whose time limit passed, unless a transport resumed it meanwhile.
struct DetachedTimer {
    shared: Arc<Shared>,
    dispatch: SharedDispatch,
    id: [u8; SESSION_ID_LEN],
    registry: Weak<DetachedSessions>,
}

impl DetachedTimer {
    fn expire(self, generation: u64) {
        if self.shared.generation() != generation {
            return; // resumed (and maybe detached again: that detach has its own timer)
        }
        dispatch::with_session(&self.shared, &self.dispatch, |s| {
            s.handle_timeout(Instant::now())
        });
        if self.shared.lock().is_closed() {
            if let Some(registry) = self.registry.upgrade() {
                registry.forget(&self.id, &self.shared);
            }
            debug!("detached session expired (wire.md §21.5.3)");
        }
    }
}

/// Server: the resume a new connection's HELLO asks for (its `fresh` session has the request),
/// against the session this listener holds under that id. The new connection's identity (its
/// HELLO token, which the authenticator accepted) must be the session's. On success the old
/// session owns the new transport: returns it and its dispatch, its old transport retired.
pub(crate) fn try_resume(
    registry: &Arc<DetachedSessions>,
    fresh: &mut Session,
    new_token: &[u8],
) -> Result<(Arc<Shared>, SharedDispatch), ResumeStatus> {
    let id = fresh
        .resume_request()
        .map(|r| r.session_id)
        .ok_or(ResumeStatus::UnknownSession)?;
    let (old, dispatch) = registry.find(&id).ok_or(ResumeStatus::UnknownSession)?;
    // spec: wire.md §21.7.1 — bound to the identity the session was opened with.
    let same_identity = old
        .peer_token
        .get()
        .is_some_and(|t| Ticket::constant_time_eq(t, new_token));
    if !same_identity {
        return Err(ResumeStatus::Forbidden);
    }
    let result = {
        let mut s = old.lock();
        let generation = old.generation();
        let r = s.resume_from(fresh, Instant::now());
        if r.is_ok() {
            // The old transport (if the session was still attached: a half-open connection)
            // is retired before the lock is released: its tasks check the generation under
            // this lock, so none of them takes the new HELLO or the replay for the old socket.
            old.retire(generation);
        }
        let events = dispatch::drain_events(&mut s, &old, &dispatch);
        debug_assert!(events.is_none(), "a resumed session asks no authentication");
        r
    };
    result?;
    registry.resumed(id, &old, &dispatch);
    Ok((old, dispatch))
}

/// Server: the resume a new connection's HELLO (`hello`, read before anything else) asks for,
/// if it asks: the authenticator must accept the new connection (wire.md §3.2.7) and
/// [`try_resume`] find the session. `Err`: the status a new session answers with (§21.6.5;
/// `UNKNOWN_SESSION` when nothing was asked).
pub(crate) fn resume_requested(
    registry: &Arc<DetachedSessions>,
    fresh: &mut Session,
    hello: Option<&AuthRequest>,
    config: &Config,
) -> Result<(Arc<Shared>, SharedDispatch), ResumeStatus> {
    let Some(request) = hello.filter(|_| fresh.resume_request().is_some()) else {
        return Err(ResumeStatus::UnknownSession);
    };
    let allowed = config
        .authenticator
        .as_ref()
        .map_or(true, |a| a(request).is_ok());
    if !allowed {
        return Err(ResumeStatus::UnknownSession);
    }
    try_resume(registry, fresh, &request.token)
}

/// Server: a new connection whose HELLO (`hello`) was read before it was known not to resume
/// a session. `spawn` starts the driver over the new shared state; the HELLO is then answered
/// as the driver would have (a refused resume with `status`), and the session is registered
/// for resumption once open.
pub(crate) async fn accept_new(
    fresh: Session,
    config: &Config,
    peer_addr: std::net::SocketAddr,
    hello: Option<AuthRequest>,
    status: ResumeStatus,
    registry: &Arc<DetachedSessions>,
    spawn: impl FnOnce(&Arc<Shared>, &SharedDispatch),
) -> Result<Opened, crate::Error> {
    let opening = Opening::new(fresh, config, peer_addr);
    let (shared, dispatch) = (opening.shared.clone(), opening.dispatch.clone());
    spawn(&shared, &dispatch);
    if let Some(request) = hello {
        let _ = shared.peer_token.set(request.token.clone());
        dispatch::authenticate_with(&shared, &dispatch, request, status);
    }
    let opened = opening.established().await?;
    registry.attached(&shared, &dispatch);
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Channel;
    use crate::session::{OutgoingMessage, Target};
    use crate::RoutingHeader;

    /// A resumable server session that sent `bytes` the client never received, behind shared
    /// state registered with `registry`.
    fn detached_session(
        registry: &Arc<DetachedSessions>,
        config: &Config,
        bytes: usize,
    ) -> (Arc<Shared>, SharedDispatch) {
        let now = Instant::now();
        let (_client, mut server) =
            Session::connected_pair(config.session.clone(), config.session.clone(), now);
        assert!(server.is_resumable());
        let m = OutgoingMessage::new(RoutingHeader::new(), vec![1u8; bytes]);
        server.send(Channel::Stream, m).unwrap();
        while server
            .poll_transmit(now, Target::Batch, usize::MAX)
            .is_some()
        {}
        while server.poll_event().is_some() {}
        let opening = Opening::new(server, config, "127.0.0.1:1".parse().unwrap());
        let (shared, dispatch) = (opening.shared.clone(), opening.dispatch.clone());
        registry.attached(&shared, &dispatch);
        transport_lost(&shared, &dispatch, shared.generation(), "cut".into());
        (shared, dispatch)
    }

    // spec: wire.md §21.5.3 — 10,000 detached sessions against a total cap: what they hold
    // together never exceeds it; the sessions past it are discarded at once and their
    // applications told what may be lost (OVERFLOW).
    #[tokio::test]
    async fn ten_thousand_detached_sessions_stay_under_the_cap() {
        let cap = 64 << 20;
        let registry = DetachedSessions::new(cap);
        let config = Config::default().with_resumption(64 << 10, Duration::from_secs(120));
        let mut kept = Vec::new();
        let mut overflowed = 0;
        for _ in 0..10_000 {
            let (shared, dispatch) = detached_session(&registry, &config, 20_000);
            let (_, held) = registry.detached_totals();
            assert!(held <= cap, "detached sessions hold {held} > cap {cap}");
            if shared.is_closed() {
                overflowed += 1;
                let event = shared.session_events.queue.lock().unwrap().pop_back();
                assert!(
                    matches!(event, Some(SessionEvent::ResumeFailed { status: ResumeStatus::Overflow, ref lost }) if lost.len() == 1),
                    "a discarded session reports its lost message: {event:?}"
                );
            } else {
                kept.push((shared, dispatch));
            }
        }
        let (n, held) = registry.detached_totals();
        println!("10,000 detached sessions of 20 KB each, cap {cap}: {n} held ({held} bytes), {overflowed} discarded");
        assert_eq!(n, kept.len());
        assert!(
            held <= cap && held > cap - 64 * 1024,
            "the cap is used, not exceeded: {held}"
        );
        assert_eq!(n + overflowed, 10_000);
    }

    // spec: wire.md §21.5.3 — a detached session whose client never comes back is released at
    // its time limit: its replay bytes leave the registry and its application is told.
    #[tokio::test]
    async fn a_detached_session_is_released_after_its_time_limit() {
        let registry = DetachedSessions::new(1 << 30);
        let config = Config::default().with_resumption(256 << 10, Duration::from_millis(300));
        let (shared, _dispatch) = detached_session(&registry, &config, 100_000);
        let (n, held) = registry.detached_replay();
        assert_eq!(n, 1);
        assert!((100_000..=4 * (256 << 10)).contains(&held), "held {held}");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            registry.detached_totals(),
            (0, 0),
            "released after the time limit"
        );
        assert!(shared.is_closed());
        assert_eq!(shared.lock().replay_charge(), 0);
        let events: Vec<SessionEvent> = shared
            .session_events
            .queue
            .lock()
            .unwrap()
            .drain(..)
            .collect();
        assert!(
            events.iter().any(|e| matches!(
                e,
                SessionEvent::ResumeFailed {
                    status: ResumeStatus::Expired,
                    ..
                }
            )),
            "{events:?}"
        );
    }

    // spec: wire.md §21.7.1 — the right session id and token from another identity (another
    // HELLO auth token) are refused; the session's own identity resumes it.
    #[tokio::test]
    async fn resuming_someone_elses_session_is_forbidden() {
        let registry = DetachedSessions::new(1 << 30);
        let config = Config::default().with_resumption(64 << 10, Duration::from_secs(120));
        let (shared, _dispatch) = detached_session(&registry, &config, 1_000);
        let _ = shared.peer_token.set(bytes::Bytes::from_static(b"alice"));
        let ticket = shared.lock().ticket().cloned().unwrap();
        let request = |token: &[u8]| {
            let mut hello = crate::frame::Hello::new(
                &config.session.settings,
                bytes::Bytes::copy_from_slice(token),
                "test",
            );
            hello.versions = vec![
                crate::frame::WIRE_VERSION_1_1,
                crate::frame::WIRE_VERSION_1_0,
            ];
            hello.resume = Some(Box::new(crate::frame::ResumeRequest {
                session_id: ticket.session_id,
                token: ticket.token.clone(),
                received: [0; 4],
            }));
            let mut b = bytes::BytesMut::new();
            crate::frame::Frame::Hello(hello).encode(&mut b).unwrap();
            let mut fresh = Session::server(config.session.clone(), Instant::now());
            fresh.handle_batch(Instant::now(), b.freeze());
            while fresh.poll_event().is_some() {}
            fresh
        };
        let mut thief = request(b"mallory");
        assert_eq!(
            try_resume(&registry, &mut thief, b"mallory").err(),
            Some(ResumeStatus::Forbidden)
        );
        assert!(shared.lock().is_detached(), "untouched by the attempt");
        let mut owner = request(b"alice");
        assert!(try_resume(&registry, &mut owner, b"alice").is_ok());
        assert!(shared.lock().is_open());
    }

    // spec: wire.md §21.5.3 — sessions that hold no message still count (their state): a
    // flood of clients that connect and vanish parks a bounded number of them.
    #[tokio::test]
    async fn empty_detached_sessions_are_bounded_in_number() {
        let cap = 1 << 20;
        let registry = DetachedSessions::new(cap);
        let config = Config::default().with_resumption(64 << 10, Duration::from_secs(120));
        let mut held = Vec::new();
        for _ in 0..1_000 {
            let (shared, _d) = detached_session(&registry, &config, 0);
            held.push(shared);
        }
        let (n, bytes) = registry.detached_totals();
        assert!(bytes <= cap);
        assert!(
            n as u64 <= cap / DETACHED_SESSION_OVERHEAD,
            "{n} empty sessions held"
        );
        assert!(held.iter().filter(|s| s.is_closed()).count() >= 1_000 - n);
    }
}
