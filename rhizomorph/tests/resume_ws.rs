//! Resumable sessions over a real WebSocket (wire.md §21), through a TCP proxy that cuts every
//! connection at random points — mid-frame, mid-chunk, during the HELLO, during a replay —
//! every 50 ms to 2 s, while both sides stream numbered messages on all four channels (small
//! control and rpc messages, stream events, 8 MB bulk messages). Every message must arrive
//! exactly once and in order per channel. With the server killed and restarted instead, the
//! client's list of possibly-lost messages must cover every message that did not arrive.
//!
//! `RHIZOMORPH_CHAOS_SECS` sets how long the cutting lasts (default 8 s, the CI's short mode;
//! the full run is `RHIZOMORPH_CHAOS_SECS=30`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use rhizomorph::frame::ResumeStatus;
use rhizomorph::{
    Channel, Config, Connection, Endpoint, Listener, RoutingHeader, Sender, SessionEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BULK: usize = 8 << 20;

fn config() -> Config {
    Config::default()
        .with_resumption(4 << 20, Duration::from_secs(120))
        .with_keepalive(Duration::from_secs(2), Duration::from_secs(6))
}

fn chaos_secs() -> u64 {
    std::env::var("RHIZOMORPH_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

/// A TCP proxy whose connections die at random: a timer cuts all of them every 50 ms – 2 s
/// while `cutting` (off until a test turns it on), and one new connection in five is cut
/// after its first 0 – 300 bytes (its HELLO, or the first frames of a replay).
struct Proxy {
    port: u16,
    /// Every connection cut, and new ones refused: the client never comes back.
    dead: Arc<AtomicBool>,
    /// Nothing is relayed (the sockets stay open): a link that went silent.
    frozen: Arc<AtomicBool>,
    cutting: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Off until the test turns it on: the first connection is not resumable, and a cut
        // handshake there fails the connect while `accept` waits for ever (the hang of stop 31).
        let cutting = Arc::new(AtomicBool::new(false));
        let dead = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicU64::new(0));
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let rng = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)));
        {
            let (generation, cutting, cuts, rng) = (
                generation.clone(),
                cutting.clone(),
                cuts.clone(),
                rng.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let pause = rng.lock().unwrap().random_range(50..2_000);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    if cutting.load(Ordering::Relaxed) {
                        cuts.fetch_add(1, Ordering::Relaxed);
                        generation.send_modify(|g| *g += 1);
                    }
                }
            });
        }
        {
            let (generation, cutting, cuts) = (generation.clone(), cutting.clone(), cuts.clone());
            let (dead, frozen) = (dead.clone(), frozen.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    if dead.load(Ordering::Relaxed) {
                        continue; // refused: dropped at once
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        continue;
                    };
                    let budget = {
                        let mut r = rng.lock().unwrap();
                        (cutting.load(Ordering::Relaxed) && r.random_range(0..5) == 0)
                            .then(|| r.random_range(0..300u64))
                    };
                    if budget.is_some() {
                        cuts.fetch_add(1, Ordering::Relaxed);
                    }
                    let cut = generation.subscribe();
                    tokio::spawn(relay(client, server, cut, budget, frozen.clone()));
                }
            });
        }
        Proxy {
            port,
            dead,
            frozen,
            cutting,
            cuts,
            generation,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// Stops relaying without closing anything: what is sent from now on is neither delivered
    /// nor acknowledged.
    fn freeze(&self) {
        self.frozen.store(true, Ordering::Relaxed);
    }

    /// Cuts every connection and refuses new ones from now on.
    fn kill(&self) {
        self.dead.store(true, Ordering::Relaxed);
        self.generation.send_modify(|g| *g += 1);
    }
}

/// Copies both ways until the generation changes (a cut: both sockets dropped, whatever was
/// in flight lost) or `budget` bytes went from the client to the server.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    mut cut: tokio::sync::watch::Receiver<u64>,
    budget: Option<u64>,
    frozen: Arc<AtomicBool>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let thaw = || async {
        while frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        loop {
            thaw().await;
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let n = match budget {
                Some(b) => (b.saturating_sub(sent) as usize).min(n),
                None => n,
            };
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
            sent += n as u64;
            if budget.is_some_and(|b| sent >= b) {
                return; // cut after the budget
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            thaw().await;
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {}
    }
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

// spec: wire.md §21.5, §21.6 — cut at random points for the chaos duration while both sides
// stream on all four channels: every message delivered exactly once, in order per channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_21_6_websocket_cut_at_random_every_message_exactly_once() {
    let listener = Listener::bind("127.0.0.1:0", config()).await.unwrap();
    // A new cutting pattern each run (RHIZOMORPH_CHAOS_SEED repeats one; timing still varies).
    let seed = std::env::var("RHIZOMORPH_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("chaos seed {seed}");
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
        let msg = format!("chaos seed {seed}: not finished after {limit:?}: hung\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
        std::process::exit(101);
    });
    let proxy = Proxy::start(listener.local_addr().unwrap(), seed).await;
    let url = proxy.url();
    let (client, server) = tokio::join!(Endpoint::connect(&url, config()), listener.accept());
    let (client, server) = (client.unwrap(), server.unwrap());
    proxy.cutting.store(true, Ordering::Relaxed);
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
    proxy.cutting.store(false, Ordering::Relaxed);
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
    let cuts = proxy.cuts.load(Ordering::Relaxed);
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
        "chaos {secs} s ({:.1} s with the drain): {cuts} cuts, {resumed} resumes; client sent {from_client:?}, server sent {from_server:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "no resume may fail while the server runs: {failed:?}"
    );
    assert!(cuts >= secs / 2, "the proxy cut {cuts} times in {secs} s");
    assert!(resumed >= 1, "the client resumed");
    at_server.check(from_client, "server");
    at_client.check(from_server, "client");
    assert!(
        from_client[3] >= 2 && from_server[3] >= 2,
        "8 MB bulk messages went both ways"
    );
    drop((r1, r2, client_events_task, listener, proxy.generation));
}

/// A server on its own runtime: dropping the runtime kills every task and socket at once,
/// without CLOSE, as a killed process would.
fn server_runtime(port: u16, received: Received) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let listener = Listener::bind(&format!("127.0.0.1:{port}"), config())
            .await
            .unwrap();
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

// spec: wire.md §21.6.5 — the server process dies and comes back: the resume is refused
// (UNKNOWN_SESSION) and the client's list of possibly-lost messages covers every message that
// did not arrive; nothing is silently lost, and the connection goes on as a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_21_6_server_restart_reports_every_message_that_may_be_lost() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let before = Received::default();
    let rt = server_runtime(port, before.clone());
    let client = Endpoint::connect(&format!("ws://127.0.0.1:{port}/"), config())
        .await
        .unwrap();
    let (_events_task, events) = watch_events(&client);
    let stop = Arc::new(AtomicBool::new(false));
    let out = tokio::spawn(produce(client.sender(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    rt.shutdown_background(); // killed: no CLOSE, sockets gone
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = Received::default();
    let rt2 = tokio::task::spawn_blocking({
        let after = after.clone();
        move || server_runtime(port, after)
    })
    .await
    .unwrap();
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
        "server restart: sent {sent:?}, old server got {:?}, new server got {:?}, {lost_total} reported possibly lost",
        before.iter().map(Vec::len).collect::<Vec<_>>(),
        after.iter().map(Vec::len).collect::<Vec<_>>()
    );
    rt2.shutdown_background();
}

// spec: wire.md §21.4, §21.5.3 — a client that never comes back costs the server at most its
// replay limit (4 channels × RESUME_BUFFER), released at the time limit; the server's
// application learns which of its messages may be lost, and its sends wait meanwhile instead
// of queueing without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_21_5_a_client_that_never_returns_costs_at_most_the_replay_limit() {
    const BUFFER: u64 = 256 << 10;
    let config = || {
        Config::default()
            .with_resumption(BUFFER, Duration::from_secs(2))
            .with_keepalive(Duration::from_secs(1), Duration::from_secs(3))
    };
    let listener = Listener::bind("127.0.0.1:0", config()).await.unwrap();
    let proxy = Proxy::start(listener.local_addr().unwrap(), 7).await;
    let url = proxy.url();
    let (client, server) = tokio::join!(Endpoint::connect(&url, config()), listener.accept());
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
        "detached session holds at most {most} bytes for replay (limit {} = 4 x {BUFFER})",
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
    println!("the server's application sent {sent} messages, {lost} reported possibly lost");
}
