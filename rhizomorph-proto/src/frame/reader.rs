//! A checked cursor over one frame's payload.
//!
//! Owns the "check, then take" discipline of the codec: every read checks the bytes left
//! before taking them, every length is checked against its bound before the bytes it announces
//! are looked at, and byte strings come out as `Bytes` views of the input (no copy). Never
//! indexes a slice unchecked and never allocates more than a caller-checked bound.

use bytes::{Buf, Bytes};

use super::error::FrameError;
use super::varint::{self, VarIntError};

/// Reads the fields of one frame payload in order.
pub(crate) struct PayloadReader {
    buf: Bytes,
    frame_type: u8,
}

impl PayloadReader {
    /// A reader over `payload`, which belongs to a frame of type `frame_type` (for errors).
    pub(crate) fn new(frame_type: u8, payload: Bytes) -> Self {
        PayloadReader {
            buf: payload,
            frame_type,
        }
    }

    fn truncated(&self, field: &'static str) -> FrameError {
        FrameError::FrameTruncated {
            frame_type: self.frame_type,
            field,
        }
    }

    /// One byte.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        if self.buf.is_empty() {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u8())
    }

    /// A big-endian 64-bit integer.
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        if self.buf.len() < 8 {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u64())
    }

    /// A varint. spec: wire.md §2.2.2 (minimal), §2.2.3 (cut short by the frame's end).
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u64, FrameError> {
        match varint::read(&self.buf) {
            Ok((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            Err(VarIntError::Incomplete { .. }) => Err(self.truncated(field)),
            Err(VarIntError::NonMinimal { value, len }) => {
                Err(FrameError::NonMinimalVarint { value, len })
            }
        }
    }

    /// A varint that must lie in `min..=max` (wire.md §18), else `FieldOutOfRange`.
    pub(crate) fn bounded(
        &mut self,
        field: &'static str,
        min: u64,
        max: u64,
    ) -> Result<u64, FrameError> {
        let value = self.varint(field)?;
        if value < min || value > max {
            return Err(FrameError::FieldOutOfRange {
                field,
                value,
                min,
                max,
            });
        }
        Ok(value)
    }

    /// `len` bytes as a view of the input. The caller has bounded `len`; this checks it
    /// against the bytes left.
    pub(crate) fn bytes(&mut self, len: u64, field: &'static str) -> Result<Bytes, FrameError> {
        match usize::try_from(len) {
            Ok(n) if n <= self.buf.len() => Ok(self.buf.split_to(n)),
            _ => Err(self.truncated(field)),
        }
    }

    /// A length-prefixed string of `min..=max` bytes (wire.md §2.3).
    pub(crate) fn string(
        &mut self,
        field: &'static str,
        min: u64,
        max: u64,
    ) -> Result<Bytes, FrameError> {
        let len = self.bounded(field, min, max)?;
        self.bytes(len, field)
    }

    /// A length-prefixed UTF-8 text of `min..=max` bytes (wire.md §2.3).
    pub(crate) fn text(
        &mut self,
        field: &'static str,
        min: u64,
        max: u64,
    ) -> Result<String, FrameError> {
        let raw = self.string(field, min, max)?;
        String::from_utf8(raw.to_vec()).map_err(|_| FrameError::InvalidUtf8 { field })
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Ends the frame. spec: wire.md §4.1.2 — bytes left over are `TrailingBytes`.
    pub(crate) fn finish(self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::TrailingBytes {
                frame_type: self.frame_type,
                extra: self.buf.len(),
            })
        }
    }
}
