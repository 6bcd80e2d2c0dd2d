//! Fuzzes the HELLO decoder (wire.md §5.2, §3.3): settings validation, counts and strings.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rhizomorph_proto::fuzzing::hello_decoder(data));
