//! `Display` for frames: one readable line per frame, as `rhizomorph inspect` prints it and the
//! session's `trace!` lines show it.
//!
//! Owns the text form only. Never decodes (a frame is already checked when it exists) and
//! never prints more than 32 bytes of a payload ([`preview`]).

use std::fmt::{self, Write as _};

use super::{Compression, CreditTarget, Frame, PayloadEncoding, SettingId};
use crate::hex::{preview, to_hex};

impl fmt::Display for Frame {
    /// One line: the frame type, then its fields (`MESSAGE FIRST|LAST channel=rpc …`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&line(self))
    }
}

fn line(frame: &Frame) -> String {
    match frame {
        Frame::Padding { len } => format!("PADDING {len} bytes"),
        Frame::Hello(h) => {
            let versions: Vec<String> = h.versions.iter().map(|v| format!("{v:#06x}")).collect();
            let settings: Vec<String> = h
                .settings
                .iter()
                .map(|&(id, v)| match SettingId::from_id(id) {
                    Some(s) => format!("{}={v}", s.name()),
                    None => format!("unknown(0x{id:x})={v}"),
                })
                .collect();
            // Resume tokens are secrets (wire.md §21.7): only their length is shown.
            let resume = match (&h.resume, &h.session) {
                (Some(r), _) => format!(
                    " RESUME session={} token={} bytes received={:?}",
                    to_hex(&r.session_id), r.token.len(), r.received
                ),
                (None, Some(t)) => format!(
                    " SESSION session={} token={} bytes status={} received={:?}",
                    to_hex(&t.session_id), t.token.len(), t.status.name(), t.received
                ),
                (None, None) => String::new(),
            };
            format!(
                "HELLO versions=[{}] settings=[{}] token={} agent={:?}{resume}",
                versions.join(","),
                settings.join(" "),
                if h.token.is_empty() { "none".into() } else { format!("{} bytes", h.token.len()) },
                h.agent
            )
        }
        Frame::Message(m) => {
            let mut line = format!(
                "MESSAGE {}{} channel={}",
                if m.start.is_some() { "FIRST" } else { "" },
                match (m.start.is_some(), m.last) {
                    (true, true) => "|LAST",
                    (false, true) => "LAST",
                    (false, false) => "CONT",
                    (true, false) => "",
                },
                m.channel
            );
            if let Some(s) = &m.start {
                let _ = write!(line, " message_len={} encoding={}", s.message_len, s.encoding.name());
                if let PayloadEncoding::Rkyv { schema_id } = s.encoding {
                    let _ = write!(line, "(schema {schema_id})");
                }
                match s.compression {
                    Compression::None => line.push_str(" compression=none"),
                    Compression::Compressed { codec, shuffle, uncompressed_len } => {
                        let _ = write!(
                            line,
                            " compression={}{} uncompressed_len={uncompressed_len}",
                            codec.name(),
                            match shuffle.element_size() {
                                1 => String::new(),
                                k => format!("+shuffle{k}"),
                            }
                        );
                    }
                }
                let _ = write!(line, " header_block=0x{}", to_hex(&s.header_block));
            }
            let _ = write!(line, " data[{}]={}", m.data.len(), preview(&m.data));
            line
        }
        Frame::Credit(c) => format!(
            "CREDIT target={} increment={}",
            match c.target {
                CreditTarget::Channel(ch) => ch.name(),
                CreditTarget::Connection => "connection",
            },
            c.increment
        ),
        Frame::Schema(s) => format!(
            "SCHEMA channel={} id={} layout_hash={:#018x} name={:?}",
            s.channel, s.schema_id, s.layout_hash, s.name
        ),
        Frame::Ping(p) => format!("PING opaque={:#018x}", p.opaque),
        Frame::Pong(p) => format!("PONG opaque={:#018x}", p.opaque),
        Frame::Cancel(c) => format!(
            "CANCEL{} channel={} sequence={} code={}",
            if c.abort { " ABORT" } else { "" },
            c.channel,
            c.sequence,
            c.code
        ),
        Frame::GoAway(g) => format!(
            "GOAWAY code={} accepted=[control {}, rpc {}, stream {}, bulk {}] reason={:?}",
            g.code, g.accepted[0], g.accepted[1], g.accepted[2], g.accepted[3], g.reason
        ),
        Frame::Close(c) => format!("CLOSE code={} reason={:?}", c.code, c.reason),
        Frame::Ack(a) => format!("ACK channel={} received={}", a.channel, a.received),
        Frame::Ignored { frame_type, flags, payload } => format!(
            "IGNORED type={frame_type:#04x} flags={flags:#04x} payload[{}] (unknown ignorable type, wire.md §4.2.2)",
            payload.len()
        ),
    }
}
