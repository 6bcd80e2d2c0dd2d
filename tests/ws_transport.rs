//! What is particular to the WebSocket transport, over real sockets on loopback: the
//! subprotocol checks, plain ws:// refusal, TLS with a pinned certificate, authentication.
//! What both transports must do is in `tests/conformance.rs`.

use std::time::Duration;

use bytes::Bytes;
use rhizomorph::bench::echo_server;
use rhizomorph::transport::tls;
use rhizomorph::{Channel, Config, Endpoint, Error, ErrorCode, Listener, RoutingHeader};

fn header(to: &str) -> RoutingHeader {
    RoutingHeader::new()
        .with("type", "method")
        .with("to", to.to_string())
}

async fn echo_server(config: Config) -> String {
    let listener = Listener::bind("127.0.0.1:0", config).await.unwrap();
    let url = listener.url();
    tokio::spawn(echo_server::serve(listener));
    url
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

#[tokio::test]
async fn ws_3_4_server_refuses_a_client_without_the_subprotocol() {
    // Legacy mode (the default) serves such a client; without it, it is refused.
    let url = echo_server(Config::default().with_serve_legacy(false)).await;
    let r = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(r.is_err(), "a plain WebSocket client must be refused");
}

#[tokio::test]
async fn ws_3_4_2_client_detects_a_server_that_is_not_rhizomorph() {
    let addr = rhizomorph::bench::baseline::start_server().await.unwrap();
    let config = Config::default().with_require_native(true);
    let r = Endpoint::connect(&format!("ws://{addr}/"), config).await;
    assert!(matches!(r, Err(Error::NotRhizomorph { .. })), "{r:?}");
}

#[tokio::test]
async fn ws_18_plain_ws_to_a_non_loopback_address_is_refused_before_connecting() {
    // 192.0.2.1 is TEST-NET-1: the refusal happens before any packet is sent.
    let r = Endpoint::connect("ws://192.0.2.1:7878/", Config::default()).await;
    assert!(matches!(r, Err(Error::PlainNotAllowed { .. })), "{r:?}");
}

#[tokio::test]
async fn ws_tls_with_a_pinned_self_signed_certificate() {
    let (cert, key, fingerprint) = tls::self_signed(&["localhost"]).unwrap();
    let server_cfg = Config::default().with_server_tls(tls::server_tls(vec![cert], key).unwrap());
    let url = echo_server(server_cfg)
        .await
        .replace("127.0.0.1", "localhost");
    assert!(url.starts_with("wss://"));

    let pinned = Config::default().with_client_tls(tls::client_tls_pinned(&fingerprint).unwrap());
    let mut conn = Endpoint::connect(&url, pinned).await.unwrap();
    conn.send(Channel::Rpc, header("echo"), "over tls")
        .await
        .unwrap();
    assert_eq!(
        within("tls echo", conn.recv()).await.unwrap().payload,
        Bytes::from_static(b"over tls")
    );

    let wrong = "00".repeat(32);
    let r = Endpoint::connect(
        &url,
        Config::default().with_client_tls(tls::client_tls_pinned(&wrong).unwrap()),
    )
    .await;
    let msg = format!("{:?}", r.as_ref().err());
    assert!(
        r.is_err() && msg.contains("does not match the pinned"),
        "{msg}"
    );

    // The default (web PKI roots) refuses a self-signed certificate.
    let r = Endpoint::connect(&url, Config::default()).await;
    assert!(r.is_err(), "self-signed certificate accepted without a pin");
}

#[tokio::test]
async fn ws_3_2_7_authenticator_refuses_a_bad_token() {
    let server_cfg = Config::default().with_authenticator(|req| {
        if req.token == Bytes::from_static(b"letmein") {
            Ok(Bytes::new())
        } else {
            Err((ErrorCode::AUTH_FAILED, "unknown token".into()))
        }
    });
    let url = echo_server(server_cfg).await;
    let r = Endpoint::connect(&url, Config::default().with_token("guess")).await;
    assert!(
        matches!(&r, Err(Error::Closed { code, .. }) if *code == ErrorCode::AUTH_FAILED),
        "{r:?}"
    );
    let ok = Endpoint::connect(&url, Config::default().with_token("letmein")).await;
    assert!(ok.is_ok());
}

/// Drives a sans-IO client session over an independent RFC 6455 implementation (tungstenite):
/// the HELLO exchange, one echoed message of `len` bytes, and a WebSocket ping along the way.
async fn foreign_client_echo(url: &str, len: usize) {
    use futures_util::{SinkExt, StreamExt};
    use rhizomorph::session::{Event, OutgoingMessage, Session, SessionConfig};
    use std::time::Instant;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "rhizomorph.v1".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["Sec-WebSocket-Protocol"],
        "rhizomorph.v1"
    );
    ws.send(WsMessage::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let mut session = Session::client(SessionConfig::default(), Instant::now());
    let payload = Bytes::from((0..len).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
    let (mut ponged, mut sent) = (false, false);
    loop {
        while let Some(batch) = session.poll_transmit(Instant::now()) {
            ws.send(WsMessage::Binary(batch)).await.unwrap();
        }
        match ws.next().await.expect("the server closed").unwrap() {
            WsMessage::Pong(p) => {
                assert_eq!(&p[..], b"are you there");
                ponged = true;
            }
            WsMessage::Binary(b) => session.handle_batch(Instant::now(), b),
            other => panic!("unexpected {other:?}"),
        }
        while let Some(event) = session.poll_event() {
            match event {
                Event::Connected { .. } if !sent => {
                    let m = OutgoingMessage::new(header("echo"), payload.clone());
                    session.send(Channel::Rpc, m).unwrap();
                    sent = true;
                }
                Event::Message(m) => {
                    assert!(m.payload == payload, "echo of {len} bytes differs");
                    assert!(ponged, "the ping was not answered before the echo");
                    ws.close(None).await.unwrap();
                    return;
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn ws_16_a_foreign_websocket_client_interoperates() {
    // Rhizomorph frames WebSocket itself (src/websocket): an independent implementation must
    // see RFC 6455 — handshake, masking rules, lengths of every size class, pings answered.
    let url = echo_server(Config::default()).await;
    for len in [10, 200, 70_000, 3 << 20] {
        within("foreign client", foreign_client_echo(&url, len)).await;
    }
}

#[tokio::test]
async fn ws_16_a_foreign_websocket_server_interoperates() {
    // The other direction: our client (masking) against tungstenite's server, which checks
    // masking and answers a rhizomorph session it drives itself.
    use futures_util::{SinkExt, StreamExt};
    use rhizomorph::session::{Event, Session, SessionConfig};
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // The signature is tungstenite's callback type; its error is an HTTP response.
        #[allow(clippy::result_large_err)]
        let select = |_: &Request, mut r: Response| {
            r.headers_mut()
                .insert("Sec-WebSocket-Protocol", "rhizomorph.v1".parse().unwrap());
            Ok(r)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, select)
            .await
            .unwrap();
        let mut session = Session::server(SessionConfig::default(), std::time::Instant::now());
        while let Some(Ok(m)) = ws.next().await {
            if let WsMessage::Binary(b) = m {
                session.handle_batch(std::time::Instant::now(), b);
            }
            while let Some(event) = session.poll_event() {
                match event {
                    Event::HelloReceived { .. } => session.accept(Bytes::new()),
                    Event::Message(m) => {
                        let reply = rhizomorph::session::OutgoingMessage::new(
                            header("back"),
                            m.payload.clone(),
                        );
                        session.release(m.channel, m.credit);
                        session.send(m.channel, reply).unwrap();
                    }
                    _ => {}
                }
            }
            while let Some(batch) = session.poll_transmit(std::time::Instant::now()) {
                ws.send(WsMessage::Binary(batch)).await.unwrap();
            }
        }
    });
    let mut conn = within(
        "connect",
        Endpoint::connect(&format!("ws://{addr}/"), Config::default()),
    )
    .await
    .unwrap();
    for len in [5usize, 300, 100_000] {
        // Incompressible: the sans-IO server echoes the wire payload as it is, and a
        // compressed one would come back as a plain message of compressed bytes.
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
        let payload = Bytes::from(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect::<Vec<u8>>(),
        );
        conn.send(Channel::Rpc, header("x"), payload.clone())
            .await
            .unwrap();
        let m = within("echo", conn.recv()).await.unwrap();
        assert!(m.payload == payload, "echo of {len} bytes differs");
    }
}
