//! RFC 6455 §4 opening handshake, sans-IO: the upgrade request and response as bytes.
//!
//! Owns building and parsing the HTTP/1.1 upgrade messages, the `Sec-WebSocket-Accept`
//! computation and the subprotocol fields. Parsing is incremental ("need more" until the blank
//! line), bounded ([`MAX_HANDSHAKE_LEN`] bytes, [`MAX_HEADERS`] headers) and returns how many
//! bytes the head took, so bytes the peer sent after it are kept for the frame decoder. Never
//! reads a socket and never negotiates extensions (wire.md §16.1.1).

use base64::Engine;
use sha1::{Digest, Sha1};

/// The longest upgrade request or response head we read.
pub const MAX_HANDSHAKE_LEN: usize = 16 * 1024;
/// The most header fields we accept in it.
pub const MAX_HEADERS: usize = 64;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A malformed or refused opening handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The head is longer than [`MAX_HANDSHAKE_LEN`].
    #[error("WebSocket handshake head exceeds {MAX_HANDSHAKE_LEN} bytes")]
    TooLong,
    /// The bytes are not an HTTP/1.1 request or response head.
    #[error("malformed HTTP in the WebSocket handshake: {0}")]
    Http(String),
    /// A request that is not a WebSocket upgrade, or lacks a required header.
    #[error("not a WebSocket upgrade: {0}")]
    NotUpgrade(&'static str),
    /// A request for a WebSocket version other than 13.
    #[error("unsupported WebSocket version {0:?} (only 13)")]
    Version(String),
    /// The server answered with something other than `101 Switching Protocols`.
    #[error("server answered the WebSocket upgrade with HTTP {status}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body, if it came with the head.
        body: String,
    },
    /// The server's `Sec-WebSocket-Accept` does not match our key.
    #[error("server's Sec-WebSocket-Accept {0:?} does not match the key we sent")]
    BadAccept(String),
    /// The server selected a subprotocol we did not offer.
    #[error("server selected subprotocol {0:?}, which was not offered")]
    UnofferedProtocol(String),
    /// The server accepted an extension we did not offer.
    #[error("server accepted WebSocket extensions {0:?}, none were offered")]
    UnofferedExtension(String),
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// The client's upgrade request for `path` on `host` (the `Host` header: host and port),
/// offering `protocols` in order.
pub fn client_request(host: &str, path: &str, key: &str, protocols: &[&str]) -> Vec<u8> {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        r.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            protocols.join(", ")
        ));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> impl Iterator<Item = &'a str> {
    let name = name.to_string();
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(&name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

fn tokens<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Vec<String> {
    header(headers, name)
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    tokens(headers, name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// The length of a parsed head, `None` while it is incomplete (an error once it is too long).
fn head_len(parsed: httparse::Result<usize>, have: usize) -> Result<Option<usize>, HandshakeError> {
    match parsed {
        // A complete head is held to the limit too (before, one read of a whole 20 or 32 KiB
        // head was accepted: the limit only applied while the head was incomplete).
        Ok(httparse::Status::Complete(n)) if n > MAX_HANDSHAKE_LEN => Err(HandshakeError::TooLong),
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if have > MAX_HANDSHAKE_LEN => Err(HandshakeError::TooLong),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(HandshakeError::Http(e.to_string())),
    }
}

/// `Upgrade: websocket` and `Connection: Upgrade`, which both heads carry (RFC 6455 §4.1, §4.2.2).
fn check_upgrade(h: &[httparse::Header<'_>]) -> Result<(), HandshakeError> {
    if !has_token(h, "Upgrade", "websocket") {
        return Err(HandshakeError::NotUpgrade("no Upgrade: websocket"));
    }
    if !has_token(h, "Connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade("no Connection: Upgrade"));
    }
    Ok(())
}

/// The server's answer, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeResponse {
    /// The subprotocol the server selected, if any.
    pub protocol: Option<String>,
}

/// Parses the server's response head from the front of `buf`: `Ok(None)` until it is whole,
/// then the response and the head's length. Checks status 101, the upgrade headers, the accept
/// key, and that any subprotocol selected was one of `offered`.
pub fn parse_response(
    buf: &[u8],
    key: &str,
    offered: &[&str],
) -> Result<Option<(UpgradeResponse, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let Some(n) = head_len(resp.parse(buf), buf.len())? else {
        return Ok(None);
    };
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        let body = String::from_utf8_lossy(&buf[n..buf.len().min(n + 512)]).into_owned();
        return Err(HandshakeError::Status { status, body });
    }
    let h = &*resp.headers;
    check_upgrade(h)?;
    let accept = header(h, "Sec-WebSocket-Accept").next().unwrap_or("");
    if accept.trim() != accept_key(key) {
        return Err(HandshakeError::BadAccept(accept.to_string()));
    }
    let extensions = tokens(h, "Sec-WebSocket-Extensions");
    if !extensions.is_empty() {
        return Err(HandshakeError::UnofferedExtension(extensions.join(", ")));
    }
    let protocol = header(h, "Sec-WebSocket-Protocol")
        .next()
        .map(|p| p.trim().to_string());
    if let Some(p) = &protocol {
        if !offered.contains(&p.as_str()) {
            return Err(HandshakeError::UnofferedProtocol(p.clone()));
        }
    }
    Ok(Some((UpgradeResponse { protocol }, n)))
}

/// A client's upgrade request, as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request target (path and query).
    pub path: String,
    /// `Sec-WebSocket-Key`.
    pub key: String,
    /// The subprotocols offered, in the client's order.
    pub protocols: Vec<String>,
}

/// Parses a client's upgrade request head from the front of `buf`: `Ok(None)` until it is
/// whole, then the request and the head's length.
pub fn parse_request(buf: &[u8]) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(n) = head_len(req.parse(buf), buf.len())? else {
        return Ok(None);
    };
    if req.method != Some("GET") {
        return Err(HandshakeError::NotUpgrade("method is not GET"));
    }
    if req.version != Some(1) {
        return Err(HandshakeError::NotUpgrade("not HTTP/1.1"));
    }
    let h = &*req.headers;
    check_upgrade(h)?;
    let version = header(h, "Sec-WebSocket-Version").next().unwrap_or("");
    if version.trim() != "13" {
        return Err(HandshakeError::Version(version.to_string()));
    }
    let key = header(h, "Sec-WebSocket-Key")
        .next()
        .map(str::trim)
        .filter(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|b| b.len() == 16)
        })
        .ok_or(HandshakeError::NotUpgrade("no valid Sec-WebSocket-Key"))?
        .to_string();
    Ok(Some((
        UpgradeRequest {
            path: req.path.unwrap_or("/").to_string(),
            key,
            protocols: tokens(h, "Sec-WebSocket-Protocol"),
        },
        n,
    )))
}

/// The server's `101 Switching Protocols`, selecting `protocol` (or none), no extensions.
pub fn accept_response(key: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = protocol {
        r.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A refusal: `status` with `body` as text, closing the connection. A version refusal (426)
/// names the version we speak (RFC 6455 §4.4).
pub fn error_response(status: u16, body: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        426 => "Upgrade Required",
        _ => "Error",
    };
    let extra = if status == 426 {
        "Sec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_1_3_accept_key_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn request_and_response_round_trip_and_keep_what_follows() {
        let key = new_key();
        let mut req = client_request("127.0.0.1:80", "/ws?x=1", &key, &["rhizomorph.v1", "b"]);
        req.extend_from_slice(b"\x82\x80tail");
        let (parsed, n) = parse_request(&req).unwrap().unwrap();
        assert_eq!(parsed.path, "/ws?x=1");
        assert_eq!(parsed.protocols, ["rhizomorph.v1", "b"]);
        assert_eq!(&req[n..], b"\x82\x80tail");
        assert_eq!(parse_request(&req[..n - 1]).unwrap(), None);

        let mut resp = accept_response(&parsed.key, Some("rhizomorph.v1"));
        resp.extend_from_slice(b"frames");
        let (r, n) = parse_response(&resp, &key, &["rhizomorph.v1"])
            .unwrap()
            .unwrap();
        assert_eq!(r.protocol.as_deref(), Some("rhizomorph.v1"));
        assert_eq!(&resp[n..], b"frames");
        let (r, _) = parse_response(&accept_response(&key, None), &key, &["rhizomorph.v1"])
            .unwrap()
            .unwrap();
        assert_eq!(r.protocol, None);
    }

    #[test]
    fn bad_responses_are_refused() {
        let key = new_key();
        assert_eq!(
            parse_response(
                &accept_response("AAAAAAAAAAAAAAAAAAAAAA==", None),
                &key,
                &[]
            ),
            Err(HandshakeError::BadAccept(accept_key(
                "AAAAAAAAAAAAAAAAAAAAAA=="
            )))
        );
        assert_eq!(
            parse_response(
                &accept_response(&key, Some("other")),
                &key,
                &["rhizomorph.v1"]
            ),
            Err(HandshakeError::UnofferedProtocol("other".into()))
        );
        assert_eq!(
            parse_response(&error_response(400, "no"), &key, &[]),
            Err(HandshakeError::Status {
                status: 400,
                body: "no".into()
            })
        );
        let endless = vec![b'a'; MAX_HANDSHAKE_LEN + 1];
        assert!(parse_response(b"HTTP/1.1 101 OK\r\nX: ", &key, &[])
            .unwrap()
            .is_none());
        let mut long = b"HTTP/1.1 101 OK\r\nX: ".to_vec();
        long.extend_from_slice(&endless);
        assert_eq!(
            parse_response(&long, &key, &[]),
            Err(HandshakeError::TooLong)
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let ok = |extra: &str| {
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n{extra}\r\n"
            )
        };
        let good =
            ok("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
        assert!(parse_request(good.as_bytes()).unwrap().is_some());
        assert_eq!(
            parse_request(
                ok("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n")
                    .as_bytes()
            ),
            Err(HandshakeError::Version("8".into()))
        );
        assert!(matches!(
            parse_request(
                ok("Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n").as_bytes()
            ),
            Err(HandshakeError::NotUpgrade(_))
        ));
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\n\r\n"),
            Err(HandshakeError::NotUpgrade(_))
        ));
    }

    /// Each refusal wire.md §16.1.2 lists, one request each.
    #[test]
    fn ws_16_1_2_each_upgrade_rule_refuses_its_request() {
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let version = "Sec-WebSocket-Version: 13\r\n";
        let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
        let head = |line: &str, upgrade: &str, key: &str, version: &str| {
            format!("{line}\r\nHost: h\r\n{upgrade}{key}{version}\r\n")
        };
        let good = head("GET /any/path?q=1 HTTP/1.1", upgrade, key, version);
        let (req, n) = parse_request(good.as_bytes()).unwrap().unwrap();
        assert_eq!((req.path.as_str(), n), ("/any/path?q=1", good.len()));
        // Tokens are case-insensitive and may sit in a list.
        let mixed = "upgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n";
        assert!(
            parse_request(head("GET / HTTP/1.1", mixed, key, version).as_bytes())
                .unwrap()
                .is_some()
        );
        let refused = [
            ("method", head("POST / HTTP/1.1", upgrade, key, version)),
            ("HTTP/1.0", head("GET / HTTP/1.0", upgrade, key, version)),
            (
                "no Upgrade",
                head("GET / HTTP/1.1", "Connection: Upgrade\r\n", key, version),
            ),
            (
                "Upgrade: h2c",
                head(
                    "GET / HTTP/1.1",
                    "Upgrade: h2c\r\nConnection: Upgrade\r\n",
                    key,
                    version,
                ),
            ),
            (
                "no Connection",
                head("GET / HTTP/1.1", "Upgrade: websocket\r\n", key, version),
            ),
            ("no key", head("GET / HTTP/1.1", upgrade, "", version)),
            (
                "key not base64",
                head(
                    "GET / HTTP/1.1",
                    upgrade,
                    "Sec-WebSocket-Key: ***\r\n",
                    version,
                ),
            ),
            // The base64 of 15 bytes.
            (
                "key of 15 bytes",
                head(
                    "GET / HTTP/1.1",
                    upgrade,
                    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n",
                    version,
                ),
            ),
        ];
        for (rule, request) in refused {
            assert!(
                matches!(
                    parse_request(request.as_bytes()),
                    Err(HandshakeError::NotUpgrade(_))
                ),
                "{rule}: {request:?} -> {:?}",
                parse_request(request.as_bytes())
            );
        }
        for v in [
            "",
            "Sec-WebSocket-Version: 8\r\n",
            "Sec-WebSocket-Version: 14\r\n",
        ] {
            let request = head("GET / HTTP/1.1", upgrade, key, v);
            assert!(
                matches!(
                    parse_request(request.as_bytes()),
                    Err(HandshakeError::Version(_))
                ),
                "{v:?}"
            );
        }
        // The version refusal is a 426 that names the version spoken.
        let answer = String::from_utf8(error_response(426, "version")).unwrap();
        assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
        assert!(
            answer.contains("\r\nSec-WebSocket-Version: 13\r\n"),
            "{answer}"
        );
    }

    #[test]
    fn a_head_over_16_kib_is_refused_whole_or_in_part() {
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        for pad in [15 * 1024, 20 * 1024, 32 * 1024] {
            let head = format!(
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}X-Pad: {}\r\n\r\n",
                "a".repeat(pad)
            );
            let whole = parse_request(head.as_bytes());
            if head.len() <= MAX_HANDSHAKE_LEN {
                assert!(whole.unwrap().is_some(), "{} bytes", head.len());
            } else {
                assert_eq!(whole, Err(HandshakeError::TooLong), "{} bytes", head.len());
                // Incomplete, once past the limit.
                let part = &head.as_bytes()[..MAX_HANDSHAKE_LEN + 1];
                assert_eq!(parse_request(part), Err(HandshakeError::TooLong));
            }
        }
        // At most 64 header lines.
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}{key}\r\n");
        assert!(matches!(
            parse_request(head.as_bytes()),
            Err(HandshakeError::Http(_))
        ));
    }
}
