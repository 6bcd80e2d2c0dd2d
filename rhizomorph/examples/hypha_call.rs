//! Calls a hypha-rpc service through a real hypha server, in legacy mode (spec/legacy.md).
//!
//! Run a hypha server and a provider, e.g. with the venv `scripts/test.sh` creates:
//!
//! ```text
//! .venv/bin/python -m hypha.server --host 127.0.0.1 --port 9527 &
//! .venv/bin/python rhizomorph/tests/interop/hypha_peers.py provider ws://127.0.0.1:9527/ws   # prints its id
//! cargo run --release --example hypha_call -- ws://127.0.0.1:9527/ws <provider-id> echo-svc echo hello
//! ```
//!
//! which prints `rhizomorphexample00001.resolve: {"args": ["hello"]}`.
//!
//! The client offers the rhizomorph subprotocol, sees the hypha server decline it, falls back
//! to legacy mode (logged), and makes one hypha-rpc call with a compact promise: header
//! `{type, to, method, session}`, payload `{"args": [...], "promise": "*", "t": 15.0}`; the answer
//! arrives as `<session>.resolve` with `{"args": [result]}`.

use rhizomorph::legacy::AuthInfo;
use rhizomorph::{Channel, Config, Endpoint, Mode, RoutingHeader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, provider, service, function, argument] = args.as_slice() else {
        eprintln!("usage: hypha_call <ws-url> <provider-id> <service> <function> <string-arg>");
        std::process::exit(2);
    };
    let config = Config::default().with_legacy_auth(AuthInfo {
        client_id: Some("rhizomorph-example".into()),
        ..AuthInfo::default()
    });
    let mut conn = Endpoint::connect(url, config).await?;
    if conn.mode() != Mode::Legacy {
        return Err("the server speaks rhizomorph natively: this example is for hypha".into());
    }
    let info = conn.legacy_info().expect("legacy mode has connection_info");
    println!(
        "connected as {} (manager {:?})",
        info.full_id(),
        info.manager_id
    );

    let session = "rhizomorphexample00001";
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("to", provider.clone())
        .with("method", format!("services.{service}.{function}"))
        .with("session", session);
    let extra = rmpv::Value::Map(vec![
        (
            "args".into(),
            rmpv::Value::Array(vec![argument.as_str().into()]),
        ),
        ("promise".into(), "*".into()),
        ("t".into(), rmpv::Value::F64(15.0)),
    ]);
    let mut payload = Vec::new();
    rmpv::encode::write_value(&mut payload, &extra)?;
    conn.send(Channel::Rpc, header, payload).await?;

    while let Some(m) = conn.recv().await {
        let method = m.header.get_str("method").unwrap_or_default();
        if method == format!("{session}.resolve") || method == format!("{session}.reject") {
            let answer = rmpv::decode::read_value(&mut &m.payload[..])?;
            println!("{method}: {answer}");
            break;
        }
    }
    conn.close().await;
    Ok(())
}
