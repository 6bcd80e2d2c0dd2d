//! Short byte strings cut from shared chunks (the header codecs' blocks and their copies).
//!
//! Owns the one chunk being filled. Never puts a piece started larger than a quarter of a
//! chunk in a shared chunk, nor a piece in such a piece's allocation, so whatever keeps a copy
//! ([`Arena::copy`]) alive pins at most [`ARENA_CHUNK`] bytes or the copy's own allocation. (A
//! piece that outgrows the room it was started with moves, as a `BytesMut` does, and the rest
//! of its new allocation becomes the chunk: the encoder's blocks, which live only until they
//! are written.)

use bytes::{Bytes, BytesMut};

/// Short byte strings cut from shared chunks: a header block costs an allocation per chunk,
/// not one (or two, once shared) per block.
///
/// A piece keeps its whole chunk alive, so chunks are small ([`ARENA_CHUNK`]) and a piece
/// over a quarter of one gets its own allocation: whatever holds a decoded header pins at most
/// a chunk, never a transport buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Arena {
    /// The unused rest of the current chunk.
    chunk: BytesMut,
    /// A piece was cut before: the next ones share chunks. The first has an allocation of its
    /// own, so a codec that handles one block (an idle connection's only message) keeps no
    /// chunk.
    started: bool,
}

/// A piece being written ([`Arena::start`]): write into `buf`, then [`Arena::finish`].
pub(crate) struct Piece {
    /// Where the piece is written (at least the room asked for, from its start).
    pub(crate) buf: BytesMut,
    /// Written in an allocation of its own, not in the shared chunk.
    own: bool,
}

/// The size of an [`Arena`]'s chunks.
const ARENA_CHUNK: usize = 512;

impl Arena {
    /// Starts a piece of at most `room` bytes (writing more is allowed, and reallocates): in the
    /// current chunk, a fresh chunk if it has no room left, or an allocation of its own if
    /// `room` is over a quarter of a chunk or this is the arena's first piece.
    pub(crate) fn start(&mut self, room: usize) -> Piece {
        if room > ARENA_CHUNK / 4 || !std::mem::replace(&mut self.started, true) {
            return Piece {
                buf: BytesMut::with_capacity(room),
                own: true,
            };
        }
        if self.chunk.capacity() < room {
            self.chunk = BytesMut::with_capacity(ARENA_CHUNK);
        }
        Piece {
            buf: std::mem::take(&mut self.chunk),
            own: false,
        }
    }

    /// What was written to `piece`, as shared bytes (its clones share the chunk).
    pub(crate) fn finish(&mut self, piece: Piece) -> Bytes {
        let Piece { mut buf, own } = piece;
        if own {
            return buf.freeze();
        }
        let written = buf.split().freeze();
        self.chunk = buf;
        written
    }

    /// A copy of `bytes`.
    pub(crate) fn copy(&mut self, bytes: &[u8]) -> Bytes {
        let mut piece = self.start(bytes.len());
        piece.buf.extend_from_slice(bytes);
        self.finish(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces_share_a_chunk_and_big_ones_own_theirs() {
        let mut arena = Arena::default();
        // The first piece has its own allocation; chunks start with the second.
        let first = arena.copy(b"first");
        assert_eq!(&first[..], b"first");
        let a = arena.copy(b"session");
        let b = arena.copy(b"12345");
        assert_eq!((&a[..], &b[..]), (&b"session"[..], &b"12345"[..]));
        // Consecutive small pieces lie side by side in one chunk.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        let big = vec![7u8; ARENA_CHUNK];
        let c = arena.copy(&big);
        assert_eq!(&c[..], &big[..]);
        // The next small piece is not put in the big piece's allocation, but after `b`.
        let d = arena.copy(b"x");
        assert_eq!(b.as_ptr().wrapping_add(b.len()), d.as_ptr());
        // A piece that does not fit the rest of a chunk starts a new one.
        let fill = vec![1u8; ARENA_CHUNK / 4];
        let pieces: Vec<Bytes> = (0..8).map(|_| arena.copy(&fill)).collect();
        assert!(pieces.iter().all(|p| p[..] == fill[..]));
        assert_eq!(
            (&a[..], &b[..], &d[..]),
            (&b"session"[..], &b"12345"[..], &b"x"[..])
        );
    }
}
