//! Reads every vector in `spec/vectors/frames.json` (wire.md Appendix A) and checks both
//! directions: decoding the hex gives the frame (or the named error), and encoding the frame
//! gives exactly the hex.

use bytes::{Bytes, BytesMut};
use rhizomorph_proto::frame::*;
use rhizomorph_proto::hex::{parse_hex, to_hex};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/frames.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("frames.json")).expect("valid JSON")
}

fn hex(v: &Value) -> Bytes {
    Bytes::from(parse_hex(v.as_str().expect("hex string")).expect("hex"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn channel(v: &Value) -> Channel {
    Channel::from_name(v.as_str().unwrap()).unwrap()
}

fn code(v: &Value) -> ErrorCode {
    ErrorCode::from_name(v.as_str().unwrap()).unwrap()
}

/// The wire version a vector's receiver speaks (`version`, Appendix A): 1.0 unless it says 1.1.
fn version(v: &Value) -> u64 {
    match v.get("version").and_then(Value::as_str) {
        Some("1.1") => WIRE_VERSION_1_1,
        None | Some("1.0") => WIRE_VERSION_1_0,
        Some(other) => panic!("version {other}"),
    }
}

fn counts(v: &Value) -> [u64; 4] {
    let c: Vec<u64> = v.as_array().unwrap().iter().map(u).collect();
    c.try_into().unwrap()
}

fn status(v: &Value) -> ResumeStatus {
    let name = v.as_str().unwrap();
    (0..=6)
        .map(|i| ResumeStatus::from_id(i).unwrap())
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("resume status {name}"))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

/// Builds the frame a vector's `frame` object describes (field names as in wire.md §5).
fn frame_from_json(f: &Value) -> Frame {
    match f["type"].as_str().unwrap() {
        "PADDING" => Frame::Padding {
            len: u(&f["length"]) as usize,
        },
        "HELLO" => Frame::Hello(Hello {
            versions: f["versions"].as_array().unwrap().iter().map(u).collect(),
            settings: f["settings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (u(&p[0]), u(&p[1])))
                .collect(),
            token: hex(&f["token"]),
            agent: text(&f["agent"]),
            resume: f.get("resume").map(|r| {
                Box::new(ResumeRequest {
                    session_id: hex(&r["session_id"])[..].try_into().unwrap(),
                    token: hex(&r["resume_token"]),
                    received: counts(&r["received"]),
                })
            }),
            session: f.get("session").map(|t| {
                Box::new(SessionTicket {
                    session_id: hex(&t["session_id"])[..].try_into().unwrap(),
                    token: hex(&t["resume_token"]),
                    status: status(&t["resume_status"]),
                    received: counts(&t["received"]),
                })
            }),
        }),
        "ACK" => Frame::Ack(Ack {
            channel: channel(&f["channel"]),
            received: u(&f["received"]),
        }),
        "MESSAGE" => {
            let start = f["first"].as_bool().unwrap().then(|| MessageStart {
                message_len: u(&f["message_length"]),
                encoding: match f["encoding"].as_str().unwrap() {
                    "raw" => PayloadEncoding::Raw,
                    "msgpack" => PayloadEncoding::Msgpack,
                    "rkyv" => PayloadEncoding::Rkyv {
                        schema_id: u(&f["schema_id"]),
                    },
                    "typed-array" => PayloadEncoding::TypedArray,
                    other => panic!("encoding {other}"),
                },
                compression: match &f["compression"] {
                    Value::String(s) if s == "none" => Compression::None,
                    c => Compression::Compressed {
                        codec: match c["codec"].as_str().unwrap() {
                            "lz4" => Codec::Lz4,
                            "snappy" => Codec::Snappy,
                            other => panic!("codec {other}"),
                        },
                        shuffle: match u(&c["shuffle"]) {
                            1 => Shuffle::None,
                            2 => Shuffle::Bytes2,
                            4 => Shuffle::Bytes4,
                            8 => Shuffle::Bytes8,
                            other => panic!("shuffle {other}"),
                        },
                        uncompressed_len: u(&c["uncompressed_length"]),
                    },
                },
                header_block: hex(&f["header_block"]),
            });
            Frame::Message(MessageFrame {
                channel: channel(&f["channel"]),
                start,
                last: f["last"].as_bool().unwrap(),
                data: hex(&f["chunk_data"]),
            })
        }
        "CREDIT" => Frame::Credit(Credit {
            target: match f["target"].as_str().unwrap() {
                "connection" => CreditTarget::Connection,
                _ => CreditTarget::Channel(channel(&f["target"])),
            },
            increment: u(&f["increment"]),
        }),
        "SCHEMA" => Frame::Schema(SchemaFrame {
            channel: channel(&f["channel"]),
            schema_id: u(&f["schema_id"]),
            layout_hash: u64::from_be_bytes(hex(&f["layout_hash"])[..].try_into().unwrap()),
            name: text(&f["name"]),
        }),
        t @ ("PING" | "PONG") => {
            let p = Ping {
                opaque: u64::from_be_bytes(hex(&f["opaque"])[..].try_into().unwrap()),
            };
            if t == "PING" {
                Frame::Ping(p)
            } else {
                Frame::Pong(p)
            }
        }
        "CANCEL" => Frame::Cancel(Cancel {
            channel: channel(&f["channel"]),
            sequence: u(&f["sequence"]),
            code: code(&f["error_code"]),
            abort: f["abort"].as_bool().unwrap(),
        }),
        "GOAWAY" => {
            let counts: Vec<u64> = f["accepted_count"]
                .as_array()
                .unwrap()
                .iter()
                .map(u)
                .collect();
            Frame::GoAway(GoAway {
                code: code(&f["error_code"]),
                accepted: counts.try_into().unwrap(),
                reason: text(&f["reason"]),
            })
        }
        "CLOSE" => Frame::Close(Close {
            code: code(&f["error_code"]),
            reason: text(&f["reason"]),
        }),
        "IGNORED" => Frame::Ignored {
            frame_type: u(&f["frame_type"]) as u8,
            flags: u(&f["flags"]) as u8,
            payload: hex(&f["payload"]),
        },
        other => panic!("unknown vector frame type {other}"),
    }
}

fn limits(v: &Value) -> Settings {
    let mut s = Settings::default();
    if let Some(obj) = v.get("limits").and_then(Value::as_object) {
        for (name, value) in obj {
            let id = SettingId::from_name(name).unwrap_or_else(|| panic!("setting {name}"));
            s.set(id, u(value)).unwrap();
        }
    }
    s
}

#[test]
fn appendix_a_valid_vectors_decode_and_encode_exactly() {
    let doc = vectors();
    let valid = doc["valid"].as_array().unwrap();
    let mut types_seen = std::collections::BTreeSet::new();
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let bytes = hex(&v["hex"]);
        let expected = frame_from_json(&v["frame"]);
        types_seen.insert(expected.frame_type());

        let decoder = FrameDecoder::new(limits(v)).with_version(version(v));
        let mut src = BytesMut::from(&bytes[..]);
        let decoded = decoder
            .decode(&mut src)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.as_ref(), Some(&expected), "{name}: decoded frame");
        assert!(
            src.is_empty(),
            "{name}: {} bytes left after the frame",
            src.len()
        );

        let canonical = v.get("canonical_hex").map(hex).unwrap_or(bytes);
        let mut out = BytesMut::new();
        expected
            .encode(&mut out)
            .unwrap_or_else(|e| panic!("{name}: encode: {e}"));
        assert_eq!(to_hex(&out), to_hex(&canonical), "{name}: encoded bytes");
    }
    // Appendix A: at least one valid vector for every frame type (plus an ignorable one).
    for t in 0..=FrameType::ACK {
        assert!(
            types_seen.contains(&t),
            "no valid vector for frame type {}",
            FrameType::name(t)
        );
    }
    assert!(types_seen.iter().any(|&t| t >= FrameType::FIRST_IGNORABLE));
}

#[test]
fn appendix_a_invalid_vectors_fail_with_the_named_error() {
    let doc = vectors();
    let invalid = doc["invalid"].as_array().unwrap();
    assert!(
        invalid.len() >= 15,
        "issue #2 asks for at least 15 invalid vectors"
    );
    for v in invalid {
        let name = v["name"].as_str().unwrap();
        let decoder = FrameDecoder::new(limits(v)).with_version(version(v));
        let result = decoder.decode_batch(hex(&v["hex"]));
        let err = match result {
            Err(e) => e,
            Ok(frames) => panic!("{name}: decoded {frames:?}, expected an error"),
        };
        let want_code = code(&v["error"]["code"]);
        assert_eq!(err.code(), want_code, "{name}: code ({err})");
        assert_eq!(
            err.kind(),
            v["error"]["kind"].as_str().unwrap(),
            "{name}: kind ({err})"
        );
    }
}

#[test]
fn appendix_a_vector_names_are_unique_and_cite_a_section() {
    let doc = vectors();
    let mut names = std::collections::HashSet::new();
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/wire.md")).unwrap();
    for v in doc["valid"]
        .as_array()
        .unwrap()
        .iter()
        .chain(doc["invalid"].as_array().unwrap())
    {
        let name = v["name"].as_str().unwrap();
        assert!(
            names.insert(name.to_string()),
            "duplicate vector name {name}"
        );
        let section = v["section"].as_str().unwrap();
        let number = section.strip_prefix('§').expect("section starts with §");
        let cited = spec.contains(&format!("**{section}**"))
            || spec.contains(&format!("## {number} "))
            || spec.contains(&format!("### {number} "));
        assert!(cited, "{name}: section {section} not found in wire.md");
    }
}
