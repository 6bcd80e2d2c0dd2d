//! The legacy message codec (legacy.md §L3): one WebSocket binary message is
//! `msgpack(main) ++ msgpack(extra)`; `main` is the routing header, `extra` the payload.
//!
//! Owns the mapping between the `main` map and a [`RoutingHeader`]. Reads the header without
//! looking at the payload (the payload is a view of the received bytes, never decoded or
//! copied), checks every length and count against [`LegacyLimits`] before it allocates, and
//! never panics on any input.

use bytes::Bytes;

use super::msgpack::{self, read_map_len, read_str};
use super::LegacyError;
use crate::header::RoutingHeader;

/// Suffix of a header field name whose value is a msgpack encoding (legacy.md §L3.2): the
/// `main` map's non-string values (`user`, numbers, nil, maps) keep their exact bytes.
pub const MSGPACK_SUFFIX: &str = "#";

/// Bounds on what a legacy header may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyLimits {
    /// Largest encoded `main` map in bytes.
    pub max_header_bytes: usize,
    /// Most entries in the `main` map.
    pub max_header_fields: usize,
}

impl Default for LegacyLimits {
    fn default() -> Self {
        LegacyLimits {
            max_header_bytes: 16 * 1024,
            max_header_fields: crate::header::MAX_HEADER_FIELDS,
        }
    }
}

/// A decoded legacy message: the header, and the `extra` bytes as they arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMessage {
    /// The `main` map as a routing header (legacy.md §L3.2).
    pub header: RoutingHeader,
    /// The `extra` segment (may be empty), a view of the received message.
    pub payload: Bytes,
}

/// Decodes one legacy binary message (legacy.md §L3.1). Only the `main` map is read.
pub fn decode(message: Bytes, limits: &LegacyLimits) -> Result<LegacyMessage, LegacyError> {
    let buf = &message[..];
    let mut pos = 0;
    let entries = read_map_len(buf, &mut pos)?;
    if entries > limits.max_header_fields as u64 {
        return Err(LegacyError::TooManyFields {
            count: entries,
            max: limits.max_header_fields,
        });
    }
    let mut header = RoutingHeader::new();
    for _ in 0..entries {
        if pos > limits.max_header_bytes {
            return Err(LegacyError::HeaderTooLarge {
                max: limits.max_header_bytes,
            });
        }
        let key_at = pos;
        let key = read_str(buf, &mut pos)?.ok_or(LegacyError::KeyNotAString { offset: key_at })?;
        // spec: legacy.md §L3.2 — keys are 1–254 bytes of UTF-8 and never end in `#` (the
        // suffix that marks msgpack-valued fields).
        if key.is_empty()
            || key.len() > crate::header::MAX_NAME_LEN - 1
            || key.ends_with(MSGPACK_SUFFIX.as_bytes())
        {
            return Err(LegacyError::BadKey { len: key.len() });
        }
        if std::str::from_utf8(key).is_err() {
            return Err(LegacyError::NotUtf8 { offset: key_at });
        }
        let value_at = pos;
        match read_str(buf, &mut pos)? {
            Some(s) => {
                // A str must be UTF-8 (Python's msgpack refuses it otherwise).
                if std::str::from_utf8(s).is_err() {
                    return Err(LegacyError::NotUtf8 { offset: value_at });
                }
                header.push(message.slice_ref(key), message.slice_ref(s))
            }
            None => {
                let end = msgpack::skip_value(buf, value_at)?;
                pos = end;
                let mut name = Vec::with_capacity(key.len() + 1);
                name.extend_from_slice(key);
                name.extend_from_slice(MSGPACK_SUFFIX.as_bytes());
                header.push(name, message.slice(value_at..end));
            }
        }
    }
    if pos > limits.max_header_bytes {
        return Err(LegacyError::HeaderTooLarge {
            max: limits.max_header_bytes,
        });
    }
    Ok(LegacyMessage {
        header,
        payload: message.slice(pos..),
    })
}

/// Encodes `header` as the `main` map (legacy.md §L3.2): a field named `name#` is written as
/// key `name` with its value's msgpack bytes (checked to be exactly one value); any other
/// field as a str (valid UTF-8) or a bin.
pub fn encode_header(header: &RoutingHeader, out: &mut Vec<u8>) -> Result<(), LegacyError> {
    msgpack::write_map_len(out, header.len());
    for field in header.fields() {
        match field.name.strip_suffix(MSGPACK_SUFFIX.as_bytes()) {
            Some(key) if !key.is_empty() => {
                let end = msgpack::skip_value(&field.value, 0)?;
                if end != field.value.len() {
                    return Err(LegacyError::NotOneValue {
                        field: String::from_utf8_lossy(&field.name).into_owned(),
                    });
                }
                msgpack::write_str(out, key);
                out.extend_from_slice(&field.value);
            }
            _ => {
                msgpack::write_str(out, &field.name);
                if std::str::from_utf8(&field.value).is_ok() {
                    msgpack::write_str(out, &field.value);
                } else {
                    msgpack::write_bin(out, &field.value);
                }
            }
        }
    }
    Ok(())
}

/// Payloads at least this large stay a separate buffer (a second WebSocket fragment) instead of
/// being copied behind the header (legacy.md §L3.3).
pub const SEPARATE_PAYLOAD_AT: usize = 64 * 1024;

/// A legacy message ready to write: the header bytes (with a small payload appended), and a
/// large payload left as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    /// `msgpack(main)`, followed by the payload if it is smaller than [`SEPARATE_PAYLOAD_AT`].
    pub head: Vec<u8>,
    /// The payload if it is at least [`SEPARATE_PAYLOAD_AT`]: the caller's buffer, not a copy.
    pub tail: Option<Bytes>,
}

impl EncodedMessage {
    /// Bytes on the wire (without WebSocket framing).
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.as_ref().map_or(0, Bytes::len)
    }

    /// Whether it is empty (never: a header is at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encodes a message: checks the payload is one msgpack value (or empty), encodes the header
/// within `limits`, and copies the payload only if it is small.
pub fn encode_message(
    header: &RoutingHeader,
    payload: Bytes,
    limits: &LegacyLimits,
) -> Result<EncodedMessage, LegacyError> {
    check_payload(&payload)?;
    let small = payload.len() < SEPARATE_PAYLOAD_AT;
    let mut head =
        Vec::with_capacity(16 + header.list_size() + if small { payload.len() } else { 0 });
    encode_header(header, &mut head)?;
    if head.len() > limits.max_header_bytes {
        return Err(LegacyError::HeaderTooLarge {
            max: limits.max_header_bytes,
        });
    }
    if small {
        head.extend_from_slice(&payload);
        Ok(EncodedMessage { head, tail: None })
    } else {
        Ok(EncodedMessage {
            head,
            tail: Some(payload),
        })
    }
}

/// Checks that `payload` is empty or exactly one msgpack value (what a legacy peer unpacks as
/// `extra`), without decoding it.
pub fn check_payload(payload: &[u8]) -> Result<(), LegacyError> {
    if payload.is_empty() {
        return Ok(());
    }
    let end = msgpack::skip_value(payload, 0)?;
    if end != payload.len() {
        return Err(LegacyError::TrailingBytes {
            extra: payload.len() - end,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first message of `../shared/reference/hypha-rpc-hexdumps.txt` (#34), re-created
    /// with the same field order.
    fn captured_call() -> Vec<u8> {
        let main = rmpv::Value::Map(vec![
            ("type".into(), "method".into()),
            ("from".into(), "ws-a/caller".into()),
            ("to".into(), "ws-b/provider".into()),
            ("method".into(), "services.echo-svc.echo".into()),
            ("session".into(), "Eau67piJsNV9isfrDQdRUo".into()),
        ]);
        let extra = rmpv::Value::Map(vec![
            (
                "args".into(),
                rmpv::Value::Array(vec![rmpv::Value::Binary(vec![1, 2, 3, 4])]),
            ),
            ("promise".into(), "*".into()),
            ("t".into(), rmpv::Value::F64(15.0)),
        ]);
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &main).unwrap();
        rmpv::encode::write_value(&mut buf, &extra).unwrap();
        buf
    }

    #[test]
    fn header_read_and_payload_left_in_place() {
        let bytes = Bytes::from(captured_call());
        let m = decode(bytes.clone(), &LegacyLimits::default()).unwrap();
        assert_eq!(m.header.get_str("to"), Some("ws-b/provider"));
        assert_eq!(m.header.get_str("session"), Some("Eau67piJsNV9isfrDQdRUo"));
        assert_eq!(
            m.payload.as_ptr(),
            bytes[bytes.len() - m.payload.len()..].as_ptr()
        );
        // Re-encoding gives the same bytes (field order kept, smallest forms).
        let mut out = Vec::new();
        encode_header(&m.header, &mut out).unwrap();
        out.extend_from_slice(&m.payload);
        assert_eq!(out, &bytes[..]);
    }

    #[test]
    fn non_string_values_round_trip_through_hash_fields() {
        let main = rmpv::Value::Map(vec![
            ("type".into(), "method".into()),
            (
                "user".into(),
                rmpv::Value::Map(vec![("id".into(), "anon".into()), ("n".into(), 3.into())]),
            ),
            ("parent".into(), rmpv::Value::Nil),
        ]);
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &main).unwrap();
        let m = decode(Bytes::from(buf.clone()), &LegacyLimits::default()).unwrap();
        assert!(m.payload.is_empty());
        assert_eq!(m.header.get("parent#").map(|b| &b[..]), Some(&[0xc0][..]));
        let mut out = Vec::new();
        encode_header(&m.header, &mut out).unwrap();
        assert_eq!(out, buf);
    }

    #[test]
    fn bad_headers_are_errors() {
        let limits = LegacyLimits::default();
        // Not a map.
        assert!(matches!(
            decode(Bytes::from_static(&[0x91, 0x01]), &limits),
            Err(LegacyError::HeaderNotAMap { tag: 0x91 })
        ));
        // An integer key.
        assert!(matches!(
            decode(Bytes::from_static(&[0x81, 0x01, 0x02]), &limits),
            Err(LegacyError::KeyNotAString { offset: 1 })
        ));
        // Too many fields, claimed.
        assert!(matches!(
            decode(Bytes::from_static(&[0xdf, 0, 1, 0, 0]), &limits),
            Err(LegacyError::TooManyFields { .. })
        ));
        // A `#` field that holds two values is refused when encoding.
        let h = RoutingHeader::new().with("user#", vec![0x01, 0x02]);
        assert!(matches!(
            encode_header(&h, &mut Vec::new()),
            Err(LegacyError::NotOneValue { .. })
        ));
        assert!(check_payload(&[0x01, 0x02]).is_err());
        assert!(check_payload(&[]).is_ok());
    }
}
