//! Legacy msgpack mode (legacy.md, wire.md §3.4) over real sockets on loopback: detection and
//! fallback both ways, the TEXT handshake and keepalive as a hypha-rpc client sees them, the
//! message format byte for byte, large messages, refusals and bounded memory. Interop with the
//! real Python peers is in `tests/legacy_interop.rs`.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rhizomorph::legacy::{AuthInfo, TextMessage};
use rhizomorph::{Channel, Config, Endpoint, Error, Listener, Mode, RoutingHeader};
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

fn msgpack(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn call_header(to: &str) -> RoutingHeader {
    RoutingHeader::new()
        .with("type", "method")
        .with("to", to.to_string())
        .with("method", "services.echo.echo")
}

/// A server that speaks legacy mode only, answering every message with the same header and
/// payload; returns its URL.
async fn legacy_echo_server(config: Config) -> String {
    let listener = Listener::bind("127.0.0.1:0", config).await.unwrap();
    let url = format!("{}ws", listener.url());
    tokio::spawn(async move {
        loop {
            let Ok(conn) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut conn = conn;
                while let Some(m) = conn.recv().await {
                    let _ = conn
                        .send(Channel::Rpc, m.header.clone(), m.payload.clone())
                        .await;
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn l1_client_falls_back_to_legacy_and_says_so() {
    let url = legacy_echo_server(Config::default().with_legacy_only(true)).await;
    let before = rhizomorph::metrics::snapshot();
    let auth = AuthInfo {
        client_id: Some("rust-client".into()),
        ..AuthInfo::default()
    };
    let mut conn = within(
        "connect",
        Endpoint::connect(&url, Config::default().with_legacy_auth(auth)),
    )
    .await
    .unwrap();
    assert_eq!(conn.mode(), Mode::Legacy);
    let info = conn.legacy_info().expect("connection_info").clone();
    assert_eq!(info.client_id, "rust-client");
    assert_eq!(info.workspace, "ws-user-rust-client");
    assert!(rhizomorph::metrics::snapshot().fallbacks > before.fallbacks);

    let payload = msgpack(&rmpv::Value::Map(vec![(
        "args".into(),
        rmpv::Value::Array(vec!["hello".into()]),
    )]));
    conn.send(Channel::Rpc, call_header("ws-x/echo"), payload.clone())
        .await
        .unwrap();
    let reply = within("reply", conn.recv()).await.unwrap();
    assert_eq!(reply.header.get_str("to"), Some("ws-x/echo"));
    assert_eq!(reply.header.get_str("method"), Some("services.echo.echo"));
    assert_eq!(reply.payload, payload);
    assert_eq!(reply.encoding, rhizomorph::frame::PayloadEncoding::Msgpack);

    // Native-only features are refused clearly.
    let r = conn
        .sender()
        .send_array(Channel::Rpc, call_header("x"), &[1.0f64], &[])
        .await;
    assert!(matches!(r, Err(Error::NativeOnly(_))), "{r:?}");
    // A payload that is not one msgpack value would break a legacy peer: refused.
    let r = conn
        .send(Channel::Rpc, call_header("x"), vec![0x01, 0x02])
        .await;
    assert!(matches!(r, Err(Error::Legacy(_))), "{r:?}");
    conn.close().await;
}

#[tokio::test]
async fn l1_require_native_refuses_a_legacy_server() {
    let url = legacy_echo_server(Config::default().with_legacy_only(true)).await;
    let r = Endpoint::connect(&url, Config::default().with_require_native(true)).await;
    assert!(matches!(r, Err(Error::NotRhizomorph { .. })), "{r:?}");
}

#[tokio::test]
async fn l1_native_client_gets_native_from_a_server_that_serves_both() {
    let url = legacy_echo_server(Config::default()).await;
    let conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    assert_eq!(conn.mode(), Mode::Native);
}

/// What a hypha-rpc client does, frame by frame, with a plain WebSocket client.
#[tokio::test]
async fn l4_handshake_keepalive_and_message_bytes_as_a_hypha_rpc_client_sees_them() {
    let url = legacy_echo_server(Config::default()).await;
    let (mut ws, response) = within("upgrade", tokio_tungstenite::connect_async(url.as_str()))
        .await
        .unwrap();
    assert!(response.headers().get("Sec-WebSocket-Protocol").is_none());
    assert!(response.headers().get("Sec-WebSocket-Extensions").is_none());
    let auth = r#"{"client_id": "provider", "workspace": null, "token": null, "reconnection_token": null}"#;
    ws.send(WsMessage::Text(auth.into())).await.unwrap();
    let Some(Ok(WsMessage::Text(info))) = within("info", ws.next()).await else {
        panic!("no connection_info")
    };
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    for key in [
        "type",
        "hypha_version",
        "public_base_url",
        "local_base_url",
        "manager_id",
        "workspace",
        "client_id",
        "user",
        "reconnection_token",
        "reconnection_token_life_time",
    ] {
        assert!(
            v.get(key).is_some(),
            "connection_info without {key}: {info}"
        );
    }
    assert_eq!(v["type"], "connection_info");
    assert_eq!(v["client_id"], "provider");
    assert_eq!(v["user"]["roles"][0], "anonymous");

    // Keepalive and token refresh.
    ws.send(WsMessage::Text(r#"{"type": "ping"}"#.into()))
        .await
        .unwrap();
    let Some(Ok(WsMessage::Text(pong))) = within("pong", ws.next()).await else {
        panic!("no pong")
    };
    assert_eq!(pong.as_str(), r#"{"type": "pong"}"#);
    ws.send(WsMessage::Text(r#"{"type": "refresh_token"}"#.into()))
        .await
        .unwrap();
    let Some(Ok(WsMessage::Text(t))) = within("token", ws.next()).await else {
        panic!("no token")
    };
    assert!(matches!(
        TextMessage::parse(&t).unwrap(),
        TextMessage::ReconnectionToken(_)
    ));
    // Over 1000 characters: ignored, as hypha does (the next ping is still answered).
    ws.send(WsMessage::Text(
        format!(r#"{{"type": "ping", "x": "{}"}}"#, "a".repeat(1000)).into(),
    ))
    .await
    .unwrap();
    ws.send(WsMessage::Text(r#"{"type": "ping"}"#.into()))
        .await
        .unwrap();
    let Some(Ok(WsMessage::Text(pong))) = within("pong", ws.next()).await else {
        panic!("no pong")
    };
    assert_eq!(pong.as_str(), r#"{"type": "pong"}"#);

    // A message as captured from hypha-rpc comes back byte for byte.
    let main = rmpv::Value::Map(vec![
        ("type".into(), "method".into()),
        ("from".into(), "ws-a/caller".into()),
        ("to".into(), "ws-b/provider".into()),
        ("method".into(), "services.echo-svc.echo".into()),
        ("session".into(), "Eau67piJsNV9isfrDQdRUo".into()),
    ]);
    let extra = rmpv::Value::Map(vec![
        (
            "args".into(),
            rmpv::Value::Array(vec![rmpv::Value::Binary(vec![1, 2, 3, 4])]),
        ),
        ("promise".into(), "*".into()),
        ("t".into(), rmpv::Value::F64(15.0)),
    ]);
    let mut frame = msgpack(&main);
    frame.extend(msgpack(&extra));
    ws.send(WsMessage::Binary(Bytes::from(frame.clone())))
        .await
        .unwrap();
    let Some(Ok(WsMessage::Binary(back))) = within("echo", ws.next()).await else {
        panic!("no echo")
    };
    assert_eq!(&back[..], &frame[..]);
}

#[tokio::test]
async fn l3_large_messages_arrive_whole() {
    let url = legacy_echo_server(Config::default().with_legacy_only(true)).await;
    let mut conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    for size in [65_535usize, 65_536, 1 << 20, 5 << 20] {
        let payload = msgpack(&rmpv::Value::Binary(
            (0..size).map(|i| (i % 251) as u8).collect(),
        ));
        conn.send(Channel::Bulk, call_header("peer"), payload.clone())
            .await
            .unwrap();
        let reply = within("reply", conn.recv()).await.unwrap();
        assert!(reply.payload == payload, "payload of {size} bytes changed");
    }
}

#[tokio::test]
async fn l4_authentication_hook_refusal_reaches_the_client() {
    let config = Config::default()
        .with_legacy_only(true)
        .with_legacy_authenticator(|req| Err(format!("no entry for {:?}", req.auth.client_id)));
    let url = legacy_echo_server(config).await;
    let r = Endpoint::connect(&url, Config::default()).await;
    match r {
        Err(Error::LegacyRefused { message, .. }) => {
            assert!(message.contains("no entry"), "{message}")
        }
        other => panic!("expected LegacyRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn l6_a_reader_that_stops_bounds_memory_on_both_sides() {
    let listener = Listener::bind("127.0.0.1:0", Config::default().with_legacy_only(true))
        .await
        .unwrap();
    let url = format!("{}ws", listener.url());
    // The client's first attempt (offering rhizomorph.v1) ends at the upgrade: skip it.
    let server = tokio::spawn(async move {
        loop {
            if let Ok(c) = listener.accept().await {
                // This server never reads: say it is ready (legacy.md §L4.2) explicitly.
                c.ready();
                return c;
            }
        }
    });
    let client = Endpoint::connect(&url, Config::default().with_send_buffer(1 << 20))
        .await
        .unwrap();
    let server = server.await.unwrap();
    let payload = Bytes::from(msgpack(&rmpv::Value::Binary(vec![7u8; 256 * 1024])));
    let sender = client.sender();
    let pushing = tokio::spawn(async move {
        for _ in 0..1024 {
            // 256 MiB in all, if nothing pushed back.
            if sender
                .send(Channel::Bulk, call_header("x"), payload.clone())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = server.stats().bytes_received[Channel::Rpc.index()];
    let sent = client.stats().bytes_sent[Channel::Rpc.index()];
    assert!(!pushing.is_finished(), "the sender was never pushed back");
    // Receiver: its window (4 MiB) plus one message. Sender: what TCP's buffers hold, its send
    // buffer, and what the receiver took.
    assert!(
        received <= (4 << 20) + (256 << 10) + 1024,
        "receiver holds {received} bytes"
    );
    assert!(
        sent < 64 << 20,
        "sender pushed {sent} bytes into a stalled connection"
    );
    pushing.abort();
}
