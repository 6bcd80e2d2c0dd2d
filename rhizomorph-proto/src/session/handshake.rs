//! The HELLO exchange (wire.md §3.2): version negotiation, the server's accept or reject,
//! and the HELLO timeout's deadline (§18).
//!
//! Owns what the exchange needs until it finishes: its deadline and, on a server, the
//! client's token and agent until the application decides. Never authenticates anyone: the
//! application (its authenticator) decides on [`Event::HelloReceived`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::{Event, Role, Session, SessionError, State};
use crate::frame::ErrorCode;
use crate::frame::{Frame, Hello, WIRE_VERSION_1_0};

/// The handshake state of a session.
#[derive(Debug)]
pub(super) struct Handshake {
    /// The HELLO exchange must have finished by then (§18).
    pub(super) deadline: Instant,
    /// Server: the client's HELLO token and agent, from its HELLO until the application
    /// accepts; [`Event::Connected`] then carries them.
    pub(super) client_hello: Option<(Bytes, String)>,
}

impl Handshake {
    /// The exchange of a session created `now` with this timeout.
    pub(super) fn new(now: Instant, timeout: Duration) -> Self {
        Handshake {
            deadline: now + timeout,
            client_hello: None,
        }
    }

    /// The version rule for the peer's HELLO listing `offered`.
    ///
    /// spec: wire.md §3.2.2 — a server picks the highest version both support (1.0 is the
    /// only one); §3.2.3 — a server's HELLO lists exactly one version, one the client offered.
    pub(super) fn negotiate(role: Role, offered: &[u64]) -> Result<(), SessionError> {
        let ok = match role {
            Role::Server => offered.contains(&WIRE_VERSION_1_0),
            Role::Client => offered == [WIRE_VERSION_1_0],
        };
        if ok {
            Ok(())
        } else {
            Err(SessionError::VersionMismatch {
                offered: offered.to_vec(),
                supported: vec![WIRE_VERSION_1_0],
            })
        }
    }
}

impl Session {
    pub(super) fn on_hello(&mut self, hello: Hello) -> Result<(), SessionError> {
        // Settings were validated by the decoder; resolving cannot fail here.
        let peer = hello.resolved_settings()?;
        Handshake::negotiate(self.role, &hello.versions)?;
        self.peer = peer;
        match self.role {
            Role::Server => {
                self.state = State::AwaitingAccept;
                self.handshake.client_hello = Some((hello.token.clone(), hello.agent.clone()));
                self.events.push_back(Event::HelloReceived {
                    token: hello.token,
                    agent: hello.agent,
                });
            }
            Role::Client => self.open(hello.token, hello.agent),
        }
        Ok(())
    }

    /// The exchange finished: credit from the peer's windows, its header table size for our
    /// encoders, and the event with the peer's token and agent.
    pub(super) fn open(&mut self, token: Bytes, agent: String) {
        self.state = State::Open;
        self.flow.open(&self.peer);
        for out in &mut self.outgoing {
            out.configure(self.peer.header_table_size as usize);
        }
        self.recheck_queued();
        debug!(role = ?self.role, peer_agent = %agent, "connected");
        self.events.push_back(Event::Connected {
            version: WIRE_VERSION_1_0,
            peer_settings: self.peer,
            token,
            agent,
        });
    }

    /// Server: accepts the client (after [`Event::HelloReceived`]) and sends its HELLO with
    /// `token` (empty, or e.g. a reconnection token).
    pub fn accept(&mut self, token: Bytes) {
        if self.state != State::AwaitingAccept {
            return;
        }
        let mut hello = Hello::new(&self.config.settings, token, self.config.agent.clone());
        hello.versions = vec![WIRE_VERSION_1_0];
        self.control.push_back(Frame::Hello(hello));
        let (token, agent) = self.handshake.client_hello.take().unwrap_or_default();
        self.open(token, agent);
    }

    /// Server: refuses the client (e.g. `AUTH_FAILED`, §3.2.7).
    pub fn reject(&mut self, code: ErrorCode, reason: &str) {
        self.close(code, reason);
    }
}
