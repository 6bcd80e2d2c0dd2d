//! The two transports a test runs each check over, and the listener/client configs that let a
//! client reach a listener on loopback.
//!
//! Owns [`Transport`], [`BOTH`], [`configs`] and [`bind`]: QUIC always runs TLS (a fresh
//! self-signed certificate the client pins), WebSocket runs plain. Never decides anything else
//! about the configs: the caller passes the base.

use rhizomorph::transport::tls;
use rhizomorph::{Channel, Config, Connection, Listener, RoutingHeader};

/// Which transport a check runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket, plain.
    Ws,
    /// QUIC with TLS.
    Quic,
}

/// Both transports, in the order checks run them.
pub const BOTH: [Transport; 2] = [Transport::Ws, Transport::Quic];

/// Server and client configs over `t`, both starting from `base`.
pub fn configs(t: Transport, base: Config) -> (Config, Config) {
    match t {
        Transport::Ws => (base.clone(), base),
        Transport::Quic => {
            let (cert, key, fp) = tls::self_signed(&["localhost"]).unwrap();
            let server = base
                .clone()
                .with_server_tls(tls::server_tls(vec![cert], key).unwrap());
            let client = base.with_client_tls(tls::client_tls_pinned(&fp).unwrap());
            (server, client)
        }
    }
}

/// A listener over `t` on a free loopback port.
pub async fn bind(t: Transport, config: Config) -> Listener {
    match t {
        Transport::Ws => Listener::bind("127.0.0.1:0", config).await.unwrap(),
        Transport::Quic => Listener::bind_quic("127.0.0.1:0", config).unwrap(),
    }
}

/// One round trip to a router's echo service (`to: echo` on `rpc`): panics if the echo does
/// not come back within 20 s or differs from `payload`.
pub async fn echo(conn: &mut Connection, payload: &'static [u8]) {
    let to_echo = RoutingHeader::new().with("to", "echo");
    conn.send(Channel::Rpc, to_echo, bytes::Bytes::from_static(payload))
        .await
        .unwrap();
    let m = tokio::time::timeout(std::time::Duration::from_secs(20), conn.recv())
        .await
        .expect("echo: timed out")
        .expect("echo reply");
    assert_eq!(&m.payload[..], payload);
}
