//! Reading this node's inbox (cluster.md §C4.2): `XREADGROUP` through the group `rz`, each entry
//! handed to its local client, acknowledged (`XACK`, pipelined with the next read) only once
//! the client's connection took it.
//!
//! Owns delivery order and the bound on what a slow client costs: a client whose send buffer
//! is full gets a lane of its own (its entries wait there in order, drained by a task that
//! waits for its room) while the others' entries go on; past
//! [`held_max`](super::ClusterConfig::held_max) entries held in lanes the node stops reading.
//! An entry whose client moved is written on to its new node; one that does not decode is
//! dropped alone. Never reads a payload.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::streams::{StreamId, StreamReadReply};
use redis::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::{entry, keys, Cluster, ClusterError, Local, LocalPeers, Outbound};
use crate::connection::Message;

/// How long one `XREADGROUP` blocks when the inbox is empty.
pub(super) const BLOCK: Duration = Duration::from_millis(1000);

/// Entries waiting for their slow client, by client, in order.
type Lanes = Arc<Mutex<HashMap<String, VecDeque<(String, Message, OwnedSemaphorePermit)>>>>;

/// Creates the inbox and its group if they are not there (first start, or Redis restarted
/// empty). Reads from the newest entry: what was written before the group existed had no
/// reader to lose.
pub(super) async fn ensure_group(
    cluster: &Cluster,
    conn: &mut ConnectionManager,
) -> Result<(), ClusterError> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::inbox(cluster.node()))
        .arg(keys::GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(source) => Err(ClusterError::Redis {
            what: "creating the inbox group",
            source,
        }),
    }
}

/// Reads and delivers until the router is gone; waits out Redis outages.
pub(super) async fn run<W: Local>(cluster: Arc<Cluster>, mut conn: ConnectionManager, weak: W) {
    let inbox = keys::inbox(cluster.node());
    let acks: Arc<Mutex<Vec<String>>> = Arc::default();
    let lanes: Lanes = Arc::default();
    let held = Arc::new(Semaphore::new(cluster.config.held_max.max(1)));
    let mut backoff = Duration::from_millis(50);
    // The newest entry read: everything before it was handed out or is held in a lane.
    let mut last_read: Option<String> = None;
    loop {
        if weak.upgrade().is_none() {
            return;
        }
        // Room for a whole read in the lanes before reading (the bound on held entries).
        let count = cluster
            .config
            .read_count
            .clamp(1, cluster.config.held_max.max(1));
        let Ok(room) = held.clone().acquire_many_owned(count as u32).await else {
            return;
        };
        drop(room);
        let done: Vec<String> = std::mem::take(&mut *acks.lock().unwrap());
        let mut pipe = redis::pipe();
        if !done.is_empty() {
            pipe.xack(&inbox, keys::GROUP, &done).ignore();
            // spec: cluster.md §C4.3 — what was read and is not held is done with: trimmed.
            if let Some(min) = oldest_held(&lanes).or(last_read.take()) {
                pipe.cmd("XTRIM")
                    .arg(&inbox)
                    .arg("MINID")
                    .arg("~")
                    .arg(min)
                    .ignore();
            }
        }
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(keys::GROUP)
            .arg(cluster.node())
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&inbox)
            .arg(">");
        let read: redis::RedisResult<(Option<StreamReadReply>,)> =
            pipe.query_async(&mut conn).await;
        let reply = match read {
            Ok((reply,)) => {
                backoff = Duration::from_millis(50);
                reply
            }
            Err(e) => {
                // Not acknowledged: put back, sent with the next read.
                acks.lock().unwrap().extend(done);
                if e.code() == Some("NOGROUP") {
                    if let Err(e) = ensure_group(&cluster, &mut conn).await {
                        debug!(error = %e, "inbox group not created yet");
                    }
                } else {
                    let e = ClusterError::Redis {
                        what: "XREADGROUP",
                        source: e,
                    };
                    warn!(node = %cluster.node(), error = %e, "inbox unread");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Some(router) = weak.upgrade() else {
            return;
        };
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for id in key.ids {
                cluster.count(|s| &s.received, 1);
                last_read = Some(id.id.clone());
                handle(&cluster, &weak, &router, &lanes, &held, &acks, id).await;
            }
        }
    }
}

/// The oldest entry id a lane holds (ids compare as `<ms>-<seq>` numbers, not as text).
fn oldest_held(lanes: &Lanes) -> Option<String> {
    let number = |id: &str| -> (u64, u64) {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
    };
    lanes
        .lock()
        .unwrap()
        .values()
        .filter_map(|lane| lane.front().map(|(id, _, _)| id.clone()))
        .min_by_key(|id| number(id))
}

/// One entry: delivered, held in its client's lane, written on, or dropped.
async fn handle<W: Local>(
    cluster: &Arc<Cluster>,
    weak: &W,
    router: &W::Live,
    lanes: &Lanes,
    held: &Arc<Semaphore>,
    acks: &Arc<Mutex<Vec<String>>>,
    id: StreamId,
) {
    let text = |field: &str| match id.map.get(field) {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let (kind, to, from) = (text("k"), text("t"), text("f"));
    let ack = |entry: String| acks.lock().unwrap().push(entry);
    match kind.as_str() {
        "c" | "d" => {
            let connected = kind == "c";
            let owner = connected.then(|| from.clone());
            cluster
                .directory
                .lock()
                .unwrap()
                .put(&to, owner, std::time::Instant::now());
            router.remote_client_event(&to, connected).await;
            ack(id.id);
            return;
        }
        "n" => {
            cluster.node_joined(&to);
            ack(id.id);
            return;
        }
        "s" | "r" => {
            if let Some(Value::BulkString(b)) = id.map.get("m") {
                router.remote_service(b, kind == "s").await;
            }
            ack(id.id);
            return;
        }
        "m" | "b" | "g" => {}
        other => {
            debug!(kind = %other, entry = %id.id, "inbox entry of an unknown kind dropped");
            cluster.count(|s| &s.bad_entries, 1);
            ack(id.id);
            return;
        }
    }
    // Taken out of the reply, not copied: the payload is a view of what Redis sent.
    let mut id = id;
    let bytes = match id.map.remove("m") {
        Some(Value::BulkString(b)) => Bytes::from(b),
        _ => Bytes::new(),
    };
    let message = match entry::decode(bytes, cluster.config.max_header_list_size) {
        Ok(m) => m,
        Err(e) => {
            warn!(entry = %id.id, error = %e, "inbox entry dropped");
            cluster.count(|s| &s.bad_entries, 1);
            ack(id.id);
            return;
        }
    };
    if kind == "g" {
        router.to_manager(&from, message).await;
        cluster.count(|s| &s.delivered, 1);
        ack(id.id);
        return;
    }
    if kind == "b" {
        let ws = keys::workspace_of(&to);
        let n = router.broadcast_locally(ws, &from, message);
        cluster.count(|s| &s.delivered, n as u64);
        ack(id.id);
        return;
    }
    // A lane already holds entries for this client: this one waits behind them (order).
    {
        let mut lanes_now = lanes.lock().unwrap();
        if let Some(lane) = lanes_now.get_mut(&to) {
            match held.clone().try_acquire_owned() {
                Ok(permit) => {
                    lane.push_back((id.id, message, permit));
                    return;
                }
                Err(_) => {
                    // Cannot happen: a read starts only with room for all it reads.
                    drop(lanes_now);
                    return drop_entry(cluster, acks, id.id, &to);
                }
            }
        }
    }
    let Some(sender) = router.local_sender(&to) else {
        // Moved (or gone): ask the directory, not the cache, and send it on.
        match cluster.look_up(std::slice::from_ref(&to)).await {
            Ok(owners) => match owners.into_iter().next().flatten() {
                Some(node) if node != cluster.node() => {
                    cluster.count(|s| &s.reforwarded, 1);
                    cluster
                        .submit(Outbound::message(to, from, message, None))
                        .await;
                }
                _ => {
                    cluster.count(|s| &s.undeliverable, 1);
                    router.answer_unroutable(&from, None, message, None).await;
                }
            },
            // Left pending: claimed when its client comes back (or the node restarts).
            Err(e) => {
                warn!(entry = %id.id, error = %e, "inbox entry left pending");
                return;
            }
        }
        ack(id.id);
        return;
    };
    let channel = message.channel;
    match sender.try_forward(channel, message.clone()) {
        Err(crate::Error::WouldBlock) => {
            let permit = held
                .clone()
                .try_acquire_owned()
                .expect("a read starts only with room for all it reads");
            lanes
                .lock()
                .unwrap()
                .insert(to.clone(), VecDeque::from([(id.id, message, permit)]));
            tokio::spawn(drain_lane(
                cluster.clone(),
                weak.clone(),
                lanes.clone(),
                acks.clone(),
                to,
            ));
        }
        sent => {
            delivered(cluster, sent, &to);
            ack(id.id);
        }
    }
}

/// Hands a slow client its held entries in order, each as its connection makes room.
async fn drain_lane<W: Local>(
    cluster: Arc<Cluster>,
    router: W,
    lanes: Lanes,
    acks: Arc<Mutex<Vec<String>>>,
    to: String,
) {
    loop {
        let next = {
            let mut lanes = lanes.lock().unwrap();
            let lane = lanes.get_mut(&to).expect("a lane is removed only here");
            match lane.pop_front() {
                Some(item) => item,
                None => {
                    lanes.remove(&to);
                    return;
                }
            }
        };
        let (entry, message, _permit) = next;
        let sender = router.upgrade().and_then(|r| r.local_sender(&to));
        let sent = match sender {
            Some(s) => s.forward(message.channel, message).await,
            None => Err(crate::Error::WouldBlock),
        };
        delivered(&cluster, sent, &to);
        acks.lock().unwrap().push(entry);
    }
}

fn delivered(cluster: &Cluster, sent: Result<u64, crate::Error>, to: &str) {
    match sent {
        Ok(_) => cluster.count(|s| &s.delivered, 1),
        Err(e) => {
            // The client's connection is gone or cannot take this payload: this one fails.
            debug!(error = %e, %to, "inbox entry not delivered");
            cluster.count(|s| &s.undeliverable, 1);
        }
    }
}

fn drop_entry(cluster: &Cluster, acks: &Arc<Mutex<Vec<String>>>, entry: String, to: &str) {
    debug!(%entry, %to, "inbox entry dropped: the lanes are full");
    cluster.count(|s| &s.undeliverable, 1);
    acks.lock().unwrap().push(entry);
}
