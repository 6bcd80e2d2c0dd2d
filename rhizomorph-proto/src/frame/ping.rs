//! PING and PONG (wire.md §5.6): keepalive and round-trip measurement.
//!
//! Owns the fixed 8-byte layout. Never schedules pings or answers them: the session's
//! keepalive does (§13).

use bytes::{BufMut, Bytes, BytesMut};

use super::error::FrameError;

/// The 8 opaque bytes a PING carries and its PONG echoes (wire.md §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Chosen by the PING's sender (rhizomorph: its send time in microseconds).
    pub opaque: u64,
}

impl Ping {
    /// The payload length PING and PONG must have.
    pub const LEN: u64 = 8;

    pub(crate) fn load(frame_type: u8, payload: Bytes) -> Result<Ping, FrameError> {
        // spec: wire.md §5.6 — a payload that is not exactly 8 bytes is FRAME_SIZE_ERROR.
        let bytes: [u8; 8] = payload[..]
            .try_into()
            .map_err(|_| FrameError::BadFixedLength {
                frame_type,
                len: payload.len() as u64,
                expected: Self::LEN,
            })?;
        Ok(Ping {
            opaque: u64::from_be_bytes(bytes),
        })
    }

    pub(crate) fn encode_payload(&self, dst: &mut BytesMut) {
        dst.put_u64(self.opaque);
    }
}
