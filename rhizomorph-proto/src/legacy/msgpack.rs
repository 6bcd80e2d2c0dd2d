//! The few msgpack operations legacy mode needs, on borrowed bytes: find where one value ends,
//! read a map header, a string, and write maps, strings and binaries.
//!
//! Owns msgpack's type tags (the msgpack spec, "Formats"). Never allocates while scanning,
//! never recurses (a nesting counter, not the call stack, tracks containers), and never trusts a
//! length or a count before checking it against the bytes that are actually there.

use super::LegacyError;

/// The end offset of the msgpack value that starts at `start` in `buf`.
///
/// Iterative: containers add their element count to a pending counter. A count larger than
/// the bytes left is refused at once (every element takes at least one byte), so a 4-byte
/// header claiming 2^32 elements costs nothing.
pub fn skip_value(buf: &[u8], start: usize) -> Result<usize, LegacyError> {
    let mut pos = start;
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let tag = *buf.get(pos).ok_or(LegacyError::Truncated { offset: pos })?;
        pos += 1;
        let (skip, items): (u64, u64) = match tag {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(tag & 0x0f)),
            0x90..=0x9f => (0, u64::from(tag & 0x0f)),
            0xa0..=0xbf => (u64::from(tag & 0x1f), 0),
            0xc1 => {
                return Err(LegacyError::InvalidTag {
                    tag,
                    offset: pos - 1,
                })
            }
            // bin 8/16/32, str 8/16/32: length then bytes
            0xc4 | 0xd9 => (read_be(buf, &mut pos, 1)?, 0),
            0xc5 | 0xda => (read_be(buf, &mut pos, 2)?, 0),
            0xc6 | 0xdb => (read_be(buf, &mut pos, 4)?, 0),
            // ext 8/16/32: length, type byte, bytes
            0xc7 => (read_be(buf, &mut pos, 1)? + 1, 0),
            0xc8 => (read_be(buf, &mut pos, 2)? + 1, 0),
            0xc9 => (read_be(buf, &mut pos, 4)? + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            // fixext 1/2/4/8/16: type byte + data
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, read_be(buf, &mut pos, 2)?),
            0xdd => (0, read_be(buf, &mut pos, 4)?),
            0xde => (0, 2 * read_be(buf, &mut pos, 2)?),
            0xdf => (0, 2 * read_be(buf, &mut pos, 4)?),
        };
        let left = (buf.len() - pos) as u64;
        if skip > left {
            return Err(LegacyError::Truncated { offset: pos });
        }
        pos += skip as usize;
        pending += items;
        if pending > (buf.len() - pos) as u64 {
            return Err(LegacyError::Truncated { offset: pos });
        }
    }
    Ok(pos)
}

fn read_be(buf: &[u8], pos: &mut usize, n: usize) -> Result<u64, LegacyError> {
    let bytes = buf
        .get(*pos..*pos + n)
        .ok_or(LegacyError::Truncated { offset: *pos })?;
    *pos += n;
    Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Reads a map header at `*pos`: the number of entries.
pub fn read_map_len(buf: &[u8], pos: &mut usize) -> Result<u64, LegacyError> {
    let at = *pos;
    let tag = *buf.get(at).ok_or(LegacyError::Truncated { offset: at })?;
    *pos += 1;
    match tag {
        0x80..=0x8f => Ok(u64::from(tag & 0x0f)),
        0xde => read_be(buf, pos, 2),
        0xdf => read_be(buf, pos, 4),
        _ => Err(LegacyError::HeaderNotAMap { tag }),
    }
}

/// Reads an array header at `*pos`: the number of elements.
pub fn read_array_len(buf: &[u8], pos: &mut usize) -> Result<Option<u64>, LegacyError> {
    let at = *pos;
    let tag = *buf.get(at).ok_or(LegacyError::Truncated { offset: at })?;
    let mut p = at + 1;
    let n = match tag {
        0x90..=0x9f => u64::from(tag & 0x0f),
        0xdc => read_be(buf, &mut p, 2)?,
        0xdd => read_be(buf, &mut p, 4)?,
        _ => return Ok(None),
    };
    *pos = p;
    Ok(Some(n))
}

/// Reads a bin at `*pos` if there is one there: its bytes (`Ok(None)`, `*pos` unchanged, for
/// another type).
pub fn read_bin<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, LegacyError> {
    let at = *pos;
    let tag = *buf.get(at).ok_or(LegacyError::Truncated { offset: at })?;
    let mut p = at + 1;
    let len = match tag {
        0xc4 => read_be(buf, &mut p, 1)?,
        0xc5 => read_be(buf, &mut p, 2)?,
        0xc6 => read_be(buf, &mut p, 4)?,
        _ => return Ok(None),
    };
    take(buf, pos, p, len).map(Some)
}

/// The `len` bytes at `start` (checked against the input), moving `*pos` past them.
fn take<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    start: usize,
    len: u64,
) -> Result<&'a [u8], LegacyError> {
    let end = start
        .checked_add(len as usize)
        .filter(|&e| e <= buf.len())
        .ok_or(LegacyError::Truncated { offset: start })?;
    *pos = end;
    Ok(&buf[start..end])
}

/// Reads a string at `*pos` if there is one there: `Ok(None)` (and `*pos` unchanged) if the
/// value is of another type.
pub fn read_str<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, LegacyError> {
    let at = *pos;
    let tag = *buf.get(at).ok_or(LegacyError::Truncated { offset: at })?;
    let mut p = at + 1;
    let len = match tag {
        0xa0..=0xbf => u64::from(tag & 0x1f),
        0xd9 => read_be(buf, &mut p, 1)?,
        0xda => read_be(buf, &mut p, 2)?,
        0xdb => read_be(buf, &mut p, 4)?,
        _ => return Ok(None),
    };
    take(buf, pos, p, len).map(Some)
}

/// Appends a map header for `len` entries.
pub fn write_map_len(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0xde);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Appends `s` as a msgpack str, in the smallest form (as Python's `msgpack.packb` does).
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// Appends `b` as a msgpack bin, in the smallest form.
pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let len = b.len();
    if len <= 0xff {
        out.extend_from_slice(&[0xc4, len as u8]);
    } else if len <= 0xffff {
        out.push(0xc5);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_every_kind_of_value() {
        let value = rmpv::Value::Map(vec![
            ("a".into(), rmpv::Value::from(-5)),
            ("b".into(), rmpv::Value::from(1u64 << 40)),
            ("c".into(), rmpv::Value::F64(1.5)),
            ("d".into(), rmpv::Value::Binary(vec![7; 300])),
            (
                "e".into(),
                rmpv::Value::Array(vec![rmpv::Value::Nil, true.into(), "x".repeat(70).into()]),
            ),
            ("f".into(), rmpv::Value::Ext(3, vec![1, 2, 3, 4])),
        ]);
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &value).unwrap();
        buf.extend_from_slice(&[0x01, 0x02]);
        assert_eq!(skip_value(&buf, 0).unwrap(), buf.len() - 2);
    }

    #[test]
    fn refuses_counts_larger_than_the_input() {
        // array32 claiming 2^32-1 elements, then nothing.
        let buf = [0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            skip_value(&buf, 0),
            Err(LegacyError::Truncated { .. })
        ));
        assert!(matches!(
            skip_value(&[0xc1], 0),
            Err(LegacyError::InvalidTag { tag: 0xc1, .. })
        ));
        // str32 with a length past the end.
        assert!(skip_value(&[0xdb, 0, 0, 1, 0, b'a'], 0).is_err());
    }

    #[test]
    fn writes_the_smallest_forms() {
        for len in [0usize, 31, 32, 255, 256, 65535, 65536] {
            let s = vec![b'a'; len];
            let mut out = Vec::new();
            write_str(&mut out, &s);
            let expected = rmp_serde::to_vec(&String::from_utf8(s.clone()).unwrap()).unwrap();
            assert_eq!(out, expected, "str of {len}");
            let mut pos = 0;
            assert_eq!(read_str(&out, &mut pos).unwrap(), Some(&s[..]));
            assert_eq!(pos, out.len());
        }
        for len in [0usize, 15, 16, 65535, 65536] {
            let mut out = Vec::new();
            write_map_len(&mut out, len);
            let mut pos = 0;
            assert_eq!(read_map_len(&out, &mut pos).unwrap(), len as u64);
        }
    }
}
