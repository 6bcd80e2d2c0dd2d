//! The session with per-channel streams (the QUIC mapping, wire.md §17), in memory: each
//! direction is four ordered byte streams that a simulated network delivers in any order
//! relative to each other, cut at arbitrary points.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use proptest::prelude::*;
use rhizomorph_proto::frame::{
    Channel, Credit, CreditTarget, ErrorCode, Frame, MessageFrame, PayloadEncoding,
};
use rhizomorph_proto::header::RoutingHeader;
use rhizomorph_proto::session::{Event, Framing, OutgoingMessage, Session, SessionConfig};
use rhizomorph_proto::session::{Target, Transmit};

fn config() -> SessionConfig {
    SessionConfig::default().with_framing(Framing::PerChannelStreams)
}

/// One direction: bytes per channel stream, not yet delivered.
#[derive(Default)]
struct Streams {
    pending: [VecDeque<Bytes>; 4],
}

impl Streams {
    /// Takes everything `from` has to send on every stream.
    fn collect(&mut self, now: Instant, from: &mut Session) {
        for ch in Channel::ALL {
            while let Some(b) = from
                .poll_transmit(now, Target::Stream(ch), usize::MAX)
                .map(Transmit::into_bytes)
            {
                self.pending[ch.index()].push_back(b);
            }
        }
    }

    /// Delivers the front of stream `ch`, at most `cut` bytes of it, if the receiver reads.
    fn deliver(&mut self, now: Instant, ch: Channel, cut: usize, to: &mut Session) -> bool {
        if !to.can_read(ch) {
            return false;
        }
        let Some(mut b) = self.pending[ch.index()].pop_front() else {
            return false;
        };
        if cut > 0 && cut < b.len() {
            let rest = b.split_off(cut);
            self.pending[ch.index()].push_front(rest);
        }
        to.handle_stream(now, ch, b);
        true
    }

    fn is_empty(&self) -> bool {
        self.pending.iter().all(VecDeque::is_empty)
    }
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Runs the HELLO exchange; the server accepts.
fn connect(now: Instant) -> (Session, Session, Streams, Streams) {
    let mut c = Session::client(config(), now);
    let mut s = Session::server(config(), now);
    let (mut up, mut down) = (Streams::default(), Streams::default());
    up.collect(now, &mut c);
    while up.deliver(now, Channel::Control, 0, &mut s) {}
    for e in events(&mut s) {
        if let Event::HelloReceived { .. } = e {
            s.accept(Bytes::new());
        }
    }
    down.collect(now, &mut s);
    while down.deliver(now, Channel::Control, 0, &mut c) {}
    assert!(c.is_open() && s.is_open());
    events(&mut c);
    events(&mut s);
    (c, s, up, down)
}

fn msg(payload: Vec<u8>) -> OutgoingMessage {
    OutgoingMessage::new(RoutingHeader::new().with("to", "peer"), payload)
}

#[test]
fn messages_travel_on_their_channel_stream_and_no_credit_is_sent() {
    let now = Instant::now();
    let (mut c, mut s, mut up, _down) = connect(now);
    c.send(Channel::Rpc, msg(vec![1; 300])).unwrap();
    c.send(Channel::Bulk, msg(vec![2; 200_000])).unwrap();
    up.collect(now, &mut c);
    assert!(
        up.pending[Channel::Control.index()].is_empty(),
        "nothing on control"
    );
    assert!(!up.pending[Channel::Rpc.index()].is_empty());
    assert!(!up.pending[Channel::Bulk.index()].is_empty());
    // Bulk first, then rpc: streams are independent.
    while up.deliver(now, Channel::Bulk, 0, &mut s) {}
    while up.deliver(now, Channel::Rpc, 0, &mut s) {}
    let got: Vec<_> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some((m.channel, m.payload.len())),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![(Channel::Bulk, 200_000), (Channel::Rpc, 300)]);
    // Releasing sends no CREDIT over QUIC (§17.5).
    s.release(Channel::Bulk, 200_000);
    assert!(!s.credit_due());
    let mut back = Streams::default();
    back.collect(now, &mut s);
    assert!(back.is_empty(), "no CREDIT frames");
}

#[test]
fn channel_streams_that_overtake_the_servers_hello_wait_for_it() {
    let now = Instant::now();
    let mut c = Session::client(config(), now);
    let mut s = Session::server(config(), now);
    let (mut up, mut down) = (Streams::default(), Streams::default());
    up.collect(now, &mut c);
    while up.deliver(now, Channel::Control, 0, &mut s) {}
    events(&mut s);
    s.accept(Bytes::new());
    s.send(Channel::Rpc, msg(b"early".to_vec())).unwrap();
    down.collect(now, &mut s);
    // The rpc stream arrives before the control stream's HELLO.
    while down.deliver(now, Channel::Rpc, 0, &mut c) {}
    assert!(!c.is_open());
    assert!(events(&mut c).is_empty());
    while down.deliver(now, Channel::Control, 0, &mut c) {}
    let ev = events(&mut c);
    assert!(matches!(ev[0], Event::Connected { .. }), "{ev:?}");
    assert!(
        matches!(&ev[1], Event::Message(m) if &m.payload[..] == b"early"),
        "{ev:?}"
    );
}

fn expect_closed_with(s: &mut Session, code: ErrorCode, needle: &str) {
    let closed = (0..4).find_map(|_| {
        let mut out = Streams::default();
        out.collect(Instant::now(), s);
        events(s).into_iter().find_map(|e| match e {
            Event::Closed { code, reason, .. } => Some((code, reason)),
            _ => None,
        })
    });
    let (got, reason) = closed.expect("the session closed");
    assert_eq!(got, code, "{reason}");
    assert!(reason.contains(needle), "{reason}");
}

#[test]
fn a_message_on_another_channels_stream_is_a_protocol_error() {
    let now = Instant::now();
    let (_c, mut s, _up, _down) = connect(now);
    let frame = Frame::Message(MessageFrame::single(
        Channel::Bulk,
        PayloadEncoding::Raw,
        Bytes::new(),
        Bytes::from_static(b"x"),
    ));
    let mut buf = bytes::BytesMut::new();
    frame.encode(&mut buf).unwrap();
    s.handle_stream(now, Channel::Rpc, buf.freeze());
    expect_closed_with(&mut s, ErrorCode::PROTOCOL_ERROR, "WrongStream");
}

/// wire.md §17.2.5, §17.3: control frames (PING, PONG, GOAWAY, CLOSE, CANCEL without ABORT)
/// travel on the control stream only.
#[test]
fn quic_17_2_5_a_control_frame_on_a_channel_stream_is_a_protocol_error() {
    for frame in [
        Frame::Ping(rhizomorph_proto::frame::Ping { opaque: 7 }),
        Frame::Pong(rhizomorph_proto::frame::Ping { opaque: 7 }),
        Frame::GoAway(rhizomorph_proto::frame::GoAway {
            code: ErrorCode::NO_ERROR,
            accepted: [0; 4],
            reason: String::new(),
        }),
    ] {
        let now = Instant::now();
        let (_c, mut s, _up, _down) = connect(now);
        let mut buf = bytes::BytesMut::new();
        frame.encode(&mut buf).unwrap();
        s.handle_stream(now, Channel::Stream, buf.freeze());
        expect_closed_with(&mut s, ErrorCode::PROTOCOL_ERROR, "WrongStream");
    }
}

#[test]
fn credit_over_quic_is_a_protocol_error() {
    let now = Instant::now();
    let (_c, mut s, _up, _down) = connect(now);
    let frame = Frame::Credit(Credit {
        target: CreditTarget::Connection,
        increment: 1000,
    });
    let mut buf = bytes::BytesMut::new();
    frame.encode(&mut buf).unwrap();
    s.handle_stream(now, Channel::Control, buf.freeze());
    expect_closed_with(&mut s, ErrorCode::PROTOCOL_ERROR, "CREDIT");
}

#[test]
fn a_channel_stream_before_the_client_hello_is_refused_by_the_server() {
    let now = Instant::now();
    let mut s = Session::server(config(), now);
    s.handle_stream(now, Channel::Bulk, Bytes::from_static(&[0x00]));
    expect_closed_with(&mut s, ErrorCode::PROTOCOL_ERROR, "channel stream");
}

#[test]
fn a_reader_that_does_not_release_stops_reading_at_its_window() {
    let now = Instant::now();
    let (mut c, mut s, mut up, _down) = connect(now);
    let window = s.local_settings().initial_channel_window;
    for _ in 0..64 {
        c.send(Channel::Bulk, msg(vec![7; 64 * 1024])).unwrap();
    }
    up.collect(now, &mut c);
    let mut delivered = 0u64;
    let mut held = Vec::new();
    while up.deliver(now, Channel::Bulk, 0, &mut s) {
        for e in events(&mut s) {
            if let Event::Message(m) = e {
                delivered += m.payload.len() as u64;
                held.push(m);
            }
        }
    }
    // The session stopped asking for bytes within one batch of its window.
    assert!(!s.can_read(Channel::Bulk));
    assert!(
        s.held_bytes(Channel::Bulk) <= window + 64 * 1024,
        "{}",
        s.held_bytes(Channel::Bulk)
    );
    assert!(delivered < 64 * 64 * 1024);
    // Releasing lets it read again, and everything arrives.
    for m in held.drain(..) {
        s.release(m.channel, m.credit);
    }
    let mut total = delivered;
    loop {
        let moved = up.deliver(now, Channel::Bulk, 0, &mut s);
        for e in events(&mut s) {
            if let Event::Message(m) = e {
                total += m.payload.len() as u64;
                s.release(m.channel, m.credit);
            }
        }
        if !moved {
            break;
        }
    }
    assert_eq!(total, 64 * 64 * 1024);
}

#[test]
fn cancel_of_a_message_in_progress_travels_on_its_channel_stream() {
    let now = Instant::now();
    let (mut c, mut s, mut up, _down) = connect(now);
    let id = c.send(Channel::Stream, msg(vec![3; 100_000])).unwrap();
    let first = c
        .poll_transmit(now, Target::Stream(Channel::Stream), 20_000)
        .map(Transmit::into_bytes)
        .unwrap();
    c.cancel(Channel::Stream, id);
    up.pending[Channel::Stream.index()].push_back(first);
    up.collect(now, &mut c);
    assert!(up.pending[Channel::Control.index()].is_empty());
    while up.deliver(now, Channel::Stream, 0, &mut s) {}
    let ev = events(&mut s);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::MessageAborted {
                channel: Channel::Stream,
                ..
            }
        )),
        "{ev:?}"
    );
    assert_eq!(s.held_bytes(Channel::Stream), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random sends on all channels, streams delivered in a random order and cut at random
    /// points: every message arrives whole, in order per channel, exactly once.
    #[test]
    fn random_interleavings_arrive_complete_and_in_order(
        sends in prop::collection::vec((0usize..4, 0usize..70_000), 1..40),
        schedule in prop::collection::vec((0usize..4, 0usize..5000), 0..400),
    ) {
        let now = Instant::now();
        let (mut c, mut s, mut up, _down) = connect(now);
        let mut expected: [Vec<Vec<u8>>; 4] = Default::default();
        for (k, &(ch, len)) in sends.iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|i| (i + k) as u8).collect();
            expected[ch].push(payload.clone());
            c.send(Channel::ALL[ch], msg(payload)).unwrap();
        }
        let mut got: [Vec<Vec<u8>>; 4] = Default::default();
        let take = |s: &mut Session, got: &mut [Vec<Vec<u8>>; 4]| {
            for e in events(s) {
                match e {
                    Event::Message(m) => {
                        got[m.channel.index()].push(m.payload.to_vec());
                        s.release(m.channel, m.credit);
                    }
                    Event::Closed { reason, .. } => panic!("closed: {reason}"),
                    _ => {}
                }
            }
        };
        for &(ch, cut) in &schedule {
            up.collect(now, &mut c);
            up.deliver(now, Channel::ALL[ch], cut, &mut s);
            take(&mut s, &mut got);
        }
        loop {
            up.collect(now, &mut c);
            let mut moved = false;
            for ch in Channel::ALL {
                moved |= up.deliver(now, ch, 0, &mut s);
            }
            take(&mut s, &mut got);
            if !moved {
                break;
            }
        }
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn a_graceful_close_that_overtakes_data_waits_for_the_peers_streams_to_end() {
    let now = Instant::now();
    let (mut c, mut s, mut up, _down) = connect(now);
    c.send(Channel::Bulk, msg(vec![9; 50_000])).unwrap();
    up.collect(now, &mut c);
    c.close(ErrorCode::NO_ERROR, "done");
    up.collect(now, &mut c);
    assert!(c.is_closed());
    // CLOSE arrives first; the bulk stream's data after it.
    while up.deliver(now, Channel::Control, 0, &mut s) {}
    assert!(!s.is_closed());
    let ev = events(&mut s);
    assert!(ev.is_empty(), "{ev:?}");
    while up.deliver(now, Channel::Bulk, 0, &mut s) {}
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [Event::Message(m)] if m.payload.len() == 50_000),
        "{ev:?}"
    );
    // The closer finished every stream (FIN): then the connection is over.
    for ch in Channel::ALL {
        s.handle_stream_end(now, ch);
    }
    assert!(s.is_closed());
    let ev = events(&mut s);
    assert!(
        matches!(
            &ev[..],
            [Event::Closed {
                code: ErrorCode::NO_ERROR,
                ..
            }]
        ),
        "{ev:?}"
    );
}

#[test]
fn a_peer_that_never_finishes_its_streams_after_close_is_given_up_on() {
    let now = Instant::now();
    let (mut c, mut s, mut up, _down) = connect(now);
    c.close(ErrorCode::NO_ERROR, "done");
    up.collect(now, &mut c);
    while up.deliver(now, Channel::Control, 0, &mut s) {}
    assert!(!s.is_closed());
    let deadline = s.poll_timeout().expect("a deadline");
    s.handle_timeout(deadline);
    assert!(s.is_closed());
}

#[test]
fn an_error_close_ends_the_connection_at_once() {
    let now = Instant::now();
    let (mut c, mut s, mut up, _down) = connect(now);
    c.close(ErrorCode::INTERNAL_ERROR, "boom");
    up.collect(now, &mut c);
    while up.deliver(now, Channel::Control, 0, &mut s) {}
    assert!(s.is_closed());
}
