//! The static table of header fields (wire.md Appendix B) and its lookups.
//!
//! Owns the 32 entries every peer knows without a dynamic table. Never changes: an index below
//! [`STATIC_LEN`] means the same field on every connection.

/// The static table (wire.md Appendix B).
pub const STATIC_TABLE: [(&str, &str); 32] = [
    ("type", "method"),
    ("type", "event"),
    ("type", ""),
    ("to", "*"),
    ("to", ""),
    ("from", ""),
    ("method", ""),
    ("session", ""),
    ("parent", ""),
    ("workspace", ""),
    ("ws", ""),
    ("user", ""),
    ("service", ""),
    ("reply-to", ""),
    ("trace-id", ""),
    ("deadline", ""),
    ("content-type", ""),
    ("content-type", "application/msgpack"),
    ("content-type", "application/json"),
    ("content-type", "application/octet-stream"),
    ("error", ""),
    ("status", "ok"),
    ("status", "error"),
    ("stream-id", ""),
    ("seq", ""),
    ("priority", ""),
    ("client-id", ""),
    ("token", ""),
    ("event", ""),
    ("method", "ping"),
    ("method", "pong"),
    ("type", "reply"),
];

pub(super) const STATIC_LEN: u64 = STATIC_TABLE.len() as u64;

/// The static index of `(name, value)` (Appendix B), without scanning the table.
pub(super) fn static_exact_index(name: &[u8], value: &[u8]) -> Option<u64> {
    Some(match (name, value) {
        (b"type", b"method") => 0,
        (b"type", b"event") => 1,
        (b"type", b"") => 2,
        (b"to", b"*") => 3,
        (b"to", b"") => 4,
        (b"content-type", b"application/msgpack") => 17,
        (b"content-type", b"application/json") => 18,
        (b"content-type", b"application/octet-stream") => 19,
        (b"status", b"ok") => 21,
        (b"status", b"error") => 22,
        (b"method", b"ping") => 29,
        (b"method", b"pong") => 30,
        (b"type", b"reply") => 31,
        (n, b"") => match static_name_index(n)? {
            i @ (5..=16 | 20 | 23..=28) => i,
            _ => return None,
        },
        _ => return None,
    })
}

/// The first static index whose name is `name` (Appendix B).
pub(super) fn static_name_index(name: &[u8]) -> Option<u64> {
    Some(match name {
        b"type" => 0,
        b"to" => 3,
        b"from" => 5,
        b"method" => 6,
        b"session" => 7,
        b"parent" => 8,
        b"workspace" => 9,
        b"ws" => 10,
        b"user" => 11,
        b"service" => 12,
        b"reply-to" => 13,
        b"trace-id" => 14,
        b"deadline" => 15,
        b"content-type" => 16,
        b"error" => 20,
        b"status" => 21,
        b"stream-id" => 23,
        b"seq" => 24,
        b"priority" => 25,
        b"client-id" => 26,
        b"token" => 27,
        b"event" => 28,
        _ => return None,
    })
}
