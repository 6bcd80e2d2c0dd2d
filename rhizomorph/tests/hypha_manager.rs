//! `rhizomorph serve` as a Hypha-compatible server (legacy.md §L6): unmodified hypha-rpc
//! programs from PyPI (`tests/interop/hypha_apps.py`, in the venv `scripts/test.sh` makes)
//! connect to a router with a workspace manager, register, find and call services, hear
//! `client_disconnected`, and come back with their reconnection token. Native rhizomorph peers
//! take part through the same manager, as providers and as callers. Bad input to the manager
//! is rejected or refused by a limit while another client goes on being served.

use std::time::Duration;

use rhizomorph::manager::protocol::{call_payload, encode, get, map};
use rhizomorph::manager::ManagerConfig;
use rhizomorph::router::Router;
use rhizomorph::{Channel, Config, Connection, Endpoint, Listener, RoutingHeader};
use rhizomorph_testkit::python::HyphaApp as Py;
use rmpv::Value;

const MANAGER: &str = "*/rhizomorph-manager";

/// A router with a workspace manager on a free port; its `ws://` URL and its `http://` one
/// (what hypha-rpc's `server_url` takes).
async fn server(config: ManagerConfig) -> (Router, String, String) {
    let listener = Listener::bind("127.0.0.1:0", Config::default().with_exchanges(false))
        .await
        .unwrap();
    let ws = listener.url();
    let http = ws
        .replacen("ws", "http", 1)
        .trim_end_matches('/')
        .to_string();
    let router = Router::with_manager(ManagerConfig {
        public_base_url: http.clone(),
        ..config
    });
    tokio::spawn(router.clone().serve(listener));
    (router, ws, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_1_two_hypha_rpc_programs_register_find_call_and_reconnect() {
    let (router, _ws, http) = server(ManagerConfig::default()).await;
    let workspace = "ws-demo";
    let mut provider = Py::start(&["provider", &http, workspace]).unwrap();
    let id = provider.expect("ready").await;
    assert_eq!(id, "ws-demo/py-provider");
    let mut caller = Py::start(&["caller", &http, workspace, "py-provider:calc"]).unwrap();
    let calls = caller.expect("calls").await;
    rhizomorph_testkit::python::check_calculator_calls(&calls);
    assert_eq!(calls["echo_manager"], "manager echo", "{calls}");
    let services = calls["services"].as_array().unwrap();
    for s in [
        "ws-demo/py-provider:calc",
        "ws-demo/py-provider:built-in",
        "ws-demo/py-caller:built-in",
    ] {
        assert!(
            services.iter().any(|x| x == s),
            "list_services lacks {s}: {calls}"
        );
    }
    assert_eq!(
        calls["clients"],
        serde_json::json!(["ws-demo/py-caller", "ws-demo/py-provider"])
    );

    // The server drops the provider: the caller hears it, hypha-rpc reconnects by itself with
    // its reconnection token, gets its identity back and re-registers its services.
    assert!(router.disconnect_peer("ws-demo/py-provider", "test: drop the provider"));
    let gone = caller.expect("client_disconnected").await;
    assert_eq!(gone["id"], "ws-demo/py-provider", "{gone}");
    assert_eq!(provider.expect("reregistered").await, "ws-demo/py-provider");
    assert_eq!(caller.expect("found_again").await, "again");
    let stats = router.with_manager_state(|m| m.stats()).unwrap();
    assert!(stats.resolved >= 10 && stats.events >= 1, "{stats:?}");
    caller.quit().await;
    provider.quit().await;
}

/// A native rhizomorph peer (HELLO token `<workspace>/<client_id>`).
async fn native(ws_url: &str, identity: &str) -> Connection {
    let mut config = Config::default();
    config.session.token = identity.as_bytes().to_vec().into();
    Endpoint::connect(ws_url, config).await.unwrap()
}

/// Calls `method` on `to` as hypha-rpc does and waits for its answer, answering the
/// provider-side calls `serve` knows meanwhile.
async fn call(
    conn: &mut Connection,
    me: &str,
    to: &str,
    method: &str,
    args: Vec<Value>,
    session: &str,
) -> Result<Value, String> {
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("from", me.to_string())
        .with("to", to.to_string())
        .with("method", method.to_string())
        .with("session", session.to_string());
    conn.send(Channel::Rpc, header, call_payload(args))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), conn.recv())
            .await
            .map_err(|_| format!("{method}: no answer in 30 s"))?
            .ok_or("connection ended")?;
        let reply = m.header.get_str("method").unwrap_or("").to_string();
        let extra = rmpv::decode::read_value(&mut &m.payload[..]).unwrap_or(Value::Nil);
        let first = get(&extra, "args")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or(Value::Nil);
        if reply == format!("{session}.resolve") {
            return Ok(first);
        }
        if reply == format!("{session}.reject") {
            return Err(get(&first, "_rvalue")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string());
        }
        if reply.starts_with("services.") {
            serve(conn, me, m).await;
        }
    }
}

/// A native provider of service `rs-calc`: answers `services.built-in.get_service` with its
/// description (functions encoded as hypha-rpc remote methods on this peer) and
/// `services.rs-calc.echo` / `.add` calls.
async fn serve(conn: &Connection, me: &str, m: rhizomorph::Message) {
    let from = m.header.get_str("from").unwrap_or("").to_string();
    let method = m.header.get_str("method").unwrap_or("").to_string();
    let session = m.header.get_str("session").unwrap_or("").to_string();
    let extra = rmpv::decode::read_value(&mut &m.payload[..]).unwrap_or(Value::Nil);
    let args = get(&extra, "args")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let function = |name: &str| {
        map(vec![
            ("_rtype", "method".into()),
            ("_rtarget", me.into()),
            ("_rmethod", format!("services.rs-calc.{name}").into()),
            ("_rpromise", "*".into()),
            ("_rdoc", name.into()),
        ])
    };
    let result = match method.as_str() {
        "services.built-in.get_service" => Ok(map(vec![
            ("id", "rs-calc".into()),
            ("name", "rs-calc".into()),
            ("config", map(vec![("visibility", "public".into())])),
            ("echo", function("echo")),
            ("add", function("add")),
        ])),
        "services.rs-calc.echo" => Ok(args.first().cloned().unwrap_or(Value::Nil)),
        "services.rs-calc.add" => {
            let sum: i64 = args.iter().filter_map(Value::as_i64).sum();
            Ok(Value::from(sum))
        }
        other => Err(format!("no function {other}")),
    };
    let (callback, payload) = match result {
        Ok(v) => (
            "resolve",
            encode(&map(vec![("args", Value::Array(vec![v]))])),
        ),
        Err(e) => (
            "reject",
            encode(&map(vec![(
                "args",
                Value::Array(vec![map(vec![
                    ("_rtype", "error".into()),
                    ("_rvalue", e.into()),
                ])]),
            )])),
        ),
    };
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("from", me.to_string())
        .with("to", from)
        .with("method", format!("{session}.{callback}"))
        .with("parent", session);
    conn.send(Channel::Rpc, header, payload).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_2_a_native_provider_serves_a_hypha_rpc_caller_and_calls_a_hypha_rpc_provider() {
    let (_router, ws_url, http) = server(ManagerConfig::default()).await;
    let me = "ws-mixed/rs-provider";
    let mut conn = native(&ws_url, me).await;
    // A native peer registers its service with the manager as hypha-rpc does.
    let info = map(vec![
        ("id", "rs-calc".into()),
        ("name", "rs-calc".into()),
        ("type", "generic".into()),
        ("config", map(vec![("visibility", "public".into())])),
    ]);
    call(
        &mut conn,
        me,
        MANAGER,
        "services.default.register_service",
        vec![info],
        "r1",
    )
    .await
    .unwrap();
    // The Python caller finds it and calls it; the native side answers meanwhile.
    let mut caller = Py::start(&["call-native", &http, "ws-mixed", "rs-provider:rs-calc"]).unwrap();
    let report = loop {
        tokio::select! {
            m = conn.recv() => serve(&conn, me, m.expect("open")).await,
            v = caller.next_json() => {
                let v = v.expect("python reported");
                if let Some(r) = v.get("native") { break r.clone(); }
            }
            _ = tokio::time::sleep(Duration::from_secs(60)) => panic!("no report from python"),
        }
    };
    assert_eq!(
        report["echo"],
        serde_json::json!([1, "two", {"three": 3.0}]),
        "{report}"
    );
    assert_eq!(report["add"], 9, "{report}");
    assert!(
        report["missing"].as_str().unwrap_or("").contains("missing"),
        "{report}"
    );
    caller.quit().await;

    // The reverse: a hypha-rpc provider, found and called by the native peer.
    let mut provider = Py::start(&["provider", &http, "ws-mixed"]).unwrap();
    assert_eq!(provider.expect("ready").await, "ws-mixed/py-provider");
    let svc = call(
        &mut conn,
        me,
        MANAGER,
        "services.default.get_service",
        vec!["py-provider:calc".into()],
        "g1",
    )
    .await
    .unwrap();
    assert_eq!(
        get(&svc, "id").and_then(Value::as_str),
        Some("ws-mixed/py-provider:calc")
    );
    let echo = get(&svc, "echo").expect("an encoded echo");
    let target = get(echo, "_rtarget")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let method = get(echo, "_rmethod")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let r = call(
        &mut conn,
        me,
        &target,
        &method,
        vec!["from rust".into()],
        "c1",
    )
    .await
    .unwrap();
    assert_eq!(r.as_str(), Some("from rust"));
    provider.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_3_a_reconnection_token_gives_the_identity_back_once_and_a_forged_one_is_refused() {
    let listener = Listener::bind("127.0.0.1:0", Config::default().with_legacy_only(true))
        .await
        .unwrap();
    let url = format!("{}ws", listener.url());
    tokio::spawn(Router::with_manager(ManagerConfig::default()).serve(listener));
    let legacy = |client_id: &str, workspace: Option<&str>, token: Option<&str>| {
        let mut c = Config::default();
        c.legacy.auth.client_id = Some(client_id.into());
        c.legacy.auth.workspace = workspace.map(str::to_string);
        c.legacy.auth.reconnection_token = token.map(str::to_string);
        c
    };
    let first = Endpoint::connect(&url, legacy("alice", Some("ws-t"), None))
        .await
        .unwrap();
    let info = first.legacy_info().unwrap().clone();
    assert_eq!(info.manager_id.as_deref(), Some("rhizomorph-manager"));
    let token = info
        .reconnection_token
        .clone()
        .expect("a reconnection token");
    assert_eq!(token.len(), 32, "128 random bits as hex");
    first.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = Endpoint::connect(&url, legacy("alice", Some("ws-t"), Some(&token)))
        .await
        .unwrap();
    assert_eq!(again.legacy_info().unwrap().full_id(), "ws-t/alice");
    again.close().await;
    // Used once: a second use, a forged token, and someone else's token are refused.
    for (who, t) in [
        ("alice", token.as_str()),
        ("alice", "00000000000000000000000000000000"),
    ] {
        match Endpoint::connect(&url, legacy(who, Some("ws-t"), Some(t))).await {
            Err(rhizomorph::Error::LegacyRefused { message, .. }) => {
                assert!(message.contains("reconnection token"), "{message}")
            }
            other => panic!("{who} with a spent or forged token: {other:?}"),
        }
    }
    let bob = Endpoint::connect(&url, legacy("bob", Some("ws-t"), None))
        .await
        .unwrap();
    let bobs = bob
        .legacy_info()
        .unwrap()
        .reconnection_token
        .clone()
        .unwrap();
    match Endpoint::connect(&url, legacy("mallory", Some("ws-t"), Some(&bobs))).await {
        Err(rhizomorph::Error::LegacyRefused { message, .. }) => {
            assert!(message.contains("issued to ws-t/bob"), "{message}")
        }
        other => panic!("mallory with bob's token: {other:?}"),
    }
}

/// Sends one call to the manager without waiting.
async fn send_call(
    conn: &Connection,
    me: &str,
    method: &str,
    payload: bytes::Bytes,
    session: &str,
) {
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("from", me.to_string())
        .with("to", MANAGER)
        .with("method", method.to_string())
        .with("session", session.to_string());
    conn.send(Channel::Rpc, header, payload).await.unwrap();
}

/// Reads answers until `n` `.resolve`/`.reject` arrived; returns (resolved, reject messages).
async fn answers(conn: &mut Connection, n: usize) -> (usize, Vec<String>) {
    let (mut ok, mut rejects) = (0, Vec::new());
    while ok + rejects.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), conn.recv())
            .await
            .expect("answers within 30 s")
            .expect("open");
        let method = m.header.get_str("method").unwrap_or("");
        if method.ends_with(".resolve") {
            ok += 1;
        } else if method.ends_with(".reject") {
            let extra = rmpv::decode::read_value(&mut &m.payload[..]).unwrap();
            let first = get(&extra, "args").and_then(Value::as_array).unwrap()[0].clone();
            rejects.push(
                get(&first, "_rvalue")
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_string(),
            );
        }
    }
    (ok, rejects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_4_bad_input_to_the_manager_is_rejected_or_limited_and_others_are_served() {
    let config = ManagerConfig {
        provider_timeout: Duration::from_secs(1),
        ..ManagerConfig::default()
    };
    let limits = config.limits;
    let per_client = config.max_pending_per_client;
    let (router, ws_url, _http) = server(config).await;
    let mallory_id = "ws-bad/mallory";
    let mut mallory = native(&ws_url, mallory_id).await;
    let mut alice = native(&ws_url, "ws-bad/alice").await;

    // Alice is served throughout: a manager echo before, between and after each attack.
    let mut n = 0;
    macro_rules! alice_ok {
        () => {{
            n += 1;
            let echo = "services.default.echo";
            let r = call(
                &mut alice,
                "ws-bad/alice",
                MANAGER,
                echo,
                vec![Value::from(n)],
                &format!("a{n}"),
            )
            .await;
            assert_eq!(r, Ok(Value::from(n)), "alice's echo {n}");
        }};
    }
    alice_ok!();

    // Wrong argument types, an unknown function, an unknown service, a payload that is not
    // msgpack, a name too long.
    let cases: Vec<(&str, bytes::Bytes, &str)> = vec![
        (
            "services.default.register_service",
            call_payload(vec![42.into()]),
            "service description",
        ),
        (
            "services.default.get_service",
            call_payload(vec![Value::Array(vec![])]),
            "service id",
        ),
        (
            "services.default.subscribe",
            call_payload(vec![7.into()]),
            "event type",
        ),
        (
            "services.default.subscribe",
            call_payload(vec!["ws-other/secret".into()]),
            "forbidden",
        ),
        (
            "services.default.delete_everything",
            call_payload(vec![]),
            "no function",
        ),
        ("services.nope.echo", call_payload(vec![]), "no service"),
        (
            "services.default.echo",
            bytes::Bytes::from_static(&[0xc1, 0xc1]),
            "not a msgpack map",
        ),
        (
            "services.default.register_service",
            call_payload(vec![map(vec![("id", "x".repeat(300).into())])]),
            "must be 1–256 bytes",
        ),
        (
            "services.default.register_service",
            call_payload(vec![map(vec![("id", "ws-bad/alice:stolen".into())])]),
            "does not belong",
        ),
    ];
    for (i, (method, payload, expect)) in cases.iter().enumerate() {
        send_call(
            &mallory,
            mallory_id,
            method,
            payload.clone(),
            &format!("b{i}"),
        )
        .await;
        let (ok, rejects) = answers(&mut mallory, 1).await;
        assert_eq!(ok, 0, "{method} {expect}");
        assert!(
            rejects[0].contains(expect),
            "{method}: {rejects:?} lacks {expect:?}"
        );
    }
    alice_ok!();

    // A service description with a 10 MB name: refused by the request limit, undecoded.
    let huge = call_payload(vec![map(vec![("id", "n".repeat(10 << 20).into())])]);
    send_call(
        &mallory,
        mallory_id,
        "services.default.register_service",
        huge,
        "huge",
    )
    .await;
    let (_, rejects) = answers(&mut mallory, 1).await;
    assert!(rejects[0].contains("over its limit"), "{rejects:?}");
    alice_ok!();

    // 10,000 services from one client: the first `services_per_client` are taken.
    for i in 0..10_000 {
        let info = map(vec![
            ("id", format!("svc{i}").into()),
            ("config", map(vec![("visibility", "public".into())])),
        ]);
        send_call(
            &mallory,
            mallory_id,
            "services.default.register_service",
            call_payload(vec![info]),
            &format!("s{i}"),
        )
        .await;
    }
    let (ok, rejects) = answers(&mut mallory, 10_000).await;
    assert_eq!(ok, limits.services_per_client);
    assert!(
        rejects.iter().all(|r| r.contains("limit of")),
        "{:?}",
        &rejects[..3]
    );
    alice_ok!();
    let registered = router
        .with_manager_state(|m| m.registry().service_count())
        .unwrap();
    assert_eq!(registered, limits.services_per_client);

    // A get_service loop on a provider that never answers (mallory's own service): at most
    // `max_pending_per_client` wait, the rest are rejected at once, the waiting ones expire.
    for i in 0..1_000 {
        send_call(
            &mallory,
            mallory_id,
            "services.default.get_service",
            call_payload(vec!["mallory:svc1".into()]),
            &format!("g{i}"),
        )
        .await;
    }
    let pending = router.with_manager_state(|m| m.pending()).unwrap();
    assert!(pending <= per_client, "{pending} waiting");
    alice_ok!();
    let (ok, rejects) = answers(&mut mallory, 1_000).await;
    assert_eq!(ok, 0);
    let limited = rejects
        .iter()
        .filter(|r| r.contains("waiting for providers"))
        .count();
    let expired = rejects
        .iter()
        .filter(|r| r.contains("did not answer"))
        .count();
    assert_eq!(
        (limited, expired),
        (1_000 - per_client, per_client),
        "{:?}",
        &rejects[..3]
    );
    assert_eq!(router.with_manager_state(|m| m.pending()).unwrap(), 0);
    alice_ok!();
    let stats = router.with_manager_state(|m| m.stats()).unwrap();
    println!("manager after the attacks: {stats:?}, {registered} services of mallory's kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_5_native_peers_use_the_manager_over_both_transports_and_hear_departures() {
    use rhizomorph_testkit::transports::{bind, configs, BOTH};
    for t in BOTH {
        let (server_config, client_config) = configs(t, Config::default().with_exchanges(false));
        let listener = bind(t, server_config).await;
        let url = listener.url();
        tokio::spawn(Router::with_manager(ManagerConfig::default()).serve(listener));
        let peer = |id: &str| {
            let mut c = client_config.clone();
            c.session.token = id.as_bytes().to_vec().into();
            let url = url.clone();
            async move { Endpoint::connect(&url, c).await.unwrap() }
        };
        let (pid, cid) = ("ws-n/rs-provider", "ws-n/rs-caller");
        let mut provider = peer(pid).await;
        let info = map(vec![("id", "rs-calc".into())]);
        let r = call(
            &mut provider,
            pid,
            MANAGER,
            "services.default.register_service",
            vec![info],
            "r",
        )
        .await;
        assert_eq!(r, Ok(Value::Nil), "{t:?}");
        let serving = tokio::spawn(async move {
            while let Some(m) = provider.recv().await {
                serve(&provider, pid, m).await;
            }
        });
        let mut caller = peer(cid).await;
        let subscribed = call(
            &mut caller,
            cid,
            MANAGER,
            "services.default.subscribe",
            vec!["client_disconnected".into()],
            "s",
        )
        .await;
        assert_eq!(subscribed, Ok(Value::Boolean(true)));
        let svc = call(
            &mut caller,
            cid,
            MANAGER,
            "services.default.get_service",
            vec!["rs-provider:rs-calc".into()],
            "g",
        )
        .await
        .unwrap();
        let add = get(&svc, "add").unwrap();
        let (target, method) = (
            get(add, "_rtarget").unwrap().as_str().unwrap(),
            get(add, "_rmethod").unwrap().as_str().unwrap(),
        );
        let sum = call(
            &mut caller,
            cid,
            target,
            method,
            vec![1.into(), 2.into(), 39.into()],
            "a",
        )
        .await;
        assert_eq!(sum, Ok(Value::from(42)), "{t:?}");
        // The provider leaves: the subscribed caller hears client_disconnected (data# holds the
        // event's data as msgpack, legacy.md §L6.5).
        serving.abort();
        let _ = serving.await;
        let event = loop {
            let m = tokio::time::timeout(Duration::from_secs(10), caller.recv())
                .await
                .expect("an event")
                .expect("open");
            if m.header.get_str("type") == Some("client_disconnected") {
                break m;
            }
        };
        let data = rmpv::decode::read_value(&mut &event.header.get("data#").unwrap()[..]).unwrap();
        assert_eq!(get(&data, "id").and_then(Value::as_str), Some(pid), "{t:?}");
        let gone = call(
            &mut caller,
            cid,
            MANAGER,
            "services.default.get_service",
            vec!["rs-provider:rs-calc".into()],
            "g2",
        )
        .await;
        assert!(gone.unwrap_err().contains("not found"), "{t:?}");
    }
}
