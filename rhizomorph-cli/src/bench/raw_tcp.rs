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
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
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

/// The reading half of a raw TCP peer, as lean as a careful user writes it: one buffer reused
/// for every message (no zeroed allocation per message), each message a view of it, and reads
/// as large as the buffer's free room (a large message reserves its whole length once).
pub struct MessageReader<R> {
    r: R,
    buf: BytesMut,
}

impl<R: AsyncReadExt + Unpin> MessageReader<R> {
    /// Reads from `r` through a 64 KiB buffer (grown to a message's length when it is larger).
    pub fn new(r: R) -> Self {
        MessageReader {
            r,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// The length of the whole message at the front of the buffer (prefix included), if its
    /// prefix has arrived.
    fn front_len(&self) -> io::Result<Option<usize>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message too large",
            ));
        }
        Ok(Some(5 + len))
    }

    /// Whether a whole message is buffered (the next [`next`](Self::next) does not read).
    pub fn has_message(&self) -> bool {
        matches!(self.front_len(), Ok(Some(n)) if self.buf.len() >= n)
    }

    /// The next message's kind and payload; `None` at a clean end of stream.
    pub async fn next(&mut self) -> io::Result<Option<(u8, Bytes)>> {
        loop {
            let wanted = match self.front_len()? {
                Some(n) if self.buf.len() >= n => {
                    let mut m = self.buf.split_to(n);
                    let kind = m[4];
                    let _ = m.split_to(5);
                    return Ok(Some((kind, m.freeze())));
                }
                Some(n) => n,
                None => 5,
            };
            // Room for the rest of this message, and never a small read: reclaims the buffer in
            // place once the views of earlier messages are dropped.
            let missing = wanted - self.buf.len();
            if self.buf.capacity() - self.buf.len() < missing.max(16 * 1024) {
                self.buf.reserve(missing.max(64 * 1024));
            }
            if self.r.read_buf(&mut self.buf).await? == 0 {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(io::ErrorKind::UnexpectedEof.into()),
                };
            }
        }
    }
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
        let mut r = MessageReader::new(r);
        let mut w = BufWriter::with_capacity(64 * 1024, w);
        while let Ok(Some((kind, payload))) = r.next().await {
            if kind == Kind::Echo as u8 && write_message(&mut w, kind, &payload).await.is_err() {
                break;
            }
            // Flush when no whole message is buffered: pipelined echoes share writes.
            if !r.has_message() && w.flush().await.is_err() {
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
            r: MessageReader::new(r),
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
    r: MessageReader<OwnedReadHalf>,
}

impl EchoRx for RawTcpRx {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        Ok(self.r.next().await?.map(|(_, p)| p))
    }
}
