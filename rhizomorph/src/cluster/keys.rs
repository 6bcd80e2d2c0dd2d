//! The Redis keys a cluster uses (cluster.md §C2), all named here and nowhere else.
//!
//! Every key that two commands of one operation touch together carries the same hash tag
//! (`{…}`), so the same commands run on one Redis and on Redis Cluster: a workspace's
//! directory lives in its workspace's slot (sharded by workspace, seed 000 §6), a node's
//! lease, client list and inbox in the node's slot. Never builds a key from anything but a
//! workspace name or a node id.

/// `rz:nodes`: the set of node ids that joined (live or not yet reaped).
pub const NODES: &str = "rz:nodes";

/// The consumer group every inbox is read through (consumer: the owning node's id).
pub const GROUP: &str = "rz";

/// `rz:{<ws>}:owners`: hash client full id → id of the node holding it.
pub fn owners(workspace: &str) -> String {
    format!("rz:{{{workspace}}}:owners")
}

/// `rz:workspaces`: the workspaces that have (or had) a service registered.
pub const WORKSPACES: &str = "rz:workspaces";

/// `rz:{<ws>}:services`: hash service full id → the service (cluster.md §C4.7), for nodes that
/// join after it was registered.
pub fn services(workspace: &str) -> String {
    format!("rz:{{{workspace}}}:services")
}

/// A node's tag in the sessions its workspace manager makes (16 hex digits of FNV-1a of its
/// id, cluster.md §C4.8).
pub fn node_tag(node: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `rz:node:{<node>}:lease`: present while the node renews it (`SET … PX`).
pub fn lease(node: &str) -> String {
    format!("rz:node:{{{node}}}:lease")
}

/// `rz:node:{<node>}:clients`: set of the full ids the node registered.
pub fn clients(node: &str) -> String {
    format!("rz:node:{{{node}}}:clients")
}

/// `rz:node:{<node>}:reaper`: held (`SET NX PX`) by the one node reaping a dead node.
pub fn reaper(node: &str) -> String {
    format!("rz:node:{{{node}}}:reaper")
}

/// `rz:node:{<node>}:inbox`: the stream other nodes `XADD` the node's messages to.
pub fn inbox(node: &str) -> String {
    format!("rz:node:{{{node}}}:inbox")
}

/// The workspace of a full id `<ws>/<client>` (the id itself if it has no `/`).
pub fn workspace_of(full_id: &str) -> &str {
    full_id.split_once('/').map_or(full_id, |(ws, _)| ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot Redis Cluster computes for a key (CRC16/XMODEM of the hash tag, mod 16384).
    fn slot(key: &str) -> u16 {
        let tag = match key.find('{') {
            Some(open) => match key[open + 1..].find('}') {
                Some(len) if len > 0 => &key[open + 1..open + 1 + len],
                _ => key,
            },
            None => key,
        };
        let mut crc: u16 = 0;
        for b in tag.bytes() {
            crc ^= (b as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn a_nodes_keys_share_one_slot_and_workspaces_spread() {
        let n = "node-a1";
        let s = slot(&lease(n));
        assert_eq!(slot(&services("ws-9")), slot(&owners("ws-9")));
        assert_eq!(node_tag("node-a1").len(), 16);
        assert_ne!(node_tag("node-a1"), node_tag("node-a2"));
        assert_eq!(slot(&clients(n)), s);
        assert_eq!(slot(&reaper(n)), s);
        assert_eq!(slot(&inbox(n)), s);
        // Redis Cluster's own example: "123456789" hashes to 0x31C3 = 12739.
        assert_eq!(slot("{123456789}"), 12739);
        let slots: std::collections::HashSet<u16> =
            (0..64).map(|i| slot(&owners(&format!("ws-{i}")))).collect();
        assert!(slots.len() > 48, "64 workspaces in {} slots", slots.len());
    }

    #[test]
    fn workspace_of_a_full_id() {
        assert_eq!(workspace_of("ws-1/bob"), "ws-1");
        assert_eq!(workspace_of("ws-1/*"), "ws-1");
        assert_eq!(workspace_of("bare"), "bare");
    }
}
