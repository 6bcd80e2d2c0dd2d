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
use crate::frame::{Frame, Hello, ResumeStatus, WIRE_VERSION_1_0, WIRE_VERSION_1_1};

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

    /// The version rule for the peer's HELLO listing `offered`, when we offered (client) or
    /// support (server) `ours`: the version the connection speaks.
    ///
    /// spec: wire.md §3.2.2 — a server picks the highest version both support; §3.2.3 — a
    /// server's HELLO lists exactly one version, one the client offered.
    pub(super) fn negotiate(
        role: Role,
        offered: &[u64],
        ours: &[u64],
    ) -> Result<u64, SessionError> {
        let chosen = match role {
            Role::Server => ours.iter().copied().filter(|v| offered.contains(v)).max(),
            Role::Client => match offered {
                [v] if ours.contains(v) => Some(*v),
                _ => None,
            },
        };
        chosen.ok_or_else(|| SessionError::VersionMismatch {
            offered: offered.to_vec(),
            supported: ours.to_vec(),
        })
    }
}

impl Session {
    pub(super) fn on_hello(&mut self, hello: Hello) -> Result<(), SessionError> {
        // Settings were validated by the decoder; resolving cannot fail here.
        let peer = hello.resolved_settings()?;
        let ours = match self.role {
            // A server speaks both versions; a client what it offered.
            Role::Server => vec![WIRE_VERSION_1_1, WIRE_VERSION_1_0],
            Role::Client => self.offered_versions(),
        };
        self.resume.version = Handshake::negotiate(self.role, &hello.versions, &ours)?;
        self.decoder.set_version(self.resume.version);
        self.check_hello_blocks(&hello)?;
        self.peer = peer;
        match self.role {
            Role::Server => {
                self.state = State::AwaitingAccept;
                self.resume.requested = hello.resume.map(|r| *r);
                self.handshake.client_hello = Some((hello.token.clone(), hello.agent.clone()));
                self.events.push_back(Event::HelloReceived {
                    token: hello.token,
                    agent: hello.agent,
                });
            }
            Role::Client if self.resume.asked.is_some() => {
                // spec: wire.md §21.6 — the answer to our resume request.
                let resumed = self.on_resume_answer(hello.session)?;
                if !resumed {
                    // A new session on this transport (§21.6.5): no second `Connected`.
                    self.enable_replay();
                    self.open_transport();
                    self.recheck_queued();
                }
            }
            Role::Client => {
                self.take_new_ticket(hello.session);
                self.enable_replay();
                self.open(hello.token, hello.agent)
            }
        }
        Ok(())
    }

    /// Messages flow on this transport: credit from the peer's windows (of its latest HELLO)
    /// and its header table size for our encoders. Every open — a new connection, a resumed
    /// one, one that replaced a detached session without resuming it — starts here.
    pub(super) fn open_transport(&mut self) {
        self.state = State::Open;
        self.resume.detached_at = None;
        self.flow.open(&self.peer);
        for out in &mut self.outgoing {
            out.configure(self.peer.header_table_size as usize);
        }
    }

    /// The exchange finished: the transport opens, queued messages are checked against the
    /// peer's settings, and the event carries the peer's token and agent.
    pub(super) fn open(&mut self, token: Bytes, agent: String) {
        self.open_transport();
        self.recheck_queued();
        debug!(role = ?self.role, peer_agent = %agent, "connected");
        self.events.push_back(Event::Connected {
            version: self.resume.version,
            peer_settings: self.peer,
            token,
            agent,
        });
    }

    /// Server: accepts the client (after [`Event::HelloReceived`]) and sends its HELLO with
    /// `token` (empty, or e.g. a reconnection token). A client that asked to resume a session
    /// this side does not hold is told `UNKNOWN_SESSION` and gets a new session
    /// ([`accept_with`](Self::accept_with) says why otherwise).
    pub fn accept(&mut self, token: Bytes) {
        self.accept_with(token, ResumeStatus::UnknownSession);
    }

    /// Server: [`accept`](Self::accept), answering the client's resume request, if it made
    /// one, with `status` (a refusal: the connection starts a new session, wire.md §21.6).
    pub fn accept_with(&mut self, token: Bytes, status: ResumeStatus) {
        if self.state != State::AwaitingAccept {
            return;
        }
        let mut hello = Hello::new(&self.config.settings, token, self.config.agent.clone());
        hello.versions = vec![self.resume.version];
        hello.session = self.issue_ticket(status);
        self.enable_replay();
        self.control.push_back(Frame::Hello(hello));
        let (token, agent) = self.handshake.client_hello.take().unwrap_or_default();
        self.open(token, agent);
    }

    /// Server: refuses the client (e.g. `AUTH_FAILED`, §3.2.7).
    pub fn reject(&mut self, code: ErrorCode, reason: &str) {
        self.close(code, reason);
    }
}
