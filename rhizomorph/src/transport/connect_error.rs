//! What a failed connect tells its user: where it was going, how far it got, and, for the
//! mix-ups people make, what to try.
//!
//! Owns [`Progress`] (the stage a connect attempt is in, read when its timeout fires) and
//! [`explain`] (an inner failure turned into [`Error::ConnectFailed`] or
//! [`Error::ConnectTimedOut`] with the URL, the stage and a hint). Never retries and never
//! touches a socket.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::error::{ConnectStage, Error};

/// The stage a connect attempt has reached (shared with the timeout around it).
#[derive(Debug, Default)]
pub(crate) struct Progress(AtomicU8);

impl Progress {
    /// The attempt entered `stage`.
    pub(crate) fn at(&self, stage: ConnectStage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }

    /// The stage reached.
    pub(crate) fn stage(&self) -> ConnectStage {
        ConnectStage::from_u8(self.0.load(Ordering::Relaxed))
    }
}

/// `inner`, the failure of connecting to `url` at `progress`'s stage, as the user sees it.
/// Errors that already name the cause and what to do (a refused plain `ws://`, a peer that is
/// not rhizomorph, a refusal by the server) pass through unchanged.
pub(crate) fn explain(url: &str, progress: &Progress, inner: Error) -> Error {
    let stage = progress.stage();
    let detail = match &inner {
        Error::Io(e) => e.to_string(),
        Error::Tls(e) | Error::Quic(e) | Error::WebSocket(e) => e.clone(),
        Error::Handshake(e) => e.to_string(),
        _ => return inner,
    };
    let hint = hint(url, stage, &inner, &detail);
    Error::ConnectFailed {
        url: url.to_string(),
        stage,
        cause: Box::new(inner),
        hint,
    }
}

/// The timeout of connecting to `url` fired after `after`, at `progress`'s stage.
pub(crate) fn timed_out(url: &str, progress: &Progress, after: Duration) -> Error {
    let stage = progress.stage();
    let hint = match stage {
        ConnectStage::Quic => Some(
            "is a QUIC server listening on that UDP port? QUIC runs over UDP: a WebSocket \
             server on the same port does not answer, and neither does a firewall that drops UDP"
                .to_string(),
        ),
        ConnectStage::Tcp => {
            Some("the host did not answer: a firewall dropping the SYN, or a wrong address?".into())
        }
        ConnectStage::Tls if url.starts_with("wss://") => {
            Some("no TLS answer: is the server plain ws:// (try ws://)?".into())
        }
        ConnectStage::Upgrade if url.starts_with("ws://") => {
            Some("no HTTP answer to the upgrade: does the server expect TLS (try wss://)?".into())
        }
        ConnectStage::Hello => Some(
            "the server accepted the upgrade but never sent HELLO: is it a rhizomorph server?"
                .into(),
        ),
        _ => None,
    };
    Error::ConnectTimedOut {
        url: url.to_string(),
        stage,
        after,
        hint,
    }
}

/// What to try, for the failures whose usual cause is known.
fn hint(url: &str, stage: ConnectStage, inner: &Error, detail: &str) -> Option<String> {
    let refused =
        matches!(inner, Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
    match stage {
        ConnectStage::Tcp if refused => {
            Some("nothing listens on that TCP port: is the server running, on this port?".into())
        }
        ConnectStage::Tls if url.starts_with("wss://") && looks_like_plain(detail) => {
            Some("the server answered in plain text: wss:// to a plain ws:// server? (try ws://)".into())
        }
        ConnectStage::Tls if detail.contains("certificate") || detail.contains("Certificate") => {
            Some(
                "the server's certificate is not trusted: pin its fingerprint \
                 (transport::tls::client_tls_pinned) or add its CA (Config::with_client_tls)"
                    .into(),
            )
        }
        ConnectStage::Upgrade if url.starts_with("ws://") => Some(
            "the server did not answer the upgrade in HTTP: ws:// to a TLS (wss://) server? (try wss://)"
                .into(),
        ),
        ConnectStage::Quic if detail.contains("certificate") || detail.contains("Certificate") => {
            Some(
                "the server's certificate is not trusted: pin its fingerprint \
                 (`serve --self-signed` prints it) or add its CA"
                    .into(),
            )
        }
        _ => None,
    }
}

/// Whether a TLS failure means the peer spoke something other than TLS (a plain HTTP server
/// answering a ClientHello).
fn looks_like_plain(detail: &str) -> bool {
    [
        "InvalidContentType",
        "corrupt message",
        "CorruptMessage",
        "eof",
        "EOF",
    ]
    .iter()
    .any(|s| detail.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_tcp_connect_names_the_url_the_stage_and_what_to_check() {
        let p = Progress::default();
        p.at(ConnectStage::Tcp);
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = explain("ws://127.0.0.1:9/", &p, Error::Io(io));
        let text = e.to_string();
        assert!(text.contains("ws://127.0.0.1:9/"), "{text}");
        assert!(text.contains("opening TCP"), "{text}");
        assert!(text.contains("is the server running"), "{text}");
        assert!(matches!(
            e,
            Error::ConnectFailed {
                stage: ConnectStage::Tcp,
                ..
            }
        ));
    }

    #[test]
    fn a_quic_timeout_asks_whether_anything_listens_on_udp() {
        let p = Progress::default();
        p.at(ConnectStage::Quic);
        let text = timed_out("quic://127.0.0.1:7878", &p, Duration::from_secs(10)).to_string();
        assert!(text.contains("no answer in 10s"), "{text}");
        assert!(text.contains("UDP"), "{text}");
    }

    #[test]
    fn errors_that_already_say_what_to_do_pass_through() {
        let p = Progress::default();
        let e = explain(
            "ws://10.0.0.1/",
            &p,
            Error::PlainNotAllowed {
                addr: "10.0.0.1:80".into(),
            },
        );
        assert!(matches!(e, Error::PlainNotAllowed { .. }));
    }
}
