//! The send side of the payload pipeline (wire.md §12.2): whether, and how, a payload is
//! compressed before it is queued.
//!
//! Owns the one decision a sender makes about a payload's bytes: the policy, a cheap look at
//! the content (typed arrays are byte-shuffled before lz4), what the peer accepts, and a
//! forwarded message's original choice. The receive side is
//! [`Message::decompress`](crate::session::Message::decompress); schema binding is the
//! session's ([`OutgoingMessage::schema`](crate::session::OutgoingMessage::schema)). Never
//! touches headers or frames.

use bytes::Bytes;

use super::compress::{choose, compress, ContentHint, MIN_COMPRESS};
use super::typed_array::DType;
use crate::frame::{Compression, PayloadEncoding, Settings};

/// Whether payloads are compressed on send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionPolicy {
    /// Payloads leave as they are.
    Off,
    /// Per message, from a cheap look at the bytes: small, random-looking or already compressed
    /// payloads are left alone; typed arrays are byte-shuffled before lz4; a result that saves
    /// less than 1/8 is discarded.
    #[default]
    Auto,
}

/// The bytes and compression an uncompressed `payload` of `encoding` leaves with, or `None` if
/// it leaves as it is: `policy` off, under 512 bytes, no peer settings yet (`peer`: its HELLO
/// says which codecs it accepts), or not worth it.
///
/// `as_received`: the payload is being forwarded and arrived with this compression. Its
/// original sender's choice is kept (§12.2): uncompressed stays uncompressed (judging again
/// would cost a router a compression attempt per message), compressed is compressed again with
/// the same codec and shuffle when the peer accepts the codec.
pub fn compress_for_send(
    payload: &Bytes,
    encoding: PayloadEncoding,
    policy: CompressionPolicy,
    peer: Option<&Settings>,
    as_received: Option<Compression>,
) -> Option<(Bytes, Compression)> {
    if policy == CompressionPolicy::Off
        || payload.len() < MIN_COMPRESS
        || as_received == Some(Compression::None)
    {
        return None;
    }
    let peer = peer?;
    if let Some(Compression::Compressed { codec, shuffle, .. }) = as_received {
        if peer.accepts_codec(codec) {
            return Some(compress(payload, Some((codec, shuffle))));
        }
    }
    let hint =
        match encoding {
            PayloadEncoding::TypedArray => payload
                .first()
                .and_then(|&t| DType::from_tag(t))
                .map_or(ContentHint::Unknown, |d| ContentHint::NumericArray {
                    element_size: d.size(),
                }),
            _ => ContentHint::Unknown,
        };
    Some(compress(payload, choose(payload, hint, peer)))
}
