//! Hex text ⇄ bytes: how the spec's vectors, `rhizomorph inspect` and frame traces write bytes.
//!
//! Owns parsing hex dumps (as people paste them) and printing bytes as hex or a short preview.
//! Never interprets the bytes.

/// Why a hex dump could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// A character that is not a hex digit (whitespace, `:` and `,` are skipped).
    #[error("not a hex digit: {ch:?} at character {index}")]
    BadDigit {
        /// The character.
        ch: char,
        /// Its position.
        index: usize,
    },
    /// An odd number of hex digits.
    #[error("odd number of hex digits ({digits})")]
    OddLength {
        /// How many digits there were.
        digits: usize,
    },
}

/// Parses hex text such as `"02 03 0b 01…"`, skipping whitespace, `:`, `,` and a `0x` prefix
/// on each group.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let mut digits = Vec::with_capacity(text.len());
    for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == ':') {
        let word = word.strip_prefix("0x").unwrap_or(word);
        for ch in word.chars() {
            let index = digits.len();
            digits.push(ch.to_digit(16).ok_or(HexError::BadDigit { ch, index })? as u8);
        }
    }
    if digits.len() % 2 != 0 {
        return Err(HexError::OddLength {
            digits: digits.len(),
        });
    }
    Ok(digits.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// Formats bytes as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends bytes to `out` as lowercase hex (two digits each, no separator).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

/// A short preview of payload bytes: quoted text when printable, hex otherwise, cut at 32 bytes.
pub fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 32;
    let shown = &bytes[..bytes.len().min(MAX)];
    let more = if bytes.len() > MAX { "…" } else { "" };
    if !shown.is_empty() && shown.iter().all(|b| (0x20..0x7f).contains(b)) {
        format!("{:?}{more}", String::from_utf8_lossy(shown))
    } else {
        format!("0x{}{more}", to_hex(shown))
    }
}
