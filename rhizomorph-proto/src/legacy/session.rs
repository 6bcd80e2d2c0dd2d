//! The legacy session (legacy.md §L2–§L4): one hypha-rpc-compatible WebSocket connection as a
//! state machine — WebSocket messages in, WebSocket messages and events out.
//!
//! Owns, sans-IO, everything legacy mode does above the RFC 6455 framing: the client's and the
//! server's handshakes (§L4.1, §L4.2), the TEXT keepalive and token messages (§L4.3, §L4.4,
//! answered from one slot each, so a flood of pings costs no memory), the memory bounds that
//! legacy mode has instead of flow control (a send buffer and a receive window, counted in
//! bytes, §L3.3), the handshake and idle timers, and rate-limited reports of messages that do
//! not decode. Time comes in as an argument (`now`); it never reads a clock, opens a socket or
//! decodes a payload.
//!
//! # How a driver uses it
//!
//! | when | call |
//! |---|---|
//! | a WebSocket message (BINARY, TEXT or the peer's close) was read | [`handle_message`](LegacySession::handle_message) |
//! | the transport ended or failed | [`handle_transport_end`](LegacySession::handle_transport_end) |
//! | before reading more | [`wants_read`](LegacySession::wants_read) (false: wait for [`release`](LegacySession::release)) |
//! | after any call | [`poll_event`](LegacySession::poll_event) until `None` |
//! | the writer can take a message | [`poll_transmit`](LegacySession::poll_transmit) |
//! | timers | [`poll_timeout`](LegacySession::poll_timeout), then [`handle_timeout`](LegacySession::handle_timeout) at that instant |
//!
//! The application side: [`send`](LegacySession::send) (which says `Full` while the send
//! buffer is), [`release`](LegacySession::release) once it is done with a message,
//! [`close`](LegacySession::close); a server also [`accept`](LegacySession::accept)s or
//! [`refuse`](LegacySession::refuse)s after [`LegacyEvent::Authenticate`] and calls
//! [`mark_ready`](LegacySession::mark_ready) when the peer may learn it is connected.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{decode, encode_message, LegacyLimits};
use super::handshake::{AuthInfo, ConnectionInfo, TextMessage, MAX_CONTROL_TEXT};
use super::LegacyError;
use crate::frame::{Channel, Compression, PayloadEncoding};
use crate::header::RoutingHeader;
use crate::session::{Message, SessionStats};
use crate::websocket::WsEvent;

/// Bytes charged against the receive window for each message on top of its length: what a
/// received message costs in memory besides its bytes (its header fields, its place in the
/// queues), so that a flood of empty messages is bounded like one of large ones.
pub const MESSAGE_OVERHEAD: usize = 256;

/// WebSocket close codes the legacy session sends (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away: the idle timeout.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame the endpoint cannot accept (a BINARY message where the handshake's TEXT goes).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Policy violation: authentication refused or not sent in time (hypha uses it too).
    pub const POLICY: u16 = 1008;
    /// Internal error: the application closed with an error code.
    pub const INTERNAL: u16 = 1011;
}

/// Which end of the connection this is, and what it starts with.
#[derive(Debug, Clone)]
pub enum Side {
    /// A client: sends `auth` first (§L4.1), then waits for `connection_info`.
    Client {
        /// The authentication message.
        auth: AuthInfo,
    },
    /// A server: waits for the client's authentication message.
    Server,
}

/// The legacy session's limits and timers.
#[derive(Debug, Clone)]
pub struct LegacyConfig {
    /// Bytes of queued outgoing messages at which [`LegacySession::send`] says `Full` (a
    /// message larger than this is taken when nothing else is queued).
    pub send_buffer: usize,
    /// Bytes of received messages (each charged its length plus [`MESSAGE_OVERHEAD`]) the
    /// application may hold unreleased before the session stops wanting to read (§L3.3).
    pub receive_window: usize,
    /// The handshake must finish within this (§L4.1: hypha allows 5 s).
    pub handshake_timeout: Duration,
    /// Client: the first `ping` this long after connecting, then every `ping_interval`
    /// (§L4.3; hypha-rpc: 2 s, then 20 s). `None`: no pings.
    pub ping_interval: Option<Duration>,
    /// Close the connection when nothing arrived from the peer for this long (`None`: never).
    /// A hypha-rpc client pings every 20 s, so the default is three intervals.
    pub idle_timeout: Option<Duration>,
    /// Bounds on the legacy header (§L3.3).
    pub limits: LegacyLimits,
    /// At most one [`LegacyEvent::Malformed`] per this interval; the rest are counted.
    pub report_interval: Duration,
}

impl Default for LegacyConfig {
    fn default() -> Self {
        LegacyConfig {
            send_buffer: 4 << 20,
            receive_window: 4 << 20,
            handshake_timeout: Duration::from_secs(5),
            ping_interval: Some(Duration::from_secs(20)),
            idle_timeout: Some(Duration::from_secs(60)),
            limits: LegacyLimits::default(),
            report_interval: Duration::from_secs(1),
        }
    }
}

/// What the session tells its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum LegacyEvent {
    /// Server: the client's authentication message (§L4.1). Answer with
    /// [`LegacySession::accept`] or [`LegacySession::refuse`].
    Authenticate(AuthInfo),
    /// Client: the server accepted us (§L4.2).
    Connected(Box<ConnectionInfo>),
    /// A message arrived (as a native message on `rpc`, §L3.2). Give its `credit` back with
    /// [`LegacySession::release`] once it is consumed.
    Message(Message),
    /// Server: the client asked for a reconnection token (§L4.4); answer with
    /// [`LegacySession::send_reconnection_token`]. Not repeated until answered.
    TokenRequested,
    /// A message that does not decode was dropped (§L3.3); `suppressed` more were dropped
    /// since the last report without one.
    Malformed {
        /// Why the last one failed.
        error: LegacyError,
        /// Its length.
        len: usize,
        /// Dropped since the previous report and not reported.
        suppressed: u64,
    },
    /// The connection is over; nothing more is sent or received.
    Closed(LegacyClose),
}

/// Who ended the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// This side (the application, a timeout, a handshake refusal).
    Local,
    /// The peer, with a WebSocket close.
    Peer,
    /// Neither: the transport ended or failed.
    Transport,
}

/// How a legacy connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyClose {
    /// Who ended it.
    pub initiator: Initiator,
    /// The WebSocket close code (none if the peer's close had none or the transport ended).
    pub code: Option<u16>,
    /// The close reason, or what went wrong.
    pub reason: String,
    /// Client: the server refused us during the handshake (its `error` message or close).
    pub refused: bool,
}

/// One WebSocket message to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyTransmit {
    /// A BINARY message, written from these segments in order.
    Binary(Vec<Bytes>),
    /// A TEXT message.
    Text(Bytes),
    /// The close frame; the writer shuts the stream down after it.
    Close {
        /// Its status code.
        code: u16,
        /// Its reason.
        reason: String,
    },
}

/// Why [`LegacySession::send`] did not queue a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacySendError {
    /// The send buffer is full: try again after [`LegacySession::poll_transmit`] took some.
    #[error("legacy send buffer full ({queued} bytes queued, {len} more asked)")]
    Full {
        /// Bytes queued.
        queued: usize,
        /// The message's bytes.
        len: usize,
    },
    /// The connection is closing or closed.
    #[error("the legacy connection is closed")]
    Closed,
    /// The message cannot be written in legacy mode (a payload that is not one msgpack value,
    /// a header over the limits).
    #[error(transparent)]
    Encode(#[from] LegacyError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Client: waiting for `connection_info`; server: for the authentication message.
    Handshake,
    /// Server: the authentication message was handed out; waiting for accept or refuse.
    Authenticating,
    /// Messages flow.
    Open,
    /// A close is queued (after what is queued before it, if graceful).
    Closing,
    /// Over.
    Closed,
}

/// The state machine of one legacy connection (see the module docs for the call order).
#[derive(Debug)]
pub struct LegacySession {
    is_client: bool,
    config: LegacyConfig,
    state: State,
    /// Server: the application is ready; `connection_info` and what follows may leave.
    ready: bool,
    /// When the handshake must be done by.
    handshake_deadline: Instant,
    last_received: Instant,
    /// Client: when the next ping is due.
    next_ping: Option<Instant>,
    /// Client: when the ping now outstanding left.
    ping_sent: Option<Instant>,
    rtt: Option<Duration>,
    /// The handshake's TEXT message (client: auth; server: `connection_info` or `error`).
    handshake_text: Option<Bytes>,
    pong_due: bool,
    ping_due: bool,
    token_requested: bool,
    token_reply: Option<Bytes>,
    messages: VecDeque<Vec<Bytes>>,
    queued: usize,
    /// Bytes charged for received messages the application holds.
    unread: usize,
    /// The close to send: code, reason; `graceful` waits for the queued messages.
    close: Option<(u16, String)>,
    graceful: bool,
    /// How it ended, once it has (reported once as an event).
    ended: Option<LegacyClose>,
    events: VecDeque<LegacyEvent>,
    next_id: u64,
    sequence: u64,
    stats: SessionStats,
    malformed: u64,
    pings: u64,
    last_report: Option<Instant>,
    suppressed: u64,
}

impl LegacySession {
    /// A session for `side`, starting at `now`. A client queues its authentication message.
    pub fn new(side: Side, config: LegacyConfig, now: Instant) -> LegacySession {
        let (is_client, handshake_text) = match side {
            Side::Client { auth } => (true, Some(Bytes::from(auth.to_text()))),
            Side::Server => (false, None),
        };
        LegacySession {
            is_client,
            handshake_deadline: now + config.handshake_timeout,
            config,
            state: State::Handshake,
            ready: is_client,
            last_received: now,
            next_ping: None,
            ping_sent: None,
            rtt: None,
            handshake_text,
            pong_due: false,
            ping_due: false,
            token_requested: false,
            token_reply: None,
            messages: VecDeque::new(),
            queued: 0,
            unread: 0,
            close: None,
            graceful: false,
            ended: None,
            events: VecDeque::new(),
            next_id: 0,
            sequence: 0,
            stats: SessionStats::default(),
            malformed: 0,
            pings: 0,
            last_report: None,
            suppressed: 0,
        }
    }

    /// One WebSocket message read from the peer. Pings and pongs of the WebSocket layer are
    /// the framing's business and ignored here.
    pub fn handle_message(&mut self, now: Instant, message: WsEvent) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.last_received = now;
        match message {
            WsEvent::Binary(bytes) => self.on_binary(now, bytes),
            WsEvent::Text(text) => self.on_text(now, &text),
            WsEvent::Close(c) => {
                let refused = self.is_client && self.state == State::Handshake;
                self.end(LegacyClose {
                    initiator: Initiator::Peer,
                    code: c.code,
                    reason: c.reason,
                    refused,
                });
            }
            WsEvent::Ping(_) | WsEvent::Pong(_) => {}
        }
    }

    /// The transport ended (`error`: how it failed, `None`: it just ended).
    pub fn handle_transport_end(&mut self, error: Option<String>) {
        if matches!(self.state, State::Closed) {
            return;
        }
        let refused = self.is_client && self.state == State::Handshake;
        self.end(LegacyClose {
            initiator: Initiator::Transport,
            code: None,
            reason: error.unwrap_or_else(|| "the WebSocket ended".into()),
            refused,
        });
    }

    fn on_binary(&mut self, now: Instant, bytes: Bytes) {
        match self.state {
            // spec: legacy.md §L4.2 — a client skips BINARY messages before `connection_info`.
            State::Handshake if self.is_client => {}
            State::Handshake | State::Authenticating => {
                // spec: legacy.md §L4.1 — the first message is the TEXT authentication.
                self.close_with(
                    close_code::UNSUPPORTED_DATA,
                    format!(
                        "expected the authentication JSON, got a {}-byte BINARY message",
                        bytes.len()
                    ),
                    false,
                );
            }
            State::Open | State::Closing => {
                let len = bytes.len();
                match decode(bytes, &self.config.limits) {
                    Ok(m) => {
                        // spec: legacy.md §L3.3 — charged to the receive window.
                        let credit = (len + MESSAGE_OVERHEAD) as u64;
                        self.unread += credit as usize;
                        let rpc = Channel::Rpc.index();
                        self.stats.bytes_received[rpc] += len as u64;
                        self.stats.messages_received[rpc] += 1;
                        let sequence = self.sequence;
                        self.sequence += 1;
                        self.events.push_back(LegacyEvent::Message(Message {
                            channel: Channel::Rpc,
                            sequence,
                            header: m.header,
                            payload: m.payload,
                            encoding: PayloadEncoding::Msgpack,
                            compression: Compression::None,
                            still_compressed: false,
                            schema: None,
                            error: None,
                            credit,
                        }));
                    }
                    // spec: legacy.md §L3.3 — dropped and logged; the connection goes on.
                    Err(error) => self.malformed(now, error, len),
                }
            }
            State::Closed => {}
        }
    }

    fn on_text(&mut self, now: Instant, text: &[u8]) {
        let text = match std::str::from_utf8(text) {
            Ok(t) => t,
            Err(e) => {
                let error = LegacyError::BadJson(format!("TEXT message is not UTF-8: {e}"));
                return self.on_bad_text(now, error, text.len());
            }
        };
        match self.state {
            State::Handshake if self.is_client => match TextMessage::parse(text) {
                Ok(TextMessage::ConnectionInfo(info)) => {
                    self.state = State::Open;
                    self.schedule_first_ping(now);
                    self.events.push_back(LegacyEvent::Connected(info));
                }
                Ok(TextMessage::Error(message)) => self.refused(message),
                Ok(other) => self.refused(format!("unexpected first message {other:?}")),
                Err(e) => self.refused(e.to_string()),
            },
            State::Handshake => match AuthInfo::parse(text) {
                Ok(auth) => {
                    self.state = State::Authenticating;
                    self.events.push_back(LegacyEvent::Authenticate(auth));
                }
                // hypha: 1003 for a first message it cannot read.
                Err(e) => self.close_with(close_code::UNSUPPORTED_DATA, e.to_string(), false),
            },
            State::Authenticating => {}
            State::Open | State::Closing => self.on_control(now, text),
            State::Closed => {}
        }
    }

    /// A TEXT message after the handshake (§L4.3–§L4.5).
    fn on_control(&mut self, now: Instant, text: &str) {
        // spec: legacy.md §L4.5 — a server ignores long TEXT messages.
        if !self.is_client && text.len() > MAX_CONTROL_TEXT {
            let error = LegacyError::TextTooLong {
                len: text.len(),
                max: MAX_CONTROL_TEXT,
            };
            return self.on_bad_text(now, error, text.len());
        }
        match TextMessage::parse(text) {
            // One pong answers any number of pings received before it leaves.
            Ok(TextMessage::Ping) if !self.is_client => {
                self.pings += 1;
                self.pong_due = true;
            }
            Ok(TextMessage::RefreshToken) if !self.is_client => {
                if !self.token_requested {
                    self.token_requested = true;
                    self.events.push_back(LegacyEvent::TokenRequested);
                }
            }
            Ok(TextMessage::Pong) if self.is_client => {
                if let Some(sent) = self.ping_sent.take() {
                    self.rtt = Some(now.saturating_duration_since(sent));
                }
            }
            // spec: legacy.md §L4.5 — anything else is ignored.
            Ok(_) => {}
            Err(error) => self.on_bad_text(now, error, text.len()),
        }
    }

    fn on_bad_text(&mut self, now: Instant, error: LegacyError, len: usize) {
        if self.state == State::Handshake && self.is_client {
            self.refused(error.to_string());
        } else if self.state == State::Handshake {
            self.close_with(close_code::UNSUPPORTED_DATA, error.to_string(), false);
        } else {
            self.malformed(now, error, len);
        }
    }

    fn malformed(&mut self, now: Instant, error: LegacyError, len: usize) {
        self.malformed += 1;
        let due = self.last_report.map_or(true, |t| {
            now.saturating_duration_since(t) >= self.config.report_interval
        });
        if due {
            self.last_report = Some(now);
            let suppressed = std::mem::take(&mut self.suppressed);
            self.events.push_back(LegacyEvent::Malformed {
                error,
                len,
                suppressed,
            });
        } else {
            self.suppressed += 1;
        }
    }

    fn refused(&mut self, message: String) {
        self.close = None;
        self.end(LegacyClose {
            initiator: Initiator::Peer,
            code: None,
            reason: message,
            refused: true,
        });
    }

    fn schedule_first_ping(&mut self, now: Instant) {
        if let Some(interval) = self.config.ping_interval {
            self.next_ping = Some(now + Duration::from_secs(2).min(interval));
        }
    }

    /// Server: accepts the client the [`LegacyEvent::Authenticate`] was about, with the
    /// `connection_info` text (§L4.2) it receives once the application is
    /// [ready](Self::mark_ready). Nothing happens in any other state.
    pub fn accept(&mut self, connection_info: String) {
        if self.is_client || self.state != State::Authenticating {
            return;
        }
        self.state = State::Open;
        self.handshake_text = Some(Bytes::from(connection_info));
    }

    /// Server: refuses the client with `message`: an `error` TEXT message, then close 1008
    /// (§L4.2).
    pub fn refuse(&mut self, message: &str) {
        if self.is_client || !matches!(self.state, State::Handshake | State::Authenticating) {
            return;
        }
        self.handshake_text = Some(Bytes::from(TextMessage::Error(message.into()).to_text()));
        self.ready = true;
        self.close_with(close_code::POLICY, message.to_string(), true);
    }

    /// Server: the application can take messages; `connection_info` may leave (§L4.2).
    /// Idempotent; a client is always ready.
    pub fn mark_ready(&mut self) {
        self.ready = true;
    }

    /// Server: answers the outstanding `refresh_token` with `token` (§L4.4). A newer token
    /// replaces one not yet sent.
    pub fn send_reconnection_token(&mut self, token: &str) {
        if self.is_client || !matches!(self.state, State::Open) {
            return;
        }
        self.token_requested = false;
        let text = TextMessage::ReconnectionToken(token.into()).to_text();
        self.token_reply = Some(Bytes::from(text));
    }

    /// Queues a message: `msgpack(header) ++ payload` (§L3.1), the payload checked to be one
    /// msgpack value and not copied when it is large (§L2.4). Returns its id. Marks the
    /// session ready (a server that sends is ready).
    pub fn send(&mut self, header: &RoutingHeader, payload: Bytes) -> Result<u64, LegacySendError> {
        if !matches!(self.state, State::Open) {
            return Err(LegacySendError::Closed);
        }
        let len = payload.len();
        if self.queued != 0 && self.queued + len > self.config.send_buffer {
            return Err(LegacySendError::Full {
                queued: self.queued,
                len,
            });
        }
        let encoded = encode_message(header, payload, &self.config.limits)?;
        self.ready = true;
        let len = encoded.len();
        let mut segments = vec![Bytes::from(encoded.head)];
        segments.extend(encoded.tail);
        self.messages.push_back(segments);
        self.queued += len;
        let rpc = Channel::Rpc.index();
        self.stats.bytes_sent[rpc] += len as u64;
        self.stats.messages_sent[rpc] += 1;
        let id = self.next_id;
        self.next_id += 1;
        Ok(id)
    }

    /// The application is done with a received message of `credit` (its
    /// [`Message::credit`]): the session may read that much more.
    pub fn release(&mut self, credit: u64) {
        self.unread = self.unread.saturating_sub(credit as usize);
    }

    /// Closes with WebSocket status `code`: after the queued messages if `graceful`, at once
    /// (dropping them) otherwise.
    pub fn close(&mut self, code: u16, reason: &str, graceful: bool) {
        match self.state {
            State::Closed => {}
            // Closing already: a close at once overrides a graceful one.
            State::Closing if graceful => {}
            _ => {
                if !self.is_client && !self.ready {
                    // A server that closes before it was ready never says `connection_info`: a
                    // refusal (any code but a normal close) says `error` instead, as hypha does.
                    self.handshake_text = (code != close_code::NORMAL)
                        .then(|| Bytes::from(TextMessage::Error(reason.to_string()).to_text()));
                }
                // The close is sent whether or not the application got ready.
                self.ready = true;
                self.close_with(code, reason.to_string(), graceful);
            }
        }
    }

    fn close_with(&mut self, code: u16, reason: String, graceful: bool) {
        if matches!(self.state, State::Closed) {
            return;
        }
        if !graceful {
            self.messages.clear();
            self.queued = 0;
        }
        self.state = State::Closing;
        self.graceful = graceful;
        self.close = Some((code, reason));
    }

    fn end(&mut self, how: LegacyClose) {
        self.state = State::Closed;
        self.messages.clear();
        self.queued = 0;
        self.close = None;
        self.handshake_text = None;
        self.token_reply = None;
        self.ended = Some(how.clone());
        self.events.push_back(LegacyEvent::Closed(how));
    }

    /// The next WebSocket message to write: the handshake's TEXT, then keepalive and token
    /// replies, then queued messages in order; the close last (or at once if not graceful).
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<LegacyTransmit> {
        if matches!(self.state, State::Closed) {
            return None;
        }
        if self.ready {
            if let Some(text) = self.handshake_text.take() {
                return Some(LegacyTransmit::Text(text));
            }
        }
        if let Some((code, reason)) = &self.close {
            if !self.graceful || self.messages.is_empty() {
                let (code, reason) = (*code, reason.clone());
                self.end(LegacyClose {
                    initiator: Initiator::Local,
                    code: Some(code),
                    reason: reason.clone(),
                    refused: false,
                });
                return Some(LegacyTransmit::Close { code, reason });
            }
        }
        if !self.ready || matches!(self.state, State::Handshake | State::Authenticating) {
            return None;
        }
        if std::mem::take(&mut self.pong_due) {
            return Some(LegacyTransmit::Text(Bytes::from(
                TextMessage::Pong.to_text(),
            )));
        }
        if std::mem::take(&mut self.ping_due) {
            return Some(LegacyTransmit::Text(Bytes::from(
                TextMessage::Ping.to_text(),
            )));
        }
        if let Some(text) = self.token_reply.take() {
            return Some(LegacyTransmit::Text(text));
        }
        let segments = self.messages.pop_front()?;
        self.queued -= segments.iter().map(Bytes::len).sum::<usize>();
        Some(LegacyTransmit::Binary(segments))
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has something now.
    pub fn wants_transmit(&self) -> bool {
        if matches!(self.state, State::Closed) {
            return false;
        }
        let open = self.ready && !matches!(self.state, State::Handshake | State::Authenticating);
        (self.ready && self.handshake_text.is_some())
            || (self.close.is_some() && (!self.graceful || self.messages.is_empty()))
            || (open
                && (self.pong_due
                    || self.ping_due
                    || self.token_reply.is_some()
                    || !self.messages.is_empty()))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<LegacyEvent> {
        self.events.pop_front()
    }

    /// Whether the driver should read more: false while the application holds a receive
    /// window's worth of messages (§L3.3; TCP then pushes back on the peer) and once closed.
    pub fn wants_read(&self) -> bool {
        !matches!(self.state, State::Closed) && self.unread < self.config.receive_window
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must run at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshake | State::Authenticating => Some(self.handshake_deadline),
            State::Open => {
                let idle = self.config.idle_timeout.map(|t| self.last_received + t);
                match (idle, self.next_ping) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            State::Closing | State::Closed => None,
        }
    }

    /// Runs the timers due at `now`: a handshake not done in time closes (1008); a peer
    /// silent for the idle timeout is closed (1001); a client's ping falls due.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Handshake | State::Authenticating if now >= self.handshake_deadline => {
                let what = if self.is_client {
                    "no connection_info"
                } else {
                    "no authentication"
                };
                let secs = self.config.handshake_timeout.as_secs_f64();
                let reason = format!("{what} within {secs} s (legacy.md §L4.1)");
                self.close_with(close_code::POLICY, reason, false);
            }
            State::Open => {
                if !self.wants_read() {
                    // Our application is not reading: the peer's messages wait in the socket,
                    // unseen. It is not idle.
                    self.last_received = now;
                }
                if let Some(idle) = self.config.idle_timeout {
                    if now >= self.last_received + idle {
                        let secs = idle.as_secs_f64();
                        let reason = format!("nothing received for {secs} s (legacy.md §L4.3)");
                        return self.close_with(close_code::GOING_AWAY, reason, false);
                    }
                }
                if let (Some(due), Some(interval)) = (self.next_ping, self.config.ping_interval) {
                    if now >= due {
                        self.ping_due = true;
                        self.ping_sent.get_or_insert(now);
                        self.next_ping = Some(now + interval);
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether messages may be sent (the handshake is done and no close is queued).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// How it ended, once it has.
    pub fn close_reason(&self) -> Option<&LegacyClose> {
        self.ended.as_ref()
    }

    /// Bytes of messages queued and not yet handed to [`poll_transmit`](Self::poll_transmit).
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Bytes charged for received messages not yet released.
    pub fn unread_bytes(&self) -> usize {
        self.unread
    }

    /// Counters (messages and bytes on `rpc`: legacy mode has no channels).
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Client: the last `ping`/`pong` round trip (§L4.3).
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Server: `ping` messages received (each answered: one pong answers those before it).
    pub fn pings_received(&self) -> u64 {
        self.pings
    }

    /// Messages dropped because they did not decode (§L3.3).
    pub fn malformed_count(&self) -> u64 {
        self.malformed
    }

    /// Events waiting for [`poll_event`](Self::poll_event) (bounded: received messages by the
    /// receive window, reports by their interval, the rest by one slot each).
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }
}
