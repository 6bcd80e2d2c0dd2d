//! Header compression (wire.md §6.3, §6.4): the static table, the per-channel dynamic tables,
//! and the encoder and decoder of header blocks.
//!
//! Owns the table state of one channel in one direction and the representations of §6.4.
//! The encoder and decoder of a channel stay in step because the channel's header blocks are
//! processed in order (§6.3.3). Never allocates beyond the header list limit while decoding and
//! never panics on a block from the wire.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::arena::Arena;
use super::routing::{HeaderField, RoutingHeader};
pub use super::static_table::STATIC_TABLE;
use super::static_table::{static_exact_index, static_name_index, STATIC_LEN};
use crate::frame::{varint, ErrorCode};

/// Most fields in one header block (wire.md §6.5).
pub const MAX_HEADER_FIELDS: usize = 64;

/// Longest field name (wire.md §6.4.5).
pub const MAX_NAME_LEN: usize = 255;

/// Names whose values are unique per message: inserting them would only evict useful entries
/// (wire.md §6.4.4).
const NEVER_INSERT: [&str; 6] = ["session", "parent", "trace-id", "seq", "deadline", "token"];

/// A small, fast, non-cryptographic hasher (the Fx hash of rustc) for the encoder's indexes.
/// Its keys are this side's own outgoing header fields, at most a table's worth, so hash
/// flooding is not a concern; SipHash was a tenth of the per-message cost.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// A header block could not be decoded (all are `HEADER_ERROR`, wire.md §15).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// wire.md §6.3.4: an index that addresses no entry.
    #[error("BadHeaderIndex: index {index} addresses no entry (table holds {entries} dynamic entries) (wire.md §6.3.4)")]
    BadHeaderIndex { index: u64, entries: usize },
    /// wire.md §6.4.2: an undefined representation byte.
    #[error("BadHeaderRepresentation: first byte {byte:#04x} (wire.md §6.4.2)")]
    BadHeaderRepresentation { byte: u8 },
    /// wire.md §6.4.3: the block ends inside a representation.
    #[error("HeaderBlockTruncated: block ends inside `{field}` (wire.md §6.4.3)")]
    HeaderBlockTruncated { field: &'static str },
    /// wire.md §6.4: a non-minimal varint inside a prefix integer or string length.
    #[error("NonMinimalVarint: value {value} in {len} bytes inside a header block (wire.md §6.4)")]
    NonMinimalVarint { value: u64, len: usize },
    /// wire.md §6.5: the decoded list grew over `MAX_HEADER_LIST_SIZE`.
    #[error("HeaderListTooLarge: decoded size {size} > max {max} (wire.md §6.5)")]
    HeaderListTooLarge { size: u64, max: u64 },
    /// wire.md §6.5: more than 64 fields.
    #[error("TooManyHeaderFields: more than {max} fields (wire.md §6.5)")]
    TooManyHeaderFields { max: usize },
    /// wire.md §6.4.5: an empty name or one over 255 bytes.
    #[error("BadHeaderName: name of {len} bytes, allowed 1..=255 (wire.md §6.4.5)")]
    BadHeaderName { len: u64 },
}

impl HeaderError {
    /// The wire error code: always `HEADER_ERROR`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::HEADER_ERROR
    }

    /// The variant's name, as the test vectors' `kind` field writes it.
    pub fn kind(&self) -> &'static str {
        match self {
            HeaderError::BadHeaderIndex { .. } => "BadHeaderIndex",
            HeaderError::BadHeaderRepresentation { .. } => "BadHeaderRepresentation",
            HeaderError::HeaderBlockTruncated { .. } => "HeaderBlockTruncated",
            HeaderError::NonMinimalVarint { .. } => "NonMinimalVarint",
            HeaderError::HeaderListTooLarge { .. } => "HeaderListTooLarge",
            HeaderError::TooManyHeaderFields { .. } => "TooManyHeaderFields",
            HeaderError::BadHeaderName { .. } => "BadHeaderName",
        }
    }
}

/// The dynamic table of one channel in one direction (wire.md §6.3): FIFO, newest first.
#[derive(Debug, Clone, Default)]
struct DynamicTable {
    /// Entries, newest at the front.
    entries: VecDeque<HeaderField>,
    size: usize,
    capacity: usize,
    /// Entries ever inserted: the absolute number of the next insertion.
    inserted: u64,
}

impl DynamicTable {
    fn new(capacity: usize) -> Self {
        DynamicTable {
            capacity,
            ..Default::default()
        }
    }

    /// spec: wire.md §6.3.2 — evict oldest until the new entry fits; an entry larger than
    /// the capacity empties the table and is not inserted. Returns the evicted entries'
    /// absolute numbers through `evicted`.
    fn insert(&mut self, field: HeaderField, mut evicted: impl FnMut(u64, &HeaderField)) {
        let size = field.size();
        let oldest_abs = |t: &DynamicTable| t.inserted - t.entries.len() as u64;
        while self.size + size > self.capacity {
            let abs = oldest_abs(self);
            match self.entries.pop_back() {
                Some(old) => {
                    self.size -= old.size();
                    evicted(abs, &old);
                }
                None => break,
            }
        }
        self.inserted += 1;
        if size <= self.capacity {
            self.size += size;
            self.entries.push_front(field);
        }
    }

    /// The entry at wire index `index` (static first, then dynamic, §6.3).
    fn get(&self, index: u64) -> Option<HeaderField> {
        if index < STATIC_LEN {
            let (n, v) = STATIC_TABLE[index as usize];
            return Some(HeaderField {
                name: Bytes::from_static(n.as_bytes()),
                value: Bytes::from_static(v.as_bytes()),
            });
        }
        let rel = usize::try_from(index - STATIC_LEN).ok()?;
        self.entries.get(rel).cloned()
    }

    /// The wire index of the entry with absolute number `abs`, if still in the table.
    fn index_of(&self, abs: u64) -> Option<u64> {
        let rel = self.inserted.checked_sub(abs + 1)?;
        (rel < self.entries.len() as u64).then_some(STATIC_LEN + rel)
    }
}

/// Room the encoder makes for a block before writing it: most blocks of a changed header are
/// a few indexed bytes and one short literal.
const TYPICAL_BLOCK: usize = 64;

/// Writes a prefix integer (wire.md §6.4): `first` holds the representation's high bits.
fn write_prefix_int(dst: &mut BytesMut, first: u8, prefix_bits: u32, value: u64) {
    let max = (1u64 << prefix_bits) - 1;
    if value < max {
        dst.put_u8(first | value as u8);
    } else {
        dst.put_u8(first | max as u8);
        varint::write(dst, value - max);
    }
}

fn write_string(dst: &mut BytesMut, s: &[u8]) {
    varint::write(dst, s.len() as u64);
    dst.put_slice(s);
}

/// Encodes routing headers into header blocks for one channel (sender side).
#[derive(Debug, Clone)]
pub struct HeaderEncoder {
    table: DynamicTable,
    /// (name, value) → absolute number of the newest dynamic entry holding it.
    exact: HashMap<HeaderField, u64, FxBuild>,
    /// name → absolute number of the newest dynamic entry with that name.
    names: HashMap<Bytes, u64, FxBuild>,
    /// The last header encoded without touching the table, and its block: the same header
    /// again (the common case: a repeated routing header) encodes to the same bytes, and a
    /// header that differs in a few fields (a call's `session`) reuses the others' bytes.
    last: Option<LastBlock>,
    /// The field ends of the block before `last`, kept for the next block (no allocation).
    spare_ends: Vec<usize>,
    /// Where blocks are written.
    arena: Arena,
}

/// A header block the encoder may reuse while its table is as it was ([`HeaderEncoder`]).
#[derive(Debug, Clone)]
struct LastBlock {
    header: RoutingHeader,
    block: Bytes,
    /// Where each field's representation ends in `block`.
    ends: Vec<usize>,
    /// The table's insertion count when it was encoded: an index means the same entry only
    /// while nothing was inserted (the capacity never changes, so nothing else evicts).
    inserted: u64,
}

impl LastBlock {
    /// Field `i`'s encoded bytes, if the header had the same field at `i`.
    fn same_field(&self, i: usize, field: &HeaderField) -> Option<&[u8]> {
        if self.header.fields().get(i) != Some(field) {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.block[start..self.ends[i]])
    }
}

impl HeaderEncoder {
    /// An encoder for a table of `capacity` bytes: the peer's `HEADER_TABLE_SIZE`.
    pub fn new(capacity: usize) -> Self {
        HeaderEncoder {
            table: DynamicTable::new(capacity),
            exact: HashMap::default(),
            names: HashMap::default(),
            last: None,
            spare_ends: Vec::new(),
            arena: Arena::default(),
        }
    }

    /// Encodes `header` as one block (as [`encode`](Self::encode)); a header equal to the
    /// previous one, whose encoding changed nothing in the table, reuses that block, and one
    /// that shares fields with it at the same positions reuses their bytes until a field of
    /// its own inserts (after which indices have moved).
    pub fn encode_block(&mut self, header: &RoutingHeader) -> Bytes {
        let inserted = self.table.inserted;
        let last = self.last.take().filter(|l| l.inserted == inserted);
        if let Some(l) = &last {
            if l.header == *header {
                let block = l.block.clone();
                self.last = last;
                return block;
            }
        }
        // A block is written where the last one ended; one that outgrows the chunk's rest
        // moves to an allocation of its own as it grows. Blocks live until they are written
        // (the last one until the next), so a chunk is not held for long.
        let mut piece = self.arena.start(TYPICAL_BLOCK);
        let buf = &mut piece.buf;
        let mut ends = std::mem::take(&mut self.spare_ends);
        ends.clear();
        for (i, field) in header.fields().iter().enumerate() {
            let reused = last
                .as_ref()
                .filter(|_| self.table.inserted == inserted)
                .and_then(|l| l.same_field(i, field));
            match reused {
                Some(bytes) => buf.extend_from_slice(bytes),
                None => self.encode_field(field, buf),
            }
            ends.push(buf.len());
        }
        let block = self.arena.finish(piece);
        if let Some(old) = last {
            self.spare_ends = old.ends;
        }
        if self.table.inserted == inserted {
            self.last = Some(LastBlock {
                header: header.clone(),
                block: block.clone(),
                ends,
                inserted,
            });
        }
        block
    }

    /// Encodes `header` (appending to `dst`) and updates the table as the decoder will.
    ///
    /// Field names must be 1–255 bytes (checked by the caller before a message is accepted).
    pub fn encode(&mut self, header: &RoutingHeader, dst: &mut BytesMut) {
        for field in header.fields() {
            self.encode_field(field, dst);
        }
    }

    fn encode_field(&mut self, field: &HeaderField, dst: &mut BytesMut) {
        let never_insert = NEVER_INSERT.iter().any(|n| n.as_bytes() == &field.name[..]);
        if never_insert {
            // Never in the dynamic table (we never insert it): only the static table can
            // hold it, and a fresh value (a call's `session`) costs no hash lookups.
            match static_exact_index(&field.name, &field.value) {
                Some(index) => write_prefix_int(dst, 0x80, 7, index),
                None => {
                    match static_name_index(&field.name) {
                        Some(i) => write_prefix_int(dst, 0x20, 5, i),
                        None => {
                            dst.put_u8(0x00);
                            write_string(dst, &field.name);
                        }
                    }
                    write_string(dst, &field.value);
                }
            }
            return;
        }
        // 1. The whole field is in a table: one byte (for the first 127 entries).
        if let Some(index) = self.exact_index(field) {
            write_prefix_int(dst, 0x80, 7, index);
            return;
        }
        let name_index = self.name_index(&field.name);
        let insert = field.size() <= self.table.capacity / 2;
        match (name_index, insert) {
            (Some(i), true) => write_prefix_int(dst, 0x40, 6, i),
            (Some(i), false) => write_prefix_int(dst, 0x20, 5, i),
            (None, true) => {
                dst.put_u8(0x10);
                write_string(dst, &field.name);
            }
            (None, false) => {
                dst.put_u8(0x00);
                write_string(dst, &field.name);
            }
        }
        write_string(dst, &field.value);
        if insert {
            self.insert(field.clone());
        }
    }

    fn exact_index(&self, field: &HeaderField) -> Option<u64> {
        if let Some(i) = static_exact_index(&field.name, &field.value) {
            return Some(i);
        }
        self.exact
            .get(field)
            .and_then(|&abs| self.table.index_of(abs))
    }

    fn name_index(&self, name: &Bytes) -> Option<u64> {
        if let Some(&abs) = self.names.get(name) {
            if let Some(i) = self.table.index_of(abs) {
                // A dynamic index may cost more bytes than a static one; prefer the static
                // entry when it has the name.
                return Some(static_name_index(name).unwrap_or(i));
            }
        }
        static_name_index(name)
    }

    fn insert(&mut self, field: HeaderField) {
        self.last = None;
        let abs = self.table.inserted;
        let (exact, names) = (&mut self.exact, &mut self.names);
        self.table.insert(field.clone(), |old_abs, old| {
            if exact.get(old) == Some(&old_abs) {
                exact.remove(old);
            }
            if names.get(&old.name) == Some(&old_abs) {
                names.remove(&old.name);
            }
        });
        if self.table.index_of(abs).is_some() {
            self.names.insert(field.name.clone(), abs);
            self.exact.insert(field, abs);
        }
    }
}

/// Decodes header blocks for one channel (receiver side), within the receiver's limits.
#[derive(Debug, Clone)]
pub struct HeaderDecoder {
    table: DynamicTable,
    max_list_size: u64,
    /// The last block that changed nothing in the table, and its header: the same block
    /// again decodes to the same header.
    last: Option<(Bytes, RoutingHeader)>,
    /// Where blocks are copied.
    arena: Arena,
    /// Whether the last block may be reused (always, but for the fuzz target's reference).
    reuse: bool,
}

/// A cursor over a header block.
struct BlockReader {
    block: Bytes,
}

impl BlockReader {
    fn u8(&mut self, field: &'static str) -> Result<u8, HeaderError> {
        if self.block.is_empty() {
            return Err(HeaderError::HeaderBlockTruncated { field });
        }
        Ok(self.block.get_u8())
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, HeaderError> {
        match varint::read(&self.block) {
            Ok((v, n)) => {
                self.block.advance(n);
                Ok(v)
            }
            Err(varint::VarIntError::Incomplete { .. }) => {
                Err(HeaderError::HeaderBlockTruncated { field })
            }
            Err(varint::VarIntError::NonMinimal { value, len }) => {
                Err(HeaderError::NonMinimalVarint { value, len })
            }
        }
    }

    fn prefix_int(
        &mut self,
        first: u8,
        prefix_bits: u32,
        field: &'static str,
    ) -> Result<u64, HeaderError> {
        let max = (1u64 << prefix_bits) - 1;
        let v = u64::from(first) & max;
        if v < max {
            Ok(v)
        } else {
            Ok(max + self.varint(field)?)
        }
    }

    /// A string whose length is checked against the bytes left before it is taken (a slice of
    /// the block: no copy).
    fn string(&mut self, field: &'static str) -> Result<Bytes, HeaderError> {
        let len = self.varint(field)?;
        if len > self.block.len() as u64 {
            return Err(HeaderError::HeaderBlockTruncated { field });
        }
        Ok(self.block.split_to(len as usize))
    }
}

impl HeaderDecoder {
    /// A decoder with a table of `capacity` bytes (the receiver's own `HEADER_TABLE_SIZE`)
    /// enforcing `max_list_size` (its `MAX_HEADER_LIST_SIZE`).
    pub fn new(capacity: usize, max_list_size: u64) -> Self {
        HeaderDecoder {
            table: DynamicTable::new(capacity),
            max_list_size,
            last: None,
            arena: Arena::default(),
            reuse: true,
        }
    }

    /// The same decoder without its shortcut (the last block's header, reused when the same
    /// block comes again): every block is decoded in full. A reference the fuzz target and the
    /// property tests compare the shortcut with.
    #[cfg(feature = "fuzzing")]
    pub fn without_reuse(mut self) -> Self {
        self.reuse = false;
        self
    }

    /// Decodes one header block. Literal names and values are slices of one copy of `block`
    /// (a few dozen bytes, in a chunk of at most 512 bytes that later blocks share); indexed
    /// ones share the table's bytes, which the table owns.
    ///
    /// Nothing decoded keeps `block` itself alive: it is usually a view of a transport read
    /// buffer of up to hundreds of KiB, which a table entry or the cached last header would
    /// otherwise pin for as long as they live (and which the reader could not reuse).
    ///
    /// On error the table may hold part of the block's insertions; the connection is then
    /// broken anyway (`HEADER_ERROR` is a connection error, wire.md §18).
    pub fn decode(&mut self, block: Bytes) -> Result<RoutingHeader, HeaderError> {
        if let Some((b, header)) = self.last.as_ref().filter(|_| self.reuse) {
            if *b == block {
                return Ok(header.clone());
            }
        }
        let inserted = self.table.inserted;
        self.last = None;
        let block = self.arena.copy(&block);
        let header = self.decode_block(block.clone())?;
        if self.table.inserted == inserted {
            self.last = Some((block, header.clone()));
        }
        Ok(header)
    }

    fn decode_block(&mut self, block: Bytes) -> Result<RoutingHeader, HeaderError> {
        let mut r = BlockReader { block };
        // A routing header is a handful of fields: one allocation for the common case, filled
        // where it lies.
        let mut header = RoutingHeader::new();
        let fields = header.fields_mut();
        let mut list_size = 0u64;
        while !r.block.is_empty() {
            if fields.len() == MAX_HEADER_FIELDS {
                return Err(HeaderError::TooManyHeaderFields {
                    max: MAX_HEADER_FIELDS,
                });
            }
            let first = r.u8("representation")?;
            let (field, insert) = if first & 0x80 != 0 {
                let index = r.prefix_int(first, 7, "index")?;
                (self.lookup(index)?, false)
            } else if first & 0x60 != 0 {
                // Literal with a name reference: `01` inserts (6-bit prefix), `001` does not
                // (5-bit prefix).
                let insert = first & 0x40 != 0;
                let index = r.prefix_int(first, if insert { 6 } else { 5 }, "name_index")?;
                let name = self.lookup(index)?.name;
                (
                    HeaderField {
                        name,
                        value: r.string("value")?,
                    },
                    insert,
                )
            } else if first == 0x10 || first == 0x00 {
                let name = r.string("name")?;
                if name.is_empty() || name.len() > MAX_NAME_LEN {
                    return Err(HeaderError::BadHeaderName {
                        len: name.len() as u64,
                    });
                }
                (
                    HeaderField {
                        name,
                        value: r.string("value")?,
                    },
                    first == 0x10,
                )
            } else {
                // spec: wire.md §6.4.2 — other 0001xxxx / 0000xxxx bytes are undefined.
                return Err(HeaderError::BadHeaderRepresentation { byte: first });
            };
            // spec: wire.md §6.5 — stop as soon as the decoded list exceeds the limit.
            list_size += field.size() as u64;
            if list_size > self.max_list_size {
                return Err(HeaderError::HeaderListTooLarge {
                    size: list_size,
                    max: self.max_list_size,
                });
            }
            if insert {
                // The table's own copy: an entry lives until evicted, and must not keep the
                // rest of this block (its other fields, a later message's literals) alive.
                let owned = HeaderField {
                    name: Bytes::copy_from_slice(&field.name),
                    value: Bytes::copy_from_slice(&field.value),
                };
                self.table.insert(owned, |_, _| {});
            }
            fields.push(field);
        }
        Ok(header)
    }

    fn lookup(&self, index: u64) -> Result<HeaderField, HeaderError> {
        self.table.get(index).ok_or(HeaderError::BadHeaderIndex {
            index,
            entries: self.table.entries.len(),
        })
    }

    /// The dynamic table's entries, newest first (wire.md §6.3).
    pub fn dynamic_table(&self) -> impl Iterator<Item = &HeaderField> {
        self.table.entries.iter()
    }

    /// Number of entries in the dynamic table (for tests and metrics).
    pub fn dynamic_entries(&self) -> usize {
        self.table.entries.len()
    }

    /// Bytes the dynamic table accounts for (§6.3.1).
    pub fn dynamic_size(&self) -> usize {
        self.table.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RoutingHeader {
        RoutingHeader::new()
            .with("type", "method")
            .with("from", "ws-user-1/client-a")
            .with("to", "ws-user-1/echo")
            .with("method", "services.echo.echo")
            .with("session", "abcdefghijklmnopqrstuv")
    }

    #[test]
    fn header_6_3_nothing_decoded_pins_the_buffer_the_block_arrived_in() {
        let mut enc = HeaderEncoder::new(4096);
        let mut dec = HeaderDecoder::new(4096, 16384);
        let h = header();
        let mut headers = Vec::new();
        // Inserting literals, then all indexed (cached as the last block), then a new value.
        for h in [
            h.clone(),
            h.clone(),
            h.with("session", "another-session-id-000"),
        ] {
            let block = enc.encode_block(&h);
            // The block inside a large read buffer, as a transport hands it over.
            let mut read = vec![0u8; 64 * 1024];
            read[1000..1000 + block.len()].copy_from_slice(&block);
            let read = Bytes::from(read);
            let decoded = dec.decode(read.slice(1000..1000 + block.len())).unwrap();
            assert_eq!(decoded, h);
            assert!(
                read.is_unique(),
                "the decoder or the header keeps the read buffer"
            );
            headers.push(decoded);
        }
    }

    /// The reuse of a previous block's fields yields exactly the bytes a fresh encoding does,
    /// over headers that share some fields, differ in others, insert, and evict (a small table).
    #[test]
    fn header_6_4_reused_field_bytes_equal_a_fresh_encoding() {
        let names = [
            "type", "from", "to", "method", "session", "x-trace", "service",
        ];
        let values = [
            "a",
            "method",
            "reply",
            "ws-1/client",
            "ws-1/echo",
            "",
            "svc",
            "12345",
        ];
        for capacity in [0, 96, 256, 4096] {
            let mut cached = HeaderEncoder::new(capacity);
            let mut fresh = HeaderEncoder::new(capacity);
            let mut dec = HeaderDecoder::new(capacity, 1 << 20);
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut next = |n: usize| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % n as u64) as usize
            };
            let mut h = RoutingHeader::new();
            let mut reused = 0;
            for i in 0..5_000u64 {
                // Mostly small changes to the previous header, sometimes a new one.
                match next(10) {
                    0 => h = RoutingHeader::new(),
                    1..=6 => h.set("session", i.to_string()),
                    _ => h.set(names[next(names.len())], values[next(values.len())]),
                }
                if h.is_empty() {
                    h.set("type", "method");
                }
                let before = cached.last.is_some();
                let a = cached.encode_block(&h);
                reused += usize::from(before);
                let mut b = BytesMut::new();
                fresh.encode(&h, &mut b);
                assert_eq!(&a[..], &b[..], "capacity {capacity}, header {i}: {h:?}");
                assert_eq!(dec.decode(a).unwrap(), h);
            }
            assert!(
                capacity == 0 || reused > 1000,
                "{reused} blocks had one to reuse"
            );
        }
    }

    #[test]
    fn header_6_3_a_repeated_header_reuses_its_block_only_while_the_table_is_unchanged() {
        let mut enc = HeaderEncoder::new(4096);
        let mut dec = HeaderDecoder::new(4096, 16384);
        let h = header();
        // First time: literals with insertion (the table changes): not cached.
        let b1 = enc.encode_block(&h);
        assert_eq!(dec.decode(b1.clone()).unwrap(), h);
        // Second time: all indexed; third time: the very same block.
        let b2 = enc.encode_block(&h);
        assert_ne!(b1, b2);
        let b3 = enc.encode_block(&h);
        assert_eq!(
            b2.as_ptr(),
            b3.as_ptr(),
            "the block is reused, not re-encoded"
        );
        assert_eq!(dec.decode(b2).unwrap(), h);
        assert_eq!(dec.decode(b3).unwrap(), h);
        // A header that inserts changes the table: the old block is encoded afresh, and
        // both sides still agree.
        let other = h.clone().with("trace", "t-1");
        let b4 = enc.encode_block(&other);
        assert_eq!(dec.decode(b4).unwrap(), other);
        let b5 = enc.encode_block(&h);
        assert_eq!(dec.decode(b5).unwrap(), h);
        let b6 = enc.encode_block(&h);
        assert_eq!(dec.decode(b6).unwrap(), h);
    }

    #[test]
    fn header_appendix_b_static_lookups_agree_with_the_table() {
        for (i, (n, v)) in STATIC_TABLE.iter().enumerate() {
            let first = STATIC_TABLE
                .iter()
                .position(|(m, w)| m == n && w == v)
                .unwrap() as u64;
            assert_eq!(
                static_exact_index(n.as_bytes(), v.as_bytes()),
                Some(first),
                "entry {i}"
            );
            let first_name = STATIC_TABLE.iter().position(|(m, _)| m == n).unwrap() as u64;
            assert_eq!(
                static_name_index(n.as_bytes()),
                Some(first_name),
                "entry {i}"
            );
        }
        assert_eq!(static_exact_index(b"to", b"ws-1/x"), None);
        assert_eq!(static_exact_index(b"x-app", b""), None);
        assert_eq!(static_name_index(b"x-app"), None);
    }

    #[test]
    fn header_6_4_4_repeated_fields_cost_one_byte_each() {
        let mut enc = HeaderEncoder::new(4096);
        let mut dec = HeaderDecoder::new(4096, 16_384);
        let mut first = BytesMut::new();
        enc.encode(&header(), &mut first);
        assert_eq!(dec.decode(first.clone().freeze()).unwrap(), header());
        let mut second = BytesMut::new();
        enc.encode(&header(), &mut second);
        assert_eq!(dec.decode(second.clone().freeze()).unwrap(), header());
        // type (static), from, to, method (dynamic): 1 byte each; session literal by name:
        // 1 + 1 + 22.
        assert_eq!(second.len(), 4 + 24, "{second:02x?}");
    }

    #[test]
    fn header_6_3_2_eviction_keeps_encoder_and_decoder_in_step() {
        let mut enc = HeaderEncoder::new(200);
        let mut dec = HeaderDecoder::new(200, 16_384);
        for i in 0..500 {
            let h = RoutingHeader::new()
                .with("to", format!("peer-{}", i % 7))
                .with("x-app", format!("{}", i % 3));
            let mut block = BytesMut::new();
            enc.encode(&h, &mut block);
            assert_eq!(dec.decode(block.freeze()).unwrap(), h, "message {i}");
            assert!(dec.dynamic_size() <= 200);
        }
    }

    #[test]
    fn header_6_3_4_rejects_index_past_the_table() {
        let mut dec = HeaderDecoder::new(4096, 16_384);
        assert_eq!(
            dec.decode(Bytes::from_static(&[0x80 | 32])),
            Err(HeaderError::BadHeaderIndex {
                index: 32,
                entries: 0
            })
        );
    }

    #[test]
    fn header_6_5_stops_at_the_list_limit() {
        let mut dec = HeaderDecoder::new(4096, 100);
        let mut block = BytesMut::new();
        block.put_u8(0x00);
        write_string(&mut block, b"x");
        write_string(&mut block, &[b'v'; 80]);
        assert!(matches!(
            dec.decode(block.freeze()),
            Err(HeaderError::HeaderListTooLarge { .. })
        ));
    }

    #[test]
    fn header_6_5_stops_at_64_fields() {
        let mut dec = HeaderDecoder::new(4096, 1 << 20);
        let block = Bytes::from(vec![0x83u8; 65]);
        assert_eq!(
            dec.decode(block),
            Err(HeaderError::TooManyHeaderFields { max: 64 })
        );
    }
}
