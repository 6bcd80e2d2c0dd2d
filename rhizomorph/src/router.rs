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
    /// This node's membership of a cluster (`--redis`), if it joined one.
    #[cfg(feature = "redis")]
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// A router that does not keep its peer table alive: what the cluster's tasks hold, so that
/// they end once the router is dropped.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub(crate) struct WeakRouter {
    peers: std::sync::Weak<Mutex<HashMap<String, Peer>>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    stats: Arc<RouterStats>,
    manager: Option<ManagerHandle>,
    cluster: std::sync::Weak<crate::cluster::Cluster>,
}

#[cfg(feature = "redis")]
impl crate::cluster::Local for WeakRouter {
    type Live = Router;

    fn in_cluster(mut self, cluster: &Arc<crate::cluster::Cluster>) -> WeakRouter {
        self.cluster = Arc::downgrade(cluster);
        self
    }

    fn upgrade(&self) -> Option<Router> {
        Some(Router {
            peers: self.peers.upgrade()?,
            generation: self.generation.clone(),
            stats: self.stats.clone(),
            manager: self.manager.clone(),
            cluster: self.cluster.upgrade(),
        })
    }
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
        #[cfg(feature = "redis")]
        if let Some(c) = &self.cluster {
            // spec: cluster.md §C4.7 — the other nodes mirror this node's services.
            for change in self
                .manager_do(|m| m.take_service_changes())
                .unwrap_or_default()
            {
                c.submit(crate::cluster::Outbound::service(change)).await;
            }
        }
        for o in out {
            let Some(sender) = self.local_sender_of(&o.to) else {
                #[cfg(feature = "redis")]
                if let (Some(c), Some(m)) = (&self.cluster, &self.manager) {
                    // The manager calls a provider on another node (get_service).
                    let message = Message {
                        header: o.header,
                        payload: o.payload,
                        encoding: PayloadEncoding::Msgpack,
                        ..crate::cluster::entry::empty_message(Channel::Rpc)
                    };
                    let from = m.target.to_string();
                    c.submit(crate::cluster::Outbound::message(o.to, from, message, None))
                        .await;
                }
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
            #[cfg(feature = "redis")]
            if let Some(c) = &self.cluster {
                // spec: cluster.md §C3.2 — the directory says where it is.
                let native = conn.legacy_identity().is_none();
                if let Some(before) = c.register(&id, native).await {
                    // spec: cluster.md §C5.2 — it came from another node, which may be dead.
                    let takeover = crate::cluster::take_over(c, self.weak(), &id, before, native);
                    tokio::spawn(takeover);
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
            #[cfg(feature = "redis")]
            if let Some(c) = &self.cluster {
                c.unregister(&id).await;
            }
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
                #[cfg(feature = "redis")]
                if let Some(c) = &self.cluster {
                    let tag = self.manager_do(|m| m.foreign_answer(&msg.header)).flatten();
                    if let Some(node) = tag.and_then(|t| c.node_of_tag(&t)) {
                        // spec: cluster.md §C4.8 — an answer to another node's manager.
                        let routed = Message {
                            header: r.header.clone(),
                            ..msg
                        };
                        c.submit(crate::cluster::Outbound::to_manager(
                            node,
                            from.full_id(),
                            routed,
                        ))
                        .await;
                        return Ok(1);
                    }
                }
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
                    let targets =
                        self.broadcast_targets(ws, &from.full_id(), msg.header.get_str("type"));
                    #[cfg(feature = "redis")]
                    if let Some(c) = &self.cluster {
                        // spec: cluster.md §C4.1 — and every other node's.
                        let m = Message {
                            header: r.header.clone(),
                            ..msg.clone()
                        };
                        c.submit(crate::cluster::Outbound::broadcast(
                            ws.to_string(),
                            from.full_id(),
                            m,
                        ))
                        .await;
                        if targets.is_empty() {
                            return Ok(1);
                        }
                    }
                    targets
                }
                None => match self.local_target(&r.target) {
                    Some(t) => t,
                    #[cfg(feature = "redis")]
                    None if self.cluster.is_some() => {
                        // spec: cluster.md §C4.1 — not here: whichever node holds it.
                        let c = self.cluster.as_ref().expect("checked");
                        let routed_message = Message {
                            header: r.header.clone(),
                            ..msg
                        };
                        c.submit(crate::cluster::Outbound::message(
                            r.target.clone(),
                            from.full_id(),
                            routed_message,
                            Some((back.clone(), mode)),
                        ))
                        .await;
                        return Ok(1);
                    }
                    None => Vec::new(),
                },
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
                        Err(e) => self.count_failure(&e, &r.target),
                    }
                }
                Ok(copies)
            }
            _ if mode == Mode::Native => self.echo(back, msg).await,
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

    /// Not addressed to a connected peer: the echo service (`sink` swallows, `stall` sleeps
    /// the milliseconds its payload says, anything else comes back).
    async fn echo(&self, back: &Sender, msg: Message) -> Result<usize, crate::Error> {
        self.stats
            .echoed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    /// The sender of the peer `id` connected here.
    fn local_sender_of(&self, id: &str) -> Option<Sender> {
        self.lock().get(id).map(|p| p.sender.clone())
    }

    /// The sender of the peer `id` connected here, as a target list.
    fn local_target(&self, id: &str) -> Option<Vec<Sender>> {
        self.lock().get(id).map(|p| vec![p.sender.clone()])
    }

    /// The senders of the peers of `ws` but `except` that take a broadcast of type `event`.
    fn broadcast_targets(&self, ws: &str, except: &str, event: Option<&str>) -> Vec<Sender> {
        let prefix = format!("{ws}/");
        let manager = self
            .manager
            .as_ref()
            .map(|m| m.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.lock()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && k.as_str() != except)
            .filter(|(k, _)| {
                manager
                    .as_ref()
                    .map_or(true, |m| m.wants_broadcast(k, event))
            })
            .map(|(_, p)| p.sender.clone())
            .collect()
    }

    /// Counts a copy that was not sent: skipped as slow (wire.md §6.1.2) or failed alone.
    fn count_failure(&self, e: &crate::Error, target: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        match e {
            crate::Error::WouldBlock => self.stats.skipped_slow.fetch_add(1, Relaxed),
            e => {
                debug!(error = %e, %target, "forward failed");
                self.stats.failed.fetch_add(1, Relaxed)
            }
        };
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

/// What a cluster's tasks ask of the router (spec/cluster.md §C4).
#[cfg(feature = "redis")]
impl Router {
    /// Joins a cluster of routers over Redis (spec/cluster.md): clients connected to any
    /// node reach each other, broadcasts reach every node's clients. Fails if Redis cannot
    /// be reached now; once joined, a Redis outage fails cross-node sends only, and the node
    /// rejoins by itself when Redis is back.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the node may have joined (its lease then runs out unrenewed
    /// and the other nodes forget it); nothing else is left behind.
    pub async fn join_cluster(
        mut self,
        config: crate::cluster::ClusterConfig,
    ) -> Result<Router, crate::cluster::ClusterError> {
        let weak = self.weak();
        let tag = crate::cluster::keys::node_tag(&config.node_id);
        self.manager_do(|m| m.set_node_tag(&tag));
        let cluster = crate::cluster::Cluster::join(config, weak).await?;
        self.cluster = Some(cluster);
        Ok(self)
    }

    /// This router, held weakly (what the cluster's tasks hold).
    fn weak(&self) -> WeakRouter {
        WeakRouter {
            peers: Arc::downgrade(&self.peers),
            generation: self.generation.clone(),
            stats: self.stats.clone(),
            manager: self.manager.clone(),
            cluster: self
                .cluster
                .as_ref()
                .map(Arc::downgrade)
                .unwrap_or_default(),
        }
    }

    /// The cluster layer's counters, if this router joined a cluster.
    pub fn cluster_stats(&self) -> Option<&crate::cluster::ClusterStats> {
        self.cluster.as_deref().map(|c| &**c.stats())
    }

    /// This node's id in its cluster, if it joined one.
    pub fn node_id(&self) -> Option<&str> {
        self.cluster.as_deref().map(|c| c.node())
    }
}

/// How the cluster layer reaches this node's peers (spec/cluster.md §C4.2).
#[cfg(feature = "redis")]
impl crate::cluster::LocalPeers for Router {
    /// The sender of local peer `id`, if it is connected here.
    fn local_sender(&self, id: &str) -> Option<Sender> {
        self.local_sender_of(id)
    }

    /// A broadcast from another node: to this node's peers of `ws` but `from` (with a
    /// manager, those subscribed to its type), slow ones skipped (wire.md §6.1.2). Returns
    /// the copies sent.
    fn broadcast_locally(&self, ws: &str, from: &str, message: Message) -> usize {
        let event = message.header.get_str("type").map(str::to_string);
        let targets = self.broadcast_targets(ws, from, event.as_deref());
        let channel = message.channel;
        let mut sent = 0;
        for target in targets {
            match target.try_forward(channel, message.clone()) {
                Ok(_) => sent += 1,
                Err(e) => self.count_failure(&e, ws),
            }
        }
        sent
    }

    /// A client connected to (or left) another node: this node's workspace manager tells its
    /// subscribers (legacy.md §L6.5).
    async fn remote_client_event(&self, id: &str, connected: bool) {
        let out = self.manager_do(|m| m.remote_client_event(id, connected));
        self.deliver(out.unwrap_or_default(), None).await;
    }

    async fn remote_service(&self, bytes: &[u8], added: bool) {
        let Some(max) = self.manager_do(|m| m.config().max_request_bytes) else {
            return;
        };
        let Some(service) = crate::manager::registry::Service::from_msgpack(bytes, max) else {
            debug!("a mirrored service that does not decode: ignored");
            return;
        };
        let out = self.manager_do(|m| m.remote_service(service, added));
        self.deliver(out.unwrap_or_default(), None).await;
    }

    async fn to_manager(&self, from: &str, message: Message) {
        let (ws, client) = from.split_once('/').unwrap_or(("", from));
        let identity = Identity::anonymous(ws, client);
        let out = self.manager_do(|manager| manager_call(manager, &identity, message));
        self.deliver(out.unwrap_or_default(), None).await;
    }

    async fn remote_client_seen(&self, id: &str) {
        // Listed from now on; its arrival is not news to anyone here.
        let _ = self.manager_do(|m| m.remote_client_event(id, true));
    }

    fn local_services(&self) -> Vec<crate::manager::registry::Service> {
        self.manager_do(|m| m.local_services()).unwrap_or_default()
    }

    /// A message the cluster could not place: a target connected nowhere is answered as on
    /// one node (echoed to a native sender, a call rejected); `failure` (Redis failed) rejects
    /// a call with that reason and drops anything else.
    async fn answer_unroutable(
        &self,
        from: &str,
        back: Option<&(Sender, Mode)>,
        message: Message,
        failure: Option<String>,
    ) {
        if let (None, Some((sender, Mode::Native))) = (&failure, back) {
            let _ = self.echo(sender, message).await;
            return;
        }
        let Some(session) = message.header.get_str("session") else {
            return;
        };
        let to = message.header.get_str("to").unwrap_or("");
        self.stats
            .rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let why = failure.unwrap_or_else(|| format!("Target peer {to} is not connected"));
        let (header, payload) = reject_because(session, to, from, &why);
        let sender = back
            .map(|(s, _)| s.clone())
            .or_else(|| self.local_sender(from));
        match (sender, &self.cluster) {
            (Some(s), _) => {
                let _ = s.send(Channel::Rpc, header, payload).await;
            }
            (None, Some(c)) => {
                let m = Message {
                    header,
                    payload,
                    encoding: PayloadEncoding::Msgpack,
                    ..crate::cluster::entry::empty_message(Channel::Rpc)
                };
                c.submit(crate::cluster::Outbound::message(
                    from.to_string(),
                    to.to_string(),
                    m,
                    None,
                ))
                .await;
            }
            (None, None) => {}
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
    reject_because(
        session,
        from,
        to,
        &format!("Target peer {target} is not connected"),
    )
}

/// A `<session>.reject` call from `from` to `to` whose error says `why`.
pub fn reject_because(session: &str, from: &str, to: &str, why: &str) -> (RoutingHeader, Bytes) {
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("from", from.to_string())
        .with("to", to.to_string())
        .with("method", format!("{session}.reject"));
    (header, crate::manager::protocol::reject_payload(why))
}
