//! The four channels (wire.md §7) and CREDIT targets (§5.4).
//!
//! Owns channel ids and their priority order. Never decides scheduling: that is the session's.

use super::error::FrameError;

/// A channel: one of four prioritized lanes of a connection (wire.md §7).
///
/// Ordered by priority: `Control` is highest. The discriminant is the wire id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Channel {
    /// Protocol frames and small urgent messages; strict priority.
    Control = 0,
    /// Requests and replies.
    Rpc = 1,
    /// Ordered event streams.
    Stream = 2,
    /// Large transfers; never starved (§7.4), never in the way.
    Bulk = 3,
}

impl Channel {
    /// All channels, highest priority first.
    pub const ALL: [Channel; 4] = [
        Channel::Control,
        Channel::Rpc,
        Channel::Stream,
        Channel::Bulk,
    ];

    /// The channel with wire id `id`. spec: wire.md §5.3.1 — ids other than 0–3 are rejected.
    pub fn from_id(id: u8) -> Result<Channel, FrameError> {
        match id {
            0 => Ok(Channel::Control),
            1 => Ok(Channel::Rpc),
            2 => Ok(Channel::Stream),
            3 => Ok(Channel::Bulk),
            channel => Err(FrameError::UnknownChannel { channel }),
        }
    }

    /// The wire id.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The index of this channel in per-channel arrays (`[T; 4]`).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The channel's lowercase name, as the spec writes it.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Control => "control",
            Channel::Rpc => "rpc",
            Channel::Stream => "stream",
            Channel::Bulk => "bulk",
        }
    }

    /// Parses a channel name (`"rpc"`, …).
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a CREDIT frame grants credit to (wire.md §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreditTarget {
    /// One channel's window.
    Channel(Channel),
    /// The connection window (wire id 0xFF).
    Connection,
}

impl CreditTarget {
    /// Wire id of the connection target.
    pub const CONNECTION_ID: u8 = 0xff;

    /// Decodes a Target byte. spec: wire.md §5.4 — other than 0–3 or 0xFF is rejected.
    pub fn from_id(id: u8) -> Result<CreditTarget, FrameError> {
        if id == Self::CONNECTION_ID {
            Ok(CreditTarget::Connection)
        } else {
            Channel::from_id(id).map(CreditTarget::Channel)
        }
    }

    /// The wire id.
    pub fn id(self) -> u8 {
        match self {
            CreditTarget::Channel(c) => c.id(),
            CreditTarget::Connection => Self::CONNECTION_ID,
        }
    }
}
