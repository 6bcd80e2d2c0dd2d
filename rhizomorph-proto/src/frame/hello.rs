//! HELLO (wire.md §5.2): versions, settings, auth token and agent; in version 1.1 also a
//! client's resume request and a server's session ticket (flags `RESUME` and `SESSION`, §21).
//!
//! Owns the HELLO payload layout and its bounds. Never decides the negotiation outcome (which
//! version, whether the token is good, whether a session resumes): that is the session's and
//! the application's.

use bytes::{Bytes, BytesMut};

use super::error::{EncodeError, FrameError};
use super::reader::PayloadReader;
use super::settings::Settings;
use super::writer;
use super::FrameType;

/// The wire version of this document: 1.0 (wire.md §3.2).
pub const WIRE_VERSION_1_0: u64 = 0x0100;

/// Wire version 1.1: 1.0 plus resumable sessions (wire.md §21): the HELLO flags `RESUME` and
/// `SESSION`, the `RESUME_BUFFER` setting and the ACK frame.
pub const WIRE_VERSION_1_1: u64 = 0x0101;

/// Bytes of a session id (wire.md §21.1).
pub const SESSION_ID_LEN: usize = 16;

/// A client's request to resume a detached session (wire.md §21.6), after its HELLO's Agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The session to resume.
    pub session_id: [u8; SESSION_ID_LEN],
    /// The last resume token the server issued for it (16 – 64 bytes; a secret).
    pub token: Bytes,
    /// Messages of the server's finished here, per channel (§21.3).
    pub received: [u64; 4],
}

/// How a server answered a resume request (wire.md §21.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResumeStatus {
    /// No resume was asked: a new session.
    New,
    /// The session resumed: both sides replay from each other's `received`.
    Resumed,
    /// No such session here (never was, expired, discarded, or the server restarted).
    UnknownSession,
    /// The session was known but its time limit passed.
    Expired,
    /// The session was discarded because what it held for replay exceeded a limit.
    Overflow,
    /// The token does not match, or the client is not the session's identity.
    Forbidden,
    /// The client's `received` counts contradict what the server sent.
    Inconsistent,
}

impl ResumeStatus {
    /// The wire byte (§21.6).
    pub fn id(self) -> u8 {
        match self {
            ResumeStatus::New => 0,
            ResumeStatus::Resumed => 1,
            ResumeStatus::UnknownSession => 2,
            ResumeStatus::Expired => 3,
            ResumeStatus::Overflow => 4,
            ResumeStatus::Forbidden => 5,
            ResumeStatus::Inconsistent => 6,
        }
    }

    /// The status with wire byte `id`: an unknown value is `PROTOCOL_ERROR`.
    pub fn from_id(id: u8) -> Result<ResumeStatus, FrameError> {
        Ok(match id {
            0 => ResumeStatus::New,
            1 => ResumeStatus::Resumed,
            2 => ResumeStatus::UnknownSession,
            3 => ResumeStatus::Expired,
            4 => ResumeStatus::Overflow,
            5 => ResumeStatus::Forbidden,
            6 => ResumeStatus::Inconsistent,
            _ => {
                return Err(FrameError::FieldOutOfRange {
                    field: "resume_status",
                    value: u64::from(id),
                    min: 0,
                    max: 6,
                })
            }
        })
    }

    /// The spec name, e.g. `UNKNOWN_SESSION`.
    pub fn name(self) -> &'static str {
        match self {
            ResumeStatus::New => "NEW",
            ResumeStatus::Resumed => "RESUMED",
            ResumeStatus::UnknownSession => "UNKNOWN_SESSION",
            ResumeStatus::Expired => "EXPIRED",
            ResumeStatus::Overflow => "OVERFLOW",
            ResumeStatus::Forbidden => "FORBIDDEN",
            ResumeStatus::Inconsistent => "INCONSISTENT",
        }
    }
}

/// A server's session block (wire.md §21.1, §21.6), after its HELLO's Agent: the session's id,
/// the token that resumes it next time, and how a resume request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTicket {
    /// The session (the same one when `status` is `Resumed`, a new one otherwise).
    pub session_id: [u8; SESSION_ID_LEN],
    /// The token for the next resume (16 – 64 bytes, single use; a secret).
    pub token: Bytes,
    /// The answer to the client's resume request (`New` if it made none).
    pub status: ResumeStatus,
    /// Messages of the client's finished here, per channel (zero unless `Resumed`).
    pub received: [u64; 4],
}

/// The first frame each peer sends (wire.md §3.2, §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Wire versions: all supported (client) or the one chosen (server).
    pub versions: Vec<u64>,
    /// `(id, value)` settings pairs as sent, in order (unknown ids kept, §3.3.3).
    pub settings: Vec<(u64, u64)>,
    /// The auth token (client) or an application value (server); opaque, ≤ 4,096 bytes.
    pub token: Bytes,
    /// Informational implementation name, ≤ 256 bytes of UTF-8.
    pub agent: String,
    /// Version 1.1, client: resume this session (flag `RESUME`, §21.6). Boxed: rare, and it
    /// would otherwise make every [`Frame`](super::Frame) larger.
    pub resume: Option<Box<ResumeRequest>>,
    /// Version 1.1, server: the session ticket (flag `SESSION`, §21.1). Boxed, as `resume`.
    pub session: Option<Box<SessionTicket>>,
}

impl Hello {
    /// Most versions in one HELLO (wire.md §3.3.4).
    pub const MAX_VERSIONS: u64 = 16;
    /// Most settings in one HELLO (wire.md §3.3.4).
    pub const MAX_SETTINGS: u64 = 64;
    /// Longest token (wire.md §5.2).
    pub const MAX_TOKEN: u64 = 4_096;
    /// Longest agent (wire.md §5.2).
    pub const MAX_AGENT: u64 = 256;
    /// Flag: a resume request follows the Agent (version 1.1, client, §21.6).
    pub const FLAG_RESUME: u8 = 0x01;
    /// Flag: a session block follows the Agent (version 1.1, server, §21.1).
    pub const FLAG_SESSION: u8 = 0x02;
    /// Shortest resume token (§21.7: at least 128 random bits).
    pub const MIN_RESUME_TOKEN: u64 = 16;
    /// Longest resume token.
    pub const MAX_RESUME_TOKEN: u64 = 64;

    /// A HELLO offering version 1.0 with `settings` (only non-default values are sent).
    pub fn new(settings: &Settings, token: Bytes, agent: impl Into<String>) -> Hello {
        Hello {
            versions: vec![WIRE_VERSION_1_0],
            settings: settings.to_pairs(),
            token,
            agent: agent.into(),
            resume: None,
            session: None,
        }
    }

    /// The Flags byte this HELLO is sent with.
    pub fn flags(&self) -> u8 {
        let mut f = 0;
        if self.resume.is_some() {
            f |= Self::FLAG_RESUME;
        }
        if self.session.is_some() {
            f |= Self::FLAG_SESSION;
        }
        f
    }

    /// The settings this HELLO announces, defaults filled in (already validated on decode).
    pub fn resolved_settings(&self) -> Result<Settings, FrameError> {
        Settings::from_pairs(&self.settings)
    }

    pub(crate) fn load(flags: u8, payload: Bytes) -> Result<Hello, FrameError> {
        let mut r = PayloadReader::new(FrameType::HELLO, payload);
        // spec: wire.md §5.2 — 1 to 16 versions, at most 64 settings, token ≤ 4,096, agent ≤ 256.
        let version_count = r.bounded("version_count", 1, Self::MAX_VERSIONS)?;
        let mut versions = Vec::with_capacity(version_count as usize);
        for _ in 0..version_count {
            versions.push(r.varint("version")?);
        }
        let setting_count = r.bounded("setting_count", 0, Self::MAX_SETTINGS)?;
        let mut settings = Vec::with_capacity(setting_count as usize);
        for _ in 0..setting_count {
            let id = r.varint("setting_id")?;
            let value = r.varint("setting_value")?;
            settings.push((id, value));
        }
        // spec: wire.md §3.3.1, §3.3.2 — duplicates and out-of-range values are errors.
        Settings::from_pairs(&settings)?;
        let token = r.string("token", 0, Self::MAX_TOKEN)?;
        let agent = r.text("agent", 0, Self::MAX_AGENT)?;
        // spec: wire.md §21.1, §21.6 — the version 1.1 blocks, each present iff its flag is set
        // (a 1.0 receiver ignores the flags and finds trailing bytes: TrailingBytes).
        let resume = if flags & Self::FLAG_RESUME != 0 {
            let (session_id, token) = read_session(&mut r)?;
            Some(Box::new(ResumeRequest {
                session_id,
                token,
                received: received(&mut r)?,
            }))
        } else {
            None
        };
        let session = if flags & Self::FLAG_SESSION != 0 {
            let (session_id, token) = read_session(&mut r)?;
            let status = ResumeStatus::from_id(r.u8("resume_status")?)?;
            Some(Box::new(SessionTicket {
                session_id,
                token,
                status,
                received: received(&mut r)?,
            }))
        } else {
            None
        };
        r.finish()?;
        Ok(Hello {
            versions,
            settings,
            token,
            agent,
            resume,
            session,
        })
    }

    pub(crate) fn encode_payload(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        writer::check_len(
            "versions",
            self.versions.len(),
            1,
            Self::MAX_VERSIONS as usize,
        )?;
        writer::check_len(
            "settings",
            self.settings.len(),
            0,
            Self::MAX_SETTINGS as usize,
        )?;
        writer::varint(dst, "version_count", self.versions.len() as u64)?;
        for &v in &self.versions {
            writer::varint(dst, "version", v)?;
        }
        writer::varint(dst, "setting_count", self.settings.len() as u64)?;
        for &(id, value) in &self.settings {
            writer::varint(dst, "setting_id", id)?;
            writer::varint(dst, "setting_value", value)?;
        }
        writer::string(dst, "token", &self.token, 0, Self::MAX_TOKEN as usize)?;
        writer::string(
            dst,
            "agent",
            self.agent.as_bytes(),
            0,
            Self::MAX_AGENT as usize,
        )?;
        if let Some(r) = &self.resume {
            write_session(dst, &r.session_id, &r.token)?;
            write_received(dst, &r.received)?;
        }
        if let Some(t) = &self.session {
            write_session(dst, &t.session_id, &t.token)?;
            dst.extend_from_slice(&[t.status.id()]);
            write_received(dst, &t.received)?;
        }
        Ok(())
    }
}

/// Session Id and Resume Token, the start of either block (§5.2).
fn read_session(r: &mut PayloadReader) -> Result<([u8; SESSION_ID_LEN], Bytes), FrameError> {
    let raw = r.bytes(SESSION_ID_LEN as u64, "session_id")?;
    let mut id = [0u8; SESSION_ID_LEN];
    id.copy_from_slice(&raw);
    let token = r.string(
        "resume_token",
        Hello::MIN_RESUME_TOKEN,
        Hello::MAX_RESUME_TOKEN,
    )?;
    Ok((id, token))
}

fn write_session(
    dst: &mut BytesMut,
    id: &[u8; SESSION_ID_LEN],
    token: &[u8],
) -> Result<(), EncodeError> {
    let (min, max) = (
        Hello::MIN_RESUME_TOKEN as usize,
        Hello::MAX_RESUME_TOKEN as usize,
    );
    dst.extend_from_slice(id);
    writer::string(dst, "resume_token", token, min, max)
}

fn write_received(dst: &mut BytesMut, counts: &[u64; 4]) -> Result<(), EncodeError> {
    for &n in counts {
        writer::varint(dst, "received", n)?;
    }
    Ok(())
}

fn received(r: &mut PayloadReader) -> Result<[u64; 4], FrameError> {
    let mut counts = [0u64; 4];
    for c in &mut counts {
        *c = r.varint("received")?;
    }
    Ok(counts)
}
