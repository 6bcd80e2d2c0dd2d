#!/usr/bin/env bash
# Mutation check of the session vectors (spec/vectors/sessions.json): mutates the sans-IO
# session's flow control, shutdown, handshake and outgoing queues with cargo-mutants and runs
# only tests/session_vectors.rs against each mutant, so a surviving mutant is a rule the
# vectors do not pin. Not part of scripts/test.sh (about 25 minutes on 2 cores).
# Usage: scripts/mutants.sh [extra cargo-mutants arguments]   (results in target/mutants)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
files=()
for f in flow shutdown handshake outgoing; do
  files+=(-f "rhizomorph-proto/src/session/$f.rs")
done
cargo mutants -p rhizomorph-proto "${files[@]}" --timeout 120 -o target/mutants "$@" \
  -- --test session_vectors || true
echo "missed: target/mutants/mutants.out/missed.txt"
