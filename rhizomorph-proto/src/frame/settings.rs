//! HELLO settings (wire.md §3.3): what each peer is willing to receive.
//!
//! Owns the setting ids, their defaults and allowed ranges, and the resolution of a HELLO's
//! `(id, value)` pairs into a [`Settings`] value. A receiver's own `Settings` are also the
//! limits its frame decoder enforces. Never negotiates: each peer obeys the other's settings.

use super::error::FrameError;
use super::varint::VARINT_MAX;

/// A setting id (wire.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum SettingId {
    /// Largest Frame Payload accepted.
    MaxFramePayload = 0x01,
    /// Largest message payload, before and after decompression.
    MaxMessageSize = 0x02,
    /// Initial credit of each channel.
    InitialChannelWindow = 0x03,
    /// Initial connection credit.
    InitialConnectionWindow = 0x04,
    /// Dynamic header table capacity per channel.
    HeaderTableSize = 0x05,
    /// Largest decoded routing header.
    MaxHeaderListSize = 0x06,
    /// Schema ids per channel kept.
    SchemaCacheSize = 0x07,
    /// Bitmask of codecs decoded.
    Compression = 0x08,
    /// Largest WebSocket message of frames.
    MaxBatchSize = 0x09,
    /// Bytes of unacknowledged messages per channel the sender keeps for replay (wire 1.1,
    /// §21); 0 = no resumption.
    ResumeBuffer = 0x0A,
}

impl SettingId {
    /// Every setting this version defines, in id order.
    pub const ALL: [SettingId; 10] = [
        SettingId::MaxFramePayload,
        SettingId::MaxMessageSize,
        SettingId::InitialChannelWindow,
        SettingId::InitialConnectionWindow,
        SettingId::HeaderTableSize,
        SettingId::MaxHeaderListSize,
        SettingId::SchemaCacheSize,
        SettingId::Compression,
        SettingId::MaxBatchSize,
        SettingId::ResumeBuffer,
    ];

    /// The setting with wire id `id`, or `None` for an unknown id (§3.3.3: ignored).
    pub fn from_id(id: u64) -> Option<SettingId> {
        SettingId::ALL.into_iter().find(|s| *s as u64 == id)
    }

    /// The spec name, e.g. `MAX_FRAME_PAYLOAD`.
    pub fn name(self) -> &'static str {
        match self {
            SettingId::MaxFramePayload => "MAX_FRAME_PAYLOAD",
            SettingId::MaxMessageSize => "MAX_MESSAGE_SIZE",
            SettingId::InitialChannelWindow => "INITIAL_CHANNEL_WINDOW",
            SettingId::InitialConnectionWindow => "INITIAL_CONNECTION_WINDOW",
            SettingId::HeaderTableSize => "HEADER_TABLE_SIZE",
            SettingId::MaxHeaderListSize => "MAX_HEADER_LIST_SIZE",
            SettingId::SchemaCacheSize => "SCHEMA_CACHE_SIZE",
            SettingId::Compression => "COMPRESSION",
            SettingId::MaxBatchSize => "MAX_BATCH_SIZE",
            SettingId::ResumeBuffer => "RESUME_BUFFER",
        }
    }

    /// Looks a setting up by its spec name.
    pub fn from_name(name: &str) -> Option<SettingId> {
        SettingId::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The allowed range (§3.3). spec: wire.md §3.3.2.
    pub fn range(self) -> (u64, u64) {
        const U32: u64 = u32::MAX as u64;
        match self {
            SettingId::MaxFramePayload => (1_024, 16_777_215),
            SettingId::MaxMessageSize => (1_024, VARINT_MAX),
            SettingId::InitialChannelWindow | SettingId::InitialConnectionWindow => (0, U32),
            SettingId::HeaderTableSize => (0, 65_536),
            SettingId::MaxHeaderListSize => (64, 1_048_576),
            SettingId::SchemaCacheSize => (0, 65_536),
            SettingId::Compression => (0, VARINT_MAX),
            SettingId::MaxBatchSize => (65_536, U32),
            SettingId::ResumeBuffer => (0, U32),
        }
    }
}

/// The largest HELLO payload, whatever the settings (wire.md §3.2.8).
pub const HELLO_MAX_PAYLOAD: u64 = 8_192;

/// A peer's settings: the limits it enforces on what it receives (wire.md §3.3).
///
/// `Settings::default()` holds the spec's defaults. Build your own with the `with_*` methods:
///
/// ```
/// use rhizomorph_proto::frame::Settings;
/// let s = Settings::default().with_max_frame_payload(16 * 1024).with_max_message_size(1 << 20);
/// assert_eq!(s.max_frame_payload, 16 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `MAX_FRAME_PAYLOAD`: largest Frame Payload accepted.
    pub max_frame_payload: u64,
    /// `MAX_MESSAGE_SIZE`: largest message payload, compressed or not.
    pub max_message_size: u64,
    /// `INITIAL_CHANNEL_WINDOW`.
    pub initial_channel_window: u64,
    /// `INITIAL_CONNECTION_WINDOW`.
    pub initial_connection_window: u64,
    /// `HEADER_TABLE_SIZE`, per channel.
    pub header_table_size: u64,
    /// `MAX_HEADER_LIST_SIZE`.
    pub max_header_list_size: u64,
    /// `SCHEMA_CACHE_SIZE`, per channel.
    pub schema_cache_size: u64,
    /// `COMPRESSION` bitmask (bit 0 lz4, bit 1 snappy).
    pub compression: u64,
    /// `MAX_BATCH_SIZE`: largest WebSocket message.
    pub max_batch_size: u64,
    /// `RESUME_BUFFER` (wire 1.1, §21.1): bytes of sent, unacknowledged messages per channel
    /// the HELLO's sender keeps for replay; 0 (the default) asks for no resumable session.
    pub resume_buffer: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_frame_payload: 65_536,
            max_message_size: 64 << 20,
            initial_channel_window: 1 << 20,
            initial_connection_window: 4 << 20,
            header_table_size: 4_096,
            max_header_list_size: 16_384,
            schema_cache_size: 256,
            compression: 0x03,
            max_batch_size: 1 << 20,
            resume_buffer: 0,
        }
    }
}

macro_rules! with_setters {
    ($($fn:ident => $field:ident),* $(,)?) => {
        impl Settings {
            $(
                #[doc = concat!("Returns these settings with `", stringify!($field), "` set.")]
                pub fn $fn(mut self, value: u64) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

with_setters! {
    with_max_frame_payload => max_frame_payload,
    with_max_message_size => max_message_size,
    with_initial_channel_window => initial_channel_window,
    with_initial_connection_window => initial_connection_window,
    with_header_table_size => header_table_size,
    with_max_header_list_size => max_header_list_size,
    with_schema_cache_size => schema_cache_size,
    with_compression => compression,
    with_max_batch_size => max_batch_size,
    with_resume_buffer => resume_buffer,
}

impl Settings {
    /// The value of one setting.
    pub fn get(&self, id: SettingId) -> u64 {
        match id {
            SettingId::MaxFramePayload => self.max_frame_payload,
            SettingId::MaxMessageSize => self.max_message_size,
            SettingId::InitialChannelWindow => self.initial_channel_window,
            SettingId::InitialConnectionWindow => self.initial_connection_window,
            SettingId::HeaderTableSize => self.header_table_size,
            SettingId::MaxHeaderListSize => self.max_header_list_size,
            SettingId::SchemaCacheSize => self.schema_cache_size,
            SettingId::Compression => self.compression,
            SettingId::MaxBatchSize => self.max_batch_size,
            SettingId::ResumeBuffer => self.resume_buffer,
        }
    }

    fn slot(&mut self, id: SettingId) -> &mut u64 {
        match id {
            SettingId::MaxFramePayload => &mut self.max_frame_payload,
            SettingId::MaxMessageSize => &mut self.max_message_size,
            SettingId::InitialChannelWindow => &mut self.initial_channel_window,
            SettingId::InitialConnectionWindow => &mut self.initial_connection_window,
            SettingId::HeaderTableSize => &mut self.header_table_size,
            SettingId::MaxHeaderListSize => &mut self.max_header_list_size,
            SettingId::SchemaCacheSize => &mut self.schema_cache_size,
            SettingId::Compression => &mut self.compression,
            SettingId::MaxBatchSize => &mut self.max_batch_size,
            SettingId::ResumeBuffer => &mut self.resume_buffer,
        }
    }

    /// Sets one setting, checking its range (wire.md §3.3.2).
    pub fn set(&mut self, id: SettingId, value: u64) -> Result<(), FrameError> {
        check_range(id, value)?;
        *self.slot(id) = value;
        Ok(())
    }

    /// Resolves a HELLO's settings pairs: defaults for absent ids, unknown ids ignored.
    ///
    /// spec: wire.md §3.3.1 (duplicates), §3.3.2 (ranges), §3.3.3 (unknown ids).
    pub fn from_pairs(pairs: &[(u64, u64)]) -> Result<Settings, FrameError> {
        let mut settings = Settings::default();
        for (i, &(id, value)) in pairs.iter().enumerate() {
            // spec: wire.md §3.3.1 — a setting id that appears twice is a PROTOCOL_ERROR.
            // (At most 64 pairs, §3.3.4, so the quadratic scan is bounded.)
            if pairs[..i].iter().any(|&(seen, _)| seen == id) {
                return Err(FrameError::DuplicateSetting { id });
            }
            if let Some(known) = SettingId::from_id(id) {
                settings.set(known, value)?;
            }
        }
        Ok(settings)
    }

    /// Every setting that differs from the default, as `(id, value)` pairs in id order — what
    /// a HELLO needs to carry.
    pub fn to_pairs(&self) -> Vec<(u64, u64)> {
        let default = Settings::default();
        SettingId::ALL
            .into_iter()
            .filter(|&id| self.get(id) != default.get(id))
            .map(|id| (id as u64, self.get(id)))
            .collect()
    }

    /// Checks every field's range (for settings built in code before they are sent).
    pub fn validate(&self) -> Result<(), FrameError> {
        SettingId::ALL
            .into_iter()
            .try_for_each(|id| check_range(id, self.get(id)))
    }

    /// Whether this peer decodes `codec` (its `COMPRESSION` bit).
    pub fn accepts_codec(&self, codec: super::content::Codec) -> bool {
        self.compression & codec.setting_bit() != 0
    }
}

fn check_range(id: SettingId, value: u64) -> Result<(), FrameError> {
    let (min, max) = id.range();
    if value < min || value > max {
        return Err(FrameError::SettingOutOfRange {
            id: id as u64,
            value,
            min,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_3_3_defaults_are_in_range() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn settings_3_3_1_rejects_duplicates() {
        let err = Settings::from_pairs(&[(1, 4096), (1, 8192)]).unwrap_err();
        assert_eq!(err, FrameError::DuplicateSetting { id: 1 });
    }

    #[test]
    fn settings_3_3_3_ignores_unknown_ids() {
        let s = Settings::from_pairs(&[(0x77, 5), (1, 2048)]).unwrap();
        assert_eq!(s.max_frame_payload, 2048);
    }

    #[test]
    fn settings_round_trip_through_pairs() {
        let s = Settings::default()
            .with_header_table_size(0)
            .with_max_frame_payload(1 << 20);
        assert_eq!(Settings::from_pairs(&s.to_pairs()).unwrap(), s);
    }
}
