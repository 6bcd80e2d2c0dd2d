//! Resumable sessions over QUIC (wire.md §21, §17.6.5): a client that lost its QUIC
//! connection opens another from the same endpoint and asks to resume; a server reads a new
//! connection's HELLO before it knows which session the connection belongs to.
//!
//! Owns the client's reconnect (dialling again, handing the new connection to the detached
//! session) and the server's accept path with resumption on (the control stream and its
//! HELLO, then a resumed session or a new one). What is replayed and acknowledged is the
//! session's business; the registry of detached sessions and the backoff are the
//! transport-independent `transport::resume`'s. Never logs a resume token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use quinn::RecvStream;

use super::driver::{self, Transport};
use crate::config::{AuthRequest, Config};
use crate::error::Error;
use crate::frame::Channel;
use crate::session::{Event, Session};
use crate::transport::dispatch::{self, SharedDispatch};
use crate::transport::resume::{self, DetachedSessions, Resumer};
use crate::transport::shared::{Opened, Shared};

/// A client's resumer over QUIC (wire.md §21.5.2): dials the same server from the same
/// endpoint, with the shared backoff, until the session resumes, is refused (it goes on as a
/// new session) or its time limit passes.
#[derive(Clone)]
pub(super) struct Reconnect {
    endpoint: quinn::Endpoint,
    own_endpoint: bool,
    host: String,
    addr: SocketAddr,
    config: Config,
}

impl Reconnect {
    /// A resumer for connections to `addr` (TLS name `host`) over `endpoint`.
    pub(super) fn resumer(
        endpoint: quinn::Endpoint,
        own_endpoint: bool,
        host: &str,
        addr: SocketAddr,
        config: Config,
    ) -> Arc<dyn Resumer> {
        Arc::new(Reconnect {
            endpoint,
            own_endpoint,
            host: host.to_string(),
            addr,
            config,
        })
    }

    /// One attempt: a new QUIC connection, then the detached session sends its resume HELLO
    /// over it (the new connection's tasks take it from there).
    async fn attempt(&self, shared: Arc<Shared>, dispatch: SharedDispatch) -> Result<(), Error> {
        let attempt = super::dial(&self.endpoint, &self.host, self.addr, &self.config);
        let conn = tokio::time::timeout(self.config.connect_timeout, attempt)
            .await
            .map_err(|_| Error::Timeout("QUIC reconnect"))??;
        dispatch::with_session(&shared, &dispatch, |s| s.reconnect(Instant::now()));
        let t = super::client_transport(conn, &self.endpoint, self.own_endpoint, &self.config);
        driver::spawn(t, shared, dispatch, true);
        Ok(())
    }
}

impl Resumer for Reconnect {
    fn detached(&self, shared: Arc<Shared>, dispatch: SharedDispatch) {
        let me = Arc::new(self.clone());
        let (s, d) = (shared.clone(), dispatch.clone());
        resume::reconnect(shared, dispatch, move || {
            let (me, s, d) = (me.clone(), s.clone(), d.clone());
            async move { me.attempt(s, d).await }
        })
    }
}

/// Server with resumption on: reads the client's control stream and its HELLO first. A
/// resume request for a session this listener holds, from the same identity, hands the new
/// connection to that session (`Err(SessionResumed)`: no new connection); anything else
/// starts a new connection with `fresh`, answering a refused resume with its reason
/// (wire.md §21.6).
pub(super) async fn accept(
    conn: quinn::Connection,
    mut fresh: Session,
    config: &Config,
    registry: &Arc<DetachedSessions>,
) -> Result<Opened, Error> {
    let peer_addr = conn.remote_address();
    let first = tokio::time::timeout(
        config.session.hello_timeout,
        read_hello(&conn, &mut fresh, peer_addr),
    )
    .await;
    let (first, hello) = match first {
        Ok(Ok((stream, hello))) => (Some(stream), hello),
        // The connection ended, or its first stream broke a rule: the session (over the
        // stream, if there is one) says so as for any new connection.
        Ok(Err(stream)) => (stream, None),
        // No HELLO within the HELLO timeout: the session's own timeout closes it (§18).
        Err(_) => (None, None),
    };
    let transport = |first| Transport {
        conn: conn.clone(),
        endpoint: None,
        linger: config.session.keepalive_timeout,
        first,
    };
    match resume::resume_requested(registry, &mut fresh, hello.as_ref(), config) {
        Ok((old, old_dispatch)) => {
            driver::spawn(transport(first), old, old_dispatch, true);
            Err(Error::SessionResumed)
        }
        Err(status) => {
            let spawn = |shared: &Arc<Shared>, dispatch: &SharedDispatch| {
                driver::spawn(transport(first), shared.clone(), dispatch.clone(), false)
            };
            resume::accept_new(fresh, config, peer_addr, hello, status, registry, spawn).await
        }
    }
}

/// The client's first stream, fed into `fresh` until its HELLO was decoded. Returns the
/// stream (to read on from there) and the HELLO; on failure, the stream if there was one.
///
/// spec: wire.md §17.2.2, §17.2.4 — the control stream comes first and starts with HELLO; a
/// channel stream before our HELLO is the session's `PROTOCOL_ERROR`, which it reports when
/// the stream is handed to it.
async fn read_hello(
    conn: &quinn::Connection,
    fresh: &mut Session,
    peer_addr: SocketAddr,
) -> Result<((Channel, RecvStream), Option<AuthRequest>), Option<(Channel, RecvStream)>> {
    let mut recv = conn.accept_uni().await.map_err(|_| None)?;
    let channel = match driver::read_preamble(&mut recv).await {
        Ok(c) => c,
        Err(_) => return Err(None),
    };
    if channel != Channel::Control {
        return Err(Some((channel, recv)));
    }
    loop {
        let chunk = match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            _ => return Err(Some((channel, recv))),
        };
        fresh.handle_stream(Instant::now(), channel, chunk);
        while let Some(e) = fresh.poll_event() {
            if let Event::HelloReceived { token, agent } = e {
                let hello = AuthRequest {
                    token,
                    agent,
                    peer_addr,
                };
                return Ok(((channel, recv), Some(hello)));
            }
        }
        if fresh.is_closed() {
            return Ok(((channel, recv), None)); // the session refused what it got
        }
    }
}
