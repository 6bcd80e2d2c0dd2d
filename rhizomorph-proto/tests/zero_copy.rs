//! Issue 5: receiving a 2 MB typed array does not copy the array. A counting allocator records
//! every allocation the receiving session makes from the moment the bytes arrive to the
//! moment the application reads the array as `&[f64]`.

use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use rhizomorph_proto::frame::{Channel, PayloadEncoding, Settings};
use rhizomorph_proto::header::RoutingHeader;
use rhizomorph_proto::payload::{TypedArray, TypedArrayView};
use rhizomorph_proto::session::{Event, OutgoingMessage, Session, SessionConfig};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{measure, Counting};
use rhizomorph_proto::session::{Target, Transmit};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Sends a 2 MB f64 array from one session to another; returns the number and total size of
/// allocations of 1 MiB or more made while receiving and reading it, and whether the
/// `&[f64]` was borrowed in place.
fn receive_array(chunk_size: u64) -> (usize, usize, bool) {
    let now = Instant::now();
    let big = Settings::default()
        .with_max_frame_payload(4 << 20)
        .with_max_batch_size(8 << 20)
        .with_initial_channel_window(8 << 20)
        .with_initial_connection_window(8 << 20);
    let sender_cfg = SessionConfig::default()
        .with_chunk_size(chunk_size)
        .with_max_batch(8 << 20);
    let receiver_cfg = SessionConfig::default().with_settings(big);
    let (mut tx, mut rx) = Session::connected_pair(sender_cfg, receiver_cfg, now);
    let data: Vec<f64> = (0..262_144).map(|i| i as f64).collect();
    let payload = TypedArray::encode(&data, &[]).unwrap();
    let message = OutgoingMessage::new(RoutingHeader::new().with("to", "x"), payload)
        .with_encoding(PayloadEncoding::TypedArray);
    tx.send(Channel::Bulk, message).unwrap();
    // What the transport received: allocated before counting starts.
    let batches: Vec<Bytes> = std::iter::from_fn(|| {
        tx.poll_transmit(now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
    })
    .collect();

    let ((borrowed, sum), seen) = measure(|| {
        for b in batches {
            rx.handle_batch(now, b);
        }
        let mut borrowed = false;
        let mut sum = 0.0;
        while let Some(e) = rx.poll_event() {
            if let Event::Message(m) = e {
                let view = TypedArrayView::parse(m.payload).unwrap();
                let s = view.as_slice::<f64>().unwrap();
                borrowed = matches!(s, Cow::Borrowed(_));
                sum = s.iter().sum();
            }
        }
        (borrowed, sum)
    });
    assert_eq!(sum, data.iter().sum::<f64>());
    (seen.big, seen.big_bytes, borrowed)
}

#[test]
fn a_2mb_typed_array_in_one_frame_is_read_where_it_arrived() {
    let (count, bytes, borrowed) = receive_array(4 << 20);
    assert_eq!(
        (count, bytes),
        (0, 0),
        "no allocation of the array's size on the receive path"
    );
    assert!(borrowed, "&[f64] borrowed from the received bytes");
}

#[test]
fn a_chunked_2mb_typed_array_is_reassembled_once_and_not_copied_again() {
    // 16 KiB chunks: the chunks are joined into one buffer (wire.md §8.3), the only copy.
    let (count, bytes, borrowed) = receive_array(16 << 10);
    assert_eq!(count, 1, "one reassembly buffer");
    assert!(bytes < (2 << 20) + 4096, "{bytes} bytes");
    assert!(borrowed, "&[f64] borrowed from the reassembly buffer");
}
