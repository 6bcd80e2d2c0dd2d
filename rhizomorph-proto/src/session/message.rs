//! A received message (wire.md §6.1): its routing header, payload and how the payload is
//! encoded, as a session hands it out and as the application reads it.
//!
//! Owns the one received-message type of the crate and the two things done to a payload after
//! it arrived: bounded decompression (§12.3) and validated, in-place typed access (§11.3,
//! §11.4). Never copies a payload that arrived in one frame and was not compressed.

use bytes::Bytes;

use crate::frame::{Channel, Compression, PayloadEncoding};
use crate::header::RoutingHeader;
use crate::payload::{ArchivedPayload, PayloadError, SchemaBinding, TypedArrayView, WireType};

/// A message received whole (wire.md §6.1): routing header and payload, readable without
/// decoding the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it arrived on.
    pub channel: Channel,
    /// Its sequence number on the channel (wire.md §5.3.8).
    pub sequence: u64,
    /// The routing header.
    pub header: RoutingHeader,
    /// The payload (a view of the received bytes when it arrived in one frame). As the session
    /// hands it out it is as sent, still compressed if `compression` says so;
    /// [`decompress`](Self::decompress) (which a `rhizomorph` connection runs before handing it
    /// to the application) replaces it with the decompressed bytes.
    pub payload: Bytes,
    /// How the payload is encoded.
    pub encoding: PayloadEncoding,
    /// How the payload was compressed on the wire.
    pub compression: Compression,
    /// For an rkyv payload: the sender's schema binding on this channel (wire.md §11.2),
    /// `None` if it bound nothing. Boxed, as `error` is: both are rare, and a message is moved
    /// several times on its way to the application (issue 24).
    pub schema: Option<Box<SchemaBinding>>,
    /// The message failed, and only it (wire.md §6.1.1): its payload could not be
    /// decompressed (§12.3.4; `payload` is then empty), or its Schema Id is not bound on the
    /// channel (§11.2.4). The connection goes on.
    pub error: Option<Box<PayloadError>>,
    /// Whether `payload` still holds the bytes as they traveled, compressed (`compression` is
    /// not `None` and [`decompress`](Self::decompress) has not run): what a router forwards as
    /// it is (wire.md §6.1). False once decompressed, and for an uncompressed message.
    pub still_compressed: bool,
    /// Flow-control bytes the receiver gives back once the application is done with the
    /// message (`Session::release`; a `rhizomorph` connection does it when it hands the message
    /// out).
    pub credit: u64,
}

impl Message {
    /// A raw, uncompressed message on `channel` with `header` and `payload`, as if it arrived
    /// first on its channel (sequence 0, no schema, no error, no credit to give back): what a
    /// router builds for its own answers, and what tests hand to code that takes messages.
    pub fn new(channel: Channel, header: RoutingHeader, payload: Bytes) -> Message {
        Message {
            channel,
            sequence: 0,
            header,
            payload,
            encoding: PayloadEncoding::Raw,
            compression: Compression::None,
            schema: None,
            error: None,
            still_compressed: false,
            credit: 0,
        }
    }

    /// Decompresses the payload in place, within `max_message_size` (our `MAX_MESSAGE_SIZE`).
    ///
    /// spec: wire.md §12.3 — a failure concerns this message only: it is recorded in
    /// [`error`](Self::error) and the payload is emptied; the connection goes on.
    pub fn decompress(&mut self, max_message_size: u64) {
        if !std::mem::take(&mut self.still_compressed) {
            return;
        }
        match crate::payload::decompress(&self.payload, self.compression, max_message_size) {
            Ok(p) => self.payload = p,
            Err(e) => {
                self.payload = Bytes::new();
                self.error = Some(Box::new(PayloadError::from(e)));
            }
        }
    }

    /// The rkyv archive of a `T` in the payload, validated (bytecheck) and read in place
    /// (wire.md §11.3). Fails with `SchemaMismatch` if the sender bound another type or
    /// layout, `UnknownSchemaId` if it bound nothing.
    pub fn archived<T>(&self) -> Result<ArchivedPayload<T>, PayloadError>
    where
        T: WireType + rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<crate::payload::schema::Validator<'a>>,
    {
        if let Some(e) = &self.error {
            return Err((**e).clone());
        }
        let PayloadEncoding::Rkyv { schema_id } = self.encoding else {
            return Err(PayloadError::NotRkyv {
                encoding: self.encoding.name(),
            });
        };
        ArchivedPayload::new(self.payload.clone(), schema_id, self.schema.as_deref())
    }

    /// The payload as a typed array (wire.md §11.4), viewed in place.
    pub fn typed_array(&self) -> Result<TypedArrayView, PayloadError> {
        if let Some(e) = &self.error {
            return Err((**e).clone());
        }
        TypedArrayView::parse(self.payload.clone())
    }
}
