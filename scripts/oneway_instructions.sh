#!/usr/bin/env bash
# Instructions per one-way 256 B message, client and server together, for each implementation
# given (default: rhizo-ws raw-tcp): valgrind's callgrind counts the instructions of
# `examples/oneway_probe` at two message counts, and the difference divided by the difference
# in messages is the cost of one message, setup excluded. Instruction counts repeat for the same
# binary and inputs whatever else the machine does, so this compares changes on a shared,
# noisy machine where a msgs/s figure cannot (it does not count system time or cache misses:
# quote msgs/s from `rhizomorph bench --scenario oneway --rounds N` beside it).
#
# Usage: scripts/oneway_instructions.sh [IMPLEMENTATION ...]   (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example oneway_probe
probe=target/release/examples/oneway_probe
low=20000
high=60000
count() {
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$probe" "$1" "$2" >/dev/null 2>&1
    # The totals line of the profile: "totals: <instructions>".
    awk '/^totals:/ {print $2}' "$out"
    rm -f "$out"
}
for which in "${@:-rhizo-ws raw-tcp}"; do
    for w in $which; do
        a=$(count "$w" $low)
        b=$(count "$w" $high)
        echo "$w: $(( (b - a) / (high - low) )) instructions per message"
    done
done
