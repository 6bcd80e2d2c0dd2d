//! Server URLs: `ws://host:port/path`, `wss://host:port/path`, `quic://host:port`.
//!
//! Owns reading a URL into what a driver dials: the transport, the host (as TLS names it and
//! as the `Host` header carries it), the port (the scheme's default when none is given, except
//! for QUIC, which has none), and the WebSocket request path. Never resolves or connects.

use crate::error::Error;

/// Which transport a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `ws://`: WebSocket over plain TCP.
    Ws,
    /// `wss://`: WebSocket over TLS.
    Wss,
    /// `quic://`: QUIC (always TLS).
    Quic,
}

/// A parsed server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerUrl {
    pub(crate) scheme: Scheme,
    /// The authority as written (`host:port`, `[::1]:7878`): the WebSocket `Host` header.
    pub(crate) authority: String,
    /// The host without brackets: the TLS server name, and what is resolved.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The WebSocket request path (`/` if none), with its query.
    pub(crate) path: String,
}

impl ServerUrl {
    /// Parses `url`; the error names the URL and what is wrong with it.
    pub(crate) fn parse(url: &str) -> Result<ServerUrl, Error> {
        let bad = |reason: &str| Error::InvalidAddress {
            addr: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = if let Some(r) = url.strip_prefix("wss://") {
            (Scheme::Wss, r)
        } else if let Some(r) = url.strip_prefix("ws://") {
            (Scheme::Ws, r)
        } else if let Some(r) = url.strip_prefix("quic://") {
            (Scheme::Quic, r)
        } else {
            return Err(bad("expected ws://, wss:// or quic://"));
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        // A port follows the last ':' unless that ':' is inside an IPv6 literal (`[::1]`).
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !authority.ends_with(']') => (h, Some(p)),
            _ => (authority, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match (port, scheme) {
            (Some(p), _) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
            (None, Scheme::Quic) => return Err(bad("no port (quic://host:port)")),
            (None, Scheme::Wss) => 443,
            (None, Scheme::Ws) => 80,
        };
        let path = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => rest[i..].to_string(),
            Some(i) => format!("/{}", &rest[i..]),
            None => "/".to_string(),
        };
        Ok(ServerUrl {
            scheme,
            authority: authority.to_string(),
            host: host.to_string(),
            port,
            path,
        })
    }

    /// Whether the host is a loopback address or `localhost`.
    pub(crate) fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_each_scheme_parse_into_what_a_driver_dials() {
        let u = ServerUrl::parse("ws://127.0.0.1:7878/ws?x=1").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Ws, "127.0.0.1", 7878, "/ws?x=1")
        );
        assert!(u.is_loopback());
        let u = ServerUrl::parse("wss://example.com").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.authority.as_str()),
            (443, "/", "example.com")
        );
        assert!(!u.is_loopback());
        let u = ServerUrl::parse("ws://[::1]:9000?q").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9000, "/?q")
        );
        assert!(u.is_loopback());
        let u = ServerUrl::parse("ws://[::1]/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        let u = ServerUrl::parse("quic://localhost:7879").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Quic, "localhost", 7879)
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, why) in [
            ("http://x:1", "expected ws://"),
            ("ws://:80/", "no host"),
            ("quic://host", "no port"),
            ("ws://host:99999/", "bad port"),
        ] {
            let e = ServerUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
