//! Batch assembly (wire.md §10, §11.1, §16.4): the frames of one transport write.
//!
//! Owns encoding frames into one write: a buffer, and in a vectored batch the large chunk
//! payloads as views of their messages (so `writev` sends them without a copy), 16-byte
//! alignment of in-place payloads. Never decides what goes in a batch or when it leaves: the
//! session's transmit path does.

use bytes::{Bytes, BytesMut};
use tracing::{trace, warn};

use crate::frame::Frame;

/// Where in-place payloads start in a batch (wire.md §11.1).
pub(super) const ALIGN: usize = 16;

/// Frames encoded for one transport write.
#[derive(Default)]
pub(super) struct Batch {
    /// Encoded bytes not yet moved to `segments`.
    pub(super) buf: BytesMut,
    /// What `buf` reserves when the first frame arrives (a poll that finds nothing to send
    /// allocates nothing).
    capacity: usize,
    /// Vectored batches: what precedes `buf`, in order (encoded heads and payload views).
    segments: Vec<Bytes>,
    segments_len: usize,
    /// Whether large chunk payloads stay views of the message instead of being copied.
    vectored: bool,
    pub(super) frames: u64,
}

/// Chunk payloads at least this long stay views of their message in a vectored batch (a
/// shorter one is cheaper to copy than to give its own I/O segment).
const VECTORED_MIN: usize = 2048;

impl Batch {
    /// A batch expected to hold `bytes`. A vectored one holds heads and small frames only (large
    /// payloads stay where they are), so it reserves at most 4 KiB.
    pub(super) fn with_capacity(bytes: usize, vectored: bool) -> Self {
        let bytes = if vectored { bytes.min(4096) } else { bytes };
        Batch {
            buf: BytesMut::new(),
            capacity: bytes,
            segments: Vec::new(),
            segments_len: 0,
            vectored,
            frames: 0,
        }
    }

    /// Bytes in the batch so far.
    pub(super) fn len(&self) -> usize {
        self.segments_len + self.buf.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn push_segment(&mut self, b: Bytes) {
        self.segments_len += b.len();
        self.segments.push(b);
    }

    /// The batch as segments to write in order (one, unless vectored).
    pub(super) fn into_segments(mut self) -> Vec<Bytes> {
        if !self.buf.is_empty() {
            // Taken, not split: a buffer never split becomes `Bytes` without a new allocation.
            let rest = std::mem::take(&mut self.buf).freeze();
            self.push_segment(rest);
        }
        self.segments
    }

    pub(super) fn push(&mut self, frame: &Frame) {
        trace!(frame = %frame, "send");
        if self.frames == 0 {
            self.buf.reserve(self.capacity);
        }
        if let Frame::Message(m) = frame {
            if self.vectored && m.data.len() >= VECTORED_MIN {
                // The head is encoded here; the payload is the message's own bytes.
                match m.encode_head(&mut self.buf) {
                    Ok(()) => {
                        let head = self.buf.split().freeze();
                        self.push_segment(head);
                        self.push_segment(m.data.clone());
                    }
                    Err(e) => warn!(error = %e, "dropping a frame that does not encode"),
                }
                self.frames += 1;
                return;
            }
        }
        // Only frames this session built are queued; they are within every bound.
        if let Err(e) = frame.encode(&mut self.buf) {
            warn!(error = %e, "dropping a frame that does not encode");
        }
        self.frames += 1;
    }
}
