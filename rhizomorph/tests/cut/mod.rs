//! The chaos proxies of the resumption tests: a TCP proxy (WebSocket) whose connections are
//! dropped at random, and a UDP proxy (QUIC) that turns into a black hole at random.
//!
//! Each relays one server on loopback; `cutting` turns the cuts on, `cuts` counts them,
//! `freeze` stops relaying for good without closing anything, `kill` also refuses what comes
//! next. Never looks inside what it relays.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rhizomorph_testkit::transports::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A chaos proxy in front of a server, for either transport.
pub enum Proxy {
    /// WebSocket: TCP connections dropped.
    Tcp(TcpCut),
    /// QUIC: datagrams black-holed.
    Udp(UdpCut),
}

impl Proxy {
    /// A proxy for transport `t` in front of `target`, cutting with the pattern of `seed` once
    /// [`cut`](Self::cut) turns it on.
    pub async fn start(t: Transport, target: SocketAddr, seed: u64) -> Proxy {
        match t {
            Transport::Ws => Proxy::Tcp(TcpCut::start(target, seed).await),
            Transport::Quic => Proxy::Udp(UdpCut::start(target, seed).await),
        }
    }

    /// The URL a client connects to.
    pub fn url(&self) -> String {
        match self {
            Proxy::Tcp(p) => format!("ws://127.0.0.1:{}/", p.port),
            Proxy::Udp(p) => format!("quic://localhost:{}", p.port),
        }
    }

    fn flags(&self) -> (&AtomicBool, &AtomicU64) {
        match self {
            Proxy::Tcp(p) => (&p.cutting, &p.cuts),
            Proxy::Udp(p) => (&p.cutting, &p.cuts),
        }
    }

    /// Turns the random cuts on or off.
    pub fn cut(&self, on: bool) {
        self.flags().0.store(on, Ordering::Relaxed);
    }

    /// Cuts so far.
    pub fn cuts(&self) -> u64 {
        self.flags().1.load(Ordering::Relaxed)
    }

    /// Stops relaying without closing anything: what is sent from now on is neither delivered
    /// nor acknowledged.
    pub fn freeze(&self) {
        match self {
            Proxy::Tcp(p) => p.frozen.store(true, Ordering::Relaxed),
            Proxy::Udp(p) => p.frozen.store(true, Ordering::Relaxed),
        }
    }

    /// Cuts every connection and refuses new ones from now on (the client never comes back).
    pub fn kill(&self) {
        match self {
            Proxy::Tcp(p) => {
                p.dead.store(true, Ordering::Relaxed);
                p.generation.send_modify(|g| *g += 1);
            }
            Proxy::Udp(p) => p.dead.store(true, Ordering::Relaxed),
        }
    }

    /// Relays again after [`kill`](Self::kill) (UDP: the server behind it may be a new one on
    /// the same port).
    pub fn revive(&self) {
        match self {
            Proxy::Tcp(p) => p.dead.store(false, Ordering::Relaxed),
            Proxy::Udp(p) => p.dead.store(false, Ordering::Relaxed),
        }
    }
}

/// A TCP proxy whose connections die at random: a timer cuts all of them every 50 ms – 2 s
/// while `cutting` (off until a test turns it on), and one new connection in five is cut
/// after its first 0 – 300 bytes (its HELLO, or the first frames of a replay).
pub struct TcpCut {
    port: u16,
    /// Every connection cut, and new ones refused: the client never comes back.
    dead: Arc<AtomicBool>,
    /// Nothing is relayed (the sockets stay open): a link that went silent.
    frozen: Arc<AtomicBool>,
    cutting: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl TcpCut {
    async fn start(target: SocketAddr, seed: u64) -> TcpCut {
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
        TcpCut {
            port,
            dead,
            frozen,
            cutting,
            cuts,
            generation,
        }
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

/// A UDP proxy for one client (the last address it heard from) whose link goes silent at
/// random: every 50 ms – 2 s of relaying (one pause in five only 0 – 60 ms, so that cuts land
/// in a reconnect's handshake, HELLO or replay), nothing passes either way for 0.7 – 1.2 s,
/// longer than the QUIC tests' keepalive timeout, so both sides detach. Datagrams in flight
/// at a cut are lost, mid-frame and mid-chunk.
pub struct UdpCut {
    port: u16,
    dead: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    cutting: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for UdpCut {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl UdpCut {
    async fn start(target: SocketAddr, seed: u64) -> UdpCut {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(target).await.unwrap();
        let port = front.local_addr().unwrap().port();
        let (dead, frozen) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (cutting, cuts) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let silent = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let passes = {
            let (dead, frozen, silent) = (dead.clone(), frozen.clone(), silent.clone());
            move || {
                !(dead.load(Ordering::Relaxed)
                    || frozen.load(Ordering::Relaxed)
                    || silent.load(Ordering::Relaxed))
            }
        };
        let mut tasks = Vec::new();
        {
            let (front, back, client, passes) =
                (front.clone(), back.clone(), client.clone(), passes.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap() = Some(from);
                    if passes() {
                        let _ = back.send(&buf[..n]).await;
                    }
                }
            }));
        }
        {
            let (front, back, client) = (front.clone(), back.clone(), client.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    // A restarted server is not there for a moment: ICMP errors come back as
                    // receive errors, which end nothing.
                    let Ok(n) = back.recv(&mut buf).await else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let to = *client.lock().unwrap();
                    if let (Some(to), true) = (to, passes()) {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            }));
        }
        {
            let (cutting, cuts) = (cutting.clone(), cuts.clone());
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            tasks.push(tokio::spawn(async move {
                loop {
                    let pause = if rng.random_range(0..5) == 0 {
                        rng.random_range(0..60)
                    } else {
                        rng.random_range(50..2_000)
                    };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    if cutting.load(Ordering::Relaxed) {
                        cuts.fetch_add(1, Ordering::Relaxed);
                        silent.store(true, Ordering::Relaxed);
                        let hole = rng.random_range(700..1_200);
                        tokio::time::sleep(Duration::from_millis(hole)).await;
                        silent.store(false, Ordering::Relaxed);
                    }
                }
            }));
        }
        UdpCut {
            port,
            dead,
            frozen,
            cutting,
            cuts,
            tasks,
        }
    }
}
