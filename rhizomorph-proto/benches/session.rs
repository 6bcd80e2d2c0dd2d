//! Criterion micro-benchmarks for the sans-IO session: the header table (a repeated hypha-style
//! routing header), the channel scheduler, and 64 rpc messages end to end between two sessions
//! in memory (encode, schedule, batch, decode, deliver, release).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rhizomorph_proto::frame::Channel;
use rhizomorph_proto::header::{HeaderDecoder, HeaderEncoder, RoutingHeader};
use rhizomorph_proto::session::{ChannelScheduler, Event, OutgoingMessage, Session, SessionConfig};
use rhizomorph_proto::session::{Target, Transmit};

fn hypha_header() -> RoutingHeader {
    RoutingHeader::new()
        .with("type", "method")
        .with("from", "ws-user-1/bench-client")
        .with("to", "ws-user-1/bench-echo")
        .with("method", "services.echo.echo")
        .with("session", "x4m2k9q0r7t1w8z3c6v5b1")
}

fn bench_header_table(c: &mut Criterion) {
    let header = hypha_header();
    let mut group = c.benchmark_group("header_table");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_repeated", |b| {
        let mut enc = HeaderEncoder::new(4096);
        let mut buf = BytesMut::with_capacity(256);
        b.iter(|| {
            buf.clear();
            enc.encode(black_box(&header), &mut buf);
            black_box(buf.len())
        })
    });
    group.bench_function("encode_block_repeated_cached", |b| {
        let mut enc = HeaderEncoder::new(4096);
        b.iter(|| black_box(enc.encode_block(black_box(&header)).len()))
    });
    group.bench_function("decode_repeated", |b| {
        let mut enc = HeaderEncoder::new(4096);
        let mut dec = HeaderDecoder::new(4096, 16_384);
        let mut first = BytesMut::new();
        enc.encode(&header, &mut first);
        dec.decode(first.freeze()).unwrap();
        let mut again = BytesMut::new();
        enc.encode(&header, &mut again);
        let block = again.freeze();
        b.iter(|| black_box(dec.decode(black_box(block.clone())).unwrap().len()))
    });
    group.finish();
}

fn bench_scheduler(c: &mut Criterion) {
    c.bench_function("scheduler/pick_all_ready", |b| {
        let mut s = ChannelScheduler::default();
        b.iter(|| black_box(s.pick(black_box([false, true, true, true]))))
    });
}

fn bench_round(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(64));
    group.bench_function("64x256B_one_way", |bench| {
        let (mut a, mut b) = Session::connected_pair(
            SessionConfig::default(),
            SessionConfig::default(),
            Instant::now(),
        );
        let now = Instant::now();
        let header = hypha_header();
        let payload = Bytes::from(vec![7u8; 256]);
        bench.iter(|| {
            for _ in 0..64 {
                a.send(
                    Channel::Rpc,
                    OutgoingMessage::new(header.clone(), payload.clone()),
                )
                .unwrap();
            }
            while let Some(x) = a
                .poll_transmit(now, Target::Batch, usize::MAX)
                .map(Transmit::into_bytes)
            {
                b.handle_batch(now, x);
            }
            while let Some(e) = b.poll_event() {
                if let Event::Message(m) = e {
                    b.release(m.channel, m.credit);
                }
            }
            while let Some(x) = b
                .poll_transmit(now, Target::Batch, usize::MAX)
                .map(Transmit::into_bytes)
            {
                a.handle_batch(now, x);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_header_table, bench_scheduler, bench_round);
criterion_main!(benches);
