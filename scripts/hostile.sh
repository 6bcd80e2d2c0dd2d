#!/usr/bin/env bash
# The hostile-peer suite against a real `rhizomorph serve`, long mode: each attack runs for
# SECONDS (default 30; CI runs the same suite at 2 s inside `cargo test`), then the
# connect/disconnect cycles scale with it. Prints the server's RSS growth and the healthy
# client's p99 per attack, and the server's fds before and after the cycles.
#   scripts/hostile.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export RHIZOMORPH_HOSTILE_SECS=${1:-30}
cargo test --release -p rhizomorph-cli --test hostile_serve -- --nocapture --test-threads 1
# The in-process suites (legacy leaks and floods, native per-message failures and bounds).
cargo test --release -p rhizomorph --test legacy_hostile --test hostile_native -- --nocapture
