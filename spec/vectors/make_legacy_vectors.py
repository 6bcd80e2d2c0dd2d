#!/usr/bin/env python3
"""Writes legacy.json: vectors for legacy.md §L3 (message codec and header mapping) and §L5
(hypha's routing rewrite).

Encoded with Python's own `msgpack` package (what hypha-rpc and hypha use), so the vectors check
rhizomorph against the real encoder, and the rewrite follows hypha's `emit_message`
(`message.update({"ws", "to", "from", "user"})`). Run with a Python that has msgpack:
`.venv/bin/python spec/vectors/make_legacy_vectors.py`.
"""
import json
import os

import msgpack


def header_fields(main):
    """legacy.md §L3.2: str values as text, anything else as `name#` = its msgpack bytes."""
    fields = []
    for key, value in main.items():
        if isinstance(value, str):
            fields.append([key, value])
        else:
            fields.append([key + "#", {"msgpack": msgpack.packb(value).hex()}])
    return fields


def message(name, main, extra):
    head = msgpack.packb(main)
    tail = b"" if extra is None else msgpack.packb(extra)
    return {
        "name": name,
        "hex": (head + tail).hex(),
        "header": header_fields(main),
        "payload_hex": tail.hex(),
    }


def rewrite(main, workspace, client_id, user):
    """hypha.core.RedisRPCConnection.emit_message, without the delivery."""
    target = main.get("to")
    if target == "*":
        target = f"{workspace}/*"
    elif "/" not in target:
        target = f"{workspace}/{target}"
    out = dict(main)
    out.update({"ws": workspace, "to": target, "from": f"{workspace}/{client_id}", "user": user})
    return out, target


USER = {
    "id": "anonymous-caller",
    "roles": ["anonymous"],
    "is_anonymous": True,
    "scope": {"current_workspace": "ws-a", "workspaces": {"ws-a": "a"}, "client_id": "caller", "extra_scopes": None},
    "email": None,
    "parent": None,
    "expires_at": 1795410923.0,
    "current_workspace": None,
}

CALL = {"type": "method", "from": "ws-a/caller", "to": "provider", "method": "services.echo.echo", "session": "s1"}
EXTRA = {"args": ["hi"], "promise": "*", "t": 15.0}

messages = [
    message("call, compact promise", CALL, EXTRA),
    message("resolve", {"type": "method", "from": "ws-a/provider", "to": "ws-a/caller", "method": "s1.resolve"}, {"args": ["hi"]}),
    message("event without extra", {"type": "log", "to": "*"}, None),
    message("bytes and kwargs", {"type": "method", "to": "ws-b/p", "method": "services.s.f"},
            {"args": [b"\x00\x01\x02", {"k": [1, 2.5, None]}], "with_kwargs": True}),
    message("non-string header values", {"type": "method", "to": "p", "parent": None, "n": 300, "user": USER}, {"args": []}),
    message("long strings (str8, str16)", {"type": "x" * 40, "to": "y" * 300}, {"args": ["z" * 70000]}),
]

rewrites = []
for name, main, extra in [
    ("bare id", CALL, EXTRA),
    ("full id, forged identity", {"type": "method", "from": "evil/mallory", "to": "ws-b/provider", "user": "forged", "ws": "evil"}, EXTRA),
    ("broadcast", {"type": "log", "to": "*"}, None),
]:
    out, target = rewrite(main, "ws-a", "caller", USER)
    tail = b"" if extra is None else msgpack.packb(extra)
    rewrites.append({
        "name": name,
        "sender": {"workspace": "ws-a", "client_id": "caller", "user": USER},
        "input_hex": (msgpack.packb(main) + tail).hex(),
        "target": target,
        "output_hex": (msgpack.packb(out) + tail).hex(),
    })

invalid = [
    {"name": "header is an array", "hex": msgpack.packb([1, 2]).hex(), "error": "HeaderNotAMap"},
    {"name": "integer key", "hex": msgpack.packb({1: "a"}).hex(), "error": "KeyNotAString"},
    {"name": "key ending in #", "hex": msgpack.packb({"user#": "a"}).hex(), "error": "BadKey"},
    {"name": "empty key", "hex": msgpack.packb({"": "a"}).hex(), "error": "BadKey"},
    {"name": "truncated header", "hex": msgpack.packb({"type": "method"})[:-2].hex(), "error": "Truncated"},
    {"name": "map32 claiming 4 billion entries", "hex": "dfffffffff", "error": "TooManyFields"},
    {"name": "value is 0xc1", "hex": "81a161c1", "error": "InvalidTag"},
    {"name": "key not UTF-8", "hex": "81a2fffea161", "error": "NotUtf8"},
    {"name": "65 fields", "hex": msgpack.packb({f"k{i}": "v" for i in range(65)}).hex(), "error": "TooManyFields"},
]

doc = {
    "description": "Legacy msgpack mode vectors (spec/legacy.md §L3, §L5), encoded with Python's msgpack package",
    "messages": messages,
    "rewrites": rewrites,
    "invalid": invalid,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "legacy.json")
with open(path, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print(f"wrote {path}: {len(messages)} messages, {len(rewrites)} rewrites, {len(invalid)} invalid")
