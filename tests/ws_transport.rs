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
