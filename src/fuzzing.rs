//! Fuzz harness bodies, shared by the cargo-fuzz targets in `fuzz/` and by the regression
//! test that replays every saved crash input (`tests/fuzz_regressions.rs`).
//!
//! Owns the oracles the fuzzer checks beyond "no panic": every frame that decodes re-encodes
//! and decodes to itself. Never used by the library itself.

use bytes::{Bytes, BytesMut};

use crate::frame::{Frame, FrameDecoder, FrameHeader, FrameType, Settings};

/// Limits chosen by the input's first byte, so the fuzzer explores small and default limits.
fn limits_for(selector: u8) -> Settings {
    match selector % 3 {
        0 => Settings::default(),
        1 => Settings::default()
            .with_max_frame_payload(1_024)
            .with_max_message_size(1_024)
            .with_max_header_list_size(64)
            .with_schema_cache_size(0)
            .with_compression(0),
        _ => Settings::default()
            .with_max_frame_payload(16_777_215)
            .with_schema_cache_size(65_536),
    }
}

/// Re-encodes a decoded frame and checks that it decodes to itself.
fn check_round_trip(frame: &Frame, decoder: &FrameDecoder) {
    let mut wire = BytesMut::new();
    // A frame the decoder accepted is within every bound, so encoding it cannot fail.
    frame.encode(&mut wire).expect("a decoded frame re-encodes");
    let again = decoder
        .decode(&mut wire)
        .expect("a re-encoded frame decodes");
    assert_eq!(again.as_ref(), Some(frame), "re-encoded frame differs");
    assert!(wire.is_empty(), "re-encoded frame left bytes");
}

/// The `frame_decoder` target: the first byte picks limits and a split point; the rest is a
/// byte stream decoded in two pieces and as one WebSocket batch, which must agree.
pub fn frame_decoder(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let decoder = FrameDecoder::new(limits_for(selector));

    let mut streamed = Vec::new();
    let split = (selector as usize * 7) % (rest.len() + 1);
    let mut buf = BytesMut::from(&rest[..split]);
    let mut stream_error = None;
    for piece in [&rest[split..], &[][..]] {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => streamed.push(frame),
                Ok(None) => break,
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            }
        }
        if stream_error.is_some() {
            break;
        }
        buf.extend_from_slice(piece);
    }

    match decoder.decode_batch(Bytes::copy_from_slice(rest)) {
        Ok(frames) => {
            assert!(
                stream_error.is_none(),
                "batch decoded but stream failed: {stream_error:?}"
            );
            assert_eq!(frames, streamed, "batch and stream disagree");
            for f in &frames {
                check_round_trip(f, &decoder);
            }
        }
        Err(batch_error) => {
            if let Some(e) = stream_error {
                assert_eq!(e, batch_error, "batch and stream fail differently");
            }
        }
    }
}

/// The `hello_decoder` target: the input is a HELLO payload.
pub fn hello_decoder(data: &[u8]) {
    let header = FrameHeader {
        frame_type: FrameType::HELLO,
        flags: 0,
        payload_len: data.len(),
        header_len: 0,
    };
    let decoder = FrameDecoder::new(Settings::default());
    if let Ok(frame) = Frame::load(header, Bytes::copy_from_slice(data), decoder.limits()) {
        if let Frame::Hello(hello) = &frame {
            // Decoding validated the settings; resolving them again must agree.
            let settings = hello.resolved_settings().expect("validated on decode");
            settings.validate().expect("resolved settings are in range");
        }
        if data.len() as u64 <= crate::frame::HELLO_MAX_PAYLOAD {
            check_round_trip(&frame, &decoder);
        }
    }
}
