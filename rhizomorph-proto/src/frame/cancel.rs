//! CANCEL (wire.md §5.7): abandon or refuse one message.
//!
//! Owns the CANCEL layout and its ABORT flag. Never tracks which messages are in flight: the
//! session does, and ignores CANCELs for finished or unknown sequence numbers (§5.7.2).

use bytes::{BufMut, Bytes, BytesMut};

use super::channel::Channel;
use super::error::{EncodeError, ErrorCode, FrameError};
use super::reader::PayloadReader;
use super::writer;
use super::FrameType;

/// Cancels message `sequence` on `channel` (wire.md §5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancel {
    /// The message's channel.
    pub channel: Channel,
    /// The message's sequence number on that channel (§5.3.8).
    pub sequence: u64,
    /// Why.
    pub code: ErrorCode,
    /// `true` (flag ABORT): the CANCEL's sender abandons its own message (§5.7.1);
    /// `false`: it asks the peer to stop sending the peer's message (§5.7.2).
    pub abort: bool,
}

impl Cancel {
    /// The ABORT flag bit.
    pub const FLAG_ABORT: u8 = 0x01;

    pub(crate) fn load(flags: u8, payload: Bytes) -> Result<Cancel, FrameError> {
        let mut r = PayloadReader::new(FrameType::CANCEL, payload);
        let channel = Channel::from_id(r.u8("channel")?)?;
        let sequence = r.varint("sequence")?;
        let code = ErrorCode(r.varint("error_code")?);
        r.finish()?;
        Ok(Cancel {
            channel,
            sequence,
            code,
            abort: flags & Self::FLAG_ABORT != 0,
        })
    }

    pub(crate) fn flags(&self) -> u8 {
        if self.abort {
            Self::FLAG_ABORT
        } else {
            0
        }
    }

    pub(crate) fn encode_payload(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        dst.put_u8(self.channel.id());
        writer::varint(dst, "sequence", self.sequence)?;
        writer::varint(dst, "error_code", self.code.0)
    }
}
