//! Which WebSocket framing carries rhizomorph's batches faster on loopback: tokio-tungstenite
//! (rhizomorph's legacy mode), fastwebsockets, or rhizomorph's own (`rhizomorph::websocket`,
//! driven the way `transport::ws::socket` drives it: reads sized to the frame, unmasking in place,
//! `writev` of header + payload)? All run on a raw TCP connection after the HTTP upgrade (the
//! handshake is not on the hot path), as client (masking) → server (echo).
//!
//! Run: `cargo run --release --example ws_crates`
//!
//! Each row: messages of SIZE bytes, W written back to back then W read back, repeated; one
//! current-thread runtime per side, on its own thread.

use std::time::Instant;

use fastwebsockets::{Frame, OpCode, Payload, Role as FRole, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::{Role as TRole, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn tungstenite_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

fn run_tungstenite(size: usize, window: usize, rounds: usize) -> f64 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut ws =
                WebSocketStream::from_raw_socket(s, TRole::Server, Some(tungstenite_config()))
                    .await;
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Binary(b) = m {
                    if ws.send(Message::Binary(b)).await.is_err() {
                        break;
                    }
                }
            }
        })
    });
    let addr = rx.recv().unwrap();
    rt().block_on(async move {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut ws =
            WebSocketStream::from_raw_socket(s, TRole::Client, Some(tungstenite_config())).await;
        let payload = bytes::Bytes::from(vec![0x5a; size]);
        let start = Instant::now();
        for _ in 0..rounds {
            for _ in 0..window {
                ws.feed(Message::Binary(payload.clone())).await.unwrap();
            }
            ws.flush().await.unwrap();
            for _ in 0..window {
                let m = ws.next().await.unwrap().unwrap();
                assert_eq!(m.len(), size);
            }
        }
        (rounds * window) as f64 / start.elapsed().as_secs_f64()
    })
}

fn run_fastwebsockets(size: usize, window: usize, rounds: usize) -> f64 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut ws = WebSocket::after_handshake(s, FRole::Server);
            ws.set_max_message_size(64 << 20);
            loop {
                let Ok(frame) = ws.read_frame().await else {
                    break;
                };
                if frame.opcode == OpCode::Binary {
                    let out = Frame::binary(Payload::Owned(frame.payload.to_vec()));
                    if ws.write_frame(out).await.is_err() {
                        break;
                    }
                }
            }
        })
    });
    let addr = rx.recv().unwrap();
    rt().block_on(async move {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut ws = WebSocket::after_handshake(s, FRole::Client);
        ws.set_max_message_size(64 << 20);
        let payload = vec![0x5au8; size];
        let start = Instant::now();
        for _ in 0..rounds {
            for _ in 0..window {
                ws.write_frame(Frame::binary(Payload::Owned(payload.clone())))
                    .await
                    .unwrap();
            }
            for _ in 0..window {
                let f = ws.read_frame().await.unwrap();
                assert_eq!(f.payload.len(), size);
            }
        }
        (rounds * window) as f64 / start.elapsed().as_secs_f64()
    })
}

/// Writes one frame (header, then payload) with `writev`, as `transport::ws::socket` does.
async fn write_frame(s: &mut TcpStream, head: &[u8], body: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let (mut h, mut b) = (0, 0);
    while h < head.len() || b < body.len() {
        let bufs = [
            std::io::IoSlice::new(&head[h..]),
            std::io::IoSlice::new(&body[b..]),
        ];
        let n = s.write_vectored(&bufs).await.unwrap();
        assert!(n > 0);
        let from_head = n.min(head.len() - h);
        h += from_head;
        b += n - from_head;
    }
}

/// Reads the next binary message, reserving room for the whole frame once its header is in.
async fn read_message(
    s: &mut TcpStream,
    buf: &mut bytes::BytesMut,
    decoder: &mut rhizomorph::websocket::WsDecoder,
) -> Option<bytes::Bytes> {
    use rhizomorph::websocket::{Decoded, WsEvent};
    use tokio::io::AsyncReadExt;
    loop {
        match decoder.decode(buf).unwrap() {
            Decoded::Event(WsEvent::Binary(b)) => return Some(b),
            Decoded::Event(_) => continue,
            Decoded::NeedBytes(n) => {
                let want = n.max(buf.len() + 8192);
                if buf.capacity() < want {
                    buf.reserve(want - buf.len());
                }
                if s.read_buf(buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }
    }
}

fn run_rhizomorph(size: usize, window: usize, rounds: usize) -> f64 {
    use rhizomorph::websocket::{apply_mask, OpCode as ROp, Role, WsDecoder, WsEncoder};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let (mut buf, mut dec) = (
                bytes::BytesMut::new(),
                WsDecoder::new(Role::Server, 64 << 20),
            );
            let enc = WsEncoder::new(Role::Server);
            while let Some(m) = read_message(&mut s, &mut buf, &mut dec).await {
                let (head, n, _) = enc.head(ROp::Binary, m.len(), || [0; 4]);
                write_frame(&mut s, &head[..n], &m).await;
            }
        })
    });
    let addr = rx.recv().unwrap();
    rt().block_on(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (mut buf, mut dec) = (
            bytes::BytesMut::new(),
            WsDecoder::new(Role::Client, 64 << 20),
        );
        let enc = WsEncoder::new(Role::Client);
        let payload = bytes::Bytes::from(vec![0x5a; size]);
        let start = Instant::now();
        for _ in 0..rounds {
            for _ in 0..window {
                // The payload is shared: mask a copy, as transport::ws::socket does.
                let (head, n, key) = enc.head(ROp::Binary, size, rand_key);
                let mut body = bytes::BytesMut::from(&payload[..]);
                apply_mask(&mut body, key.unwrap());
                write_frame(&mut s, &head[..n], &body).await;
            }
            for _ in 0..window {
                let m = read_message(&mut s, &mut buf, &mut dec).await.unwrap();
                assert_eq!(m.len(), size);
            }
        }
        (rounds * window) as f64 / start.elapsed().as_secs_f64()
    })
}

fn rand_key() -> [u8; 4] {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    n.to_le_bytes()
}

fn main() {
    println!(
        "{:>9} {:>4} {:>18} {:>18} {:>18} {:>8} {:>8}",
        "size", "W", "tungstenite msg/s", "fastws msg/s", "rhizomorph msg/s", "fast/t", "rhizo/t"
    );
    for (size, window, rounds) in [
        (256, 64, 3000),
        (16 * 1024, 16, 2000),
        (64 * 1024, 4, 3000),
        (2 << 20, 1, 300),
    ] {
        let t = run_tungstenite(size, window, rounds);
        let f = run_fastwebsockets(size, window, rounds);
        let r = run_rhizomorph(size, window, rounds);
        println!(
            "{size:>9} {window:>4} {t:>18.0} {f:>18.0} {r:>18.0} {:>8.2} {:>8.2}",
            f / t,
            r / t
        );
    }
}
