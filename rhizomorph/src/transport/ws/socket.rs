//! The WebSocket byte pump: runs the opening handshake on a stream and adapts the two halves of
//! an upgraded stream to the drivers: for native mode a `Stream` of received binary messages
//! (batches) and a `Sink` of batches to send; for legacy mode the same halves with TEXT
//! messages and the peer's close handed out too ([`WsReader::poll_message`],
//! [`WsWriter::start_message`]).
//!
//! Owns reading into a buffer sized for the frame being received (so a large message is read
//! straight into place), `writev` of a frame header and the batch it carries, pings and pongs,
//! and the closing handshake. Everything about bytes is `crate::websocket`'s; this module never
//! parses anything itself and never looks inside a batch.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::websocket::frame::MAX_HEAD_LEN;
use crate::websocket::handshake::{self, HandshakeError, UpgradeRequest, UpgradeResponse};
use crate::websocket::{
    apply_mask, CloseFrame, Decoded, OpCode, Role, WsDecoder, WsEncoder, WsEvent,
};

/// A stream that can be upgraded and then split into a read half and a write half.
pub(crate) trait SplitIo: AsyncRead + AsyncWrite + Unpin + Send + 'static + Sized {
    /// The read half.
    type Read: AsyncRead + Unpin + Send + 'static;
    /// The write half.
    type Write: AsyncWrite + Unpin + Send + 'static;
    /// Splits the stream.
    fn split_io(self) -> (Self::Read, Self::Write);
}

impl SplitIo for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn split_io(self) -> (Self::Read, Self::Write) {
        // Owned halves: no lock between the reader and the writer task.
        self.into_split()
    }
}

macro_rules! split_with_lock {
    ($t:ty) => {
        impl SplitIo for $t {
            type Read = tokio::io::ReadHalf<$t>;
            type Write = tokio::io::WriteHalf<$t>;
            fn split_io(self) -> (Self::Read, Self::Write) {
                // TLS state is shared by both directions: tokio's split locks around it.
                tokio::io::split(self)
            }
        }
    };
}
split_with_lock!(tokio_rustls::client::TlsStream<TcpStream>);
split_with_lock!(tokio_rustls::server::TlsStream<TcpStream>);

/// Reads into `buf` until `parse` finds a whole head; returns what it parsed and keeps the
/// bytes after the head in `buf`.
async fn read_head<S, T>(
    stream: &mut S,
    buf: &mut BytesMut,
    mut parse: impl FnMut(&[u8]) -> Result<Option<(T, usize)>, HandshakeError>,
) -> Result<T, Error>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some((value, n)) = parse(buf)? {
            let _ = buf.split_to(n);
            return Ok(value);
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection during the WebSocket handshake",
            )));
        }
    }
}

/// Client side of the opening handshake: sends the upgrade request for `path` on `host`
/// offering `protocols`, and reads the server's answer. Returns it and any bytes the server
/// sent after it.
pub(crate) async fn client_handshake<S>(
    stream: &mut S,
    host: &str,
    path: &str,
    protocols: &[&str],
) -> Result<(UpgradeResponse, BytesMut), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = handshake::new_key();
    stream
        .write_all(&handshake::client_request(host, path, &key, protocols))
        .await?;
    stream.flush().await?;
    let mut buf = BytesMut::new();
    let response = read_head(stream, &mut buf, |b| {
        handshake::parse_response(b, &key, protocols)
    })
    .await?;
    Ok((response, buf))
}

/// What a server decides about an upgrade request.
pub(crate) enum Verdict {
    /// Upgrade, selecting this subprotocol (or none).
    Accept(Option<&'static str>),
    /// Refuse with this HTTP status and text.
    Refuse(u16, String),
}

/// Server side of the opening handshake: reads the upgrade request, lets `decide` answer it,
/// and writes the answer. Returns the request and any bytes the client sent after it; a refusal
/// (or a malformed request, answered with 400 or 426) is an error.
pub(crate) async fn server_handshake<S>(
    stream: &mut S,
    decide: impl FnOnce(&UpgradeRequest) -> Verdict,
) -> Result<(UpgradeRequest, Option<&'static str>, BytesMut), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    let request = match read_head(stream, &mut buf, handshake::parse_request).await {
        Ok(r) => r,
        Err(Error::Handshake(e)) => {
            let status = if matches!(e, HandshakeError::Version(_)) {
                426
            } else {
                400
            };
            let _ = stream
                .write_all(&handshake::error_response(status, &e.to_string()))
                .await;
            let _ = stream.shutdown().await;
            return Err(Error::Handshake(e));
        }
        Err(e) => return Err(e),
    };
    match decide(&request) {
        Verdict::Accept(protocol) => {
            stream
                .write_all(&handshake::accept_response(&request.key, protocol))
                .await?;
            stream.flush().await?;
            Ok((request, protocol, buf))
        }
        Verdict::Refuse(status, text) => {
            let _ = stream
                .write_all(&handshake::error_response(status, &text))
                .await;
            let _ = stream.shutdown().await;
            Err(Error::Handshake(HandshakeError::Status {
                status,
                body: text,
            }))
        }
    }
}

/// Control frames the reader owes the peer, handed to the writer.
#[derive(Default)]
struct ControlState {
    /// The pong for the latest ping (RFC 6455 §5.5.3: answering only the latest is enough).
    pong: Option<Bytes>,
    /// The close frame echoing the peer's (RFC 6455 §5.5.1).
    close: Option<Vec<u8>>,
}

/// What the reader and the writer of one WebSocket share: replies the reader queues and a way
/// to wake the writer for them.
#[derive(Clone)]
pub(crate) struct Control {
    state: Arc<Mutex<ControlState>>,
    /// Something is queued in `state` (changed only under its lock): the writer, which looks
    /// after every batch, takes the lock only when there is something to take.
    pending: Arc<AtomicBool>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Control {
    /// `wake` is called when a reply is queued (the writer should run soon).
    pub(crate) fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Control {
        Control {
            state: Arc::default(),
            pending: Arc::default(),
            wake,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ControlState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue_pong(&self, payload: Bytes) {
        let mut s = self.lock();
        s.pong = Some(payload);
        self.pending.store(true, Ordering::Release);
        drop(s);
        (self.wake)();
    }

    fn queue_close(&self, code: u16, reason: &str) {
        self.set_close(|| CloseFrame::payload(code, reason));
        (self.wake)();
    }

    /// Queues a close frame unless one is queued already.
    fn set_close(&self, frame: impl FnOnce() -> Vec<u8>) {
        let mut s = self.lock();
        if s.close.is_none() {
            s.close = Some(frame());
        }
        self.pending.store(true, Ordering::Release);
    }

    /// The pong if one is queued, else the close if one is: one reply per call, the pong
    /// first.
    fn take(&self) -> (Option<Bytes>, Option<Vec<u8>>) {
        if !self.pending.load(Ordering::Acquire) {
            return (None, None);
        }
        let mut s = self.lock();
        let taken = match s.pong.take() {
            Some(p) => (Some(p), None),
            None => (None, s.close.take()),
        };
        if s.pong.is_none() && s.close.is_none() {
            self.pending.store(false, Ordering::Release);
        }
        taken
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The receiving half: a `Stream` of binary messages (one batch each, wire.md §16.2).
pub(crate) struct WsReader<R> {
    io: R,
    buf: BytesMut,
    decoder: WsDecoder,
    read_size: usize,
    control: Control,
    done: bool,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// A reader for the `role` end; `buf` holds bytes already read past the handshake.
    /// Messages over `max_message` are an error; `read_size` is the smallest read.
    pub(crate) fn new(
        io: R,
        buf: BytesMut,
        role: Role,
        max_message: usize,
        read_size: usize,
        control: Control,
    ) -> WsReader<R> {
        WsReader {
            io,
            buf,
            decoder: WsDecoder::new(role, max_message as u64),
            read_size: read_size.max(256),
            control,
            done: false,
        }
    }

    fn fail<T>(&mut self, code: u16, e: io::Error) -> Poll<Option<io::Result<T>>> {
        self.done = true;
        self.control.queue_close(code, &e.to_string());
        Poll::Ready(Some(Err(e)))
    }
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// The next data message (BINARY or TEXT, fragments joined), or the peer's close (echoed);
    /// pings are answered on the way. `None` once the stream has ended. Cancel-safe: the
    /// state is the reader's, a dropped poll loses nothing.
    pub(crate) fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<WsIn>>> {
        let this = self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let need = match this.decoder.decode(&mut this.buf) {
                Ok(Decoded::Event(WsEvent::Binary(b))) => {
                    // A small message would pin the whole read buffer it sits in for as long as
                    // the application holds it: copy it out so held bytes stay close to what
                    // flow control counts.
                    let b = if b.len() < this.read_size / 4 {
                        Bytes::copy_from_slice(&b)
                    } else {
                        b
                    };
                    return Poll::Ready(Some(Ok(WsIn::Binary(b))));
                }
                Ok(Decoded::Event(WsEvent::Text(t))) => {
                    return Poll::Ready(Some(Ok(WsIn::Text(t))))
                }
                Ok(Decoded::Event(WsEvent::Ping(p))) => {
                    this.control.queue_pong(p);
                    continue;
                }
                Ok(Decoded::Event(WsEvent::Pong(_))) => continue,
                Ok(Decoded::Event(WsEvent::Close(c))) => {
                    this.done = true;
                    this.control.queue_close(c.code.unwrap_or(1000), "");
                    return Poll::Ready(Some(Ok(WsIn::Closed {
                        code: c.code,
                        reason: c.reason,
                    })));
                }
                Err(e) => {
                    let code =
                        if matches!(e, crate::websocket::WsFrameError::MessageTooLarge { .. }) {
                            1009
                        } else {
                            1002
                        };
                    return this.fail(code, invalid(e));
                }
                Ok(Decoded::NeedBytes(n)) => n,
            };
            // Room for the whole frame being received (read straight into place), and at
            // least `read_size` beyond what we hold.
            let want = need.max(this.buf.len() + this.read_size);
            if this.buf.capacity() < want {
                this.buf.reserve(want - this.buf.len());
            }
            let before = this.buf.len();
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.buf
            )) {
                Ok(0) if before == 0 => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection ended inside a WebSocket frame",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

/// One frame on its way out: header, then the body's segments in order.
struct Outgoing {
    head: [u8; MAX_HEAD_LEN],
    head_len: usize,
    head_pos: usize,
    /// Never holds an empty segment (`frame` drops them), so a segment written to its end is
    /// always followed by one with bytes left, or by none.
    body: Vec<Bytes>,
    /// The segment being written, and how much of it is out.
    seg: usize,
    seg_pos: usize,
}

impl Outgoing {
    fn done(&self) -> bool {
        self.head_pos == self.head_len && self.seg == self.body.len()
    }

    /// Moves past `n` written bytes.
    fn advance(&mut self, mut n: usize) {
        let from_head = n.min(self.head_len - self.head_pos);
        self.head_pos += from_head;
        n -= from_head;
        while n > 0 {
            let left = self.body[self.seg].len() - self.seg_pos;
            if n < left {
                self.seg_pos += n;
                return;
            }
            n -= left;
            self.seg += 1;
            self.seg_pos = 0;
        }
    }
}

/// At most this many buffers per `writev`.
const MAX_IOVECS: usize = 64;

/// One thing a WebSocket reader hands out.
#[derive(Debug)]
pub(crate) enum WsIn {
    /// A BINARY message.
    Binary(Bytes),
    /// A TEXT message (UTF-8 checked by the decoder).
    Text(Bytes),
    /// The peer's close frame (echoed already): the stream ends after it.
    Closed {
        /// Its status code, if it had one.
        code: Option<u16>,
        /// Its reason.
        reason: String,
    },
}

/// Native mode: a `Stream` of batches (binary messages).
impl<R: AsyncRead + Unpin> Stream for WsReader<R> {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match ready!(this.poll_message(cx)) {
            Some(Ok(WsIn::Binary(b))) => Poll::Ready(Some(Ok(b))),
            // spec: wire.md §3.4.3 — TEXT in native mode is a protocol error.
            Some(Ok(WsIn::Text(_))) => this.fail(
                1002,
                invalid("TEXT WebSocket message in native mode (wire.md §3.4.3)"),
            ),
            Some(Ok(WsIn::Closed { code, reason })) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("WebSocket closed by the peer ({code:?} {reason:?})"),
            )))),
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }
}

/// The sending half: a `Sink` of batches (each given as segments, `Transmit::into_segments`),
/// each one binary message, written as header + segments with
/// `writev` — no copy on a server; a client masks, in place when the batch is one unshared
/// buffer, else into one new buffer.
pub(crate) struct WsWriter<W> {
    io: W,
    encoder: WsEncoder,
    out: Option<Outgoing>,
    control: Control,
    close_status: Box<dyn Fn() -> (u16, String) + Send>,
    close_sent: bool,
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    /// A writer for the `role` end. `close_status` gives the WebSocket close code and reason
    /// when the sink is closed (wire.md §16.3).
    pub(crate) fn new(
        io: W,
        role: Role,
        control: Control,
        close_status: Box<dyn Fn() -> (u16, String) + Send>,
    ) -> WsWriter<W> {
        WsWriter {
            io,
            encoder: WsEncoder::new(role),
            out: None,
            control,
            close_status,
            close_sent: false,
        }
    }

    fn frame(&self, opcode: OpCode, mut body: Vec<Bytes>) -> Outgoing {
        let len = body.iter().map(Bytes::len).sum();
        let (head, head_len, mask) = self.encoder.head(opcode, len, rand::random);
        if let Some(key) = mask {
            let masked = match body.pop() {
                Some(only) if body.is_empty() => match only.try_into_mut() {
                    // One buffer, ours alone: mask in place.
                    Ok(mut m) => {
                        apply_mask(&mut m, key);
                        m.freeze()
                    }
                    Err(shared) => masked_copy(&[shared], len, key),
                },
                Some(last) => {
                    body.push(last);
                    let m = masked_copy(&body, len, key);
                    body.clear();
                    m
                }
                None => Bytes::new(),
            };
            // The batch's own vector, reused.
            body.push(masked);
        }
        body.retain(|b| !b.is_empty());
        Outgoing {
            head,
            head_len,
            head_pos: 0,
            body,
            seg: 0,
            seg_pos: 0,
        }
    }

    /// Starts one message (a BINARY one of segments, or a TEXT one) after `poll_ready`.
    pub(crate) fn start_message(&mut self, opcode: OpCode, body: Vec<Bytes>) -> io::Result<()> {
        if self.out.is_some() || self.close_sent {
            return Err(io::Error::other("start_send without poll_ready"));
        }
        self.out = Some(self.frame(opcode, body));
        Ok(())
    }

    /// Writes the frame in progress until it is out.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(o) = &mut self.out {
            if o.done() {
                self.out = None;
                break;
            }
            // On the stack: this runs for every batch.
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut k = 0;
            if o.head_pos < o.head_len {
                slices[0] = IoSlice::new(&o.head[o.head_pos..o.head_len]);
                k = 1;
            }
            for (i, b) in o.body[o.seg..].iter().enumerate().take(MAX_IOVECS - k) {
                let from = if i == 0 { o.seg_pos } else { 0 };
                slices[k] = IoSlice::new(&b[from..]);
                k += 1;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..k]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            o.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the frame in progress and any control replies the reader queued.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_out(cx))?;
            if self.close_sent {
                return Poll::Ready(Ok(()));
            }
            // The pong first, then (on a later turn of the loop) the close.
            let (pong, close) = self.control.take();
            if let Some(p) = pong {
                self.out = Some(self.frame(OpCode::Pong, vec![p]));
                continue;
            }
            if let Some(c) = close {
                self.close_sent = true;
                self.out = Some(self.frame(OpCode::Close, vec![c.into()]));
                ready!(self.poll_out(cx))?;
                return Pin::new(&mut self.io).poll_flush(cx);
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl<W: AsyncWrite + Unpin> Sink<Vec<Bytes>> for WsWriter<W> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.close_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the WebSocket is closing",
            )));
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, batch: Vec<Bytes>) -> io::Result<()> {
        self.get_mut().start_message(OpCode::Binary, batch)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            ready!(this.poll_out(cx))?;
            let (code, reason) = (this.close_status)();
            this.control
                .set_close(|| CloseFrame::payload(code, &reason));
        }
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// The segments joined into one new buffer, masked.
fn masked_copy(segments: &[Bytes], len: usize, key: [u8; 4]) -> Bytes {
    let mut m = BytesMut::with_capacity(len);
    for s in segments {
        m.extend_from_slice(s);
    }
    apply_mask(&mut m, key);
    m.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};

    fn no_close() -> Box<dyn Fn() -> (u16, String) + Send> {
        Box::new(|| (1000, String::new()))
    }

    fn pattern(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>()
            .into()
    }

    #[test]
    fn masking_segment_by_segment_is_masking_the_whole() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for lens in [
            vec![1, 2, 3, 5, 8, 13],
            vec![7, 4096, 3],
            vec![16384, 1, 16385],
            vec![],
        ] {
            let segments: Vec<Bytes> = lens
                .iter()
                .enumerate()
                .map(|(i, &n)| pattern(n, i as u8))
                .collect();
            let len = lens.iter().sum();
            let mut whole = segments.concat();
            apply_mask(&mut whole, key);
            assert_eq!(masked_copy(&segments, len, key)[..], whole[..], "{lens:?}");
        }
    }

    /// Batches of several segments through a pipe that takes 7 bytes at a time (and one buffer
    /// per write): every partial write, inside the header, inside a segment and across segment
    /// boundaries, resumes where it stopped; both roles (unmasked, masked).
    #[tokio::test]
    async fn batches_survive_partial_writes_in_both_roles() {
        for (writer_role, reader_role) in
            [(Role::Server, Role::Client), (Role::Client, Role::Server)]
        {
            let (a, b) = tokio::io::duplex(7);
            let control = Control::new(Arc::new(|| {}));
            let mut writer = WsWriter::new(a, writer_role, control.clone(), no_close());
            let mut reader = WsReader::new(b, BytesMut::new(), reader_role, 1 << 20, 256, control);
            let batches: Vec<Vec<Bytes>> = vec![
                vec![pattern(3, 1), pattern(5000, 2), Bytes::new(), pattern(3, 3)],
                vec![pattern(1, 4)],
                vec![pattern(70_000, 5), pattern(126, 6)],
                vec![],
            ];
            let expected: Vec<Bytes> = batches.iter().map(|b| b.concat().into()).collect();
            let send = async {
                for b in batches {
                    writer.send(b).await.unwrap();
                }
                writer
            };
            let recv = async {
                let mut got = Vec::new();
                for _ in 0..expected.len() {
                    got.push(reader.next().await.unwrap().unwrap());
                }
                got
            };
            let (_writer, got) = tokio::join!(send, recv);
            assert_eq!(got, expected, "{writer_role:?} → {reader_role:?}");
        }
    }

    /// A ping read by the reader is answered by the writer (woken through `Control`), and a
    /// close from the peer is echoed and ends the stream with an error.
    #[tokio::test]
    async fn pings_are_answered_and_closes_echoed() {
        use crate::websocket::{Decoded, WsEncoder, WsEvent};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut peer) = tokio::io::duplex(1024);
        let (r, w) = tokio::io::split(ours);
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let control = Control::new(Arc::new({
            let woken = woken.clone();
            move || {
                woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
        let mut reader = WsReader::new(
            r,
            BytesMut::new(),
            Role::Server,
            1 << 20,
            256,
            control.clone(),
        );
        let mut writer = WsWriter::new(w, Role::Server, control, no_close());
        let enc = WsEncoder::new(Role::Client);
        let mut wire = enc.frame(OpCode::Ping, b"p1", || [1, 2, 3, 4]);
        wire.extend(enc.frame(OpCode::Ping, b"p2", || [1, 2, 3, 4]));
        wire.extend(enc.frame(OpCode::Binary, b"data", || [1, 2, 3, 4]));
        wire.extend(
            enc.frame(OpCode::Close, &CloseFrame::payload(1001, "bye"), || {
                [5, 6, 7, 8]
            }),
        );
        peer.write_all(&wire).await.unwrap();
        assert_eq!(&reader.next().await.unwrap().unwrap()[..], b"data");
        assert!(
            reader.next().await.unwrap().is_err(),
            "a close ends the stream"
        );
        assert!(reader.next().await.is_none());
        assert!(woken.load(std::sync::atomic::Ordering::SeqCst) >= 2);
        // The writer sends the pong for the latest ping only, then the echoed close.
        writer.flush().await.unwrap();
        let mut got = BytesMut::new();
        let mut dec = WsDecoder::new(Role::Client, 1 << 20);
        let mut events = Vec::new();
        while events.len() < 2 {
            match dec.decode(&mut got).unwrap() {
                Decoded::Event(e) => events.push(e),
                Decoded::NeedBytes(_) => {
                    assert!(peer.read_buf(&mut got).await.unwrap() > 0);
                }
            }
        }
        assert_eq!(events[0], WsEvent::Pong(Bytes::from_static(b"p2")));
        assert_eq!(
            events[1],
            WsEvent::Close(CloseFrame {
                code: Some(1001),
                reason: String::new()
            })
        );
        // After the close, the sink refuses batches.
        assert!(writer
            .send(vec![Bytes::from_static(b"late")])
            .await
            .is_err());
    }
}
