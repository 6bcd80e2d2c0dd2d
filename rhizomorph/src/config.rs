//! Connection configuration: builder-style, sensible defaults, environment overrides.
//!
//! Owns every knob of an endpoint (protocol settings, chunk and batch sizes, send buffer, TLS,
//! authentication). Never opens a socket.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::frame::{ErrorCode, Settings};
use crate::session::SessionConfig;

/// What a server learns about a client before it decides to accept it (wire.md §3.2.7).
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The client's HELLO token.
    pub token: Bytes,
    /// The client's agent string.
    pub agent: String,
    /// The client's address.
    pub peer_addr: std::net::SocketAddr,
}

/// A server's decision on a client: `Ok(reply_token)` accepts, `Err((code, reason))` refuses.
pub type AuthDecision = Result<Bytes, (ErrorCode, String)>;

/// The authentication hook: called once per connection with the client's HELLO.
pub type Authenticator = Arc<dyn Fn(&AuthRequest) -> AuthDecision + Send + Sync>;

/// What a server learns about a legacy (hypha-rpc) client before it decides to accept it
/// (legacy.md §L4.1).
#[derive(Debug, Clone)]
pub struct LegacyAuthRequest {
    /// The client's first message (client id, workspace, tokens).
    pub auth: crate::legacy::AuthInfo,
    /// The client's address.
    pub peer_addr: std::net::SocketAddr,
}

/// The legacy authentication hook: the identity the client gets, or the reason it is refused
/// (sent to the client as `{"type": "error", "message": …}`).
pub type LegacyAuthenticator =
    Arc<dyn Fn(&LegacyAuthRequest) -> Result<crate::legacy::Identity, String> + Send + Sync>;

/// Legacy msgpack mode (`spec/legacy.md`): fallback on the client side, serving hypha-rpc
/// clients on the server side.
#[derive(Clone)]
pub struct LegacyConfig {
    /// Client: fall back to legacy mode when the server does not select `rhizomorph.v1`
    /// (wire.md §3.4.2). On by default; off = `require_native`.
    pub fallback: bool,
    /// Server: serve WebSocket clients that do not offer `rhizomorph.v1` in legacy mode
    /// (wire.md §3.4.1). On by default; off refuses them with HTTP 400.
    pub serve: bool,
    /// Server: never select `rhizomorph.v1`, serve every client in legacy mode (what a hypha
    /// server does; for tests and for deployments that must look like one).
    pub only: bool,
    /// Client: what the first message says (client id, workspace, token).
    pub auth: crate::legacy::AuthInfo,
    /// Server: the authentication hook (default: [`default_legacy_auth`]).
    pub authenticator: Option<LegacyAuthenticator>,
    /// Client: interval of the `{"type": "ping"}` keepalive (the first goes 2 s after the
    /// handshake, as hypha-rpc's). Hypha closes clients idle for its idle timeout.
    pub ping_interval: Duration,
    /// Either side: close a legacy peer from which nothing arrived for this long (1001,
    /// legacy.md §L4.3); `None`: never. hypha-rpc clients ping every 20 s, so the default,
    /// 60 s, only closes peers that are gone.
    pub idle_timeout: Option<Duration>,
    /// Server: the workspace manager's id sent in `connection_info` (clients address it as
    /// `*/<manager_id>`); the same id as the router's
    /// [`ManagerConfig::manager_id`](crate::manager::ManagerConfig::manager_id).
    pub manager_id: String,
    /// Server: the reconnection tokens issued to legacy clients (legacy.md §L4.4). A client
    /// that comes back with one gets the identity it was issued for, without the hook; one
    /// that brings an unknown or expired token is refused. Clones share the book, so listeners
    /// built from one config honour each other's tokens.
    pub tokens: crate::tokens::ReconnectionTokens,
}

impl Default for LegacyConfig {
    fn default() -> Self {
        LegacyConfig {
            fallback: true,
            serve: true,
            only: false,
            auth: crate::legacy::AuthInfo::default(),
            authenticator: None,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Some(Duration::from_secs(60)),
            manager_id: crate::manager::MANAGER_ID.to_string(),
            tokens: crate::tokens::ReconnectionTokens::default(),
        }
    }
}

/// The default legacy authentication: loopback clients only, each an anonymous user; the
/// workspace is the one asked for, or `ws-user-<client_id>` (as hypha gives anonymous users
/// a workspace of their own). Tokens are not checked, so this serves loopback demos, not a
/// network: a server that faces one sets its own hook.
pub fn default_legacy_auth(req: &LegacyAuthRequest) -> Result<crate::legacy::Identity, String> {
    if !req.peer_addr.ip().is_loopback() {
        return Err(format!(
            "{} is not loopback: this server has no legacy authentication hook",
            req.peer_addr
        ));
    }
    let client_id = req
        .auth
        .client_id
        .clone()
        .filter(|c| !c.is_empty() && !c.contains('/') && c != "*")
        .ok_or_else(|| "a client_id without '/' is required".to_string())?;
    let workspace = req
        .auth
        .workspace
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| format!("ws-user-{client_id}"));
    if workspace.contains('/') || workspace == "*" {
        return Err(format!("invalid workspace {workspace:?}"));
    }
    Ok(crate::legacy::Identity::anonymous(workspace, client_id))
}

/// TLS for a server: certificate chain and key.
#[derive(Clone)]
pub struct ServerTls {
    /// The rustls server configuration.
    pub config: Arc<rustls::ServerConfig>,
}

/// TLS for a client: how the server is verified.
#[derive(Clone)]
pub struct ClientTls {
    /// The rustls client configuration.
    pub config: Arc<rustls::ClientConfig>,
}

pub use crate::payload::CompressionPolicy;

/// Endpoint configuration. `Config::default()` is right for most uses; override with the
/// `with_*` methods, or with environment variables through [`Config::with_env`]:
///
/// ```
/// use rhizomorph::Config;
/// let config = Config::default().with_chunk_size(32 * 1024).with_send_buffer(4 << 20);
/// assert_eq!(config.session.chunk_size, 32 * 1024);
/// ```
#[derive(Clone)]
pub struct Config {
    /// Protocol settings and session policy.
    pub session: SessionConfig,
    /// Payload bytes a channel may have queued before `send` waits (sender-side memory bound).
    pub send_buffer: u64,
    /// `TCP_NOTSENT_LOWAT`: unsent bytes the kernel may hold (wire.md §16.4). `None` leaves the
    /// system default.
    pub notsent_lowat: Option<u32>,
    /// Allow plain `ws://` to or on non-loopback addresses (off: TLS is required there).
    pub allow_plain_non_loopback: bool,
    /// Server: TLS configuration (makes the listener `wss://`).
    pub server_tls: Option<ServerTls>,
    /// Client: TLS configuration for `wss://` (default: the bundled web PKI roots).
    pub client_tls: Option<ClientTls>,
    /// Server: the authentication hook (default: accept everyone).
    pub authenticator: Option<Authenticator>,
    /// Time allowed for TCP + TLS + WebSocket + HELLO.
    pub connect_timeout: Duration,
    /// Server: bytes all of a listener's connections together may allocate for messages under
    /// reassembly (wire.md §8.3.1; each connection also has `session.max_reassembly`). A
    /// message that would exceed it is refused alone (CANCEL, `LIMIT_EXCEEDED`). Default 1 GiB.
    pub server_reassembly: u64,
    /// Payload compression on send (receiving always decompresses, within the limits).
    pub compression: CompressionPolicy,
    /// Legacy msgpack mode: fallback and serving (`spec/legacy.md`).
    pub legacy: LegacyConfig,
    /// The smallest read the WebSocket layer makes (a frame longer than this is read straight
    /// into a buffer of its size). Held per connection while it waits for input (idle memory);
    /// messages shorter than a quarter of it are copied out so they do not pin it.
    pub ws_read_buffer: usize,
    /// Server: bind WebSocket listeners with `SO_REUSEPORT`, so that one listener per runtime
    /// (or core) can share a port.
    pub reuse_port: bool,
    /// Act on calls, cancellations and transfers (wire.md §20): replies go to their
    /// [`call`](crate::Sender::call), a cancellation is recorded for its request, a transfer's
    /// later parts go to its [`IncomingTransfer`](crate::IncomingTransfer). On by default; a
    /// router turns it off (it forwards such messages as they are, to whom they name).
    pub exchanges: bool,
    /// How long a [`call`](crate::Sender::call) waits for its reply unless told otherwise
    /// ([`Call::timeout`](crate::Call::timeout)). Default 30 s.
    pub call_timeout: Duration,
    /// Server: handshakes (TLS, WebSocket upgrade, HELLO) a listener runs at once; more wait
    /// for a slot, each still bounded by `connect_timeout`. Default 256.
    pub max_concurrent_handshakes: usize,
    /// Server: accepted connections a listener holds for `accept` to take; past it, handshakes
    /// wait (the kernel's backlog then fills). Default 1,024.
    pub accept_backlog: usize,
    /// Server: the most bytes the replay buffers of all detached resumable sessions of a
    /// listener may hold together (wire.md §21.5.3); a session that would exceed it is
    /// discarded when it detaches, its application told what may be lost. Default 256 MiB.
    /// Resumption itself is off unless [`with_resumption`](Self::with_resumption) turns it on.
    pub detached_cap: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // The WebSocket driver grows batches up to this only while the transport keeps
            // up (transport::ws::driver::BatchLimit); 256 KiB measured fastest for 2 MB echoes
            // (`examples/large_probe.rs`: 64 KiB 1.41 ms, 256 KiB 1.17 ms, 512 KiB 1.33 ms,
            // 1 MiB 1.23 ms per round trip, medians of alternating runs).
            session: SessionConfig::default().with_max_batch(256 * 1024),
            send_buffer: 1 << 20,
            notsent_lowat: Some(16 * 1024),
            allow_plain_non_loopback: false,
            server_tls: None,
            client_tls: None,
            authenticator: None,
            connect_timeout: Duration::from_secs(10),
            server_reassembly: 1 << 30,
            compression: CompressionPolicy::Auto,
            legacy: LegacyConfig::default(),
            ws_read_buffer: 8 * 1024,
            reuse_port: false,
            exchanges: true,
            call_timeout: Duration::from_secs(30),
            max_concurrent_handshakes: 256,
            accept_backlog: 1024,
            detached_cap: 256 << 20,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("session", &self.session)
            .field("send_buffer", &self.send_buffer)
            .field("notsent_lowat", &self.notsent_lowat)
            .field("allow_plain_non_loopback", &self.allow_plain_non_loopback)
            .field("server_tls", &self.server_tls.is_some())
            .field("client_tls", &self.client_tls.is_some())
            .field("authenticator", &self.authenticator.is_some())
            .field("compression", &self.compression)
            .field("legacy_fallback", &self.legacy.fallback)
            .field("legacy_serve", &self.legacy.serve)
            .finish()
    }
}

/// Environment variables read by [`Config::with_env`], with what they set.
pub const ENV_OVERRIDES: [(&str, &str); 10] = [
    (
        "RHIZOMORPH_MAX_FRAME",
        "MAX_FRAME_PAYLOAD we accept (bytes)",
    ),
    (
        "RHIZOMORPH_MAX_MESSAGE",
        "MAX_MESSAGE_SIZE we accept (bytes)",
    ),
    (
        "RHIZOMORPH_CHANNEL_WINDOW",
        "INITIAL_CHANNEL_WINDOW (bytes)",
    ),
    (
        "RHIZOMORPH_CONNECTION_WINDOW",
        "INITIAL_CONNECTION_WINDOW (bytes)",
    ),
    (
        "RHIZOMORPH_CHUNK_SIZE",
        "payload bytes per MESSAGE frame we send",
    ),
    ("RHIZOMORPH_MAX_BATCH", "bytes per transport write"),
    (
        "RHIZOMORPH_MAX_BATCH_FRAMES",
        "MESSAGE frames per transport write",
    ),
    (
        "RHIZOMORPH_SEND_BUFFER",
        "queued bytes per channel before send waits",
    ),
    (
        "RHIZOMORPH_NOTSENT_LOWAT",
        "TCP_NOTSENT_LOWAT (bytes, 0 = system default)",
    ),
    (
        "RHIZOMORPH_WS_READ_BUFFER",
        "bytes the WebSocket layer reads per system call",
    ),
];

impl Config {
    /// Applies the `RHIZOMORPH_*` environment overrides ([`ENV_OVERRIDES`]). A variable that
    /// does not parse as a number is an error naming it.
    pub fn with_env(mut self) -> Result<Self, String> {
        let read = |name: &str| -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|e| format!("{name}={v:?}: {e}")),
                Err(_) => Ok(None),
            }
        };
        let s = &mut self.session.settings;
        if let Some(v) = read("RHIZOMORPH_MAX_FRAME")? {
            s.max_frame_payload = v;
        }
        if let Some(v) = read("RHIZOMORPH_MAX_MESSAGE")? {
            s.max_message_size = v;
        }
        if let Some(v) = read("RHIZOMORPH_CHANNEL_WINDOW")? {
            s.initial_channel_window = v;
        }
        if let Some(v) = read("RHIZOMORPH_CONNECTION_WINDOW")? {
            s.initial_connection_window = v;
        }
        s.validate()
            .map_err(|e| format!("RHIZOMORPH_* settings: {e}"))?;
        if let Some(v) = read("RHIZOMORPH_CHUNK_SIZE")? {
            self.session.chunk_size = v.max(1);
        }
        if let Some(v) = read("RHIZOMORPH_MAX_BATCH")? {
            self.session.max_batch = v.max(1) as usize;
        }
        if let Some(v) = read("RHIZOMORPH_MAX_BATCH_FRAMES")? {
            self.session.max_batch_frames = v.max(1) as usize;
        }
        if let Some(v) = read("RHIZOMORPH_SEND_BUFFER")? {
            self.send_buffer = v;
        }
        if let Some(v) = read("RHIZOMORPH_WS_READ_BUFFER")? {
            self.ws_read_buffer = (v as usize).clamp(1024, 16 << 20);
        }
        if let Some(v) = read("RHIZOMORPH_NOTSENT_LOWAT")? {
            self.notsent_lowat = (v > 0).then_some(v as u32);
        }
        Ok(self)
    }

    /// Returns the config with resumable sessions (wire.md §21): a connection whose transport
    /// dies without CLOSE is detached, not closed; the client reconnects with backoff and both
    /// sides replay what the other did not receive, so every message arrives exactly once.
    /// `buffer` is the replay buffer per channel (what this side keeps of its sent,
    /// unacknowledged messages; a sender past it waits), `timeout` how long a detached session
    /// is kept (and a client keeps trying). Off by default; a sensible setting is
    /// `with_resumption(2 << 20, Duration::from_secs(120))`. Both sides must turn it on; a
    /// peer that does not gets a 1.0 connection as before. Both transports: over QUIC a dead
    /// path shows only as silence, so the keepalive timeout
    /// ([`with_keepalive`](Self::with_keepalive)) decides how soon a session detaches and
    /// dials again (wire.md §17.6.5).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = rhizomorph::Config::default().with_resumption(2 << 20, Duration::from_secs(120));
    /// assert_eq!(config.session.settings.resume_buffer, 2 << 20);
    /// ```
    pub fn with_resumption(mut self, buffer: u64, timeout: Duration) -> Self {
        self.session = self.session.with_resumption(buffer, timeout);
        self
    }

    /// Returns the config with this cap on what detached sessions hold together (server).
    pub fn with_detached_cap(mut self, bytes: u64) -> Self {
        self.detached_cap = bytes;
        self
    }

    /// Returns the config with these protocol settings.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.session.settings = settings;
        self
    }
    /// Returns the config with this chunk size (payload bytes per frame we send).
    pub fn with_chunk_size(mut self, bytes: u64) -> Self {
        self.session.chunk_size = bytes.max(1);
        self
    }
    /// Returns the config with this largest batch (bytes per transport write; 256 KiB by
    /// default). The WebSocket driver starts each burst at 64 KiB and grows towards this only
    /// while the transport keeps up; QUIC writes at most 64 KiB per stream write.
    pub fn with_max_batch(mut self, bytes: usize) -> Self {
        self.session.max_batch = bytes.max(1);
        self
    }
    /// Returns the config with this per-channel send buffer.
    pub fn with_send_buffer(mut self, bytes: u64) -> Self {
        self.send_buffer = bytes;
        self
    }
    /// Returns the config with this client auth token (sent in HELLO).
    pub fn with_token(mut self, token: impl Into<Bytes>) -> Self {
        self.session.token = token.into();
        self
    }
    /// Returns the config with this server authentication hook.
    pub fn with_authenticator(
        mut self,
        f: impl Fn(&AuthRequest) -> AuthDecision + Send + Sync + 'static,
    ) -> Self {
        self.authenticator = Some(Arc::new(f));
        self
    }
    /// Returns the config with server TLS.
    pub fn with_server_tls(mut self, tls: ServerTls) -> Self {
        self.server_tls = Some(tls);
        self
    }
    /// Returns the config with client TLS.
    pub fn with_client_tls(mut self, tls: ClientTls) -> Self {
        self.client_tls = Some(tls);
        self
    }
    /// Allows plain `ws://` on non-loopback addresses. Traffic, including the HELLO token,
    /// is then unencrypted (wire.md §18).
    pub fn allow_plain_non_loopback(mut self, allow: bool) -> Self {
        self.allow_plain_non_loopback = allow;
        self
    }
    /// Returns the config with this `TCP_NOTSENT_LOWAT` (`None`: system default).
    pub fn with_notsent_lowat(mut self, bytes: Option<u32>) -> Self {
        self.notsent_lowat = bytes;
        self
    }
    /// Returns the config with this compression policy.
    pub fn with_compression(mut self, policy: CompressionPolicy) -> Self {
        self.compression = policy;
        self
    }
    /// Refuses legacy mode as a client (`true`): a server that does not select
    /// `rhizomorph.v1` is an error ([`Error::NotRhizomorph`](crate::Error::NotRhizomorph))
    /// instead of a fallback (wire.md §3.4.2).
    pub fn with_require_native(mut self, require: bool) -> Self {
        self.legacy.fallback = !require;
        self
    }
    /// Serves (`true`, the default) or refuses WebSocket clients that do not offer
    /// `rhizomorph.v1` (wire.md §3.4.1).
    pub fn with_serve_legacy(mut self, serve: bool) -> Self {
        self.legacy.serve = serve;
        self
    }
    /// Serves every WebSocket client in legacy mode, even one that offers `rhizomorph.v1`.
    pub fn with_legacy_only(mut self, only: bool) -> Self {
        self.legacy.only = only;
        if only {
            self.legacy.serve = true;
        }
        self
    }
    /// Returns the config with this legacy identity request (client id, workspace, token).
    pub fn with_legacy_auth(mut self, auth: crate::legacy::AuthInfo) -> Self {
        self.legacy.auth = auth;
        self
    }
    /// Returns the config with this listener-wide reassembly budget (bytes, wire.md §8.3.1).
    pub fn with_server_reassembly(mut self, bytes: u64) -> Self {
        self.server_reassembly = bytes;
        self
    }
    /// Returns the config with this legacy idle timeout (`None`: never close an idle legacy
    /// peer; default 60 s, legacy.md §L4.3).
    pub fn with_legacy_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.legacy.idle_timeout = timeout;
        self
    }
    /// Returns the config with this legacy authentication hook (server).
    pub fn with_legacy_authenticator(
        mut self,
        f: impl Fn(&LegacyAuthRequest) -> Result<crate::legacy::Identity, String>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.legacy.authenticator = Some(Arc::new(f));
        self
    }
    /// Binds WebSocket listeners with `SO_REUSEPORT` (several listeners on one port).
    pub fn with_reuse_port(mut self, reuse: bool) -> Self {
        self.reuse_port = reuse;
        self
    }
    /// Returns the config with these keepalive timings (wire.md §13).
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.session.keepalive_interval = interval;
        self.session.keepalive_timeout = timeout;
        self
    }
    /// Acts on calls, cancellations and transfers (wire.md §20), or forwards them as they are
    /// (a router: `false`). See [`Config::exchanges`].
    pub fn with_exchanges(mut self, on: bool) -> Self {
        self.exchanges = on;
        self
    }
    /// Returns the config with this default call timeout ([`Config::call_timeout`]).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }
    /// Server: handshakes run at once, and connections held for `accept`
    /// ([`Config::max_concurrent_handshakes`], [`Config::accept_backlog`]).
    pub fn with_handshakes(mut self, concurrent: usize, backlog: usize) -> Self {
        self.max_concurrent_handshakes = concurrent.max(1);
        self.accept_backlog = backlog.max(1);
        self
    }
}
