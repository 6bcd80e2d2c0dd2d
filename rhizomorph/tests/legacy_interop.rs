//! Interop with real code nobody here wrote (legacy.md): the `hypha` server and `hypha-rpc`
//! Python clients from PyPI, installed into the venv by `scripts/test.sh` (`.venv`, or
//! `$RHIZOMORPH_VENV`). The Python side is `tests/interop/hypha_peers.py`.
//!
//! 1. A real hypha server; a real hypha-rpc client registers a public echo service; a
//!    rhizomorph client (legacy mode, by fallback) calls it with a string, kwargs, a nested
//!    dict, an ndarray value and 256 B / 20 KB / 200 KB bytes and decodes each `.resolve`; then
//!    hypha-rpc's own `get_remote_service` fetches a service the rhizomorph client answers and
//!    calls it.
//! 2. Two hypha-rpc `WebsocketRPCConnection`s (unmodified) connect to a rhizomorph router,
//!    route messages by `to` with hypha's header rewrite, and keep alive with ping/pong.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use rhizomorph::legacy::AuthInfo;
use rhizomorph::{Channel, Config, Connection, Endpoint, Listener, Mode, RoutingHeader};
use rmpv::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The venv's Python with hypha, hypha-rpc, msgpack and numpy (the bench's own lookup).
fn python() -> PathBuf {
    rhizomorph_testkit::python::venv_python().unwrap_or_else(|e| panic!("{e}"))
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/hypha_peers.py")
}

fn pack(v: &Value) -> Bytes {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    Bytes::from(out)
}

fn unpack(b: &[u8]) -> Value {
    rmpv::decode::read_value(&mut &b[..]).expect("a msgpack payload")
}

fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// Calls `method` on `to` as hypha-rpc does (compact promise) and waits for its `.resolve`.
async fn call(
    conn: &mut Connection,
    to: &str,
    method: &str,
    mut args: Vec<Value>,
    kwargs: Option<Value>,
    n: u32,
) -> Result<Value, String> {
    let me = conn.legacy_info().unwrap().full_id();
    let session = format!("rhizomorphsession{n:05}");
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("from", me)
        .with("to", to.to_string())
        .with("method", method.to_string())
        .with("session", session.clone());
    let with_kwargs = kwargs.is_some();
    if let Some(k) = kwargs {
        args.push(k);
    }
    let mut extra = vec![("args", Value::Array(args))];
    if with_kwargs {
        extra.push(("with_kwargs", Value::Boolean(true)));
    }
    extra.push(("promise", "*".into()));
    extra.push(("t", Value::F64(15.0)));
    conn.send(Channel::Rpc, header, pack(&map(extra)))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), conn.recv())
            .await
            .map_err(|_| format!("{method}: no reply in 30 s"))?
            .ok_or("connection ended")?;
        let reply_method = m.header.get_str("method").unwrap_or("");
        if reply_method == format!("{session}.resolve") {
            let extra = unpack(&m.payload);
            return Ok(get(&extra, "args")
                .and_then(|a| a.as_array())
                .and_then(|a| a.first())
                .cloned()
                .unwrap_or(Value::Nil));
        }
        if reply_method == format!("{session}.reject") {
            return Err(format!("rejected: {}", unpack(&m.payload)));
        }
        // Heartbeats and anything else: not the answer.
    }
}

/// Answers hypha-rpc calls to our `echo-rs` service: `services.built-in.get_service` (full
/// promise) with a service description, `services.echo-rs.echo` (compact promise) with its
/// argument.
async fn answer(conn: &mut Connection, m: rhizomorph::Message) {
    let me = conn.legacy_info().unwrap().full_id();
    let from = m.header.get_str("from").unwrap_or("").to_string();
    let method = m.header.get_str("method").unwrap_or("").to_string();
    let session = m.header.get_str("session").unwrap_or("").to_string();
    let extra = unpack(&m.payload);
    let arg0 = get(&extra, "args")
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Nil);
    let (resolve_method, result) = match method.as_str() {
        "services.built-in.get_service" => {
            let promise = get(&extra, "promise").expect("a full promise");
            let resolve = get(promise, "resolve")
                .and_then(|r| get(r, "_rmethod"))
                .and_then(|v| v.as_str())
                .expect("promise.resolve._rmethod")
                .to_string();
            let service = map(vec![
                ("id", "echo-rs".into()),
                ("name", "echo-rs".into()),
                ("config", map(vec![("visibility", "public".into())])),
                (
                    "echo",
                    map(vec![
                        ("_rtype", "method".into()),
                        ("_rtarget", me.clone().into()),
                        ("_rmethod", "services.echo-rs.echo".into()),
                        ("_rpromise", "*".into()),
                        ("_rdoc", "echo".into()),
                    ]),
                ),
            ]);
            (resolve, service)
        }
        "services.echo-rs.echo" => (format!("{session}.resolve"), arg0),
        _ => return,
    };
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("from", me)
        .with("to", from)
        .with("method", resolve_method);
    let payload = pack(&map(vec![("args", Value::Array(vec![result]))]));
    conn.send(Channel::Rpc, header, payload).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l_interop_1_rhizomorph_calls_and_serves_hypha_rpc_through_a_real_hypha_server() {
    // A real hypha server on a free port (per-client rate limits raised), as `bench --legacy`
    // starts it.
    let server = rhizomorph_testkit::python::HyphaServer::start(&python())
        .await
        .expect("the hypha server starts");
    let url = server.url.clone();
    let mut provider = Command::new(python())
        .arg(script())
        .args(["provider", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(provider.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the provider registered within 60 s")
        .unwrap()
        .expect("the provider printed its id");
    let provider_id = serde_json::from_str::<serde_json::Value>(&first).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let auth = AuthInfo {
        client_id: Some("rhizomorph-caller".into()),
        ..AuthInfo::default()
    };
    let mut conn = Endpoint::connect(&url, Config::default().with_legacy_auth(auth))
        .await
        .unwrap();
    assert_eq!(
        conn.mode(),
        Mode::Legacy,
        "the hypha server is a legacy peer"
    );
    let echo = "services.echo-svc.echo";
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };

    // A string.
    let r = call(
        &mut conn,
        &provider_id,
        echo,
        vec!["hello".into()],
        None,
        next(),
    )
    .await;
    assert_eq!(r.unwrap().as_str(), Some("hello"));
    // kwargs.
    let kwargs = map(vec![("a", 1.into()), ("b", "x".into())]);
    let r = call(
        &mut conn,
        &provider_id,
        "services.echo-svc.echo_kwargs",
        vec![],
        Some(kwargs.clone()),
        next(),
    )
    .await
    .unwrap();
    assert_eq!(get(&r, "a").and_then(Value::as_i64), Some(1));
    assert_eq!(get(&r, "b").and_then(Value::as_str), Some("x"));
    // A nested dict.
    let nested = map(vec![(
        "outer",
        map(vec![(
            "list",
            Value::Array(vec![
                1.into(),
                Value::F64(2.5),
                map(vec![("c", "d".into())]),
            ]),
        )]),
    )]);
    let r = call(
        &mut conn,
        &provider_id,
        echo,
        vec![nested.clone()],
        None,
        next(),
    )
    .await;
    assert_eq!(r.unwrap(), nested);
    // An ndarray value, as hypha-rpc encodes numpy arrays.
    let floats: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let array = map(vec![
        ("_rtype", "ndarray".into()),
        ("_rvalue", Value::Binary(floats.clone())),
        ("_rshape", Value::Array(vec![2.into(), 3.into()])),
        ("_rdtype", "float32".into()),
    ]);
    let r = call(
        &mut conn,
        &provider_id,
        "services.echo-svc.describe",
        vec![array.clone()],
        None,
        next(),
    )
    .await
    .unwrap();
    assert_eq!(get(&r, "dtype").and_then(Value::as_str), Some("float32"));
    assert_eq!(get(&r, "sum").and_then(Value::as_f64), Some(15.0));
    let r = call(&mut conn, &provider_id, echo, vec![array], None, next())
        .await
        .unwrap();
    assert_eq!(get(&r, "_rtype").and_then(Value::as_str), Some("ndarray"));
    assert_eq!(
        get(&r, "_rvalue").and_then(Value::as_slice),
        Some(&floats[..])
    );
    // Bytes: 256 B, 20 KB, 200 KB.
    for size in [256usize, 20 * 1024, 200 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let r = call(
            &mut conn,
            &provider_id,
            echo,
            vec![Value::Binary(data.clone())],
            None,
            next(),
        )
        .await
        .unwrap();
        assert!(
            r.as_slice() == Some(&data[..]),
            "{size} bytes came back changed"
        );
    }

    // The reverse direction: hypha-rpc fetches and calls a service this client answers.
    let me = conn.legacy_info().unwrap().full_id();
    let mut stdin = provider.stdin.take().unwrap();
    stdin.write_all(format!("{me}\n").as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let reverse = loop {
        tokio::select! {
            m = conn.recv() => {
                let m = m.expect("connection to hypha open");
                answer(&mut conn, m).await;
            }
            line = lines.next_line() => break line.unwrap().expect("python reported"),
            _ = tokio::time::sleep(Duration::from_secs(60)) => panic!("reverse call: no answer in 60 s"),
        }
    };
    let v: serde_json::Value = serde_json::from_str(&reverse).unwrap();
    assert_eq!(v["reverse"], "from python", "{reverse}");
    assert_eq!(v["array_sum"], 15.0, "{reverse}");
    stdin.write_all(b"quit\n").await.unwrap();
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l_interop_2_hypha_rpc_connections_route_through_rhizomorph_serve() {
    let listener = Listener::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let url = format!("{}ws", listener.url());
    let router = rhizomorph::router::Router::new();
    tokio::spawn(router.clone().serve(listener));
    let pings_before = rhizomorph::metrics::snapshot().legacy_pings_answered;
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(python())
            .arg(script())
            .args(["two-connections", &url])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Python peers finished within 120 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("\"ok\": true"),
        "python peers failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stats = router.stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert!(stats.forwarded.load(Relaxed) >= 4, "{stats:?}");
    assert_eq!(stats.rejected.load(Relaxed), 1, "{stats:?}");
    let pings = rhizomorph::metrics::snapshot().legacy_pings_answered - pings_before;
    assert!(pings >= 2, "{pings} keepalive pings answered");
}
