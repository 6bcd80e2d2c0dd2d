//! Fuzzes the frame decoder (wire.md §4, §5): stream and batch decoding must agree, never
//! panic, and every decoded frame must re-encode to itself.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rhizomorph_proto::fuzzing::frame_decoder(data));
