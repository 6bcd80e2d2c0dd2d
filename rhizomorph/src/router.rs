//! The router behind `rhizomorph serve`: forwards messages between connected peers, legacy and
//! native alike, by their `to` header with hypha's rules (legacy.md §L5), and echoes what is
//! addressed to nobody it knows (the echo service the benchmarks and examples use).
//!
//! Owns the table of connected peers by `<workspace>/<client_id>` and one task per connection,
//! and, with [`Router::with_manager`], drives the workspace manager (legacy.md §L6): hands it
//! what is addressed to `*/<manager_id>` and every arrival and departure, sends what it answers,
//! and filters broadcasts by what each client subscribed to. Never decodes or copies a
//! forwarded payload: a forwarded message is the received header, rewritten, and the received
//! payload bytes (only calls to the manager are decoded, by the manager). Never trusts
//! identity fields a sender wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::connection::{Connection, Message, Mode};
use crate::endpoint::Listener;
use crate::frame::Channel;
use crate::frame::PayloadEncoding;
use crate::header::RoutingHeader;
use crate::legacy::{rewrite, Identity};
use crate::manager::{Manager, ManagerConfig, Outgoing};
use crate::sender::Sender;
use crate::session::OutgoingMessage;

/// Message copies a connection's task routes before it yields to the others.
const FAIR_SHARE: usize = 64;

struct Peer {
    sender: Sender,
    /// Distinguishes a reconnected peer from the connection it replaced.
    generation: u64,
}

/// Connected peers by `<workspace>/<client_id>`.
#[derive(Clone, Default)]
pub struct Router {
    peers: Arc<Mutex<HashMap<String, Peer>>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    stats: Arc<RouterStats>,
    manager: Option<ManagerHandle>,
}

/// The workspace manager and its address, read without its lock on every routed message.
#[derive(Clone)]
struct ManagerHandle {
    /// `*/<manager_id>` (fixed for the manager's life).
    target: Arc<str>,
    state: Arc<Mutex<Manager>>,
}

/// What a router has done (for tests and the CLI).
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Messages forwarded to another peer.
    pub forwarded: std::sync::atomic::AtomicU64,
    /// Messages echoed back to their sender.
    pub echoed: std::sync::atomic::AtomicU64,
    /// Calls to an absent peer answered with a `.reject` (as hypha does).
    pub rejected: std::sync::atomic::AtomicU64,
    /// Messages that failed on their own (a payload error, too large for the next hop): each
    /// dropped, its connection left open (wire.md §6.1.1).
    pub failed: std::sync::atomic::AtomicU64,
    /// Broadcast copies not delivered because the receiver's send buffer was full: a slow
    /// receiver is skipped, never buffered for (wire.md §6.1.2).
    pub skipped_slow: std::sync::atomic::AtomicU64,
    /// Connections refused because their identity was already connected.
    pub refused_duplicate: std::sync::atomic::AtomicU64,
    /// Messages handed to the workspace manager.
    pub to_manager: std::sync::atomic::AtomicU64,
}

/// The identity of a native peer: its HELLO token read as `<workspace>/<client_id>` or as a
/// bare client id (workspace `ws-user-<id>`, as legacy anonymous clients get); a peer without a
/// token is anonymous and not addressable (`from` still names it).
pub fn native_identity(token: &[u8], peer_addr: std::net::SocketAddr) -> (Identity, bool) {
    let token = std::str::from_utf8(token).unwrap_or("").trim();
    let valid = |s: &str| !s.is_empty() && !s.contains('/') && s != "*";
    match token.split_once('/') {
        Some((ws, id)) if valid(ws) && valid(id) => (Identity::anonymous(ws, id), true),
        None if valid(token) => (Identity::anonymous(format!("ws-user-{token}"), token), true),
        _ => (
            Identity::anonymous("ws-anonymous", format!("native-{}", peer_addr.port())),
            false,
        ),
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Router {
        Router::default()
    }

    /// A router with a workspace manager at `*/<config.manager_id>` (legacy.md §L6), so that
    /// unmodified hypha-rpc programs can `connect_to_server`, register and find services.
    /// The listener's [`LegacyConfig::manager_id`](crate::config::LegacyConfig::manager_id)
    /// must be the same id: it is what `connection_info` tells clients.
    pub fn with_manager(config: ManagerConfig) -> Router {
        let manager = Manager::new(config);
        Router {
            manager: Some(ManagerHandle {
                target: manager.target().into(),
                state: Arc::new(Mutex::new(manager)),
            }),
            ..Router::default()
        }
    }

    /// Runs `f` on the manager, if this router has one.
    pub fn with_manager_state<T>(&self, f: impl FnOnce(&Manager) -> T) -> Option<T> {
        self.manager_do(|m| f(m))
    }

    /// Runs `f` on the manager under its lock, if this router has one.
    fn manager_do<T>(&self, f: impl FnOnce(&mut Manager) -> T) -> Option<T> {
        let m = self.manager.as_ref()?;
        let mut guard = m.state.lock().unwrap_or_else(|p| p.into_inner());
        Some(f(&mut guard))
    }

    /// Sends what the manager produced: an answer to its caller waits for room in the send
    /// buffer; events and calls to others never wait (a slow receiver is skipped, as a slow
    /// receiver of a broadcast is, wire.md §6.1.2).
    async fn deliver(&self, out: Vec<Outgoing>, caller: Option<&str>) {
        use std::sync::atomic::Ordering::Relaxed;
        for o in out {
            let Some(sender) = self.lock().get(&o.to).map(|p| p.sender.clone()) else {
                continue;
            };
            let message =
                OutgoingMessage::new(o.header, o.payload).with_encoding(PayloadEncoding::Msgpack);
            let sent = if Some(o.to.as_str()) == caller {
                sender.send_message(Channel::Rpc, message).await
            } else {
                let mut slot = Some(message);
                let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
                match sender.poll_send(&mut cx, Channel::Rpc, &mut slot) {
                    std::task::Poll::Ready(r) => r,
                    std::task::Poll::Pending => Err(crate::Error::WouldBlock),
                }
            };
            match sent {
                Ok(_) => {}
                Err(crate::Error::WouldBlock) => {
                    self.stats.skipped_slow.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Relaxed);
                    debug!(error = %e, to = %o.to, "workspace manager: send failed");
                }
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// Ids of the connected, addressable peers.
    pub fn peers(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Peer>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts connections from `listener` until it is shut down, serving each in its own
    /// task (handshakes run concurrently, bounded by the listener's config).
    ///
    /// # Cancel safety
    ///
    /// Dropping it stops accepting; connections already served go on in their own tasks.
    pub async fn serve(self, listener: Listener) {
        if self.manager.is_some() {
            // The manager's clock: calls waiting for a provider expire (it reads no clock).
            // Ends once the router is gone (this task holds the last handle of its table).
            let router = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if Arc::strong_count(&router.peers) == 1 {
                        break;
                    }
                    let out = router.manager_do(|m| m.expire(Instant::now()));
                    router.deliver(out.unwrap_or_default(), None).await;
                }
            });
        }
        while let Ok(conn) = listener.accept().await {
            let router = self.clone();
            tokio::spawn(async move { router.serve_connection(conn).await });
        }
    }

    /// Serves one connection until it ends: registers it, routes what it sends, unregisters.
    /// Calls, cancellations and transfer parts (wire.md §20) are forwarded as they are; give
    /// the router connections from a listener with `Config::with_exchanges(false)` so that none
    /// is taken for the router itself before this starts.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropped midway, the peer stays registered — the table's sender keeps
    /// its connection open — until a connection with its identity replaces it. Run it to its
    /// end in a task of its own, as [`serve`](Self::serve) does.
    pub async fn serve_connection(&self, mut conn: Connection) {
        conn.forward_exchanges();
        let (identity, addressable) = match conn.legacy_identity() {
            Some(id) => (id.clone(), true),
            None => native_identity(&conn.peer_token().unwrap_or_default(), conn.peer_addr()),
        };
        let id = identity.full_id();
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if addressable {
            // An identity is never handed to a second connection while the first is live:
            // whoever claims it again is refused (the first keeps its calls). A peer whose old
            // connection is over takes its place.
            let Some(replaced) = self.claim(&id, conn.sender(), generation) else {
                warn!(%id, peer = %conn.peer_addr(), "refused: this identity is already connected");
                self.stats
                    .refused_duplicate
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let reason = format!("{id} is already connected");
                conn.close_now(crate::frame::ErrorCode::AUTH_FAILED, &reason);
                return;
            };
            if replaced {
                // The connection it replaces is over: the manager forgets it first (its
                // services go, its workspace hears client_disconnected), as if it had left.
                let out = self.manager_do(|m| m.disconnected(&id));
                self.deliver(out.unwrap_or_default(), None).await;
            }
            // spec: legacy.md §L6.5 — arrivals are announced (client_connected).
            match self.manager_do(|m| m.connected(&identity)) {
                None => {}
                Some(Ok(out)) => self.deliver(out, None).await,
                Some(Err(reason)) => {
                    warn!(%id, %reason, "refused by the workspace manager");
                    self.unregister(&id, generation);
                    conn.close_now(crate::frame::ErrorCode::LIMIT_EXCEEDED, &reason);
                    return;
                }
            }
        }
        info!(%id, mode = conn.mode().name(), addressable, "peer connected");
        let sender = conn.sender();
        // Raw: a router forwards payloads as they arrived, never decompressing them (wire.md
        // §6.1), so compressed messages (bombs within the limits too) cost it no CPU.
        // Copies made since this task last yielded: a peer whose messages keep arriving (a
        // broadcast costs one copy per receiver) gives the other connections a turn every
        // `FAIR_SHARE` copies, so one flooding sender cannot hold a server thread.
        let mut work = 0;
        while let Some(msg) = conn.recv_raw().await {
            match self.route(&identity, conn.mode(), &sender, msg).await {
                Ok(copies) => work += copies.max(1),
                Err(_) => break,
            }
            if work >= FAIR_SHARE {
                work = 0;
                tokio::task::yield_now().await;
            }
        }
        if addressable && self.unregister(&id, generation) {
            // spec: legacy.md §L6.5 — its services go, its workspace hears it.
            let out = self.manager_do(|m| m.disconnected(&id));
            self.deliver(out.unwrap_or_default(), None).await;
        }
        info!(%id, "peer disconnected");
    }

    /// Closes the connection of peer `id` (`<workspace>/<client_id>`) with `reason`; `false` if
    /// no such peer is connected. Its task then unregisters it as for any departure.
    pub fn disconnect_peer(&self, id: &str, reason: &str) -> bool {
        let Some(sender) = self.lock().get(id).map(|p| p.sender.clone()) else {
            return false;
        };
        sender.close_now(crate::frame::ErrorCode::NO_ERROR, reason);
        true
    }

    /// Registers `sender` as peer `id`: `Some(true)` if it replaced a connection that is over,
    /// `None` (and nothing changed) if `id` is connected and live.
    fn claim(&self, id: &str, sender: Sender, generation: u64) -> Option<bool> {
        let mut peers = self.lock();
        if peers
            .get(id)
            .is_some_and(|p| p.sender.close_reason().is_none())
        {
            return None;
        }
        let old = peers.insert(id.to_string(), Peer { sender, generation });
        Some(old.is_some())
    }

    /// Removes `id` from the table if it is still this connection's (not a newer one's).
    fn unregister(&self, id: &str, generation: u64) -> bool {
        let mut peers = self.lock();
        if peers.get(id).is_some_and(|p| p.generation == generation) {
            peers.remove(id);
            return true;
        }
        false
    }

    /// Routes one message from `from`; returns the copies it sent (or tried to), `Err` when
    /// the sender's own connection is gone.
    async fn route(
        &self,
        from: &Identity,
        mode: Mode,
        back: &Sender,
        msg: Message,
    ) -> Result<usize, crate::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let routed = match msg.header.get("to").map(|_| rewrite(&msg.header, from)) {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                debug!(error = %e, "unroutable message");
                None
            }
            None => None,
        };
        if let (Some(m), Some(r)) = (&self.manager, &routed) {
            if r.target == *m.target {
                // spec: legacy.md §L6.1 — a call to the workspace manager (or a provider's
                // answer to one it made).
                self.stats.to_manager.fetch_add(1, Relaxed);
                let out = self.manager_do(|manager| manager_call(manager, from, msg));
                self.deliver(out.unwrap_or_default(), Some(&from.full_id()))
                    .await;
                return Ok(1);
            }
        }
        let targets: Vec<Sender> = match &routed {
            Some(r) => match r.target.strip_suffix("/*") {
                // A broadcast: every peer of the workspace but the sender (with a manager,
                // only those subscribed to its type, legacy.md §L6.5).
                Some(ws) => {
                    let prefix = format!("{ws}/");
                    let me = from.full_id();
                    let event = msg.header.get_str("type");
                    let manager = self
                        .manager
                        .as_ref()
                        .map(|m| m.state.lock().unwrap_or_else(|p| p.into_inner()));
                    self.lock()
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix) && **k != me)
                        .filter(|(k, _)| {
                            manager
                                .as_ref()
                                .map_or(true, |m| m.wants_broadcast(k, event))
                        })
                        .map(|(_, p)| p.sender.clone())
                        .collect()
                }
                None => self
                    .lock()
                    .get(&r.target)
                    .map(|p| vec![p.sender.clone()])
                    .unwrap_or_default(),
            },
            None => Vec::new(),
        };
        match routed {
            Some(r) if !targets.is_empty() => {
                let channel = msg.channel;
                let out = Message {
                    header: r.header,
                    ..msg
                };
                let broadcast = targets.len() > 1 || r.target.ends_with("/*");
                let copies = targets.len();
                for target in targets {
                    // A target that is gone or cannot take this payload costs only this copy.
                    let sent = if broadcast {
                        // spec: wire.md §6.1.2 — a slow receiver of a broadcast is skipped.
                        target.try_forward(channel, out.clone())
                    } else {
                        target.forward(channel, out.clone()).await
                    };
                    match sent {
                        Ok(_) => {
                            self.stats.forwarded.fetch_add(1, Relaxed);
                        }
                        Err(crate::Error::WouldBlock) => {
                            self.stats.skipped_slow.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            self.stats.failed.fetch_add(1, Relaxed);
                            debug!(error = %e, target = %r.target, "forward failed");
                        }
                    }
                }
                Ok(copies)
            }
            _ if mode == Mode::Native => {
                // Not addressed to a connected peer: the echo service.
                self.stats.echoed.fetch_add(1, Relaxed);
                match msg.header.get_str("to") {
                    Some("sink") => Ok(0),
                    Some("stall") => {
                        let ms = std::str::from_utf8(&msg.payload)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(1000);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(0)
                    }
                    _ => self.per_message(back, back.forward(msg.channel, msg).await),
                }
            }
            _ => {
                // spec: legacy.md §L5.4 — a call (it has a `session`) to an absent peer is
                // answered with a `.reject`, as hypha does; anything else is dropped.
                let Some(session) = msg.header.get_str("session") else {
                    return Ok(0);
                };
                let to = msg.header.get_str("to").unwrap_or("");
                warn!(target = %to, "call to a peer that is not connected");
                self.stats.rejected.fetch_add(1, Relaxed);
                let (header, payload) = reject(session, to, &from.full_id(), to);
                self.per_message(back, back.send(Channel::Rpc, header, payload).await)
            }
        }
    }

    /// The outcome of sending one message back to its sender: `Err` only if the sender's
    /// connection is gone; a failure of the message itself (a payload error, a size the
    /// connection refuses) drops that message and leaves the connection open (wire.md §6.1.1).
    fn per_message(
        &self,
        back: &Sender,
        sent: Result<u64, crate::Error>,
    ) -> Result<usize, crate::Error> {
        match sent {
            Ok(_) => Ok(1),
            Err(e) if back.close_reason().is_some() => Err(e),
            Err(e) => {
                self.stats
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                debug!(error = %e, "message failed; the connection goes on");
                Ok(1)
            }
        }
    }
}

/// Hands one message addressed to the manager to it. A compressed call is decompressed within
/// the manager's request limit first: a bomb costs it no more than a plain call of that size.
fn manager_call(manager: &mut Manager, from: &Identity, mut call: Message) -> Vec<Outgoing> {
    let now = Instant::now();
    let max = manager.config().max_request_bytes;
    call.decompress(max as u64);
    let mut out = match &call.error {
        Some(e) => {
            let why = format!(
                "a call to the workspace manager is over its limit of {max} bytes or does not \
                 decompress: {e}"
            );
            manager.reject_call(from, &call.header, &why)
        }
        None => manager.handle(from, &call.header, &call.payload, now),
    };
    // Without `serve`'s tick (a connection served by hand), waiting calls still expire.
    if manager.pending() > 0 {
        out.extend(manager.expire(now));
    }
    out
}

/// Hypha's answer to a call whose target is not connected: a `<session>.reject` method call
/// with an error argument.
pub fn reject(session: &str, from: &str, to: &str, target: &str) -> (RoutingHeader, Bytes) {
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("from", from.to_string())
        .with("to", to.to_string())
        .with("method", format!("{session}.reject"));
    let payload =
        crate::manager::protocol::reject_payload(&format!("Target peer {target} is not connected"));
    (header, payload)
}
