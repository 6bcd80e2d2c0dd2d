//! Content-aware compression (wire.md §12): the sender's per-message choice, lz4/snappy with an
//! optional byte shuffle, and the receiver's bounded decompression.
//!
//! Owns the choice (from a cheap look at the bytes), the byte shuffle, and decompression that
//! can never produce more than the declared size: a decompression bomb is a
//! [`CompressionError`], not an allocation. Never decides limits itself: the receiver's
//! `MAX_MESSAGE_SIZE` is passed in.

use bytes::Bytes;

use crate::frame::{Codec, Compression, Settings, Shuffle};

/// What the sender knows about a payload's content, beyond its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentHint {
    /// Nothing: judge from the bytes.
    Unknown,
    /// A numeric array with elements of this many bytes (2, 4 or 8): shuffle before lz4.
    NumericArray {
        /// Element size in bytes.
        element_size: usize,
    },
    /// Already compressed or encrypted: never compress.
    Incompressible,
}

/// Payloads smaller than this are sent as they are (§12.2).
pub const MIN_COMPRESS: usize = 512;

/// Why a payload could not be decompressed (`COMPRESSION_ERROR` or `MESSAGE_TOO_LARGE`).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// wire.md §5.3.3, §12.3.1: the declared size is over the receiver's limit.
    #[error("DeclaredTooLarge: uncompressed length {declared} > max {max} (wire.md §12.3.1)")]
    DeclaredTooLarge { declared: u64, max: u64 },
    /// wire.md §12.3.3: the codec cannot expand this much.
    #[error("ImpossibleExpansion: {compressed} bytes of {codec} cannot become {declared} (wire.md §12.3.3)")]
    ImpossibleExpansion {
        codec: &'static str,
        compressed: u64,
        declared: u64,
    },
    /// wire.md §12.3.2: the data decompresses to more or fewer bytes than declared, or is corrupt.
    #[error("DecompressedLengthMismatch: {codec} data does not decompress to exactly {declared} bytes: {detail} (wire.md §12.3.2)")]
    DecompressedLengthMismatch {
        codec: &'static str,
        declared: u64,
        detail: String,
    },
}

/// Distinct values among 64 sampled bytes at or above which a payload counts as
/// incompressible: uniform random bytes give ~56.6 (σ ≈ 2.8), text and JSON 20 – 35.
pub const INCOMPRESSIBLE_DISTINCT: u32 = 48;

/// Whether a payload looks incompressible: many distinct byte values among 4 × 16 bytes sampled
/// inside it (wire.md §12.2). Tens of nanoseconds whatever the payload's size.
pub fn looks_incompressible(data: &[u8]) -> bool {
    distinct_sampled(data) >= INCOMPRESSIBLE_DISTINCT
}

/// Distinct byte values among up to 4 × 16 bytes sampled at 1/5, 2/5, 3/5 and 4/5 of `data`.
///
/// The first and last bytes are never sampled: a payload is often a small structured header
/// (an id, a timestamp, a length) in front of its bulk, and sampling the header tipped random
/// bulk into "compressible" for a quarter of the bench's stamped 2 MB payloads.
pub fn distinct_sampled(data: &[u8]) -> u32 {
    // Two independent bitmaps (even and odd positions) halve the dependency chain.
    let mut even = [0u64; 4];
    let mut odd = [0u64; 4];
    let window = 16.min(data.len());
    for k in 1..=4 {
        let start = (data.len() - window) * k / 5;
        for pair in data[start..start + window].chunks(2) {
            even[(pair[0] >> 6) as usize] |= 1 << (pair[0] & 63);
            if let Some(&b) = pair.get(1) {
                odd[(b >> 6) as usize] |= 1 << (b & 63);
            }
        }
    }
    even.iter()
        .zip(&odd)
        .map(|(e, o)| (e | o).count_ones())
        .sum()
}

/// A sampled byte-entropy estimate in bits per byte (0–8), from up to 4 × 256 bytes (for
/// reports and tests; the send path uses [`looks_incompressible`]).
pub fn sampled_entropy(data: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    let window = 256.min(data.len());
    for k in 0..4 {
        let start = (data.len() - window) * k / 3;
        for &b in &data[start..start + window] {
            counts[b as usize] += 1;
            n += 1;
        }
    }
    if n == 0 {
        return 0.0;
    }
    // H = log2(n) − Σ c·log2(c) / n.
    let sum: f64 = counts
        .iter()
        .filter(|&&c| c > 1)
        .map(|&c| f64::from(c) * f64::from(c).log2())
        .sum();
    let n = f64::from(n);
    (n.log2() - sum / n).max(0.0)
}

/// The sender's choice for one payload (wire.md §12.2): `None` means send it as it is.
pub fn choose(payload: &[u8], hint: ContentHint, peer: &Settings) -> Option<(Codec, Shuffle)> {
    if payload.len() < MIN_COMPRESS || hint == ContentHint::Incompressible {
        return None;
    }
    let shuffle = match hint {
        ContentHint::NumericArray { element_size: 2 } => Shuffle::Bytes2,
        ContentHint::NumericArray { element_size: 4 } => Shuffle::Bytes4,
        ContentHint::NumericArray { element_size: 8 } => Shuffle::Bytes8,
        _ => Shuffle::None,
    };
    // Random or already-compressed bytes: leave them alone. This runs on every payload of 512
    // bytes or more, so it must cost next to nothing (a 64-byte sample, no arithmetic).
    if shuffle == Shuffle::None && looks_incompressible(payload) {
        return None;
    }
    let codec = if peer.accepts_codec(Codec::Lz4) {
        Codec::Lz4
    } else if peer.accepts_codec(Codec::Snappy) {
        Codec::Snappy
    } else {
        return None;
    };
    // A large payload the sample misjudged would cost a whole wasted compression (lz4 on 2 MB
    // of random bytes: ~1.8 ms on this machine type, more than sending it over loopback);
    // a trial on a few KiB from its middle costs ~2 µs.
    if shuffle == Shuffle::None && payload.len() >= TRIAL_FROM && !trial_saves(payload, codec) {
        return None;
    }
    Some((codec, shuffle))
}

/// Payloads at least this large get a trial compression of a sample before the real one.
pub const TRIAL_FROM: usize = 64 * 1024;

/// Bytes from the middle of the payload that the trial compresses.
const TRIAL_LEN: usize = 4096;

/// Whether compressing `TRIAL_LEN` bytes from the middle of `payload` with `codec` saves at
/// least 1/8 (the same bar as the whole payload, §12.2).
fn trial_saves(payload: &[u8], codec: Codec) -> bool {
    let len = TRIAL_LEN.min(payload.len());
    let start = (payload.len() - len) / 2;
    let sample = &payload[start..start + len];
    let out = match codec {
        Codec::Lz4 => lz4_flex::block::compress(sample).len(),
        Codec::Snappy => match snap::raw::Encoder::new().compress_vec(sample) {
            Ok(v) => v.len(),
            Err(_) => return false,
        },
    };
    out <= len - len / 8
}

/// Compresses `payload` as `choose` decided; returns the bytes to send and the Compression
/// field, or the payload unchanged when compressing saves less than 1/8 (§12.2).
pub fn compress(payload: &Bytes, choice: Option<(Codec, Shuffle)>) -> (Bytes, Compression) {
    let Some((codec, shuffle)) = choice else {
        return (payload.clone(), Compression::None);
    };
    let shuffled;
    let input: &[u8] = if shuffle == Shuffle::None {
        payload
    } else {
        shuffled = shuffle_bytes(payload, shuffle.element_size());
        &shuffled
    };
    let out = match codec {
        Codec::Lz4 => lz4_flex::block::compress(input),
        Codec::Snappy => match snap::raw::Encoder::new().compress_vec(input) {
            Ok(v) => v,
            Err(_) => return (payload.clone(), Compression::None),
        },
    };
    if out.len() > payload.len() - payload.len() / 8 {
        return (payload.clone(), Compression::None);
    }
    let compression = Compression::Compressed {
        codec,
        shuffle,
        uncompressed_len: payload.len() as u64,
    };
    (Bytes::from(out), compression)
}

/// The most a codec can expand its input (wire.md §12.3.3), with slack for headers.
fn max_expansion(codec: Codec, compressed: u64) -> u64 {
    match codec {
        Codec::Lz4 => compressed.saturating_mul(255).saturating_add(64),
        Codec::Snappy => compressed.saturating_mul(22).saturating_add(64),
    }
}

/// Decompresses a payload whose first frame said `compression`, enforcing `max_message_size`.
///
/// Allocates exactly the declared size, only after checking it against the limit and the
/// codec's maximum expansion; a decoder that would write past it fails (§12.3).
pub fn decompress(
    data: &Bytes,
    compression: Compression,
    max_message_size: u64,
) -> Result<Bytes, CompressionError> {
    let Compression::Compressed {
        codec,
        shuffle,
        uncompressed_len,
    } = compression
    else {
        return Ok(data.clone());
    };
    // spec: wire.md §12.3.1 — refuse the declared size before allocating it.
    if uncompressed_len > max_message_size {
        return Err(CompressionError::DeclaredTooLarge {
            declared: uncompressed_len,
            max: max_message_size,
        });
    }
    if uncompressed_len > max_expansion(codec, data.len() as u64) {
        return Err(CompressionError::ImpossibleExpansion {
            codec: codec.name(),
            compressed: data.len() as u64,
            declared: uncompressed_len,
        });
    }
    let declared = uncompressed_len as usize;
    let mismatch = |detail: String| CompressionError::DecompressedLengthMismatch {
        codec: codec.name(),
        declared: uncompressed_len,
        detail,
    };
    let mut out = vec![0u8; declared];
    let written = match codec {
        // spec: wire.md §12.3.2 — the output buffer is exactly the declared size; lz4_flex's
        // safe decoder fails instead of writing past it.
        Codec::Lz4 => {
            lz4_flex::block::decompress_into(data, &mut out).map_err(|e| mismatch(e.to_string()))?
        }
        Codec::Snappy => {
            let own = snap::raw::decompress_len(data).map_err(|e| mismatch(e.to_string()))?;
            if own != declared {
                return Err(mismatch(format!("snappy preamble says {own}")));
            }
            snap::raw::Decoder::new()
                .decompress(data, &mut out)
                .map_err(|e| mismatch(e.to_string()))?
        }
    };
    if written != declared {
        return Err(mismatch(format!("produced {written}")));
    }
    if shuffle != Shuffle::None {
        out = unshuffle_bytes(&out, shuffle.element_size());
    }
    Ok(Bytes::from(out))
}

/// The byte shuffle of wire.md §12.1: byte j of element i goes to `j·m + i`; the `n mod k`
/// trailing bytes are copied unchanged to the end.
pub fn shuffle_bytes(data: &[u8], k: usize) -> Vec<u8> {
    match k {
        2 => shuffle_k::<2>(data),
        4 => shuffle_k::<4>(data),
        8 => shuffle_k::<8>(data),
        _ => {
            let m = data.len() / k.max(1);
            let mut out = vec![0u8; data.len()];
            for i in 0..m {
                for j in 0..k {
                    out[j * m + i] = data[i * k + j];
                }
            }
            out[m * k..].copy_from_slice(&data[m * k..]);
            out
        }
    }
}

/// The shuffle for a known element size: one sequential pass per byte plane (the compiler
/// sees the bounds, so the loops have no checks), ~10x the generic loop.
fn shuffle_k<const K: usize>(data: &[u8]) -> Vec<u8> {
    let m = data.len() / K;
    let (body, tail) = data.split_at(m * K);
    let mut out = vec![0u8; data.len()];
    let (planes, out_tail) = out.split_at_mut(m * K);
    if m > 0 {
        for (j, plane) in planes.chunks_exact_mut(m).enumerate() {
            for (dst, elem) in plane.iter_mut().zip(body.chunks_exact(K)) {
                *dst = elem[j];
            }
        }
    }
    out_tail.copy_from_slice(tail);
    out
}

/// The inverse of [`shuffle_k`].
fn unshuffle_k<const K: usize>(data: &[u8]) -> Vec<u8> {
    let m = data.len() / K;
    let (body, tail) = data.split_at(m * K);
    let mut out = vec![0u8; data.len()];
    let (elems, out_tail) = out.split_at_mut(m * K);
    if m > 0 {
        for (j, plane) in body.chunks_exact(m).enumerate() {
            for (elem, &src) in elems.chunks_exact_mut(K).zip(plane) {
                elem[j] = src;
            }
        }
    }
    out_tail.copy_from_slice(tail);
    out
}

/// The inverse of [`shuffle_bytes`].
pub fn unshuffle_bytes(data: &[u8], k: usize) -> Vec<u8> {
    match k {
        2 => return unshuffle_k::<2>(data),
        4 => return unshuffle_k::<4>(data),
        8 => return unshuffle_k::<8>(data),
        _ => {}
    }
    let m = data.len() / k.max(1);
    let mut out = vec![0u8; data.len()];
    for i in 0..m {
        for j in 0..k {
            out[i * k + j] = data[j * m + i];
        }
    }
    out[m * k..].copy_from_slice(&data[m * k..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn random_walk_f64(n: usize) -> Vec<u8> {
        let mut v = 100.0f64;
        let r = random(n);
        (0..n)
            .flat_map(|i| {
                v += (f64::from(r[i]) - 127.5) / 1000.0;
                v.to_le_bytes()
            })
            .collect()
    }

    /// `text` is compressed with lz4, or with snappy by a peer that accepts only snappy.
    fn assert_compressed_with_either_codec(text: &[u8]) {
        assert_eq!(
            choose(text, ContentHint::Unknown, &Settings::default()),
            Some((Codec::Lz4, Shuffle::None))
        );
        let only_snappy = Settings::default().with_compression(0b10);
        assert_eq!(
            choose(text, ContentHint::Unknown, &only_snappy),
            Some((Codec::Snappy, Shuffle::None))
        );
    }

    #[test]
    fn compress_12_2_skips_random_bytes_and_small_payloads() {
        let s = Settings::default();
        assert_eq!(choose(&random(64 * 1024), ContentHint::Unknown, &s), None);
        assert_eq!(choose(b"short", ContentHint::Unknown, &s), None);
        let text = br#"{"type":"method","to":"ws-1/echo","args":[1,2,3]}"#.repeat(100);
        assert_compressed_with_either_codec(&text);
        assert_eq!(
            choose(
                &text,
                ContentHint::Unknown,
                &Settings::default().with_compression(0)
            ),
            None
        );
    }

    #[test]
    fn compress_12_2_the_sample_tells_random_from_text() {
        // Random buffers (different seeds) are almost always recognised; text never is.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut hits = 0;
        for _ in 0..1000 {
            let buf: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect();
            hits += looks_incompressible(&buf) as u32;
        }
        assert!(hits >= 990, "{hits} of 1000 random buffers recognised");
        let json =
            br#"{"id":1234,"user":"user-17","status":"online","score":0.123,"tags":["a","b3"]},"#
                .repeat(100);
        assert!(!looks_incompressible(&json));
        let prose = b"The quick brown fox jumps over the lazy dog, again and again. ".repeat(50);
        assert!(!looks_incompressible(&prose));
    }

    #[test]
    fn compress_12_2_a_structured_header_does_not_hide_random_bulk() {
        // The bench's payloads: an index and a timestamp (16 bytes) in front of random bytes.
        let s = Settings::default();
        for (i, len) in [
            (0u64, 600usize),
            (1, 20 * 1024),
            (2, 256 * 1024),
            (3, 2 << 20),
        ]
        .into_iter()
        .cycle()
        .take(200)
        .enumerate()
        .map(|(k, (i, len))| (i + 4 * k as u64, len))
        {
            let mut p = random(len);
            p[..8].copy_from_slice(&i.to_be_bytes());
            p[8..16].copy_from_slice(&(1_000_000 * i).to_be_bytes());
            p[len - 4..].copy_from_slice(&[0; 4]);
            assert_eq!(
                choose(&p, ContentHint::Unknown, &s),
                None,
                "len {len}, index {i}"
            );
        }
    }

    #[test]
    fn compress_12_2_a_large_payload_the_sample_misjudges_is_caught_by_the_trial() {
        // Random bytes except where the sample looks: zeros there.
        let s = Settings::default();
        let mut p = random(256 * 1024);
        for k in 1..=4 {
            let start = (p.len() - 16) * k / 5;
            p[start..start + 16].fill(0);
        }
        assert!(!looks_incompressible(&p));
        assert_eq!(choose(&p, ContentHint::Unknown, &s), None);
        // Below the trial size the sample alone decides (the guard in `compress` remains).
        let small = &p[..TRIAL_FROM - 1];
        let mut small = small.to_vec();
        for k in 1..=4 {
            let start = (small.len() - 16) * k / 5;
            small[start..start + 16].fill(0);
        }
        assert_eq!(
            choose(&small, ContentHint::Unknown, &s),
            Some((Codec::Lz4, Shuffle::None))
        );
        assert_eq!(
            compress(&Bytes::from(small), Some((Codec::Lz4, Shuffle::None))).1,
            Compression::None
        );
        // Large compressible payloads still pass the trial, with either codec.
        let text = br#"{"type":"method","to":"ws-1/echo","args":[1,2,3]}"#.repeat(2000);
        assert_compressed_with_either_codec(&text);
    }

    #[test]
    fn compress_12_round_trips_every_codec_and_shuffle() {
        let data = Bytes::from(random_walk_f64(4096));
        for codec in [Codec::Lz4, Codec::Snappy] {
            for shuffle in [
                Shuffle::None,
                Shuffle::Bytes2,
                Shuffle::Bytes4,
                Shuffle::Bytes8,
            ] {
                let (wire, c) = compress(&data, Some((codec, shuffle)));
                assert_eq!(
                    decompress(&wire, c, 64 << 20).unwrap(),
                    data,
                    "{codec:?} {shuffle:?}"
                );
            }
        }
    }

    fn random_walk_u32(n: usize) -> Vec<u8> {
        let mut v = 1_000_000u32;
        let r = random(n);
        (0..n)
            .flat_map(|i| {
                v = v.wrapping_add(u32::from(r[i] % 16)).wrapping_sub(7);
                v.to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn compress_12_1_shuffle_helps_numeric_arrays() {
        let data = Bytes::from(random_walk_u32(32 * 1024));
        let (plain, _) = compress(&data, Some((Codec::Lz4, Shuffle::None)));
        let (shuffled, c) = compress(&data, Some((Codec::Lz4, Shuffle::Bytes4)));
        assert!(matches!(c, Compression::Compressed { .. }));
        assert!(
            shuffled.len() < plain.len() * 3 / 4,
            "shuffled {} vs plain {}",
            shuffled.len(),
            plain.len()
        );
    }

    #[test]
    fn compress_12_1_shuffle_inverts_with_a_tail() {
        let data = random(1001);
        for k in [2, 4, 8] {
            assert_eq!(unshuffle_bytes(&shuffle_bytes(&data, k), k), data);
        }
    }

    #[test]
    fn compress_12_3_1_a_declared_bomb_is_refused_before_allocation() {
        let data = Bytes::from_static(&[0u8; 16]);
        let bomb = Compression::Compressed {
            codec: Codec::Lz4,
            shuffle: Shuffle::None,
            uncompressed_len: 1 << 30,
        };
        assert_eq!(
            decompress(&data, bomb, 64 << 20),
            Err(CompressionError::DeclaredTooLarge {
                declared: 1 << 30,
                max: 64 << 20
            })
        );
        let impossible = Compression::Compressed {
            codec: Codec::Lz4,
            shuffle: Shuffle::None,
            uncompressed_len: 1 << 20,
        };
        assert!(matches!(
            decompress(&data, impossible, 64 << 20),
            Err(CompressionError::ImpossibleExpansion { .. })
        ));
    }

    #[test]
    fn compress_12_3_2_data_that_decompresses_past_its_declared_size_is_an_error() {
        let data = Bytes::from(vec![7u8; 100_000]);
        for codec in [Codec::Lz4, Codec::Snappy] {
            let (wire, _) = compress(&data, Some((codec, Shuffle::None)));
            let lie = Compression::Compressed {
                codec,
                shuffle: Shuffle::None,
                uncompressed_len: 50_000,
            };
            assert!(
                matches!(
                    decompress(&wire, lie, 64 << 20),
                    Err(CompressionError::DecompressedLengthMismatch { .. })
                ),
                "{codec:?}"
            );
            let short = Compression::Compressed {
                codec,
                shuffle: Shuffle::None,
                uncompressed_len: 100_001,
            };
            assert!(decompress(&wire, short, 64 << 20).is_err(), "{codec:?}");
        }
    }
}
