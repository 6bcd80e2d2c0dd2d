//! A hand-driven WebSocket client (the upgrade, native or legacy) over a blocking socket, for
//! hostile-peer tests that need bytes no well-behaved client sends: unmasked or oversized
//! frames, half messages, floods that never read.
//!
//! Owns the client side of the upgrade, masked frame writing and unmasked frame reading. Never
//! validates what the server sends beyond what a test asserts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One masked client frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x11, 0x22, 0x33, 0x44];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A client socket past the WebSocket upgrade to `addr`, offering `protocol` (none: a
/// legacy client); panics unless the server answers 101.
pub fn upgrade(addr: SocketAddr, protocol: Option<&str>) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let offer = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A legacy client over a plain socket: the upgrade (no `rhizomorph.v1`), the auth TEXT, and
/// the server's `connection_info` read.
pub fn legacy_client(addr: SocketAddr, id: &str) -> TcpStream {
    let mut s = upgrade(addr, None);
    let auth = format!(
        r#"{{"client_id": "{id}", "workspace": "ws-h", "token": null, "reconnection_token": null}}"#
    );
    s.write_all(&frame(0x1, auth.as_bytes())).unwrap();
    let (opcode, body) = read_frame(&mut s).expect("connection_info");
    assert_eq!(opcode, 0x1);
    assert!(body.starts_with(br#"{"type": "connection_info""#));
    s
}

/// One server frame (unmasked): opcode and payload; `None` at EOF.
pub fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).ok()?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).ok()?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut body = vec![0; len as usize];
    s.read_exact(&mut body).ok()?;
    Some((h[0] & 0x0f, body))
}

/// Reads frames until the server's close; its status code.
pub fn close_code(s: &mut TcpStream) -> Option<u16> {
    while let Some((opcode, body)) = read_frame(s) {
        if opcode == 0x8 {
            return body.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        }
    }
    None
}

/// Whether the server closed its end: EOF after whatever it still sends.
pub fn server_hung_up(s: &mut TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}
