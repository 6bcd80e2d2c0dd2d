//! Resumable sessions over a real WebSocket and real QUIC (wire.md §21, §17.6.5), through a
//! proxy that cuts every connection at random points — mid-frame, mid-chunk, during the HELLO,
//! during a replay — every 50 ms to 2 s, while both sides stream numbered messages on all four
//! channels (small control and rpc messages, stream events, 8 MB bulk messages). Every message
//! must arrive exactly once and in order per channel. With the server killed and restarted
//! instead, the client's list of possibly-lost messages must cover every message that did not
//! arrive.
//!
//! Over WebSocket the proxy relays TCP and a cut drops both sockets. Over QUIC it relays UDP
//! and a cut is a black hole (nothing passes for longer than the keepalive timeout): a QUIC
//! connection has no reset a middlebox could send, so the sessions detach on silence
//! (§21.5.1), give the connection up (`TRANSPORT_ABANDONED`) and the client dials again.
//!
//! `RHIZOMORPH_CHAOS_SECS` sets how long the cutting lasts (default 8 s, the CI's short mode;
//! the full run is `RHIZOMORPH_CHAOS_SECS=30`).

mod cut;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cut::Proxy;
use rhizomorph::frame::ResumeStatus;
use rhizomorph::transport::tls;
use rhizomorph::{
    Channel, Config, Connection, Endpoint, Listener, RoutingHeader, Sender, SessionEvent,
};
use rhizomorph_testkit::transports::{self, Transport};

const BULK: usize = 8 << 20;

/// Resumable sessions. Over QUIC a cut is silence, so the keepalive that detects it is short.
fn base(t: Transport) -> Config {
    let c = Config::default().with_resumption(4 << 20, Duration::from_secs(120));
    match t {
        Transport::Ws => c.with_keepalive(Duration::from_secs(2), Duration::from_secs(6)),
        Transport::Quic => c.with_keepalive(Duration::from_millis(150), Duration::from_millis(600)),
    }
}

fn chaos_secs() -> u64 {
    std::env::var("RHIZOMORPH_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

fn header(n: u64) -> RoutingHeader {
    RoutingHeader::new().with("n", n.to_string())
}

fn number(m: &rhizomorph::Message) -> u64 {
    m.header
        .get_str("n")
        .and_then(|s| s.parse().ok())
        .expect("numbered")
}

/// Incompressible payloads (compression would shrink them to nothing): slices of one random
/// 8 MB buffer.
fn payload(channel: Channel, n: u64, bulk: &Bytes) -> Bytes {
    let at = (n as usize * 7_919) % (BULK - 8_192);
    match channel {
        Channel::Control => bulk.slice(at..at + 16),
        Channel::Rpc => bulk.slice(at..at + 64 + (n as usize % 200)),
        Channel::Stream => bulk.slice(at..at + 1_000 + (n as usize % 3_000)),
        Channel::Bulk => bulk.clone(),
    }
}

fn noise(len: usize) -> Bytes {
    // xorshift64*: fast enough in a debug build for 8 MB.
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ len as u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// Sends numbered messages on all four channels until `stop`, then returns how many per channel.
async fn produce(conn: Sender, stop: Arc<AtomicBool>) -> [u64; 4] {
    let bulk = noise(BULK);
    let tasks = Channel::ALL.map(|ch| {
        let sender = conn.clone();
        let (stop, bulk) = (stop.clone(), bulk.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sender
                    .send(ch, header(n), payload(ch, n, &bulk))
                    .await
                    .unwrap_or_else(|e| panic!("send {ch} #{n}: {e}"));
                n += 1;
                let pause = match ch {
                    Channel::Control => 20,
                    Channel::Rpc => 1,
                    Channel::Stream => 5,
                    Channel::Bulk => 100,
                };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            n
        })
    });
    let mut sent = [0u64; 4];
    for (i, t) in tasks.into_iter().enumerate() {
        sent[i] = t.await.unwrap();
    }
    sent
}

/// What one side received, per channel, in order.
#[derive(Default, Clone)]
struct Received(Arc<Mutex<[Vec<u64>; 4]>>);

impl Received {
    fn counts(&self) -> [usize; 4] {
        let r = self.0.lock().unwrap();
        [0, 1, 2, 3].map(|i| r[i].len())
    }

    fn check(&self, sent: [u64; 4], who: &str) {
        let r = self.0.lock().unwrap();
        for ch in Channel::ALL {
            let want: Vec<u64> = (0..sent[ch.index()]).collect();
            let got = &r[ch.index()];
            assert!(
                got == &want,
                "{who} {ch}: {} received of {} sent; first difference at {:?}",
                got.len(),
                want.len(),
                got.iter().zip(&want).position(|(a, b)| a != b)
            );
        }
    }
}

/// Receives until the connection ends, recording numbers; `events` collects session events.
fn consume(mut conn: Connection, received: Received) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(m) = conn.recv().await {
            received.0.lock().unwrap()[m.channel.index()].push(number(&m));
        }
    })
}

fn watch_events(conn: &Connection) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<SessionEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    // Another handle on the same connection: session events only.
    let handle = conn.sender();
    let e = events.clone();
    let t = tokio::spawn(async move {
        while let Some(ev) = handle.next_session_event().await {
            e.lock().unwrap().push(ev);
        }
    });
    (t, events)
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Server and client configs for `t` from `base` (over QUIC, a fresh self-signed
/// certificate the client pins).
fn configs(t: Transport, base: Config) -> (Config, Config) {
    transports::configs(t, base)
}

/// Binds a listener for `t` on `addr`.
async fn bind(t: Transport, addr: &str, config: Config) -> Listener {
    match t {
        Transport::Ws => Listener::bind(addr, config).await.unwrap(),
        Transport::Quic => Listener::bind_quic(addr, config).unwrap(),
    }
}

// spec: wire.md §21.5, §21.6 — cut at random points for the chaos duration while both sides
// stream on all four channels: every message delivered exactly once, in order per channel.
async fn cut_at_random_every_message_exactly_once(t: Transport) {
    let (server_config, client_config) = configs(t, base(t));
    let listener = bind(t, "127.0.0.1:0", server_config).await;
    // A new cutting pattern each run (RHIZOMORPH_CHAOS_SEED repeats one; timing still varies).
    let seed = std::env::var("RHIZOMORPH_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("{t:?} chaos seed {seed}");
    if std::env::var_os("RUST_LOG").is_some() {
        // RUST_LOG=rhizomorph=debug shows what a run that hangs was doing.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    // A hang (seen once in CI at stop 31) fails the run with its seed instead of blocking CI;
    // written past the test harness's output capture, since the process exits.
    let limit = Duration::from_secs(chaos_secs() + 120);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let msg = format!("{t:?} chaos seed {seed}: not finished after {limit:?}: hung\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
        std::process::exit(101);
    });
    let proxy = Proxy::start(t, listener.local_addr().unwrap(), seed).await;
    let url = proxy.url();
    let (client, server) = tokio::join!(Endpoint::connect(&url, client_config), listener.accept());
    let (client, server) = (client.unwrap(), server.unwrap());
    proxy.cut(true);
    let (client_events_task, client_events) = watch_events(&client);
    let stop = Arc::new(AtomicBool::new(false));
    let (at_client, at_server) = (Received::default(), Received::default());
    let client_out = tokio::spawn(produce(client.sender(), stop.clone()));
    let server_out = tokio::spawn(produce(server.sender(), stop.clone()));
    let r1 = consume(client, at_client.clone());
    let r2 = consume(server, at_server.clone());
    let secs = chaos_secs();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    proxy.cut(false);
    stop.store(true, Ordering::Relaxed);
    let from_client = client_out.await.unwrap();
    let from_server = server_out.await.unwrap();
    until("everything delivered", Duration::from_secs(60), || {
        at_server
            .counts()
            .iter()
            .zip(from_client)
            .all(|(&g, s)| g as u64 >= s)
            && at_client
                .counts()
                .iter()
                .zip(from_server)
                .all(|(&g, s)| g as u64 >= s)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a duplicate would show by now
    let cuts = proxy.cuts();
    let events = client_events.lock().unwrap().clone();
    let resumed = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Resumed { .. }))
        .count();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::ResumeFailed { .. }))
        .collect();
    println!(
        "{t:?} chaos {secs} s ({:.1} s with the drain): {cuts} cuts, {resumed} resumes; client sent {from_client:?}, server sent {from_server:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "no resume may fail while the server runs: {failed:?}"
    );
    // A QUIC cut holds the link silent for about a second besides the pause before it.
    let least = if t == Transport::Quic {
        secs / 3
    } else {
        secs / 2
    };
    assert!(cuts >= least, "the proxy cut {cuts} times in {secs} s");
    assert!(resumed >= 1, "the client resumed");
    at_server.check(from_client, "server");
    at_client.check(from_server, "client");
    assert!(
        from_client[3] >= 2 && from_server[3] >= 2,
        "8 MB bulk messages went both ways"
    );
    drop((r1, r2, client_events_task, listener, proxy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_21_6_websocket_cut_at_random_every_message_exactly_once() {
    cut_at_random_every_message_exactly_once(Transport::Ws).await;
}

// spec: wire.md §17.6.5 — over QUIC too: each cut a black hole the keepalive detaches on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_21_6_quic_cut_at_random_every_message_exactly_once() {
    cut_at_random_every_message_exactly_once(Transport::Quic).await;
}

/// A server on its own runtime: dropping the runtime kills every task and socket at once,
/// without CLOSE, as a killed process would.
fn server_runtime(
    t: Transport,
    port: u16,
    config: Config,
    received: Received,
) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let listener = bind(t, &format!("127.0.0.1:{port}"), config).await;
        tx.send(()).unwrap();
        loop {
            let Ok(conn) = listener.accept().await else {
                return;
            };
            drop(consume(conn, received.clone())); // the task runs on
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    rt
}

/// A port free on loopback for `t` (TCP or UDP).
fn free_port(t: Transport) -> u16 {
    match t {
        Transport::Ws => std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
        Transport::Quic => std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    }
}

// spec: wire.md §21.6.5 — the server process dies and comes back: the resume is refused
// (UNKNOWN_SESSION) and the client's list of possibly-lost messages covers every message that
// did not arrive; nothing is silently lost, and the connection goes on as a new session. The
// client reaches the server through the proxy, which is dead while the server is (a killed
// process sends nothing, not even QUIC's close).
async fn server_restart_reports_every_message_that_may_be_lost(t: Transport) {
    let port = free_port(t);
    // Over QUIC both server processes present the same certificate, which the client pins.
    let (server_config, client_config) = match t {
        Transport::Ws => (base(t), base(t)),
        Transport::Quic => {
            let (cert, key, fp) = tls::self_signed(&["localhost"]).unwrap();
            let server = base(t).with_server_tls(tls::server_tls(vec![cert], key).unwrap());
            (
                server,
                base(t).with_client_tls(tls::client_tls_pinned(&fp).unwrap()),
            )
        }
    };
    let before = Received::default();
    let rt = server_runtime(t, port, server_config.clone(), before.clone());
    let proxy = Proxy::start(t, format!("127.0.0.1:{port}").parse().unwrap(), 1).await;
    let client = Endpoint::connect(&proxy.url(), client_config)
        .await
        .unwrap();
    let (_events_task, events) = watch_events(&client);
    let stop = Arc::new(AtomicBool::new(false));
    let out = tokio::spawn(produce(client.sender(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    proxy.kill();
    rt.shutdown_background(); // killed: no CLOSE, sockets gone
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = Received::default();
    let rt2 = tokio::task::spawn_blocking({
        let after = after.clone();
        move || server_runtime(t, port, server_config, after)
    })
    .await
    .unwrap();
    proxy.revive();
    until("the resume fails", Duration::from_secs(30), || {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, SessionEvent::ResumeFailed { .. }))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = out.await.unwrap();
    until(
        "the new server has the new messages",
        Duration::from_secs(30),
        || {
            after
                .counts()
                .iter()
                .zip(sent)
                .all(|(&g, s)| g > 0 || s == 0)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let events = events.lock().unwrap().clone();
    let (status, lost) = events
        .iter()
        .find_map(|e| match e {
            SessionEvent::ResumeFailed { status, lost } => Some((*status, lost.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(status, ResumeStatus::UnknownSession);
    let before = before.0.lock().unwrap().clone();
    let after = after.0.lock().unwrap().clone();
    let mut lost_total = 0;
    for ch in Channel::ALL {
        let i = ch.index();
        let lost: BTreeSet<u64> = lost
            .iter()
            .filter(|l| l.channel == ch)
            .map(|l| l.message.header.get_str("n").unwrap().parse().unwrap())
            .collect();
        lost_total += lost.len();
        let arrived: BTreeSet<u64> = before[i].iter().chain(&after[i]).copied().collect();
        for n in 0..sent[i] {
            assert!(
                arrived.contains(&n) || lost.contains(&n),
                "{ch} #{n}: neither arrived nor reported as possibly lost"
            );
        }
        // What the old server had in order arrived once; the new session starts afresh.
        let old: Vec<u64> = before[i].clone();
        assert!(
            old.windows(2).all(|w| w[1] == w[0] + 1),
            "{ch}: old server in order"
        );
    }
    println!(
        "{t:?} server restart: sent {sent:?}, old server got {:?}, new server got {:?}, {lost_total} reported possibly lost",
        before.iter().map(Vec::len).collect::<Vec<_>>(),
        after.iter().map(Vec::len).collect::<Vec<_>>()
    );
    rt2.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_21_6_websocket_server_restart_reports_every_message_that_may_be_lost() {
    server_restart_reports_every_message_that_may_be_lost(Transport::Ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_21_6_quic_server_restart_reports_every_message_that_may_be_lost() {
    server_restart_reports_every_message_that_may_be_lost(Transport::Quic).await;
}

// spec: wire.md §21.4, §21.5.3 — a client that never comes back costs the server at most its
// replay limit (4 channels × RESUME_BUFFER), released at the time limit; the server's
// application learns which of its messages may be lost, and its sends wait meanwhile instead
// of queueing without bound.
async fn a_client_that_never_returns_costs_at_most_the_replay_limit(t: Transport) {
    const BUFFER: u64 = 256 << 10;
    let base = Config::default()
        .with_resumption(BUFFER, Duration::from_secs(2))
        .with_keepalive(Duration::from_secs(1), Duration::from_secs(3));
    let (server_config, client_config) = configs(t, base);
    let listener = bind(t, "127.0.0.1:0", server_config).await;
    let proxy = Proxy::start(t, listener.local_addr().unwrap(), 7).await;
    let url = proxy.url();
    let (client, server) = tokio::join!(Endpoint::connect(&url, client_config), listener.accept());
    let (client, server) = (client.unwrap(), server.unwrap());
    // The server streams 4 KB events (incompressible) on every channel but control; the client
    // reads them.
    let sender = server.sender();
    let noise = noise(4096);
    let streaming = tokio::spawn(async move {
        let mut sent = 0u64;
        for n in 0.. {
            let ch = [Channel::Rpc, Channel::Stream, Channel::Bulk][n as usize % 3];
            if sender.send(ch, header(n), noise.clone()).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let _reader = consume(client, Received::default());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The link goes silent first (what the server sends now is never acknowledged), then dies.
    proxy.freeze();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.kill();
    until("the server detaches", Duration::from_secs(10), || {
        listener.detached_sessions().0 == 1
    })
    .await;
    // However long the server's application keeps sending, what it holds stays bounded.
    let mut most = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (n, bytes) = listener.detached_sessions();
        if n == 0 {
            break;
        }
        most = most.max(bytes);
    }
    println!(
        "{t:?}: detached session holds at most {most} bytes for replay (limit {} = 4 x {BUFFER})",
        4 * BUFFER
    );
    assert!(most > 0 && most <= 4 * BUFFER, "held {most}");
    until(
        "released after the time limit",
        Duration::from_secs(10),
        || listener.detached_sessions() == (0, 0),
    )
    .await;
    let reason = tokio::time::timeout(Duration::from_secs(5), server.closed())
        .await
        .expect("closed");
    println!("server side ended: {reason:?}");
    let mut expired = None;
    while let Ok(Some(e)) =
        tokio::time::timeout(Duration::from_millis(200), server.next_session_event()).await
    {
        if let SessionEvent::ResumeFailed { status, lost } = e {
            expired = Some((status, lost.len()));
        }
    }
    let (status, lost) = expired.expect("ResumeFailed");
    assert_eq!(status, ResumeStatus::Expired);
    assert!(lost > 0, "the unacknowledged messages are reported");
    let sent = streaming.await.unwrap();
    println!("{t:?}: the server's application sent {sent} messages, {lost} reported possibly lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_21_5_websocket_a_client_that_never_returns_costs_at_most_the_replay_limit() {
    a_client_that_never_returns_costs_at_most_the_replay_limit(Transport::Ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_21_5_quic_a_client_that_never_returns_costs_at_most_the_replay_limit() {
    a_client_that_never_returns_costs_at_most_the_replay_limit(Transport::Quic).await;
}
