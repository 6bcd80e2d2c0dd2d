//! Fuzzes `rhizomorph::fuzzing::header_block` (see its doc comment for the oracles).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rhizomorph::fuzzing::header_block(data));
