//! Writing to other nodes' inboxes (cluster.md §C4.1): one task per node takes everything
//! queued since its last write, looks up the owners it has no fresh answer for (one pipelined
//! round trip), and appends the batch with one pipeline of `XADD … MAXLEN ~` (one more).
//!
//! Owns the batching rule: never a timer — an idle link writes a lone message at once, a busy
//! one writes what piled up while the previous batch was on the wire (wire.md §10's rule).
//! Never holds more than the outbox bounds; a batch Redis does not take in time fails (each
//! call in it is answered with a reject naming the Redis error), it is never retried forever.
//! Messages that found no node are answered off the outbox's task, by at most
//! [`MAX_ANSWERING`] tasks holding at most [`ANSWERING_BYTES`]; past that, an answer that
//! cannot be handed over at once is dropped and counted (`ClusterStats::unanswered`): a sender
//! that does not read its answers never holds up the node's other traffic, nor grows it.

use std::sync::Arc;

use redis::streams::StreamInfoGroupsReply;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::{entry, keys, Cluster, ClusterError, Local, LocalPeers};
use crate::connection::{Message, Mode};
use crate::manager::registry::ServiceChange;
use crate::sender::Sender;

/// Something for other nodes.
pub(crate) struct Outbound {
    kind: Kind,
    /// Holds the item's share of the outbox's byte budget until it is written.
    permit: Option<OwnedSemaphorePermit>,
}

enum Kind {
    /// A message to `to` (`<ws>/<client>`), its header rewritten, from `from`.
    Message {
        to: String,
        from: String,
        message: Message,
        /// Where an echo or a reject goes if `to` is connected nowhere (the sender's
        /// connection, when it is on this node).
        back: Option<(Sender, Mode)>,
    },
    /// A broadcast to `<ws>/*` from `from`, for every other node's clients of `ws`.
    Broadcast {
        ws: String,
        from: String,
        message: Message,
    },
    /// `client` connected here (`true`) or left (`false`): every other node's cache and
    /// workspace manager hear it.
    Event { client: String, connected: bool },
    /// A service of a client here was registered or removed: every other node mirrors it, and
    /// the workspace's services hash keeps it for nodes that join later.
    Service { change: ServiceChange },
    /// A provider's answer to a `get_service` that `node`'s manager made.
    ToManager {
        node: String,
        from: String,
        message: Message,
    },
}

impl Outbound {
    /// A message for `to`, on whichever node holds it.
    pub(crate) fn message(
        to: String,
        from: String,
        message: Message,
        back: Option<(Sender, Mode)>,
    ) -> Outbound {
        Outbound {
            kind: Kind::Message {
                to,
                from,
                message,
                back,
            },
            permit: None,
        }
    }

    /// A broadcast to the other nodes' clients of `ws`.
    pub(crate) fn broadcast(ws: String, from: String, message: Message) -> Outbound {
        Outbound {
            kind: Kind::Broadcast { ws, from, message },
            permit: None,
        }
    }

    /// A directory event.
    pub(crate) fn event(connected: bool, client: &str) -> Outbound {
        Outbound {
            kind: Kind::Event {
                client: client.to_string(),
                connected,
            },
            permit: None,
        }
    }

    /// A service change to mirror.
    pub(crate) fn service(change: ServiceChange) -> Outbound {
        Outbound {
            kind: Kind::Service { change },
            permit: None,
        }
    }

    /// An answer for the workspace manager of `node`.
    pub(crate) fn to_manager(node: String, from: String, message: Message) -> Outbound {
        Outbound {
            kind: Kind::ToManager {
                node,
                from,
                message,
            },
            permit: None,
        }
    }

    pub(super) fn payload_len(&self) -> usize {
        match &self.kind {
            Kind::Message { message, .. }
            | Kind::Broadcast { message, .. }
            | Kind::ToManager { message, .. } => message.payload.len(),
            Kind::Event { .. } | Kind::Service { .. } => 0,
        }
    }

    pub(super) fn with_permit(mut self, permit: OwnedSemaphorePermit) -> Outbound {
        self.permit = Some(permit);
        self
    }
}

/// Tasks answering messages that found no node, at most at once.
pub(super) const MAX_ANSWERING: usize = 64;

/// Bytes of messages that found no node and wait for their answer, at most (payload, header
/// and a fixed overhead per message, as a send buffer counts them).
pub(super) const ANSWERING_BYTES: usize = 16 << 20;

/// A message that found no node: the router answers it as it answers one to nobody.
struct Unroutable {
    from: String,
    message: Message,
    back: Option<(Sender, Mode)>,
    /// Why, when it is not that its target is connected nowhere (Redis failed).
    failure: Option<String>,
}

impl Unroutable {
    /// What it holds while it waits for its answer, as a send buffer counts a message.
    fn charge(&self) -> usize {
        self.message.payload.len()
            + self.message.header.list_size()
            + crate::session::QUEUED_MESSAGE_OVERHEAD as usize
    }
}

/// Writes batches until the router is gone.
pub(super) async fn run<W: Local>(
    cluster: Arc<Cluster>,
    mut rx: mpsc::Receiver<Outbound>,
    router: W,
) {
    let max = cluster.config.outbox_capacity.clamp(1, 4096);
    let mut batch = Vec::with_capacity(max);
    let answering = Answering::new();
    let mut lags = LagWatch::new(cluster.config.inbox_high_water);
    while rx.recv_many(&mut batch, max).await > 0 {
        let Some(router) = router.upgrade() else {
            return;
        };
        let (unroutable, backed_up) =
            write_batch(&cluster, std::mem::take(&mut batch), &mut lags).await;
        if !unroutable.is_empty() {
            answering.answer(&cluster, router, unroutable);
        }
        if !backed_up.is_empty() {
            wait_for_room(&cluster, backed_up).await;
        }
    }
}

/// The answers to messages that found no node, off the outbox's task and bounded.
struct Answering {
    /// A permit per answering task ([`MAX_ANSWERING`]).
    tasks: Arc<Semaphore>,
    /// The bytes the waiting answers hold ([`ANSWERING_BYTES`]).
    bytes: Arc<Semaphore>,
}

impl Answering {
    fn new() -> Answering {
        Answering {
            tasks: Arc::new(Semaphore::new(MAX_ANSWERING)),
            bytes: Arc::new(Semaphore::new(ANSWERING_BYTES)),
        }
    }

    /// Answers `unroutable` in order on a task of its own (an echo may wait for its sender's
    /// room) if a task and the bytes are free; otherwise hands over at once what its senders
    /// have room for and drops the rest, counted.
    fn answer<R: LocalPeers>(&self, cluster: &Cluster, router: R, unroutable: Vec<Unroutable>) {
        let charge: usize = unroutable.iter().map(Unroutable::charge).sum();
        let held = u32::try_from(charge.clamp(1, ANSWERING_BYTES)).unwrap_or(u32::MAX);
        let slots = self
            .tasks
            .clone()
            .try_acquire_owned()
            .and_then(|task| Ok((task, self.bytes.clone().try_acquire_many_owned(held)?)));
        if let Ok(slots) = slots {
            tokio::spawn(async move {
                let _slots = slots;
                for u in unroutable {
                    router
                        .answer_unroutable(&u.from, u.back.as_ref(), u.message, u.failure)
                        .await;
                }
            });
            return;
        }
        let mut dropped = 0u64;
        for u in unroutable {
            let answered = router
                .answer_unroutable(&u.from, u.back.as_ref(), u.message, u.failure)
                .now_or_never();
            dropped += u64::from(answered.is_none());
        }
        if dropped > 0 {
            cluster.count(|s| &s.unanswered, dropped);
            debug!(
                dropped,
                "answers to messages that found no node dropped: their senders have no room"
            );
        }
    }
}

/// Adds `XADD <node's inbox> MAXLEN ~ <max_len> * k <kind> t <to> f <from>` to `pipe`
/// (cluster.md §C4.1); the caller appends `m <bytes>` for a message.
pub(super) fn xadd(
    pipe: &mut redis::Pipeline,
    node: &str,
    max_len: u64,
    kind: &str,
    to: &str,
    from: &str,
) {
    pipe.cmd("XADD")
        .arg(keys::inbox(node))
        .arg("MAXLEN")
        .arg("~")
        .arg(max_len)
        .arg("*")
        .arg("k")
        .arg(kind)
        .arg("t")
        .arg(to)
        .arg("f")
        .arg(from);
}

/// When each inbox's lag is read next (cluster.md §C4.1): with the batch that brings the
/// entries written to it since its last read to a twentieth of the high-water mark (1,000 by
/// default), so a writer goes at most that far past the mark before it sees it, and a busy
/// link pays for the read once per many batches, not with each.
struct LagWatch {
    /// Entries written to a node's inbox since its lag was last read.
    since: std::collections::HashMap<String, u64>,
    every: u64,
}

impl LagWatch {
    fn new(high_water: u64) -> LagWatch {
        LagWatch {
            since: Default::default(),
            every: (high_water / 20).max(1),
        }
    }

    /// Counts `n` entries written to `node`; `true` if this batch reads its lag (the first
    /// write to a node does, so a writer learns at once of an inbox already backed up).
    fn wrote(&mut self, node: &str, n: u64) -> bool {
        match self.since.get_mut(node) {
            Some(since) => {
                *since += n;
                *since >= self.every
            }
            None => {
                // Bounded: node ids are random by default, so restarted peers leave old ones
                // behind. Forgetting them all only makes the next batches read their lags.
                if self.since.len() >= MAX_WATCHED {
                    self.since.clear();
                }
                self.since.insert(node.to_string(), n);
                true
            }
        }
    }

    /// The lag of `node` was read: counting starts again.
    fn read(&mut self, node: &str) {
        if let Some(since) = self.since.get_mut(node) {
            *since = 0;
        }
    }
}

/// Inboxes a [`LagWatch`] counts for at most.
const MAX_WATCHED: usize = 1024;

/// One batch: look-ups, then one `XADD` pipeline. Returns what found no node, and the nodes
/// whose inbox is past its high-water mark.
async fn write_batch(
    cluster: &Cluster,
    batch: Vec<Outbound>,
    lags: &mut LagWatch,
) -> (Vec<Unroutable>, Vec<String>) {
    let now = Instant::now();
    let me = cluster.node().to_string();
    let mut missing: Vec<String> = Vec::new();
    {
        let dir = cluster.directory.lock().unwrap();
        for item in &batch {
            if let Kind::Message { to, .. } = &item.kind {
                if dir.get(to, now).is_none() && !missing.contains(to) {
                    missing.push(to.clone());
                }
            }
        }
    }
    let mut unroutable = Vec::new();
    let mut failed: Option<ClusterError> = None;
    if !missing.is_empty() {
        if let Err(e) = cluster.look_up(&missing).await {
            failed = Some(e);
        }
    }
    let nodes = cluster.nodes.lock().unwrap().clone();
    let max_len = cluster.config.inbox_max_len;
    let mut pipe = redis::pipe();
    let mut writes = 0usize;
    // The calls this batch carries, answered with a reject if the batch fails.
    let mut calls: Vec<Unroutable> = Vec::new();
    // The nodes this batch writes messages to, and how many entries to each.
    let mut written: Vec<(String, u64)> = Vec::new();
    let mut wrote_to = |node: &str| match written.iter_mut().find(|(n, _)| n == node) {
        Some((_, count)) => *count += 1,
        None => written.push((node.to_string(), 1)),
    };
    let append = |pipe: &mut redis::Pipeline, node: &str, kind: &str, to: &str, from: &str| {
        xadd(pipe, node, max_len, kind, to, from)
    };
    for item in batch {
        match item.kind {
            Kind::Message {
                to,
                from,
                message,
                back,
            } => {
                let owner = if failed.is_some() {
                    None
                } else {
                    let dir = cluster.directory.lock().unwrap();
                    dir.get(&to, now).flatten().map(str::to_string)
                };
                match owner {
                    Some(node) if node != me => {
                        append(&mut pipe, &node, "m", &to, &from);
                        pipe.arg("m").arg(entry::encode(&message).as_ref()).ignore();
                        writes += 1;
                        wrote_to(&node);
                        if message.header.get("session").is_some() {
                            calls.push(Unroutable {
                                from,
                                message,
                                back,
                                failure: None,
                            });
                        }
                    }
                    _ if failed.is_some() => calls.push(Unroutable {
                        from,
                        message,
                        back,
                        failure: None,
                    }),
                    // Connected nowhere (or it left this node a moment ago).
                    _ => unroutable.push(Unroutable {
                        from,
                        message,
                        back,
                        failure: None,
                    }),
                }
            }
            Kind::Broadcast { ws, from, message } => {
                let bytes = entry::encode(&message);
                let to = format!("{ws}/*");
                for node in &nodes {
                    append(&mut pipe, node, "b", &to, &from);
                    pipe.arg("m").arg(bytes.as_ref()).ignore();
                    writes += 1;
                    wrote_to(node);
                }
                cluster.count(|s| &s.broadcast_entries, nodes.len() as u64);
            }
            Kind::Event { client, connected } => {
                let kind = if connected { "c" } else { "d" };
                for node in &nodes {
                    append(&mut pipe, node, kind, &client, &me);
                    pipe.ignore();
                    writes += 1;
                }
            }
            Kind::Service { change } => {
                let s = &change.service;
                let bytes = s.to_msgpack();
                if change.added {
                    pipe.hset(keys::services(&s.workspace), &s.id, &bytes[..])
                        .ignore()
                        .sadd(keys::WORKSPACES, &s.workspace)
                        .ignore();
                } else {
                    pipe.hdel(keys::services(&s.workspace), &s.id).ignore();
                }
                let kind = if change.added { "s" } else { "r" };
                for node in &nodes {
                    append(&mut pipe, node, kind, &s.id, &s.provider);
                    pipe.arg("m").arg(&bytes[..]).ignore();
                    writes += 1;
                }
            }
            Kind::ToManager {
                node,
                from,
                message,
            } => {
                append(&mut pipe, &node, "g", "*", &from);
                pipe.arg("m").arg(entry::encode(&message).as_ref()).ignore();
                writes += 1;
            }
        }
    }
    let mut backed_up = Vec::new();
    if writes > 0 && failed.is_none() {
        // spec: cluster.md §C4.1 — the lags this batch reads (not every batch's).
        let checked: Vec<String> = written
            .into_iter()
            .filter(|(node, count)| lags.wrote(node, *count))
            .map(|(node, _)| node)
            .collect();
        for node in &checked {
            add_lag(&mut pipe, node);
        }
        cluster.count(|s| &s.send_round_trips, 1);
        cluster.count(|s| &s.batches, 1);
        match pipe
            .query_async::<Vec<StreamInfoGroupsReply>>(&mut cluster.conn.clone())
            .await
        {
            Ok(groups) => {
                let lengths = groups.iter().map(lag);
                cluster.count(|s| &s.sent, writes as u64);
                calls.clear();
                let high = cluster.config.inbox_high_water;
                for node in &checked {
                    lags.read(node);
                }
                backed_up = checked
                    .into_iter()
                    .zip(lengths)
                    .filter(|(_, len)| *len > high)
                    .map(|(n, _)| n)
                    .collect();
            }
            Err(source) => {
                failed = Some(ClusterError::Redis {
                    what: "XADD to another node's inbox",
                    source,
                })
            }
        }
    }
    if let Some(e) = failed {
        cluster.count(|s| &s.failed_sends, (writes + calls.len()) as u64);
        warn!(node = %me, error = %e, calls = calls.len(), "cross-node batch failed");
        let why = e.to_string();
        for mut c in calls {
            c.failure = Some(why.clone());
            unroutable.push(c);
        }
    }
    (unroutable, backed_up)
}

/// Adds the query of `node`'s inbox lag to `pipe` ([`lag`] reads the answer).
fn add_lag(pipe: &mut redis::Pipeline, node: &str) {
    pipe.cmd("XINFO").arg("GROUPS").arg(keys::inbox(node));
}

/// Entries of an inbox its node has not read yet (cluster.md §C4.1's high-water mark counts
/// these, not the stream's length, which includes what the retention keeps, §C4.3). Without
/// a lag from Redis (before 7.0, or after deletions it cannot count past), its pending count.
fn lag(groups: &StreamInfoGroupsReply) -> u64 {
    groups
        .groups
        .iter()
        .find(|g| g.name == keys::GROUP)
        .map_or(0, |g| g.lag.unwrap_or(g.pending) as u64)
}

/// Waits until the inboxes of `nodes` are back under half their high-water mark: a node that
/// reads slower than others write to it slows its writers (their outboxes fill, their clients'
/// sends wait) instead of growing Redis. Gives up after `cluster.config.lease * 4` (a node
/// that stopped reading is reaped by then; `MAXLEN` still bounds its inbox).
async fn wait_for_room(cluster: &Cluster, nodes: Vec<String>) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let low = cluster.config.inbox_high_water / 2;
    cluster.count(|s| &s.waited_for_room, 1);
    while start.elapsed() < cluster.config.lease * 4 {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
        let mut pipe = redis::pipe();
        for n in &nodes {
            add_lag(&mut pipe, n);
        }
        match pipe
            .query_async::<Vec<StreamInfoGroupsReply>>(&mut cluster.conn.clone())
            .await
        {
            Ok(groups) if groups.iter().all(|g| lag(g) <= low) => return,
            Ok(_) => {}
            Err(e) => {
                // No such inbox (Redis restarted empty): nothing is backed up there.
                debug!(error = %e, "inbox lag unknown");
                return;
            }
        }
    }
    warn!(nodes = ?nodes, "inboxes stayed past their high-water mark: writing on");
}

#[cfg(test)]
mod tests {
    use super::{LagWatch, MAX_WATCHED};

    #[test]
    fn c4_1_a_lag_is_read_first_then_once_per_step_of_entries() {
        let mut lags = LagWatch::new(20_000);
        assert!(
            lags.wrote("b", 1),
            "the first batch to an inbox reads its lag"
        );
        lags.read("b");
        // 999 more entries, in batches: under the step of 1,000.
        for _ in 0..9 {
            assert!(!lags.wrote("b", 111));
        }
        assert!(
            lags.wrote("b", 1),
            "the batch that reaches the step reads it"
        );
        lags.read("b");
        assert!(!lags.wrote("b", 999));
        // Another inbox counts on its own.
        assert!(lags.wrote("c", 5));
        // A batch that failed (its lag not read) keeps counting.
        assert!(lags.wrote("b", 1));
        assert!(lags.wrote("b", 1));
    }

    #[test]
    fn c4_1_the_inboxes_counted_are_bounded() {
        let mut lags = LagWatch::new(20_000);
        for n in 0..MAX_WATCHED * 3 {
            assert!(lags.wrote(&format!("node-{n}"), 1));
            assert!(lags.since.len() <= MAX_WATCHED);
        }
    }
}
