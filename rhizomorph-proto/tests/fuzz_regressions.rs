//! Replays every input kept under `fuzz/regressions/<target>/` through the same harness the
//! fuzzer runs (rule 4: every crash found becomes a regression test), plus the seed corpus of
//! valid vectors.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        run(&data);
        count += 1;
    }
    count
}

#[test]
fn fuzz_regressions_frame_decoder() {
    replay("frame_decoder", rhizomorph_proto::fuzzing::frame_decoder);
}

#[test]
fn fuzz_regressions_hello_decoder() {
    replay("hello_decoder", rhizomorph_proto::fuzzing::hello_decoder);
}

#[test]
fn fuzz_regressions_header_block() {
    replay("header_block", rhizomorph_proto::fuzzing::header_block);
}

#[test]
fn fuzz_regressions_session_input() {
    replay("session_input", rhizomorph_proto::fuzzing::session_input);
}

#[test]
fn fuzz_regressions_session_streams() {
    // Seeds: sends past the replay limit on each channel, a loss, a resume, more sends.
    assert!(
        replay(
            "session_streams",
            rhizomorph_proto::fuzzing::session_streams
        ) >= 2
    );
}

#[test]
fn fuzz_regressions_decompress() {
    replay("decompress", rhizomorph_proto::fuzzing::decompress);
}

#[test]
fn fuzz_regressions_payload() {
    replay("payload", rhizomorph_proto::fuzzing::payload);
}

#[test]
fn fuzz_regressions_legacy_session() {
    // Seeds: a server flooded with pings, tokens and messages; a client's handshake; refusals.
    assert!(replay("legacy_session", rhizomorph_proto::fuzzing::legacy_session) >= 5);
}

#[test]
fn fuzz_harness_accepts_every_valid_vector() {
    // The harness's oracles (round trip, stream == batch) hold on every valid vector, so a
    // harness bug cannot hide behind inputs the fuzzer never finds.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/frames.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for v in doc["valid"]
        .as_array()
        .unwrap()
        .iter()
        .chain(doc["invalid"].as_array().unwrap())
    {
        let bytes = rhizomorph_proto::hex::parse_hex(v["hex"].as_str().unwrap()).unwrap();
        for selector in 0..3u8 {
            let mut input = vec![selector];
            input.extend_from_slice(&bytes);
            rhizomorph_proto::fuzzing::frame_decoder(&input);
        }
    }
}

#[test]
fn fuzz_regressions_legacy_decoder() {
    assert!(replay("legacy_decoder", rhizomorph_proto::fuzzing::legacy_decoder) > 0);
}

#[test]
fn fuzz_regressions_websocket() {
    assert!(replay("websocket", rhizomorph_proto::fuzzing::websocket) > 0);
}
