//! Forwarding a legacy message (legacy.md §L5) reads and rewrites its header only: the payload
//! is neither decoded nor copied. Counted with a counting allocator (the largest allocation
//! while a 4 MiB message is decoded, re-addressed and encoded for the next hop stays far below
//! the payload's size, and the outgoing payload is the received buffer).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{measure, Counting};

use bytes::Bytes;
use rhizomorph_proto::legacy::{self, Identity, LegacyLimits};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn captured_call(payload_len: usize) -> Bytes {
    let main = rmpv::Value::Map(vec![
        ("type".into(), "method".into()),
        ("from".into(), "ws-a/caller".into()),
        ("to".into(), "provider".into()),
        ("method".into(), "services.echo-svc.echo".into()),
        ("session".into(), "Eau67piJsNV9isfrDQdRUo".into()),
    ]);
    let extra = rmpv::Value::Map(vec![(
        "args".into(),
        rmpv::Value::Array(vec![rmpv::Value::Binary(vec![0xab; payload_len])]),
    )]);
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &main).unwrap();
    rmpv::encode::write_value(&mut buf, &extra).unwrap();
    Bytes::from(buf)
}

#[test]
fn l5_forwarding_a_4_mib_legacy_message_neither_decodes_nor_copies_its_payload() {
    let received = captured_call(4 << 20);
    let sender = Identity::anonymous("ws-a", "caller");
    let limits = LegacyLimits::default();
    let (encoded, seen) = measure(|| {
        let message = legacy::decode(received.clone(), &limits).unwrap();
        let routed = legacy::rewrite(&message.header, &sender).unwrap();
        assert_eq!(routed.target, "ws-a/provider");
        legacy::encode_message(&routed.header, message.payload, &limits).unwrap()
    });
    let tail = encoded
        .tail
        .expect("a large payload stays a separate buffer");
    // The outgoing payload is the received bytes, in place.
    assert_eq!(
        tail.as_ptr(),
        received[received.len() - tail.len()..].as_ptr()
    );
    assert!(
        seen.largest < 16 * 1024,
        "largest allocation while forwarding: {} bytes",
        seen.largest
    );
    assert_eq!(seen.big, 0);
    // The new header carries the sender's identity (user info ~300 bytes), nothing else grew.
    assert!(
        encoded.head.len() < 1024,
        "header of {} bytes",
        encoded.head.len()
    );
}

#[test]
fn l5_small_payloads_are_copied_once_behind_the_header() {
    let received = captured_call(200);
    let sender = Identity::anonymous("ws-a", "caller");
    let limits = LegacyLimits::default();
    let message = legacy::decode(received.clone(), &limits).unwrap();
    let payload = message.payload.clone();
    let routed = legacy::rewrite(&message.header, &sender).unwrap();
    let encoded = legacy::encode_message(&routed.header, message.payload, &limits).unwrap();
    assert!(encoded.tail.is_none());
    assert!(encoded.head.ends_with(&payload));
}
