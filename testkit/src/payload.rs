//! Payload generators for tests and benchmarks: bytes no compressor shrinks, and echo payloads
//! that carry their index and send time.
//!
//! Owns only the bytes' content. Never allocates more than the length asked for (the filler per
//! size is made once and shared).

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

/// A payload of `len` bytes (at least 16) starting with its index and send time (nanoseconds
/// since `epoch`), read back by [`stamp_of`].
pub fn stamped(index: u64, epoch: Instant, len: usize) -> Bytes {
    let len = len.max(16);
    let filler = filler(len);
    let mut b = BytesMut::with_capacity(len);
    b.put_u64(index);
    b.put_u64(epoch.elapsed().as_nanos() as u64);
    // Pseudo-random filler (not compressible, not all zeros), made once per size: generating
    // it per message cost more than sending 2 MB over raw TCP.
    b.put_slice(&filler[16..len]);
    b.freeze()
}

fn filler(len: usize) -> Bytes {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<usize, Bytes>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
    c.entry(len)
        .or_insert_with(|| incompressible(len, len as u64))
        .clone()
}

/// `len` pseudo-random bytes (xorshift64 from `seed`): what no compressor shrinks, the same for
/// the same seed.
pub fn incompressible(len: usize, seed: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while b.len() + 8 <= len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.put_u64(x);
    }
    b.put_bytes(0x5a, len - b.len());
    b.freeze()
}

/// How long ago the payload made by [`stamped`] was sent, or `None` if it is too short.
pub fn stamp_of(payload: &[u8], epoch: Instant) -> Option<Duration> {
    let t = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
    Some(epoch.elapsed().saturating_sub(Duration::from_nanos(t)))
}
