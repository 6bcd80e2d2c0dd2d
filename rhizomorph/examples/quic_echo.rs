//! The echo over QUIC with TLS: a server with a self-signed certificate, a client that pins
//! its fingerprint, calls on `rpc` and a message on every channel.
//!
//! Run: `cargo run --release --example quic_echo` (development certificates come from the
//! `self-signed` feature, which the workspace enables for its examples and tests)
//!
//! In production the server loads its certificate (`transport::tls::load_pem` and
//! `server_tls`) and clients verify it against the web PKI roots (the default) or a CA of
//! yours (`Config::with_client_tls`); pinning suits development and closed deployments.

use rhizomorph::transport::tls;
use rhizomorph::{Channel, Config, Endpoint, Listener, RoutingHeader};

#[tokio::main]
async fn main() -> Result<(), rhizomorph::Error> {
    // Server: QUIC always runs TLS (wire.md §17.1).
    let (cert, key, fingerprint) = tls::self_signed(&["localhost", "127.0.0.1"])?;
    let server_config = Config::default().with_server_tls(tls::server_tls(vec![cert], key)?);
    let listener = Listener::bind_quic("127.0.0.1:0", server_config)?;
    let url = listener.url();
    println!("server: {url}, certificate fingerprint {fingerprint}");
    tokio::spawn(async move {
        while let Ok(mut conn) = listener.accept().await {
            tokio::spawn(async move {
                let sender = conn.sender();
                while let Some(m) = conn.recv().await {
                    // A call gets a reply; anything else is echoed as it came.
                    let sent = if m.header.get("session").is_some() {
                        sender.reply(&m, m.payload.clone()).await
                    } else {
                        sender.send(m.channel, m.header, m.payload).await
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            });
        }
    });

    // Client: trusts exactly that certificate.
    let client_config = Config::default().with_client_tls(tls::client_tls_pinned(&fingerprint)?);
    let mut conn = Endpoint::connect(&url, client_config).await?;
    let reply = conn
        .sender()
        .call(
            Channel::Rpc,
            RoutingHeader::new().with("method", "echo"),
            "over QUIC",
        )
        .await?;
    println!("call -> {:?}", String::from_utf8_lossy(&reply.payload));
    // One stream per channel (wire.md §17.2): a bulk message never holds up the others.
    for channel in Channel::ALL {
        conn.send(
            channel,
            RoutingHeader::new().with("to", "echo"),
            channel.name(),
        )
        .await?;
    }
    for _ in Channel::ALL {
        let m = conn.recv().await.expect("an echo");
        println!(
            "{} -> {:?}",
            m.channel.name(),
            String::from_utf8_lossy(&m.payload)
        );
    }
    println!("round trip {:?}", conn.rtt());
    conn.close().await;
    Ok(())
}
