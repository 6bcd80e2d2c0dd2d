//! Several `rhizomorph serve` nodes that route as one, over Redis Streams (spec/cluster.md).
//!
//! Owns what a node shares through Redis: the directory of which node holds which client
//! (`registry`), the node's lease and the reaping of nodes whose lease ran out, one inbox
//! stream per node that other nodes append to (`outbox`) and that the node reads through a
//! consumer group and acknowledges only once a message was handed to its client (`inbox`).
//! What it needs of the router it serves is the `Local` trait (the router implements it; this
//! module never imports the router).
//! A message to a client on the same node never reaches this module (the router's local
//! shortcut); one subscription per node, never per client.
//!
//! Never decodes a payload (an entry carries it as it traveled, [`entry`]), never waits on a
//! timer to batch (a batch is everything ready when the previous one was written, wire.md §10's
//! rule), and never lets Redis being away stop local routing: cross-node sends then fail with
//! [`ClusterError::Redis`] (a call is answered with a reject naming it) and the node rejoins
//! on its own once Redis is back.
//!
//! ```no_run
//! use rhizomorph::cluster::ClusterConfig;
//! use rhizomorph::router::Router;
//! # async fn demo(listener: rhizomorph::Listener) -> Result<(), rhizomorph::cluster::ClusterError> {
//! let router = Router::new()
//!     .join_cluster(ClusterConfig::new("redis://127.0.0.1:6379").with_node_id("node-a"))
//!     .await?;
//! router.serve(listener).await;
//! # Ok(()) }
//! ```

pub mod entry;
mod inbox;
pub mod keys;
mod outbox;
mod registry;
mod stream_entry;
mod takeover;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, Semaphore};

pub(crate) use outbox::Outbound;

/// `client` (`native`: it drops redelivered entries) registered here while the directory
/// named `before`: the task that takes it over if that node is dead (cluster.md §C5.2).
pub(crate) fn take_over<W: Local>(
    cluster: &Arc<Cluster>,
    router: W,
    client: &str,
    before: String,
    native: bool,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    takeover::run(cluster.clone(), router, client.to_string(), before, native)
}
use registry::Directory;

/// How a node joins a cluster. Defaults suit a LAN: a 3 s lease, at most 1,000,000 entries
/// per inbox.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]` (or `rediss://` for TLS-less URLs redis-rs accepts).
    pub redis_url: String,
    /// This node's id, unique in the cluster (default: `node-<random hex>`). A node restarted
    /// with the same id takes its old inbox over.
    pub node_id: String,
    /// How long the node's lease lives unrenewed (renewed every third of it): a node that
    /// stops renewing is reaped — its clients leave the directory and their workspaces hear
    /// `client_disconnected` — between one and two leases later.
    pub lease: Duration,
    /// Entries an inbox keeps at most (`XADD … MAXLEN ~`), read or not: the bound on Redis
    /// memory when a node stops reading (dead, or stuck). A live node trims its own inbox to
    /// what it has not yet handed out (`XTRIM … MINID`), so its inbox holds only its lag.
    pub inbox_max_len: u64,
    /// Entries a node's inbox may hold before the nodes writing to it wait (until it is
    /// under half of it): a node that reads slower than others write slows its writers
    /// instead of growing Redis.
    pub inbox_high_water: u64,
    /// Messages waiting to be written to Redis, at most (a sender then waits: backpressure).
    pub outbox_capacity: usize,
    /// Payload bytes waiting to be written to Redis, at most.
    pub outbox_bytes: usize,
    /// Entries read from the inbox per `XREADGROUP`.
    pub read_count: usize,
    /// Entries read but not yet handed to their (slow) clients, at most, before the node
    /// stops reading its inbox.
    pub held_max: usize,
    /// How long a cached directory answer is trusted (directory events refresh it sooner).
    pub owner_ttl: Duration,
    /// A Redis command that takes longer fails (and with it the cross-node sends it carried).
    pub redis_timeout: Duration,
    /// Routing headers read back from entries are held to this (our `MAX_HEADER_LIST_SIZE`).
    pub max_header_list_size: u64,
    /// How long an inbox keeps entries already handed to their clients (cluster.md §C4.3):
    /// what a node that takes a dead node's client over sends again (§C5.2), for the
    /// messages that were still in the dead node's send buffers or on the way. A message that
    /// waited there longer than this when the node died can be lost.
    pub retention: Duration,
}

impl ClusterConfig {
    /// The defaults, with Redis at `redis_url`.
    pub fn new(redis_url: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            redis_url: redis_url.into(),
            node_id: format!("node-{:016x}", rand::random::<u64>()),
            lease: Duration::from_secs(3),
            inbox_max_len: 1_000_000,
            inbox_high_water: 20_000,
            outbox_capacity: 8192,
            outbox_bytes: 64 << 20,
            read_count: 1024,
            held_max: 8192,
            owner_ttl: Duration::from_secs(2),
            redis_timeout: Duration::from_secs(2),
            max_header_list_size: 64 << 10,
            retention: Duration::from_secs(2),
        }
    }

    /// Sets how long handed-out entries stay in the inbox.
    pub fn with_retention(mut self, retention: Duration) -> ClusterConfig {
        self.retention = retention;
        self
    }

    /// Sets the node id.
    pub fn with_node_id(mut self, id: impl Into<String>) -> ClusterConfig {
        self.node_id = id.into();
        self
    }

    /// Sets the lease.
    pub fn with_lease(mut self, lease: Duration) -> ClusterConfig {
        self.lease = lease;
        self
    }

    /// Sets the entries an inbox keeps.
    pub fn with_inbox_max_len(mut self, entries: u64) -> ClusterConfig {
        self.inbox_max_len = entries;
        self
    }
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL does not parse as a Redis URL.
    #[error("{url} is not a Redis URL (redis://host:port): {source}")]
    Url {
        /// The URL given.
        url: String,
        /// What redis-rs said.
        source: redis::RedisError,
    },
    /// Redis could not be reached when the node joined.
    #[error("cannot reach Redis at {url}: {source} (is redis-server running there?)")]
    Connect {
        /// The URL.
        url: String,
        /// What redis-rs said.
        source: redis::RedisError,
    },
    /// A Redis command failed or timed out; cross-node traffic waits for Redis to come back
    /// (local routing goes on).
    #[error("Redis {what} failed: {source} (cross-node routing resumes when Redis is back)")]
    Redis {
        /// What the node was doing.
        what: &'static str,
        /// What redis-rs said.
        source: redis::RedisError,
    },
}

/// What a node's cluster layer has done (for tests, the CLI and the bench).
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Messages written to another node's inbox.
    pub sent: AtomicU64,
    /// Broadcast entries written (one per other node).
    pub broadcast_entries: AtomicU64,
    /// Entries read from this node's inbox.
    pub received: AtomicU64,
    /// Entries handed to a local client (or to its broadcast receivers) and acknowledged.
    pub delivered: AtomicU64,
    /// Entries for a client that had moved, written on to its new node.
    pub reforwarded: AtomicU64,
    /// Entries whose client is connected nowhere (a call among them is rejected).
    pub undeliverable: AtomicU64,
    /// Entries that did not decode (each dropped alone).
    pub bad_entries: AtomicU64,
    /// Cross-node sends that failed because Redis did not answer in time.
    pub failed_sends: AtomicU64,
    /// Round trips to Redis for sending (directory look-ups and `XADD` pipelines).
    pub send_round_trips: AtomicU64,
    /// Batches written.
    pub batches: AtomicU64,
    /// Times the outbox waited for a slow node's inbox to drain below its high-water mark.
    pub waited_for_room: AtomicU64,
    /// Dead nodes this node reaped, and the clients it removed with them.
    pub reaped_nodes: AtomicU64,
    /// Clients removed from the directory with the dead nodes this node reaped.
    pub reaped_clients: AtomicU64,
    /// Answers to messages that found no node, dropped because their senders had no room for
    /// them while every answering task was busy (a sender that does not read what it is sent).
    pub unanswered: AtomicU64,
    /// Times this node found its lease gone (Redis restarted, or it was away) and registered
    /// its clients again.
    pub rejoined: AtomicU64,
    /// Clients that connected here from a node found dead, whose entries this node read from
    /// that node's inbox (cluster.md §C5.2).
    pub takeovers: AtomicU64,
    /// Entries delivered from dead nodes' inboxes (a native client drops those it had).
    pub taken_over: AtomicU64,
}

/// The router a cluster layer serves, held weakly: the cluster's tasks end once it is gone.
pub(crate) trait Local: Clone + Send + Sync + 'static {
    /// The router while it exists.
    type Live: LocalPeers;
    /// The router, if it still exists.
    fn upgrade(&self) -> Option<Self::Live>;
    /// The same, upgrading to a router that is a member of `cluster`.
    fn in_cluster(self, cluster: &Arc<Cluster>) -> Self;
}

/// What the cluster layer asks of a live router: its local peers, and how it answers what
/// found no node.
pub(crate) trait LocalPeers: Send + Sync + 'static {
    /// The sender of local peer `id`, if it is connected here.
    fn local_sender(&self, id: &str) -> Option<crate::sender::Sender>;
    /// A broadcast from another node to this node's peers of `ws` but `from`; the copies sent.
    fn broadcast_locally(&self, ws: &str, from: &str, message: crate::connection::Message)
        -> usize;
    /// A client connected to (or left) another node: the workspace manager tells its
    /// subscribers.
    fn remote_client_event(
        &self,
        id: &str,
        connected: bool,
    ) -> impl std::future::Future<Output = ()> + Send;
    /// A service of a client on another node was registered (`added`) or removed
    /// (`bytes`: `Service::to_msgpack`); ignored if they do not decode.
    fn remote_service(
        &self,
        bytes: &[u8],
        added: bool,
    ) -> impl std::future::Future<Output = ()> + Send;
    /// A provider's answer, from `from` on another node, to a `get_service` this node's
    /// workspace manager made.
    fn to_manager(
        &self,
        from: &str,
        message: crate::connection::Message,
    ) -> impl std::future::Future<Output = ()> + Send;
    /// A client of another node that was connected before this node joined.
    fn remote_client_seen(&self, id: &str) -> impl std::future::Future<Output = ()> + Send;
    /// The services of this node's clients (registered again after Redis lost them).
    fn local_services(&self) -> Vec<crate::manager::registry::Service>;
    /// A message that found no node (or failed for `failure`): answered as a router answers
    /// one to nobody.
    fn answer_unroutable(
        &self,
        from: &str,
        back: Option<&(crate::sender::Sender, crate::connection::Mode)>,
        message: crate::connection::Message,
        failure: Option<String>,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// One node's membership: its Redis connection, directory cache and outbox.
pub(crate) struct Cluster {
    config: ClusterConfig,
    conn: ConnectionManager,
    outbox: mpsc::Sender<Outbound>,
    /// Payload bytes queued in the outbox (permits are bytes).
    outbox_bytes: Arc<Semaphore>,
    directory: Mutex<Directory>,
    /// Other nodes whose lease was live at the last renewal (broadcast and event targets).
    nodes: Mutex<Vec<String>>,
    /// Full ids of the clients this node holds (registered again if its lease was lost), each
    /// with whether it is native (it drops redelivered entries, wire.md §22.5).
    local: Mutex<std::collections::HashMap<String, bool>>,
    /// What the inbox holds back for slow clients and those being taken over.
    delivery: inbox::Delivery,
    /// Set when a lease renewal found the lease gone: this node's services go back in.
    rejoined: std::sync::atomic::AtomicBool,
    stats: Arc<ClusterStats>,
}

impl Cluster {
    /// This node's id.
    pub(crate) fn node(&self) -> &str {
        &self.config.node_id
    }

    /// Counters.
    pub(crate) fn stats(&self) -> &Arc<ClusterStats> {
        &self.stats
    }

    fn count(&self, counter: impl Fn(&ClusterStats) -> &AtomicU64, n: u64) {
        counter(&self.stats).fetch_add(n, Relaxed);
    }

    /// Whether local client `id` is native (its messages from the inbox carry `rz-entry`).
    fn is_native(&self, id: &str) -> bool {
        self.local.lock().unwrap().get(id).copied().unwrap_or(false)
    }

    /// The live node whose tag is `tag`.
    pub(crate) fn node_of_tag(&self, tag: &str) -> Option<String> {
        let nodes = self.nodes.lock().unwrap();
        nodes.iter().find(|n| keys::node_tag(n) == tag).cloned()
    }

    /// Queues `item` for Redis, waiting for room (bounded in messages and bytes).
    pub(crate) async fn submit(&self, item: Outbound) {
        let budget = self.config.outbox_bytes.max(1);
        let bytes = item.payload_len().clamp(1, budget) as u32;
        let Ok(permit) = self.outbox_bytes.clone().acquire_many_owned(bytes).await else {
            return;
        };
        let _ = self.outbox.send(item.with_permit(permit)).await;
    }

    /// Opens the connections, joins the cluster and starts the node's tasks for `router`.
    pub(crate) async fn join<W: Local>(
        config: ClusterConfig,
        router: W,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let url = config.redis_url.clone();
        let client = redis::Client::open(url.as_str()).map_err(|source| ClusterError::Url {
            url: url.clone(),
            source,
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(config.redis_timeout)
            .set_connection_timeout(config.redis_timeout)
            .set_number_of_retries(1)
            .set_max_delay(200);
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config.clone())
            .await
            .map_err(|source| ClusterError::Connect {
                url: url.clone(),
                source,
            })?;
        // The inbox blocks in XREADGROUP: a connection of its own, whose timeout outlasts the
        // block.
        let reader = ConnectionManager::new_with_config(
            client,
            manager_config.set_response_timeout(config.redis_timeout + inbox::BLOCK),
        )
        .await
        .map_err(|source| ClusterError::Connect { url, source })?;
        let (tx, rx) = mpsc::channel(config.outbox_capacity.max(1));
        let cluster = Arc::new(Cluster {
            outbox_bytes: Arc::new(Semaphore::new(config.outbox_bytes.max(1))),
            directory: Mutex::new(Directory::new(config.owner_ttl)),
            nodes: Mutex::new(Vec::new()),
            local: Mutex::new(Default::default()),
            delivery: inbox::Delivery::new(config.held_max),
            rejoined: Default::default(),
            stats: Arc::default(),
            config,
            conn,
            outbox: tx,
        });
        let router = router.in_cluster(&cluster);
        cluster.renew_lease().await?;
        inbox::ensure_group(&cluster, &mut cluster.conn.clone()).await?;
        cluster.announce().await?;
        if let Some(r) = router.upgrade() {
            cluster.load_services(&r).await?;
        }
        tokio::spawn(outbox::run(cluster.clone(), rx, router.clone()));
        tokio::spawn(inbox::run(cluster.clone(), reader, router.clone()));
        tokio::spawn(registry::keep_lease(cluster.clone(), router));
        tracing::info!(node = %cluster.node(), redis = %cluster.config.redis_url, "joined the cluster");
        Ok(cluster)
    }
}
