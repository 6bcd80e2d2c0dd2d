//! A client's record of the cluster inbox entries it has taken (wire.md §22.5), so that a
//! message a node delivers again — after taking over a dead node's inbox (cluster.md §C5.2) —
//! reaches the application once.
//!
//! Owns the newest entry id taken per node and channel, on one connection across its
//! sessions. Never grows past [`MAX_NODES`] keys, never looks at a message without the
//! `rz-entry` field (one header lookup per message), never reads a payload.

use std::collections::HashMap;

use bytes::Bytes;

use crate::legacy::ENTRY_FIELD;
use crate::session::Message;

/// Nodes × channels remembered at most; a further one is not deduplicated (a cluster of more
/// than 64 nodes delivering to one client on every channel).
pub(crate) const MAX_NODES: usize = 256;

/// A Redis stream entry id, `<ms>-<seq>`, as the numbers it compares by.
pub(crate) type EntryId = (u64, u64);

/// The newest entry taken, by (node, channel).
#[derive(Debug, Default)]
pub(crate) struct Taken {
    newest: HashMap<(Bytes, u8), EntryId>,
}

impl Taken {
    /// Whether `m` is new: it carries no well-formed `rz-entry`, or one newer than every entry
    /// of its node taken on its channel (then recorded). A node delivers a client's entries in
    /// order per channel (cluster.md §C4.2), so an entry at or below the newest is a copy.
    pub(crate) fn first_time(&mut self, m: &Message) -> bool {
        let Some(value) = m.header.get(ENTRY_FIELD) else {
            return true;
        };
        let Some((node, id)) = parse(value) else {
            return true;
        };
        let key = (node, m.channel.index() as u8);
        let room = self.newest.len() < MAX_NODES;
        match self.newest.get_mut(&key) {
            Some(newest) if *newest >= id => false,
            Some(newest) => {
                *newest = id;
                true
            }
            None => {
                if room {
                    self.newest.insert(key, id);
                }
                true
            }
        }
    }
}

/// `<node>/<ms>-<seq>` as the node and the entry id; `None` if it is not that shape.
pub(crate) fn parse(value: &Bytes) -> Option<(Bytes, EntryId)> {
    let slash = value.iter().rposition(|&b| b == b'/')?;
    let id = std::str::from_utf8(&value[slash + 1..]).ok()?;
    let (ms, seq) = id.split_once('-')?;
    let id = (ms.parse().ok()?, seq.parse().ok()?);
    (slash > 0).then(|| (value.slice(..slash), id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Channel;
    use crate::header::RoutingHeader;

    fn message(channel: Channel, header: RoutingHeader) -> Message {
        Message::new(channel, header, Bytes::new())
    }

    fn entry(channel: Channel, value: &str) -> Message {
        message(
            channel,
            RoutingHeader::new().with(ENTRY_FIELD, value.to_string()),
        )
    }

    #[test]
    fn wire_22_5_a_copy_of_an_entry_taken_is_dropped_per_node_and_channel() {
        let mut taken = Taken::default();
        assert!(taken.first_time(&entry(Channel::Rpc, "n2/1700000000000-0")));
        assert!(taken.first_time(&entry(Channel::Rpc, "n2/1700000000000-1")));
        // The same, and an older one: copies.
        assert!(!taken.first_time(&entry(Channel::Rpc, "n2/1700000000000-1")));
        assert!(!taken.first_time(&entry(Channel::Rpc, "n2/1700000000000-0")));
        // Ids compare as numbers, not text ("9" < "10").
        assert!(taken.first_time(&entry(Channel::Rpc, "n2/1700000000010-0")));
        assert!(!taken.first_time(&entry(Channel::Rpc, "n2/1700000000009-5")));
        // Another channel and another node keep their own newest.
        assert!(taken.first_time(&entry(Channel::Bulk, "n2/1700000000000-0")));
        assert!(taken.first_time(&entry(Channel::Rpc, "n3/1600000000000-0")));
        // Without the field, or malformed: always new.
        let plain = message(Channel::Rpc, RoutingHeader::new());
        assert!(taken.first_time(&plain) && taken.first_time(&plain));
        for bad in ["n2", "n2/", "/1-0", "n2/1", "n2/x-0", "n2/1-"] {
            assert!(taken.first_time(&entry(Channel::Rpc, bad)), "{bad}");
            assert!(taken.first_time(&entry(Channel::Rpc, bad)), "{bad}");
        }
    }

    #[test]
    fn wire_22_5_the_record_is_bounded() {
        let mut taken = Taken::default();
        for n in 0..MAX_NODES + 10 {
            assert!(taken.first_time(&entry(Channel::Rpc, &format!("n{n}/5-0"))));
        }
        assert_eq!(taken.newest.len(), MAX_NODES);
        // A node past the bound is not deduplicated (delivered, never wrongly dropped).
        let late = format!("n{}/5-0", MAX_NODES + 5);
        assert!(taken.first_time(&entry(Channel::Rpc, &late)));
        assert!(taken.first_time(&entry(Channel::Rpc, &late)));
    }
}
