//! A traffic-shaping UDP relay for QUIC tests and benchmarks: per direction, a bottleneck that
//! serializes datagrams at a fixed rate behind a queue of bounded size (tail drop), plus random
//! loss.
//!
//! It models a slow, lossy path on loopback (e.g. 100 Mbit/s, a 64 KB queue, 1% loss) without
//! root or network namespaces. It relays one client at a time (the first address it hears from
//! on its front socket). Never looks inside the datagrams it carries.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::shaper::LinkShape;

/// A running UDP relay; dropping it stops relaying.
#[derive(Debug)]
pub struct UdpShaper {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for UdpShaper {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A small deterministic generator for loss decisions (xorshift64*).
struct Loss {
    state: u64,
    /// Probability of dropping a datagram, in parts per million.
    ppm: u64,
}

impl Loss {
    fn drop_next(&mut self) -> bool {
        if self.ppm == 0 {
            return false;
        }
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % 1_000_000 < self.ppm
    }
}

/// One direction of the path: a rate-limited bottleneck with a bounded queue.
struct Bottleneck {
    shape: LinkShape,
    busy_until: Instant,
    loss: Loss,
    queued: VecDeque<(Instant, usize)>,
}

impl Bottleneck {
    /// When a `len`-byte datagram arriving now leaves the bottleneck, or `None` if it is
    /// dropped (queue full, or lost).
    fn admit(&mut self, now: Instant, len: usize) -> Option<Instant> {
        while self.queued.front().is_some_and(|&(t, _)| t <= now) {
            self.queued.pop_front();
        }
        let backlog: usize = self.queued.iter().map(|&(_, l)| l).sum();
        if backlog + len > self.shape.queue_bytes || self.loss.drop_next() {
            return None;
        }
        let start = self.busy_until.max(now);
        let done = start + Duration::from_secs_f64(len as f64 / self.shape.bytes_per_sec);
        self.busy_until = done;
        self.queued.push_back((done, len));
        Some(done)
    }
}

impl UdpShaper {
    /// Starts a relay on 127.0.0.1 in front of `upstream`, shaping both directions with
    /// `shape` and dropping `loss` (0.0 – 1.0) of the datagrams at random (seeded: the same
    /// run drops the same datagrams).
    pub async fn start(upstream: SocketAddr, shape: LinkShape, loss: f64) -> io::Result<UdpShaper> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        back.connect(upstream).await?;
        let addr = front.local_addr()?;
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let ppm = (loss.clamp(0.0, 1.0) * 1e6) as u64;
        let bottleneck = |seed| Bottleneck {
            shape,
            busy_until: Instant::now(),
            loss: Loss { state: seed, ppm },
            queued: VecDeque::new(),
        };

        // Each direction: a reader that admits datagrams into the bottleneck, and a writer
        // that sends them when they leave it.
        let (up_tx, up_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        let (down_tx, down_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        let mut tasks = Vec::new();
        {
            let (front, client) = (front.clone(), client.clone());
            let mut link = bottleneck(0x9E37_79B9_7F4A_7C15);
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().await = Some(from);
                    if let Some(at) = link.admit(Instant::now(), n) {
                        let _ = up_tx.send((at, buf[..n].to_vec()));
                    }
                }
            }));
        }
        {
            let back = back.clone();
            let mut link = bottleneck(0xD1B5_4A32_D192_ED03);
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = back.recv(&mut buf).await {
                    if let Some(at) = link.admit(Instant::now(), n) {
                        let _ = down_tx.send((at, buf[..n].to_vec()));
                    }
                }
            }));
        }
        tasks.push(tokio::spawn(deliver(up_rx, move |d| {
            let back = back.clone();
            async move {
                let _ = back.send(&d).await;
            }
        })));
        tasks.push(tokio::spawn(deliver(down_rx, move |d| {
            let (front, client) = (front.clone(), client.clone());
            async move {
                if let Some(to) = *client.lock().await {
                    let _ = front.send_to(&d, to).await;
                }
            }
        })));
        Ok(UdpShaper { addr, tasks })
    }

    /// Where the client sends.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Sends each datagram when it leaves the bottleneck (plus nothing: loopback has no delay).
async fn deliver<F, Fut>(mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>, send: F)
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while let Some((at, d)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        send(d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_drops_about_the_asked_share() {
        let mut l = Loss {
            state: 12345,
            ppm: 10_000,
        };
        let dropped = (0..100_000).filter(|_| l.drop_next()).count();
        assert!((800..1200).contains(&dropped), "{dropped}");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_the_rate_spaces_departures() {
        let now = Instant::now();
        let mut b = Bottleneck {
            shape: LinkShape {
                bytes_per_sec: 1_000_000.0,
                queue_bytes: 3000,
            },
            busy_until: now,
            loss: Loss { state: 1, ppm: 0 },
            queued: VecDeque::new(),
        };
        let t1 = b.admit(now, 1000).unwrap();
        let t2 = b.admit(now, 1000).unwrap();
        assert_eq!(t1 - now, Duration::from_millis(1));
        assert_eq!(t2 - now, Duration::from_millis(2));
        b.admit(now, 1000).unwrap();
        assert!(b.admit(now, 1000).is_none(), "queue of 3000 bytes is full");
    }
}
