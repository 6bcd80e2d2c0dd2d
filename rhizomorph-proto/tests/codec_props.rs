//! Property tests for the frame codec (STYLE.md: every codec gets these three):
//! encode→decode is identity; any split of a byte stream decodes to the same frames;
//! arbitrary bytes never panic.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use rhizomorph_proto::frame::*;

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn text(max: usize) -> impl Strategy<Value = String> {
    // Mixed ASCII and multi-byte characters, cut to `max` bytes at a char boundary.
    "[a-zA-Z0-9 _:§é漢]{0,64}".prop_map(move |s| {
        let mut s: String = s;
        while s.len() > max {
            s.pop();
        }
        s
    })
}

fn varint() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..64,
        64u64..16_384,
        16_384u64..(1 << 30),
        (1u64 << 30)..=varint::VARINT_MAX
    ]
}

fn settings() -> impl Strategy<Value = Vec<(u64, u64)>> {
    (
        1_024u64..=16_777_215,
        1_024u64..=varint::VARINT_MAX,
        0u64..=u32::MAX as u64,
        0u64..=65_536,
        0u64..=3,
        prop::option::of(0x40u64..0x1000),
    )
        .prop_map(|(frame, msg, window, table, comp, unknown)| {
            let s = Settings::default()
                .with_max_frame_payload(frame)
                .with_max_message_size(msg)
                .with_initial_channel_window(window)
                .with_header_table_size(table)
                .with_compression(comp);
            let mut pairs = s.to_pairs();
            if let Some(id) = unknown {
                pairs.push((id, 1));
            }
            pairs
        })
}

fn compression(uncompressed: u64) -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        (
            prop::sample::select(vec![Codec::Lz4, Codec::Snappy]),
            prop::sample::select(vec![
                Shuffle::None,
                Shuffle::Bytes2,
                Shuffle::Bytes4,
                Shuffle::Bytes8
            ]),
        )
            .prop_map(move |(codec, shuffle)| Compression::Compressed {
                codec,
                shuffle,
                uncompressed_len: uncompressed
            }),
    ]
}

fn message() -> impl Strategy<Value = MessageFrame> {
    (
        channel(),
        bytes(300),
        any::<bool>(),
        any::<bool>(),
        0u64..1000,
        0u64..(1 << 20),
    )
        .prop_flat_map(|(channel, data, first, last, extra, uncompressed)| {
            let len = data.len() as u64;
            let start = if first {
                let message_len = if last { len } else { len + 1 + extra };
                (
                    prop_oneof![
                        Just(PayloadEncoding::Raw),
                        Just(PayloadEncoding::Msgpack),
                        (0u64..256).prop_map(|schema_id| PayloadEncoding::Rkyv { schema_id }),
                        Just(PayloadEncoding::TypedArray),
                    ],
                    compression(uncompressed),
                    bytes(64),
                )
                    .prop_map(move |(encoding, compression, header_block)| {
                        Some(MessageStart {
                            message_len,
                            encoding,
                            compression,
                            header_block,
                        })
                    })
                    .boxed()
            } else {
                Just(None).boxed()
            };
            (start, Just((channel, last, data)))
        })
        .prop_map(|(start, (channel, last, data))| MessageFrame {
            channel,
            start,
            last,
            data,
        })
}

fn resume_token() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 16..=64).prop_map(Bytes::from)
}

fn resume_request() -> impl Strategy<Value = Option<Box<ResumeRequest>>> {
    prop::option::of(
        (
            any::<[u8; 16]>(),
            resume_token(),
            [varint(), varint(), varint(), varint()],
        )
            .prop_map(|(session_id, token, received)| {
                Box::new(ResumeRequest {
                    session_id,
                    token,
                    received,
                })
            }),
    )
}

fn session_ticket() -> impl Strategy<Value = Option<Box<SessionTicket>>> {
    prop::option::of(
        (
            any::<[u8; 16]>(),
            resume_token(),
            0u8..=6,
            [varint(), varint(), varint(), varint()],
        )
            .prop_map(|(session_id, token, status, received)| {
                Box::new(SessionTicket {
                    session_id,
                    token,
                    status: ResumeStatus::from_id(status).unwrap(),
                    received,
                })
            }),
    )
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (0usize..100).prop_map(|len| Frame::Padding { len }),
        (
            (vec(varint(), 1..=16), settings(), bytes(100), text(256)),
            resume_request(),
            session_ticket()
        )
            .prop_map(
                |((versions, settings, token, agent), resume, session)| Frame::Hello(Hello {
                    versions,
                    settings,
                    token,
                    agent,
                    resume,
                    session,
                })
            ),
        (channel(), varint()).prop_map(|(channel, received)| Frame::Ack(Ack { channel, received })),
        message().prop_map(Frame::Message),
        message().prop_map(Frame::Message),
        (prop::option::of(channel()), 1u64..=u32::MAX as u64).prop_map(|(c, increment)| {
            Frame::Credit(Credit {
                target: c.map_or(CreditTarget::Connection, CreditTarget::Channel),
                increment,
            })
        }),
        (
            channel(),
            0u64..256,
            any::<u64>(),
            text(255).prop_filter("non-empty", |s| !s.is_empty())
        )
            .prop_map(|(channel, schema_id, layout_hash, name)| Frame::Schema(
                SchemaFrame {
                    channel,
                    schema_id,
                    layout_hash,
                    name
                }
            )),
        any::<u64>().prop_map(|opaque| Frame::Ping(Ping { opaque })),
        any::<u64>().prop_map(|opaque| Frame::Pong(Ping { opaque })),
        (channel(), varint(), varint(), any::<bool>()).prop_map(
            |(channel, sequence, code, abort)| {
                Frame::Cancel(Cancel {
                    channel,
                    sequence,
                    code: ErrorCode(code),
                    abort,
                })
            }
        ),
        (
            varint(),
            [varint(), varint(), varint(), varint()],
            text(1024)
        )
            .prop_map(|(code, accepted, reason)| Frame::GoAway(GoAway {
                code: ErrorCode(code),
                accepted,
                reason
            })),
        (varint(), text(1024)).prop_map(|(code, reason)| Frame::Close(Close {
            code: ErrorCode(code),
            reason
        })),
        (0x80u8..=0xff, any::<u8>(), bytes(40)).prop_map(|(frame_type, flags, payload)| {
            Frame::Ignored {
                frame_type,
                flags,
                payload,
            }
        }),
    ]
}

fn encode_all(frames: &[Frame]) -> BytesMut {
    let mut wire = BytesMut::new();
    for f in frames {
        f.encode(&mut wire).expect("generated frames are valid");
    }
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    // Encode → decode is the identity, consumes exactly the frame, and re-encoding gives the
    // same bytes (encodings are canonical, wire.md §2.2.2).
    #[test]
    fn encode_then_decode_is_identity(f in frame()) {
        let wire = encode_all(std::slice::from_ref(&f));
        let bytes = wire.clone().freeze();
        let mut src = wire;
        let decoded = FrameDecoder::new(Settings::default()).with_version(WIRE_VERSION_1_1).decode(&mut src).unwrap();
        prop_assert_eq!(decoded.as_ref(), Some(&f));
        prop_assert!(src.is_empty());
        let again = encode_all(&[decoded.unwrap()]);
        prop_assert_eq!(&again[..], &bytes[..]);
    }

    // Any split of a byte stream into pieces decodes to the same frames (wire.md §4.3.1).
    #[test]
    fn any_split_decodes_to_the_same_frames(
        frames in vec(frame(), 1..12),
        cuts in vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let wire = encode_all(&frames).freeze();
        let mut cut_points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cut_points.sort_unstable();
        cut_points.push(wire.len());
        let decoder = FrameDecoder::new(Settings::default()).with_version(WIRE_VERSION_1_1);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut prev = 0;
        for cut in cut_points {
            buf.extend_from_slice(&wire[prev..cut]);
            prev = cut;
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, frames);
    }

    // One WebSocket message holding a batch decodes to the same frames (wire.md §16.2.1).
    #[test]
    fn batch_decodes_to_the_same_frames(frames in vec(frame(), 1..12)) {
        let wire = encode_all(&frames).freeze();
        let out = FrameDecoder::new(Settings::default()).with_version(WIRE_VERSION_1_1).decode_batch(wire).unwrap();
        prop_assert_eq!(out, frames);
    }

    // Arbitrary bytes never panic, and the decoder always either makes progress, waits, or
    // stops with an error.
    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..512), small in any::<bool>()) {
        let limits = if small {
            Settings::default().with_max_frame_payload(1024).with_max_message_size(1024).with_schema_cache_size(0)
        } else {
            Settings::default()
        };
        let decoder = FrameDecoder::new(limits).with_version(WIRE_VERSION_1_1);
        let mut buf = BytesMut::from(&data[..]);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => prop_assert!(buf.len() < before),
                Ok(None) | Err(_) => break,
            }
        }
        let _ = decoder.decode_batch(Bytes::from(data));
    }

    // Mutating one byte of a valid frame gives a frame or a named error, never a panic.
    #[test]
    fn single_byte_mutations_never_panic(f in frame(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = encode_all(&[f]).to_vec();
        let i = pos.index(wire.len());
        wire[i] = byte;
        let _ = FrameDecoder::new(Settings::default()).with_version(WIRE_VERSION_1_1).decode_batch(Bytes::from(wire));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// wire.md §6.3: the encoder's and decoder's last-block caches never change what goes on
    /// the wire or what comes out: a cached encoder writes the same bytes as an uncached one,
    /// and every block decodes to its header, over sequences with many repeats and table churn
    /// (a small table, so entries are evicted), fresh `session`s, headers of more fields than
    /// a header holds inline and values longer than the codecs' shared chunks. Every header
    /// decoded earlier is still intact at the end (later blocks share their chunks).
    #[test]
    fn header_caches_are_invisible(
        picks in vec((0usize..8, any::<u32>()), 1..60),
        capacity in prop::sample::select(vec![64usize, 256, 4096]),
    ) {
        use rhizomorph_proto::header::{HeaderDecoder, HeaderEncoder, RoutingHeader};
        let pool = |i: usize, fresh: u32| {
            let h = RoutingHeader::new().with("type", "method").with("to", format!("peer-{}", i % 3));
            match i {
                0..=2 => h,
                3..=4 => h.with("session", format!("s{i}")),
                5 => h.with("session", fresh.to_string()),
                6 => (0..9).fold(h, |h, k| h.with(format!("x-{k}"), "v")).with("session", fresh.to_string()),
                _ => h.with("payload-hint", "y".repeat(700 + fresh as usize % 100)),
            }
        };
        let mut cached = HeaderEncoder::new(capacity);
        let mut plain = HeaderEncoder::new(capacity);
        let mut dec = HeaderDecoder::new(capacity, 16_384);
        let mut full = HeaderDecoder::new(capacity, 16_384).without_reuse();
        let mut decoded = Vec::new();
        for (p, fresh) in picks {
            let header = pool(p, fresh);
            let block = cached.encode_block(&header);
            let mut reference = BytesMut::new();
            plain.encode(&header, &mut reference);
            prop_assert_eq!(&block[..], &reference[..]);
            let got = dec.decode(block.clone()).unwrap();
            prop_assert_eq!(&got, &header);
            prop_assert_eq!(&full.decode(block).unwrap(), &header);
            decoded.push((got, header));
        }
        for (got, header) in &decoded {
            prop_assert_eq!(got, header);
        }
    }

    /// wire.md §6.4: a decoder with its last-block shortcut decodes, or rejects, every block
    /// exactly as a full decode does, for blocks close to the last one: made by editing its
    /// bytes (replacing, inserting or removing one), whatever they become.
    #[test]
    fn a_block_close_to_the_last_one_decodes_as_a_full_decode_does(
        edits in vec((0usize..3, any::<prop::sample::Index>(), any::<u8>()), 1..40),
        capacity in prop::sample::select(vec![64usize, 256, 4096]),
        max_list in prop::sample::select(vec![128u64, 16_384]),
    ) {
        use rhizomorph_proto::header::{HeaderDecoder, HeaderEncoder, RoutingHeader};
        let mut enc = HeaderEncoder::new(capacity);
        let mut dec = HeaderDecoder::new(capacity, max_list);
        let mut reference = HeaderDecoder::new(capacity, max_list).without_reuse();
        let start = RoutingHeader::new()
            .with("type", "method")
            .with("to", "ws-1/svc")
            .with("session", "17")
            .with("method", "echo");
        // Twice, so the table holds `to` and `method` and the second block inserts nothing.
        for _ in 0..2 {
            let block = enc.encode_block(&start);
            prop_assert_eq!(dec.decode(block.clone()), reference.decode(block));
        }
        let mut block = enc.encode_block(&start).to_vec();
        for (kind, at, byte) in edits {
            match kind {
                0 if !block.is_empty() => {
                    let i = at.index(block.len());
                    block[i] = byte;
                }
                1 => {
                    let i = at.index(block.len() + 1);
                    block.insert(i, byte);
                }
                _ if !block.is_empty() => {
                    let i = at.index(block.len());
                    block.remove(i);
                }
                _ => {}
            }
            let a = dec.decode(Bytes::from(block.clone()));
            let b = reference.decode(Bytes::from(block.clone()));
            prop_assert_eq!(&a, &b);
            if a.is_err() {
                // A HEADER_ERROR breaks the connection: nothing decodes after it.
                break;
            }
        }
    }
}
