//! spec/vectors/payloads.json (written by an independent Python reading of the spec): layout
//! hashes (wire.md §11.2.2), typed arrays valid and invalid (§11.4), byte shuffles (§12.1).

use bytes::Bytes;
use rhizomorph_proto::frame::ErrorCode;
use rhizomorph_proto::hex::parse_hex;
use rhizomorph_proto::payload::compress::{shuffle_bytes, unshuffle_bytes};
use rhizomorph_proto::payload::{layout_hash_of, DType, PayloadError, TypedArrayView};
use serde_json::Value;

fn doc() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/payloads.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    parse_hex(v.as_str().unwrap()).unwrap()
}

#[test]
fn vectors_11_2_2_layout_hashes() {
    for v in doc()["layout_hashes"].as_array().unwrap() {
        let got = layout_hash_of(
            v["name"].as_str().unwrap(),
            v["version"].as_u64().unwrap() as u32,
            v["layout"].as_str().unwrap(),
        );
        assert_eq!(format!("{got:016x}"), v["hash"].as_str().unwrap(), "{v}");
    }
}

#[test]
fn vectors_11_4_valid_typed_arrays_parse_and_read() {
    let d = doc();
    let valid = d["typed_arrays"]["valid"].as_array().unwrap();
    assert!(valid.len() >= 8);
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let view = TypedArrayView::parse(Bytes::from(hex(&v["hex"])))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let dims: Vec<u64> = v["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(view.dims(), &dims[..], "{name}");
        assert_eq!(
            view.data_offset() as u64,
            v["data_offset"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            view.dtype().numpy(),
            v["numpy_dtype"].as_str().unwrap(),
            "{name}"
        );
        let values = v["values"].as_array().unwrap();
        match view.dtype() {
            DType::F64 => {
                let want: Vec<f64> = values.iter().map(|x| x.as_f64().unwrap()).collect();
                assert_eq!(&view.as_slice::<f64>().unwrap()[..], &want[..], "{name}");
            }
            DType::F32 => {
                let want: Vec<f32> = values.iter().map(|x| x.as_f64().unwrap() as f32).collect();
                assert_eq!(&view.as_slice::<f32>().unwrap()[..], &want[..], "{name}");
            }
            DType::I64 => {
                let want: Vec<i64> = values.iter().map(|x| x.as_i64().unwrap()).collect();
                assert_eq!(&view.as_slice::<i64>().unwrap()[..], &want[..], "{name}");
            }
            DType::I32 => {
                let want: Vec<i32> = values.iter().map(|x| x.as_i64().unwrap() as i32).collect();
                assert_eq!(&view.as_slice::<i32>().unwrap()[..], &want[..], "{name}");
            }
            DType::U16 => {
                let want: Vec<u16> = values.iter().map(|x| x.as_u64().unwrap() as u16).collect();
                assert_eq!(&view.as_slice::<u16>().unwrap()[..], &want[..], "{name}");
            }
            DType::U8 => assert_eq!(view.as_slice::<u8>().unwrap().len(), values.len()),
            DType::Bool => {
                let want: Vec<u8> = values.iter().map(|x| x.as_bool().unwrap() as u8).collect();
                assert_eq!(&view.data()[..], &want[..], "{name}");
            }
            DType::F16 => assert_eq!(view.data().len(), 2 * values.len(), "{name}"),
            other => panic!("{name}: no check for {other:?}"),
        }
    }
}

#[test]
fn vectors_11_4_invalid_typed_arrays_are_refused_with_the_named_error() {
    let d = doc();
    for v in d["typed_arrays"]["invalid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let e = TypedArrayView::parse(Bytes::from(hex(&v["hex"])))
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(e.code(), ErrorCode::PAYLOAD_ERROR, "{name}");
        let PayloadError::InvalidTypedArray(kind) = e else {
            panic!("{name}: {e}")
        };
        assert_eq!(v["error"]["code"], "PAYLOAD_ERROR", "{name}");
        assert_eq!(kind.kind(), v["error"]["kind"], "{name}: {kind}");
    }
}

#[test]
fn vectors_12_1_byte_shuffles() {
    for v in doc()["shuffles"].as_array().unwrap() {
        let k = v["element_size"].as_u64().unwrap() as usize;
        let data = hex(&v["hex"]);
        let want = hex(&v["shuffled"]);
        assert_eq!(shuffle_bytes(&data, k), want, "k={k}");
        assert_eq!(unshuffle_bytes(&want, k), data, "k={k}");
    }
}
