//! What is particular to the QUIC transport (wire.md §17), on loopback: certificate checks
//! (pinned, wrong pin, no pin), ALPN, the listener's TLS requirement, and stream rules a
//! misbehaving peer breaks. What both transports must do is in `tests/conformance.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rhizomorph::transport::{quic, tls};
use rhizomorph::{
    Channel, CloseReason, Config, Endpoint, Error, ErrorCode, Listener, RoutingHeader,
};
use rhizomorph_testkit::echo_server;

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

/// A QUIC echo server with a self-signed certificate: its URL, fingerprint and certificate.
fn echo_server_quic() -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let (cert, key, fp) = tls::self_signed(&["localhost"]).unwrap();
    let config =
        Config::default().with_server_tls(tls::server_tls(vec![cert.clone()], key).unwrap());
    let listener = Listener::bind_quic("127.0.0.1:0", config).unwrap();
    let url = listener.url();
    tokio::spawn(echo_server::serve(listener));
    (url, fp, cert)
}

/// A bare quinn connection to `addr` that trusts `cert` and offers `alpn`.
async fn bare_connect(
    cert: rustls::pki_types::CertificateDer<'static>,
    alpn: &[u8],
    addr: std::net::SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut crypto = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    crypto.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(crypto)).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            addr,
            "localhost",
        )
        .unwrap()
        .await
}

#[tokio::test]
async fn quic_17_1_pinned_certificate_connects_and_echoes() {
    let (url, fp, _) = echo_server_quic();
    assert!(url.starts_with("quic://"), "{url}");
    let client = Config::default().with_client_tls(tls::client_tls_pinned(&fp).unwrap());
    let mut conn = Endpoint::connect(&url, client).await.unwrap();
    conn.send(
        Channel::Rpc,
        RoutingHeader::new().with("to", "echo"),
        "over quic",
    )
    .await
    .unwrap();
    let m = within("echo", conn.recv()).await.unwrap();
    assert_eq!(m.payload, Bytes::from_static(b"over quic"));
}

#[tokio::test]
async fn quic_17_1_a_wrong_pin_is_refused_with_a_clear_error() {
    let (url, _, _) = echo_server_quic();
    let wrong = "AB".repeat(32);
    let client = Config::default().with_client_tls(tls::client_tls_pinned(&wrong).unwrap());
    let r = Endpoint::connect(&url, client).await;
    // Named with the URL and the stage, the typed TLS cause inside.
    let msg = match &r {
        Err(e @ Error::ConnectFailed { cause, stage, .. })
            if matches!(**cause, Error::Tls(_)) && *stage == rhizomorph::ConnectStage::Quic =>
        {
            e.to_string()
        }
        other => panic!("expected a TLS error, got {other:?}"),
    };
    assert!(msg.contains("does not match the pinned"), "{msg}");
    assert!(msg.contains(&url), "{msg}");
}

#[tokio::test]
async fn quic_17_1_a_self_signed_certificate_is_refused_without_a_pin() {
    let (url, _, _) = echo_server_quic();
    // The default verifies against the web PKI roots: a self-signed certificate fails.
    let r = Endpoint::connect(&url.replace("127.0.0.1", "localhost"), Config::default()).await;
    assert!(
        matches!(&r, Err(Error::ConnectFailed { cause, .. }) if matches!(**cause, Error::Tls(_))),
        "{r:?}"
    );
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("certificate is not trusted"), "a hint: {msg}");
}

#[tokio::test]
async fn quic_17_1_a_client_without_the_alpn_is_refused() {
    let (url, _, cert) = echo_server_quic();
    let addr: std::net::SocketAddr = url
        .trim_start_matches("quic://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    // A bare quinn client that trusts the certificate but offers another ALPN.
    let r = bare_connect(cert, b"h3", addr).await;
    let msg = match r {
        Ok(_) => panic!("a client without the ALPN was accepted"),
        Err(e) => format!("{e:?}"),
    };
    assert!(msg.contains("protocol"), "{msg}");
    assert_eq!(quic::ALPN, b"rhzm/1");
}

#[tokio::test]
async fn quic_a_listener_without_a_certificate_is_an_error() {
    let r = Listener::bind_quic("127.0.0.1:0", Config::default());
    assert!(matches!(r, Err(Error::Tls(_))));
}

#[tokio::test]
async fn quic_17_2_3_a_second_stream_for_one_channel_closes_with_protocol_error() {
    let (cert, key, _) = tls::self_signed(&["localhost"]).unwrap();
    let config =
        Config::default().with_server_tls(tls::server_tls(vec![cert.clone()], key).unwrap());
    let listener = Listener::bind_quic("127.0.0.1:0", config).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let conn = listener.accept().await;
        match conn {
            Ok(mut c) => {
                while c.recv().await.is_some() {}
                c.close_reason()
            }
            Err(e) => panic!("{e}"),
        }
    });
    // A hand-made client: HELLO on the control stream, then two streams that both say "rpc".
    let conn = bare_connect(cert, quic::ALPN, addr).await.unwrap();
    // Channel streams only after the server's HELLO.
    let _control = bare_hello(&conn).await;
    for _ in 0..2 {
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&[Channel::Rpc as u8]).await.unwrap();
    }
    let reason = within("server", server).await.unwrap();
    assert!(
        matches!(&reason, Some(CloseReason::Closed { code, reason }) if *code == ErrorCode::PROTOCOL_ERROR && reason.contains("second stream")),
        "{reason:?}"
    );
    let err = within("client sees the close", conn.closed()).await;
    assert!(format!("{err}").contains("second stream"), "{err}");
}

/// A bare client's HELLO on a fresh control stream, and the server's HELLO read back (its
/// control stream: channel id 0, then frame type 0x01).
async fn bare_hello(conn: &quinn::Connection) -> (quinn::SendStream, quinn::RecvStream) {
    let mut hello = bytes::BytesMut::from(&[0u8][..]);
    rhizomorph::frame::Frame::Hello(rhizomorph::frame::Hello::new(
        &rhizomorph::frame::Settings::default(),
        Bytes::new(),
        String::from("test"),
    ))
    .encode(&mut hello)
    .unwrap();
    let mut control = conn.open_uni().await.unwrap();
    control.write_all(&hello).await.unwrap();
    let mut theirs = within("the server's control stream", conn.accept_uni())
        .await
        .unwrap();
    let mut first = [0u8; 2];
    within("the server's HELLO", theirs.read_exact(&mut first))
        .await
        .unwrap();
    assert_eq!(first, [0, 0x01], "channel id 0 then HELLO");
    (control, theirs)
}

/// The rest of wire.md §17.2.3 on a live connection: a channel id over 3 closes with
/// PROTOCOL_ERROR; QUIC itself refuses a bidirectional stream and a fifth unidirectional one
/// (the server announces 0 and 4).
#[tokio::test]
async fn quic_17_2_3_stream_limits_and_channel_ids() {
    let (cert, key, _) = tls::self_signed(&["localhost"]).unwrap();
    let config =
        Config::default().with_server_tls(tls::server_tls(vec![cert.clone()], key).unwrap());
    let listener = Listener::bind_quic("127.0.0.1:0", config).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok(mut c) = listener.accept().await {
            tokio::spawn(async move { while c.recv().await.is_some() {} });
        }
    });
    let short = Duration::from_millis(500);

    // Limits: no bidirectional stream at all; three channel streams beside control, no fifth.
    let conn = bare_connect(cert.clone(), quic::ALPN, addr).await.unwrap();
    let _control = bare_hello(&conn).await;
    assert!(
        tokio::time::timeout(short, conn.open_bi()).await.is_err(),
        "a bidirectional stream was allowed"
    );
    let mut channels = Vec::new();
    for ch in [Channel::Rpc, Channel::Stream, Channel::Bulk] {
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&[ch as u8]).await.unwrap();
        channels.push(s);
    }
    assert!(
        tokio::time::timeout(short, conn.open_uni()).await.is_err(),
        "a fifth unidirectional stream was allowed"
    );
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());

    // A channel id over 3.
    let conn = bare_connect(cert, quic::ALPN, addr).await.unwrap();
    let _control = bare_hello(&conn).await;
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(&[4]).await.unwrap();
    let err = within("closed", conn.closed()).await;
    match &err {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                u64::from(c.error_code),
                ErrorCode::PROTOCOL_ERROR.0,
                "{err}"
            );
            assert!(
                String::from_utf8_lossy(&c.reason).contains("over 3"),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A stream whose channel id never comes holds only itself (wire.md §17.2.6): a peer opens a
/// stream it never writes, then its control stream with HELLO; QUIC opens the silent lower
/// stream first. Before: the server waited on that stream's preamble, never read HELLO and
/// closed with TIMEOUT at the HELLO timeout.
#[tokio::test]
async fn quic_17_2_6_a_stream_without_its_channel_id_does_not_block_the_others() {
    let (cert, key, _) = tls::self_signed(&["localhost"]).unwrap();
    let mut config =
        Config::default().with_server_tls(tls::server_tls(vec![cert.clone()], key).unwrap());
    config.session.hello_timeout = Duration::from_secs(2);
    let listener = Listener::bind_quic("127.0.0.1:0", config).unwrap();
    let addr = listener.local_addr().unwrap();
    // The listener and the connection are kept (dropping either closes the connection).
    let server = tokio::spawn(async move { (listener.accept().await, listener) });
    let conn = bare_connect(cert, quic::ALPN, addr).await.unwrap();
    let mut silent = conn.open_uni().await.unwrap();
    // HELLO on the next stream; the server's HELLO comes back.
    let _control = bare_hello(&conn).await;
    let (accepted, _listener) = within("accepted", server).await.unwrap();
    let _accepted = accepted.unwrap();
    // The silent stream is still open and still no error: it holds only itself.
    assert!(conn.close_reason().is_none());
    silent.finish().unwrap();
}

#[tokio::test]
async fn quic_client_shares_one_socket_among_its_connections() {
    let (url, fp, _) = echo_server_quic();
    let config = Config::default().with_client_tls(tls::client_tls_pinned(&fp).unwrap());
    let client = rhizomorph::QuicClient::bind(config, false).unwrap();
    let port = client.local_addr().unwrap().port();
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(within("connect", client.connect(&url)).await.unwrap());
    }
    assert_eq!(client.local_addr().unwrap().port(), port);
    // Closing one connection leaves the socket to the others.
    conns.remove(0).close().await;
    drop(client);
    for (i, conn) in conns.iter_mut().enumerate() {
        let payload = format!("over the shared socket {i}");
        conn.send(
            Channel::Rpc,
            RoutingHeader::new().with("to", "echo"),
            payload.clone(),
        )
        .await
        .unwrap();
        let m = within("echo", conn.recv()).await.unwrap();
        assert_eq!(m.payload, Bytes::from(payload));
    }
    let r = rhizomorph::QuicClient::bind(Config::default(), false)
        .unwrap()
        .connect("quic://[::1]:9")
        .await;
    assert!(
        matches!(r, Err(Error::InvalidAddress { .. })),
        "an IPv6 address on an IPv4 socket: {r:?}"
    );
}

/// A QUIC client that completes the handshake and never sends HELLO is closed at the session's
/// HELLO timeout with `TIMEOUT` (wire.md §18, §14.2.2). Before: only after ~40 s, with
/// `NO_ERROR`.
#[tokio::test]
async fn quic_a_client_that_never_sends_hello_is_closed_with_timeout() {
    let (cert, key, _) = tls::self_signed(&["localhost"]).unwrap();
    let mut config =
        Config::default().with_server_tls(tls::server_tls(vec![cert.clone()], key).unwrap());
    config.session.hello_timeout = Duration::from_secs(1);
    // The listener's own bound as short: it used to race the session's timer.
    config.connect_timeout = Duration::from_secs(1);
    let listener = Listener::bind_quic("127.0.0.1:0", config).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok(h) = listener.accept_raw().await {
                tokio::spawn(h);
            }
        }
    });
    let conn = bare_connect(cert, quic::ALPN, addr).await.unwrap();
    let t = std::time::Instant::now();
    let err = within("closed by the server", conn.closed()).await;
    let took = t.elapsed();
    match &err {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(u64::from(c.error_code), ErrorCode::TIMEOUT.0, "{err}");
        }
        other => panic!("closed by {other:?} after {took:?}"),
    }
    assert!(took < Duration::from_secs(4), "{took:?}");
}
