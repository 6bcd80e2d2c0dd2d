//! Taking a client over from a node that died (cluster.md §C5.2): the entries for it that the
//! dead node's inbox still holds are sent to it from here, before anything this node's own
//! inbox has for it.
//!
//! Owns the wait for the old node's lease to run out (a live node forwards its entries
//! itself, §C4.2), the read of the dead inbox — what it retained (§C4.3), then what other
//! nodes still append there until their directory caches have moved — and the gate that holds
//! the client's entries from this node's inbox back meanwhile. A native client drops the
//! copies it had (wire.md §22.5), so it gets every message once; a hypha-rpc client cannot, so
//! it gets only what the dead node never read. Never reads a payload; never touches another
//! client's entries (they wait for their own takeover).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stream_entry;
use redis::streams::StreamInfoGroupsReply;
use tracing::{debug, info};

use super::inbox::entry_number;
use super::{entry, keys, Cluster, ClusterError, Local, LocalPeers};
use crate::legacy::ENTRY_FIELD;

/// Entries read from the dead inbox per `XRANGE`.
const PAGE: usize = 512;

/// How often the dead inbox is read again once read to its end.
const POLL: Duration = Duration::from_millis(50);

/// `client` (`native`: it drops copies) came here from `dead`, per the directory: takes it
/// over if `dead` turns out dead. Holds the client's entries from this node's inbox back until
/// done.
pub(crate) async fn run<W: Local>(
    cluster: Arc<Cluster>,
    router: W,
    client: String,
    dead: String,
    native: bool,
) {
    let started = Instant::now();
    let gated = cluster.delivery.gate(&client);
    let outcome = take_over(&cluster, &router, &client, &dead, native, started).await;
    if gated {
        cluster.delivery.release(&cluster, &router, &client);
    }
    match outcome {
        Ok(Some(n)) => {
            cluster.count(|s| &s.takeovers, 1);
            cluster.count(|s| &s.taken_over, n);
            info!(node = %cluster.node(), %dead, %client, entries = n, took = ?started.elapsed(),
                "took a client over from a dead node");
        }
        Ok(None) => debug!(%dead, %client, "the client's old node is alive: it forwards"),
        Err(e) => {
            tracing::warn!(%dead, %client, error = %e, "takeover failed: messages in flight to the client may be lost")
        }
    }
}

/// Delivers `client`'s entries from `dead`'s inbox; `None` if `dead` is alive.
async fn take_over<W: Local>(
    cluster: &Arc<Cluster>,
    router: &W,
    client: &str,
    dead: &str,
    native: bool,
    started: Instant,
) -> Result<Option<u64>, ClusterError> {
    let redis = |what| move |source| ClusterError::Redis { what, source };
    let mut conn = cluster.conn.clone();
    let config = &cluster.config;
    // A node renews its lease every third of it: a dead one's runs out within one lease.
    let alive_after = started + config.lease * 3 / 2 + config.redis_timeout;
    loop {
        let alive: bool = redis::cmd("EXISTS")
            .arg(keys::lease(dead))
            .query_async(&mut conn)
            .await
            .map_err(redis("reading the old node's lease"))?;
        if !alive {
            break;
        }
        if Instant::now() > alive_after {
            return Ok(None);
        }
        tokio::time::sleep((config.lease / 10).clamp(Duration::from_millis(10), POLL * 4)).await;
    }
    let inbox = keys::inbox(dead);
    // A hypha-rpc client cannot drop copies: only what the dead node never read is new to it.
    let floor = match native {
        true => (0, 0),
        false => last_delivered(&mut conn, &inbox).await?,
    };
    // Every node's cache names this node by then (a `c` entry or the cache's age), and a
    // write that looked the old owner up before has failed or landed.
    let until = started.max(Instant::now()) + config.owner_ttl + config.redis_timeout;
    let mut after = "-".to_string();
    let mut delivered = 0u64;
    loop {
        let page: redis::Value = redis::cmd("XRANGE")
            .arg(&inbox)
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await
            .map_err(redis("reading a dead node's inbox"))?;
        let page = stream_entry::from_range(page);
        let Some(last) = page.last() else {
            if Instant::now() >= until {
                return Ok(Some(delivered));
            }
            tokio::time::sleep(POLL).await;
            continue;
        };
        after = format!("({}", last.id);
        let mut taken = Vec::new();
        for e in page {
            if e.kind != "m" || e.to != client || entry_number(&e.id) <= floor {
                continue;
            }
            taken.push(e.id.clone());
            let bytes = e.body.map(bytes::Bytes::from).unwrap_or_default();
            let mut message = match entry::decode(bytes, config.max_header_list_size) {
                Ok(m) => m,
                Err(err) => {
                    debug!(entry = %e.id, error = %err, "a dead node's entry dropped");
                    continue;
                }
            };
            if native {
                // spec: wire.md §22.3.4 — named as the dead node delivered it, so that the
                // client recognises the copies it had.
                message.header.set(ENTRY_FIELD, format!("{dead}/{}", e.id));
            }
            let Some(sender) = router.upgrade().and_then(|r| r.local_sender(client)) else {
                // Gone again: what is left waits for its next takeover.
                return Ok(Some(delivered));
            };
            match sender.forward(message.channel, message).await {
                Ok(_) => delivered += 1,
                Err(err) => {
                    debug!(entry = %e.id, error = %err, "a dead node's entry not delivered")
                }
            }
        }
        if !taken.is_empty() {
            // Taken: a restart of the dead node (same id) does not deliver them again.
            redis::pipe()
                .xack(&inbox, keys::GROUP, &taken)
                .ignore()
                .xdel(&inbox, &taken)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(redis("removing taken entries"))?;
        }
    }
}

/// The newest entry the dead node read from its inbox (its group's last delivered id).
async fn last_delivered(
    conn: &mut redis::aio::ConnectionManager,
    inbox: &str,
) -> Result<(u64, u64), ClusterError> {
    let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(inbox)
        .query_async(conn)
        .await
        .map_err(|source| ClusterError::Redis {
            what: "reading a dead node's inbox group",
            source,
        })?;
    Ok(groups
        .groups
        .iter()
        .find(|g| g.name == keys::GROUP)
        .map(|g| entry_number(&g.last_delivered_id))
        .unwrap_or((0, 0)))
}
