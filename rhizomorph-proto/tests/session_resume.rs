//! Resumable sessions without I/O (wire.md §21): two sessions over a simulated byte stream that
//! is cut at random points — mid-frame, mid-chunk, during the HELLO, during a replay — while
//! both sides send numbered messages on all four channels. Every message must arrive exactly
//! once and in order per channel; a refused resume must name every message that did not.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use rhizomorph_proto::frame::{
    Ack, Channel, ErrorCode, Frame, ResumeStatus, Settings, WIRE_VERSION_1_0, WIRE_VERSION_1_1,
};
use rhizomorph_proto::header::RoutingHeader;
use rhizomorph_proto::session::{
    Event, Framing, LostMessage, OutgoingMessage, Session, SessionConfig, SessionEvent, Target,
};

const RESUME_BUFFER: u64 = 256 * 1024;

fn config(resume: u64) -> SessionConfig {
    SessionConfig::default()
        .with_framing(Framing::Batched)
        .with_resumption(resume, Duration::from_secs(120))
        .with_settings(
            Settings::default()
                .with_initial_channel_window(128 * 1024)
                .with_initial_connection_window(256 * 1024)
                .with_resume_buffer(resume),
        )
}

/// The payload of message `n` on `channel` from `from`: its identity first, then filler.
fn payload(from: u8, channel: Channel, n: u64, len: usize) -> Bytes {
    let mut p = Vec::with_capacity(len.max(10));
    p.push(from);
    p.push(channel.id());
    p.extend_from_slice(&n.to_be_bytes());
    p.resize(len.max(10), (n % 251) as u8);
    Bytes::from(p)
}

fn identity(p: &[u8]) -> (u8, u8, u64) {
    (p[0], p[1], u64::from_be_bytes(p[2..10].try_into().unwrap()))
}

fn size_for(channel: Channel, n: u64) -> usize {
    match channel {
        Channel::Control => 16,
        Channel::Rpc => 64 + (n as usize % 200),
        Channel::Stream => 1_000 + (n as usize % 3_000),
        Channel::Bulk => 150_000 + (n as usize % 7) * 10_000, // several chunks each
    }
}

/// One side of the test: its session, what it sent, what it received.
struct Peer {
    id: u8,
    session: Session,
    next: [u64; 4],
    /// Per channel, the numbers received, in arrival order.
    received: [Vec<u64>; 4],
    lost: Vec<LostMessage>,
    resumed: usize,
}

impl Peer {
    fn new(id: u8, session: Session) -> Peer {
        Peer {
            id,
            session,
            next: [0; 4],
            received: Default::default(),
            lost: Vec::new(),
            resumed: 0,
        }
    }

    /// Queues messages while the session's queue is short (the application's backpressure).
    fn produce(&mut self, limit: [u64; 4]) {
        for ch in Channel::ALL {
            let i = ch.index();
            while self.next[i] < limit[i] && self.session.queued_charge(ch) < 400_000 {
                let n = self.next[i];
                let m = OutgoingMessage::new(
                    RoutingHeader::new().with("n", n.to_string()),
                    payload(self.id, ch, n, size_for(ch, n)),
                );
                if let Err(e) = self.session.send(ch, m) {
                    let out = written(Instant::now(), &mut self.session);
                    panic!(
                        "peer {} send: {e}; last write {:?}",
                        self.id,
                        String::from_utf8_lossy(&out)
                    );
                }
                self.next[i] += 1;
            }
        }
    }

    fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = self.session.poll_event() {
            match e {
                Event::Message(m) => {
                    let (from, ch, n) = identity(&m.payload);
                    assert_ne!(from, self.id, "own message came back");
                    assert_eq!(ch, m.channel.id());
                    assert_eq!(m.header.get_str("n"), Some(n.to_string().as_str()));
                    self.received[m.channel.index()].push(n);
                    self.session.release(m.channel, m.credit);
                }
                Event::Session(SessionEvent::Resumed { .. }) => self.resumed += 1,
                Event::Session(SessionEvent::ResumeFailed { status, lost }) => {
                    self.lost.extend(lost.iter().cloned());
                    out.push(Event::Session(SessionEvent::ResumeFailed { status, lost }));
                }
                Event::Closed {
                    code,
                    reason,
                    initiator,
                } => {
                    panic!("peer {} closed: {code} {reason} ({initiator:?})", self.id)
                }
                e => out.push(e),
            }
        }
        out
    }
}

/// A byte stream in each direction; `cut` drops what has not been delivered yet.
#[derive(Default)]
struct Wire {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

fn pump(now: Instant, from: &mut Session, out: &mut Vec<u8>) {
    while let Some(t) = from.poll_transmit(now, Target::Batch, 64 * 1024) {
        out.extend_from_slice(&t.into_bytes());
    }
}

/// Delivers up to `max` bytes of `buf` to `to` as one read of a byte stream.
fn deliver(now: Instant, buf: &mut Vec<u8>, to: &mut Session, max: usize) {
    let n = buf.len().min(max);
    if n > 0 {
        let chunk: Vec<u8> = buf.drain(..n).collect();
        to.handle_bytes(now, &chunk);
    }
}

/// Accepts a client's HELLO on a fresh server session; if it asks to resume `old`, `old`
/// takes the connection over. Returns the server session that now owns the wire.
fn server_accept(now: Instant, old: Option<Session>, wire: &mut Wire) -> Session {
    let mut fresh = Session::server(config(RESUME_BUFFER), now);
    let hello: Vec<u8> = std::mem::take(&mut wire.to_server);
    fresh.handle_bytes(now, &hello);
    answer_hello(now, fresh, old)
}

/// A fresh server session that got a client's HELLO: resumes `old` if the HELLO asks to (and
/// `old` agrees), else accepts as a new session (saying why a resume was refused).
fn answer_hello(now: Instant, mut fresh: Session, old: Option<Session>) -> Session {
    while fresh.poll_event().is_some() {}
    if fresh.resume_request().is_some() {
        if let Some(mut old) = old {
            match old.resume_from(&mut fresh, now) {
                Ok(()) => return old,
                Err(status) => {
                    fresh.accept_with(Bytes::new(), status);
                    return fresh;
                }
            }
        }
    }
    fresh.accept(Bytes::new());
    fresh
}

fn all_delivered(a: &Peer, b: &Peer, total: [u64; 4]) -> bool {
    (0..4).all(|i| a.received[i].len() as u64 >= total[i] && b.received[i].len() as u64 >= total[i])
}

fn check_exactly_once_in_order(p: &Peer, total: [u64; 4]) {
    for ch in Channel::ALL {
        let got = &p.received[ch.index()];
        let want: Vec<u64> = (0..total[ch.index()]).collect();
        assert_eq!(
            got, &want,
            "peer {} channel {ch}: exactly once, in order",
            p.id
        );
    }
}

/// Runs the chaos loop: `cuts` random cuts, then calm until everything arrived.
fn chaos(seed: u64, cuts: usize, total: [u64; 4]) -> (Peer, Peer, usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut now = Instant::now();
    let mut client = Peer::new(1, Session::client(config(RESUME_BUFFER), now));
    let mut wire = Wire::default();
    pump(now, &mut client.session, &mut wire.to_server);
    let mut server = Peer::new(2, server_accept(now, None, &mut wire));
    assert!(server.session.is_resumable());
    let mut cuts_done = 0;
    let mut max_replay = 0u64;
    let mut steps = 0u64;
    loop {
        steps += 1;
        assert!(
            steps < 2_000_000,
            "no progress: {:?} {:?}",
            client.received.map(|r| r.len()),
            server.received.map(|r| r.len())
        );
        now += Duration::from_micros(200);
        client.produce(total);
        server.produce(total);
        pump(now, &mut client.session, &mut wire.to_server);
        pump(now, &mut server.session, &mut wire.to_client);
        // Deliver a random amount: a byte stream reads whatever has arrived.
        let a = rng.random_range(1..40_000);
        let b = rng.random_range(1..40_000);
        deliver(now, &mut wire.to_server, &mut server.session, a);
        deliver(now, &mut wire.to_client, &mut client.session, b);
        client.events();
        server.events();
        max_replay = max_replay
            .max(client.session.replay_charge())
            .max(server.session.replay_charge());
        let cut = cuts_done < cuts && rng.random_range(0..60) == 0;
        if cut {
            cuts_done += 1;
            // The transport dies: what was not delivered is gone, at any byte.
            wire = Wire::default();
            assert!(client.session.detach(now), "client detaches");
            assert!(server.session.detach(now), "server detaches");
            client.events();
            server.events();
            loop {
                now += Duration::from_millis(rng.random_range(1..50));
                client.session.reconnect(now);
                pump(now, &mut client.session, &mut wire.to_server);
                match rng.random_range(0..6) {
                    // The new connection dies before the client's HELLO arrives.
                    0 => wire = Wire::default(),
                    // ... or after the server resumed, before its HELLO reaches the client
                    // (the client resumes again with the token it has, the spent one).
                    1 => {
                        let old =
                            std::mem::replace(&mut server.session, Session::server(config(0), now));
                        server.session = server_accept(now, Some(old), &mut wire);
                        wire = Wire::default();
                        assert!(server.session.detach(now));
                        server.events();
                    }
                    _ => break,
                }
            }
            let old = std::mem::replace(&mut server.session, Session::server(config(0), now));
            server.session = server_accept(now, Some(old), &mut wire);
            assert!(server.session.is_resumable());
        }
        if cuts_done >= cuts && all_delivered(&client, &server, total) {
            break;
        }
    }
    // A channel's replay buffer holds at most its limit, or one message more than a quarter
    // of it (wire.md §21.4).
    let biggest_bulk = size_for(Channel::Bulk, 6) as u64 + 1_000;
    assert!(
        max_replay <= 4 * (RESUME_BUFFER + biggest_bulk),
        "replay buffers held {max_replay} bytes"
    );
    (client, server, cuts_done)
}

// spec: wire.md §21.5, §21.6 — cut anywhere, resume, replay: every message exactly once, in
// order per channel, both directions, all four channels.
#[test]
fn resume_21_6_random_cuts_deliver_every_message_exactly_once_in_order() {
    let total = [300, 2_000, 600, 40];
    for seed in 0..4 {
        let (client, server, cuts) = chaos(seed, 25, total);
        assert_eq!(cuts, 25);
        assert!(
            client.resumed >= 20,
            "client resumed {} times",
            client.resumed
        );
        check_exactly_once_in_order(&client, total);
        check_exactly_once_in_order(&server, total);
        assert!(client.lost.is_empty() && server.lost.is_empty());
    }
}

fn connected(resume_client: u64, resume_server: u64) -> (Session, Session, Instant) {
    let now = Instant::now();
    let (c, s) = Session::connected_pair(config(resume_client), config(resume_server), now);
    (c, s, now)
}

/// Everything `s` has to send now, as one byte string.
fn written(now: Instant, s: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit(now, Target::Batch, usize::MAX) {
        out.extend_from_slice(&t.into_bytes());
    }
    out
}

/// The code of the CLOSE `s` sends now, if it sends one.
fn close_code(now: Instant, s: &mut Session) -> Option<ErrorCode> {
    rhizomorph_proto::frame::FrameDecoder::new(Settings::default())
        .decode_batch(Bytes::from(written(now, s)))
        .unwrap()
        .iter()
        .find_map(|f| match f {
            Frame::Close(c) => Some(c.code),
            _ => None,
        })
}

fn flush(now: Instant, from: &mut Session, to: &mut Session) -> usize {
    let mut n = 0;
    while let Some(t) = from.poll_transmit(now, Target::Batch, usize::MAX) {
        n += t.len();
        to.handle_batch(now, t.into_bytes());
    }
    n
}

/// The numbers of the messages among `events`, in delivery order.
fn numbers(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(identity(&m.payload).2),
            _ => None,
        })
        .collect()
}

fn drain(s: &mut Session) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(e) = s.poll_event() {
        if let Event::Message(m) = &e {
            s.release(m.channel, m.credit);
        }
        v.push(e);
    }
    v
}

// spec: wire.md §21.1 — resumption needs version 1.1 and RESUME_BUFFER on both sides; a 1.0
// client (or one that asks for no buffer) gets a 1.0 connection exactly as before.
#[test]
fn resume_21_1_negotiated_only_when_both_sides_want_it() {
    let (c, s, _) = connected(RESUME_BUFFER, RESUME_BUFFER);
    assert_eq!(
        (c.version(), s.version()),
        (WIRE_VERSION_1_1, WIRE_VERSION_1_1)
    );
    assert!(c.is_resumable() && s.is_resumable());
    assert_eq!(
        c.ticket().unwrap().session_id,
        s.ticket().unwrap().session_id
    );
    let (c, s, _) = connected(0, RESUME_BUFFER);
    assert_eq!(
        (c.version(), s.version()),
        (WIRE_VERSION_1_0, WIRE_VERSION_1_0)
    );
    assert!(!c.is_resumable() && !s.is_resumable());
    let (c, s, _) = connected(RESUME_BUFFER, 0);
    assert_eq!(c.version(), WIRE_VERSION_1_1);
    assert!(
        !c.is_resumable() && !s.is_resumable(),
        "a server without a buffer issues no ticket"
    );
}

// spec: wire.md §4.2.1, §19 — ACK is a 1.1 frame: on a 1.0 connection it is an unknown
// critical type, and on a 1.1 connection that is not resumable a PROTOCOL_ERROR.
#[test]
fn resume_21_3_ack_outside_a_resumable_session_is_a_connection_error() {
    let ack = {
        let mut b = bytes::BytesMut::new();
        Frame::Ack(Ack {
            channel: Channel::Rpc,
            received: 0,
        })
        .encode(&mut b)
        .unwrap();
        b.freeze()
    };
    let (_c, mut s, now) = connected(0, 0);
    s.handle_batch(now, ack.clone());
    let closed = drain(&mut s).into_iter().find_map(|e| match e {
        Event::Closed { code, .. } => Some(code),
        _ => None,
    });
    // CLOSE is queued; the code is what it carries.
    let code = closed.or_else(|| close_code(now, &mut s));
    assert_eq!(code, Some(ErrorCode::UNKNOWN_FRAME_TYPE));
    let (_c, mut s, now) = connected(RESUME_BUFFER, 0);
    s.handle_batch(now, ack);
    assert_eq!(close_code(now, &mut s), Some(ErrorCode::PROTOCOL_ERROR));
}

// spec: wire.md §21.3 — an ACK may not count messages that were never started.
#[test]
fn resume_21_3_ack_beyond_what_was_sent_is_a_protocol_error() {
    let (mut c, mut s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    c.send(
        Channel::Rpc,
        OutgoingMessage::new(RoutingHeader::new(), "x"),
    )
    .unwrap();
    flush(now, &mut c, &mut s);
    drain(&mut s);
    let mut b = bytes::BytesMut::new();
    Frame::Ack(Ack {
        channel: Channel::Rpc,
        received: 2,
    })
    .encode(&mut b)
    .unwrap();
    c.handle_batch(now, b.freeze());
    let closed = drain(&mut c)
        .into_iter()
        .any(|e| matches!(e, Event::Closed { .. }));
    let text = String::from_utf8_lossy(&written(now, &mut c)).to_string();
    assert!(
        closed || text.contains("AckOutOfRange"),
        "closed with AckOutOfRange: {text}"
    );
}

// spec: wire.md §21.3 — ACKs ride along with CREDIT and are never a frame per message: with
// resumption on, 2,000 request/reply pairs of 200 bytes cost at most 2 extra bytes per message.
#[test]
fn resume_21_3_acks_cost_at_most_two_bytes_per_small_message() {
    let mut wire_bytes = [0usize; 2];
    for (k, resume) in [0, RESUME_BUFFER].into_iter().enumerate() {
        let (mut c, mut s, now) = connected(resume, resume);
        for i in 0..2_000u64 {
            let m = OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Rpc, i, 200));
            c.send(Channel::Rpc, m).unwrap();
            wire_bytes[k] += flush(now, &mut c, &mut s);
            for e in drain(&mut s) {
                if let Event::Message(m) = e {
                    let reply = OutgoingMessage::new(RoutingHeader::new(), m.payload.clone());
                    s.send(Channel::Rpc, reply).unwrap();
                }
            }
            wire_bytes[k] += flush(now, &mut s, &mut c);
            drain(&mut c);
        }
        if resume > 0 {
            // The replay buffers stayed bounded: the ACKs did reach the senders.
            assert!(c.replay_charge() <= RESUME_BUFFER && s.replay_charge() <= RESUME_BUFFER);
        }
    }
    let extra = wire_bytes[1] as f64 - wire_bytes[0] as f64;
    let per_message = extra / 4_000.0;
    println!(
        "wire bytes off {} on {}: {per_message:.3} extra bytes per message",
        wire_bytes[0], wire_bytes[1]
    );
    assert!(per_message <= 2.0, "{per_message} extra bytes per message");
}

/// Detaches both, reconnects the client and gives its HELLO to a new server session, which
/// `old` (if any) may take over.
fn reconnect(now: Instant, c: &mut Session, old_server: Option<Session>) -> Session {
    assert!(c.detach(now));
    c.reconnect(now);
    let mut wire = Wire::default();
    pump(now, c, &mut wire.to_server);
    let mut s = server_accept(now, old_server, &mut wire);
    flush(now, &mut s, c);
    s
}

// spec: wire.md §21.6 — a server that does not know the session (it restarted) refuses it;
// the client learns exactly which of its messages may be lost, and goes on as a new session.
#[test]
fn resume_21_6_a_restarted_server_refuses_and_the_client_learns_what_may_be_lost() {
    let (mut c, mut s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    for i in 0..50u64 {
        c.send(
            Channel::Rpc,
            OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Rpc, i, 100)),
        )
        .unwrap();
    }
    // The server receives only part of what was sent: a prefix of the byte stream.
    let out = written(now, &mut c);
    s.handle_bytes(now, &out[..out.len() / 2]);
    let arrived: BTreeSet<u64> = numbers(&drain(&mut s)).into_iter().collect();
    assert!(!arrived.is_empty() && arrived.len() < 50);
    drop(s); // the server process is gone
    let mut s2 = reconnect(now, &mut c, None);
    let events = drain(&mut c);
    let (status, lost) = events
        .into_iter()
        .find_map(|e| match e {
            Event::Session(SessionEvent::ResumeFailed { status, lost }) => Some((status, lost)),
            _ => None,
        })
        .expect("ResumeFailed");
    assert_eq!(status, ResumeStatus::UnknownSession);
    let lost: BTreeSet<u64> = lost
        .iter()
        .map(|l| identity(&l.message.payload).2)
        .collect();
    // Nothing silently lost: every message that did not arrive is in the list.
    for i in 0..50u64 {
        assert!(
            arrived.contains(&i) || lost.contains(&i),
            "message {i} neither arrived nor reported"
        );
    }
    // The connection goes on, as a new resumable session.
    assert!(c.is_open() && c.is_resumable() && s2.is_resumable());
    c.send(
        Channel::Rpc,
        OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Rpc, 99, 10)),
    )
    .unwrap();
    flush(now, &mut c, &mut s2);
    let got: Vec<u64> = numbers(&drain(&mut s2));
    assert_eq!(got, vec![99]);
}

// spec: wire.md §21.7 — the token is checked (constant time) and single use: a wrong token is
// FORBIDDEN, and a token that resumed once does not resume again.
#[test]
fn resume_21_7_wrong_or_spent_tokens_are_refused() {
    let (mut c, s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    let first_token = c.ticket().unwrap().token.clone();
    let mut s = reconnect(now, &mut c, Some(s));
    drain(&mut c);
    assert!(c.is_open());
    // The client's first frame on the new connection shows it has the new token.
    c.send(
        Channel::Rpc,
        OutgoingMessage::new(RoutingHeader::new(), "after"),
    )
    .unwrap();
    flush(now, &mut c, &mut s);
    drain(&mut s);
    let second_token = c.ticket().unwrap().token.clone();
    assert_ne!(first_token, second_token, "a resume issues a new token");
    assert_eq!(s.ticket().unwrap().token, second_token);
    // An attacker replaying the first token against the detached session.
    assert!(s.detach(now));
    let mut c_wire = Wire::default();
    // A HELLO built by hand with the spent token.
    let mut hello =
        rhizomorph_proto::frame::Hello::new(&config(RESUME_BUFFER).settings, Bytes::new(), "thief");
    hello.versions = vec![WIRE_VERSION_1_1, WIRE_VERSION_1_0];
    hello.resume = Some(Box::new(rhizomorph_proto::frame::ResumeRequest {
        session_id: s.ticket().unwrap().session_id,
        token: first_token,
        received: [0; 4],
    }));
    let mut b = bytes::BytesMut::new();
    Frame::Hello(hello).encode(&mut b).unwrap();
    c_wire.to_server.extend_from_slice(&b);
    let mut fresh = Session::server(config(RESUME_BUFFER), now);
    fresh.handle_bytes(now, &c_wire.to_server);
    drain(&mut fresh);
    assert_eq!(s.resume_from(&mut fresh, now), Err(ResumeStatus::Forbidden));
    assert!(
        s.is_detached(),
        "a refused attempt leaves the session waiting for its owner"
    );
    // Its owner still resumes.
    let _s = reconnect(now, &mut c, Some(s));
    assert!(drain(&mut c)
        .iter()
        .any(|e| matches!(e, Event::Session(SessionEvent::Resumed { .. }))));
}

// spec: wire.md §21.5 — a detached session waits its resume timeout, then gives up: its
// application learns what may be lost, and the session closes.
#[test]
fn resume_21_5_a_detached_session_expires_and_names_what_may_be_lost() {
    let (mut c, mut s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    for i in 0..5u64 {
        s.send(
            Channel::Stream,
            OutgoingMessage::new(RoutingHeader::new(), payload(2, Channel::Stream, i, 50)),
        )
        .unwrap();
    }
    while s.poll_transmit(now, Target::Batch, usize::MAX).is_some() {} // sent, never arrives
    assert!(s.replay_charge() > 0);
    assert!(s.detach(now));
    let deadline = s.poll_timeout().expect("a detached session has a deadline");
    assert_eq!(deadline, now + Duration::from_secs(120));
    s.handle_timeout(now + Duration::from_secs(119));
    assert!(s.is_detached());
    s.handle_timeout(deadline);
    let events = drain(&mut s);
    let lost = events
        .iter()
        .find_map(|e| match e {
            Event::Session(SessionEvent::ResumeFailed {
                status: ResumeStatus::Expired,
                lost,
            }) => Some(lost.len()),
            _ => None,
        })
        .expect("ResumeFailed Expired");
    assert_eq!(lost, 5);
    assert!(s.is_closed());
    assert_eq!(s.replay_charge(), 0, "the replay buffer is released");
    let _ = &mut c;
}

// spec: wire.md §21.4 — a sender whose replay buffer is full waits (backpressure): nothing is
// dropped, and the ACKs that free it arrive without any other traffic.
#[test]
fn resume_21_4_a_full_replay_buffer_holds_the_sender_back_until_acknowledged() {
    let (mut c, mut s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    // 40 messages of 20 KB: 800 KB, three times the buffer.
    for i in 0..40u64 {
        c.send(
            Channel::Stream,
            OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Stream, i, 20_000)),
        )
        .unwrap();
    }
    let first = written(now, &mut c);
    assert!(
        c.replay_charge() <= RESUME_BUFFER,
        "held {}",
        c.replay_charge()
    );
    assert!(c.queued_bytes(Channel::Stream) > 0, "the rest waits");
    s.handle_batch(now, Bytes::from(first));
    let mut got = 0;
    for _ in 0..100 {
        got += drain(&mut s)
            .iter()
            .filter(|e| matches!(e, Event::Message(_)))
            .count();
        flush(now, &mut s, &mut c);
        drain(&mut c);
        flush(now, &mut c, &mut s);
        if got == 40 {
            break;
        }
    }
    assert_eq!(got, 40);
}

// spec: wire.md §21.6 — a message this side aborted is replayed as an abort, keeping the
// sequence numbers of the messages after it in step.
#[test]
fn resume_21_6_an_aborted_message_is_replayed_as_an_abort() {
    let (mut c, s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    let mut s = s;
    let big = c
        .send(
            Channel::Bulk,
            OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Bulk, 0, 300_000)),
        )
        .unwrap();
    // Part of it leaves, then the application cancels it, and sends another.
    let t = c.poll_transmit(now, Target::Batch, 32 * 1024).unwrap();
    drop(t); // lost with the connection
    c.cancel(Channel::Bulk, big);
    c.send(
        Channel::Bulk,
        OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Bulk, 1, 100)),
    )
    .unwrap();
    while c.poll_transmit(now, Target::Batch, usize::MAX).is_some() {} // lost too
    drain(&mut c);
    drain(&mut s);
    let mut s2 = reconnect(now, &mut c, Some(s));
    flush(now, &mut c, &mut s2);
    let events = drain(&mut s2);
    let got: Vec<u64> = numbers(&events);
    assert_eq!(
        got,
        vec![1],
        "the aborted message is not delivered, the next one is"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::MessageAborted { sequence: 0, .. })));
    assert!(s2.is_open());
}

// spec: wire.md §21.6 — schema bindings are per connection: they are sent again before the
// replay, so a replayed rkyv message still names a bound schema.
#[test]
fn resume_21_6_schema_bindings_are_sent_again() {
    let (mut c, s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    let binding = rhizomorph_proto::payload::SchemaBinding {
        name: "test::Reading@1".into(),
        layout_hash: 0x1234,
    };
    let m = OutgoingMessage::new(RoutingHeader::new(), Bytes::from_static(&[0u8; 16]))
        .with_schema(binding);
    c.send(Channel::Rpc, m).unwrap();
    while c.poll_transmit(now, Target::Batch, usize::MAX).is_some() {} // lost
    let mut s2 = reconnect(now, &mut c, Some(s));
    flush(now, &mut c, &mut s2);
    let events = drain(&mut s2);
    let m = events
        .iter()
        .find_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .expect("replayed");
    assert_eq!(
        m.schema.as_ref().map(|b| b.name.as_str()),
        Some("test::Reading@1")
    );
    assert!(m.error.is_none());
}

// A flood of bogus resume requests costs the server nothing: each is refused from a lookup
// (here: against the one detached session) and no state is kept for it.
#[test]
fn resume_21_7_bogus_requests_leave_the_detached_session_untouched() {
    let (_c, mut s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    assert!(s.detach(now));
    let id = s.ticket().unwrap().session_id;
    let mut counts: HashMap<ResumeStatus, usize> = HashMap::new();
    for i in 0..1_000u64 {
        let mut hello = rhizomorph_proto::frame::Hello::new(
            &config(RESUME_BUFFER).settings,
            Bytes::new(),
            "bogus",
        );
        hello.versions = vec![WIRE_VERSION_1_1];
        hello.resume = Some(Box::new(rhizomorph_proto::frame::ResumeRequest {
            session_id: if i % 2 == 0 { id } else { [7; 16] },
            token: Bytes::from(i.to_be_bytes().repeat(4)),
            received: [0; 4],
        }));
        let mut b = bytes::BytesMut::new();
        Frame::Hello(hello).encode(&mut b).unwrap();
        let mut fresh = Session::server(config(RESUME_BUFFER), now);
        fresh.handle_batch(now, b.freeze());
        drain(&mut fresh);
        let status = s.resume_from(&mut fresh, now).unwrap_err();
        *counts.entry(status).or_default() += 1;
    }
    assert_eq!(counts.get(&ResumeStatus::Forbidden), Some(&1_000));
    assert!(s.is_detached());
}

/// Per-channel streams (QUIC framing, wire.md §17): one byte stream per channel and direction.
#[derive(Default)]
struct Streams {
    to_server: [Vec<u8>; 4],
    to_client: [Vec<u8>; 4],
}

fn config_streams(resume: u64) -> SessionConfig {
    config(resume).with_framing(Framing::PerChannelStreams)
}

fn pump_streams(now: Instant, from: &mut Session, out: &mut [Vec<u8>; 4]) {
    for ch in Channel::ALL {
        while let Some(t) = from.poll_transmit(now, Target::Stream(ch), 64 * 1024) {
            out[ch.index()].extend_from_slice(&t.into_bytes());
        }
    }
}

fn deliver_streams(
    now: Instant,
    bufs: &mut [Vec<u8>; 4],
    to: &mut Session,
    rng: &mut rand::rngs::StdRng,
) {
    for ch in Channel::ALL {
        let buf = &mut bufs[ch.index()];
        if buf.is_empty() || !to.can_read(ch) {
            continue;
        }
        let n = buf.len().min(rng.random_range(1..20_000));
        let chunk: Vec<u8> = buf.drain(..n).collect();
        to.handle_stream(now, ch, Bytes::from(chunk));
    }
}

fn server_accept_streams(now: Instant, old: Option<Session>, wire: &mut Streams) -> Session {
    let mut fresh = Session::server(config_streams(RESUME_BUFFER), now);
    let hello = std::mem::take(&mut wire.to_server[0]);
    fresh.handle_stream(now, Channel::Control, Bytes::from(hello));
    answer_hello(now, fresh, old)
}

// spec: wire.md §21.6, §17 — the same guarantee with per-channel streams (QUIC's framing): the
// streams of a cut connection are gone, each at its own point; a new connection's streams
// replay what the other side did not finish.
#[test]
fn resume_21_6_per_channel_streams_cut_at_random_deliver_exactly_once() {
    let total = [200, 1_000, 300, 20];
    for seed in 10..13 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut now = Instant::now();
        let mut client = Peer::new(1, Session::client(config_streams(RESUME_BUFFER), now));
        let mut wire = Streams::default();
        pump_streams(now, &mut client.session, &mut wire.to_server);
        let mut server = Peer::new(2, server_accept_streams(now, None, &mut wire));
        assert!(server.session.is_resumable());
        let (mut cuts, mut steps) = (0, 0u64);
        loop {
            steps += 1;
            assert!(steps < 2_000_000, "no progress");
            now += Duration::from_micros(200);
            client.produce(total);
            server.produce(total);
            pump_streams(now, &mut client.session, &mut wire.to_server);
            pump_streams(now, &mut server.session, &mut wire.to_client);
            deliver_streams(now, &mut wire.to_server, &mut server.session, &mut rng);
            deliver_streams(now, &mut wire.to_client, &mut client.session, &mut rng);
            client.events();
            server.events();
            if cuts < 15 && rng.random_range(0..60) == 0 {
                cuts += 1;
                wire = Streams::default();
                assert!(client.session.detach(now));
                assert!(server.session.detach(now));
                client.events();
                server.events();
                client.session.reconnect(now);
                pump_streams(now, &mut client.session, &mut wire.to_server);
                let old = std::mem::replace(&mut server.session, Session::server(config(0), now));
                server.session = server_accept_streams(now, Some(old), &mut wire);
            }
            if cuts >= 15 && all_delivered(&client, &server, total) {
                break;
            }
        }
        // The last resume may still be in flight when everything has arrived.
        assert!(
            client.resumed >= 14,
            "resumed {} lost {}",
            client.resumed,
            client.lost.len()
        );
        assert!(client.lost.is_empty() && server.lost.is_empty());
        check_exactly_once_in_order(&client, total);
        check_exactly_once_in_order(&server, total);
    }
}

// spec: wire.md §21.6.6 — a new transport whose server never answers the resume HELLO: the
// HELLO timeout detaches the session again (it does not close it), within its original limit.
#[test]
fn resume_21_6_6_a_resume_hello_that_times_out_detaches_again() {
    let (mut c, _s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    assert!(c.detach(now));
    let deadline = c.resume_deadline().unwrap();
    c.reconnect(now + Duration::from_secs(1));
    assert!(c.is_resuming());
    drain(&mut c);
    c.handle_timeout(now + Duration::from_secs(12)); // past the 10 s HELLO timeout
    let events = drain(&mut c);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Session(SessionEvent::Detached))),
        "{events:?}"
    );
    assert!(c.is_detached() && !c.is_closed());
    assert_eq!(
        c.resume_deadline(),
        Some(deadline),
        "the limit counts from the first loss"
    );
    c.reconnect(now + Duration::from_secs(13));
    assert!(c.is_resuming());
}

// spec: wire.md §21.1.4 — an application that closes (or drains) a detached session ends it
// at once: there is no transport to drain over, and nobody else would close it.
#[test]
fn resume_21_1_4_closing_a_detached_session_ends_it() {
    let (_c, mut s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    s.send(
        Channel::Rpc,
        OutgoingMessage::new(RoutingHeader::new(), payload(2, Channel::Rpc, 0, 50)),
    )
    .unwrap();
    let _ = written(now, &mut s); // sent, never acknowledged
    assert!(s.detach(now));
    drain(&mut s);
    s.goaway(ErrorCode::NO_ERROR, "closing");
    assert!(s.is_closed());
    let events = drain(&mut s);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Session(SessionEvent::ResumeFailed { lost, .. }) if lost.len() == 1
    )));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Closed { code, .. } if *code == ErrorCode::NO_ERROR)));
}

// spec: wire.md §21.6.5 — after a successful resume queued messages again, the connection is
// lost before they go out again, and the next resume is refused: the peer's count said it never
// finished them, so they are not reported lost and go out on the new session, each exactly
// once; the replayed abort marker that had not gone out is dropped, not sent as a new message.
#[test]
fn resume_21_6_5_a_refusal_after_an_unfinished_replay_sends_the_requeued_messages_once() {
    let (mut c, mut s, now) = connected(RESUME_BUFFER, RESUME_BUFFER);
    // 20 rpc messages and a bulk one go out in one write (rpc first), then the bulk message
    // is aborted part-way (an abort marker in the replay buffer). The server reads only part
    // of the rpc messages; the CANCEL and its ACKs are lost with the connection.
    let big = c
        .send(
            Channel::Bulk,
            OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Bulk, 0, 300_000)),
        )
        .unwrap();
    for i in 0..20u64 {
        c.send(
            Channel::Rpc,
            OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Rpc, i, 100)),
        )
        .unwrap();
    }
    let out = c.poll_transmit(now, Target::Batch, 32 * 1024).unwrap();
    c.cancel(Channel::Bulk, big);
    written(now, &mut c);
    s.handle_bytes(now, &out.into_bytes()[..1_200]);
    let arrived: BTreeSet<u64> = drain(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) if m.channel == Channel::Rpc => Some(identity(&m.payload).2),
            _ => None,
        })
        .collect();
    assert!(!arrived.is_empty() && arrived.len() < 20, "{arrived:?}");
    drain(&mut c);

    // The resume succeeds: the client queues the rest (and the abort marker) again, but the
    // new connection is lost before it writes any of it.
    let s = reconnect(now, &mut c, Some(s));
    assert!(drain(&mut c)
        .iter()
        .any(|e| matches!(e, Event::Session(SessionEvent::Resumed { .. }))));
    drop(s); // and then the server process is gone

    let mut s2 = reconnect(now, &mut c, None);
    let lost = drain(&mut c)
        .into_iter()
        .find_map(|e| match e {
            Event::Session(SessionEvent::ResumeFailed { lost, .. }) => Some(lost),
            _ => None,
        })
        .expect("ResumeFailed");
    assert!(
        lost.is_empty(),
        "nothing went out since the count: {lost:?}"
    );
    assert_eq!(
        c.queued_charge(Channel::Bulk),
        0,
        "the abort marker is gone"
    );

    // The new session carries the messages that never arrived, once each, then a new one.
    c.send(
        Channel::Rpc,
        OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Rpc, 99, 10)),
    )
    .unwrap();
    flush(now, &mut c, &mut s2);
    let events = drain(&mut s2);
    let mut expected: Vec<u64> = (0..20).filter(|i| !arrived.contains(i)).collect();
    expected.push(99);
    assert_eq!(numbers(&events), expected);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::MessageAborted { .. })),
        "no abort marker on the new session"
    );
}

// spec: wire.md §21.4.2, §17 — with per-channel streams, a message that the replay buffer's
// limit holds back is not output: `has_channel_output` must agree with `poll_transmit`, or a
// driver that writes while it says so spins (the QUIC driver did, at 100% CPU, stop 36).
#[test]
fn resume_21_4_a_stream_held_back_by_the_replay_limit_has_no_output() {
    let now = Instant::now();
    let mut client = Session::client(config_streams(RESUME_BUFFER), now);
    let mut wire = Streams::default();
    pump_streams(now, &mut client, &mut wire.to_server);
    let mut server = server_accept_streams(now, None, &mut wire);
    pump_streams(now, &mut server, &mut wire.to_client);
    client.handle_stream(
        now,
        Channel::Control,
        Bytes::from(std::mem::take(&mut wire.to_client[0])),
    );
    while client.poll_event().is_some() {}
    assert!(client.is_open() && client.is_resumable());
    // Two messages of 60% of the buffer each: the first starts, the second waits for an ACK.
    let big = (RESUME_BUFFER as usize) * 6 / 10;
    for n in 0..2 {
        let m = OutgoingMessage::new(RoutingHeader::new(), payload(1, Channel::Bulk, n, big));
        client.send(Channel::Bulk, m).unwrap();
    }
    let mut sent = 0;
    while let Some(t) = client.poll_transmit(now, Target::Stream(Channel::Bulk), 64 * 1024) {
        sent += t.into_bytes().len();
    }
    assert!(
        sent >= big && sent < 2 * big,
        "only the first message left: {sent} bytes"
    );
    assert!(
        client.queued_bytes(Channel::Bulk) >= big as u64,
        "the second one waits"
    );
    assert!(
        !client.has_channel_output(Channel::Bulk),
        "nothing can leave until the peer acknowledges"
    );
}
