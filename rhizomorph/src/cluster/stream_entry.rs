//! Inbox entries read straight out of Redis's replies (cluster.md §C4.5): an entry's id and
//! its `k`, `t`, `f` and `m` fields, taken out of the reply's values without the map per entry
//! (and the copies) that redis-rs's `StreamReadReply` and `StreamRangeReply` build.
//!
//! Owns the reply shapes of `XREADGROUP` and `XRANGE`, as RESP2 arrays or RESP3 maps. Never
//! decodes `m`, and never fails a whole reply for one entry it cannot read: that entry comes
//! back with what could be read (an empty kind, which the inbox drops and counts).

use redis::Value;

/// One entry of an inbox stream.
#[derive(Debug, Default, PartialEq)]
pub(super) struct InboxEntry {
    /// The entry id, `<ms>-<seq>`.
    pub id: String,
    /// `k`: what the entry is (cluster.md §C4.5's table).
    pub kind: String,
    /// `t`: its target.
    pub to: String,
    /// `f`: who sent it.
    pub from: String,
    /// `m`: the entry bytes (a message, §C4.6, or a service), if any.
    pub body: Option<Vec<u8>>,
}

/// The entries of an `XREADGROUP … STREAMS <one key> >` reply (nil after a timed-out block).
pub(super) fn from_read(reply: Value) -> Vec<InboxEntry> {
    match reply {
        // RESP2: [[key, entries], …].
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => from_range(pair.swap_remove(1)),
                _ => Vec::new(),
            })
            .collect(),
        // RESP3: a map of key to entries.
        Value::Map(pairs) => pairs
            .into_iter()
            .flat_map(|(_, entries)| from_range(entries))
            .collect(),
        _ => Vec::new(),
    }
}

/// The entries of an `XRANGE` reply (an array of `[id, [field, value, …]]`).
pub(super) fn from_range(reply: Value) -> Vec<InboxEntry> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries.into_iter().filter_map(entry).collect()
}

fn entry(value: Value) -> Option<InboxEntry> {
    let Value::Array(parts) = value else {
        return None;
    };
    let mut parts = parts.into_iter();
    let mut e = InboxEntry {
        id: text(parts.next()?)?,
        ..InboxEntry::default()
    };
    let fields: Vec<(Value, Value)> = match parts.next() {
        Some(Value::Array(flat)) => {
            let mut flat = flat.into_iter();
            std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
        }
        Some(Value::Map(pairs)) => pairs,
        // A deleted entry still pending (nil fields): an id and nothing else.
        _ => Vec::new(),
    };
    for (name, value) in fields {
        let name = match &name {
            Value::BulkString(b) => b.as_slice(),
            Value::SimpleString(s) => s.as_bytes(),
            _ => continue,
        };
        match name {
            b"k" => e.kind = text(value).unwrap_or_default(),
            b"t" => e.to = text(value).unwrap_or_default(),
            b"f" => e.from = text(value).unwrap_or_default(),
            b"m" => {
                if let Value::BulkString(b) = value {
                    e.body = Some(b);
                }
            }
            _ => {}
        }
    }
    Some(e)
}

/// A string value (bytes that are not UTF-8 are replaced, as `String::from_utf8_lossy` does).
fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn raw_entry(id: &str, fields: &[(&str, &[u8])]) -> Value {
        let flat = fields
            .iter()
            .flat_map(|(f, v)| [bulk(f.as_bytes()), bulk(v)])
            .collect();
        Value::Array(vec![bulk(id.as_bytes()), Value::Array(flat)])
    }

    fn expected(id: &str, kind: &str, body: Option<&[u8]>) -> InboxEntry {
        InboxEntry {
            id: id.into(),
            kind: kind.into(),
            to: "ws/b".into(),
            from: "ws/a".into(),
            body: body.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn a_resp2_read_reply_gives_every_entry_in_order() {
        let entries = Value::Array(vec![
            raw_entry(
                "1-0",
                &[
                    ("k", b"m"),
                    ("t", b"ws/b"),
                    ("f", b"ws/a"),
                    ("m", b"\x01\x02"),
                ],
            ),
            raw_entry("1-1", &[("k", b"c"), ("t", b"ws/b"), ("f", b"ws/a")]),
        ]);
        let reply = Value::Array(vec![Value::Array(vec![bulk(b"rz:{n}:inbox"), entries])]);
        assert_eq!(
            from_read(reply),
            [
                expected("1-0", "m", Some(b"\x01\x02")),
                expected("1-1", "c", None)
            ]
        );
    }

    #[test]
    fn a_resp3_read_reply_and_a_timed_out_block() {
        // Two entries: not mistaken for a [key, entries] pair.
        let entries = Value::Array(vec![
            raw_entry(
                "7-3",
                &[
                    ("t", b"ws/b"),
                    ("f", b"ws/a"),
                    ("k", b"b"),
                    ("x", b"ignored"),
                ],
            ),
            raw_entry("7-4", &[("k", b"b"), ("t", b"ws/b"), ("f", b"ws/a")]),
        ]);
        let reply = Value::Map(vec![(bulk(b"rz:{n}:inbox"), entries)]);
        assert_eq!(
            from_read(reply),
            [expected("7-3", "b", None), expected("7-4", "b", None)]
        );
        assert_eq!(from_read(Value::Nil), []);
    }

    #[test]
    fn an_unreadable_entry_is_skipped_or_kept_without_its_fields() {
        let reply = Value::Array(vec![
            Value::Int(3),
            Value::Array(vec![bulk(b"2-0"), Value::Nil]),
            raw_entry("2-1", &[("k", b"\xff"), ("t", b"ws/b"), ("f", b"ws/a")]),
        ]);
        let got = from_range(reply);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "2-0");
        assert_eq!(got[0].kind, "");
        assert_eq!(got[1].kind, "\u{fffd}");
    }
}
