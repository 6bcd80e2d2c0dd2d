#!/usr/bin/env python3
"""Writes headers.json: header-block vectors for wire.md §6.3-§6.5 (header compression).

Like make_vectors.py, an independent implementation written from the spec alone (standard
library only): it builds blocks from explicit representations and tracks the dynamic table as
§6.3 says, so the vectors check rhizomorph's decoder against a second reading of the spec. Each
sequence is decoded in order by one decoder (one channel, one direction).
Run: `python3 spec/vectors/make_header_vectors.py`.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vectors import varint  # noqa: E402  (§2.2, shared with the frame vectors)

STATIC = [("type", "method"), ("type", "event"), ("type", ""), ("to", "*"), ("to", ""),
          ("from", ""), ("method", ""), ("session", ""), ("parent", ""), ("workspace", ""),
          ("ws", ""), ("user", ""), ("service", ""), ("reply-to", ""), ("trace-id", ""),
          ("deadline", ""), ("content-type", ""), ("content-type", "application/msgpack"),
          ("content-type", "application/json"), ("content-type", "application/octet-stream"),
          ("error", ""), ("status", "ok"), ("status", "error"), ("stream-id", ""), ("seq", ""),
          ("priority", ""), ("client-id", ""), ("token", ""), ("event", ""), ("method", "ping"),
          ("method", "pong"), ("type", "reply")]


def prefix_int(first, bits, value):
    """§6.4: N-bit prefix integer; overflow continues as a varint of value - (2^N - 1)."""
    top = (1 << bits) - 1
    if value < top:
        return bytes([first | value])
    return bytes([first | top]) + varint(value - top)


def string(s):
    b = s.encode()
    return varint(len(b)) + b


class Table:
    """§6.3: FIFO dynamic table, newest first, entry size = len(name) + len(value) + 32."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.entries = []

    def size(self):
        return sum(len(n.encode()) + len(v.encode()) + 32 for n, v in self.entries)

    def insert(self, name, value):
        size = len(name.encode()) + len(value.encode()) + 32
        while self.entries and self.size() + size > self.capacity:
            self.entries.pop()
        if size <= self.capacity:
            self.entries.insert(0, (name, value))

    def get(self, index):
        if index < len(STATIC):
            return STATIC[index]
        return self.entries[index - len(STATIC)]


def block(table, reps):
    """Encodes representations, applying their insertions; returns (bytes, decoded fields)."""
    out, fields = b"", []
    for rep in reps:
        kind = rep[0]
        if kind == "indexed":
            out += prefix_int(0x80, 7, rep[1])
            fields.append(table.get(rep[1]))
            continue
        if kind in ("name_ref_insert", "name_ref"):
            name = table.get(rep[1])[0]
            out += prefix_int(0x40 if kind == "name_ref_insert" else 0x20,
                              6 if kind == "name_ref_insert" else 5, rep[1])
            out += string(rep[2])
            value = rep[2]
        else:  # "literal_insert" / "literal"
            out += bytes([0x10 if kind == "literal_insert" else 0x00]) + string(rep[1]) + string(rep[2])
            name, value = rep[1], rep[2]
        fields.append((name, value))
        if kind.endswith("insert"):
            table.insert(name, value)
    return out, fields


def sequence(name, section, capacity, blocks):
    table = Table(capacity)
    out = []
    for reps in blocks:
        hx, fields = block(table, reps)
        out.append({"hex": hx.hex(), "fields": [list(f) for f in fields],
                    "table": [list(e) for e in table.entries], "table_size": table.size()})
    return {"name": name, "section": section, "table_capacity": capacity,
            "max_list_size": 16384, "blocks": out}


SESSION = "x4m2k9q0r7t1w8z3c6v5b1"
SEQUENCES = [
    sequence("hypha-routing-repeated", "§6.4.4", 4096, [
        [("indexed", 0), ("name_ref_insert", 5, "ws-user-1/client-a"),
         ("name_ref_insert", 3, "ws-user-1/echo"), ("name_ref_insert", 6, "services.echo.echo"),
         ("name_ref", 7, SESSION)],
        # Repeated: from, to, method are now dynamic entries 34, 33, 32.
        [("indexed", 0), ("indexed", 34), ("indexed", 33), ("indexed", 32), ("name_ref", 7, "s2")],
    ]),
    sequence("literal-names", "§6.4", 4096, [
        [("literal_insert", "x-tenant", "acme"), ("literal", "x-request", "r-1")],
        [("indexed", 32), ("literal", "x-request", "r-2")],
    ]),
    sequence("eviction", "§6.3.2", 100, [
        [("literal_insert", "a", "1" * 20)],          # 53 bytes
        [("literal_insert", "b", "2" * 10)],          # 43: a is evicted (53 + 43 > 100)
        [("indexed", 32), ("literal_insert", "c", "3" * 10)],   # b + c = 86
        [("literal_insert", "big", "x" * 80)],        # 115 > 100: empties the table, not inserted
    ]),
    sequence("prefix-int-continuation", "§6.4", 4096,
             [[("literal_insert", "k", "")] for _ in range(100)] +
             [[("indexed", 130), ("indexed", 127), ("name_ref", 131, "v")]]),
]
# §6.4.4: rhizomorph's encoder choices, modelled from the spec's text (not from its code).
NEVER_INSERT = {"session", "parent", "trace-id", "seq", "deadline", "token"}


def static_exact(name, value):
    for i, e in enumerate(STATIC):
        if e == (name, value):
            return i
    return None


def static_name(name):
    for i, (n, _) in enumerate(STATIC):
        if n == name:
            return i
    return None


class RefEncoder:
    """The canonical encoder of §6.4.4 over one §6.3 table."""

    def __init__(self, capacity):
        self.table = Table(capacity)

    def dynamic_exact(self, name, value):
        for i, e in enumerate(self.table.entries):  # newest first
            if e == (name, value):
                return len(STATIC) + i
        return None

    def dynamic_name(self, name):
        for i, (n, _) in enumerate(self.table.entries):
            if n == name:
                return len(STATIC) + i
        return None

    def field(self, name, value):
        exact = static_exact(name, value)
        if name in NEVER_INSERT:
            if exact is not None:
                return ("indexed", exact)
            i = static_name(name)
            return ("name_ref", i, value) if i is not None else ("literal", name, value)
        if exact is None:
            exact = self.dynamic_exact(name, value)
        if exact is not None:
            return ("indexed", exact)
        size = len(name.encode()) + len(value.encode()) + 32
        insert = size <= self.table.capacity // 2
        i = static_name(name)
        if i is None:
            i = self.dynamic_name(name)
        if i is not None:
            return ("name_ref_insert", i, value) if insert else ("name_ref", i, value)
        return ("literal_insert", name, value) if insert else ("literal", name, value)

    def encode(self, fields):
        reps = []
        out = b""
        for name, value in fields:
            rep = self.field(name, value)
            b, _ = block(self.table, [rep])  # applies the insertion, as the decoder will
            out += b
            reps.append(rep[0])
        return out, reps


def encoder_sequence(name, capacity, headers):
    enc = RefEncoder(capacity)
    blocks = []
    for fields in headers:
        hx, reps = enc.encode(fields)
        blocks.append({"fields": [list(f) for f in fields], "hex": hx.hex(),
                       "representations": reps,
                       "table": [list(e) for e in enc.table.entries]})
    return {"name": name, "section": "§6.4.4", "table_capacity": capacity, "blocks": blocks}


CALL = [("type", "method"), ("from", "ws-user-1/client-a"), ("to", "ws-user-1/echo"),
        ("method", "services.echo.echo")]
ENCODER_SEQUENCES = [
    encoder_sequence("repeated-call", 4096, [
        CALL + [("session", "1")], CALL + [("session", "2")], CALL + [("session", "3")],
        [("type", "reply"), ("to", "ws-user-1/client-a"), ("session", "1"), ("status", "ok")],
    ]),
    encoder_sequence("literal-names-and-never-inserted", 4096, [
        [("x-tenant", "acme"), ("trace-id", "t-1"), ("token", "secret"), ("deadline", "5")],
        [("x-tenant", "acme"), ("x-tenant", "other"), ("seq", "0"), ("parent", "p")],
    ]),
    encoder_sequence("half-capacity-rule", 200, [
        # 32 + 2 + 66 = 100 = capacity / 2: inserted; 101 is not.
        [("to", "a" * 66), ("to", "b" * 67)],
        [("to", "a" * 66), ("to", "b" * 67)],
    ]),
    encoder_sequence("eviction-moves-indices", 120, [
        [("k1", "v" * 20)], [("k2", "w" * 20)], [("k1", "v" * 20), ("k3", "x" * 20)],
    ]),
    encoder_sequence("zero-capacity", 0, [
        [("from", "ws/a"), ("x", "y")], [("from", "ws/a"), ("x", "y")],
    ]),
    encoder_sequence("static-name-preferred", 4096, [
        [("method", "services.a.f")], [("method", "services.a.g"), ("method", "services.a.f")],
    ]),
]


# (name, section, capacity, max_list_size, hex, kind)
INVALID = [
    ("index-past-table", "§6.3.4", 4096, 16384, prefix_int(0x80, 7, 32).hex(), "BadHeaderIndex"),
    ("name-index-past-table", "§6.3.4", 4096, 16384, (prefix_int(0x40, 6, 40) + string("v")).hex(), "BadHeaderIndex"),
    ("undefined-representation", "§6.4.2", 4096, 16384, "11", "BadHeaderRepresentation"),
    ("truncated-value", "§6.4.3", 4096, 16384, (prefix_int(0x20, 5, 5) + varint(10) + b"abc").hex(), "HeaderBlockTruncated"),
    ("truncated-prefix-continuation", "§6.4.3", 4096, 16384, "ff", "HeaderBlockTruncated"),
    ("non-minimal-string-length", "§6.4.6", 4096, 16384, (b"\x00\x40\x01" + b"a" + b"\x00").hex(), "NonMinimalVarint"),
    # 127 + varint 0 written in two bytes (0x4000): a continuation must be minimal too.
    ("non-minimal-prefix-continuation", "§6.4.6", 4096, 16384, "ff4000", "NonMinimalVarint"),
    ("empty-name", "§6.4.5", 4096, 16384, (b"\x00" + string("") + string("v")).hex(), "BadHeaderName"),
    ("list-over-limit", "§6.5", 4096, 100, (b"\x00" + string("x") + string("v" * 80)).hex(), "HeaderListTooLarge"),
    ("sixty-five-fields", "§6.5", 4096, 1 << 20, ("83" * 65), "TooManyHeaderFields"),
]


def main():
    doc = {
        "spec": "spec/wire.md §6",
        "notes": "Each sequence is decoded in order by one decoder with the given table capacity "
                 "(HEADER_TABLE_SIZE) and list limit (MAX_HEADER_LIST_SIZE). After each block "
                 "the decoded fields and the dynamic table (newest first, §6.3) must match. "
                 "Invalid blocks are decoded by a fresh decoder and fail with HEADER_ERROR of "
                 "the named kind.",
        "sequences": SEQUENCES,
        "encoder_notes": "encoder: each header of a sequence, in order, by one encoder with "
                         "table_capacity (the peer's HEADER_TABLE_SIZE). A conforming encoder's "
                         "block MUST decode (by a §6.3 decoder, in sequence) to fields; an encoder "
                         "that follows rhizomorph's choices (§6.4.4) MUST give exactly hex.",
        "encoder": ENCODER_SEQUENCES,
        "invalid": [{"name": n, "section": s, "table_capacity": c, "max_list_size": m, "hex": h,
                     "error": {"code": "HEADER_ERROR", "kind": k}} for n, s, c, m, h, k in INVALID],
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "headers.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    print(f"wrote {len(SEQUENCES)} sequences and {len(INVALID)} invalid blocks to {path}")


if __name__ == "__main__":
    main()
