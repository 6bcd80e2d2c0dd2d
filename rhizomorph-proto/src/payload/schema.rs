//! Schema-cached rkyv payloads (wire.md §11.2, §11.3): a message type's stable identity, its
//! encoding, and validated zero-copy access on the receiving side.
//!
//! Owns the [`WireType`] identity (name, version, layout hash), the [`wire_type!`] macro that
//! derives it together with rkyv's traits, and [`ArchivedPayload`], which hands out
//! `&Archived<T>` only after bytecheck validation and only when the sender's binding names the
//! same type with the same layout hash. Never reads archived bytes without validating them, and
//! never uses `unsafe`.
//!
//! [`wire_type!`]: crate::wire_type

use std::marker::PhantomData;

use bytes::Bytes;
use rkyv::api::high::{HighDeserializer, HighSerializer};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

use crate::frame::SchemaFrame;

/// A message type with a stable schema identity (wire.md §11.2). Implement it with
/// [`wire_type!`](crate::wire_type), which also derives rkyv's traits.
pub trait WireType {
    /// The type's name as bound on the wire (1 – 255 bytes).
    const NAME: &'static str;
    /// Bumped by hand when a nested type's layout changes (their fields are not in `LAYOUT`).
    const VERSION: u32;
    /// The field list as written in the definition: names and types.
    const LAYOUT: &'static str;

    /// spec: wire.md §11.2.2 — FNV-1a 64 of `"<name>@<version>:<layout description>"`,
    /// computed at compile time.
    const LAYOUT_HASH: u64 = layout_hash_const(Self::NAME, Self::VERSION, Self::LAYOUT);

    /// [`LAYOUT_HASH`](Self::LAYOUT_HASH).
    fn layout_hash() -> u64 {
        Self::LAYOUT_HASH
    }
}

/// FNV-1a 64 of `"<name>@<version>:<layout>"` (wire.md §11.2.2), usable in constants.
pub const fn layout_hash_const(name: &str, version: u32, layout: &str) -> u64 {
    let mut h = fnv1a64(name.as_bytes(), FNV_OFFSET);
    h = fnv1a64(b"@", h);
    // The version's decimal digits, most significant first.
    let mut digits = [0u8; 10];
    let mut n = version;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while len > 0 {
        len -= 1;
        h = (h ^ digits[len] as u64).wrapping_mul(FNV_PRIME);
    }
    h = fnv1a64(b":", h);
    fnv1a64(layout.as_bytes(), h)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64-bit over `bytes`, continuing from `state` (start with the offset basis).
pub const fn fnv1a64(bytes: &[u8], mut state: u64) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        state ^= bytes[i] as u64;
        state = state.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    state
}

/// The FNV-1a 64 hash of a whole string (the vectors' and other peers' reference).
pub fn layout_hash_of(name: &str, version: u32, layout: &str) -> u64 {
    fnv1a64(format!("{name}@{version}:{layout}").as_bytes(), FNV_OFFSET)
}

/// Defines a struct that travels as a schema-cached rkyv payload: derives rkyv's `Archive`,
/// `Serialize` and `Deserialize` (with bytecheck validation) and implements [`WireType`], whose
/// layout hash covers the name, the version after `@`, and every field's name and type.
///
/// **`@ N` is the type's schema version**, a number you choose and raise when the type's
/// meaning changes without its fields changing (a field that now counts milliseconds instead
/// of seconds). It goes into the layout hash (wire.md §11.2.2) with the name and the fields, so
/// a peer still on the old version is told `SCHEMA_ERROR` (its binding does not match), never
/// handed bytes it would misread. A changed field set changes the hash by itself; the version
/// is for changes the compiler cannot see.
///
/// ```
/// rhizomorph_proto::wire_type! {
///     /// An RPC call.
///     #[derive(Debug, PartialEq)]
///     pub struct Call @ 1 {
///         pub method: String,
///         pub args: Vec<u8>,
///     }
/// }
/// use rhizomorph_proto::payload::WireType;
/// assert_eq!(Call::NAME, "Call");
/// let bytes = rhizomorph_proto::payload::encode(&Call { method: "echo".into(), args: vec![1, 2] }).unwrap();
/// let binding = rhizomorph_proto::payload::SchemaBinding::of::<Call>();
/// let archived = rhizomorph_proto::payload::ArchivedPayload::<Call>::new(bytes::Bytes::from_owner(bytes), 0, Some(&binding)).unwrap();
/// assert_eq!(archived.get().unwrap().method, "echo");
/// ```
#[macro_export]
macro_rules! wire_type {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident @ $version:literal {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive($crate::rkyv::Archive, $crate::rkyv::Serialize, $crate::rkyv::Deserialize)]
        #[rkyv(crate = $crate::rkyv)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field : $ty ),*
        }
        impl $crate::payload::WireType for $name {
            const NAME: &'static str = stringify!($name);
            const VERSION: u32 = $version;
            const LAYOUT: &'static str = stringify!($( $field : $ty ),*);
        }
    };
}

/// Why a payload cannot be read as the type asked for (`SCHEMA_ERROR` / `PAYLOAD_ERROR`).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// wire.md §11.2.4: the message's Schema Id was never bound on its channel.
    #[error(
        "UnknownSchemaId: schema id {schema_id} is not bound on this channel (wire.md §11.2.4)"
    )]
    UnknownSchemaId { schema_id: u64 },
    /// wire.md §11.2.3: the binding names another type, or the same name with another layout.
    #[error("SchemaMismatch: the sender bound {bound_name}#{bound_hash:016x}, this side reads {want_name}#{want_hash:016x} (wire.md §11.2.3)")]
    SchemaMismatch {
        bound_name: String,
        bound_hash: u64,
        want_name: &'static str,
        want_hash: u64,
    },
    /// The message is not an rkyv payload.
    #[error("NotRkyv: the payload encoding is {encoding}")]
    NotRkyv { encoding: &'static str },
    /// wire.md §11.3: bytecheck rejected the archive.
    #[error("InvalidArchive: {detail} (wire.md §11.3)")]
    InvalidArchive { detail: String },
    /// The value could not be serialized.
    #[error("Serialize: {detail}")]
    Serialize { detail: String },
    /// wire.md §11.4: a typed array whose header or length is wrong.
    #[error("InvalidTypedArray: {0} (wire.md §11.4)")]
    InvalidTypedArray(#[from] super::typed_array::TypedArrayError),
    /// wire.md §12.3: the payload could not be decompressed.
    #[error(transparent)]
    Compression(#[from] super::CompressionError),
}

impl PayloadError {
    /// The wire error code of this failure (wire.md §15): `SCHEMA_ERROR` for a binding,
    /// `COMPRESSION_ERROR` for decompression, `PAYLOAD_ERROR` for bytes that fail validation;
    /// a value this side could not serialize is `INTERNAL_ERROR` (it never left).
    pub fn code(&self) -> crate::frame::ErrorCode {
        use crate::frame::ErrorCode;
        match self {
            PayloadError::UnknownSchemaId { .. } | PayloadError::SchemaMismatch { .. } => {
                ErrorCode::SCHEMA_ERROR
            }
            PayloadError::NotRkyv { .. }
            | PayloadError::InvalidArchive { .. }
            | PayloadError::InvalidTypedArray(_) => ErrorCode::PAYLOAD_ERROR,
            PayloadError::Serialize { .. } => ErrorCode::INTERNAL_ERROR,
            PayloadError::Compression(_) => ErrorCode::COMPRESSION_ERROR,
        }
    }

    /// The variant's name (what vectors name as `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            PayloadError::UnknownSchemaId { .. } => "UnknownSchemaId",
            PayloadError::SchemaMismatch { .. } => "SchemaMismatch",
            PayloadError::NotRkyv { .. } => "NotRkyv",
            PayloadError::InvalidArchive { .. } => "InvalidArchive",
            PayloadError::Serialize { .. } => "Serialize",
            PayloadError::InvalidTypedArray(e) => e.kind(),
            PayloadError::Compression(_) => "Compression",
        }
    }
}

/// What a SCHEMA frame bound: the type's name and layout hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaBinding {
    /// The type's name.
    pub name: String,
    /// Its layout hash.
    pub layout_hash: u64,
}

impl SchemaBinding {
    /// The binding a sender of `T` makes.
    pub fn of<T: WireType>() -> SchemaBinding {
        SchemaBinding {
            name: T::NAME.to_string(),
            layout_hash: T::layout_hash(),
        }
    }
}

impl From<&SchemaFrame> for SchemaBinding {
    fn from(f: &SchemaFrame) -> Self {
        SchemaBinding {
            name: f.name.clone(),
            layout_hash: f.layout_hash,
        }
    }
}

/// The validator archives are checked with (rkyv's low-level API: no shared pointers).
pub type Validator<'a> = rkyv::api::low::LowValidator<'a, rancor::Error>;

/// The serializer rkyv's high-level API uses.
pub type Serializer<'a> = HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>;

/// The archive buffer's first allocation: an RPC call with a few hundred bytes of arguments fits.
const INITIAL_ARCHIVE_CAPACITY: usize = 1024;

/// Serializes `value` into an rkyv archive (wire.md §11.3).
pub fn encode<T>(value: &T) -> Result<AlignedVec, PayloadError>
where
    T: WireType + for<'a> rkyv::Serialize<Serializer<'a>>,
{
    // Growing from empty would reallocate several times for an RPC-sized message.
    let buf = AlignedVec::with_capacity(INITIAL_ARCHIVE_CAPACITY);
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, buf).map_err(|e| {
        PayloadError::Serialize {
            detail: e.to_string(),
        }
    })
}

/// Payload bytes that hold a `T` archive: aligned (copied once if the received bytes were not),
/// with the sender's binding checked against `T`. Every [`get`](Self::get) validates the bytes
/// (bytecheck) before handing out a reference.
pub struct ArchivedPayload<T> {
    bytes: AlignedBytes,
    _type: PhantomData<fn() -> T>,
}

enum AlignedBytes {
    /// The received bytes, already aligned: no copy.
    Shared(Bytes),
    /// A copy into an aligned buffer.
    Copied(AlignedVec),
}

impl AlignedBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            AlignedBytes::Shared(b) => b,
            AlignedBytes::Copied(v) => v,
        }
    }
}

/// rkyv archives need their start aligned this much (wire.md §11.1: 16 suffices for every type).
const ARCHIVE_ALIGN: usize = 16;

impl<T> ArchivedPayload<T>
where
    T: WireType + rkyv::Archive,
    T::Archived: for<'a> CheckBytes<Validator<'a>>,
{
    /// Checks `binding` (what the sender bound to `schema_id`; `None` if it bound nothing)
    /// against `T` and aligns the bytes; [`get`](Self::get) validates them.
    pub fn new(
        payload: Bytes,
        schema_id: u64,
        binding: Option<&SchemaBinding>,
    ) -> Result<Self, PayloadError> {
        let binding = binding.ok_or(PayloadError::UnknownSchemaId { schema_id })?;
        if binding.name != T::NAME || binding.layout_hash != T::layout_hash() {
            return Err(PayloadError::SchemaMismatch {
                bound_name: binding.name.clone(),
                bound_hash: binding.layout_hash,
                want_name: T::NAME,
                want_hash: T::layout_hash(),
            });
        }
        let bytes = if (payload.as_ptr() as usize) % ARCHIVE_ALIGN == 0 {
            AlignedBytes::Shared(payload)
        } else {
            let mut v = AlignedVec::<16>::with_capacity(payload.len());
            v.extend_from_slice(&payload);
            AlignedBytes::Copied(v)
        };
        Ok(ArchivedPayload {
            bytes,
            _type: PhantomData,
        })
    }

    /// Whether the received bytes were used in place (no copy).
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.bytes, AlignedBytes::Shared(_))
    }

    /// The archived value, validated (bytecheck) on every call: never unchecked access.
    pub fn get(&self) -> Result<&T::Archived, PayloadError> {
        // The low-level validator: bounds, alignment, UTF-8 and enum tags are checked; wire
        // types hold no shared pointers, so the shared-pointer registry is not needed.
        rkyv::api::low::access::<T::Archived, rancor::Error>(self.bytes.as_slice()).map_err(|e| {
            PayloadError::InvalidArchive {
                detail: e.to_string(),
            }
        })
    }

    /// Deserializes into an owned `T`.
    pub fn deserialize(&self) -> Result<T, PayloadError>
    where
        T::Archived: rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
    {
        let archived = self.get()?;
        rkyv::deserialize::<T, rancor::Error>(archived).map_err(|e| PayloadError::InvalidArchive {
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::wire_type! {
        #[derive(Debug, PartialEq)]
        struct Point @ 1 {
            x: f64,
            y: f64,
            label: String,
        }
    }

    crate::wire_type! {
        struct PointV2 @ 2 {
            x: f64,
            y: f64,
            label: String,
        }
    }

    #[test]
    fn the_layout_hash_is_fnv1a_of_name_version_and_fields() {
        assert_eq!(Point::LAYOUT, "x : f64, y : f64, label : String");
        assert_eq!(
            Point::layout_hash(),
            layout_hash_of("Point", 1, "x : f64, y : f64, label : String")
        );
        // FNV-1a 64 reference values.
        assert_eq!(fnv1a64(b"", FNV_OFFSET), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a", FNV_OFFSET), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(Point::layout_hash(), PointV2::layout_hash());
        for v in [0, 7, 10, 12345, u32::MAX] {
            assert_eq!(layout_hash_const("T", v, "x"), layout_hash_of("T", v, "x"));
        }
    }

    #[test]
    fn a_round_trip_reads_in_place_and_deserializes() {
        let p = Point {
            x: 1.5,
            y: -2.0,
            label: "here".into(),
        };
        let bytes = Bytes::from(encode(&p).unwrap().to_vec());
        let a =
            ArchivedPayload::<Point>::new(bytes, 0, Some(&SchemaBinding::of::<Point>())).unwrap();
        assert_eq!(a.get().unwrap().label, "here");
        assert_eq!(a.deserialize().unwrap(), p);
    }

    #[test]
    fn a_binding_for_another_layout_is_refused_before_reading() {
        let p = Point {
            x: 0.0,
            y: 0.0,
            label: String::new(),
        };
        let bytes = Bytes::from(encode(&p).unwrap().to_vec());
        let wrong = SchemaBinding::of::<PointV2>();
        let r = ArchivedPayload::<Point>::new(bytes.clone(), 0, Some(&wrong));
        assert!(matches!(r, Err(PayloadError::SchemaMismatch { .. })));
        let r = ArchivedPayload::<Point>::new(bytes, 7, None);
        assert_eq!(
            r.err(),
            Some(PayloadError::UnknownSchemaId { schema_id: 7 })
        );
    }

    #[test]
    fn corrupt_or_misaligned_bytes_are_validated_not_trusted() {
        let p = Point {
            x: 3.0,
            y: 4.0,
            label: "a longer label than inline".into(),
        };
        let good = encode(&p).unwrap().to_vec();
        let binding = SchemaBinding::of::<Point>();
        // Misaligned: copied, then read.
        let mut shifted = vec![0u8; 1];
        shifted.extend_from_slice(&good);
        let b = Bytes::from(shifted).slice(1..);
        let a = ArchivedPayload::<Point>::new(b, 0, Some(&binding)).unwrap();
        assert!(!a.is_zero_copy());
        assert_eq!(a.get().unwrap().x, 3.0);
        // Every single-byte corruption is either still valid or refused: never a panic.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xFF;
            if let Ok(a) = ArchivedPayload::<Point>::new(Bytes::from(bad), 0, Some(&binding)) {
                let _ = a.get();
            }
        }
        // A truncated archive is refused.
        let a = ArchivedPayload::<Point>::new(Bytes::from(good[..4].to_vec()), 0, Some(&binding))
            .unwrap();
        assert!(matches!(a.get(), Err(PayloadError::InvalidArchive { .. })));
    }
}
