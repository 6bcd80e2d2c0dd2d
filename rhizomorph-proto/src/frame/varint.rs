//! QUIC-style variable-length integers (wire.md §2.2).
//!
//! Owns reading and writing varints and nothing else. A read never loops over continuation
//! bytes (the first byte says how long the varint is) and never panics on short input: it
//! reports "need more" or a [`VarIntError`], and rejects non-minimal encodings (§2.2.2) so that
//! every valid frame has exactly one byte representation.

use bytes::BufMut;

/// The largest value a varint can carry: 2^62 − 1 (wire.md §2.2.1).
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarIntError {
    /// The input ended inside the varint; `needed` is its full encoded length.
    Incomplete {
        /// How many bytes the varint occupies in total.
        needed: usize,
    },
    /// The value was encoded in more bytes than necessary (wire.md §2.2.2).
    NonMinimal {
        /// The decoded value.
        value: u64,
        /// How many bytes were used.
        len: usize,
    },
}

/// How many bytes the minimal encoding of `value` takes (1, 2, 4 or 8).
///
/// Values above [`VARINT_MAX`] cannot be encoded; callers check with [`fits`] first.
#[inline]
pub const fn encoded_len(value: u64) -> usize {
    if value < (1 << 6) {
        1
    } else if value < (1 << 14) {
        2
    } else if value < (1 << 30) {
        4
    } else {
        8
    }
}

/// Whether `value` can be written as a varint.
#[inline]
pub const fn fits(value: u64) -> bool {
    value <= VARINT_MAX
}

/// Reads one varint from the start of `src`, returning the value and the bytes it used.
///
/// Never reads past `src` and never panics. spec: wire.md §2.2.
#[inline]
pub fn read(src: &[u8]) -> Result<(u64, usize), VarIntError> {
    let Some(&first) = src.first() else {
        return Err(VarIntError::Incomplete { needed: 1 });
    };
    let len = 1usize << (first >> 6);
    let Some(bytes) = src.get(..len) else {
        return Err(VarIntError::Incomplete { needed: len });
    };
    let mut value = u64::from(first & 0x3f);
    for &b in &bytes[1..] {
        value = (value << 8) | u64::from(b);
    }
    // spec: wire.md §2.2.2 — a receiver MUST reject a longer-than-necessary encoding.
    if encoded_len(value) != len {
        return Err(VarIntError::NonMinimal { value, len });
    }
    Ok((value, len))
}

/// Writes `value` in its minimal encoding.
///
/// The caller guarantees `value <= VARINT_MAX` (every encoder in this crate checks it and
/// reports an `EncodeError` first); larger values are written truncated to 62 bits in release
/// builds and trip a debug assertion.
#[inline]
pub fn write<B: BufMut>(dst: &mut B, value: u64) {
    debug_assert!(fits(value), "varint out of range: {value}");
    match encoded_len(value) {
        1 => dst.put_u8(value as u8),
        2 => dst.put_u16(0x4000 | value as u16),
        4 => dst.put_u32(0x8000_0000 | value as u32),
        _ => dst.put_u64(0xc000_0000_0000_0000 | (value & VARINT_MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: wire.md §2.2 — the four examples of the encoding table (RFC 9000 §A.1).
    #[test]
    fn varint_2_2_examples_decode() {
        assert_eq!(read(&[0x25]), Ok((37, 1)));
        assert_eq!(read(&[0x7b, 0xbd]), Ok((15_293, 2)));
        assert_eq!(read(&[0x9d, 0x7f, 0x3e, 0x7d]), Ok((494_878_333, 4)));
        assert_eq!(
            read(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Ok((151_288_809_941_952_652, 8))
        );
    }

    #[test]
    fn varint_2_2_2_rejects_non_minimal() {
        assert_eq!(
            read(&[0x40, 0x25]),
            Err(VarIntError::NonMinimal { value: 37, len: 2 })
        );
        assert_eq!(
            read(&[0xc0, 0, 0, 0, 0, 0, 0, 5]),
            Err(VarIntError::NonMinimal { value: 5, len: 8 })
        );
    }

    #[test]
    fn varint_2_2_3_reports_incomplete() {
        assert_eq!(read(&[]), Err(VarIntError::Incomplete { needed: 1 }));
        assert_eq!(read(&[0x80, 1]), Err(VarIntError::Incomplete { needed: 4 }));
    }

    #[test]
    fn varint_2_2_1_nine_bytes_of_ones_read_as_one_eight_byte_varint() {
        // 0xFF… is an 8-byte varint holding 2^62 − 1; the ninth byte is not part of it.
        let bytes = [0xff; 9];
        assert_eq!(read(&bytes), Ok((VARINT_MAX, 8)));
    }

    #[test]
    fn varint_round_trips_at_every_boundary() {
        for v in [
            0,
            63,
            64,
            16_383,
            16_384,
            (1 << 30) - 1,
            1 << 30,
            VARINT_MAX,
        ] {
            let mut buf = Vec::new();
            write(&mut buf, v);
            assert_eq!(buf.len(), encoded_len(v));
            assert_eq!(read(&buf), Ok((v, buf.len())));
        }
    }
}
