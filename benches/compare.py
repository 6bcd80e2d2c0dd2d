#!/usr/bin/env python3
"""Compares two `rhizomorph bench --json FILE` runs (e.g. the commit before a change and after).

For every rhizomorph row: its ratio to the baseline the bench compares it with, in each run, and
the spread of that ratio across the first run's rounds (echo scenarios with --rounds N). A
ratio of the second run inside the first run's spread is "within"; outside it, "below" or
"above". Rows without rounds (rpc, oneway, fanout, hol, idle, stall) have no spread: their
change is shown as a factor, to be read against the machine's noise.

Usage: python3 benches/compare.py BEFORE.json AFTER.json
"""
import json
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from readme_table import baseline, note  # noqa: E402


def rows(path):
    return json.load(open(path))["results"]


def key(m):
    return (m["scenario"], m["mode"], m["implementation"])


def base_ratio(m, all_rows):
    base = baseline(m)
    b = next((r for r in all_rows if r["implementation"] == base and r["scenario"] == m["scenario"]
              and r["mode"] == m["mode"]), None)
    if b is None or not b["msgs_per_sec"]:
        return base, None
    if m["scenario"] == "hol":
        # Latency under bulk: the bench's ratio is baseline p99 / ours (higher is better).
        return base, b["p99_ms"] / m["p99_ms"] if m["p99_ms"] else None
    return base, m["msgs_per_sec"] / b["msgs_per_sec"]


def main(before, after):
    a, b = rows(before), rows(after)
    by_key = {key(m): m for m in b}
    print(f"{'scenario':8} {'mode':16} {'impl':11} {'baseline':13} {'before':>7} {'spread':>13} "
          f"{'after':>7}  verdict")
    for m in a:
        if not m["implementation"].startswith("rhizo"):
            continue
        n = by_key.get(key(m))
        if n is None:
            continue
        base, r0 = base_ratio(m, a)
        _, r1 = base_ratio(n, b)
        if base is None or r0 is None or r1 is None:
            if m["scenario"] in ("idle", "stall"):
                k = "server KiB per connection" if m["scenario"] == "idle" else None
                v0 = note(m, k) if k else m["msgs_per_sec"]
                v1 = note(n, k) if k else n["msgs_per_sec"]
                print(f"{m['scenario']:8} {m['mode']:16} {m['implementation']:11} {'-':13} "
                      f"{v0:7.1f} {'':>13} {v1:7.1f}  {(k or 'msgs/s')}")
            continue
        lo = note(m, f"x {base} per round, lowest")
        hi = note(m, f"x {base} per round, highest")
        if lo is not None and hi is not None:
            # The spread of the rounds, as the table prints it (one decimal), so a ratio that
            # rounds into it is within.
            spread = f"[{lo:.2f}, {hi:.2f}]"
            verdict = "within" if lo - 0.05 <= r1 <= hi + 0.05 else ("below" if r1 < lo else "above")
        else:
            spread = ""
            verdict = f"{r1 / r0:.2f}x of before"
        print(f"{m['scenario']:8} {m['mode']:16} {m['implementation']:11} {base:13} {r0:7.2f} "
              f"{spread:>13} {r1:7.2f}  {verdict}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
