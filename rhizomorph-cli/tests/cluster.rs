//! Several `rhizomorph serve` processes as one cluster over a real redis-server (issue 23,
//! spec/cluster.md): clients on different nodes reach each other, a broadcast reaches every
//! node's clients once, a Redis restart costs local traffic nothing and cross-node traffic
//! resumes by itself, Redis memory stays bounded however many messages went through, and a
//! native client whose node is killed gets every message once at another node (§C5.2).
//!
//! Needs `redis-server` on `$PATH` (`scripts/test.sh` installs the Debian package).
//! `RHIZOMORPH_CLUSTER_MESSAGES` sets the message count of the memory test (default 1,000,000).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhizomorph::{Channel, Config, Connection, Endpoint, RoutingHeader};
use rhizomorph_testkit::python::HyphaApp as Py;
use rhizomorph_testkit::redis_server::RedisServer;

/// A `rhizomorph serve --redis` process; killed when dropped.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    fn start(redis: &RedisServer, id: &str, extra: &[&str]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rhizomorph"))
            .args(["serve", "--addr", "127.0.0.1:0", "--redis", &redis.url()])
            .args(["--node-id", id, "--lease-secs", "1"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RZ_NODE_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(match std::env::var_os("RZ_NODE_LOG") {
                Some(_) => Stdio::inherit(),
                None => Stdio::null(),
            })
            .spawn()
            .expect("start rhizomorph serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(u) = line.split("listening on ").nth(1) {
                url = Some(u.trim().to_string());
            }
            if line.starts_with("cluster node") {
                break;
            }
            assert!(Instant::now() < deadline, "{id} did not join the cluster");
        }
        // Keeps reading, so the node never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Node {
            child,
            url: url.expect("serve printed its URL"),
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A native client `ws-t/<name>` on `node`, once the directory holds it.
async fn client(redis: &RedisServer, node: &Node, name: &str) -> Connection {
    let conn = Endpoint::connect(
        &node.url,
        Config::default().with_token(format!("ws-t/{name}")),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = format!("ws-t/{name}");
    while !redis
        .command(&["HGET", "rz:{ws-t}:owners", &id])
        .unwrap()
        .starts_with("$")
        || redis
            .command(&["HGET", "rz:{ws-t}:owners", &id])
            .unwrap()
            .starts_with("$-1")
    {
        assert!(Instant::now() < deadline, "{id} never registered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn
}

fn to(target: &str) -> RoutingHeader {
    RoutingHeader::new().with("to", target.to_string())
}

/// Everything `conn` receives within `quiet` of the previous message: (from, payload).
async fn drain(conn: &mut Connection, quiet: Duration) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(quiet, conn.recv()).await {
        got.push((
            m.header.get_str("from").unwrap_or("?").to_string(),
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
    }
    got
}

/// Every client sends 20 numbered messages to every other, and one broadcast: each receives
/// all of them once, in order per sender, and every broadcast but its own once.
async fn mesh(nodes: usize) {
    let redis = RedisServer::start().unwrap();
    let nodes: Vec<Node> = (0..nodes)
        .map(|i| Node::start(&redis, &format!("n{i}"), &[]))
        .collect();
    // Two clients on the first node (the local shortcut), one on every other.
    let mut names = vec!["c0a".to_string(), "c0b".to_string()];
    names.extend((1..nodes.len()).map(|i| format!("c{i}")));
    let mut conns = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let node = &nodes[i.saturating_sub(1).min(nodes.len() - 1)];
        conns.push(client(&redis, node, name).await);
    }
    for (i, conn) in conns.iter().enumerate() {
        for (j, other) in names.iter().enumerate() {
            if i != j {
                for n in 0..20 {
                    let p = format!("{}>{other}#{n}", names[i]);
                    conn.send(Channel::Rpc, to(other), Bytes::from(p))
                        .await
                        .unwrap();
                }
            }
        }
        let b = format!("broadcast from {}", names[i]);
        conn.send(Channel::Rpc, to("*"), Bytes::from(b))
            .await
            .unwrap();
    }
    for (j, conn) in conns.iter_mut().enumerate() {
        let got = drain(conn, Duration::from_millis(1500)).await;
        let mut per_sender: HashMap<String, Vec<String>> = HashMap::new();
        for (from, p) in got {
            per_sender.entry(from).or_default().push(p);
        }
        for (i, sender) in names.iter().enumerate() {
            let from = format!("ws-t/{sender}");
            let got = per_sender.remove(&from).unwrap_or_default();
            if i == j {
                assert!(got.is_empty(), "{sender} heard itself: {got:?}");
                continue;
            }
            let mut want: Vec<String> = (0..20)
                .map(|n| format!("{sender}>{}#{n}", names[j]))
                .collect();
            want.push(format!("broadcast from {sender}"));
            let (mut direct, broadcasts): (Vec<String>, Vec<String>) =
                got.into_iter().partition(|p| !p.starts_with("broadcast"));
            direct.extend(broadcasts);
            assert_eq!(direct, want, "{} from {sender}", names[j]);
        }
        assert!(per_sender.is_empty(), "unexpected senders {per_sender:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_23_two_nodes_route_and_broadcast_once() {
    mesh(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_23_three_nodes_route_and_broadcast_once() {
    mesh(3).await;
}

/// Redis killed mid-run: both nodes live on, a client's messages to its own node's client
/// keep arriving (every one, at once), and cross-node messages flow again within seconds of
/// Redis coming back empty (the nodes register their clients again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_23_redis_restart_local_unaffected_cross_node_resumes() {
    let mut redis = RedisServer::start().unwrap();
    let mut n1 = Node::start(&redis, "n1", &[]);
    let mut n2 = Node::start(&redis, "n2", &[]);
    let alice = client(&redis, &n1, "alice").await;
    let mut dave = client(&redis, &n1, "dave").await;
    let mut bob = client(&redis, &n2, "bob").await;
    alice.send(Channel::Rpc, to("bob"), "before").await.unwrap();
    assert_eq!(drain(&mut bob, Duration::from_millis(500)).await.len(), 1);

    redis.kill();
    let t = Instant::now();
    for n in 0..500 {
        alice
            .send(Channel::Rpc, to("dave"), Bytes::from(format!("local {n}")))
            .await
            .unwrap();
    }
    let local = drain(&mut dave, Duration::from_millis(500)).await;
    let want: Vec<String> = (0..500).map(|n| format!("local {n}")).collect();
    let got: Vec<String> = local.into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, want, "local routing with Redis down");
    println!("500 local messages with Redis down: {:?}", t.elapsed());
    // Cross-node sends while Redis is down fail (and say why in the node's log).
    alice.send(Channel::Rpc, to("bob"), "during").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(n1.alive() && n2.alive(), "a node died with Redis");

    redis.restart().unwrap();
    let back = Instant::now();
    let mut n = 0;
    let arrived = loop {
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "cross-node never resumed"
        );
        alice
            .send(Channel::Rpc, to("bob"), Bytes::from(format!("after {n}")))
            .await
            .unwrap();
        n += 1;
        let got = drain(&mut bob, Duration::from_millis(200)).await;
        if let Some((from, p)) = got.into_iter().find(|(_, p)| p.starts_with("after")) {
            assert_eq!(from, "ws-t/alice");
            break p;
        }
    };
    println!(
        "cross-node resumed {:?} after Redis came back ({arrived})",
        back.elapsed()
    );
    // And the other way.
    bob.send(Channel::Rpc, to("alice"), "reply").await.unwrap();
    let mut alice = alice;
    let got = drain(&mut alice, Duration::from_millis(1000)).await;
    assert!(got.iter().any(|(_, p)| p == "reply"), "{got:?}");
    assert!(n1.alive() && n2.alive());
}

/// A million messages through two nodes: every one arrives in order, Redis never holds more
/// than the inbox high-water mark's worth while they flow (a reader slower than its writer
/// slows the writer), and nothing afterwards (each node trims its inbox to what it has not
/// handed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_23_redis_memory_bounded_after_a_million_messages() {
    let total: usize = std::env::var("RHIZOMORPH_CLUSTER_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let redis = RedisServer::start().unwrap();
    let n1 = Node::start(&redis, "n1", &[]);
    let n2 = Node::start(&redis, "n2", &[]);
    let alice = client(&redis, &n1, "alice").await;
    let mut bob = client(&redis, &n2, "bob").await;
    let before = redis.used_memory().unwrap();
    let t = Instant::now();
    let sender = tokio::spawn(async move {
        let filler = "x".repeat(64);
        for n in 0..total {
            let p = Bytes::from(format!("{n:08} {filler}"));
            alice.send(Channel::Stream, to("bob"), p).await.unwrap();
        }
        alice
    });
    let mut peak = 0u64;
    let mut next = 0usize;
    while next < total {
        let m = tokio::time::timeout(Duration::from_secs(20), bob.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled at message {next} of {total}"))
            .expect("bob's connection");
        let n: usize = std::str::from_utf8(&m.payload[..8])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(n, next, "out of order or lost");
        next += 1;
        if next % 10_000 == 0 {
            peak = peak.max(redis.used_memory().unwrap());
        }
    }
    let elapsed = t.elapsed();
    let _alice = sender.await.unwrap();
    // Handed-out entries stay for the retention (2 s, cluster.md §C4.3); an idle node trims
    // after each blocking read (1 s).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after = redis.used_memory().unwrap();
    let inbox_len = redis.integer(&["XLEN", "rz:node:{n2}:inbox"]).unwrap();
    println!(
        "{total} messages cross-node in {elapsed:?} ({:.0} msgs/s); Redis used_memory {} KiB \
         before, peak {} KiB, {} KiB after; n2's inbox holds {inbox_len} entries",
        total as f64 / elapsed.as_secs_f64(),
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        after < before + (8 << 20),
        "Redis grew by {} KiB",
        (after - before) / 1024
    );
    assert!(inbox_len < 10_000, "the inbox kept {inbox_len} entries");
    drop((n1, n2));
}

/// A node killed outright (no goodbye): its lease runs out, a surviving node reaps it within
/// two leases (cluster.md §C3.4, §C5.2) — its client leaves the directory and the node leaves the
/// node set — and a message to that client is from then on answered as one to a client
/// connected nowhere (echoed to its native sender) instead of going to the dead node's inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_23_a_killed_node_is_reaped_and_its_clients_leave() {
    let redis = RedisServer::start().unwrap();
    let n1 = Node::start(&redis, "n1", &[]);
    let mut n2 = Node::start(&redis, "n2", &[]);
    let mut alice = client(&redis, &n1, "alice").await;
    let mut bob = client(&redis, &n2, "bob").await;
    alice.send(Channel::Rpc, to("bob"), "hello").await.unwrap();
    let got = drain(&mut bob, Duration::from_millis(500)).await;
    assert_eq!(got, vec![("ws-t/alice".to_string(), "hello".to_string())]);
    let owned = |who: &str| {
        let r = redis.command(&["HGET", "rz:{ws-t}:owners", who]).unwrap();
        !r.starts_with("$-1")
    };
    assert!(owned("ws-t/bob"));

    n2.child.kill().unwrap();
    n2.child.wait().unwrap();
    let killed = Instant::now();
    // The lease is 1 s; reaping is allowed to take two leases, and the check runs every third
    // of one: 3 s is the bound, with slack for a loaded machine.
    while owned("ws-t/bob") {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "bob still owned by the dead node after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reaped = killed.elapsed();
    let nodes = redis.command(&["SMEMBERS", "rz:nodes"]).unwrap();
    assert!(!nodes.contains("n2"), "n2 still in the node set: {nodes:?}");
    let clients = redis.integer(&["EXISTS", "rz:node:{n2}:clients"]).unwrap();
    assert_eq!(clients, 0, "the dead node's client set was kept");
    println!("n2 killed: reaped {reaped:?} later (lease 1 s)");
    // Bob is connected nowhere now: a native sender's message to him comes back (§22.4).
    alice
        .send(Channel::Rpc, to("bob"), "anyone?")
        .await
        .unwrap();
    let back = drain(&mut alice, Duration::from_millis(1000)).await;
    assert!(
        back.iter().any(|(_, p)| p == "anyone?"),
        "no echo for a message to a reaped client: {back:?}"
    );
    drop((n1, n2));
}

/// The resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    rhizomorph_testkit::process::rss_kib_of(&pid.to_string()) * 1024
}

/// A client that floods messages to a client connected nowhere and never reads what it is
/// sent back (each is echoed to a native sender, cluster.md §C4.1 "connected nowhere"): its
/// node's memory stays bounded (the echoes wait in a bounded set of answering tasks; past that
/// one its sender has no room for is dropped), and the node's other cross-node traffic flows
/// on meanwhile. Before the bound, every batch of the flood was held by a task of its own
/// waiting on the sender's room: the node grew by the whole flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_23_a_flood_to_nobody_by_a_client_that_never_reads_is_bounded() {
    const MESSAGES: usize = 300_000;
    const ATTACKERS: usize = 4;
    let redis = RedisServer::start().unwrap();
    let n1 = Node::start(&redis, "n1", &[]);
    let n2 = Node::start(&redis, "n2", &[]);
    let mut attackers = Vec::new();
    for a in 0..ATTACKERS {
        attackers.push(client(&redis, &n1, &format!("mallory-{a}")).await);
    }
    let alice = client(&redis, &n1, "alice").await;
    let mut bob = client(&redis, &n2, "bob").await;
    let pid = n1.child.id();
    let before = rss(pid);
    let payload = Bytes::from(vec![b'z'; 1024]);
    let t = Instant::now();
    // The node stops reading a sender whose messages it holds a connection window of, and
    // closes it once it has been silent past the keepalive timeout: each flood ends there, or
    // when it is sent.
    let floods: Vec<_> = attackers
        .into_iter()
        .map(|attacker| {
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut sent = 0;
                while sent < MESSAGES {
                    let send = attacker.send(Channel::Stream, to("nobody"), payload.clone());
                    match tokio::time::timeout(Duration::from_secs(5), send).await {
                        Ok(Ok(_)) => sent += 1,
                        _ => break,
                    }
                }
                sent
            })
        })
        .collect();
    // Alice's messages to Bob cross the same outbox while the flood runs.
    let mut peak = 0u64;
    for n in 0..200 {
        alice
            .send(Channel::Rpc, to("bob"), Bytes::from(format!("during {n}")))
            .await
            .unwrap();
        peak = peak.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut sent = 0;
    for flood in floods {
        sent += flood.await.unwrap();
    }
    let flooded = t.elapsed();
    for _ in 0..20 {
        peak = peak.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = drain(&mut bob, Duration::from_millis(1500)).await;
    let want: Vec<String> = (0..200).map(|n| format!("during {n}")).collect();
    let got: Vec<String> = got.into_iter().map(|(_, p)| p).collect();
    let grew = peak.saturating_sub(before);
    println!(
        "{sent} of {ATTACKERS} × {MESSAGES} × 1 KiB to nobody taken in {flooded:?}: node RSS {} \
         MiB before, peak +{} MiB; bob got {} of 200 of alice's",
        before >> 20,
        grew >> 20,
        got.len()
    );
    assert_eq!(got, want, "alice's cross-node messages during the flood");
    // The bound: the outbox's 64 MiB and the answering tasks' 16 MiB, plus allocator slack.
    // Before it, each attacker's connection window's worth was held by tasks waiting for it
    // to read (4 × 64 MiB).
    assert!(grew < 100 << 20, "node grew by {} MiB", grew >> 20);
    drop((n1, n2));
}

/// hypha-rpc's `server_url` for a node (`http://…`, no trailing slash).
fn http(node: &Node) -> String {
    node.url
        .replacen("ws", "http", 1)
        .trim_end_matches('/')
        .to_string()
}

/// An unmodified hypha-rpc provider on one node, an unmodified hypha-rpc caller on another:
/// the caller finds the provider's service through its own node's workspace manager (the
/// service was mirrored to it), calls every kind of function (the manager's `get_service`
/// asks the provider across the nodes), lists both clients, and hears the provider leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_23_hypha_rpc_programs_on_two_nodes_find_and_call_each_other() {
    let redis = RedisServer::start().unwrap();
    let n1 = Node::start(&redis, "n1", &[]);
    let n2 = Node::start(&redis, "n2", &[]);
    let mut provider = Py::start(&["provider", &http(&n1), "ws-demo"]).unwrap();
    assert_eq!(provider.expect("ready").await, "ws-demo/py-provider");
    let mut caller = Py::start(&["caller", &http(&n2), "ws-demo", "py-provider:calc"]).unwrap();
    let calls = caller.expect("calls").await;
    rhizomorph_testkit::python::check_calculator_calls(&calls);
    let services = calls["services"].as_array().unwrap();
    for s in ["ws-demo/py-provider:calc", "ws-demo/py-caller:built-in"] {
        assert!(
            services.iter().any(|x| x == s),
            "list_services lacks {s}: {calls}"
        );
    }
    assert_eq!(
        calls["clients"],
        serde_json::json!(["ws-demo/py-caller", "ws-demo/py-provider"])
    );
    // The provider's process ends: its node tells the caller's.
    provider.child.kill().await.unwrap();
    let gone = caller.expect("client_disconnected").await;
    assert_eq!(gone["id"], "ws-demo/py-provider", "{gone}");
    drop((n1, n2));
}

/// A TCP forwarder standing for a load balancer in front of the nodes: each connection it
/// accepts goes to the node it points at then (`point_at` moves it).
struct Balancer {
    url: String,
    target: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Balancer {
    async fn start(node: &Node) -> Balancer {
        let target = std::sync::Arc::new(std::sync::Mutex::new(host_port(&node.url)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let to = target.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let addr = to.lock().unwrap().clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Balancer { url, target }
    }

    fn point_at(&self, node: &Node) {
        *self.target.lock().unwrap() = host_port(&node.url);
    }
}

/// `host:port` of a `ws://host:port/...` URL.
fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.split('/').next().unwrap().to_string()
}

/// The owner the directory names for `id` (`None`: connected nowhere).
fn owner(redis: &RedisServer, id: &str) -> Option<String> {
    let r = redis.command(&["HGET", "rz:{ws-t}:owners", id]).unwrap();
    let value = r.lines().nth(1)?.trim();
    (!r.starts_with("$-1")).then(|| value.to_string())
}

/// Issue 23's `kill -9` bullet (cluster.md §C5.2, wire.md §22.5): Bob, a native client with
/// a resumable session behind a load balancer, is on `n2` while Alice (rpc) and Carol (bulk),
/// both on `n1`, stream numbered messages to him. `n2` is killed outright mid-stream; the
/// balancer sends Bob's reconnection to `n3`, where his resume is refused (`n3` never held his
/// session) and his connection carries on as a new session. `n3` waits out `n2`'s lease, sends
/// him what `n2`'s inbox retained and what `n1` still wrote there, then what its own inbox
/// held back: every message arrives exactly once, in order per sender. The copies of what
/// Bob already had are dropped by his connection (counted), so without that rule this fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_23_kill_9_of_a_node_mid_stream_its_client_gets_every_message_once_elsewhere() {
    const ALICE: usize = 10_000;
    const CAROL: usize = 1_000;
    let redis = RedisServer::start().unwrap();
    let resumable = ["--resume-secs", "30"];
    let n1 = Node::start(&redis, "n1", &resumable);
    let mut n2 = Node::start(&redis, "n2", &resumable);
    let n3 = Node::start(&redis, "n3", &resumable);
    let balancer = Balancer::start(&n2).await;
    let bob_config = Config::default()
        .with_token("ws-t/bob")
        .with_resumption(2 << 20, Duration::from_secs(30));
    let mut bob = Endpoint::connect(&balancer.url, bob_config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while owner(&redis, "ws-t/bob").as_deref() != Some("n2") {
        assert!(Instant::now() < deadline, "bob never registered on n2");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alice = client(&redis, &n1, "alice").await;
    let carol = client(&redis, &n1, "carol").await;
    let dropped_before = rhizomorph::transport::metrics::snapshot().redelivered_dropped;
    let senders = tokio::spawn(async move {
        let carol_sends = tokio::spawn(async move {
            let filler = "c".repeat(4096);
            for n in 0..CAROL {
                let p = Bytes::from(format!("{n:08} {filler}"));
                carol.send(Channel::Bulk, to("bob"), p).await.unwrap();
                if n % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
            carol
        });
        // About 2,500 a second: the stream is still flowing when n2 dies and long after.
        for n in 0..ALICE {
            let p = Bytes::from(format!("{n:08}"));
            alice.send(Channel::Rpc, to("bob"), p).await.unwrap();
            if n % 25 == 24 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        (alice, carol_sends.await.unwrap())
    });
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut received = 0usize;
    let mut killed_at = None;
    let t = Instant::now();
    while next.get("ws-t/alice").copied().unwrap_or(0) < ALICE
        || next.get("ws-t/carol").copied().unwrap_or(0) < CAROL
    {
        let m = tokio::time::timeout(Duration::from_secs(30), bob.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled after {received} messages: {next:?}"))
            .expect("bob's connection ended");
        let from = m.header.get_str("from").unwrap_or("?").to_string();
        let n: usize = std::str::from_utf8(&m.payload[..8])
            .unwrap()
            .parse()
            .unwrap();
        let want = next.entry(from.clone()).or_default();
        assert_eq!(n, *want, "from {from}: duplicated, lost or out of order");
        *want += 1;
        received += 1;
        if received == 3_000 {
            n2.child.kill().unwrap();
            n2.child.wait().unwrap();
            balancer.point_at(&n3);
            killed_at = Some((Instant::now(), next.clone()));
        }
    }
    let (killed, at_kill) = killed_at.expect("n2 was killed");
    let dropped = rhizomorph::transport::metrics::snapshot().redelivered_dropped - dropped_before;
    println!(
        "n2 killed after {:?} with {at_kill:?} received; all {ALICE} + {CAROL} arrived once, \
         in order, {:?} after the kill; copies dropped by bob: {dropped}; bob now on {:?}",
        killed - t,
        killed.elapsed(),
        owner(&redis, "ws-t/bob")
    );
    assert_eq!(owner(&redis, "ws-t/bob").as_deref(), Some("n3"));
    assert!(
        dropped > 0,
        "n3 sent nothing again: the test did not exercise redelivery"
    );
    // Nothing further arrives (no late copy).
    let late = drain(&mut bob, Duration::from_millis(1500)).await;
    assert!(late.is_empty(), "late arrivals: {} messages", late.len());
    let _ = senders.await.unwrap();
    drop((n1, n3));
}
