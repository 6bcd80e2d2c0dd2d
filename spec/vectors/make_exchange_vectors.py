#!/usr/bin/env python3
"""Writes exchanges.json: classification vectors for wire.md §20 (calls and transfers).

An independent reading of §20's rules (standard library only): a header's fields, in order,
and what the message is. Run: `python3 spec/vectors/make_exchange_vectors.py`.
"""
import json
import os

MAX = 2**64 - 1


def number(v):
    """§20: decimal ASCII, 1-20 digits, at most 2^64 - 1; None if not."""
    if not (1 <= len(v) <= 20) or not all("0" <= c <= "9" for c in v):
        return None
    n = int(v)
    return n if n <= MAX else None


def classify(fields):
    """§20's six rules, first match wins; returns the exchange dict, or None if malformed."""
    first = {}
    for name, value in fields:
        if name in ("type", "session", "status", "error", "stream-id", "seq"):
            first.setdefault(name, value)
    kind, session = first.get("type"), first.get("session")
    stream, seq, status = first.get("stream-id"), first.get("seq"), first.get("status")

    def failed():
        return first.get("error", "") if status == "error" else None

    if kind == "reply" and session is not None:
        n = number(session)
        return None if n is None else {"kind": "reply", "session": n, "error": failed()}
    if kind == "cancel" and session is not None:
        return {"kind": "cancel_call", "session": session}
    if kind == "cancel" and stream is not None:
        n = number(stream)
        return None if n is None else {"kind": "cancel_transfer", "stream_id": n}
    if stream is not None and seq is not None:
        n = number(seq)
        if n is None:
            return None
        end = None
        if status is not None:
            end = {"ok": True} if status != "error" else {"ok": False, "error": failed()}
        return {"kind": "part", "stream_id": stream, "seq": n, "end": end}
    if session is not None:
        return {"kind": "request", "session": session}
    return {"kind": "plain"}


VALID = [
    ("plain", "§20", [["to", "echo"], ["method", "add"]]),
    ("request", "§20.1.1", [["to", "calc"], ["method", "add"], ["session", "7"]]),
    ("request-opaque-session", "§20.1.1", [["session", "x4m2k9"]]),
    ("reply-ok", "§20.1.2", [["type", "reply"], ["to", "ws/a"], ["session", "7"], ["status", "ok"]]),
    ("reply-no-status", "§20.1.2", [["type", "reply"], ["session", "7"]]),
    ("reply-error", "§20.1.2",
     [["type", "reply"], ["session", "18446744073709551615"], ["status", "error"],
      ["error", "no such method"]]),
    ("reply-first-session-wins", "§20", [["type", "reply"], ["session", "3"], ["session", "x"]]),
    ("cancel-call", "§20.2.1", [["type", "cancel"], ["to", "calc"], ["session", "7"]]),
    ("cancel-transfer", "§20.4.1", [["type", "cancel"], ["to", "ws/a"], ["stream-id", "12"]]),
    ("part-first", "§20.3.1", [["to", "store"], ["stream-id", "12"], ["seq", "0"]]),
    ("part-middle", "§20.3.1", [["to", "store"], ["stream-id", "12"], ["seq", "41"]]),
    ("part-last-ok", "§20.3.2", [["stream-id", "12"], ["seq", "42"], ["status", "ok"]]),
    ("part-last-error", "§20.3.2",
     [["stream-id", "12"], ["seq", "3"], ["status", "error"], ["error", "disk full"]]),
    ("part-wins-over-request", "§20", [["session", "9"], ["stream-id", "1"], ["seq", "0"]]),
    ("type-method-with-session-is-request", "§20", [["type", "method"], ["session", "5"]]),
    ("cancel-without-ids-is-plain", "§20", [["type", "cancel"], ["to", "x"]]),
    ("stream-id-without-seq-is-plain", "§20", [["stream-id", "4"]]),
]

INVALID = [
    ("reply-session-not-a-number", "§20", [["type", "reply"], ["session", "abc"]]),
    ("reply-session-empty", "§20", [["type", "reply"], ["session", ""]]),
    ("reply-session-negative", "§20", [["type", "reply"], ["session", "-1"]]),
    ("reply-session-over-u64", "§20", [["type", "reply"], ["session", "18446744073709551616"]]),
    ("reply-session-21-digits", "§20", [["type", "reply"], ["session", "000000000000000000001"]]),
    ("part-seq-not-a-number", "§20", [["stream-id", "1"], ["seq", "1e3"]]),
    ("cancel-transfer-id-not-a-number", "§20", [["type", "cancel"], ["stream-id", "x"]]),
]


def main():
    out = {
        "spec": "spec/wire.md",
        "section": "§20",
        "notes": "valid: classify(fields) == exchange. invalid: a §20 number is malformed, so the "
                 "message is an ordinary one (rhizomorph's classify returns NotANumber).",
        "vectors": [],
        "invalid": [],
    }
    for name, section, fields in VALID:
        e = classify(fields)
        assert e is not None, name
        out["vectors"].append({"name": name, "section": section, "fields": fields, "exchange": e})
    for name, section, fields in INVALID:
        assert classify(fields) is None, name
        out["invalid"].append({"name": name, "section": section, "fields": fields})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exchanges.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {len(out['vectors'])} valid and {len(out['invalid'])} invalid vectors to {path}")


if __name__ == "__main__":
    main()
