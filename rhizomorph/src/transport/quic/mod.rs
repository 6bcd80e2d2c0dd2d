//! The QUIC transport (wire.md §17): quinn 0.11 over rustls with the `ring` provider.
//!
//! Owns the QUIC endpoint and handshake (ALPN `rhzm/1`), the mapping of channels onto
//! unidirectional streams (one per channel and direction, opened with a channel-id preamble),
//! their send priorities, QUIC's flow-control windows, and the close handshake. QUIC does what
//! the WebSocket mapping needs the session for: stream flow control replaces CREDIT (§17.5)
//! and each stream is retransmitted independently, so a lost bulk packet never holds an rpc
//! reply. Never interprets frames: the session does.

mod driver;
mod resume;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, VarInt};

use crate::config::{ClientTls, Config, ServerTls};
use crate::error::ConnectStage;
use crate::error::Error;
use crate::session::{Framing, Session};
use crate::transport::connect_error::{self, Progress};
use crate::transport::resume::DetachedSessions;
use crate::transport::shared::Opened;
use crate::transport::url::{Scheme, ServerUrl};

/// The ALPN protocol id that selects rhizomorph over QUIC (wire.md §3.1, §17.1).
pub const ALPN: &[u8] = b"rhzm/1";

/// QUIC transport parameters from the rhizomorph settings (wire.md §17.5): the receive
/// windows are the announced `INITIAL_*_WINDOW`s, and a peer may open exactly the four channel
/// streams (§17.2.3: no bidirectional streams). Public so that a bare-quinn comparison (the
/// bench's `bare-quinn` baseline) runs with exactly the windows rhizomorph runs with.
pub fn transport_config(config: &Config) -> quinn::TransportConfig {
    let s = &config.session.settings;
    let varint = |v: u64| VarInt::from_u64(v).unwrap_or(VarInt::MAX);
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(varint(s.initial_channel_window))
        .receive_window(varint(s.initial_connection_window))
        .send_window(s.initial_connection_window)
        .max_concurrent_uni_streams(4u32.into())
        .max_concurrent_bidi_streams(0u32.into())
        // The session's keepalive (PING, §13) detects a silent peer; QUIC's idle timeout is a
        // backstop just beyond it.
        .max_idle_timeout(
            quinn::IdleTimeout::try_from(config.session.keepalive_timeout + Duration::from_secs(5))
                .ok(),
        );
    t
}

fn quic_config_error(e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("TLS configuration unusable for QUIC: {e}"))
}

/// A quinn client config from our client TLS, offering only `alpn`.
pub fn quinn_client_config(
    tls: &ClientTls,
    alpn: &[u8],
    transport: quinn::TransportConfig,
) -> Result<quinn::ClientConfig, Error> {
    let mut rustls_config = (*tls.config).clone();
    rustls_config.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(Arc::new(rustls_config)).map_err(quic_config_error)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport));
    Ok(client)
}

/// A quinn server config from our server TLS, accepting only `alpn`.
pub fn quinn_server_config(
    tls: &ServerTls,
    alpn: &[u8],
    transport: quinn::TransportConfig,
) -> Result<quinn::ServerConfig, Error> {
    let mut rustls_config = (*tls.config).clone();
    rustls_config.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicServerConfig::try_from(Arc::new(rustls_config)).map_err(quic_config_error)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// A client: its own UDP endpoint, connected to `url` (`quic://host:port`).
pub(crate) async fn connect(url: &str, config: &Config) -> Result<Opened, Error> {
    let progress = Progress::default();
    with_progress(
        url,
        config,
        &progress,
        connect_inner(url, config, &progress),
    )
    .await
}

/// Runs a connect attempt under the config's timeout, explaining its failure.
async fn with_progress(
    url: &str,
    config: &Config,
    progress: &Progress,
    attempt: impl std::future::Future<Output = Result<Opened, Error>>,
) -> Result<Opened, Error> {
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(r) => r.map_err(|e| connect_error::explain(url, progress, e)),
        Err(_) => Err(connect_error::timed_out(
            url,
            progress,
            config.connect_timeout,
        )),
    }
}

async fn resolve(url: &str) -> Result<(String, SocketAddr), Error> {
    let parsed = ServerUrl::parse(url)?;
    if parsed.scheme != Scheme::Quic {
        return Err(Error::InvalidAddress {
            addr: url.to_string(),
            reason: "expected quic://".into(),
        });
    }
    let addr = super::resolve_first((parsed.host.as_str(), parsed.port), url).await?;
    Ok((parsed.host, addr))
}

/// A UDP endpoint for client connections of this address family.
fn client_endpoint(ipv6: bool) -> Result<quinn::Endpoint, Error> {
    let bind: SocketAddr = if ipv6 {
        "[::]:0".parse().expect("a valid address")
    } else {
        "0.0.0.0:0".parse().expect("a valid address")
    };
    endpoint_on(bind, None)
}

/// Socket buffer bytes a QUIC endpoint asks for: a burst of handshakes (a thousand clients'
/// Initial packets at once, 1.2 MB) fits, where the system default (~208 KiB) drops most of
/// it and leaves those clients to retransmit after seconds of backoff. The kernel caps it at
/// `net.core.rmem_max` / `wmem_max`.
const UDP_BUFFER: usize = 4 << 20;

/// A quinn endpoint on a UDP socket bound to `addr` with [`UDP_BUFFER`]-sized buffers; a
/// server if `server` is given.
fn endpoint_on(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, Error> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack where the system allows it, as quinn's own bind does.
        let _ = socket.set_only_v6(false);
    }
    // Best effort: a smaller buffer works, it only drops more of a burst.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.bind(&addr.into())?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| Error::Quic("no async runtime found for the QUIC endpoint".into()))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        runtime,
    )?)
}

/// The QUIC handshake to `addr` (TLS name `host`) over `endpoint`.
async fn dial(
    endpoint: &quinn::Endpoint,
    host: &str,
    addr: SocketAddr,
    config: &Config,
) -> Result<quinn::Connection, Error> {
    let tls = super::client_tls(config)?;
    let client_config = quinn_client_config(&tls, ALPN, transport_config(config))?;
    let connecting = endpoint
        .connect_with(client_config, addr, host)
        .map_err(|e| Error::Quic(e.to_string()))?;
    connecting.await.map_err(handshake_error)
}

/// A client's QUIC connection as a transport of its session. `own_endpoint`: the session owns
/// the endpoint and lets it go idle when it ends.
fn client_transport(
    conn: quinn::Connection,
    endpoint: &quinn::Endpoint,
    own_endpoint: bool,
    config: &Config,
) -> driver::Transport {
    driver::Transport {
        conn,
        endpoint: own_endpoint.then(|| endpoint.clone()),
        linger: config.session.keepalive_timeout,
        first: None,
    }
}

/// The QUIC handshake to `addr` over `endpoint`, then the HELLO exchange. `own_endpoint`: the
/// connection owns the endpoint and lets it go idle when it ends. With resumption on, a lost
/// connection is replaced over the same endpoint ([`resume::Reconnect`]).
async fn connect_over(
    endpoint: &quinn::Endpoint,
    own_endpoint: bool,
    host: &str,
    addr: SocketAddr,
    config: &Config,
    progress: &Progress,
) -> Result<Opened, Error> {
    progress.at(ConnectStage::Quic);
    let conn = dial(endpoint, host, addr, config).await?;
    progress.at(ConnectStage::Hello);
    let session = Session::client(session_config(config), Instant::now());
    let resumer = (config.session.settings.resume_buffer > 0).then(|| {
        resume::Reconnect::resumer(endpoint.clone(), own_endpoint, host, addr, config.clone())
    });
    let t = client_transport(conn, endpoint, own_endpoint, config);
    driver::start(t, session, config, resumer).await
}

async fn connect_inner(url: &str, config: &Config, progress: &Progress) -> Result<Opened, Error> {
    let (host, addr) = resolve(url).await?;
    let endpoint = client_endpoint(addr.is_ipv6())?;
    connect_over(&endpoint, true, &host, addr, config, progress).await
}

/// One UDP socket for many client connections (the transport under
/// [`QuicClient`](crate::QuicClient)).
#[derive(Clone)]
pub(crate) struct ClientSocket {
    endpoint: quinn::Endpoint,
    config: Arc<Config>,
    ipv6: bool,
}

impl ClientSocket {
    /// Binds a client UDP socket (IPv6 if `ipv6`, else IPv4) for connections made with
    /// `config`. Must be called within a tokio runtime, which drives the socket.
    pub(crate) fn bind(config: Config, ipv6: bool) -> Result<ClientSocket, Error> {
        Ok(ClientSocket {
            endpoint: client_endpoint(ipv6)?,
            config: Arc::new(config),
            ipv6,
        })
    }

    /// The local UDP address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Connects to `url` (`quic://host:port`) over this client's socket.
    pub(crate) async fn connect(&self, url: &str) -> Result<Opened, Error> {
        let config = &self.config;
        let progress = Progress::default();
        with_progress(url, config, &progress, async {
            let (host, addr) = resolve(url).await?;
            if addr.is_ipv6() != self.ipv6 {
                return Err(Error::InvalidAddress {
                    addr: url.to_string(),
                    reason: "address family differs from this QuicClient's socket".into(),
                });
            }
            connect_over(&self.endpoint, false, &host, addr, config, &progress).await
        })
        .await
    }
}

/// A failed QUIC handshake: certificate and ALPN problems are TLS errors (with rustls' reason).
fn handshake_error(e: ConnectionError) -> Error {
    match &e {
        // QUIC carries TLS alerts as the crypto error codes 0x100 – 0x1FF (RFC 9001 §4.8).
        ConnectionError::TransportError(t) if is_crypto(t.code) => Error::Tls(e.to_string()),
        ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
            Error::Tls(e.to_string())
        }
        _ => Error::Quic(e.to_string()),
    }
}

fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

fn session_config(config: &Config) -> crate::session::SessionConfig {
    config
        .session
        .clone()
        .with_framing(Framing::PerChannelStreams)
}

/// Accepts QUIC connections on one UDP socket.
pub(crate) struct QuicListener {
    endpoint: quinn::Endpoint,
    config: Arc<Config>,
    /// The sessions clients may resume (wire.md §21), when resumption is on.
    registry: Option<Arc<DetachedSessions>>,
}

impl QuicListener {
    /// Binds `addr`. QUIC always runs TLS: the config must carry server TLS (a certificate).
    pub fn bind(addr: &str, config: Config) -> Result<QuicListener, Error> {
        let addr: SocketAddr = addr.parse().map_err(|e| Error::InvalidAddress {
            addr: addr.to_string(),
            reason: format!("{e}"),
        })?;
        let tls = config.server_tls.as_ref().ok_or_else(|| {
            Error::Tls(
                "QUIC needs a server certificate: set Config::with_server_tls \
                 (or `serve --self-signed` / `--cert --key`)"
                    .into(),
            )
        })?;
        let server_config = quinn_server_config(tls, ALPN, transport_config(&config))?;
        let endpoint = endpoint_on(addr, Some(server_config))?;
        let registry = (config.session.settings.resume_buffer > 0)
            .then(|| DetachedSessions::new(config.detached_cap));
        Ok(QuicListener {
            endpoint,
            config: Arc::new(config),
            registry,
        })
    }

    /// Detached sessions held for resumption, and the replay bytes they hold together.
    pub fn detached_sessions(&self) -> (usize, u64) {
        self.registry
            .as_ref()
            .map_or((0, 0), |r| r.detached_replay())
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Waits for the next client; the returned future completes the QUIC and HELLO handshakes.
    pub async fn accept_raw(
        &self,
    ) -> io::Result<impl std::future::Future<Output = Result<Opened, Error>> + Send + 'static> {
        let incoming = self.endpoint.accept().await.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "the QUIC endpoint is closed")
        })?;
        let (config, registry) = (self.config.clone(), self.registry.clone());
        Ok(async move {
            let handshake = async {
                let conn = incoming.await.map_err(handshake_error)?;
                let session = Session::server(session_config(&config), Instant::now());
                match &registry {
                    Some(registry) => resume::accept(conn, session, &config, registry).await,
                    None => {
                        let t = driver::Transport {
                            conn,
                            endpoint: None,
                            linger: config.session.keepalive_timeout,
                            first: None,
                        };
                        driver::start(t, session, &config, None).await
                    }
                }
            };
            // The session's HELLO timeout decides (CLOSE with TIMEOUT, wire.md §18); this
            // outer bound must not race it (see the WebSocket listener).
            let bound = config
                .connect_timeout
                .max(config.session.hello_timeout + Duration::from_secs(2));
            tokio::time::timeout(bound, handshake)
                .await
                .map_err(|_| Error::Timeout("accept handshake"))?
        })
    }
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        self.endpoint.close(VarInt::from_u32(0), b"listener closed");
    }
}
