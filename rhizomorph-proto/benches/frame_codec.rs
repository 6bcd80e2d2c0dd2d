//! Criterion micro-benchmarks for the frame codec: encoding and decoding a 256-byte rpc
//! MESSAGE, a 64 KiB bulk chunk, and a batch of 64 small frames as one WebSocket message; and
//! for the WebSocket layer under it: masking 64 KiB, decoding a masked 64 KiB WebSocket frame
//! (header, limit check, unmasking in place).
//!
//! Throughput is reported per byte, so runs on different machines compare as ratios.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rhizomorph_proto::frame::{
    Channel, Frame, FrameDecoder, MessageFrame, PayloadEncoding, Settings,
};

fn message(len: usize) -> Frame {
    Frame::Message(MessageFrame::single(
        Channel::Rpc,
        PayloadEncoding::Raw,
        Bytes::from_static(&[0x80, 0x83, 0xa0]),
        Bytes::from(vec![0x5a; len]),
    ))
}

fn bench_codec(c: &mut Criterion) {
    let decoder = FrameDecoder::new(Settings::default());
    let mut group = c.benchmark_group("frame");
    for (name, len) in [("message_256B", 256), ("message_64KiB", 65_000)] {
        let frame = message(len);
        let mut wire = BytesMut::new();
        frame.encode(&mut wire).unwrap();
        let wire = wire.freeze();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(format!("encode/{name}"), |b| {
            let mut buf = BytesMut::with_capacity(wire.len() * 2);
            b.iter(|| {
                buf.clear();
                black_box(&frame).encode(&mut buf).unwrap();
                black_box(buf.len())
            })
        });
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| {
                let mut src = black_box(wire.clone());
                black_box(decoder.decode_bytes(&mut src).unwrap())
            })
        });
    }
    let mut batch = BytesMut::new();
    for _ in 0..64 {
        message(256).encode(&mut batch).unwrap();
    }
    let batch = batch.freeze();
    group.throughput(Throughput::Elements(64));
    group.bench_function("decode_batch/64x256B", |b| {
        b.iter(|| {
            black_box(
                decoder
                    .decode_batch(black_box(batch.clone()))
                    .unwrap()
                    .len(),
            )
        })
    });
    group.finish();
}

fn bench_websocket(c: &mut Criterion) {
    use rhizomorph_proto::websocket::{apply_mask, Decoded, OpCode, Role, WsDecoder, WsEncoder};
    let mut group = c.benchmark_group("websocket");
    let payload = vec![0x5au8; 65_536];
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("mask/64KiB", |b| {
        let mut data = payload.clone();
        b.iter(|| {
            apply_mask(black_box(&mut data), [1, 2, 3, 4]);
            black_box(data[0])
        })
    });
    let wire = WsEncoder::new(Role::Client).frame(OpCode::Binary, &payload, || [1, 2, 3, 4]);
    group.bench_function("decode_masked/64KiB", |b| {
        let mut decoder = WsDecoder::new(Role::Server, 1 << 20);
        b.iter(|| {
            let mut buf = BytesMut::from(&black_box(&wire)[..]);
            match decoder.decode(&mut buf).unwrap() {
                Decoded::Event(e) => black_box(e),
                Decoded::NeedBytes(n) => panic!("needs {n}"),
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_codec, bench_websocket);
criterion_main!(benches);
