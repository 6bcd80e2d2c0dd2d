#!/usr/bin/env bash
# Seeds the corpora from spec/vectors and runs cargo-fuzz targets.
#   scripts/fuzz.sh [SECONDS] [TARGET...]    default: 600 s, every target, one after another
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain it sets RUSTC_BOOTSTRAP=1.
# A crash leaves fuzz/artifacts/<target>/crash-*: copy it into fuzz/regressions/<target>/ and fix.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder hello_decoder header_block session_input session_streams decompress payload legacy_decoder websocket legacy_session)

python3 - <<'PY'
import json, os
doc = json.load(open("spec/vectors/frames.json"))
for target in ("frame_decoder", "hello_decoder", "header_block", "session_input", "session_streams", "decompress", "payload", "legacy_decoder", "websocket", "legacy_session"):
    os.makedirs(f"fuzz/corpus/{target}", exist_ok=True)
# Legacy session: handshakes, floods and refusals on both sides.
for name in os.listdir("fuzz/regressions/legacy_session"):
    open(f"fuzz/corpus/legacy_session/{name}", "wb").write(open(f"fuzz/regressions/legacy_session/{name}", "rb").read())
# Legacy mode: the captured hypha-rpc frames.
for name in os.listdir("fuzz/regressions/legacy_decoder"):
    if name.startswith("captured-"):
        open(f"fuzz/corpus/legacy_decoder/{name}", "wb").write(open(f"fuzz/regressions/legacy_decoder/{name}", "rb").read())
# WebSocket: RFC 6455 examples, edge lengths and upgrade heads.
for name in os.listdir("fuzz/regressions/websocket"):
    open(f"fuzz/corpus/websocket/{name}", "wb").write(open(f"fuzz/regressions/websocket/{name}", "rb").read())
for v in doc["valid"] + doc["invalid"]:
    raw = bytes.fromhex(v["hex"].replace(" ", ""))
    for sel in range(6):  # selectors 3-5 read the input as wire version 1.1
        open(f"fuzz/corpus/frame_decoder/{v['name']}-{sel}", "wb").write(bytes([sel]) + raw)
    if raw[:1] == b"\x01" and len(raw) > 3:
        # HELLO payload: strip Type, Flags and a 1- or 2-byte Length.
        n = 1 << (raw[2] >> 6)
        open(f"fuzz/corpus/hello_decoder/{v['name']}", "wb").write(raw[2 + n:])
    if len(raw) < 65536:
        # As one session batch: a 2-byte length, then the bytes.
        open(f"fuzz/corpus/session_input/{v['name']}", "wb").write(len(raw).to_bytes(2, "big") + raw)
        # On a channel stream (the frame's own channel, or control): selector, length, bytes.
        for sel in range(4):
            open(f"fuzz/corpus/session_streams/{v['name']}-{sel}", "wb").write(bytes([sel]) + len(raw).to_bytes(2, "big") + raw)
# Per-channel streams: the kept inputs (sends, losses and resumes).
for name in os.listdir("fuzz/regressions/session_streams"):
    open(f"fuzz/corpus/session_streams/{name}", "wb").write(open(f"fuzz/regressions/session_streams/{name}", "rb").read())
pay = json.load(open("spec/vectors/payloads.json"))
for v in pay["typed_arrays"]["valid"] + pay["typed_arrays"]["invalid"]:
    open(f"fuzz/corpus/payload/{v['name'].replace(' ', '_')}", "wb").write(bytes.fromhex(v["hex"]))
hdr = json.load(open("spec/vectors/headers.json"))
for seq in hdr["sequences"]:
    blocks = b"".join(bytes([len(bytes.fromhex(b["hex"])) & 0xff]) + bytes.fromhex(b["hex"]) for b in seq["blocks"])
    open(f"fuzz/corpus/header_block/{seq['name']}", "wb").write(b"\x0e" + blocks)
PY

export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${seconds}s"
  (cd fuzz && cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1)
done
