//! Reads every vector in `spec/vectors/exchanges.json` (wire.md §20, Appendix A): a header's
//! fields classify as the vector says, and malformed §20 numbers are refused. The builders
//! (`exchange::reply`, `part`, …) round-trip through the classifier.

use bytes::Bytes;
use rhizomorph_proto::exchange::{self, classify, Exchange, ExchangeError};
use rhizomorph_proto::header::RoutingHeader;
use serde_json::{json, Value};

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/vectors/exchanges.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("exchanges.json"))
        .expect("valid JSON")
}

fn header(fields: &Value) -> RoutingHeader {
    let mut h = RoutingHeader::new();
    for f in fields.as_array().unwrap() {
        h.push(
            f[0].as_str().unwrap().to_string(),
            f[1].as_str().unwrap().to_string(),
        );
    }
    h
}

fn text(b: &Bytes) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// The vector's JSON form of an exchange (Appendix A).
fn to_json(e: &Exchange) -> Value {
    match e {
        Exchange::Plain => json!({"kind": "plain"}),
        Exchange::Request { session } => json!({"kind": "request", "session": text(session)}),
        Exchange::Reply { session, error } => {
            json!({"kind": "reply", "session": session, "error": error})
        }
        Exchange::CancelCall { session } => {
            json!({"kind": "cancel_call", "session": text(session)})
        }
        Exchange::CancelTransfer { stream } => {
            json!({"kind": "cancel_transfer", "stream_id": stream})
        }
        Exchange::Part { stream, seq, end } => {
            let end = match end {
                None => Value::Null,
                Some(None) => json!({"ok": true}),
                Some(Some(e)) => json!({"ok": false, "error": e}),
            };
            json!({"kind": "part", "stream_id": text(stream), "seq": seq, "end": end})
        }
    }
}

#[test]
fn wire_20_every_exchange_vector_classifies_as_it_says() {
    let v = vectors();
    let valid = v["vectors"].as_array().unwrap();
    assert!(valid.len() >= 15);
    for vector in valid {
        let got = classify(&header(&vector["fields"]))
            .unwrap_or_else(|e| panic!("{}: {e}", vector["name"]));
        assert_eq!(to_json(&got), vector["exchange"], "{}", vector["name"]);
    }
    for vector in v["invalid"].as_array().unwrap() {
        let got = classify(&header(&vector["fields"]));
        assert!(
            matches!(got, Err(ExchangeError::NotANumber { .. })),
            "{}: {got:?}",
            vector["name"]
        );
    }
}

#[test]
fn wire_20_builders_write_what_the_classifier_reads() {
    let request = exchange::request(
        RoutingHeader::new().with("to", "calc").with("from", "ws/a"),
        41,
    );
    let reply = exchange::reply(&request, Some("boom"));
    assert_eq!(
        reply.get_str("to"),
        Some("ws/a"),
        "a reply goes to the caller"
    );
    assert_eq!(
        classify(&reply).unwrap(),
        Exchange::Reply {
            session: 41,
            error: Some("boom".into())
        }
    );
    let cancel = exchange::cancel_call(&request, 41);
    assert_eq!(
        cancel.get_str("to"),
        Some("calc"),
        "a cancellation follows the request"
    );
    let first = exchange::part(&request, 9, 0, None);
    assert_eq!(
        classify(&exchange::cancel_transfer(&first)).unwrap(),
        Exchange::CancelTransfer { stream: 9 }
    );
}
