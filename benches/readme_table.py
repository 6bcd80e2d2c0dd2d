#!/usr/bin/env python3
"""Condenses `rhizomorph bench --json FILE` into the table of benches/README.md.

One row per measurement, as `rhizomorph bench` prints it, with the notes folded into the ratio
column (physical-limit ratio, per-round ratio spread) and the stall/idle rows in words.

Usage: python3 benches/readme_table.py FILE.json
"""
import json
import sys


def note(m, key):
    for k, v in m.get("notes", []):
        if k == key:
            return v
    return None


def baseline(m):
    impl, scen = m["implementation"], m["scenario"]
    if impl == "rhizo-ws":
        return "msgpack-ws" if scen not in ("rpc-50", "rpc-100", "rpc-200") else "h2-grpc"
    if impl == "rhizo-quic":
        if scen.startswith("rpc"):
            return "h2-grpc"
        if scen == "hol":
            return "quic-1-stream"
        if scen == "oneway":
            return "raw-tcp"
        return "bare-quinn"
    return None


def ratio(m, rows):
    base = baseline(m)
    b = next((r for r in rows if r["implementation"] == base and r["scenario"] == m["scenario"]
              and r["mode"] == m["mode"]), None)
    extra = []
    for k, v in m.get("notes", []):
        if k.endswith("(physical limit)"):
            extra.append(f"{v:.1f}x {k.split()[1]}")
    for k, _ in m.get("notes", []):
        if k.endswith("per round, lowest"):
            who = k.split()[1]
            hi = note(m, f"x {who} per round, highest")
            extra.append(f"rounds {note(m, k):.1f}–{hi:.1f} vs {who}")
    if m["scenario"] == "hol":
        idle = note(m, "idle link rpc p99 ms")
        if b is not None:
            text = f"p99 {b['p99_ms'] / max(m['p99_ms'], 1e-9):.1f}x lower than {base}"
        elif idle is not None:
            text = f"p99 {m['p99_ms'] / max(idle, 1e-9):.2f}x the idle link's"
        else:
            return ""
        return text + (f"  (idle link p99 {idle:.1f} ms)" if idle is not None else "")
    if b is None:
        return ""
    text = f"{m['msgs_per_sec'] / max(b['msgs_per_sec'], 1e-9):.2f}x {base}"
    return text + (f"  ({'; '.join(extra)})" if extra else "")


def main():
    rows = json.load(open(sys.argv[1]))["results"]
    print(f"{'scenario':<8} {'mode':<16} {'impl':<11} {'messages':>9} {'msgs/s':>12} {'MB/s':>10}"
          f" {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}  ratio (vs baseline)")
    for m in rows:
        head = f"{m['scenario']:<8} {m['mode']:<16} {m['implementation']:<11}"
        if m["scenario"] == "stall":
            print(f"{head} {m['messages']:>9}     {note(m, 'sent during stall MB'):.1f} MB left the"
                  f" sender during a {note(m, 'stall s'):.0f} s stall; RSS growth"
                  f" {note(m, 'RSS growth during stall MB'):.1f} MB")
        elif m["scenario"] == "idle":
            print(f"{head} {m['messages']:>9}     server {note(m, 'server KiB per connection'):.1f}"
                  f" KiB per connection (client {note(m, 'client KiB per connection'):.1f})")
        else:
            print(f"{head} {m['messages']:>9} {m['msgs_per_sec']:>12.0f} {m['mb_per_sec']:>10.1f}"
                  f" {m['p50_ms']:>9.3f} {m['p95_ms']:>9.3f} {m['p99_ms']:>9.3f}  {ratio(m, rows)}"
                  .rstrip())


if __name__ == "__main__":
    main()
