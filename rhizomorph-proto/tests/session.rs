//! The session state machine, tested deterministically in memory (two sessions back to back
//! over simulated links on a virtual clock). Tests are named after the spec sections.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Side, Sim};
use proptest::prelude::*;
use rhizomorph_proto::frame::{Channel, ErrorCode, Frame, FrameDecoder, Settings};
use rhizomorph_proto::header::RoutingHeader;
use rhizomorph_proto::session::{Event, Initiator, OutgoingMessage, SendError, SessionConfig};
use rhizomorph_proto::session::{Target, Transmit};

fn header(to: &str) -> RoutingHeader {
    RoutingHeader::new()
        .with("type", "method")
        .with("from", "ws-1/client")
        .with("to", to.to_string())
}

fn msg(to: &str, payload: impl Into<Bytes>) -> OutgoingMessage {
    OutgoingMessage::new(header(to), payload)
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

/// Steps until `want` messages arrived at `side` (releasing each at once); returns them.
fn collect(sim: &mut Sim, side: Side, want: usize) -> Vec<rhizomorph_proto::session::Message> {
    let mut got = Vec::new();
    while got.len() < want {
        let events = sim.step();
        assert!(
            !events.is_empty(),
            "stalled with {}/{want} messages",
            got.len()
        );
        for (s, e) in events {
            if let Event::Message(m) = e {
                if s == side {
                    sim.session(s).release(m.channel, m.credit);
                    got.push(m);
                }
            }
        }
    }
    got
}

#[test]
fn session_3_2_handshake_connects_both_sides() {
    let mut sim = Sim::new(
        SessionConfig::default().with_token("t0k3n"),
        SessionConfig::default(),
    );
    let events = sim.step();
    assert!(
        matches!(&events[0], (Side::Server, Event::HelloReceived { token, .. }) if token == &Bytes::from_static(b"t0k3n")),
        "{events:?}"
    );
    let mut connected = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Connected { .. }))
        .count();
    while connected < 2 {
        connected += sim
            .step()
            .iter()
            .filter(|(_, e)| matches!(e, Event::Connected { .. }))
            .count();
    }
    assert!(sim.client.is_open() && sim.server.is_open());
}

/// spec: wire.md §3.2.7 — each side's `Connected` event names its peer: a server's carries
/// the token and agent of the client's HELLO (what its authenticator accepted), a client's
/// the server's reply token and agent.
#[test]
fn session_3_2_7_connected_carries_the_peers_token_and_agent() {
    let client = SessionConfig::default()
        .with_token("t0k3n")
        .with_agent("test-client/1");
    let server = SessionConfig::default().with_agent("test-server/2");
    let mut sim = Sim::new(client, server);
    sim.auto_accept = false;
    let mut connected = Vec::new();
    let mut accepted = false;
    for _ in 0..10 {
        for (side, e) in sim.step() {
            match e {
                Event::HelloReceived { .. } => {
                    sim.server.accept(Bytes::from_static(b"welcome"));
                    accepted = true;
                }
                Event::Connected { token, agent, .. } => connected.push((side, token, agent)),
                _ => {}
            }
        }
        if connected.len() == 2 {
            break;
        }
    }
    assert!(accepted);
    assert!(
        connected.contains(&(
            Side::Server,
            Bytes::from_static(b"t0k3n"),
            "test-client/1".into()
        )),
        "{connected:?}"
    );
    assert!(
        connected.contains(&(
            Side::Client,
            Bytes::from_static(b"welcome"),
            "test-server/2".into()
        )),
        "{connected:?}"
    );
}

#[test]
fn session_3_2_7_server_rejects_a_bad_token() {
    let mut sim = Sim::new(
        SessionConfig::default().with_token("wrong"),
        SessionConfig::default(),
    );
    sim.auto_accept = false;
    let _ = sim.step();
    sim.server.reject(ErrorCode::AUTH_FAILED, "bad token");
    let mut closed = Vec::new();
    while closed.len() < 2 {
        for (side, e) in sim.step() {
            if let Event::Closed {
                code, initiator, ..
            } = e
            {
                closed.push((side, code, initiator));
            }
        }
    }
    assert!(closed.contains(&(Side::Client, ErrorCode::AUTH_FAILED, Initiator::Peer)));
    assert!(closed.contains(&(Side::Server, ErrorCode::AUTH_FAILED, Initiator::Local)));
}

#[test]
fn session_7_echo_on_every_channel() {
    let mut sim = Sim::new(SessionConfig::default(), SessionConfig::default());
    sim.connect();
    for ch in Channel::ALL {
        sim.client
            .send(ch, msg("ws-1/echo", format!("hello on {ch}")))
            .unwrap();
    }
    let got = collect(&mut sim, Side::Server, 4);
    for m in &got {
        assert_eq!(m.payload, Bytes::from(format!("hello on {}", m.channel)));
        assert_eq!(m.header, header("ws-1/echo"));
        sim.server
            .send(
                m.channel,
                OutgoingMessage::new(m.header.clone(), m.payload.clone()),
            )
            .unwrap();
    }
    let back = collect(&mut sim, Side::Client, 4);
    assert_eq!(back.len(), 4);
}

#[test]
fn session_8_large_message_is_chunked_and_reassembled() {
    let mut sim = Sim::new(SessionConfig::default(), SessionConfig::default());
    sim.connect();
    let payload = pattern(5 << 20, 7);
    sim.client
        .send(Channel::Bulk, msg("x", payload.clone()))
        .unwrap();
    let got = collect(&mut sim, Side::Server, 1);
    assert_eq!(got[0].payload, payload);
    assert!(
        sim.client.stats().frames_sent > 300,
        "5 MiB in 16 KiB chunks"
    );
}

#[test]
fn session_6_4_4_wire_overhead_of_a_repeated_rpc_message_is_at_most_16_bytes() {
    let mut sim = Sim::new(SessionConfig::default(), SessionConfig::default());
    sim.connect();
    let h = RoutingHeader::new()
        .with("type", "method")
        .with("from", "ws-user-1/client-a")
        .with("to", "ws-user-1/echo-service")
        .with("method", "services.echo.echo");
    let payload = pattern(256, 1);
    for i in 0..3 {
        sim.client
            .send(
                Channel::Rpc,
                OutgoingMessage::new(h.clone(), payload.clone()),
            )
            .unwrap();
        let wire = sim
            .client
            .poll_transmit(sim.now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
            .unwrap();
        let overhead = wire.len() - payload.len();
        if i > 0 {
            assert!(overhead <= 16, "message {i}: {overhead} bytes of overhead");
        }
        sim.server.handle_batch(sim.now, wire);
        let mut seen = false;
        while let Some(e) = sim.server.poll_event() {
            if let Event::Message(m) = e {
                assert_eq!(m.header, h);
                seen = true;
            }
        }
        assert!(seen);
    }
}

/// Round trips of small rpc messages while a bulk transfer saturates a 100 Mbit/s link whose
/// bottleneck queue holds 64 KB; returns rpc round-trip times in ms.
fn hol_rtts(config: SessionConfig, queue_limit: usize, samples: usize) -> Vec<f64> {
    let server_cfg = config.clone();
    let mut sim = Sim::with_links(
        config,
        server_cfg,
        Some(100e6 / 8.0),
        Duration::from_micros(100),
        queue_limit,
    );
    sim.connect();
    let bulk = pattern(2 << 20, 3);
    for _ in 0..4 {
        sim.client
            .send(Channel::Bulk, msg("sink", bulk.clone()))
            .unwrap();
    }
    // Let the bulk transfer fill the link first.
    sim.advance(Duration::from_millis(50));
    let mut rtts = Vec::new();
    let mut sent_at = sim.now;
    sim.client
        .send(Channel::Rpc, msg("echo", pattern(256, 9)))
        .unwrap();
    while rtts.len() < samples {
        let events = sim.step();
        assert!(!events.is_empty(), "stalled");
        for (side, e) in events {
            match (side, e) {
                (Side::Server, Event::Message(m)) => {
                    sim.server.release(m.channel, m.credit);
                    if m.channel == Channel::Rpc {
                        sim.server
                            .send(Channel::Rpc, OutgoingMessage::new(m.header, m.payload))
                            .unwrap();
                    }
                }
                (Side::Client, Event::Message(m)) => {
                    sim.client.release(m.channel, m.credit);
                    rtts.push(sim.now.duration_since(sent_at).as_secs_f64() * 1e3);
                    // Keep the bulk channel busy and send the next rpc request.
                    if sim.client.queued_bytes(Channel::Bulk) < (4 << 20) {
                        sim.client
                            .send(Channel::Bulk, msg("sink", bulk.clone()))
                            .unwrap();
                    }
                    sent_at = sim.now;
                    sim.client
                        .send(Channel::Rpc, msg("echo", pattern(256, 9)))
                        .unwrap();
                }
                _ => {}
            }
        }
    }
    rtts
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[test]
fn session_7_5_bulk_transfer_does_not_delay_rpc() {
    // Rhizomorph: 16 KiB chunks, batches of ≤ 64 KiB, and a sender that keeps the link's
    // queue at 64 KB: rpc waits for at most one chunk plus the queue.
    let rtts = hol_rtts(SessionConfig::default(), 64 * 1024, 200);
    let p = p99(rtts);
    eprintln!("rhizomorph: rpc p99 {p:.2} ms under bulk load");
    assert!(p < 20.0, "rpc p99 {p:.1} ms with bulk on the link");
}

#[test]
fn session_7_5_without_interleaving_rpc_waits_behind_whole_bulk_messages() {
    // The contrast (what one message per WebSocket frame does): no chunking, whole 2 MB
    // messages handed to an unbounded send queue.
    let settings = Settings::default()
        .with_max_frame_payload(16_777_215)
        .with_max_batch_size(16 << 20)
        .with_initial_channel_window(64 << 20)
        .with_initial_connection_window(256 << 20);
    let cfg = SessionConfig::default()
        .with_settings(settings)
        .with_chunk_size(16 << 20)
        .with_max_batch(16 << 20);
    let rtts = hol_rtts(cfg, usize::MAX / 2, 30);
    let p = p99(rtts);
    eprintln!("no interleaving: rpc p99 {p:.2} ms under bulk load");
    assert!(
        p > 100.0,
        "rpc p99 {p:.1} ms: expected to wait behind 160 ms bulk messages"
    );
}

#[test]
fn session_9_6_stalled_reader_costs_bounded_memory() {
    // The receiver does not release anything for 10 s (virtual) while the sender tries to push
    // 1 GB on bulk in 1 MiB messages, queuing only while its send buffer is under 2 MiB.
    let mut sim = Sim::new(SessionConfig::default(), SessionConfig::default());
    sim.connect();
    let chunk = pattern(1 << 20, 5);
    let mut pushed = 0u64;
    let mut received = Vec::new();
    let start = sim.now;
    let settings = Settings::default();
    let mut max_held = 0u64;
    let mut max_queued = 0u64;
    while sim.now.duration_since(start) < Duration::from_secs(10) && pushed < (1 << 30) {
        while sim.client.queued_bytes(Channel::Bulk) < (2 << 20) && pushed < (1 << 30) {
            sim.client
                .send(Channel::Bulk, msg("sink", chunk.clone()))
                .unwrap();
            pushed += chunk.len() as u64;
        }
        for (side, e) in sim.advance(Duration::from_millis(100)) {
            if let (Side::Server, Event::Message(m)) = (side, e) {
                received.push(m); // held, never released
            }
        }
        max_held = max_held.max(sim.server.held_bytes(Channel::Bulk));
        max_queued = max_queued.max(sim.client.queued_bytes(Channel::Bulk));
    }
    // Receiver: at most one window of unreleased frames plus one message under reassembly.
    let bound = settings.initial_channel_window + chunk.len() as u64 + 64 * 1024;
    assert!(max_held <= bound, "receiver holds {max_held} > {bound}");
    let delivered: u64 = received.iter().map(|m| m.payload.len() as u64).sum();
    assert!(
        delivered <= bound,
        "delivered {delivered} bytes to a reader that never released"
    );
    // Sender: its queue stayed at its send buffer; it stopped because of zero credit.
    assert!(max_queued <= (3 << 20), "sender queued {max_queued}");
    assert!(
        pushed < (16 << 20),
        "sender pushed {pushed} bytes into a stalled connection"
    );
    // Release everything: the transfer resumes.
    for m in received.drain(..) {
        sim.server.release(m.channel, m.credit);
    }
    let more = sim.advance(Duration::from_millis(10));
    assert!(
        more.iter().any(|(_, e)| matches!(e, Event::Message(_))),
        "no progress after release"
    );
}

#[test]
fn session_13_keepalive_measures_rtt_and_detects_a_dead_peer() {
    let cfg =
        SessionConfig::default().with_keepalive(Duration::from_secs(1), Duration::from_secs(3));
    let mut sim = Sim::with_links(
        cfg.clone(),
        cfg,
        None,
        Duration::from_millis(20),
        usize::MAX,
    );
    sim.connect();
    let events = sim.advance(Duration::from_millis(1500));
    let rtt = events.iter().find_map(|(_, e)| match e {
        Event::Rtt { rtt } => Some(*rtt),
        _ => None,
    });
    let rtt = rtt.expect("a keepalive PING was answered");
    assert!(
        rtt >= Duration::from_millis(40) && rtt < Duration::from_millis(45),
        "{rtt:?}"
    );
    // The server goes silent: it neither reads nor writes. The client gives up.
    let mut closed = None;
    for _ in 0..100 {
        sim.now += Duration::from_millis(100);
        while sim.to_server.pop_arrived(sim.now).is_some() {}
        let now = sim.now;
        if sim.client.poll_timeout().is_some_and(|t| t <= now) {
            sim.client.handle_timeout(now);
        }
        while sim
            .client
            .poll_transmit(now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
            .is_some()
        {}
        while let Some(e) = sim.client.poll_event() {
            if let Event::Closed { code, .. } = e {
                closed = Some(code);
            }
        }
        if closed.is_some() {
            break;
        }
    }
    assert_eq!(closed, Some(ErrorCode::TIMEOUT));
}

/// A 4 MiB bulk message 20 ms into its transfer over a 10 MB/s link: started, far from done.
fn bulk_transfer_under_way() -> (Sim, u64) {
    let mut sim = Sim::with_links(
        SessionConfig::default(),
        SessionConfig::default(),
        Some(10e6),
        Duration::from_millis(1),
        64 * 1024,
    );
    sim.connect();
    let seq = sim
        .client
        .send(Channel::Bulk, msg("x", pattern(4 << 20, 1)))
        .unwrap();
    sim.advance(Duration::from_millis(20));
    (sim, seq)
}

#[test]
fn session_5_7_1_cancel_aborts_a_message_in_progress() {
    let (mut sim, seq) = bulk_transfer_under_way();
    sim.client.cancel(Channel::Bulk, seq);
    sim.client
        .send(Channel::Bulk, msg("x", Bytes::from_static(b"after")))
        .unwrap();
    let mut aborted = false;
    let mut failed = false;
    let mut after = None;
    while after.is_none() {
        for (side, e) in sim.step() {
            match (side, e) {
                (Side::Server, Event::MessageAborted { sequence, code, .. }) => {
                    assert_eq!((sequence, code), (seq, ErrorCode::CANCELLED));
                    aborted = true;
                }
                (Side::Client, Event::SendFailed { id: sequence, .. }) => {
                    assert_eq!(sequence, seq);
                    failed = true;
                }
                (Side::Server, Event::Message(m)) => after = Some(m),
                _ => {}
            }
        }
    }
    assert!(aborted && failed);
    let m = after.unwrap();
    assert_eq!(
        (m.sequence, m.payload),
        (seq + 1, Bytes::from_static(b"after"))
    );
    assert_eq!(
        sim.server.held_bytes(Channel::Bulk),
        m.credit,
        "aborted bytes were released"
    );
}

#[test]
fn session_5_7_2_receiver_rejects_an_incoming_message() {
    let (mut sim, seq) = bulk_transfer_under_way();
    sim.server
        .reject_incoming(Channel::Bulk, seq, ErrorCode::MESSAGE_TOO_LARGE);
    let mut failed = None;
    for _ in 0..10_000 {
        for (side, e) in sim.step() {
            assert!(
                !matches!((side, &e), (Side::Server, Event::Message(_))),
                "rejected message delivered"
            );
            if let (
                Side::Client,
                Event::SendFailed {
                    id: sequence, code, ..
                },
            ) = (side, e)
            {
                failed = Some((sequence, code));
            }
        }
        if failed.is_some() {
            break;
        }
    }
    assert_eq!(failed, Some((seq, ErrorCode::MESSAGE_TOO_LARGE)));
    assert!(
        sim.client.stats().bytes_sent[3] < 4 << 20,
        "the sender stopped early"
    );
}

#[test]
fn session_14_1_goaway_drains_then_closes() {
    let mut sim = Sim::with_links(
        SessionConfig::default(),
        SessionConfig::default(),
        Some(50e6),
        Duration::from_millis(1),
        64 * 1024,
    );
    sim.connect();
    let in_flight = sim
        .client
        .send(Channel::Bulk, msg("x", pattern(1 << 20, 2)))
        .unwrap();
    sim.advance(Duration::from_millis(5));
    sim.server.goaway(ErrorCode::GOING_AWAY, "upgrade");
    // Messages queued after the server's GOAWAY reaches the client are refused.
    let mut delivered = Vec::new();
    let mut refused = Vec::new();
    let mut closed = Vec::new();
    let mut late = None;
    while closed.len() < 2 {
        let events = sim.step();
        assert!(!events.is_empty(), "stalled while draining");
        for (side, e) in events {
            match (side, e) {
                (Side::Client, Event::GoAway { .. }) => {
                    assert_eq!(
                        sim.client.send(Channel::Rpc, msg("y", "late")),
                        Err(rhizomorph_proto::session::SendError::GoingAway)
                    );
                    late = Some(());
                }
                (Side::Server, Event::Message(m)) => {
                    sim.server.release(m.channel, m.credit);
                    delivered.push(m.sequence);
                }
                (Side::Client, Event::SendFailed { id, .. }) => refused.push(id),
                (s, Event::Closed { code, .. }) => closed.push((s, code)),
                _ => {}
            }
        }
    }
    assert!(late.is_some());
    assert_eq!(
        delivered,
        vec![in_flight],
        "the in-flight message was finished"
    );
    assert!(refused.is_empty());
    assert!(closed.contains(&(Side::Server, ErrorCode::NO_ERROR)));
    assert!(closed.contains(&(Side::Client, ErrorCode::NO_ERROR)));
}

#[test]
fn session_3_2_5_frames_before_hello_are_a_protocol_error() {
    let now = std::time::Instant::now();
    let ping = Frame::Ping(rhizomorph_proto::frame::Ping { opaque: 1 });
    let server = fresh_server_fed(now, &[ping]);
    assert_only_close(server, now, ErrorCode::PROTOCOL_ERROR);
}

/// A server that has seen nothing but `frames` (in one batch).
fn fresh_server_fed(
    now: std::time::Instant,
    frames: &[Frame],
) -> rhizomorph_proto::session::Session {
    let mut server = rhizomorph_proto::session::Session::server(SessionConfig::default(), now);
    let mut wire = BytesMut::new();
    for f in frames {
        f.encode(&mut wire).unwrap();
    }
    server.handle_batch(now, wire.freeze());
    server
}

/// `session`'s next output is one CLOSE with `code`, and it is closed.
fn assert_only_close(
    mut session: rhizomorph_proto::session::Session,
    now: std::time::Instant,
    code: ErrorCode,
) {
    let out = session
        .poll_transmit(now, Target::Batch, usize::MAX)
        .map(Transmit::into_bytes)
        .expect("a CLOSE");
    let frames = FrameDecoder::new(Settings::default())
        .decode_batch(out)
        .unwrap();
    assert!(
        matches!(&frames[..], [Frame::Close(c)] if c.code == code),
        "{frames:?}"
    );
    assert!(session.is_closed());
}

/// An ignorable frame type is no exception before HELLO (§3.2.5); after it, it is skipped
/// (§4.2.2). CLOSE is allowed before HELLO (the §4.2 table): a refusal is one.
#[test]
fn session_3_2_5_only_padding_hello_and_close_come_before_hello() {
    let now = std::time::Instant::now();
    let ignorable = Frame::Ignored {
        frame_type: 0x81,
        flags: 0,
        payload: Bytes::from_static(b"x"),
    };
    let server = fresh_server_fed(now, &[Frame::Padding { len: 4 }, ignorable.clone()]);
    assert_only_close(server, now, ErrorCode::PROTOCOL_ERROR);
    // After HELLO, the same frame is skipped.
    let mut sim = Sim::new(SessionConfig::default(), SessionConfig::default());
    sim.connect();
    let mut wire = BytesMut::new();
    ignorable.encode(&mut wire).unwrap();
    sim.server.handle_batch(sim.now, wire.freeze());
    assert!(sim.server.is_open());
    // A CLOSE before HELLO is taken as the end, not as a protocol error.
    let mut client = rhizomorph_proto::session::Session::client(SessionConfig::default(), now);
    let mut wire = BytesMut::new();
    Frame::Close(rhizomorph_proto::frame::Close::new(
        ErrorCode::AUTH_FAILED,
        "no",
    ))
    .encode(&mut wire)
    .unwrap();
    client.handle_batch(now, wire.freeze());
    let closed = std::iter::from_fn(|| client.poll_event())
        .any(|e| matches!(e, Event::Closed { code, .. } if code == ErrorCode::AUTH_FAILED));
    assert!(closed, "the refusal's code reaches the application");
}

#[test]
fn session_9_2_exceeding_the_window_is_a_flow_control_error() {
    let small = Settings::default().with_initial_channel_window(4096);
    let mut sim = server_with(small);
    sim.connect();
    // Forge a 8 KiB MESSAGE frame that ignores the server's 4 KiB window.
    let frame = Frame::Message(rhizomorph_proto::frame::MessageFrame::single(
        Channel::Rpc,
        rhizomorph_proto::frame::PayloadEncoding::Raw,
        Bytes::new(),
        pattern(8192, 0),
    ));
    let mut wire = BytesMut::new();
    frame.encode(&mut wire).unwrap();
    sim.server.handle_batch(sim.now, wire.freeze());
    let closed = std::iter::from_fn(|| sim.server.poll_event()).find_map(|e| match e {
        Event::Closed { code, .. } => Some(code),
        _ => None,
    });
    let _ = sim
        .server
        .poll_transmit(sim.now, Target::Batch, usize::MAX)
        .map(Transmit::into_bytes);
    let closed = closed.or_else(|| {
        std::iter::from_fn(|| sim.server.poll_event()).find_map(|e| match e {
            Event::Closed { code, .. } => Some(code),
            _ => None,
        })
    });
    assert_eq!(closed, Some(ErrorCode::FLOW_CONTROL_ERROR));
}

/// A default client and a server announcing `settings`, not yet connected.
fn server_with(settings: Settings) -> Sim {
    Sim::new(
        SessionConfig::default(),
        SessionConfig::default().with_settings(settings),
    )
}

/// Delivers `payload` on `channel` from client to server in memory, the server releasing it.
fn deliver_and_release(sim: &mut Sim, channel: Channel, payload: Bytes) {
    sim.client.send(channel, msg("svc", payload)).unwrap();
    while let Some(b) = sim
        .client
        .poll_transmit(sim.now, Target::Batch, usize::MAX)
        .map(Transmit::into_bytes)
    {
        sim.server.handle_batch(sim.now, b);
    }
    let mut seen = false;
    while let Some(e) = sim.server.poll_event() {
        if let Event::Message(m) = e {
            sim.server.release(m.channel, m.credit);
            seen = true;
        }
    }
    assert!(seen);
}

/// The CREDIT frames of a batch, as (target, increment), and whether it held anything else.
fn credits_in(batch: Bytes) -> (Vec<(rhizomorph_proto::frame::CreditTarget, u64)>, bool) {
    let frames = FrameDecoder::new(Settings::default())
        .decode_batch(batch)
        .unwrap();
    let credits: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Credit(c) => Some((c.target, c.increment)),
            _ => None,
        })
        .collect();
    let others = frames.len() > credits.len();
    (credits, others)
}

#[test]
fn session_9_5_small_credit_rides_with_other_frames_and_only_urgent_credit_goes_alone() {
    use rhizomorph_proto::frame::CreditTarget;
    // Default windows: 1 MiB per channel, 4 MiB for the connection.
    let mut sim = Sim::new(SessionConfig::default(), SessionConfig::default());
    sim.connect();
    // 40 KiB released: worth returning, not worth a batch of its own.
    deliver_and_release(&mut sim, Channel::Rpc, pattern(40 * 1024, 1));
    assert!(!sim.server.credit_due());
    assert_eq!(
        sim.server
            .poll_transmit(sim.now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes),
        None
    );
    // The reply carries it.
    sim.server
        .send(Channel::Rpc, msg("client", pattern(100, 2)))
        .unwrap();
    let (credits, others) = credits_in(
        sim.server
            .poll_transmit(sim.now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
            .unwrap(),
    );
    assert!(others, "the reply is in the batch");
    let to_rpc = credits
        .iter()
        .find(|(t, _)| *t == CreditTarget::Channel(Channel::Rpc))
        .map(|c| c.1);
    let to_conn = credits
        .iter()
        .find(|(t, _)| *t == CreditTarget::Connection)
        .map(|c| c.1);
    assert!(
        to_rpc.is_some_and(|n| n >= 40 * 1024) && to_rpc == to_conn,
        "{credits:?}"
    );
    // A quarter of the channel window or more released at once: CREDIT leaves on its own.
    deliver_and_release(&mut sim, Channel::Bulk, pattern(600 * 1024, 3));
    assert!(sim.server.credit_due());
    let (credits, others) = credits_in(
        sim.server
            .poll_transmit(sim.now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
            .unwrap(),
    );
    assert!(!others);
    assert!(
        credits
            .iter()
            .any(|&(t, n)| t == CreditTarget::Channel(Channel::Bulk) && n >= 600 * 1024),
        "{credits:?}"
    );
    // The connection's 600 KiB (of its 4 MiB window) would not have justified a batch; it
    // rides along with the channel's.
    assert!(
        credits
            .iter()
            .any(|&(t, n)| t == CreditTarget::Connection && n >= 600 * 1024),
        "{credits:?}"
    );
    assert!(!sim.server.credit_due());
    assert_eq!(
        sim.server
            .poll_transmit(sim.now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes),
        None
    );
}

/// Over a 20 KiB channel window, `smalls` messages of `small_len` bytes, then one whose first
/// frame has a ~16 KiB header block; all must arrive (wire.md §9.5's progress threshold).
fn small_messages_then_a_full_header_block(smalls: u8, small_len: usize, last_len: usize) {
    let small = Settings::default().with_initial_channel_window(20 * 1024);
    let mut sim = server_with(small);
    sim.connect();
    for i in 0..smalls {
        sim.client
            .send(Channel::Rpc, msg("svc", pattern(small_len, i)))
            .unwrap();
    }
    let big = RoutingHeader::new()
        .with("to", "svc")
        .with("x-blob", "h".repeat(16_000));
    sim.client
        .send(
            Channel::Rpc,
            OutgoingMessage::new(big.clone(), pattern(last_len, 9)),
        )
        .unwrap();
    let got = collect(&mut sim, Side::Server, smalls as usize + 1);
    let last = got.last().unwrap();
    assert_eq!(last.header, big);
    assert_eq!(last.payload, pattern(last_len, 9));
}

#[test]
fn session_9_5_credit_is_urgent_below_what_a_sender_may_wait_for() {
    // Each case leaves the window with under a quarter of it releasable (neither fraction rule
    // sends credit) and below what the next first frame needs, so credit must be urgent below
    // `MAX_HEADER_LIST_SIZE` + 1,088. Five 960 B messages leave ~15.1 KiB, short of the header
    // block alone (the stall the rule's first floor, + 64, fixed); four 900 B messages leave
    // ~16.8 KiB, enough for the header block but not for the 1 KiB of data a sender may wait
    // for beside it (the stall + 64 still had).
    small_messages_then_a_full_header_block(5, 960, 10);
    small_messages_then_a_full_header_block(4, 900, 4096);
}

#[test]
fn session_9_5_1_messages_queued_before_hello_that_the_peers_settings_forbid_fail() {
    // Queued before the HELLO exchange, so checked against default settings; the server then
    // announces 2 KiB messages and 4 KiB windows.
    let strict = Settings::default()
        .with_initial_channel_window(4096)
        .with_max_message_size(2048);
    let mut sim = server_with(strict);
    let fits = sim
        .client
        .send(Channel::Rpc, msg("svc", pattern(100, 1)))
        .unwrap();
    let too_long = sim
        .client
        .send(Channel::Rpc, msg("svc", pattern(4000, 2)))
        .unwrap();
    let blob = RoutingHeader::new().with("x-blob", "h".repeat(5000));
    let never_fits = sim
        .client
        .send(Channel::Stream, OutgoingMessage::new(blob, pattern(10, 3)))
        .unwrap();
    let mut failed = Vec::new();
    let mut arrived = Vec::new();
    for _ in 0..100 {
        for (side, e) in sim.step() {
            match (side, e) {
                (Side::Client, Event::SendFailed { channel, id, code }) => {
                    failed.push((channel, id, code))
                }
                (Side::Server, Event::Message(m)) => arrived.push(m),
                _ => {}
            }
        }
        if !arrived.is_empty() {
            break;
        }
    }
    assert_eq!(
        failed,
        vec![
            (Channel::Rpc, too_long, ErrorCode::MESSAGE_TOO_LARGE),
            (Channel::Stream, never_fits, ErrorCode::FLOW_CONTROL_ERROR),
        ]
    );
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].payload, pattern(100, 1));
    assert!(failed.iter().all(|f| f.1 != fits || f.0 != Channel::Rpc));
    assert!(sim.client.is_open() && sim.server.is_open());
}

#[test]
fn session_9_5_a_message_the_peers_windows_can_never_admit_is_refused_when_sent() {
    // The server's windows hold 4 KiB per channel: a 5 KiB header block never fits.
    let tiny = Settings::default().with_initial_channel_window(4096);
    let mut sim = server_with(tiny);
    sim.connect();
    let too_big = RoutingHeader::new().with("x-blob", "h".repeat(5 * 1024));
    match sim
        .client
        .send(Channel::Rpc, OutgoingMessage::new(too_big, pattern(10, 0)))
    {
        Err(SendError::WindowTooSmall { needed, window }) => {
            assert_eq!(window, 4096);
            assert!(needed > 5 * 1024, "{needed}");
        }
        other => panic!("{other:?}"),
    }
    // A 3.5 KiB header block fits, with less than 1 KiB of data beside it: the message goes
    // out in frames smaller than the sender would otherwise wait for.
    let fits = RoutingHeader::new()
        .with("to", "svc")
        .with("x-blob", "h".repeat(3500));
    sim.client
        .send(
            Channel::Rpc,
            OutgoingMessage::new(fits.clone(), pattern(100_000, 3)),
        )
        .unwrap();
    let got = collect(&mut sim, Side::Server, 1);
    assert_eq!(got[0].header, fits);
    assert_eq!(got[0].payload, pattern(100_000, 3));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    // spec: wire.md §9.5 — whatever the windows and header sizes, every message a sender
    // accepts arrives (a receiver that reads never stalls it), and one it refuses could never
    // have been sent.
    #[test]
    fn session_9_5_every_accepted_message_arrives_whatever_the_windows(
        window in 1_024u64..96 * 1024,
        conn_factor in 1u64..4,
        sends in prop::collection::vec((0usize..4, 0usize..16_200, 0usize..40_000, any::<u8>()), 1..24),
    ) {
        let settings = Settings::default()
            .with_initial_channel_window(window)
            .with_initial_connection_window(window * conn_factor);
        let mut sim = server_with(settings);
        sim.connect();
        let mut accepted = Vec::new();
        for &(ch, header_len, len, seed) in &sends {
            let h = RoutingHeader::new().with("to", "svc").with("x-pad", "p".repeat(header_len));
            let payload = pattern(len, seed);
            match sim.client.send(Channel::ALL[ch], OutgoingMessage::new(h.clone(), payload.clone())) {
                Ok(_) => accepted.push((Channel::ALL[ch], h, payload)),
                Err(SendError::WindowTooSmall { needed, window: w }) => {
                    prop_assert_eq!(w, window);
                    prop_assert!(needed > w);
                    prop_assert!(h.list_size() as u64 + 41 > w);
                }
                Err(SendError::HeaderTooLarge { .. }) => prop_assert!(h.list_size() > 16_384),
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }
        let got = collect(&mut sim, Side::Server, accepted.len());
        for ch in Channel::ALL {
            let want: Vec<_> = accepted.iter().filter(|m| m.0 == ch).map(|m| (m.1.clone(), m.2.clone())).collect();
            let have: Vec<_> = got.iter().filter(|m| m.channel == ch).map(|m| (m.header.clone(), m.payload.clone())).collect();
            prop_assert_eq!(have, want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // Random interleavings of sends on all channels, with random sizes (some chunked) and a
    // shaped link, arrive complete, in order per channel, nothing lost or duplicated.
    #[test]
    fn session_7_2_random_sends_arrive_complete_and_in_order(
        sends in prop::collection::vec((0usize..4, 0usize..70_000, any::<u8>()), 1..60),
        window in prop::sample::select(vec![16_384u64, 65_536, 1 << 20]),
        chunk in prop::sample::select(vec![1_024u64, 16_384, 65_536]),
        bandwidth in prop::option::of(1e6f64..1e9),
    ) {
        let settings = Settings::default().with_initial_channel_window(window).with_initial_connection_window(window * 2);
        let cfg = SessionConfig::default().with_settings(settings).with_chunk_size(chunk);
        let mut sim = Sim::with_links(cfg.clone(), cfg, bandwidth, Duration::from_micros(50), 32 * 1024);
        sim.connect();
        let mut expected: HashMap<Channel, Vec<Bytes>> = HashMap::new();
        for (i, &(ch, len, seed)) in sends.iter().enumerate() {
            let ch = Channel::ALL[ch];
            let payload = pattern(len, seed);
            let mut h = header("peer");
            h.push("x-index", i.to_string());
            sim.client.send(ch, OutgoingMessage::new(h, payload.clone())).unwrap();
            expected.entry(ch).or_default().push(payload);
        }
        let got = collect(&mut sim, Side::Server, sends.len());
        let mut by_channel: HashMap<Channel, Vec<Bytes>> = HashMap::new();
        for m in got {
            prop_assert_eq!(m.sequence as usize, by_channel.get(&m.channel).map_or(0, Vec::len));
            by_channel.entry(m.channel).or_default().push(m.payload);
        }
        prop_assert_eq!(by_channel, expected);
    }
}

/// A connected client session (the handshake pumped in memory), at a fixed clock, whose large
/// chunk payloads stay in place (`vectored`) or are copied into the batch.
fn connected_client(now: std::time::Instant, vectored: bool) -> rhizomorph_proto::session::Session {
    use rhizomorph_proto::session::Session;
    let mut c = Session::client(SessionConfig::default().with_vectored(vectored), now);
    let mut s = Session::server(SessionConfig::default(), now);
    for _ in 0..4 {
        while let Some(b) = c
            .poll_transmit(now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
        {
            s.handle_batch(now, b);
        }
        while let Some(e) = s.poll_event() {
            if let Event::HelloReceived { .. } = e {
                s.accept(Bytes::new());
            }
        }
        while let Some(b) = s
            .poll_transmit(now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
        {
            c.handle_batch(now, b);
        }
        while c.poll_event().is_some() {}
    }
    assert!(c.is_open());
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// spec: wire.md §10 — a vectored batch (large chunk payloads left in place for `writev`)
    /// is byte for byte the batch a copying encoder writes, whatever the sizes, channels and
    /// batch limits.
    #[test]
    fn session_10_vectored_batches_are_the_same_bytes(
        sizes in proptest::collection::vec(0usize..200_000, 1..12),
        limit in prop_oneof![Just(usize::MAX), 100usize..70_000],
    ) {
        let now = std::time::Instant::now();
        let (mut copied, mut vectored) = (connected_client(now, false), connected_client(now, true));
        for (i, &len) in sizes.iter().enumerate() {
            let ch = Channel::ALL[i % 4];
            copied.send(ch, msg("svc", pattern(len, i as u8))).unwrap();
            vectored.send(ch, msg("svc", pattern(len, i as u8))).unwrap();
        }
        loop {
            let a = copied.poll_transmit(now, Target::Batch, limit).map(Transmit::into_bytes);
            let b = vectored.poll_transmit(now, Target::Batch, limit).map(Transmit::into_segments);
            prop_assert_eq!(a.as_ref().map(|a| a.to_vec()), b.map(|b| b.concat()));
            if a.is_none() {
                break;
            }
        }
        // The per-stream form (QUIC, §17.3) likewise.
        let (mut copied, mut vectored) = (connected_client(now, false), connected_client(now, true));
        for (i, &len) in sizes.iter().enumerate() {
            let ch = Channel::ALL[i % 4];
            copied.send(ch, msg("svc", pattern(len, i as u8))).unwrap();
            vectored.send(ch, msg("svc", pattern(len, i as u8))).unwrap();
        }
        for ch in Channel::ALL {
            loop {
                let a = copied.poll_transmit(now, Target::Stream(ch), limit).map(Transmit::into_bytes);
                let b = vectored.poll_transmit(now, Target::Stream(ch), limit).map(Transmit::into_segments);
                prop_assert_eq!(a.as_ref().map(|a| a.to_vec()), b.map(|b| b.concat()));
                if a.is_none() {
                    break;
                }
            }
        }
    }
}
