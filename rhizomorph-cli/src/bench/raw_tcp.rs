//! The physical-limit baseline over TCP: length-prefixed messages on one socket, no framing
//! beyond a 5-byte prefix, no routing, no multiplexing.
//!
//! A message is `u32 length (BE) ++ u8 kind ++ payload`; kind 0 is echoed, kind 1 is consumed
//! (one-way). The server reads through a buffer and flushes its echoes only when it has no more
//! input buffered, so pipelined echoes leave in few writes — the best a hand-written TCP peer
//! does. Used only to measure rhizomorph against, in the same run.

use std::io;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::scenarios::{EchoRx, EchoTx};

/// Largest message either side accepts.
const MAX_MESSAGE: usize = 64 << 20;

/// A message kind: echoed or consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The server sends it back.
    Echo = 0,
    /// The server drops it.
    OneWay = 1,
}

async fn read_message<R: AsyncReadExt + Unpin>(r: &mut R) -> io::Result<Option<(u8, Bytes)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    let mut buf = BytesMut::zeroed(len);
    r.read_exact(&mut buf).await?;
    Ok(Some((head[4], buf.freeze())))
}

async fn write_message<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    kind: u8,
    payload: &[u8],
) -> io::Result<()> {
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    head[4] = kind;
    w.write_all(&head).await?;
    w.write_all(payload).await
}

/// Starts the raw TCP echo server on 127.0.0.1; returns its address.
pub async fn start_server() -> io::Result<SocketAddr> {
    rhizomorph_testkit::serve_tcp(|tcp| async move {
        let (r, w) = tcp.into_split();
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let mut w = BufWriter::with_capacity(64 * 1024, w);
        while let Ok(Some((kind, payload))) = read_message(&mut r).await {
            if kind == Kind::Echo as u8 && write_message(&mut w, kind, &payload).await.is_err() {
                break;
            }
            // Flush when nothing more is buffered: pipelined echoes share writes.
            if r.buffer().is_empty() && w.flush().await.is_err() {
                break;
            }
        }
    })
    .await
}

/// Connects a client; returns its sending and receiving halves.
pub async fn connect(addr: SocketAddr, kind: Kind) -> io::Result<(RawTcpTx, RawTcpRx)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (r, w) = tcp.into_split();
    Ok((
        RawTcpTx {
            w: BufWriter::with_capacity(64 * 1024, w),
            kind,
        },
        RawTcpRx {
            r: BufReader::with_capacity(64 * 1024, r),
        },
    ))
}

/// The client's sending half. Echo messages are flushed one by one (a caller waits for each
/// answer); one-way messages are flushed when the buffer fills and by [`RawTcpTx::flush`].
pub struct RawTcpTx {
    w: BufWriter<OwnedWriteHalf>,
    kind: Kind,
}

impl RawTcpTx {
    /// Sends one message of `kind` and flushes.
    pub async fn send_kind(&mut self, kind: Kind, payload: &[u8]) -> io::Result<()> {
        write_message(&mut self.w, kind as u8, payload).await?;
        self.w.flush().await
    }

    /// Writes what is buffered.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.w.flush().await
    }
}

impl EchoTx for RawTcpTx {
    async fn send(&mut self, payload: Bytes) -> io::Result<()> {
        write_message(&mut self.w, self.kind as u8, &payload).await?;
        if self.kind == Kind::Echo {
            self.w.flush().await?;
        }
        Ok(())
    }
}

/// The client's receiving half.
pub struct RawTcpRx {
    r: BufReader<OwnedReadHalf>,
}

impl EchoRx for RawTcpRx {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        Ok(read_message(&mut self.r).await?.map(|(_, p)| p))
    }
}
