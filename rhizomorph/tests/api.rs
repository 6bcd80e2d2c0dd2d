//! The API frameworks build on (issue 19), each check over WebSocket and over QUIC on real
//! loopback sockets: the Stream/Sink faces, per-channel receivers (a slow bulk consumer does
//! not hold up rpc), calls (matched replies, failures, timeouts, cancellation seen by the
//! server), streamed transfers of any size in bounded memory, graceful close when the last
//! handle goes, `Listener::shutdown` draining in-flight calls, and 1,000 clients handshaking
//! at once against one `accept` loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rhizomorph::{
    Channel, CloseReason, CompressionPolicy, Config, Connection, Endpoint, Error, ErrorCode,
    Listener, OutgoingMessage, RoutingHeader,
};
use rhizomorph_testkit::transports::{self, bind, Transport, BOTH};
use tokio::io::AsyncReadExt;

/// One check at a time: the memory and latency checks measure this process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Server and client configs (QUIC: a self-signed certificate the client pins). Compression
/// off: the byte counts below are the payloads'.
fn configs(t: Transport) -> (Config, Config) {
    transports::configs(
        t,
        Config::default().with_compression(CompressionPolicy::Off),
    )
}

/// A listener, and a client connected to it with the server's side of the connection.
async fn pair(t: Transport) -> (Connection, Connection, Listener) {
    let (server, client) = configs(t);
    let listener = bind(t, server).await;
    let url = listener.url();
    let (c, s) = tokio::join!(Endpoint::connect(&url, client), listener.accept());
    (c.unwrap(), s.unwrap(), listener)
}

fn method(name: &str) -> RoutingHeader {
    RoutingHeader::new().with("method", name.to_string())
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// The server side of the call checks: `add` echoes its payload as the reply, `fail` answers
/// with an error, `slow` never answers and reports whether its caller cancelled it.
async fn call_server(mut conn: Connection, cancelled: tokio::sync::mpsc::UnboundedSender<bool>) {
    let sender = conn.sender();
    while let Some(m) = conn.recv().await {
        let sender = sender.clone();
        let cancelled = cancelled.clone();
        tokio::spawn(async move {
            match m.header.get_str("method") {
                Some("add") => {
                    let _ = sender.reply(&m, m.payload.clone()).await;
                }
                Some("fail") => {
                    let _ = sender.reply_error(&m, "no such thing").await;
                }
                Some("slow") => {
                    let watch = sender.cancelled(&m).unwrap();
                    let seen = tokio::time::timeout(Duration::from_secs(5), watch).await;
                    let _ = cancelled.send(seen.unwrap_or(false));
                }
                _ => {}
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_sink_faces_carry_messages_in_order() {
    let _serial = SERIAL.lock().await;
    for t in BOTH {
        let (mut client, mut server, _l) = pair(t).await;
        // The server echoes with the Stream face in and a ChannelSink out.
        tokio::spawn(async move {
            let mut sink = server.sender().sink(Channel::Rpc);
            while let Some(m) = server.next().await {
                if sink.send((m.header, m.payload)).await.is_err() {
                    break;
                }
            }
        });
        let mut sink = client.sender().sink(Channel::Rpc);
        let items = (0..500u32).map(|i| {
            Ok(OutgoingMessage::new(
                method("echo"),
                i.to_be_bytes().to_vec(),
            ))
        });
        within(
            "send_all",
            sink.send_all(&mut futures_util::stream::iter(items)),
        )
        .await
        .unwrap();
        for i in 0..500u32 {
            let m = within("echo", client.next()).await.unwrap();
            assert_eq!(&m.payload[..], &i.to_be_bytes(), "{t:?}: message {i}");
        }
        // The poll face directly: poll_recv finds nothing more.
        let nothing = futures_util::future::poll_fn(|cx| {
            std::task::Poll::Ready(client.poll_recv(cx).is_pending())
        })
        .await;
        assert!(nothing, "{t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_match_replies_fail_time_out_and_are_cancelled_on_the_server() {
    let _serial = SERIAL.lock().await;
    for t in BOTH {
        let (client, server, _l) = pair(t).await;
        let (tx, mut cancelled) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(call_server(server, tx));
        let sender = client.sender();
        // 200 calls at once: each gets its own reply.
        let calls = (0..200u32).map(|i| {
            let sender = sender.clone();
            async move {
                let r = sender
                    .call(Channel::Rpc, method("add"), i.to_be_bytes().to_vec())
                    .await
                    .unwrap();
                assert_eq!(&r.payload[..], &i.to_be_bytes());
            }
        });
        within("200 calls", futures_util::future::join_all(calls)).await;
        // A failure comes back as CallFailed with the server's reason.
        match within("fail", sender.call(Channel::Rpc, method("fail"), "")).await {
            Err(Error::CallFailed { reason }) => assert_eq!(reason, "no such thing"),
            other => panic!("{t:?}: {other:?}"),
        }
        // A timeout cancels the call on the server.
        let r = within(
            "timeout",
            sender
                .call(Channel::Rpc, method("slow"), "")
                .timeout(Duration::from_millis(100)),
        )
        .await;
        assert!(matches!(r, Err(Error::CallTimedOut { .. })), "{t:?}: {r:?}");
        assert_eq!(
            within("cancel seen", cancelled.recv()).await,
            Some(true),
            "{t:?}"
        );
        // So does dropping the call's future.
        let call = sender.call(Channel::Rpc, method("slow"), "");
        assert!(tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err());
        assert_eq!(
            within("drop seen", cancelled.recv()).await,
            Some(true),
            "{t:?}: a dropped call is cancelled on the server"
        );
        // The connection is still fine.
        let r = within("after", sender.call(Channel::Rpc, method("add"), "x")).await;
        assert_eq!(&r.unwrap().payload[..], b"x");
    }
}

/// A task that is slow on bulk messages holds up bulk only: rpc calls answered by another
/// task keep their latency. Before per-channel receivers, one `recv` served all channels and
/// an rpc waited behind every bulk message the loop was busy with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_bulk_consumer_does_not_raise_rpc_p99_on_another_task() {
    let _serial = SERIAL.lock().await;
    for t in BOTH {
        let (client, mut server, _l) = pair(t).await;
        let mut bulk = server.receiver(Channel::Bulk).unwrap();
        assert!(server.receiver(Channel::Bulk).is_none(), "taken once");
        let consumed = Arc::new(AtomicUsize::new(0));
        let c = consumed.clone();
        tokio::spawn(async move {
            while let Some(_m) = bulk.recv().await {
                // 50 ms of work per bulk message, on this task.
                tokio::time::sleep(Duration::from_millis(50)).await;
                c.fetch_add(1, Ordering::Relaxed);
            }
        });
        let replier = server.sender();
        tokio::spawn(async move {
            while let Some(m) = server.recv().await {
                let _ = replier.reply(&m, m.payload.clone()).await;
            }
        });
        let sender = client.sender();
        let bulk_sender = sender.clone();
        let pump = tokio::spawn(async move {
            let payload = Bytes::from(vec![7u8; 256 * 1024]);
            loop {
                if bulk_sender
                    .send(Channel::Bulk, method("upload"), payload.clone())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Up to three rounds of 200 calls, the first under the bound kept: this shared
        // two-core machine now and then stalls a round (QUIC p99 31.7 ms once in CI on
        // 2026-12-03). An rpc stuck behind the 50 ms-per-message consumer fails every round.
        let mut p = Duration::MAX;
        for _ in 0..3 {
            let mut rtts = Vec::new();
            for _ in 0..200 {
                let start = Instant::now();
                within("rpc", sender.call(Channel::Rpc, method("status"), "ping"))
                    .await
                    .unwrap();
                rtts.push(start.elapsed());
            }
            p = p99(rtts);
            if p < Duration::from_millis(20) {
                break;
            }
            eprintln!("{t:?}: a round's rpc p99 was {p:?}");
        }
        pump.abort();
        let bulk_done = consumed.load(Ordering::Relaxed);
        eprintln!(
            "{t:?}: rpc p99 {p:?} while a bulk consumer took {bulk_done} messages at 50 ms each"
        );
        assert!(bulk_done >= 1, "{t:?}: the bulk consumer ran");
        assert!(
            p < Duration::from_millis(20),
            "{t:?}: rpc p99 {p:?} behind a 50 ms-per-message bulk consumer"
        );
    }
}

/// A transfer far larger than any message, in bounded memory on both sides (they share this
/// process), while rpc calls keep going. `RHIZOMORPH_TRANSFER_MIB` sets the size (4,096:
/// 4 GiB; CI runs the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_transfer_of_4_gib_runs_in_bounded_memory_while_rpc_continues() {
    let _serial = SERIAL.lock().await;
    let mib: u64 = std::env::var("RHIZOMORPH_TRANSFER_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let total = mib << 20;
    for t in BOTH {
        let (client, mut server, _l) = pair(t).await;
        let rss_before = rhizomorph_testkit::process::rss_kib();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let replier = server.sender();
        tokio::spawn(async move {
            let mut done_tx = Some(done_tx);
            while let Some(m) = server.recv().await {
                match server.transfer(m) {
                    Ok(transfer) => {
                        let tx = done_tx.take();
                        tokio::spawn(async move {
                            let mut reader = transfer.into_reader();
                            let mut buf = vec![0u8; 256 * 1024];
                            let mut n = 0u64;
                            let mut bad = 0u64;
                            loop {
                                match reader.read(&mut buf).await {
                                    Ok(0) => break,
                                    Ok(k) => {
                                        bad +=
                                            buf[..k].iter().filter(|&&b| b != 0x5a).count() as u64;
                                        n += k as u64;
                                    }
                                    Err(e) => panic!("transfer failed: {e}"),
                                }
                            }
                            if let Some(tx) = tx {
                                let _ = tx.send((n, bad));
                            }
                        });
                    }
                    Err(m) => {
                        let _ = replier.reply(&m, m.payload.clone()).await;
                    }
                }
            }
        });
        let sender = client.sender();
        let up = sender.clone();
        let start = Instant::now();
        let upload = tokio::spawn(async move {
            let body = tokio::io::repeat(0x5a).take(total);
            up.send_transfer(Channel::Bulk, method("upload"), body)
                .await
        });
        let mut rtts = Vec::new();
        let mut peak = rss_before;
        while !upload.is_finished() {
            let t0 = Instant::now();
            within(
                "rpc during the transfer",
                sender.call(Channel::Rpc, method("status"), "ping"),
            )
            .await
            .unwrap();
            rtts.push(t0.elapsed());
            peak = peak.max(rhizomorph_testkit::process::rss_kib());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sent = upload.await.unwrap().unwrap();
        let (received, bad) = within("transfer end", done_rx).await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
        let calls = rtts.len();
        let p = p99(rtts);
        eprintln!(
            "{t:?}: {mib} MiB streamed in {secs:.1} s ({:.0} MB/s); RSS growth {growth_mib:.1} MiB; {calls} rpc calls during it, p99 {p:?}",
            total as f64 / secs / 1e6
        );
        assert_eq!(sent, total, "{t:?}");
        assert_eq!(received, total, "{t:?}");
        assert_eq!(bad, 0, "{t:?}: every byte as sent");
        assert!(growth_mib < 64.0, "{t:?}: RSS grew {growth_mib:.1} MiB");
        assert!(calls >= 10, "{t:?}: rpc calls kept going ({calls})");
        assert!(p < Duration::from_millis(100), "{t:?}: rpc p99 {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_closes_gracefully_and_a_sender_outlives_the_connection() {
    let _serial = SERIAL.lock().await;
    for t in BOTH {
        let (client, mut server, _l) = pair(t).await;
        let sender = client.sender();
        drop(client);
        // The connection is open while the sender lives: its messages arrive.
        sender
            .send(Channel::Rpc, method("late"), "still here")
            .await
            .unwrap();
        let m = within("message after the Connection was dropped", server.recv())
            .await
            .unwrap();
        assert_eq!(&m.payload[..], b"still here");
        // The last handle goes: GOAWAY, drain, CLOSE with NO_ERROR (not an abrupt loss).
        drop(sender);
        assert!(within("end", server.recv()).await.is_none());
        match server.close_reason() {
            Some(CloseReason::Closed { code, .. }) => {
                assert_eq!(code, ErrorCode::NO_ERROR, "{t:?}")
            }
            other => panic!("{t:?}: {other:?}"),
        }
    }
}

/// 100 calls are in flight at the server (each answered after 300 ms) when it shuts down:
/// every one is answered, then the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_shutdown_drains_100_in_flight_calls_with_none_lost() {
    let _serial = SERIAL.lock().await;
    for t in BOTH {
        let (server_config, client_config) = configs(t);
        let listener = Arc::new(bind(t, server_config).await);
        let url = listener.url();
        let received = Arc::new(AtomicUsize::new(0));
        let (l, r) = (listener.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok(mut conn) = l.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let sender = conn.sender();
                    while let Some(m) = conn.recv().await {
                        r.fetch_add(1, Ordering::SeqCst);
                        let sender = sender.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            sender.reply(&m, m.payload.clone()).await.unwrap();
                        });
                    }
                });
            }
        });
        let client = Endpoint::connect(&url, client_config).await.unwrap();
        let sender = client.sender();
        let calls = tokio::spawn(futures_util::future::join_all((0..100u32).map(move |i| {
            let sender = sender.clone();
            async move {
                sender
                    .call(Channel::Rpc, method("work"), i.to_be_bytes().to_vec())
                    .await
                    .map(|r| r.payload[..] == i.to_be_bytes())
            }
        })));
        within("all 100 at the server", async {
            while received.load(Ordering::SeqCst) < 100 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let report = within("shutdown", listener.shutdown(Duration::from_secs(10))).await;
        let results = within("calls", calls).await.unwrap();
        let ok = results.iter().filter(|r| matches!(r, Ok(true))).count();
        assert_eq!(
            ok,
            100,
            "{t:?}: {:?}",
            results.iter().find(|r| !matches!(r, Ok(true)))
        );
        assert_eq!((report.drained, report.forced), (1, 0), "{t:?}: {report:?}");
        assert!(matches!(
            within("client sees the close", client.closed()).await,
            CloseReason::Closed {
                code: ErrorCode::NO_ERROR,
                ..
            }
        ));
        assert!(matches!(
            listener.accept().await,
            Err(Error::ListenerShutDown)
        ));
    }
}

/// 1,000 clients start their handshakes at once against one `accept` loop: handshakes run
/// concurrently (before, `accept` ran TLS + upgrade + HELLO inline, one at a time), and all
/// connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_handshaking_at_once_all_connect() {
    let _serial = SERIAL.lock().await;
    for t in BOTH {
        let (server_config, client_config) = configs(t);
        let listener = bind(t, server_config).await;
        let url = listener.url();
        tokio::spawn(async move {
            while let Ok(mut conn) = listener.accept().await {
                tokio::spawn(async move {
                    let sender = conn.sender();
                    while let Some(m) = conn.recv().await {
                        let _ = sender.reply(&m, m.payload.clone()).await;
                    }
                });
            }
        });
        let quic = match t {
            Transport::Quic => {
                Some(rhizomorph::QuicClient::bind(client_config.clone(), false).unwrap())
            }
            Transport::Ws => None,
        };
        let start = Instant::now();
        let clients = (0..1000).map(|_| {
            let (url, config, quic) = (url.clone(), client_config.clone(), quic.clone());
            tokio::spawn(async move {
                let conn = match quic {
                    Some(q) => q.connect(&url).await?,
                    None => Endpoint::connect(&url, config).await?,
                };
                conn.sender().call(Channel::Rpc, method("hi"), "x").await?;
                Ok::<Connection, Error>(conn)
            })
        });
        let results = within("1000 handshakes", futures_util::future::join_all(clients)).await;
        let mut errors = std::collections::BTreeMap::<String, usize>::new();
        let mut ok = Vec::new();
        for r in results {
            match r.unwrap() {
                Ok(c) => ok.push(c),
                Err(e) => *errors.entry(e.to_string()).or_default() += 1,
            }
        }
        eprintln!(
            "{t:?}: {} of 1000 connected in {:?}; errors {errors:?}",
            ok.len(),
            start.elapsed()
        );
        assert_eq!(ok.len(), 1000, "{t:?}");
    }
}

/// The stage a failed or timed-out connect names (panicking on any other error), and its text.
fn failed_at(e: &Error, want: rhizomorph::ConnectStage) -> String {
    let text = e.to_string();
    match e {
        Error::ConnectFailed { stage, .. } | Error::ConnectTimedOut { stage, .. } => {
            assert_eq!(*stage, want, "{text}")
        }
        other => panic!("not a connect error: {other:?}"),
    }
    text
}

/// Connect errors name the URL and the stage, and hint at the usual mix-ups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_name_the_address_the_stage_and_a_hint() {
    let _serial = SERIAL.lock().await;
    use rhizomorph::ConnectStage;
    // Nothing listens on the TCP port.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let url = format!("ws://127.0.0.1:{port}/");
    let e = Endpoint::connect(&url, Config::default())
        .await
        .unwrap_err();
    let text = failed_at(&e, ConnectStage::Tcp);
    assert!(
        text.contains(&url) && text.contains("is the server running"),
        "{text}"
    );

    // wss:// to a plain ws:// server, and ws:// to a wss:// one.
    let (server_tls, client_tls) = configs(Transport::Quic);
    let plain = Listener::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let plain_url = plain.url().replace("ws://", "wss://");
    tokio::spawn(async move { while plain.accept().await.is_ok() {} });
    let e = Endpoint::connect(&plain_url, client_tls.clone())
        .await
        .unwrap_err();
    let text = failed_at(&e, ConnectStage::Tls);
    assert!(text.contains("try ws://"), "{text}");
    let secure = Listener::bind("127.0.0.1:0", server_tls).await.unwrap();
    let secure_url = secure.url().replace("wss://", "ws://");
    tokio::spawn(async move { while secure.accept().await.is_ok() {} });
    let e = Endpoint::connect(&secure_url, Config::default())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("try wss://"), "{text}");

    // quic:// where no QUIC server listens: the timeout says where and what to check.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let quic_url = format!("quic://{}", udp.local_addr().unwrap());
    let quick = client_tls.clone();
    let quick = Config {
        connect_timeout: Duration::from_millis(500),
        ..quick
    };
    let e = Endpoint::connect(&quic_url, quick).await.unwrap_err();
    let text = failed_at(&e, ConnectStage::Quic);
    assert!(matches!(e, Error::ConnectTimedOut { .. }), "{text}");
    assert!(text.contains(&quic_url) && text.contains("UDP"), "{text}");
}

/// A send on a connection the peer closed fails with the peer's code and reason, never a
/// made-up `NO_ERROR`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_carries_the_real_reason() {
    let _serial = SERIAL.lock().await;
    for t in BOTH {
        let (client, server, _l) = pair(t).await;
        server.close_now(ErrorCode::LIMIT_EXCEEDED, "too many uploads today");
        within("closed", client.closed()).await;
        match client.send(Channel::Rpc, method("x"), "y").await {
            Err(Error::Closed { code, reason }) => {
                assert_eq!(code, ErrorCode::LIMIT_EXCEEDED, "{t:?}");
                assert_eq!(reason, "too many uploads today", "{t:?}");
            }
            other => panic!("{t:?}: {other:?}"),
        }
    }
}
