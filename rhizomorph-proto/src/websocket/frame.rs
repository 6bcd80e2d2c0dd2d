//! RFC 6455 §5 framing, sans-IO: frame headers, masking, and a decoder that turns received
//! bytes into whole WebSocket messages.
//!
//! Owns the byte layout of a WebSocket frame and the RFC's rules on it (reserved bits, opcodes,
//! control-frame limits, which side masks, continuation order), and the message-size limit that
//! is checked before a payload is waited for or copied. Hands binary payloads out as `Bytes`
//! views of the receive buffer (unmasked in place), so one unfragmented message costs no copy.
//! Never reads a socket and never looks inside a message.

use bytes::{Buf, Bytes, BytesMut};

/// A WebSocket frame opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: a continuation of a fragmented message.
    Continuation,
    /// 0x1: a UTF-8 text message (or its first fragment).
    Text,
    /// 0x2: a binary message (or its first fragment).
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Result<OpCode, WsFrameError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(WsFrameError::UnknownOpcode(other)),
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Which end of the connection this codec serves: a client masks what it sends and must
/// receive unmasked frames; a server the reverse (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that sent the upgrade request.
    Client,
    /// The end that answered it.
    Server,
}

/// A violation of RFC 6455 framing by the peer, or a message over our limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsFrameError {
    /// RSV1–3 set without a negotiated extension (RFC 6455 §5.2).
    #[error("WebSocket frame has reserved bits set ({0:#04x}) and no extension was negotiated")]
    ReservedBits(u8),
    /// An opcode RFC 6455 does not define.
    #[error("WebSocket frame has unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame without FIN (RFC 6455 §5.5: control frames are never fragmented).
    #[error("fragmented WebSocket control frame ({0:?})")]
    FragmentedControl(OpCode),
    /// A control frame with more than 125 bytes of payload (RFC 6455 §5.5).
    #[error("WebSocket control frame of {0} bytes (at most 125)")]
    ControlTooLong(u64),
    /// A client sent an unmasked frame, or a server a masked one (RFC 6455 §5.1).
    #[error("WebSocket frame from the {from:?} side is {}", if *masked { "masked" } else { "not masked" })]
    Masking {
        /// The peer's role.
        from: Role,
        /// Whether the frame was masked.
        masked: bool,
    },
    /// The 64-bit length has its most significant bit set (RFC 6455 §5.2).
    #[error("WebSocket frame length {0:#x} has its most significant bit set")]
    LengthOverflow(u64),
    /// The message (all its fragments) would exceed the receiver's limit.
    #[error("WebSocket message of at least {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The length reached with this frame.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A continuation frame with no message in progress.
    #[error("WebSocket continuation frame with no fragmented message in progress")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is still in progress.
    #[error("WebSocket {0:?} frame while a fragmented message is in progress")]
    ExpectedContinuation(OpCode),
    /// A close frame with a one-byte payload, or a reason that is not UTF-8.
    #[error("malformed WebSocket close frame ({0} bytes)")]
    BadClose(usize),
}

/// The longest frame header: 2 bytes, 8 of extended length, 4 of masking key.
pub const MAX_HEAD_LEN: usize = 14;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub len: u64,
}

impl FrameHead {
    /// Parses a header from the front of `bytes`: `Ok(None)` if `bytes` holds less than a whole
    /// header, else the header and its length in bytes.
    pub fn parse(bytes: &[u8]) -> Result<Option<(FrameHead, usize)>, WsFrameError> {
        let [b0, b1, ..] = *bytes else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsFrameError::ReservedBits(b0 & 0x70));
        }
        let opcode = OpCode::from_bits(b0 & 0x0F)?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7F {
            126 => match bytes.get(2..4) {
                Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
                None => return Ok(None),
            },
            127 => match bytes.get(2..10) {
                Some(b) => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    (u64::from_be_bytes(a), 10)
                }
                None => return Ok(None),
            },
            n => (n as u64, 2),
        };
        if len >> 63 != 0 {
            return Err(WsFrameError::LengthOverflow(len));
        }
        if opcode.is_control() {
            if !fin {
                return Err(WsFrameError::FragmentedControl(opcode));
            }
            if len > 125 {
                return Err(WsFrameError::ControlTooLong(len));
            }
        }
        let mask = if masked {
            let Some(k) = bytes.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        };
        Ok(Some((
            FrameHead {
                fin,
                opcode,
                mask,
                len,
            },
            at,
        )))
    }

    /// Writes the header into `out` (at least [`MAX_HEAD_LEN`] bytes) with the shortest length
    /// encoding; returns its length.
    pub fn encode(&self, out: &mut [u8; MAX_HEAD_LEN]) -> usize {
        out[0] = (if self.fin { 0x80 } else { 0 }) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = if self.len < 126 {
            out[1] = mask_bit | self.len as u8;
            2
        } else if self.len <= u16::MAX as u64 {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.len.to_be_bytes());
            10
        };
        if let Some(k) = self.mask {
            out[at..at + 4].copy_from_slice(&k);
            at += 4;
        }
        at
    }
}

/// XORs `data` with the masking key (RFC 6455 §5.3), `data[0]` taking `key[0]`. Masking and
/// unmasking are the same operation. Eight bytes at a time, which the compiler vectorizes.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let k = [
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ];
    let k64 = u64::from_ne_bytes(k);
    let mut words = data.chunks_exact_mut(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        w.copy_from_slice(&(u64::from_ne_bytes(a) ^ k64).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so key index = position % 4 still holds.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// A close frame's content (RFC 6455 §5.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code, if the peer sent one.
    pub code: Option<u16>,
    /// The reason.
    pub reason: String,
}

impl CloseFrame {
    /// The payload of a close frame: status code, then the reason cut to 123 bytes at a
    /// character boundary (wire.md §16.3).
    pub fn payload(code: u16, reason: &str) -> Vec<u8> {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut p = Vec::with_capacity(2 + end);
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(&reason.as_bytes()[..end]);
        p
    }

    fn parse(payload: &[u8]) -> Result<CloseFrame, WsFrameError> {
        match payload {
            [] => Ok(CloseFrame {
                code: None,
                reason: String::new(),
            }),
            [_] => Err(WsFrameError::BadClose(1)),
            [a, b, rest @ ..] => Ok(CloseFrame {
                code: Some(u16::from_be_bytes([*a, *b])),
                reason: std::str::from_utf8(rest)
                    .map_err(|_| WsFrameError::BadClose(payload.len()))?
                    .to_string(),
            }),
        }
    }
}

/// One received WebSocket message or control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A whole binary message.
    Binary(Bytes),
    /// A whole text message (not checked for UTF-8: native mode refuses TEXT outright).
    Text(Bytes),
    /// A ping; the payload goes back in a pong.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer closed the WebSocket.
    Close(CloseFrame),
}

/// What [`WsDecoder::decode`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole event; its bytes have been consumed.
    Event(WsEvent),
    /// The buffer ends inside a frame: at least this many bytes must be in the buffer before
    /// the frame is complete (a reader reserves it and reads straight into place).
    NeedBytes(usize),
}

/// Turns received bytes into WebSocket messages: checks each header, waits for whole frames,
/// unmasks in place, joins fragments (with a copy; unfragmented messages take none).
#[derive(Debug)]
pub struct WsDecoder {
    role: Role,
    max_message: u64,
    partial: Option<(OpCode, BytesMut)>,
}

impl WsDecoder {
    /// A decoder for the `role` end, refusing messages over `max_message` bytes.
    pub fn new(role: Role, max_message: u64) -> WsDecoder {
        WsDecoder {
            role,
            max_message,
            partial: None,
        }
    }

    /// Decodes the next event at the front of `buf`, consuming its frames; frames that only
    /// continue a message are consumed as they complete.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WsFrameError> {
        loop {
            let Some((head, head_len)) = FrameHead::parse(buf)? else {
                return Ok(Decoded::NeedBytes(buf.len() + 1));
            };
            // spec: RFC 6455 §5.1 — a server closes on an unmasked frame, a client on a
            // masked one.
            let expect_masked = self.role == Role::Server;
            if head.mask.is_some() != expect_masked {
                return Err(WsFrameError::Masking {
                    from: match self.role {
                        Role::Server => Role::Client,
                        Role::Client => Role::Server,
                    },
                    masked: head.mask.is_some(),
                });
            }
            let so_far = match (&self.partial, head.opcode) {
                (Some((_, p)), OpCode::Continuation) => p.len() as u64,
                (None, OpCode::Continuation) => return Err(WsFrameError::UnexpectedContinuation),
                (Some(_), op @ (OpCode::Text | OpCode::Binary)) => {
                    return Err(WsFrameError::ExpectedContinuation(op))
                }
                _ => 0,
            };
            // Checked before the payload is waited for: a header claiming 2^62 bytes fails
            // here, after at most 14 bytes.
            let len = so_far.saturating_add(head.len);
            if !head.opcode.is_control() && len > self.max_message {
                return Err(WsFrameError::MessageTooLarge {
                    len,
                    max: self.max_message,
                });
            }
            // Fits in usize: at most max_message (or 125) plus 14.
            let total = head_len + head.len as usize;
            if buf.len() < total {
                return Ok(Decoded::NeedBytes(total));
            }
            buf.advance(head_len);
            let mut payload = buf.split_to(head.len as usize);
            if let Some(key) = head.mask {
                apply_mask(&mut payload, key);
            }
            let (opcode, payload) = match head.opcode {
                OpCode::Ping => return Ok(Decoded::Event(WsEvent::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Decoded::Event(WsEvent::Pong(payload.freeze()))),
                OpCode::Close => {
                    return Ok(Decoded::Event(WsEvent::Close(CloseFrame::parse(&payload)?)))
                }
                OpCode::Continuation => {
                    // Present: a continuation without one was refused above.
                    let Some((op, mut joined)) = self.partial.take() else {
                        return Err(WsFrameError::UnexpectedContinuation);
                    };
                    joined.extend_from_slice(&payload);
                    if !head.fin {
                        self.partial = Some((op, joined));
                        continue;
                    }
                    (op, joined)
                }
                op => {
                    if !head.fin {
                        self.partial = Some((op, payload));
                        continue;
                    }
                    (op, payload)
                }
            };
            let payload = payload.freeze();
            return Ok(Decoded::Event(if opcode == OpCode::Text {
                WsEvent::Text(payload)
            } else {
                WsEvent::Binary(payload)
            }));
        }
    }
}

/// Encodes whole-message frames for the `role` end.
#[derive(Debug, Clone, Copy)]
pub struct WsEncoder {
    role: Role,
}

impl WsEncoder {
    /// An encoder for the `role` end (a client masks every frame).
    pub fn new(role: Role) -> WsEncoder {
        WsEncoder { role }
    }

    /// The header of a single-frame message of `len` bytes, and the masking key the payload
    /// must be XORed with (clients only; `key` is called for it).
    pub fn head(
        &self,
        opcode: OpCode,
        len: usize,
        key: impl FnOnce() -> [u8; 4],
    ) -> ([u8; MAX_HEAD_LEN], usize, Option<[u8; 4]>) {
        let mask = (self.role == Role::Client).then(key);
        let head = FrameHead {
            fin: true,
            opcode,
            mask,
            len: len as u64,
        };
        let mut out = [0u8; MAX_HEAD_LEN];
        let n = head.encode(&mut out);
        (out, n, mask)
    }

    /// A whole single-frame message: header plus (masked, for a client) payload, in one buffer.
    pub fn frame(&self, opcode: OpCode, payload: &[u8], key: impl FnOnce() -> [u8; 4]) -> Vec<u8> {
        let (head, n, mask) = self.head(opcode, payload.len(), key);
        let mut out = Vec::with_capacity(n + payload.len());
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(payload);
        if let Some(k) = mask {
            apply_mask(&mut out[n..], k);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 4] {
        [0x37, 0xfa, 0x21, 0x3d]
    }

    #[test]
    fn rfc6455_5_7_examples_decode() {
        // RFC 6455 §5.7: a single-frame unmasked text message "Hello" (server → client) ...
        let mut d = WsDecoder::new(Role::Client, 1 << 20);
        let mut b = BytesMut::from(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f][..]);
        assert_eq!(
            d.decode(&mut b).unwrap(),
            Decoded::Event(WsEvent::Text(Bytes::from_static(b"Hello")))
        );
        // ... a masked one (client → server) ...
        let mut d = WsDecoder::new(Role::Server, 1 << 20);
        let mut b = BytesMut::from(
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ][..],
        );
        assert_eq!(
            d.decode(&mut b).unwrap(),
            Decoded::Event(WsEvent::Text(Bytes::from_static(b"Hello")))
        );
        // ... and a fragmented unmasked text message ("Hel", "lo").
        let mut d = WsDecoder::new(Role::Client, 1 << 20);
        let mut b = BytesMut::from(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f][..]);
        assert_eq!(
            d.decode(&mut b).unwrap(),
            Decoded::Event(WsEvent::Text(Bytes::from_static(b"Hello")))
        );
        assert!(b.is_empty());
    }

    #[test]
    fn encoder_matches_rfc_example_and_lengths_round_trip() {
        let e = WsEncoder::new(Role::Client);
        assert_eq!(
            e.frame(OpCode::Text, b"Hello", key),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        for len in [0usize, 125, 126, 65_535, 65_536, 300_001] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut b = BytesMut::from(&e.frame(OpCode::Binary, &payload, key)[..]);
            let mut d = WsDecoder::new(Role::Server, 1 << 20);
            assert_eq!(
                d.decode(&mut b).unwrap(),
                Decoded::Event(WsEvent::Binary(payload.into()))
            );
        }
    }

    #[test]
    fn partial_input_asks_for_the_whole_frame_and_consumes_nothing() {
        let frame = WsEncoder::new(Role::Server).frame(OpCode::Binary, &[9u8; 1000], key);
        let mut d = WsDecoder::new(Role::Client, 1 << 20);
        for cut in [0, 1, 2, 3, 4, 500, frame.len() - 1] {
            let mut b = BytesMut::from(&frame[..cut]);
            match d.decode(&mut b).unwrap() {
                Decoded::NeedBytes(n) => assert!(n > cut && n <= frame.len(), "{cut}: {n}"),
                other => panic!("{cut}: {other:?}"),
            }
            assert_eq!(b.len(), cut);
        }
    }

    #[test]
    fn oversize_length_fails_before_its_payload_arrives() {
        let mut d = WsDecoder::new(Role::Client, 1 << 20);
        let mut b = BytesMut::from(&[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0][..]);
        assert_eq!(
            d.decode(&mut b),
            Err(WsFrameError::MessageTooLarge {
                len: 1 << 32,
                max: 1 << 20
            })
        );
        let mut b = BytesMut::from(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(matches!(
            d.decode(&mut b),
            Err(WsFrameError::LengthOverflow(_))
        ));
    }

    #[test]
    fn fragments_count_towards_the_limit() {
        let e = WsEncoder::new(Role::Server);
        let mut first = e.frame(OpCode::Binary, &[1u8; 600], key);
        first[0] &= 0x7f; // not FIN
        let mut bytes = first;
        let mut cont = e.frame(OpCode::Continuation, &[2u8; 600], key);
        cont[0] &= 0x7f;
        bytes.extend_from_slice(&cont);
        let mut d = WsDecoder::new(Role::Client, 1000);
        let mut b = BytesMut::from(&bytes[..]);
        assert_eq!(
            d.decode(&mut b),
            Err(WsFrameError::MessageTooLarge {
                len: 1200,
                max: 1000
            })
        );
    }

    #[test]
    fn rule_violations_are_errors() {
        let cases: [(&[u8], WsFrameError); 7] = [
            (&[0xC2, 0x00], WsFrameError::ReservedBits(0x40)),
            (&[0x83, 0x00], WsFrameError::UnknownOpcode(3)),
            (&[0x09, 0x00], WsFrameError::FragmentedControl(OpCode::Ping)),
            (&[0x89, 126, 0, 126], WsFrameError::ControlTooLong(126)),
            (
                &[0x82, 0x80, 1, 2, 3, 4],
                WsFrameError::Masking {
                    from: Role::Server,
                    masked: true,
                },
            ),
            (&[0x80, 0x00], WsFrameError::UnexpectedContinuation),
            (&[0x88, 0x01, 0x03], WsFrameError::BadClose(1)),
        ];
        for (bytes, want) in cases {
            let mut d = WsDecoder::new(Role::Client, 1 << 20);
            assert_eq!(
                d.decode(&mut BytesMut::from(bytes)),
                Err(want),
                "{bytes:x?}"
            );
        }
        let mut d = WsDecoder::new(Role::Server, 1 << 20);
        assert_eq!(
            d.decode(&mut BytesMut::from(&[0x82, 0x00][..])),
            Err(WsFrameError::Masking {
                from: Role::Client,
                masked: false
            })
        );
        let mut d = WsDecoder::new(Role::Client, 1 << 20);
        let mut b = BytesMut::from(&[0x02, 0x01, 7, 0x82, 0x00][..]);
        assert_eq!(
            d.decode(&mut b),
            Err(WsFrameError::ExpectedContinuation(OpCode::Binary))
        );
    }

    #[test]
    fn control_frames_interleave_with_fragments() {
        let mut d = WsDecoder::new(Role::Client, 1 << 20);
        let mut b = BytesMut::from(
            &[
                0x02, 0x01, 1, // first fragment
                0x89, 0x02, 0xaa, 0xbb, // ping in between
                0x88, 0x04, 0x03, 0xe8, b'o', b'k', // close
                0x80, 0x01, 2, // last fragment
            ][..],
        );
        assert_eq!(
            d.decode(&mut b).unwrap(),
            Decoded::Event(WsEvent::Ping(Bytes::from_static(&[0xaa, 0xbb])))
        );
        assert_eq!(
            d.decode(&mut b).unwrap(),
            Decoded::Event(WsEvent::Close(CloseFrame {
                code: Some(1000),
                reason: "ok".into()
            }))
        );
        assert_eq!(
            d.decode(&mut b).unwrap(),
            Decoded::Event(WsEvent::Binary(Bytes::from_static(&[1, 2])))
        );
    }

    #[test]
    fn mask_is_its_own_inverse_at_every_length_and_alignment() {
        let k = key();
        for len in 0..40 {
            let orig: Vec<u8> = (0..len as u8).collect();
            let mut d = orig.clone();
            apply_mask(&mut d, k);
            for (i, (a, b)) in orig.iter().zip(&d).enumerate() {
                assert_eq!(a ^ k[i % 4], *b);
            }
            apply_mask(&mut d, k);
            assert_eq!(d, orig);
        }
    }

    #[test]
    fn close_reason_is_cut_at_a_character_boundary() {
        let p = CloseFrame::payload(1000, &"é".repeat(100));
        assert_eq!(p.len(), 2 + 122);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }
}
