//! The receive side of one channel: reassembly (wire.md §8) and receive credit (§9.3).
//!
//! Owns the channel's header decoder, its message in progress, and the accounting of which
//! received bytes may be credited back. Single-frame messages are handed out as the received
//! `Bytes` (no copy); chunked ones are kept as a list of received slices and joined once, into
//! one allocation of exactly the message length, when the last chunk arrives — so nothing is
//! ever allocated on a peer's word alone. Never sends anything: it reports credit to return.

use bytes::{Bytes, BytesMut};

use super::error::SessionError;
use super::header::RoutingHeader;
use super::header_table::HeaderDecoder;
use crate::frame::{Channel, Compression, MessageFrame, PayloadEncoding};

/// A message received whole (wire.md §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// The channel it arrived on.
    pub channel: Channel,
    /// Its sequence number on that channel (wire.md §5.3.8).
    pub sequence: u64,
    /// The decoded routing header.
    pub header: RoutingHeader,
    /// How the payload is encoded.
    pub encoding: PayloadEncoding,
    /// How it is compressed (payload bytes are as sent: still compressed).
    pub compression: Compression,
    /// The payload.
    pub payload: Bytes,
    /// Flow-control bytes to give back with `Session::release` once the application is done.
    pub credit: u64,
    /// For an rkyv payload: what the sender bound its Schema Id to on this channel (§11.2),
    /// `None` if it bound nothing.
    pub schema: Option<crate::payload::SchemaBinding>,
}

#[derive(Debug)]
struct Partial {
    sequence: u64,
    header: RoutingHeader,
    encoding: PayloadEncoding,
    compression: Compression,
    message_len: u64,
    chunks: Vec<Bytes>,
    received: u64,
    /// Bytes of this message's frames not yet credited back.
    held: u64,
    /// Dropped on completion (refused after our GOAWAY, or rejected by us).
    discard: bool,
}

/// Receive state of one channel.
#[derive(Debug)]
pub struct InChannel {
    channel: Channel,
    decoder: HeaderDecoder,
    partial: Option<Partial>,
    /// Messages the peer has started on this channel: the next sequence number.
    started: u64,
    /// Bytes delivered in messages the application has not released yet.
    delivered_unreleased: u64,
    /// Bytes that may be credited back now.
    creditable: u64,
    /// After our GOAWAY: messages at or above this sequence are dropped (§14.1.3).
    refuse_from: Option<u64>,
}

impl InChannel {
    /// A channel whose header table has `table_capacity` bytes and list limit `max_list`.
    pub fn new(channel: Channel, table_capacity: usize, max_list: u64) -> Self {
        InChannel {
            channel,
            decoder: HeaderDecoder::new(table_capacity, max_list),
            partial: None,
            started: 0,
            delivered_unreleased: 0,
            creditable: 0,
            refuse_from: None,
        }
    }

    /// Messages started by the peer (the GOAWAY accepted count, §14.1.1).
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Whether a message not being discarded is in progress.
    pub fn has_accepted_partial(&self) -> bool {
        self.partial.as_ref().is_some_and(|p| !p.discard)
    }

    /// Drops messages at or above `count` from now on (§14.1.3).
    pub fn refuse_from(&mut self, count: u64) {
        self.refuse_from = Some(count);
    }

    /// Takes the bytes that may be credited back now.
    pub fn take_creditable(&mut self) -> u64 {
        std::mem::take(&mut self.creditable)
    }

    /// Bytes received and not yet credited back (what this channel holds in memory at most).
    pub fn held_bytes(&self) -> u64 {
        self.delivered_unreleased + self.partial.as_ref().map_or(0, |p| p.held) + self.creditable
    }

    /// Handles one MESSAGE frame whose Frame Payload was `frame_len` bytes (already charged
    /// against the windows by the caller). Returns the message it completed, if any.
    pub fn on_frame(
        &mut self,
        frame: MessageFrame,
        frame_len: u64,
    ) -> Result<Option<IncomingMessage>, SessionError> {
        let channel = self.channel;
        let mut partial = match (frame.start, self.partial.take()) {
            (Some(start), None) => {
                let sequence = self.started;
                self.started += 1;
                // The header block is always decoded, even for a message we will drop, so that
                // the table stays in step with the sender's (§6.3.3).
                let header = self.decoder.decode(start.header_block)?;
                Partial {
                    sequence,
                    header,
                    encoding: start.encoding,
                    compression: start.compression,
                    message_len: start.message_len,
                    chunks: Vec::new(),
                    received: 0,
                    held: 0,
                    discard: self.refuse_from.is_some_and(|n| sequence >= n),
                }
            }
            (None, Some(p)) => p,
            // spec: wire.md §8.2 — FIRST while a message is in progress, or a continuation
            // without one, is a PROTOCOL_ERROR.
            (Some(_), Some(_)) => {
                return Err(SessionError::UnexpectedChunk {
                    channel,
                    what: "FIRST while a message is in progress",
                })
            }
            (None, None) => {
                return Err(SessionError::UnexpectedChunk {
                    channel,
                    what: "continuation with no message in progress",
                })
            }
        };
        // spec: wire.md §8.2 — the chunks add up to Message Length exactly.
        partial.received += frame.data.len() as u64;
        if partial.received > partial.message_len
            || (frame.last && partial.received != partial.message_len)
        {
            return Err(SessionError::ChunkLengthMismatch {
                channel,
                received: partial.received,
                message: partial.message_len,
                ending: if frame.last { " at LAST" } else { "" },
            });
        }
        if partial.discard {
            self.creditable += frame_len; // §9.4: discarded bytes are released at once
        } else {
            if !frame.data.is_empty() {
                partial.chunks.push(frame.data);
            }
            // spec: wire.md §9.3 — a chunk appended to reassembly is released at once if the
            // channel's previous message was taken; the last chunk is held until the
            // application releases the message.
            if !frame.last && self.delivered_unreleased == 0 {
                self.creditable += frame_len;
            } else {
                partial.held += frame_len;
            }
        }
        if !frame.last {
            self.partial = Some(partial);
            return Ok(None);
        }
        if partial.discard {
            return Ok(None);
        }
        let payload = join(partial.chunks, partial.message_len);
        self.delivered_unreleased += partial.held;
        Ok(Some(IncomingMessage {
            channel,
            sequence: partial.sequence,
            header: partial.header,
            encoding: partial.encoding,
            compression: partial.compression,
            payload,
            credit: partial.held,
            schema: None,
        }))
    }

    /// The application is done with `bytes` of delivered messages (§9.3).
    pub fn release(&mut self, bytes: u64) {
        let bytes = bytes.min(self.delivered_unreleased);
        self.delivered_unreleased -= bytes;
        self.creditable += bytes;
        if self.delivered_unreleased == 0 {
            if let Some(p) = self.partial.as_mut() {
                // The previous message is taken: what the message in progress held is released.
                self.creditable += std::mem::take(&mut p.held);
            }
        }
    }

    /// The peer abandoned message `sequence` (CANCEL with ABORT, §5.7.1). Returns whether it
    /// was the message in progress.
    pub fn abort(&mut self, sequence: u64) -> bool {
        match self.partial.take() {
            Some(p) if p.sequence == sequence => {
                self.creditable += p.held;
                true
            }
            other => {
                self.partial = other;
                false
            }
        }
    }

    /// We reject the message in progress with `sequence` (§5.7.2): its bytes are released now
    /// and its remaining chunks will be dropped.
    pub fn reject(&mut self, sequence: u64) -> bool {
        match self.partial.as_mut() {
            Some(p) if p.sequence == sequence && !p.discard => {
                p.discard = true;
                p.chunks.clear();
                self.creditable += std::mem::take(&mut p.held);
                true
            }
            _ => false,
        }
    }
}

/// One buffer of exactly `len` bytes from the chunks; a single chunk is returned as is.
fn join(chunks: Vec<Bytes>, len: u64) -> Bytes {
    match chunks.len() {
        0 | 1 => chunks.into_iter().next().unwrap_or_default(),
        _ => {
            // `len` was checked against MAX_MESSAGE_SIZE and every byte of it has arrived.
            let mut buf = BytesMut::with_capacity(len as usize);
            for c in chunks {
                buf.extend_from_slice(&c);
            }
            buf.freeze()
        }
    }
}
