//! What is particular to the WebSocket transport, over real sockets on loopback: the
//! subprotocol checks, plain ws:// refusal, TLS with a pinned certificate, authentication, and
//! rhizomorph's own RFC 6455 layer — against an independent implementation (tungstenite) both
//! ways, and against hand-made frames (fragments around a ping, a header claiming 1 TiB, an
//! unmasked client frame, a plain HTTP request).
//! What both transports must do is in `tests/conformance.rs`.

use std::time::Duration;

use bytes::Bytes;
use rhizomorph::transport::tls;
use rhizomorph::{Channel, Config, Endpoint, Error, ErrorCode, Listener, RoutingHeader};
use rhizomorph_testkit::echo_server;

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
    let addr = rhizomorph_testkit::msgpack_ws::start_server()
        .await
        .unwrap();
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
    use rhizomorph::session::{Event, OutgoingMessage, Session, SessionConfig, Target, Transmit};
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
        while let Some(batch) = session
            .poll_transmit(Instant::now(), Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
        {
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
    use rhizomorph::session::{Event, Session, SessionConfig, Target, Transmit};
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
            while let Some(batch) = session
                .poll_transmit(std::time::Instant::now(), Target::Batch, usize::MAX)
                .map(Transmit::into_bytes)
            {
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
        let payload = rhizomorph_testkit::payload::incompressible(len, len as u64);
        conn.send(Channel::Rpc, header("x"), payload.clone())
            .await
            .unwrap();
        let m = within("echo", conn.recv()).await.unwrap();
        assert!(m.payload == payload, "echo of {len} bytes differs");
    }
}

/// A raw TCP connection to `url`'s listener that has completed the WebSocket upgrade offering
/// `rhizomorph.v1`; returns it and the bytes read past the response.
async fn raw_upgraded(url: &str) -> (tokio::net::TcpStream, bytes::BytesMut) {
    use rhizomorph::websocket::handshake;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let key = handshake::new_key();
    tcp.write_all(&handshake::client_request(
        addr,
        "/",
        &key,
        &["rhizomorph.v1"],
    ))
    .await
    .unwrap();
    let mut buf = bytes::BytesMut::new();
    loop {
        assert!(
            tcp.read_buf(&mut buf).await.unwrap() > 0,
            "closed in the upgrade"
        );
        if let Some((r, n)) = handshake::parse_response(&buf, &key, &["rhizomorph.v1"]).unwrap() {
            assert_eq!(r.protocol.as_deref(), Some("rhizomorph.v1"));
            let _ = buf.split_to(n);
            return (tcp, buf);
        }
    }
}

/// Reads the next WebSocket event the server sends.
async fn next_event(
    tcp: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    decoder: &mut rhizomorph::websocket::WsDecoder,
) -> Option<rhizomorph::websocket::WsEvent> {
    use rhizomorph::websocket::Decoded;
    use tokio::io::AsyncReadExt;
    loop {
        if let Decoded::Event(e) = decoder.decode(buf).unwrap() {
            return Some(e);
        }
        if tcp.read_buf(buf).await.unwrap() == 0 {
            return None;
        }
    }
}

/// A client frame (masked), FIN as given.
fn client_frame(opcode: rhizomorph::websocket::OpCode, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut f = rhizomorph::websocket::WsEncoder::new(rhizomorph::websocket::Role::Client).frame(
        opcode,
        payload,
        || [9, 8, 7, 6],
    );
    if !fin {
        f[0] &= 0x7f;
    }
    f
}

#[tokio::test]
async fn ws_16_2_4_a_fragmented_batch_with_a_ping_between_its_fragments_is_joined() {
    use rhizomorph::session::{Event, Session, SessionConfig, Target, Transmit};
    use rhizomorph::websocket::{OpCode, Role, WsDecoder, WsEvent};
    use tokio::io::AsyncWriteExt;
    let url = echo_server(Config::default()).await;
    let (mut tcp, mut buf) = within("upgrade", raw_upgraded(&url)).await;
    let now = std::time::Instant::now();
    let mut session = Session::client(SessionConfig::default(), now);
    let hello = session
        .poll_transmit(now, Target::Batch, usize::MAX)
        .map(Transmit::into_bytes)
        .unwrap();
    let (a, b) = hello.split_at(hello.len() / 2);
    let mut wire = client_frame(OpCode::Binary, a, false);
    wire.extend(client_frame(OpCode::Ping, b"between", true));
    wire.extend(client_frame(OpCode::Continuation, b, true));
    tcp.write_all(&wire).await.unwrap();
    let mut decoder = WsDecoder::new(Role::Client, 1 << 20);
    let (mut ponged, mut connected) = (false, false);
    while !(ponged && connected) {
        match within("server", next_event(&mut tcp, &mut buf, &mut decoder)).await {
            Some(WsEvent::Pong(p)) => {
                assert_eq!(&p[..], b"between");
                ponged = true;
            }
            Some(WsEvent::Binary(batch)) => {
                session.handle_batch(now, batch);
                while let Some(e) = session.poll_event() {
                    connected |= matches!(e, Event::Connected { .. });
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn ws_16_3_a_message_over_the_limit_is_refused_from_its_header_with_1009() {
    use rhizomorph::websocket::{Role, WsDecoder, WsEvent};
    use tokio::io::AsyncWriteExt;
    let url = echo_server(Config::default()).await;
    let (mut tcp, mut buf) = within("upgrade", raw_upgraded(&url)).await;
    // A binary frame header claiming 1 TiB, masked, and nothing after it.
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(1u64 << 40).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&head).await.unwrap();
    let mut decoder = WsDecoder::new(Role::Client, 1 << 20);
    match within("close", next_event(&mut tcp, &mut buf, &mut decoder)).await {
        Some(WsEvent::Close(c)) => {
            assert_eq!(c.code, Some(1009), "{c:?}");
            assert!(c.reason.contains("exceeds"), "{c:?}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // ... and the connection ends.
    assert_eq!(
        within("eof", next_event(&mut tcp, &mut buf, &mut decoder)).await,
        None
    );
}

#[tokio::test]
async fn ws_16_2_4_an_unmasked_client_frame_is_refused_with_1002() {
    use rhizomorph::websocket::{Role, WsDecoder, WsEvent};
    use tokio::io::AsyncWriteExt;
    let url = echo_server(Config::default()).await;
    let (mut tcp, mut buf) = within("upgrade", raw_upgraded(&url)).await;
    tcp.write_all(&[0x82, 0x01, 0x00]).await.unwrap();
    let mut decoder = WsDecoder::new(Role::Client, 1 << 20);
    match within("close", next_event(&mut tcp, &mut buf, &mut decoder)).await {
        Some(WsEvent::Close(c)) => assert_eq!(c.code, Some(1002), "{c:?}"),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn ws_4_a_request_that_is_not_an_upgrade_gets_http_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = echo_server(Config::default()).await;
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    within("reply", tcp.read_to_end(&mut reply)).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(reply.contains("Upgrade"), "{reply}");
}
