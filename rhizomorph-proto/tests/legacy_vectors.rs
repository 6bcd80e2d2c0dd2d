//! `spec/vectors/legacy.json` (legacy.md §L3, §L5), written with Python's msgpack package (what
//! hypha-rpc and hypha use) by `spec/vectors/make_legacy_vectors.py`: rhizomorph decodes each
//! message to the header the spec's mapping gives, re-encodes it byte for byte, rewrites as
//! hypha does, and refuses each invalid message with the named error.

use bytes::Bytes;
use rhizomorph_proto::legacy::{self, Identity, LegacyLimits};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/legacy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn l3_messages_decode_to_the_mapped_header_and_re_encode_byte_for_byte() {
    let doc = vectors();
    let messages = doc["messages"].as_array().unwrap();
    assert!(messages.len() >= 6);
    for v in messages {
        let name = v["name"].as_str().unwrap();
        let wire = Bytes::from(hex(v["hex"].as_str().unwrap()));
        let m = legacy::decode(wire.clone(), &LegacyLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: Vec<(String, Vec<u8>)> = v["header"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let value = match &f[1] {
                    Value::String(s) => s.as_bytes().to_vec(),
                    other => hex(other["msgpack"].as_str().unwrap()),
                };
                (f[0].as_str().unwrap().to_string(), value)
            })
            .collect();
        let got: Vec<(String, Vec<u8>)> = m
            .header
            .fields()
            .iter()
            .map(|f| {
                (
                    String::from_utf8(f.name.to_vec()).unwrap(),
                    f.value.to_vec(),
                )
            })
            .collect();
        assert_eq!(got, expected, "{name}: header");
        assert_eq!(
            m.payload.to_vec(),
            hex(v["payload_hex"].as_str().unwrap()),
            "{name}: payload"
        );
        let mut again = Vec::new();
        legacy::encode_header(&m.header, &mut again).unwrap();
        again.extend_from_slice(&m.payload);
        assert!(
            again == wire,
            "{name}: re-encoding differs from Python's msgpack"
        );
    }
}

#[test]
fn l5_rewrites_match_hypha() {
    for v in vectors()["rewrites"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let s = &v["sender"];
        let sender = Identity::new(
            s["workspace"].as_str().unwrap(),
            s["client_id"].as_str().unwrap(),
            s["user"].clone(),
        );
        let input = Bytes::from(hex(v["input_hex"].as_str().unwrap()));
        let m = legacy::decode(input, &LegacyLimits::default()).unwrap();
        let routed = legacy::rewrite(&m.header, &sender).unwrap();
        assert_eq!(routed.target, v["target"].as_str().unwrap(), "{name}");
        let out =
            legacy::encode_message(&routed.header, m.payload, &LegacyLimits::default()).unwrap();
        let mut wire = out.head.clone();
        if let Some(t) = &out.tail {
            wire.extend_from_slice(t);
        }
        assert!(
            wire == hex(v["output_hex"].as_str().unwrap()),
            "{name}: rewritten message differs from hypha's"
        );
    }
}

#[test]
fn l3_invalid_messages_are_refused_with_the_named_error() {
    for v in vectors()["invalid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let wire = Bytes::from(hex(v["hex"].as_str().unwrap()));
        let err = legacy::decode(wire, &LegacyLimits::default()).expect_err(name);
        let expected = v["error"].as_str().unwrap();
        assert!(
            format!("{err:?}").starts_with(expected),
            "{name}: expected {expected}, got {err:?}"
        );
    }
}
