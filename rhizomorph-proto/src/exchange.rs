//! Calls and transfers over messages (wire.md §20): which header fields make a message a
//! request, a reply, a cancellation or a part of a transfer, and how to build each.
//!
//! Owns the conventions only: reading a header into what it is ([`classify`]) and writing
//! headers that follow them. Never queues, waits or matches: the `rhizomorph` crate keeps the
//! pending calls and open transfers. Pure functions over [`RoutingHeader`]s; no I/O.

use bytes::Bytes;

use crate::header::RoutingHeader;

/// `session`: a call's id, chosen by the caller, unique among its pending calls (§20.1).
pub const SESSION: &str = "session";
/// `type`: `reply` for a reply (§20.1), `cancel` for a cancellation (§20.2, §20.4).
pub const TYPE: &str = "type";
/// `status`: `ok` or `error` on a reply (§20.1) and on a transfer's last part (§20.3).
pub const STATUS: &str = "status";
/// `error`: why a reply or a transfer failed, UTF-8 text (§20.1, §20.3).
pub const ERROR: &str = "error";
/// `stream-id`: a transfer's id, chosen by its sender, unique among its open transfers (§20.3).
pub const STREAM_ID: &str = "stream-id";
/// `seq`: a transfer part's number, decimal, from 0 (§20.3).
pub const SEQ: &str = "seq";
/// `from`: the sender's address as a router set it (§6.2); a reply or cancellation goes `to` it.
pub const FROM: &str = "from";
/// `to`: the destination (§6.2).
pub const TO: &str = "to";

/// The largest decimal a `session` or `seq` value may hold: 20 digits (a u64).
const MAX_DIGITS: usize = 20;

/// What a message is, by its header (§20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// None of the below: an ordinary message (a notification).
    Plain,
    /// A call (§20.1): it has a `session` and is neither a reply nor a cancellation. Answer it
    /// with a reply carrying the same `session`.
    Request {
        /// Its `session`.
        session: Bytes,
    },
    /// A reply to our call `session` (§20.1).
    Reply {
        /// The call it answers.
        session: u64,
        /// `None` for `status: ok` (or no status); the `error` text for `status: error`.
        error: Option<String>,
    },
    /// The caller gave up on its call `session` (§20.2).
    CancelCall {
        /// The call.
        session: Bytes,
    },
    /// The receiver of our transfer `stream` does not want the rest (§20.4).
    CancelTransfer {
        /// The transfer.
        stream: u64,
    },
    /// Part `seq` of transfer `stream` (§20.3).
    Part {
        /// The transfer.
        stream: Bytes,
        /// The part's number, from 0.
        seq: u64,
        /// `None` if more parts follow; `Some(None)` for the last part of a finished transfer,
        /// `Some(Some(reason))` for the last part of one its sender gave up.
        end: Option<Option<String>>,
    },
}

/// A header that breaks §20 (the message is handed to the application as it is, with this as
/// its reason where it concerns a pending call or an open transfer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// `seq`, or the `session` of a reply, is not a decimal u64.
    #[error("header field {field} is {value:?}, not a decimal number of at most 20 digits (wire.md §20)")]
    NotANumber {
        /// The field.
        field: &'static str,
        /// Its value, lossily decoded.
        value: String,
    },
}

/// What `header` makes its message (§20). Reads the header once.
pub fn classify(header: &RoutingHeader) -> Result<Exchange, ExchangeError> {
    let mut session = None;
    let mut kind = None;
    let mut status = None;
    let mut error = None;
    let mut stream = None;
    let mut seq = None;
    for f in header.fields() {
        match &f.name[..] {
            b"session" => session = session.or(Some(&f.value)),
            b"type" => kind = kind.or(Some(&f.value)),
            b"status" => status = status.or(Some(&f.value)),
            b"error" => error = error.or(Some(&f.value)),
            b"stream-id" => stream = stream.or(Some(&f.value)),
            b"seq" => seq = seq.or(Some(&f.value)),
            _ => {}
        }
    }
    let kind = kind.map(|k| &k[..]);
    let failed = |status: Option<&Bytes>| {
        (status.map(|s| &s[..]) == Some(b"error")).then(|| {
            error
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .unwrap_or_default()
        })
    };
    Ok(match (kind, session, stream) {
        (Some(b"reply"), Some(s), _) => Exchange::Reply {
            session: number(SESSION, s)?,
            error: failed(status),
        },
        (Some(b"cancel"), Some(s), _) => Exchange::CancelCall { session: s.clone() },
        (Some(b"cancel"), None, Some(s)) => Exchange::CancelTransfer {
            stream: number(STREAM_ID, s)?,
        },
        (_, _, Some(s)) if seq.is_some() => Exchange::Part {
            stream: s.clone(),
            seq: number(SEQ, seq.unwrap_or(s))?,
            end: status.map(|_| failed(status)),
        },
        (_, Some(s), _) => Exchange::Request { session: s.clone() },
        _ => Exchange::Plain,
    })
}

/// A decimal u64 from a header value.
fn number(field: &'static str, value: &Bytes) -> Result<u64, ExchangeError> {
    let bad = || ExchangeError::NotANumber {
        field,
        value: String::from_utf8_lossy(value).into_owned(),
    };
    if value.is_empty() || value.len() > MAX_DIGITS || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}

/// `n` in decimal, as a header value: one allocation of its digits (no `String` to convert).
fn decimal(n: u64) -> Bytes {
    let mut digits = [0u8; MAX_DIGITS];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    Bytes::copy_from_slice(&digits[start..])
}

/// `header` as call `session`'s request (§20.1): `session` set to the id.
pub fn request(mut header: RoutingHeader, session: u64) -> RoutingHeader {
    header.set(SESSION, decimal(session));
    header
}

/// The reply header to a request whose header is `request` (§20.1): `type: reply`, the
/// request's `session`, `status`, the `error` text if it failed, and `to` the request's
/// `from` when a router set one.
pub fn reply(request: &RoutingHeader, error: Option<&str>) -> RoutingHeader {
    let mut h = RoutingHeader::new().with(TYPE, "reply");
    if let Some(to) = request.get(FROM) {
        h.push(TO, to.clone());
    }
    if let Some(s) = request.get(SESSION) {
        h.push(SESSION, s.clone());
    }
    match error {
        None => h.push(STATUS, "ok"),
        Some(e) => {
            h.push(STATUS, "error");
            h.push(ERROR, e.to_string());
        }
    }
    h
}

/// The cancellation of call `session` sent with `request` as its header (§20.2): to where the
/// request went.
pub fn cancel_call(request: &RoutingHeader, session: u64) -> RoutingHeader {
    let mut h = RoutingHeader::new().with(TYPE, "cancel");
    if let Some(to) = request.get(TO) {
        h.push(TO, to.clone());
    }
    h.push(SESSION, decimal(session));
    h
}

/// The cancellation of the transfer whose first part had header `first` (§20.4): back to its
/// sender.
pub fn cancel_transfer(first: &RoutingHeader) -> RoutingHeader {
    let mut h = RoutingHeader::new().with(TYPE, "cancel");
    if let Some(to) = first.get(FROM) {
        h.push(TO, to.clone());
    }
    if let Some(s) = first.get(STREAM_ID) {
        h.push(STREAM_ID, s.clone());
    }
    h
}

/// Part `seq` of transfer `stream` with the application's `header` (§20.3); `end`: `None` if
/// more parts follow, `Some(None)` for the last part, `Some(Some(reason))` to give up.
pub fn part(
    header: &RoutingHeader,
    stream: u64,
    seq: u64,
    end: Option<Option<&str>>,
) -> RoutingHeader {
    let mut h = header.clone();
    h.set(STREAM_ID, decimal(stream));
    h.set(SEQ, decimal(seq));
    match end {
        None => {}
        Some(None) => h.set(STATUS, "ok"),
        Some(Some(reason)) => {
            h.set(STATUS, "error");
            h.set(ERROR, reason.to_string());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_told_apart() {
        let base = RoutingHeader::new().with("to", "svc").with("from", "ws/a");
        let req = request(base.clone(), 7);
        assert_eq!(
            classify(&req).unwrap(),
            Exchange::Request {
                session: Bytes::from("7")
            }
        );
        assert_eq!(
            classify(&reply(&req, None)).unwrap(),
            Exchange::Reply {
                session: 7,
                error: None
            }
        );
        let r = reply(&req, Some("no such method"));
        assert_eq!(r.get_str("to"), Some("ws/a"));
        assert_eq!(
            classify(&r).unwrap(),
            Exchange::Reply {
                session: 7,
                error: Some("no such method".into())
            }
        );
        assert_eq!(
            classify(&cancel_call(&req, 7)).unwrap(),
            Exchange::CancelCall {
                session: Bytes::from("7")
            }
        );
        let p = part(&base, 3, 0, None);
        assert_eq!(
            classify(&p).unwrap(),
            Exchange::Part {
                stream: Bytes::from("3"),
                seq: 0,
                end: None
            }
        );
        assert_eq!(
            classify(&part(&base, 3, 9, Some(Some("disk full")))).unwrap(),
            Exchange::Part {
                stream: Bytes::from("3"),
                seq: 9,
                end: Some(Some("disk full".into()))
            }
        );
        assert_eq!(
            classify(&cancel_transfer(&p)).unwrap(),
            Exchange::CancelTransfer { stream: 3 }
        );
        assert_eq!(classify(&base).unwrap(), Exchange::Plain);
    }

    #[test]
    fn ids_are_written_as_minimal_decimals() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(&decimal(n)[..], n.to_string().as_bytes());
            assert_eq!(number(SESSION, &decimal(n)), Ok(n));
        }
    }

    #[test]
    fn numbers_are_checked() {
        for bad in [
            "",
            "-1",
            "1e3",
            "999999999999999999999",
            "18446744073709551616",
        ] {
            let h = RoutingHeader::new()
                .with("type", "reply")
                .with("session", bad);
            assert!(
                matches!(classify(&h), Err(ExchangeError::NotANumber { .. })),
                "{bad:?}"
            );
        }
        let h = RoutingHeader::new()
            .with("type", "reply")
            .with("session", "18446744073709551615");
        assert!(classify(&h).is_ok());
    }
}
