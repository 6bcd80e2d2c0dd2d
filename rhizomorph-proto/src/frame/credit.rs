//! CREDIT (wire.md §5.4): flow-control window updates.
//!
//! Owns the CREDIT layout and the per-frame bounds (non-zero, ≤ 2^32 − 1). Never tracks
//! windows: the session's flow control does (§9).

use bytes::{BufMut, Bytes, BytesMut};

use super::channel::CreditTarget;
use super::error::{EncodeError, FrameError};
use super::reader::PayloadReader;
use super::writer;
use super::FrameType;

/// The largest increment, and the largest window (wire.md §9.7).
pub const MAX_WINDOW: u64 = u32::MAX as u64;

/// Grants the peer `increment` more bytes on `target` (wire.md §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    /// A channel or the connection.
    pub target: CreditTarget,
    /// Bytes granted, 1 – 2^32−1.
    pub increment: u64,
}

impl Credit {
    pub(crate) fn load(payload: Bytes) -> Result<Credit, FrameError> {
        let mut r = PayloadReader::new(FrameType::CREDIT, payload);
        let target_id = r.u8("target")?;
        let target = CreditTarget::from_id(target_id)?;
        let increment = r.varint("increment")?;
        // spec: wire.md §5.4 — an Increment of 0 is a PROTOCOL_ERROR; over 2^32−1 FLOW_CONTROL_ERROR.
        if increment == 0 {
            return Err(FrameError::ZeroCreditIncrement { target: target_id });
        }
        if increment > MAX_WINDOW {
            return Err(FrameError::CreditTooLarge { increment });
        }
        r.finish()?;
        Ok(Credit { target, increment })
    }

    pub(crate) fn encode_payload(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if self.increment == 0 || self.increment > MAX_WINDOW {
            return Err(EncodeError::ValueTooLarge {
                field: "increment",
                value: self.increment,
                max: MAX_WINDOW,
            });
        }
        dst.put_u8(self.target.id());
        writer::varint(dst, "increment", self.increment)
    }
}
