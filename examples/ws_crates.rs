//! Which WebSocket crate carries rhizomorph's batches faster on loopback: tokio-tungstenite
//! (what rhizomorph uses) or fastwebsockets? Both run on a raw TCP connection after the HTTP
//! upgrade (the handshake is not on the hot path), as client (masking) → server (echo).
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

fn main() {
    println!(
        "{:>9} {:>4} {:>18} {:>18} {:>8}",
        "size", "W", "tungstenite msg/s", "fastws msg/s", "ratio"
    );
    for (size, window, rounds) in [
        (256, 64, 3000),
        (16 * 1024, 16, 2000),
        (64 * 1024, 4, 3000),
        (2 << 20, 1, 300),
    ] {
        let t = run_tungstenite(size, window, rounds);
        let f = run_fastwebsockets(size, window, rounds);
        println!("{size:>9} {window:>4} {t:>18.0} {f:>18.0} {:>8.2}", f / t);
    }
}
