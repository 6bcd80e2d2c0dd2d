//! The hostile-peer suite against a real `rhizomorph serve` process (issue 18): each attack
//! runs while a healthy client times echo round trips, and the server's resident memory and
//! open fds are read from `/proc/<pid>`, outside the process under attack.
//!
//! Short by default (2 s per attack, what CI runs); `scripts/hostile.sh` runs the long mode
//! (`RHIZOMORPH_HOSTILE_SECS=30`). Bounds checked per attack: server RSS growth under 64 MiB
//! (its windows, send buffers and reassembly budget are a few MiB per connection here), fds back
//! to the baseline within 5 s of any number of connect/disconnect cycles, and the healthy
//! client's p99 within 5× its idle p99 (idle p99 counted as at least 1 ms: loopback on a shared
//! two-core machine).

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhizomorph::frame::{Codec, Settings, Shuffle};
use rhizomorph::session::OutgoingMessage;
use rhizomorph::{Channel, Config, Connection, Endpoint, RoutingHeader};
use rhizomorph_testkit::process::{open_fds_of, rss_kib_of};
use rhizomorph_testkit::raw_ws::{frame, legacy_client};

/// Seconds each attack lasts.
fn attack_secs() -> Duration {
    let secs = std::env::var("RHIZOMORPH_HOSTILE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    Duration::from_secs(secs)
}

/// A `rhizomorph serve` process on a free port; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rhizomorph"))
            .args(["serve", "--addr", &addr.to_string()])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rhizomorph serve");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn rss_kib(&self) -> u64 {
        rss_kib_of(&self.pid())
    }

    fn fds(&self) -> usize {
        open_fds_of(&self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn to(target: &str) -> RoutingHeader {
    RoutingHeader::new().with("to", target.to_string())
}

/// Echo round trips on `conn` for `d` (at least 50), sorted.
async fn echo_rtts(conn: &mut Connection, d: Duration) -> Vec<Duration> {
    let mut rtts = Vec::new();
    let until = Instant::now() + d;
    while Instant::now() < until || rtts.len() < 50 {
        let t = Instant::now();
        conn.send(Channel::Rpc, to("echo"), Bytes::from_static(b"ping"))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), conn.recv())
            .await
            .expect("echo within 10 s")
            .expect("echo");
        assert_eq!(&reply.payload[..], b"ping");
        rtts.push(t.elapsed());
    }
    rtts.sort();
    rtts
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

/// What one attack did to the server and to the healthy client.
struct Outcome {
    name: &'static str,
    rss_grown_kib: u64,
    p99: Duration,
}

/// Runs `attack` (until `stop` is set) while the healthy client measures for the attack's
/// length; returns the server's RSS growth and the healthy p99.
async fn under_attack<F>(
    name: &'static str,
    server: &Server,
    healthy: &mut Connection,
    attack: F,
) -> Outcome
where
    F: FnOnce(Arc<AtomicBool>) -> tokio::task::JoinHandle<()>,
{
    let before = server.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let task = attack(stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rtts = echo_rtts(healthy, attack_secs()).await;
    let peak = server.rss_kib();
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    Outcome {
        name,
        rss_grown_kib: peak.saturating_sub(before),
        p99: p99(&rtts),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_serve_holds_its_bounds_under_every_attack() {
    let server = Server::start();
    let url = server.url();
    let mut healthy = Endpoint::connect(&url, Config::default()).await.unwrap();
    echo_rtts(&mut healthy, Duration::from_millis(300)).await;
    let idle = p99(&echo_rtts(&mut healthy, Duration::from_secs(1)).await);
    let mut outcomes = Vec::new();

    // 1. Empty messages from a peer with tiny windows that never grants credit (issue 18 #1).
    let tiny = Settings::default()
        .with_initial_channel_window(4096)
        .with_initial_connection_window(4096);
    let (u, t) = (url.clone(), tiny);
    outcomes.push(
        under_attack(
            "empty-message flood, no credit",
            &server,
            &mut healthy,
            |stop| {
                tokio::spawn(async move {
                    let attacker = Endpoint::connect(&u, Config::default().with_settings(t))
                        .await
                        .unwrap();
                    let sender = attacker.sender();
                    while !stop.load(Ordering::Relaxed) {
                        let send = sender.send(Channel::Rpc, to("echo"), Bytes::new());
                        if let Ok(Err(_)) =
                            tokio::time::timeout(Duration::from_millis(100), send).await
                        {
                            break;
                        }
                    }
                    drop(attacker);
                })
            },
        )
        .await,
    );

    // 2. Broadcasts to 10 receivers that never read (issue 18 #3).
    let u = url.clone();
    outcomes.push(
        under_attack(
            "broadcast to stalled receivers",
            &server,
            &mut healthy,
            |stop| {
                tokio::spawn(async move {
                    let mut stalled = Vec::new();
                    for i in 0..10 {
                        let c = Config::default()
                            .with_settings(tiny)
                            .with_token(format!("ws-h/stalled-{i}"));
                        stalled.push(Endpoint::connect(&u, c).await.unwrap());
                    }
                    let caster = Endpoint::connect(&u, Config::default().with_token("ws-h/caster"))
                        .await
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        if caster
                            .send(Channel::Rpc, to("ws-h/*"), Bytes::new())
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    drop(stalled);
                })
            },
        )
        .await,
    );

    // 3. lz4 bombs within the limits, 50 a second from each of two peers (issue 18 #9).
    let zeros = Bytes::from(vec![0u8; 64 << 20]);
    let (bomb, compression) =
        rhizomorph::payload::compress(&zeros, Some((Codec::Lz4, Shuffle::None)));
    let u = url.clone();
    outcomes.push(
        under_attack("compression bombs", &server, &mut healthy, |stop| {
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for _ in 0..2 {
                    let (u, bomb, stop) = (u.clone(), bomb.clone(), stop.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut conn = Endpoint::connect(&u, Config::default()).await.unwrap();
                        let sender = conn.sender();
                        let mut tick = tokio::time::interval(Duration::from_millis(20));
                        while !stop.load(Ordering::Relaxed) {
                            tick.tick().await;
                            let m = OutgoingMessage {
                                compression,
                                ..OutgoingMessage::new(to("echo"), bomb.clone())
                            };
                            if sender.send_message(Channel::Bulk, m).await.is_err()
                                || conn.recv_raw().await.is_none()
                            {
                                break;
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })
        .await,
    );

    // 4. Legacy pings from a client that never reads (issue 18 #6b).
    let addr = server.addr;
    outcomes.push(
        under_attack(
            "legacy ping flood, never reading",
            &server,
            &mut healthy,
            |stop| {
                tokio::task::spawn_blocking(move || {
                    let mut c = legacy_client(addr, "flooder");
                    let ping = frame(0x1, br#"{"type": "ping"}"#);
                    let chunk: Vec<u8> = ping
                        .iter()
                        .copied()
                        .cycle()
                        .take(ping.len() * 1000)
                        .collect();
                    c.set_write_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        if c.write_all(&chunk).is_err() {
                            // The server stopped reading (a full socket): keep the pressure on.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                })
            },
        )
        .await,
    );

    eprintln!("healthy p99 idle {idle:?}");
    for o in &outcomes {
        eprintln!(
            "{:<36} server RSS +{:>7} KiB, healthy p99 {:?}",
            o.name, o.rss_grown_kib, o.p99
        );
    }
    let p99_bound = 5 * idle.max(Duration::from_millis(1));
    for o in &outcomes {
        assert!(
            o.rss_grown_kib < 64 * 1024,
            "{}: server RSS grew {} KiB",
            o.name,
            o.rss_grown_kib
        );
        assert!(
            o.p99 <= p99_bound,
            "{}: healthy p99 {:?} (bound {p99_bound:?})",
            o.name,
            o.p99
        );
    }

    // 5. Connect/disconnect cycles, both modes and every way of leaving (issue 18 #5): the
    //    server's fds return to the baseline within 5 s.
    let baseline = server.fds();
    let cycles = 20 * attack_secs().as_secs().max(1);
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        for i in 0..cycles {
            drop(legacy_client(addr, &format!("cycle-tcp-{i}")));
            let mut c = legacy_client(addr, &format!("cycle-close-{i}"));
            let _ = c.write_all(&frame(0x8, &1000u16.to_be_bytes()));
            let mut c = legacy_client(addr, &format!("cycle-proto-{i}"));
            let _ = c.write_all(&[0x82, 0x01, 0x00]);
        }
    })
    .await
    .unwrap();
    for i in 0..cycles {
        let c = Endpoint::connect(&url, Config::default().with_token(format!("ws-c/n-{i}")))
            .await
            .unwrap();
        if i % 2 == 0 {
            c.close().await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut fds = server.fds();
    while fds > baseline + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds = server.fds();
    }
    eprintln!(
        "{} connect/disconnect cycles: server fds {baseline} before, {fds} after",
        cycles * 4
    );
    assert!(fds <= baseline + 2, "server fds {baseline} -> {fds}");
    healthy.close().await;
}
