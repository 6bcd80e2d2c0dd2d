//! HELLO (wire.md §5.2): versions, settings, auth token and agent.
//!
//! Owns the HELLO payload layout and its bounds. Never decides the negotiation outcome (which
//! version, whether the token is good): that is the session's and the application's.

use bytes::{Bytes, BytesMut};

use super::error::{EncodeError, FrameError};
use super::reader::PayloadReader;
use super::settings::Settings;
use super::writer;
use super::FrameType;

/// The wire version of this document: 1.0 (wire.md §3.2).
pub const WIRE_VERSION_1_0: u64 = 0x0100;

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

    /// A HELLO offering version 1.0 with `settings` (only non-default values are sent).
    pub fn new(settings: &Settings, token: Bytes, agent: impl Into<String>) -> Hello {
        Hello {
            versions: vec![WIRE_VERSION_1_0],
            settings: settings.to_pairs(),
            token,
            agent: agent.into(),
        }
    }

    /// The settings this HELLO announces, defaults filled in (already validated on decode).
    pub fn resolved_settings(&self) -> Result<Settings, FrameError> {
        Settings::from_pairs(&self.settings)
    }

    pub(crate) fn load(payload: Bytes) -> Result<Hello, FrameError> {
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
        r.finish()?;
        Ok(Hello {
            versions,
            settings,
            token,
            agent,
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
        Ok(())
    }
}
