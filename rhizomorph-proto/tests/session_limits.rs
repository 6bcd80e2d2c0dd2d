//! Per-message failures and message-count bounds in the session (wire.md §6.1.1, §9.6.1):
//! what one message gets wrong fails that message only; a sender refuses at once what its peer
//! would refuse; empty messages are charged against the send buffer and counted by the
//! receiver, so a flood of them is bounded like one of large messages.

mod common;

use bytes::Bytes;
use common::{Side, Sim};
use rhizomorph_proto::frame::{Channel, Codec, Compression, PayloadEncoding, Settings, Shuffle};
use rhizomorph_proto::header::RoutingHeader;
use rhizomorph_proto::payload::PayloadError;
use rhizomorph_proto::session::{
    Event, OutgoingMessage, SendError, SessionConfig, QUEUED_MESSAGE_OVERHEAD,
};

fn to(target: &str) -> RoutingHeader {
    RoutingHeader::new().with("to", target.to_string())
}

fn messages(events: Vec<(Side, Event)>, side: Side) -> Vec<rhizomorph_proto::session::Message> {
    events
        .into_iter()
        .filter_map(|(s, e)| match e {
            Event::Message(m) if s == side => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn session_6_1_1_a_compressed_message_over_the_peers_limit_is_refused_at_send() {
    let small = SessionConfig::default()
        .with_settings(Settings::default().with_max_message_size(64 * 1024));
    let mut sim = Sim::new(SessionConfig::default(), small);
    sim.connect();
    let m = OutgoingMessage {
        compression: Compression::Compressed {
            codec: Codec::Lz4,
            shuffle: Shuffle::None,
            uncompressed_len: 100_000,
        },
        ..OutgoingMessage::new(to("x"), Bytes::from_static(&[0; 600]))
    };
    // 600 bytes on the wire, 100,000 once decompressed: the peer would refuse it (§5.3.3).
    assert_eq!(
        sim.client.send(Channel::Bulk, m),
        Err(SendError::MessageTooLarge {
            len: 100_000,
            max: 64 * 1024
        })
    );
    assert!(sim.client.is_open());
}

#[test]
fn session_11_2_4_an_unbound_schema_id_fails_that_message_only() {
    let mut sim = Sim::new(SessionConfig::default(), SessionConfig::default());
    sim.connect();
    let unbound = OutgoingMessage::new(to("x"), Bytes::from_static(&[0; 16]))
        .with_encoding(PayloadEncoding::Rkyv { schema_id: 3 });
    sim.client.send(Channel::Rpc, unbound).unwrap();
    sim.client
        .send(Channel::Rpc, OutgoingMessage::new(to("x"), "fine"))
        .unwrap();
    let got = messages(sim.step_now(), Side::Server);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].error.as_deref(),
        Some(&PayloadError::UnknownSchemaId { schema_id: 3 })
    );
    assert_eq!(got[1].error, None);
    assert_eq!(&got[1].payload[..], b"fine");
    assert!(sim.server.is_open() && sim.client.is_open());
}

#[test]
fn session_9_6_1_queued_empty_messages_are_charged_per_message() {
    let mut sim = Sim::new(SessionConfig::default(), SessionConfig::default());
    sim.connect();
    // Before the first transmit, everything queued is charged.
    for _ in 0..100 {
        sim.client
            .send(Channel::Rpc, OutgoingMessage::new(to("x"), Bytes::new()))
            .unwrap();
    }
    let per = to("x").list_size() as u64 + QUEUED_MESSAGE_OVERHEAD;
    assert_eq!(sim.client.queued_bytes(Channel::Rpc), 0, "no payload bytes");
    assert_eq!(sim.client.queued_charge(Channel::Rpc), 100 * per);
    let got = messages(sim.step_now(), Side::Server);
    assert_eq!(got.len(), 100);
    assert_eq!(
        sim.client.queued_charge(Channel::Rpc),
        0,
        "all charges returned"
    );
}

#[test]
fn session_9_6_1_a_receiver_stops_reading_at_its_most_held_messages() {
    let server = SessionConfig::default().with_max_held_messages(50);
    let mut sim = Sim::new(SessionConfig::default(), server);
    sim.connect();
    for _ in 0..200 {
        sim.client
            .send(Channel::Stream, OutgoingMessage::new(to("x"), Bytes::new()))
            .unwrap();
    }
    let got = messages(sim.step_now(), Side::Server);
    // The windows (bytes) would let all 200 through; the count says stop reading at 50.
    assert_eq!(got.len(), 200);
    assert_eq!(sim.server.held_messages(), 200);
    assert!(!sim.server.wants_read());
    assert!(!sim.server.can_read(Channel::Stream));
    assert!(
        sim.server.can_read(Channel::Rpc),
        "per channel over streams"
    );
    for m in &got[..151] {
        sim.server.release(m.channel, m.credit);
    }
    assert_eq!(sim.server.held_messages(), 49);
    assert!(sim.server.wants_read());
    assert!(sim.server.can_read(Channel::Stream));
}

/// A peer that announces a small `MAX_FRAME_PAYLOAD` gets every message that fits its other
/// limits, chunked to its frame size, whatever the header's share of the first frame
/// (wire.md §8.1, §9.5.1): before, a 1,019-byte echo at 1,024 never arrived, and no error said so.
#[test]
fn session_8_1_messages_reach_a_peer_with_a_small_max_frame_payload() {
    for (frame, payload_len, header_len) in [
        (1024u64, 1019usize, 10usize),
        (1024, 1024, 10),
        (1024, 5000, 900),
        (2048, 3000, 1100),
        (2048, 3000, 1990),
    ] {
        let small = SessionConfig::default()
            .with_settings(Settings::default().with_max_frame_payload(frame));
        let mut sim = Sim::new(small, SessionConfig::default());
        sim.connect();
        let header = RoutingHeader::new()
            .with("to", "x")
            .with("pad", "p".repeat(header_len));
        let m = OutgoingMessage::new(header, Bytes::from(vec![7u8; payload_len]));
        match sim.server.send(Channel::Rpc, m) {
            Ok(_) => {
                let got = messages(sim.advance(std::time::Duration::from_secs(1)), Side::Client);
                assert_eq!(
                    got.len(),
                    1,
                    "frame {frame}, payload {payload_len}, header {header_len}: not delivered"
                );
                assert_eq!(got[0].payload.len(), payload_len);
            }
            // A header that cannot fit the first frame is refused at send, never left waiting.
            Err(e) => assert!(
                matches!(e, SendError::HeaderTooLarge { .. }),
                "frame {frame}, header {header_len}: {e}"
            ),
        }
    }
}

/// Messages under reassembly are bounded by the connection's budget and a shared one
/// (wire.md §8.3.1): a message that would exceed either is refused alone with CANCEL
/// (`LIMIT_EXCEEDED`); the sender learns it, and everything else goes on.
#[test]
fn session_8_3_1_a_message_over_the_reassembly_budget_is_refused_alone() {
    use rhizomorph_proto::frame::ErrorCode;
    use rhizomorph_proto::session::ReassemblyBudget;
    let shared = ReassemblyBudget::new(3 << 20);
    let server = SessionConfig::default()
        .with_max_reassembly(2 << 20)
        .with_shared_reassembly(shared.clone());
    // A link of 50 MB/s and 1 ms: the CANCEL reaches the sender while it is still sending.
    let link = Some(50e6);
    let mut sim = Sim::with_links(
        SessionConfig::default(),
        server,
        link,
        std::time::Duration::from_millis(1),
        256 * 1024,
    );
    sim.connect();
    // 1.5 MiB on stream and 1.5 MiB on bulk at once: 3 MiB under reassembly, over the
    // connection's 2 MiB. One of them is refused; the other arrives, and so does an rpc.
    let a = Bytes::from(vec![1u8; 3 << 19]);
    let b = Bytes::from(vec![2u8; 3 << 19]);
    sim.client
        .send(Channel::Stream, OutgoingMessage::new(to("x"), a.clone()))
        .unwrap();
    sim.client
        .send(Channel::Bulk, OutgoingMessage::new(to("x"), b.clone()))
        .unwrap();
    sim.client
        .send(Channel::Rpc, OutgoingMessage::new(to("x"), "small"))
        .unwrap();
    let events = sim.advance(std::time::Duration::from_secs(2));
    let refused: Vec<_> = events
        .iter()
        .filter_map(|(s, e)| match e {
            Event::MessageRefused { channel, code, .. } if *s == Side::Server => {
                Some((*channel, *code))
            }
            _ => None,
        })
        .collect();
    let failed: Vec<_> = events
        .iter()
        .filter_map(|(s, e)| match e {
            Event::SendFailed { channel, code, .. } if *s == Side::Client => {
                Some((*channel, *code))
            }
            _ => None,
        })
        .collect();
    let got = messages(events, Side::Server);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].1, ErrorCode::LIMIT_EXCEEDED);
    assert_eq!(failed, refused, "the sender learns which, with the code");
    assert_eq!(got.len(), 2, "the other large message and the rpc arrive");
    assert!(got.iter().any(|m| &m.payload[..] == b"small"));
    assert!(sim.server.is_open() && sim.client.is_open());
    // Nothing stays reserved once the messages are done.
    assert_eq!(shared.used(), 0);
}
