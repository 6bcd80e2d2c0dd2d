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

# 2. The library a user links carries no CLI, bench or test crate (nor a second WebSocket stack:
#    legacy mode uses the in-house RFC 6455 codec too), within a budget of crates.
lib=$(crates_of rhizomorph)
for tool in clap indicatif h2 hdrhistogram tracing-subscriber criterion proptest rhizomorph-testkit rhizomorph-cli tungstenite tokio-tungstenite; do
  if grep -qx "$tool v.*" <<<"$lib"; then breach "the rhizomorph library depends on $tool"; fi
done
count=$(wc -l <<<"$lib")
# 186 before the workspace split; issue 17 asked for at most 120.
budget=120
echo "rhizomorph links $count crates (budget $budget); rhizomorph-proto links $(wc -l <<<"$proto")"
[ "$count" -le "$budget" ] || breach "the rhizomorph library links $count crates (budget $budget)"

# 3. Arrows inside each crate: no cycle between its top-level modules (`use crate::x` outside
#    tests and comments), and the drivers never reach up to the face.
python3 - <<'PY' || fail=1
import glob, os, re, sys
def graph(src):
    g = {}
    for p in glob.glob(src + "/**/*.rs", recursive=True):
        rel = os.path.relpath(p, src)
        if rel == "lib.rs":
            continue
        mod = rel.split("/")[0].removesuffix(".rs")
        text = open(p).read().split("#[cfg(test)]")[0]
        text = "\n".join(l for l in text.splitlines() if not l.strip().startswith("//"))
        for m in re.findall(r"crate::([a-z_]+)", text):
            if m != mod and (os.path.exists(f"{src}/{m}.rs") or os.path.isdir(f"{src}/{m}")):
                g.setdefault(mod, set()).add(m)
    return g
def cycle(g):
    state = {}
    def visit(n, path):
        state[n] = 1
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return path + [n, m]
            if m not in state:
                c = visit(m, path + [n])
                if c:
                    return c
        state[n] = 2
        return None
    for n in sorted(g):
        if n not in state:
            c = visit(n, [])
            if c:
                return c
    return None
bad = False
for src in ("rhizomorph-proto/src", "rhizomorph/src"):
    c = cycle(graph(src))
    if c:
        print(f"layer check: a cycle of imports in {src}: {' -> '.join(c)}", file=sys.stderr)
        bad = True
up = graph("rhizomorph/src").get("transport", set()) & {"connection", "endpoint", "router"}
if up:
    print(f"layer check: rhizomorph/src/transport imports the face: {sorted(up)}", file=sys.stderr)
    bad = True
sys.exit(1 if bad else 0)
PY

# 4. One handle for both modes: the face never names a mode's session (handle.rs is the one place
#    where native and legacy differ).
face="rhizomorph/src/connection.rs rhizomorph/src/sender.rs rhizomorph/src/receiver.rs rhizomorph/src/call.rs rhizomorph/src/transfer.rs rhizomorph/src/link.rs"
# shellcheck disable=SC2086
if grep -nE '\bSession\b|LegacySession|Mode::(Native|Legacy)' $face \
  | grep -vE '^[^:]+:[0-9]+:\s*//'; then
  breach "the face (connection, sender, receiver, call, transfer, link) branches on the mode or names a session (lines above): put it in transport/handle.rs"
fi

# 5. Short modules: no source file of the library or the protocol crate over 900 lines.
while read -r lines file; do
  [ "$file" = total ] && continue
  [ "$lines" -le 900 ] || breach "$file has $lines lines (at most 900: split it by what it owns)"
done < <(find rhizomorph-proto/src rhizomorph/src -name '*.rs' -print0 | xargs -0 wc -l)

# 6. Every public async method of the user-facing API says whether it is cancel-safe (tokio's
#    convention: a "Cancel safety" section, issue 19).
for file in rhizomorph/src/*.rs; do
  missing=$(awk '
    /^[[:space:]]*\/\/\// { doc = doc $0 "\n"; next }
    /^[[:space:]]*#\[/ { next }
    /pub async fn/ { if (tolower(doc) !~ /cancel/) print FILENAME ":" FNR ": " $0 }
    { doc = "" }
  ' "$file")
  [ -z "$missing" ] || breach "public async fns without a cancel-safety note:
$missing"
done

exit $fail
