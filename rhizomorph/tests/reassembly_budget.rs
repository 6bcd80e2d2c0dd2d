//! wire.md §8.3.1 across connections (issue 18): 100 hostile connections holding unfinished
//! messages stay within the listener's server-wide reassembly budget, and a healthy client
//! still gets its echoes.
//!
//! A test binary of its own: the bound is on the process's RSS, and memory that earlier tests
//! in the same process freed into other threads' allocator arenas showed up as growth here
//! (+271 MB against a 266 MB bound once in a full run, where this test alone grows 85-125 MB).

use std::time::{Duration, Instant};

use bytes::Bytes;
use rhizomorph::frame::ErrorCode;
use rhizomorph::session::OutgoingMessage;
use rhizomorph::{Channel, Config, Endpoint, Listener, RoutingHeader};
use rhizomorph_testkit::process::rss_kib;
use rhizomorph_testkit::transports::echo;

/// A native client driven by hand (a real client `Session` over a blocking socket) that starts
/// `message` on `bulk` and stops sending after `hold` bytes of it: the server is left
/// reassembling an unfinished message. Returns the socket (kept open) and whether the server
/// refused the message (CANCEL `LIMIT_EXCEEDED`, wire.md §8.3.1) while it was being sent.
fn hold_unfinished(
    addr: std::net::SocketAddr,
    message: Bytes,
    hold: usize,
) -> (std::net::TcpStream, bool) {
    use rhizomorph::session::{Event, Session, SessionConfig, Target};
    use rhizomorph_testkit::raw_ws;
    use std::io::Write;
    let mut s = raw_ws::upgrade(addr, Some("rhizomorph.v1"));
    s.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
    let mut session = Session::client(SessionConfig::default(), Instant::now());
    session
        .send(
            Channel::Bulk,
            OutgoingMessage::new(RoutingHeader::new(), message),
        )
        .unwrap();
    let (mut sent, mut refused) = (0usize, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Reading goes on for a while after the last byte is written: the server may refuse bytes
    // still in flight (they sat in the socket buffers while this side wrote the rest).
    let mut linger_until = None;
    while !refused && Instant::now() < deadline && linger_until.map_or(true, |t| Instant::now() < t)
    {
        if sent >= hold && linger_until.is_none() {
            linger_until = Some(Instant::now() + Duration::from_secs(2));
        }
        while sent < hold {
            let Some(t) = session.poll_transmit(Instant::now(), Target::Batch, 256 << 10) else {
                break;
            };
            let bytes = t.into_bytes();
            sent += bytes.len();
            s.write_all(&raw_ws::frame(0x2, &bytes)).unwrap();
        }
        // The server's frames: credit (returned at once for reassembly, §8.3.1) and a refusal.
        s.set_nonblocking(false).unwrap();
        if let Some((0x2, body)) = raw_ws::read_frame(&mut s) {
            session.handle_batch(Instant::now(), Bytes::from(body));
        }
        while let Some(e) = session.poll_event() {
            if let Event::SendFailed { code, .. } = e {
                refused |= code == ErrorCode::LIMIT_EXCEEDED;
            }
        }
    }
    (s, refused)
}

/// wire.md §8.3.1 across connections: 100 hostile connections, each leaving a 64 MiB message
/// unfinished after 8 MiB, against a listener whose reassembly budget is 128 MiB. The server's
/// RSS grows by at most that budget plus a stated constant (read buffers and sockets), the
/// messages past the budget are refused alone, and a healthy client still gets its echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_connections_holding_unfinished_messages_stay_within_the_server_budget() {
    const BUDGET: u64 = 128 << 20;
    const HOLD: usize = 8 << 20;
    let listener = Listener::bind(
        "127.0.0.1:0",
        Config::default().with_server_reassembly(BUDGET),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let url = listener.url();
    tokio::spawn(rhizomorph::router::Router::new().serve(listener));
    let mut healthy = Endpoint::connect(&url, Config::default()).await.unwrap();
    echo(&mut healthy, b"before").await;
    // One payload shared by every attacker (their sessions hold views of it, not copies).
    let message = rhizomorph_testkit::payload::incompressible(64 << 20, 3);
    let before = rss_kib();
    let attackers: Vec<_> = (0..100)
        .map(|_| {
            let message = message.clone();
            std::thread::spawn(move || hold_unfinished(addr, message, HOLD))
        })
        .collect();
    let mut sockets = Vec::new();
    let mut refused = 0;
    for a in attackers {
        let (s, r) = a.join().unwrap();
        refused += usize::from(r);
        sockets.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss_kib().saturating_sub(before);
    echo(&mut healthy, b"during").await;
    // The constant: each connection's read buffer and socket state (~1 MiB), 32 MiB slack.
    let bound_kib = (BUDGET >> 10) + 100 * 1024 + 32 * 1024;
    println!(
        "100 connections x {} MiB unfinished: RSS +{grown} KiB (bound {bound_kib} KiB), \
         {refused} refused",
        HOLD >> 20
    );
    assert!(grown <= bound_kib, "+{grown} KiB over {bound_kib} KiB");
    // 800 MiB attempted against a 128 MiB budget: most are refused.
    assert!(refused >= 80, "only {refused} of 100 refused");
    drop(sockets);
}
