//! Fuzzes `rhizomorph::fuzzing::websocket` (see its doc comment for the oracles).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rhizomorph::fuzzing::websocket(data));
