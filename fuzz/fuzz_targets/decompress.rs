//! Fuzzes `rhizomorph::fuzzing::decompress` (see its doc comment for the oracles).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rhizomorph::fuzzing::decompress(data));
