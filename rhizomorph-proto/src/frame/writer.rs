//! Checked writes for the encoders.
//!
//! Owns the encoder-side mirror of the reader's bounds: a value or string that the spec does
//! not allow is an [`EncodeError`], never a frame the peer would have to reject. Never
//! allocates beyond what the caller's buffer needs.

use bytes::BufMut;

use super::error::EncodeError;
use super::varint::{self, VARINT_MAX};

/// Writes a varint, or fails if it exceeds 2^62 − 1 (wire.md §2.2.1).
pub(crate) fn varint<B: BufMut>(
    dst: &mut B,
    field: &'static str,
    value: u64,
) -> Result<(), EncodeError> {
    if !varint::fits(value) {
        return Err(EncodeError::ValueTooLarge {
            field,
            value,
            max: VARINT_MAX,
        });
    }
    varint::write(dst, value);
    Ok(())
}

/// Checks that `len` lies in `min..=max`.
pub(crate) fn check_len(
    field: &'static str,
    len: usize,
    min: usize,
    max: usize,
) -> Result<(), EncodeError> {
    if len < min || len > max {
        return Err(EncodeError::LengthOutOfRange {
            field,
            len,
            min,
            max,
        });
    }
    Ok(())
}

/// Writes a length-prefixed string of `min..=max` bytes (wire.md §2.3).
pub(crate) fn string<B: BufMut>(
    dst: &mut B,
    field: &'static str,
    bytes: &[u8],
    min: usize,
    max: usize,
) -> Result<(), EncodeError> {
    check_len(field, bytes.len(), min, max)?;
    varint::write(dst, bytes.len() as u64);
    dst.put_slice(bytes);
    Ok(())
}
