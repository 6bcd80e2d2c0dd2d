//! Session configuration: which side, which framing, local settings and local policy.
//!
//! Owns the values a session is built with. Never changes after the session exists, and never
//! holds state: the session reads it.

use std::time::Duration;

use bytes::Bytes;

use crate::frame::Settings;

/// Which side of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opened the connection; speaks first (wire.md §3.2.1).
    Client,
    /// Accepted it; answers the client's HELLO.
    Server,
}

/// How frames map onto the transport (wire.md §16, §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// One ordered sequence of batches carries every frame (WebSocket, §16): the session
    /// schedules the channels and runs CREDIT flow control (§7, §9).
    #[default]
    Batched,
    /// One ordered byte stream per channel (QUIC, §17): [`Session::poll_transmit`](super::Session::poll_transmit) with
    /// [`Target::Stream`](super::Target::Stream) and
    /// [`Session::handle_stream`](super::Session::handle_stream). The transport prioritizes the streams and runs flow control
    /// (§17.4, §17.5); CREDIT frames are neither sent nor accepted.
    PerChannelStreams,
}

/// Session configuration: local settings and local policy. Build with the `with_*` methods.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// What this side accepts (announced in HELLO, enforced on receive).
    pub settings: Settings,
    /// Largest chunk of payload per MESSAGE frame this side sends (also bounded by the peer's
    /// `MAX_FRAME_PAYLOAD`). Smaller chunks let higher channels through sooner (§7.5).
    pub chunk_size: u64,
    /// Largest batch [`Session::poll_transmit`](super::Session::poll_transmit) returns (also bounded by the peer's
    /// `MAX_BATCH_SIZE`). 64 KiB by default: a driver that hands every batch to its transport
    /// as it comes delays a higher channel's frame by at most that. A driver that watches its
    /// transport can allow more and ask for less: rhizomorph's WebSocket driver
    /// (`Config::default()` sets 256 KiB here) starts each burst at 64 KiB, uses 16 KiB while
    /// the transport makes it wait, and grows towards this while it does not.
    pub max_batch: usize,
    /// Most MESSAGE frames in one batch. A batch is work handed to the peer at once; capping
    /// it keeps several batches in flight, so both ends work in parallel instead of taking
    /// turns (measured with `rhizomorph bench --scenario small`: 256 B messages, 64 in flight,
    /// 32 frames per batch gave ~1.5x the round trips of uncapped batches). Large chunks hit
    /// `max_batch` first. A batch may hold up to half the messages queued when it is cut, if
    /// that is more: a long queue (a one-way stream) still leaves in at least two batches, but
    /// in fewer system calls.
    pub max_batch_frames: usize,
    /// PING after this much silence (§13.1).
    pub keepalive_interval: Duration,
    /// Give up after this much silence (§13.1).
    pub keepalive_timeout: Duration,
    /// Give up if the HELLO exchange has not finished by then (§18).
    pub hello_timeout: Duration,
    /// The client's auth token (§3.2.7).
    pub token: Bytes,
    /// The agent string sent in HELLO.
    pub agent: String,
    /// How frames map onto the transport (set by the transport's driver).
    pub framing: Framing,
    /// Whether chunk payloads of 2 KiB or more stay views of their message in a
    /// [`Transmit`](super::Transmit) (for a driver that writes segments with `writev`: no copy),
    /// or are copied into its one buffer (for a driver that writes one buffer). The bytes are
    /// the same either way. On by default.
    pub vectored: bool,
    /// Most received messages the application may hold unreleased (per connection on a single
    /// stream, per channel over per-channel streams) before the session stops wanting to read
    /// (`Session::wants_read`, `Session::can_read`; wire.md §9.6.1): the windows count bytes,
    /// and a message costs memory beyond them. 16,384 by default (about 3 MiB of bookkeeping
    /// at a few hundred bytes per message, within a default 4 MiB connection window).
    pub max_held_messages: u64,
    /// Bytes this connection may allocate for messages under reassembly (wire.md §8.3.1); a
    /// message that would exceed it is refused alone (CANCEL, `LIMIT_EXCEEDED`). Default
    /// 64 MiB, one default `MAX_MESSAGE_SIZE`: several large messages at once (one per
    /// channel) share it instead of taking four times that.
    pub max_reassembly: u64,
    /// A budget shared with other connections (a listener's: `rhizomorph::Config::
    /// with_server_reassembly`), charged as well as `max_reassembly`. `None`: only this
    /// connection's.
    pub shared_reassembly: Option<std::sync::Arc<super::ReassemblyBudget>>,
    /// How long a detached resumable session waits for a new transport (wire.md §21.5) before
    /// it gives up ([`SessionEvent::ResumeFailed`](super::SessionEvent::ResumeFailed), then closed). 2 minutes
    /// by default. Resumption itself is on when `settings.resume_buffer` is not 0 (on both
    /// sides).
    pub resume_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            settings: Settings::default(),
            chunk_size: 16 * 1024,
            max_batch: 64 * 1024,
            max_batch_frames: 32,
            keepalive_interval: Duration::from_secs(15),
            keepalive_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            token: Bytes::new(),
            agent: concat!("rhizomorph/", env!("CARGO_PKG_VERSION")).to_string(),
            framing: Framing::Batched,
            vectored: true,
            max_held_messages: 16_384,
            max_reassembly: 64 << 20,
            shared_reassembly: None,
            resume_timeout: Duration::from_secs(120),
        }
    }
}

impl SessionConfig {
    /// Returns the config with these local settings.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }
    /// Returns the config with this chunk size.
    pub fn with_chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }
    /// Returns the config with this batch size.
    pub fn with_max_batch(mut self, bytes: usize) -> Self {
        self.max_batch = bytes.max(1);
        self
    }
    /// Returns the config with this auth token.
    pub fn with_token(mut self, token: impl Into<Bytes>) -> Self {
        self.token = token.into();
        self
    }
    /// Returns the config with this agent string (sent in HELLO, §3.2.1).
    pub fn with_agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = agent.into();
        self
    }
    /// Returns the config with these keepalive timings.
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
        self
    }
    /// Returns the config with this framing.
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }
    /// Returns the config with this bound on received messages held unreleased.
    pub fn with_max_held_messages(mut self, count: u64) -> Self {
        self.max_held_messages = count.max(1);
        self
    }
    /// Returns the config with this per-connection reassembly budget (bytes).
    pub fn with_max_reassembly(mut self, bytes: u64) -> Self {
        self.max_reassembly = bytes;
        self
    }
    /// Returns the config charging reassembly to `budget` too (shared by connections).
    pub fn with_shared_reassembly(
        mut self,
        budget: std::sync::Arc<super::ReassemblyBudget>,
    ) -> Self {
        self.shared_reassembly = Some(budget);
        self
    }
    /// Returns the config with resumable sessions (wire.md §21) keeping up to `bytes` per
    /// channel for replay (`settings.resume_buffer`; 0 turns resumption off) and holding a
    /// detached session for `timeout`.
    pub fn with_resumption(mut self, bytes: u64, timeout: Duration) -> Self {
        self.settings.resume_buffer = bytes.min(u32::MAX as u64);
        self.resume_timeout = timeout;
        self
    }
    /// Returns the config with large chunk payloads left in place (`true`) or copied.
    pub fn with_vectored(mut self, vectored: bool) -> Self {
        self.vectored = vectored;
        self
    }
}
