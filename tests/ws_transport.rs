//! The WebSocket transport over real sockets on loopback: echo on every channel, chunked large
//! messages, priorities, flow control under a stalled reader, cancel, graceful drain, abrupt
//! peer death, many concurrent messages, subprotocol and TLS checks, authentication.

use std::time::Duration;

use bytes::Bytes;
use rhizomorph::bench::echo_server;
use rhizomorph::transport::tls;
use rhizomorph::{
    Channel, CloseReason, Config, Endpoint, Error, ErrorCode, Listener, RoutingHeader,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn header(to: &str) -> RoutingHeader {
    RoutingHeader::new()
        .with("type", "method")
        .with("to", to.to_string())
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

async fn echo_server(config: Config) -> String {
    let listener = Listener::bind("127.0.0.1:0", config).await.unwrap();
    let url = listener.url();
    tokio::spawn(echo_server::serve(listener));
    url
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

#[tokio::test]
async fn ws_echo_on_every_channel() {
    let url = echo_server(Config::default()).await;
    let mut conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    for ch in Channel::ALL {
        conn.send(ch, header("echo"), format!("hi {ch}"))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let m = within("echo", conn.recv()).await.unwrap();
        assert_eq!(m.payload, Bytes::from(format!("hi {}", m.channel)));
        assert_eq!(m.header.get_str("to"), Some("echo"));
        seen.push(m.channel);
    }
    seen.sort();
    assert_eq!(seen, Channel::ALL.to_vec());
    conn.close().await;
}

#[tokio::test]
async fn ws_large_messages_are_chunked_and_arrive_intact() {
    let url = echo_server(Config::default()).await;
    let mut conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    let big = pattern(24 << 20, 3);
    conn.send(Channel::Bulk, header("echo"), big.clone())
        .await
        .unwrap();
    let m = within("24 MiB echo", conn.recv()).await.unwrap();
    assert_eq!(m.payload.len(), big.len());
    assert!(m.payload == big, "payload corrupted");
    assert!(
        conn.stats().frames_sent >= (24 << 20) / (16 << 10),
        "sent in chunks"
    );
}

#[tokio::test]
async fn ws_rpc_overtakes_a_bulk_transfer() {
    let url = echo_server(Config::default()).await;
    let mut conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    conn.send(Channel::Bulk, header("echo"), pattern(48 << 20, 1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    conn.send(Channel::Rpc, header("echo"), "urgent")
        .await
        .unwrap();
    let first = within("first reply", conn.recv()).await.unwrap();
    assert_eq!(
        (first.channel, first.payload),
        (Channel::Rpc, Bytes::from_static(b"urgent"))
    );
    let second = within("bulk reply", conn.recv()).await.unwrap();
    assert_eq!(second.channel, Channel::Bulk);
}

#[tokio::test]
async fn ws_a_stalled_reader_stops_the_sender_at_its_windows() {
    let listener = Listener::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let url = listener.url();
    let server = tokio::spawn(async move {
        let mut conn = listener.accept().await.unwrap();
        // Read nothing for a second, then everything.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut total = 0u64;
        while let Some(m) = conn.recv().await {
            total += m.payload.len() as u64;
            if total >= 64 << 20 {
                break;
            }
        }
        total
    });
    let conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    let sender = conn.sender();
    let push = tokio::spawn(async move {
        for i in 0..64u8 {
            sender
                .send(Channel::Bulk, header("sink"), pattern(1 << 20, i))
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    // While the reader sleeps: the sender got rid of at most the peer's windows, and queued at
    // most its send buffer (1 MiB) plus one message.
    let sent = conn.stats().bytes_sent[Channel::Bulk.index()];
    let queued = conn.queued_bytes(Channel::Bulk);
    // wire.md §9.6: one window of unreleased frames plus one message under reassembly.
    let settings = rhizomorph::frame::Settings::default();
    let bound = settings.initial_channel_window + (1 << 20) + (64 << 10);
    assert!(
        sent <= bound,
        "sent {sent} bytes to a stalled reader (bound {bound})"
    );
    assert!(queued <= (2 << 20), "queued {queued} bytes");
    assert!(!push.is_finished(), "send() should be waiting for credit");
    within("resume", push).await.unwrap();
    assert_eq!(within("server", server).await.unwrap(), 64 << 20);
}

#[tokio::test]
async fn ws_cancel_aborts_a_message_in_flight() {
    let listener = Listener::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let url = listener.url();
    let server = tokio::spawn(async move {
        let mut conn = listener.accept().await.unwrap();
        let m = conn.recv().await.unwrap();
        (m.sequence, m.payload)
    });
    let conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    // Bigger than the peer's window: it cannot have left entirely before we cancel.
    let id = conn
        .send(Channel::Bulk, header("x"), pattern(32 << 20, 0))
        .await
        .unwrap();
    // Let it start, so the cancel is an ABORT mid-transfer (wire.md §5.7.1).
    while conn.stats().bytes_sent[Channel::Bulk.index()] == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    conn.cancel(Channel::Bulk, id);
    conn.send(Channel::Bulk, header("x"), "after")
        .await
        .unwrap();
    let (got_seq, payload) = within("server", server).await.unwrap();
    // The aborted message had wire sequence 0; the next one started is 1.
    assert_eq!((got_seq, payload), (1, Bytes::from_static(b"after")));
}

#[tokio::test]
async fn ws_close_drains_what_is_in_flight() {
    let listener = Listener::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let url = listener.url();
    let server = tokio::spawn(async move {
        let mut conn = listener.accept().await.unwrap();
        let mut n = 0;
        while let Some(_m) = conn.recv().await {
            n += 1;
        }
        (n, conn.close_reason())
    });
    let conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    for i in 0..100u8 {
        conn.send(Channel::Stream, header("x"), pattern(100_000, i))
            .await
            .unwrap();
    }
    conn.close().await;
    let (n, reason) = within("server", server).await.unwrap();
    assert_eq!(n, 100, "every message sent before close() arrived");
    assert_eq!(
        reason,
        Some(CloseReason::Closed {
            code: ErrorCode::NO_ERROR,
            reason: "drained".into()
        })
    );
    assert!(matches!(
        conn.send(Channel::Rpc, header("x"), "late").await,
        Err(Error::Closed { .. })
    ));
}

#[tokio::test]
async fn ws_abrupt_peer_death_is_an_error_not_a_hang() {
    // A proxy we can kill between the client and an echo server.
    let url = echo_server(Config::default()).await;
    let upstream: std::net::SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut client, _) = proxy.accept().await.unwrap();
        let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            _ = kill_rx => {
                // Reset, not a clean shutdown: the peer vanishes (SO_LINGER 0 sends RST).
                let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                drop(client);
                let _ = server.shutdown().await;
            }
        }
    });
    let mut conn = Endpoint::connect(&format!("ws://{proxy_addr}/"), Config::default())
        .await
        .unwrap();
    conn.send(Channel::Rpc, header("echo"), "alive?")
        .await
        .unwrap();
    assert!(within("echo", conn.recv()).await.is_some());
    kill_tx.send(()).unwrap();
    assert!(
        within("recv after death", conn.recv()).await.is_none(),
        "recv ends"
    );
    assert!(
        matches!(conn.close_reason(), Some(CloseReason::Lost(_))),
        "{:?}",
        conn.close_reason()
    );
    let r = within(
        "send after death",
        conn.send(Channel::Rpc, header("echo"), "anyone?"),
    )
    .await;
    assert!(matches!(r, Err(Error::ConnectionLost(_))), "{r:?}");
}

#[tokio::test]
async fn ws_a_thousand_concurrent_messages() {
    let url = echo_server(Config::default()).await;
    let mut conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let sender = conn.sender();
        let ch = Channel::ALL[(i % 4) as usize];
        tasks.push(tokio::spawn(async move {
            let mut h = header("echo");
            h.push("x-id", i.to_string());
            sender
                .send(ch, h, pattern(100 + (i as usize * 37) % 5000, i as u8))
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let m = within("replies", conn.recv()).await.unwrap();
        let id: u32 = m.header.get_str("x-id").unwrap().parse().unwrap();
        assert_eq!(
            m.payload,
            pattern(100 + (id as usize * 37) % 5000, id as u8)
        );
        assert!(seen.insert(id), "duplicate {id}");
    }
    assert_eq!(seen.len(), 1000);
}

#[tokio::test]
async fn ws_3_4_server_refuses_a_client_without_the_subprotocol() {
    let url = echo_server(Config::default()).await;
    let r = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(r.is_err(), "a plain WebSocket client must be refused");
}

#[tokio::test]
async fn ws_3_4_2_client_detects_a_server_that_is_not_rhizomorph() {
    let addr = rhizomorph::bench::baseline::start_server().await.unwrap();
    let r = Endpoint::connect(&format!("ws://{addr}/"), Config::default()).await;
    assert!(matches!(r, Err(Error::NotRhizomorph { .. })), "{r:?}");
}

#[tokio::test]
async fn ws_18_plain_ws_to_a_non_loopback_address_is_refused_before_connecting() {
    // 192.0.2.1 is TEST-NET-1: the refusal happens before any packet is sent.
    let r = Endpoint::connect("ws://192.0.2.1:7878/", Config::default()).await;
    assert!(matches!(r, Err(Error::PlainNotAllowed { .. })), "{r:?}");
}

#[tokio::test]
async fn ws_tls_with_a_pinned_self_signed_certificate() {
    let (cert, key, fingerprint) = tls::self_signed(&["localhost"]).unwrap();
    let server_cfg = Config::default().with_server_tls(tls::server_tls(vec![cert], key).unwrap());
    let url = echo_server(server_cfg)
        .await
        .replace("127.0.0.1", "localhost");
    assert!(url.starts_with("wss://"));

    let pinned = Config::default().with_client_tls(tls::client_tls_pinned(&fingerprint).unwrap());
    let mut conn = Endpoint::connect(&url, pinned).await.unwrap();
    conn.send(Channel::Rpc, header("echo"), "over tls")
        .await
        .unwrap();
    assert_eq!(
        within("tls echo", conn.recv()).await.unwrap().payload,
        Bytes::from_static(b"over tls")
    );

    let wrong = "00".repeat(32);
    let r = Endpoint::connect(
        &url,
        Config::default().with_client_tls(tls::client_tls_pinned(&wrong).unwrap()),
    )
    .await;
    let msg = format!("{:?}", r.as_ref().err());
    assert!(
        r.is_err() && msg.contains("does not match the pinned"),
        "{msg}"
    );

    // The default (web PKI roots) refuses a self-signed certificate.
    let r = Endpoint::connect(&url, Config::default()).await;
    assert!(r.is_err(), "self-signed certificate accepted without a pin");
}

#[tokio::test]
async fn ws_3_2_7_authenticator_refuses_a_bad_token() {
    let server_cfg = Config::default().with_authenticator(|req| {
        if req.token == Bytes::from_static(b"letmein") {
            Ok(Bytes::new())
        } else {
            Err((ErrorCode::AUTH_FAILED, "unknown token".into()))
        }
    });
    let url = echo_server(server_cfg).await;
    let r = Endpoint::connect(&url, Config::default().with_token("guess")).await;
    assert!(
        matches!(&r, Err(Error::Closed { code, .. }) if *code == ErrorCode::AUTH_FAILED),
        "{r:?}"
    );
    let ok = Endpoint::connect(&url, Config::default().with_token("letmein")).await;
    assert!(ok.is_ok());
}
