//! Resumable sessions (wire.md §21, wire version 1.1): a connection whose transport dies
//! without CLOSE is detached, not over; a new transport resumes it, each side replaying what the
//! other had not finished, so every message is delivered exactly once.
//!
//! Owns the session's ticket (id and resume token), the negotiation of resumability, ACKs in
//! both directions (when they are due, what they free), detaching, the client's resume request
//! and its answer, and the server's resume of a detached session from a new connection's HELLO.
//! Never reads the clock or the network, and never keeps a message the peer acknowledged: the
//! replay buffers (`replay.rs`) hold what is not, within their limits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::replay::LostMessage;
use super::{Event, Role, Session, SessionError, SessionEvent, State};
use crate::frame::{
    Ack, Channel, Frame, FrameError, FrameType, Hello, ResumeRequest, ResumeStatus, SchemaFrame,
    SessionTicket, SESSION_ID_LEN, WIRE_VERSION_1_0, WIRE_VERSION_1_1,
};

/// Messages finished and not yet acknowledged on a channel that make an ACK ride along with
/// any write (§21.3.3).
pub const ACK_RIDE_COUNT: u64 = 8;

/// Messages finished and not yet acknowledged on a channel that make an ACK due even alone:
/// a stream of small one-way messages is acknowledged every few hundred, so the sender's
/// replay buffer stays small enough to stay in cache (one write per this many messages).
pub const ACK_COUNT_DUE: u64 = 256;

/// A session's identity for resumption: its id and the current (single-use) token.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The session id (not secret: it names the session).
    pub session_id: [u8; SESSION_ID_LEN],
    /// The token that resumes it (a secret: never logged, compared in constant time).
    pub token: Bytes,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // spec: wire.md §21.7 — the token is never logged.
        f.debug_struct("Ticket")
            .field("session_id", &crate::hex::to_hex(&self.session_id))
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .finish()
    }
}

impl Ticket {
    /// A fresh ticket: a random 128-bit id and a random 256-bit token (the thread's CSPRNG,
    /// seeded from the operating system).
    pub fn random() -> Ticket {
        let id: u128 = rand::random();
        let token: [u128; 2] = [rand::random(), rand::random()];
        let mut t = Vec::with_capacity(32);
        t.extend_from_slice(&token[0].to_le_bytes());
        t.extend_from_slice(&token[1].to_le_bytes());
        Ticket {
            session_id: id.to_le_bytes(),
            token: Bytes::from(t),
        }
    }

    /// The same session with a new token (a resume spends the old one, §21.7).
    pub fn renewed(&self) -> Ticket {
        Ticket {
            session_id: self.session_id,
            token: Ticket::random().token,
        }
    }

    /// Whether `token` is this ticket's, compared in constant time.
    pub fn token_matches(&self, token: &[u8]) -> bool {
        Ticket::constant_time_eq(&self.token, token)
    }

    /// Whether `a` and `b` are equal, in time that depends on their lengths only (secrets,
    /// wire.md §21.7.1).
    pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The resumption state of a session.
#[derive(Debug, Default)]
pub(super) struct Resumption {
    /// The negotiated wire version (1.0 until a HELLO says otherwise).
    pub(super) version: u64,
    /// The session is resumable: version 1.1, both `RESUME_BUFFER`s non-zero, a ticket issued.
    pub(super) ticket: Option<Ticket>,
    /// Client: the resume request in our HELLO, until the server answers.
    pub(super) asked: Option<ResumeRequest>,
    /// Server: a client's resume request, from its HELLO until the application decides.
    pub(super) requested: Option<ResumeRequest>,
    /// Per channel, the finished count our last ACK (or resume) told the peer.
    acked: [u64; 4],
    /// When the transport was lost (state `Detached`).
    pub(super) detached_at: Option<Instant>,
    /// Server: the ticket a resume replaced, while the client has not yet shown (by sending
    /// a frame on the new connection) that it received the new one.
    pub(super) unconfirmed: Option<Ticket>,
}

impl Resumption {
    pub(super) fn new() -> Resumption {
        Resumption {
            version: WIRE_VERSION_1_0,
            ..Default::default()
        }
    }
}

impl Session {
    /// Whether this session is resumable (wire.md §21.1): a detached transport is then replaced
    /// with [`reconnect`](Self::reconnect) (client) or [`resume_from`](Self::resume_from)
    /// (server).
    pub fn is_resumable(&self) -> bool {
        self.resume.ticket.is_some()
            && self.shutdown.peer_goaway.is_none()
            && !self.shutdown.draining
    }

    /// The session's ticket, once resumable.
    pub fn ticket(&self) -> Option<&Ticket> {
        self.resume.ticket.as_ref()
    }

    /// The negotiated wire version.
    pub fn version(&self) -> u64 {
        self.resume.version
    }

    /// Whether the transport is gone and the session waits to be resumed.
    pub fn is_detached(&self) -> bool {
        self.state == State::Detached
    }

    /// Client: a new transport is resuming the session (our HELLO asked, no answer yet). A
    /// transport lost now leaves the session waiting for another one, as a detached one does.
    pub fn is_resuming(&self) -> bool {
        self.role == Role::Client
            && self.state == State::AwaitingHello
            && self.resume.asked.is_some()
    }

    /// Bytes held for replay, all channels (what a detached session costs besides its queues).
    pub fn replay_charge(&self) -> u64 {
        self.outgoing.iter().map(|o| o.replay().charge()).sum()
    }

    /// The versions a HELLO of ours offers: 1.1 too when we want resumption.
    pub(super) fn offered_versions(&self) -> Vec<u64> {
        if self.config.settings.resume_buffer > 0 {
            vec![WIRE_VERSION_1_1, WIRE_VERSION_1_0]
        } else {
            vec![WIRE_VERSION_1_0]
        }
    }

    /// The transport ended without CLOSE (a read or write error, its end, or the keepalive
    /// timeout). A resumable session is detached (wire.md §21.5): [`SessionEvent::Detached`], its
    /// queues and replay buffers kept, until a new transport resumes it. Returns whether it
    /// was; a session that is not resumable is left for the driver to end as before.
    pub fn detach(&mut self, now: Instant) -> bool {
        if self.state != State::Open || !self.is_resumable() {
            return false;
        }
        self.state = State::Detached;
        self.resume.detached_at = Some(now);
        self.control.clear();
        self.streams.frames.iter_mut().for_each(|f| f.clear());
        self.pong = None;
        debug!(role = ?self.role, "transport lost: session detached");
        self.events
            .push_back(Event::Session(SessionEvent::Detached));
        true
    }

    /// When a detached session gives up: its `resume_timeout` after the transport was lost
    /// (reconnect attempts that fail do not extend it).
    pub fn resume_deadline(&self) -> Option<Instant> {
        self.detached_deadline()
    }

    /// When a detached session gives up (its `resume_timeout` after the loss).
    pub(super) fn detached_deadline(&self) -> Option<Instant> {
        self.resume
            .detached_at
            .map(|t| t + self.config.resume_timeout)
    }

    /// A detached session's time limit passed (or the driver gave up): every started message
    /// the peer did not acknowledge may be lost ([`SessionEvent::ResumeFailed`]), and the session
    /// closes.
    pub fn abandon(&mut self, status: ResumeStatus, reason: &str) {
        self.end_detached(status, crate::frame::ErrorCode::TIMEOUT, reason);
    }

    /// Ends a detached (or resuming) session: what may be lost, then `Closed` with `code`.
    pub(super) fn end_detached(
        &mut self,
        status: ResumeStatus,
        code: crate::frame::ErrorCode,
        reason: &str,
    ) {
        if self.state != State::Detached && !self.is_resuming() {
            return;
        }
        let lost = self.forget_started();
        self.events
            .push_back(Event::Session(SessionEvent::ResumeFailed { status, lost }));
        self.resume.ticket = None;
        self.fail_all_queued(crate::frame::ErrorCode::CANCELLED);
        self.state = State::Closed;
        self.events.push_back(Event::Closed {
            code,
            reason: reason.to_string(),
            initiator: super::Initiator::Local,
        });
    }

    /// Client: a new transport is up for a detached session (wire.md §21.6). The session
    /// starts over as a connection (HELLO, windows, header tables) and asks, in its HELLO, to
    /// resume with what it has finished; the server's answer replays, or refuses
    /// ([`SessionEvent::Resumed`], [`SessionEvent::ResumeFailed`]).
    ///
    /// Also called again when a new transport died before the server's HELLO arrived (the
    /// session is then still resuming): the request is sent again, with the same token.
    pub fn reconnect(&mut self, now: Instant) {
        let resuming = self.state == State::AwaitingHello && self.resume.asked.is_some();
        if self.role != Role::Client || !(self.state == State::Detached || resuming) {
            return;
        }
        let Some(ticket) = self.resume.ticket.clone() else {
            return;
        };
        let received = self.finished_counts();
        self.new_connection(now);
        let request = ResumeRequest {
            session_id: ticket.session_id,
            token: ticket.token,
            received,
        };
        let mut hello = Hello::new(
            &self.config.settings,
            self.config.token.clone(),
            self.config.agent.clone(),
        );
        hello.versions = self.offered_versions();
        hello.resume = Some(Box::new(request.clone()));
        self.resume.asked = Some(request);
        self.control.push_back(Frame::Hello(hello));
    }

    /// Server: the detached session `self` takes over the new connection `fresh`, whose
    /// client's HELLO asked to resume (wire.md §21.6). Checks the request against this session
    /// (its id, its token in constant time, the counts); on success this session answers the
    /// client with its HELLO (a new token), replays what the client did not finish and carries
    /// on over the new transport — the driver moves the transport over and drops `fresh`. On
    /// refusal nothing changes here; the caller answers `fresh` with
    /// [`accept_with`](Self::accept_with) and the status.
    ///
    /// The caller checks that the new connection authenticated as this session's identity
    /// (§21.7) before calling.
    pub fn resume_from(&mut self, fresh: &mut Session, now: Instant) -> Result<(), ResumeStatus> {
        let Some(request) = fresh.resume.requested.clone() else {
            return Err(ResumeStatus::UnknownSession);
        };
        let Some(ticket) = self.resume.ticket.clone() else {
            return Err(ResumeStatus::UnknownSession);
        };
        if self.role != Role::Server || !matches!(self.state, State::Detached | State::Open) {
            return Err(ResumeStatus::UnknownSession);
        }
        // spec: wire.md §21.7 — the current token, or the one before it while no frame has
        // shown that the client received its replacement (the answering HELLO may have been
        // lost with the transport).
        let previous_ok = self
            .resume
            .unconfirmed
            .as_ref()
            .is_some_and(|p| p.token_matches(&request.token));
        if request.session_id != ticket.session_id
            || !(ticket.token_matches(&request.token) || previous_ok)
        {
            return Err(ResumeStatus::Forbidden);
        }
        if !self.can_rewind(&request.received) {
            return Err(ResumeStatus::Inconsistent);
        }
        // The client saw its transport die before we did (a half-open TCP connection): the
        // old transport is dropped now (`SessionEvent::Detached` tells the driver).
        if self.state == State::Open && !self.detach(now) {
            return Err(ResumeStatus::UnknownSession);
        }
        let received = self.finished_counts();
        self.peer = fresh.peer;
        self.new_connection(now);
        self.resume.version = WIRE_VERSION_1_1;
        self.decoder.set_version(WIRE_VERSION_1_1);
        // What the client sent after its HELLO (a byte stream's rest, or per-channel streams).
        self.stream_buf = std::mem::take(&mut fresh.stream_buf);
        self.streams.bufs = std::mem::take(&mut fresh.streams.bufs);
        let renewed = ticket.renewed();
        let mut hello = Hello::new(
            &self.config.settings,
            Bytes::new(),
            self.config.agent.clone(),
        );
        hello.versions = vec![WIRE_VERSION_1_1];
        hello.session = Some(Box::new(SessionTicket {
            session_id: renewed.session_id,
            token: renewed.token.clone(),
            status: ResumeStatus::Resumed,
            received,
        }));
        self.resume.ticket = Some(renewed);
        // The spent token stays good until the client shows it has the new one (any frame on
        // the new connection): until then only it and the new one resume.
        if self.resume.unconfirmed.is_none() {
            self.resume.unconfirmed = Some(ticket);
        }
        self.control.push_back(Frame::Hello(hello));
        fresh.resume.requested = None;
        fresh.state = State::Closed; // its transport now belongs to this session
        self.resumed(request.received)
            .map_err(|_| ResumeStatus::Inconsistent)?;
        Ok(())
    }

    /// Server: a frame arrived on a resumed connection after our HELLO: the client has the new
    /// token, and the spent one resumes nothing any more (§21.7).
    pub(super) fn confirm_token(&mut self) {
        self.resume.unconfirmed = None;
    }

    /// Server: the client's resume request, while its HELLO awaits the application's decision.
    pub fn resume_request(&self) -> Option<&ResumeRequest> {
        self.resume.requested.as_ref()
    }

    /// Whether our replay buffers can resume from the peer's `received` counts.
    fn can_rewind(&self, received: &[u64; 4]) -> bool {
        self.outgoing
            .iter()
            .zip(received)
            .all(|(o, &r)| r >= o.replay().acknowledged() && r <= o.started())
    }

    /// Per channel, the peer's messages finished here (what a resume tells the peer).
    fn finished_counts(&self) -> [u64; 4] {
        Channel::ALL.map(|c| self.incoming[c.index()].finished())
    }

    /// Everything that belongs to one transport starts over: frame decoding, windows, header
    /// tables, the peer's schema bindings, keepalive, the HELLO deadline; messages in progress
    /// from the peer are dropped (it sends them again). Queues and replay buffers stay.
    fn new_connection(&mut self, now: Instant) {
        let local = self.config.settings;
        self.now = now;
        self.state = State::AwaitingHello;
        self.decoder = crate::frame::FrameDecoder::new(local);
        self.resume.version = WIRE_VERSION_1_0; // until the new HELLO exchange says
        self.stream_buf.clear();
        self.control.clear();
        self.pong = None;
        self.streams = Default::default();
        self.scheduler = Default::default();
        self.flow = super::flow::FlowControl::new(&local, self.config.framing);
        self.keepalive = super::Keepalive::new(
            now,
            self.config.keepalive_interval,
            self.config.keepalive_timeout,
        );
        self.handshake = super::handshake::Handshake::new(now, self.config.hello_timeout);
        self.schemas.forget_inbound();
        let finished = self.finished_counts();
        let (table, list) = (local.header_table_size as usize, local.max_header_list_size);
        for (ch, &n) in self.incoming.iter_mut().zip(&finished) {
            ch.reattach(n, table, list);
        }
        self.resume.acked = finished;
    }

    /// The peer finished our messages below `received`: each channel replays from there, its
    /// schema bindings sent again first (§21.6); the session is open again.
    fn resumed(&mut self, received: [u64; 4]) -> Result<(), SessionError> {
        let mut replayed = [0u64; 4];
        for ch in Channel::ALL {
            let i = ch.index();
            let r = received[i];
            replayed[i] = self.outgoing[i].started().saturating_sub(r);
            if let Err((acknowledged, started)) = self.outgoing[i].rewind(r) {
                return Err(SessionError::ResumeInconsistent {
                    channel: ch,
                    received: r,
                    acknowledged,
                    started,
                });
            }
        }
        let bindings: Vec<SchemaFrame> = self.schemas.outbound_frames();
        for b in bindings {
            self.queue_on_channel(b.channel, Frame::Schema(b));
        }
        self.open_transport();
        debug!(role = ?self.role, ?received, "session resumed");
        self.events
            .push_back(Event::Session(SessionEvent::Resumed { received, replayed }));
        Ok(())
    }

    /// A failed resume (§21.6): every started, unacknowledged message may be lost; the session
    /// is a new one (numbering from 0), and what was queued but not started goes out on it.
    fn forget_started(&mut self) -> Vec<LostMessage> {
        let mut lost = Vec::new();
        for out in &mut self.outgoing {
            lost.extend(out.forget_started());
        }
        lost
    }

    /// Client: the new transport's HELLO exchange did not finish in time (a server that hung
    /// mid-handshake): like a lost transport, the session waits for the next one (wire.md
    /// §21.6.6), within its original time limit.
    pub(super) fn resume_hello_timed_out(&mut self) {
        self.state = State::Detached;
        self.control.clear();
        self.events
            .push_back(Event::Session(SessionEvent::Detached));
    }

    /// Client: the server's HELLO answered (or ignored) our resume request.
    pub(super) fn on_resume_answer(
        &mut self,
        ticket: Option<Box<SessionTicket>>,
    ) -> Result<bool, SessionError> {
        let Some(asked) = self.resume.asked.take() else {
            return Ok(false);
        };
        match ticket {
            Some(t) if t.status == ResumeStatus::Resumed && t.session_id == asked.session_id => {
                self.resume.ticket = Some(Ticket {
                    session_id: t.session_id,
                    token: t.token,
                });
                self.resumed(t.received)?;
                Ok(true)
            }
            other => {
                // Refused (or a server that no longer offers resumption): a new session.
                let status = other.as_ref().map_or(ResumeStatus::UnknownSession, |t| {
                    if t.status == ResumeStatus::Resumed {
                        ResumeStatus::UnknownSession
                    } else {
                        t.status
                    }
                });
                let lost = self.forget_started();
                for ch in &mut self.incoming {
                    let (table, list) = (
                        self.config.settings.header_table_size as usize,
                        self.config.settings.max_header_list_size,
                    );
                    ch.reattach(0, table, list);
                }
                self.resume.acked = [0; 4];
                self.resume.ticket = other.map(|t| Ticket {
                    session_id: t.session_id,
                    token: t.token,
                });
                debug!(
                    status = status.name(),
                    lost = lost.len(),
                    "resume refused: new session"
                );
                self.events
                    .push_back(Event::Session(SessionEvent::ResumeFailed { status, lost }));
                Ok(false)
            }
        }
    }

    /// The version-1.1 parts of a peer's HELLO: the flags its role may send, and what they
    /// make of this session.
    pub(super) fn check_hello_blocks(&self, hello: &Hello) -> Result<(), SessionError> {
        let wrong = |what: &'static str| SessionError::UnexpectedFrame {
            frame: what,
            state: "the HELLO exchange",
        };
        match self.role {
            Role::Server if hello.session.is_some() => {
                Err(wrong("a HELLO with SESSION from a client"))
            }
            Role::Client if hello.resume.is_some() => {
                Err(wrong("a HELLO with RESUME from a server"))
            }
            Role::Server
                if hello.resume.is_some() && !hello.versions.contains(&WIRE_VERSION_1_1) =>
            {
                Err(wrong("a RESUME request without version 1.1"))
            }
            Role::Client if hello.session.is_some() && hello.versions != [WIRE_VERSION_1_1] => {
                Err(wrong("a SESSION block without version 1.1"))
            }
            _ => Ok(()),
        }
    }

    /// Server: the ticket a new session's HELLO carries, if the session is resumable (version
    /// 1.1, both `RESUME_BUFFER`s non-zero); `status` answers the client's resume request.
    pub(super) fn issue_ticket(&mut self, status: ResumeStatus) -> Option<Box<SessionTicket>> {
        let asked = self.resume.requested.take().is_some();
        if self.resume.version != WIRE_VERSION_1_1 {
            return None;
        }
        let wants = self.peer.resume_buffer > 0 && self.config.settings.resume_buffer > 0;
        if !wants && !asked {
            return None;
        }
        let status = match (asked, status) {
            (false, _) => ResumeStatus::New,
            (true, ResumeStatus::New | ResumeStatus::Resumed) => ResumeStatus::UnknownSession,
            (true, s) => s,
        };
        if !wants {
            // Asked to resume of a server (or for a client) that keeps no replay buffer: no
            // ticket; the client sees its resume refused and a session that is not resumable.
            debug!(
                status = status.name(),
                "resume asked without resumption on both sides"
            );
            return None;
        }
        let ticket = Ticket::random();
        self.resume.ticket = Some(ticket.clone());
        Some(Box::new(SessionTicket {
            session_id: ticket.session_id,
            token: ticket.token,
            status,
            received: [0; 4],
        }))
    }

    /// Client: a resumable session begins when the server's HELLO carries a ticket.
    pub(super) fn take_new_ticket(&mut self, ticket: Option<Box<SessionTicket>>) {
        if self.config.settings.resume_buffer == 0 || self.resume.version != WIRE_VERSION_1_1 {
            return;
        }
        self.resume.ticket = ticket.map(|t| Ticket {
            session_id: t.session_id,
            token: t.token,
        });
    }

    /// The replay buffers keep messages once the session is resumable.
    pub(super) fn enable_replay(&mut self) {
        if self.resume.ticket.is_some() {
            let limit = self.config.settings.resume_buffer;
            for out in &mut self.outgoing {
                out.enable_replay(limit);
            }
        }
    }

    /// An ACK from the peer (§21.3): our messages it finished leave the replay buffer.
    pub(super) fn on_ack(&mut self, ack: Ack) -> Result<(), SessionError> {
        if self.resume.version != WIRE_VERSION_1_1 {
            // spec: wire.md §4.2.1, §19 — under 1.0, type 0x0A is an unknown critical type.
            return Err(FrameError::UnknownFrameType {
                frame_type: FrameType::ACK,
            }
            .into());
        }
        if self.resume.ticket.is_none() {
            return Err(SessionError::UnexpectedFrame {
                frame: "an ACK",
                state: "a session that is not resumable",
            });
        }
        let out = &mut self.outgoing[ack.channel.index()];
        let before = out.replay().acknowledged();
        if ack.received < before {
            return Err(SessionError::AckOutOfRange {
                channel: ack.channel,
                received: ack.received,
                acknowledged: before,
                started: out.started(),
            });
        }
        out.on_ack(ack.received)
            .map_err(|started| SessionError::AckOutOfRange {
                channel: ack.channel,
                received: ack.received,
                acknowledged: before,
                started,
            })
    }

    /// Whether an ACK must leave even if nothing else does (§21.3): a channel's finished,
    /// unacknowledged messages reached a quarter of the peer's `RESUME_BUFFER`.
    pub fn ack_due(&self) -> bool {
        self.resume.ticket.is_some()
            && self.state == State::Open
            && self
                .incoming
                .iter()
                .zip(&self.resume.acked)
                .any(|(c, &acked)| {
                    (c.unacked_charge() > 0 && c.unacked_charge() >= self.peer.resume_buffer / 4)
                        || c.finished().saturating_sub(acked) >= ACK_COUNT_DUE
                })
    }

    /// Queues the ACKs this write carries: those due (§21.3); when `credit` (the write carries
    /// CREDIT anyway), every channel with something finished to acknowledge; when `carries`
    /// (the write leaves anyway), channels with at least [`ACK_RIDE_COUNT`] messages to
    /// acknowledge — so the peer's replay buffer, and the received buffers its messages may
    /// be views of, are released within a few messages, at well under a byte per message.
    pub(super) fn queue_acks(&mut self, credit: bool, carries: bool) {
        if self.resume.ticket.is_none() || self.state != State::Open {
            return;
        }
        let due = self.peer.resume_buffer / 4;
        for ch in Channel::ALL {
            let i = ch.index();
            let finished = self.incoming[i].finished();
            let charge = self.incoming[i].unacked_charge();
            let news = finished.saturating_sub(self.resume.acked[i]);
            let ride = credit || (carries && news >= ACK_RIDE_COUNT);
            let due = (charge > 0 && charge >= due) || news >= ACK_COUNT_DUE;
            if news > 0 && (ride || due) {
                self.incoming[i].take_unacked_charge();
                self.resume.acked[i] = finished;
                self.control.push_back(Frame::Ack(Ack {
                    channel: ch,
                    received: finished,
                }));
            }
        }
    }

    /// How long a detached session waits to be resumed.
    pub fn resume_timeout(&self) -> Duration {
        self.config.resume_timeout
    }
}
