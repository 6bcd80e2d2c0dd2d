#!/usr/bin/env python3
"""Writes frames.json: the test vectors of wire.md Appendix A.

This is a second, independent encoder written from spec/wire.md alone (no Rust involved), so the
vectors cross-check the spec, this script, and rhizomorph's codec against each other. Run it after
changing a vector: `python3 spec/vectors/make_vectors.py` (standard library only). The Rust test
suite (tests/vectors.rs) reads frames.json; it never runs this script.
"""
import json
import os
import struct

CHANNELS = {"control": 0, "rpc": 1, "stream": 2, "bulk": 3}
TYPES = {"PADDING": 0, "HELLO": 1, "MESSAGE": 2, "CREDIT": 3, "SCHEMA": 4, "PING": 5,
         "PONG": 6, "CANCEL": 7, "GOAWAY": 8, "CLOSE": 9, "ACK": 10}
RESUME_STATUS = {"NEW": 0, "RESUMED": 1, "UNKNOWN_SESSION": 2, "EXPIRED": 3, "OVERFLOW": 4,
                 "FORBIDDEN": 5, "INCONSISTENT": 6}
ERRORS = {"NO_ERROR": 0, "PROTOCOL_ERROR": 1, "INTERNAL_ERROR": 2, "FLOW_CONTROL_ERROR": 3,
          "FRAME_SIZE_ERROR": 4, "MESSAGE_TOO_LARGE": 5, "HEADER_ERROR": 6,
          "COMPRESSION_ERROR": 7, "SCHEMA_ERROR": 8, "VERSION_MISMATCH": 9, "AUTH_FAILED": 10,
          "CANCELLED": 11, "REFUSED": 12, "TIMEOUT": 13, "LIMIT_EXCEEDED": 14,
          "ENCODING_ERROR": 15, "UNKNOWN_FRAME_TYPE": 16, "PAYLOAD_ERROR": 17, "GOING_AWAY": 18}
ENCODINGS = {"raw": 0, "msgpack": 1, "rkyv": 2, "typed-array": 3}
CODECS = {"lz4": 1, "snappy": 2}
SHUFFLES = {1: 0, 2: 1, 4: 2, 8: 3}


def varint(v):
    """wire.md §2.2: QUIC varint, minimal length."""
    if v < 1 << 6:
        return bytes([v])
    if v < 1 << 14:
        return struct.pack(">H", 0x4000 | v)
    if v < 1 << 30:
        return struct.pack(">I", 0x80000000 | v)
    assert v < 1 << 62
    return struct.pack(">Q", 0xC000000000000000 | v)


def string(b):
    return varint(len(b)) + b


def frame(type_byte, flags, payload):
    """wire.md §4.1: Type (8), Flags (8), Length (i), Frame Payload."""
    return bytes([type_byte, flags]) + varint(len(payload)) + payload


def encode(f):
    t = f["type"]
    if t == "PADDING":
        return frame(0, 0, bytes(f["length"]))
    if t == "HELLO":
        p = varint(len(f["versions"])) + b"".join(varint(v) for v in f["versions"])
        p += varint(len(f["settings"])) + b"".join(varint(i) + varint(v) for i, v in f["settings"])
        p += string(bytes.fromhex(f["token"])) + string(f["agent"].encode())
        flags = 0
        if "resume" in f:  # §5.2, §21.6: flag RESUME, a Resume Request after Agent
            r = f["resume"]
            flags |= 0x01
            p += bytes.fromhex(r["session_id"]) + string(bytes.fromhex(r["resume_token"]))
            p += b"".join(varint(n) for n in r["received"])
        if "session" in f:  # §5.2, §21.1: flag SESSION, a Session Block after Agent
            b = f["session"]
            flags |= 0x02
            p += bytes.fromhex(b["session_id"]) + string(bytes.fromhex(b["resume_token"]))
            p += bytes([RESUME_STATUS[b["resume_status"]]])
            p += b"".join(varint(n) for n in b["received"])
        return frame(1, flags, p)
    if t == "MESSAGE":
        flags = (1 if f["first"] else 0) | (2 if f["last"] else 0)
        p = bytes([CHANNELS[f["channel"]]])
        if f["first"]:
            p += varint(f["message_length"]) + bytes([ENCODINGS[f["encoding"]]])
            if f["encoding"] == "rkyv":
                p += varint(f["schema_id"])
            c = f["compression"]
            if c == "none":
                p += b"\x00"
            else:
                p += bytes([SHUFFLES[c["shuffle"]] << 4 | CODECS[c["codec"]]])
                p += varint(c["uncompressed_length"])
            p += string(bytes.fromhex(f["header_block"]))
        p += bytes.fromhex(f["chunk_data"])
        return frame(2, flags, p)
    if t == "CREDIT":
        target = 0xFF if f["target"] == "connection" else CHANNELS[f["target"]]
        return frame(3, 0, bytes([target]) + varint(f["increment"]))
    if t == "SCHEMA":
        p = bytes([CHANNELS[f["channel"]]]) + varint(f["schema_id"])
        p += bytes.fromhex(f["layout_hash"]) + string(f["name"].encode())
        return frame(4, 0, p)
    if t in ("PING", "PONG"):
        return frame(TYPES[t], 0, bytes.fromhex(f["opaque"]))
    if t == "CANCEL":
        p = bytes([CHANNELS[f["channel"]]]) + varint(f["sequence"]) + varint(ERRORS[f["error_code"]])
        return frame(7, 1 if f["abort"] else 0, p)
    if t == "GOAWAY":
        p = varint(ERRORS[f["error_code"]]) + b"".join(varint(n) for n in f["accepted_count"])
        return frame(8, 0, p + string(f["reason"].encode()))
    if t == "CLOSE":
        return frame(9, 0, varint(ERRORS[f["error_code"]]) + string(f["reason"].encode()))
    if t == "ACK":  # §5.10
        return frame(10, 0, bytes([CHANNELS[f["channel"]]]) + varint(f["received"]))
    if t == "IGNORED":
        return frame(f["frame_type"], f["flags"], bytes.fromhex(f["payload"]))
    raise ValueError(t)


def msg(channel, data, first=True, last=True, header="", encoding="raw", compression="none",
        message_length=None, **extra):
    f = {"type": "MESSAGE", "first": first, "last": last, "channel": channel}
    if first:
        f["message_length"] = len(bytes.fromhex(data)) if message_length is None else message_length
        f["encoding"] = encoding
        f.update(extra)
        f["compression"] = compression
        f["header_block"] = header
    f["chunk_data"] = data
    return f


HELLO_ = "68656c6c6f"  # "hello"
SESSION_ID = "5a" * 16
TOKEN_1 = "".join(f"{i:02x}" for i in range(32))
TOKEN_2 = "c3" * 16

VALID = [
    ("padding-empty", "§5.1", {"type": "PADDING", "length": 0}),
    ("padding-5", "§5.1", {"type": "PADDING", "length": 5}),
    ("hello-client", "§5.2", {"type": "HELLO", "versions": [0x0100, 0x0101],
                              "settings": [[1, 16384], [5, 0], [8, 1]],
                              "token": "746f6b656e2d31", "agent": "rhizomorph/0.1.0"}),
    ("hello-server-defaults", "§5.2", {"type": "HELLO", "versions": [0x0100], "settings": [],
                                       "token": "", "agent": ""}),
    ("hello-unknown-setting-kept", "§3.3.3", {"type": "HELLO", "versions": [0x0100],
                                              "settings": [[0x3fff, 7], [2, 1 << 30]],
                                              "token": "", "agent": "py-peer"}),
    ("message-single-rpc", "§5.3", msg("rpc", HELLO_, header="83")),
    ("message-empty-control", "§5.3", msg("control", "", header="")),
    ("message-first-chunk-bulk", "§5.3", msg("bulk", "00112233", last=False, message_length=10,
                                             header="", encoding="typed-array")),
    ("message-continuation", "§5.3", msg("bulk", "44556677", first=False, last=False)),
    ("message-last-chunk", "§5.3", msg("bulk", "8899", first=False, last=True)),
    ("message-rkyv-schema", "§5.3", msg("rpc", "000102030405060708090a0b0c0d0e0f", encoding="rkyv",
                                        schema_id=3, header="8003")),
    ("message-lz4-shuffle8", "§12.1", msg("stream", "1f000100ff", header="",
                                          encoding="typed-array",
                                          compression={"codec": "lz4", "shuffle": 8,
                                                       "uncompressed_length": 4096})),
    ("message-snappy-msgpack", "§12.1", msg("rpc", "0a24", encoding="msgpack", header="",
                                            compression={"codec": "snappy", "shuffle": 1,
                                                         "uncompressed_length": 10})),
    ("message-literal-header", "§6.4", msg("rpc", HELLO_,
                                           header="4305616c696365" + "100673657276696365046563686f")),
    ("message-200-byte-payload", "§2.2", msg("rpc", "ab" * 200, header="8380")),
    ("credit-channel", "§5.4", {"type": "CREDIT", "target": "bulk", "increment": 65536}),
    ("credit-connection-max", "§5.4", {"type": "CREDIT", "target": "connection",
                                       "increment": 0xFFFFFFFF}),
    ("schema", "§5.5", {"type": "SCHEMA", "channel": "rpc", "schema_id": 0,
                        "layout_hash": "9e3779b97f4a7c15", "name": "myapp::Reading@2"}),
    ("ping", "§5.6", {"type": "PING", "opaque": "0102030405060708"}),
    ("pong", "§5.6", {"type": "PONG", "opaque": "0102030405060708"}),
    ("cancel-abort", "§5.7.1", {"type": "CANCEL", "abort": True, "channel": "bulk",
                                "sequence": 300, "error_code": "CANCELLED"}),
    ("cancel-reject", "§5.7.2", {"type": "CANCEL", "abort": False, "channel": "rpc",
                                 "sequence": 0, "error_code": "MESSAGE_TOO_LARGE"}),
    ("goaway", "§5.8", {"type": "GOAWAY", "error_code": "GOING_AWAY",
                        "accepted_count": [0, 1200, 3, 70000], "reason": "draining for upgrade"}),
    ("close-no-error", "§5.9", {"type": "CLOSE", "error_code": "NO_ERROR", "reason": ""}),
    ("close-with-reason", "§14.2.2", {"type": "CLOSE", "error_code": "FRAME_SIZE_ERROR",
                                      "reason": "FrameTooLarge: length 70000 > max 65536 (wire.md §4.1.1)"}),
    ("ignorable-unknown-type", "§4.2.2", {"type": "IGNORED", "frame_type": 0x81, "flags": 0x05,
                                          "payload": "deadbeef"}),
    # §21 (version 1.1): resumable sessions.
    ("hello-client-resumable", "§21.1.1", {"type": "HELLO", "versions": [0x0101, 0x0100],
                                           "settings": [[0x0A, 2097152]], "token": "",
                                           "agent": "rhizomorph/0.1.0"}),
    ("hello-server-session-new", "§21.1.2", {
        "type": "HELLO", "versions": [0x0101], "settings": [[0x0A, 2097152]], "token": "",
        "agent": "", "session": {"session_id": SESSION_ID, "resume_token": TOKEN_1,
                                 "resume_status": "NEW", "received": [0, 0, 0, 0]}}),
    ("hello-client-resume", "§21.6.1", {
        "type": "HELLO", "versions": [0x0101, 0x0100], "settings": [[0x0A, 2097152]],
        "token": "", "agent": "py-peer",
        "resume": {"session_id": SESSION_ID, "resume_token": TOKEN_1,
                   "received": [3, 1200, 17, 70000]}}),
    ("hello-server-session-resumed", "§21.6.3", {
        "type": "HELLO", "versions": [0x0101], "settings": [[0x0A, 2097152]], "token": "",
        "agent": "", "session": {"session_id": SESSION_ID, "resume_token": TOKEN_2,
                                 "resume_status": "RESUMED", "received": [2, 64, 0, 5]}}),
    ("hello-server-session-refused", "§21.6.5", {
        "type": "HELLO", "versions": [0x0101], "settings": [[0x0A, 2097152]], "token": "",
        "agent": "", "session": {"session_id": "00112233445566778899aabbccddeeff",
                                 "resume_token": TOKEN_2, "resume_status": "UNKNOWN_SESSION",
                                 "received": [0, 0, 0, 0]}}),
    ("ack-rpc", "§5.10", {"type": "ACK", "channel": "rpc", "received": 5}, "1.1"),
    ("ack-bulk-large-count", "§21.3.3", {"type": "ACK", "channel": "bulk",
                                          "received": 1 << 40}, "1.1"),
]

# (name, section, hex or None when fix_invalid() builds it, code, kind, limits). Inputs are decoded as one complete WebSocket
# message (§16.2.1): an input ending inside a frame is FrameTruncated.
INVALID = [
    ("truncated-header", "§16.2.1", "02", "ENCODING_ERROR", "FrameTruncated", None),
    ("truncated-length-varint", "§2.2.3", "020040", "ENCODING_ERROR", "FrameTruncated", None),
    ("truncated-payload", "§4.3.1", "05000801020304", "ENCODING_ERROR", "FrameTruncated", None),
    ("oversize-length-4gib", "§4.1.1", "0200c000000100000000", "FRAME_SIZE_ERROR", "FrameTooLarge", None),
    ("varint-nine-bytes-of-ff", "§2.2.1", "0200ffffffffffffffffff", "FRAME_SIZE_ERROR", "FrameTooLarge", None),
    ("length-over-negotiated-limit", "§4.1.1", "00004401", "FRAME_SIZE_ERROR", "FrameTooLarge",
     {"MAX_FRAME_PAYLOAD": 1024}),
    ("hello-over-8kib", "§3.2.8", "01006001", "FRAME_SIZE_ERROR", "FrameTooLarge", None),
    ("non-minimal-frame-length", "§2.2.2", "050040080102030405060708", "ENCODING_ERROR", "NonMinimalVarint", None),
    ("non-minimal-varint-in-payload", "§2.2.2", None, "ENCODING_ERROR", "NonMinimalVarint", None),
    ("unknown-critical-type", "§4.2.1", "0a0000", "UNKNOWN_FRAME_TYPE", "UnknownFrameType", None),
    ("trailing-bytes-after-credit", "§4.1.2", None, "ENCODING_ERROR", "TrailingBytes", None),
    # §4.1.3: the frame header's checks, in order, each before the payload is waited for.
    ("order-unknown-type-before-length-encoding", "§4.1.3", "0a004001", "UNKNOWN_FRAME_TYPE",
     "UnknownFrameType", None),
    ("order-unknown-type-before-payload", "§4.1.3", "0a0005", "UNKNOWN_FRAME_TYPE",
     "UnknownFrameType", None),
    ("order-length-encoding-before-limit", "§4.1.3", "0200800007d0", "ENCODING_ERROR",
     "NonMinimalVarint", {"MAX_FRAME_PAYLOAD": 1024}),
    ("order-limit-before-payload", "§4.1.3", "050047d0", "FRAME_SIZE_ERROR", "FrameTooLarge",
     {"MAX_FRAME_PAYLOAD": 1024}),
    ("order-ignorable-type-over-limit", "§4.2.2", "800047d0", "FRAME_SIZE_ERROR", "FrameTooLarge",
     {"MAX_FRAME_PAYLOAD": 1024}),
    ("message-unknown-channel", "§5.3.1", None, "PROTOCOL_ERROR", "UnknownChannel", None),
    ("message-length-over-max", "§5.3.2", None, "MESSAGE_TOO_LARGE", "MessageTooLarge", None),
    ("message-uncompressed-1gib-bomb", "§5.3.3", None,
     "MESSAGE_TOO_LARGE", "MessageTooLarge", None),
    ("message-unknown-encoding", "§5.3.4", None, "PROTOCOL_ERROR", "UnknownEncoding", None),
    ("message-unknown-compression", "§12.1", None, "PROTOCOL_ERROR", "UnknownCompression", None),
    ("message-shuffle-without-codec", "§12.1", None, "PROTOCOL_ERROR", "UnknownCompression", None),
    ("message-codec-not-negotiated", "§5.3.4", None, "COMPRESSION_ERROR", "CodecNotNegotiated",
     {"COMPRESSION": 1}),
    ("message-chunk-shorter-than-length", "§5.3.6", None, "PROTOCOL_ERROR",
     "ChunkLengthMismatch", None),
    ("message-first-chunk-is-whole-message", "§5.3.6", None,
     "PROTOCOL_ERROR", "ChunkLengthMismatch", None),
    ("message-header-block-over-limit", "§5.3.5", None, "HEADER_ERROR",
     "HeaderBlockTooLarge", None),
    ("message-header-block-truncated", "§5.3.5", None, "ENCODING_ERROR", "FrameTruncated", None),
    ("message-schema-id-over-cache", "§5.5", None, "LIMIT_EXCEEDED", "FieldOutOfRange", None),
    ("credit-zero-increment", "§5.4", "0300020100", "PROTOCOL_ERROR", "ZeroCreditIncrement", None),
    ("credit-over-4gib", "§9.7", None, "FLOW_CONTROL_ERROR", "CreditTooLarge", None),
    ("credit-unknown-target", "§5.4", "0300020701", "PROTOCOL_ERROR", "UnknownChannel", None),
    ("ping-wrong-length", "§5.6", "05000401020304", "FRAME_SIZE_ERROR", "BadFixedLength", None),
    ("hello-zero-versions", "§5.2", None, "LIMIT_EXCEEDED", "FieldOutOfRange", None),
    ("hello-17-versions", "§3.3.4", None, "LIMIT_EXCEEDED", "FieldOutOfRange", None),
    ("hello-duplicate-setting", "§3.3.1", None,
     "PROTOCOL_ERROR", "DuplicateSetting", None),
    ("hello-setting-out-of-range", "§3.3.2", None, "PROTOCOL_ERROR",
     "SettingOutOfRange", None),
    ("hello-token-over-4kib", "§5.2", None, "LIMIT_EXCEEDED", "FieldOutOfRange", None),
    ("schema-empty-name", "§5.5", None, "LIMIT_EXCEEDED", "FieldOutOfRange", None),
    ("close-invalid-utf8", "§2.3", None, "ENCODING_ERROR", "InvalidUtf8", None),
    ("close-reason-over-1kib", "§5.9", None, "LIMIT_EXCEEDED",
     "FieldOutOfRange", None),
    ("goaway-trailing-bytes", "§4.1.2", None, "ENCODING_ERROR", "TrailingBytes", None),
    # §21 (version 1.1). An ACK on a 1.0 connection is an unknown critical type.
    ("ack-on-a-1-0-connection", "§5.10", "0a00020105", "UNKNOWN_FRAME_TYPE", "UnknownFrameType",
     None),
    ("ack-unknown-channel", "§5.10", "0a00020405", "PROTOCOL_ERROR", "UnknownChannel",
     {"version": "1.1"}),
    ("ack-truncated", "§5.10", "0a000101", "ENCODING_ERROR", "FrameTruncated", {"version": "1.1"}),
    ("hello-resume-token-too-short", "§5.2", None, "LIMIT_EXCEEDED", "FieldOutOfRange", None),
    ("hello-resume-status-out-of-range", "§5.2", None, "LIMIT_EXCEEDED", "FieldOutOfRange", None),
    ("hello-session-block-truncated", "§5.2", None, "ENCODING_ERROR", "FrameTruncated", None),
    ("hello-block-without-its-flag", "§5.2", None, "ENCODING_ERROR", "TrailingBytes", None),
]


def fix_invalid():
    """A few invalid inputs are easier to build with the encoder than by hand."""
    out = []
    for name, section, hx, code, kind, limits in INVALID:
        if name == "message-length-over-max":
            # FIRST only, Message Length 2^30 (> 64 MiB), raw, no compression, empty header.
            p = bytes([1]) + varint(1 << 30) + b"\x00\x00\x00" + b"ab"
            hx = frame(2, 1, p).hex()
        if name == "message-uncompressed-1gib-bomb":
            # 16 bytes of "lz4 data" declaring 1 GiB uncompressed (§12.3.1).
            p = bytes([3]) + varint(16) + b"\x00" + b"\x01" + varint(1 << 30) + b"\x00" + bytes(16)
            hx = frame(2, 3, p).hex()
        if name == "message-unknown-channel":
            p = bytes([4]) + varint(2) + b"\x00\x00\x00" + b"hi"
            hx = frame(2, 3, p).hex()
        if name == "message-unknown-encoding":
            p = bytes([1]) + varint(2) + b"\x07\x00\x00" + b"hi"
            hx = frame(2, 3, p).hex()
        if name == "message-unknown-compression":
            p = bytes([1]) + varint(1) + b"\x00\x05" + b"\x00" + b"h"
            hx = frame(2, 3, p).hex()
        if name == "message-shuffle-without-codec":
            p = bytes([1]) + varint(1) + b"\x00\x20" + b"\x00" + b"h"
            hx = frame(2, 3, p).hex()
        if name == "message-codec-not-negotiated":
            p = bytes([1]) + varint(1) + b"\x00\x02" + varint(5) + b"\x00" + b"h"
            hx = frame(2, 3, p).hex()
        if name == "message-chunk-shorter-than-length":
            p = bytes([1]) + varint(6) + b"\x00\x00" + b"\x01\x83" + b"hello"
            hx = frame(2, 3, p).hex()
        if name == "message-first-chunk-is-whole-message":
            # FIRST without LAST whose chunk already holds all of Message Length.
            p = bytes([1]) + varint(2) + b"\x00\x00\x00" + b"hi"
            hx = frame(2, 1, p).hex()
        if name == "message-header-block-over-limit":
            p = bytes([1]) + varint(0) + b"\x00\x00" + varint(20000) + b"\x80"
            hx = frame(2, 3, p).hex()
        if name == "message-header-block-truncated":
            p = bytes([1]) + varint(0) + b"\x00\x00" + varint(10) + b"\x80\x81"
            hx = frame(2, 3, p).hex()
        if name == "message-schema-id-over-cache":
            p = bytes([1]) + varint(0) + b"\x02" + varint(256) + b"\x00\x00"
            hx = frame(2, 3, p).hex()
        if name == "hello-zero-versions":
            hx = frame(1, 0, varint(0) + varint(0) + varint(0) + varint(0)).hex()
        if name == "hello-17-versions":
            p = varint(17) + b"".join(varint(0x0100) for _ in range(17)) + b"\x00\x00\x00"
            hx = frame(1, 0, p).hex()
        if name == "hello-duplicate-setting":
            p = varint(1) + varint(0x0100) + varint(2) + varint(1) + varint(4096) + varint(1) + varint(8192)
            hx = frame(1, 0, p + b"\x00\x00").hex()
        if name == "hello-setting-out-of-range":
            p = varint(1) + varint(0x0100) + varint(1) + varint(1) + varint(100)
            hx = frame(1, 0, p + b"\x00\x00").hex()
        if name == "hello-token-over-4kib":
            p = varint(1) + varint(0x0100) + varint(0) + varint(4097)
            hx = frame(1, 0, p).hex()
        if name == "schema-empty-name":
            p = bytes([1]) + varint(0) + bytes(range(1, 9)) + varint(0)
            hx = frame(4, 0, p).hex()
        if name == "close-invalid-utf8":
            hx = frame(9, 0, varint(1) + string(b"\xc3\x28")).hex()
        if name == "close-reason-over-1kib":
            hx = frame(9, 0, varint(1) + varint(1025)).hex()
        if name == "goaway-trailing-bytes":
            hx = frame(8, 0, varint(0) + bytes(4) + varint(0) + b"\x00\x00").hex()
        if name == "credit-over-4gib":
            hx = frame(3, 0, bytes([0xFF]) + varint(1 << 32)).hex()
        if name == "trailing-bytes-after-credit":
            hx = frame(3, 0, bytes([1]) + varint(1) + b"\x00").hex()
        hello_head = varint(1) + varint(0x0101) + varint(0) + string(b"") + string(b"")
        if name == "hello-resume-token-too-short":
            p = hello_head + bytes(16) + string(bytes(15)) + bytes(4)
            hx = frame(1, 0x01, p).hex()
        if name == "hello-resume-status-out-of-range":
            p = hello_head + bytes(16) + string(bytes(16)) + bytes([7]) + bytes(4)
            hx = frame(1, 0x02, p).hex()
        if name == "hello-session-block-truncated":
            p = hello_head + bytes(16) + string(bytes(16)) + bytes([1]) + bytes(3)
            hx = frame(1, 0x02, p).hex()
        if name == "hello-block-without-its-flag":
            p = hello_head + bytes(16) + string(bytes(16)) + bytes(4)
            hx = frame(1, 0x00, p).hex()
        if name == "non-minimal-varint-in-payload":
            hx = frame(3, 0, bytes([1]) + b"\x40\x01").hex()
        assert hx is not None, f"invalid vector {name} has no bytes"
        entry = {"name": name, "section": section, "hex": hx, "error": {"code": code, "kind": kind}}
        limits = dict(limits or {})
        if "version" in limits:
            entry["version"] = limits.pop("version")
        if limits:
            entry["limits"] = limits
        out.append(entry)
    return out


def main():
    valid = []
    for name, section, f, *version in VALID:
        entry = {"name": name, "section": section, "hex": encode(f).hex(), "frame": f}
        if version:
            entry["version"] = version[0]
        valid.append(entry)
    # §4.2.3: unknown flag bits are ignored; re-encoding clears them.
    ping = encode({"type": "PING", "opaque": "0000000000000001"})
    valid.append({"name": "ping-unknown-flags-ignored", "section": "§4.2.3",
                  "hex": (bytes([5, 0xF0]) + ping[2:]).hex(),
                  "canonical_hex": ping.hex(),
                  "frame": {"type": "PING", "opaque": "0000000000000001"}})
    doc = {
        "spec": "spec/wire.md",
        "version": "1.1",
        "notes": "Appendix A. Valid vectors: decode(hex) == frame and encode(frame) == "
                 "canonical_hex or hex. Invalid vectors: decoding hex as one complete "
                 "WebSocket message (§16.2.1) fails with error.code. Limits are the §3.3 "
                 "defaults unless `limits` overrides them; the receiver speaks wire version "
                 "1.0 unless `version` says 1.1 (§21).",
        "valid": valid,
        "invalid": fix_invalid(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frames.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {len(valid)} valid and {len(doc['invalid'])} invalid vectors to {path}")


if __name__ == "__main__":
    main()
