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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::stream_entry::{self, InboxEntry};
use super::{entry, keys, Cluster, ClusterError, Local, LocalPeers, Outbound};
use crate::connection::Message;
use crate::legacy::ENTRY_FIELD;

/// How long one `XREADGROUP` blocks when the inbox is empty.
pub(super) const BLOCK: Duration = Duration::from_millis(1000);

/// Entries waiting for their slow client, by client, in order.
pub(super) type Lanes =
    Arc<Mutex<HashMap<String, VecDeque<(String, Message, OwnedSemaphorePermit)>>>>;

/// What the inbox holds back: entries for slow clients (and for clients being taken over,
/// cluster.md §C5.2) in lanes, bounded in number, and the entries handed out and not yet
/// acknowledged to Redis.
pub(super) struct Delivery {
    pub(super) lanes: Lanes,
    /// Permits for entries held in lanes ([`held_max`](super::ClusterConfig::held_max)).
    pub(super) held: Arc<Semaphore>,
    /// Entries done with, acknowledged with the next read.
    pub(super) acks: Arc<Mutex<Vec<String>>>,
}

impl Delivery {
    pub(super) fn new(held_max: usize) -> Delivery {
        Delivery {
            lanes: Arc::default(),
            held: Arc::new(Semaphore::new(held_max.max(1))),
            acks: Arc::default(),
        }
    }

    /// Holds `client`'s entries back (they wait in its lane, in order) until
    /// [`release`](Self::release); `false` if a lane already holds some (not gated then).
    pub(super) fn gate(&self, client: &str) -> bool {
        let mut lanes = self.lanes.lock().unwrap();
        if lanes.contains_key(client) {
            return false;
        }
        lanes.insert(client.to_string(), VecDeque::new());
        true
    }

    /// Lets what [`gate`](Self::gate) held back go, in order.
    pub(super) fn release<W: Local>(&self, cluster: &Arc<Cluster>, router: &W, client: &str) {
        tokio::spawn(drain_lane(
            cluster.clone(),
            router.clone(),
            self.lanes.clone(),
            self.acks.clone(),
            client.to_string(),
        ));
    }
}

/// A stream entry id (`<ms>-<seq>`) as the numbers it compares by (0-0 if malformed).
pub(super) fn entry_number(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// How often a busy inbox is trimmed at most (cluster.md §C4.3): the retention holds at most
/// this much more, and a node reading an entry or two at a time does not send an `XTRIM` with
/// every read.
pub(super) const TRIM_EVERY: Duration = Duration::from_millis(100);

/// Where this node's inbox may be trimmed to (cluster.md §C4.3): entries handed out stay for
/// the retention, counted on Redis's clock (the ids) from the newest entry read.
struct Retention {
    keep: Duration,
    /// When the last `MINID` was sent.
    trimmed_at: Option<std::time::Instant>,
    /// The newest entry read, and when.
    newest: Option<(String, std::time::Instant)>,
    /// The last `MINID` sent.
    trimmed: Option<(u64, u64)>,
}

impl Retention {
    /// The `MINID` to trim to now, if it moved: the oldest of the oldest held entry, the newest
    /// read one, and the newest read one's time plus the time since minus the retention.
    fn due(&mut self, oldest_held: Option<String>) -> Option<String> {
        if self.trimmed_at.is_some_and(|t| t.elapsed() < TRIM_EVERY) {
            return None;
        }
        let (newest, at) = self.newest.as_ref()?;
        let newest = entry_number(newest);
        let ms = (newest.0 + at.elapsed().as_millis() as u64)
            .saturating_sub(self.keep.as_millis() as u64);
        let mut min = newest.min((ms, 0));
        if let Some(held) = oldest_held {
            min = min.min(entry_number(&held));
        }
        if self.trimmed.is_some_and(|t| t >= min) {
            return None;
        }
        self.trimmed = Some(min);
        self.trimmed_at = Some(std::time::Instant::now());
        Some(format!("{}-{}", min.0, min.1))
    }
}

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
    let Delivery { lanes, held, acks } = &cluster.delivery;
    let (lanes, held, acks) = (lanes.clone(), held.clone(), acks.clone());
    let mut backoff = Duration::from_millis(50);
    let mut retention = Retention {
        keep: cluster.config.retention,
        trimmed_at: None,
        newest: None,
        trimmed: None,
    };
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
        }
        // spec: cluster.md §C4.3 — what was handed out (not held) and is older than the
        // retention is done with: trimmed, idle or not.
        if let Some(min) = retention.due(oldest_held(&lanes)) {
            // LIMIT 0: all of it (with `~` Redis trims at most 10,000 entries a call by
            // default, which an idle node would take many blocking reads to catch up with).
            pipe.cmd("XTRIM")
                .arg(&inbox)
                .arg("MINID")
                .arg("~")
                .arg(min)
                .arg("LIMIT")
                .arg(0)
                .ignore();
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
        let read: redis::RedisResult<(redis::Value,)> = pipe.query_async(&mut conn).await;
        let reply = match read {
            Ok((reply,)) => {
                backoff = Duration::from_millis(50);
                reply
            }
            Err(e) => {
                // Not acknowledged: put back, sent with the next read (the trim again too).
                acks.lock().unwrap().extend(done);
                retention.trimmed = None;
                retention.trimmed_at = None;
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
        let entries = stream_entry::from_read(reply);
        if let Some(last) = entries.last() {
            cluster.count(|s| &s.received, entries.len() as u64);
            retention.newest = Some((last.id.clone(), std::time::Instant::now()));
        }
        for e in entries {
            handle(&cluster, &weak, &router, &lanes, &held, &acks, e).await;
        }
    }
}

/// The oldest entry id a lane holds (ids compare as `<ms>-<seq>` numbers, not as text).
fn oldest_held(lanes: &Lanes) -> Option<String> {
    lanes
        .lock()
        .unwrap()
        .values()
        .filter_map(|lane| lane.front().map(|(id, _, _)| id.clone()))
        .min_by_key(|id| entry_number(id))
}

/// One entry: delivered, held in its client's lane, written on, or dropped.
async fn handle<W: Local>(
    cluster: &Arc<Cluster>,
    weak: &W,
    router: &W::Live,
    lanes: &Lanes,
    held: &Arc<Semaphore>,
    acks: &Arc<Mutex<Vec<String>>>,
    e: InboxEntry,
) {
    let InboxEntry {
        id,
        kind,
        to,
        from,
        body,
    } = e;
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
            ack(id);
            return;
        }
        "n" => {
            cluster.node_joined(&to);
            ack(id);
            return;
        }
        "s" | "r" => {
            if let Some(b) = &body {
                router.remote_service(b, kind == "s").await;
            }
            ack(id);
            return;
        }
        "m" | "b" | "g" => {}
        other => {
            debug!(kind = %other, entry = %id, "inbox entry of an unknown kind dropped");
            cluster.count(|s| &s.bad_entries, 1);
            ack(id);
            return;
        }
    }
    // Taken out of the reply, not copied: the payload is a view of what Redis sent.
    let bytes = body.map(Bytes::from).unwrap_or_default();
    let mut message = match entry::decode(bytes, cluster.config.max_header_list_size) {
        Ok(m) => m,
        Err(e) => {
            warn!(entry = %id, error = %e, "inbox entry dropped");
            cluster.count(|s| &s.bad_entries, 1);
            ack(id);
            return;
        }
    };
    if kind == "m" && cluster.is_native(&to) {
        // spec: wire.md §22.3.4 — what the client drops a copy by, should another node take
        // this inbox over and send it again (cluster.md §C5.2).
        message
            .header
            .set(ENTRY_FIELD, format!("{}/{}", cluster.node(), id));
    }
    if kind == "g" {
        router.to_manager(&from, message).await;
        cluster.count(|s| &s.delivered, 1);
        ack(id);
        return;
    }
    if kind == "b" {
        let ws = keys::workspace_of(&to);
        let n = router.broadcast_locally(ws, &from, message);
        cluster.count(|s| &s.delivered, n as u64);
        ack(id);
        return;
    }
    // A lane already holds entries for this client: this one waits behind them (order).
    {
        let mut lanes_now = lanes.lock().unwrap();
        if let Some(lane) = lanes_now.get_mut(&to) {
            match held.clone().try_acquire_owned() {
                Ok(permit) => {
                    lane.push_back((id, message, permit));
                    return;
                }
                Err(_) => {
                    // Cannot happen: a read starts only with room for all it reads.
                    drop(lanes_now);
                    return drop_entry(cluster, acks, id, &to);
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
                warn!(entry = %id, error = %e, "inbox entry left pending");
                return;
            }
        }
        ack(id);
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
                .insert(to.clone(), VecDeque::from([(id, message, permit)]));
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
            ack(id);
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

#[cfg(test)]
mod tests {
    use super::{Retention, TRIM_EVERY};
    use std::time::{Duration, Instant};

    #[test]
    fn c4_3_a_busy_inbox_is_trimmed_at_most_once_per_interval() {
        let mut r = Retention {
            keep: Duration::ZERO,
            trimmed_at: None,
            newest: Some(("1000-0".into(), Instant::now())),
            trimmed: None,
        };
        assert_eq!(r.due(None).as_deref(), Some("1000-0"));
        // Newer entries read at once: not trimmed again before the interval.
        r.newest = Some(("2000-0".into(), Instant::now()));
        assert_eq!(r.due(None), None);
        r.trimmed_at = Some(Instant::now() - TRIM_EVERY);
        assert_eq!(r.due(None).as_deref(), Some("2000-0"));
        // An entry still held keeps the trim below it.
        r.trimmed_at = None;
        r.newest = Some(("3000-0".into(), Instant::now()));
        r.trimmed = None;
        assert_eq!(r.due(Some("1500-2".into())).as_deref(), Some("1500-2"));
    }
}
