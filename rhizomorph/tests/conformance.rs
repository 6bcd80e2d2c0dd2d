//! One conformance suite for both transports (issue 4): every check is a function of the
//! transport, run once over WebSocket and once over QUIC, on real sockets on loopback. Echo on
//! every channel, chunked large messages, priorities, flow control under a stalled reader,
//! cancel, graceful drain, abrupt peer death, and a thousand concurrent messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rhizomorph::frame::Settings;
use rhizomorph::{
    Channel, CloseReason, CompressionPolicy, Config, Endpoint, Error, ErrorCode, RoutingHeader,
};
use rhizomorph_testkit::echo_server;
use rhizomorph_testkit::transports::{self, bind, Transport};
use tokio::io::AsyncWriteExt;

/// Server and client configs for a transport: QUIC always runs TLS (a self-signed certificate,
/// pinned by the client); WebSocket runs plain on loopback. Payload compression is off, so the
/// byte counts the checks reason about are the payloads' (the test payloads are periodic and
/// would compress to almost nothing); `typed_arrays_and_compression_round_trip` turns it on.
fn configs(t: Transport) -> (Config, Config) {
    configs_with(t, CompressionPolicy::Off)
}

fn configs_with(t: Transport, compression: CompressionPolicy) -> (Config, Config) {
    transports::configs(t, Config::default().with_compression(compression))
}

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

/// An echo server; returns its URL and the client config that trusts it.
async fn echo(t: Transport) -> (String, Config) {
    echo_with(t, CompressionPolicy::Off).await
}

async fn echo_with(t: Transport, compression: CompressionPolicy) -> (String, Config) {
    let (server, client) = configs_with(t, compression);
    let listener = bind(t, server).await;
    let url = listener.url();
    tokio::spawn(echo_server::serve(listener));
    (url, client)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod ws {
            $(#[tokio::test] async fn $name() { super::$name(super::Transport::Ws).await })*
        }
        mod quic {
            $(#[tokio::test] async fn $name() { super::$name(super::Transport::Quic).await })*
        }
    };
}

conformance!(
    echo_on_every_channel,
    large_messages_are_chunked_and_arrive_intact,
    rpc_overtakes_a_bulk_transfer,
    a_stalled_reader_stops_the_sender_at_its_windows,
    cancel_aborts_a_message_in_flight,
    close_drains_what_is_in_flight,
    abrupt_peer_death_is_an_error_not_a_hang,
    a_thousand_concurrent_messages,
    typed_messages_bind_a_schema_once_and_are_checked,
    typed_arrays_and_compression_round_trip,
    forwarding_keeps_the_senders_compression_choice,
);

rhizomorph::wire_type! {
    /// An RPC call as hypha-rpc shapes it.
    #[derive(Debug, PartialEq)]
    pub struct Call @ 1 {
        pub kind: String,
        pub method: String,
        pub args: Vec<u8>,
    }
}

rhizomorph::wire_type! {
    /// Same name, another layout: must never be read as a `Call`.
    pub struct Other @ 1 {
        pub kind: u64,
    }
}

async fn typed_messages_bind_a_schema_once_and_are_checked(t: Transport) {
    let (url, client) = echo(t).await;
    let mut conn = Endpoint::connect(&url, client).await.unwrap();
    let sender = conn.sender();
    for i in 0..3u8 {
        let call = Call {
            kind: "method".into(),
            method: format!("services.echo.{i}"),
            args: vec![i; 256],
        };
        sender
            .send_typed(Channel::Rpc, header("echo"), &call)
            .await
            .unwrap();
        let m = within("typed echo", conn.recv()).await.unwrap();
        let archived = m.archived::<Call>().unwrap();
        let got = archived.get().unwrap();
        assert_eq!(got.method, call.method);
        assert_eq!(got.args.as_slice(), &call.args[..]);
        assert_eq!(archived.deserialize().unwrap(), call);
        // The same bytes are never read as another type.
        let e = m.archived::<Other>().err().unwrap();
        assert!(e.to_string().contains("SchemaMismatch"), "{e}");
    }
    // HELLO, one SCHEMA binding, three messages (each perhaps behind an alignment PADDING),
    // perhaps a PING: a second binding would exceed this.
    let frames = conn.stats().frames_sent;
    assert!(frames <= 1 + 1 + 3 * 2 + 1, "frames sent: {frames}");
}

async fn typed_arrays_and_compression_round_trip(t: Transport) {
    let (url, client) = echo_with(t, CompressionPolicy::Auto).await;
    let mut conn = Endpoint::connect(&url, client).await.unwrap();
    // A float64 random walk: compressible after a byte shuffle.
    let mut x = 0.0f64;
    let walk: Vec<f64> = (0..262_144u64)
        .map(|i| {
            x += ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / 16_777_216.0) - 0.5;
            x
        })
        .collect();
    conn.sender()
        .send_array(Channel::Bulk, header("echo"), &walk, &[512, 512])
        .await
        .unwrap();
    let m = within("array echo", conn.recv()).await.unwrap();
    assert!(
        m.compression != rhizomorph::frame::Compression::None,
        "a random walk should travel compressed"
    );
    let view = m.typed_array().unwrap();
    assert_eq!(view.dims(), &[512, 512]);
    assert_eq!(&view.as_slice::<f64>().unwrap()[..], &walk[..]);
    let sent = conn.stats().bytes_sent[Channel::Bulk.index()];
    assert!(sent < 2_097_152, "compressed on the wire: {sent} bytes");
    // Random bytes are left alone.
    let noise = pattern(100_000, 9);
    conn.send(Channel::Bulk, header("echo"), noise.clone())
        .await
        .unwrap();
    let m = within("noise echo", conn.recv()).await.unwrap();
    assert_eq!(m.compression, rhizomorph::frame::Compression::None);
    assert_eq!(m.payload, noise);
}

/// The echo server forwards with `Sender::forward`: its own policy (Auto) must not override
/// what the original sender chose (wire.md §12.2 is sender policy).
async fn forwarding_keeps_the_senders_compression_choice(t: Transport) {
    let (url, client) = echo_with(t, CompressionPolicy::Auto).await;
    let text = Bytes::from(br#"{"type":"method","to":"ws-1/echo","args":[1,2,3]}"#.repeat(2000));
    for (policy, compressed) in [
        (CompressionPolicy::Off, false),
        (CompressionPolicy::Auto, true),
    ] {
        let mut conn = Endpoint::connect(&url, client.clone().with_compression(policy))
            .await
            .unwrap();
        conn.send(Channel::Rpc, header("echo"), text.clone())
            .await
            .unwrap();
        let m = within("text echo", conn.recv()).await.unwrap();
        assert_eq!(
            m.compression != rhizomorph::frame::Compression::None,
            compressed,
            "sent with {policy:?}, echoed with {:?}",
            m.compression
        );
        assert_eq!(m.payload, text);
        conn.close().await;
    }
}

async fn echo_on_every_channel(t: Transport) {
    let (url, client) = echo(t).await;
    let mut conn = Endpoint::connect(&url, client).await.unwrap();
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
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Closed {
            code: ErrorCode::NO_ERROR,
            reason: "drained".into()
        })
    );
}

async fn large_messages_are_chunked_and_arrive_intact(t: Transport) {
    let (url, client) = echo(t).await;
    let mut conn = Endpoint::connect(&url, client).await.unwrap();
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

async fn rpc_overtakes_a_bulk_transfer(t: Transport) {
    let (url, client) = echo(t).await;
    let mut conn = Endpoint::connect(&url, client).await.unwrap();
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

async fn a_stalled_reader_stops_the_sender_at_its_windows(t: Transport) {
    let (server_cfg, client) = configs(t);
    let listener = bind(t, server_cfg).await;
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
    let conn = Endpoint::connect(&url, client).await.unwrap();
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
    // While the reader sleeps, the sender got rid of at most what the receiver may hold and
    // queued at most its send buffer (1 MiB) plus one message.
    let sent = conn.stats().bytes_sent[Channel::Bulk.index()];
    let queued = conn.queued_bytes(Channel::Bulk);
    let window = Settings::default().initial_channel_window;
    let bound = match t {
        // wire.md §9.6: one window of unreleased frames plus one message under reassembly.
        Transport::Ws => window + (1 << 20) + (64 << 10),
        // wire.md §17.5: what the session holds (a window of unreleased messages, one message
        // under reassembly, one read of up to 64 datagrams' segments), QUIC's stream window of
        // received-but-unread bytes, and the sender's one batch in flight to quinn.
        Transport::Quic => 2 * window + (1 << 20) + 64 * 1500 + (64 << 10),
    };
    assert!(
        sent <= bound,
        "sent {sent} bytes to a stalled reader (bound {bound})"
    );
    assert!(queued <= (2 << 20), "queued {queued} bytes");
    assert!(!push.is_finished(), "send() should be waiting for the peer");
    within("resume", push).await.unwrap();
    assert_eq!(within("server", server).await.unwrap(), 64 << 20);
}

async fn cancel_aborts_a_message_in_flight(t: Transport) {
    let (server_cfg, client) = configs(t);
    let listener = bind(t, server_cfg).await;
    let url = listener.url();
    let server = tokio::spawn(async move {
        let mut conn = listener.accept().await.unwrap();
        let m = conn.recv().await.unwrap();
        (m.sequence, m.payload)
    });
    let conn = Endpoint::connect(&url, client).await.unwrap();
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

async fn close_drains_what_is_in_flight(t: Transport) {
    let (server_cfg, client) = configs(t);
    let listener = bind(t, server_cfg).await;
    let url = listener.url();
    let server = tokio::spawn(async move {
        let mut conn = listener.accept().await.unwrap();
        let mut n = 0;
        while let Some(_m) = conn.recv().await {
            n += 1;
        }
        (n, conn.close_reason())
    });
    let conn = Endpoint::connect(&url, client).await.unwrap();
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

/// A relay between the client and `upstream` that can be killed: TCP (reset) for WebSocket,
/// UDP (every packet dropped from then on, as when a host dies) for QUIC.
async fn killable_relay(
    t: Transport,
    upstream: SocketAddr,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    match t {
        Transport::Ws => {
            let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = proxy.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut client, _) = proxy.accept().await.unwrap();
                let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = kill_rx => {
                        // SO_LINGER 0 sends RST: the peer vanishes.
                        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                        drop(client);
                        let _ = server.shutdown().await;
                    }
                }
            });
            (addr, kill_tx)
        }
        Transport::Quic => {
            let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
            back.connect(upstream).await.unwrap();
            let addr = front.local_addr().unwrap();
            tokio::spawn(async move {
                let client = Arc::new(tokio::sync::Mutex::new(None::<SocketAddr>));
                let (f, b, c) = (front.clone(), back.clone(), client.clone());
                let up = async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, from)) = f.recv_from(&mut buf).await {
                        *c.lock().await = Some(from);
                        let _ = b.send(&buf[..n]).await;
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = back.recv(&mut buf).await {
                        if let Some(to) = *client.lock().await {
                            let _ = front.send_to(&buf[..n], to).await;
                        }
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                    _ = kill_rx => {} // dropping both sockets: every later packet is lost
                }
            });
            (addr, kill_tx)
        }
    }
}

async fn abrupt_peer_death_is_an_error_not_a_hang(t: Transport) {
    let (url, client) = echo(t).await;
    let upstream: SocketAddr = url
        .split("://")
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let (relay, kill) = killable_relay(t, upstream).await;
    let scheme = url.split("://").next().unwrap();
    // A silent peer is noticed by the keepalive (wire.md §13.1): short timings for the test.
    let client = client.with_keepalive(Duration::from_millis(200), Duration::from_secs(1));
    let mut conn = Endpoint::connect(&format!("{scheme}://{relay}/"), client)
        .await
        .unwrap();
    conn.send(Channel::Rpc, header("echo"), "alive?")
        .await
        .unwrap();
    assert!(within("echo", conn.recv()).await.is_some());
    kill.send(()).unwrap();
    assert!(
        within("recv after death", conn.recv()).await.is_none(),
        "recv ends"
    );
    let reason = conn.close_reason();
    assert!(
        matches!(
            reason,
            Some(CloseReason::Lost(_))
                | Some(CloseReason::Closed {
                    code: ErrorCode::TIMEOUT,
                    ..
                })
        ),
        "{reason:?}"
    );
    let r = within(
        "send after death",
        conn.send(Channel::Rpc, header("echo"), "anyone?"),
    )
    .await;
    assert!(
        matches!(r, Err(Error::ConnectionLost(_)) | Err(Error::Closed { .. })),
        "{r:?}"
    );
}

async fn a_thousand_concurrent_messages(t: Transport) {
    let (url, client) = echo(t).await;
    let mut conn = Endpoint::connect(&url, client).await.unwrap();
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

/// Senders on several threads, each keeping its own order on its channel, with messages large
/// enough to back the transport up: whoever writes a batch (the writer task, or a sender
/// writing its own while the transport is idle), every sender's messages arrive complete and
/// in order, and nothing stalls when a write has to wait.
async fn senders_on_many_threads_keep_their_order(t: Transport) {
    const SENDERS: usize = 8;
    const EACH: usize = 60;
    let size = |k: usize, n: usize| [100, 3000, 150_000][(k + n) % 3];
    let (url, client) = echo(t).await;
    let mut conn = Endpoint::connect(&url, client).await.unwrap();
    let mut tasks = Vec::new();
    for k in 0..SENDERS {
        let sender = conn.sender();
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let mut h = header("echo");
                h.push("x-sender", k.to_string());
                h.push("x-n", n.to_string());
                let ch = Channel::ALL[k % 4];
                sender
                    .send(ch, h, pattern(size(k, n), (k * 7 + n) as u8))
                    .await
                    .unwrap();
            }
        }));
    }
    let mut next = [0usize; SENDERS];
    for _ in 0..SENDERS * EACH {
        let m = within("echoes", conn.recv()).await.unwrap();
        let k: usize = m.header.get_str("x-sender").unwrap().parse().unwrap();
        let n: usize = m.header.get_str("x-n").unwrap().parse().unwrap();
        assert_eq!(n, next[k], "sender {k}: message {n} out of order");
        assert_eq!(m.channel, Channel::ALL[k % 4]);
        assert_eq!(m.payload, pattern(size(k, n), (k * 7 + n) as u8));
        next[k] += 1;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(next, [EACH; SENDERS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_on_many_threads_keep_their_order_ws() {
    senders_on_many_threads_keep_their_order(Transport::Ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_on_many_threads_keep_their_order_quic() {
    senders_on_many_threads_keep_their_order(Transport::Quic).await
}
