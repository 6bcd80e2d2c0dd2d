#!/usr/bin/env bash
# The architecture, checked (see README.md "Layout"): the arrows the compiler cannot see and the
# dependency budget of what a user links. Run by scripts/test.sh; exits non-zero on a breach.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
breach() { echo "layer check: $*" >&2; fail=1; }

# Unique crates (name + version) in a package's normal (non-dev, non-build) dependency tree, for
# every target platform (the strictest count: what any user on any OS may compile).
crates_of() { cargo tree -q -e normal --target all -p "$1" --prefix none | sed 's/ (\*)//; s/ (proc-macro)//' | awk '{print $1" "$2}' | sort -u; }

# 1. The protocol crate is sans-IO: no runtime, socket, TLS or QUIC crate anywhere below it.
proto=$(crates_of rhizomorph-proto)
for io in tokio mio socket2 quinn quinn-proto quinn-udp rustls tokio-rustls tungstenite tokio-tungstenite; do
  if grep -qx "$io v.*" <<<"$proto"; then breach "rhizomorph-proto depends on $io (it must stay sans-IO)"; fi
done
# (fuzzing.rs, the fuzz harness behind the `fuzzing` feature, starts its virtual clock at now.)
if grep -rnE '\btokio(::|_)|std::net|SystemTime|Instant::now\(' rhizomorph-proto/src --exclude=fuzzing.rs \
  | grep -vE '^\S+:[0-9]+:\s*//' ; then
  breach "rhizomorph-proto/src uses tokio, sockets or reads the clock (lines above)"
fi

# 2. The library a user links carries no CLI, bench or test crate, within a budget of crates.
lib=$(crates_of rhizomorph)
for tool in clap indicatif h2 hdrhistogram tracing-subscriber criterion proptest rhizomorph-testkit rhizomorph-cli; do
  if grep -qx "$tool v.*" <<<"$lib"; then breach "the rhizomorph library depends on $tool"; fi
done
count=$(wc -l <<<"$lib")

# 125 until the legacy driver leaves tokio-tungstenite (its 8 crates) for the in-house RFC 6455
# codec; then 120 (issue 17).
budget=125
echo "rhizomorph links $count crates (budget $budget); rhizomorph-proto links $(wc -l <<<"$proto")"
[ "$count" -le "$budget" ] || breach "the rhizomorph library links $count crates (budget $budget)"

# 3. Short modules: no source file of the library or the protocol crate over 900 lines.
while read -r lines file; do
  [ "$file" = total ] && continue
  [ "$lines" -le 900 ] || breach "$file has $lines lines (at most 900: split it by what it owns)"
done < <(find rhizomorph-proto/src rhizomorph/src -name '*.rs' -print0 | xargs -0 wc -l)

exit $fail
