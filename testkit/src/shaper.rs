//! A traffic-shaping TCP proxy for tests and benchmarks: a token bucket at a fixed rate in
//! front of a bottleneck queue of bounded size, in each direction.
//!
//! It models a slow link on loopback (e.g. 100 Mbit/s with a 64 KB bottleneck queue), so
//! head-of-line blocking can be measured without root or network namespaces. It keeps its own
//! socket buffers small, so the only queue on the path is the one it is told to have. Never
//! looks at the bytes it carries.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running shaping proxy; dropping it stops accepting (open connections finish on their own).
#[derive(Debug)]
pub struct Shaper {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The link a shaper models.
#[derive(Debug, Clone, Copy)]
pub struct LinkShape {
    /// Bytes per second in each direction.
    pub bytes_per_sec: f64,
    /// Bytes the bottleneck queue holds, per direction.
    pub queue_bytes: usize,
}

impl LinkShape {
    /// `mbit` megabits per second with a `queue_kb` kilobyte queue.
    pub fn mbit(mbit: f64, queue_kb: usize) -> Self {
        LinkShape {
            bytes_per_sec: mbit * 1e6 / 8.0,
            queue_bytes: queue_kb * 1000,
        }
    }
}

/// Small kernel buffers on the proxy's sockets, so bytes wait in the modelled queue (where the
/// rate applies) and not in socket buffers.
const SOCKET_BUFFER: u32 = 16 * 1024;

impl Shaper {
    /// Starts a proxy on 127.0.0.1 that forwards every connection to `upstream` through `shape`.
    pub async fn start(upstream: SocketAddr, shape: LinkShape) -> io::Result<Shaper> {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(SOCKET_BUFFER)?;
        socket.set_send_buffer_size(SOCKET_BUFFER)?;
        socket.bind("127.0.0.1:0".parse().expect("literal address"))?;
        let listener: TcpListener = socket.listen(128)?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = proxy(client, upstream, shape).await;
                });
            }
        });
        Ok(Shaper { addr, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn proxy(client: TcpStream, upstream: SocketAddr, shape: LinkShape) -> io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(SOCKET_BUFFER)?;
    socket.set_send_buffer_size(SOCKET_BUFFER)?;
    let server = socket.connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pump(cr, sw, shape));
    let down = tokio::spawn(pump(sr, cw, shape));
    let _ = tokio::join!(up, down);
    Ok(())
}

/// Moves bytes from `src` to `dst` at `shape.bytes_per_sec`, holding at most
/// `shape.queue_bytes` in between. An idle link sends at once (the token bucket is full);
/// a busy one releases bytes as tokens accrue, checked every millisecond.
async fn pump<R, W>(mut src: R, mut dst: W, shape: LinkShape) -> io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    const TICK: Duration = Duration::from_millis(1);
    const PACKET: usize = 1500;
    // At most two ticks' worth of bytes leave back to back.
    let burst = (shape.bytes_per_sec * 0.002).max(1500.0);
    // The kernel's receive buffer in front of this pump (twice SO_RCVBUF on Linux) is part of
    // the bottleneck queue: the pump holds the rest, so the whole queue is `queue_bytes`.
    let queue_limit = shape
        .queue_bytes
        .saturating_sub(2 * SOCKET_BUFFER as usize)
        .max(PACKET);
    let mut queue = BytesMut::with_capacity(queue_limit);
    let mut tokens = burst;
    let mut last = Instant::now();
    let mut eof = false;
    let mut scratch = vec![0u8; 16 * 1024];
    loop {
        // Refill tokens and send what they allow.
        let now = Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * shape.bytes_per_sec).min(burst);
        last = now;
        // Whole packets only (as a real link sends them): no trickle of tiny writes.
        let n = (tokens as usize).min(queue.len());
        if n > 0 && n >= queue.len().min(PACKET) {
            tokens -= n as f64;
            let out = queue.split_to(n);
            dst.write_all(&out).await?;
            continue;
        }
        if eof && queue.is_empty() {
            return dst.shutdown().await;
        }
        let room = queue_limit.saturating_sub(queue.len());
        tokio::select! {
            r = src.read(&mut scratch[..room.min(16 * 1024)]), if room > 0 && !eof => {
                match r? {
                    0 => eof = true,
                    n => queue.extend_from_slice(&scratch[..n]),
                }
            }
            _ = tokio::time::sleep(TICK), if !queue.is_empty() => {}
        }
    }
}
