//! Transports: thin tokio drivers that pump a [`Session`](crate::session::Session) over a socket.
//!
//! Owns sockets, TLS and tasks. Never interprets frames (everything protocol-shaped is the
//! session's, native or legacy), and never imports the face (`connection`): a driver hands
//! the face an `Opened` handle over `Shared` state (`shared.rs`), and the face waits on that
//! state.
//!
//! - [`ws`]: the framed WebSocket transport (`ws/mod.rs` connect and accept, `ws/socket.rs`
//!   the RFC 6455 byte pump, `ws/driver.rs` the reader and writer tasks); legacy mode rides
//!   the same upgrade and framing ([`legacy`]: the legacy session's reader and writer tasks).
//! - [`quic`]: the QUIC transport, one stream per channel.
//! - `shared.rs` (the state behind a connection's handles, over either session), `handle.rs`
//!   (the one handle type the face holds, and the one place the two modes differ), `dispatch.rs` (events handed out
//!   after the lock, the open-and-await-HELLO scaffold), `flush.rs` (the hook through which a
//!   sender writes its own message), `url.rs` (server URLs), [`tls`].

use crate::config::{ClientTls, Config};
use crate::error::Error;

pub(crate) mod calls;
pub(crate) mod connect_error;
pub(crate) mod dispatch;
pub(crate) mod flush;
pub(crate) mod handle;
pub(crate) mod inbox;
pub mod legacy;
pub mod metrics;
pub mod quic;
pub(crate) mod redelivery;
pub mod resume;
pub(crate) mod shared;
pub mod tls;
pub(crate) mod url;
pub mod ws;

/// The first address `addr` resolves to; `shown` names it in the error.
pub(crate) async fn resolve_first(
    addr: impl tokio::net::ToSocketAddrs,
    shown: &str,
) -> Result<std::net::SocketAddr, Error> {
    tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| Error::InvalidAddress {
            addr: shown.to_string(),
            reason: "resolves to no address".into(),
        })
}

/// The client TLS a connection uses: the config's, or the bundled web PKI roots.
pub(crate) fn client_tls(config: &Config) -> Result<ClientTls, Error> {
    match &config.client_tls {
        Some(t) => Ok(t.clone()),
        None => tls::client_tls_web_roots(),
    }
}
