//! The router behind `rhizomorph serve` (legacy.md §L5) with peers of both modes, over real
//! sockets: a hypha-rpc-style legacy client (plain WebSocket, JSON handshake) and a native
//! rhizomorph client route to each other by `to`; an unaddressed native message is echoed.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rhizomorph::router::Router;
use rhizomorph::{Channel, Config, Endpoint, Listener, Mode, RoutingHeader};
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

fn pack(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

async fn router() -> (String, Router) {
    let listener = Listener::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let url = listener.url();
    let router = Router::new();
    tokio::spawn(router.clone().serve(listener));
    (url, router)
}

#[tokio::test]
async fn l5_legacy_and_native_peers_route_to_each_other() {
    let (url, router) = router().await;
    // A native peer whose HELLO token names it demo/native-1.
    let mut native = Endpoint::connect(&url, Config::default().with_token("demo/native-1"))
        .await
        .unwrap();
    assert_eq!(native.mode(), Mode::Native);
    // A legacy peer, frame by frame as hypha-rpc would.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}ws"))
        .await
        .unwrap();
    let auth = r#"{"client_id": "legacy-1", "workspace": "demo", "token": null, "reconnection_token": null}"#;
    ws.send(WsMessage::Text(auth.into())).await.unwrap();
    let Some(Ok(WsMessage::Text(_info))) = within("info", ws.next()).await else {
        panic!("no connection_info")
    };
    for _ in 0..100 {
        if router.peers().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(router.peers(), ["demo/legacy-1", "demo/native-1"]);

    // legacy -> native, by bare id.
    let main = rmpv::Value::Map(vec![
        ("type".into(), "method".into()),
        ("to".into(), "native-1".into()),
        ("method".into(), "services.a.b".into()),
    ]);
    let extra = pack(&rmpv::Value::Map(vec![(
        "args".into(),
        rmpv::Value::Array(vec!["hi".into()]),
    )]));
    let mut frame = pack(&main);
    frame.extend_from_slice(&extra);
    ws.send(WsMessage::Binary(Bytes::from(frame)))
        .await
        .unwrap();
    let m = within("native receives", native.recv()).await.unwrap();
    assert_eq!(m.header.get_str("from"), Some("demo/legacy-1"));
    assert_eq!(m.header.get_str("to"), Some("demo/native-1"));
    assert_eq!(m.header.get_str("ws"), Some("demo"));
    let user = rmpv::decode::read_value(&mut &m.header.get("user#").unwrap()[..]).unwrap();
    assert!(user.to_string().contains("anonymous"), "{user}");
    assert_eq!(m.payload, extra);
    assert_eq!(m.encoding, rhizomorph::frame::PayloadEncoding::Msgpack);

    // native -> legacy, by full id: the legacy peer gets one binary message, hypha-shaped.
    let reply = pack(&rmpv::Value::Map(vec![(
        "args".into(),
        rmpv::Value::Array(vec![rmpv::Value::Binary(vec![9; 100_000])]),
    )]));
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("to", "demo/legacy-1")
        .with("method", "s1.resolve");
    native
        .send(Channel::Rpc, header, reply.clone())
        .await
        .unwrap();
    let got = loop {
        match within("legacy receives", ws.next()).await {
            Some(Ok(WsMessage::Binary(b))) => break b,
            Some(Ok(_)) => continue,
            other => panic!("legacy peer: {other:?}"),
        }
    };
    let m = rhizomorph::legacy::decode(got, &Default::default()).unwrap();
    assert_eq!(m.header.get_str("from"), Some("demo/native-1"));
    assert_eq!(m.header.get_str("method"), Some("s1.resolve"));
    assert!(m.payload == reply, "payload changed on the way");
}

#[tokio::test]
async fn l5_a_native_message_to_nobody_connected_is_echoed() {
    let (url, router) = router().await;
    let mut conn = Endpoint::connect(&url, Config::default()).await.unwrap();
    let header = RoutingHeader::new().with("to", "ws-user-1/bench-echo");
    conn.send(Channel::Stream, header.clone(), "ping")
        .await
        .unwrap();
    let m = within("echo", conn.recv()).await.unwrap();
    assert_eq!(m.header, header);
    assert_eq!(m.channel, Channel::Stream);
    assert_eq!(&m.payload[..], b"ping");
    assert_eq!(
        router
            .stats()
            .echoed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// wire.md §22 between two native peers: identities from HELLO tokens (a full id, and a bare
/// id in `ws-user-<id>`, §22.1.2), a bare `to` resolved in the sender's workspace and a full one
/// across workspaces (§22.2.1), and the fields the router writes (§22.3): `ws`, `to`, `from`
/// and `user#` replace what the sender claimed, in place, and a missing one is appended.
#[tokio::test]
async fn wire_22_native_peers_route_by_token_identity_with_the_router_fields() {
    let (url, router) = router().await;
    let alice = Endpoint::connect(&url, Config::default().with_token("ws-a/alice"))
        .await
        .unwrap();
    let mut bob = Endpoint::connect(&url, Config::default().with_token("bob"))
        .await
        .unwrap();
    let mut carol = Endpoint::connect(&url, Config::default().with_token("ws-a/carol"))
        .await
        .unwrap();
    for _ in 0..100 {
        if router.peers().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        router.peers(),
        ["ws-a/alice", "ws-a/carol", "ws-user-bob/bob"]
    );

    // A bare id is in the sender's workspace; the spoofed `from` and `user` are replaced.
    let spoofed = RoutingHeader::new()
        .with("from", "ws-a/mallory")
        .with("to", "carol")
        .with("user", "root")
        .with("method", "hi");
    alice.send(Channel::Rpc, spoofed, "1").await.unwrap();
    let m = within("carol receives", carol.recv()).await.unwrap();
    let names: Vec<&[u8]> = m.header.fields().iter().map(|f| &f.name[..]).collect();
    assert_eq!(
        names,
        [&b"from"[..], b"to", b"user#", b"method", b"ws"],
        "rewritten in place, ws appended (§22.3.1)"
    );
    assert_eq!(m.header.get_str("from"), Some("ws-a/alice"));
    assert_eq!(m.header.get_str("to"), Some("ws-a/carol"));
    assert_eq!(m.header.get_str("ws"), Some("ws-a"));
    let user = rmpv::decode::read_value(&mut &m.header.get("user#").unwrap()[..]).unwrap();
    assert_eq!(user["id"].as_str(), Some("anonymous-alice"), "{user}");
    assert_eq!(user["roles"][0].as_str(), Some("anonymous"));

    // Another workspace by full id; `bob` (a bare token) lives in ws-user-bob.
    let header = RoutingHeader::new().with("to", "ws-user-bob/bob");
    alice.send(Channel::Rpc, header, "2").await.unwrap();
    let m = within("bob receives", bob.recv()).await.unwrap();
    assert_eq!(m.header.get_str("from"), Some("ws-a/alice"));
    assert_eq!(m.header.get_str("to"), Some("ws-user-bob/bob"));
    assert_eq!(&m.payload[..], b"2");

    // A broadcast reaches the workspace but not its sender (§22.4.2).
    alice
        .send(Channel::Stream, RoutingHeader::new().with("to", "*"), "all")
        .await
        .unwrap();
    let m = within("carol hears the broadcast", carol.recv())
        .await
        .unwrap();
    assert_eq!(m.header.get_str("to"), Some("ws-a/*"));
    assert_eq!(&m.payload[..], b"all");
}
