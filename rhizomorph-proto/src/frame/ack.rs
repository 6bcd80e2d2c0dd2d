//! ACK (wire.md §5.10, version 1.1): cumulative acknowledgement of messages received on one
//! channel of a resumable session (§21.3).
//!
//! Owns the ACK layout. Never decides when one is sent or what a count means for the replay
//! buffer: the session's resumption state does (§21.3, §21.4).

use bytes::{BufMut, Bytes, BytesMut};

use super::channel::Channel;
use super::error::{EncodeError, FrameError};
use super::reader::PayloadReader;
use super::writer;
use super::FrameType;

/// "Every message you started on `channel` below `received` is finished here" (wire.md §21.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The channel (0 – 3).
    pub channel: Channel,
    /// Messages of the peer's finished on that channel, counted across the session (§21.2).
    pub received: u64,
}

impl Ack {
    pub(crate) fn load(payload: Bytes) -> Result<Ack, FrameError> {
        let mut r = PayloadReader::new(FrameType::ACK, payload);
        let channel = Channel::from_id(r.u8("channel")?)?;
        let received = r.varint("received")?;
        r.finish()?;
        Ok(Ack { channel, received })
    }

    pub(crate) fn encode_payload(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        dst.put_u8(self.channel.id());
        writer::varint(dst, "received", self.received)
    }
}
