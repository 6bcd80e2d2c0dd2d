//! Reads `spec/vectors/headers.json` (wire.md §6): decodes each sequence of header blocks in
//! order and checks the decoded fields and the dynamic table after every block; checks that
//! every invalid block fails with the named error. Then re-encodes each decoded header with
//! rhizomorph's encoder and checks that a fresh decoder recovers it (the encoder's choices are
//! its own; the decoder is what the vectors pin down).

use bytes::{Bytes, BytesMut};
use rhizomorph_proto::header::{HeaderDecoder, HeaderEncoder, RoutingHeader};
use rhizomorph_proto::hex::parse_hex;
use serde_json::Value;

fn doc() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/headers.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn header_pairs(h: &RoutingHeader) -> Vec<(String, String)> {
    h.fields()
        .iter()
        .map(|f| {
            (
                String::from_utf8(f.name.to_vec()).unwrap(),
                String::from_utf8(f.value.to_vec()).unwrap(),
            )
        })
        .collect()
}

/// The decoder's dynamic table, newest first, as `(name, value)` pairs.
fn table_pairs(decoder: &HeaderDecoder) -> Vec<(String, String)> {
    decoder
        .dynamic_table()
        .map(|f| {
            (
                String::from_utf8(f.name.to_vec()).unwrap(),
                String::from_utf8(f.value.to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn header_6_vectors_decode_in_sequence() {
    let doc = doc();
    for seq in doc["sequences"].as_array().unwrap() {
        let name = seq["name"].as_str().unwrap();
        let capacity = seq["table_capacity"].as_u64().unwrap() as usize;
        let max_list = seq["max_list_size"].as_u64().unwrap();
        let mut decoder = HeaderDecoder::new(capacity, max_list);
        let mut encoder = HeaderEncoder::new(capacity);
        let mut redecoder = HeaderDecoder::new(capacity, max_list);
        for (i, b) in seq["blocks"].as_array().unwrap().iter().enumerate() {
            let block = Bytes::from(parse_hex(b["hex"].as_str().unwrap()).unwrap());
            let header = decoder
                .decode(block)
                .unwrap_or_else(|e| panic!("{name} block {i}: {e}"));
            assert_eq!(
                header_pairs(&header),
                pairs(&b["fields"]),
                "{name} block {i}: fields"
            );
            let table = table_pairs(&decoder);
            assert_eq!(table, pairs(&b["table"]), "{name} block {i}: table");
            assert_eq!(
                decoder.dynamic_size() as u64,
                b["table_size"].as_u64().unwrap(),
                "{name} block {i}: size"
            );

            let mut again = BytesMut::new();
            encoder.encode(&header, &mut again);
            assert_eq!(
                redecoder.decode(again.freeze()).unwrap(),
                header,
                "{name} block {i}: re-encode"
            );
        }
    }
}

#[test]
fn header_6_invalid_vectors_fail_with_the_named_error() {
    let doc = doc();
    let invalid = doc["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 5);
    for v in invalid {
        let name = v["name"].as_str().unwrap();
        let mut decoder = HeaderDecoder::new(
            v["table_capacity"].as_u64().unwrap() as usize,
            v["max_list_size"].as_u64().unwrap(),
        );
        let block = Bytes::from(parse_hex(v["hex"].as_str().unwrap()).unwrap());
        let err = decoder
            .decode(block)
            .err()
            .unwrap_or_else(|| panic!("{name}: decoded"));
        assert_eq!(
            err.kind(),
            v["error"]["kind"].as_str().unwrap(),
            "{name}: {err}"
        );
        assert_eq!(err.code().name(), Some("HEADER_ERROR"));
    }
}

/// The encoder vectors (wire.md §6.4.4, `encoder` in headers.json): rhizomorph's encoder gives
/// exactly the canonical bytes an independent model of §6.4.4's choices wrote, block after
/// block on one table, and a decoder in step recovers every header and the same table.
#[test]
fn header_6_4_4_encoder_vectors_give_the_canonical_blocks() {
    let doc = doc();
    let sequences = doc["encoder"].as_array().unwrap();
    assert!(sequences.len() >= 5);
    for seq in sequences {
        let name = seq["name"].as_str().unwrap();
        let capacity = seq["table_capacity"].as_u64().unwrap() as usize;
        let mut encoder = HeaderEncoder::new(capacity);
        let mut decoder = HeaderDecoder::new(capacity, 1 << 20);
        for (i, b) in seq["blocks"].as_array().unwrap().iter().enumerate() {
            let mut header = RoutingHeader::new();
            for (n, v) in pairs(&b["fields"]) {
                header.push(n, v);
            }
            let block = encoder.encode_block(&header);
            assert_eq!(
                rhizomorph_proto::hex::to_hex(&block),
                b["hex"].as_str().unwrap(),
                "{name} block {i}: the encoder's choice"
            );
            let decoded = decoder.decode(block).unwrap();
            assert_eq!(
                header_pairs(&decoded),
                pairs(&b["fields"]),
                "{name} block {i}"
            );
            let table = table_pairs(&decoder);
            assert_eq!(table, pairs(&b["table"]), "{name} block {i}: table");
        }
    }
}
