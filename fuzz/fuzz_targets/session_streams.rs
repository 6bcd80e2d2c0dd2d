//! Fuzzes `rhizomorph_proto::fuzzing::session_streams` (see its doc comment for the oracles).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rhizomorph_proto::fuzzing::session_streams(data));
