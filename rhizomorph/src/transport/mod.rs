//! Transports: thin tokio drivers that pump a [`Session`](crate::session::Session) over a socket.
//!
//! Owns sockets, TLS and tasks. Never interprets frames: everything protocol-shaped is the
//! session's.

use crate::config::{ClientTls, Config};
use crate::error::Error;

pub(crate) mod driver;
pub mod legacy;
pub mod quic;
pub mod tls;
pub mod ws;
pub(crate) mod ws_io;

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
