//! Schema tables (wire.md §11.2): per channel and direction, which Schema Id names which type.
//!
//! Owns the peer's bindings (id → name and layout hash; ids below our `SCHEMA_CACHE_SIZE`,
//! checked by the decoder) and ours ((name, layout hash) → id; ids never reused). Never
//! validates payloads: `payload::schema` does, with the binding handed out here.

use std::collections::HashMap;

use super::{SendError, Session};
use crate::frame::{Channel, Frame, SchemaFrame};
use crate::payload::SchemaBinding;

/// The schema bindings of a session, both directions.
#[derive(Debug, Default)]
pub(super) struct SchemaTables {
    /// Per channel, the peer's bindings by id.
    inbound: [HashMap<u64, SchemaBinding>; 4],
    /// Per channel, our bindings: (name, layout hash) to id.
    outbound: [HashMap<(String, u64), u64>; 4],
}

impl SchemaTables {
    /// The peer bound `frame`'s id. spec: wire.md §11.2.4 — rebinding an id replaces the
    /// binding.
    pub(super) fn bind_inbound(&mut self, frame: &SchemaFrame) {
        self.inbound[frame.channel.index()].insert(frame.schema_id, frame.into());
    }

    /// A new connection of a resumed session: the peer binds its ids again (wire.md §21.6).
    pub(super) fn forget_inbound(&mut self) {
        self.inbound.iter_mut().for_each(HashMap::clear);
    }

    /// Our bindings as SCHEMA frames, per channel in id order: what a resumed connection
    /// sends before it replays (§21.6).
    pub(super) fn outbound_frames(&self) -> Vec<SchemaFrame> {
        let mut frames = Vec::new();
        for (ch, table) in Channel::ALL.iter().zip(&self.outbound) {
            let mut bound: Vec<_> = table.iter().collect();
            bound.sort_by_key(|(_, &id)| id);
            frames.extend(bound.into_iter().map(|((name, hash), &id)| SchemaFrame {
                channel: *ch,
                schema_id: id,
                layout_hash: *hash,
                name: name.clone(),
            }));
        }
        frames
    }

    /// The peer's binding of `schema_id` on `channel`, if it made one.
    pub(super) fn inbound(&self, channel: Channel, schema_id: u64) -> Option<SchemaBinding> {
        self.inbound[channel.index()].get(&schema_id).cloned()
    }
}

impl Session {
    /// The Schema Id for `binding` on `channel` (§11.2.1): the one bound before, or a new one
    /// whose SCHEMA frame is queued now, ahead of any message sent after this call.
    pub fn schema_id(
        &mut self,
        channel: Channel,
        binding: &SchemaBinding,
    ) -> Result<u64, SendError> {
        let key = (binding.name.clone(), binding.layout_hash);
        let table = &mut self.schemas.outbound[channel.index()];
        if let Some(&id) = table.get(&key) {
            return Ok(id);
        }
        let id = table.len() as u64;
        // spec: wire.md §11.2.1 — ids are below the peer's SCHEMA_CACHE_SIZE.
        let max = self.peer.schema_cache_size;
        if id >= max {
            return Err(SendError::SchemaCacheFull { max });
        }
        table.insert(key, id);
        self.bind_schema(SchemaFrame {
            channel,
            schema_id: id,
            layout_hash: binding.layout_hash,
            name: binding.name.clone(),
        });
        Ok(id)
    }

    /// Queues a SCHEMA binding on `channel` (§11.2); it leaves before any later message.
    pub fn bind_schema(&mut self, schema: SchemaFrame) {
        self.queue_on_channel(schema.channel, Frame::Schema(schema));
    }
}
