//! Byte compatibility with frames captured from real hypha-rpc 0.21.47 / hypha 0.21.137
//! traffic (`fuzz/regressions/legacy_decoder/captured-*`, from the reference hex dumps):
//! every captured message decodes and re-encodes to the same bytes, and the router's rewrite of
//! the caller's message (#34) is byte for byte what the real hypha server delivered (#35).

use std::path::PathBuf;

use bytes::Bytes;
use rhizomorph_proto::legacy::{self, Identity, LegacyLimits};

fn captured(name: &str) -> Bytes {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/legacy_decoder")
        .join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn to_json(v: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value as M;
    use serde_json::Value as J;
    match v {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(*b),
        M::Integer(i) => i
            .as_i64()
            .map(J::from)
            .or_else(|| i.as_u64().map(J::from))
            .unwrap(),
        M::F64(f) => J::from(*f),
        M::F32(f) => J::from(f64::from(*f)),
        M::String(s) => J::String(s.as_str().unwrap().to_string()),
        M::Array(a) => J::Array(a.iter().map(to_json).collect()),
        M::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap().to_string(), to_json(v)))
                .collect(),
        ),
        other => panic!("no JSON for {other}"),
    }
}

#[test]
fn l3_every_captured_binary_message_round_trips_byte_for_byte() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/legacy_decoder");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("captured-") || !name.ends_with("-binary") {
            continue;
        }
        let bytes = captured(&name);
        let m = legacy::decode(bytes.clone(), &LegacyLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut again = Vec::new();
        legacy::encode_header(&m.header, &mut again).unwrap();
        again.extend_from_slice(&m.payload);
        assert!(again == bytes, "{name} re-encodes differently");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} captured messages");
}

#[test]
fn l5_the_rewrite_produces_what_the_real_hypha_server_delivered() {
    let sent = captured("captured-34-caller-send-binary");
    let delivered = captured("captured-35-provider-recv-binary");
    let limits = LegacyLimits::default();
    let delivered_msg = legacy::decode(delivered.clone(), &limits).unwrap();
    let user_bytes = delivered_msg.header.get("user#").unwrap();
    let user = to_json(&rmpv::decode::read_value(&mut &user_bytes[..]).unwrap());
    let ws = delivered_msg.header.get_str("ws").unwrap();
    let caller = Identity::new(ws, "caller", user);
    assert_eq!(
        caller.user_msgpack(),
        user_bytes,
        "user info re-encodes differently"
    );

    let m = legacy::decode(sent, &limits).unwrap();
    let routed = legacy::rewrite(&m.header, &caller).unwrap();
    let out = legacy::encode_message(&routed.header, m.payload, &limits).unwrap();
    assert!(out.tail.is_none());
    assert!(
        out.head == delivered,
        "rhizomorph's routed message differs from hypha's:\n ours  {:02x?}\n hypha {:02x?}",
        &out.head[..out.head.len().min(64)],
        &delivered[..64]
    );
}
