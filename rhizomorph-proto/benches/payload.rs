//! Criterion benchmarks for payloads (issue 5), each next to its baseline in the same run:
//!
//! - `rpc_256b` / `rpc_20kb_array`: rkyv encode + validated (bytecheck) access of an RPC-shaped
//!   message, against rmp-serde encode + decode of the same message as hypha-rpc sends it
//!   (a msgpack map; the array as `bin` bytes, the way hypha-rpc encodes an ndarray).
//! - `compression`: the content-aware choice against always-lz4 and no compression on a mixed
//!   corpus; the bytes each puts on the wire are printed first as a table.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rhizomorph_proto::frame::{Channel, MessageFrame, PayloadEncoding, Settings};
use rhizomorph_proto::payload::{self, ArchivedPayload, ContentHint, SchemaBinding, WireType};
use serde::{Deserialize, Serialize};

rhizomorph_proto::wire_type! {
    /// An RPC call with a binary argument.
    pub struct Call @ 1 {
        pub kind: String,
        pub from: String,
        pub to: String,
        pub method: String,
        pub args: Vec<u8>,
    }
}

rhizomorph_proto::wire_type! {
    /// An RPC call with a numeric array argument.
    pub struct ArrayCall @ 1 {
        pub kind: String,
        pub from: String,
        pub to: String,
        pub method: String,
        pub args: Vec<f64>,
    }
}

/// The msgpack form hypha-rpc sends: a map with string keys; binary as `bin`.
#[derive(Serialize, Deserialize)]
struct MsgpackCall {
    #[serde(rename = "type")]
    kind: String,
    from: String,
    to: String,
    method: String,
    #[serde(with = "serde_bytes")]
    args: Vec<u8>,
}

fn strings() -> (String, String, String, String) {
    (
        "method".into(),
        "ws-user-1/bench-client".into(),
        "ws-user-1/bench-echo".into(),
        "services.echo.echo".into(),
    )
}

fn bench_rpc(c: &mut Criterion) {
    let (kind, from, to, method) = strings();
    let args: Vec<u8> = (0..256).map(|i| i as u8).collect();
    let call = Call {
        kind: kind.clone(),
        from: from.clone(),
        to: to.clone(),
        method: method.clone(),
        args: args.clone(),
    };
    let mp = MsgpackCall {
        kind: kind.clone(),
        from: from.clone(),
        to: to.clone(),
        method: method.clone(),
        args,
    };
    bench_pair(c, "rpc_256b", Throughput::Elements(1), &call, &mp);

    let values: Vec<f64> = (0..2560).map(|i| (i as f64).sin()).collect();
    let array = ArrayCall {
        kind: kind.clone(),
        from: from.clone(),
        to: to.clone(),
        method: method.clone(),
        args: values.clone(),
    };
    let mp = MsgpackCall {
        kind,
        from,
        to,
        method,
        args: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    bench_pair(c, "rpc_20kb_array", Throughput::Bytes(20_480), &array, &mp);
}

/// One group: rkyv encode + validated access of `value` next to rmp-serde encode + decode of
/// the same message in hypha-rpc's msgpack form.
fn bench_pair<T>(c: &mut Criterion, name: &str, throughput: Throughput, value: &T, mp: &MsgpackCall)
where
    T: WireType + rkyv::Archive + for<'a> rkyv::Serialize<payload::Serializer<'a>>,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<payload::schema::Validator<'a>>,
{
    let binding = SchemaBinding::of::<T>();
    let mut group = c.benchmark_group(name);
    group.throughput(throughput);
    group.bench_function("rkyv_encode_validated_access", |b| {
        b.iter(|| {
            let bytes = Bytes::from_owner(payload::encode(black_box(value)).unwrap());
            let a = ArchivedPayload::<T>::new(bytes, 0, Some(&binding)).unwrap();
            black_box(a.get().is_ok())
        })
    });
    group.bench_function("rmp_serde_encode_decode", |b| {
        b.iter(|| {
            let bytes = rmp_serde::to_vec_named(black_box(mp)).unwrap();
            let back: MsgpackCall = rmp_serde::from_slice(&bytes).unwrap();
            black_box(back.args.len())
        })
    });
    group.finish();
}

/// The mixed corpus: (name, payload, hint, compressible).
fn corpus() -> Vec<(&'static str, Bytes, ContentHint, bool)> {
    let mut json = String::new();
    let mut i = 0u64;
    while json.len() < 64 * 1024 {
        json.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user-{}\",\"status\":\"{}\",\"score\":{:.3},\"tags\":[\"a\",\"b{}\"]}},",
            i % 97,
            if i % 3 == 0 { "online" } else { "away" },
            (i as f64 * 0.37).sin(),
            i % 7
        ));
        i += 1;
    }
    let mut x = 100.0f64;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let walk: Vec<u8> = (0..8192)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            x += ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.01;
            x.to_le_bytes()
        })
        .collect();
    let random: Vec<u8> = (0..65536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let small = Bytes::from_static(b"{\"type\":\"method\",\"method\":\"ping\",\"args\":[]}");
    vec![
        (
            "json text 64 KB",
            Bytes::from(json),
            ContentHint::Unknown,
            true,
        ),
        (
            "f64 random walk 64 KB",
            Bytes::from(walk),
            ContentHint::NumericArray { element_size: 8 },
            true,
        ),
        (
            "random bytes 64 KB",
            Bytes::from(random),
            ContentHint::Unknown,
            false,
        ),
        ("small message 45 B", small, ContentHint::Unknown, false),
    ]
}

fn bench_compression(c: &mut Criterion) {
    let peer = Settings::default();
    let items = corpus();
    println!("\nbytes on the wire per payload (content-aware vs always-lz4 vs none):");
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>14}",
        "payload", "auto", "lz4", "none", "auto / lz4"
    );
    for (name, data, hint, _) in &items {
        let auto = payload::compress(data, payload::choose(data, *hint, &peer))
            .0
            .len();
        let lz4 = lz4_flex::block::compress(data).len().min(data.len());
        println!(
            "{name:<24} {auto:>10} {lz4:>10} {:>10} {:>13.3}x",
            data.len(),
            auto as f64 / lz4 as f64
        );
    }
    let mut group = c.benchmark_group("compression");
    for (name, data, hint, _) in &items {
        group.throughput(Throughput::Bytes(data.len() as u64));
        let id = name.split(' ').take(2).collect::<Vec<_>>().join("_");
        group.bench_function(format!("{id}/auto"), |b| {
            b.iter(|| {
                let choice = payload::choose(black_box(data), *hint, &peer);
                black_box(payload::compress(data, choice).0.len())
            })
        });
        group.bench_function(format!("{id}/lz4"), |b| {
            b.iter(|| black_box(lz4_flex::block::compress(black_box(data)).len()))
        });
        group.bench_function(format!("{id}/none"), |b| {
            b.iter(|| black_box(payload::compress(black_box(data), None).0.len()))
        });
    }
    group.finish();

    // What a sender pays per message: choose/compress, then frame the payload (one copy into
    // the batch). On incompressible data the content-aware choice must cost next to nothing.
    let mut group = c.benchmark_group("send_path");
    for (name, data, hint, compressible) in &items {
        if *compressible {
            continue;
        }
        group.throughput(Throughput::Bytes(data.len() as u64));
        let id = name.split(' ').take(2).collect::<Vec<_>>().join("_");
        let frame = |payload: Bytes| {
            let f = MessageFrame::single(Channel::Rpc, PayloadEncoding::Raw, Bytes::new(), payload);
            let mut buf = BytesMut::with_capacity(data.len() + 64);
            f.encode(&mut buf).unwrap();
            buf.len()
        };
        group.bench_function(format!("{id}/auto"), |b| {
            b.iter(|| {
                let choice = payload::choose(black_box(data), *hint, &peer);
                black_box(frame(payload::compress(data, choice).0))
            })
        });
        group.bench_function(format!("{id}/none"), |b| {
            b.iter(|| black_box(frame(black_box(data).clone())))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_rpc, bench_compression);
criterion_main!(benches);
