//! GOAWAY (wire.md §5.8, §14.1) and CLOSE (§5.9, §14.2): draining and closing.
//!
//! Owns both layouts and the reason bound. Never decides when to drain or close: the session
//! does.

use bytes::{Bytes, BytesMut};

use super::error::{EncodeError, ErrorCode, FrameError};
use super::reader::PayloadReader;
use super::writer;
use super::FrameType;

/// Longest GOAWAY or CLOSE reason (wire.md §5.8, §5.9).
pub const MAX_REASON: u64 = 1_024;

/// "I will accept no more messages than these" (wire.md §14.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    /// Why the peer is draining (usually `NO_ERROR` or `GOING_AWAY`).
    pub code: ErrorCode,
    /// Per channel (by channel index): messages accepted from the peer (§14.1.1).
    pub accepted: [u64; 4],
    /// Human-readable reason, ≤ 1,024 bytes.
    pub reason: String,
}

impl GoAway {
    pub(crate) fn load(payload: Bytes) -> Result<GoAway, FrameError> {
        let mut r = PayloadReader::new(FrameType::GOAWAY, payload);
        let code = ErrorCode(r.varint("error_code")?);
        let mut accepted = [0; 4];
        for slot in &mut accepted {
            *slot = r.varint("accepted_count")?;
        }
        let reason = r.text("reason", 0, MAX_REASON)?;
        r.finish()?;
        Ok(GoAway {
            code,
            accepted,
            reason,
        })
    }

    pub(crate) fn encode_payload(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        writer::varint(dst, "error_code", self.code.0)?;
        for &n in &self.accepted {
            writer::varint(dst, "accepted_count", n)?;
        }
        writer::string(
            dst,
            "reason",
            self.reason.as_bytes(),
            0,
            MAX_REASON as usize,
        )
    }
}

/// The last frame a peer sends (wire.md §14.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// `NO_ERROR` for a graceful close, else the connection error.
    pub code: ErrorCode,
    /// The rule and offending value, ≤ 1,024 bytes (§14.2.2).
    pub reason: String,
}

impl Close {
    /// A CLOSE whose reason is `reason` cut to 1,024 bytes at a character boundary.
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Close {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON as usize {
            let mut cut = MAX_REASON as usize;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Close { code, reason }
    }

    pub(crate) fn load(payload: Bytes) -> Result<Close, FrameError> {
        let mut r = PayloadReader::new(FrameType::CLOSE, payload);
        let code = ErrorCode(r.varint("error_code")?);
        let reason = r.text("reason", 0, MAX_REASON)?;
        r.finish()?;
        Ok(Close { code, reason })
    }

    pub(crate) fn encode_payload(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        writer::varint(dst, "error_code", self.code.0)?;
        writer::string(
            dst,
            "reason",
            self.reason.as_bytes(),
            0,
            MAX_REASON as usize,
        )
    }
}
