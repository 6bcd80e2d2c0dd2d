//! The cluster's directory and membership (cluster.md §C3): which node holds which client, and
//! which nodes are alive.
//!
//! Owns the node's lease (renewed every third of [`ClusterConfig::lease`](super::ClusterConfig::lease);
//! found gone — Redis restarted, or this node was away — it registers its clients again), the
//! registration of clients as they connect and leave, the reaping of nodes whose lease ran
//! out (their clients leave the directory and every node hears `client_disconnected`), and the
//! node's cache of directory answers. Never removes a directory entry another node wrote
//! since (removal is compare-and-delete, in one script).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use tracing::{debug, info, warn};

use super::{keys, Cluster, ClusterError, Local, LocalPeers, Outbound};

/// `HDEL key field` if the field still holds `ARGV[2]` (a node removes only its own entries).
const DELETE_IF_OWNER: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0";

/// Reaps one client of a dead node: if owners hash `KEYS[1]` still names node `ARGV[2]` for
/// client `ARGV[1]`, deletes that field and the client's services from hash `KEYS[2]` (the
/// fields starting `ARGV[1]:`) and answers 1; a client that reconnected elsewhere keeps both.
const REAP_CLIENT: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
local prefix = ARGV[1] .. ':'
for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(field, 1, string.len(prefix)) == prefix then
    redis.call('HDEL', KEYS[2], field)
  end
end
return 1";

/// `HSET key field value`, answering the value it replaced (nil if none).
const SET_OWNER: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return old";

/// Cached directory answers: full id → its node (`None`: connected nowhere), with when.
pub(super) struct Directory {
    ttl: Duration,
    owners: HashMap<String, (Option<String>, Instant)>,
}

impl Directory {
    pub(super) fn new(ttl: Duration) -> Directory {
        Directory {
            ttl,
            owners: HashMap::new(),
        }
    }

    /// The cached owner of `id`: `None` if not cached or stale, `Some(None)` if cached as
    /// connected nowhere.
    pub(super) fn get(&self, id: &str, now: Instant) -> Option<Option<&str>> {
        let (node, at) = self.owners.get(id)?;
        (now.duration_since(*at) < self.ttl).then_some(node.as_deref())
    }

    /// Records an answer (from Redis, or a directory event).
    pub(super) fn put(&mut self, id: &str, node: Option<String>, now: Instant) {
        if self.owners.len() >= 1 << 20 {
            // Bounded: a flood of distinct targets cannot grow it without end.
            self.owners
                .retain(|_, (_, at)| now.duration_since(*at) < self.ttl);
        }
        self.owners.insert(id.to_string(), (node, now));
    }
}

impl Cluster {
    /// `client` (`native`: it drops redelivered entries, wire.md §22.5) connected here: the
    /// directory says so and the other nodes hear it. Returns the node the directory named
    /// before, if another (the client came from there: cluster.md §C5.2).
    pub(crate) async fn register(&self, client: &str, native: bool) -> Option<String> {
        self.local
            .lock()
            .unwrap()
            .insert(client.to_string(), native);
        let ws = keys::workspace_of(client);
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(SET_OWNER)
            .arg(1)
            .arg(keys::owners(ws))
            .arg(client)
            .arg(self.node())
            .sadd(keys::clients(self.node()), client)
            .ignore()
            .sadd(keys::WORKSPACES, ws)
            .ignore();
        let before = match pipe
            .query_async::<(Option<String>,)>(&mut self.conn.clone())
            .await
        {
            Ok((before,)) => before,
            Err(source) => {
                // Registered again at the next lease renewal once Redis answers.
                let e = ClusterError::Redis {
                    what: "registering a client",
                    source,
                };
                warn!(%client, error = %e, "client reachable from this node only for now");
                None
            }
        };
        self.submit(Outbound::event(true, client)).await;
        before.filter(|n| n != self.node())
    }

    /// Adds to `pipe` the commands that record `client` as this node's (cluster.md §C3.2).
    fn add_registration(&self, pipe: &mut redis::Pipeline, client: &str) {
        let ws = keys::workspace_of(client);
        pipe.hset(keys::owners(ws), client, self.node())
            .ignore()
            .sadd(keys::clients(self.node()), client)
            .ignore()
            .sadd(keys::WORKSPACES, ws)
            .ignore();
    }

    /// `client` left this node.
    pub(crate) async fn unregister(&self, client: &str) {
        self.local.lock().unwrap().remove(client);
        let owners = keys::owners(keys::workspace_of(client));
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(DELETE_IF_OWNER)
            .arg(1)
            .arg(&owners)
            .arg(client)
            .arg(self.node())
            .ignore()
            .srem(keys::clients(self.node()), client)
            .ignore();
        if let Err(source) = pipe.query_async::<()>(&mut self.conn.clone()).await {
            let e = ClusterError::Redis {
                what: "unregistering a client",
                source,
            };
            warn!(%client, error = %e, "the directory keeps it until this node is reaped");
        }
        self.submit(Outbound::event(false, client)).await;
    }

    /// The owners of `ids` from Redis, in one round trip (`None`: connected nowhere). Cached.
    pub(super) async fn look_up(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<String>>, ClusterError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(keys::owners(keys::workspace_of(id)), id);
        }
        self.count(|s| &s.send_round_trips, 1);
        let owners: Vec<Option<String>> =
            pipe.query_async(&mut self.conn.clone())
                .await
                .map_err(|source| ClusterError::Redis {
                    what: "directory look-up",
                    source,
                })?;
        let now = Instant::now();
        let mut dir = self.directory.lock().unwrap();
        for (id, owner) in ids.iter().zip(&owners) {
            dir.put(id, owner.clone(), now);
        }
        Ok(owners)
    }

    /// Renews the lease; if it had run out, joins again: the node in `rz:nodes`, every local
    /// client in the directory. Also refreshes the list of live nodes.
    pub(crate) async fn renew_lease(&self) -> Result<Vec<String>, ClusterError> {
        let redis = |what| move |source| ClusterError::Redis { what, source };
        let mut conn = self.conn.clone();
        let lease_ms = self.config.lease.as_millis().max(1) as u64;
        let (previous, members): (Option<String>, Vec<String>) = redis::pipe()
            .cmd("SET")
            .arg(keys::lease(self.node()))
            .arg(1)
            .arg("PX")
            .arg(lease_ms)
            .arg("GET")
            .sadd(keys::NODES, self.node())
            .ignore()
            .smembers(keys::NODES)
            .query_async(&mut conn)
            .await
            .map_err(redis("lease renewal"))?;
        if previous.is_none() {
            let clients: Vec<String> = self.local.lock().unwrap().keys().cloned().collect();
            if !clients.is_empty() {
                let mut pipe = redis::pipe();
                for c in &clients {
                    self.add_registration(&mut pipe, c);
                }
                pipe.query_async::<()>(&mut conn)
                    .await
                    .map_err(redis("registering clients again"))?;
                self.count(|s| &s.rejoined, 1);
                self.rejoined
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                info!(node = %self.node(), clients = clients.len(), "lease was gone: registered this node's clients again");
            }
        }
        let others: Vec<String> = members.into_iter().filter(|n| n != self.node()).collect();
        let mut pipe = redis::pipe();
        for n in &others {
            pipe.exists(keys::lease(n));
        }
        let alive: Vec<bool> = pipe
            .query_async(&mut conn)
            .await
            .map_err(redis("lease check"))?;
        let (live, dead): (Vec<_>, Vec<_>) = others.into_iter().zip(alive).partition(|(_, a)| *a);
        *self.nodes.lock().unwrap() = live.into_iter().map(|(n, _)| n).collect();
        Ok(dead.into_iter().map(|(n, _)| n).collect())
    }

    /// Tells every live node that this one joined (cluster.md §C3.1), so that their broadcasts
    /// and events reach it from now on, not from their next lease renewal.
    pub(super) async fn announce(&self) -> Result<(), ClusterError> {
        let nodes = self.nodes.lock().unwrap().clone();
        let mut pipe = redis::pipe();
        for n in &nodes {
            let me = self.node();
            super::outbox::xadd(&mut pipe, n, self.config.inbox_max_len, "n", me, me);
            pipe.ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|source| ClusterError::Redis {
                what: "announcing this node",
                source,
            })
    }

    /// Mirrors the clients and services every other node registered (cluster.md §C3.2,
    /// §C4.7), for a node that joins after they were.
    pub(super) async fn load_services<L: LocalPeers>(
        &self,
        router: &L,
    ) -> Result<(), ClusterError> {
        let redis = |what| move |source| ClusterError::Redis { what, source };
        let mut conn = self.conn.clone();
        let workspaces: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::WORKSPACES)
            .query_async(&mut conn)
            .await
            .map_err(redis("reading the workspaces"))?;
        for ws in workspaces {
            let services: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
                .arg(keys::services(&ws))
                .query_async(&mut conn)
                .await
                .map_err(redis("reading a workspace's services"))?;
            for (_, bytes) in services {
                router.remote_service(&bytes, true).await;
            }
            let owners: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(keys::owners(&ws))
                .query_async(&mut conn)
                .await
                .map_err(redis("reading a workspace's clients"))?;
            let now = Instant::now();
            for (client, node) in owners {
                if node != self.node() {
                    router.remote_client_seen(&client).await;
                    self.directory.lock().unwrap().put(&client, Some(node), now);
                }
            }
        }
        Ok(())
    }

    /// Node `node` joined: broadcasts and events go to it too.
    pub(super) fn node_joined(&self, node: &str) {
        let mut nodes = self.nodes.lock().unwrap();
        if node != self.node() && !nodes.iter().any(|n| n == node) {
            nodes.push(node.to_string());
        }
    }

    /// Reaps `node`, whose lease ran out, unless another node already is: removes its clients
    /// from the directory (each `client_disconnected`, here and on every other node), keeps its
    /// inbox for a while for a client that reconnects elsewhere, forgets the node.
    async fn reap<W: Local>(&self, node: &str, router: &W) -> Result<(), ClusterError> {
        let redis = |what| move |source| ClusterError::Redis { what, source };
        let mut conn = self.conn.clone();
        let hold_ms = (self.config.lease.as_millis() as u64 * 4).max(1000);
        let got: Value = redis::cmd("SET")
            .arg(keys::reaper(node))
            .arg(self.node())
            .arg("NX")
            .arg("PX")
            .arg(hold_ms)
            .query_async(&mut conn)
            .await
            .map_err(redis("reaper lock"))?;
        if got == Value::Nil {
            return Ok(());
        }
        let clients: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::clients(node))
            .query_async(&mut conn)
            .await
            .map_err(redis("reading a dead node's clients"))?;
        // One round trip: each client's compare-and-delete with its services (whose answers
        // say which were still the dead node's: one that reconnected elsewhere keeps both),
        // then the node itself.
        let mut pipe = redis::pipe();
        for c in &clients {
            let ws = keys::workspace_of(c);
            pipe.cmd("EVAL")
                .arg(REAP_CLIENT)
                .arg(2)
                .arg(keys::owners(ws))
                .arg(keys::services(ws))
                .arg(c)
                .arg(node);
        }
        pipe.del(keys::clients(node))
            .ignore()
            .srem(keys::NODES, node)
            .ignore()
            .pexpire(
                keys::inbox(node),
                (self.config.lease.as_millis() as i64 * 20).max(60_000),
            )
            .ignore();
        let removed: Vec<i64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(redis("reaping a dead node"))?;
        let gone: Vec<&String> = clients
            .iter()
            .zip(&removed)
            .filter(|(_, r)| **r == 1)
            .map(|(c, _)| c)
            .collect();
        self.count(|s| &s.reaped_nodes, 1);
        self.count(|s| &s.reaped_clients, gone.len() as u64);
        info!(node = %self.node(), dead = %node, clients = gone.len(), "reaped a node whose lease ran out");
        let now = Instant::now();
        for c in gone {
            self.directory.lock().unwrap().put(c, None, now);
            if let Some(r) = router.upgrade() {
                r.remote_client_event(c, false).await;
            }
            // Every other node's workspace manager hears it too.
            self.submit(Outbound::event(false, c)).await;
        }
        Ok(())
    }
}

/// Renews the lease and reaps dead nodes until the router is gone.
pub(super) async fn keep_lease<W: Local>(cluster: Arc<Cluster>, router: W) {
    let mut tick = tokio::time::interval((cluster.config.lease / 3).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if router.upgrade().is_none() {
            return;
        }
        match cluster.renew_lease().await {
            Ok(dead) => {
                if cluster
                    .rejoined
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    // Redis lost the services hash with the lease: this node's go back in.
                    if let Some(r) = router.upgrade() {
                        for service in r.local_services() {
                            cluster
                                .submit(Outbound::service(
                                    crate::manager::registry::ServiceChange {
                                        service,
                                        added: true,
                                    },
                                ))
                                .await;
                        }
                    }
                }
                for node in dead {
                    if let Err(e) = cluster.reap(&node, &router).await {
                        debug!(error = %e, %node, "reaping postponed");
                    }
                }
            }
            Err(e) => warn!(node = %cluster.node(), error = %e, "lease not renewed"),
        }
    }
}
