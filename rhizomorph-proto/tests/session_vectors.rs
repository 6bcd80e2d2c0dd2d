//! Replays every exchange in `spec/vectors/sessions.json` (wire.md Appendix A, session vectors)
//! against the sans-IO session, once in each role the vector names: the other side's bytes are
//! fed in, this side's application calls are made, and everything this side writes and every
//! event its application sees must be what the vector says — compared as Appendix A says
//! (MESSAGE runs by content, headers by decoded fields, CREDIT summed per target, HELLO
//! settings by effective value, a CLOSE's reason by its kind).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rhizomorph_proto::frame::{
    Channel, Compression, CreditTarget, ErrorCode, Frame, FrameDecoder, PayloadEncoding, SettingId,
    Settings,
};
use rhizomorph_proto::header::{HeaderDecoder, RoutingHeader};
use rhizomorph_proto::hex::{parse_hex, to_hex};
use rhizomorph_proto::legacy::handshake::AuthInfo;
use rhizomorph_proto::legacy::session::{
    LegacyConfig, LegacyEvent, LegacySession, LegacyTransmit, Side,
};
use rhizomorph_proto::session::{
    Event, Framing, Initiator, OutgoingMessage, Session, SessionConfig, Target,
};
use rhizomorph_proto::websocket::WsEvent;
use serde_json::{json, Value};

fn doc() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/sessions.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("sessions.json")).expect("JSON")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn bytes_of(v: &Value) -> Bytes {
    Bytes::from(parse_hex(s(v)).expect("hex"))
}

fn channel(v: &Value) -> Channel {
    Channel::from_name(s(v)).unwrap_or_else(|| panic!("channel {v}"))
}

fn code(v: &Value) -> ErrorCode {
    ErrorCode::from_name(s(v)).unwrap_or_else(|| panic!("error code {v}"))
}

fn code_name(c: ErrorCode) -> Value {
    json!(c.name().expect("a known code"))
}

fn settings(v: &Value) -> Settings {
    let pairs: Vec<(u64, u64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (u(&p[0]), u(&p[1])))
        .collect();
    Settings::from_pairs(&pairs).expect("valid settings")
}

/// Every setting by its effective value (absent ones take their default, §3.3).
fn effective(s: &Settings) -> Value {
    json!(SettingId::ALL
        .iter()
        .map(|&id| json!([id as u64, s.get(id)]))
        .collect::<Vec<_>>())
}

fn fields_of(h: &RoutingHeader) -> Value {
    json!(h
        .fields()
        .iter()
        .map(|f| json!([
            String::from_utf8_lossy(&f.name),
            String::from_utf8_lossy(&f.value)
        ]))
        .collect::<Vec<_>>())
}

fn header_of(v: &Value) -> RoutingHeader {
    let mut h = RoutingHeader::new();
    for p in v.as_array().unwrap() {
        h.push(s(&p[0]).to_string(), s(&p[1]).to_string());
    }
    h
}

/// A frame this side wrote, as the vectors write frames (wire.md Appendix A), the header block
/// decoded by the peer's decoder for its channel.
fn frame_json(frame: Frame, decoders: &mut [HeaderDecoder; 4]) -> Value {
    match frame {
        Frame::Padding { .. } => json!({"type": "PADDING"}),
        Frame::Hello(h) => json!({"type": "HELLO", "versions": h.versions,
            "settings": effective(&Settings::from_pairs(&h.settings).expect("valid settings")), "token": to_hex(&h.token), "agent": h.agent}),
        Frame::Message(m) => {
            let mut f = json!({"type": "MESSAGE", "channel": m.channel.name(),
                "first": m.start.is_some(), "last": m.last, "chunk_data": to_hex(&m.data)});
            if let Some(start) = m.start {
                f["message_length"] = json!(start.message_len);
                f["encoding"] = json!(start.encoding.name());
                if let PayloadEncoding::Rkyv { schema_id } = start.encoding {
                    f["schema_id"] = json!(schema_id);
                }
                assert_eq!(
                    start.compression,
                    Compression::None,
                    "vectors send uncompressed"
                );
                f["compression"] = json!("none");
                let header = decoders[m.channel.index()]
                    .decode(start.header_block)
                    .expect("the session's header block decodes (§6.4)");
                f["fields"] = fields_of(&header);
            }
            f
        }
        Frame::Credit(c) => {
            // spec: wire.md §5.4 — an Increment of 0 is never valid (sums would hide it).
            assert!(c.increment > 0, "a CREDIT with Increment 0");
            let target = match c.target {
                CreditTarget::Channel(ch) => ch.name(),
                CreditTarget::Connection => "connection",
            };
            json!({"type": "CREDIT", "target": target, "increment": c.increment})
        }
        Frame::Ping(p) => json!({"type": "PING", "opaque": format!("{:016x}", p.opaque)}),
        Frame::Pong(p) => json!({"type": "PONG", "opaque": format!("{:016x}", p.opaque)}),
        Frame::Cancel(c) => json!({"type": "CANCEL", "channel": c.channel.name(),
            "sequence": c.sequence, "error_code": code_name(c.code), "abort": c.abort}),
        Frame::GoAway(g) => json!({"type": "GOAWAY", "error_code": code_name(g.code),
            "accepted_count": g.accepted, "reason": g.reason}),
        Frame::Close(c) => json!({"type": "CLOSE", "error_code": code_name(c.code),
            "reason": c.reason}),
        other => json!({"type": format!("{other:?}")}),
    }
}

/// Appendix A's comparison: PADDING dropped; consecutive MESSAGE frames of one message merged
/// into one run (chunk sizes are the sender's choice, §8.1, §9.5.1); CREDIT taken out and
/// summed per target (when non-urgent credit leaves is the receiver's choice, §9.5.2); HELLO
/// settings by effective value; a CLOSE's reason reduced to its kind (the text before `:`)
/// when the vector names one, else dropped.
fn normalize(frames: Vec<Value>, expected_side: bool) -> (Vec<Value>, BTreeMap<String, u64>) {
    let mut out: Vec<Value> = Vec::new();
    let mut credit = BTreeMap::new();
    for mut f in frames {
        match s(&f["type"]) {
            "PADDING" => {}
            "CREDIT" => {
                *credit.entry(s(&f["target"]).to_string()).or_default() += u(&f["increment"])
            }
            "MESSAGE" => {
                if let Some(prev) = out.last_mut().filter(|p| {
                    p["type"] == "MESSAGE"
                        && p["channel"] == f["channel"]
                        && p["last"] == false
                        && f["first"] == false
                }) {
                    let data = format!("{}{}", s(&prev["chunk_data"]), s(&f["chunk_data"]));
                    prev["chunk_data"] = json!(data);
                    prev["last"] = f["last"].clone();
                } else {
                    out.push(f);
                }
            }
            "HELLO" if expected_side => {
                f["settings"] = effective(&settings(&f["settings"]));
                out.push(f);
            }
            "CLOSE" if expected_side => {
                f.as_object_mut().unwrap().remove("reason");
                out.push(f);
            }
            _ => out.push(f),
        }
    }
    (out, credit)
}

/// One side of a vector, played by the real session.
struct Replay {
    name: String,
    role: &'static str,
    quic: bool,
    session: Session,
    now: Instant,
    /// Decoders for the header blocks this side writes (the peer's tables, §6.3).
    decoders: [HeaderDecoder; 4],
    /// Credit of delivered messages not yet released, per channel, oldest first.
    held: [VecDeque<u64>; 4],
}

impl Replay {
    fn new(v: &Value, role: &'static str) -> Replay {
        let me = &v[role];
        let peer = &v[if role == "client" { "server" } else { "client" }];
        let quic = v["transport"] == "quic";
        let mut config = SessionConfig::default()
            .with_settings(settings(&me["settings"]))
            .with_token(bytes_of(&me["token"]))
            .with_agent(s(&me["agent"]));
        if quic {
            config = config.with_framing(Framing::PerChannelStreams);
        }
        if let Some(bytes) = v["config"][role]["max_reassembly"].as_u64() {
            config = config.with_max_reassembly(bytes);
        }
        let now = Instant::now();
        let session = if role == "client" {
            Session::client(config, now)
        } else {
            Session::server(config, now)
        };
        let table = settings(&peer["settings"]).header_table_size as usize;
        Replay {
            name: format!("{} as {role}", s(&v["name"])),
            role,
            quic,
            session,
            now,
            decoders: std::array::from_fn(|_| HeaderDecoder::new(table, 1 << 20)),
            held: Default::default(),
        }
    }

    /// Everything the session writes now, per target, as frames.
    fn written(&mut self) -> BTreeMap<String, Vec<Value>> {
        let loose = Settings::default()
            .with_max_frame_payload(16_777_215)
            .with_max_header_list_size(1 << 20);
        let decoder = FrameDecoder::new(loose);
        let targets: Vec<(String, Target)> = if self.quic {
            Channel::ALL
                .iter()
                .map(|&c| (c.name().to_string(), Target::Stream(c)))
                .collect()
        } else {
            vec![(String::new(), Target::Batch)]
        };
        let mut out = BTreeMap::new();
        for (name, target) in targets {
            let mut frames = Vec::new();
            while let Some(t) = self.session.poll_transmit(self.now, target, 1 << 20) {
                let mut buf = BytesMut::from(&t.into_bytes()[..]);
                while let Some(f) = decoder.decode(&mut buf).expect("the session writes frames") {
                    frames.push(frame_json(f, &mut self.decoders));
                }
                assert!(buf.is_empty(), "{}: a batch ends inside a frame", self.name);
            }
            if !frames.is_empty() {
                out.insert(name, frames);
            }
        }
        out
    }

    fn events(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(e) = self.session.poll_event() {
            let j = match e {
                Event::HelloReceived { token, agent } => {
                    json!({"event": "hello_received", "token": to_hex(&token), "agent": agent})
                }
                Event::Connected { version, .. } => {
                    json!({"event": "connected", "version": version})
                }
                Event::Message(m) => {
                    self.held[m.channel.index()].push_back(m.credit);
                    let mut j = json!({"event": "message", "channel": m.channel.name(),
                        "sequence": m.sequence, "fields": fields_of(&m.header),
                        "payload": to_hex(&m.payload)});
                    if m.encoding != PayloadEncoding::Raw {
                        j["encoding"] = json!(m.encoding.name());
                    }
                    if let Some(e) = &m.error {
                        j["error"] = json!({"code": code_name(e.code()), "kind": e.kind()});
                    }
                    j
                }
                Event::MessageAborted {
                    channel,
                    sequence,
                    code,
                } => json!({"event":
                    "message_aborted", "channel": channel.name(), "sequence": sequence,
                    "code": code_name(code)}),
                Event::MessageRefused {
                    channel,
                    sequence,
                    code,
                } => json!({"event":
                    "message_refused", "channel": channel.name(), "sequence": sequence,
                    "code": code_name(code)}),
                Event::SendFailed { channel, id, code } => json!({"event": "send_failed",
                    "channel": channel.name(), "id": id, "code": code_name(code)}),
                Event::GoAway { code, .. } => json!({"event": "goaway", "code": code_name(code)}),
                Event::Closed {
                    code, initiator, ..
                } => json!({"event": "closed",
                "code": code_name(code), "initiator": match initiator {
                    Initiator::Local => "local",
                    Initiator::Peer => "peer",
                }}),
                Event::Rtt { .. } | Event::SchemaBound(_) => continue,
                other => json!({"event": format!("{other:?}")}),
            };
            out.push(j);
        }
        out
    }

    fn feed(&mut self, step: &Value) {
        let mut raw = bytes_of(&step["hex"]);
        if self.quic {
            let ch = channel(&step["stream"]);
            if step["opens"] == true {
                // spec: wire.md §17.2.1 — a stream starts with its channel id.
                let (id, used) = rhizomorph_proto::frame::varint::read(&raw).unwrap();
                assert_eq!(id, ch.index() as u64, "{}: stream preamble", self.name);
                raw = raw.slice(used..);
            }
            self.session.handle_stream(self.now, ch, raw);
        } else {
            self.session.handle_batch(self.now, raw);
        }
    }

    fn act(&mut self, a: &Value) {
        let n = &self.name;
        match s(&a["action"]) {
            "send" => {
                let m = OutgoingMessage::new(header_of(&a["fields"]), bytes_of(&a["payload"]));
                let id = self.session.send(channel(&a["channel"]), m).expect("send");
                assert_eq!(id, u(&a["id"]), "{n}: send id");
            }
            "release" => {
                let ch = channel(&a["channel"]);
                let credit = self.held[ch.index()]
                    .pop_front()
                    .expect("a message to release");
                self.session.release(ch, credit);
            }
            "accept" => self.session.accept(bytes_of(&a["token"])),
            "reject" => self.session.reject(code(&a["code"]), s(&a["reason"])),
            "cancel" => self.session.cancel(channel(&a["channel"]), u(&a["id"])),
            "reject_incoming" => self.session.reject_incoming(
                channel(&a["channel"]),
                u(&a["sequence"]),
                code(&a["code"]),
            ),
            "goaway" => self.session.goaway(code(&a["code"]), s(&a["reason"])),
            "close" => self.session.close(code(&a["code"]), s(&a["reason"])),
            "owe_replies" => self.session.owe_replies(u(&a["n"])),
            "reply_settled" => self.session.reply_settled(),
            other => panic!("{n}: unknown action {other}"),
        }
    }

    fn expect_written(&mut self, step: &Value) {
        let mut written = self.written();
        let target = if self.quic {
            s(&step["stream"]).to_string()
        } else {
            String::new()
        };
        let got = written.remove(&target).unwrap_or_default();
        assert!(
            written.is_empty(),
            "{}: wrote on other streams too: {written:?}",
            self.name
        );
        let want: Vec<Value> = step["frames"].as_array().unwrap().clone();
        let (mut got, got_credit) = normalize(got, false);
        let (want, want_credit) = normalize(want, true);
        // A CLOSE's reason is for people (§14.2.2); a vector pins only the kind it starts with.
        for (g, w) in got.iter_mut().zip(&want) {
            if g["type"] == "CLOSE" && w["type"] == "CLOSE" {
                let reason = g
                    .as_object_mut()
                    .unwrap()
                    .remove("reason")
                    .unwrap_or_default();
                if let Some(kind) = w.get("kind") {
                    let prefix = format!("{}:", s(kind));
                    assert!(
                        s(&reason).starts_with(&prefix),
                        "{}: CLOSE {reason}",
                        self.name
                    );
                    g["kind"] = kind.clone();
                }
            }
        }
        assert_eq!(got, want, "{}: frames written (step {step})", self.name);
        assert_eq!(got_credit, want_credit, "{}: CREDIT written", self.name);
    }

    fn run(mut self, v: &Value) {
        for step in v["steps"].as_array().unwrap() {
            if let Some(from) = step.get("from") {
                if from == self.role {
                    self.expect_written(step);
                } else {
                    self.feed(step);
                }
            } else if step["side"] == self.role {
                if let Some(a) = step.get("app") {
                    self.act(a);
                } else {
                    let want = step["events"].as_array().unwrap().clone();
                    assert_eq!(self.events(), want, "{}: events", self.name);
                }
            }
        }
        let rest = self.written();
        assert!(
            rest.is_empty(),
            "{}: wrote more at the end: {rest:?}",
            self.name
        );
        let rest = self.events();
        assert!(
            rest.is_empty(),
            "{}: unread events at the end: {rest:?}",
            self.name
        );
    }
}

/// A legacy-mode vector (`transport: legacy`, legacy.md §L3–§L4) played by the real
/// [`LegacySession`]: TEXT compared as JSON values, BINARY byte for byte.
struct LegacyReplay {
    name: String,
    role: &'static str,
    session: LegacySession,
    now: Instant,
    held: VecDeque<u64>,
}

impl LegacyReplay {
    fn new(v: &Value, role: &'static str) -> LegacyReplay {
        let now = Instant::now();
        let side = if role == "client" {
            let auth: AuthInfo = serde_json::from_value(v["client"]["auth"].clone()).unwrap();
            Side::Client { auth }
        } else {
            Side::Server
        };
        LegacyReplay {
            name: format!("{} as {role}", s(&v["name"])),
            role,
            session: LegacySession::new(side, LegacyConfig::default(), now),
            now,
            held: VecDeque::new(),
        }
    }

    fn written(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(t) = self.session.poll_transmit(self.now) {
            out.push(match t {
                LegacyTransmit::Text(b) => {
                    json!({"text": serde_json::from_slice::<Value>(&b).expect("TEXT is JSON")})
                }
                LegacyTransmit::Binary(parts) => json!({"binary": to_hex(&parts.concat())}),
                LegacyTransmit::Close { code, .. } => json!({"close": code}),
            });
        }
        out
    }

    fn events(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(e) = self.session.poll_event() {
            out.push(match e {
                LegacyEvent::Authenticate(a) => json!({"event": "authenticate",
                    "client_id": a.client_id, "workspace": a.workspace}),
                LegacyEvent::Connected(info) => json!({"event": "connected",
                    "workspace": info.workspace, "client_id": info.client_id,
                    "manager_id": info.manager_id}),
                LegacyEvent::Message(m) => {
                    self.held.push_back(m.credit);
                    json!({"event": "message", "channel": m.channel.name(),
                        "sequence": m.sequence, "fields": fields_of(&m.header),
                        "payload": to_hex(&m.payload), "encoding": m.encoding.name()})
                }
                other => json!({"event": format!("{other:?}")}),
            });
        }
        out
    }

    fn run(mut self, v: &Value) {
        let n = self.name.clone();
        for step in v["steps"].as_array().unwrap() {
            if let Some(from) = step.get("from") {
                if from == self.role {
                    let want = if let Some(t) = step.get("text") {
                        json!({"text": serde_json::from_str::<Value>(s(t)).unwrap()})
                    } else {
                        json!({"binary": step["binary"]})
                    };
                    assert_eq!(self.written(), vec![want], "{n}: written");
                } else {
                    let message = match step.get("text") {
                        Some(t) => WsEvent::Text(Bytes::from(s(t).to_string())),
                        None => WsEvent::Binary(bytes_of(&step["binary"])),
                    };
                    self.session.handle_message(self.now, message);
                }
            } else if step["side"] == self.role {
                if let Some(a) = step.get("app") {
                    match s(&a["action"]) {
                        "accept" => self.session.accept(s(&a["connection_info"]).to_string()),
                        "mark_ready" => self.session.mark_ready(),
                        "send" => {
                            let id = self
                                .session
                                .send(&header_of(&a["fields"]), bytes_of(&a["payload"]))
                                .expect("send");
                            assert_eq!(id, u(&a["id"]), "{n}: send id");
                        }
                        "release" => {
                            let credit = self.held.pop_front().expect("a message to release");
                            self.session.release(credit);
                        }
                        other => panic!("{n}: unknown action {other}"),
                    }
                } else {
                    let want = step["events"].as_array().unwrap().clone();
                    assert_eq!(self.events(), want, "{n}: events");
                }
            }
        }
        assert!(self.written().is_empty(), "{n}: wrote more at the end");
        assert!(self.events().is_empty(), "{n}: unread events at the end");
    }
}

/// wire.md Appendix A: every session vector, replayed in each role it names.
#[test]
fn appendix_a_session_vectors_replay_in_both_roles() {
    let doc = doc();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 12, "{} vectors", vectors.len());
    let (mut replays, mut failed) = (0, Vec::new());
    for v in vectors {
        for role in v["roles"].as_array().unwrap() {
            let role = if role == "client" { "client" } else { "server" };
            let run = std::panic::catch_unwind(|| {
                if v["transport"] == "legacy" {
                    LegacyReplay::new(v, role).run(v)
                } else {
                    Replay::new(v, role).run(v)
                }
            });
            if run.is_err() {
                failed.push(format!("{} as {role}", s(&v["name"])));
            }
            replays += 1;
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {replays} replays failed: {failed:?}",
        failed.len()
    );
    assert!(replays > vectors.len(), "most vectors run in both roles");
}
