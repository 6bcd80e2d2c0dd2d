//! Hostile legacy peers against a serving [`Listener`] (issue 18's legacy findings): however a
//! legacy client leaves, its socket is released (no CLOSE-WAIT, fds back to where they were);
//! an oversized message is answered with close 1009; a ping flood from a client that never
//! reads costs no memory; a silent client is closed after the idle timeout.
//!
//! The tests share one process's fd table and RSS, so they run one at a time.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rhizomorph::{Channel, Config, Listener};
use rhizomorph_testkit::process::{open_fds, rss_kib};
use rhizomorph_testkit::raw_ws::{close_code, frame, legacy_client, read_frame, server_hung_up};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A legacy-serving echo server on its own runtime thread, as `serve` runs one: every accepted
/// connection is served until it ends, then dropped.
fn start_server(config: Config) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = Listener::bind("127.0.0.1:0", config).await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok(mut conn) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    while let Some(m) = conn.recv().await {
                        let _ = conn.send(Channel::Rpc, m.header, m.payload).await;
                    }
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn wait_for_fds(target: usize, slack: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let now = open_fds();
        if now <= target + slack || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn legacy_sockets_are_released_however_the_client_leaves() {
    let _g = serial();
    let settings = rhizomorph::frame::Settings::default().with_max_message_size(64 * 1024);
    let config = Config::default().with_settings(settings);
    let addr = start_server(config);
    // Warm up (runtime threads, the listener): one full cycle before the baseline.
    drop(legacy_client(addr, "warm"));
    std::thread::sleep(Duration::from_millis(200));
    let baseline = wait_for_fds(0, usize::MAX, Duration::ZERO);
    let cycles = 40;
    for i in 0..cycles {
        // 1. TCP close, no WebSocket close.
        drop(legacy_client(addr, &format!("tcp-{i}")));
        // 2. WebSocket close 1000: the server echoes it and hangs up.
        let mut c = legacy_client(addr, &format!("close-{i}"));
        c.write_all(&frame(0x8, &1000u16.to_be_bytes())).unwrap();
        assert_eq!(close_code(&mut c), Some(1000), "close echoed");
        assert!(server_hung_up(&mut c), "server hangs up after the close");
        // 3. A protocol error (an unmasked frame from a client): close 1002.
        let mut c = legacy_client(addr, &format!("proto-{i}"));
        c.write_all(&[0x82, 0x01, 0x00]).unwrap();
        assert_eq!(close_code(&mut c), Some(1002));
        assert!(server_hung_up(&mut c));
        // 4. An oversized message, refused from its header: close 1009, not silence.
        let mut c = legacy_client(addr, &format!("big-{i}"));
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&(64u64 << 20).to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        c.write_all(&head).unwrap();
        assert_eq!(close_code(&mut c), Some(1009));
        assert!(server_hung_up(&mut c));
        // 5. Half of a large message, then TCP close: the partial message is freed too.
        let mut c = legacy_client(addr, &format!("partial-{i}"));
        let mut head = vec![0x82, 0x80 | 126];
        head.extend_from_slice(&60_000u16.to_be_bytes());
        head.extend_from_slice(&[0, 0, 0, 0]);
        c.write_all(&head).unwrap();
        c.write_all(&[0u8; 30_000]).unwrap();
        drop(c);
    }
    let after = wait_for_fds(baseline, 4, Duration::from_secs(5));
    assert!(
        after <= baseline + 4,
        "fds {baseline} before {} legacy connections, {after} 5 s after they left",
        cycles * 5
    );
}

#[test]
fn a_ping_flood_from_a_client_that_never_reads_costs_no_memory() {
    let _g = serial();
    let addr = start_server(Config::default());
    let mut c = legacy_client(addr, "flooder");
    let pings = 1_000_000;
    let ping = frame(0x1, br#"{"type": "ping"}"#);
    let chunk: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 10_000)
        .collect();
    let before = rss_kib();
    for _ in 0..pings / 10_000 {
        c.write_all(&chunk).unwrap();
    }
    // A healthy client still gets through, and its round trip proves the pings were read.
    let mut healthy = legacy_client(addr, "healthy");
    healthy
        .write_all(&frame(0x1, br#"{"type": "ping"}"#))
        .unwrap();
    assert_eq!(
        read_frame(&mut healthy).map(|f| f.1),
        Some(br#"{"type": "pong"}"#.to_vec())
    );
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss_kib().saturating_sub(before);
    eprintln!("{pings} pings from a client that never reads: RSS +{grown} KiB");
    // Before the legacy session: 73 bytes per unanswered ping (+71 MiB here).
    assert!(
        grown < 16 * 1024,
        "RSS grew {grown} KiB over {pings} pings from a client that never reads"
    );
}

#[test]
fn a_silent_legacy_client_is_closed_after_the_idle_timeout() {
    let _g = serial();
    let config = Config::default().with_legacy_idle_timeout(Some(Duration::from_millis(500)));
    let addr = start_server(config);
    let mut c = legacy_client(addr, "silent");
    let t = Instant::now();
    assert_eq!(close_code(&mut c), Some(1001));
    assert!(server_hung_up(&mut c));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // One that pings stays.
    let mut c = legacy_client(addr, "pinger");
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(200));
        c.write_all(&frame(0x1, br#"{"type": "ping"}"#)).unwrap();
        assert_eq!(read_frame(&mut c).map(|f| f.0), Some(0x1), "pong");
    }
}
