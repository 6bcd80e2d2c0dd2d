//! wire.md §2.4, §18: a receiver never allocates more than its limits allow, whatever a frame
//! declares. A counting allocator records the largest single allocation made while decoding
//! hostile inputs that declare huge lengths and counts.

use bytes::{Bytes, BytesMut};
use rhizomorph_proto::frame::{ErrorCode, FrameDecoder, Settings};
use rhizomorph_proto::hex::parse_hex;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{measure, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Decodes `hex` both as a stream and as one batch; returns the largest allocation made and
/// the error code the batch decode produced.
fn largest_allocation(hex: &str, limits: Settings) -> (usize, Option<ErrorCode>) {
    let bytes = parse_hex(hex).unwrap();
    let decoder = FrameDecoder::new(limits);
    let mut stream = BytesMut::from(&bytes[..]);
    let batch = Bytes::from(bytes);
    let (code, seen) = measure(|| {
        while let Ok(Some(_)) = decoder.decode(&mut stream) {}
        decoder.decode_batch(batch).err().map(|e| e.code())
    });
    (seen.largest, code)
}

#[test]
fn limits_2_4_hostile_declarations_never_allocate_what_they_declare() {
    let limits = Settings::default();
    let cases = [
        // A MESSAGE declaring a 4 GiB frame payload (§4.1.1).
        ("0200c000000100000000", ErrorCode::FRAME_SIZE_ERROR),
        // Nine 0xFF bytes as a length: one 8-byte varint of 2^62 − 1 (§2.2.1).
        ("0200ffffffffffffffffff", ErrorCode::FRAME_SIZE_ERROR),
        // A first MESSAGE chunk declaring a 1 GiB message (§5.3.2).
        ("02010a01c00000004000000000", ErrorCode::MESSAGE_TOO_LARGE),
        // A 16-byte lz4 message declaring 1 GiB uncompressed: a decompression bomb (§5.3.3).
        (
            "02031d 01 10 00 01 c000000040000000 00 00000000000000000000000000000000",
            ErrorCode::MESSAGE_TOO_LARGE,
        ),
        // A HELLO declaring 2^62 − 1 versions (§5.2).
        ("010008 ffffffffffffffff", ErrorCode::LIMIT_EXCEEDED),
        // A HELLO declaring a 1 GiB token (§5.2).
        ("010008 01 4100 00 bfffffff", ErrorCode::LIMIT_EXCEEDED),
        // A CLOSE whose reason declares 1 GiB (§5.9).
        ("090005 01 bfffffff", ErrorCode::LIMIT_EXCEEDED),
    ];
    for (hex, code) in cases {
        let (largest, got) = largest_allocation(hex, limits);
        assert_eq!(got, Some(code), "{hex}");
        // Nothing close to what was declared: at most a few bytes of bookkeeping.
        assert!(largest <= 1024, "{hex}: allocated {largest} bytes");
    }
}

#[test]
fn limits_4_3_1_a_partial_frame_buffers_at_most_the_checked_length() {
    // A PADDING frame announcing 65,536 bytes (the default maximum) with only its header here:
    // the decoder may reserve room for that frame, and never more.
    let (largest, _) = largest_allocation("0000 80010000", Settings::default());
    assert!(largest <= 65_536 + 10 + 64, "reserved {largest} bytes");
}
