//! Fuzz harness bodies, shared by the cargo-fuzz targets in `fuzz/` and by the regression
//! test that replays every saved crash input (`tests/fuzz_regressions.rs`).
//!
//! Owns the oracles the fuzzer checks beyond "no panic": every frame that decodes re-encodes
//! and decodes to itself. Never used by the library itself.

use bytes::{Bytes, BytesMut};

use crate::frame::{Frame, FrameDecoder, FrameHeader, FrameType, Settings};

/// Limits chosen by the input's first byte, so the fuzzer explores small and default limits.
fn limits_for(selector: u8) -> Settings {
    match selector % 3 {
        0 => Settings::default(),
        1 => Settings::default()
            .with_max_frame_payload(1_024)
            .with_max_message_size(1_024)
            .with_max_header_list_size(64)
            .with_schema_cache_size(0)
            .with_compression(0),
        _ => Settings::default()
            .with_max_frame_payload(16_777_215)
            .with_schema_cache_size(65_536),
    }
}

/// Re-encodes a decoded frame and checks that it decodes to itself.
fn check_round_trip(frame: &Frame, decoder: &FrameDecoder) {
    let mut wire = BytesMut::new();
    // A frame the decoder accepted is within every bound, so encoding it cannot fail.
    frame.encode(&mut wire).expect("a decoded frame re-encodes");
    let again = decoder
        .decode(&mut wire)
        .expect("a re-encoded frame decodes");
    assert_eq!(again.as_ref(), Some(frame), "re-encoded frame differs");
    assert!(wire.is_empty(), "re-encoded frame left bytes");
}

/// The `frame_decoder` target: the first byte picks limits and a split point; the rest is a
/// byte stream decoded in two pieces and as one WebSocket batch, which must agree.
pub fn frame_decoder(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Half the inputs are read as wire version 1.1 (ACK known, wire.md §21).
    let version = if (selector / 3) % 2 == 0 {
        crate::frame::WIRE_VERSION_1_0
    } else {
        crate::frame::WIRE_VERSION_1_1
    };
    let decoder = FrameDecoder::new(limits_for(selector)).with_version(version);

    let mut streamed = Vec::new();
    let split = (selector as usize * 7) % (rest.len() + 1);
    let mut buf = BytesMut::from(&rest[..split]);
    let mut stream_error = None;
    for piece in [&rest[split..], &[][..]] {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => streamed.push(frame),
                Ok(None) => break,
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            }
        }
        if stream_error.is_some() {
            break;
        }
        buf.extend_from_slice(piece);
    }

    match decoder.decode_batch(Bytes::copy_from_slice(rest)) {
        Ok(frames) => {
            assert!(
                stream_error.is_none(),
                "batch decoded but stream failed: {stream_error:?}"
            );
            assert_eq!(frames, streamed, "batch and stream disagree");
            for f in &frames {
                check_round_trip(f, &decoder);
            }
        }
        Err(batch_error) => {
            if let Some(e) = stream_error {
                assert_eq!(e, batch_error, "batch and stream fail differently");
            }
        }
    }
}

/// The `header_block` target: the first byte picks the table size and list limit; the rest is
/// split into header blocks (each prefixed by a length byte) decoded in order by one decoder.
/// Every decoded header must survive the encoder and a second decoder kept in step, and an
/// encoder using `encode_block` (which reuses earlier blocks' bytes) must write the same bytes.
/// A decoder without its shortcut (reusing the last block's header) must decode every block,
/// or fail on it, the same.
pub fn header_block(data: &[u8]) {
    use crate::header::{HeaderDecoder, HeaderEncoder};
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let capacity = [0usize, 64, 256, 4096][usize::from(selector & 3)];
    let max_list = [64u64, 1024, 16_384, 1 << 20][usize::from((selector >> 2) & 3)];
    let mut decoder = HeaderDecoder::new(capacity, max_list);
    let mut encoder = HeaderEncoder::new(capacity);
    let mut block_encoder = HeaderEncoder::new(capacity);
    let mut redecoder = HeaderDecoder::new(capacity, max_list.max(1 << 20));
    let mut reference = HeaderDecoder::new(capacity, max_list).without_reuse();
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (block, tail) = tail.split_at(len);
        rest = tail;
        let decoded = decoder.decode(Bytes::copy_from_slice(block));
        let full = reference.decode(Bytes::copy_from_slice(block));
        assert_eq!(decoded, full, "the shortcut decodes a block differently");
        let Ok(header) = decoded else {
            return;
        };
        assert!(
            header.list_size() as u64 <= max_list,
            "decoded past the list limit"
        );
        assert!(
            decoder.dynamic_size() <= capacity,
            "table past its capacity"
        );
        let mut again = BytesMut::new();
        encoder.encode(&header, &mut again);
        // The block path (whole-block and per-field reuse) writes what a fresh encoding does.
        let block = block_encoder.encode_block(&header);
        assert_eq!(&block[..], &again[..], "reused block bytes differ");
        let round = redecoder
            .decode(again.freeze())
            .expect("own encoding decodes");
        assert_eq!(round, header, "encoder/decoder round trip");
    }
}

/// The `session_input` target: a resumable server session (wire version 1.1, §21) that has
/// accepted a client's HELLO gets the input as WebSocket batches (each prefixed by a 2-byte
/// length). A batch of length 0 is a lost transport: the session detaches and the next 4 bytes
/// are the Received counts of a client's resume request with the session's own ticket, which
/// resumes it (or is refused). Whatever arrives, the session never panics, keeps its memory
/// within its windows and its replay buffers within theirs, and its output always decodes.
pub fn session_input(data: &[u8]) {
    use crate::frame::{Hello, ResumeRequest, WIRE_VERSION_1_0, WIRE_VERSION_1_1};
    use crate::session::{Event, Session, SessionConfig, Target, Transmit};
    use std::time::{Duration, Instant};
    const RESUME_BUFFER: u64 = 64 * 1024;
    let now = Instant::now();
    let settings = Settings::default()
        .with_initial_channel_window(64 * 1024)
        .with_max_message_size(256 * 1024)
        .with_resume_buffer(RESUME_BUFFER);
    let config = SessionConfig::default().with_settings(settings);
    let client_hello = |resume: Option<ResumeRequest>| {
        let mut hello = Hello::new(
            &Settings::default().with_resume_buffer(RESUME_BUFFER),
            Bytes::new(),
            "fuzz",
        );
        hello.versions = vec![WIRE_VERSION_1_1, WIRE_VERSION_1_0];
        hello.resume = resume.map(Box::new);
        let mut b = BytesMut::new();
        Frame::Hello(hello).encode(&mut b).expect("valid HELLO");
        b.freeze()
    };
    let mut server = Session::server(config.clone(), now);
    server.handle_batch(now, client_hello(None));
    server.accept(Bytes::new());
    let out_decoder =
        FrameDecoder::new(Settings::default()).with_version(crate::frame::WIRE_VERSION_1_1);
    let mut rest = data;
    let mut t = now;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let batch = Bytes::copy_from_slice(&rest[2..2 + len]);
        rest = &rest[2 + len..];
        if len == 0 && rest.len() >= 4 && server.detach(t) {
            let received = [0, 1, 2, 3].map(|i| u64::from(rest[i]));
            rest = &rest[4..];
            let ticket = server.ticket().cloned().expect("resumable");
            let mut fresh = Session::server(config.clone(), t);
            fresh.handle_batch(
                t,
                client_hello(Some(ResumeRequest {
                    session_id: ticket.session_id,
                    token: ticket.token,
                    received,
                })),
            );
            while fresh.poll_event().is_some() {}
            if server.resume_from(&mut fresh, t).is_err() {
                fresh.accept(Bytes::new());
                server = fresh;
            }
            continue;
        }
        t += Duration::from_millis(u64::from(len as u8));
        server.handle_batch(t, batch);
        server.handle_timeout(t);
        while let Some(out) = server
            .poll_transmit(t, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
        {
            out_decoder
                .decode_batch(out)
                .expect("the session's own output decodes");
        }
        while let Some(e) = server.poll_event() {
            if let Event::Message(m) = e {
                server.release(m.channel, m.credit);
            }
        }
        for ch in crate::frame::Channel::ALL {
            assert!(
                server.held_bytes(ch) <= 64 * 1024 + 256 * 1024 + 70_000,
                "held past the window"
            );
        }
        // spec: wire.md §21.4.2 — a quarter of the buffer plus one message, at most.
        assert!(
            server.replay_charge() <= 4 * (RESUME_BUFFER + 256 * 1024 + 20_000),
            "replay buffers past their bound"
        );
    }
}

/// The `session_streams` target: a resumable server session with per-channel streams (QUIC's
/// framing, wire.md §17, §21) that has accepted a client's HELLO. The input is records of a
/// selector byte, a 2-byte length and that many bytes. Selector `0xFF` is a lost transport:
/// the session detaches and the next 4 bytes are the Received counts of a resume request with
/// its own ticket (on a new connection's control stream). Otherwise bits 0–1 name a channel
/// stream; with bit 2 set the session's application sends a message of 16 × length bytes on
/// that channel (the bytes are skipped), else the bytes arrive on the peer's stream for it.
/// The session never panics, keeps its memory within its windows and its replay buffers within
/// theirs, its output on each stream decodes, and `has_channel_output` never says a stream has
/// output that `poll_transmit` then does not give (a driver that trusts it would spin).
pub fn session_streams(data: &[u8]) {
    use crate::frame::{Channel, Hello, ResumeRequest, WIRE_VERSION_1_0, WIRE_VERSION_1_1};
    use crate::header::RoutingHeader;
    use crate::session::{Event, Framing, OutgoingMessage, Session, SessionConfig, Target};
    use std::time::{Duration, Instant};
    const RESUME_BUFFER: u64 = 64 * 1024;
    let now = Instant::now();
    let settings = Settings::default()
        .with_initial_channel_window(64 * 1024)
        .with_max_message_size(256 * 1024)
        .with_resume_buffer(RESUME_BUFFER);
    let config = SessionConfig::default()
        .with_settings(settings)
        .with_framing(Framing::PerChannelStreams);
    let client_hello = |resume: Option<ResumeRequest>| {
        let mut hello = Hello::new(
            &Settings::default().with_resume_buffer(RESUME_BUFFER),
            Bytes::new(),
            "fuzz",
        );
        hello.versions = vec![WIRE_VERSION_1_1, WIRE_VERSION_1_0];
        hello.resume = resume.map(Box::new);
        let mut b = BytesMut::new();
        Frame::Hello(hello).encode(&mut b).expect("valid HELLO");
        b.freeze()
    };
    let mut server = Session::server(config.clone(), now);
    server.handle_stream(now, Channel::Control, client_hello(None));
    server.accept(Bytes::new());
    // This side's four streams, as the peer would read them.
    let streams = || {
        let decoder =
            FrameDecoder::new(Settings::default()).with_version(crate::frame::WIRE_VERSION_1_1);
        Channel::ALL.map(|_| (decoder.clone(), BytesMut::new()))
    };
    let mut out = streams();
    let mut rest = data;
    let mut t = now;
    while rest.len() >= 3 {
        let selector = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = Bytes::copy_from_slice(&rest[3..3 + len]);
        rest = &rest[3 + len..];
        let channel = Channel::ALL[usize::from(selector & 3)];
        if selector == 0xFF {
            if rest.len() < 4 || !server.detach(t) {
                continue;
            }
            let received = [0, 1, 2, 3].map(|i| u64::from(rest[i]));
            rest = &rest[4..];
            let ticket = server.ticket().cloned().expect("resumable");
            let mut fresh = Session::server(config.clone(), t);
            let request = ResumeRequest {
                session_id: ticket.session_id,
                token: ticket.token,
                received,
            };
            fresh.handle_stream(t, Channel::Control, client_hello(Some(request)));
            while fresh.poll_event().is_some() {}
            if server.resume_from(&mut fresh, t).is_err() {
                fresh.accept(Bytes::new());
                server = fresh;
            }
            out = streams(); // a new connection's streams
            continue;
        }
        t += Duration::from_millis(u64::from(len as u8));
        if selector & 4 != 0 {
            let payload = Bytes::from(vec![selector; (16 * len).min(256 * 1024)]);
            let _ = server.send(channel, OutgoingMessage::new(RoutingHeader::new(), payload));
        } else if server.can_read(channel) {
            server.handle_stream(t, channel, bytes);
        }
        server.handle_timeout(t);
        for ch in Channel::ALL {
            let (decoder, buf) = &mut out[ch.index()];
            let said = server.has_channel_output(ch);
            let mut gave = false;
            while let Some(x) = server.poll_transmit(t, Target::Stream(ch), 64 * 1024) {
                gave = true;
                buf.extend_from_slice(&x.into_bytes());
            }
            assert!(gave || !said, "{ch}: has_channel_output but no output");
            while decoder
                .decode(buf)
                .expect("the session's own output decodes")
                .is_some()
            {}
        }
        while let Some(e) = server.poll_event() {
            if let Event::Message(m) = e {
                server.release(m.channel, m.credit);
            }
        }
        for ch in Channel::ALL {
            assert!(
                server.held_bytes(ch) <= 64 * 1024 + 256 * 1024 + 70_000,
                "held past the window"
            );
        }
        // spec: wire.md §21.4.2 — a quarter of the buffer plus one message, at most.
        assert!(
            server.replay_charge() <= 4 * (RESUME_BUFFER + 256 * 1024 + 20_000),
            "replay buffers past their bound"
        );
    }
}

/// The `decompress` target: byte 0 picks codec and shuffle, bytes 1–4 the declared length
/// (big-endian), the rest is the compressed data. Decompression never panics, never returns
/// other than exactly the declared length, and never allocates past the 1 MiB limit.
pub fn decompress(data: &[u8]) {
    use crate::frame::{Codec, Compression, Shuffle};
    if data.len() < 5 {
        return;
    }
    let codec = if data[0] & 1 == 0 {
        Codec::Lz4
    } else {
        Codec::Snappy
    };
    let shuffle = [
        Shuffle::None,
        Shuffle::Bytes2,
        Shuffle::Bytes4,
        Shuffle::Bytes8,
    ][usize::from((data[0] >> 1) & 3)];
    let declared = u64::from(u32::from_be_bytes([data[1], data[2], data[3], data[4]]));
    let compression = Compression::Compressed {
        codec,
        shuffle,
        uncompressed_len: declared,
    };
    let payload = Bytes::copy_from_slice(&data[5..]);
    if let Ok(out) = crate::payload::decompress(&payload, compression, 1 << 20) {
        assert_eq!(
            out.len() as u64,
            declared,
            "decompressed length differs from the declared one"
        );
    }
}

/// The `hello_decoder` target: the input is a HELLO payload, read with each combination of the
/// version 1.1 flags (`RESUME`, `SESSION`: the blocks after the Agent, wire.md §5.2, §21).
pub fn hello_decoder(data: &[u8]) {
    for flags in 0..4u8 {
        hello_decoder_with_flags(data, flags);
    }
}

fn hello_decoder_with_flags(data: &[u8], flags: u8) {
    let header = FrameHeader {
        frame_type: FrameType::HELLO,
        flags,
        payload_len: data.len(),
        header_len: 0,
    };
    let decoder = FrameDecoder::new(Settings::default());
    if let Ok(frame) = Frame::load(header, Bytes::copy_from_slice(data), decoder.limits()) {
        if let Frame::Hello(hello) = &frame {
            // Decoding validated the settings; resolving them again must agree.
            let settings = hello.resolved_settings().expect("validated on decode");
            settings.validate().expect("resolved settings are in range");
        }
        if data.len() as u64 <= crate::frame::HELLO_MAX_PAYLOAD {
            check_round_trip(&frame, &decoder);
        }
    }
}

crate::wire_type! {
    /// The rkyv type the `payload` target validates arbitrary bytes as: strings, a vector, an
    /// optional and numbers, so bytecheck's pointer, length, UTF-8 and tag checks all run.
    pub struct FuzzCall @ 1 {
        pub method: String,
        pub args: Vec<u8>,
        pub values: Vec<f64>,
        pub note: Option<String>,
        pub id: u64,
    }
}

/// The `payload` target: the bytes as a typed array (wire.md §11.4) and as an rkyv archive
/// (§11.3). Oracles: no panic; a typed array that parses has exactly product(dims) × size data
/// bytes and reads as its dtype; an archive is only ever handed out after validation, and one
/// that validates deserializes.
pub fn payload(data: &[u8]) {
    use crate::payload::{ArchivedPayload, DType, SchemaBinding, TypedArrayView};
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(view) = TypedArrayView::parse(bytes.clone()) {
        let count: u64 = view.dims().iter().product();
        assert_eq!(
            count * view.dtype().size() as u64,
            view.data().len() as u64,
            "data length matches the shape"
        );
        let n = match view.dtype() {
            DType::F64 => view.as_slice::<f64>().map(|s| s.len()),
            DType::U8 => view.as_slice::<u8>().map(|s| s.len()),
            DType::I32 => view.as_slice::<i32>().map(|s| s.len()),
            _ => Ok(count as usize),
        };
        assert_eq!(n.ok(), Some(count as usize), "reads as its dtype");
    }
    let binding = SchemaBinding::of::<FuzzCall>();
    if let Ok(archived) = ArchivedPayload::<FuzzCall>::new(bytes, 0, Some(&binding)) {
        if archived.get().is_ok() {
            archived
                .deserialize()
                .expect("a validated archive deserializes");
        }
    }
}

/// The `legacy_decoder` target (legacy.md §L3, §L4): a legacy binary message, and the same bytes
/// as a TEXT message when they are UTF-8. A message that decodes must re-encode (header
/// rewritten to the smallest msgpack forms) and decode to the same header and payload; the
/// payload is always the undecoded tail of the input.
pub fn legacy_decoder(data: &[u8]) {
    use crate::legacy::{self, LegacyLimits};
    let limits = if data.first().is_some_and(|b| b & 1 == 1) {
        LegacyLimits {
            max_header_bytes: 64,
            max_header_fields: 4,
        }
    } else {
        LegacyLimits::default()
    };
    let _ = legacy::msgpack::skip_value(data, 0);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = legacy::TextMessage::parse(text);
        let _ = legacy::AuthInfo::parse(text);
    }
    let input = Bytes::copy_from_slice(data);
    let Ok(message) = legacy::decode(input.clone(), &limits) else {
        return;
    };
    assert!(
        input.ends_with(&message.payload),
        "payload is not the input's tail"
    );
    let mut wire = Vec::new();
    legacy::encode_header(&message.header, &mut wire).expect("a decoded header re-encodes");
    wire.extend_from_slice(&message.payload);
    let again = legacy::decode(Bytes::from(wire), &LegacyLimits::default())
        .expect("a re-encoded message decodes");
    assert_eq!(again, message, "re-encoded message differs");
}

/// Decodes `input` with a fresh decoder, fed in two pieces cut at `cut`; returns the events up to
/// the first error, and the error.
fn ws_events(
    role: crate::websocket::Role,
    max: u64,
    input: &[u8],
    cut: usize,
) -> (
    Vec<crate::websocket::WsEvent>,
    Option<crate::websocket::WsFrameError>,
) {
    use crate::websocket::{Decoded, WsDecoder};
    let mut d = WsDecoder::new(role, max);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in [&input[..cut], &input[cut..]] {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Decoded::Event(e)) => events.push(e),
                Ok(Decoded::NeedBytes(n)) => {
                    assert!(
                        n > buf.len(),
                        "asks for {n} bytes while holding {}",
                        buf.len()
                    );
                    break;
                }
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

/// The `websocket` target: the first byte picks the role, the message limit and a split
/// point; the rest is a received byte stream (and, as text, an upgrade request and response).
/// Decoding in two pieces must give what decoding at once gives; every binary message
/// re-encodes (as the peer would send it) and decodes to itself.
pub fn websocket(data: &[u8]) {
    use crate::websocket::{handshake, Decoded, OpCode, Role, WsDecoder, WsEncoder, WsEvent};
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let _ = handshake::parse_request(input);
    let _ = handshake::parse_response(input, "dGhlIHNhbXBsZSBub25jZQ==", &["rhizomorph.v1"]);
    let role = if selector & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let max = if selector & 2 == 0 { 1 << 20 } else { 300 };
    let cut = (selector as usize >> 2) * input.len() / 64;
    let cut = cut.min(input.len());
    let whole = ws_events(role, max, input, input.len());
    let split = ws_events(role, max, input, cut);
    assert_eq!(whole, split, "decoding in pieces differs");
    let peer = WsEncoder::new(match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    });
    for event in whole.0 {
        if let WsEvent::Binary(b) = event {
            assert!(b.len() as u64 <= max, "message over the limit");
            let wire = peer.frame(OpCode::Binary, &b, || [1, 2, 3, 4]);
            let mut buf = BytesMut::from(&wire[..]);
            let again = WsDecoder::new(role, max).decode(&mut buf);
            assert_eq!(again, Ok(Decoded::Event(WsEvent::Binary(b))));
        }
    }
}

/// The `legacy_session` target: byte 0 picks the side (client or server) and whether the
/// application reads; the rest is a sequence of WebSocket messages, each a kind byte (BINARY,
/// TEXT, close, time passing, a send by the application) and a 2-byte length. Whatever arrives,
/// the session never panics; its queued events, its unread bytes and its output stay within
/// its bounds; it ends exactly once; and once ended it transmits nothing.
pub fn legacy_session(data: &[u8]) {
    use crate::header::RoutingHeader;
    use crate::legacy::handshake::AuthInfo;
    use crate::legacy::session::{
        LegacyConfig, LegacyEvent, LegacySession, LegacyTransmit, Side, MESSAGE_OVERHEAD,
    };
    use crate::websocket::{CloseFrame, WsEvent};
    use std::time::{Duration, Instant};
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let config = LegacyConfig {
        send_buffer: 64 * 1024,
        receive_window: 64 * 1024,
        ..LegacyConfig::default()
    };
    let side = if mode & 1 == 0 {
        Side::Server
    } else {
        Side::Client {
            auth: AuthInfo::default(),
        }
    };
    let reads = mode & 2 != 0;
    let mut s = LegacySession::new(side, config.clone(), now);
    let (mut t, mut ended, mut held) = (now, 0, 0u64);
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let body = Bytes::copy_from_slice(&rest[3..3 + len]);
        rest = &rest[3 + len..];
        if s.wants_read() || kind % 5 >= 3 {
            match kind % 5 {
                0 => s.handle_message(t, WsEvent::Binary(body)),
                1 => s.handle_message(t, WsEvent::Text(body)),
                2 => s.handle_message(
                    t,
                    WsEvent::Close(CloseFrame {
                        code: Some(1000),
                        reason: String::new(),
                    }),
                ),
                3 => {
                    t += Duration::from_millis(u64::from(kind) * 100);
                    s.handle_timeout(t);
                }
                _ => {
                    let _ = s.send(&RoutingHeader::new().with("to", "x"), body);
                }
            }
        }
        assert!(
            s.queued_bytes() <= config.send_buffer + 70_000,
            "send buffer"
        );
        assert!(
            s.pending_events() <= 4 + config.receive_window / MESSAGE_OVERHEAD,
            "events unbounded"
        );
        let mut texts = 0;
        // Events, then what they let out (which may end the session: another event).
        for _ in 0..2 {
            while let Some(e) = s.poll_event() {
                match e {
                    LegacyEvent::Authenticate(_) => {
                        s.accept(r#"{"type": "connection_info"}"#.into())
                    }
                    LegacyEvent::TokenRequested => s.send_reconnection_token("t"),
                    LegacyEvent::Message(m) if reads => s.release(m.credit),
                    LegacyEvent::Message(m) => held += m.credit,
                    LegacyEvent::Closed(_) => ended += 1,
                    _ => {}
                }
            }
            if mode & 4 != 0 {
                s.mark_ready();
            }
            while let Some(out) = s.poll_transmit(t) {
                if let LegacyTransmit::Text(_) = out {
                    texts += 1;
                    assert!(texts <= 8, "TEXT replies are one slot each");
                }
            }
        }
        assert!(
            held <= (config.receive_window + MESSAGE_OVERHEAD + 70_000) as u64,
            "read past the receive window"
        );
        assert_eq!(s.is_closed(), ended == 1, "ends exactly once");
        if s.is_closed() {
            assert!(s.poll_transmit(t).is_none(), "nothing after the end");
        }
    }
}
