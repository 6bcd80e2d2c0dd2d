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
        got[0].error,
        Some(PayloadError::UnknownSchemaId { schema_id: 3 })
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
